"""Philox4x32-10, a counter-based generator reproduced bit for bit by kernels/rng.js."""

from __future__ import annotations

import numpy as np

# Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
# SC 2011; the reference is Random123's philox4x32_R with R = 10). A block is the bijection
#   (c0, c1, c2, c3) -> 4 uint32 words under the key (k0, k1),
# built from 32x32 -> 64-bit products only, so JavaScript computes it exactly with Math.imul and
# 16-bit halves. There is no state: any block is computed alone from (key, counter).
#
# How the compute kernels address it (the "stream" API below):
#   key     = the 64-bit seed, (k0, k1) = (low 32 bits, high 32 bits);
#   counter = (position low, position high, stream low, stream high),
# where `position` is the block number (a Monte Carlo sample index, for instance) and `stream` a
# small integer separating independent uses of one seed. JavaScript numbers limit seed, stream and
# position to 0 .. 2**53 - 1.
#
# Doubles: uniform53(a, b) = ((a >> 5) * 2**26 + (b >> 6)) / 2**53, the 53-bit construction of
# genrand_res53, exact in float64 in both languages; it lies in [0, 1) on a grid of 2**-53.

M0 = 0xD2511F53
M1 = 0xCD9E8D57
W0 = 0x9E3779B9
W1 = 0xBB67AE85
ROUNDS = 10
MASK32 = 0xFFFFFFFF
MAX_INDEX = 2**53 - 1

_M0 = np.uint64(M0)
_M1 = np.uint64(M1)
_SHIFT = np.uint64(32)


def philox4x32(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Return Philox4x32-10 of each row of the (n, 4) uint32 ``counters`` under ``key``."""
    c = np.asarray(counters, dtype=np.uint32)
    if c.ndim != 2 or c.shape[1] != 4:
        raise ValueError("counters must have shape (n, 4).")
    k0, k1 = (int(word) & MASK32 for word in key)
    c0, c1, c2, c3 = (c[:, i].copy() for i in range(4))
    for round_index in range(ROUNDS):
        if round_index:
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        p0 = _M0 * c0.astype(np.uint64)
        p1 = _M1 * c2.astype(np.uint64)
        hi0 = (p0 >> _SHIFT).astype(np.uint32)
        hi1 = (p1 >> _SHIFT).astype(np.uint32)
        hi1 ^= c1
        hi1 ^= np.uint32(k0)
        hi0 ^= c3
        hi0 ^= np.uint32(k1)
        c0, c1, c2, c3 = hi1, p1.astype(np.uint32), hi0, p0.astype(np.uint32)
    return np.stack([c0, c1, c2, c3], axis=1)


def _words(value: int, what: str) -> tuple[int, int]:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"The {what} must be an integer.")
    value = int(value)
    if not 0 <= value <= MAX_INDEX:
        raise ValueError(f"The {what} must lie in [0, 2**53 - 1], got {value}.")
    return value & MASK32, value >> 32


def blocks(seed: int, stream: int, start: int, count: int) -> np.ndarray:
    """Return the (count, 4) uint32 blocks at positions start .. start + count - 1 of a stream."""
    key = _words(seed, "seed")
    stream_lo, stream_hi = _words(stream, "stream")
    _words(start, "start position")
    if count < 0 or (count and start + count - 1 > MAX_INDEX):
        raise ValueError("The positions must lie in [0, 2**53 - 1].")
    position = np.arange(start, start + count, dtype=np.uint64)
    counters = np.empty((count, 4), dtype=np.uint32)
    counters[:, 0] = position & np.uint64(MASK32)
    counters[:, 1] = position >> _SHIFT
    counters[:, 2] = stream_lo
    counters[:, 3] = stream_hi
    return philox4x32(counters, key)


def uniform53(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Doubles in [0, 1) from pairs of uint32 words: ((a >> 5) * 2**26 + (b >> 6)) / 2**53."""
    high = (np.asarray(a, dtype=np.uint32) >> np.uint32(5)).astype(np.float64)
    low = (np.asarray(b, dtype=np.uint32) >> np.uint32(6)).astype(np.float64)
    return (high * 67108864.0 + low) / 9007199254740992.0
