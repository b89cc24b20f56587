"""Datasets: the bundled scikit-learn sets, synthetic data, shards and CSV loading."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import Dataset, load_csv, load_dataset, load_shard
from kernels.data import DATASETS, dataset_shape
from kernels.synthetic import generate


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "wine", "iris"])
def test_it_loads_standardized_stratified_sklearn_splits(name) -> None:
    data = load_dataset(name)
    assert isinstance(data, Dataset)
    assert (data.n_features, data.n_classes) == DATASETS[name] == dataset_shape(name)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.X_train.shape[1] == data.X_test.shape[1] == data.n_features
    n = len(data.y_train) + len(data.y_test)
    assert len(data.y_test) == pytest.approx(0.2 * n, abs=1)
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-5)
    assert not np.allclose(data.X_test.mean(axis=0), 0, atol=1e-5)
    train_share = np.bincount(data.y_train) / len(data.y_train)
    test_share = np.bincount(data.y_test) / len(data.y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.03)
    assert data.devices is None


def test_it_guards_constant_features_when_standardizing(digits) -> None:
    assert np.isfinite(digits.X_train).all() and np.isfinite(digits.X_test).all()
    assert (digits.X_train.std(axis=0) < 1e-6).any()


def test_it_caches_read_only_arrays(digits) -> None:
    assert load_dataset("digits") is digits
    with pytest.raises(ValueError):
        digits.X_train[0, 0] = 1.0
    assert not digits.y_test.flags.writeable


def test_it_splits_differently_for_another_seed(digits) -> None:
    assert not np.array_equal(load_dataset("digits", seed=1).y_test, digits.y_test)


def test_it_rejects_unknown_names_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match="digits.*synthetic:1,1"):
        load_dataset("mnist")
    with pytest.raises(ValueError):
        load_dataset("synthetic:-1,1")


@pytest.mark.parametrize("name", ["synthetic:1,1", "synthetic:0,0", "synthetic:iid"])
def test_it_generates_thirty_devices_of_at_least_fifty_samples(name) -> None:
    data = load_dataset(name)
    assert (data.n_features, data.n_classes) == (60, 10)
    assert len(data.devices) == 30
    assert data.X_train.shape[1] == data.X_test.shape[1] == 60
    pooled = np.concatenate([y for _, y in data.devices])
    np.testing.assert_array_equal(pooled, data.y_train)
    assert set(np.unique(data.y_train)) <= set(range(10))
    assert not data.devices[0][0].flags.writeable


@pytest.mark.parametrize("iid", [False, True])
def test_it_holds_out_a_tenth_of_every_device(iid) -> None:
    train, test = generate(1.0, 1.0, iid, seed=0)
    sizes = np.array([len(y) for _, y in train]) + [len(y) for _, y in test]
    assert sizes.min() >= 50
    assert all(len(y) == int(0.9 * n) for (_, y), n in zip(train, sizes, strict=True))


def test_it_generates_the_same_data_for_the_same_seed() -> None:
    first, _ = generate(1.0, 1.0, False, seed=11)
    again, _ = generate(1.0, 1.0, False, seed=11)
    other, _ = generate(1.0, 1.0, False, seed=12)
    assert all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        for a, b in zip(first, again, strict=True)
    )
    assert not np.array_equal(first[0][0][:5], other[0][0][:5])


def label_shares(devices: list) -> np.ndarray:
    return np.array([np.bincount(y, minlength=10) / len(y) for _, y in devices])


def test_it_gives_devices_different_label_distributions_for_synthetic_1_1() -> None:
    shares = label_shares(load_dataset("synthetic:1,1").devices)
    distances = 0.5 * np.abs(shares[:, None, :] - shares[None, :, :]).sum(axis=2)
    assert np.median(distances) > 0.5


def test_it_gives_devices_one_label_distribution_for_synthetic_iid() -> None:
    devices = load_dataset("synthetic:iid").devices
    big = [d for d in devices if len(d[1]) >= 200]
    shares = label_shares(big)
    assert np.abs(shares - shares.mean(axis=0)).max() < 0.15


def test_it_shards_the_training_split_disjointly_and_completely() -> None:
    data = load_dataset("wine", seed=2)
    shards = [load_shard("wine", i, 4, "dirichlet:1", seed=2) for i in range(4)]
    X = np.concatenate([X for X, _ in shards])
    y = np.concatenate([y for _, y in shards])
    order = np.lexsort(X.T)
    expected = np.lexsort(data.X_train.T)
    np.testing.assert_array_equal(X[order], data.X_train[expected])
    np.testing.assert_array_equal(y[order], data.y_train[expected])


def test_it_returns_the_same_shard_for_the_same_arguments() -> None:
    X, y = load_shard("digits", 3, 5, "dirichlet:0.5", seed=1)
    again_X, again_y = load_shard("digits", 3, 5, "dirichlet:0.5", seed=1)
    np.testing.assert_array_equal(X, again_X)
    np.testing.assert_array_equal(y, again_y)
    X[0, 0] = 123.0
    assert load_shard("digits", 3, 5, "dirichlet:0.5", seed=1)[0][0, 0] != 123.0


def test_it_deals_synthetic_devices_round_robin_for_the_natural_partition() -> None:
    devices = load_dataset("synthetic:0.5,0.5", seed=4).devices
    X, y = load_shard("synthetic:0.5,0.5", 2, 7, "natural", seed=4)
    chosen = [devices[k] for k in (2, 9, 16, 23)]
    np.testing.assert_array_equal(X, np.concatenate([d[0] for d in chosen]))
    np.testing.assert_array_equal(y, np.concatenate([d[1] for d in chosen]))


def test_it_allows_the_natural_partition_for_synthetic_data_only() -> None:
    with pytest.raises(ValueError, match="synthetic"):
        load_shard("iris", 0, 2, "natural")
    with pytest.raises(ValueError, match="30 devices"):
        load_shard("synthetic:1,1", 0, 31, "natural")


@pytest.mark.parametrize("index, count", [(3, 3), (-1, 3), (0, 0)])
def test_it_rejects_shard_numbers_out_of_range(index, count) -> None:
    with pytest.raises(ValueError):
        load_shard("iris", index, count)


def write(tmp_path, text: str) -> str:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_it_round_trips_a_csv_file(tmp_path) -> None:
    X = np.array([[0.5, -1.0], [2.0, 3.25], [1e-3, 7.0]], dtype=np.float32)
    y = np.array([2, 0, 1])
    lines = ["a,label,b"] + [f"{a},{label},{b}" for (a, b), label in zip(X, y, strict=True)]
    got_X, got_y = load_csv(write(tmp_path, "\n".join(lines) + "\n"), "label")
    assert got_X.dtype == np.float32 and got_y.dtype == np.int64
    np.testing.assert_array_equal(got_X, X)
    np.testing.assert_array_equal(got_y, y)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("a,label\n", "no data rows"),
        ("a,b\n1,2\n", "'label' is missing"),
        ("a,label\nx,1\n", "line 2.*not a finite number"),
        ("a,label\n1,\n", "not a finite number"),
        ("a,label\n1,0.5\n", "integer class labels"),
        ("a,label\n1,-1\n", "integer class labels"),
        ("a,label\n1,2,3\n", "fields"),
        ("label\n1\n", "feature column"),
    ],
)
def test_it_explains_bad_csv_files(tmp_path, text, message) -> None:
    with pytest.raises(ValueError, match=f"(?i){message}"):
        load_csv(write(tmp_path, text), "label")
