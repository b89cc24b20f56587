"""The policy of an analytics job: its schema, defaults and validation (pure, no ORM)."""

from __future__ import annotations

from typing import Any

import jsonschema

from apps.rounds.policy import PolicyError
from kernels.config import schema_errors

ANALYTICS_POLICY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        # How many distinct workers' accepted contributions the release waits for.
        "min_workers": {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 2},
        # The job's total epsilon; null means exactly the config's epsilon (0 for an exact
        # release). A release costing more than what is left is refused and charges nothing.
        "epsilon_budget": {"type": ["number", "null"], "minimum": 0, "default": None},
        # Seconds from the start within which min_workers contributions must arrive.
        "deadline_s": {"type": "number", "exclusiveMinimum": 0, "default": 600},
    },
}

_validator = jsonschema.Draft202012Validator(ANALYTICS_POLICY_SCHEMA)


def resolve_analytics_policy(policy: dict | None, config: dict) -> dict:
    """Validate an analytics policy and return a new dict with every default filled.

    ``config`` is the resolved analytics config, whose epsilon is the default budget.
    """
    policy = dict(policy or {})
    errors = schema_errors(_validator, policy)
    if errors:
        raise PolicyError(errors)
    properties = ANALYTICS_POLICY_SCHEMA["properties"]
    resolved = {key: spec["default"] for key, spec in properties.items()} | policy
    if resolved["epsilon_budget"] is None:
        resolved["epsilon_budget"] = float(config.get("epsilon") or 0.0)
    resolved["epsilon_budget"] = float(resolved["epsilon_budget"])
    return resolved
