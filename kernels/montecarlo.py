"""The "montecarlo" compute kernel: seeded, reproducible estimates of pi and a call option."""

from __future__ import annotations

import math

import numpy as np

from kernels.compute import (
    ComputeKernel,
    ComputeOps,
    Config,
    FieldErrors,
    Result,
    build_compute_schema,
)
from kernels.rng import MAX_INDEX, blocks, uniform53

# The space is the sample numbers [0, samples); a unit [start, stop) draws samples start .. stop-1.
# Sample i uses exactly one Philox4x32-10 block (kernels/rng.py): key = seed, counter =
# (i low, i high, stream, 0) with stream STREAMS[problem]. A sample therefore depends on
# (seed, problem, i) only, never on how the space was cut, and any unit is reproducible alone.
# The block's words (w0, w1, w2, w3) give two doubles, a = uniform53(w0, w1), b = uniform53(w2, w3).
#
#   pi:     hit when a * a + b * b < 1; the sample's value is 4 * hit.
#   option: a European call under geometric Brownian motion, by Box-Muller on u1 = 1 - a in (0, 1]:
#             z = sqrt(-2 * log(u1)) * cos(TWO_PI * b)
#             S_T = S0 * exp(drift + vol * z),  drift = (r - 0.5 * sigma * sigma) * T,
#                                               vol = sigma * sqrt(T)
#             value = max(S_T - K, 0), the undiscounted payoff; hit when S_T - K > 0.
#
# Result fields: n (samples), hits, sum and sum_sq of the values. For pi the sums are exact
# (4 * hits and 16 * hits). For the option they are summed in a fixed order, the same in
# JavaScript: chunks of CHUNK consecutive samples from the unit's start (the last chunk padded
# with zeros), each summed as a pairwise tree (v[2k] + v[2k + 1], halving until one value is
# left), then the chunk sums added one after another from 0. With identical values the two
# languages then get identical sums; log, exp and cos may differ in the last bit between math
# libraries, which the tolerance (RTOL relative, ATOL absolute, for sum and sum_sq) absorbs.
#
# Reduce: the estimate is the mean value (for the option discounted by exp(-r * T)) and its
# standard error sqrt(s^2 / n) with the sample variance s^2 = (sum_sq - sum * mean) / (n - 1).

CHUNK = 4096
BATCH = 16 * CHUNK
STREAMS = {"pi": 0, "option": 1}
TWO_PI = 2 * math.pi
RTOL = 1e-9
ATOL = 1e-9
MAX_SAMPLES = 10**12
# Cost rate per sample in work units (about seconds of numpy on one core).
RATE = {"pi": 7e-8, "option": 9e-8}


