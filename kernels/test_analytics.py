"""Behaviour of the analytics kernel: configs, local contributions, merging and release."""

from __future__ import annotations

import copy
import math
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.analytics import (
    CONFIG_SCHEMA,
    STATISTICS,
    check_contribution,
    histogram,
    local,
    merge,
    noise_scales,
    quantiles_from_histogram,
    release,
    resolve_config,
)
from kernels.config import KernelConfigError


def split_rows(X: np.ndarray, workers: int) -> list[np.ndarray]:
    return np.array_split(X, workers)


def pooled(X: np.ndarray, config: dict[str, Any], workers: int = 4) -> dict[str, Any]:
    return merge([local(part, config) for part in split_rows(X, workers)], config)


def test_the_schema_is_draft_2020_12_with_defaults_and_no_unknown_fields() -> None:
    jsonschema.Draft202012Validator.check_schema(CONFIG_SCHEMA)
    assert CONFIG_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert CONFIG_SCHEMA["additionalProperties"] is False
    for name, spec in CONFIG_SCHEMA["properties"].items():
        assert name == "statistic" or "default" in spec, name
    assert CONFIG_SCHEMA["properties"]["statistic"]["enum"] == list(STATISTICS)


def test_resolving_fills_every_field_and_leaves_unused_ones_null() -> None:
    config = resolve_config({"statistic": "count"})
    assert config == {
        "statistic": "count",
        "column": 0,
        "lo": None,
        "hi": None,
        "bins": None,
        "edges": None,
        "probabilities": None,
        "max_rows": None,
        "epsilon": None,
    }
    quantiles = resolve_config(
        {"statistic": "quantiles", "edges": [0, 1, 3], "epsilon": 2.0, "max_rows": 5}
    )
    assert quantiles["probabilities"] == [0.25, 0.5, 0.75]
    assert (quantiles["lo"], quantiles["hi"], quantiles["bins"]) == (0.0, 3.0, 2)
    assert all(isinstance(edge, float) for edge in quantiles["edges"])


def test_resolving_does_not_modify_the_given_config() -> None:
    given_config = {"statistic": "histogram", "lo": 0, "hi": 1, "bins": 4}
    before = copy.deepcopy(given_config)
    resolve_config(given_config)
    assert given_config == before


def test_bins_between_lo_and_hi_are_equal_width_and_end_exactly_at_hi() -> None:
    config = resolve_config({"statistic": "histogram", "lo": -0.3, "hi": 0.7, "bins": 10})
    edges = np.array(config["edges"])
    assert edges[0] == -0.3 and edges[-1] == 0.7 and edges.size == 11
    np.testing.assert_allclose(np.diff(edges), 0.1, rtol=1e-12)


