"""Local training behaviours shared by every train kernel."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kernels import get_kernel, list_kernels, load_shard

NAMES = [kernel.name for kernel in list_kernels()]


def setup(name: str, **overrides: object) -> tuple:
    kernel = get_kernel(name)
    config = kernel.resolve_config({"dataset": "digits", "seed": 3, **overrides})
    X, y = load_shard("digits", 0, 10)
    return kernel, config, kernel.init(config), X, y


@pytest.mark.parametrize("name", NAMES)
def test_it_never_mutates_its_inputs(name) -> None:
    kernel, config, weights, X, y = setup(name, mu=0.5, l2=0.1, epochs=2)
    copies = [weights.copy(), X.copy(), y.copy(), dict(config)]
    new, _ = kernel.train(weights, X, y, config)
    assert new is not weights and not np.shares_memory(new, weights)
    for before, after in zip(copies, [weights, X, y, config], strict=True):
        np.testing.assert_equal(before, after)


@pytest.mark.parametrize("name", NAMES)
def test_it_gives_identical_weights_for_the_same_seed(name) -> None:
    kernel, config, weights, X, y = setup(name, epochs=2)
    first, first_metrics = kernel.train(weights, X, y, config)
    second, second_metrics = kernel.train(weights, X, y, config)
    np.testing.assert_array_equal(first, second)
    assert first_metrics == second_metrics
    other, _ = kernel.train(weights, X, y, config, seed=99)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", NAMES)
def test_it_honours_an_explicit_batch_order(name) -> None:
    kernel, config, weights, X, y = setup(name, epochs=3, batch_size=16)
    rng = np.random.default_rng(7)
    order = []
    for _ in range(3):
        permutation = rng.permutation(len(y))
        order += [permutation[i : i + 16] for i in range(0, len(y), 16)]
    seeded, _ = kernel.train(weights, X, y, config, seed=7)
    explicit, _ = kernel.train(weights, X, y, config, batch_order=order)
    np.testing.assert_array_equal(seeded, explicit)
    reordered, _ = kernel.train(weights, X, y, config, batch_order=order[::-1])
    assert not np.array_equal(seeded, reordered)


@pytest.mark.parametrize("name", NAMES)
def test_it_takes_exactly_one_sgd_step_per_batch(name) -> None:
    kernel, config, weights, X, y = setup(name, lr=0.05, mu=0.3, l2=0.01)
    rows = np.array([4, 0, 9])
    new, _ = kernel.train(weights, X, y, config, batch_order=[rows])
    _, grad = kernel.loss_and_grad(weights, X[rows], y[rows], config, anchor=weights)
    np.testing.assert_allclose(new, weights - 0.05 * grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_it_keeps_weights_near_the_anchor_with_a_large_mu(name) -> None:
    kernel, config, _, X, y = setup(name, epochs=5, lr=0.05)
    start = np.random.default_rng(0).normal(0, 0.1, kernel.num_params(config)).astype(np.float32)
    free, _ = kernel.train(start, X, y, config)
    proximal, _ = kernel.train(start, X, y, {**config, "mu": 10.0})
    assert np.linalg.norm(proximal - start) < 0.5 * np.linalg.norm(free - start)


@pytest.mark.parametrize("name", NAMES)
def test_it_rejects_bad_data(name) -> None:
    kernel, config, weights, X, y = setup(name)
    with pytest.raises(ValueError, match="empty"):
        kernel.train(weights, X[:0], y[:0], config)
    with pytest.raises(ValueError, match="shape"):
        kernel.train(weights, X[:, :10], y, config)
    with pytest.raises(ValueError, match="Labels"):
        kernel.train(weights, X, y + 10, config)
    with pytest.raises(ValueError, match="weights"):
        kernel.train(weights[:-1], X, y, config)
    with pytest.raises(ValueError, match="batch_order"):
        kernel.train(weights, X, y, config, batch_order=[np.array([0, len(y)])])


@pytest.mark.parametrize("name", NAMES)
def test_it_trains_a_small_shard_in_about_a_millisecond(name) -> None:
    kernel, config, weights, X, y = setup(name)
    X, y = X[:100], y[:100]
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        kernel.train(weights, X, y, config)
        timings.append(time.perf_counter() - start)
    assert np.median(timings) < 0.02
