"""Datasets for the kernels: bundled scikit-learn sets, synthetic data, shards and CSV files."""

from __future__ import annotations

import csv
import functools
import itertools
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from kernels import synthetic
from kernels.partition import partition as split_indices

SKLEARN_DATASETS = {
    "digits": (64, 10),
    "breast_cancer": (30, 2),
    "wine": (13, 3),
    "iris": (4, 3),
}
SYNTHETIC_SHAPE = (synthetic.DIMENSION, synthetic.NUM_CLASSES)
DATASETS: dict[str, tuple[int, int]] = {
    **SKLEARN_DATASETS,
    "synthetic:iid": SYNTHETIC_SHAPE,
    "synthetic:0,0": SYNTHETIC_SHAPE,
    "synthetic:0.5,0.5": SYNTHETIC_SHAPE,
    "synthetic:1,1": SYNTHETIC_SHAPE,
}
_NUMBER = r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"
_SYNTHETIC = re.compile(rf"synthetic:(?:iid|({_NUMBER}),({_NUMBER}))")
DATASET_NAME_PATTERN = rf"^(?:{'|'.join(SKLEARN_DATASETS)}|synthetic:(?:iid|{_NUMBER},{_NUMBER}))$"
TEST_FRACTION = 0.2

DeviceData = tuple[np.ndarray, np.ndarray]
Row = tuple[int, list[str]]
MAX_LABEL = 2**31 - 1


@dataclass(frozen=True)
class Dataset:
    """A train/test split; arrays are read-only and shared, so never mutate them."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_features: int
    n_classes: int
    devices: list[DeviceData] | None = None
    # How raw features were standardized ((x - mean) / std, training split only); None when
    # the data was not standardized. Browsers use it to prepare local images the same way.
    scaling: tuple[np.ndarray, np.ndarray] | None = None


def _unknown(name: object) -> ValueError:
    known = ", ".join(DATASETS)
    return ValueError(f"Unknown dataset {name!r}; known: {known}, or synthetic:A,B with A, B >= 0.")


def dataset_shape(name: str) -> tuple[int, int]:
    """Return ``(n_features, n_classes)`` for a dataset name without loading it."""
    if isinstance(name, str) and name in SKLEARN_DATASETS:
        return SKLEARN_DATASETS[name]
    if isinstance(name, str) and _SYNTHETIC.fullmatch(name):
        return SYNTHETIC_SHAPE
    raise _unknown(name)


def load_dataset(name: str, seed: int = 0) -> Dataset:
    """Load a dataset by name; the result is cached and its arrays are read-only.

    scikit-learn sets get a stratified 80/20 split by ``seed`` and are standardized with the
    training split's mean and std. ``synthetic:A,B`` and ``synthetic:iid`` are generated
    from ``seed`` (see ``kernels.synthetic``) and are not standardized.
    """
    dataset_shape(name)
    return _load(name, int(seed))


@functools.lru_cache(maxsize=32)
def _load(name: str, seed: int) -> Dataset:
    if name in SKLEARN_DATASETS:
        return _load_sklearn(name, seed)
    return _load_synthetic(name, seed)


def _load_sklearn(name: str, seed: int) -> Dataset:
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_FRACTION, stratify=y, random_state=seed
    )
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std < 1e-12] = 1.0
    n_features, n_classes = SKLEARN_DATASETS[name]
    return Dataset(
        name=name,
        X_train=_frozen((X_train - mean) / std, np.float32),
        y_train=_frozen(y_train, np.int64),
        X_test=_frozen((X_test - mean) / std, np.float32),
        y_test=_frozen(y_test, np.int64),
        n_features=n_features,
        n_classes=n_classes,
        scaling=(_frozen(mean, np.float64), _frozen(std, np.float64)),
    )


def _load_synthetic(name: str, seed: int) -> Dataset:
    match = _SYNTHETIC.fullmatch(name)
    iid = match.group(1) is None
    alpha, beta = (0.0, 0.0) if iid else (float(match.group(1)), float(match.group(2)))
    train, test = synthetic.generate(alpha, beta, iid, seed)
    X_train, y_train = _pool(train)
    X_test, y_test = _pool(test)
    bounds = np.cumsum([0] + [len(y) for _, y in train])
    devices = [(X_train[a:b], y_train[a:b]) for a, b in itertools.pairwise(bounds)]
    return Dataset(name, X_train, y_train, X_test, y_test, *SYNTHETIC_SHAPE, devices=devices)


def _pool(parts: list[DeviceData]) -> DeviceData:
    X = np.concatenate([X for X, _ in parts])
    y = np.concatenate([y for _, y in parts])
    return _frozen(X, np.float32), _frozen(y, np.int64)


def _frozen(array: np.ndarray, dtype: type) -> np.ndarray:
    out = np.ascontiguousarray(array, dtype=dtype).copy()
    out.flags.writeable = False
    return out


def load_shard(
    dataset: str, index: int, count: int, partition: str = "iid", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return training shard ``index`` (0-based) of ``count`` as fresh ``(X, y)`` arrays.

    The shard is cut from ``load_dataset(dataset, seed).X_train``, so evaluate on the test split
    of that same call. ``partition`` is a scheme of ``kernels.partition.partition`` (split by
    ``seed``) or, for synthetic datasets only, ``"natural"``: shard ``index`` then holds the
    generator's devices ``index, index + count, index + 2 * count, ...``.
    """
    if int(count) != count or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}.")
    if int(index) != index or not 0 <= index < count:
        raise ValueError(f"index must be an integer in [0, {count}), got {index!r}.")
    data = load_dataset(dataset, seed)
    if partition == "natural":
        return _natural_shard(data, int(index), int(count))
    rows = _shard_indices(dataset, int(count), partition, int(seed))[int(index)]
    return data.X_train[rows], data.y_train[rows]


