// The "mlp" train kernel in JavaScript, the twin of kernels/mlp.py: one hidden ReLU layer and a
// softmax output. This file owns the model (layout, forward and backward pass); the objective,
// SGD loop, checks and metrics are shared with softmax.js in train.js.
//
// Flat layout, d = n_features, h = hidden, c = n_classes, matrices row-major, d*h + h + h*c + c
// float32 values: W1 (d x h), b1 (h), W2 (h x c), b2 (c). Logits are relu(X @ W1 + b1) @ W2 + b2;
// the ReLU's derivative is taken as 0 at 0, as in numpy.
//
// Objective: mean cross-entropy + l2/2 ||w||^2 (whole vector, biases included)
// + mu/2 ||w - anchor||^2 (FedProx; in train the anchor is the starting weights when mu > 0).
//
// API (config is the resolved config the server sends, with `hidden`; data is
// {X: Float32Array n*d row-major, y: Int32Array, n, d}; weights a Float32Array as above):
//   name, numParams(config),
//   lossAndGrad(weights, data, config, anchor = null) -> {loss, grad: Float32Array},
//   train(weights, data, config, {batchOrder = null, seed} = {})
//     -> {weights: new Float32Array, metrics: {loss, accuracy, num_samples}},
//   evaluate(weights, data, config) -> {loss, accuracy, num_samples},
//   predict(weights, data, config) -> Int32Array.

import {
  columnSums,
  evaluateOf,
  lossAndGradOf,
  matmulBias,
  matmulNT,
  matmulTN,
  predictOf,
  softmaxCrossEntropy,
  trainOf,
} from "./train.js";

export const name = "mlp";

function dims(config) {
  const hidden = config.hidden;
  if (!Number.isInteger(hidden) || hidden < 1) {
    throw new RangeError(`config.hidden must be a positive integer, got ${hidden}.`);
  }
  return [config.n_features, hidden, config.n_classes];
}

/** Return d*h + h + h*c + c. */
export function numParams(config) {
  const [d, h, c] = dims(config);
  return d * h + h + h * c + c;
}

// Scratch buffers for up to `rows` rows: the hidden activations `hid`, their gradient `dh`, and
// the logits `z`, overwritten in place by their gradient.
function workspace(config, rows) {
  const [, h, c] = dims(config);
  const m = Math.max(rows, 1);
  return { hid: new Float64Array(m * h), dh: new Float64Array(m * h), z: new Float64Array(m * c) };
}

// hid = relu(X @ W1 + b1), z = hid @ W2 + b2 for m gathered rows.
function forward(w, X, m, d, h, c, ws) {
  const { hid, z } = ws;
  const b1 = d * h;
  const w2 = b1 + h;
  matmulBias(X, w, 0, w, b1, hid, m, d, h);
  const count = m * h;
  for (let i = 0; i < count; i++) if (!(hid[i] > 0)) hid[i] = 0;
  matmulBias(hid, w, w2, w, w2 + h * c, z, m, h, c);
  return z;
}

function logits(w, X, m, config, ws) {
  const [d, h, c] = dims(config);
  return forward(w, X, m, d, h, c, ws);
}

// Mean cross-entropy of m gathered rows; overwrite `grad` with its gradient:
// dW2 = hid^T dz, db2 = sums of dz, dh = (dz @ W2^T) * (pre > 0), dW1 = X^T dh, db1 = sums of dh.
// A hidden unit is active exactly when its ReLU output is positive, so `hid > 0` is the mask.
function dataLossAndGrad(w, X, y, m, config, ws, grad) {
  const [d, h, c] = dims(config);
  const z = forward(w, X, m, d, h, c, ws);
  const loss = softmaxCrossEntropy(z, y, m, c, z) / m;
  const { hid, dh } = ws;
  const b1 = d * h;
  const w2 = b1 + h;
  matmulTN(hid, z, grad, w2, m, h, c);
  columnSums(z, m, c, grad, w2 + h * c);
  matmulNT(z, w, w2, dh, m, c, h);
  const count = m * h;
  for (let i = 0; i < count; i++) if (hid[i] === 0) dh[i] = 0;
  matmulTN(X, dh, grad, 0, m, d, h);
  columnSums(dh, m, h, grad, b1);
  return loss;
}

const model = { name, numParams, workspace, logits, dataLossAndGrad };

/** The objective and its float32 gradient on all of `data` (anchor: FedProx reference). */
export function lossAndGrad(weights, data, config, anchor = null) {
  return lossAndGradOf(model, weights, data, config, anchor);
}

/** Local mini-batch SGD from `weights`, which are not modified; see train.js. */
export function train(weights, data, config, options = {}) {
  return trainOf(model, weights, data, config, options);
}

/** Mean cross-entropy, accuracy and row count of the weights on `data`. */
export function evaluate(weights, data, config) {
  return evaluateOf(model, weights, data, config);
}

/** The predicted class (first largest logit) of every row, as an Int32Array. */
export function predict(weights, data, config) {
  return predictOf(model, weights, data, config);
}