@pytest.mark.parametrize(
    "config, field, fragment",
    [
        ({}, "statistic", "required"),
        ({"statistic": "median"}, "statistic", "one of: count, sum"),
        ({"statistic": "count", "colour": 1}, "colour", "Unknown field"),
        ({"statistic": "count", "column": -1}, "column", "at least 0"),
        ({"statistic": "count", "column": 1.5}, "column", "integer"),
        ({"statistic": "count", "lo": 0}, "lo", "Not used by the count statistic"),
        ({"statistic": "sum", "lo": 0, "hi": 1, "bins": 3}, "bins", "Not used by the sum"),
        (
            {"statistic": "histogram", "edges": [0, 1], "probabilities": [0.5]},
            "probabilities",
            "Not used",
        ),
        ({"statistic": "sum", "hi": 1}, "lo", "Required by the sum statistic"),
        ({"statistic": "mean", "lo": 2, "hi": 2}, "hi", "greater than lo"),
        ({"statistic": "sum", "lo": float("nan"), "hi": 1}, "lo", "finite"),
        ({"statistic": "sum", "lo": 0, "hi": math.inf}, "hi", "at most"),
        ({"statistic": "histogram", "lo": 0, "hi": 1}, "bins", "unless edges are given"),
        ({"statistic": "histogram", "lo": 0, "hi": 1, "bins": 0}, "bins", "at least 1"),
        ({"statistic": "histogram", "edges": [0, 2, 1]}, "edges", "strictly increasing"),
        ({"statistic": "histogram", "edges": [0]}, "edges", "at least 2 items"),
        ({"statistic": "histogram", "edges": [0, "1"]}, "edges", "Item 1: Must be a number"),
        ({"statistic": "histogram", "edges": [0, 1], "bins": 1}, "bins", "Not allowed with edges"),
        (
            {"statistic": "histogram", "lo": 1, "hi": 1 + 1e-12, "bins": 10_000},
            "bins",
            "Too many bins",
        ),
        (
            {"statistic": "quantiles", "edges": [0, 1], "probabilities": [1.5]},
            "probabilities",
            "at most 1",
        ),
        ({"statistic": "count", "epsilon": 1}, "max_rows", "Required when epsilon is given"),
        ({"statistic": "count", "epsilon": 0, "max_rows": 1}, "epsilon", "greater than 0"),
        ({"statistic": "count", "max_rows": 0}, "max_rows", "at least 1"),
        (
            {"statistic": "sum", "lo": -1e100, "hi": 1e100, "max_rows": 10**9, "epsilon": 1e-300},
            "epsilon",
            "overflow",
        ),
    ],
)
def test_invalid_configs_give_errors_on_the_offending_field(
    config: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(KernelConfigError) as caught:
        resolve_config(config)
    assert field in caught.value.errors, caught.value.errors
    assert any(fragment in message for message in caught.value.errors[field]), caught.value.errors


def test_a_config_that_is_not_an_object_is_a_non_field_error() -> None:
    with pytest.raises(KernelConfigError) as caught:
        resolve_config(["count"])
    assert list(caught.value.errors) == ["non_field_errors"]


def test_counts_and_histograms_over_workers_equal_numpys_on_the_pooled_data() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1001, 3))
    counted = pooled(X, resolve_config({"statistic": "count", "column": 2}), workers=7)
    assert counted == {"count": 1001}
    edges = [-3.5, -1.0, -0.25, 0.0, 0.5, 2.0, 3.5]
    X[:, 1] = np.clip(X[:, 1], -3.4, 3.4)
    config = resolve_config({"statistic": "histogram", "column": 1, "edges": edges})
    merged = pooled(X, config, workers=7)
    expected, _ = np.histogram(X[:, 1], bins=np.array(edges))
    assert merged == {"count": 1001, "hist": expected.tolist()}
    assert all(isinstance(value, int) for value in merged["hist"])


def test_values_on_an_edge_go_to_the_bin_on_its_right_and_the_top_edge_to_the_last_bin() -> None:
    edges = [0.0, 1.0, 2.0, 4.0]
    values = np.array([0.0, 1.0, 1.0, 2.0, 3.999, 4.0])
    assert histogram(values, edges).tolist() == [1, 2, 3]
    assert histogram(values, edges).tolist() == np.histogram(values, bins=edges)[0].tolist()


def test_values_outside_the_edges_are_clipped_into_the_first_and_last_bins() -> None:
    config = resolve_config({"statistic": "histogram", "lo": 0, "hi": 10, "bins": 5})
    X = np.array([[-1e9], [-0.1], [0.0], [5.0], [10.0], [10.1], [1e300]])
    assert local(X, config) == {"count": 7, "hist": [3, 0, 1, 0, 3]}


def test_sums_clip_each_value_to_lo_and_hi_before_adding() -> None:
    config = resolve_config({"statistic": "sum", "lo": -1, "hi": 2})
    X = np.array([[-5.0], [-0.5], [1.5], [9.0]])
    assert local(X, config) == {"count": 4, "sum": -1.0 - 0.5 + 1.5 + 2.0}


def test_each_worker_uses_only_its_first_max_rows_rows() -> None:
    X = np.array([[1.0], [2.0], [3.0], [1000.0], [-1000.0]])
    summed = resolve_config({"statistic": "sum", "lo": -10, "hi": 10, "max_rows": 3})
    assert local(X, summed) == {"count": 3, "sum": 6.0}
    binned = resolve_config({"statistic": "histogram", "edges": [0, 2, 4], "max_rows": 3})
    assert local(X, binned) == {"count": 3, "hist": [1, 2]}
    assert local(X[:2], binned) == {"count": 2, "hist": [1, 1]}
    unbounded = resolve_config({"statistic": "count"})
    assert local(X, unbounded) == {"count": 5}


def test_the_local_sum_is_correctly_rounded_whatever_the_row_order() -> None:
    values = np.array([1e16, 1.0, 1.0, -1e16, 3.0, 1e-3] * 50)
    config = resolve_config({"statistic": "sum", "lo": -1e17, "hi": 1e17})
    expected = math.fsum(values.tolist())
    assert float(np.sum(values)) != expected, "the data does not distinguish summation orders"
    rng = np.random.default_rng(0)
    for _ in range(5):
        shuffled = rng.permutation(values)[:, None]
        assert local(shuffled, config)["sum"] == expected


