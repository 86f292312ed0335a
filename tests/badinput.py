"""A bad-input corpus, generated into a folder by the tests (nothing of it is in git).

Each ``make_*`` function writes its items and returns them as :class:`Item` (file name, what it
is, and whether a stage must accept it). Every file is small: the decompression bomb is a
complete, valid 1-bit PNG of 30000 x 30000 zeros (~110 KB) that would decode to 900 Mpx.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

BOMB_SIDE = 30_000


@dataclass(frozen=True)
class Item:
    """One corpus file: ``name`` (relative to the corpus folder), what it is, and the fragment
    the one-line reason must contain (None: the item is valid and must go through)."""

    name: str
    what: str
    reason: str | None = None


def gradient(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth RGB uint8 picture (JPEG-friendly), different per seed."""
    y, x = np.mgrid[0:height, 0:width]
    phase = seed * 37
    return np.stack(
        [(x * 255 // (width - 1) + phase) % 256, y * 255 // (height - 1), (x + y + phase) % 256],
        -1,
    ).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb_png(path: Path, side: int = BOMB_SIDE) -> Path:
    """A valid 1-bit grayscale PNG of side x side zeros: a tiny file, a huge image."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )
    return path


def _truncated(path: Path, fmt: str) -> None:
    Image.fromarray(gradient(seed=9)).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _save(img: Image.Image, fmt: str):
    return lambda p: img.save(p, format=fmt)


# stem -> (what it is, reason fragment or None when valid, writer of the file)
IMAGES = {
    "valid_rgb": ("RGB PNG", None, lambda p: _save(Image.fromarray(gradient()), "PNG")(p)),
    "valid_jpeg": ("RGB JPEG", None, lambda p: _save(Image.fromarray(gradient(seed=1)), "JPEG")(p)),
    "cmyk": (
        "CMYK JPEG",
        None,
        lambda p: _save(Image.fromarray(gradient(seed=2)).convert("CMYK"), "JPEG")(p),
    ),
    "gray16": (
        "16-bit grayscale PNG",
        None,
        lambda p: _save(Image.fromarray(gradient(seed=3)[..., 0].astype(np.uint16) * 257), "PNG")(
            p
        ),
    ),
    "palette": (
        "palette PNG",
        None,
        lambda p: _save(Image.fromarray(gradient(seed=4)).convert("P"), "PNG")(p),
    ),
    "grayscale": (
        "8-bit grayscale PNG",
        None,
        lambda p: _save(Image.fromarray(gradient(seed=5)[..., 1]), "PNG")(p),
    ),
    "rgba": (
        "RGBA PNG",
        None,
        lambda p: _save(Image.fromarray(gradient(seed=6)).convert("RGBA"), "PNG")(p),
    ),
    "truncated_jpeg": ("JPEG cut in half", "truncated or corrupt", lambda p: _truncated(p, "JPEG")),
    "truncated_png": ("PNG cut in half", "truncated or corrupt", lambda p: _truncated(p, "PNG")),
    "zero_byte": ("empty file", "zero-byte file", lambda p: p.write_bytes(b"")),
    "text": ("text file named as an image", "not an image", lambda p: p.write_text("hello\n")),
    "bomb": (
        f"decompression bomb ({BOMB_SIDE}x{BOMB_SIDE} 1-bit PNG)",
        "decompression bomb",
        write_bomb_png,
    ),
    "one_pixel": (
        "1x1 image",
        "too small: 1x1",
        lambda p: _save(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")(p),
    ),
}


def make_images(folder: Path, suffix: str = ".png", stems=None) -> list[Item]:
    """Photos (:data:`IMAGES`): valid ones in every odd mode Pillow reads, and unusable files.

    Every item gets ``suffix`` whatever its real format, as a mislabelled download would."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for stem in stems or IMAGES:
        what, reason, write = IMAGES[stem]
        write(folder / f"{stem}{suffix}")
        items.append(Item(f"{stem}{suffix}", what, reason))
    return items


def blocky_label(height: int, width: int, top: int, seed: int = 0) -> np.ndarray:
    """Class ids 0..top in 4x4 blocks."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, top + 1, ((height + 3) // 4, (width + 3) // 4))
    return coarse.repeat(4, 0).repeat(4, 1)[:height, :width].astype(np.uint8)


H, W = 24, 32  # size of the ADE20k corpus photos
# stem -> (what it is, reason fragment or None when valid, label ids or None)
ADE_LABELS = {
    "ADE_train_00000001": ("valid photo and label", None, lambda: blocky_label(H, W, 20)),
    "ADE_train_00000002": ("valid photo and label", None, lambda: blocky_label(H, W, 150, 1)),
    "ADE_train_00000003": (
        "label with class id 200 (ADE20k has 151 classes)",
        "class id 200 out of range",
        lambda: np.full((H, W), 200),
    ),
    "ADE_train_00000004": (
        "label 16x16 for a 32x24 photo",
        "does not match image",
        lambda: blocky_label(16, 16, 5),
    ),
    "ADE_train_00000005": ("RGB label map", "single-channel", lambda: gradient(H, W)),
    "ADE_train_00000006": ("photo without its label", "file not found", None),
}


def make_ade20k(raw: Path) -> list[Item]:
    """An ADE20k layout (:data:`ADE_LABELS`) whose photos are fine but some label maps are not.

    Item names are the photos' paths relative to ``raw``, as prepare's quarantine reports them."""
    folder = raw / "ADEChallengeData2016" / "images" / "training"
    folder.mkdir(parents=True)
    (raw / "ADEChallengeData2016" / "images" / "validation").mkdir()
    items = []
    for i, (stem, (what, reason, ids)) in enumerate(ADE_LABELS.items()):
        Image.fromarray(gradient(H, W, seed=i)).save(folder / f"{stem}.jpg", format="JPEG")
        if ids is not None:
            Image.fromarray(ids().astype(np.uint8)).save(folder / f"{stem}.png", format="PNG")
        items.append(Item(f"ADEChallengeData2016/images/training/{stem}.jpg", what, reason))
    return items


_CANDIDATE = "10 5 0.9 0\n12 10 0.8 1\n"
_SUBSET = "0 1" + " -1" * 16 + " 1.7 2\n"
# stem -> (what it is, reason fragment or None when valid, candidate text, subset text or None)
POSES = {
    "pose_valid": ("valid keypoints", None, _CANDIDATE, _SUBSET),
    "pose_short_row": ("candidate row of 3 numbers", "expected 4 numbers", "10 5 0.9\n", _SUBSET),
    "pose_words": ("words instead of numbers", "not a number", "x y z w\n", _SUBSET),
    "pose_nan": ("NaN coordinate", "non-finite", "nan 5 0.9 0\n", _SUBSET),
    "pose_bad_index": (
        "subset points at candidate 7 of 2",
        "part 0 index 7",
        _CANDIDATE,
        "7 1" + " -1" * 16 + " 1.7 2\n",
    ),
    "pose_no_subset": ("candidate without its subset file", "file not found", _CANDIDATE, None),
    "pose_binary": ("binary garbage", "candidate.txt", "\x00\xff\x00garbage", _SUBSET),
}


def make_openpose(folder: Path) -> list[Item]:
    """OpenPose ``<name>_candidate.txt`` / ``_subset.txt`` pairs (:data:`POSES`)."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for stem, (what, reason, candidate, subset) in POSES.items():
        (folder / f"{stem}_candidate.txt").write_text(candidate, encoding="latin-1")
        if subset is not None:
            (folder / f"{stem}_subset.txt").write_text(subset)
        items.append(Item(f"{stem}_candidate.txt", what, reason))
    return items


# name -> (params.yaml text, fragment of the error); {root} is the data root
BAD_PARAMS = {
    "unknown_key": ("data:\n  root: {root}\n  laod_size: 64\n", "data.laod_size: unknown key"),
    "unknown_section": ("data:\n  root: {root}\ntrian:\n  lr_g: 1\n", "unknown params section"),
    "wrong_type": ("data:\n  root: {root}\n  load_size: big\n", "data.load_size"),
    "nan": ("data:\n  root: {root}\n  folder_val_fraction: .nan\n", "data.folder_val_fraction"),
    "not_a_mapping": ("- data\n- root\n", "params must be a mapping"),
    "bad_yaml": ("data: [root: {root}\n", "params.yaml"),
}
