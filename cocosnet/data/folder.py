"""Adapter for any folder tree of photos (no labels).

Folder layout: every ``.jpg``/``.jpeg``/``.png``/``.bmp``/``.webp`` file (suffix
case-insensitive) anywhere under ``raw_root``; hidden files and folders (name starting with
``.``) are skipped, symlinked folders are not followed.  A sample's id is its path relative to
``raw_root`` without the suffix, with ``/`` replaced by ``__`` (``trips/2019/a.jpg`` ->
``trips__2019__a``); files mapping to the same id (``a.jpg`` and ``a.png``) are all
quarantined (which one was meant is unknown), the others prepared.
The split is ``val`` when the first 8 bytes of ``sha256(id)``, read as a fraction of 2**64,
fall below ``val_fraction``, else ``train``: it depends on the id alone, so adding or removing
files never moves another file between splits (small folders may get no val sample at all).

Prepared layout: see :mod:`cocosnet.data.store`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..config import DataConfig
from ..io import read_image
from .adapter import Adapter
from .prepare import Candidate

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGE_DIR = "images"
LABEL_DIR = "labels"


def split_for(sample_id: str, val_fraction: float) -> str:
    """``val`` or ``train`` from a hash of the id alone (stable when files come and go)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    digest = hashlib.sha256(sample_id.encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def candidates(raw_root: str | os.PathLike, *, val_fraction: float = 0.1) -> list[Candidate]:
    """Every photo under ``raw_root`` (sorted by relative path), no labels."""
    root = Path(raw_root)
    if not root.is_dir():
        raise ValueError(f"expected a folder of photos at {raw_root}, found no such folder")
    split_for("", val_fraction)  # validate before walking a large tree
    found: dict[str, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            found.setdefault(rel[: -len(Path(name).suffix)].replace("/", "__"), []).append(rel)
    if not found:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found under {raw_root}")
    out = []
    for sample_id, rels in found.items():
        problem = None
        if len(rels) > 1:
            problem = f"{' and '.join(rels)} map to the same sample id {sample_id!r} (rename one)"
        out += [
            Candidate(sample_id, split_for(sample_id, val_fraction), r, None, problem) for r in rels
        ]
    return sorted(out, key=lambda c: c.image)


class FolderAdapter(Adapter):
    """Any folder of photos, no labels (masks come from the masks stage)."""

    name = "folder"

    def options(self, data: DataConfig) -> dict:
        return {"val_fraction": data.folder_val_fraction}

    def find(self, raw_root, *, val_fraction: float = 0.1) -> list[Candidate]:
        return candidates(raw_root, val_fraction=val_fraction)

    def load(self, raw_root: str, max_pixels: int, c: Candidate):
        return read_image(Path(raw_root) / c.image, max_pixels=max_pixels), None


ADAPTER = FolderAdapter()
