"""Behaviour of the softmax (multinomial logistic regression) kernel."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import get_kernel

KERNEL = get_kernel("softmax")


def toy_config(**overrides: float) -> dict:
    return KERNEL.resolve_config({"n_features": 5, "n_classes": 3, **overrides})


@pytest.mark.parametrize("mu, l2", [(0.0, 0.0), (0.7, 0.0), (0.0, 0.3), (0.5, 0.2)])
def test_it_matches_central_finite_differences(toy_problem, numeric_grad, mu, l2) -> None:
    X, y = toy_problem
    config = toy_config(mu=mu, l2=l2)
    rng = np.random.default_rng(1)
    w = rng.normal(size=KERNEL.num_params(config))
    anchor = rng.normal(size=w.size)

    def loss(v: np.ndarray) -> float:
        return KERNEL.loss_and_grad(v, X, y, config, anchor=anchor)[0]

    value, grad = KERNEL.loss_and_grad(w, X, y, config, anchor=anchor)
    assert grad.dtype == np.float32 and grad.shape == w.shape
    np.testing.assert_allclose(grad, numeric_grad(loss, w, 1e-6), rtol=1e-4, atol=1e-6)
    assert value == pytest.approx(loss(w))


def test_it_lays_out_weights_as_row_major_w_then_bias(toy_problem) -> None:
    X, _ = toy_problem
    config = toy_config()
    W = np.arange(15, dtype=np.float64).reshape(5, 3) / 10
    b = np.array([0.5, -1.0, 2.0])
    flat = np.concatenate([W.ravel(), b])
    expected = np.argmax(X @ W + b, axis=1)
    np.testing.assert_array_equal(KERNEL.predict(flat, X, config), expected)


def test_it_stays_finite_for_huge_logits(toy_problem) -> None:
    X, y = toy_problem
    config = toy_config()
    w = np.full(KERNEL.num_params(config), 1e4, dtype=np.float32)
    loss, grad = KERNEL.loss_and_grad(w, X * 100, y, config)
    assert np.isfinite(loss) and np.isfinite(grad).all()


def test_it_reaches_ninety_percent_on_digits(digits) -> None:
    config = KERNEL.resolve_config({"dataset": "digits", "epochs": 5})
    weights, metrics = KERNEL.train(KERNEL.init(config), digits.X_train, digits.y_train, config)
    result = KERNEL.evaluate(weights, digits.X_test, digits.y_test, config)
    assert result["accuracy"] >= 0.9
    assert result["num_samples"] == len(digits.y_test)
    assert metrics["num_samples"] == len(digits.y_train)
    assert metrics["accuracy"] >= 0.9
    assert weights.dtype == np.float32


def test_it_reports_training_metrics_of_the_final_weights(digits) -> None:
    config = KERNEL.resolve_config({"dataset": "digits", "l2": 0.01, "mu": 1.0})
    X, y = digits.X_train[:200], digits.y_train[:200]
    weights, metrics = KERNEL.train(KERNEL.init(config), X, y, config)
    assert metrics == pytest.approx(KERNEL.evaluate(weights, X, y, config))


def test_it_lowers_the_objective_when_training() -> None:
    config = KERNEL.resolve_config({"dataset": "iris", "epochs": 3})
    X, y = np.random.default_rng(0).normal(size=(60, 4)), np.arange(60) % 3
    start = KERNEL.init(config)
    _, metrics = KERNEL.train(start, X, y, config)
    assert metrics["loss"] < KERNEL.evaluate(start, X, y, config)["loss"]
