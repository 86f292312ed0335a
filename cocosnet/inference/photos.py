"""Inputs made by the preprocessing stages at translation time: a photo segmented by UPerNet
(photo-mask), a photo run through OpenPose (photo-pose), or a keypoints table row (pose)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import weights
from ..formats.pose_decode import NUM_PARTS, SUBSET_COLUMNS
from ..formats.pose_render import render_pose_input
from ..io import (
    read_image,
    write_image,
)
from .domain import Domain, is_keypoints_table


def keypoints_pose(
    path: str | os.PathLike, image_id: str | None, canvas: tuple[int, int] | None
) -> np.ndarray:
    """The rendered pose (H x W x 20 uint8 on ``canvas``) of ``image_id``'s rows in a keypoints
    Parquet (``{id, person, part, x, y, score}``, as :func:`keypoints_table` writes them)."""
    from ..preprocess.pose import KEYPOINTS_SCHEMA
    from ..tables import read_table

    if image_id is None:
        raise ValueError(f"{path}: a keypoints table holds many images; give the image id")
    if canvas is None:
        raise ValueError(
            f"{path}: keypoints tables do not record the image size; give the canvas size "
            "(--pose-size HxW)"
        )
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: keypoints table not found")
    rows = read_table(path, KEYPOINTS_SCHEMA, "keypoints table", ValueError)
    keys = ("person", "part", "x", "y", "score")
    mine = sorted(tuple(r[k] for k in keys) for r in rows if r["id"] == image_id)
    if not mine:
        ids = sorted({r["id"] for r in rows})
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise ValueError(
            f"{path}: no keypoints for image id {image_id!r} (the table has {len(ids)} ids: "
            f"{shown or 'none'}; an image where no person was found has no rows)"
        )
    people = sorted({r[0] for r in mine})
    subset = np.full((len(people), SUBSET_COLUMNS), -1.0)
    subset[:, NUM_PARTS:] = 0.0
    candidate = np.zeros((len(mine), 4))
    for index, (person, part, x, y, score) in enumerate(mine):
        if not 0 <= part < NUM_PARTS:
            raise ValueError(f"{path}: image {image_id!r} has part {part}, not 0..{NUM_PARTS - 1}")
        candidate[index] = x, y, score, index
        row = subset[people.index(person)]
        row[part], row[NUM_PARTS], row[NUM_PARTS + 1] = index, row[NUM_PARTS] + score, row[-1] + 1
    return render_pose_input(candidate, subset, *canvas)


def _one_line(err: Exception) -> str:
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


@dataclass
class PhotoModels:
    """The preprocessing models that make inputs from photos, loaded (and verified) on first use.

    ``masks_model_dir``: a transformers UPerNet folder; the registered ``weights_dir/
    upernet_ade20k`` (the default) is checked against its recorded digest first, as the masks
    stage does. OpenPose's files are the registered ones in ``weights_dir``.
    """

    weights_dir: Path = Path("weights")
    masks_model_dir: Path | None = None
    short_side: int = 512  # params.yaml preprocess.masks.short_side
    device: str = "cpu"

    @functools.cached_property
    def segmenter(self):
        from ..preprocess.segmentation import SegmentationError, Segmenter

        registered = Path(self.weights_dir) / weights.spec("upernet_ade20k").filename
        model_dir = Path(self.masks_model_dir or registered)
        try:
            if model_dir.resolve() == registered.resolve():
                weights.resolve("upernet_ade20k", self.weights_dir)
            return Segmenter(model_dir, short_side=self.short_side, device=self.device)
        except (weights.WeightsError, SegmentationError) as err:
            raise weights.WeightsError(_one_line(err)) from None

    @functools.cached_property
    def openpose(self):
        from ..preprocess.pose import OpenPoseBody

        try:
            return OpenPoseBody.from_weights(self.weights_dir)
        except weights.WeightsError as err:
            raise weights.WeightsError(_one_line(err)) from None

    def shrink(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """The photo with its shorter side at most ``short_side`` (area-averaged), and the scale."""
        scale = min(1.0, self.short_side / min(rgb.shape[:2]))
        if scale == 1.0:
            return rgb, scale
        dsize = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        return cv2.resize(rgb, dsize, interpolation=cv2.INTER_AREA), scale

    def mask(self, rgb: np.ndarray) -> np.ndarray:
        """H x W uint8 ADE20k ids (0..150) of an RGB photo, at its size."""
        small, _ = self.shrink(rgb)
        ids = self.segmenter(small)
        return cv2.resize(ids, rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST)

    def pose(self, rgb: np.ndarray) -> np.ndarray:
        """The rendered pose (H x W x 20 uint8) of the people in an RGB photo, at its size."""
        from ..formats.pose_decode import decode

        small, scale = self.shrink(rgb)
        candidate, subset = decode(*self.openpose(small))
        candidate = np.array(candidate, dtype=np.float64).reshape(-1, 4)
        candidate[:, :2] /= scale  # back to the photo's pixels, where the stage draws them
        return render_pose_input(candidate, subset, *rgb.shape[:2])


def made_input(
    path: Path, domain: str, models: PhotoModels | None, image_id: str | None, canvas
) -> np.ndarray:
    """A mask (photo-mask) or rendered pose (photo-pose, keypoints Parquet) made from a file."""
    if domain == "pose":
        return keypoints_pose(path, image_id, canvas)
    if models is None:
        raise ValueError(f"{path}: domain {domain} needs the preprocessing models (PhotoModels)")
    rgb = read_image(path)
    return models.mask(rgb) if domain == "photo-mask" else models.pose(rgb)


def materialize_input(
    path: str | os.PathLike,
    domain: Domain,
    directory: str | os.PathLike,
    *,
    models: PhotoModels | None = None,
    image_id: str | None = None,
    canvas: tuple[int, int] | None = None,
) -> tuple[Path, str]:
    """Write what a photo / keypoints input makes (a class-id PNG or a pose ``.npz``, at the
    input's size) into ``directory``; returns (file, domain that reads it). Other inputs are
    returned as they are, so file-based batch translation reads made inputs like given ones."""
    path = Path(path)
    if domain not in ("photo-mask", "photo-pose") and not is_keypoints_table(path):
        return path, domain
    kind = "pose" if is_keypoints_table(path) else domain
    made = made_input(path, kind, models, image_id, canvas)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{len(list(directory.iterdir()))}_{path.stem}"
    if kind == "photo-mask":
        out = directory / f"{stem}.png"
        write_image(out, made)
        return out, "label"
    out = directory / f"{stem}.npz"
    np.savez(out, pose=made)
    return out, "pose"
