"""Images and label maps as network tensors, and back.

* images: RGB uint8 H x W x 3 <-> float32 3 x H x W in [-1, 1] (``x / 127.5 - 1``);
* label maps: H x W class ids -> the one-hot semantic input, ``num_classes`` x H x W (ADE20k 151
  with id 0 the "other" class kept as channel 0; demo 8; CelebA-HQ 19).
"""

from __future__ import annotations

import numpy as np
import torch


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


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """B x 3 x H x W in [-1, 1] -> B x H x W x 3 uint8 (round half up, as torchvision's save)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5 + 0.5).floor()
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()
