"""Compute kernels: the shared interface, config resolution, work-unit splitting and registry."""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kernels.config import (
    NON_FIELD,
    SCHEMA_DIALECT,
    Config,
    FieldErrors,
    KernelConfigError,
    finiteness_errors,
    make_validator,
    schema_errors,
    with_defaults,
)
from kernels.registry import UnknownKernel

# A compute job ("BOINC-style" volunteer computing) works over a space of integer indices, the
# half-open range [start, stop) that a kernel's `space(config)` returns: the integers themselves
# for "primes", Monte Carlo sample numbers for "montecarlo", grid points for "sweep".
#
#   unit   = {"start": int, "stop": int, "cost": float}    a non-empty slice of the space
#   result = {"start": int, "stop": int, **fields}          what `run` returns for a unit
#
# Cost is in abstract work units, calibrated so that one unit is roughly one second of one core
# running the numpy kernel; a scheduler divides a worker's measured speed (units per second) into
# the time it wants a unit to take to get `target_cost`. Each kernel gives a cost rate per index,
# `rate(config, index)`, that does not decrease with the index; a unit costs
# (stop - start) * rate(config, stop - 1), computed with the same operations in the JavaScript
# twins so that both languages cut identical units.
#
# Validation compares two replicas of a unit with `agree`: the kernel's integer fields must be
# equal and its float fields (numbers or lists of numbers) must satisfy
# |a - b| <= atol + rtol * max(|a|, |b|) with the tolerances the kernel declares. `reduce` takes
# one accepted result per unit, in any order, checks that they tile the whole space exactly once
# and combines them.

COST_UNIT = "about one second of one core running the numpy kernel"
MAX_UNITS = 100_000

Result = dict[str, Any]
Unit = dict[str, Any]


@dataclass(frozen=True)
class ComputeOps:
    """The kernel-specific pure functions a ComputeKernel is built from.

    ``space(config)`` is the half-open index range of the whole job; ``rate(config, index)`` the
    cost of one index near ``index`` (positive, non-decreasing in ``index``);
    ``run(config, start, stop)``
    the result fields of a unit; ``reduce(results, config)`` the combination of results sorted by
    ``start`` that tile the space; ``check(config)`` extra field errors of a schema-valid config.
    """

    space: Callable[[Config], tuple[int, int]]
    rate: Callable[[Config, int], float]
    run: Callable[[Config, int, int], Result]
    reduce: Callable[[list[Result], Config], Result]
    check: Callable[[Config], FieldErrors]


