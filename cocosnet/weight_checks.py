"""What ``cocosnet weights add`` checks before it records the digest of a file that has no
published one: the file loads as its loader will load it (weights-only, never unpickled) and holds
that entry's keys and shapes. A file with a published digest is checked by the digest alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .files import load_tensor_state
from .weights import REGISTRY, WeightsError, add


def _vgg19_caffe(path: Path) -> None:
    from .models.vgg import VGG19

    state = load_tensor_state(path, WeightsError, tensors_only=False)
    try:
        VGG19("caffe").load_layout_state_dict(state, source=str(path))
    except ValueError as err:
        raise WeightsError(str(err)) from None


def _caffe_net(prototxt: Path, caffemodel: Path | None = None) -> None:
    """A network definition OpenCV parses; with ``caffemodel``, weights for its every
    convolution (OpenCV loads a file that holds none without complaint)."""
    import cv2

    what = "a Caffe network definition" if caffemodel is None else "Caffe weights for it"
    try:
        args = (str(prototxt),) if caffemodel is None else (str(prototxt), str(caffemodel))
        net = cv2.dnn.readNetFromCaffe(*args)
    except cv2.error as err:
        reason = str(err).strip().splitlines()[-1][:200]
        raise WeightsError(f"{caffemodel or prototxt}: not {what} ({reason})") from None
    if net.empty():
        raise WeightsError(f"{prototxt}: not {what} (no layers)")
    if caffemodel is not None:
        layers = [net.getLayer(name) for name in net.getLayerNames()]
        empty = [layer.name for layer in layers if layer.type == "Convolution" and not layer.blobs]
        if empty:
            raise WeightsError(
                f"{caffemodel}: not {what} (no weights for {', '.join(empty[:3])}"
                f"{', ...' if len(empty) > 3 else ''} of {prototxt.name})"
            )


def _openpose_caffemodel(path: Path, weights_dir: Path) -> None:
    prototxt = weights_dir / REGISTRY["openpose_body_prototxt"].filename
    if not prototxt.is_file():
        raise WeightsError(
            f"add openpose_body_prototxt first: {path} is checked against {prototxt}"
        )
    _caffe_net(prototxt, path)


def _upernet(folder: Path) -> None:
    from .preprocess.segmentation import SegmentationError, load_scene_parser

    files = REGISTRY["upernet_ade20k"].files
    try:
        load_scene_parser(folder / files[1], folder / files[0], "cpu")
    except SegmentationError as err:
        raise WeightsError(str(err)) from None


CHECKS: dict[str, Callable[[Path, Path], None]] = {
    "vgg19_caffe": lambda path, _: _vgg19_caffe(path),
    "openpose_body_prototxt": lambda path, _: _caffe_net(path),
    "openpose_body_caffemodel": _openpose_caffemodel,
    "upernet_ade20k": lambda path, _: _upernet(path),
}


def add_checked(name: str, source: str | Path, weights_dir: str | Path) -> Path:
    """:func:`cocosnet.weights.add` with ``name``'s check, if it has one (WeightsError, one
    line, before anything is copied or recorded)."""
    check = CHECKS.get(name)
    return add(
        name,
        source,
        weights_dir,
        check=None if check is None else lambda path: check(path, Path(weights_dir)),
    )
