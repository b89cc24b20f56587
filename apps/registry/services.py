"""Writing model versions: the artifact goes to storage first, then the row that names it."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.registry.models import ModelVersion
from ccgsc_client import wire


def model_version_create(
    *,
    job_id: int,
    version: int,
    weights: np.ndarray,
    parent: ModelVersion | None = None,
    fl_round_id: int | None = None,
    metrics: dict | None = None,
) -> ModelVersion:
    """Store the weights and register them; call inside the transaction that owns the version."""
    data = wire.encode_tensor(weights, "f32")
    model = ModelVersion(
        job_id=job_id,
        version=version,
        parent=parent,
        fl_round_id=fl_round_id,
        sha256=wire.sha256_hex(data),
        size=len(data),
        length=int(weights.size),
        metrics=metrics or {},
    )
    model.artifact.save("model.f32", ContentFile(data), save=False)
    model.save()
    return model


def model_bytes(model: ModelVersion) -> bytes:
    return _artifact_bytes(model.artifact.name, model.sha256)


def model_weights(model: ModelVersion) -> np.ndarray:
    return wire.decode_tensor(model_bytes(model), "f32", model.length)


@lru_cache(maxsize=16)
def _artifact_bytes(name: str, sha256: str) -> bytes:
    """Model artifacts are immutable, so a process may keep the few it serves most."""
    with default_storage.open(name, "rb") as handle:
        data = handle.read()
    if wire.sha256_hex(data) != sha256:
        raise ValueError(f"artifact {name} does not match its recorded sha256")
    return data
