"""The exact discrete Laplace sampler and the grid releases built on it."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from kernels import noise


def pmf(z: int, scale: float) -> float:
    alpha = math.exp(-1.0 / scale)
    return (1 - alpha) / (1 + alpha) * alpha ** abs(z)


def within(observed: int, n: int, p: float) -> bool:
    """Whether a binomial count is within 5 standard deviations of its mean."""
    return abs(observed - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1


def test_bernoulli_exp_is_true_with_probability_exp_minus_gamma() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    for gamma in (Fraction(0), Fraction(1, 3), Fraction(1), Fraction(5, 2)):
        hits = sum(noise.bernoulli_exp(gamma, rng) for _ in range(n))
        assert within(hits, n, math.exp(-gamma)), (gamma, hits)
    with pytest.raises(ValueError):
        noise.bernoulli_exp(Fraction(-1), rng)


@pytest.mark.parametrize("scale", [Fraction(1, 2), Fraction(2), Fraction(10) / Fraction(0.3)])
def test_discrete_laplace_draws_follow_the_distribution(scale: Fraction) -> None:
    rng = np.random.default_rng(7)
    n = 4000
    draws = [noise.discrete_laplace(scale, rng) for _ in range(n)]
    assert all(isinstance(z, int) for z in draws)
    for z in range(-3, 4):
        assert within(draws.count(z), n, pmf(z, float(scale))), (z, draws.count(z))
    alpha = math.exp(-1.0 / float(scale))
    variance = 2 * alpha / (1 - alpha) ** 2
    assert abs(np.mean(draws)) <= 5 * math.sqrt(variance / n)
    assert np.var(draws) == pytest.approx(variance, rel=0.15)


def test_a_seed_repeats_its_draws_and_other_seeds_differ() -> None:
    def draws(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        return [noise.discrete_laplace(Fraction(5), rng) for _ in range(20)]

    assert draws(3) == draws(3) and draws(3) != draws(4)


def test_counts_are_released_as_integers_and_sums_on_an_exact_power_of_two_grid() -> None:
    rng = np.random.default_rng(0)
    count = noise.release(17, sensitivity=10, epsilon=0.5, integer=True, rng=rng)
    assert isinstance(count, int)
    step = noise.grid_step(30.0, integer=False)
    assert step == 2.0**-15 and math.frexp(step)[0] == 0.5  # a power of two
    for value in (1.0, 1.0 + 2**-40, 123.456789, -7.25):
        released = noise.release(value, sensitivity=30.0, epsilon=0.5, integer=False, rng=rng)
        # Every output lies on the same grid whatever the input's low bits: nothing of them
        # shows through the noise.
        assert (released / step).is_integer(), (value, released)
    with pytest.raises(ValueError, match="integer"):
        noise.release(1.5, sensitivity=10, epsilon=0.5, integer=True, rng=rng)


def test_a_rounded_sum_is_calibrated_to_one_more_grid_step() -> None:
    step = noise.grid_step(30.0, integer=False)
    assert noise.grid_sensitivity(30.0, step, integer=False) == 30 * 2**15 + 1
    assert noise.grid_sensitivity(10, 1.0, integer=True) == 10
    assert noise.noise_scale(10, 0.5, integer=True) == 20.0
    assert noise.noise_scale(30.0, 0.5, integer=False) == (30 * 2**15 + 1) * step / 0.5


@pytest.mark.parametrize("scale", [0.7, 3.0, 20.0, 1000.0])
@pytest.mark.parametrize("confidence", [0.5, 0.99, 0.999999])
def test_the_bound_is_the_smallest_integer_that_holds_the_confidence(
    scale: float, confidence: float
) -> None:
    def tail(k: int) -> float:  # P(|Z| > k)
        return 2 * math.exp(-(k + 1) / scale) / (1 + math.exp(-1 / scale))

    k = noise.discrete_laplace_bound(scale, confidence)
    assert tail(k) <= 1 - confidence
    assert k == 0 or tail(k - 1) > 1 - confidence
