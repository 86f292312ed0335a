"""OpenPose body-pose preprocessing for the DeepFashion-style pose input (stage ``pose@DS``).

:class:`OpenPoseBody` runs CMU's COCO body model (``pose_deploy_linevec.prototxt`` +
``pose_iter_440000.caffemodel``) with OpenCV's DNN module and returns heatmaps and part affinity
fields at the image's own size, with the multi-scale procedure of the OpenPose Python demo and
its PyTorch port: per scale ``s`` the BGR image is resized (cubic) by ``s * boxsize / H``, padded
at the bottom/right to a multiple of the stride with ``pad_value``, scaled ``x / 256 - 0.5`` and
run; the outputs are upsampled by the stride (cubic), the padding is cropped, they are resized to
the image size (cubic) and averaged over the scales. The default scales are ``(0.5,)`` as the
port's ``scale_search``; the OpenPose demo used ``(0.5, 1.0, 1.5, 2.0)``.

Decoding lives in :mod:`.pose_decode`, file formats and the 20-channel input in
:mod:`.pose_render`; both are re-exported here. :func:`pose_for_dataset` writes, per manifest row,
``<id>_candidate.txt``, ``<id>_subset.txt`` and ``<id>.npz`` (key ``pose``: H x W x 20 uint8)
into a directory of its own, plus ``keypoints.parquet`` (one row per keypoint).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..data.manifest import inside_root, read_manifest
from ..data.prepare import MANIFEST
from ..files import atomic_path
from ..formats.pose_decode import (
    LIMBS,
    NUM_HEATMAPS,
    NUM_PAFS,
    NUM_PARTS,
    PAF_CHANNELS,
    PART_NAMES,
    connect_limbs,
    decode,
    find_peaks,
    group_people,
    split_concatenated,
)
from ..formats.pose_render import (
    POSE_CHANNELS,
    keypoints_table,
    read_openpose_txt,
    render_pose_input,
    write_openpose_txt,
)
from ..io import DEFAULT_MAX_PIXELS, read_image
from ..parallel import parallel_map
from ..weights import resolve

__all__ = [
    "LIMBS",
    "NUM_PARTS",
    "PAF_CHANNELS",
    "PART_NAMES",
    "POSE_CHANNELS",
    "KEYPOINTS_FILE",
    "OpenPoseBody",
    "connect_limbs",
    "decode",
    "find_peaks",
    "group_people",
    "keypoints_table",
    "pose_for_dataset",
    "read_openpose_txt",
    "render_pose_input",
    "split_outputs",
    "write_openpose_txt",
]

DEFAULT_SCALES = (0.5,)
BOXSIZE = 368
STRIDE = 8
PAD_VALUE = 128
KEYPOINTS_FILE = "keypoints.parquet"
KEYPOINTS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("person", pa.int32(), nullable=False),
        pa.field("part", pa.int32(), nullable=False),
        pa.field("x", pa.float64(), nullable=False),
        pa.field("y", pa.float64(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
    ]
)


def split_outputs(outputs) -> tuple[np.ndarray, np.ndarray]:
    """(heatmaps 19 x h x w, PAFs 38 x h x w) from the network's output(s).

    Accepts the single concatenated 57-channel blob (CMU's ``net_output``: heatmaps first), or
    the two stage-6 outputs (``Mconv7_stage6_L2`` heatmaps, ``Mconv7_stage6_L1`` PAFs) as a
    sequence or a name -> array mapping, told apart by their channel counts. A leading batch
    axis of 1 is dropped.
    """
    if isinstance(outputs, Mapping):
        arrays = list(outputs.values())
    elif isinstance(outputs, np.ndarray):
        arrays = [outputs]
    else:
        arrays = list(outputs)
    squeezed = []
    for a in arrays:
        a = np.asarray(a, dtype=np.float32)
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]
        if a.ndim != 3:
            raise ValueError(f"network output must be (1 x) C x h x w, got shape {a.shape}")
        squeezed.append(a)
    if len(squeezed) == 1 and squeezed[0].shape[0] == NUM_HEATMAPS + NUM_PAFS:
        return split_concatenated(squeezed[0])
    by_channels = {a.shape[0]: a for a in squeezed}
    if len(squeezed) == 2 and set(by_channels) == {NUM_HEATMAPS, NUM_PAFS}:
        return by_channels[NUM_HEATMAPS], by_channels[NUM_PAFS]
    shapes = [a.shape for a in squeezed]
    raise ValueError(
        f"expected one 57-channel output or a 19- and a 38-channel output, got shapes {shapes}"
    )


def _pad_right_down(image: np.ndarray, stride: int, value: int) -> tuple[np.ndarray, int, int]:
    h, w = image.shape[:2]
    down, right = (-h) % stride, (-w) % stride
    padded = cv2.copyMakeBorder(image, 0, down, 0, right, cv2.BORDER_CONSTANT, value=(value,) * 3)
    return padded, down, right


class OpenPoseBody:
    """The OpenPose COCO body network behind OpenCV DNN: ``body(rgb) -> (heatmaps, pafs)``."""

    def __init__(
        self,
        prototxt: str | os.PathLike | None = None,
        caffemodel: str | os.PathLike | None = None,
        *,
        scales: Sequence[float] = DEFAULT_SCALES,
        boxsize: int = BOXSIZE,
        stride: int = STRIDE,
        pad_value: int = PAD_VALUE,
        net=None,
    ) -> None:
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"scales must be positive numbers, got {scales!r}")
        if net is None:
            if prototxt is None or caffemodel is None:
                raise ValueError("pass prototxt and caffemodel paths, or a loaded net")
            net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
        self.net = net
        self.scales = tuple(float(s) for s in scales)
        self.boxsize, self.stride, self.pad_value = boxsize, stride, pad_value
        self.output_names = list(net.getUnconnectedOutLayersNames())

    @classmethod
    def from_weights(cls, weights_dir: str | os.PathLike, **kwargs) -> OpenPoseBody:
        """Load the registered, checksum-verified OpenPose files (``WeightsError`` if missing)."""
        prototxt = resolve("openpose_body_prototxt", weights_dir)
        caffemodel = resolve("openpose_body_caffemodel", weights_dir)
        return cls(prototxt, caffemodel, **kwargs)

    def _run(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        padded, down, right = _pad_right_down(bgr, self.stride, self.pad_value)
        blob = padded.astype(np.float32).transpose(2, 0, 1)[None] / 256.0 - 0.5
        self.net.setInput(np.ascontiguousarray(blob))
        outputs = self.net.forward(self.output_names)
        if len(self.output_names) == 1 and isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        heat, paf = split_outputs(outputs)
        results = []
        for maps in (heat, paf):
            hwc = np.ascontiguousarray(maps.transpose(1, 2, 0))
            up = cv2.resize(
                hwc, (0, 0), fx=self.stride, fy=self.stride, interpolation=cv2.INTER_CUBIC
            )
            up = up.reshape(up.shape[0], up.shape[1], -1)
            results.append(up[: padded.shape[0] - down, : padded.shape[1] - right])
        return results[0], results[1]

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (19 x H x W) and PAFs (38 x H x W, network order) of an RGB uint8 image."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 RGB image, got shape {rgb.shape}")
        height, width = rgb.shape[:2]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        heat_sum = np.zeros((height, width, NUM_HEATMAPS), np.float64)
        paf_sum = np.zeros((height, width, NUM_PAFS), np.float64)
        for s in self.scales:
            factor = s * self.boxsize / height
            scaled = cv2.resize(bgr, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
            heat, paf = self._run(scaled)
            for total, maps in ((heat_sum, heat), (paf_sum, paf)):
                resized = cv2.resize(maps, (width, height), interpolation=cv2.INTER_CUBIC)
                total += resized.reshape(height, width, -1)
        n = len(self.scales)
        heatmaps = (heat_sum / n).transpose(2, 0, 1).astype(np.float32)
        pafs = (paf_sum / n).transpose(2, 0, 1).astype(np.float32)
        return heatmaps, pafs


_NETS: dict[tuple, OpenPoseBody] = {}


def _network(prototxt: str, caffemodel: str, scales: tuple[float, ...]) -> OpenPoseBody:
    """One network per worker process (and per files/scales), loaded on first use."""
    key = (prototxt, caffemodel, scales)
    if key not in _NETS:
        _NETS[key] = OpenPoseBody(prototxt, caffemodel, scales=scales)
    return _NETS[key]


def _pose_file(task: tuple) -> tuple[list[str], list[dict]]:
    image_id, image_path, out_dir, prototxt, caffemodel, scales, max_pixels = task
    rgb = read_image(image_path, max_pixels=max_pixels)
    heatmaps, pafs = _network(prototxt, caffemodel, scales)(rgb)
    candidate, subset = decode(heatmaps, pafs)
    out_dir = Path(out_dir)
    for suffix in ("_candidate.txt", "_subset.txt"):
        inside_root(out_dir, image_id + suffix)  # refuse ids that would leave out_dir
    paths = list(write_openpose_txt(out_dir, image_id, candidate, subset))
    npz = inside_root(out_dir, f"{image_id}.npz")
    pose = render_pose_input(candidate, subset, rgb.shape[0], rgb.shape[1])
    with atomic_path(npz) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, pose=pose)
    paths.append(npz)
    return [str(p.resolve()) for p in paths], keypoints_table(image_id, candidate, subset)


def pose_for_dataset(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    prototxt: str | os.PathLike,
    caffemodel: str | os.PathLike,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    workers: int = 1,
    dask_address: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> int:
    """Run pose estimation on every manifest row; returns the number of images processed.

    Files in ``out_dir`` of ids no longer in the manifest are removed, so it mirrors the manifest.
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    data, out = dataset_dir.resolve(), out_dir.resolve()
    if out.is_relative_to(data) or data.is_relative_to(out):
        raise ValueError(f"pose files must go to a directory of their own: {out_dir} overlaps")
    rows = read_manifest(dataset_dir / MANIFEST, root=dataset_dir)
    scales = tuple(float(s) for s in scales)
    tasks = [
        (
            row["id"],
            str(inside_root(dataset_dir, row["image"])),
            str(out_dir),
            str(prototxt),
            str(caffemodel),
            scales,
            max_pixels,
        )
        for row in rows
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    results = parallel_map(
        _pose_file, tasks, workers=workers, dask_address=dask_address, desc="pose"
    )
    expected = {Path(p) for written, _ in results for p in written}
    keypoints = [r for _, table in results for r in table]
    with atomic_path(out_dir / KEYPOINTS_FILE) as tmp:
        pq.write_table(pa.Table.from_pylist(keypoints, schema=KEYPOINTS_SCHEMA), tmp)
    for pattern in ("*_candidate.txt", "*_subset.txt", "*.npz"):
        for stale in out.rglob(pattern):
            if stale not in expected:
                stale.unlink()
    return len(results)
