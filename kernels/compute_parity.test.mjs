// Tests of the JavaScript compute kernels (primes.js, montecarlo.js, sweep.js) and generator
// (rng.js) under Node's test runner.
//
// The parity tests compare against vectors that kernels/test_compute_js_parity.py generates with
// the numpy kernels and names in the CCGSC_COMPUTE_VECTORS environment variable; without it they
// are reported as skipped. The other tests need no vectors. Run through pytest:
//   python -m pytest kernels/test_compute_js_parity.py -q -p no:django
// or directly: CCGSC_COMPUTE_VECTORS=vectors.json node --test kernels/compute_parity.test.mjs

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import * as montecarlo from "./montecarlo.js";
import * as primes from "./primes.js";
import { MAX_INDEX, blocks, mulhi32, philox4x32, splitIndex, uniform53 } from "./rng.js";
import * as sweep from "./sweep.js";

const KERNELS = { primes, montecarlo, sweep };

const vectorsPath = process.env.CCGSC_COMPUTE_VECTORS;
const vectors = vectorsPath ? JSON.parse(readFileSync(vectorsPath, "utf8")) : null;

const fmt = (x) => x.toExponential(2);

/** Fields that must be bit-identical to numpy's (the others are checked by agree). */
function strictFields(kernelName, config) {
  if (kernelName === "primes") return ["start", "stop", "count"];
  if (kernelName === "sweep") return ["start", "stop", "r", "mean", "min", "max"];
  if (config.problem === "pi") return ["start", "stop", "n", "hits", "sum", "sum_sq"];
  return ["start", "stop", "n", "hits"];
}

/** The largest relative difference between the float fields of two results. */
function worstRelative(kernel, a, b) {
  let worst = 0;
  for (const field of kernel.floatFields) {
    const xs = [a[field]].flat();
    const ys = [b[field]].flat();
    for (let i = 0; i < xs.length; i++) {
      const scale = Math.max(Math.abs(xs[i]), Math.abs(ys[i]));
      if (scale > 0) worst = Math.max(worst, Math.abs(xs[i] - ys[i]) / scale);
    }
  }
  return worst;
}

/** Assert that a JavaScript result matches numpy's; return the largest relative difference. */
function assertMatches(kernelName, config, actual, expected) {
  const kernel = KERNELS[kernelName];
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort());
  for (const field of strictFields(kernelName, config)) {
    assert.deepEqual(actual[field], expected[field], `${field} differs from numpy's`);
  }
  assert.ok(kernel.agree(actual, expected, config), "agree rejects the JS result against numpy's");
  assert.ok(kernel.agree(expected, actual, config), "agree is not symmetric");
  return worstRelative(kernel, actual, expected);
}

