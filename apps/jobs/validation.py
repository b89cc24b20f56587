"""Replica validation of compute units: quorum finding, adaptive replication and trust (pure)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

# A worker at or above this trust may have a unit accepted on its single result (see
# `replication`); every worker starts at DEFAULT_TRUST, below it.
TRUSTED = 0.9
DEFAULT_TRUST = 0.5
TRUST_GAIN = 0.1  # an agreeing result closes this fraction of the gap to 1
TRUST_LOSS = 0.5  # a rejected result multiplies trust by this


def agreeing_group(results: Sequence[Any], agree: Callable[[Any, Any], bool]) -> list[int]:
    """The largest set of results that agree pairwise, as indices (earliest first on ties).

    Steps: for each result in order, the group it opens is itself plus every later result
    that agrees with it and with all already in the group; keep the largest. Agreement with a
    float tolerance is not transitive, hence the pairwise check.
    """
    best: list[int] = []
    for i in range(len(results)):
        group = [i]
        for j in range(i + 1, len(results)):
            if all(agree(results[k], results[j]) for k in group):
                group.append(j)
        if len(group) > len(best):
            best = group
    return best


def results_still_needed(returned: int, group: int, quorum: int) -> int:
    """Replicas a unit needs in all, if every further result joins its largest agreeing group."""
    return returned + max(quorum - group, 0)


def is_spot_checked(job_id: int, index: int, rate: float) -> bool:
    """Whether a unit is picked for a spot check: a draw seeded by the unit, so it repeats."""
    return random.Random(f"spot-check:{job_id}:{index}").random() < rate


def replication(*, trust: float, spot_checked: bool, policy: dict) -> tuple[int, int]:
    """(replicas wanted, quorum) for a fresh unit whose first replica goes to a worker.

    The adaptive rule: a worker whose trust is at least TRUSTED gets the unit alone and its
    single result is accepted, unless the unit is picked for a spot check; every other unit
    (and every unit of a less trusted worker) is replicated per the policy.
    """
    if trust >= TRUSTED and not spot_checked:
        return 1, 1
    return policy["replicas"], policy["quorum"]


def trust_after(trust: float, *, agreed: bool) -> float:
    """A worker's trust after one of its results agreed with a quorum or was rejected."""
    scale, shift = trust_step(agreed=agreed)
    return trust * scale + shift


def trust_step(*, agreed: bool) -> tuple[float, float]:
    """(scale, shift) with trust_after(t) == t * scale + shift, for one UPDATE in the database:
    an agreeing result closes TRUST_GAIN of the gap to 1, a rejected one multiplies by
    TRUST_LOSS."""
    if agreed:
        return 1.0 - TRUST_GAIN, TRUST_GAIN
    return TRUST_LOSS, 0.0
