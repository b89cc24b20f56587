// Shared machinery of the JavaScript train kernels (the twins of kernels/kernel.py and
// kernels/losses.py): input checks, the regularized objective, mini-batch SGD, evaluation,
// prediction, the softmax cross-entropy, the dense matrix products the models are built from,
// and the seeded batch shuffler. The flat weight layouts are defined in the model modules.
//
// Plain ES module with no imports: it runs unchanged in a browser (Web Worker) and under Node.
//
// A model module (softmax.js, mlp.js) describes itself to this file with an object
//   { name, numParams(config), workspace(config, rows), logits(w, X, m, config, ws),
//     dataLossAndGrad(w, X, y, m, config, ws, grad) }
// where `w` is a Float64Array holding the flat float32 weights, `X` a Float64Array of `m`
// gathered rows (row-major, m * n_features), `y` an Int32Array of their labels, `ws` the
// scratch buffers from `workspace` (sized for up to `rows` rows) and `grad` a Float64Array the
// model overwrites with the gradient of the mean cross-entropy. `logits` returns an m * n_classes
// Float64Array (row-major) that may live in `ws`.
//
// Precision: everything is computed in float64 (JS numbers); weights are float32 values at rest.
// An SGD step rounds like numpy's float32 `grad *= lr; w -= grad`: the gradient is rounded to
// float32, multiplied by float32(lr) and subtracted, each result rounded to float32 (a float64
// operation on float32 operands followed by Math.fround is the correctly rounded float32 result).
//
// Shuffling (used only without an explicit batchOrder): xoshiro128** seeded through splitmix32
// from the low and high 32 bits of the integer seed, an unbiased bounded draw by rejection, and a
// Fisher-Yates shuffle of 0..n-1 per epoch, cut into consecutive batches of batch_size (the last
// may be smaller). It is deterministic for a seed but does not reproduce numpy's permutations.

const CHUNK_ROWS = 256;
const BAND_ROWS = 64;

/** Return the flat weights as a Float64Array of float32 values, after checking them. */
export function checkedWeights(weights, expected, what = "weights") {
  if (weights == null || typeof weights.length !== "number") {
    throw new TypeError(`The ${what} must be an array of numbers.`);
  }
  if (weights.length !== expected) {
    throw new RangeError(`Expected a flat vector of ${expected} ${what}, got ${weights.length}.`);
  }
  const w = new Float64Array(expected);
  for (let i = 0; i < expected; i++) {
    const value = Math.fround(weights[i]);
    if (!Number.isFinite(value)) throw new RangeError(`The ${what} must be finite.`);
    w[i] = value;
  }
  return w;
}

/**
 * Check `data = {X, y, n, d}` against the config and return `{X, y, n, d}` with X a Float32Array
 * (rounded to float32 if given in another form) and y an Int32Array. Labels are checked only
 * when `withLabels`. Inputs are never modified.
 */
export function checkedData(data, config, { withLabels = true, nonEmpty = true } = {}) {
  if (data == null || typeof data !== "object") throw new TypeError("data must be {X, y, n, d}.");
  const d = config.n_features;
  const { n } = data;
  if (data.d !== d) throw new RangeError(`data.d must be n_features = ${d}, got ${data.d}.`);
  if (!Number.isInteger(n) || n < 0) throw new RangeError("data.n must be a row count.");
  if (nonEmpty && n === 0) throw new RangeError("The data is empty.");
  const X = data.X instanceof Float32Array ? data.X : Float32Array.from(data.X ?? []);
  if (X.length !== n * d) {
    throw new RangeError(`X must hold n * d = ${n * d} values, got ${X.length}.`);
  }
  for (let i = 0; i < X.length; i++) {
    if (!Number.isFinite(X[i])) throw new RangeError("X must be finite.");
  }
  if (!withLabels) return { X, y: null, n, d };
  const source = data.y ?? [];
  if (source.length !== n) throw new RangeError(`y must hold ${n} labels, got ${source.length}.`);
  const c = config.n_classes;
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const label = source[i];
    if (!Number.isInteger(label)) throw new RangeError("y must hold integer class labels.");
    if (label < 0 || label >= c) throw new RangeError(`Labels must lie in [0, ${c}).`);
    y[i] = label;
  }
  return { X, y, n, d };
}

