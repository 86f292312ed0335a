"""One training/eval sample as tensors, loaded from a prepared dataset's manifest row.

Conventions (shared by every label-map dataset: demo, ADE20k, CelebA-HQ):

* ``Sample.image``: RGB as float32 3 x H x W in [-1, 1] (``x / 127.5 - 1``);
* ``Sample.label``: class ids as int64 H x W;
* ``Sample.input``: the network's semantic input, float32 C x H x W, here the one-hot encoding
  of ``label`` with ``C = semantic_nc`` channels (ADE20k 151: ids 0..150 with 0 the
  "other/don't care" class kept as channel 0; demo 8; CelebA-HQ 19, see
  :mod:`cocosnet.data.celebahq`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..io import DEFAULT_MAX_PIXELS, read_image, read_label
from .manifest import inside_root


@dataclass(frozen=True)
class Sample:
    id: str
    input: torch.Tensor  # C x H x W float32
    image: torch.Tensor  # 3 x H x W float32 in [-1, 1]
    label: torch.Tensor | None  # H x W int64


def one_hot(label: np.ndarray, num_classes: int) -> torch.Tensor:
    """H x W class ids -> float32 ``num_classes`` x H x W one-hot map (sums to 1 per pixel)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label map must be H x W, got shape {label.shape}")
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"label map must hold integer class ids, got dtype {label.dtype}")
    if label.size:
        low, high = int(label.min()), int(label.max())
        if low < 0:
            raise ValueError(f"negative class id {low} in label map")
        if high >= num_classes:
            raise ValueError(
                f"class id {high} (the label map's max id) out of range for "
                f"{num_classes} classes (ids 0..{num_classes - 1})"
            )
    ids = torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
    return torch.nn.functional.one_hot(ids, num_classes).permute(2, 0, 1).to(torch.float32)


def image_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """RGB uint8 H x W x 3 -> float32 3 x H x W in [-1, 1]."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 H x W x 3 array, got {rgb.dtype} {rgb.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).to(torch.float32)
    return tensor / 127.5 - 1.0


def load_sample(
    dataset_dir: str | os.PathLike,
    row: Mapping,
    semantic_nc: int,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Sample:
    """Read a manifest row of a label-map dataset (paths relative to ``dataset_dir``)."""
    if row.get("label") is None:
        raise ValueError(
            f"sample {row.get('id')!r} has no label map; load_sample is for label-map datasets"
        )
    rgb = read_image(inside_root(dataset_dir, row["image"]), max_pixels=max_pixels)
    label = read_label(
        inside_root(dataset_dir, row["label"]), max_pixels=max_pixels, num_classes=semantic_nc
    )
    if label.shape != rgb.shape[:2]:
        raise ValueError(
            f"sample {row.get('id')!r}: label {label.shape[1]}x{label.shape[0]} does not match "
            f"image {rgb.shape[1]}x{rgb.shape[0]}"
        )
    return Sample(
        id=str(row["id"]),
        input=one_hot(label, semantic_nc),
        image=image_to_tensor(rgb),
        label=torch.from_numpy(label.astype(np.int64)),
    )
