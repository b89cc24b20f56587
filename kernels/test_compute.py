"""Compute kernels: the interface, splitting, primes, Monte Carlo, the sweep and the generator."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.compute import (
    ComputeKernel,
    KernelConfigError,
    get_compute_kernel,
    list_compute_kernels,
)
from kernels.montecarlo import CHUNK, chunk_sums, ordered_sum
from kernels.primes import count_primes, odd_primes_up_to
from kernels.registry import UnknownKernel
from kernels.rng import MAX_INDEX, blocks, philox4x32, uniform53
from kernels.sweep import DERIVATIVE_FLOOR, grid

NAMES = ["montecarlo", "primes", "sweep"]
SMALL = {
    "primes": {"lo": 0, "hi": 5000},
    "montecarlo": {"problem": "option", "samples": 3000, "seed": 4},
    "sweep": {"steps": 40, "burn_in": 20, "iterations": 30},
}
SIEVE_LIMIT = 10_000


def kernel(name: str) -> ComputeKernel:
    return get_compute_kernel(name)


def errors_of(name: str, config: object) -> dict[str, list[str]]:
    with pytest.raises(KernelConfigError) as caught:
        kernel(name).resolve_config(config)
    return caught.value.errors


def small(name: str, **overrides: Any) -> dict[str, Any]:
    return kernel(name).resolve_config({**SMALL[name], **overrides})


def run_all(name: str, config: dict, target_cost: float) -> list[dict[str, Any]]:
    k = kernel(name)
    return [k.run(unit, config) for unit in k.split(config, target_cost=target_cost)]


def is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.4 * 10**14."""
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17)
    if n in bases:
        return True
    if any(n % p == 0 for p in bases):
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


PRIME_PREFIX = np.cumsum([is_prime(n) for n in range(SIEVE_LIMIT + 1)])


def brute_count(lo: int, hi: int) -> int:
    if hi < lo:
        return 0
    return int(PRIME_PREFIX[hi] - (PRIME_PREFIX[lo - 1] if lo > 0 else 0))


