"""Federated analytics: bounded per-worker contributions, their exact merge, and the release."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

from kernels import noise
from kernels.config import (
    NON_FIELD,
    SCHEMA_DIALECT,
    Config,
    FieldErrors,
    KernelConfigError,
    make_validator,
    schema_errors,
)

# How the pieces fit (kernels/analytics.js is the browser twin of ``local``):
#
#   worker:  local(X, config)          -> {"count": int, "sum": float, "hist": [int]} (as fits)
#   server:  merge(contributions, config) -> the same keys, summed exactly
#   server:  release(merged, config, rng=...) -> the statistic, plus epsilon and noise scale
#
# Contribution bounding, which the differential-privacy guarantee rests on: a worker reads
# ``column`` of its first ``max_rows`` rows (in the order the rows are stored; later rows are
# ignored, so the choice is deterministic), clips each value to [lo, hi] and contributes only
# the aggregates of those values. A worker is the privacy unit: neighbouring inputs differ by
# one worker's whole contribution (added or removed), so the L1 sensitivity is
#   count: max_rows;  sum: max_rows * max(|lo|, |hi|);  histogram: max_rows (all bins together).
# apps/rounds/privacy.py derives the same numbers and holds the budget ledger; the server must
# charge the ledger for ``config["epsilon"]`` before it calls ``release``.
#
# Histograms: bin k holds edges[k] <= x < edges[k + 1], the last bin also holds x == edges[-1]
# (numpy's histogram convention). Values are first clipped to [edges[0], edges[-1]], so values
# outside the edges are counted in the first or last bin, never dropped.
#
# Sums: a worker's sum is the correctly rounded sum of its clipped values (Python's math.fsum;
# the JS twin implements the same algorithm), so it does not depend on the summation order and
# numpy and JS give bit-identical results. The server sums worker sums with math.fsum too.

STATISTICS = ("count", "sum", "mean", "histogram", "quantiles")
DEFAULT_PROBABILITIES = (0.25, 0.5, 0.75)
MAX_BINS = 10_000
MAX_ROWS = 1_000_000_000
MAX_ABS_BOUND = 1e100

CONTRIBUTION_KEYS: dict[str, tuple[str, ...]] = {
    "count": ("count",),
    "sum": ("count", "sum"),
    "mean": ("count", "sum"),
    "histogram": ("count", "hist"),
    "quantiles": ("count", "hist"),
}

_EVERY = frozenset({"statistic", "column", "max_rows", "epsilon"})
_BOUNDED = _EVERY | {"lo", "hi"}
_BINNED = _BOUNDED | {"bins", "edges"}
_FIELDS_USED: dict[str, frozenset[str]] = {
    "count": _EVERY,
    "sum": _BOUNDED,
    "mean": _BOUNDED,
    "histogram": _BINNED,
    "quantiles": _BINNED | {"probabilities"},
}

_BOUND = {"type": "number", "minimum": -MAX_ABS_BOUND, "maximum": MAX_ABS_BOUND}

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "title": "analytics config",
    "type": "object",
    "properties": {
        "statistic": {
            "enum": list(STATISTICS),
            "description": "What to compute over one column of the workers' rows. mean is "
            "released as sum / count; quantiles are estimated from a histogram.",
        },
        "column": {
            "type": "integer",
            "minimum": 0,
            "default": 0,
            "description": "Index of the column of each worker's data to read.",
        },
        "lo": {
            **_BOUND,
            "type": ["number", "null"],
            "default": None,
            "description": "Lower clipping bound (sum, mean; histogram and quantiles with bins).",
        },
        "hi": {
            **_BOUND,
            "type": ["number", "null"],
            "default": None,
            "description": "Upper clipping bound, greater than lo.",
        },
        "bins": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_BINS,
            "default": None,
            "description": "Number of equal-width bins between lo and hi (instead of edges).",
        },
        "edges": {
            "type": ["array", "null"],
            "items": _BOUND,
            "minItems": 2,
            "maxItems": MAX_BINS + 1,
            "default": None,
            "description": "Strictly increasing bin edges (instead of lo, hi and bins). Values "
            "outside them are clipped into the first or last bin.",
        },
        "probabilities": {
            "type": ["array", "null"],
            "items": {"type": "number", "minimum": 0, "maximum": 1},
            "minItems": 1,
            "maxItems": 99,
            "default": None,
            "description": "Quantiles to estimate (quantiles only); [0.25, 0.5, 0.75] if null.",
        },
        "max_rows": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_ROWS,
            "default": None,
            "description": "Each worker uses only its first max_rows rows. Required with epsilon.",
        },
        "epsilon": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "default": None,
            "description": "Differential-privacy budget of the release (discrete Laplace noise, a "
            "worker as the privacy unit); null releases the exact statistic.",
        },
    },
    "required": ["statistic"],
    "additionalProperties": False,
}

_VALIDATOR = make_validator(CONFIG_SCHEMA)


def resolve_config(config: Any) -> Config:
    """Validate ``config`` and return a new dict with every field filled in.

    Histogram and quantile configs come back with ``edges``, ``lo``, ``hi`` and ``bins`` all
    set (edges from ``np.linspace(lo, hi, bins + 1)`` when only those were given); fields the
    statistic does not use come back as None. Raises KernelConfigError mapping field names (or
    "non_field_errors") to messages.
    """
    if not isinstance(config, Mapping):
        raise KernelConfigError({NON_FIELD: ["The config must be a JSON object."]})
    errors = schema_errors(_VALIDATOR, config)
    if errors:
        raise KernelConfigError(errors)
    properties = CONFIG_SCHEMA["properties"]
    resolved = {
        name: _coerce(spec, config.get(name, spec.get("default")))
        for name, spec in properties.items()
    }
    errors = _finiteness_errors(resolved)
    if not errors:
        errors = _statistic_errors(config, resolved)
    if not errors:
        errors = _scale_errors(resolved)
    if errors:
        raise KernelConfigError(errors)
    return resolved


def _coerce(spec: Mapping, value: Any) -> Any:
    if value is None:
        return None
    kinds = spec.get("type", [])
    if "integer" in kinds:
        return int(value)
    if "number" in kinds:
        return float(value)
    if "array" in kinds:
        return [float(item) for item in value]
    return value


def _finiteness_errors(config: Config) -> FieldErrors:
    errors: FieldErrors = {}
    for name in ("lo", "hi", "epsilon", "edges", "probabilities"):
        value = config[name]
        values = value if isinstance(value, list) else [] if value is None else [value]
        if not all(math.isfinite(item) for item in values):
            plural = isinstance(value, list)
            errors[name] = ["Must hold finite numbers." if plural else "Must be a finite number."]
    return errors


def _statistic_errors(given: Mapping, config: Config) -> FieldErrors:
    statistic = config["statistic"]
    errors: FieldErrors = {}
    for name in config:
        if name not in _FIELDS_USED[statistic] and given.get(name) is not None:
            errors[name] = [f"Not used by the {statistic} statistic."]
    if config["epsilon"] is not None and config["max_rows"] is None:
        errors["max_rows"] = ["Required when epsilon is given: it bounds each worker's rows."]
    if statistic in ("sum", "mean"):
        errors.update(_bound_errors(config, f"Required by the {statistic} statistic."))
    elif statistic in ("histogram", "quantiles"):
        errors.update(_bin_errors(config))
        if statistic == "quantiles" and config["probabilities"] is None:
            config["probabilities"] = list(DEFAULT_PROBABILITIES)
    return errors


def _bound_errors(config: Config, required: str) -> FieldErrors:
    missing = {name: [required] for name in ("lo", "hi") if config[name] is None}
    if missing:
        return missing
    if not config["lo"] < config["hi"]:
        return {"hi": ["Must be greater than lo."]}
    return {}


def _bin_errors(config: Config) -> FieldErrors:
    edges = config["edges"]
    if edges is not None:
        clash = [name for name in ("lo", "hi", "bins") if config[name] is not None]
        if clash:
            return {name: ["Not allowed with edges, which fix lo, hi and bins."] for name in clash}
        if any(a >= b for a, b in zip(edges, edges[1:], strict=False)):
            return {"edges": ["Must be strictly increasing."]}
        config.update(lo=edges[0], hi=edges[-1], bins=len(edges) - 1)
        return {}
    required = "Required by histograms and quantiles unless edges are given."
    errors = _bound_errors(config, required)
    if config["bins"] is None:
        errors["bins"] = [required]
    if errors:
        return errors
    edges = np.linspace(config["lo"], config["hi"], config["bins"] + 1).tolist()
    if any(a >= b for a, b in zip(edges, edges[1:], strict=False)):
        return {"bins": ["Too many bins for the range from lo to hi."]}
    config["edges"] = edges
    return {}


def _scale_errors(config: Config) -> FieldErrors:
    if any(not math.isfinite(scale) for scale in noise_scales(config).values()):
        return {"epsilon": ["Too small for these bounds: the noise scale would overflow."]}
    return {}


def noise_scales(config: Config) -> dict[str, float]:
    """Return the scale of the noise on each released aggregate (empty without epsilon).

    The noise is discrete Laplace on each aggregate's grid (kernels.noise): the scale is the
    L1 sensitivity / epsilon with a worker as the privacy unit (add or remove one worker),
    exactly for the integer count and bins, and one grid step more of sensitivity for a sum
    (about one part in a million). ``mean`` releases a noisy count and a noisy sum, each with
    half of epsilon (sequential composition). ``quantiles`` are post-processing of the noisy
    histogram.
    """
    return {
        key: noise.noise_scale(sensitivity, epsilon, integer=key != "sum")
        for key, (sensitivity, epsilon) in _calibration(config).items()
    }


def _calibration(config: Config) -> dict[str, tuple[float, float]]:
    """(L1 sensitivity, epsilon) of each aggregate the release adds noise to."""
    epsilon = config["epsilon"]
    if epsilon is None:
        return {}
    statistic = config["statistic"]
    rows = config["max_rows"]
    if statistic == "count":
        return {"count": (rows, epsilon)}
    if statistic in ("histogram", "quantiles"):
        return {"hist": (rows, epsilon)}
    magnitude = rows * max(abs(config["lo"]), abs(config["hi"]))
    if statistic == "sum":
        return {"sum": (magnitude, epsilon)}
    return {"count": (rows, epsilon / 2), "sum": (magnitude, epsilon / 2)}


def local(data_X: np.ndarray, config: Config) -> dict[str, Any]:
    """Return this worker's bounded contribution for a config returned by ``resolve_config``.

    ``data_X`` is the worker's (n, d) array; column ``config["column"]`` of its first
    ``max_rows`` rows is read (as float64) and must be finite. The result has ``count`` (rows
    used) and, as the statistic needs, ``sum`` (correctly rounded sum of the values clipped to
    [lo, hi]) or ``hist`` (counts per bin of the clipped values). Inputs are not modified.
    """
    values = _column(data_X, config)
    contribution: dict[str, Any] = {"count": int(values.size)}
    statistic = config["statistic"]
    if statistic in ("sum", "mean"):
        clipped = np.clip(values, config["lo"], config["hi"])
        contribution["sum"] = math.fsum(clipped.tolist()) + 0.0
    elif statistic in ("histogram", "quantiles"):
        contribution["hist"] = histogram(values, config["edges"]).tolist()
    return contribution


def _column(data_X: np.ndarray, config: Config) -> np.ndarray:
    X = np.asarray(data_X)
    column = config["column"]
    if X.ndim != 2:
        raise ValueError(f"The data must be a 2-D array of rows, got shape {X.shape}.")
    if column >= X.shape[1]:
        raise ValueError(f"Column {column} does not exist: the data has {X.shape[1]} columns.")
    rows = X.shape[0] if config["max_rows"] is None else min(X.shape[0], config["max_rows"])
    values = np.array(X[:rows, column], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"The values in column {column} must be finite (row {bad[0]} is not).")
    return values


def histogram(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Count ``values`` per bin (int64), clipping them into [edges[0], edges[-1]] first.

    Bin k holds ``edges[k] <= x < edges[k + 1]``; the last bin also holds ``x == edges[-1]``.
    """
    edge_array = np.asarray(edges, dtype=np.float64)
    clipped = np.clip(np.asarray(values, dtype=np.float64), edge_array[0], edge_array[-1])
    bins = edge_array.size - 1
    index = np.searchsorted(edge_array, clipped, side="right") - 1
    return np.bincount(np.minimum(index, bins - 1), minlength=bins).astype(np.int64)


