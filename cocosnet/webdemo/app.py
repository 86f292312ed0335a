"""The web demo's translations: uploads (or example scenes) checked, then translated with
lazily loaded, cached models."""

from __future__ import annotations

import base64
import math
import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from ..formats.demo_scenes import render_scene
from ..inference import DOMAINS, Translator, translate_files
from ..io import ImageProblem, read_image
from .forms import UPLOAD_SUFFIXES, RequestError, safe_name

DEFAULT_MAX_PIXELS = 4096 * 4096


def find_checkpoints(root: str | os.PathLike = "models") -> list[Path]:
    """Every ``<root>/*/export`` folder that holds a ``model.json``."""
    return sorted(p.parent for p in Path(root).glob("*/export/model.json"))


def example_scenes(
    count: int = 6, size: int = 256, seed: int = 0
) -> dict[str, tuple[bytes, bytes]]:
    """``name -> (class-id mask PNG, photo PNG)`` of demo-generator scenes (8 classes)."""
    scenes = {}
    for i in range(count):
        photo, mask, _ = render_scene(i, seed, size)
        scenes[f"scene{i}"] = tuple(_png(a) for a in (mask, photo))
    return scenes


def _png(array: np.ndarray) -> bytes:
    buf = BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


class DemoApp:
    """Translates form uploads with lazily loaded, cached models, one request at a time."""

    def __init__(
        self,
        checkpoints: Sequence[str | os.PathLike],
        *,
        device: str = "cpu",
        max_upload_bytes: int = 10 * 2**20,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        examples: dict[str, tuple[bytes, bytes]] | None = None,
        quiet: bool = False,
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
        self.examples = example_scenes() if examples is None else examples
        self.quiet = quiet
        self._translators: dict[str, Translator] = {}
        self._lock = threading.Lock()  # one translation at a time bounds memory

    def translate(self, fields: dict[str, tuple[str | None, bytes]]) -> dict:
        """Form fields -> {checkpoint, domain, width, height, seconds, output_png, warped_png}."""
        text = {k: v.decode("utf-8", "replace") for k, (f, v) in fields.items() if f is None}
        checkpoint = text.get("checkpoint") or self.checkpoints[0]
        if checkpoint not in self.checkpoints:
            raise RequestError(400, f"unknown checkpoint {checkpoint!r}")
        domain = text.get("domain") or "auto"
        if domain not in DOMAINS:
            raise RequestError(400, f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="cocosnet-demo-") as tmp:
            out, warped = Path(tmp, "output.png"), Path(tmp, "warped.png")
            try:
                inp = self._upload(fields, text, "input", Path(tmp))
                exemplar = self._upload(fields, text, "exemplar", Path(tmp))
                with self._lock:
                    translator = self._translator(checkpoint)
                    output = translate_files(
                        translator, inp, exemplar, out, warped_path=warped, domain=domain
                    )
            except (ImageProblem, ValueError, FileNotFoundError) as err:
                raise RequestError(400, str(err).replace(f"{tmp}{os.sep}", "")) from None
            pngs = {"output_png": out.read_bytes(), "warped_png": warped.read_bytes()}
        return {
            "checkpoint": checkpoint,
            "domain": domain,
            "width": output.shape[1],
            "height": output.shape[0],
            "seconds": round(time.perf_counter() - start, 3),
        } | {k: base64.b64encode(v).decode("ascii") for k, v in pngs.items()}

    def _translator(self, checkpoint: str) -> Translator:
        if checkpoint not in self._translators:
            try:
                self._translators[checkpoint] = Translator(checkpoint, device=self.device)
            except (ValueError, FileNotFoundError) as err:
                raise RequestError(500, f"cannot load {checkpoint}: {err}") from None
        return self._translators[checkpoint]

    def _upload(self, fields, text: dict[str, str], name: str, tmp: Path) -> Path:
        """Write upload (or example) ``name`` to ``tmp/name/<file name>``; check its size."""
        filename, data = fields.get(name, (None, b""))
        if data:
            display = safe_name(filename or name)
        elif text.get(f"{name}_example") in self.examples:
            example = text[f"{name}_example"]
            data = self.examples[example][0 if name == "input" else 1]
            display = f"{example}_{'mask' if name == 'input' else 'photo'}.png"
        else:
            raise RequestError(400, f"no {name}: upload a file or pick an example")
        if Path(display).suffix.lower() not in UPLOAD_SUFFIXES:
            raise RequestError(
                400, f"{name}/{display}: unsupported file type (use {', '.join(UPLOAD_SUFFIXES)})"
            )
        path = tmp / name / display
        path.parent.mkdir()
        path.write_bytes(data)
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
