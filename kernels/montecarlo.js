// The "montecarlo" compute kernel in JavaScript, the twin of kernels/montecarlo.py: seeded Monte
// Carlo estimates of pi and of a European call option price, reproducible unit by unit.
//
// Config (resolved by the server, see montecarlo.py): {problem: "pi" | "option", samples, seed,
// S0, K, r, sigma, T}. The space is the sample numbers [0, samples). Sample i uses the
// Philox4x32-10 block at position i of stream STREAMS[problem] under the key `seed` (rng.js);
// its words w0..w3 give a = uniform53(w0, w1) and b = uniform53(w2, w3).
//   pi:     hit when a * a + b * b < 1; value 4 * hit.
//   option: z = sqrt(-2 log(1 - a)) cos(TWO_PI b), S_T = S0 exp(drift + vol z) with
//           drift = (r - 0.5 sigma sigma) T and vol = sigma sqrt(T); value max(S_T - K, 0);
//           hit when S_T - K > 0 (in the money).
// A result is {start, stop, n, hits, sum, sum_sq}. Sums follow the order of montecarlo.py:
// chunks of CHUNK samples from the unit's start, each summed as a pairwise tree over a buffer
// padded with zeros, then the chunk sums added in order from 0. hits and n match numpy exactly;
// the sums match to within rtol/atol (Math.log, Math.exp and Math.cos may differ from numpy's in
// the last bit; the pi sums are exact).
//
// API: as in primes.js (name, exactFields, floatFields, rtol, atol, space, rate, cost, split,
// splitRange, run, agree, reduce); reduce returns {problem, n, hits, estimate, std_error}.
// Also sampleValues(config, start, count) -> {values, hits} per sample and orderedSum(values),
// the sum in the kernel's order, the twins of sample_values and ordered_sum.
//
// Plain ES module importing only ./rng.js and ./compute.js: it runs unchanged in a browser (Web
// Worker) and under Node.

import { agreeWith, checkedRange, splitWith, tiled } from "./compute.js";
import { blocks, uniform53 } from "./rng.js";

export const name = "montecarlo";
export const exactFields = ["n", "hits"];
export const floatFields = ["sum", "sum_sq"];
export const rtol = 1e-9;
export const atol = 1e-9;
export const CHUNK = 4096;
export const STREAMS = { pi: 0, option: 1 };
export const MAX_UNITS = 100000;

const TWO_PI = 2 * Math.PI;
const RATE = { pi: 7e-8, option: 9e-8 };

/** [drift, vol] of the log-price: [(r - sigma^2 / 2) T, sigma sqrt(T)]. */
export function optionTerms(config) {
  const sigma = config.sigma;
  return [(config.r - 0.5 * sigma * sigma) * config.T, sigma * Math.sqrt(config.T)];
}

/** Sum a buffer of CHUNK values as a pairwise tree, in place (the buffer is overwritten). */
export function treeSum(buffer) {
  for (let width = buffer.length / 2; width >= 1; width /= 2) {
    for (let i = 0; i < width; i++) buffer[i] = buffer[2 * i] + buffer[2 * i + 1];
  }
  return buffer[0];
}

export function space(config) {
  return [0, config.samples];
}

/** Cost per sample in work units. */
export function rate(config, index) {
  return RATE[config.problem];
}

/** Cost of the samples [start, stop): (stop - start) * rate(config, stop - 1). */
export function cost(config, start, stop) {
  return stop <= start ? 0 : (stop - start) * rate(config, stop - 1);
}

export function split(config, { targetCost, maxUnits = MAX_UNITS } = {}) {
  const [start, stop] = space(config);
  return splitRange(config, start, stop, { targetCost, maxUnits });
}

export function splitRange(config, start, stop, { targetCost, maxUnits = MAX_UNITS } = {}) {
  return splitWith(space, rate, cost, config, start, stop, targetCost, maxUnits);
}

/**
 * Values and hit flags of samples start .. start + count - 1, written into `values` and `hits`
 * (from index 0) when given; `words` is optional scratch space for 4 * count uint32 words.
 */
export function sampleValues(config, start, count, buffers = {}) {
  const words = blocks(config.seed, STREAMS[config.problem], start, count, buffers.words ?? null);
  const values = buffers.values ?? new Float64Array(count);
  const hits = buffers.hits ?? new Uint8Array(count);
  const option = config.problem === "option";
  const [drift, vol] = optionTerms(config);
  const { S0, K } = config;
  for (let i = 0; i < count; i++) {
    const a = uniform53(words[4 * i], words[4 * i + 1]);
    const b = uniform53(words[4 * i + 2], words[4 * i + 3]);
    if (option) {
      const z = Math.sqrt(-2 * Math.log(1 - a)) * Math.cos(TWO_PI * b);
      const excess = S0 * Math.exp(drift + vol * z) - K;
      hits[i] = excess > 0 ? 1 : 0;
      values[i] = excess > 0 ? excess : 0;
    } else {
      hits[i] = a * a + b * b < 1 ? 1 : 0;
      values[i] = 4 * hits[i];
    }
  }
  return { values, hits };
}

/** Add the CHUNK-wise pairwise-tree sums of `values` to `total` in order (as montecarlo.py). */
export function orderedSum(values, total = 0) {
  const buffer = new Float64Array(CHUNK);
  for (let at = 0; at < values.length; at += CHUNK) {
    const count = Math.min(CHUNK, values.length - at);
    buffer.set(values.subarray(at, at + count));
    buffer.fill(0, count);
    total += treeSum(buffer);
  }
  return total;
}

export function run(unit, config) {
  const [start, stop] = checkedRange(space(config), unit?.start, unit?.stop);
  const option = config.problem === "option";
  const buffers = {
    words: new Uint32Array(4 * CHUNK),
    values: new Float64Array(CHUNK),
    hits: new Uint8Array(CHUNK),
  };
  const squares = new Float64Array(CHUNK);
  let hits = 0;
  let sum = 0;
  let sumSq = 0;
  for (let at = start; at < stop; at += CHUNK) {
    const count = Math.min(CHUNK, stop - at);
    const { values, hits: hit } = sampleValues(config, at, count, buffers);
    for (let i = 0; i < count; i++) hits += hit[i];
    if (option) {
      values.fill(0, count);
      for (let i = 0; i < CHUNK; i++) squares[i] = values[i] * values[i];
      sum += treeSum(values);
      sumSq += treeSum(squares);
    }
  }
  if (!option) {
    sum = 4 * hits;
    sumSq = 16 * hits;
  }
  return { start, stop, n: stop - start, hits, sum, sum_sq: sumSq };
}

export function agree(a, b, config) {
  return agreeWith(exactFields, floatFields, rtol, atol, a, b);
}

export function reduce(results, config) {
  const ordered = tiled(space(config), results);
  let n = 0;
  let hits = 0;
  let sum = 0;
  let sumSq = 0;
  for (const result of ordered) {
    n += result.n;
    hits += result.hits;
    sum += result.sum;
    sumSq += result.sum_sq;
  }
  let mean = sum / n;
  const variance = n > 1 ? Math.max((sumSq - sum * mean) / (n - 1), 0) : 0;
  let error = Math.sqrt(variance / n);
  if (config.problem === "option") {
    const discount = Math.exp(-config.r * config.T);
    mean = discount * mean;
    error = discount * error;
  }
  return { problem: config.problem, n, hits, estimate: mean, std_error: error };
}
