"""The "mlp" kernel: one hidden ReLU layer and a softmax output."""

from __future__ import annotations

import numpy as np

from kernels.config import Config, build_schema
from kernels.kernel import Kernel, Model
from kernels.losses import softmax_cross_entropy

HIDDEN = {"type": "integer", "minimum": 1, "maximum": 4096, "default": 32}


def _dims(config: Config) -> tuple[int, int, int]:
    return config["n_features"], config["hidden"], config["n_classes"]


def num_params(config: Config) -> int:
    """Return ``d*h + h + h*c + c``."""
    d, h, c = _dims(config)
    return d * h + h + h * c + c


def init(config: Config) -> np.ndarray:
    """Return seeded flat float32 parameters.

    Flat layout, ``d = n_features``, ``h = hidden``, ``c = n_classes``, matrices row-major:
    ``W1`` (``d x h``), ``b1`` (``h``), ``W2`` (``h x c``), ``b2`` (``c``), in all
    ``d*h + h + h*c + c`` floats. Logits are ``relu(X @ W1 + b1) @ W2 + b2``.

    Values: ``rng = np.random.default_rng(seed)``; ``W1 = rng.standard_normal((d, h)) *
    sqrt(2/d)`` (He), then ``W2 = rng.standard_normal((h, c)) * sqrt(2/(h+c))`` (Glorot);
    biases are zero.
    """
    d, h, c = _dims(config)
    rng = np.random.default_rng(config["seed"])
    W1 = rng.standard_normal((d, h)) * np.sqrt(2.0 / d)
    W2 = rng.standard_normal((h, c)) * np.sqrt(2.0 / (h + c))
    parts = [W1.ravel(), np.zeros(h), W2.ravel(), np.zeros(c)]
    return np.concatenate(parts).astype(np.float32)


def unpack(weights: np.ndarray, config: Config) -> tuple[np.ndarray, ...]:
    """Return views ``(W1, b1, W2, b2)`` into a flat parameter vector."""
    d, h, c = _dims(config)
    ends = np.cumsum([d * h, h, h * c])
    W1, b1, W2, b2 = np.split(weights, ends)
    return W1.reshape(d, h), b1, W2.reshape(h, c), b2


def logits(weights: np.ndarray, X: np.ndarray, config: Config) -> np.ndarray:
    """Return ``relu(X @ W1 + b1) @ W2 + b2``."""
    W1, b1, W2, b2 = unpack(weights, config)
    return np.maximum(X @ W1 + b1, 0) @ W2 + b2


def loss_and_grad(
    weights: np.ndarray, X: np.ndarray, y: np.ndarray, config: Config
) -> tuple[float, np.ndarray]:
    """Return the mean cross-entropy and its flat gradient (in the dtype of ``weights``)."""
    W1, b1, W2, b2 = unpack(weights, config)
    pre = X @ W1 + b1
    hidden = np.maximum(pre, 0)
    loss, dz = softmax_cross_entropy(hidden @ W2 + b2, y)
    grad = np.empty_like(weights)
    g_W1, g_b1, g_W2, g_b2 = unpack(grad, config)
    np.matmul(hidden.T, dz, out=g_W2)
    dz.sum(axis=0, out=g_b2)
    dh = dz @ W2.T
    dh *= pre > 0
    np.matmul(X.T, dh, out=g_W1)
    dh.sum(axis=0, out=g_b1)
    return loss, grad


KERNEL = Kernel(
    name="mlp",
    description="Multi-layer perceptron with one hidden ReLU layer and a softmax output, "
    "trained with local mini-batch SGD; FedProx when mu > 0.",
    config_schema=build_schema("mlp kernel config", {"hidden": HIDDEN}),
    model=Model(num_params=num_params, init=init, loss_and_grad=loss_and_grad, logits=logits),
)
