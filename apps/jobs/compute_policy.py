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
    },
}

_validator = jsonschema.Draft202012Validator(COMPUTE_POLICY_SCHEMA)


def resolve_compute_policy(policy: dict | None) -> dict:
    """Validate a compute policy and return a new dict with every default filled."""
    policy = dict(policy or {})
    errors = schema_errors(_validator, policy)
    if errors:
        raise PolicyError(errors)
    resolved = {key: spec["default"] for key, spec in COMPUTE_POLICY_SCHEMA["properties"].items()}
    resolved.update(policy)
    return resolved
