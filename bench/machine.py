"""What a benchmark ran on, recorded beside its numbers (benchmarks compare only like with like)."""

from __future__ import annotations

import os
import platform

import torch

# For benchmark subprocesses: glibc returns every large freed block to the OS at once, so the RSS
# high-water mark measures live tensors rather than allocator caching.
CHILD_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}


def peak_mib(device: str | torch.device = "cpu") -> float:
    """This process's peak memory: CUDA peak allocated, or the CPU RSS high-water mark."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:"))
    return int(hwm.split()[1]) / 1024


def torch_machine(device: str | torch.device = "cpu") -> dict:
    device = torch.device(device)
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        # 1/5/15-minute load at the time of the call: another busy process skews every number.
        "load_average": os.getloadavg(),
    }
