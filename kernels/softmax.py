"""The "softmax" kernel: multinomial logistic regression."""

from __future__ import annotations

import numpy as np

from kernels.config import Config, build_schema
from kernels.kernel import Kernel, Model
from kernels.losses import softmax_cross_entropy


def num_params(config: Config) -> int:
    """Return ``n_features * n_classes + n_classes``."""
    return config["n_features"] * config["n_classes"] + config["n_classes"]


def init(config: Config) -> np.ndarray:
    """Return all-zero flat float32 parameters (convex objective: no symmetry to break).

    Flat layout, ``d = n_features``, ``c = n_classes``, ``d*c + c`` floats: ``W`` (``d x c``,
    row-major, so ``W[i, k]`` is at ``i*c + k``) followed by ``b`` (``c``). Logits are
    ``X @ W + b``.
    """
    return np.zeros(num_params(config), dtype=np.float32)


def unpack(weights: np.ndarray, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Return views ``(W, b)`` into a flat parameter vector."""
    d, c = config["n_features"], config["n_classes"]
    return weights[: d * c].reshape(d, c), weights[d * c :]


def logits(weights: np.ndarray, X: np.ndarray, config: Config) -> np.ndarray:
    """Return ``X @ W + b``."""
    W, b = unpack(weights, config)
    return X @ W + b


def loss_and_grad(
    weights: np.ndarray, X: np.ndarray, y: np.ndarray, config: Config
) -> tuple[float, np.ndarray]:
    """Return the mean cross-entropy and its flat gradient (in the dtype of ``weights``)."""
    W, b = unpack(weights, config)
    loss, dz = softmax_cross_entropy(X @ W + b, y)
    grad = np.empty_like(weights)
    grad_W, grad_b = unpack(grad, config)
    np.matmul(X.T, dz, out=grad_W)
    dz.sum(axis=0, out=grad_b)
    return loss, grad


KERNEL = Kernel(
    name="softmax",
    description="Multinomial logistic regression (softmax classifier) trained with local "
    "mini-batch SGD; FedProx when mu > 0.",
    config_schema=build_schema("softmax kernel config"),
    model=Model(num_params=num_params, init=init, loss_and_grad=loss_and_grad, logits=logits),
)
