"""Edge extraction: Canny edge maps (stage ``edges@DS``) and the 15-channel CelebA-HQ edge input.

:func:`canny` runs on the grayscale image; an RGB input is first converted with Pillow's ``L``
conversion (ITU-R 601 luma, rounded to uint8), as the official CelebA-HQ code does. Thresholds
are gradient magnitudes in uint8 gray levels for both backends (3x3 Sobel); ``None`` means the
backend's default: scikit-image 10% / 20% of the dtype range (25.5 / 51), OpenCV 100 / 200.

:func:`celebahq_edge_encoding` builds the official CelebA-HQ edge input from a grayscale photo
and its facial-part masks (see its docstring for the channel layout).

:func:`edge_maps_for_dataset` writes one ``<id>.png`` edge map (0/255, single channel) per
manifest row of a prepared dataset into an output directory of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from ..config import EdgesConfig
from ..data.celebahq import GLASSES_DIR, PART_IDS
from ..data.manifest import inside_root, read_manifest
from ..data.prepare import MANIFEST
from ..files import atomic_path
from ..io import DEFAULT_MAX_PIXELS, read_image, read_label, write_image
from ..parallel import parallel_map

OPENCV_DEFAULT_THRESHOLDS = (100.0, 200.0)
SKIMAGE_DEFAULT_THRESHOLDS = (25.5, 51.0)  # skimage: 0.1 and 0.2 of the uint8 range

# The facial parts of the official CelebA-HQ edge input, in channel order (channels 1..13).
INNER_PARTS = (
    "skin",
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
    "eye_g",
    "hair",
)
CELEBAHQ_EDGE_CHANNELS = 2 + len(INNER_PARTS)  # 15


def to_gray(gray_or_rgb: np.ndarray) -> np.ndarray:
    """A uint8 H x W grayscale image: as is, or Pillow's ``L`` conversion of an RGB image."""
    arr = np.asarray(gray_or_rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return np.ascontiguousarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.asarray(Image.fromarray(np.ascontiguousarray(arr), "RGB").convert("L"))
    raise ValueError(f"expected an H x W or H x W x 3 image, got shape {arr.shape}")


def _thresholds(cfg: EdgesConfig, defaults: tuple[float, float]) -> tuple[float, float]:
    low = defaults[0] if cfg.low_threshold is None else float(cfg.low_threshold)
    high = defaults[1] if cfg.high_threshold is None else float(cfg.high_threshold)
    if low > high:
        raise ValueError(
            f"edges ({cfg.backend}): low threshold {low} exceeds high threshold {high} "
            "(one of them is the backend's default)"
        )
    return low, high


def canny(gray_or_rgb: np.ndarray, cfg: EdgesConfig) -> np.ndarray:
    """Canny edge map of a uint8 grayscale or RGB image: uint8 H x W, 1 on edges, 0 elsewhere."""
    gray = to_gray(gray_or_rgb)
    if cfg.backend == "skimage":
        from skimage import feature  # imported lazily: it is slow to import

        low, high = _thresholds(cfg, SKIMAGE_DEFAULT_THRESHOLDS)
        # skimage scales thresholds given for a uint8 image by 1/255, like the image itself.
        edges = feature.canny(gray, sigma=cfg.sigma, low_threshold=low, high_threshold=high)
        return edges.astype(np.uint8)
    if cfg.backend == "opencv":
        low, high = _thresholds(cfg, OPENCV_DEFAULT_THRESHOLDS)
        if cfg.sigma > 0:
            gray = cv2.GaussianBlur(gray, (0, 0), sigmaX=cfg.sigma, sigmaY=cfg.sigma)
        return (cv2.Canny(gray, low, high) > 0).astype(np.uint8)
    raise ValueError(f"unknown edges backend {cfg.backend!r}")


def boundary(label: np.ndarray) -> np.ndarray:
    """uint8 0/1 map of pixels whose 4-neighbour has a different label value (both sides)."""
    out = np.zeros(label.shape, dtype=bool)
    across = label[:, 1:] != label[:, :-1]
    out[:, 1:] |= across
    out[:, :-1] |= across
    down = label[1:, :] != label[:-1, :]
    out[1:, :] |= down
    out[:-1, :] |= down
    return out.astype(np.uint8)


def distance_map(edge: np.ndarray) -> np.ndarray:
    """L1 (3x3 mask) distance to the nearest edge pixel, divided by 3, clipped to uint8.

    With no edge pixel at all every value is 255.
    """
    src = np.where(edge > 0, 0, 255).astype(np.uint8)
    dist = cv2.distanceTransform(src, cv2.DIST_L1, 3)
    return np.clip(dist / 3, 0, 255).astype(np.uint8)


def celebahq_edge_encoding(
    gray: np.ndarray, parts: Mapping[str, np.ndarray | None], cfg: EdgesConfig
) -> np.ndarray:
    """The official 15-channel CelebA-HQ edge input, H x W x 15 uint8.

    ``gray``: the photo (uint8 gray or RGB); ``parts``: part name (one of :data:`INNER_PARTS`)
    -> H x W mask with 255 on the part, or ``None``/absent when the part has no mask.

    * channel 0: part boundaries plus the Canny edges of the photo outside the non-hair parts
      (inside hair and background they are kept), 0/255;
    * channels 1..13: per part (in :data:`INNER_PARTS` order) the L1 distance to the part's
      boundary / 3, clipped to [0, 255] (a missing part gives all 255);
    * channel 14: the union of the part boundaries, 0/255.
    """
    gray = to_gray(gray)
    unknown = sorted(set(parts) - set(INNER_PARTS))
    if unknown:
        raise ValueError(f"unknown facial part(s) {unknown}; known: {list(INNER_PARTS)}")
    shape = gray.shape
    keep_canny = np.ones(shape, dtype=bool)
    edges = np.zeros(shape, dtype=np.uint8)
    out = np.empty((*shape, CELEBAHQ_EDGE_CHANNELS), dtype=np.uint8)
    for channel, name in enumerate(INNER_PARTS, start=1):
        mask = parts.get(name)
        if mask is None:
            part_edge = np.zeros(shape, dtype=np.uint8)
        else:
            mask = np.asarray(mask)
            if mask.shape != shape:
                raise ValueError(f"part {name!r}: mask shape {mask.shape} != image shape {shape}")
            keep_canny[mask == 255] = name == "hair"
            part_edge = boundary(mask)
            edges |= part_edge
        out[:, :, channel] = distance_map(part_edge)
    photo_edges = canny(gray, cfg).astype(bool) & keep_canny
    out[:, :, 0] = (edges.astype(bool) | photo_edges).astype(np.uint8) * 255
    out[:, :, -1] = edges * 255
    return out


def _edge_map_file(task: tuple[str, str, EdgesConfig, int]) -> str:
    """Worker: read one image, write its 0/255 Canny edge map; returns the output path."""
    image_path, out_path, cfg, max_pixels = task
    edges = canny(read_image(image_path, max_pixels=max_pixels), cfg)
    write_image(out_path, edges * np.uint8(255))
    return out_path


def _celebahq_encoding_file(task: tuple[str, str, str, str, EdgesConfig, int]) -> str:
    """Worker: the 15-channel CelebA-HQ edge input from a photo, its merged parsing map and its
    glasses mask, written as ``<id>.npz`` (key ``edges``, H x W x 15 uint8)."""
    image_path, label_path, glasses_path, out_path, cfg, max_pixels = task
    # Imported here: the adapter module imports torch, which would slow every worker's start-up.

    label = read_label(label_path, max_pixels=max_pixels)
    parts = {n: (label == PART_IDS[n]).astype(np.uint8) * 255 for n in INNER_PARTS if n != "eye_g"}
    if Path(glasses_path).is_file():  # glasses are stored apart from the merged map
        parts["eye_g"] = read_label(glasses_path, max_pixels=max_pixels)
    encoding = celebahq_edge_encoding(read_image(image_path, max_pixels=max_pixels), parts, cfg)
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, edges=encoding)
    return out_path


