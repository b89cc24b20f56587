"""Parity of the JavaScript analytics contribution with the numpy one, checked under Node."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from kernels.analytics import STATISTICS, local, resolve_config
from kernels.node_runner import run_node_tests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_TESTS = HERE / "analytics_parity.test.mjs"
MODULE = HERE / "analytics.js"
CASES_PER_STATISTIC = 8
TESTS_PER_CASE = 2
STANDALONE_NODE_TESTS = 10


def random_config(statistic: str, rng: np.random.Generator, n: int, d: int) -> dict[str, Any]:
    fields: dict[str, Any] = {"statistic": statistic, "column": int(rng.integers(d))}
    if rng.random() < 0.5:
        fields["max_rows"] = int(rng.integers(1, n + 2))
    if statistic == "count":
        return fields
    lo = float(rng.normal(scale=3))
    hi = lo + float(rng.exponential(4)) + 1e-3
    if statistic in ("sum", "mean"):
        return {**fields, "lo": lo, "hi": hi}
    if rng.random() < 0.5:
        bins = int(rng.integers(1, 12))
        fields.update(lo=lo, hi=hi, bins=bins)
    else:
        inner = np.unique(rng.uniform(lo, hi, size=int(rng.integers(0, 10))))
        fields["edges"] = [lo, *inner.tolist(), hi]
    if statistic == "quantiles":
        fields["probabilities"] = rng.uniform(size=3).tolist()
    return fields


def random_rows(rng: np.random.Generator, n: int, d: int, config: dict[str, Any]) -> np.ndarray:
    """Values around the bounds, some far outside, some exactly on bounds and bin edges."""
    lo = config["lo"] if config["lo"] is not None else -1.0
    hi = config["hi"] if config["hi"] is not None else 1.0
    X = rng.normal(loc=(lo + hi) / 2, scale=hi - lo, size=(n, d))
    special = [lo, hi, *(config["edges"] or []), lo - 1e6, hi + 1e6, 0.0]
    mask = rng.random(size=X.shape) < 0.2
    X[mask] = rng.choice(special, size=int(mask.sum()))
    return X


def case(name: str, X: np.ndarray, fields: dict[str, Any]) -> dict[str, Any]:
    config = resolve_config(fields)
    return {
        "name": name,
        "config": config,
        "n": int(X.shape[0]),
        "d": int(X.shape[1]),
        "dtype": str(X.dtype),
        "X": X.astype(np.float64).ravel().tolist(),
        "expected": local(X, config),
    }


def random_cases(seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    cases = []
    for statistic in STATISTICS:
        for index in range(CASES_PER_STATISTIC):
            n = int(rng.choice([0, 1, 6, 41, 500]))
            d = int(rng.integers(1, 5))
            fields = random_config(statistic, rng, n, d)
            X = random_rows(rng, n, d, resolve_config(fields))
            if index % 4 == 3:
                X = X.astype(np.float32)
            name = f"{statistic} #{index}: {n} x {d} {X.dtype}, " + json.dumps(
                {k: v for k, v in fields.items() if k not in ("statistic", "edges")}
            )
            cases.append(case(name, X, fields))
    return cases


def cancelling_cases(seed: int) -> list[dict[str, Any]]:
    """Sums where a left-to-right or pairwise float sum differs from the correctly rounded one."""
    rng = np.random.default_rng(seed)
    magnitudes = 10.0 ** rng.integers(-3, 16, size=(300, 1))
    X = rng.choice([-1.0, 1.0], size=(300, 1)) * magnitudes * rng.uniform(0.5, 1.5, size=(300, 1))
    bounds = {"lo": -1e17, "hi": 1e17}
    return [
        case("sum of cancelling magnitudes", X, {"statistic": "sum", **bounds}),
        case("mean of cancelling magnitudes", X, {"statistic": "mean", **bounds, "max_rows": 250}),
    ]


def fsum_vectors(seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vectors = []
    for size in (0, 1, 2, 10, 100, 1000):
        values = rng.normal(size=size) * 10.0 ** rng.integers(-20, 20, size=size)
        vectors.append({"values": values.tolist(), "expected": math.fsum(values.tolist())})
    return vectors


def parity_vectors() -> dict[str, Any]:
    cases = random_cases(31) + cancelling_cases(32)
    return {"cases": cases, "fsum": fsum_vectors(33)}


def left_to_right(values: list[float]) -> float:
    total = 0.0
    for value in values:
        total += value
    return total


def used_values(vector: dict[str, Any]) -> np.ndarray:
    """The column values a vector's contribution was computed from, before clipping."""
    X = np.array(vector["X"], dtype=np.float64).reshape(vector["n"], vector["d"])
    return X[: vector["expected"]["count"], vector["config"]["column"]]


def test_the_vectors_cover_every_statistic_bounding_and_summation_order() -> None:
    cases = parity_vectors()["cases"]
    assert {c["config"]["statistic"] for c in cases} == set(STATISTICS)
    assert any(c["dtype"] == "float32" for c in cases)
    assert any(c["n"] == 0 for c in cases)
    assert any(c["expected"]["count"] < c["n"] for c in cases), "no vector bounds its rows"
    bounded = [c for c in cases if c["config"]["lo"] is not None]
    clipped = [
        c
        for c in bounded
        if np.any((used_values(c) < c["config"]["lo"]) | (used_values(c) > c["config"]["hi"]))
    ]
    assert len(clipped) >= 10, "too few vectors need clipping"
    summed = [c for c in bounded if "sum" in c["expected"]]
    naive = [
        c
        for c in summed
        if left_to_right(np.clip(used_values(c), c["config"]["lo"], c["config"]["hi"]).tolist())
        != c["expected"]["sum"]
    ]
    assert len(naive) >= 2, "no sum vector tells a naive summation from a correctly rounded one"


def test_the_js_analytics_contribution_matches_numpy_under_node(tmp_path: Path) -> None:
    vectors = parity_vectors()
    path = tmp_path / "analytics_vectors.json"
    path.write_text(json.dumps(vectors, allow_nan=False))
    expected = TESTS_PER_CASE * len(vectors["cases"]) + STANDALONE_NODE_TESTS
    run_node_tests(NODE_TESTS, "CCGSC_ANALYTICS_VECTORS", path, min_passes=expected)


def test_the_js_analytics_module_uses_nothing_a_browser_lacks() -> None:
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", MODULE.read_text(), flags=re.DOTALL)
    for token in ("require(", "process.", "Buffer", "__dirname", "__filename", "import.meta"):
        assert token not in code, f"analytics.js uses {token!r}, which browsers do not provide"
    assert not re.search(r"\bimport\b", code), "analytics.js must stand alone, without imports"
    assert re.search(r"^export function local\(data, config\)", code, re.MULTILINE)
