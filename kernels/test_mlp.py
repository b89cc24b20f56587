"""Behaviour of the one-hidden-layer MLP kernel."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import get_kernel

KERNEL = get_kernel("mlp")


def toy_config(**overrides: float) -> dict:
    return KERNEL.resolve_config({"n_features": 5, "n_classes": 3, "hidden": 4, **overrides})


@pytest.mark.parametrize("mu, l2", [(0.0, 0.0), (0.7, 0.0), (0.0, 0.3), (0.5, 0.2)])
def test_it_matches_central_finite_differences(toy_problem, numeric_grad, mu, l2) -> None:
    X, y = toy_problem
    config = toy_config(mu=mu, l2=l2)
    rng = np.random.default_rng(2)
    w = rng.normal(size=KERNEL.num_params(config))
    anchor = rng.normal(size=w.size)

    def loss(v: np.ndarray) -> float:
        return KERNEL.loss_and_grad(v, X, y, config, anchor=anchor)[0]

    _, grad = KERNEL.loss_and_grad(w, X, y, config, anchor=anchor)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, numeric_grad(loss, w, 1e-6), rtol=1e-4, atol=1e-6)


def test_it_counts_and_lays_out_parameters_as_documented(toy_problem) -> None:
    X, _ = toy_problem
    config = toy_config()
    assert KERNEL.num_params(config) == 5 * 4 + 4 + 4 * 3 + 3
    rng = np.random.default_rng(3)
    W1, b1, W2, b2 = (rng.normal(size=s) for s in [(5, 4), 4, (4, 3), 3])
    flat = np.concatenate([W1.ravel(), b1, W2.ravel(), b2])
    expected = np.argmax(np.maximum(X @ W1 + b1, 0) @ W2 + b2, axis=1)
    np.testing.assert_array_equal(KERNEL.predict(flat, X, config), expected)


def test_it_initialises_deterministically_from_the_seed() -> None:
    first = KERNEL.init(toy_config(seed=4))
    assert first.dtype == np.float32 and first.ndim == 1
    np.testing.assert_array_equal(first, KERNEL.init(toy_config(seed=4)))
    assert not np.array_equal(first, KERNEL.init(toy_config(seed=5)))
    assert np.abs(first).max() > 0


def test_it_reaches_ninety_percent_on_digits(digits) -> None:
    config = KERNEL.resolve_config({"dataset": "digits", "epochs": 5})
    weights, metrics = KERNEL.train(KERNEL.init(config), digits.X_train, digits.y_train, config)
    assert KERNEL.evaluate(weights, digits.X_test, digits.y_test, config)["accuracy"] >= 0.9
    assert metrics["accuracy"] >= 0.9
