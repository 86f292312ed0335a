"""Adapter for CelebA-HQ with CelebAMask-HQ part masks (the CoCosNet ``celebahq`` mode).

Expected layout (``raw_root`` is the ``CelebAMask-HQ`` folder or the folder holding it)::

    CelebAMask-HQ/CelebA-HQ-img/<N>.jpg                                   # 1024 x 1024
    CelebAMask-HQ/CelebAMask-HQ-mask-anno/<N // 2000>/<N:05d>_<part>.png  # 512 x 512, 255 = part
    CelebAMask-HQ/train.txt, CelebAMask-HQ/val.txt                        # one N per line

A part whose mask file is absent is simply absent from the face.  Class ids follow the official
CoCosNet ``celebahq`` mode (the part order of its ``all_parts_except_glasses`` maps): background
0, then :data:`PARTS` as ids 1..18, so :data:`SEMANTIC_NC` = 19 and glasses (``eye_g``) are id
:data:`GLASSES` = 16.  As the official code, the stored label map holds every part *except*
glasses (merged in :data:`PARTS` order, later parts drawn over earlier ones; the authors' own
merge order is not published), and the glasses mask is kept apart and written onto channel 16
of the one-hot input, over the parts (:func:`celebahq_input_channels`).

:class:`CelebAHQAdapter` writes ``out_root/images/<N>.png``, ``out_root/labels/<N>.png`` (the
merged map, mode L) and ``out_root/glasses/<N>.png`` (0/255) resized to ``size`` (see
:mod:`cocosnet.data.store`), then indexes them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import torch

from ..formats.tensors import one_hot
from ..io import DEFAULT_MAX_PIXELS, read_image, read_label, write_image
from ..parallel import parallel_map
from .adapter import Adapter, Planes
from .prepare import Candidate, PrepareReport
from .store import Unusable

# The official order (CoCosNet data/celebahq_dataset.py): eye_g is id 16 = one-hot channel 16.
PARTS = (
    "skin",
    "hair",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "l_ear",
    "r_ear",
    "nose",
    "u_lip",
    "mouth",
    "l_lip",
    "neck",
    "cloth",
    "hat",
    "eye_g",
    "ear_r",
    "neck_l",
)
PART_IDS = {name: i for i, name in enumerate(PARTS, start=1)}
GLASSES = PART_IDS["eye_g"]
SEMANTIC_NC = len(PARTS) + 1
LAYOUT_DIR = "CelebAMask-HQ"
IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
GLASSES_DIR = "glasses"
SPLIT_FILES = {"train": "train.txt", "val": "val.txt"}


def _mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask >= 128


def celebahq_label(
    parts: Mapping[str, np.ndarray | None], shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Merge part masks (bool, or uint8 with 255 = part; >= 128 counts) into an H x W uint8
    label map: background 0, each part but glasses its id in :data:`PARTS` order, later on top.
    Absent parts (missing or None) are skipped; ``shape`` is needed only if all are absent."""
    unknown = sorted(set(parts) - set(PART_IDS))
    if unknown:
        raise ValueError(f"unknown CelebAMask-HQ part(s) {unknown}; known: {list(PARTS)}")
    present = {k: _mask(v) for k, v in parts.items() if v is not None}
    shapes = {m.shape for m in present.values()}
    if shape is not None:
        shapes.add(tuple(shape))
    if len(shapes) > 1:
        raise ValueError(f"part masks differ in shape: {sorted(shapes)}")
    if not shapes:
        raise ValueError("no part mask given and no shape to build an empty label map")
    (size,) = shapes
    if len(size) != 2:
        raise ValueError(f"part masks must be H x W, got shape {size}")
    label = np.zeros(size, np.uint8)
    for name in PARTS:
        if name in present and name != "eye_g":  # glasses are kept apart, as the official
            label[present[name]] = PART_IDS[name]
    return label


def celebahq_input_channels(label: np.ndarray, glasses: np.ndarray | None = None) -> torch.Tensor:
    """float32 19 x H x W official CelebA-HQ input: the one-hot of the label map (which has no
    glasses) with the glasses mask, if any, written onto channel :data:`GLASSES` over the parts."""
    channels = one_hot(label, SEMANTIC_NC)
    if glasses is not None:
        mask = torch.from_numpy(np.ascontiguousarray(_mask(glasses)))
        if mask.shape != channels.shape[1:]:
            raise ValueError(f"glasses mask {tuple(mask.shape)} != label {tuple(label.shape)}")
        channels[GLASSES] = torch.maximum(channels[GLASSES], mask.to(torch.float32))
    return channels


def _layout_root(raw_root: str | os.PathLike) -> Path:
    raw = Path(raw_root)
    needed = [IMAGE_DIR + "/", MASK_DIR + "/", *SPLIT_FILES.values()]

    def complete(root: Path) -> bool:
        return (
            (root / IMAGE_DIR).is_dir()
            and (root / MASK_DIR).is_dir()
            and all((root / f).is_file() for f in SPLIT_FILES.values())
        )

    for root in (raw, raw / LAYOUT_DIR):
        if complete(root):
            return root
    base = raw / LAYOUT_DIR if (raw / LAYOUT_DIR).is_dir() else raw
    missing = [n for n in needed if not (base / n.rstrip("/")).exists()]
    raise ValueError(
        f"{raw_root} is not a CelebAMask-HQ folder: expected {', '.join(needed)} in "
        f"{LAYOUT_DIR}/ (raw_root may be {LAYOUT_DIR} itself or the folder holding it); "
        f"missing in {base}: {', '.join(missing)}"
    )


