"""Tests of the differential-privacy mechanisms and the budget ledger in apps.rounds.privacy."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.optimize import brentq

from apps.rounds.privacy import (
    BudgetExceeded,
    Charge,
    Ledger,
    Spent,
    basic_composition,
    gaussian_delta,
    gaussian_mechanism,
    gaussian_sigma,
    laplace_mechanism,
    laplace_scale,
    noise_bound,
    sensitivity,
)
from kernels import analytics


def binomial_range(trials: int, probability: float, tail: float = 1e-6) -> tuple[int, int]:
    """Failure counts outside this range have probability below 2 * tail."""
    low = int(stats.binom.ppf(tail, trials, probability))
    high = int(stats.binom.isf(tail, trials, probability))
    return low, high


@pytest.mark.parametrize(
    "statistic, bounds, neighbouring, norm, expected",
    [
        ("count", {}, "add_remove", "l1", 20.0),
        ("count", {}, "replace", "l2", 20.0),
        ("histogram", {}, "add_remove", "l1", 20.0),
        ("histogram", {}, "add_remove", "l2", 20.0),
        ("histogram", {}, "replace", "l1", 40.0),
        ("histogram", {}, "replace", "l2", math.sqrt(2) * 20),
        ("sum", {"lo": -3.0, "hi": 2.0}, "add_remove", "l1", 60.0),
        ("sum", {"lo": 1.0, "hi": 5.0}, "add_remove", "l1", 100.0),
        ("sum", {"lo": -3.0, "hi": 2.0}, "replace", "l1", 100.0),
        ("sum", {"lo": 1.0, "hi": 5.0}, "replace", "l2", 100.0),
        ("sum", {"lo": -5.0, "hi": -1.0}, "replace", "l1", 100.0),
    ],
)
def test_the_sensitivities_follow_the_table_for_a_worker_of_twenty_rows(
    statistic: Any, bounds: dict[str, float], neighbouring: Any, norm: Any, expected: float
) -> None:
    value = sensitivity(statistic, max_rows=20, neighbouring=neighbouring, norm=norm, **bounds)
    assert value == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"statistic": "median", "max_rows": 1}, "Unknown statistic"),
        ({"statistic": "count", "max_rows": 0}, "max_rows"),
        ({"statistic": "count", "max_rows": 2.0}, "max_rows"),
        ({"statistic": "sum", "max_rows": 1, "lo": 0.0}, "finite bounds"),
        ({"statistic": "sum", "max_rows": 1, "lo": 2.0, "hi": 1.0}, "lo <= hi"),
        ({"statistic": "count", "max_rows": 1, "neighbouring": "swap"}, "neighbouring"),
        ({"statistic": "count", "max_rows": 1, "norm": "linf"}, "norm"),
    ],
)
def test_sensitivity_rejects_unknown_statistics_and_bad_bounds(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sensitivity(**kwargs)


def bounded_worker(draw: st.DrawFn, columns: int) -> np.ndarray:
    rows = draw(st.integers(0, 12))
    values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
    return np.array(draw(st.lists(values, min_size=rows * columns, max_size=rows * columns)))


@st.composite
def workers(draw: st.DrawFn) -> list[np.ndarray]:
    count = draw(st.integers(2, 5))
    return [bounded_worker(draw, 1).reshape(-1, 1) for _ in range(count)]


@settings(max_examples=60, deadline=None)
@given(data=workers(), lo=st.floats(-100, 100), width=st.floats(0.5, 100))
def test_adding_removing_or_replacing_a_worker_moves_the_aggregates_at_most_the_sensitivity(
    data: list[np.ndarray], lo: float, width: float
) -> None:
    hi = lo + width
    max_rows = 7
    for statistic, extra in (("sum", {"lo": lo, "hi": hi}), ("histogram", {"bins": 5})):
        fields = {"statistic": statistic, "max_rows": max_rows, "lo": lo, "hi": hi, **extra}
        config = analytics.resolve_config(fields)
        bounds = {"lo": lo, "hi": hi} if statistic == "sum" else {}
        key = "sum" if statistic == "sum" else "hist"
        contributions = [analytics.local(X, config) for X in data]

        def merged(items: list[dict], config: dict = config, key: str = key) -> np.ndarray:
            return np.atleast_1d(np.asarray(analytics.merge(items, config)[key], dtype=float))

        everyone = merged(contributions)
        without_first = merged(contributions[1:])
        replaced = merged([contributions[-1], *contributions[1:]])
        add_remove = sensitivity(statistic, max_rows=max_rows, **bounds)
        replace = sensitivity(statistic, max_rows=max_rows, neighbouring="replace", **bounds)
        slack = 1e-9 * (1 + add_remove)
        assert np.abs(everyone - without_first).sum() <= add_remove + slack
        assert np.abs(everyone - replaced).sum() <= replace + slack


@pytest.mark.parametrize("statistic", analytics.STATISTICS)
def test_the_analytics_release_scales_noise_by_these_sensitivities(statistic: str) -> None:
    fields: dict[str, Any] = {"statistic": statistic, "max_rows": 30, "epsilon": 0.8}
    if statistic != "count":
        fields.update(lo=-4.0, hi=1.5)
    if statistic in ("histogram", "quantiles"):
        fields["bins"] = 6
    config = analytics.resolve_config(fields)
    bounds = {"lo": -4.0, "hi": 1.5}
    expected = {
        "count": {"count": laplace_scale(sensitivity("count", max_rows=30), 0.8)},
        "sum": {"sum": laplace_scale(sensitivity("sum", max_rows=30, **bounds), 0.8)},
        "mean": {
            "count": laplace_scale(sensitivity("count", max_rows=30), 0.4),
            "sum": laplace_scale(sensitivity("sum", max_rows=30, **bounds), 0.4),
        },
        "histogram": {"hist": laplace_scale(sensitivity("histogram", max_rows=30), 0.8)},
        "quantiles": {"hist": laplace_scale(sensitivity("histogram", max_rows=30), 0.8)},
    }[statistic]
    released = analytics.release(analytics.merge([], config), config, rng=np.random.default_rng(0))
    # Exact for integer counts and bins; a sum rounded to its grid has one step (about a
    # millionth of its sensitivity) more.
    rel = 2e-6 if statistic in ("sum", "mean") else 1e-15
    assert released["noise_scale"] == pytest.approx(expected, rel=rel)
    assert released["epsilon"] == 0.8


def test_the_laplace_scale_is_sensitivity_over_epsilon_and_checks_its_inputs() -> None:
    assert laplace_scale(6.0, 0.5) == 12.0
    assert laplace_scale(0.0, 2.0) == 0.0
    for sens, epsilon in [(1.0, 0.0), (1.0, -1.0), (1.0, math.inf), (-1.0, 1.0), (math.nan, 1)]:
        with pytest.raises(ValueError):
            laplace_scale(sens, epsilon)


def test_laplace_noise_has_the_right_scale_mean_and_shape_empirically() -> None:
    rng = np.random.default_rng(2024)
    sens, epsilon = 3.0, 0.6
    scale = sens / epsilon
    noise = laplace_mechanism(np.zeros(200_000), sens, epsilon, rng)
    # |X| ~ Exponential(scale): the mean absolute deviation is the scale, with standard error
    # scale / sqrt(n) ~ 0.22 %.
    assert np.mean(np.abs(noise)) == pytest.approx(scale, rel=0.02)
    assert np.var(noise) == pytest.approx(2 * scale**2, rel=0.03)
    assert abs(np.mean(noise)) < 5 * math.sqrt(2) * scale / math.sqrt(noise.size)
    assert stats.kstest(noise, stats.laplace(scale=scale).cdf).pvalue > 1e-4
    assert stats.kstest(noise, stats.laplace(scale=1.1 * scale).cdf).pvalue < 1e-6


def test_the_laplace_mechanism_keeps_the_shape_and_centres_on_the_value() -> None:
    rng = np.random.default_rng(1)
    value = np.array([[10.0, -2.0], [0.0, 5.0]])
    noisy = np.stack([laplace_mechanism(value, 1.0, 4.0, rng) for _ in range(4000)])
    assert noisy.shape == (4000, 2, 2)
    np.testing.assert_allclose(noisy.mean(axis=0), value, atol=0.05)
    assert laplace_mechanism(7.0, 1.0, 1.0, rng).shape == ()
    with pytest.raises(TypeError, match="Generator"):
        laplace_mechanism(7.0, 1.0, 1.0, np.random.RandomState(0))


def test_noise_bound_is_the_exact_laplace_tail() -> None:
    for confidence in (0.0, 0.5, 0.9, 0.999):
        bound = noise_bound(2.5, confidence)
        probability = stats.laplace(scale=2.5).cdf(bound) - stats.laplace(scale=2.5).cdf(-bound)
        assert probability == pytest.approx(confidence, abs=1e-12)
    assert noise_bound(1.0, 0.999) == pytest.approx(math.log(1000))
    assert noise_bound(0.0, 0.9) == 0.0
    for scale, confidence in [(-1.0, 0.5), (1.0, 1.0), (1.0, -0.1), (math.inf, 0.5)]:
        with pytest.raises(ValueError):
            noise_bound(scale, confidence)


def test_a_released_histogram_stays_within_the_noise_bound_at_99_9_percent_per_bin() -> None:
    config = analytics.resolve_config(
        {"statistic": "histogram", "lo": 0, "hi": 1, "bins": 25, "max_rows": 40, "epsilon": 0.7}
    )
    rng = np.random.default_rng(99)
    X = rng.uniform(size=(300, 1))
    merged = analytics.merge([analytics.local(part, config) for part in np.split(X, 6)], config)
    exact = np.array(merged["hist"])
    scale = config["max_rows"] / config["epsilon"]
    trials = 2000
    deviations = np.array(
        [
            np.array(analytics.release(merged, config, rng=rng)["hist"]) - exact
            for _ in range(trials)
        ]
    )
    draws = deviations.size
    for confidence in (0.999, 0.9):
        failures = int(np.sum(np.abs(deviations) > noise_bound(scale, confidence)))
        low, high = binomial_range(draws, 1 - confidence)
        assert low <= failures <= high, (confidence, failures, low, high)
    # The bound for too small a scale fails far more often than 0.1 % of the time.
    too_tight = int(np.sum(np.abs(deviations) > noise_bound(0.8 * scale, 0.999)))
    assert too_tight > binomial_range(draws, 0.001)[1]


def balle_wang_excess(sigma: float, sens: float, epsilon: float, delta: float) -> float:
    """Theorem 8 of Balle & Wang (2018) with scipy's normal CDF, minus the target delta."""
    a, b = sens / (2 * sigma), epsilon * sigma / sens
    return stats.norm.cdf(a - b) - math.exp(epsilon) * stats.norm.cdf(-a - b) - delta


