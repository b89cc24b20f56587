"""The Kernel object: config resolution, regularized objective, local SGD and evaluation."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.config import Config, check_size, make_validator, resolve
from kernels.losses import cross_entropy

Objective = Callable[[np.ndarray, np.ndarray, np.ndarray, Config], tuple[float, np.ndarray]]


@dataclass(frozen=True)
class Model:
    """The model-specific pure functions a Kernel is built from."""

    num_params: Callable[[Config], int]
    init: Callable[[Config], np.ndarray]
    loss_and_grad: Objective
    logits: Callable[[np.ndarray, np.ndarray, Config], np.ndarray]


@dataclass(frozen=True, eq=False)
class Kernel:
    """A trainable model with a JSON-Schema config; see the model module for the flat layout.

    All methods except ``resolve_config`` expect a config returned by ``resolve_config``.
    Weights are flat float32 vectors; ``config_schema`` is shared, so do not mutate it.
    """

    name: str
    description: str
    config_schema: dict[str, Any] = field(repr=False)
    model: Model = field(repr=False)
    kind: str = "train"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_validator", make_validator(copy.deepcopy(self.config_schema)))

    def resolve_config(self, config: dict[str, Any]) -> Config:
        """Validate ``config`` and return a new dict with defaults and dataset shape filled in.

        Raises KernelConfigError mapping field names (or "non_field_errors") to messages.
        """
        resolved = resolve(self._validator, config)
        check_size(self.model.num_params(resolved))
        return resolved

    def num_params(self, config: Config) -> int:
        """Return the length of the flat parameter vector."""
        return int(self.model.num_params(config))

    def init(self, config: Config) -> np.ndarray:
        """Return initial flat float32 parameters, deterministic from ``config["seed"]``."""
        return np.ascontiguousarray(self.model.init(config), dtype=np.float32).ravel()

    def loss_and_grad(
        self,
        weights: np.ndarray,
        X: np.ndarray,
        y: np.ndarray,
        config: Config,
        anchor: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        """Return the objective and its flat float32 gradient.

        Objective: mean cross-entropy + ``l2/2 * ||w||^2`` (whole vector, biases included)
        + ``mu/2 * ||w - anchor||^2`` when ``anchor`` is given. Computed in float64 when
        ``weights`` or ``X`` is float64, otherwise in float32.
        """
        dtype = _compute_dtype(weights, X)
        w = self._weights(weights, config, dtype)
        X, y = _nonempty(_features(X, config, dtype), y, config)
        reference = None if anchor is None else self._weights(anchor, config, dtype)
        loss, grad = self._objective(w, X, y, config, reference)
        return loss, grad.astype(np.float32)

    def train(
        self,
        weights: np.ndarray,
        X: np.ndarray,
        y: np.ndarray,
        config: Config,
        *,
        seed: int | None = None,
        batch_order: Sequence[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Run local mini-batch SGD and return ``(new_weights, metrics)``; inputs are not mutated.

        Batches: for each of ``epochs`` epochs, ``rng.permutation(n)`` cut into consecutive
        chunks of ``batch_size`` (the last may be smaller), where
        ``rng = np.random.default_rng(seed if seed is not None else config["seed"])`` is
        created once. If ``batch_order`` is given, exactly those index arrays are used, one
        step each, and ``epochs``, ``batch_size`` and the seed are ignored. With ``mu > 0`` the
        proximal anchor is the starting weights. Each step: ``w -= lr * grad``.

        Metrics are computed after training on the full local data: ``loss`` is the mean
        cross-entropy (without the l2 and proximal terms), ``accuracy`` the training accuracy.
        """
        X, y = _nonempty(_features(X, config, np.float32), y, config)
        w = np.array(self._weights(weights, config, np.float32), copy=True)
        anchor = w.copy() if config["mu"] > 0 else None
        lr = np.float32(config["lr"])
        for rows in _batches(len(y), config, seed, batch_order):
            _, grad = self._objective(w, X[rows], y[rows], config, anchor)
            grad *= lr
            w -= grad
        return w, self._metrics(w, X, y, config)

    def evaluate(self, weights: np.ndarray, X: np.ndarray, y: np.ndarray, config: Config) -> dict:
        """Return ``{"loss": mean cross-entropy, "accuracy", "num_samples"}`` on ``(X, y)``."""
        X, y = _nonempty(_features(X, config, np.float32), y, config)
        return self._metrics(self._weights(weights, config, np.float32), X, y, config)

    def predict(self, weights: np.ndarray, X: np.ndarray, config: Config) -> np.ndarray:
        """Return the predicted class index (int64) of every row of ``X``."""
        X = _features(X, config, np.float32)
        w = self._weights(weights, config, np.float32)
        return np.argmax(self.model.logits(w, X, config), axis=1).astype(np.int64)

    def _weights(self, weights: np.ndarray, config: Config, dtype: type) -> np.ndarray:
        w = np.asarray(weights)
        expected = self.num_params(config)
        if w.shape != (expected,):
            raise ValueError(f"Expected a flat vector of {expected} weights, got shape {w.shape}.")
        if not np.isfinite(w).all():
            raise ValueError("Weights must be finite.")
        return np.ascontiguousarray(w, dtype=dtype)

    def _objective(
        self, w: np.ndarray, X: np.ndarray, y: np.ndarray, config: Config, anchor: np.ndarray | None
    ) -> tuple[float, np.ndarray]:
        loss, grad = self.model.loss_and_grad(w, X, y, config)
        if config["l2"] > 0:
            loss += 0.5 * config["l2"] * float(w @ w)
            grad += config["l2"] * w
        if anchor is not None and config["mu"] > 0:
            diff = w - anchor
            loss += 0.5 * config["mu"] * float(diff @ diff)
            grad += config["mu"] * diff
        return loss, grad

    def _metrics(self, w: np.ndarray, X: np.ndarray, y: np.ndarray, config: Config) -> dict:
        logits = self.model.logits(w, X, config)
        accuracy = float(np.mean(np.argmax(logits, axis=1) == y))
        return {"loss": cross_entropy(logits, y), "accuracy": accuracy, "num_samples": len(y)}