def check_contribution(contribution: Any, config: Config) -> None:
    """Raise ValueError unless ``contribution`` is one ``local`` could have produced.

    Checks the keys, that ``count`` is an integer in [0, max_rows], that ``hist`` has one
    non-negative integer per bin summing to ``count``, and that ``sum`` is finite and within
    [count * lo, count * hi] (exact: rounding is monotone, so a correctly rounded sum of values
    in [lo, hi] never leaves the correctly rounded bounds). A contribution outside its bounds
    would void the differential-privacy guarantee.
    """
    statistic = config["statistic"]
    expected = set(CONTRIBUTION_KEYS[statistic])
    if not isinstance(contribution, Mapping) or set(contribution) != expected:
        keys = ", ".join(CONTRIBUTION_KEYS[statistic])
        raise ValueError(f"A {statistic} contribution must be an object with keys {keys}.")
    count = _count(contribution["count"], "count")
    if config["max_rows"] is not None and count > config["max_rows"]:
        raise ValueError(f"count {count} exceeds max_rows = {config['max_rows']}.")
    if "sum" in expected:
        total = _finite(contribution["sum"])
        low, high = count * config["lo"], count * config["hi"]
        if not low <= total <= high:
            raise ValueError(f"sum {total!r} lies outside [count * lo, count * hi].")
    if "hist" in expected:
        hist = _counts(contribution["hist"])
        if len(hist) != config["bins"]:
            raise ValueError(f"hist must have {config['bins']} bins, got {len(hist)}.")
        if sum(hist) != count:
            raise ValueError(f"hist sums to {sum(hist)}, but count is {count}.")


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}.")
    return int(value)