def test_the_analytic_gaussian_sigma_solves_balle_and_wangs_equation() -> None:
    for epsilon, delta, sens in [
        (0.1, 1e-5, 1.0),
        (1.0, 1e-5, 2.0),
        (4.0, 1e-8, 0.5),
        (30, 1e-10, 1),
    ]:
        arguments = (sens, epsilon, delta)
        reference = brentq(balle_wang_excess, 1e-6, 1e6, args=arguments, xtol=1e-15, rtol=1e-14)
        sigma = gaussian_sigma(sens, epsilon, delta)
        assert sigma == pytest.approx(reference, rel=1e-9)
        assert sigma >= reference * (1 - 1e-15)
        assert gaussian_delta(sigma, sens, epsilon) <= delta
        assert gaussian_delta(sigma * 0.99, sens, epsilon) > delta


def test_the_analytic_gaussian_sigma_never_exceeds_the_classic_bound_for_epsilon_below_one() -> (
    None
):
    for epsilon in (0.05, 0.3, 0.9):
        for delta in (1e-3, 1e-6, 1e-9):
            classic = math.sqrt(2 * math.log(1.25 / delta)) / epsilon
            assert gaussian_sigma(1.0, epsilon, delta) <= classic
    assert gaussian_sigma(3.0, 0.5, 1e-6) == pytest.approx(3 * gaussian_sigma(1.0, 0.5, 1e-6))
    assert gaussian_sigma(0.0, 0.5, 1e-6) == 0.0