def _read_ids(path: Path) -> list[int]:
    ids = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        stem = text[:-4] if text.lower().endswith(".jpg") else text
        if not (stem.isascii() and stem.isdigit()):
            raise ValueError(f"{path}:{lineno}: expected an image number, got {text!r}")
        ids.append(int(stem))
    return ids


def mask_paths(raw_root: str | os.PathLike, n: int) -> dict[str, Path]:
    """Where the part masks of image ``n`` would be (whether or not they exist)."""
    base = _layout_root(raw_root) / MASK_DIR / str(n // 2000)
    return {part: base / f"{n:05d}_{part}.png" for part in PARTS}


def candidates(raw_root: str | os.PathLike) -> list[Candidate]:
    """train.txt then val.txt ids, each sorted numerically; image paths relative to raw_root.

    ``label`` is None: the label is built from the part masks (:func:`mask_paths`)."""
    raw = Path(raw_root)
    root = _layout_root(raw)
    found, first = [], {}
    for split, name in SPLIT_FILES.items():
        for n in sorted(_read_ids(root / name)):
            if n in first:
                raise ValueError(f"image {n} is listed twice (in {first[n]} and {name})")
            first[n] = name
            image = (root / IMAGE_DIR / f"{n}.jpg").relative_to(raw).as_posix()
            found.append(Candidate(str(n), split, image))
    if not found:
        raise ValueError(f"{root}/train.txt and val.txt list no images")
    return found


def read_parts(
    raw_root: str | os.PathLike, n: int, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, np.ndarray]:
    """(label map without glasses, glasses mask as bool) of image ``n`` at mask resolution;
    Unusable if no mask exists."""
    parts = {}
    for part, path in mask_paths(raw_root, n).items():
        if path.is_file():
            parts[part] = read_image(path, max_pixels=max_pixels, min_side=1).mean(axis=2) >= 128
    if not parts:
        raise Unusable(f"no part masks found ({MASK_DIR}/{n // 2000}/{n:05d}_<part>.png)")
    try:
        label = celebahq_label(parts)
    except ValueError as err:
        raise Unusable(str(err)) from None
    return label, parts.get("eye_g", np.zeros(label.shape, bool))


def _store_glasses(job: tuple[str, str, str, int, int, int]) -> None:
    """Worker: the glasses mask of one stored sample, nearest-resized to its stored size."""
    raw_root, out_root, sample, height, width, max_pixels = job
    _, glasses = read_parts(raw_root, int(sample), max_pixels=max_pixels)
    mask = cv2.resize(
        glasses.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_NEAREST
    )
    write_image(Path(out_root) / GLASSES_DIR / f"{sample}.png", mask)


def glasses_path(dataset_dir: str | os.PathLike, sample: str) -> Path:
    return Path(dataset_dir) / GLASSES_DIR / f"{sample}.png"


class CelebAHQAdapter(Adapter):
    """CelebA-HQ faces with CelebAMask-HQ parts; glasses stored apart (official)."""

    name = "celebahq"
    channels = SEMANTIC_NC
    edge_encoding = "celebahq15"  # the official 15-channel edge input
    edge_channels = 15  # preprocess.edges.CELEBAHQ_EDGE_CHANNELS (a layer above; a test pins it)

    def find(self, raw_root) -> list[Candidate]:
        return candidates(raw_root)

    def load(self, raw_root: str, max_pixels: int, c: Candidate):
        rgb = read_image(Path(raw_root) / c.image, max_pixels=max_pixels)
        label, _ = read_parts(raw_root, int(c.id), max_pixels=max_pixels)
        (ih, iw), (lh, lw) = rgb.shape[:2], label.shape
        if ih * lw != iw * lh:
            raise Unusable(f"part masks {lw}x{lh} and image {iw}x{ih} differ in aspect ratio")
        # Nearest to the image's size first (an exact 2x for 512 -> 1024), so the shared
        # resize step treats image and label alike.
        label = cv2.resize(label, (iw, ih), interpolation=cv2.INTER_NEAREST)
        return rgb, label

    def prepare(self, raw_root, out_root, *, max_pixels=DEFAULT_MAX_PIXELS, **kw) -> PrepareReport:
        """Resized images and merged labels (the shared step), then the glasses masks."""
        report = super().prepare(raw_root, out_root, max_pixels=max_pixels, **kw)
        jobs = [
            (str(raw_root), str(out_root), r["id"], r["height"], r["width"], max_pixels)
            for r in report.rows
        ]
        workers, dask_address = kw.get("workers", 1), kw.get("dask_address")
        parallel_map(
            _store_glasses, jobs, workers=workers, dask_address=dask_address, desc="glasses"
        )
        return report

    def stored_planes(self, dataset_dir, sample: str) -> Planes:
        glasses = read_label(glasses_path(dataset_dir, sample))
        return np.where(glasses >= 128, 255, 0).astype(np.uint8)[..., None], ()

    def label_input(self, label, planes, semantic_nc: int) -> torch.Tensor:
        return celebahq_input_channels(label, None if planes is None else planes[..., 0])


ADAPTER = CelebAHQAdapter()
