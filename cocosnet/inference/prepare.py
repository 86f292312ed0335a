"""Network inputs from files of any size: masks, edge maps, pose keypoints and exemplar photos.

Geometry (every domain, any image size): the input is resized keeping its aspect ratio so its
longer side is the model's ``image_size`` S and padded, centred, to S x S (:class:`Letterbox`);
after synthesis the padding is cropped and the output resized back to the input's original size
with antialiased bicubic interpolation. Per domain: class-id masks nearest, padded with class 0;
edge maps by the max over each target cell when shrinking (thin lines survive), nearest when
enlarging, padded with 0; Canny edges of a photo are extracted after resizing the photo, at the
scale the model trained on; pose skeleton colours nearest and limb-distance channels bilinear (as
the prepared DeepFashion data), padded with 0 and the border distances; exemplar photos
antialiased bilinear and reflect-padded (replicate where the image is thinner than the padding).

Inputs made by the preprocessing stages: ``photo-mask`` segments a photo with the UPerNet ADE20k
parser (ids 0..150, a 151-class model) and ``photo-pose`` detects OpenPose body keypoints and
renders the 20-channel pose input; a keypoints Parquet (the pose stage's ``keypoints.parquet``)
gives the pose of one image id. The models run on the photo shrunk so its shorter side is at most
``short_side`` (the masks stage's 512; their cost grows with the pixels); the mask is scaled back
(nearest) and the keypoints are drawn at the photo's own size, as the stages write them; then
both are letterboxed like the label and pose domains, so the output has the photo's size.

Hidden exemplar mask: with ``maskmix`` the correspondence network mixes the exemplar's mask into
its features, or 0.01 N(0, 1) noise when the mask is hidden or absent. The network would draw that
noise from the global RNG, so results would depend on the RNG state and on a sample's position in
its batch. :class:`Translator` instead draws it from a generator seeded with its ``seed`` on every
call and gives every sample the same draw: results are deterministic and a batch gives the same
outputs as one-by-one translation, and the global RNG is never touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..config import EdgesConfig
from ..formats.pose_render import POSE_CHANNELS, read_openpose_txt, render_pose_input
from ..formats.tensors import image_to_tensor, one_hot, to_uint8
from ..io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_FORMATS,
    ImageProblem,
    read_image,
    read_label,
)
from ..preprocess.edges import canny
from ..preprocess.segmentation import SEMANTIC_NC
from .domain import POSE_TXT, Domain, is_keypoints_table, resolve_domain

if TYPE_CHECKING:
    from .photos import PhotoModels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Letterbox:
    """Where an H x W image sits, resized and centred, in the size x size network square."""

    height: int
    width: int
    size: int
    top: int
    left: int
    inner_height: int
    inner_width: int

    @classmethod
    def fit(cls, height: int, width: int, size: int) -> Letterbox:
        scale = size / max(height, width)
        ih, iw = max(1, round(height * scale)), max(1, round(width * scale))
        return cls(height, width, size, (size - ih) // 2, (size - iw) // 2, ih, iw)

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) as F.pad takes them."""
        right = self.size - self.left - self.inner_width
        return self.left, right, self.top, self.size - self.top - self.inner_height

    def pad(self, x: torch.Tensor, mode: str = "constant") -> torch.Tensor:
        """C x ih x iw -> C x S x S; 'reflect' falls back to 'replicate' on thin images."""
        pads = self.padding
        if mode == "reflect" and (max(pads[:2]) >= x.shape[-1] or max(pads[2:]) >= x.shape[-2]):
            mode = "replicate"
        return F.pad(x[None], pads, mode=mode)[0] if mode != "constant" else F.pad(x, pads)

    def restore(self, images: torch.Tensor) -> torch.Tensor:
        """B x C x S x S network outputs -> B x C x H x W: crop the padding, bicubic resize."""
        rows = slice(self.top, self.top + self.inner_height)
        crop = images[..., rows, self.left : self.left + self.inner_width]
        out = F.interpolate(crop.float(), (self.height, self.width), mode="bicubic", antialias=True)
        return out.clamp(-1, 1)


@dataclass(frozen=True)
class Prepared:
    """A network input (C x S x S float32) and how to map the output back to the file's size."""

    tensor: torch.Tensor
    box: Letterbox
    path: Path


def _expected(channels: int) -> str:
    kinds = {1: "1-channel edges", POSE_CHANNELS: f"{POSE_CHANNELS}-channel pose"}
    mask = f"mask with {channels} classes"
    return f"{kinds[channels]} or a {mask}" if channels in kinds else f"a {mask}"


def channel_error(channels: int, path: str | os.PathLike, got: int, what: str) -> ValueError:
    return ValueError(
        f"model expects {channels} input channels ({_expected(channels)}); {path} gives {got} "
        f"({what})"
    )


