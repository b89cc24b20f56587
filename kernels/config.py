"""Kernel configuration: the shared JSON Schema and its validation into a resolved config."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
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
    errors = schema_errors(
        validator,
        config,
        required_message="This field is required when no dataset is given.",
        messages={"pattern": _dataset_message},
    )
    if errors:
        raise KernelConfigError(errors)
    properties = validator.schema["properties"]
    resolved = with_defaults(properties, config)
    errors = finiteness_errors(properties, resolved)
    errors.update(_dataset_errors(resolved))
    if errors:
        raise KernelConfigError(errors)
    return {name: resolved[name] for name in properties if name in resolved}


def schema_errors(
    validator: jsonschema.Draft202012Validator,
    config: Mapping,
    *,
    required_message: str = "This field is required.",
    messages: Mapping[str, Callable[[jsonschema.ValidationError], str]] | None = None,
) -> FieldErrors:
    """JSON Schema errors as readable messages by field (shared by every kind of kernel).

    ``messages`` replaces the message of a validator keyword (e.g. a pattern that names
    datasets); an error inside a list names the item.
    """
    errors: FieldErrors = {}
    properties = validator.schema["properties"]
    for error in validator.iter_errors(config):
        for field, message in _describe(error, properties, required_message, messages or {}):
            found = errors.setdefault(field, [])
            if message not in found:
                found.append(message)
    return errors


def _describe(
    error: jsonschema.ValidationError,
    properties: Mapping,
    required_message: str,
    messages: Mapping[str, Callable[[jsonschema.ValidationError], str]],
) -> Iterable[tuple[str, str]]:
    if error.validator == "additionalProperties":
        allowed = ", ".join(properties)
        unknown = sorted(map(str, set(error.instance) - set(properties)))
        return [(name, f"Unknown field. Allowed fields: {allowed}.") for name in unknown]
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return [(name, required_message) for name in missing]
    path = list(error.path)
    field = str(path[0]) if path else NON_FIELD
    special = messages.get(str(error.validator))
    message = special(error) if special else _field_message(error)
    return [(field, f"Item {path[1]}: {message}" if len(path) > 1 else message)]


_BOUNDS = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than"}


def _field_message(error: jsonschema.ValidationError) -> str:
    value = error.validator_value
    if error.validator == "type":
        return f"Must be {_type_phrase(value)}."
    if error.validator in _BOUNDS:
        return f"Must be {_BOUNDS[error.validator]} {value}."
    if error.validator == "enum":
        return f"Must be one of: {', '.join(map(str, value))}."
    if error.validator == "minItems":
        return f"Must have at least {value} items."
    if error.validator == "maxItems":
        return f"Must have at most {value} items."
    return error.message


def _dataset_message(error: jsonschema.ValidationError) -> str:
    known = ", ".join(DATASETS)
    return f"Unknown dataset {error.instance!r}. Known: {known}, or synthetic:A,B (A, B >= 0)."


def _type_phrase(value: str | list[str]) -> str:
    words = {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "array": "a list",
        "null": "null",
    }
    names = [value] if isinstance(value, str) else value
    return " or ".join(words.get(name, name) for name in names)


def with_defaults(properties: Mapping, config: Mapping) -> Config:
    """The schema's properties given in ``config`` (coerced to int or float as the schema
    types them) or with a default, filled with their defaults."""
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


def finiteness_errors(properties: Mapping, config: Config) -> FieldErrors:
    """A message for each ``number`` property of ``config`` that is not finite."""
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
