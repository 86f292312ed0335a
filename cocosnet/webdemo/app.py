"""The web demo's translations, independent of the page: uploaded files checked (size, type,
pixel count from the header), then translated with lazily loaded, cached models."""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..formats.demo_scenes import render_scene
from ..inference import DOMAINS, Translator, translate_files
from ..inference.domain import resolve_domain
from ..inference.prepare import IMAGE_SUFFIXES
from ..io import ImageProblem, read_image, read_label
from ..visualize import colour_labels

DEFAULT_MAX_PIXELS = 4096 * 4096
UPLOAD_SUFFIXES = (*IMAGE_SUFFIXES, ".npz")


class DemoError(Exception):
    """A request the demo refuses, with a one-line ``message`` for the user."""

    def __init__(self, message: str) -> None:
        self.message = " ".join(message.split())
        super().__init__(self.message)


@dataclass(frozen=True)
class DemoResult:
    """One translation: the four pictures shown side by side (H x W x 3 uint8; ``input`` is
    None where the input is not a picture, a pose array) and what produced them."""

    input: np.ndarray | None
    exemplar: np.ndarray
    output: np.ndarray
    warped: np.ndarray
    checkpoint: str
    domain: str
    seconds: float

    @property
    def caption(self) -> str:
        height, width = self.output.shape[:2]
        return f"{self.checkpoint}, {self.domain}, {width}x{height}, {self.seconds:.2f} s"


def find_checkpoints(root: str | os.PathLike = "models") -> list[Path]:
    """Every ``<root>/*/export`` folder that holds a ``model.json``."""
    return sorted(p.parent for p in Path(root).glob("*/export/model.json"))


def write_examples(folder: str | os.PathLike, count: int = 4, size: int = 256) -> list[Path]:
    """Demo-generator scenes (8 classes) as ``sceneN_mask.png`` / ``sceneN_photo.png`` in
    ``folder``; returns the [mask, photo, ...] paths in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        photo, mask, _ = render_scene(i, 0, size)
        for kind, array in (("mask", mask), ("photo", photo)):
            paths.append(folder / f"scene{i}_{kind}.png")
            Image.fromarray(array).save(paths[-1])
    return paths


def safe_name(filename: str) -> str:
    """A file name safe to write in a temporary folder and to show: basename, tame characters."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", filename.replace("\\", "/").rsplit("/", 1)[-1])
    return base.lstrip(".")[:100] or "upload"