/** Copy rows `rows[from..to)` of X (and y) into the contiguous float64 buffers `xb` and `yb`. */
export function gather(X, y, d, rows, from, to, xb, yb) {
  for (let r = from, o = 0; r < to; r++, o += d) {
    const start = rows[r] * d;
    for (let k = 0; k < d; k++) xb[o + k] = X[start + k];
    if (y !== null) yb[r - from] = y[rows[r]];
  }
}

/** Copy consecutive rows `from..to` of X (and y) into `xb` and `yb`. */
export function gatherRange(X, y, d, from, to, xb, yb) {
  const start = from * d;
  const count = (to - from) * d;
  for (let k = 0; k < count; k++) xb[k] = X[start + k];
  if (y !== null) for (let i = from; i < to; i++) yb[i - from] = y[i];
}

/**
 * Softmax cross-entropy of `m` rows of `c` logits: return the summed (not averaged) loss, and
 * when `dz` is given overwrite it with the gradient of the mean loss (divided by `scale` rows),
 * as kernels/losses.py does: softmax, minus one at the label, divided by the row count.
 * `dz` may be `logits` itself.
 */
export function softmaxCrossEntropy(logits, y, m, c, dz = null, scale = m) {
  let total = 0;
  for (let i = 0; i < m; i++) {
    const o = i * c;
    let max = logits[o];
    for (let j = 1; j < c; j++) if (logits[o + j] > max) max = logits[o + j];
    const picked = logits[o + y[i]] - max;
    let sum = 0;
    if (dz === null) {
      for (let j = 0; j < c; j++) sum += Math.exp(logits[o + j] - max);
    } else {
      for (let j = 0; j < c; j++) {
        const e = Math.exp(logits[o + j] - max);
        dz[o + j] = e;
        sum += e;
      }
      for (let j = 0; j < c; j++) dz[o + j] = dz[o + j] / sum;
      dz[o + y[i]] -= 1;
      for (let j = 0; j < c; j++) dz[o + j] /= scale;
    }
    total += Math.log(sum) - picked;
  }
  return total;
}

// Dense products on row-major Float64Arrays, register-blocked (2 x 4 or 2 x 2 outputs held in
// locals across the reduction) so each loaded value feeds several multiply-adds; this is about
// four times faster under V8 than the plain i-k-j loop. Every output is summed in the natural
// order of the reduction index, starting from the bias or zero. `xOff` arguments are offsets of
// a matrix inside a larger array (the flat weight or gradient vector).

/** C (m x n) = A (m x k) @ B (k x n, at bOff) + bias (n, at biasOff), overwriting C. */
export function matmulBias(A, B, bOff, bias, biasOff, C, m, k, n) {
  let i = 0;
  for (; i + 1 < m; i += 2) {
    const a0 = i * k;
    const a1 = a0 + k;
    const c0 = i * n;
    const c1 = c0 + n;
    let j = 0;
    for (; j + 3 < n; j += 4) {
      const o = biasOff + j;
      let s0 = bias[o];
      let s1 = bias[o + 1];
      let s2 = bias[o + 2];
      let s3 = bias[o + 3];
      let t0 = s0;
      let t1 = s1;
      let t2 = s2;
      let t3 = s3;
      for (let p = 0, b = bOff + j; p < k; p++, b += n) {
        const x = A[a0 + p];
        const u = A[a1 + p];
        const w0 = B[b];
        const w1 = B[b + 1];
        const w2 = B[b + 2];
        const w3 = B[b + 3];
        s0 += x * w0;
        s1 += x * w1;
        s2 += x * w2;
        s3 += x * w3;
        t0 += u * w0;
        t1 += u * w1;
        t2 += u * w2;
        t3 += u * w3;
      }
      C[c0 + j] = s0;
      C[c0 + j + 1] = s1;
      C[c0 + j + 2] = s2;
      C[c0 + j + 3] = s3;
      C[c1 + j] = t0;
      C[c1 + j + 1] = t1;
      C[c1 + j + 2] = t2;
      C[c1 + j + 3] = t3;
    }
    for (; j < n; j++) {
      let s = bias[biasOff + j];
      let t = s;
      for (let p = 0, b = bOff + j; p < k; p++, b += n) {
        const w = B[b];
        s += A[a0 + p] * w;
        t += A[a1 + p] * w;
      }
      C[c0 + j] = s;
      C[c1 + j] = t;
    }
  }
  for (; i < m; i++) {
    const a0 = i * k;
    for (let j = 0; j < n; j++) {
      let s = bias[biasOff + j];
      for (let p = 0, b = bOff + j; p < k; p++, b += n) s += A[a0 + p] * B[b];
      C[i * n + j] = s;
    }
  }
}

