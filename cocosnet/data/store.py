"""Resize-and-store shared by the raw-dataset adapters (ADE20k, CelebA-HQ, folder).

Prepared layout (all adapters): ``out_root/images/<id>.png`` resized so that the shorter side
is ``size`` (aspect ratio kept, rounded to the nearest pixel; smaller images are enlarged too;
``cv2.INTER_AREA`` when shrinking, bilinear when enlarging) and, for label-map datasets,
``out_root/labels/<id>.png`` (mode L, nearest-neighbour to the image's new size), indexed by
:func:`~cocosnet.data.prepare.index_candidates` with paths relative to ``out_root``.  Outputs are
PNG (lossless, no second JPEG generation) and written atomically.  A raw file that cannot be
used goes to the report's quarantine list as (path relative to ``raw_root``, reason).  Raw
files are read where the adapter found them (they may be symlinks, e.g. into a DVC cache); only
the prepared files are indexed, so the manifest never points outside ``out_root``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from ..io import ImageProblem, write_image
from ..parallel import parallel_map
from .prepare import Candidate, PrepareReport, index_candidates

IMAGE_DIR = "images"
LABEL_DIR = "labels"


class Unusable(ValueError):
    """A raw sample that cannot be stored; ``str(err)`` is the one-line quarantine reason."""


def scaled_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) with the shorter side equal to ``size`` and the aspect ratio kept."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if height < 1 or width < 1:
        raise ValueError(f"empty image {width}x{height}")
    if height <= width:
        return size, max(1, int(width * size / height + 0.5))
    return max(1, int(height * size / width + 0.5)), size


def resize_image(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 image to (height, width): area when shrinking, bilinear otherwise."""
    height, width = shape
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = height * width < rgb.shape[0] * rgb.shape[1]
    method = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=method)


def resize_label(label: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a label map to (height, width) with nearest neighbour: no new class ids appear."""
    height, width = shape
    if label.shape[:2] == (height, width):
        return label
    return cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)


def check_out_root(raw_root: str | os.PathLike, out_root: str | os.PathLike) -> None:
    """Refuse an output folder that is the raw dataset or lies inside it."""
    raw, out = Path(raw_root).resolve(), Path(out_root).resolve()
    if out.is_relative_to(raw):
        raise ValueError(
            f"output folder {out_root} must not be the raw dataset folder {raw_root} or lie "
            "inside it (prepared files would mix with, or be indexed as, raw data)"
        )


def _store(out_root: Path, c: Candidate, rgb: np.ndarray, label: np.ndarray | None, size: int):
    if label is not None and label.dtype != np.uint8:
        raise Unusable(f"class id {int(label.max())} does not fit an 8-bit label PNG")
    shape = scaled_size(rgb.shape[0], rgb.shape[1], size)
    image_rel = f"{IMAGE_DIR}/{c.id}.png"
    write_image(out_root / image_rel, resize_image(rgb, shape))
    label_rel = None
    if label is not None:
        label_rel = f"{LABEL_DIR}/{c.id}.png"
        write_image(out_root / label_rel, resize_label(label, shape))
    return Candidate(c.id, c.split, image_rel, label_rel)


def resize_and_index(
    raw_root: str | os.PathLike,
    out_root: str | os.PathLike,
    candidates: Iterable[Candidate],
    load: Callable[[Candidate], tuple[np.ndarray, np.ndarray | None]],
    *,
    size: int,
    max_pixels: int,
    num_classes: int | None = None,
    desc: str = "resize",
    workers: int = 1,
    dask_address: str | None = None,
) -> PrepareReport:
    """Load each raw candidate (``load`` -> RGB, label or None), store it resized under
    ``out_root`` and index the stored files; bad raw samples are quarantined, never fatal.

    The per-sample work is fanned out by :func:`cocosnet.parallel.parallel_map` (``load`` must
    then be picklable: a module-level function or a ``functools.partial`` of one); the report
    lists rows and quarantined files in candidate order, however many workers."""
    check_out_root(raw_root, out_root)
    out_root = Path(out_root)
    refused = [(c.image, c.problem) for c in candidates if c.problem is not None]
    candidates = [c for c in candidates if c.problem is None]
    seen: set[str] = set()
    for c in candidates:
        if c.id in seen:
            raise ValueError(f"duplicate sample id {c.id!r}")
        seen.add(c.id)
    jobs = [(str(raw_root), str(out_root), c, load, size) for c in candidates]
    stored, quarantined = [], []
    for ok, result in parallel_map(
        store_candidate, jobs, workers=workers, dask_address=dask_address, desc=desc
    ):
        (stored if ok else quarantined).append(result)
    report = index_candidates(
        out_root,
        stored,
        max_pixels=max_pixels,
        num_classes=num_classes,
        workers=workers,
        dask_address=dask_address,
    )
    report.quarantined[:0] = refused + quarantined
    return report


StoreJob = tuple[
    str, str, Candidate, Callable[[Candidate], tuple[np.ndarray, np.ndarray | None]], int
]


def store_candidate(job: StoreJob) -> tuple[bool, object]:
    """(True, stored Candidate) for a usable raw sample, else (False, (path, one-line reason)).

    ``job`` is (raw_root, out_root, candidate, load, size); runs in a worker process."""
    raw_root, out_root, c, load, size = job
    try:
        rgb, label = load(c)
        if label is not None and label.shape != rgb.shape[:2]:
            raise Unusable(
                f"label {label.shape[1]}x{label.shape[0]} does not match image "
                f"{rgb.shape[1]}x{rgb.shape[0]}"
            )
        return True, _store(Path(out_root), c, rgb, label, size)
    except ImageProblem as err:
        where = Path(err.path)
        if where == Path(raw_root) / c.image:
            return False, (c.image, err.reason)
        # a label or part-mask file
        shown = where.relative_to(raw_root).as_posix() if where.is_relative_to(raw_root) else where
        return False, (c.image, f"{shown}: {err.reason}")
    except Unusable as err:
        return False, (c.image, str(err))
