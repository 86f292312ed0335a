"""Adapter for DeepFashion (In-shop) with the official CoCosNet pose files.

Official layout under the raw root: ``img/{MEN,WOMEN}/<category>/id_<n>/<NN_k_view>.jpg``;
``pose/`` mirrors it with ``<name>_candidate.txt`` and ``<name>_subset.txt`` (OpenPose, PyTorch
port format); ``train.txt`` / ``val.txt`` list image paths relative to the root (the official
lists use backslashes). The input is the official 20-channel pose map (3-channel RGB skeleton +
17 limb distance transforms) rendered at the photo's resolution and resized with it.

Prepared layout: ``images/<id>.png`` and ``pose/<id>.npz`` (key ``pose``, H x W x 20 uint8) under
the output root, ids being the image path without ``img/`` and suffix, ``/`` -> ``__``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from ..files import atomic_path
from ..formats.pose_render import read_openpose_txt, render_pose_input
from ..io import DEFAULT_MAX_PIXELS, ImageProblem, read_image, write_image
from ..parallel import parallel_map
from .adapter import Adapter, Planes
from .prepare import Candidate, PrepareReport, index_candidates
from .store import IMAGE_DIR, check_out_root, resize_image, scaled_size

POSE_DIR = "pose"
POSE_DISTANCE_CHANNELS = tuple(range(3, 20))  # resized bilinearly, the skeleton nearest
SEMANTIC_NC = 20


def _layout_root(raw_root: str | os.PathLike) -> Path:
    root = Path(raw_root)
    for candidate in (root, root / "DeepFashion"):
        if (candidate / "img").is_dir() and (candidate / "pose").is_dir():
            return candidate
    raise ValueError(
        f"{raw_root} is not a DeepFashion folder: expected img/ and pose/ (and train.txt, "
        "val.txt) as in the official CoCosNet layout"
    )


def sample_id(image_rel: str) -> str:
    parts = PurePosixPath(image_rel).with_suffix("").parts
    return "__".join(parts[1:] if parts and parts[0] == "img" else parts)


def candidates(raw_root: str | os.PathLike) -> list[Candidate]:
    """Images of train.txt then val.txt, in file order; duplicates are refused."""
    root = _layout_root(raw_root)
    found, seen = [], set()
    for split, name in (("train", "train.txt"), ("val", "val.txt")):
        path = root / name
        if not path.is_file():
            raise ValueError(f"{path} not found: the official split lists are needed")
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            rel = line.strip().replace("\\", "/")
            if not rel:
                continue
            if not rel.startswith("img/"):
                raise ValueError(f"{path}:{lineno}: {rel!r} is not under img/")
            ident = sample_id(rel)
            if ident in seen:
                raise ValueError(f"{path}:{lineno}: duplicate image {rel!r}")
            seen.add(ident)
            found.append(Candidate(ident, split, rel))
    return found


def _resize_pose(pose: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Skeleton colours nearest (as the official), distance maps bilinear."""
    height, width = shape
    rgb = cv2.resize(pose[..., :3], (width, height), interpolation=cv2.INTER_NEAREST)
    dist = np.stack(
        [
            cv2.resize(pose[..., i], (width, height), interpolation=cv2.INTER_LINEAR)
            for i in range(3, pose.shape[-1])
        ],
        axis=-1,
    )
    return np.concatenate([rgb, dist], axis=-1)


def store_sample(job: tuple[str, str, Candidate, int, int]) -> tuple[bool, object]:
    """(True, stored Candidate) for a usable sample, else (False, (path, one-line reason)).

    ``job`` is (layout root, out_root, candidate, max_pixels, size); runs in a worker process."""
    root, out_root, c, max_pixels, size = job
    root, out_root = Path(root), Path(out_root)
    rel = PurePosixPath(c.image)
    pose_dir = root / "pose" / rel.parent.relative_to("img")
    try:
        rgb = read_image(root / c.image, max_pixels=max_pixels)
        candidate, subset = read_openpose_txt(pose_dir, rel.stem)
    except ImageProblem as err:
        return False, (c.image, err.reason)
    except (OSError, ValueError) as err:  # missing or malformed pose files
        return False, (c.image, str(err).splitlines()[0])
    pose = render_pose_input(candidate, subset, rgb.shape[0], rgb.shape[1])
    shape = scaled_size(rgb.shape[0], rgb.shape[1], size)
    image_rel = f"{IMAGE_DIR}/{c.id}.png"
    write_image(out_root / image_rel, resize_image(rgb, shape))
    pose_path = out_root / POSE_DIR / f"{c.id}.npz"
    pose_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(pose_path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, pose=_resize_pose(pose, shape))
    return True, Candidate(c.id, c.split, image_rel)


class DeepFashionAdapter(Adapter):
    """DeepFashion In-shop photos with their official OpenPose files: the 20-channel pose input
    is rendered at the photo's size and stored beside it."""

    name = "deepfashion"
    condition = "pose"
    channels = SEMANTIC_NC
    identity = r"id_\d+"  # the same person in another pose is never their own exemplar

    def find(self, raw_root) -> list[Candidate]:
        return candidates(_layout_root(raw_root))

    def prepare(
        self,
        raw_root,
        out_root,
        *,
        size: int = 256,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        workers: int = 1,
        dask_address: str | None = None,
    ) -> PrepareReport:
        """Resize photos and render their pose inputs into ``out_root``; bad samples
        quarantined. The report lists rows and quarantined files in candidate order."""
        root = _layout_root(raw_root)
        check_out_root(root, out_root)
        out_root = Path(out_root)
        jobs = [(str(root), str(out_root), c, max_pixels, size) for c in candidates(root)]
        stored, quarantined = [], []
        for ok, result in parallel_map(
            store_sample, jobs, workers=workers, dask_address=dask_address, desc=self.name
        ):
            (stored if ok else quarantined).append(result)
        report = index_candidates(
            out_root, stored, max_pixels=max_pixels, workers=workers, dask_address=dask_address
        )
        report.quarantined[:0] = quarantined
        return report

    def stored_planes(self, dataset_dir, sample: str) -> Planes:
        return load_pose(dataset_dir, sample), POSE_DISTANCE_CHANNELS

    def official_id(self, key: str) -> str:
        return sample_id(key)


def load_pose(dataset_dir: str | os.PathLike, sample: str) -> np.ndarray:
    """The stored 20-channel pose input of a prepared sample (H x W x 20 uint8)."""
    with np.load(Path(dataset_dir) / POSE_DIR / f"{sample}.npz") as f:
        return f["pose"]


ADAPTER = DeepFashionAdapter()
