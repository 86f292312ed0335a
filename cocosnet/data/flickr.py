"""Adapter for the Flickr scene photos of CoCosNet with their UPerNet ADE20k masks.

Expected layout under ``raw_root``::

    images/<stem>.jpg      # photos (.jpg/.jpeg/.png/.bmp/.webp, suffix case-insensitive)
    mask/<stem>.png        # UPerNet ADE20k label map of the same stem: ids 0..150 (0 = other)

Only files directly in ``images/`` are samples (hidden files skipped); the id is the file stem
and two photos with the same stem are refused. A photo whose ``mask/<stem>.png`` is missing, or
whose mask has another size or an id above 150, is quarantined with the reason; masks without a
photo are ignored. The split is :func:`cocosnet.data.folder.split_for` of the id (``val`` for a
stable ``val_fraction`` of the ids, else ``train``). Masks for photos that have none can be made
with the ``masks@DS`` stage (:mod:`cocosnet.preprocess.segmentation`), which uses the same ids.

Prepared layout: see :mod:`cocosnet.data.store` (``labels/`` holds the masks, 151 classes).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import DataConfig
from ..io import read_image, read_label
from .adapter import Adapter
from .folder import IMAGE_SUFFIXES, split_for
from .prepare import Candidate
from .store import Unusable

SEMANTIC_NC = 151  # ADE20k: 150 classes + 0 "other"
IMAGE_DIR = "images"
MASK_DIR = "mask"


def candidates(raw_root: str | os.PathLike, *, val_fraction: float = 0.1) -> list[Candidate]:
    """Every photo in ``raw_root/images`` (sorted by name) with its expected mask path.

    The label path is ``mask/<stem>.png`` whether or not it exists, so preparing a photo without
    mask quarantines it with a clear reason.
    """
    raw = Path(raw_root)
    images, masks = raw / IMAGE_DIR, raw / MASK_DIR
    if not images.is_dir() or not masks.is_dir():
        raise ValueError(
            f"{raw_root} is not a Flickr folder: expected {IMAGE_DIR}/ (photos) and {MASK_DIR}/ "
            "(UPerNet ADE20k masks, <stem>.png) inside it"
        )
    split_for("", val_fraction)  # validate before listing a large folder
    found: dict[str, str] = {}
    clashes = []
    for path in sorted(images.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if not path.is_file():
            continue
        if path.stem in found:
            clashes.append(f"{found[path.stem]} and {path.name}")
        else:
            found[path.stem] = path.name
    if clashes:
        raise ValueError(
            f"{len(clashes)} photo(s) in {images} share a stem (rename one): " + "; ".join(clashes)
        )
    if not found:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {images}")
    return [
        Candidate(
            stem,
            split_for(stem, val_fraction),
            f"{IMAGE_DIR}/{name}",
            f"{MASK_DIR}/{stem}.png",
        )
        for stem, name in found.items()
    ]


class FlickrAdapter(Adapter):
    """Photos with ADE20k-style masks (``images/`` and ``mask/``)."""

    name = "flickr"
    channels = SEMANTIC_NC

    def options(self, data: DataConfig) -> dict:
        return {"val_fraction": data.folder_val_fraction}

    def find(self, raw_root, *, val_fraction: float = 0.1) -> list[Candidate]:
        return candidates(raw_root, val_fraction=val_fraction)

    def load(self, raw_root: str, max_pixels: int, c: Candidate):
        raw = Path(raw_root)
        rgb = read_image(raw / c.image, max_pixels=max_pixels)
        if not (raw / c.label).is_file():
            raise Unusable(f"no mask: expected {c.label}")
        label = read_label(raw / c.label, max_pixels=max_pixels, num_classes=SEMANTIC_NC)
        return rgb, label


ADAPTER = FlickrAdapter()
