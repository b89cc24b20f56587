"""The round policy of a training job: its schema, defaults and validation (pure, no ORM)."""

from __future__ import annotations

import math
from typing import Any

import jsonschema

from kernels.config import schema_errors

POLICY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cohort_size": {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 10},
        "min_reports": {"type": "integer", "minimum": 1, "maximum": 100_000},
        "over_selection": {"type": "number", "minimum": 1, "maximum": 10, "default": 1.0},
        "round_deadline_s": {"type": "number", "exclusiveMinimum": 0, "default": 60},
        "selection_timeout_s": {"type": "number", "minimum": 0, "default": 10},
        "max_rounds": {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 10},
        "target_accuracy": {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": 1,
            "default": None,
        },
        "on_quorum_miss": {"enum": ["retry", "fail"], "default": "retry"},
        "max_round_retries": {"type": "integer", "minimum": 0, "maximum": 100, "default": 2},
        "max_update_norm": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": None},
        "server_lr": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
        "codec": {"enum": ["f32", "f16"], "default": "f32"},
    },
}

_validator = jsonschema.Draft202012Validator(POLICY_SCHEMA)


class PolicyError(ValueError):
    """Invalid policy; ``errors`` maps a field (or "non_field_errors") to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def resolve_policy(policy: dict | None) -> dict:
    """Validate a policy and return a new dict with every default filled."""
    policy = dict(policy or {})
    errors = schema_errors(_validator, policy)
    if errors:
        raise PolicyError(errors)
    resolved = {
        key: spec["default"]
        for key, spec in POLICY_SCHEMA["properties"].items()
        if "default" in spec
    }
    resolved.update(policy)
    resolved.setdefault("min_reports", max(1, math.ceil(0.8 * resolved["cohort_size"])))
    if resolved["min_reports"] > resolved["cohort_size"]:
        raise PolicyError({"min_reports": ["must not exceed cohort_size"]})
    return resolved


def selection_size(policy: dict, available: int) -> int:
    """How many workers to offer a round: cohort × over-selection, capped by who is there."""
    wanted = math.ceil(policy["cohort_size"] * policy["over_selection"])
    return min(wanted, available)