/**
 * C (k x n, at cOff) = A^T @ B for A (m x k) and B (m x n), overwriting C. The rows are taken in
 * cache-sized bands; each output carries its running sum from band to band, so it is still summed
 * in row order.
 */
export function matmulTN(A, B, C, cOff, m, k, n) {
  for (let i0 = 0; i0 < m; i0 += BAND_ROWS) {
    const i1 = Math.min(i0 + BAND_ROWS, m);
    const first = i0 === 0;
    let p = 0;
    for (; p + 1 < k; p += 2) {
      const c0 = cOff + p * n;
      const c1 = c0 + n;
      let j = 0;
      for (; j + 3 < n; j += 4) {
        let s0 = first ? 0 : C[c0 + j];
        let s1 = first ? 0 : C[c0 + j + 1];
        let s2 = first ? 0 : C[c0 + j + 2];
        let s3 = first ? 0 : C[c0 + j + 3];
        let t0 = first ? 0 : C[c1 + j];
        let t1 = first ? 0 : C[c1 + j + 1];
        let t2 = first ? 0 : C[c1 + j + 2];
        let t3 = first ? 0 : C[c1 + j + 3];
        for (let i = i0, a = i0 * k + p, b = i0 * n + j; i < i1; i++, a += k, b += n) {
          const x = A[a];
          const u = A[a + 1];
          const g0 = B[b];
          const g1 = B[b + 1];
          const g2 = B[b + 2];
          const g3 = B[b + 3];
          s0 += x * g0;
          s1 += x * g1;
          s2 += x * g2;
          s3 += x * g3;
          t0 += u * g0;
          t1 += u * g1;
          t2 += u * g2;
          t3 += u * g3;
        }
        C[c0 + j] = s0;
        C[c0 + j + 1] = s1;
        C[c0 + j + 2] = s2;
        C[c0 + j + 3] = s3;
        C[c1 + j] = t0;
        C[c1 + j + 1] = t1;
        C[c1 + j + 2] = t2;
        C[c1 + j + 3] = t3;
      }
      for (; j < n; j++) {
        let s = first ? 0 : C[c0 + j];
        let t = first ? 0 : C[c1 + j];
        for (let i = i0, a = i0 * k + p, b = i0 * n + j; i < i1; i++, a += k, b += n) {
          const g = B[b];
          s += A[a] * g;
          t += A[a + 1] * g;
        }
        C[c0 + j] = s;
        C[c1 + j] = t;
      }
    }
    for (; p < k; p++) {
      const c0 = cOff + p * n;
      for (let j = 0; j < n; j++) {
        let s = first ? 0 : C[c0 + j];
        for (let i = i0, a = i0 * k + p, b = i0 * n + j; i < i1; i++, a += k, b += n) {
          s += A[a] * B[b];
        }
        C[c0 + j] = s;
      }
    }
  }
}

/** C (m x n) = A @ B^T for A (m x k) and B (n x k, at bOff), overwriting C. */
export function matmulNT(A, B, bOff, C, m, k, n) {
  let i = 0;
  for (; i + 1 < m; i += 2) {
    const a0 = i * k;
    const a1 = a0 + k;
    const c0 = i * n;
    const c1 = c0 + n;
    let j = 0;
    for (; j + 1 < n; j += 2) {
      const b0 = bOff + j * k;
      const b1 = b0 + k;
      let s0 = 0;
      let s1 = 0;
      let t0 = 0;
      let t1 = 0;
      for (let p = 0; p < k; p++) {
        const x = A[a0 + p];
        const u = A[a1 + p];
        const w0 = B[b0 + p];
        const w1 = B[b1 + p];
        s0 += x * w0;
        s1 += x * w1;
        t0 += u * w0;
        t1 += u * w1;
      }
      C[c0 + j] = s0;
      C[c0 + j + 1] = s1;
      C[c1 + j] = t0;
      C[c1 + j + 1] = t1;
    }
    for (; j < n; j++) {
      const b0 = bOff + j * k;
      let s = 0;
      let t = 0;
      for (let p = 0; p < k; p++) {
        const w = B[b0 + p];
        s += A[a0 + p] * w;
        t += A[a1 + p] * w;
      }
      C[c0 + j] = s;
      C[c1 + j] = t;
    }
  }
  for (; i < m; i++) {
    const a0 = i * k;
    for (let j = 0; j < n; j++) {
      const b0 = bOff + j * k;
      let s = 0;
      for (let p = 0; p < k; p++) s += A[a0 + p] * B[b0 + p];
      C[i * n + j] = s;
    }
  }
}

