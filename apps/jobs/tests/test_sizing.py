"""Unit sizing from measured speed (pure)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.jobs import sizing

POLICY = {"unit_seconds": 5.0, "unit_deadline_s": 60.0}


def test_an_unmeasured_worker_runs_at_the_nominal_speed() -> None:
    assert sizing.speed_of({}, "primes") == sizing.speed_of(None, "primes") == 1.0
    assert sizing.speed_of({"montecarlo": 3.0}, "primes") == 1.0
    for junk in (0, -2.0, math.nan, math.inf, "fast", None):
        assert sizing.speed_of({"primes": junk}, "primes") == 1.0


def test_the_first_result_sets_the_speed_and_later_ones_are_averaged_in() -> None:
    speeds = sizing.speeds_after_result({}, "primes", cost=6.0, seconds=2.0)
    assert speeds == {"primes": 3.0}
    speeds = sizing.speeds_after_result(speeds, "primes", cost=1.0, seconds=1.0)
    assert speeds == {"primes": pytest.approx(2.0)}  # half the old, half the new
    speeds = sizing.speeds_after_result(speeds, "sweep", cost=1.0, seconds=4.0)
    assert speeds == {"primes": pytest.approx(2.0), "sweep": 0.25}  # kept per kernel


def test_a_result_without_a_usable_time_measures_nothing() -> None:
    for seconds in (0.0, -1.0, math.nan, math.inf, sizing.MIN_TIMED_S / 2):
        assert sizing.speeds_after_result({"primes": 2.0}, "primes", cost=1.0, seconds=seconds) == {
            "primes": 2.0
        }


def test_speeds_stay_within_bounds_so_no_unit_grows_without_limit() -> None:
    claimed = sizing.speeds_after_result({}, "primes", cost=1e6, seconds=1.0)
    assert claimed == {"primes": sizing.MAX_SPEED}
    crawling = sizing.speeds_after_result({}, "primes", cost=1e-6, seconds=100.0)
    assert crawling == {"primes": sizing.MIN_SPEED}


def test_a_missed_deadline_halves_the_speed() -> None:
    assert sizing.speeds_after_timeout({"primes": 4.0}, "primes") == {"primes": 2.0}
    assert sizing.speeds_after_timeout({}, "primes") == {"primes": 0.5}
    assert sizing.speeds_after_timeout({"primes": sizing.MIN_SPEED}, "primes") == {
        "primes": sizing.MIN_SPEED
    }


def test_the_target_is_the_workers_unit_seconds_unless_the_unit_budget_forbids_it() -> None:
    assert sizing.target_cost(unit_seconds=5, speed=2, remaining_cost=1e6, units_left=10**5) == 10
    # 1e6 cost units left in at most 1,000 units: each must cost at least 1,000.
    assert sizing.target_cost(unit_seconds=5, speed=2, remaining_cost=1e6, units_left=1000) == 1000
    assert sizing.target_cost(unit_seconds=5, speed=2, remaining_cost=1e6, units_left=0) == 1e6


@given(
    cost=st.floats(min_value=1e-6, max_value=1e6),
    speed=st.floats(min_value=1e-3, max_value=1e3),
)
def test_a_deadline_never_falls_below_the_policys_and_grows_with_the_units_time(
    cost: float, speed: float
) -> None:
    deadline = sizing.replica_deadline_s(policy=POLICY, cost=cost, speed=speed)
    expected = cost / sizing.clamp_speed(speed)
    assert deadline >= POLICY["unit_deadline_s"]
    assert deadline >= expected * POLICY["unit_deadline_s"] / POLICY["unit_seconds"] * (1 - 1e-12)


def test_a_unit_the_workers_size_gets_the_policys_deadline() -> None:
    assert sizing.replica_deadline_s(policy=POLICY, cost=10.0, speed=2.0) == 60.0
    assert sizing.replica_deadline_s(policy=POLICY, cost=40.0, speed=2.0) == 240.0
