// Tests of the JavaScript train kernels (softmax.js, mlp.js, train.js) under Node's test runner.
//
// The parity tests compare against golden vectors that kernels/test_js_parity.py generates with
// the numpy kernels and names in the CCGSC_PARITY_VECTORS environment variable; without it they
// are reported as skipped. The other tests need no vectors. Run through pytest:
//   python -m pytest kernels/test_js_parity.py -q -p no:django
// or directly: CCGSC_PARITY_VECTORS=vectors.json node --test kernels/js_parity.test.mjs

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import * as mlp from "./mlp.js";
import * as softmax from "./softmax.js";
import { makeRng, shuffledBatches } from "./train.js";

const KERNELS = { softmax, mlp };
const RTOL = 1e-5;
const ATOL = 1e-6;

const vectorsPath = process.env.CCGSC_PARITY_VECTORS;
const vectors = vectorsPath ? JSON.parse(readFileSync(vectorsPath, "utf8")) : null;

/** ||a - b|| / max(||b||, tiny). */
function relNorm(a, b) {
  assert.equal(a.length, b.length, "the vectors differ in length");
  let diff = 0;
  let size = 0;
  for (let i = 0; i < b.length; i++) {
    diff += (a[i] - b[i]) ** 2;
    size += b[i] ** 2;
  }
  return Math.sqrt(diff) / Math.max(Math.sqrt(size), 1e-30);
}

function relError(a, b) {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
}

/** Assert |a - b| <= atol + rtol * |b| everywhere; return the largest |a - b|. */
function assertElementwiseClose(a, b, what, atol = ATOL, rtol = RTOL) {
  assert.equal(a.length, b.length, `${what}: the vectors differ in length`);
  let worst = 0;
  for (let i = 0; i < b.length; i++) {
    const error = Math.abs(a[i] - b[i]);
    assert.ok(
      error <= atol + rtol * Math.abs(b[i]),
      `${what}[${i}] is ${a[i]}, numpy has ${b[i]} (|diff| ${error})`,
    );
    worst = Math.max(worst, error);
  }
  return worst;
}

function assertRelNormBelow(a, b, tolerance, what) {
  const error = relNorm(a, b);
  assert.ok(error <= tolerance, `${what}: relative error ${error} exceeds ${tolerance}`);
  return error;
}

function assertRelBelow(a, b, tolerance, what) {
  const error = relError(a, b);
  assert.ok(error <= tolerance, `${what}: ${a} vs numpy's ${b}, relative error ${error}`);
  return error;
}

const fmt = (x) => x.toExponential(2);

/** A seeded problem made in JS: uniform features in [-1, 1), labels from a hidden rule. */
function smallProblem(n, d, c, seed) {
  const rng = makeRng(seed);
  const X = new Float32Array(n * d);
  for (let i = 0; i < X.length; i++) X[i] = (rng.next() / 4294967296) * 2 - 1;
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) y[i] = (X[i * d] > 0 ? 1 : 0) + (c > 2 && X[i * d + 1] > 0.3 ? 1 : 0);
  return { X, y, n, d };
}

function smallWeights(p, seed, scale = 0.2) {
  const rng = makeRng(seed);
  const w = new Float32Array(p);
  for (let i = 0; i < p; i++) w[i] = ((rng.next() / 4294967296) * 2 - 1) * scale;
  return w;
}

function smallConfig(name, overrides = {}) {
  const config = {
    dataset: null,
    n_features: 5,
    n_classes: 3,
    lr: 0.2,
    epochs: 2,
    batch_size: 4,
    mu: 0.1,
    l2: 0.01,
    seed: 3,
  };
  if (name === "mlp") config.hidden = 6;
  return { ...config, ...overrides };
}

function copyData(data) {
  return { X: data.X.slice(), y: data.y.slice(), n: data.n, d: data.d };
}

