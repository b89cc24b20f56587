// Node side of bench/kernels_js.py: times local training of the JavaScript kernels on the data
// and batch order that script writes, and prints one JSON object on stdout.
//
// Usage: node bench/kernels_js.mjs <dir> where <dir> holds meta.json ({n, d, repeat, runs:
// [{kernel, config, weights}]}), X.f32 (n*d float32, row-major), y.i32 (n int32) and order.i32
// (the epoch's row permutation, cut into batches of config.batch_size). Each run is trained once
// untimed (JIT warm-up), then `repeat` times; the output gives every time in seconds and the
// metrics of the last run.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

import * as mlp from "../kernels/mlp.js";
import * as softmax from "../kernels/softmax.js";

const KERNELS = { softmax, mlp };

function typed(path, Type) {
  const bytes = readFileSync(path);
  return new Type(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node bench/kernels_js.mjs <dir>");
  process.exit(2);
}
const meta = JSON.parse(readFileSync(join(dir, "meta.json"), "utf8"));
const data = {
  X: typed(join(dir, "X.f32"), Float32Array),
  y: typed(join(dir, "y.i32"), Int32Array),
  n: meta.n,
  d: meta.d,
};
const order = typed(join(dir, "order.i32"), Int32Array);

const results = [];
for (const run of meta.runs) {
  const kernel = KERNELS[run.kernel];
  const size = run.config.batch_size;
  const batchOrder = [];
  for (let start = 0; start < order.length; start += size) {
    batchOrder.push(order.subarray(start, Math.min(start + size, order.length)));
  }
  const weights = Float32Array.from(run.weights);
  kernel.train(weights, data, run.config, { batchOrder });
  const seconds = [];
  let metrics = null;
  for (let r = 0; r < meta.repeat; r++) {
    const start = performance.now();
    ({ metrics } = kernel.train(weights, data, run.config, { batchOrder }));
    seconds.push((performance.now() - start) / 1000);
  }
  results.push({ kernel: run.kernel, seconds, metrics });
}
console.log(JSON.stringify({ node: process.version, results }));
