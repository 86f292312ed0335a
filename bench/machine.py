"""What a benchmark ran on, recorded beside its numbers (benchmarks compare only like with like)."""

from __future__ import annotations

import os
import platform

import torch


def torch_machine(device: str | torch.device = "cpu") -> dict:
    device = torch.device(device)
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
