// The "softmax" train kernel in JavaScript, the twin of kernels/softmax.py: multinomial logistic
// regression. This file owns the model (layout, logits, cross-entropy gradient); the objective,
// SGD loop, checks and metrics are shared with mlp.js in train.js.
//
// Flat layout, d = n_features, c = n_classes, d*c + c float32 values: W (d x c, row-major, so
// W[i, k] is at i*c + k) followed by b (c). Logits are X @ W + b.
//
// Objective: mean cross-entropy + l2/2 ||w||^2 (whole vector, biases included)
// + mu/2 ||w - anchor||^2 (FedProx; in train the anchor is the starting weights when mu > 0).
//
// API (config is the resolved config the server sends; data is {X: Float32Array n*d row-major,
// y: Int32Array, n, d}; weights a Float32Array in the layout above):
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
  matmulTN,
  predictOf,
  softmaxCrossEntropy,
  trainOf,
} from "./train.js";

export const name = "softmax";

/** Return d*c + c. */
export function numParams(config) {
  return config.n_features * config.n_classes + config.n_classes;
}

// Scratch buffers for up to `rows` rows: the logits, overwritten in place by their gradient.
function workspace(config, rows) {
  return { z: new Float64Array(Math.max(rows, 1) * config.n_classes) };
}

// z = X @ W + b for m gathered rows.
function logits(w, X, m, config, ws) {
  const d = config.n_features;
  const c = config.n_classes;
  matmulBias(X, w, 0, w, d * c, ws.z, m, d, c);
  return ws.z;
}

// Mean cross-entropy of m gathered rows; overwrite `grad` with its gradient:
// dW = X^T dz, db = column sums of dz.
function dataLossAndGrad(w, X, y, m, config, ws, grad) {
  const d = config.n_features;
  const c = config.n_classes;
  const z = logits(w, X, m, config, ws);
  const loss = softmaxCrossEntropy(z, y, m, c, z) / m;
  matmulTN(X, z, grad, 0, m, d, c);
  columnSums(z, m, c, grad, d * c);
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
