"""The pure rules of replica validation: agreeing groups, adaptive replication and trust."""

from __future__ import annotations

from apps.jobs import validation

POLICY = {"replicas": 3, "quorum": 2}


def same(a: int, b: int) -> bool:
    return a == b


def test_the_largest_pairwise_agreeing_group_wins_and_ties_go_to_the_earliest() -> None:
    assert validation.agreeing_group([5, 6, 5, 7, 5], same) == [0, 2, 4]
    assert validation.agreeing_group([5, 6], same) == [0]
    assert validation.agreeing_group([], same) == []


def test_agreement_is_checked_pairwise_not_through_a_chain() -> None:
    def near(a: float, b: float) -> bool:
        return abs(a - b) <= 1

    assert validation.agreeing_group([0.0, 1.0, 2.0], near) == [0, 1]


def test_a_unit_needs_as_many_results_as_would_complete_its_quorum() -> None:
    assert validation.results_still_needed(2, 1, 2) == 3
    assert validation.results_still_needed(3, 1, 2) == 4
    assert validation.results_still_needed(1, 1, 2) == 2


def test_spot_checks_repeat_for_a_unit_and_come_at_about_the_rate() -> None:
    draws = [validation.is_spot_checked(7, index, 0.1) for index in range(2000)]
    assert draws == [validation.is_spot_checked(7, index, 0.1) for index in range(2000)]
    assert 150 < sum(draws) < 250
    assert not any(validation.is_spot_checked(7, i, 0.0) for i in range(100))


def test_only_a_trusted_worker_outside_a_spot_check_gets_a_unit_alone() -> None:
    assert validation.replication(trust=0.95, spot_checked=False, policy=POLICY) == (1, 1)
    assert validation.replication(trust=0.95, spot_checked=True, policy=POLICY) == (3, 2)
    assert validation.replication(trust=0.5, spot_checked=False, policy=POLICY) == (3, 2)


def test_trust_rises_slowly_with_agreement_and_halves_with_a_rejection() -> None:
    assert validation.trust_after(0.5, agreed=True) == 0.55
    assert validation.trust_after(0.8, agreed=False) == 0.4
    trust = validation.DEFAULT_TRUST
    for _ in range(16):
        trust = validation.trust_after(trust, agreed=True)
    assert trust >= validation.TRUSTED