def _bands(path: Path) -> int:
    """Band count from the header (only to explain why a file is not a class-id map)."""
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            return len(img.getbands())
    except Exception:  # the caller re-raises read_label's own problem
        return 0


def _single_channel(path: Path, channels: int) -> np.ndarray:
    """A single-channel file's values; a multi-band file is a channel-count error."""
    try:
        return read_label(path)
    except ImageProblem as err:
        # Only a readable multi-band file is a channel-count error; a truncated RGB PNG keeps
        # its own reason (its header alone would call it "3 bands").
        bands = _bands(path) if "single-channel" in err.reason else 0
        if bands > 1:
            what = f"a {bands}-band image{photo_hint(channels)}"
            raise channel_error(channels, path, bands, what) from None
        raise


def photo_hint(channels: int) -> str:
    """Where a photo was given for a model's input: the domain that makes that input of it."""
    domain = {1: "photo-edges", POSE_CHANNELS: "photo-pose", SEMANTIC_NC: "photo-mask"}
    if channels not in domain:
        return ""
    return f"; a photo? --domain {domain[channels]} makes this model's input from it"


def _resize(x: torch.Tensor, box: Letterbox, mode: str) -> torch.Tensor:
    """C x H x W -> C x ih x iw."""
    size = (box.inner_height, box.inner_width)
    if mode == "max":  # any edge in the target cell survives; enlarging is nearest
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        return F.adaptive_max_pool2d(x, size) if shrink else _resize(x, box, "nearest-exact")
    antialias = mode == "bilinear"
    return F.interpolate(x[None].float(), size, mode=mode, antialias=antialias)[0]


def prepare_label(path: str | os.PathLike, semantic_nc: int, size: int) -> Prepared:
    """A class-id mask (PNG of ids) -> one-hot semantic_nc x S x S, padded with class 0."""
    path = Path(path)
    ids = _single_channel(path, semantic_nc)
    top = int(ids.max())
    if top >= semantic_nc:
        raise ImageProblem(
            path,
            f"largest class id is {top}, but the model has {semantic_nc} classes "
            f"(ids 0..{semantic_nc - 1}){photo_hint(semantic_nc)}",
        )
    return _label_input(ids, semantic_nc, size, path)


def _label_input(ids: np.ndarray, semantic_nc: int, size: int, path: Path) -> Prepared:
    box = Letterbox.fit(*ids.shape, size)
    small = _resize(torch.from_numpy(ids.astype(np.float32))[None], box, "nearest-exact")
    padded = box.pad(small)[0].round().to(torch.int64).numpy()
    return Prepared(one_hot(padded, semantic_nc), box, path)


def prepare_edges(
    path: str | os.PathLike,
    size: int,
    *,
    from_photo: bool = False,
    edges: EdgesConfig | None = None,
    model_channels: int = 1,
) -> Prepared:
    """A 0/255 (or 0/1) edge PNG, or with ``from_photo`` the Canny edges of a photo -> 1 x S x S
    in [0, 1], as training reads the edges stage's maps (``model_channels``: for messages)."""
    path = Path(path)
    if from_photo:
        rgb = read_image(path)
        box = Letterbox.fit(*rgb.shape[:2], size)
        small = to_uint8(_resize(image_to_tensor(rgb), box, "bilinear")[None])[0]
        found = canny(small, edges or EdgesConfig())
        return Prepared(box.pad(torch.from_numpy(found.astype(np.float32))[None]), box, path)
    values = _single_channel(path, model_channels)
    top = int(values.max())
    scale = 1.0 if top <= 1 else 255.0 if top <= 255 else 65535.0
    _check_near_binary(values / scale, path)
    box = Letterbox.fit(*values.shape, size)
    small = _resize(torch.from_numpy(values.astype(np.float32) / scale)[None], box, "max")
    return Prepared(box.pad(small), box, path)


EDGE_MID_TONE_LIMIT = 0.25  # of the pixels; Canny maps have none, resized ones a thin fringe


def _check_near_binary(values: np.ndarray, path: Path) -> None:
    """An edge map is near-binary (background and edges); a grey photo is mostly mid-tones."""
    mid = float(((values > 0.1) & (values < 0.9)).mean())
    if mid > EDGE_MID_TONE_LIMIT:
        raise ImageProblem(
            path,
            f"not an edge map: {mid:.0%} of its pixels are mid-grey (an edge map is near-binary: "
            f"0 and 255){photo_hint(1)}",
        )


