"""Pure-numpy model kernels and datasets for federated training."""

from __future__ import annotations

from kernels.config import KernelConfigError
from kernels.data import Dataset, load_csv, load_dataset, load_shard
from kernels.kernel import Kernel
from kernels.partition import partition
from kernels.registry import UnknownKernel, get_kernel, list_kernels

__all__ = [
    "Dataset",
    "Kernel",
    "KernelConfigError",
    "UnknownKernel",
    "get_kernel",
    "list_kernels",
    "load_csv",
    "load_dataset",
    "load_shard",
    "partition",
]
