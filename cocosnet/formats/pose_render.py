"""OpenPose results on disk and as network input.

* :func:`write_openpose_txt` / :func:`read_openpose_txt`: the ``<name>_candidate.txt`` (N rows
  ``x y score id``) and ``<name>_subset.txt`` (M rows of 18 candidate indices, -1 where missing,
  then total score and part count) files of the official DeepFashion data, written with
  ``numpy.savetxt``'s default format and read back with line-numbered validation.
* :func:`keypoints_table`: one row per detected keypoint, for a Parquet table.
* :func:`render_pose_input`: the official CoCosNet DeepFashion 20-channel pose input, H x W x 20
  uint8: channels 0..2 the RGB skeleton (joint discs, then the first 17 limbs as blended filled
  ellipses, OpenPose colours drawn on a BGR canvas and converted to RGB as the official code
  does), channels 3..19 per limb ``clip(L1 distance to the limb's ellipse / 3, 0, 255)``; a limb
  missing from every person gives an all-255 channel. Every person in ``subset`` is drawn (the
  official loader reads single-person files).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from ..files import atomic_path
from .pose_decode import LIMBS, NUM_PARTS, SUBSET_COLUMNS

# OpenPose part colours, used as BGR on the canvas (as the port's draw_bodypose).
COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
DRAWN_LIMBS = 17
POSE_CHANNELS = 3 + DRAWN_LIMBS
STICKWIDTH = 4
JOINT_RADIUS = 4
# Keypoints farther out than this are refused: OpenCV's drawing takes 32-bit coordinates.
MAX_COORDINATE = 1e6


def _txt_paths(directory: str | os.PathLike, name: str) -> tuple[Path, Path]:
    directory = Path(directory)
    return directory / f"{name}_candidate.txt", directory / f"{name}_subset.txt"


def _check_arrays(candidate: np.ndarray, subset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    candidate = np.asarray(candidate, dtype=np.float64)
    if candidate.size == 0:
        candidate = candidate.reshape(0, 4)
    subset = np.asarray(subset, dtype=np.float64)
    if subset.size == 0:
        subset = subset.reshape(0, SUBSET_COLUMNS)
    if candidate.ndim != 2 or candidate.shape[1] != 4:
        raise ValueError(f"candidate must be N x 4 (x, y, score, id), got shape {candidate.shape}")
    if subset.ndim != 2 or subset.shape[1] != SUBSET_COLUMNS:
        raise ValueError(f"subset must be M x {SUBSET_COLUMNS}, got shape {subset.shape}")
    xy = candidate[:, :2]
    if not np.isfinite(xy).all() or (np.abs(xy) > MAX_COORDINATE).any():
        row = int(np.argwhere(~(np.abs(xy) <= MAX_COORDINATE))[0][0])
        raise ValueError(
            f"candidate row {row}: coordinates {xy[row].tolist()} are not finite numbers within "
            f"+-{MAX_COORDINATE:g} pixels"
        )
    idx = subset[:, :NUM_PARTS]
    bad = (idx != -1) & ((idx < 0) | (idx >= len(candidate)) | (idx != np.round(idx)))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"subset row {row}, part {col}: index {idx[row, col]} is not -1 or a row of the "
            f"{len(candidate)}-row candidate list"
        )
    return candidate, subset


def write_openpose_txt(
    directory: str | os.PathLike, name: str, candidate: np.ndarray, subset: np.ndarray
) -> tuple[Path, Path]:
    """Atomically write ``<name>_candidate.txt`` and ``<name>_subset.txt`` under ``directory``."""
    candidate, subset = _check_arrays(candidate, subset)
    paths = _txt_paths(directory, name)
    for path, array in zip(paths, (candidate, subset), strict=True):
        with atomic_path(path) as tmp:
            np.savetxt(tmp, array)
    return paths


def _parse(path: Path, columns: int) -> list[tuple[int, list[float]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read ({err})") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != columns:
            raise ValueError(f"{path}:{lineno}: expected {columns} numbers, got {len(fields)}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: not a number in {line[:80]!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{path}:{lineno}: non-finite value in {line[:80]!r}")
        rows.append((lineno, values))
    return rows


def read_openpose_txt(directory: str | os.PathLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate ``<name>_candidate.txt`` / ``<name>_subset.txt``: (N x 4, M x 20)."""
    cand_path, subset_path = _txt_paths(directory, name)
    cand_rows = _parse(cand_path, 4)
    for lineno, (_, _, _, ident) in cand_rows:
        if ident < 0 or ident != round(ident):
            raise ValueError(f"{cand_path}:{lineno}: id {ident:g} is not a non-negative integer")
    n = len(cand_rows)
    subset_rows = _parse(subset_path, SUBSET_COLUMNS)
    for lineno, values in subset_rows:
        for part, index in enumerate(values[:NUM_PARTS]):
            if index != -1 and (index < 0 or index >= n or index != round(index)):
                raise ValueError(
                    f"{subset_path}:{lineno}: part {part} index {index:g} is not -1 or a row of "
                    f"the {n}-row candidate list {cand_path.name}"
                )
        if values[-1] < 0:
            raise ValueError(f"{subset_path}:{lineno}: negative part count {values[-1]:g}")
    candidate = np.array([v for _, v in cand_rows], dtype=np.float64).reshape(-1, 4)
    subset = np.array([v for _, v in subset_rows], dtype=np.float64).reshape(-1, SUBSET_COLUMNS)
    return candidate, subset


