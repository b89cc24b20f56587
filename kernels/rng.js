// Philox4x32-10 in JavaScript, the twin of kernels/rng.py: a counter-based generator whose
// uint32 words and doubles are bit-identical to the numpy version.
//
// Philox4x32-10 (Salmon, Moraes, Dror and Shaw, SC 2011; Random123's philox4x32_R, R = 10) maps a
// counter (c0, c1, c2, c3) under a key (k0, k1) to 4 uint32 words with 10 rounds of 32x32 -> 64-bit
// products. JavaScript has no 64-bit integer product, so the low half is Math.imul and the high
// half is assembled from 16-bit halves, every partial sum an exact integer below 2**53.
//
// Stream addressing (as in rng.py): key = the seed as (low 32 bits, high 32 bits); counter =
// (position low, position high, stream low, stream high). Seed, stream and position are integers
// in [0, 2**53 - 1].
//
// uniform53(a, b) = ((a >>> 5) * 2**26 + (b >>> 6)) / 2**53, exact in float64: [0, 1).
//
// Plain ES module with no imports: it runs unchanged in a browser (Web Worker) and under Node.

export const M0 = 0xd2511f53;
export const M1 = 0xcd9e8d57;
export const W0 = 0x9e3779b9;
export const W1 = 0xbb67ae85;
export const ROUNDS = 10;
export const MAX_INDEX = 2 ** 53 - 1;

const TWO32 = 4294967296;
const M0_HI = M0 >>> 16;
const M0_LO = M0 & 0xffff;
const M1_HI = M1 >>> 16;
const M1_LO = M1 & 0xffff;

/** The high 32 bits of the 64-bit product of two uint32 values. */
export function mulhi32(a, b) {
  return mulhiSplit(a >>> 16, a & 0xffff, b >>> 0);
}

// a = aHi * 2**16 + aLo; a * b = aHi*bHi 2**32 + (aHi*bLo + aLo*bHi) 2**16 + aLo*bLo, and
// floor(a * b / 2**32) = aHi*bHi + floor((aHi*bLo + aLo*bHi + floor(aLo*bLo / 2**16)) / 2**16).
function mulhiSplit(aHi, aLo, b) {
  const bHi = b >>> 16;
  const bLo = b & 0xffff;
  const middle = aHi * bLo + aLo * bHi + ((aLo * bLo) >>> 16);
  return (aHi * bHi + Math.floor(middle / 65536)) >>> 0;
}

/**
 * Philox4x32-10 of the counter (c0, c1, c2, c3) under the key (k0, k1), all uint32; writes the
 * 4 output words to `out` from `offset` and returns `out`.
 */
export function philox4x32(c0, c1, c2, c3, k0, k1, out = new Uint32Array(4), offset = 0) {
  let x0 = c0 >>> 0;
  let x1 = c1 >>> 0;
  let x2 = c2 >>> 0;
  let x3 = c3 >>> 0;
  let key0 = k0 >>> 0;
  let key1 = k1 >>> 0;
  for (let round = 0; round < ROUNDS; round++) {
    if (round > 0) {
      key0 = (key0 + W0) >>> 0;
      key1 = (key1 + W1) >>> 0;
    }
    const hi0 = mulhiSplit(M0_HI, M0_LO, x0);
    const lo0 = Math.imul(M0, x0) >>> 0;
    const hi1 = mulhiSplit(M1_HI, M1_LO, x2);
    const lo1 = Math.imul(M1, x2) >>> 0;
    x0 = (hi1 ^ x1 ^ key0) >>> 0;
    x1 = lo1;
    x2 = (hi0 ^ x3 ^ key1) >>> 0;
    x3 = lo0;
  }
  out[offset] = x0;
  out[offset + 1] = x1;
  out[offset + 2] = x2;
  out[offset + 3] = x3;
  return out;
}

/** Split an integer in [0, 2**53 - 1] into its [low, high] 32-bit words. */
export function splitIndex(value, what = "index") {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`The ${what} must be an integer in [0, 2**53 - 1], got ${value}.`);
  }
  return [value % TWO32, Math.floor(value / TWO32)];
}

/**
 * The blocks at positions start .. start + count - 1 of a stream, as a Uint32Array of
 * 4 * count words (block after block); written into `out` when given.
 */
export function blocks(seed, stream, start, count, out = null) {
  const [k0, k1] = splitIndex(seed, "seed");
  const [s0, s1] = splitIndex(stream, "stream");
  let [lo, hi] = splitIndex(start, "start position");
  if (!Number.isInteger(count) || count < 0 || count > MAX_INDEX - start + 1) {
    throw new RangeError("The positions must lie in [0, 2**53 - 1].");
  }
  const words = out ?? new Uint32Array(4 * count);
  for (let i = 0; i < count; i++) {
    philox4x32(lo, hi, s0, s1, k0, k1, words, 4 * i);
    lo += 1;
    if (lo === TWO32) {
      lo = 0;
      hi += 1;
    }
  }
  return words;
}

/** A double in [0, 1) from two uint32 words: ((a >>> 5) * 2**26 + (b >>> 6)) / 2**53. */
export function uniform53(a, b) {
  return ((a >>> 5) * 67108864 + (b >>> 6)) / 9007199254740992;
}