@dataclass(frozen=True, eq=False)
class ComputeKernel:
    """A compute kernel: splits a job into work units, runs them, validates and reduces results.

    All methods except ``resolve_config`` expect a config returned by ``resolve_config``.
    Units and results are small JSON-able dicts; see the module comment for their shape.
    ``config_schema`` is shared, so do not mutate it.
    """

    name: str
    description: str
    config_schema: dict[str, Any] = field(repr=False)
    ops: ComputeOps = field(repr=False)
    exact_fields: tuple[str, ...] = ()
    float_fields: tuple[str, ...] = ()
    rtol: float = 0.0
    atol: float = 0.0
    kind: str = "compute"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_validator", make_validator(copy.deepcopy(self.config_schema)))

    def resolve_config(self, config: Any) -> Config:
        """Validate ``config`` and return a new dict with every default filled in.

        Raises KernelConfigError mapping field names (or "non_field_errors") to messages.
        """
        if not isinstance(config, Mapping):
            raise KernelConfigError({NON_FIELD: ["The config must be a JSON object."]})
        errors = schema_errors(self._validator, config)
        if errors:
            raise KernelConfigError(errors)
        properties = self.config_schema["properties"]
        resolved = with_defaults(properties, config)
        errors = finiteness_errors(properties, resolved)
        if not errors:
            errors = self.ops.check(resolved)
        if errors:
            raise KernelConfigError(errors)
        return resolved

    def space(self, config: Config) -> tuple[int, int]:
        """Return the half-open index range ``(start, stop)`` of the whole job."""
        start, stop = self.ops.space(config)
        return int(start), int(stop)

    def cost(self, config: Config, start: int, stop: int) -> float:
        """Return the estimated cost of the indices [start, stop) in abstract work units."""
        if stop <= start:
            return 0.0
        return (stop - start) * self.ops.rate(config, stop - 1)

    def unit(self, config: Config, start: int, stop: int) -> Unit:
        """Return the unit covering [start, stop), a non-empty part of the space, with its cost."""
        start, stop = self._checked_range(config, start, stop)
        return {"start": start, "stop": stop, "cost": self.cost(config, start, stop)}

    def split(
        self, config: Config, *, target_cost: float, max_units: int = MAX_UNITS
    ) -> list[Unit]:
        """Cut the whole space into consecutive units of cost at most ``target_cost`` each.

        A unit holds at least one index, so a single index dearer than ``target_cost`` makes a
        unit of its own. Raises ValueError if more than ``max_units`` units would be needed.
        """
        start, stop = self.space(config)
        return self.split_range(config, start, stop, target_cost=target_cost, max_units=max_units)

    def split_range(
        self,
        config: Config,
        start: int,
        stop: int,
        *,
        target_cost: float,
        max_units: int = MAX_UNITS,
    ) -> list[Unit]:
        """Cut [start, stop) (a part of the space, say what is left of a unit) like ``split``.

        Each unit is as long as possible: its length is the largest whole number of indices at
        the cost rate of its first index that fits the target, shortened once to the rate at its
        new last index. Empty ranges give no units.
        """
        _check_target(target_cost)
        if stop <= start:
            return []
        start, stop = self._checked_range(config, start, stop)
        rate = self.ops.rate
        at_least = min((stop - start) * rate(config, start) / target_cost, stop - start)
        if at_least > max_units:
            raise ValueError(
                f"Cutting [{start}, {stop}) at a target cost of {target_cost} would make more "
                f"than {max_units} units."
            )
        units: list[Unit] = []
        at = start
        while at < stop:
            if len(units) == max_units:
                raise ValueError(
                    f"Cutting [{start}, {stop}) would make more than {max_units} units."
                )
            length = self._length(config, at, stop, target_cost)
            units.append(
                {"start": at, "stop": at + length, "cost": self.cost(config, at, at + length)}
            )
            at += length
        return units

    def next_unit(self, config: Config, start: int, *, target_cost: float) -> Unit | None:
        """The unit ``split_range`` would cut first from [start, end of the space): how a
        scheduler cuts the space lazily, one unit per worker sized to that worker's speed.
        None when ``start`` is at the end of the space."""
        _check_target(target_cost)
        stop = self.space(config)[1]
        if start >= stop:
            return None
        start, stop = self._checked_range(config, start, stop)
        length = self._length(config, start, stop, target_cost)
        return {
            "start": start,
            "stop": start + length,
            "cost": self.cost(config, start, start + length),
        }

    def _length(self, config: Config, at: int, stop: int, target_cost: float) -> int:
        """The length of the unit starting at ``at``: the largest whole number of indices at
        the cost rate of ``at`` that fits the target, shortened once to the rate at its new
        last index; at least one index, at most up to ``stop``."""
        rate = self.ops.rate
        length = min(max(math.floor(target_cost / rate(config, at)), 1), stop - at)
        shorter = math.floor(target_cost / rate(config, at + length - 1))
        return min(max(shorter, 1), length)

    def run(self, unit: Mapping[str, Any], config: Config) -> Result:
        """Compute one unit and return its JSON-able result, ``{"start", "stop", **fields}``."""
        if not isinstance(unit, Mapping):
            raise TypeError("A unit must be a mapping with start and stop.")
        start, stop = self._checked_range(config, unit.get("start"), unit.get("stop"))
        return {"start": start, "stop": stop, **self.ops.run(config, start, stop)}

    def agree(self, a: Any, b: Any, config: Config) -> bool:
        """Whether two results of the same unit match: exact integers, floats within tolerance."""
        fields = {"start", "stop", *self.exact_fields, *self.float_fields}
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            return False
        if set(a) != fields or set(b) != fields:
            return False
        for name in ("start", "stop", *self.exact_fields):
            if not (_is_int(a[name]) and _is_int(b[name]) and a[name] == b[name]):
                return False
        return all(_close(a[name], b[name], self.rtol, self.atol) for name in self.float_fields)

    def reduce(self, results: Iterable[Mapping[str, Any]], config: Config) -> Result:
        """Combine one result per unit, given in any order, into the job's result.

        Raises ValueError unless the results tile the whole space exactly once.
        """
        ordered = sorted((dict(result) for result in results), key=_start_of)
        expected, stop = self.space(config)
        for result in ordered:
            start, end = result.get("start"), result.get("stop")
            if start < expected:
                raise ValueError(f"The result for [{start}, {end}) overlaps another result.")
            if start > expected:
                raise ValueError(f"No result covers [{expected}, {start}).")
            if not (_is_int(end) and start < end <= stop):
                raise ValueError(f"The result for [{start}, {end}) is not a part of the space.")
            expected = end
        if expected != stop:
            raise ValueError(f"No result covers [{expected}, {stop}).")
        return self.ops.reduce(ordered, config)

    def _checked_range(self, config: Config, start: Any, stop: Any) -> tuple[int, int]:
        low, high = self.space(config)
        if not (_is_int(start) and _is_int(stop)):
            raise ValueError("A unit's start and stop must be integers.")
        if not low <= start < stop <= high:
            raise ValueError(f"[{start}, {stop}) is not a non-empty part of [{low}, {high}).")
        return int(start), int(stop)


