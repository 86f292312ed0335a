"""Training checkpoints: written atomically, found again by step, loaded without unpickling code.

A checkpoint is a ``torch.save`` of plain containers of tensors, numbers and strings (model and
optimiser states, RNG states, progress, the resolved config as JSON), so
``torch.load(weights_only=True)`` reads it; anything else in the file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..config import LossConfig, ModelConfig, TrainConfig
from ..io import atomic_path

_NAME = re.compile(r"^step_(\d{9})\.pt$")
# Train keys a checkpoint may differ in and still be resumed: where a run stops (a checkpoint
# of a run that went further is never taken, see `resumable`) and the foreach list.
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
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a loadable cocosnet checkpoint ({first})") from None
    if not isinstance(state, dict) or "fingerprint" not in state or "step" not in state:
        raise CheckpointError(f"{path}: not a cocosnet training checkpoint")
    return state


def resumable(directory: str | os.PathLike, max_step: int) -> tuple[Path, dict] | None:
    """The newest checkpoint in ``directory`` (the resume area of one fingerprint) that a run
    of ``max_step`` steps can continue from: none past ``max_step``, which would hand back a
    model trained longer than asked."""
    for step, path in reversed(list_checkpoints(directory)):
        if step <= max_step:
            return path, load_checkpoint(path)
    return None


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