def keypoints_table(image_id: str, candidate: np.ndarray, subset: np.ndarray) -> list[dict]:
    """Rows ``{id, person, part, x, y, score}``, one per part present in each person."""
    candidate, subset = _check_arrays(candidate, subset)
    rows = []
    for person, row in enumerate(subset):
        for part in range(NUM_PARTS):
            index = int(row[part])
            if index < 0:
                continue
            x, y, score = candidate[index, :3]
            rows.append(
                {
                    "id": image_id,
                    "person": person,
                    "part": part,
                    "x": float(x),
                    "y": float(y),
                    "score": float(score),
                }
            )
    return rows


def _limb_polygon(candidate: np.ndarray, a: int, b: int, stickwidth: int) -> np.ndarray:
    (x0, y0), (x1, y1) = candidate[a, :2], candidate[b, :2]
    length = math.hypot(x0 - x1, y0 - y1)
    angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
    centre = (int(np.mean([x0, x1])), int(np.mean([y0, y1])))
    return cv2.ellipse2Poly(centre, (int(length / 2), stickwidth), int(angle), 0, 360, 1)


def render_pose_input(
    candidate: np.ndarray,
    subset: np.ndarray,
    height: int,
    width: int,
    *,
    stickwidth: int = STICKWIDTH,
    radius: int = JOINT_RADIUS,
) -> np.ndarray:
    """The 20-channel DeepFashion pose input (H x W x 20 uint8) of all people in ``subset``."""
    candidate, subset = _check_arrays(candidate, subset)
    canvas = np.zeros((height, width, 3), np.uint8)  # BGR
    for person in subset:
        for part in range(NUM_PARTS):
            index = int(person[part])
            if index >= 0:
                x, y = candidate[index, :2]
                cv2.circle(canvas, (int(x), int(y)), radius, COLORS[part], thickness=-1)
    distances = np.full((height, width, DRAWN_LIMBS), 255, np.uint8)
    for limb in range(DRAWN_LIMBS):
        mask = np.zeros((height, width), np.uint8)
        for person in subset:
            a, b = (int(person[p]) for p in LIMBS[limb])
            if a < 0 or b < 0:
                continue
            polygon = _limb_polygon(candidate, a, b, stickwidth)
            cur = canvas.copy()
            cv2.fillConvexPoly(cur, polygon, COLORS[limb])
            canvas = cv2.addWeighted(canvas, 0.4, cur, 0.6, 0)
            cv2.fillConvexPoly(mask, polygon, 255)
        if mask.any():
            dist = cv2.distanceTransform(255 - mask, cv2.DIST_L1, 3)
            distances[:, :, limb] = np.clip(dist / 3, 0, 255).astype(np.uint8)
    return np.concatenate([canvas[:, :, ::-1], distances], axis=2)
