"""VGG19 pool5 embeddings of images (the features the official exemplar lists were built from).

Embeddings are computed in batches and written in shards (``shard_00000.npy``, ...) beside an
``ids.json`` naming the images in order, so an interrupted run resumes from the last complete
shard; a shard directory made for another list of images is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..files import atomic_path, write_text_atomic
from ..io import read_image
from ..models.vgg import VGG19

Pooling = Literal["gap", "flatten"]
IDS_FILE = "ids.json"


def _shard_path(shard_dir: Path, index: int) -> Path:
    return shard_dir / f"shard_{index:05d}.npy"


@torch.inference_mode()
def embed_batch(
    vgg: VGG19, images: Sequence[np.ndarray], image_size: int, pooling: Pooling
) -> np.ndarray:
    """pool5 features of RGB uint8 images resized to image_size² (area resampling)."""
    resized = [
        cv2.resize(im, (image_size, image_size), interpolation=cv2.INTER_AREA) for im in images
    ]
    x = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 127.5 - 1
    x = x.to(next(vgg.parameters()).device)
    pool5 = vgg(x, ["pool5"])["pool5"]
    features = pool5.mean(dim=(2, 3)) if pooling == "gap" else pool5.flatten(1)
    return features.float().cpu().numpy()


def embed_images(
    paths: Sequence[str | os.PathLike],
    ids: Sequence[str],
    vgg: VGG19,
    shard_dir: str | os.PathLike,
    *,
    pooling: Pooling = "gap",
    image_size: int = 224,
    batch_size: int = 16,
    shard_size: int = 1024,
    max_pixels: int = 89_478_485,
) -> np.ndarray:
    """Embeddings (N x D float32) of the images, resuming from complete shards in shard_dir."""
    if len(paths) != len(ids):
        raise ValueError(f"{len(paths)} paths but {len(ids)} ids")
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    key = {"ids": list(ids), "pooling": pooling, "image_size": image_size, "shard_size": shard_size}
    ids_path = shard_dir / IDS_FILE
    if ids_path.is_file():
        if json.loads(ids_path.read_text(encoding="utf-8")) != key:
            raise ValueError(
                f"{shard_dir} holds embeddings of other images or settings; remove it or choose "
                "another directory"
            )
    else:
        write_text_atomic(ids_path, json.dumps(key))
    shards = []
    starts = range(0, len(paths), shard_size)
    for index, start in enumerate(tqdm(starts, desc="embed shards", leave=False)):
        path = _shard_path(shard_dir, index)
        rows = min(shard_size, len(paths) - start)
        if path.is_file():
            shard = np.load(path)
            if shard.shape[0] == rows:
                shards.append(shard)
                continue
        parts = []
        for b in range(start, start + rows, batch_size):
            batch = [
                read_image(p, max_pixels=max_pixels)
                for p in paths[b : min(b + batch_size, start + rows)]
            ]
            parts.append(embed_batch(vgg, batch, image_size, pooling))
        shard = np.concatenate(parts).astype(np.float32)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, shard)
        shards.append(shard)
    if not shards:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(shards)


def layout_embedding(label: np.ndarray, num_classes: int, grid: int = 4) -> np.ndarray:
    """Where each class lies: per cell of a grid x grid partition, the fraction of its pixels of
    each class (num_classes * grid² values). An embedding that needs no pretrained weights, for
    datasets with label maps (the demo); not the paper's VGG retrieval."""
    if label.ndim != 2 or label.max(initial=0) >= num_classes:
        raise ValueError(f"expected an H x W label map with ids < {num_classes}")
    h, w = label.shape
    rows = np.minimum(np.arange(h) * grid // h, grid - 1)
    cols = np.minimum(np.arange(w) * grid // w, grid - 1)
    cell = rows[:, None] * grid + cols[None, :]
    counts = np.zeros((grid * grid, num_classes), np.float64)
    np.add.at(counts, (cell.ravel(), label.ravel().astype(np.int64)), 1.0)
    counts /= counts.sum(axis=1, keepdims=True)
    return counts.ravel().astype(np.float32)