function assertDataUnchanged(data, copy) {
  assert.deepEqual(data.X, copy.X, "X was modified");
  assert.deepEqual(data.y, copy.y, "y was modified");
}

/** Count of rows whose top-two logit gap in numpy is at most `nearTie` (argmax may flip). */
function nearTies(margins, nearTie) {
  return margins.filter((m) => m <= nearTie).length;
}

describe("the JavaScript kernels match numpy on golden vectors", () => {
  if (vectors === null) {
    test("golden vectors are given", {
      skip: "set CCGSC_PARITY_VECTORS to a file written by kernels/test_js_parity.py",
    }, () => {});
    return;
  }
  test("golden vectors cover both kernels with and without regularization", () => {
    const names = new Set(vectors.cases.map((c) => c.kernel));
    assert.deepEqual([...names].sort(), ["mlp", "softmax"]);
    assert.ok(vectors.cases.some((c) => c.config.l2 > 0 && c.config.mu > 0));
    assert.ok(vectors.cases.some((c) => c.config.l2 === 0 && c.config.mu === 0));
  });
  for (const vector of vectors.cases) parityCase(vector, vectors.near_tie);
});

function parityCase(vector, nearTie) {
  const kernel = KERNELS[vector.kernel];
  const config = vector.config;
  const data = {
    X: Float32Array.from(vector.X),
    y: Int32Array.from(vector.y),
    n: vector.n,
    d: vector.d,
  };
  const held = {
    X: Float32Array.from(vector.X_eval),
    y: Int32Array.from(vector.y_eval),
    n: vector.n_eval,
    d: vector.d,
  };
  const weights = Float32Array.from(vector.weights);
  const anchor = Float32Array.from(vector.anchor);
  const batchOrder = vector.batch_order.map((rows) => Int32Array.from(rows));

  describe(vector.name, () => {
    test("numParams is the length of numpy's flat vector", () => {
      assert.equal(kernel.numParams(config), vector.weights.length);
    });

    test("lossAndGrad gives numpy's loss within 1e-5 relative", (t) => {
      const { loss } = kernel.lossAndGrad(weights, data, config, anchor);
      const e32 = assertRelBelow(loss, vector.loss, RTOL, "loss against numpy float32");
      const e64 = assertRelBelow(loss, vector.loss64, RTOL, "loss against numpy float64");
      t.diagnostic(`loss relative error: ${fmt(e32)} (numpy float32), ${fmt(e64)} (float64)`);
    });

    test("lossAndGrad gives numpy's gradient within 1e-5 relative in norm and elementwise", (t) => {
      const { grad } = kernel.lossAndGrad(weights, data, config, anchor);
      assert.ok(grad instanceof Float32Array, "the gradient is not a Float32Array");
      const n32 = assertRelNormBelow(grad, vector.grad, RTOL, "gradient against numpy float32");
      const n64 = assertRelNormBelow(grad, vector.grad64, RTOL, "gradient against numpy float64");
      const a32 = assertElementwiseClose(grad, vector.grad, "grad (numpy float32)");
      const a64 = assertElementwiseClose(grad, vector.grad64, "grad (numpy float64)");
      t.diagnostic(
        `gradient relative norm error: ${fmt(n32)} (numpy float32), ${fmt(n64)} (float64); ` +
          `max abs error: ${fmt(a32)}, ${fmt(a64)}`,
      );
    });

    test("lossAndGrad leaves its inputs untouched", () => {
      const copy = copyData(data);
      const [w, a] = [weights.slice(), anchor.slice()];
      kernel.lossAndGrad(weights, data, config, anchor);
      assertDataUnchanged(data, copy);
      assert.deepEqual(weights, w);
      assert.deepEqual(anchor, a);
    });

    test("train on numpy's batch order ends within 1e-5 relative of numpy's weights", (t) => {
      const result = kernel.train(weights, data, config, { batchOrder });
      const error = assertRelNormBelow(result.weights, vector.trained, RTOL, "trained weights");
      const moved = relNorm(vector.trained, vector.weights);
      assert.ok(moved > 100 * RTOL, `training barely moved the weights (${moved})`);
      t.diagnostic(`trained weights relative norm error: ${fmt(error)} (moved ${fmt(moved)})`);
    });

    test("train reports numpy's metrics: mean cross-entropy and accuracy after training", (t) => {
      const { metrics } = kernel.train(weights, data, config, { batchOrder });
      const expected = vector.train_metrics;
      assert.deepEqual(Object.keys(metrics).sort(), ["accuracy", "loss", "num_samples"]);
      assert.equal(metrics.num_samples, expected.num_samples);
      const error = assertRelBelow(metrics.loss, expected.loss, RTOL, "training loss");
      const flips = Math.round(Math.abs(metrics.accuracy - expected.accuracy) * vector.n);
      assert.ok(
        flips <= nearTies(vector.train_margins, nearTie),
        `accuracy ${metrics.accuracy} vs numpy's ${expected.accuracy}`,
      );
      t.diagnostic(`training loss relative error: ${fmt(error)}; accuracy flips: ${flips}`);
    });

    test("train returns a new array and leaves weights, data and the batch order untouched", () => {
      const copy = copyData(data);
      const w = weights.slice();
      const order = batchOrder.map((rows) => rows.slice());
      const result = kernel.train(weights, data, config, { batchOrder });
      assert.ok(result.weights instanceof Float32Array, "the weights are not a Float32Array");
      assert.notEqual(result.weights, weights);
      assert.notEqual(result.weights.buffer, weights.buffer);
      assert.deepEqual(weights, w);
      assertDataUnchanged(data, copy);
      assert.deepEqual(batchOrder, order);
      const shuffled = kernel.train(weights, data, config, { seed: 5 });
      assert.notEqual(shuffled.weights.buffer, weights.buffer);
      assert.deepEqual(weights, w);
      assertDataUnchanged(data, copy);
    });

    test("train with a batchOrder ignores epochs, batch_size and the seed", () => {
      const expected = kernel.train(weights, data, config, { batchOrder }).weights;
      const other = { ...config, epochs: 7, batch_size: 1, seed: config.seed + 1 };
      const actual = kernel.train(weights, data, other, { batchOrder, seed: 99 }).weights;
      assert.deepEqual(actual, expected);
    });

    test("evaluate and predict agree with numpy on held-out rows", (t) => {
      const trained = Float32Array.from(vector.trained);
      const metrics = kernel.evaluate(trained, held, config);
      const error = assertRelBelow(metrics.loss, vector.evaluate.loss, RTOL, "held-out loss");
      assert.equal(metrics.num_samples, vector.evaluate.num_samples);
      const predicted = kernel.predict(trained, held, config);
      assert.ok(predicted instanceof Int32Array, "predict did not return an Int32Array");
      assert.equal(predicted.length, vector.n_eval);
      let flips = 0;
      for (let i = 0; i < predicted.length; i++) {
        if (predicted[i] === vector.predict[i]) continue;
        flips++;
        assert.ok(
          vector.eval_margins[i] <= nearTie,
          `row ${i}: predicted ${predicted[i]}, numpy ${vector.predict[i]}`,
        );
      }
      let correct = 0;
      for (let i = 0; i < predicted.length; i++) correct += predicted[i] === held.y[i] ? 1 : 0;
      assert.equal(metrics.accuracy, correct / held.n, "accuracy disagrees with predict");
      assert.ok(Math.abs(metrics.accuracy - vector.evaluate.accuracy) * held.n <= flips + 1e-9);
      t.diagnostic(`held-out loss relative error: ${fmt(error)}; prediction flips: ${flips}`);
    });

    test("the shuffled path gives the same weights for a seed and others for another seed", () => {
      const first = kernel.train(weights, data, config, { seed: 21 });
      const second = kernel.train(weights, data, config, { seed: 21 });
      assert.deepEqual(first.weights, second.weights);
      assert.deepEqual(first.metrics, second.metrics);
      const other = kernel.train(weights, data, config, { seed: 22 });
      assert.notDeepEqual(other.weights, first.weights);
    });

    test("the shuffled path uses config.seed when no seed is given", () => {
      const implicit = kernel.train(weights, data, config).weights;
      const explicit = kernel.train(weights, data, config, { seed: config.seed }).weights;
      assert.deepEqual(implicit, explicit);
    });
  });
}

