"""Reading and writing images with validation; every output is written atomically (.files).

Images enter the pipeline only through :func:`read_image` / :func:`read_label`, which turn any
unusable file into an :class:`ImageProblem` with a one-line ``"<path>: <reason>"`` message so a
``prepare`` stage can quarantine it and keep going.  Checks, in order: the path is a non-empty
regular file; Pillow identifies it as one of :data:`IMAGE_FORMATS`; the declared pixel count is
at most ``max_pixels`` (checked from the header, BEFORE decoding; Pillow's own
``MAX_IMAGE_PIXELS`` guard is never modified, and its warning/error count as problems too); the
first frame decodes completely; EXIF orientation is applied.

Conversion policy of :func:`read_image` (result: RGB uint8, H x W x 3):

* ``RGB`` as is; ``L``, ``P`` (palette expanded), ``LA``, ``PA``, ``RGBA`` -> RGB, with any
  transparency (alpha band or ``tRNS`` colour) composited over white;
* ``CMYK`` and ``YCbCr`` -> RGB via Pillow;
* 16-bit grayscale (``I;16*``) -> ``value >> 8``; ``I`` (32-bit) is clipped to [0, 65535] and
  scaled the same way; the gray value is replicated to the three channels;
* any other mode (``1``, ``F``, ``LAB``, ...) -> ImageProblem "unsupported mode".

:func:`read_label` keeps class ids: ``L``, ``P`` (palette indices), ``1`` (0/1), ``I;16*`` and
``I`` are accepted; multi-band files are refused.  Multi-frame files use their first frame.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .files import atomic_path, one_line

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default MAX_IMAGE_PIXELS (~89.5 Mpx)

# Formats read_image / read_label will open (no EPS etc.: those can run external programs).
IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "GIF", "TIFF", "WEBP", "PPM")

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_RGB_LIKE_MODES = ("RGB", "L", "P", "LA", "PA", "RGBA")
_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}

# What Pillow raises on truncated or malformed data while parsing or decoding.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
)


class ImageProblem(ValueError):
    """An image or label file that cannot be used; ``str(err)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = one_line(reason)
        super().__init__(f"{one_line(str(self.path))}: {self.reason}")

    def __reduce__(self):  # keep picklable across worker processes
        return (type(self), (self.path, self.reason))


def _bomb_reason(exc: Exception, max_pixels: int) -> str:
    """Turn Pillow's decompression-bomb warning/error into a short reason."""
    text = str(exc)
    pixels = re.search(r"\((\d+) pixels\)", text)
    limit = re.search(r"limit of (\d+)", text)
    if pixels is None:
        return f"decompression bomb: {text.split(',')[0]}"
    count = int(pixels.group(1))
    if count > max_pixels or limit is None:
        return f"decompression bomb: {count} pixels exceeds the limit of {max_pixels}"
    return f"decompression bomb: {count} pixels exceeds Pillow's limit of {limit.group(1)}"


def _formats() -> tuple[str, ...]:
    """The allowed formats this Pillow build can actually open."""
    Image.init()
    return tuple(f for f in IMAGE_FORMATS if f in Image.OPEN)


# Leading bytes of the allowed formats (PPM: P1-P6; TIFF: both byte orders; WebP: RIFF....WEBP).
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a",
               b"II*\x00", b"MM\x00*", *(b"P%d" % i for i in range(1, 7)))  # fmt: skip