def chunk_sums(values: np.ndarray) -> np.ndarray:
    """Return the pairwise-tree sum of each CHUNK of ``values`` (the last one padded with zeros)."""
    values = np.asarray(values, dtype=np.float64)
    chunks = -(-values.size // CHUNK)
    tree = np.zeros(chunks * CHUNK, dtype=np.float64)
    tree[: values.size] = values
    tree = tree.reshape(chunks, CHUNK)
    while tree.shape[1] > 1:
        tree = tree[:, 0::2] + tree[:, 1::2]
    return tree[:, 0]


def ordered_sum(values: np.ndarray, total: float = 0.0) -> float:
    """Add the chunk sums of ``values`` to ``total`` one after another (the kernel's order)."""
    for chunk_sum in chunk_sums(values).tolist():
        total += chunk_sum
    return total


def option_terms(config: Config) -> tuple[float, float]:
    """Return ``(drift, vol)`` of the log-price: ((r - sigma^2 / 2) T, sigma sqrt(T))."""
    sigma = config["sigma"]
    return (config["r"] - 0.5 * sigma * sigma) * config["T"], sigma * math.sqrt(config["T"])


def sample_values(config: Config, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the values and the hit flags of samples start .. start + count - 1."""
    problem = config["problem"]
    words = blocks(config["seed"], STREAMS[problem], start, count)
    a = uniform53(words[:, 0], words[:, 1])
    b = uniform53(words[:, 2], words[:, 3])
    if problem == "pi":
        hit = a * a + b * b < 1.0
        return 4.0 * hit, hit
    drift, vol = option_terms(config)
    z = np.sqrt(-2.0 * np.log(1.0 - a)) * np.cos(TWO_PI * b)
    excess = config["S0"] * np.exp(drift + vol * z) - config["K"]
    return np.maximum(excess, 0.0), excess > 0.0


def _run(config: Config, start: int, stop: int) -> Result:
    hits = 0
    total = 0.0
    total_sq = 0.0
    for at in range(start, stop, BATCH):
        values, hit = sample_values(config, at, min(BATCH, stop - at))
        hits += int(np.count_nonzero(hit))
        if config["problem"] == "option":
            total = ordered_sum(values, total)
            total_sq = ordered_sum(values * values, total_sq)
    if config["problem"] == "pi":
        total, total_sq = 4.0 * hits, 16.0 * hits
    return {"n": stop - start, "hits": hits, "sum": total, "sum_sq": total_sq}


def _reduce(results: list[Result], config: Config) -> Result:
    n = 0
    hits = 0
    total = 0.0
    total_sq = 0.0
    for result in results:
        n += result["n"]
        hits += result["hits"]
        total += result["sum"]
        total_sq += result["sum_sq"]
    mean = total / n
    variance = max((total_sq - total * mean) / (n - 1), 0.0) if n > 1 else 0.0
    error = math.sqrt(variance / n)
    if config["problem"] == "option":
        discount = math.exp(-config["r"] * config["T"])
        mean, error = discount * mean, discount * error
    return {
        "problem": config["problem"],
        "n": n,
        "hits": hits,
        "estimate": mean,
        "std_error": error,
    }


def _space(config: Config) -> tuple[int, int]:
    return 0, config["samples"]


def _rate(config: Config, index: int) -> float:
    return RATE[config["problem"]]


def _check(config: Config) -> FieldErrors:
    return {}


def _positive(maximum: float, default: float, description: str) -> dict:
    return {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": maximum,
        "default": default,
        "description": description,
    }


SCHEMA = build_compute_schema(
    "Monte Carlo estimate of pi or of a European call price",
    {
        "problem": {
            "type": "string",
            "enum": list(STREAMS),
            "default": "pi",
            "description": "pi: points in the unit quarter circle; option: a European call "
            "under geometric Brownian motion (uses S0, K, r, sigma, T).",
        },
        "samples": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_SAMPLES,
            "default": 1_000_000,
            "description": "Total number of samples.",
        },
        "seed": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_INDEX,
            "default": 0,
            "description": "Key of the counter-based generator (at most 2**53 - 1).",
        },
        "S0": _positive(1e6, 100.0, "Spot price."),
        "K": _positive(1e6, 100.0, "Strike price."),
        "r": {
            "type": "number",
            "minimum": -0.5,
            "maximum": 0.5,
            "default": 0.05,
            "description": "Continuously compounded risk-free rate.",
        },
        "sigma": _positive(2.0, 0.2, "Volatility."),
        "T": _positive(10.0, 1.0, "Time to maturity in years."),
    },
)

KERNEL = ComputeKernel(
    name="montecarlo",
    description="Seeded Monte Carlo estimate of pi or of a European call option price; units "
    "are slices of the sample numbers, drawn from Philox4x32-10 so that any unit is reproducible "
    "alone, in numpy or in JavaScript.",
    config_schema=SCHEMA,
    ops=ComputeOps(space=_space, rate=_rate, run=_run, reduce=_reduce, check=_check),
    exact_fields=("n", "hits"),
    float_fields=("sum", "sum_sq"),
    rtol=RTOL,
    atol=ATOL,
)