def test_gaussian_noise_has_the_calibrated_standard_deviation() -> None:
    rng = np.random.default_rng(7)
    sigma = gaussian_sigma(2.0, 1.0, 1e-5)
    noise = gaussian_mechanism(np.zeros(100_000), 2.0, 1.0, 1e-5, rng)
    assert np.std(noise) == pytest.approx(sigma, rel=0.01)
    assert stats.kstest(noise, stats.norm(scale=sigma).cdf).pvalue > 1e-4


@pytest.mark.parametrize("epsilon, delta", [(0.0, 1e-5), (1.0, 0.0), (1.0, 1.0), (math.nan, 0.1)])
def test_the_gaussian_mechanism_needs_positive_epsilon_and_delta_below_one(
    epsilon: float, delta: float
) -> None:
    with pytest.raises(ValueError):
        gaussian_sigma(1.0, epsilon, delta)


def test_a_ledger_charge_returns_the_new_totals_and_records_the_charge() -> None:
    ledger = Ledger(epsilon_budget=2.0, delta_budget=1e-5)
    assert ledger.charge(0.5, label="count") == Spent(0.5, 0.0)
    assert ledger.charge(0.75, 1e-6, label="histogram") == Spent(1.25, 1e-6)
    assert ledger.spent == Spent(1.25, 1e-6)
    assert ledger.remaining == Spent(0.75, 9e-6)
    assert ledger.charges == [Charge(0.5, 0.0, "count"), Charge(0.75, 1e-6, "histogram")]


