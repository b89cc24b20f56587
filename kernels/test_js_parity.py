"""Parity of the JavaScript kernels with the numpy kernels, checked under Node's test runner."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kernels import get_kernel, load_dataset
from kernels.config import Config
from kernels.kernel import Kernel
from kernels.node_runner import run_node_tests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_TESTS = HERE / "js_parity.test.mjs"
BROWSER_MODULES = ["softmax.js", "mlp.js", "train.js"]
REGULARIZATION = {"plain": {"l2": 0.0, "mu": 0.0}, "regularized": {"l2": 0.01, "mu": 0.1}}
EPOCHS = 2
NEAR_TIE = 1e-4


def digits_problem() -> dict[str, Any]:
    data = load_dataset("digits")
    return {
        "config": {"dataset": "digits", "lr": 0.1, "batch_size": 16, "hidden": 16},
        "X": data.X_train[:120],
        "y": data.y_train[:120],
        "X_eval": data.X_test[:60],
        "y_eval": data.y_test[:60],
    }


def random_problem() -> dict[str, Any]:
    rng = np.random.default_rng(11)
    d, c = 7, 3
    X = rng.normal(size=(53, d)).astype(np.float32)
    y = rng.integers(0, c, size=53)
    config = {"n_features": d, "n_classes": c, "lr": 0.3, "batch_size": 8, "hidden": 5}
    return {"config": config, "X": X[:37], "y": y[:37], "X_eval": X[37:], "y_eval": y[37:]}


PROBLEMS = {"a digits slice": digits_problem, "a small random problem": random_problem}


def start_weights(kernel: Kernel, config: Config, rng: np.random.Generator) -> np.ndarray:
    if kernel.name == "mlp":
        return kernel.init(config)
    return (rng.normal(size=kernel.num_params(config)) * 0.1).astype(np.float32)


def seeded_batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    batches = []
    for _ in range(EPOCHS):
        order = rng.permutation(n)
        batches += [order[start : start + size] for start in range(0, n, size)]
    return batches


def margins(kernel: Kernel, weights: np.ndarray, X: np.ndarray, config: Config) -> list[float]:
    """The gap between the two largest logits of each row (small gaps may flip the argmax)."""
    top = np.sort(kernel.model.logits(weights, X, config), axis=1)
    return (top[:, -1] - top[:, -2]).tolist()


def floats(array: np.ndarray) -> list[float]:
    return np.asarray(array, dtype=np.float32).ravel().tolist()


def golden_case(kernel_name: str, problem: str, regularization: str, seed: int) -> dict[str, Any]:
    kernel = get_kernel(kernel_name)
    spec = PROBLEMS[problem]()
    overrides = {"seed": seed, "epochs": EPOCHS, **REGULARIZATION[regularization]}
    if kernel_name != "mlp":
        spec["config"].pop("hidden")
    config = kernel.resolve_config({**spec["config"], **overrides})
    X, y, X_eval, y_eval = spec["X"], spec["y"], spec["X_eval"], spec["y_eval"]
    rng = np.random.default_rng(seed)
    weights = start_weights(kernel, config, rng)
    anchor = (weights + rng.normal(size=weights.size) * 0.05).astype(np.float32)
    loss, grad = kernel.loss_and_grad(weights, X, y, config, anchor=anchor)
    loss64, grad64 = kernel.loss_and_grad(
        weights.astype(np.float64), X.astype(np.float64), y, config, anchor=anchor
    )
    batches = seeded_batches(len(y), config["batch_size"], rng)
    trained, train_metrics = kernel.train(weights, X, y, config, batch_order=batches)
    return {
        "name": f"{kernel_name} on {problem}, {regularization}",
        "kernel": kernel_name,
        "config": config,
        "n": len(y),
        "d": config["n_features"],
        "X": floats(X),
        "y": y.tolist(),
        "weights": floats(weights),
        "anchor": floats(anchor),
        "loss": loss,
        "grad": floats(grad),
        "loss64": loss64,
        "grad64": floats(grad64),
        "batch_order": [batch.tolist() for batch in batches],
        "trained": floats(trained),
        "train_metrics": train_metrics,
        "train_margins": margins(kernel, trained, X, config),
        "n_eval": len(y_eval),
        "X_eval": floats(X_eval),
        "y_eval": y_eval.tolist(),
        "evaluate": kernel.evaluate(trained, X_eval, y_eval, config),
        "predict": kernel.predict(trained, X_eval, config).tolist(),
        "eval_margins": margins(kernel, trained, X_eval, config),
    }


def golden_vectors() -> dict[str, Any]:
    cases = []
    for seed, (kernel_name, problem, regularization) in enumerate(
        (k, p, r) for k in ("softmax", "mlp") for p in PROBLEMS for r in REGULARIZATION
    ):
        cases.append(golden_case(kernel_name, problem, regularization, seed))
    return {"near_tie": NEAR_TIE, "cases": cases}


def test_the_js_kernels_match_the_numpy_kernels_under_node(tmp_path: Path) -> None:
    vectors = tmp_path / "parity_vectors.json"
    vectors.write_text(json.dumps(golden_vectors()))
    run_node_tests(NODE_TESTS, "CCGSC_PARITY_VECTORS", vectors, min_passes=40)


@pytest.mark.parametrize("module", BROWSER_MODULES)
def test_the_js_kernel_modules_use_nothing_a_browser_lacks(module: str) -> None:
    source = (HERE / module).read_text()
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", source, flags=re.DOTALL)
    for token in ("require(", "process.", "Buffer", "__dirname", "__filename", "import.meta"):
        assert token not in code, f"{module} uses {token!r}, which browsers do not provide"
    pattern = r"\b(?:from|import)\s*[\"']([^\"']+)[\"']|\bimport\s*\("
    specifiers = re.findall(pattern, code)
    for specifier in specifiers:
        assert specifier.startswith("./") and specifier.endswith(".js"), (
            f"{module} imports {specifier or 'dynamically'}; only sibling ./*.js modules load "
            "unchanged in a browser"
        )