def _has_image_signature(path: Path) -> bool:
    """Whether the file starts as an allowed format does (Pillow versions differ in whether a
    header cut short is 'unidentified' or 'truncated')."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _load(path: str | os.PathLike, max_pixels: int, min_side: int) -> Image.Image:
    """Validate, identify, size-check, fully decode and EXIF-orient the first frame of ``path``."""
    p = Path(path)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageProblem(p, "file not found") from None
    except OSError as exc:
        raise ImageProblem(p, f"cannot access file ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ImageProblem(p, "not a regular file")
    if st.st_size == 0:
        raise ImageProblem(p, "zero-byte file")

    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that.  While opening, its
    # warning is ignored because the size check below (with our own limit) follows at once;
    # while decoding it is an error unless the caller's limit is looser than Pillow's.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    bomb_warning = "error" if pillow_limit is None or max_pixels <= pillow_limit else "ignore"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(p, formats=_formats())
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageProblem(p, _bomb_reason(exc, max_pixels)) from exc
        except Image.UnidentifiedImageError as exc:
            if _has_image_signature(p):  # a known format whose header cannot be parsed
                raise ImageProblem(p, "truncated or corrupt image data") from exc
            raise ImageProblem(p, "not an image (cannot identify format)") from exc
        except PermissionError as exc:
            raise ImageProblem(p, f"cannot read file ({exc.strerror or exc})") from exc
        except MemoryError as exc:
            raise ImageProblem(p, "out of memory while reading the header") from exc
        except _DECODE_ERRORS as exc:
            raise ImageProblem(p, "truncated or corrupt image data") from exc

        with img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageProblem(
                    p,
                    f"decompression bomb: {width}x{height} pixels exceeds the limit of "
                    f"{max_pixels}",
                )
            if min(width, height) < min_side:
                raise ImageProblem(
                    p, f"too small: {width}x{height} (minimum {min_side}x{min_side})"
                )
            warnings.simplefilter(bomb_warning, Image.DecompressionBombWarning)
            try:
                img.load()  # Image.open leaves the file on its first frame
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise ImageProblem(p, _bomb_reason(exc, max_pixels)) from exc
            except MemoryError as exc:
                raise ImageProblem(p, "out of memory while decoding") from exc
            except _DECODE_ERRORS as exc:
                raise ImageProblem(p, "truncated or corrupt image data") from exc
            try:
                return ImageOps.exif_transpose(img)  # always a detached copy
            except _DECODE_ERRORS as exc:
                raise ImageProblem(p, "corrupt EXIF orientation data") from exc


def _gray16_to_rgb(img: Image.Image) -> np.ndarray:
    """Scale a 16/32-bit grayscale image to 8 bit by the full 16-bit range and replicate it."""
    values = np.asarray(img).astype(np.int64)
    gray = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 8,
) -> np.ndarray:
    """Read an image file as an RGB uint8 H x W x 3 array, or raise ImageProblem."""
    img = _load(path, max_pixels, min_side)
    mode = img.mode
    if mode in _RGB_LIKE_MODES:
        if img.has_transparency_data:
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, img.convert("RGBA"))
        arr = np.array(img.convert("RGB"), dtype=np.uint8)
    elif mode in ("CMYK", "YCbCr"):
        arr = np.array(img.convert("RGB"), dtype=np.uint8)
    elif mode in _SIXTEEN_BIT_MODES:
        arr = _gray16_to_rgb(img)
    else:
        raise ImageProblem(path, f"unsupported mode {mode!r}")
    return np.ascontiguousarray(arr.reshape(img.height, img.width, 3))


def read_label(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    num_classes: int | None = None,
) -> np.ndarray:
    """Read a single-channel label map of class ids as a 2-D uint8 (or int32) array."""
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    img = _load(path, max_pixels, min_side=1)
    mode = img.mode
    if mode in ("L", "P", "1"):
        ids = np.array(img, dtype=np.uint8)
    elif mode in _SIXTEEN_BIT_MODES:
        ids = np.asarray(img).astype(np.int64)
        if ids.min() < 0:
            raise ImageProblem(path, f"negative class id {int(ids.min())}")
    elif len(img.getbands()) > 1:
        raise ImageProblem(path, f"label map must be single-channel (got mode {mode})")
    else:
        raise ImageProblem(path, f"unsupported label mode {mode!r}")
    top = int(ids.max())
    if num_classes is not None and top >= num_classes:
        raise ImageProblem(path, f"class id {top} out of range [0, {num_classes})")
    return np.ascontiguousarray(ids.astype(np.uint8 if top < 256 else np.int32))


def _save_format(path: Path, format: str | None) -> str:
    """Pillow format name for ``path``: the explicit ``format`` or one implied by the suffix."""
    if format is None:
        fmt = _SAVE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(f"{path}: cannot infer image format from suffix {path.suffix!r}")
        return fmt
    fmt = format.upper()
    fmt = "JPEG" if fmt == "JPG" else fmt
    if fmt not in ("PNG", "JPEG"):
        raise ValueError(f"unsupported output format {format!r} (PNG or JPEG)")
    return fmt


def write_image(
    path: str | os.PathLike,
    array: np.ndarray,
    *,
    format: str | None = None,
    quality: int = 95,
) -> None:
    """Atomically write an RGB uint8 H x W x 3 (or H x W uint8 label) array as PNG or JPEG."""
    path = Path(path)
    if not isinstance(array, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected dtype uint8, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"expected shape HxWx3 or HxW, got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"empty image, shape {array.shape}")
    fmt = _save_format(path, format)
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    img = Image.fromarray(np.ascontiguousarray(array))
    options = {"quality": quality} if fmt == "JPEG" else {}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        img.save(fh, format=fmt, **options)
        fh.flush()
        os.fsync(fh.fileno())


PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")  # what the metrics read from a folder


def image_files(
    folder: str | os.PathLike, suffixes: tuple[str, ...] = PHOTO_SUFFIXES
) -> list[Path]:
    """The image files directly in ``folder`` (by suffix, case-insensitive), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a directory")
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes),
        key=lambda p: p.name,
    )