/** C (n, at cOff) = the column sums of A (m x n), overwriting C. */
export function columnSums(A, m, n, C, cOff) {
  for (let j = 0; j < n; j++) C[cOff + j] = 0;
  for (let i = 0, a = 0; i < m; i++, a += n) {
    for (let j = 0; j < n; j++) C[cOff + j] += A[a + j];
  }
}

/** Index of the first largest of `c` values starting at `o` (numpy's argmax tie rule). */
export function argmaxRow(values, o, c) {
  let best = 0;
  let max = values[o];
  for (let j = 1; j < c; j++) {
    if (values[o + j] > max) {
      max = values[o + j];
      best = j;
    }
  }
  return best;
}

// The regularized objective on m gathered rows: mean cross-entropy + l2/2 ||w||^2
// + mu/2 ||w - anchor||^2 (the last only with an anchor and mu > 0). Overwrites `grad`.
function objective(model, w, xb, yb, m, config, ws, anchor, grad) {
  let loss = model.dataLossAndGrad(w, xb, yb, m, config, ws, grad);
  const p = w.length;
  const l2 = config.l2;
  if (l2 > 0) {
    let sq = 0;
    for (let i = 0; i < p; i++) {
      sq += w[i] * w[i];
      grad[i] += l2 * w[i];
    }
    loss += 0.5 * l2 * sq;
  }
  const mu = config.mu;
  if (anchor !== null && mu > 0) {
    let sq = 0;
    for (let i = 0; i < p; i++) {
      const diff = w[i] - anchor[i];
      sq += diff * diff;
      grad[i] += mu * diff;
    }
    loss += 0.5 * mu * sq;
  }
  return loss;
}

/** The objective and its float32 gradient on all of `data`; see the model module. */
export function lossAndGradOf(model, weights, data, config, anchor = null) {
  const p = model.numParams(config);
  const w = checkedWeights(weights, p);
  const reference = anchor == null ? null : checkedWeights(anchor, p, "anchor weights");
  const { X, y, n, d } = checkedData(data, config);
  const xb = new Float64Array(n * d);
  gatherRange(X, null, d, 0, n, xb, null);
  const grad = new Float64Array(p);
  const loss = objective(model, w, xb, y, n, config, model.workspace(config, n), reference, grad);
  return { loss, grad: Float32Array.from(grad) };
}

function checkedBatchOrder(batchOrder, n) {
  if (typeof batchOrder.length !== "number") {
    throw new TypeError("batchOrder must be an array of batches of row indices.");
  }
  const batches = [];
  for (const batch of batchOrder) {
    if (batch == null || typeof batch.length !== "number" || batch.length === 0) {
      throw new RangeError("Each batch in batchOrder must be a non-empty array of row indices.");
    }
    const rows = Int32Array.from(batch);
    for (let i = 0; i < batch.length; i++) {
      const row = batch[i];
      if (!Number.isInteger(row)) {
        throw new RangeError("Each batch in batchOrder must hold integer row indices.");
      }
      if (row < 0 || row >= n) throw new RangeError(`batchOrder indices must lie in [0, ${n}).`);
    }
    batches.push(rows);
  }
  return batches;
}

/** A xoshiro128** generator of uint32 values, seeded from a non-negative integer seed. */
export function makeRng(seed) {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`The seed must be a non-negative integer, got ${seed}.`);
  }
  let mix = (seed >>> 0) ^ Math.imul(Math.floor(seed / 4294967296) >>> 0, 0x85ebca6b);
  const splitmix32 = () => {
    mix = (mix + 0x9e3779b9) | 0;
    let z = mix;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix32();
  let b = splitmix32();
  let c = splitmix32();
  let d = splitmix32();
  const next = () => {
    const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result;
  };
  /** Uniform integer in [0, bound), bound <= 2**32, without modulo bias. */
  const below = (bound) => {
    const limit = 4294967296 - (4294967296 % bound);
    let u = next();
    while (u >= limit) u = next();
    return u % bound;
  };
  return { next, below };
}

