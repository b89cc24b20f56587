// Tests of the JavaScript analytics contribution (analytics.js) under Node's test runner.
//
// The parity tests compare against vectors that kernels/test_analytics_js_parity.py generates
// with kernels/analytics.py and names in the CCGSC_ANALYTICS_VECTORS environment variable;
// without it they are reported as skipped. The other tests need no vectors. Run through pytest:
//   python -m pytest kernels/test_analytics_js_parity.py -q -p no:django
// or directly: CCGSC_ANALYTICS_VECTORS=vectors.json node --test kernels/analytics_parity.test.mjs

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { binIndex, fsum, local, name, STATISTICS } from "./analytics.js";

const vectorsPath = process.env.CCGSC_ANALYTICS_VECTORS;
const vectors = vectorsPath ? JSON.parse(readFileSync(vectorsPath, "utf8")) : null;

const ARRAY_TYPES = { float64: Float64Array, float32: Float32Array };

function config(overrides) {
  return {
    statistic: "count",
    column: 0,
    lo: null,
    hi: null,
    bins: null,
    edges: null,
    probabilities: null,
    max_rows: null,
    epsilon: null,
    ...overrides,
  };
}

function column(values) {
  return { X: Float64Array.from(values), n: values.length, d: 1 };
}

describe("the JavaScript contribution matches numpy on vectors made in the test run", () => {
  if (vectors === null) {
    test("vectors are given", {
      skip: "set CCGSC_ANALYTICS_VECTORS to a file written by kernels/test_analytics_js_parity.py",
    }, () => {});
    return;
  }
  test("the vectors cover every statistic", () => {
    const statistics = new Set(vectors.cases.map((c) => c.config.statistic));
    assert.deepEqual([...statistics].sort(), [...STATISTICS].sort());
  });
  test("fsum gives math.fsum's correctly rounded sums bit for bit", () => {
    for (const { values, expected } of vectors.fsum) assert.equal(fsum(values), expected);
  });
  for (const vector of vectors.cases) parityCase(vector);
});

function parityCase(vector) {
  const ArrayType = ARRAY_TYPES[vector.dtype];
  describe(vector.name, () => {
    test("local gives numpy's contribution exactly", () => {
      const data = { X: ArrayType.from(vector.X), n: vector.n, d: vector.d };
      assert.deepEqual(local(data, vector.config), vector.expected);
    });
    test("local gives the same from a plain array and leaves the data untouched", () => {
      const X = vector.X.slice();
      const data = { X, n: vector.n, d: vector.d };
      const configCopy = structuredClone(vector.config);
      const result = local(data, vector.config);
      assert.deepEqual(result, local({ ...data, X: ArrayType.from(X) }, vector.config));
      assert.deepEqual(X, vector.X);
      assert.deepEqual(vector.config, configCopy);
    });
  });
}

