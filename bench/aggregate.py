"""Throughput and memory of streaming FedAvg (apps.rounds.strategies.WeightedMean) against np.add.

Measures, in one run:
1. the baseline ``np.add(acc, x, out=acc)`` over the updates, in GB/s of update bytes read
   (size * 4 * clients / seconds, best of ``--repeat``);
2. ``WeightedMean.add`` with random weights (the blocked multiply-add path), and with equal
   weights (the plain-add path), in the same unit, with their ratio to (1); for reference, a naive
   whole-vector multiply into a scratch buffer followed by an add;
3. the peak bytes allocated (tracemalloc, which numpy reports its buffers to) while ``fedavg``
   consumes a generator of updates, for 10 and for the given number of clients, next to the model
   size: the aggregator's memory does not grow with the number of updates.

The updates come from a pool of pre-generated random arrays at least twice the size of the CPU's
last-level cache, cycled through in order, so every update is read from main memory, not from
cache. Figures are printed, never asserted on.

Run from the repository root:
    python bench/aggregate.py [--clients 100] [--size 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.rounds.strategies import DEFAULT_BLOCK, WeightedMean, fedavg

MIB = 2**20
FALLBACK_CACHE_BYTES = 512 * MIB


def last_level_cache_bytes() -> int | None:
    """Largest CPU cache reported by Linux sysfs, or None where it is not available."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        units = {"K": 1024, "M": MIB, "G": 1024 * MIB}
        sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
    return max(sizes, default=None)


def make_pool(size: int, cache_bytes: int) -> list[np.ndarray]:
    count = max(8, math.ceil(2 * cache_bytes / (size * 4)))
    rng = np.random.default_rng(0)
    return [rng.standard_normal(size, dtype=np.float32) for _ in range(count)]


def timed(
    fold: Callable[[np.ndarray, float], object], batch: list[tuple[np.ndarray, float]]
) -> float:
    start = time.perf_counter()
    for update, weight in batch:
        fold(update, weight)
    return time.perf_counter() - start


def throughput(
    pool: list[np.ndarray], size: int, clients: int, repeat: int, block: int
) -> dict[str, float]:
    """Best-of-``repeat`` GB/s of update bytes for each way of folding updates in."""
    cycle = itertools.cycle(pool)
    rng = np.random.default_rng(1)
    scratch = np.empty(size, dtype=np.float32)

    def np_add() -> Callable[[np.ndarray, float], object]:
        acc = np.zeros(size, dtype=np.float32)
        return lambda x, w: np.add(acc, x, out=acc)

    def naive() -> Callable[[np.ndarray, float], object]:
        acc = np.zeros(size, dtype=np.float32)

        def fold(x: np.ndarray, w: float) -> None:
            np.multiply(x, np.float32(w), out=scratch)
            np.add(acc, scratch, out=acc)

        return fold

    def weighted_mean() -> Callable[[np.ndarray, float], object]:
        return WeightedMean(size, block=block).add

    cases = {
        "np.add (baseline)": (np_add, False),
        "WeightedMean.add, random weights": (weighted_mean, False),
        "WeightedMean.add, equal weights": (weighted_mean, True),
        "naive multiply then add": (naive, False),
    }
    best = dict.fromkeys(cases, math.inf)
    for _ in range(repeat):
        for name, (make, equal) in cases.items():
            weights = np.full(clients, 50.0) if equal else rng.uniform(10.0, 5000.0, clients)
            batch = [(next(cycle), float(w)) for w in weights]
            best[name] = min(best[name], timed(make(), batch))
    return {name: size * 4 * clients / seconds / 1e9 for name, seconds in best.items()}


def streaming_peak(pool: list[np.ndarray], size: int, clients: int) -> int:
    """Peak bytes allocated while ``fedavg`` consumes ``clients`` updates from a generator."""

    def updates() -> Iterator[tuple[np.ndarray, float]]:
        rng = np.random.default_rng(2)
        for i in range(clients):
            yield pool[i % len(pool)], float(rng.uniform(10.0, 5000.0))

    tracemalloc.start()
    try:
        fedavg(updates(), size)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--size", type=int, default=1_000_000, help="float32 elements per update")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--block", type=int, default=DEFAULT_BLOCK)
    args = parser.parse_args()

    cache = last_level_cache_bytes()
    pool = make_pool(args.size, cache or FALLBACK_CACHE_BYTES)
    model_bytes = args.size * 4
    pool_bytes = len(pool) * model_bytes
    cache_text = f"{cache / MIB:.0f} MiB" if cache else "unknown, assumed 512 MiB"
    print(
        f"numpy {np.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} (unused by np.add)"
    )
    print(
        f"updates: {args.clients} x {args.size:,} float32 ({model_bytes / MIB:.1f} MiB each), "
        f"block {args.block:,}, best of {args.repeat}"
    )
    print(
        f"pool: {len(pool)} arrays = {pool_bytes / MIB:.0f} MiB, "
        f"{pool_bytes / (cache or FALLBACK_CACHE_BYTES):.1f}x the last-level cache ({cache_text}): "
        "updates are read from memory"
    )

    figures = throughput(pool, args.size, args.clients, args.repeat, args.block)
    baseline = figures["np.add (baseline)"]
    print()
    print(f"{'fold':<34} {'GB/s':>6} {'vs np.add':>9}")
    for name, gbps in figures.items():
        print(f"{name:<34} {gbps:6.2f} {gbps / baseline:8.2f}x")

    print()
    print(f"{'clients':>7} {'peak traced':>11} {'model':>8} {'peak/model':>10} {'all updates':>11}")
    for clients in sorted({10, args.clients}):
        peak = streaming_peak(pool, args.size, clients)
        print(
            f"{clients:>7} {peak / MIB:>7.1f} MiB {model_bytes / MIB:>4.1f} MiB "
            f"{peak / model_bytes:>9.2f}x {clients * model_bytes / MIB:>7.0f} MiB"
        )
    print("(peak: accumulator + scratch block + result; 'all updates' is what holding them costs)")


if __name__ == "__main__":
    main()