def edge_maps_for_dataset(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: EdgesConfig,
    *,
    encoding: Literal["canny", "celebahq15"] = "canny",
    workers: int = 1,
    dask_address: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> int:
    """Write ``out_dir/<id>.png`` (Canny edges, 0/255 gray) for every manifest row, or with
    ``encoding="celebahq15"`` the official 15-channel CelebA-HQ edge input as ``<id>.npz``
    (needs the merged parsing map as the row's label).

    An image that cannot be read is an error (``prepare`` has already quarantined bad files).
    Edge maps in ``out_dir`` whose id is no longer in the manifest are removed afterwards, so the
    directory always mirrors the manifest. Returns the number of edge maps written.
    """
    dataset_dir = Path(dataset_dir)
    out_dir = Path(out_dir)
    data, out = dataset_dir.resolve(), out_dir.resolve()
    if out.is_relative_to(data) or data.is_relative_to(out):
        raise ValueError(
            f"edge maps must go to a directory of their own: {out_dir} overlaps {dataset_dir}"
        )
    rows = read_manifest(dataset_dir / MANIFEST, root=dataset_dir)
    if encoding == "celebahq15":
        missing = [row["id"] for row in rows if row["label"] is None]
        if missing:
            raise ValueError(f"celebahq15 edges need parsing maps; no label for {missing[:5]}")
        worker, suffix = _celebahq_encoding_file, ".npz"
        tasks = [
            (
                str(inside_root(dataset_dir, row["image"])),
                str(inside_root(dataset_dir, row["label"])),
                str(inside_root(dataset_dir, f"{GLASSES_DIR}/{row['id']}.png")),
                str(inside_root(out_dir, f"{row['id']}.npz")),
                cfg,
                max_pixels,
            )
            for row in rows
        ]
    else:
        worker, suffix = _edge_map_file, ".png"
        tasks = [
            (
                str(inside_root(dataset_dir, row["image"])),
                str(inside_root(out_dir, f"{row['id']}.png")),
                cfg,
                max_pixels,
            )
            for row in rows
        ]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = parallel_map(worker, tasks, workers=workers, dask_address=dask_address, desc="edges")
    expected = {Path(p) for p in written}
    for stale in out_dir.resolve().rglob(f"*{suffix}"):
        if stale not in expected:
            stale.unlink()
    return len(written)
