"""Kernel lookup, the config schemas and config resolution."""

from __future__ import annotations

import pickle

import jsonschema
import pytest

from kernels import KernelConfigError, UnknownKernel, get_kernel, list_kernels

NAMES = ["mlp", "softmax"]


def errors_of(name: str, config: object) -> dict[str, list[str]]:
    with pytest.raises(KernelConfigError) as caught:
        get_kernel(name).resolve_config(config)
    return caught.value.errors


def test_it_lists_the_softmax_and_mlp_train_kernels() -> None:
    kernels = list_kernels()
    assert [kernel.name for kernel in kernels] == NAMES
    assert all(kernel.kind == "train" and kernel.description for kernel in kernels)
    assert get_kernel("mlp") is kernels[0]


def test_it_raises_a_key_error_naming_the_known_kernels_for_unknown_names() -> None:
    with pytest.raises(KeyError) as caught:
        get_kernel("resnet")
    assert isinstance(caught.value, UnknownKernel)
    assert "resnet" in str(caught.value) and "softmax" in str(caught.value)


@pytest.mark.parametrize("name", NAMES)
def test_it_publishes_a_valid_closed_draft_2020_12_schema(name) -> None:
    schema = get_kernel(name).config_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    assert schema["properties"]["lr"]["default"] == 0.1


@pytest.mark.parametrize("name", NAMES)
def test_it_fills_defaults_without_mutating_the_input(name) -> None:
    given = {"n_features": 4, "n_classes": 3}
    resolved = get_kernel(name).resolve_config(given)
    assert given == {"n_features": 4, "n_classes": 3}
    expected = {"dataset": None, "lr": 0.1, "epochs": 1, "batch_size": 32, "mu": 0.0, "l2": 0.0}
    assert resolved.items() >= {**expected, "seed": 0, "n_features": 4}.items()
    assert get_kernel(name).resolve_config(resolved) == resolved


def test_it_fills_the_hidden_width_default_for_the_mlp_only() -> None:
    assert get_kernel("mlp").resolve_config({"dataset": "iris"})["hidden"] == 32
    assert "hidden" not in get_kernel("softmax").resolve_config({"dataset": "iris"})
    assert "hidden" in errors_of("softmax", {"dataset": "iris", "hidden": 8})


@pytest.mark.parametrize("name", NAMES)
def test_it_fills_the_shape_from_the_dataset(name) -> None:
    resolved = get_kernel(name).resolve_config({"dataset": "digits", "n_classes": 10})
    assert (resolved["n_features"], resolved["n_classes"]) == (64, 10)
    synthetic = get_kernel(name).resolve_config({"dataset": "synthetic:0.5,2"})
    assert (synthetic["n_features"], synthetic["n_classes"]) == (60, 10)


@pytest.mark.parametrize("name", NAMES)
def test_it_rejects_an_unknown_field_by_name(name) -> None:
    errors = errors_of(name, {"dataset": "iris", "learning_rate": 0.1})
    assert list(errors) == ["learning_rate"]
    assert "Unknown field" in errors["learning_rate"][0]


@pytest.mark.parametrize("name", NAMES)
def test_it_rejects_a_shape_that_contradicts_the_dataset(name) -> None:
    errors = errors_of(name, {"dataset": "digits", "n_features": 63})
    assert list(errors) == ["n_features"]
    assert "64" in errors["n_features"][0]


@pytest.mark.parametrize("name", NAMES)
def test_it_requires_the_shape_without_a_dataset(name) -> None:
    assert set(errors_of(name, {"n_classes": 3})) == {"n_features"}
    errors = errors_of(name, {"dataset": None})
    assert set(errors) == {"n_features", "n_classes"}
    assert errors["n_classes"] == ["This field is required when no dataset is given."]


@pytest.mark.parametrize(
    "field, value, phrase",
    [
        ("lr", 0, "greater than 0"),
        ("lr", "fast", "a number"),
        ("epochs", 1001, "at most 1000"),
        ("batch_size", 0, "at least 1"),
        ("mu", -1, "at least 0"),
        ("seed", 1.5, "an integer"),
        ("n_classes", 1, "at least 2"),
        ("dataset", "mnist", "Unknown dataset"),
        ("lr", float("nan"), "finite"),
    ],
)
def test_it_explains_invalid_values_per_field(field, value, phrase) -> None:
    errors = errors_of("mlp", {"n_features": 3, "n_classes": 2, field: value})
    assert list(errors) == [field]
    assert phrase in errors[field][0]


def test_it_rejects_a_config_that_is_not_an_object() -> None:
    assert list(errors_of("softmax", ["lr", 0.1])) == ["non_field_errors"]


def test_it_rejects_a_model_too_large_to_allocate() -> None:
    errors = errors_of("mlp", {"n_features": 100_000, "n_classes": 10, "hidden": 4096})
    assert list(errors) == ["non_field_errors"]


def test_it_coerces_integral_floats_to_integers() -> None:
    resolved = get_kernel("mlp").resolve_config({"dataset": "iris", "epochs": 2.0, "lr": 1})
    assert type(resolved["epochs"]) is int and type(resolved["lr"]) is float


def test_it_raises_config_errors_that_read_well_and_survive_pickling() -> None:
    with pytest.raises(KernelConfigError) as caught:
        get_kernel("softmax").resolve_config({"dataset": "iris", "lr": -1, "typo": 1})
    error = caught.value
    assert "lr: Must be greater than 0." in str(error) and "typo" in str(error)
    assert pickle.loads(pickle.dumps(error)).errors == error.errors
