"""Numerically stable softmax cross-entropy shared by the kernels."""

from __future__ import annotations

import numpy as np


def _shifted_log_softmax_parts(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return shifted, exp


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of integer labels ``y`` under ``softmax(logits)`` (log-sum-exp)."""
    shifted, exp = _shifted_log_softmax_parts(logits)
    log_sums = np.log(exp.sum(axis=1))
    picked = shifted[np.arange(len(y)), y]
    return float((log_sums - picked).sum(dtype=np.float64)) / len(y)


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Return the mean cross-entropy and its gradient with respect to ``logits``."""
    shifted, exp = _shifted_log_softmax_parts(logits)
    sums = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float((np.log(sums[:, 0]) - shifted[rows, y]).sum(dtype=np.float64)) / len(y)
    exp /= sums
    exp[rows, y] -= 1.0
    exp /= len(y)
    return loss, exp
