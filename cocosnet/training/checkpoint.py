"""Training checkpoints: written atomically, found again by step, loaded without unpickling code.

A checkpoint is a ``torch.save`` of plain containers of tensors, numbers and strings (model and
optimiser states, RNG states, progress, the resolved config as JSON), so
``torch.load(weights_only=True)`` reads it; anything else in the file is refused.
:class:`CheckpointWriter` writes one, :func:`previous_run` finds the one to continue from and
:func:`restore` loads it back into a trainer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..config import LossConfig, ModelConfig, TrainConfig
from ..files import atomic_path, load_tensor_state
from .distributed import DistInfo

if TYPE_CHECKING:
    from .steps import Trainer

_NAME = re.compile(r"^step_(\d{9})\.pt$")
# Train keys a checkpoint may differ in and still be resumed: where a run stops (a checkpoint
# of a run that went further is never taken, see `previous_run`) and the foreach list.
_NOT_FINGERPRINTED = {"max_steps", "datasets"}


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, unsafe or from another configuration."""


def fingerprint(config: Mapping) -> str:
    """Digest of the settings that change what training computes (the resume key)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    return Path(directory) / f"step_{step:09d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in ``directory``, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_checkpoint(directory: str | os.PathLike, step: int, state: Mapping, keep: int) -> Path:
    """Write ``state`` as the checkpoint of ``step`` (temp file + rename); of the others, keep
    the newest ``keep - 1``. The file just written is never the one removed."""
    path = checkpoint_path(directory, step)
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
    others = [p for _, p in list_checkpoints(directory) if p != path]
    for old in others[: max(0, len(others) - (keep - 1))]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint onto the CPU; a file that needs arbitrary unpickling is refused."""
    state = load_tensor_state(path, CheckpointError, tensors_only=False)
    if "fingerprint" not in state or "step" not in state:
        raise CheckpointError(f"{path}: not a cocosnet training checkpoint")
    return state


@dataclass(frozen=True)
class PreviousRun:
    """A checkpoint to continue from, read once by the stage and handed to the loop."""

    path: Path
    step: int
    fingerprint: str
    state: dict  # the whole checkpoint: trainer and RNG states, history (see `restore`)
    run_id: str | None  # the MLflow run it logged to; None when untracked
    config: dict  # the resolved params that made it ({} when not recorded)


def previous_run(directory: str | os.PathLike, max_step: int) -> PreviousRun | None:
    """The newest checkpoint in ``directory`` (the resume area of one fingerprint) that a run
    of ``max_step`` steps can continue from: none past ``max_step``, which would hand back a
    model trained longer than asked."""
    for step, path in reversed(list_checkpoints(directory)):
        if step <= max_step:
            state = load_checkpoint(path)
            return PreviousRun(
                path=path,
                step=int(state["step"]),
                fingerprint=state["fingerprint"],
                state=state,
                run_id=state.get("run_id") or None,
                config=json.loads(state.get("config") or "{}"),
            )
    return None


def restore(
    trainer: Trainer, previous: PreviousRun, *, fingerprint: str, total: int, device: torch.device
) -> list[dict[str, float]]:
    """Load ``previous`` into ``trainer`` and the RNGs (a run of ``total`` steps with this
    ``fingerprint`` only); returns the history logged up to it."""
    if previous.fingerprint != fingerprint or previous.step > total:
        raise ValueError(f"{previous.path} cannot be resumed by this configuration")
    trainer.load_state_dict(previous.state["trainer"])
    _set_rng_state(previous.state["rng"], device)
    trainer.step = previous.step
    return json.loads(previous.state["history"])


@dataclass(frozen=True)
class CheckpointWriter:
    """Writes the checkpoint of the trainer's current step: rank 0 writes, every rank waits."""

    directory: Path  # the resume area of ``fingerprint``
    fingerprint: str
    epoch_steps: int
    keep: int  # checkpoints kept, this one included
    config: str  # the resolved config as JSON
    run_id: str  # the MLflow run; "" when untracked
    info: DistInfo
    device: torch.device

    def write(self, trainer: Trainer, history: list[dict[str, float]]) -> Path | None:
        """The checkpoint's path on rank 0, None on the others."""
        path = None
        if self.info.is_main:
            state = {
                "fingerprint": self.fingerprint,
                "step": trainer.step,
                "epoch": trainer.step // self.epoch_steps,
                "trainer": trainer.state_dict(),
                "rng": _rng_state(self.device),
                "history": json.dumps(history),
                "config": self.config,
                "run_id": self.run_id,
            }
            path = save_checkpoint(self.directory, trainer.step, state, self.keep)
        if self.info.distributed:
            torch.distributed.barrier()
        return path


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def source_digest(files: list[Path], root: Path) -> str:
    """Digest of source files (paths relative to ``root`` and contents)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def training_fingerprint(
    model_cfg: ModelConfig, loss_cfg: LossConfig, cfg: TrainConfig, *, code: str
) -> str:
    """What a checkpoint must share with this run to be resumed: the settings that change what is
    computed and ``code``, the digest of the source the training imports (after a code change DVC
    reruns the stage, and the result must come from the new code, not from an old checkpoint)."""
    train = {k: v for k, v in cfg.model_dump().items() if k not in _NOT_FINGERPRINTED}
    return fingerprint(
        {
            "model": model_cfg.model_dump(),
            "loss": loss_cfg.model_dump(),
            "train": train,
            "code": code,
        }
    )