describe("the JavaScript kernels on their own", () => {
  test("numParams counts each model's flat layout", () => {
    assert.equal(softmax.numParams({ n_features: 64, n_classes: 10 }), 64 * 10 + 10);
    assert.equal(
      mlp.numParams({ n_features: 64, n_classes: 10, hidden: 32 }),
      64 * 32 + 32 + 32 * 10 + 10,
    );
    assert.equal(softmax.name, "softmax");
    assert.equal(mlp.name, "mlp");
  });

  test("shuffledBatches visits every row once per epoch in batches of batch_size", () => {
    const batches = shuffledBatches(10, 3, 4, 7);
    assert.deepEqual(
      batches.map((b) => b.length),
      [4, 4, 2, 4, 4, 2, 4, 4, 2],
    );
    for (let epoch = 0; epoch < 3; epoch++) {
      const rows = batches.slice(3 * epoch, 3 * epoch + 3).flatMap((b) => [...b]);
      assert.deepEqual(rows.toSorted((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
    const epochs = [0, 3, 6].map((s) => batches.slice(s, s + 3).flatMap((b) => [...b]).join());
    assert.equal(new Set(epochs).size, 3, "the epochs were not shuffled independently");
  });

  test("the seeded generator repeats for a seed and differs between seeds above 2**32", () => {
    const draw = (seed) => Array.from({ length: 8 }, makeRng(seed).next);
    assert.deepEqual(draw(5), draw(5));
    assert.notDeepEqual(draw(5), draw(6));
    assert.notDeepEqual(draw(5), draw(5 + 2 ** 32));
    assert.ok(draw(0).every((u) => Number.isInteger(u) && u >= 0 && u < 2 ** 32));
    assert.throws(() => makeRng(-1), RangeError);
    assert.throws(() => makeRng(1.5), RangeError);
  });

  test("every row is equally likely at every position of a shuffled epoch", () => {
    const n = 4;
    const epochs = 24000;
    const counts = Array.from({ length: n }, () => new Array(n).fill(0));
    for (const order of shuffledBatches(n, epochs, n, 12)) {
      for (let position = 0; position < n; position++) counts[position][order[position]]++;
    }
    for (const row of counts) {
      for (const count of row) assert.ok(Math.abs(count - epochs / n) < 400, `counts ${counts}`);
    }
  });

  test("the draws below a bound are roughly uniform", () => {
    const rng = makeRng(1);
    const counts = new Array(6).fill(0);
    for (let i = 0; i < 60000; i++) counts[rng.below(6)]++;
    for (const count of counts) assert.ok(Math.abs(count - 10000) < 500, `counts ${counts}`);
  });

  test("ties in the logits predict the first class, as numpy's argmax does", () => {
    const config = smallConfig("softmax");
    const data = smallProblem(9, 5, 3, 1);
    const zeros = new Float32Array(softmax.numParams(config));
    assert.deepEqual(softmax.predict(zeros, data, config), new Int32Array(9));
    const metrics = softmax.evaluate(zeros, data, config);
    assert.ok(Math.abs(metrics.loss - Math.log(3)) < 1e-12, `loss ${metrics.loss}`);
  });

  for (const [name, kernel] of Object.entries(KERNELS)) {
    test(`${name}: one explicit batch is exactly one float32 SGD step of lr times gradient`, () => {
      const config = smallConfig(name);
      const data = smallProblem(12, 5, 3, 2);
      const weights = smallWeights(kernel.numParams(config), 4);
      const rows = Int32Array.from([4, 0, 9]);
      const batch = {
        X: Float32Array.from([...rows].flatMap((r) => [...data.X.subarray(r * 5, r * 5 + 5)])),
        y: Int32Array.from([...rows].map((r) => data.y[r])),
        n: 3,
        d: 5,
      };
      const { grad } = kernel.lossAndGrad(weights, batch, config, weights);
      const lr = Math.fround(config.lr);
      const expected = weights.map((w, i) => Math.fround(w - Math.fround(grad[i] * lr)));
      const { weights: actual } = kernel.train(weights, data, config, { batchOrder: [rows] });
      assert.deepEqual(actual, expected);
    });

    test(`${name}: the proximal term is mu/2 ||w - anchor||^2 and vanishes when mu is 0`, () => {
      const data = smallProblem(12, 5, 3, 2);
      const plain = smallConfig(name, { mu: 0, l2: 0 });
      const weights = smallWeights(kernel.numParams(plain), 4);
      const anchor = weights.map((w) => w + 0.25);
      const without = kernel.lossAndGrad(weights, data, plain);
      const ignored = kernel.lossAndGrad(weights, data, plain, anchor);
      assert.equal(ignored.loss, without.loss);
      assert.deepEqual(ignored.grad, without.grad);
      const prox = kernel.lossAndGrad(weights, data, { ...plain, mu: 2 }, anchor);
      let sq = 0;
      for (let i = 0; i < weights.length; i++) sq += (weights[i] - anchor[i]) ** 2;
      assert.ok(Math.abs(prox.loss - without.loss - sq) < 1e-9);
      const expected = without.grad.map((g, i) => g + 2 * (weights[i] - anchor[i]));
      assertElementwiseClose(prox.grad, expected, "proximal gradient");
    });

    test(`${name}: the loss falls when training on the shuffled path`, () => {
      const config = smallConfig(name, { epochs: 30, mu: 0, l2: 0 });
      const data = smallProblem(40, 5, 3, 8);
      const weights = smallWeights(kernel.numParams(config), 9);
      const before = kernel.evaluate(weights, data, config);
      const { metrics } = kernel.train(weights, data, config);
      assert.ok(metrics.loss < 0.7 * before.loss, `${before.loss} -> ${metrics.loss}`);
      assert.equal(metrics.num_samples, 40);
    });

    test(`${name}: bad weights, data, labels and batches are rejected`, () => {
      const config = smallConfig(name);
      const data = smallProblem(6, 5, 3, 2);
      const weights = smallWeights(kernel.numParams(config), 4);
      const short = weights.subarray(1);
      assert.throws(() => kernel.train(short, data, config), /flat vector of \d+ weights/);
      const nan = weights.slice();
      nan[3] = NaN;
      assert.throws(() => kernel.lossAndGrad(nan, data, config), /finite/);
      const empty = { X: new Float32Array(0), y: new Int32Array(0), n: 0, d: 5 };
      assert.throws(() => kernel.evaluate(weights, empty, config), /empty/);
      assert.equal(kernel.predict(weights, empty, config).length, 0);
      const badLabel = { ...data, y: Int32Array.from([0, 1, 2, 3, 0, 1]) };
      assert.throws(() => kernel.train(weights, badLabel, config), /Labels must lie in \[0, 3\)/);
      const wide = { ...data, d: 6 };
      assert.throws(() => kernel.evaluate(weights, wide, config), /n_features/);
      assert.throws(
        () => kernel.train(weights, data, config, { batchOrder: [[0, 6]] }),
        /indices must lie in \[0, 6\)/,
      );
      assert.throws(
        () => kernel.train(weights, data, config, { batchOrder: [[]] }),
        /non-empty/,
      );
      assert.throws(
        () => kernel.train(weights, data, config, { batchOrder: [[0.5]] }),
        /integer/,
      );
    });
  }
});
