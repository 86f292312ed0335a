"""Loading a prepared sample, the one implementation every layer above uses.

A :class:`SampleLoader` reads a manifest row into a :class:`Sample` at its stored size (photo,
label ids, and the input planes stored for it: edges, pose, CelebA-HQ glasses); a :class:`View`
says where that sample goes (the official ``get_params``: resize, square crop, flip), and
:meth:`SampleLoader.view` turns a sample and a view into the network's tensors: the input
(C x S x S), the photo (3 x S x S in [-1, 1]) and the label ids (S x S, ``NO_LABEL`` where the
input is not the label map). Photo and label are resized as the official ``get_transform``:
bicubic and nearest; distance-map planes bilinear, the discrete ones nearest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from ..formats.tensors import image_to_tensor
from ..io import DEFAULT_MAX_PIXELS, read_image, read_label
from .adapter import Adapter, Condition, Planes
from .manifest import inside_root

Preprocess = Literal["resize_and_crop", "scale_shortside_and_crop"]
NO_LABEL = -1  # label ids of samples whose input is not the label map (edges, pose)
# The 15-channel CelebA-HQ edge encoding: channels 1..13 are distance maps (official).
EDGE_DISTANCE_CHANNELS = tuple(range(1, 14))
Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # input, image, label of one view


@dataclass(frozen=True)
class Sample:
    """One prepared sample at its stored size, before resizing, cropping and flipping."""

    id: str
    rgb: np.ndarray  # H x W x 3 uint8
    label: np.ndarray | None  # H x W class ids, where the input is the label map
    planes: np.ndarray | None  # H x W x C uint8 input planes (edges, pose; CelebA-HQ glasses)
    smooth: tuple[int, ...] = ()  # planes resized bilinearly (distance maps); others nearest


@dataclass(frozen=True)
class View:
    """Where a stored sample goes (official ``get_params``): resized to ``resize`` (H, W), the
    ``size``-square crop at (``top``, ``left``), mirrored when ``flip``."""

    resize: tuple[int, int]
    top: int
    left: int
    size: int
    flip: bool


def _resized_shape(h: int, w: int, side: int, mode: Preprocess) -> tuple[int, int]:
    if mode == "resize_and_crop":
        return side, side
    short, long = min(h, w), max(h, w)
    other = max(side, int(side * long / short))  # official __scale_shortside
    return (side, other) if h == short else (other, side)


def train_view(
    shape: tuple[int, int],
    size: int,
    load_size: int,
    mode: Preprocess,
    flip: bool,
    rng: np.random.Generator,
) -> View:
    """A random training view (always three draws: the stream stays aligned)."""
    h, w = _resized_shape(*shape, max(load_size, size), mode)
    left, top, flip_u = rng.integers(0, w - size + 1), rng.integers(0, h - size + 1), rng.random()
    return View((h, w), int(top), int(left), size, flip and flip_u > 0.5)


def eval_view(shape: tuple[int, int], size: int, mode: Preprocess) -> View:
    """The deterministic view of evaluation: squashed to ``size`` (resize_and_crop), or the
    shorter side scaled to ``size`` and the centre crop; never flipped."""
    h, w = _resized_shape(*shape, size, mode)
    return View((h, w), (h - size) // 2, (w - size) // 2, size, False)


def _place(a: np.ndarray, v: View, resample: Image.Resampling) -> np.ndarray:
    """``a`` resized, cropped and flipped as ``v`` says."""
    if a.shape[:2] != v.resize:
        a = np.asarray(Image.fromarray(a).resize(v.resize[::-1], resample))
    a = a[v.top : v.top + v.size, v.left : v.left + v.size]
    return np.ascontiguousarray(a[:, ::-1] if v.flip else a)


class SampleLoader:
    """Loads the prepared samples of one dataset with the input of the chosen domain."""

    def __init__(
        self,
        adapter: Adapter,
        dataset_dir: str | os.PathLike,
        condition: Condition,
        semantic_nc: int,
        *,
        edges_dir: str | os.PathLike | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.adapter, self.dir, self.condition = adapter, Path(dataset_dir), condition
        self.semantic_nc, self.max_pixels = semantic_nc, max_pixels
        self.edges_dir = Path(edges_dir) if edges_dir is not None else None
        if condition == "edges" and self.edges_dir is None:
            raise ValueError("condition 'edges' needs the edges stage's output directory")

    def __call__(self, row: Mapping) -> Sample:
        rgb = read_image(inside_root(self.dir, row["image"]), max_pixels=self.max_pixels)
        label = None
        if row.get("label") is not None:
            label = read_label(inside_root(self.dir, row["label"]), max_pixels=self.max_pixels)
        if self.condition == "label":
            if label is None:
                raise ValueError(f"sample {row['id']!r} has no label map for condition 'label'")
            planes = self.adapter.stored_planes(self.dir, row["id"])
        elif self.condition == "edges":
            planes = self._edges(row["id"])
        else:
            planes = None
            if self.adapter.condition == self.condition:
                planes = self.adapter.stored_planes(self.dir, row["id"])
            if planes is None:
                raise ValueError(f"{self.adapter.name} stores no {self.condition} input")
        planes_array, smooth = planes if planes is not None else (None, ())
        for name, a in (("label", label), ("input", planes_array)):
            if a is not None and a.shape[:2] != rgb.shape[:2]:
                raise ValueError(f"sample {row['id']!r}: {name} and image sizes differ")
        if self.condition != "label":
            label = None  # ids are scored only where the input is the label map itself
        return Sample(str(row["id"]), rgb, label, planes_array, smooth)

    def _edges(self, sample: str) -> Planes:
        npz = self.edges_dir / f"{sample}.npz"
        if npz.is_file():  # the 15-channel CelebA-HQ encoding
            with np.load(npz) as f:
                return f["edges"], EDGE_DISTANCE_CHANNELS
        edges = read_label(self.edges_dir / f"{sample}.png", max_pixels=self.max_pixels)
        return edges.astype(np.uint8)[..., None], ()

    def view(self, sample: Sample, v: View) -> Tensors:
        """(input C x S x S, image 3 x S x S in [-1, 1], label ids S x S) of one view."""
        rgb = _place(sample.rgb, v, Image.Resampling.BICUBIC)
        label = None
        if sample.label is not None:
            label = _place(sample.label.astype(np.int32), v, Image.Resampling.NEAREST)
        planes = None
        if sample.planes is not None:
            planes = np.stack(
                [
                    _place(sample.planes[..., c], v, _plane_resample(c, sample.smooth))
                    for c in range(sample.planes.shape[-1])
                ],
                axis=-1,
            )
        if self.condition == "label":
            cond = self.adapter.label_input(label, planes, self.semantic_nc)
        else:
            cond = torch.from_numpy(planes.transpose(2, 0, 1).astype(np.float32) / 255.0)
        if cond.shape[0] != self.semantic_nc:
            raise ValueError(
                f"{self.adapter.name} {self.condition} inputs have {cond.shape[0]} channels but "
                f"model.semantic_nc is {self.semantic_nc}"
            )
        ids = torch.full((v.size, v.size), NO_LABEL, dtype=torch.int64)
        if label is not None:
            ids = torch.from_numpy(label.astype(np.int64))
        return cond, image_to_tensor(rgb), ids

    def test_view(self, row: Mapping, size: int, mode: Preprocess) -> Tensors:
        """The tensors of a manifest row in its deterministic evaluation view."""
        sample = self(row)
        return self.view(sample, eval_view(sample.rgb.shape[:2], size, mode))


def _plane_resample(channel: int, smooth: tuple[int, ...]) -> Image.Resampling:
    return Image.Resampling.BILINEAR if channel in smooth else Image.Resampling.NEAREST