def _counts(values: Any) -> list[int]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence):
        raise ValueError("hist must be a list of non-negative integers.")
    return [_count(value, "Each hist entry") for value in values]


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"sum must be a finite number, got {value!r}.")
    return float(value)


def merge(contributions: Iterable[Mapping[str, Any]], config: Config | None = None) -> dict:
    """Sum worker contributions: exact integer counts and bins, and a math.fsum of the sums.

    math.fsum is correctly rounded, so the merged sum does not depend on the order of the
    contributions. With ``config`` each contribution is first checked (``check_contribution``)
    and an empty list merges to zeros; without it all contributions must share their keys and
    at least one is needed. Raises ValueError naming the first bad contribution.
    """
    items = list(contributions)
    if config is not None:
        keys = CONTRIBUTION_KEYS[config["statistic"]]
        for index, item in enumerate(items):
            try:
                check_contribution(item, config)
            except ValueError as exc:
                raise ValueError(f"Contribution {index}: {exc}") from None
        bins = config["bins"]
    elif not items:
        raise ValueError("There are no contributions to merge.")
    else:
        keys = tuple(items[0]) if isinstance(items[0], Mapping) else ()
        if not keys or not set(keys) <= {"count", "sum", "hist"}:
            raise ValueError("A contribution must be an object with count, sum or hist.")
        bins = len(_counts(items[0]["hist"])) if "hist" in keys else 0
        for index, item in enumerate(items):
            if not isinstance(item, Mapping) or set(item) != set(keys):
                raise ValueError(f"Contribution {index} does not have the keys {', '.join(keys)}.")
    merged: dict[str, Any] = {}
    if "count" in keys:
        merged["count"] = sum(_count(item["count"], "count") for item in items)
    if "sum" in keys:
        merged["sum"] = math.fsum(_finite(item["sum"]) for item in items) + 0.0
    if "hist" in keys:
        total = [0] * bins
        for index, item in enumerate(items):
            hist = _counts(item["hist"])
            if len(hist) != bins:
                raise ValueError(f"Contribution {index} has {len(hist)} bins, not {bins}.")
            total = [a + b for a, b in zip(total, hist, strict=True)]
        merged["hist"] = total
    return merged


