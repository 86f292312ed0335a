"""Adapter for ADE20k (SceneParsing, ``ADEChallengeData2016``) and its outdoor subset.

Expected layout (the official CoCosNet README: annotations moved beside the photos)::

    ADEChallengeData2016/images/training/ADE_train_00000001.jpg
    ADEChallengeData2016/images/training/ADE_train_00000001.png   # class ids 0..150
    ADEChallengeData2016/images/validation/ADE_val_00000001.jpg
    ADEChallengeData2016/images/validation/ADE_val_00000001.png

``raw_root`` is the ``ADEChallengeData2016`` folder or the folder holding it.  Every ``.jpg``
directly in ``images/training`` (split ``train``) and ``images/validation`` (split ``val``) is
a sample with id = file stem; its label is the ``.png`` of the same stem beside it or, for an
unmodified download, ``annotations/<training|validation>/<stem>.png``.  Class 0 is
"other/don't care" and is kept as channel 0, so the semantic input has
:data:`SEMANTIC_NC` = 151 channels (label_nc 150 + 1), as the official code.

ADE20k-outdoor is ADE20k filtered to outdoor scenes.  There is no official list file, so the
filter is the user's: ``id_filter`` takes a callable ``id -> bool``, a collection of ids, or
the path of a text file with one id per line (``ADE_train_00000001``; a file name or path such
as ``images/training/ADE_train_00000001.jpg`` is reduced to its stem; blank lines and lines
starting with ``#`` are ignored).  A filter that keeps nothing is an error.

:class:`ADE20kAdapter` stores images and labels resized into ``out_root`` (see
:mod:`cocosnet.data.folder`); note that the official training resizes to 286 x 286 and crops
256, so use ``size >= 286`` if that augmentation is to be reproduced from the stored files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path, PurePosixPath

from ..config import DataConfig
from ..io import read_image, read_label
from .adapter import Adapter
from .prepare import Candidate

SEMANTIC_NC = 151
LAYOUT_DIR = "ADEChallengeData2016"
SPLITS = {"training": "train", "validation": "val"}

IdFilter = Callable[[str], bool] | Collection[str] | str | os.PathLike


def _layout_root(raw_root: str | os.PathLike) -> Path:
    """The ADEChallengeData2016 folder: ``raw_root`` itself or ``raw_root/ADEChallengeData2016``."""
    raw = Path(raw_root)
    for root in (raw, raw / LAYOUT_DIR):
        if all((root / "images" / sub).is_dir() for sub in SPLITS):
            return root
    expected = ", ".join(f"{LAYOUT_DIR}/images/{sub}/" for sub in SPLITS)
    raise ValueError(
        f"{raw_root} is not an ADE20k folder: expected {expected} (raw_root may be "
        f"{LAYOUT_DIR} itself or the folder holding it)"
    )


def _id_of(entry: str) -> str:
    name = PurePosixPath(entry.strip().replace("\\", "/")).name
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and suffix.lower() in ("jpg", "jpeg", "png") else name


def read_id_list(path: str | os.PathLike) -> frozenset[str]:
    """Ids from a text file, one per line (``#`` comments and blank lines ignored)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"id list {path} not found (expected a text file, one id per line)")
    lines = p.read_text(encoding="utf-8").splitlines()
    return frozenset(_id_of(s) for s in lines if s.strip() and not s.lstrip().startswith("#"))


def make_id_filter(spec: IdFilter | None) -> Callable[[str], bool] | None:
    """Turn a callable, a collection of ids or an id-list file path into a predicate."""
    if spec is None or callable(spec):
        return spec
    if isinstance(spec, str | os.PathLike):
        ids = read_id_list(spec)
    else:
        ids = frozenset(_id_of(str(s)) for s in spec)
    return ids.__contains__


def candidates(
    raw_root: str | os.PathLike, *, id_filter: IdFilter | None = None
) -> list[Candidate]:
    """Image/label pairs of the official layout, train then val, each sorted by file name.

    Candidate paths are relative to ``raw_root``; a JPG without annotation gets the (missing)
    beside-path as label, so preparing it quarantines it with a clear reason.
    """
    raw = Path(raw_root)
    root = _layout_root(raw)
    keep = make_id_filter(id_filter)
    found, with_label, total = [], 0, 0
    for sub, split in SPLITS.items():
        folder = root / "images" / sub
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            if path.suffix.lower() != ".jpg" or path.name.startswith(".") or not path.is_file():
                continue
            total += 1
            if keep is not None and not keep(path.stem):
                continue
            label = path.with_suffix(".png")
            if not label.is_file():
                official = root / "annotations" / sub / label.name
                label = official if official.is_file() else label
            with_label += label.is_file()
            found.append(
                Candidate(
                    path.stem,
                    split,
                    path.relative_to(raw).as_posix(),
                    label.relative_to(raw).as_posix(),
                )
            )
    if total == 0:
        raise ValueError(f"no .jpg images in {root}/images/training or images/validation")
    if not found:
        raise ValueError(f"the id filter kept none of the {total} ADE20k images in {root}")
    if with_label == 0:
        raise ValueError(
            f"no annotation .png found for any image in {root}: move annotations/training/*.png "
            "into images/training/ and annotations/validation/*.png into images/validation/ "
            "(official CoCosNet README)"
        )
    return found


class ADE20kAdapter(Adapter):
    """ADEChallengeData2016: 150 classes and 0 "other" (official ``ade20k`` mode)."""

    name = "ade20k"
    channels = SEMANTIC_NC

    def options(self, data: DataConfig) -> dict:
        return {"id_filter": data.ade20k_id_filter}

    def find(self, raw_root, *, id_filter: IdFilter | None = None) -> list[Candidate]:
        return candidates(raw_root, id_filter=id_filter)

    def load(self, raw_root: str, max_pixels: int, c: Candidate):
        raw = Path(raw_root)
        rgb = read_image(raw / c.image, max_pixels=max_pixels)
        label = read_label(raw / c.label, max_pixels=max_pixels, num_classes=SEMANTIC_NC)
        return rgb, label


ADAPTER = ADE20kAdapter()