@functools.lru_cache(maxsize=64)
def _shard_indices(dataset: str, count: int, scheme: str, seed: int) -> list[np.ndarray]:
    return split_indices(load_dataset(dataset, seed).y_train, count, scheme, seed)


def _natural_shard(data: Dataset, index: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    if data.devices is None:
        raise ValueError(f"The 'natural' partition needs a synthetic dataset, not {data.name!r}.")
    if count > len(data.devices):
        raise ValueError(f"The 'natural' partition has only {len(data.devices)} devices.")
    chosen = data.devices[index::count]
    return np.concatenate([X for X, _ in chosen]), np.concatenate([y for _, y in chosen])


def load_csv(path: str | os.PathLike, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a headed CSV: ``label_column`` holds integer class labels >= 0, all others numbers."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [(n, row) for n, row in enumerate(csv.reader(handle), 1) if any(map(str.strip, row))]
    header, body = _split_header(rows, label_column)
    label_at = header.index(label_column)
    values = np.array([_parse_row(row, header, line) for line, row in body])
    labels = values[:, label_at]
    _check_labels(labels, [line for line, _ in body], label_column)
    return np.delete(values, label_at, axis=1).astype(np.float32), labels.astype(np.int64)


def _split_header(rows: list[Row], label_column: str) -> tuple[list[str], list[Row]]:
    if not rows:
        raise ValueError("The CSV file is empty.")
    header = [name.strip() for name in rows[0][1]]
    if header.count(label_column) != 1:
        problem = "is missing" if label_column not in header else "appears more than once"
        raise ValueError(f"Label column {label_column!r} {problem}; columns: {', '.join(header)}.")
    if len(header) < 2:
        raise ValueError("The CSV file needs at least one feature column besides the label.")
    if len(rows) < 2:
        raise ValueError("The CSV file has a header but no data rows.")
    return header, rows[1:]


def _parse_row(row: list[str], header: list[str], line: int) -> list[float]:
    if len(row) != len(header):
        raise ValueError(f"Line {line} has {len(row)} fields; the header has {len(header)}.")
    return [_parse_cell(cell, name, line) for cell, name in zip(row, header, strict=True)]


def _parse_cell(cell: str, column: str, line: int) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"Line {line}, column {column!r}: {cell!r} is not a finite number.")
    return value


def _check_labels(labels: np.ndarray, lines: list[int], column: str) -> None:
    bad = (labels != np.round(labels)) | (labels < 0) | (labels > MAX_LABEL)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"Label column {column!r} must hold integer class labels from 0 to {MAX_LABEL}; "
            f"line {lines[first]} has {labels[first]:g}."
        )
