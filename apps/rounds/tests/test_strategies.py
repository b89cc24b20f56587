"""Tests of the streaming FedAvg aggregation and update checks in apps.rounds.strategies."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.rounds.strategies import (
    DEFAULT_BLOCK,
    UPDATE_ERRORS,
    WeightedMean,
    apply_delta,
    check_update,
    fedavg,
    update_norm,
)

EPS32 = float(np.finfo(np.float32).eps)


def random_updates(seed: int, count: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(size, dtype=np.float32) for _ in range(count)]


def assert_close_to_weighted_average(
    result: np.ndarray, updates: list[np.ndarray], weights: list[float]
) -> None:
    stacked = np.stack(updates).astype(np.float64)
    w = np.asarray(weights, dtype=np.float64)
    expected = np.average(stacked, axis=0, weights=w)
    # Float32 summation bound: a few roundings per update, relative to the weighted mean of |x|.
    scale = np.average(np.abs(stacked), axis=0, weights=w)
    tolerance = 4 * (len(updates) + 1) * EPS32 * scale + 1e-30
    assert result.dtype == np.float32
    assert result.shape == expected.shape
    assert np.all(np.abs(result - expected) <= tolerance)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 2000),
    block=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    weights=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=30),
)
def test_it_matches_numpy_weighted_average(
    size: int, block: int, seed: int, weights: list[float]
) -> None:
    updates = random_updates(seed, len(weights), size)
    mean = WeightedMean(size, block=block)

    for update, weight in zip(updates, weights, strict=True):
        mean.add(update, weight)
    result = mean.result()

    assert_close_to_weighted_average(result, updates, weights)


def test_it_equals_the_plain_mean_with_equal_weights() -> None:
    updates = random_updates(1, 50, 1000)
    mean = WeightedMean(1000)

    for update in updates:
        mean.add(update, 7.0)
    result = mean.result()

    expected = np.mean(np.stack(updates).astype(np.float64), axis=0)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5)


def test_it_counts_updates_and_sums_weights() -> None:
    updates = random_updates(2, 3, 10)
    mean = WeightedMean(10)

    for update, weight in zip(updates, [1.0, 2.5, 4], strict=True):
        mean.add(update, weight)

    assert mean.count == 3
    assert mean.total_weight == 7.5


@pytest.mark.parametrize("weights", [[1.0, 1e-30, 1e30, 3.0], [1e30, 1.0, 1e-30], [5e-324, 1.0]])
def test_it_stays_finite_and_correct_for_extreme_weight_ratios(weights: list[float]) -> None:
    updates = random_updates(3, len(weights), 100)
    mean = WeightedMean(100, block=32)

    for update, weight in zip(updates, weights, strict=True):
        mean.add(update, weight)
    result = mean.result()

    assert np.all(np.isfinite(result))
    assert_close_to_weighted_average(result, updates, weights)


@pytest.mark.parametrize("weights", [[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]])
def test_it_leaves_the_callers_arrays_unchanged(weights: list[float]) -> None:
    updates = random_updates(4, 3, 1000)
    copies = [u.copy() for u in updates]
    mean = WeightedMean(1000, block=64)

    for update, weight in zip(updates, weights, strict=True):
        mean.add(update, weight)
    mean.result()

    for update, copy in zip(updates, copies, strict=True):
        np.testing.assert_array_equal(update, copy)


@pytest.mark.parametrize("weights", [[1.0, 1.0], [1.0, 2.0]])
def test_it_keeps_no_reference_to_an_added_array(weights: list[float]) -> None:
    first, second = np.ones(100, dtype=np.float32), np.ones(100, dtype=np.float32)
    second_ref = weakref.ref(second)
    mean = WeightedMean(100, block=16)
    mean.add(first, weights[0])
    mean.add(second, weights[1])

    first[:] = 50.0
    del second
    gc.collect()
    result = mean.result()

    np.testing.assert_allclose(result, np.ones(100, dtype=np.float32), rtol=1e-6)
    assert second_ref() is None


def test_it_returns_a_new_array_from_each_result_call() -> None:
    updates = random_updates(5, 2, 100)
    mean = WeightedMean(100)
    mean.add(updates[0], 1.0)
    mean.add(updates[1], 3.0)
    first = mean.result()
    expected = first.copy()

    first[:] = 123.0
    second = mean.result()

    assert second is not first
    np.testing.assert_array_equal(second, expected)


@pytest.mark.parametrize(
    "update",
    [
        np.zeros(9, dtype=np.float32),
        np.zeros(11, dtype=np.float32),
        np.zeros((1, 10), dtype=np.float32),
        [0.0] * 10,
    ],
    ids=["short", "long", "2-d", "list"],
)
def test_it_rejects_an_update_of_the_wrong_shape(update: np.ndarray) -> None:
    mean = WeightedMean(10)

    with pytest.raises(ValueError, match="wrong_shape"):
        mean.add(update, 1.0)
    assert mean.count == 0


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_it_rejects_an_update_of_the_wrong_dtype(dtype: type) -> None:
    mean = WeightedMean(10)

    with pytest.raises(ValueError, match="wrong_dtype"):
        mean.add(np.zeros(10, dtype=dtype), 1.0)
    assert mean.count == 0


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf"), -0.0])
def test_it_rejects_a_weight_that_is_not_positive_and_finite(weight: float) -> None:
    mean = WeightedMean(10)

    with pytest.raises(ValueError, match="weight"):
        mean.add(np.zeros(10, dtype=np.float32), weight)
    assert mean.count == 0
    assert mean.total_weight == 0.0


def test_it_refuses_a_result_before_any_update() -> None:
    mean = WeightedMean(10)

    with pytest.raises(ValueError, match="no update"):
        mean.result()


@pytest.mark.parametrize("size", [1, DEFAULT_BLOCK - 1, DEFAULT_BLOCK + 1, 3 * DEFAULT_BLOCK + 7])
def test_it_handles_sizes_that_are_not_a_multiple_of_the_block(size: int) -> None:
    updates = random_updates(6, 4, size)
    weights = [1.0, 0.5, 2.0, 3.0]
    mean = WeightedMean(size)

    for update, weight in zip(updates, weights, strict=True):
        mean.add(update, weight)
    result = mean.result()

    assert_close_to_weighted_average(result, updates, weights)


def test_it_averages_updates_streamed_from_a_generator() -> None:
    updates = random_updates(7, 5, 300)
    weights = [3.0, 1.0, 4.0, 1.0, 5.0]
    produced: list[int] = []

    def stream() -> Iterator[tuple[np.ndarray, float]]:
        for i, (update, weight) in enumerate(zip(updates, weights, strict=True)):
            produced.append(i)
            yield update, weight

    result = fedavg(stream(), 300)

    assert produced == [0, 1, 2, 3, 4]
    assert_close_to_weighted_average(result, updates, weights)


def test_it_applies_a_scaled_delta_without_mutating_the_inputs() -> None:
    global_weights, delta = random_updates(8, 2, 500)
    global_copy, delta_copy = global_weights.copy(), delta.copy()

    new = apply_delta(global_weights, delta, server_lr=0.5)

    assert new.dtype == np.float32
    assert new is not global_weights
    assert new is not delta
    np.testing.assert_allclose(new, global_copy + 0.5 * delta_copy, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(global_weights, global_copy)
    np.testing.assert_array_equal(delta, delta_copy)


def test_it_applies_the_whole_delta_by_default() -> None:
    global_weights, delta = random_updates(9, 2, 50)

    new = apply_delta(global_weights, delta)

    np.testing.assert_array_equal(new, global_weights + delta)


def test_it_refuses_to_apply_a_delta_of_another_shape() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        apply_delta(np.zeros(10, dtype=np.float32), np.zeros(1, dtype=np.float32))


def test_it_computes_the_l2_norm_in_float64() -> None:
    (update,) = random_updates(10, 1, 200_001)
    big = np.full(4, np.finfo(np.float32).max, dtype=np.float32)

    norm = update_norm(update)
    big_norm = update_norm(big)

    assert norm == pytest.approx(np.linalg.norm(update.astype(np.float64)), rel=1e-12)
    assert big_norm == pytest.approx(2.0 * float(np.finfo(np.float32).max), rel=1e-12)


def test_it_passes_a_good_update() -> None:
    (update,) = random_updates(11, 1, 100)

    assert check_update(update, size=100, max_norm=1e3) is None
    assert check_update(update, size=100, max_norm=None) is None


@pytest.mark.parametrize(
    ("update", "code"),
    [
        (np.zeros(99, dtype=np.float32), "wrong_shape"),
        (np.zeros((100, 1), dtype=np.float32), "wrong_shape"),
        ([0.0] * 100, "wrong_shape"),
        (np.zeros(100, dtype=np.float64), "wrong_dtype"),
        (np.zeros(100, dtype=np.int32), "wrong_dtype"),
        (np.array([0.0] * 99 + [np.nan], dtype=np.float32), "not_finite"),
        (np.array([np.inf] + [0.0] * 99, dtype=np.float32), "not_finite"),
        (np.array([-np.inf] + [0.0] * 99, dtype=np.float32), "not_finite"),
        (np.full(100, 1.0, dtype=np.float32), "norm_too_large"),
    ],
)
def test_it_flags_each_kind_of_bad_update(update: np.ndarray, code: str) -> None:
    error = check_update(update, size=100, max_norm=9.99)

    assert error == code
    assert error in UPDATE_ERRORS


def test_it_skips_the_norm_limit_when_none_is_given() -> None:
    update = np.full(100, 1e30, dtype=np.float32)

    assert check_update(update, size=100, max_norm=None) is None
