"""Splitting a labelled training set into client shards (IID or Dirichlet label skew)."""

from __future__ import annotations

import math

import numpy as np

MAX_ATTEMPTS = 1000


def partition(
    y: np.ndarray, n_shards: int, scheme: str = "iid", seed: int = 0, min_size: int = 10
) -> list[np.ndarray]:
    """Split the indices of ``y`` into ``n_shards`` disjoint, covering, sorted int64 arrays.

    ``"iid"``: a seeded permutation split as evenly as possible.

    ``"dirichlet:ALPHA"``: label skew after Hsu, Qi and Brown (2019) as implemented in
    NIID-Bench (Li et al., 2022). For every class, ``p ~ Dirichlet(ALPHA * 1)`` over the
    clients, and the class's shuffled indices are cut at the cumulative proportions. The
    NIID-Bench balancing step IS used: a client that already holds at least
    ``len(y) / n_shards`` samples gets proportion 0 for the remaining classes. The whole
    draw is repeated until every client holds at least ``min_size`` samples; when
    ``len(y) < n_shards * min_size`` the minimum is lowered to ``len(y) // n_shards``.
    After ``MAX_ATTEMPTS`` failed draws a ValueError is raised.
    """
    y = np.asarray(y)
    _check_arguments(y, n_shards, min_size)
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        shards = np.array_split(rng.permutation(len(y)), n_shards)
    else:
        alpha = parse_dirichlet(scheme)
        shards = _dirichlet(y, n_shards, alpha, min(min_size, len(y) // n_shards), rng)
    return [np.sort(shard).astype(np.int64) for shard in shards]


def parse_dirichlet(scheme: str) -> float:
    """Return ALPHA from ``"dirichlet:ALPHA"``; ValueError for any other scheme."""
    prefix, _, value = str(scheme).partition(":")
    try:
        alpha = float(value) if prefix == "dirichlet" else math.nan
    except ValueError:
        alpha = math.nan
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(
            f"Unknown partition scheme {scheme!r}: use 'iid' or 'dirichlet:ALPHA' with ALPHA > 0."
        )
    return alpha


def _check_arguments(y: np.ndarray, n_shards: int, min_size: int) -> None:
    if y.ndim != 1:
        raise ValueError("Labels must be a 1-D array.")
    if int(n_shards) != n_shards or n_shards < 1:
        raise ValueError(f"n_shards must be a positive integer, got {n_shards!r}.")
    if len(y) < n_shards:
        raise ValueError(f"Cannot split {len(y)} samples into {n_shards} non-empty shards.")
    if min_size < 0:
        raise ValueError(f"min_size must be non-negative, got {min_size!r}.")


def _dirichlet(
    y: np.ndarray, n_shards: int, alpha: float, minimum: int, rng: np.random.Generator
) -> list[np.ndarray]:
    classes = np.unique(y)
    for _ in range(MAX_ATTEMPTS):
        shards = _dirichlet_draw(y, classes, n_shards, alpha, rng)
        if min(len(shard) for shard in shards) >= minimum:
            return shards
    raise ValueError(
        f"Could not give each of {n_shards} shards at least {minimum} samples with "
        f"dirichlet alpha={alpha} in {MAX_ATTEMPTS} attempts; use a larger alpha, "
        "fewer shards or a smaller min_size."
    )


def _dirichlet_draw(
    y: np.ndarray, classes: np.ndarray, n_shards: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = [[] for _ in range(n_shards)]
    counts = np.zeros(n_shards, dtype=np.int64)
    fair_share = len(y) / n_shards
    for label in classes:
        members = rng.permutation(np.flatnonzero(y == label))
        p = rng.dirichlet(np.full(n_shards, alpha))
        balanced = p * (counts < fair_share)
        p = balanced / balanced.sum() if balanced.sum() > 0 else p
        cuts = (np.cumsum(p) * len(members)).astype(np.int64)[:-1]
        for client, piece in enumerate(np.split(members, cuts)):
            parts[client].append(piece)
            counts[client] += len(piece)
    return [np.concatenate(pieces) for pieces in parts]
