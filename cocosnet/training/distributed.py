"""Processes of a training run: single process, or DDP under torchrun (NCCL on GPUs, gloo on CPU).

The library never reads the environment: the stage reads torchrun's variables and passes a
:class:`DistInfo`; :func:`torchrun_command` builds the launch command the stage runs when params
ask for more than one process.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..config import RuntimeConfig, TrainConfig


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    init_method: str | None = None  # e.g. tcp://host:port; None for a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info_from(env: Mapping[str, str]) -> DistInfo:
    """What torchrun tells each process (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""
    if "WORLD_SIZE" not in env or int(env["WORLD_SIZE"]) <= 1:
        return DistInfo()
    return DistInfo(
        rank=int(env["RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        init_method=f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}",
    )


def choose_device(cfg: TrainConfig, info: DistInfo) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", info.local_rank % torch.cuda.device_count())


def init_process_group(runtime: RuntimeConfig, info: DistInfo, device: torch.device) -> None:
    """Join the process group (no-op for one process)."""
    if not info.distributed:
        return
    backend = runtime.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend,
        init_method=info.init_method,
        rank=info.rank,
        world_size=info.world_size,
        timeout=timedelta(minutes=30),
    )


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_across(values: dict[str, torch.Tensor], info: DistInfo) -> dict[str, float]:
    """Average scalar tensors over processes (one all-reduce for all of them)."""
    if not values:
        return {}
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float() for k in keys])
    if info.distributed:
        dist.all_reduce(stacked)
        stacked /= info.world_size
    return dict(zip(keys, stacked.tolist(), strict=True))


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every process if it is true on any (e.g. one of them received SIGTERM)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def torchrun_command(
    cfg: TrainConfig, runtime: RuntimeConfig, module_args: Sequence[str]
) -> list[str]:
    """``python -m torch.distributed.run ... -m MODULE ARGS`` for ``nproc_per_node`` x ``nnodes``
    processes; single node uses a free local port, multi-node the configured rendezvous."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={cfg.nproc_per_node}"]
    if cfg.nnodes > 1:
        cmd += [
            f"--nnodes={cfg.nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={runtime.rdzv_endpoint}",
        ]
    else:
        cmd += ["--standalone"]
    return [*cmd, "-m", *module_args]
