// The worker side of "analytics" jobs in JavaScript, the twin of `local` in kernels/analytics.py:
// a worker turns one column of its own rows into a bounded contribution that the server sums
// and releases (optionally with differential privacy). The rows never leave the worker.
//
// Plain ES module with no imports: it runs unchanged in a browser (Web Worker) and under Node.
//
// Contribution bounding, as in Python: read column `config.column` of the first
// `config.max_rows` rows (all rows when max_rows is null; later rows are ignored), clip each
// value to [lo, hi], and contribute
//   count:           {count}
//   sum, mean:       {count, sum}   sum = the correctly rounded sum of the clipped values
//   histogram,
//   quantiles:       {count, hist}  hist[k] counts edges[k] <= x < edges[k + 1], the last bin
//                                   also x == edges[edges.length - 1]; values are clipped into
//                                   [edges[0], edges[last]] first, so none are dropped
// where count is the number of rows used. `fsum` is a port of CPython's math.fsum (Shewchuk's
// exact partials with a correctly rounded final step), so sums equal numpy's bit for bit,
// whatever the order of the rows. Integers are exact.
//
// API (config is the resolved config the server sends, see resolve_config in analytics.py;
// data is {X, n, d} with X row-major n * d numbers, any array-like, e.g. Float64Array):
//   name, STATISTICS,
//   local(data, config) -> {count, sum?, hist?},
//   fsum(values) -> number,
//   binIndex(value, edges) -> the histogram bin of a value.

export const name = "analytics";
export const STATISTICS = ["count", "sum", "mean", "histogram", "quantiles"];

const SUMMED = new Set(["sum", "mean"]);
const BINNED = new Set(["histogram", "quantiles"]);

/** The correctly rounded sum of finite numbers (CPython's math.fsum); 0 for no values. */
export function fsum(values) {
  const partials = [];
  for (const value of values) {
    let x = Number(value);
    if (!Number.isFinite(x)) throw new RangeError("fsum needs finite numbers.");
    let i = 0;
    for (let j = 0; j < partials.length; j++) {
      let y = partials[j];
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) partials[i++] = lo;
      x = hi;
    }
    partials.length = i;
    partials.push(x);
  }
  let n = partials.length;
  if (n === 0) return 0;
  let hi = partials[--n];
  let lo = 0;
  while (n > 0) {
    const x = hi;
    const y = partials[--n];
    hi = x + y;
    lo = y - (hi - x);
    if (lo !== 0) break;
  }
  // Round half to even across the remaining partials, as CPython does.
  if (n > 0 && ((lo < 0 && partials[n - 1] < 0) || (lo > 0 && partials[n - 1] > 0))) {
    const y = lo * 2;
    const x = hi + y;
    if (y === x - hi) hi = x;
  }
  return hi;
}

/** The bin of `value` for strictly increasing `edges`, clipping it into the edge bins. */
export function binIndex(value, edges) {
  const bins = edges.length - 1;
  // Count the edges <= value (numpy's searchsorted side="right"), by bisection.
  let low = 0;
  let high = edges.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (edges[mid] <= value) low = mid + 1;
    else high = mid;
  }
  return Math.min(Math.max(low - 1, 0), bins - 1);
}

function finite(value, what) {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new RangeError(`config.${what} must be a finite number.`);
  }
  return value;
}

function checkedConfig(config) {
  if (config == null || typeof config !== "object") {
    throw new TypeError("config must be an object.");
  }
  const { statistic, column } = config;
  if (!STATISTICS.includes(statistic)) {
    throw new RangeError(`config.statistic must be one of ${STATISTICS.join(", ")}.`);
  }
  if (!Number.isInteger(column) || column < 0) {
    throw new RangeError("config.column must be a non-negative integer.");
  }
  const maxRows = config.max_rows ?? null;
  if (maxRows !== null && (!Number.isInteger(maxRows) || maxRows < 1)) {
    throw new RangeError("config.max_rows must be a positive integer or null.");
  }
  if (SUMMED.has(statistic)) {
    const lo = finite(config.lo, "lo");
    const hi = finite(config.hi, "hi");
    if (!(lo < hi)) throw new RangeError("config.lo must be less than config.hi.");
  }
  if (BINNED.has(statistic)) {
    const { edges } = config;
    if (!Array.isArray(edges) || edges.length < 2) {
      throw new RangeError("config.edges must list at least two bin edges.");
    }
    for (let k = 0; k < edges.length; k++) {
      finite(edges[k], `edges[${k}]`);
      if (k > 0 && !(edges[k - 1] < edges[k])) {
        throw new RangeError("config.edges must be strictly increasing.");
      }
    }
  }
  return { statistic, column, maxRows };
}

function checkedColumn(data, column, maxRows) {
  if (data == null || typeof data !== "object") throw new TypeError("data must be {X, n, d}.");
  const { X, n, d } = data;
  if (!Number.isInteger(n) || n < 0) throw new RangeError("data.n must be a row count.");
  if (!Number.isInteger(d) || d < 1) throw new RangeError("data.d must be a column count.");
  if (X == null || typeof X.length !== "number" || X.length !== n * d) {
    throw new RangeError(`X must hold n * d = ${n * d} values, got ${X?.length}.`);
  }
  if (column >= d) {
    throw new RangeError(`Column ${column} does not exist: the data has ${d} columns.`);
  }
  const rows = maxRows === null ? n : Math.min(n, maxRows);
  const values = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const value = Number(X[i * d + column]);
    if (!Number.isFinite(value)) {
      throw new RangeError(`The values in column ${column} must be finite (row ${i} is not).`);
    }
    values[i] = value;
  }
  return values;
}

/** This worker's bounded contribution for `config`; `data` is not modified. */
export function local(data, config) {
  const { statistic, column, maxRows } = checkedConfig(config);
  const values = checkedColumn(data, column, maxRows);
  const contribution = { count: values.length };
  if (SUMMED.has(statistic)) {
    const { lo, hi } = config;
    const clipped = values.map((value) => Math.min(Math.max(value, lo), hi));
    contribution.sum = fsum(clipped) + 0;
  } else if (BINNED.has(statistic)) {
    const { edges } = config;
    const hist = new Array(edges.length - 1).fill(0);
    for (const value of values) hist[binIndex(value, edges)]++;
    contribution.hist = hist;
  }
  return contribution;
}
