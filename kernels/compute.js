// Work-unit helpers shared by the JS compute kernels (primes.js, montecarlo.js, sweep.js):
// range checks, cutting a range into units of a target cost, comparing replicas' results and
// putting results back in order. The twin of kernels/compute.py's helpers.
//
// Plain ES module with no imports: it runs unchanged in a browser (Web Worker) and under Node.


export function checkedRange([low, high], start, stop) {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(stop)) {
    throw new RangeError("A unit's start and stop must be integers.");
  }
  if (!(low <= start && start < stop && stop <= high)) {
    throw new RangeError(`[${start}, ${stop}) is not a non-empty part of [${low}, ${high}).`);
  }
  return [start, stop];
}

export function splitWith(spaceOf, rateOf, costOf, config, start, stop, targetCost, maxUnits) {
  if (typeof targetCost !== "number" || !Number.isFinite(targetCost)) {
    throw new RangeError("targetCost must be a finite number.");
  }
  if (targetCost <= 0) throw new RangeError("targetCost must be positive.");
  if (stop <= start) return [];
  checkedRange(spaceOf(config), start, stop);
  const atLeast = Math.min(((stop - start) * rateOf(config, start)) / targetCost, stop - start);
  if (atLeast > maxUnits) {
    throw new RangeError(`Cutting [${start}, ${stop}) would make more than ${maxUnits} units.`);
  }
  const units = [];
  for (let at = start; at < stop; ) {
    if (units.length === maxUnits) {
      throw new RangeError(`Cutting [${start}, ${stop}) would make more than ${maxUnits} units.`);
    }
    let length = Math.min(Math.max(Math.floor(targetCost / rateOf(config, at)), 1), stop - at);
    const shorter = Math.floor(targetCost / rateOf(config, at + length - 1));
    length = Math.min(Math.max(shorter, 1), length);
    units.push({ start: at, stop: at + length, cost: costOf(config, at, at + length) });
    at += length;
  }
  return units;
}

export function agreeWith(exact, floats, relative, absolute, a, b) {
  const fields = ["start", "stop", ...exact, ...floats];
  const shaped = (r) =>
    r !== null &&
    typeof r === "object" &&
    !Array.isArray(r) &&
    Object.keys(r).length === fields.length &&
    fields.every((field) => Object.hasOwn(r, field));
  if (!shaped(a) || !shaped(b)) return false;
  for (const field of ["start", "stop", ...exact]) {
    if (!Number.isSafeInteger(a[field]) || a[field] !== b[field]) return false;
  }
  const close = (x, y) => {
    if (Array.isArray(x) || Array.isArray(y)) {
      return (
        Array.isArray(x) &&
        Array.isArray(y) &&
        x.length === y.length &&
        x.every((value, i) => close(value, y[i]))
      );
    }
    if (!(Number.isFinite(x) && Number.isFinite(y))) return false;
    return Math.abs(x - y) <= absolute + relative * Math.max(Math.abs(x), Math.abs(y));
  };
  return floats.every((field) => close(a[field], b[field]));
}

export function tiled([low, high], results) {
  for (const result of results) {
    if (!Number.isSafeInteger(result?.start)) {
      throw new RangeError("Every result needs an integer start and stop.");
    }
  }
  const ordered = [...results].sort((x, y) => x.start - y.start);
  let expected = low;
  for (const { start, stop } of ordered) {
    if (start < expected) {
      throw new RangeError(`The result for [${start}, ${stop}) overlaps another result.`);
    }
    if (start > expected) throw new RangeError(`No result covers [${expected}, ${start}).`);
    if (!(Number.isSafeInteger(stop) && start < stop && stop <= high)) {
      throw new RangeError(`The result for [${start}, ${stop}) is not a part of the space.`);
    }
    expected = stop;
  }
  if (expected !== high) throw new RangeError(`No result covers [${expected}, ${high}).`);
  return ordered;
}
