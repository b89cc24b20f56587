"""The policy of a compute job: its schema, defaults and validation (pure, no ORM)."""

from __future__ import annotations

from typing import Any

import jsonschema

from apps.rounds.policy import PolicyError
from kernels.config import schema_errors

COMPUTE_POLICY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        # Seconds one unit should take a worker; a unit's cost is in seconds of one core, so
        # this is the target cost the kernel's split cuts to.
        "unit_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600, "default": 5},
        "unit_deadline_s": {"type": "number", "exclusiveMinimum": 0, "default": 60},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100, "default": 3},
        # Each unit goes to `replicas` distinct workers and is validated once `quorum` results
        # agree; a disagreement sends more, up to `max_replicas` results, then the unit fails.
        # A trusted worker's unit goes out once, except for a `spot_check_rate` share of them.
        "replicas": {"type": "integer", "minimum": 1, "maximum": 5, "default": 2},
        "quorum": {"type": "integer", "minimum": 1, "maximum": 5, "default": 2},
        "max_replicas": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
        "spot_check_rate": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.1},
    },
}

_validator = jsonschema.Draft202012Validator(COMPUTE_POLICY_SCHEMA)


def resolve_compute_policy(policy: dict | None) -> dict:
    """Validate a compute policy and return a new dict with every default filled.

    The quorum defaults to at most ``replicas`` (so ``{"replicas": 1}`` alone is valid).
    """
    policy = dict(policy or {})
    errors = schema_errors(_validator, policy)
    if errors:
        raise PolicyError(errors)
    resolved = {key: spec["default"] for key, spec in COMPUTE_POLICY_SCHEMA["properties"].items()}
    if "quorum" not in policy:
        resolved["quorum"] = min(resolved["quorum"], policy.get("replicas", resolved["replicas"]))
    resolved.update(policy)
    errors = _replication_errors(resolved)
    if errors:
        raise PolicyError(errors)
    return resolved


def _replication_errors(policy: dict) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if policy["quorum"] > policy["replicas"]:
        errors["quorum"] = ["must not exceed replicas"]
    if policy["max_replicas"] < policy["replicas"]:
        errors["max_replicas"] = ["must not be below replicas"]
    return errors