def test_local_reads_float32_data_and_leaves_its_input_untouched() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 2)).astype(np.float32)
    before = X.copy()
    config = resolve_config({"statistic": "mean", "column": 1, "lo": -1, "hi": 1})
    contribution = local(X, config)
    np.testing.assert_array_equal(X, before)
    clipped = np.clip(X[:, 1].astype(np.float64), -1, 1)
    assert contribution == {"count": 40, "sum": math.fsum(clipped.tolist())}


def test_an_empty_worker_contributes_zeros() -> None:
    config = resolve_config({"statistic": "quantiles", "lo": 0, "hi": 1, "bins": 3})
    assert local(np.empty((0, 2)), config) == {"count": 0, "hist": [0, 0, 0]}
    summed = resolve_config({"statistic": "sum", "lo": -1, "hi": 0})
    result = local(np.empty((0, 1)), summed)
    assert result == {"count": 0, "sum": 0.0} and math.copysign(1.0, result["sum"]) == 1.0


@pytest.mark.parametrize(
    "X, message",
    [
        (np.ones(3), "2-D"),
        (np.ones((3, 2)), "Column 2 does not exist"),
        (np.array([[0.0, 0, 1], [0, 0, np.nan]]), r"finite \(row 1"),
        (np.array([[0.0, 0, np.inf]]), "finite"),
    ],
)
def test_local_rejects_bad_data(X: np.ndarray, message: str) -> None:
    config = resolve_config({"statistic": "sum", "column": 2, "lo": 0, "hi": 1})
    with pytest.raises(ValueError, match=message):
        local(X, config)


def test_values_past_max_rows_are_not_checked_or_read() -> None:
    config = resolve_config({"statistic": "count", "max_rows": 2})
    assert local(np.array([[1.0], [2.0], [np.nan]]), config) == {"count": 2}


def test_merging_adds_counts_and_bins_exactly_even_past_float_precision() -> None:
    big = 2**53
    merged = merge([{"count": big, "hist": [big, 0]}, {"count": 1, "hist": [1, 0]}])
    assert merged == {"count": big + 1, "hist": [big + 1, 0]}


