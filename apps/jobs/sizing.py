"""Work-unit sizing from each worker's measured speed (pure, no ORM).

A compute kernel prices its indices in cost units of "about one second of one core running the
numpy kernel" (kernels.compute), so a worker's speed on a kernel is cost units per second of
its own compute time, and a unit that should take that worker ``unit_seconds`` costs
``speed * unit_seconds``. The scheduler cuts the space lazily, one unit at a time for the
worker that asks, so each unit fits the worker it is cut for.

Speeds are kept per kernel (a browser's JavaScript is slower against numpy on some kernels
than on others) as an exponentially weighted mean of the cost / seconds of the worker's
results. A worker not yet measured on a kernel gets NOMINAL_SPEED. A replica that timed out
halves the worker's speed, so a worker that overstated its speed gets smaller units at once.
Speeds stay within [MIN_SPEED, MAX_SPEED]: a worker cannot claim units of unbounded size, and
a unit cut for the fastest worker still fits a deadline scaled to the slowest (see
``replica_deadline_s``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

NOMINAL_SPEED = 1.0
MIN_SPEED = 0.05
MAX_SPEED = 20.0
SMOOTHING = 0.5  # the weight of the newest measurement
# A unit computed faster than this is too short to time: fixed costs (a sieve's setup, a
# thread hop) dominate it, and counting it would shrink the next units towards those costs.
MIN_TIMED_S = 0.05


def clamp_speed(speed: float) -> float:
    return min(max(speed, MIN_SPEED), MAX_SPEED)


def speed_of(speeds: Mapping[str, float] | None, kernel: str) -> float:
    """A worker's speed on a kernel: measured, or NOMINAL_SPEED when not yet measured."""
    value = (speeds or {}).get(kernel)
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return clamp_speed(float(value))
    return NOMINAL_SPEED


def is_timed(seconds: float) -> bool:
    """Whether a unit computed in ``seconds`` took long enough to measure a speed."""
    return math.isfinite(seconds) and seconds >= MIN_TIMED_S


def speeds_after_result(
    speeds: Mapping[str, float] | None, kernel: str, *, cost: float, seconds: float
) -> dict[str, float]:
    """The speeds after a result of a unit of ``cost`` computed in ``seconds``.

    A result computed in less than MIN_TIMED_S (or without a finite time) measures nothing and
    leaves the speeds as they are.
    """
    speeds = dict(speeds or {})
    if not (is_timed(seconds) and math.isfinite(cost) and cost > 0):
        return speeds
    measured = clamp_speed(cost / seconds)
    if kernel in speeds:
        old = speed_of(speeds, kernel)
        measured = clamp_speed((1 - SMOOTHING) * old + SMOOTHING * measured)
    speeds[kernel] = measured
    return speeds


def speeds_after_timeout(speeds: Mapping[str, float] | None, kernel: str) -> dict[str, float]:
    """The speeds after a replica of a unit of this kernel ran past its deadline."""
    speeds = dict(speeds or {})
    speeds[kernel] = clamp_speed(speed_of(speeds, kernel) / 2)
    return speeds


def target_cost(
    *, unit_seconds: float, speed: float, remaining_cost: float, units_left: int
) -> float:
    """The cost of the next unit for a worker of ``speed``: ``unit_seconds`` of its time, but
    never so small that ``remaining_cost`` (an upper bound on what is left of the space) would
    need more than ``units_left`` units."""
    wanted = unit_seconds * clamp_speed(speed)
    floor = remaining_cost / max(units_left, 1)
    return max(wanted, floor)


def replica_deadline_s(*, policy: Mapping[str, float], cost: float, speed: float) -> float:
    """Seconds a worker of ``speed`` gets for a unit of ``cost``: the policy's
    ``unit_deadline_s`` for a unit its size (``unit_seconds`` of its time), stretched in
    proportion when the unit is bigger for it (a unit cut for a faster worker and requeued)."""
    expected_s = cost / clamp_speed(speed)
    return policy["unit_deadline_s"] * max(1.0, expected_s / policy["unit_seconds"])