def release(
    merged: Mapping[str, Any], config: Config, *, rng: np.random.Generator | None = None
) -> dict[str, Any]:
    """Return the statistic of the merged contributions, with noise if epsilon is set.

    The result holds ``statistic``; the released values (``count``, ``sum``, ``mean``,
    ``edges`` and ``hist``, ``probabilities`` and ``quantiles`` as the statistic has them);
    ``epsilon`` (the budget spent: config["epsilon"], or 0.0 for an exact release);
    ``mechanism`` ("discrete_laplace" or None) and ``noise_scale`` (``noise_scales(config)``).

    Without epsilon the values are exact (integer counts and bins; ``mean`` is None when the
    count is 0). With epsilon each aggregate gets independent discrete Laplace noise, sampled
    exactly from ``rng``'s random bits (kernels.noise; default ``np.random.default_rng()``,
    seeded from OS entropy), and the rest is post-processing, which costs no privacy: a
    private mean is noisy sum / max(noisy count, 1) clipped to [lo, hi]; quantiles come from
    the noisy histogram with negative bins set to 0. Noisy counts and bins are integers and
    may be negative; a noisy sum is a multiple of its grid step. ``rng`` is ignored without
    epsilon.
    """
    statistic = config["statistic"]
    scales = noise_scales(config)
    private = bool(scales)
    if private:
        rng = np.random.default_rng() if rng is None else rng
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng must be a numpy.random.Generator.")
    missing = [key for key in CONTRIBUTION_KEYS[statistic] if key not in merged]
    if missing:
        raise ValueError(f"The merged contributions lack {', '.join(missing)}.")

    calibration = _calibration(config)

    def noisy(key: str, value: Any) -> Any:
        if not private:
            return value
        sensitivity, epsilon = calibration[key]

        def one(x: Any) -> Any:
            return noise.release(
                x, sensitivity=sensitivity, epsilon=epsilon, integer=key != "sum", rng=rng
            )

        return [one(x) for x in value] if isinstance(value, list) else one(value)

    result: dict[str, Any] = {"statistic": statistic}
    if statistic in ("count", "mean"):
        result["count"] = noisy("count", merged["count"])
    if statistic in ("sum", "mean"):
        result["sum"] = noisy("sum", merged["sum"])
    if statistic == "mean":
        result["mean"] = _mean(result["count"], result["sum"], config, private)
    if statistic in ("histogram", "quantiles"):
        result["edges"] = list(config["edges"])
        result["hist"] = noisy("hist", list(merged["hist"]))
    if statistic == "quantiles":
        result["probabilities"] = list(config["probabilities"])
        result["quantiles"] = quantiles_from_histogram(
            result["hist"], config["edges"], config["probabilities"]
        )
    result["epsilon"] = float(config["epsilon"]) if private else 0.0
    result["mechanism"] = "discrete_laplace" if private else None
    result["noise_scale"] = scales
    return result


