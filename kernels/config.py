"""Kernel configuration: the shared JSON Schema and its validation into a resolved config."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema

from kernels.data import DATASET_NAME_PATTERN, DATASETS, dataset_shape

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
NON_FIELD = "non_field_errors"
MAX_PARAMS = 10_000_000

Config = dict[str, Any]
FieldErrors = dict[str, list[str]]


class KernelConfigError(ValueError):
    """A kernel config failed validation; ``errors`` maps field names to messages."""

    def __init__(self, errors: FieldErrors) -> None:
        self.errors = {field: list(messages) for field, messages in errors.items()}
        super().__init__(self.errors)

    def __str__(self) -> str:
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in self.errors.items())


def _common_properties() -> dict[str, dict[str, Any]]:
    known = ", ".join(DATASETS)
    return {
        "dataset": {
            "type": ["string", "null"],
            "pattern": DATASET_NAME_PATTERN,
            "default": None,
            "description": f"Dataset name (one of {known}, or synthetic:A,B). "
            "Fills n_features and n_classes and is used for server-side evaluation.",
        },
        "n_features": {"type": "integer", "minimum": 1, "description": "Input dimension."},
        "n_classes": {"type": "integer", "minimum": 2, "description": "Number of classes."},
        "lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.1},
        "epochs": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 32},
        "mu": {
            "type": "number",
            "minimum": 0,
            "default": 0.0,
            "description": "FedProx proximal coefficient (0 means FedAvg).",
        },
        "l2": {"type": "number", "minimum": 0, "default": 0.0},
        "seed": {"type": "integer", "minimum": 0, "default": 0},
    }


def build_schema(title: str, extra: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return the draft 2020-12 config schema shared by all train kernels, plus ``extra``."""
    properties = _common_properties()
    properties.update(extra or {})
    return {
        "$schema": SCHEMA_DIALECT,
        "title": title,
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "if": {"properties": {"dataset": {"type": "null"}}},
        "then": {"required": ["n_features", "n_classes"]},
    }


def make_validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """Check ``schema`` itself and return a validator for it."""
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def resolve(validator: jsonschema.Draft202012Validator, config: Any) -> Config:
    """Validate ``config``, fill defaults and dataset shape; raise KernelConfigError on problems."""
    if not isinstance(config, Mapping):
        raise KernelConfigError({NON_FIELD: ["The config must be a JSON object."]})
    errors = _schema_errors(validator, config)
    if errors:
        raise KernelConfigError(errors)
    properties = validator.schema["properties"]
    resolved = _with_defaults(properties, config)
    errors = _finiteness_errors(properties, resolved)
    errors.update(_dataset_errors(resolved))
    if errors:
        raise KernelConfigError(errors)
    return {name: resolved[name] for name in properties if name in resolved}


def _schema_errors(validator: jsonschema.Draft202012Validator, config: Mapping) -> FieldErrors:
    errors: FieldErrors = {}
    for error in validator.iter_errors(config):
        for field, message in _describe(error, validator.schema["properties"]):
            messages = errors.setdefault(field, [])
            if message not in messages:
                messages.append(message)
    return errors


def _describe(error: jsonschema.ValidationError, properties: Mapping) -> Iterable[tuple[str, str]]:
    if error.validator == "additionalProperties":
        allowed = ", ".join(properties)
        unknown = sorted(map(str, set(error.instance) - set(properties)))
        return [(name, f"Unknown field. Allowed fields: {allowed}.") for name in unknown]
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        message = "This field is required when no dataset is given."
        return [(name, message) for name in missing]
    field = str(error.path[0]) if error.path else NON_FIELD
    return [(field, _field_message(error))]


def _field_message(error: jsonschema.ValidationError) -> str:
    value = error.validator_value
    if error.validator == "type":
        return f"Must be {_type_phrase(value)}."
    if error.validator == "minimum":
        return f"Must be at least {value}."
    if error.validator == "maximum":
        return f"Must be at most {value}."
    if error.validator == "exclusiveMinimum":
        return f"Must be greater than {value}."
    if error.validator == "pattern":
        known = ", ".join(DATASETS)
        return f"Unknown dataset {error.instance!r}. Known: {known}, or synthetic:A,B (A, B >= 0)."
    return error.message


def _type_phrase(value: str | list[str]) -> str:
    words = {"integer": "an integer", "number": "a number", "string": "a string", "null": "null"}
    names = [value] if isinstance(value, str) else value
    return " or ".join(words.get(name, name) for name in names)


def _with_defaults(properties: Mapping, config: Mapping) -> Config:
    resolved: Config = {}
    for name, spec in properties.items():
        if name in config:
            resolved[name] = _coerce(spec, config[name])
        elif "default" in spec:
            resolved[name] = spec["default"]
    return resolved


def _coerce(spec: Mapping, value: Any) -> Any:
    if spec.get("type") == "integer":
        return int(value)
    if spec.get("type") == "number":
        return float(value)
    return value


def _finiteness_errors(properties: Mapping, config: Config) -> FieldErrors:
    return {
        name: ["Must be a finite number."]
        for name, spec in properties.items()
        if spec.get("type") == "number" and not math.isfinite(config[name])
    }


def _dataset_errors(config: Config) -> FieldErrors:
    name = config["dataset"]
    if name is None:
        return {}
    try:
        n_features, n_classes = dataset_shape(name)
    except ValueError as exc:
        return {"dataset": [str(exc)]}
    errors: FieldErrors = {}
    for field, expected in (("n_features", n_features), ("n_classes", n_classes)):
        given = config.setdefault(field, expected)
        if given != expected:
            noun = field.removeprefix("n_")
            errors[field] = [f"Dataset {name!r} has {expected} {noun}, but {given} was given."]
    return errors


def check_size(n_params: int) -> None:
    """Reject configs whose parameter vector would be unreasonably large."""
    if n_params > MAX_PARAMS:
        message = f"The model would have {n_params:,} parameters; the limit is {MAX_PARAMS:,}."
        raise KernelConfigError({NON_FIELD: [message]})
