// The "sweep" compute kernel in JavaScript, the twin of kernels/sweep.py: orbit summaries of the
// logistic map x' = (r * x) * (1 - x) over a grid of r values.
//
// Config (resolved by the server, see sweep.py): {r_min, r_max, steps, x0, burn_in, iterations}.
// The space is the grid indices [0, steps); r_i = i * delta + r_min with
// delta = (r_max - r_min) / (steps - 1), r_(steps-1) = r_max, and r_0 = r_min when steps is 1.
// For each r the orbit from x0 is iterated burn_in times, then over `iterations` more points
// x_k the kernel reports mean (sum in order / iterations), min, max, and
// lyapunov = (sum in order of log(max(|(1 - x_k * 2) * r|, DERIVATIVE_FLOOR))) / iterations.
// The operations are those of the numpy kernel in the same order, so r, mean, min and max are
// bit-identical to numpy's and lyapunov differs at most in the last bits of Math.log.
//
// A result is {start, stop, r, mean, min, max, lyapunov}, each a list over the unit's grid
// points; reduce concatenates them in grid order.
//
// API: as in primes.js (name, exactFields, floatFields, rtol, atol, space, rate, cost, split,
// splitRange, run, agree, reduce).
//
// Plain ES module importing only ./compute.js: it runs unchanged in a browser (Web Worker)
// and under Node.

import { agreeWith, checkedRange, splitWith, tiled } from "./compute.js";

export const name = "sweep";
export const exactFields = [];
export const floatFields = ["r", "mean", "min", "max", "lyapunov"];
export const rtol = 1e-9;
export const atol = 1e-12;
export const DERIVATIVE_FLOOR = 1e-300;
export const MAX_UNITS = 100000;

const RATE_BURN_IN = 1.5e-9;
const RATE_ITERATION = 6e-9;

/** r at grid index i. */
export function gridValue(config, i) {
  const steps = config.steps;
  if (steps === 1) return config.r_min;
  if (i === steps - 1) return config.r_max;
  const delta = (config.r_max - config.r_min) / (steps - 1);
  return i * delta + config.r_min;
}

/** {mean, min, max, lyapunov} of the orbit of the logistic map at r. */
export function orbitSummary(config, r) {
  let x = config.x0;
  for (let k = 0; k < config.burn_in; k++) x = r * x * (1 - x);
  let total = 0;
  let lowest = x;
  let highest = x;
  let lyapunov = 0;
  for (let k = 0; k < config.iterations; k++) {
    total += x;
    if (x < lowest) lowest = x;
    if (x > highest) highest = x;
    lyapunov += Math.log(Math.max(Math.abs((1 - x * 2) * r), DERIVATIVE_FLOOR));
    x = r * x * (1 - x);
  }
  return {
    mean: total / config.iterations,
    min: lowest,
    max: highest,
    lyapunov: lyapunov / config.iterations,
  };
}

export function space(config) {
  return [0, config.steps];
}

/** Cost per grid point in work units. */
export function rate(config, index) {
  return RATE_BURN_IN * config.burn_in + RATE_ITERATION * config.iterations;
}

/** Cost of the grid points [start, stop): (stop - start) * rate(config, stop - 1). */
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

export function run(unit, config) {
  const [start, stop] = checkedRange(space(config), unit?.start, unit?.stop);
  const result = { start, stop, r: [], mean: [], min: [], max: [], lyapunov: [] };
  for (let i = start; i < stop; i++) {
    const r = gridValue(config, i);
    const summary = orbitSummary(config, r);
    result.r.push(r);
    for (const field of ["mean", "min", "max", "lyapunov"]) result[field].push(summary[field]);
  }
  return result;
}

export function agree(a, b, config) {
  return agreeWith(exactFields, floatFields, rtol, atol, a, b);
}

export function reduce(results, config) {
  const ordered = tiled(space(config), results);
  const reduced = {};
  for (const field of floatFields) reduced[field] = ordered.flatMap((result) => result[field]);
  return reduced;
}
