"""Shared fixtures for the kernel tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from kernels import load_dataset
from kernels.data import Dataset


def central_differences(f: Callable[[np.ndarray], float], w: np.ndarray, eps: float) -> np.ndarray:
    """Approximate the gradient of ``f`` at float64 ``w`` by central differences."""
    grad = np.empty_like(w)
    for i in range(w.size):
        step = np.zeros_like(w)
        step[i] = eps
        grad[i] = (f(w + step) - f(w - step)) / (2 * eps)
    return grad


@pytest.fixture
def numeric_grad() -> Callable[[Callable[[np.ndarray], float], np.ndarray, float], np.ndarray]:
    return central_differences


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture
def toy_problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(123)
    X = rng.normal(size=(7, 5))
    y = np.array([0, 1, 2, 2, 1, 0, 2])
    return X, y