def _check_target(target_cost: Any) -> None:
    if not (isinstance(target_cost, int | float) and math.isfinite(target_cost)):
        raise ValueError("target_cost must be a finite number.")
    if target_cost <= 0:
        raise ValueError("target_cost must be positive.")


def _start_of(result: Mapping[str, Any]) -> int:
    start = result.get("start")
    if not _is_int(start):
        raise ValueError("Every result needs an integer start and stop.")
    return int(start)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        if not (isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b)):
            return False
        return all(_close(x, y, rtol, atol) for x, y in zip(a, b, strict=True))
    if not (_is_number(a) and _is_number(b)):
        return False
    x, y = float(a), float(b)
    if not (math.isfinite(x) and math.isfinite(y)):
        return False
    return abs(x - y) <= atol + rtol * max(abs(x), abs(y))


def build_compute_schema(title: str, properties: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Return a closed draft 2020-12 object schema with the given properties."""
    return {
        "$schema": SCHEMA_DIALECT,
        "title": title,
        "type": "object",
        "properties": dict(properties),
        "additionalProperties": False,
    }


def field_error(field_name: str, message: str) -> FieldErrors:
    """Return the errors dict of one message about one field."""
    return {field_name: [message]}


@functools.cache
def _registry() -> dict[str, ComputeKernel]:
    from kernels import montecarlo, primes, sweep

    kernels: Sequence[ComputeKernel] = (primes.KERNEL, montecarlo.KERNEL, sweep.KERNEL)
    return {kernel.name: kernel for kernel in kernels}


def get_compute_kernel(name: str) -> ComputeKernel:
    """Return the compute kernel registered as ``name``; raise UnknownKernel otherwise."""
    try:
        return _registry()[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_registry()))
        raise UnknownKernel(f"Unknown compute kernel {name!r}; known kernels: {known}.") from None


def list_compute_kernels() -> list[ComputeKernel]:
    """Return every registered compute kernel, sorted by name."""
    registry = _registry()
    return [registry[name] for name in sorted(registry)]
