"""Seeded port of the FedProx Synthetic(alpha, beta) data generator (Li et al., MLSys 2020)."""

from __future__ import annotations

import numpy as np

NUM_DEVICES = 30
DIMENSION = 60
NUM_CLASSES = 10
TRAIN_FRACTION = 0.9

DeviceData = tuple[np.ndarray, np.ndarray]


def generate(
    alpha: float, beta: float, iid: bool, seed: int
) -> tuple[list[DeviceData], list[DeviceData]]:
    """Return per-device (train, test) splits as two lists of ``(X float64, y int64)``.

    Draw order from ``np.random.default_rng(seed)``: device sizes
    ``floor(LogNormal(4, 2)) + 50``; ``u_k ~ N(0, alpha)``; ``B_k ~ N(0, beta)``; every
    ``v_k ~ N(B_k, 1)^60`` (skipped when ``iid``, where ``v_k = 0``); for ``iid`` a single
    ``W, b ~ N(0, 1)``; then per device ``W_k ~ N(u_k, 1)^{60x10}``, ``b_k ~ N(u_k, 1)^10``
    (non-iid only), ``x ~ N(v_k, diag(j^-1.2))``, ``y = argmax(x W_k + b_k)``, a shuffle
    and a 90/10 train/test split. ``alpha`` and ``beta`` are standard deviations.
    """
    rng = np.random.default_rng(seed)
    sizes = np.floor(rng.lognormal(4.0, 2.0, NUM_DEVICES)).astype(np.int64) + 50
    u = rng.normal(0.0, alpha, NUM_DEVICES)
    b_means = rng.normal(0.0, beta, NUM_DEVICES)
    means = _feature_means(rng, b_means, iid)
    shared = _weights(rng, 0.0) if iid else None
    train, test = [], []
    for k in range(NUM_DEVICES):
        weights = shared if shared is not None else _weights(rng, u[k])
        X, y = _device_samples(rng, means[k], weights, int(sizes[k]))
        device_train, device_test = _split(rng, X, y)
        train.append(device_train)
        test.append(device_test)
    return train, test


def _feature_means(rng: np.random.Generator, b_means: np.ndarray, iid: bool) -> np.ndarray:
    if iid:
        return np.zeros((NUM_DEVICES, DIMENSION))
    return rng.normal(b_means[:, None], 1.0, (NUM_DEVICES, DIMENSION))


def _weights(rng: np.random.Generator, mean: float) -> tuple[np.ndarray, np.ndarray]:
    W = rng.normal(mean, 1.0, (DIMENSION, NUM_CLASSES))
    b = rng.normal(mean, 1.0, NUM_CLASSES)
    return W, b


def _device_samples(
    rng: np.random.Generator, mean: np.ndarray, weights: tuple[np.ndarray, np.ndarray], n: int
) -> DeviceData:
    std = np.arange(1, DIMENSION + 1, dtype=np.float64) ** -0.6
    X = mean + rng.standard_normal((n, DIMENSION)) * std
    W, b = weights
    y = np.argmax(X @ W + b, axis=1).astype(np.int64)
    return X, y


def _split(rng: np.random.Generator, X: np.ndarray, y: np.ndarray) -> tuple[DeviceData, DeviceData]:
    order = rng.permutation(len(y))
    cut = int(TRAIN_FRACTION * len(y))
    head, tail = order[:cut], order[cut:]
    return (X[head], y[head]), (X[tail], y[tail])
