"""The "sweep" compute kernel: orbit summaries of the logistic map over a grid of r values."""

from __future__ import annotations

import numpy as np

from kernels.compute import (
    ComputeKernel,
    ComputeOps,
    Config,
    FieldErrors,
    Result,
    build_compute_schema,
    field_error,
)

# The logistic map x' = r * x * (1 - x), evaluated as (r * x) * (1 - x) in both languages.
# The space is the grid indices [0, steps); grid point i has
#   r_i = i * delta + r_min,  delta = (r_max - r_min) / (steps - 1),  and r_(steps-1) = r_max
# (numpy.linspace's values; r_0 = r_min when steps is 1).
#
# For each r: start from x0, apply the map burn_in times, then take `iterations` more points
# x_0 .. x_(iterations-1) (counting from the end of the burn-in) and report
#   mean     = (x_0 + x_1 + ...) / iterations, summed in order,
#   min, max of those points,
#   lyapunov = (sum of log(max(|r * (1 - 2 * x_k)|, DERIVATIVE_FLOOR))) / iterations, in order,
# an estimate of the Lyapunov exponent (negative for periodic orbits, about log 2 at r = 4; an
# orbit through the superstable point x = 1/2 has derivative 0, floored to keep it finite).
#
# Agreement: chaotic orbits amplify any rounding difference, so replicas must use IEEE-754
# double arithmetic with each operation rounded separately (no fused multiply-add), as numpy
# and JavaScript do; the orbits, means, minima and maxima are then bit-identical, and only the
# last bits of log may differ between math libraries. Declared tolerance: RTOL relative plus
# ATOL absolute per value.

DERIVATIVE_FLOOR = 1e-300
RTOL = 1e-9
ATOL = 1e-12
MAX_STEPS = 1_000_000
MAX_ITERATIONS = 1_000_000
FIELDS = ("r", "mean", "min", "max", "lyapunov")
# Cost rate in work units (about seconds of numpy on one core) per grid point and iteration,
# measured on units of about a thousand points: numpy pays a fixed overhead per iteration, so
# much narrower units take longer than their cost says.
RATE_BURN_IN = 1.5e-9
RATE_ITERATION = 6e-9


def grid(config: Config, start: int, stop: int) -> np.ndarray:
    """Return r at the grid indices start .. stop - 1."""
    steps = config["steps"]
    index = np.arange(start, stop, dtype=np.float64)
    if steps == 1:
        return np.full(index.size, config["r_min"])
    delta = (config["r_max"] - config["r_min"]) / (steps - 1)
    r = index * delta + config["r_min"]
    r[index == steps - 1] = config["r_max"]
    return r


def orbit_summaries(config: Config, r: np.ndarray) -> dict[str, np.ndarray]:
    """Return the mean, min, max and Lyapunov estimate of the orbit at each r."""
    x = np.full(r.size, config["x0"], dtype=np.float64)
    scratch = np.empty_like(x)
    for _ in range(config["burn_in"]):
        _step(x, r, scratch)
    total = np.zeros_like(x)
    lowest = x.copy()
    highest = x.copy()
    lyapunov = np.zeros_like(x)
    slope = np.empty_like(x)
    for _ in range(config["iterations"]):
        total += x
        np.minimum(lowest, x, out=lowest)
        np.maximum(highest, x, out=highest)
        np.multiply(x, 2.0, out=slope)
        np.subtract(1.0, slope, out=slope)
        slope *= r
        np.abs(slope, out=slope)
        np.maximum(slope, DERIVATIVE_FLOOR, out=slope)
        lyapunov += np.log(slope, out=slope)
        _step(x, r, scratch)
    iterations = config["iterations"]
    return {
        "mean": total / iterations,
        "min": lowest,
        "max": highest,
        "lyapunov": lyapunov / iterations,
    }


def _step(x: np.ndarray, r: np.ndarray, scratch: np.ndarray) -> None:
    """x <- (r * x) * (1 - x), in place."""
    np.subtract(1.0, x, out=scratch)
    x *= r
    x *= scratch


def _run(config: Config, start: int, stop: int) -> Result:
    r = grid(config, start, stop)
    summaries = orbit_summaries(config, r)
    return {"r": r.tolist(), **{name: values.tolist() for name, values in summaries.items()}}


def _reduce(results: list[Result], config: Config) -> Result:
    return {name: [value for result in results for value in result[name]] for name in FIELDS}


def _space(config: Config) -> tuple[int, int]:
    return 0, config["steps"]


def _rate(config: Config, index: int) -> float:
    return RATE_BURN_IN * config["burn_in"] + RATE_ITERATION * config["iterations"]


def _check(config: Config) -> FieldErrors:
    if config["r_min"] > config["r_max"]:
        return field_error("r_max", f"Must be at least r_min ({config['r_min']}).")
    return {}


def _bounded(minimum: float, maximum: float, default: float, description: str) -> dict:
    return {
        "type": "number",
        "minimum": minimum,
        "maximum": maximum,
        "default": default,
        "description": description,
    }


def _count(minimum: int, maximum: int, default: int, description: str) -> dict:
    return {
        "type": "integer",
        "minimum": minimum,
        "maximum": maximum,
        "default": default,
        "description": description,
    }


SCHEMA = build_compute_schema(
    "Logistic map parameter sweep",
    {
        "r_min": _bounded(0.0, 4.0, 2.5, "Smallest r of the grid."),
        "r_max": _bounded(0.0, 4.0, 4.0, "Largest r of the grid."),
        "steps": _count(1, MAX_STEPS, 1000, "Number of grid points, r_min to r_max inclusive."),
        "x0": _bounded(0.0, 1.0, 0.2, "Starting point of every orbit."),
        "burn_in": _count(0, MAX_ITERATIONS, 1000, "Iterations discarded before measuring."),
        "iterations": _count(1, MAX_ITERATIONS, 1000, "Iterations measured after the burn-in."),
    },
)

KERNEL = ComputeKernel(
    name="sweep",
    description="Sweep the logistic map x -> r x (1 - x) over a grid of r and report the mean, "
    "min, max and Lyapunov exponent of each orbit after a burn-in; units are grid slices, "
    "results are concatenated in grid order.",
    config_schema=SCHEMA,
    ops=ComputeOps(space=_space, rate=_rate, run=_run, reduce=_reduce, check=_check),
    float_fields=FIELDS,
    rtol=RTOL,
    atol=ATOL,
)
