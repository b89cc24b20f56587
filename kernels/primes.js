// The "primes" compute kernel in JavaScript, the twin of kernels/primes.py: count the primes in
// an integer range with a segmented sieve of Eratosthenes. Counts equal numpy's exactly.
//
// Config (resolved by the server, see primes.py): {lo, hi}, 0 <= lo <= hi <= 10**12. The space
// is the index range [lo, hi + 1); a unit {start, stop, cost} counts the primes p with
// start <= p < stop. All integers stay below 2**53, so plain numbers are exact.
//
// Sieve: base primes up to isqrt(stop - 1) by a sieve over odd numbers, then segments of
// SEGMENT_BYTES odd numbers (a Uint8Array; index j stands for low + 2 j) in which each base prime
// p clears its odd multiples from max(p * p, first multiple >= low). 2 is counted separately.
//
// API, shared by the compute kernels (montecarlo.js, sweep.js):
//   name, exactFields, floatFields, rtol, atol,
//   space(config) -> [start, stop], rate(config, index), cost(config, start, stop),
//   split(config, {targetCost, maxUnits}) -> [{start, stop, cost}, ...] covering the space,
//   splitRange(config, start, stop, {targetCost, maxUnits}) -> the same for a part of it,
//   run(unit, config) -> {start, stop, count},
//   agree(a, b, config) -> whether two results of a unit match (counts exactly),
//   reduce(results, config) -> {lo, hi, count}, results in any order tiling the space.
// Unit costs are computed with the same operations as compute.py, so both cut identical units.
//
// Plain ES module importing only ./compute.js: it runs unchanged in a browser (Web Worker)
// and under Node.

import { agreeWith, checkedRange, splitWith, tiled } from "./compute.js";

export const name = "primes";
export const exactFields = ["count"];
export const floatFields = [];
export const rtol = 0;
export const atol = 0;
export const SEGMENT_BYTES = 1 << 18;
export const MAX_UNITS = 100000;

const RATE_A = -3.1;
const RATE_B = 0.16;
const RATE_C = 2.1e-4;
const RATE_FLOOR = 0.8;

let cachedBase = { limit: -1, primes: new Uint32Array(0) };

/** The largest r with r * r <= n, for an integer 0 <= n < 2**53. */
export function isqrt(n) {
  let r = Math.floor(Math.sqrt(n));
  while (r * r > n) r--;
  while ((r + 1) * (r + 1) <= n) r++;
  return r;
}

/** The odd primes p <= n in increasing order (a Uint32Array; do not modify it). */
export function oddPrimesUpTo(n) {
  if (n <= cachedBase.limit) {
    let end = cachedBase.primes.length;
    while (end > 0 && cachedBase.primes[end - 1] > n) end--;
    return cachedBase.primes.subarray(0, end);
  }
  const size = n >= 3 ? Math.floor((n - 1) / 2) : 0;
  const composite = new Uint8Array(size); // index i stands for 2 i + 3
  const last = Math.floor((isqrt(n) - 1) / 2);
  for (let i = 0; i < last; i++) {
    if (composite[i]) continue;
    const p = 2 * i + 3;
    for (let j = (p * p - 3) / 2; j < size; j += p) composite[j] = 1;
  }
  let count = 0;
  for (let i = 0; i < size; i++) count += composite[i] ^ 1;
  const primes = new Uint32Array(count);
  for (let i = 0, k = 0; i < size; i++) if (!composite[i]) primes[k++] = 2 * i + 3;
  cachedBase = { limit: n, primes };
  return primes;
}

/** The number of primes p with lo <= p <= hi (0 when lo > hi). */
export function countPrimes(lo, hi, segmentBytes = SEGMENT_BYTES) {
  if (!(Number.isInteger(segmentBytes) && segmentBytes >= 1)) {
    throw new RangeError("segmentBytes must be a positive integer.");
  }
  if (lo > hi || hi < 2) return 0;
  let count = lo <= 2 ? 1 : 0;
  let first = Math.max(lo, 3);
  if (first % 2 === 0) first += 1;
  if (first > hi) return count;
  const nOdd = Math.floor((hi - first) / 2) + 1;
  const base = oddPrimesUpTo(isqrt(hi));
  const segment = new Uint8Array(Math.min(segmentBytes, nOdd));
  for (let offset = 0; offset < nOdd; offset += segmentBytes) {
    const size = Math.min(segmentBytes, nOdd - offset);
    const low = first + 2 * offset;
    const limit = isqrt(low + 2 * (size - 1));
    segment.fill(1, 0, size);
    for (let k = 0; k < base.length && base[k] <= limit; k++) {
      const p = base[k];
      const remainder = low % p;
      let multiple = Math.max(p * p, remainder === 0 ? low : low + (p - remainder));
      if (multiple % 2 === 0) multiple += p;
      for (let j = (multiple - low) / 2; j < size; j += p) segment[j] = 0;
    }
    for (let j = 0; j < size; j++) count += segment[j];
  }
  return count;
}

/** The number of bits of a non-negative integer (0 for 0). */
export function bitLength(value) {
  let bits = 0;
  for (let power = 1; power <= value; power *= 2) bits++;
  return bits;
}

export function space(config) {
  return [config.lo, config.hi + 1];
}

/** Cost per integer near `index`, in work units (the fit described in primes.py). */
export function rate(config, index) {
  const bits = Math.max(bitLength(index), 1);
  let half = 1;
  for (let i = 0; i < Math.floor(bits / 2); i++) half *= 2;
  return Math.max(RATE_FLOOR, RATE_A + RATE_B * bits + (RATE_C * half) / bits) * 1e-9;
}

/** Cost of the indices [start, stop): (stop - start) * rate(config, stop - 1). */
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
  return { start, stop, count: countPrimes(start, stop - 1) };
}

export function agree(a, b, config) {
  return agreeWith(exactFields, floatFields, rtol, atol, a, b);
}

export function reduce(results, config) {
  const ordered = tiled(space(config), results);
  let count = 0;
  for (const result of ordered) count += result.count;
  return { lo: config.lo, hi: config.hi, count };
}