function rotl(x, k) {
  return (x << k) | (x >>> (32 - k));
}

/**
 * The seeded batches: for each of `epochs` epochs a Fisher-Yates shuffle of 0..n-1 from one
 * `makeRng(seed)` generator, cut into consecutive Int32Array batches of `batchSize`.
 */
export function shuffledBatches(n, epochs, batchSize, seed) {
  if (!Number.isInteger(epochs) || epochs < 1) throw new RangeError("epochs must be >= 1.");
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError("batch_size must be >= 1.");
  }
  const rng = makeRng(seed);
  const batches = [];
  for (let epoch = 0; epoch < epochs; epoch++) {
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = rng.below(i + 1);
      const t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    for (let start = 0; start < n; start += batchSize) {
      batches.push(order.subarray(start, Math.min(start + batchSize, n)));
    }
  }
  return batches;
}

/**
 * Local mini-batch SGD; see the model module. Returns `{weights, metrics}` with a new
 * Float32Array and the metrics of kernels/kernel.py's train: mean cross-entropy (without the l2
 * and proximal terms) and accuracy on all of `data` after training, and the row count.
 */
export function trainOf(model, weights, data, config, { batchOrder = null, seed } = {}) {
  const p = model.numParams(config);
  const w = checkedWeights(weights, p);
  const { X, y, n, d } = checkedData(data, config);
  const batches =
    batchOrder == null
      ? shuffledBatches(n, config.epochs, config.batch_size, seed ?? config.seed)
      : checkedBatchOrder(batchOrder, n);
  let rows = 0;
  for (const batch of batches) rows = Math.max(rows, batch.length);
  const ws = model.workspace(config, rows);
  const xb = new Float64Array(rows * d);
  const yb = new Int32Array(rows);
  const grad = new Float64Array(p);
  const anchor = config.mu > 0 ? w.slice() : null;
  const lr = Math.fround(config.lr);
  for (const batch of batches) {
    const m = batch.length;
    gather(X, y, d, batch, 0, m, xb, yb);
    objective(model, w, xb, yb, m, config, ws, anchor, grad);
    for (let i = 0; i < p; i++) {
      w[i] = Math.fround(w[i] - Math.fround(Math.fround(grad[i]) * lr));
    }
  }
  return { weights: Float32Array.from(w), metrics: metrics(model, w, X, y, n, d, config) };
}

// Visit `X` in chunks of gathered rows and call `visit(logits, from, m)` for each.
function forEachChunk(model, w, X, y, n, d, config, visit) {
  const rows = Math.min(n, CHUNK_ROWS);
  const ws = model.workspace(config, rows);
  const xb = new Float64Array(rows * d);
  const yb = new Int32Array(rows);
  for (let from = 0; from < n; from += rows) {
    const to = Math.min(from + rows, n);
    gatherRange(X, y, d, from, to, xb, yb);
    visit(model.logits(w, xb, to - from, config, ws), yb, from, to - from);
  }
}

function metrics(model, w, X, y, n, d, config) {
  const c = config.n_classes;
  let total = 0;
  let correct = 0;
  forEachChunk(model, w, X, y, n, d, config, (logits, yb, from, m) => {
    total += softmaxCrossEntropy(logits, yb, m, c);
    for (let i = 0; i < m; i++) if (argmaxRow(logits, i * c, c) === yb[i]) correct++;
  });
  return { loss: total / n, accuracy: correct / n, num_samples: n };
}

/** `{loss: mean cross-entropy, accuracy, num_samples}` of the weights on `data`. */
export function evaluateOf(model, weights, data, config) {
  const w = checkedWeights(weights, model.numParams(config));
  const { X, y, n, d } = checkedData(data, config);
  return metrics(model, w, X, y, n, d, config);
}

/** The predicted class of every row of `data.X`, as an Int32Array (y is not needed). */
export function predictOf(model, weights, data, config) {
  const w = checkedWeights(weights, model.numParams(config));
  const { X, n, d } = checkedData(data, config, { withLabels: false, nonEmpty: false });
  const c = config.n_classes;
  const out = new Int32Array(n);
  if (n === 0) return out;
  forEachChunk(model, w, X, null, n, d, config, (logits, _yb, from, m) => {
    for (let i = 0; i < m; i++) out[from + i] = argmaxRow(logits, i * c, c);
  });
  return out;
}