@settings(max_examples=40, deadline=None)
@given(
    sums=st.lists(
        st.floats(min_value=-1e15, max_value=1e15, allow_nan=False), min_size=1, max_size=12
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_merging_does_not_depend_on_the_order_of_contributions(
    sums: list[float], seed: int
) -> None:
    contributions = [{"count": 1, "sum": value} for value in sums]
    order = np.random.default_rng(seed).permutation(len(sums))
    shuffled = [contributions[i] for i in order]
    assert merge(shuffled) == merge(contributions)
    assert merge(contributions)["sum"] == math.fsum(sums)


@pytest.mark.parametrize(
    "contribution, message",
    [
        ({"count": 3}, "keys count, sum"),
        ({"count": 3, "sum": 1.0, "hist": [3]}, "keys count, sum"),
        ({"count": 11, "sum": 1.0}, "exceeds max_rows"),
        ({"count": -1, "sum": 0.0}, "non-negative integer"),
        ({"count": True, "sum": 0.0}, "non-negative integer"),
        ({"count": 2, "sum": 4.5}, "outside"),
        ({"count": 2, "sum": -2.5}, "outside"),
        ({"count": 2, "sum": math.nan}, "finite"),
        ({"count": 2, "sum": "1"}, "finite"),
    ],
)
def test_merging_with_the_config_rejects_contributions_that_break_the_bounds(
    contribution: dict[str, Any], message: str
) -> None:
    config = resolve_config({"statistic": "sum", "lo": -1, "hi": 2, "max_rows": 10})
    good = {"count": 2, "sum": 4.0}
    check_contribution(good, config)
    with pytest.raises(ValueError, match=f"Contribution 1: .*{message}"):
        merge([good, contribution], config)


@pytest.mark.parametrize(
    "hist, message",
    [([1, 1], "must have 3 bins"), ([1, 1, 0], "sums to 2"), ([1, 1, 1.0], "non-negative")],
)
def test_merging_with_the_config_rejects_malformed_histograms(hist: list, message: str) -> None:
    config = resolve_config({"statistic": "histogram", "edges": [0, 1, 2, 3]})
    with pytest.raises(ValueError, match=message):
        merge([{"count": 3, "hist": hist}], config)


def test_merging_without_the_config_needs_contributions_with_matching_keys_and_bins() -> None:
    with pytest.raises(ValueError, match="no contributions"):
        merge([])
    with pytest.raises(ValueError, match="does not have the keys"):
        merge([{"count": 1}, {"count": 1, "sum": 0.0}])
    with pytest.raises(ValueError, match="has 3 bins, not 2"):
        merge([{"count": 1, "hist": [1, 0]}, {"count": 1, "hist": [1, 0, 0]}])
    config = resolve_config({"statistic": "mean", "lo": 0, "hi": 1})
    assert merge([], config) == {"count": 0, "sum": 0.0}


def test_an_exact_release_has_no_noise_and_spends_no_epsilon() -> None:
    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    for statistic, extra in [
        ("count", {}),
        ("sum", {"lo": 0, "hi": 100}),
        ("mean", {"lo": 0, "hi": 100}),
        ("histogram", {"edges": [0, 4, 8, 12]}),
        ("quantiles", {"edges": [0, 4, 8, 12], "probabilities": [0.5]}),
    ]:
        config = resolve_config({"statistic": statistic, "column": 1, **extra})
        released = release(pooled(X, config, workers=3), config)
        assert released["epsilon"] == 0.0 and released["noise_scale"] == {}
        assert released["mechanism"] is None and released["statistic"] == statistic
        if statistic == "count":
            assert released["count"] == 6
        if statistic in ("sum", "mean"):
            assert released["sum"] == 1 + 3 + 5 + 7 + 9 + 11
        if statistic == "mean":
            assert released["mean"] == 6.0 and released["count"] == 6
        if statistic in ("histogram", "quantiles"):
            assert released["hist"] == [2, 2, 2] and released["edges"] == [0.0, 4.0, 8.0, 12.0]
        if statistic == "quantiles":
            assert released["probabilities"] == [0.5] and released["quantiles"] == [6.0]


def test_the_exact_mean_of_no_rows_is_none() -> None:
    config = resolve_config({"statistic": "mean", "lo": 0, "hi": 1})
    assert release(merge([], config), config)["mean"] is None


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=-50, max_value=50, allow_nan=False), min_size=1, max_size=300
    ),
    bins=st.integers(1, 40),
    probabilities=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=5),
)
def test_quantiles_lie_within_one_bin_width_of_numpys_inverted_cdf_quantiles(
    values: list[float], bins: int, probabilities: list[float]
) -> None:
    config = resolve_config(
        {
            "statistic": "quantiles",
            "lo": -50,
            "hi": 50,
            "bins": bins,
            "probabilities": probabilities,
        }
    )
    X = np.array(values)[:, None]
    released = release(pooled(X, config, workers=min(3, len(values))), config)
    expected = np.quantile(np.array(values), probabilities, method="inverted_cdf")
    width = 100 / bins
    for estimate, truth in zip(released["quantiles"], expected, strict=True):
        assert abs(estimate - truth) <= width * (1 + 1e-9), (estimate, truth)


def test_quantiles_of_dense_data_lie_within_one_bin_width_of_numpys_default_quantiles() -> None:
    rng = np.random.default_rng(8)
    for data in (rng.normal(size=5000), rng.exponential(size=5000), rng.uniform(-1, 1, 5000)):
        lo, hi = float(data.min()), float(data.max())
        probabilities = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
        config = resolve_config(
            {
                "statistic": "quantiles",
                "lo": lo,
                "hi": hi,
                "bins": 50,
                "probabilities": probabilities,
            }
        )
        released = release(pooled(data[:, None], config), config)
        width = (hi - lo) / 50
        errors = np.abs(np.array(released["quantiles"]) - np.quantile(data, probabilities))
        assert errors.max() <= width, errors


def test_quantile_estimates_interpolate_inside_a_bin_and_skip_empty_bins() -> None:
    edges = [0.0, 1.0, 2.0, 3.0, 4.0]
    hist = [0, 4, 0, 4]
    estimates = quantiles_from_histogram(hist, edges, [0.0, 0.25, 0.5, 0.5001, 1.0])
    assert estimates[:3] == [1.0, 1.5, 2.0]
    assert 3.0 < estimates[3] < 3.01 and estimates[4] == 4.0
    assert quantiles_from_histogram([0, 0], [0.0, 1.0, 2.0], [0.5]) == [None]
    assert quantiles_from_histogram([-3.0, 2.0], [0.0, 1.0, 2.0], [0.0]) == [1.0]
    with pytest.raises(ValueError, match="need 3 edges"):
        quantiles_from_histogram([1, 1], [0.0, 1.0], [0.5])