class DemoApp:
    """Translates uploaded files with lazily loaded, cached models, one request at a time."""

    def __init__(
        self,
        checkpoints: Sequence[str | os.PathLike],
        *,
        device: str = "cpu",
        max_upload_bytes: int = 10 * 2**20,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.checkpoints = [str(c) for c in checkpoints]
        if not self.checkpoints:
            raise ValueError("no checkpoint given")
        for ckpt in self.checkpoints:
            if not (Path(ckpt) / "model.json").is_file():
                raise FileNotFoundError(f"{ckpt}: no model.json (not an exported model folder)")
        if max_upload_bytes < 1 or max_pixels < 1:
            raise ValueError("max_upload_bytes and max_pixels must be positive")
        self.device, self.max_upload_bytes, self.max_pixels = device, max_upload_bytes, max_pixels
        self._translators: dict[str, Translator] = {}
        self._lock = threading.Lock()  # one translation at a time bounds memory

    def translate(
        self,
        input_path: str | os.PathLike | None,
        exemplar_path: str | os.PathLike | None,
        checkpoint: str | None = None,
        domain: str | None = None,
    ) -> DemoResult:
        """Check both files, translate them; any refusal is a :class:`DemoError`."""
        checkpoint = checkpoint or self.checkpoints[0]
        if checkpoint not in self.checkpoints:
            raise DemoError(f"unknown checkpoint {checkpoint!r}")
        domain = domain or "auto"
        if domain not in DOMAINS:
            raise DemoError(f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="cocosnet-demo-") as tmp:
            out, warped = Path(tmp, "output.png"), Path(tmp, "warped.png")
            try:
                inp = self._upload(input_path, "input", Path(tmp))
                exemplar = self._upload(exemplar_path, "exemplar", Path(tmp))
                with self._lock:
                    translator = self._translator(checkpoint)
                    output = translate_files(
                        translator, inp, exemplar, out, warped_path=warped, domain=domain
                    )
                resolved = resolve_domain(inp, translator.semantic_nc, domain)
                shown = _shown_input(inp, resolved, translator.semantic_nc)
                return DemoResult(
                    shown,
                    read_image(exemplar),
                    output,
                    read_image(warped),
                    checkpoint,
                    resolved,
                    round(time.perf_counter() - start, 3),
                )
            except (ImageProblem, ValueError, FileNotFoundError) as err:
                raise DemoError(str(err).replace(f"{tmp}{os.sep}", "")) from None

    def _translator(self, checkpoint: str) -> Translator:
        if checkpoint not in self._translators:
            try:
                self._translators[checkpoint] = Translator(checkpoint, device=self.device)
            except (ValueError, FileNotFoundError) as err:
                raise DemoError(f"cannot load {checkpoint}: {err}") from None
        return self._translators[checkpoint]

    def _upload(self, source: str | os.PathLike | None, name: str, tmp: Path) -> Path:
        """Copy upload ``source`` to ``tmp/name/<safe file name>`` after checking its size and
        type; an absent, empty or unreadable upload is refused, never replaced."""
        if source is None or str(source) == "":
            raise DemoError(f"no {name}: upload a file or pick an example")
        display = f"{name}/{safe_name(Path(source).name)}"
        try:
            size = os.path.getsize(source)
        except OSError as err:
            raise DemoError(f"{display}: cannot read the upload ({err.strerror})") from None
        if size == 0:
            raise DemoError(f"{display}: empty file (0 bytes)")
        if size > self.max_upload_bytes:
            limit = _amount(self.max_upload_bytes)
            raise DemoError(f"{display}: {_amount(size)} exceed the limit of {limit}")
        path = tmp / display
        if path.suffix.lower() not in UPLOAD_SUFFIXES:
            raise DemoError(f"{display}: unsupported file type (use {', '.join(UPLOAD_SUFFIXES)})")
        path.parent.mkdir()
        shutil.copyfile(source, path)
        if path.suffix.lower() == ".npz":
            self._check_npz(path)
        else:
            try:  # the pixel limit is checked from the header, before decoding
                read_image(path, max_pixels=self.max_pixels, min_side=1)
            except ImageProblem as err:
                if not err.reason.startswith("unsupported mode"):  # e.g. 1-bit edges: fine
                    raise
        return path

    def _check_npz(self, path: Path) -> None:
        """Refuse a pose .npz whose array would exceed the pixel limit, from its header only."""
        try:
            with zipfile.ZipFile(path) as zf, zf.open("pose.npy") as f:
                version = np.lib.format.read_magic(f)
                read = getattr(np.lib.format, f"read_array_header_{version[0]}_0", None)
                if read is None:
                    raise ValueError(f"unsupported .npy version {version}")
                shape = read(f)[0]
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as err:
            raise ImageProblem(path, f"not a rendered pose .npz with key 'pose' ({err})") from None
        if len(shape) != 3 or shape[0] * shape[1] > self.max_pixels or math.prod(shape) > 2**31:
            raise ImageProblem(path, f"pose array {shape} exceeds {self.max_pixels} pixels")


def _amount(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 // 10 else f"{size:,} bytes"


def _shown_input(path: Path, domain: str, semantic_nc: int) -> np.ndarray | None:
    """The input as a picture: a class-id mask in the palette of the training grids (its ids
    are invisible as grey levels), edges and photos as they are, a pose array not at all."""
    if domain == "label":
        return colour_labels(read_label(path), semantic_nc)
    if domain == "pose":
        return None
    if domain == "edges":  # 0/1, 0/255 or 16-bit: stretched for display
        values = read_label(path).astype(np.float32)
        grey = (values * (255 / max(float(values.max()), 1.0))).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return read_image(path)