describe("the JavaScript contribution on its own", () => {
  test("the module names itself and its statistics", () => {
    assert.equal(name, "analytics");
    assert.deepEqual(STATISTICS, ["count", "sum", "mean", "histogram", "quantiles"]);
  });

  test("fsum rounds correctly, half to even, as CPython's math.fsum does", () => {
    assert.equal(fsum([]), 0);
    assert.equal(fsum(new Array(10).fill(0.1)), 1);
    assert.equal(fsum([1e100, 1, -1e100, 1e-100]), 1);
    assert.equal(fsum([2 ** 53, -0.5, -(2 ** -54)]), 2 ** 53 - 1);
    assert.equal(fsum([2 ** 53, 1, 2 ** -100]), 2 ** 53 + 2);
    assert.equal(fsum([2 ** 53 + 10, 1, 2 ** -100]), 2 ** 53 + 12);
    assert.equal(fsum([2 ** 53 - 4, 0.5, 2 ** -54]), 2 ** 53 - 3);
    assert.equal(fsum(Float64Array.from([3, -1, 0.25])), 2.25);
    assert.throws(() => fsum([1, NaN]), /finite/);
    assert.throws(() => fsum([Infinity]), /finite/);
  });

  test("binIndex puts edge values in the bin to their right and clips outside values", () => {
    const edges = [0, 1, 2, 4];
    const cases = [[-5, 0], [0, 0], [0.5, 0], [1, 1], [2, 2], [3.999, 2], [4, 2], [1e300, 2]];
    for (const [value, bin] of cases) assert.equal(binIndex(value, edges), bin, `value ${value}`);
    assert.equal(binIndex(7, [0, 1]), 0);
  });

  test("sums clip each value to lo and hi", () => {
    const cfg = config({ statistic: "sum", lo: -1, hi: 2 });
    assert.deepEqual(local(column([-5, -0.5, 1.5, 9]), cfg), { count: 4, sum: 2 });
  });

  test("histograms count clipped values; outside values land in the edge bins", () => {
    const edges = [0, 2, 4, 6, 8, 10];
    const cfg = config({ statistic: "histogram", lo: 0, hi: 10, bins: 5, edges });
    const data = column([-1e9, -0.1, 0, 5, 10, 10.1, 1e300]);
    assert.deepEqual(local(data, cfg), { count: 7, hist: [3, 0, 1, 0, 3] });
  });

  test("only the first max_rows rows are read, so later bad values go unnoticed", () => {
    const cfg = config({ statistic: "mean", lo: -10, hi: 10, max_rows: 3 });
    assert.deepEqual(local(column([1, 2, 3, 1000, NaN]), cfg), { count: 3, sum: 6 });
    assert.deepEqual(local(column([1]), cfg), { count: 1, sum: 1 });
  });

  test("a worker without rows contributes zeros, and its sum is +0", () => {
    const empty = { X: new Float64Array(0), n: 0, d: 2 };
    const sum = local(empty, config({ statistic: "sum", lo: -2, hi: -1 }));
    assert.deepEqual(sum, { count: 0, sum: 0 });
    assert.ok(Object.is(sum.sum, 0));
    const hist = local(empty, config({ statistic: "quantiles", edges: [0, 1, 2] }));
    assert.deepEqual(hist, { count: 0, hist: [0, 0] });
  });

  test("the column is read from row-major data", () => {
    const data = { X: [1, 10, 2, 20, 3, 30], n: 3, d: 2 };
    const cfg = config({ statistic: "sum", column: 1, lo: 0, hi: 25 });
    assert.deepEqual(local(data, cfg), { count: 3, sum: 55 });
  });

  test("bad data is rejected", () => {
    const cfg = config({ statistic: "sum", column: 1, lo: 0, hi: 1 });
    assert.throws(() => local({ X: [1, 2, 3], n: 2, d: 2 }, cfg), /n \* d = 4/);
    assert.throws(() => local({ X: [1, 2], n: 2, d: 1 }, cfg), /Column 1 does not exist/);
    assert.throws(() => local({ X: [0, 1, 0, NaN], n: 2, d: 2 }, cfg), /finite \(row 1/);
    assert.throws(() => local({ X: [0, 1], n: -1, d: 2 }, cfg), /row count/);
    assert.throws(() => local(null, cfg), /data must be/);
  });

  test("bad configs are rejected", () => {
    const data = column([1, 2]);
    const bad = [
      [{ statistic: "median" }, /statistic must be one of/],
      [{ column: -1 }, /column/],
      [{ max_rows: 0 }, /max_rows/],
      [{ statistic: "sum", lo: 1, hi: 1 }, /lo must be less than/],
      [{ statistic: "mean", lo: null, hi: 1 }, /lo must be a finite number/],
      [{ statistic: "histogram", edges: [0] }, /at least two/],
      [{ statistic: "histogram", edges: [0, 2, 1] }, /strictly increasing/],
      [{ statistic: "quantiles", edges: [0, NaN] }, /finite/],
    ];
    for (const [overrides, message] of bad) {
      assert.throws(() => local(data, config(overrides)), message, JSON.stringify(overrides));
    }
    assert.throws(() => local(data, null), /config must be an object/);
  });
});
