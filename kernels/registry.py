"""The registry of available kernels, looked up by name."""

from __future__ import annotations

from kernels import mlp, softmax
from kernels.kernel import Kernel

__all__ = ["Kernel", "UnknownKernel", "get_kernel", "list_kernels"]

_KERNELS: dict[str, Kernel] = {kernel.name: kernel for kernel in (softmax.KERNEL, mlp.KERNEL)}


class UnknownKernel(KeyError):
    """No kernel is registered under the requested name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "Unknown kernel."


def get_kernel(name: str) -> Kernel:
    """Return the kernel registered as ``name``; raise UnknownKernel otherwise."""
    try:
        return _KERNELS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_KERNELS))
        raise UnknownKernel(f"Unknown kernel {name!r}; known kernels: {known}.") from None


def list_kernels() -> list[Kernel]:
    """Return every registered kernel, sorted by name."""
    return [_KERNELS[name] for name in sorted(_KERNELS)]
