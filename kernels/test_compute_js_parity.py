"""Parity of the JavaScript compute kernels and generator with numpy, checked under Node."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from kernels.compute import ComputeKernel, get_compute_kernel
from kernels.montecarlo import ordered_sum, sample_values
from kernels.node_runner import run_node_tests
from kernels.rng import blocks, uniform53

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_TESTS = HERE / "compute_parity.test.mjs"
BROWSER_MODULES = ["rng.js", "compute.js", "primes.js", "montecarlo.js", "sweep.js"]
MIN_PASSES = 120

# (seed, stream, start, count): small and large keys and streams, and positions whose low word
# wraps around 2**32 so that the carry into the high word is exercised.
RNG_CASES = [
    (0, 0, 0, 64),
    (1, 0, 0, 64),
    (12345, 1, 1000, 64),
    (2**32 + 7, 3, 2**32 - 5, 16),
    (2**53 - 1, 2**40 + 1, 2**53 - 17, 17),
    (99, 0, 2**33 - 1, 5),
]

# (name, kernel, config, target_cost, extra units run alone[, the window that is split and run
# when the whole space is too large to run, which leaves the case without a reduced result])
KERNEL_CASES: list[tuple[Any, ...]] = [
    ("primes in [1, 10^7]", "primes", {"lo": 1, "hi": 10**7}, 0.006, []),
    ("primes in [0, 1]", "primes", {"lo": 0, "hi": 1}, 1.0, [(0, 1), (1, 2)]),
    ("primes in [1, 2]", "primes", {"lo": 1, "hi": 2}, 1.0, [(2, 3)]),
    ("primes in [2, 2]", "primes", {"lo": 2, "hi": 2}, 1.0, []),
    ("primes in [3, 4]", "primes", {"lo": 3, "hi": 4}, 1e-9, [(4, 5)]),
    (
        "primes across segment boundaries",
        "primes",
        {"lo": 524_000, "hi": 1_600_000},
        3e-4,
        [(524_287, 524_293), (524_288, 1_048_580), (1_048_573, 1_048_583)],
    ),
    ("primes in [10^9, 10^9 + 10^6]", "primes", {"lo": 10**9, "hi": 10**9 + 10**6}, 1e-3, []),
    ("primes just below 10^12", "primes", {"lo": 10**12 - 200_000, "hi": 10**12}, 1e-3, []),
    (
        "pi with seed 0",
        "montecarlo",
        {"problem": "pi", "samples": 100_000, "seed": 0},
        0.002,
        [(0, 1), (4095, 4097), (99_999, 100_000)],
    ),
    ("pi with seed 7", "montecarlo", {"problem": "pi", "samples": 30_000, "seed": 7}, 5e-4, []),
    (
        "pi with a seed above 2^32 across sample 2^32",
        "montecarlo",
        {"problem": "pi", "samples": 2**33, "seed": 2**40 + 3},
        5e-5,
        [(2**32 - 1000, 2**32 + 1000)],
        (2**32 - 1500, 2**32 + 1500),
    ),
    (
        "a call option with seed 1",
        "montecarlo",
        {"problem": "option", "samples": 100_000, "seed": 1},
        0.002,
        [(1, 2), (4095, 8193)],
    ),
    (
        "a volatile out-of-the-money call with seed 123",
        "montecarlo",
        {
            "problem": "option",
            "samples": 50_000,
            "seed": 123,
            "S0": 80.0,
            "K": 130.0,
            "r": -0.01,
            "sigma": 0.9,
            "T": 2.5,
        },
        0.001,
        [],
    ),
    (
        "a logistic sweep from 2.5 to 4",
        "sweep",
        {"r_min": 2.5, "r_max": 4.0, "steps": 300, "burn_in": 500, "iterations": 500},
        2e-4,
        [(0, 1), (299, 300)],
    ),
    (
        "a chaotic sweep with a long orbit",
        "sweep",
        {"r_min": 3.57, "r_max": 4.0, "steps": 40, "x0": 0.3, "burn_in": 3000, "iterations": 4000},
        5e-4,
        [],
    ),
    (
        "a sweep through superstable and fixed points",
        "sweep",
        {"r_min": 0.0, "r_max": 4.0, "steps": 9, "x0": 0.5, "burn_in": 10, "iterations": 50},
        1.0,
        [],
    ),
    (
        "a sweep whose last point is pinned to r_max",
        "sweep",
        {"r_min": 0.12, "r_max": 2.74, "steps": 84, "burn_in": 50, "iterations": 50},
        1e-5,
        [(83, 84)],
    ),
    ("a one-point sweep", "sweep", {"r_min": 3.2, "r_max": 3.9, "steps": 1}, 1.0, []),
    ("a sweep from x0 = 1", "sweep", {"x0": 1.0, "steps": 5, "r_min": 4.0}, 1.0, []),
]


def rng_vector(seed: int, stream: int, start: int, count: int) -> dict[str, Any]:
    words = blocks(seed, stream, start, count)
    return {
        "seed": seed,
        "stream": stream,
        "start": start,
        "count": count,
        "words": words.ravel().tolist(),
        "doubles": uniform53(words[:, 0], words[:, 1]).tolist()
        + uniform53(words[:, 2], words[:, 3]).tolist(),
    }


def perturbed(result: dict[str, Any], name: str, factor: float) -> dict[str, Any]:
    value = result[name]
    if isinstance(value, list):
        return {**result, name: [v * factor for v in value]}
    return {**result, name: value * factor}


def agreement_pairs(kernel: ComputeKernel, result: dict[str, Any], config: dict) -> list[dict]:
    """Pairs of results with numpy's verdict on whether they agree."""
    candidates = [dict(result), {**result, "start": result["start"] - 1}]
    candidates.append({key: value for key, value in result.items() if key != "stop"})
    candidates.append({**result, "extra": 1})
    for name in kernel.exact_fields:
        candidates.append({**result, name: result[name] + 1})
    for name in kernel.float_fields:
        candidates += [perturbed(result, name, f) for f in (1 + 1e-13, 1 + 1e-6, 1 - 1e-6)]
        if isinstance(result[name], list):
            candidates.append({**result, name: result[name][:-1]})
    return [
        {"a": result, "b": other, "agree": kernel.agree(result, other, config)}
        for other in candidates
    ]


