"""Exact integer noise for differentially private releases (pure: numpy's Generator for bits).

Noise drawn in floating point leaks the data through the low-order bits of what is released
(Mironov, "On Significance of the Least Significant Bits for Differential Privacy", CCS 2012):
the set of doubles that x + Laplace noise can land on depends on x. The releases here avoid
that: each value is put on a grid (integer counts as they are; sums rounded to a multiple of
a power of two), integer noise is added in integer arithmetic, and the result is scaled back
by the grid step, which is exact. The noise is the discrete Laplace distribution,
P(z) proportional to exp(-|z| / scale) on the integers, which gives epsilon-DP to an integer
query of L1 sensitivity d at scale d / epsilon (the geometric mechanism: Ghosh, Roughgarden &
Sundararajan, STOC 2009). It is sampled exactly, with rational arithmetic and uniform random
integers only, by Algorithms 1 and 2 of Canonne, Kamath & Steinke, "The Discrete Gaussian for
Differential Privacy", NeurIPS 2020.

Rounding a sum to the grid can move it by half a step, so neighbouring sums differ by at most
floor(d / step) + 1 steps: that is the sensitivity the noise is calibrated to, with the step
2**-20 of d's magnitude, so the extra noise is about one part in a million.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

GRID_BITS = 20  # a sum's grid step is about its sensitivity / 2**GRID_BITS


def _randbelow(n: int, rng: np.random.Generator) -> int:
    """A uniform integer in [0, n), from the generator's random bytes (n of any size)."""
    bits = n.bit_length()
    nbytes = (bits + 7) // 8
    while True:
        value = int.from_bytes(rng.bytes(nbytes), "little") >> (8 * nbytes - bits)
        if value < n:
            return value


def _bernoulli(p: Fraction, rng: np.random.Generator) -> bool:
    """True with probability p, for a rational p in [0, 1]."""
    return _randbelow(p.denominator, rng) < p.numerator


def bernoulli_exp(gamma: Fraction, rng: np.random.Generator) -> bool:
    """True with probability exp(-gamma), for a rational gamma >= 0 (CKS20, Algorithm 1)."""
    if gamma < 0:
        raise ValueError("gamma must be >= 0")
    while gamma > 1:
        if not bernoulli_exp(Fraction(1), rng):
            return False
        gamma -= 1
    k = 1
    while _bernoulli(gamma / k, rng):
        k += 1
    return k % 2 == 1


def discrete_laplace(scale: Fraction, rng: np.random.Generator) -> int:
    """One draw of Z with P(Z = z) proportional to exp(-|z| / scale), for a rational
    scale > 0 (CKS20, Algorithm 2)."""
    if scale <= 0:
        raise ValueError("scale must be > 0")
    t, s = scale.numerator, scale.denominator  # scale = t / s
    while True:
        u = _randbelow(t, rng)
        if not bernoulli_exp(Fraction(u, t), rng):
            continue
        v = 0
        while bernoulli_exp(Fraction(1), rng):
            v += 1
        y = (u + t * v) // s
        negative = _bernoulli(Fraction(1, 2), rng)
        if negative and y == 0:
            continue
        return -y if negative else y


def grid_step(sensitivity: float, *, integer: bool) -> float:
    """The grid a value is released on: 1 for integer values, else the power of two near
    sensitivity / 2**GRID_BITS."""
    if integer:
        return 1.0
    if not (math.isfinite(sensitivity) and sensitivity > 0):
        raise ValueError("sensitivity must be a positive finite number")
    return math.ldexp(1.0, math.frexp(sensitivity)[1] - GRID_BITS)


def grid_sensitivity(sensitivity: float, step: float, *, integer: bool) -> int:
    """The L1 sensitivity in grid steps: exact for integers, one more step for a rounded sum."""
    if integer:
        if sensitivity != int(sensitivity):
            raise ValueError("an integer query needs an integer sensitivity")
        return int(sensitivity)
    return math.floor(sensitivity / step) + 1


def noise_scale(sensitivity: float, epsilon: float, *, integer: bool) -> float:
    """The scale b (P proportional to exp(-|noise| / b)), in the value's units, of the noise
    ``release`` adds."""
    step = grid_step(sensitivity, integer=integer)
    return grid_sensitivity(sensitivity, step, integer=integer) * step / epsilon


def release(
    value: float | int,
    *,
    sensitivity: float,
    epsilon: float,
    integer: bool,
    rng: np.random.Generator,
) -> float | int:
    """``value`` plus discrete Laplace noise calibrated to (``sensitivity``, ``epsilon``) on
    its grid: an int for an integer value, else an exact multiple of the grid step."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError("epsilon must be a positive finite number")
    step = grid_step(sensitivity, integer=integer)
    steps = grid_sensitivity(sensitivity, step, integer=integer)
    units = int(value) if integer else round(value / step)
    if integer and units != value:
        raise ValueError("an integer query needs an integer value")
    noisy = units + discrete_laplace(Fraction(steps) / Fraction(epsilon), rng)
    return noisy if integer else noisy * step


def discrete_laplace_bound(scale: float, confidence: float) -> float:
    """The smallest integer k with P(|Z| <= k) >= confidence for Z discrete Laplace of this
    scale on the integers: P(|Z| > k) = 2 exp(-(k+1)/scale) / (1 + exp(-1/scale)). For a
    value on a grid, multiply by its step."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}.")
    if not 0 <= confidence < 1:
        raise ValueError(f"confidence must lie in [0, 1), got {confidence!r}.")
    tail = 2.0 / ((1.0 + math.exp(-1.0 / scale)) * (1.0 - confidence))
    return max(math.ceil(scale * math.log(tail)) - 1, 0)
