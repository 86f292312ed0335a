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
_COMPUTATION_CODE = ("models", "losses", "training")  # packages whose source defines a step
# Settings that do not change what is computed: a checkpoint stays resumable across them.
_NOT_FINGERPRINTED = {
    "max_steps",
    "checkpoint_every",
    "keep_checkpoints",
    "resume",
    "log_every",
    "image_every",
    "num_workers",
    "threads",
    "datasets",
}


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


def resumable(directory: str | os.PathLike, key: str) -> tuple[Path, dict] | None:
    """The newest checkpoint in ``directory`` if it was made by the configuration ``key``."""
    found = list_checkpoints(directory)
    if not found:
        return None
    state = load_checkpoint(found[-1][1])
    return (found[-1][1], state) if state["fingerprint"] == key else None


def code_digest() -> str:
    """Digest of the source that defines what a step computes (networks, losses, training)."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for sub in _COMPUTATION_CODE:
        for path in sorted((package / sub).rglob("*.py")):
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def training_fingerprint(model_cfg: ModelConfig, loss_cfg: LossConfig, cfg: TrainConfig) -> str:
    """What a checkpoint must share with this run to be resumed: the settings that change what is
    computed and the code that computes it (after a code change DVC reruns the stage, and the
    result must come from the new code, not from an old finished checkpoint)."""
    train = {k: v for k, v in cfg.model_dump().items() if k not in _NOT_FINGERPRINTED}
    return fingerprint(
        {
            "model": model_cfg.model_dump(),
            "loss": loss_cfg.model_dump(),
            "train": train,
            "code": code_digest(),
        }
    )