def black_scholes_call(S0: float, K: float, r: float, sigma: float, T: float) -> float:
    def normal_cdf(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    d1 = (math.log(S0 / K) + (r + sigma**2 / 2) * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    return S0 * normal_cdf(d1) - K * math.exp(-r * T) * normal_cdf(d2)


# ---- The registry and configs ----


def test_it_lists_the_montecarlo_primes_and_sweep_compute_kernels() -> None:
    kernels = list_compute_kernels()
    assert [k.name for k in kernels] == NAMES
    assert all(k.kind == "compute" and k.description for k in kernels)
    assert get_compute_kernel("primes") is kernels[1]


def test_it_raises_unknown_kernel_naming_the_known_compute_kernels() -> None:
    with pytest.raises(UnknownKernel) as caught:
        get_compute_kernel("softmax")
    assert "softmax" in str(caught.value) and "primes" in str(caught.value)
    with pytest.raises(KeyError):
        get_compute_kernel(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_each_kernel_publishes_a_closed_draft_2020_12_schema_with_a_default_for_every_field(
    name: str,
) -> None:
    schema = kernel(name).config_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    assert all(
        "default" in spec and spec.get("description") for spec in schema["properties"].values()
    )
    json.dumps(schema, allow_nan=False)


@pytest.mark.parametrize("name", NAMES)
def test_resolving_fills_every_default_without_touching_the_input(name: str) -> None:
    given_config: dict[str, Any] = {}
    resolved = kernel(name).resolve_config(given_config)
    assert given_config == {}
    assert set(resolved) == set(kernel(name).config_schema["properties"])
    assert kernel(name).resolve_config(resolved) == resolved


def test_integral_numbers_are_accepted_as_integers_and_numbers_as_floats() -> None:
    assert kernel("primes").resolve_config({"hi": 1e7})["hi"] == 10_000_000
    assert isinstance(kernel("primes").resolve_config({"hi": 1e7})["hi"], int)
    assert kernel("montecarlo").resolve_config({"K": 90})["K"] == 90.0
    assert isinstance(kernel("montecarlo").resolve_config({"K": 90})["K"], float)


def test_bad_configs_are_reported_field_by_field() -> None:
    errors = errors_of("primes", {"lo": -1, "hi": "10", "size": 3})
    assert errors == {
        "lo": ["Must be at least 0."],
        "hi": ["Must be an integer."],
        "size": ["Unknown field. Allowed fields: lo, hi."],
    }
    assert errors_of("primes", {"hi": 10**13}) == {"hi": ["Must be at most 1000000000000."]}
    assert errors_of("primes", {"lo": 10, "hi": 9}) == {"hi": ["Must be at least lo (10)."]}
    assert errors_of("primes", {"lo": True}) == {"lo": ["Must be an integer."]}
    assert errors_of("primes", [1, 2]) == {
        "non_field_errors": ["The config must be a JSON object."]
    }
    assert "problem" in errors_of("montecarlo", {"problem": "tau"})
    assert errors_of("montecarlo", {"sigma": 0}) == {"sigma": ["Must be greater than 0."]}
    assert errors_of("montecarlo", {"seed": 2**53}) == {"seed": [f"Must be at most {MAX_INDEX}."]}
    assert errors_of("montecarlo", {"r": math.nan}) == {"r": ["Must be a finite number."]}
    assert errors_of("sweep", {"r_min": 3.5, "r_max": 3.0}) == {
        "r_max": ["Must be at least r_min (3.5)."]
    }
    assert errors_of("sweep", {"x0": 1.5, "iterations": 0}) == {
        "x0": ["Must be at most 1.0."],
        "iterations": ["Must be at least 1."],
    }


# ---- Work units ----


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(target=st.floats(min_value=1e-9, max_value=1e-3))
def test_split_covers_the_space_exactly_once_with_units_within_the_target_cost(
    name: str, target: float
) -> None:
    k = kernel(name)
    config = small(name)
    units = k.split(config, target_cost=target)
    start, stop = k.space(config)
    assert [u["start"] for u in units] == [start] + [u["stop"] for u in units[:-1]]
    assert units[-1]["stop"] == stop
    for unit in units:
        assert set(unit) == {"start", "stop", "cost"}
        assert unit["stop"] > unit["start"]
        assert unit["cost"] == k.cost(config, unit["start"], unit["stop"]) > 0
        assert unit["cost"] <= target * (1 + 1e-12) or unit["stop"] - unit["start"] == 1
    json.dumps(units, allow_nan=False)


@pytest.mark.parametrize("name", NAMES)
def test_a_target_above_the_whole_job_gives_one_unit_and_a_tiny_one_single_indices(
    name: str,
) -> None:
    k = kernel(name)
    config = small(name)
    start, stop = k.space(config)
    assert k.split(config, target_cost=1e9) == [k.unit(config, start, stop)]
    singles = k.split_range(config, start, start + 5, target_cost=1e-15)
    assert [(u["start"], u["stop"]) for u in singles] == [
        (i, i + 1) for i in range(start, start + 5)
    ]


def test_units_are_as_long_as_the_target_allows() -> None:
    k = kernel("sweep")
    config = small("sweep")
    per_point = k.cost(config, 0, 1)
    units = k.split(config, target_cost=per_point * 7.5)
    assert [u["stop"] - u["start"] for u in units] == [7] * 5 + [5]


def test_primes_units_get_shorter_as_the_integers_get_larger() -> None:
    k = kernel("primes")
    config = k.resolve_config({"lo": 1, "hi": 10**12})
    low = k.split_range(config, 1, 10**8, target_cost=0.01)
    high = k.split_range(config, 10**12 - 10**8, 10**12, target_cost=0.01)
    assert len(high) > 2 * len(low)
    assert k.cost(config, 10**9, 10**9 + 10**6) > k.cost(config, 10**7, 10**7 + 10**6)


def test_split_range_cuts_what_is_left_of_a_unit() -> None:
    k = kernel("montecarlo")
    config = small("montecarlo")
    units = k.split_range(config, 1234, 3000, target_cost=k.cost(config, 0, 500) * 1.001)
    assert [(u["start"], u["stop"]) for u in units] == [
        (1234, 1734),
        (1734, 2234),
        (2234, 2734),
        (2734, 3000),
    ]
    assert k.split_range(config, 7, 7, target_cost=1.0) == []


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=20, deadline=None)
@given(targets=st.lists(st.floats(min_value=1e-8, max_value=1e-3), min_size=1, max_size=40))
def test_next_unit_cuts_the_space_lazily_like_split_with_any_mix_of_targets(
    name: str, targets: list[float]
) -> None:
    k = kernel(name)
    config = small(name)
    start, stop = k.space(config)
    at = start
    for target in targets:
        unit = k.next_unit(config, at, target_cost=target)
        if unit is None:
            break
        assert unit == k.split_range(config, at, stop, target_cost=target)[0]
        at = unit["stop"]
    else:
        return
    assert at == stop
    assert k.next_unit(config, stop, target_cost=1.0) is None


def test_split_refuses_bad_targets_ranges_and_too_many_units() -> None:
    k = kernel("primes")
    config = k.resolve_config({"lo": 0, "hi": 10**9})
    for bad in (0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="target_cost"):
            k.split(config, target_cost=bad)
        with pytest.raises(ValueError, match="target_cost"):
            k.next_unit(config, 0, target_cost=bad)
    with pytest.raises(ValueError, match="more than 100000 units"):
        k.split(config, target_cost=1e-9)
    with pytest.raises(ValueError, match="more than 10 units"):
        k.split(config, target_cost=0.1, max_units=10)
    with pytest.raises(ValueError, match="not a non-empty part"):
        k.split_range(config, -5, 10, target_cost=1.0)


@pytest.mark.parametrize("name", NAMES)
def test_run_rejects_units_outside_the_space_or_without_integer_bounds(name: str) -> None:
    k = kernel(name)
    config = small(name)
    start, stop = k.space(config)
    for bad in ({"start": start - 1, "stop": stop}, {"start": start, "stop": stop + 1}):
        with pytest.raises(ValueError, match="not a non-empty part"):
            k.run(bad, config)
    with pytest.raises(ValueError, match="not a non-empty part"):
        k.run({"start": start, "stop": start}, config)
    with pytest.raises(ValueError, match="integers"):
        k.run({"start": 0.5, "stop": 2}, config)
    with pytest.raises(TypeError):
        k.run([start, stop], config)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_reduce_takes_results_in_any_order_but_rejects_gaps_overlaps_and_strays(name: str) -> None:
    k = kernel(name)
    config = small(name)
    results = run_all(name, config, k.cost(config, *k.space(config)) / 4)
    assert len(results) >= 4
    assert k.reduce(results[::-1], config) == k.reduce(results, config)
    with pytest.raises(ValueError, match="No result covers"):
        k.reduce(results[1:], config)
    with pytest.raises(ValueError, match="No result covers"):
        k.reduce(results[:2] + results[3:], config)
    with pytest.raises(ValueError, match="overlaps"):
        k.reduce([*results, results[2]], config)
    stop = k.space(config)[1]
    with pytest.raises(ValueError, match="not a part of the space"):
        k.reduce([*results, {**results[-1], "start": stop, "stop": stop + 1}], config)
    with pytest.raises(ValueError, match="integer start"):
        k.reduce([*results, {"stop": 3}], config)


@pytest.mark.parametrize("name", NAMES)
def test_results_and_reductions_are_strict_json(name: str) -> None:
    k = kernel(name)
    config = small(name)
    results = run_all(name, config, 1e9)
    assert json.loads(json.dumps(results, allow_nan=False)) == results
    json.dumps(k.reduce(results, config), allow_nan=False)


@pytest.mark.parametrize("name", NAMES)
def test_agree_wants_the_same_unit_and_fields(name: str) -> None:
    k = kernel(name)
    config = small(name)
    result = k.run({"start": 1, "stop": 3}, config)
    assert k.agree(result, json.loads(json.dumps(result)), config)
    assert not k.agree(result, {**result, "start": 0}, config)
    assert not k.agree(result, {**result, "extra": 0}, config)
    assert not k.agree(result, {key: v for key, v in result.items() if key != "stop"}, config)
    assert not k.agree(result, None, config)
    for name_ in k.exact_fields:
        assert not k.agree(result, {**result, name_: result[name_] + 1}, config)
        assert not k.agree(result, {**result, name_: True}, config)


# ---- primes ----


def test_it_counts_the_664579_primes_up_to_ten_million_in_well_under_two_seconds() -> None:
    k = kernel("primes")
    config = k.resolve_config({"lo": 1, "hi": 10**7})
    began = time.perf_counter()
    result = k.run({"start": 1, "stop": 10**7 + 1}, config)
    elapsed = time.perf_counter() - began
    assert result == {"start": 1, "stop": 10**7 + 1, "count": 664_579}
    assert elapsed < 2.0, f"counting took {elapsed:.2f} s"


@settings(max_examples=300, deadline=None)
@given(
    lo=st.integers(0, SIEVE_LIMIT - 3000),
    length=st.integers(-3, 3000),
    segment_bytes=st.integers(1, 64),
)
def test_it_matches_a_brute_force_count_on_small_ranges_and_tiny_segments(
    lo: int, length: int, segment_bytes: int
) -> None:
    hi = lo + length
    assert count_primes(lo, hi, segment_bytes=segment_bytes) == brute_count(lo, hi)


@pytest.mark.parametrize(
    ("lo", "hi", "count"),
    [(0, 0, 0), (0, 1, 0), (1, 2, 1), (2, 2, 1), (3, 3, 1), (4, 4, 0), (2, 3, 2), (9, 8, 0)],
)
def test_it_counts_the_edge_ranges(lo: int, hi: int, count: int) -> None:
    assert count_primes(lo, hi) == count


@pytest.mark.parametrize("lo", [10**9, 10**12 - 2000])
def test_it_agrees_with_miller_rabin_on_large_ranges_whatever_the_segment_size(lo: int) -> None:
    expected = sum(is_prime(n) for n in range(lo, lo + 2001))
    assert count_primes(lo, lo + 2000) == expected
    assert count_primes(lo, lo + 2000, segment_bytes=37) == expected


def test_the_base_primes_are_the_odd_primes() -> None:
    assert odd_primes_up_to(30).tolist() == [3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert odd_primes_up_to(2).tolist() == []
    assert len(odd_primes_up_to(10**6)) == 78_498 - 1


def test_the_units_of_a_prime_count_sum_to_the_count_of_the_range() -> None:
    k = kernel("primes")
    config = k.resolve_config({"lo": 10**6, "hi": 3 * 10**6})
    results = run_all("primes", config, 2e-4)
    assert len(results) > 5
    reduced = k.reduce(results, config)
    assert reduced == {"lo": 10**6, "hi": 3 * 10**6, "count": count_primes(10**6, 3 * 10**6)}
    assert reduced["count"] == 216_816 - 78_498


# ---- montecarlo ----


def test_pi_from_a_million_samples_lies_within_four_standard_errors() -> None:
    k = kernel("montecarlo")
    config = k.resolve_config({"problem": "pi", "samples": 10**6, "seed": 2024})
    reduced = k.reduce(run_all("montecarlo", config, 0.02), config)
    assert reduced["n"] == 10**6
    assert reduced["estimate"] == 4 * reduced["hits"] / 10**6
    assert 0.001 < reduced["std_error"] < 0.002
    assert abs(reduced["estimate"] - math.pi) < 4 * reduced["std_error"]


@pytest.mark.parametrize(
    "market",
    [
        {"S0": 100.0, "K": 100.0, "r": 0.05, "sigma": 0.2, "T": 1.0},
        {"S0": 80.0, "K": 130.0, "r": -0.01, "sigma": 0.9, "T": 2.5},
    ],
)
def test_the_call_price_lies_within_four_standard_errors_of_black_scholes(market: dict) -> None:
    k = kernel("montecarlo")
    config = k.resolve_config({"problem": "option", "samples": 10**6, "seed": 99, **market})
    reduced = k.reduce(run_all("montecarlo", config, 0.03), config)
    exact = black_scholes_call(**market)
    assert 0 < reduced["std_error"] < 0.01 * exact
    assert abs(reduced["estimate"] - exact) < 4 * reduced["std_error"]
    assert 0 < reduced["hits"] < reduced["n"]


@pytest.mark.parametrize("problem", ["pi", "option"])
def test_the_same_seed_and_unit_give_identical_results_twice(problem: str) -> None:
    k = kernel("montecarlo")
    config = small("montecarlo", problem=problem)
    unit = {"start": 17, "stop": 2900}
    assert k.run(unit, config) == k.run(dict(unit), dict(config))


def test_different_units_and_seeds_draw_different_samples() -> None:
    k = kernel("montecarlo")
    config = small("montecarlo")
    first = k.run({"start": 0, "stop": 1000}, config)
    second = k.run({"start": 1000, "stop": 2000}, config)
    reseeded = k.run({"start": 0, "stop": 1000}, {**config, "seed": 5})
    assert len({first["sum"], second["sum"], reseeded["sum"]}) == 3
    words = blocks(4, 1, 0, 2000).reshape(2, 1000, 4)
    assert not np.any(np.all(words[0] == words[1], axis=1))


def test_a_sample_does_not_depend_on_how_the_samples_are_cut() -> None:
    k = kernel("montecarlo")
    for problem in ("pi", "option"):
        config = small("montecarlo", problem=problem, samples=20_000)
        coarse = k.reduce(run_all("montecarlo", config, 1.0), config)
        fine = k.reduce(run_all("montecarlo", config, 2e-4), config)
        assert coarse["hits"] == fine["hits"]
        assert math.isclose(coarse["estimate"], fine["estimate"], rel_tol=1e-12)


def test_option_sums_are_chunked_pairwise_trees_added_in_order() -> None:
    values = np.random.default_rng(3).lognormal(size=2 * CHUNK + 5)

    def tree(chunk: list[float]) -> float:
        while len(chunk) > 1:
            chunk = [chunk[i] + chunk[i + 1] for i in range(0, len(chunk), 2)]
        return chunk[0]

    padded = values.tolist() + [0.0] * (CHUNK - 5)
    sums = [tree(padded[i : i + CHUNK]) for i in range(0, 3 * CHUNK, CHUNK)]
    assert chunk_sums(values).tolist() == sums
    assert ordered_sum(values) == (0.0 + sums[0]) + sums[1] + sums[2]
    assert ordered_sum(values, 10.0) == ((10.0 + sums[0]) + sums[1]) + sums[2]


def test_montecarlo_agreement_tolerates_last_bit_differences_but_not_real_ones() -> None:
    k = kernel("montecarlo")
    config = small("montecarlo")
    result = k.run({"start": 0, "stop": 3000}, config)
    assert k.agree(result, {**result, "sum": result["sum"] * (1 + 1e-13)}, config)
    assert not k.agree(result, {**result, "sum": result["sum"] * (1 + 1e-7)}, config)
    assert not k.agree(result, {**result, "sum_sq": math.nan}, config)
    assert not k.agree(result, {**result, "hits": result["hits"] - 1}, config)
    assert not k.agree(result, {**result, "n": result["n"] + 1}, config)


def test_reduce_reports_the_mean_and_its_standard_error() -> None:
    k = kernel("montecarlo")
    config = k.resolve_config({"problem": "option", "samples": 4, "r": 0.1, "T": 2.0})
    values = [1.0, 2.0, 3.0, 6.0]
    results = [
        {"start": i, "stop": i + 1, "n": 1, "hits": 1, "sum": v, "sum_sq": v * v}
        for i, v in enumerate(values)
    ]
    reduced = k.reduce(results, config)
    discount = math.exp(-0.2)
    assert reduced["n"] == 4 and reduced["hits"] == 4 and reduced["problem"] == "option"
    assert math.isclose(reduced["estimate"], discount * 3.0)
    assert math.isclose(reduced["std_error"], discount * math.sqrt(14 / 3 / 4))


# ---- sweep ----


def test_the_grid_is_numpys_linspace_with_exact_ends() -> None:
    config = small("sweep", r_min=0.12, r_max=2.74, steps=84)
    assert 83 * ((2.74 - 0.12) / 83) + 0.12 != 2.74
    assert grid(config, 0, 84).tolist() == np.linspace(0.12, 2.74, 84).tolist()
    assert grid(config, 83, 84).tolist() == [2.74]
    assert grid(small("sweep", steps=1, r_min=3.3), 0, 1).tolist() == [3.3]


def test_known_orbits_give_their_textbook_summaries() -> None:
    k = kernel("sweep")
    config = k.resolve_config(
        {"r_min": 0.5, "r_max": 4.0, "steps": 8, "x0": 0.3, "burn_in": 2000, "iterations": 20000}
    )
    result = k.run({"start": 0, "stop": 8}, config)
    r = result["r"]
    assert r == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    assert result["max"][0] < 1e-300 and math.isclose(
        result["lyapunov"][0], math.log(0.5), abs_tol=1e-3
    )
    for i in (2, 4):
        fixed = 1 - 1 / r[i]
        assert result["min"][i] == pytest.approx(fixed, abs=1e-12)
        assert result["lyapunov"][i] == pytest.approx(math.log(abs(2 - r[i])), abs=1e-3)
    assert result["lyapunov"][7] == pytest.approx(math.log(2), abs=0.05)
    assert result["min"][7] < 0.001 and result["max"][7] > 0.999
    assert result["mean"][7] == pytest.approx(0.5, abs=0.02)


def test_a_period_two_orbit_shows_both_of_its_points() -> None:
    k = kernel("sweep")
    config = k.resolve_config({"r_min": 3.2, "r_max": 3.2, "steps": 1, "burn_in": 3000})
    result = k.run({"start": 0, "stop": 1}, config)
    root = math.sqrt((3.2 - 3) * (3.2 + 1))
    assert result["min"][0] == pytest.approx((4.2 - root) / 6.4, abs=1e-12)
    assert result["max"][0] == pytest.approx((4.2 + root) / 6.4, abs=1e-12)
    assert result["mean"][0] == pytest.approx(4.2 / 6.4, abs=1e-9)
    assert result["lyapunov"][0] < 0


def test_an_orbit_through_the_superstable_point_floors_its_lyapunov_exponent() -> None:
    k = kernel("sweep")
    config = k.resolve_config({"r_min": 2.0, "r_max": 2.0, "steps": 1, "x0": 0.5})
    result = k.run({"start": 0, "stop": 1}, config)
    assert result["mean"] == result["min"] == result["max"] == [0.5]
    assert result["lyapunov"][0] == pytest.approx(math.log(DERIVATIVE_FLOOR), rel=1e-12)


def test_sweep_units_concatenate_in_grid_order_to_the_whole_sweep() -> None:
    k = kernel("sweep")
    config = small("sweep", r_min=3.4, steps=50)
    whole = k.run({"start": 0, "stop": 50}, config)
    results = run_all("sweep", config, k.cost(config, 0, 6))
    assert len(results) == 9
    reduced = k.reduce(results[::-1], config)
    assert reduced == {key: whole[key] for key in ("r", "mean", "min", "max", "lyapunov")}


def test_sweep_agreement_tolerates_last_bit_differences_but_not_real_ones() -> None:
    k = kernel("sweep")
    config = small("sweep", r_min=3.6)
    result = k.run({"start": 0, "stop": 10}, config)
    nudged = [x * (1 + 1e-13) for x in result["lyapunov"]]
    assert k.agree(result, {**result, "lyapunov": nudged}, config)
    moved = [x + 1e-6 for x in result["mean"]]
    assert not k.agree(result, {**result, "mean": moved}, config)
    assert not k.agree(result, {**result, "max": result["max"][:-1]}, config)
    assert not k.agree(result, {**result, "min": [None] * 10}, config)


# ---- The generator ----


def test_philox_gives_the_random123_known_answers() -> None:
    counters = np.array(
        [[0, 0, 0, 0], [2**32 - 1] * 4, [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344]],
        dtype=np.uint32,
    )
    keys = [(0, 0), (2**32 - 1, 2**32 - 1), (0xA4093822, 0x299F31D0)]
    expected = [
        [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8],
        [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ]
    for counter, key, words in zip(counters, keys, expected, strict=True):
        assert philox4x32(counter[None, :], key).tolist() == [words]


def test_a_block_is_the_philox_of_its_position_stream_and_seed() -> None:
    seed, stream, start = 2**40 + 9, 2**33 + 4, 2**32 - 1
    words = blocks(seed, stream, start, 2)
    key = (seed % 2**32, seed >> 32)
    s = (stream % 2**32, stream >> 32)
    counters = np.array([[2**32 - 1, 0, *s], [0, 1, *s]], dtype=np.uint32)
    assert words.tolist() == philox4x32(counters, key).tolist()
    assert words.dtype == np.uint32
    assert blocks(seed, stream, start + 1, 1).tolist() == words[1:].tolist()


def test_the_generator_refuses_positions_javascript_cannot_hold() -> None:
    for bad in (-1, 2**53):
        with pytest.raises(ValueError):
            blocks(bad, 0, 0, 1)
    with pytest.raises(ValueError):
        blocks(0, 0, MAX_INDEX, 2)
    with pytest.raises(TypeError):
        blocks(1.5, 0, 0, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        philox4x32(np.zeros(4, dtype=np.uint32), (0, 0))


def test_uniform53_spans_zero_to_one_in_steps_of_two_to_the_minus_53() -> None:
    top = np.array([2**32 - 1], dtype=np.uint32)
    zero = np.array([0], dtype=np.uint32)
    assert uniform53(zero, zero).tolist() == [0.0]
    assert uniform53(top, top).tolist() == [1 - 2**-53]
    assert uniform53(zero, np.array([64], dtype=np.uint32)).tolist() == [2**-53]


def test_the_words_and_doubles_of_a_stream_look_uniform_and_independent() -> None:
    words = blocks(7, 0, 0, 50_000)
    counts = np.bincount((words >> np.uint32(28)).ravel(), minlength=16)
    assert np.all(np.abs(counts - 12_500) < 600), counts
    a = uniform53(words[:, 0], words[:, 1])
    b = uniform53(words[:, 2], words[:, 3])
    assert abs(a.mean() - 0.5) < 0.005 and abs(a.var() - 1 / 12) < 0.002
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02
