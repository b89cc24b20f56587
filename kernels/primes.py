"""The "primes" compute kernel: count the primes in an integer range with a segmented sieve."""

from __future__ import annotations

import functools
from math import isqrt

import numpy as np

from kernels.compute import (
    ComputeKernel,
    ComputeOps,
    Config,
    FieldErrors,
    Result,
    build_compute_schema,
    field_error,
)

# The space is the integers lo .. hi (inclusive in the config), as the index range [lo, hi + 1);
# a unit [start, stop) counts the primes p with start <= p < stop.
#
# Sieve: base primes up to isqrt(stop - 1) by a simple sieve of Eratosthenes over odd numbers;
# then segments of SEGMENT_BYTES odd numbers (one byte each, 2 * SEGMENT_BYTES integers) from the
# unit's first odd number, in which every base prime p crosses off its odd multiples from
# max(p * p, first multiple in the segment). Primes below 1/32 of a segment cross off with one
# strided slice each; the larger ones, which hit a segment a few times at most, all at once with
# one fancy-indexed store. 2 is counted separately.
#
# Cost rate per integer x (work units, see kernels/compute.py), with b the bit length of x and
# h = 2 ** floor(b / 2) (about sqrt(x)):
#   max(RATE_FLOOR, RATE_A + RATE_B * b + RATE_C * h / b) * 1e-9,
# a fit of the numpy kernel's time per integer from 2**22 to 2**40: crossing off grows like
# log log x (about linear in b over this range) and every segment pays for each base prime up to
# sqrt(x) (the h / b term). Only exact operations, so JavaScript gets the same numbers. Units far
# shorter than a segment also pay the per-segment cost; the scheduler should keep them longer.

SEGMENT_BYTES = 1 << 18
SLICE_FRACTION = 32
MAX_HI = 10**12
RATE_A = -3.1
RATE_B = 0.16
RATE_C = 2.1e-4
RATE_FLOOR = 0.8


@functools.lru_cache(maxsize=16)
def odd_primes_up_to(n: int) -> np.ndarray:
    """Return the odd primes p <= n in increasing order, as a read-only int64 array."""
    if n < 3:
        primes = np.zeros(0, dtype=np.int64)
    else:
        is_prime = np.ones((n - 1) // 2, dtype=bool)  # index i stands for 2 * i + 3
        for i in range((isqrt(n) - 1) // 2):
            if is_prime[i]:
                p = 2 * i + 3
                is_prime[(p * p - 3) // 2 :: p] = False
        primes = 2 * np.flatnonzero(is_prime).astype(np.int64) + 3
    primes.flags.writeable = False
    return primes


def count_primes(lo: int, hi: int, *, segment_bytes: int = SEGMENT_BYTES) -> int:
    """Return the number of primes p with lo <= p <= hi (0 when lo > hi)."""
    if segment_bytes < 1:
        raise ValueError("segment_bytes must be positive.")
    if lo > hi or hi < 2:
        return 0
    count = 1 if lo <= 2 else 0
    first = max(lo, 3) | 1
    if first > hi:
        return count
    n_odd = (hi - first) // 2 + 1
    root = isqrt(hi)
    base = odd_primes_up_to(1 << root.bit_length())  # a few sizes, cached across units
    base = base[: np.searchsorted(base, root, "right")]
    buffer = np.empty(min(segment_bytes, n_odd), dtype=bool)
    for offset in range(0, n_odd, segment_bytes):
        size = min(segment_bytes, n_odd - offset)
        low = first + 2 * offset
        segment = buffer[:size]
        segment[:] = True
        _cross_off(
            segment, low, base[: np.searchsorted(base, isqrt(low + 2 * (size - 1)), "right")]
        )
        count += int(np.count_nonzero(segment))
    return count


def _cross_off(segment: np.ndarray, low: int, primes: np.ndarray) -> None:
    """Clear the odd composites of ``segment``, whose index j stands for low + 2 * j."""
    if primes.size == 0:
        return
    size = segment.size
    multiple = np.maximum(primes * primes, (low + primes - 1) // primes * primes)
    multiple += primes * (multiple % 2 == 0)
    index = (multiple - low) // 2
    n_sliced = int(np.searchsorted(primes, max(size // SLICE_FRACTION, 3), "right"))
    for p, j in zip(primes[:n_sliced].tolist(), index[:n_sliced].tolist(), strict=True):
        segment[j::p] = False
    keep = index[n_sliced:] < size
    p, j = primes[n_sliced:][keep], index[n_sliced:][keep]
    if p.size == 0:
        return
    hits = (size - 1 - j) // p + 1
    first_hit = np.cumsum(hits) - hits
    step = np.arange(int(hits.sum()), dtype=np.int64) - np.repeat(first_hit, hits)
    segment[np.repeat(j, hits) + step * np.repeat(p, hits)] = False


def bit_length(index: int) -> int:
    """Return the number of bits of a non-negative integer (0 for 0)."""
    return int(index).bit_length()


def _space(config: Config) -> tuple[int, int]:
    return config["lo"], config["hi"] + 1


def _rate(config: Config, index: int) -> float:
    bits = max(bit_length(index), 1)
    half = float(1 << (bits // 2))
    return max(RATE_FLOOR, RATE_A + RATE_B * bits + RATE_C * half / bits) * 1e-9


def _run(config: Config, start: int, stop: int) -> Result:
    return {"count": count_primes(start, stop - 1)}


def _reduce(results: list[Result], config: Config) -> Result:
    return {"lo": config["lo"], "hi": config["hi"], "count": sum(r["count"] for r in results)}


def _check(config: Config) -> FieldErrors:
    if config["lo"] > config["hi"]:
        return field_error("hi", f"Must be at least lo ({config['lo']}).")
    return {}


SCHEMA = build_compute_schema(
    "Count primes in [lo, hi]",
    {
        "lo": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_HI,
            "default": 1,
            "description": "Smallest integer of the range.",
        },
        "hi": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_HI,
            "default": 10_000_000,
            "description": "Largest integer of the range (inclusive).",
        },
    },
)

KERNEL = ComputeKernel(
    name="primes",
    description="Count the primes in [lo, hi] with a segmented sieve of Eratosthenes; "
    "units are integer sub-ranges, results are summed and must match exactly.",
    config_schema=SCHEMA,
    ops=ComputeOps(space=_space, rate=_rate, run=_run, reduce=_reduce, check=_check),
    exact_fields=("count",),
)
