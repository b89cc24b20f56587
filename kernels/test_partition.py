"""Client partitions: IID splits and Dirichlet label skew."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import partition


def label_entropy(y: np.ndarray) -> float:
    p = np.bincount(y) / len(y)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@st.composite
def partition_cases(draw: st.DrawFn) -> tuple[np.ndarray, int, str, int]:
    n_shards = draw(st.integers(1, 6))
    n_classes = draw(st.integers(1, 5))
    n = draw(st.integers(n_shards * 12, 300))
    y = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n)))
    alpha = draw(st.sampled_from([0.5, 1.0, 5.0, 100.0]))
    scheme = draw(st.sampled_from(["iid", f"dirichlet:{alpha}"]))
    return y, n_shards, scheme, draw(st.integers(0, 2**31))


@settings(max_examples=60, deadline=None)
@given(partition_cases())
def test_it_is_disjoint_and_complete(case) -> None:
    y, n_shards, scheme, seed = case
    shards = partition(y, n_shards, scheme, seed=seed, min_size=3)
    assert len(shards) == n_shards
    assert all(shard.dtype == np.int64 for shard in shards)
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)), np.arange(len(y)))
    assert min(len(shard) for shard in shards) >= 3


@pytest.mark.parametrize("scheme", ["iid", "dirichlet:0.3"])
def test_it_gives_every_shard_at_least_min_size(digits, scheme) -> None:
    shards = partition(digits.y_train, 20, scheme, seed=1, min_size=25)
    assert min(len(shard) for shard in shards) >= 25


def test_it_lowers_an_impossible_minimum_to_an_even_share() -> None:
    y = np.arange(40) % 2
    shards = partition(y, 4, "dirichlet:1000", seed=0, min_size=50)
    assert min(len(shard) for shard in shards) >= 10


def test_it_gives_up_with_a_clear_error_when_the_minimum_is_unreachable() -> None:
    with pytest.raises(ValueError, match="attempts"):
        partition(np.zeros(30, dtype=int), 10, "dirichlet:0.01", seed=0, min_size=3)


def test_it_skews_labels_more_for_a_smaller_alpha(digits) -> None:
    def mean_entropy(alpha: float) -> float:
        shards = partition(digits.y_train, 10, f"dirichlet:{alpha}", seed=0)
        return float(np.mean([label_entropy(digits.y_train[shard]) for shard in shards]))

    assert mean_entropy(0.1) < mean_entropy(1.0) < mean_entropy(100.0)
    assert mean_entropy(100.0) > 0.95 * np.log(10)


def test_it_stops_feeding_clients_that_hold_their_fair_share(digits) -> None:
    bound = len(digits.y_train) / 10 + np.bincount(digits.y_train).max()
    for seed in range(5):
        shards = partition(digits.y_train, 10, "dirichlet:0.1", seed=seed)
        assert max(len(shard) for shard in shards) < bound


@pytest.mark.parametrize("scheme", ["iid", "dirichlet:0.5"])
def test_it_is_deterministic_for_a_seed(digits, scheme) -> None:
    first = partition(digits.y_train, 8, scheme, seed=5)
    again = partition(digits.y_train, 8, scheme, seed=5)
    other = partition(digits.y_train, 8, scheme, seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_it_splits_iid_evenly() -> None:
    sizes = [len(shard) for shard in partition(np.zeros(103, dtype=int), 10)]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    "scheme", ["dirichlet", "dirichlet:0", "dirichlet:-1", "dirichlet:x", "pathological"]
)
def test_it_rejects_bad_scheme_strings(scheme) -> None:
    with pytest.raises(ValueError, match="partition scheme"):
        partition(np.zeros(50, dtype=int), 2, scheme)


def test_it_rejects_more_shards_than_samples() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        partition(np.zeros(3, dtype=int), 4)
