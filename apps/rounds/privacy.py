"""Differential-privacy mechanisms and budget accounting for analytics releases (pure, no ORM)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

# The privacy unit is a worker. Each worker contributes one bounded vector: the aggregates of
# at most ``max_rows`` of its rows, each value clipped to [lo, hi] (kernels/analytics.py). Two
# inputs are neighbours when they differ by one worker's whole contribution: "add_remove" (one
# worker present in one input and absent from the other; the default, as in user-level DP for
# federated learning, McMahan et al., "Learning Differentially Private Recurrent Language
# Models", ICLR 2018) or "replace" (one worker's rows swapped for any other bounded rows).
# The guarantee therefore covers everything a worker holds, not only single rows.
#
# Mechanisms follow Dwork & Roth, "The Algorithmic Foundations of Differential Privacy" (2014):
# the Laplace mechanism (Theorem 3.6; Dwork, McSherry, Nissim & Smith, TCC 2006) adds
# Laplace(sensitivity / epsilon) noise calibrated to the L1 sensitivity and is
# (epsilon, 0)-DP. The Gaussian mechanism here is the analytic Gaussian mechanism of Balle &
# Wang, "Improving the Gaussian Mechanism for Differential Privacy: Analytical Calibration and
# Optimal Denoising", ICML 2018 (Theorem 8): the smallest sigma whose privacy profile meets
# (epsilon, delta), for any epsilon > 0, calibrated to the L2 sensitivity. It replaces the
# classic sigma = sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon (Dwork & Roth, Theorem
# A.1), which holds only for epsilon < 1 and is never smaller.
#
# Randomness comes from a numpy.random.Generator the caller passes: tests pass a seeded one;
# production should pass np.random.default_rng(), which numpy seeds from OS entropy.
#
# Floating-point attacks: sampling Laplace (or Gaussian) noise in floating point leaks
# information through the low-order bits of the result (Mironov, "On Significance of the
# Least Significant Bits for Differential Privacy", CCS 2012). The mechanisms in this module
# do not defend against it; analytics releases therefore use kernels.noise instead (exact
# discrete Laplace noise on a grid, Canonne, Kamath & Steinke, NeurIPS 2020). These remain for
# calibration and for model updates, where the noise is one of many float operations.
#
# Accounting is basic sequential composition (Dwork & Roth, Theorem 3.16): running mechanisms
# with (epsilon_i, delta_i) on the same data is (sum epsilon_i, sum delta_i)-DP.

Statistic = Literal["count", "sum", "histogram"]
Neighbouring = Literal["add_remove", "replace"]
Norm = Literal["l1", "l2"]

_SQRT2 = math.sqrt(2.0)


def sensitivity(
    statistic: Statistic,
    *,
    max_rows: int,
    lo: float | None = None,
    hi: float | None = None,
    neighbouring: Neighbouring = "add_remove",
    norm: Norm = "l1",
) -> float:
    """Return the sensitivity of a bounded statistic with a worker as the privacy unit.

    A worker contributes ``c <= max_rows`` rows with values clipped to [lo, hi]; its count is
    c, its sum lies in [max_rows * min(lo, 0), max_rows * max(hi, 0)] and its histogram is a
    vector of non-negative integers summing to c.

    add_remove (L1 and L2 alike, as all rows may fall in one bin):
        count: max_rows;  sum: max_rows * max(|lo|, |hi|);  histogram: max_rows.
    replace:
        count: max_rows;  sum: max_rows * (max(hi, 0) - min(lo, 0)) (a scalar, so L1 = L2);
        histogram: 2 * max_rows (L1) or sqrt(2) * max_rows (L2), all rows moving between bins.

    A mean is a count and a sum released together; quantiles are post-processing of a
    histogram. ``lo`` and ``hi`` are needed for sums only.
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}.")
    if neighbouring not in ("add_remove", "replace"):
        raise ValueError(f"neighbouring must be 'add_remove' or 'replace', got {neighbouring!r}.")
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}.")
    rows = float(max_rows)
    if statistic == "count":
        return rows
    if statistic == "histogram":
        if neighbouring == "add_remove":
            return rows
        return 2.0 * rows if norm == "l1" else _SQRT2 * rows
    if statistic == "sum":
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError("A sum needs finite bounds lo <= hi.")
        if neighbouring == "add_remove":
            return rows * max(abs(lo), abs(hi))
        return rows * (max(hi, 0.0) - min(lo, 0.0))
    raise ValueError(f"Unknown statistic {statistic!r}; expected count, sum or histogram.")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_epsilon(epsilon: float) -> None:
    if not (_is_number(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a finite number greater than 0, got {epsilon!r}.")


def _check_delta(delta: float, *, allow_zero: bool) -> None:
    if not (_is_number(delta) and (delta >= 0 if allow_zero else delta > 0) and delta < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"delta must lie in {interval}, got {delta!r}.")


def _check_sensitivity(value: float) -> None:
    if not (_is_number(value) and value >= 0):
        raise ValueError(f"The sensitivity must be a finite number >= 0, got {value!r}.")


def _check_rng(rng: Any) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator, e.g. np.random.default_rng().")


def laplace_scale(l1_sensitivity: float, epsilon: float) -> float:
    """Return the Laplace scale b = sensitivity / epsilon of the epsilon-DP Laplace mechanism."""
    _check_sensitivity(l1_sensitivity)
    _check_epsilon(epsilon)
    return l1_sensitivity / epsilon


def laplace_mechanism(
    value: float | np.ndarray | list[float],
    l1_sensitivity: float,
    epsilon: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return ``value`` plus independent Laplace(sensitivity / epsilon) noise per entry.

    (epsilon, 0)-DP when ``l1_sensitivity`` bounds the L1 distance between ``value`` on
    neighbouring inputs (Dwork & Roth, Theorem 3.6). The result is a float64 array of the shape
    of ``value`` (0-d for a scalar).
    """
    _check_rng(rng)
    scale = laplace_scale(l1_sensitivity, epsilon)
    exact = np.asarray(value, dtype=np.float64)
    return exact + rng.laplace(0.0, scale, size=exact.shape)


def noise_bound(scale: float, confidence: float) -> float:
    """Return t with P(|X| <= t) = confidence for X ~ Laplace(0, scale): scale * ln(1/(1-c)).

    The Laplace tail is P(|X| > t) = exp(-t / scale), so the bound is exact, not loose.
    """
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}.")
    if not 0 <= confidence < 1:
        raise ValueError(f"confidence must lie in [0, 1), got {confidence!r}.")
    return scale * -math.log1p(-confidence)


def _log_normal_cdf(x: float) -> float:
    """log Phi(x), accurate far into the lower tail."""
    if x > -30.0:
        return math.log(0.5 * math.erfc(-x / _SQRT2))
    # Asymptotic series of Mills' ratio: Phi(x) = phi(x)/|x| (1 - 1/x^2 + 3/x^4 - 15/x^6 ...).
    inverse = 1.0 / (x * x)
    series = 1.0 - inverse + 3.0 * inverse**2 - 15.0 * inverse**3
    return -0.5 * x * x - math.log(-x) - 0.5 * math.log(2.0 * math.pi) + math.log(series)


def gaussian_delta(sigma: float, l2_sensitivity: float, epsilon: float) -> float:
    """Return the smallest delta for which N(0, sigma^2) noise is (epsilon, delta)-DP.

    Balle & Wang (2018), Theorem 8: with a = sensitivity / (2 sigma), b = epsilon sigma /
    sensitivity, delta = Phi(a - b) - exp(epsilon) Phi(-a - b).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be greater than 0, got {sigma!r}.")
    _check_epsilon(epsilon)
    _check_sensitivity(l2_sensitivity)
    if l2_sensitivity == 0:
        return 0.0
    a = l2_sensitivity / (2.0 * sigma)
    b = epsilon * sigma / l2_sensitivity
    first = 0.5 * math.erfc(-(a - b) / _SQRT2)
    second = math.exp(min(epsilon + _log_normal_cdf(-a - b), 0.0))
    return max(first - second, 0.0)


def gaussian_sigma(l2_sensitivity: float, epsilon: float, delta: float) -> float:
    """Return the analytic Gaussian mechanism's sigma for (epsilon, delta) (Balle & Wang 2018).

    The smallest sigma (to a relative 1e-12, rounded up) with ``gaussian_delta(sigma) <= delta``,
    found by bisection: the privacy profile decreases in sigma. Valid for every epsilon > 0.
    """
    _check_sensitivity(l2_sensitivity)
    _check_epsilon(epsilon)
    _check_delta(delta, allow_zero=False)
    if l2_sensitivity == 0:
        return 0.0
    high = l2_sensitivity
    while gaussian_delta(high, l2_sensitivity, epsilon) > delta:
        high *= 2.0
    low = high / 2.0
    while low > 0 and gaussian_delta(low, l2_sensitivity, epsilon) <= delta:
        high, low = low, low / 2.0
    while high - low > 1e-12 * high:
        middle = 0.5 * (low + high)
        if gaussian_delta(middle, l2_sensitivity, epsilon) <= delta:
            high = middle
        else:
            low = middle
    return high


def gaussian_mechanism(
    value: float | np.ndarray | list[float],
    l2_sensitivity: float,
    epsilon: float,
    delta: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return ``value`` plus independent N(0, sigma^2) noise, sigma from ``gaussian_sigma``.

    (epsilon, delta)-DP when ``l2_sensitivity`` bounds the L2 distance between ``value`` on
    neighbouring inputs. The result is a float64 array of the shape of ``value``.
    """
    _check_rng(rng)
    sigma = gaussian_sigma(l2_sensitivity, epsilon, delta)
    exact = np.asarray(value, dtype=np.float64)
    return exact + rng.normal(0.0, sigma, size=exact.shape)


class Spent(NamedTuple):
    """An (epsilon, delta) pair: spent so far, requested, or a budget."""

    epsilon: float
    delta: float


class Charge(NamedTuple):
    """One accepted charge to a ledger."""

    epsilon: float
    delta: float
    label: str


def basic_composition(charges: Iterable[tuple[float, float]]) -> Spent:
    """Return the total (sum of epsilons, sum of deltas) of mechanisms run on the same data.

    Dwork & Roth, Theorem 3.16. Totals are math.fsum (correctly rounded, order-independent),
    so ten charges of 0.1 total exactly 1.0.
    """
    pairs = [(float(epsilon), float(delta)) for epsilon, delta in charges]
    return Spent(math.fsum(e for e, _ in pairs), math.fsum(d for _, d in pairs))


class BudgetExceeded(Exception):
    """A charge would take a ledger past its budget; nothing was charged."""

    def __init__(self, requested: Spent, spent: Spent, budget: Spent) -> None:
        self.requested = requested
        self.spent = spent
        self.budget = budget
        after = basic_composition([spent, requested])
        over = [
            name for name in ("epsilon", "delta") if getattr(after, name) > getattr(budget, name)
        ]
        super().__init__(
            f"Privacy budget exceeded ({' and '.join(over)}): requested "
            f"epsilon={requested.epsilon:g}, delta={requested.delta:g}; already spent "
            f"epsilon={spent.epsilon:g}, delta={spent.delta:g}; budget epsilon={budget.epsilon:g}"
            f", delta={budget.delta:g}. Nothing was charged."
        )


@dataclass
class Ledger:
    """A job's privacy budget under basic sequential composition.

    Charge a release before running it; ``charge`` either records the whole charge or raises
    BudgetExceeded and records nothing. Not thread-safe: a server keeps one ledger per job and
    serializes charges (for example, by locking the job's row while it charges and saves).
    """

    epsilon_budget: float
    delta_budget: float = 0.0
    charges: list[Charge] = field(default_factory=list)

    def __post_init__(self) -> None:
        budget = self.epsilon_budget
        if not (_is_number(budget) and budget >= 0):
            raise ValueError(f"The epsilon budget must be a finite number >= 0, got {budget!r}.")
        _check_delta(self.delta_budget, allow_zero=True)
        self.epsilon_budget = float(self.epsilon_budget)
        self.delta_budget = float(self.delta_budget)
        self.charges = [Charge(float(e), float(d), str(label)) for e, d, label in self.charges]

    @property
    def budget(self) -> Spent:
        """The (epsilon, delta) budget."""
        return Spent(self.epsilon_budget, self.delta_budget)

    @property
    def spent(self) -> Spent:
        """The total (epsilon, delta) charged so far."""
        return basic_composition((c.epsilon, c.delta) for c in self.charges)

    @property
    def remaining(self) -> Spent:
        """What is left of the budget (never negative)."""
        spent = self.spent
        return Spent(
            max(self.epsilon_budget - spent.epsilon, 0.0), max(self.delta_budget - spent.delta, 0.0)
        )

    def can_charge(self, epsilon: float, delta: float = 0.0) -> bool:
        """Whether ``charge(epsilon, delta)`` would succeed (inputs are checked the same way)."""
        return self._totals_after(epsilon, delta) is not None

    def charge(self, epsilon: float, delta: float = 0.0, *, label: str = "") -> Spent:
        """Record a release costing (epsilon, delta) and return the new totals.

        Raises BudgetExceeded, charging nothing, when either total would pass its budget, and
        ValueError for epsilon < 0, delta outside [0, 1) or non-finite values.
        """
        totals = self._totals_after(epsilon, delta)
        if totals is None:
            raise BudgetExceeded(Spent(float(epsilon), float(delta)), self.spent, self.budget)
        self.charges.append(Charge(float(epsilon), float(delta), label))
        return totals

    def _totals_after(self, epsilon: float, delta: float) -> Spent | None:
        if not (_is_number(epsilon) and epsilon >= 0):
            raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}.")
        _check_delta(delta, allow_zero=True)
        pairs = [(c.epsilon, c.delta) for c in self.charges] + [(epsilon, delta)]
        totals = basic_composition(pairs)
        if totals.epsilon > self.epsilon_budget or totals.delta > self.delta_budget:
            return None
        return totals

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for storing the ledger with its job."""
        return {
            "epsilon_budget": self.epsilon_budget,
            "delta_budget": self.delta_budget,
            "charges": [c._asdict() for c in self.charges],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ledger:
        """Rebuild a ledger from ``to_dict`` output."""
        charges = [Charge(c["epsilon"], c["delta"], c.get("label", "")) for c in data["charges"]]
        return cls(data["epsilon_budget"], data.get("delta_budget", 0.0), charges)