def test_composition_adds_up_so_ten_charges_of_a_tenth_use_exactly_a_budget_of_one() -> None:
    ledger = Ledger(epsilon_budget=1.0)
    for _ in range(10):
        ledger.charge(0.1)
    assert ledger.spent == Spent(1.0, 0.0)
    assert ledger.remaining == Spent(0.0, 0.0)
    assert not ledger.can_charge(1e-12)
    assert ledger.can_charge(0.0)
    with pytest.raises(BudgetExceeded):
        ledger.charge(1e-12)
    assert basic_composition([(0.3, 1e-6), (0.2, 0.0), (0.5, 2e-6)]) == Spent(1.0, 3e-6)


def test_the_ledger_refuses_a_charge_past_the_budget_and_charges_nothing() -> None:
    ledger = Ledger(epsilon_budget=1.0, delta_budget=1e-6)
    ledger.charge(0.7, 5e-7)
    before = ledger.to_dict()
    with pytest.raises(BudgetExceeded) as caught:
        ledger.charge(0.4)
    message = str(caught.value)
    for text in ("epsilon", "requested epsilon=0.4", "spent epsilon=0.7", "budget epsilon=1"):
        assert text in message, message
    assert "Nothing was charged" in message
    assert caught.value.requested == Spent(0.4, 0.0)
    assert caught.value.spent == Spent(0.7, 5e-7)
    assert caught.value.budget == Spent(1.0, 1e-6)
    assert ledger.to_dict() == before
    with pytest.raises(BudgetExceeded, match=r"\(delta\)"):
        ledger.charge(0.1, 6e-7)
    assert ledger.to_dict() == before
    assert ledger.charge(0.3, 5e-7) == Spent(1.0, 1e-6)


@pytest.mark.parametrize("epsilon, delta", [(-0.1, 0.0), (math.inf, 0.0), (0.1, -1e-9), (0.1, 1.0)])
def test_the_ledger_rejects_invalid_charges_without_recording_them(
    epsilon: float, delta: float
) -> None:
    ledger = Ledger(epsilon_budget=10.0, delta_budget=0.5)
    with pytest.raises(ValueError):
        ledger.charge(epsilon, delta)
    assert ledger.charges == []


def test_a_ledger_survives_a_round_trip_through_its_dict_form() -> None:
    ledger = Ledger(epsilon_budget=3.0, delta_budget=1e-6)
    ledger.charge(1.0, label="mean")
    ledger.charge(0.5, 1e-7)
    copy = Ledger.from_dict(ledger.to_dict())
    assert copy == ledger and copy.spent == ledger.spent
    with pytest.raises(BudgetExceeded):
        copy.charge(1.6)


@pytest.mark.parametrize("epsilon_budget, delta_budget", [(-1.0, 0.0), (math.nan, 0.0), (1, 1.0)])
def test_a_ledger_needs_a_valid_budget(epsilon_budget: float, delta_budget: float) -> None:
    with pytest.raises(ValueError):
        Ledger(epsilon_budget, delta_budget)


def test_a_zero_budget_allows_only_free_releases() -> None:
    ledger = Ledger(epsilon_budget=0.0)
    assert ledger.charge(0.0) == Spent(0.0, 0.0)
    with pytest.raises(BudgetExceeded):
        ledger.charge(0.01)