def private_histogram_config(**overrides: Any) -> dict[str, Any]:
    fields = {
        "statistic": "histogram",
        "lo": 0,
        "hi": 1,
        "bins": 4,
        "max_rows": 10,
        "epsilon": 0.5,
        **overrides,
    }
    return resolve_config(fields)


def test_a_private_release_repeats_for_a_seed_and_differs_between_seeds() -> None:
    config = private_histogram_config()
    merged = {"count": 8, "hist": [1, 2, 3, 2]}
    first = release(merged, config, rng=np.random.default_rng(4))
    again = release(merged, config, rng=np.random.default_rng(4))
    other = release(merged, config, rng=np.random.default_rng(5))
    assert first == again and first["hist"] != other["hist"]
    assert first["hist"] != merged["hist"]
    assert all(isinstance(value, int) for value in first["hist"])  # integer noise on counts


def test_a_private_release_reports_epsilon_and_a_scale_of_sensitivity_over_epsilon() -> None:
    # Counts and bins: exactly rows / epsilon. Sums: one grid step more of sensitivity.
    expectations = [
        ({"statistic": "count"}, {"count": 10 / 0.5}),
        ({"statistic": "sum", "lo": -3, "hi": 2}, {"sum": 10 * 3 / 0.5}),
        ({"statistic": "mean", "lo": -3, "hi": 2}, {"count": 10 / 0.25, "sum": 10 * 3 / 0.25}),
        ({"statistic": "histogram", "edges": [0, 1]}, {"hist": 10 / 0.5}),
        ({"statistic": "quantiles", "edges": [0, 1]}, {"hist": 10 / 0.5}),
    ]
    for fields, scales in expectations:
        config = resolve_config({**fields, "max_rows": 10, "epsilon": 0.5})
        released = release(merge([], config), config, rng=np.random.default_rng(0))
        assert noise_scales(config) == pytest.approx(scales, rel=2e-6)
        assert {k: v for k, v in noise_scales(config).items() if k != "sum"} == {
            k: v for k, v in scales.items() if k != "sum"
        }
        assert released["noise_scale"] == noise_scales(config)
        assert released["epsilon"] == 0.5 and released["mechanism"] == "discrete_laplace"


def test_a_private_mean_stays_within_lo_and_hi_even_when_the_noisy_count_is_tiny() -> None:
    config = resolve_config(
        {"statistic": "mean", "lo": 1, "hi": 2, "max_rows": 100, "epsilon": 0.1}
    )
    rng = np.random.default_rng(1)
    means = [release({"count": 1, "sum": 1.5}, config, rng=rng)["mean"] for _ in range(200)]
    assert min(means) >= 1.0 and max(means) <= 2.0
    assert {1.0, 2.0} <= set(means), "the noise never pushed the mean against its bounds"


def test_noisy_quantiles_ignore_negative_bins_and_stay_ordered() -> None:
    config = resolve_config(
        {
            "statistic": "quantiles",
            "lo": 0,
            "hi": 1,
            "bins": 10,
            "probabilities": [0.1, 0.5, 0.9],
            "max_rows": 50,
            "epsilon": 0.2,
        }
    )
    rng = np.random.default_rng(2)
    merged = {"count": 20, "hist": [2] * 10}
    checked = 0
    for _ in range(50):
        released = release(merged, config, rng=rng)
        quantiles = released["quantiles"]
        if min(released["hist"]) >= 0 or max(released["hist"]) <= 0:
            continue
        assert quantiles == sorted(quantiles)
        assert all(0.0 <= q <= 1.0 for q in quantiles)
        nonempty = [k for k, count in enumerate(released["hist"]) if count > 0]
        assert config["edges"][nonempty[0]] <= quantiles[0]
        assert quantiles[-1] <= config["edges"][nonempty[-1] + 1]
        checked += 1
    assert checked >= 10, "too few releases had both negative and positive bins"


def test_release_needs_the_merged_keys_of_its_statistic_and_a_numpy_generator() -> None:
    config = private_histogram_config()
    with pytest.raises(ValueError, match="lack hist"):
        release({"count": 3}, config, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        release({"count": 3, "hist": [3, 0, 0, 0]}, config, rng=np.random.RandomState(0))


def test_a_private_release_without_an_rng_draws_fresh_noise() -> None:
    config = private_histogram_config()
    merged = {"count": 0, "hist": [0, 0, 0, 0]}
    assert release(merged, config)["hist"] != release(merged, config)["hist"]