def kernel_vector(
    name: str,
    kernel_name: str,
    given: dict,
    target_cost: float,
    extra: list[tuple[int, int]],
    window: tuple[int, int] | None = None,
) -> dict[str, Any]:
    kernel = get_compute_kernel(kernel_name)
    config = kernel.resolve_config(given)
    if window is None:
        units = kernel.split(config, target_cost=target_cost)
    else:
        units = kernel.split_range(config, *window, target_cost=target_cost)
    results = [kernel.run(unit, config) for unit in units]
    extra_units = [kernel.unit(config, start, stop) for start, stop in extra]
    middle = units[len(units) // 2]
    remaining = (middle["start"] + middle["stop"]) // 2, middle["stop"]
    return {
        "name": name,
        "kernel": kernel_name,
        "config": config,
        "target_cost": target_cost,
        "window": window,
        "units": units,
        "results": results,
        "reduced": None if window else kernel.reduce(results[::-1], config),
        "extra": [{"unit": u, "result": kernel.run(u, config)} for u in extra_units],
        "remaining": {
            "start": remaining[0],
            "stop": remaining[1],
            "target_cost": target_cost / 3,
            "units": kernel.split_range(config, *remaining, target_cost=target_cost / 3),
        },
        "agreement": agreement_pairs(kernel, results[0], config),
    }


def sample_vector(given: dict[str, Any], start: int, count: int) -> dict[str, Any]:
    """Per-sample values of a Monte Carlo unit and their sums in the kernel's order."""
    config = get_compute_kernel("montecarlo").resolve_config(given)
    values, hits = sample_values(config, start, count)
    return {
        "config": config,
        "start": start,
        "count": count,
        "values": values.tolist(),
        "hits": hits.astype(int).tolist(),
        "sum": ordered_sum(values),
        "sum_sq": ordered_sum(values * values),
    }


def golden_vectors() -> dict[str, Any]:
    return {
        "samples": [
            sample_vector({"problem": "option", "seed": 8}, 3, 3 * 4096 + 11),
            sample_vector({"problem": "option", "seed": 9, "sigma": 1.5, "K": 60.0}, 0, 5000),
            sample_vector({"problem": "pi", "seed": 2**52 + 1}, 2**32 - 9, 5000),
        ],
        "rng": [rng_vector(*case) for case in RNG_CASES],
        "kernels": [kernel_vector(*case) for case in KERNEL_CASES],
    }


def test_the_vectors_cover_every_kernel_and_the_edge_ranges() -> None:
    vectors = golden_vectors()
    kernels = {case["kernel"] for case in vectors["kernels"]}
    assert kernels == {"primes", "montecarlo", "sweep"}
    counts = {case["name"]: (case["reduced"] or {}).get("count") for case in vectors["kernels"]}
    assert counts["primes in [1, 10^7]"] == 664_579
    assert counts["primes in [0, 1]"] == 0 and counts["primes in [1, 2]"] == 1
    assert all(len(case["units"]) >= 1 for case in vectors["kernels"])
    assert sum(len(case["units"]) > 1 for case in vectors["kernels"]) >= 8
    problems = {case["config"].get("problem") for case in vectors["kernels"]}
    assert {"pi", "option"} <= problems
    json.dumps(vectors, allow_nan=False)


def test_the_js_compute_kernels_match_numpy_under_node(tmp_path: Path) -> None:
    vectors = tmp_path / "compute_vectors.json"
    vectors.write_text(json.dumps(golden_vectors(), allow_nan=False))
    run_node_tests(NODE_TESTS, "CCGSC_COMPUTE_VECTORS", vectors, min_passes=MIN_PASSES)


@pytest.mark.parametrize("module", BROWSER_MODULES)
def test_the_js_compute_modules_use_nothing_a_browser_lacks(module: str) -> None:
    source = (HERE / module).read_text()
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", source, flags=re.DOTALL)
    for token in ("require(", "process.", "Buffer", "__dirname", "__filename", "import.meta"):
        assert token not in code, f"{module} uses {token!r}, which browsers do not provide"
    pattern = r"\b(?:from|import)\s*[\"']([^\"']+)[\"']|\bimport\s*\("
    for specifier in re.findall(pattern, code):
        assert specifier.startswith("./") and specifier.endswith(".js"), (
            f"{module} imports {specifier or 'dynamically'}; only sibling ./*.js modules load "
            "unchanged in a browser"
        )


def test_every_js_compute_kernel_takes_its_work_unit_helpers_from_one_module() -> None:
    for module in ("primes.js", "montecarlo.js", "sweep.js"):
        source = (HERE / module).read_text()
        assert 'from "./compute.js"' in source, f"{module} must import the shared helpers"
        assert "function splitWith(" not in source and "function tiled(" not in source


def test_some_rng_vectors_carry_the_position_into_its_high_word() -> None:
    wraps = [c for c in RNG_CASES if (c[2] % 2**32) + c[3] > 2**32]
    assert len(wraps) >= 2
    assert any(c[0] >= 2**32 and c[1] >= 2**32 for c in RNG_CASES)