def _compute_dtype(*arrays: np.ndarray) -> type:
    dtypes = {np.asarray(array).dtype for array in arrays}
    return np.float64 if np.dtype(np.float64) in dtypes else np.float32


def _features(X: np.ndarray, config: Config, dtype: type) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != config["n_features"]:
        raise ValueError(f"X must have shape (n, {config['n_features']}), got {X.shape}.")
    X = np.ascontiguousarray(X, dtype=dtype)
    if not np.isfinite(X).all():
        raise ValueError("X must be finite.")
    return X


def _labels(y: np.ndarray, n: int, config: Config) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}.")
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise ValueError("y must hold integer class labels.")
    if n and (y.min() < 0 or y.max() >= config["n_classes"]):
        raise ValueError(f"Labels must lie in [0, {config['n_classes']}).")
    return y.astype(np.int64)


def _nonempty(X: np.ndarray, y: np.ndarray, config: Config) -> tuple[np.ndarray, np.ndarray]:
    if len(X) == 0:
        raise ValueError("The data is empty.")
    return X, _labels(y, len(X), config)


def _batches(
    n: int, config: Config, seed: int | None, batch_order: Sequence[np.ndarray] | None
) -> list[np.ndarray]:
    if batch_order is not None:
        return [_checked_batch(rows, n) for rows in batch_order]
    rng = np.random.default_rng(config["seed"] if seed is None else seed)
    size = config["batch_size"]
    steps = []
    for _ in range(config["epochs"]):
        order = rng.permutation(n)
        steps.extend(order[start : start + size] for start in range(0, n, size))
    return steps


def _checked_batch(rows: np.ndarray, n: int) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.size == 0 or rows.dtype.kind not in "iu":
        raise ValueError("Each batch in batch_order must be a non-empty 1-D integer array.")
    if rows.min() < 0 or rows.max() >= n:
        raise ValueError(f"batch_order indices must lie in [0, {n}).")
    return rows