def _mean(count: float, total: float, config: Config, private: bool) -> float | None:
    if not private:
        return total / count if count > 0 else None
    return min(max(total / max(count, 1.0), config["lo"]), config["hi"])


def quantiles_from_histogram(
    hist: Sequence[float], edges: Sequence[float], probabilities: Sequence[float]
) -> list[float | None]:
    """Estimate quantiles from bin counts, treating the values in a bin as spread uniformly.

    For probability p and total N (negative counts count as 0) the estimate lies in the first
    non-empty bin whose cumulative count reaches p * N, interpolated linearly inside it, so it
    is in the same bin as the ceil(p * N)-th smallest value (numpy's "inverted_cdf" quantile)
    and within one bin width of it. p = 0 gives the left edge of the first non-empty bin and
    p = 1 the right edge of the last. All estimates are None when N is 0.
    """
    counts = np.maximum(np.asarray(hist, dtype=np.float64), 0.0)
    edge_array = np.asarray(edges, dtype=np.float64)
    if counts.size != edge_array.size - 1:
        raise ValueError(f"{counts.size} bins need {counts.size + 1} edges, got {len(edges)}.")
    cumulative = np.cumsum(counts)
    total = float(cumulative[-1]) if counts.size else 0.0
    if not total > 0:
        return [None for _ in probabilities]
    nonempty = np.flatnonzero(counts > 0)
    estimates: list[float | None] = []
    for p in probabilities:
        target = float(p) * total
        if target <= 0:
            k = int(nonempty[0])
        else:
            k = min(int(np.searchsorted(cumulative, target, side="left")), counts.size - 1)
            if counts[k] == 0:
                k = int(nonempty[-1])
        before = float(cumulative[k - 1]) if k else 0.0
        fraction = min(max((target - before) / float(counts[k]), 0.0), 1.0)
        left, right = float(edge_array[k]), float(edge_array[k + 1])
        estimates.append(min(max(left + fraction * (right - left), left), right))
    return estimates