function brutePrimeCount(lo, hi) {
  let count = 0;
  for (let k = Math.max(lo, 2); k <= hi; k++) {
    let prime = true;
    for (let d = 2; d * d <= k; d++) {
      if (k % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  return count;
}

describe("the JavaScript generator matches numpy's bit for bit", () => {
  if (vectors === null) {
    test("golden vectors are given", {
      skip: "set CCGSC_COMPUTE_VECTORS to a file written by kernels/test_compute_js_parity.py",
    }, () => {});
    return;
  }
  for (const v of vectors.rng) {
    const where = `seed ${v.seed}, stream ${v.stream}, positions ${v.start}+${v.count}`;
    test(`blocks give numpy's uint32 words (${where})`, () => {
      const words = blocks(v.seed, v.stream, v.start, v.count);
      assert.ok(words instanceof Uint32Array);
      assert.deepEqual([...words], v.words);
    });
    test(`uniform53 gives numpy's doubles (${where})`, () => {
      const words = blocks(v.seed, v.stream, v.start, v.count);
      const doubles = [];
      for (let i = 0; i < v.count; i++) doubles.push(uniform53(words[4 * i], words[4 * i + 1]));
      for (let i = 0; i < v.count; i++) {
        doubles.push(uniform53(words[4 * i + 2], words[4 * i + 3]));
      }
      assert.deepEqual(doubles, v.doubles);
    });
  }
});

describe("the JavaScript Monte Carlo samples and sums match numpy's", () => {
  if (vectors === null) {
    test("golden vectors are given", {
      skip: "set CCGSC_COMPUTE_VECTORS to a file written by kernels/test_compute_js_parity.py",
    }, () => {});
    return;
  }
  for (const v of vectors.samples) {
    const where = `${v.config.problem}, seed ${v.config.seed}, samples ${v.start}+${v.count}`;
    test(`sampleValues gives numpy's hits exactly and values to the last bits (${where})`, (t) => {
      const { values, hits } = montecarlo.sampleValues(v.config, v.start, v.count);
      assert.deepEqual([...hits], v.hits);
      let identical = 0;
      let worst = 0;
      for (let i = 0; i < v.count; i++) {
        if (values[i] === v.values[i]) identical++;
        const scale = Math.max(Math.abs(v.values[i]), v.config.K ?? 1);
        worst = Math.max(worst, Math.abs(values[i] - v.values[i]) / scale);
      }
      assert.ok(worst <= 1e-14, `a value differs from numpy's by ${worst} relative`);
      if (v.config.problem === "pi") assert.equal(identical, v.count);
      t.diagnostic(`${identical} of ${v.count} values bit-identical; largest gap ${fmt(worst)}`);
    });
    test(`orderedSum of numpy's values gives numpy's sums bit for bit (${where})`, () => {
      const values = Float64Array.from(v.values);
      assert.equal(montecarlo.orderedSum(values), v.sum);
      assert.equal(montecarlo.orderedSum(values.map((x) => x * x)), v.sum_sq);
    });
  }
});

describe("the JavaScript compute kernels match numpy", () => {
  if (vectors === null) {
    test("golden vectors are given", {
      skip: "set CCGSC_COMPUTE_VECTORS to a file written by kernels/test_compute_js_parity.py",
    }, () => {});
    return;
  }
  test("the vectors cover every kernel", () => {
    const names = new Set(vectors.kernels.map((v) => v.kernel));
    assert.deepEqual([...names].sort(), ["montecarlo", "primes", "sweep"]);
  });
  for (const vector of vectors.kernels) parityCase(vector);
});

function parityCase(vector) {
  const kernel = KERNELS[vector.kernel];
  const { config, target_cost: targetCost } = vector;
  describe(vector.name, () => {
    test("split cuts numpy's units, costs included", () => {
      const units = vector.window
        ? kernel.splitRange(config, vector.window[0], vector.window[1], { targetCost })
        : kernel.split(config, { targetCost });
      assert.deepEqual(units, vector.units);
    });

    test("splitRange cuts the rest of a unit as numpy does", () => {
      const { start, stop, target_cost: cost, units } = vector.remaining;
      assert.deepEqual(kernel.splitRange(config, start, stop, { targetCost: cost }), units);
    });

    test("run gives numpy's result on every unit", (t) => {
      let worst = 0;
      const began = performance.now();
      vector.units.forEach((unit, i) => {
        const result = kernel.run(unit, config);
        worst = Math.max(worst, assertMatches(vector.kernel, config, result, vector.results[i]));
      });
      const ms = (performance.now() - began).toFixed(1);
      t.diagnostic(`${vector.units.length} units in ${ms} ms; largest relative gap ${fmt(worst)}`);
    });

    if (vector.extra.length > 0) {
      test("run gives numpy's result on units at the edges", () => {
        for (const { unit, result } of vector.extra) {
          assertMatches(vector.kernel, config, kernel.run(unit, config), result);
        }
      });
    }

    test("agree gives numpy's verdict on altered results", () => {
      for (const { a, b, agree } of vector.agreement) {
        assert.equal(kernel.agree(a, b, config), agree, `agree(${JSON.stringify(b)})`);
      }
      assert.ok(vector.agreement.some((pair) => !pair.agree));
    });

    test("run rejects units outside the space", () => {
      const [start, stop] = kernel.space(config);
      assert.throws(() => kernel.run({ start: start - 1, stop }, config), /not a non-empty part/);
      assert.throws(() => kernel.run({ start, stop: stop + 1 }, config), /not a non-empty part/);
      assert.throws(() => kernel.run({ start, stop: start }, config), /not a non-empty part/);
      assert.throws(() => kernel.run({ start: 0.5, stop }, config), /integers/);
    });

    if (vector.reduced === null) return;

    test("reduce of numpy's results in any order gives numpy's reduction", () => {
      const reduced = kernel.reduce([...vector.results].reverse(), config);
      if (vector.kernel !== "montecarlo") {
        assert.deepEqual(reduced, vector.reduced);
        return;
      }
      const { estimate, std_error: error, ...exact } = reduced;
      const { estimate: estimate0, std_error: error0, ...exact0 } = vector.reduced;
      assert.deepEqual(exact, exact0);
      assert.ok(Math.abs(estimate - estimate0) <= 1e-12 * Math.abs(estimate0), `${estimate}`);
      assert.ok(Math.abs(error - error0) <= 1e-12 * Math.abs(error0), `${error}`);
    });

    test("reduce rejects a missing, a repeated or a stray result", () => {
      const results = vector.results;
      assert.throws(() => kernel.reduce(results.slice(1), config), /No result covers/);
      assert.throws(() => kernel.reduce([...results, results[0]], config), /overlaps/);
      const [, stop] = kernel.space(config);
      const stray = { ...results.at(-1), start: stop, stop: stop + 1 };
      assert.throws(() => kernel.reduce([...results, stray], config), /not a part of the space/);
    });
  });
}

describe("the generator on its own", () => {
  test("Philox4x32-10 gives Random123's known answers", () => {
    const hex = (words) => [...words].map((w) => w.toString(16).padStart(8, "0")).join(" ");
    const ones = 0xffffffff;
    assert.equal(hex(philox4x32(0, 0, 0, 0, 0, 0)), "6627e8d5 e169c58d bc57ac4c 9b00dbd8");
    assert.equal(
      hex(philox4x32(ones, ones, ones, ones, ones, ones)),
      "408f276d 41c83b0e a20bc7c6 6d5451fd",
    );
    assert.equal(
      hex(philox4x32(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0)),
      "d16cfe09 94fdcceb 5001e420 24126ea1",
    );
  });

  test("mulhi32 is the high half of the exact 64-bit product", () => {
    const words = [0, 1, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xd2511f53, 0xffffffff];
    const first = blocks(5, 0, 0, 2000);
    for (let i = 0; i < first.length; i += 2) words.push(first[i]);
    for (const a of words) {
      for (const b of [0xd2511f53, 0xcd9e8d57, 0xffffffff, words[(a % words.length) | 0]]) {
        assert.equal(BigInt(mulhi32(a, b)), (BigInt(a) * BigInt(b)) >> 32n, `${a} * ${b}`);
      }
    }
  });

  test("blocks carry the position from its low word into its high word", () => {
    const words = blocks(9, 4, 2 ** 32 - 1, 2);
    assert.deepEqual([...words.subarray(0, 4)], [...philox4x32(2 ** 32 - 1, 0, 4, 0, 9, 0)]);
    assert.deepEqual([...words.subarray(4)], [...philox4x32(0, 1, 4, 0, 9, 0)]);
  });

  test("a block depends on seed, stream and position, and on nothing else", () => {
    const key = (seed, stream, start) => [...blocks(seed, stream, start, 1)].join();
    assert.equal(key(3, 0, 10), [...blocks(3, 0, 7, 4).subarray(12)].join());
    const variants = [key(3, 0, 10), key(4, 0, 10), key(3, 1, 10), key(3, 0, 11)];
    assert.equal(new Set(variants).size, 4);
    assert.notEqual(key(3, 0, 10), key(3 + 2 ** 32, 0, 10));
  });

  test("seeds, streams and positions outside [0, 2**53 - 1] are rejected", () => {
    assert.throws(() => blocks(-1, 0, 0, 1), RangeError);
    assert.throws(() => blocks(1.5, 0, 0, 1), RangeError);
    assert.throws(() => blocks(0, 2 ** 53, 0, 1), RangeError);
    assert.throws(() => blocks(0, 0, MAX_INDEX, 2), RangeError);
    assert.deepEqual(splitIndex(MAX_INDEX), [0xffffffff, 0x1fffff]);
  });

  test("uniform53 spans [0, 1) in steps of 2**-53", () => {
    assert.equal(uniform53(0, 0), 0);
    assert.equal(uniform53(0xffffffff, 0xffffffff), 1 - 2 ** -53);
    assert.equal(uniform53(0, 64), 2 ** -53);
  });

  test("the words of a stream are roughly uniform", () => {
    const words = blocks(17, 0, 0, 50000);
    const counts = new Array(16).fill(0);
    for (const w of words) counts[w >>> 28]++;
    for (const count of counts) assert.ok(Math.abs(count - 12500) < 600, `counts ${counts}`);
  });
});

describe("the compute kernels on their own", () => {
  test("primes: 664,579 primes up to 10^7", (t) => {
    const began = performance.now();
    assert.equal(primes.countPrimes(1, 1e7), 664579);
    t.diagnostic(`counted in ${(performance.now() - began).toFixed(1)} ms`);
  });

  test("primes: counts equal brute force on small ranges with tiny segments", () => {
    const rng = blocks(2, 0, 0, 300);
    for (let i = 0; i < 300; i++) {
      const lo = rng[4 * i] % 3000;
      const hi = lo + (rng[4 * i + 1] % 700) - 3;
      const segment = 1 + (rng[4 * i + 2] % 40);
      const expected = brutePrimeCount(lo, hi);
      assert.equal(primes.countPrimes(lo, hi, segment), expected, `[${lo}, ${hi}] / ${segment}`);
    }
  });

  test("primes: the units of a split add up to the count of the whole range", () => {
    const config = { lo: 10, hi: 300000 };
    const units = primes.split(config, { targetCost: 5e-5 });
    assert.ok(units.length > 3);
    const results = units.map((unit) => primes.run(unit, config));
    assert.equal(primes.reduce(results, config).count, primes.countPrimes(10, 300000));
  });

  for (const problem of ["pi", "option"]) {
    test(`montecarlo: 10^6 ${problem} samples land within 4 standard errors`, (t) => {
      const config = {
        problem,
        samples: 1e6,
        seed: 11,
        S0: 100,
        K: 100,
        r: 0.05,
        sigma: 0.2,
        T: 1,
      };
      const began = performance.now();
      const result = montecarlo.run({ start: 0, stop: 1e6 }, config);
      const ms = (performance.now() - began).toFixed(1);
      const { estimate, std_error: error } = montecarlo.reduce([result], config);
      const exact = problem === "pi" ? Math.PI : 10.450583572185565;
      assert.ok(Math.abs(estimate - exact) < 4 * error, `${estimate} +- ${error}`);
      t.diagnostic(`${ms} ms; estimate ${estimate} +- ${fmt(error)}`);
    });
  }

  test("montecarlo: a unit repeats exactly and other units draw other samples", () => {
    const market = { S0: 100, K: 90, r: 0, sigma: 0.3, T: 1 };
    const config = { problem: "option", samples: 20000, seed: 5, ...market };
    const unit = { start: 100, stop: 5100 };
    assert.deepEqual(montecarlo.run(unit, config), montecarlo.run(unit, config));
    const other = montecarlo.run({ start: 5100, stop: 10100 }, config);
    assert.notEqual(other.sum, montecarlo.run(unit, config).sum);
    const reseeded = montecarlo.run(unit, { ...config, seed: 6 });
    assert.notEqual(reseeded.sum, montecarlo.run(unit, config).sum);
  });

  test("sweep: r = 3.2 settles on its period-2 orbit and r < 1 decays at rate log r", () => {
    const config = { r_min: 0.5, r_max: 3.2, steps: 2, x0: 0.3, burn_in: 2000, iterations: 1000 };
    const { min, max, lyapunov } = sweep.run({ start: 0, stop: 2 }, config);
    const r = 3.2;
    const root = Math.sqrt((r - 3) * (r + 1));
    assert.ok(Math.abs(min[1] - (r + 1 - root) / (2 * r)) < 1e-12);
    assert.ok(Math.abs(max[1] - (r + 1 + root) / (2 * r)) < 1e-12);
    assert.ok(lyapunov[1] < 0);
    assert.ok(Math.abs(lyapunov[0] - Math.log(0.5)) < 1e-3, `${lyapunov[0]}`);
  });

  test("split: targets that are not positive finite numbers or too many units are refused", () => {
    const config = { lo: 0, hi: 1e9 };
    assert.throws(() => primes.split(config, { targetCost: 0 }), /positive/);
    assert.throws(() => primes.split(config, { targetCost: NaN }), /finite/);
    assert.throws(() => primes.split(config, {}), /finite/);
    assert.throws(() => primes.split(config, { targetCost: 1e-9 }), /more than/);
    assert.deepEqual(primes.splitRange(config, 5, 5, { targetCost: 1 }), []);
  });
});