def pose_name(path: str | os.PathLike) -> str:
    """``<name>`` of ``<name>_candidate.txt``, ``<name>_subset.txt`` or ``<name>.npz``."""
    name = Path(path).name
    for suffix in (*POSE_TXT, ".npz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def _canvas_size(path: Path) -> tuple[int, int]:
    """OpenPose txt files do not record the image size: read it off the photo beside them."""
    for suffix in IMAGE_SUFFIXES:
        photo = path.with_name(pose_name(path) + suffix)
        if photo.is_file():
            return read_image(photo).shape[:2]
    raise ValueError(
        f"{path}: OpenPose txt files do not record the image size; give the canvas size "
        f"(--pose-size HxW) or put the photo {pose_name(path)}.png beside them"
    )


def prepare_pose(
    path: str | os.PathLike, size: int, *, canvas: tuple[int, int] | None = None
) -> Prepared:
    """An OpenPose ``<name>_candidate.txt``/``_subset.txt`` pair (rendered on a ``canvas`` of
    (H, W), default the size of the photo beside them) or a rendered ``.npz`` (key ``pose``,
    H x W x 20 uint8) -> the 20-channel pose input, 20 x S x S in [0, 1]."""
    path = Path(path)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                pose = np.asarray(f["pose"])
        except FileNotFoundError:
            raise ImageProblem(path, "file not found") from None
        except (OSError, ValueError, KeyError) as err:
            raise ImageProblem(path, f"not a rendered pose .npz with key 'pose' ({err})") from None
        if pose.dtype != np.uint8 or pose.ndim != 3 or pose.shape[2] != POSE_CHANNELS:
            raise ImageProblem(
                path,
                f"'pose' must be H x W x {POSE_CHANNELS} uint8 (skeleton colours and limb "
                f"distance maps, as the pose stage renders), got {pose.dtype} {pose.shape}",
            )
    else:
        if not path.name.endswith(POSE_TXT):
            raise ValueError(f"{path}: pose inputs are <name>_candidate.txt / _subset.txt or .npz")
        height, width = canvas or _canvas_size(path)
        if height * width > DEFAULT_MAX_PIXELS:
            raise ValueError(f"{path}: pose canvas {height}x{width} is too large")
        candidate, subset = read_openpose_txt(path.parent, pose_name(path))
        pose = render_pose_input(candidate, subset, height, width)
    return _pose_input(pose, size, path)


def _pose_input(pose: np.ndarray, size: int, path: Path) -> Prepared:
    """H x W x 20 uint8 rendered pose -> 20 x S x S in [0, 1]."""
    box = Letterbox.fit(*pose.shape[:2], size)
    dsize = (box.inner_width, box.inner_height)
    # Skeleton colours nearest, distance maps bilinear, as the prepared DeepFashion data.
    rgb = cv2.resize(np.ascontiguousarray(pose[..., :3]), dsize, interpolation=cv2.INTER_NEAREST)
    rgb = rgb.reshape(box.inner_height, box.inner_width, -1)
    dist = [
        cv2.resize(pose[..., i], dsize, interpolation=cv2.INTER_LINEAR)
        for i in range(3, pose.shape[-1])
    ]
    dist = np.stack(dist, -1) if dist else np.zeros((*rgb.shape[:2], 0), np.uint8)
    skeleton = box.pad(torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32)))
    limbs = box.pad(torch.from_numpy(dist.transpose(2, 0, 1).astype(np.float32)), "replicate")
    return Prepared(torch.cat([skeleton, limbs]) / 255.0, box, path)


def prepare_exemplar(path: str | os.PathLike, size: int) -> Prepared:
    """Any readable photo (grayscale, RGBA, CMYK, 16-bit, ...) -> 3 x S x S in [-1, 1]."""
    rgb = read_image(path)
    box = Letterbox.fit(*rgb.shape[:2], size)
    return Prepared(
        box.pad(_resize(image_to_tensor(rgb), box, "bilinear"), "reflect"), box, Path(path)
    )


def prepare_input(
    path: str | os.PathLike,
    semantic_nc: int,
    size: int,
    *,
    domain: Domain = "auto",
    canvas: tuple[int, int] | None = None,
    edges: EdgesConfig | None = None,
    models: PhotoModels | None = None,
    image_id: str | None = None,
) -> Prepared:
    """The network input of one file in its domain, checked against the model's channels
    (``models``: for photo-mask / photo-pose; ``image_id``: the image of a keypoints table)."""
    domain = resolve_domain(path, semantic_nc, domain)
    if domain in ("photo-mask", "photo-pose") or (domain == "pose" and is_keypoints_table(path)):
        from .photos import made_input  # the preprocessing models load only when needed

        made = made_input(Path(path), domain, models, image_id, canvas)
        if domain == "photo-mask":
            prepared = _label_input(made, semantic_nc, size, Path(path))
        else:
            prepared = _pose_input(made, size, Path(path))
    elif domain == "label":
        prepared = prepare_label(path, semantic_nc, size)
    elif domain == "pose":
        prepared = prepare_pose(path, size, canvas=canvas)
    else:
        from_photo = domain == "photo-edges"
        prepared = prepare_edges(
            path, size, from_photo=from_photo, edges=edges, model_channels=semantic_nc
        )
    got = prepared.tensor.shape[0]
    if got != semantic_nc:
        raise channel_error(semantic_nc, path, got, domain)
    return prepared
