"""A small web page and JSON endpoint to try exported models; standard library only.

``GET /`` is a form: input (mask, edges or pose .npz) and exemplar, each uploaded or picked from
scenes of the demo dataset's generator, a checkpoint and a domain. ``POST /translate`` answers with
the same page showing the output and the warped exemplar as base64 PNGs; ``POST /api/translate``
takes the same form and answers JSON, for scripts. A request body over ``max_upload_bytes`` is
refused with HTTP 413, an image over ``max_pixels`` or any unusable file with HTTP 400 and the
file's one-line :class:`~cocosnet.io.ImageProblem` reason. Nothing is unpickled: models load from
safetensors + JSON, pose arrays with ``allow_pickle=False`` after their header is size-checked.
"""

from __future__ import annotations

import base64
import email.message
import html
import ipaddress
import json
import math
import os
import re
import socket
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Sequence
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from .inference import DOMAINS, Translator, translate_files
from .inference.prepare import IMAGE_SUFFIXES
from .io import ImageProblem, read_image
from .preprocess.demo import render_scene

DEFAULT_MAX_PIXELS = 4096 * 4096
UPLOAD_SUFFIXES = (*IMAGE_SUFFIXES, ".npz")
_DRAIN_LIMIT = 64 * 2**20  # an over-limit body up to this size is read (and dropped) so that
# the client, still sending, gets the 413 page instead of a reset connection.


class RequestError(Exception):
    """A request the demo refuses: HTTP ``status`` and a one-line ``message`` for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, " ".join(message.split())


def find_checkpoints(root: str | os.PathLike = "models") -> list[Path]:
    """Every ``<root>/*/export`` folder that holds a ``model.json``."""
    return sorted(p.parent for p in Path(root).glob("*/export/model.json"))


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) resolves to loopback addresses only."""
    try:
        infos = socket.getaddrinfo(host, None) if host else []
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos
    )


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


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """``name -> (file name or None, bytes)`` of a ``multipart/form-data`` body (RFC 7578)."""
    head = email.message.Message()
    head["content-type"] = content_type
    boundary = head.get_boundary()
    if head.get_content_type() != "multipart/form-data" or not boundary:
        raise RequestError(400, "expected a multipart/form-data upload")
    chunks = (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise RequestError(400, "malformed multipart body (no parts or no closing boundary)")
    fields = {}
    for chunk in chunks[1:-1]:
        _padding, _, part = chunk.partition(b"\r\n")
        headers, sep, data = part.partition(b"\r\n\r\n")
        name = BytesParser(policy=HTTP).parsebytes(headers + b"\r\n\r\n")
        key = name.get_param("name", header="content-disposition")
        if not sep or not isinstance(key, str):
            raise RequestError(400, "malformed multipart part (no form-data name)")
        fields[key] = (name.get_filename(), data)
    return fields


def _safe_name(filename: str) -> str:
    """A file name safe to write in a temporary folder and to show: basename, tame characters."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", filename.replace("\\", "/").rsplit("/", 1)[-1])
    return base.lstrip(".")[:100] or "upload"


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
            display = _safe_name(filename or name)
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


class DemoServer(ThreadingHTTPServer):
    """The HTTP server of a :class:`DemoApp`; ``url`` is where it listens."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: DemoApp) -> None:
        self.app = app
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_server(
    checkpoints: Sequence[str | os.PathLike],
    *,
    host: str = "127.0.0.1",  # loopback: other machines cannot reach the demo
    port: int = 7860,  # 0: a free port (see DemoServer.url)
    device: str = "cpu",
    max_upload_bytes: int = 10 * 2**20,  # whole request body; more is HTTP 413
    max_pixels: int = DEFAULT_MAX_PIXELS,  # per uploaded image; more is HTTP 400
    examples: dict[str, tuple[bytes, bytes]] | None = None,  # None: example_scenes()
    quiet: bool = False,  # no request log on stderr
) -> DemoServer:
    """A demo server bound to ``host:port`` (not yet serving: call ``serve_forever``)."""
    if not is_loopback(host):
        warnings.warn(
            f"the demo is bound to {host or 'all interfaces'}, not loopback: anyone who can "
            "reach this machine can upload files to it",
            stacklevel=2,
        )
    app = DemoApp(
        checkpoints,
        device=device,
        max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels,
        examples=examples,
        quiet=quiet,
    )
    return DemoServer((host, port), app)


def serve(server: DemoServer) -> None:
    """Serve until Ctrl-C, then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: DemoServer
    timeout = 120  # a stalled client frees its thread

    def log_message(self, format: str, *args) -> None:
        if not self.server.app.quiet:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/":
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        self._page(200)

    def do_POST(self) -> None:
        api = self.path == "/api/translate"
        if not api and self.path != "/translate":
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        try:
            result = self.server.app.translate(self._form())
        except RequestError as err:
            status, result, error = err.status, {"error": err.message}, err.message
        else:
            status, error = 200, None
        if api:
            body = json.dumps(result).encode() + b"\n"
            self._send(status, "application/json", body)
        else:
            self._page(status, result if error is None else None, error)

    def _form(self) -> dict[str, tuple[str | None, bytes]]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(411, "send the upload with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise RequestError(411, "send the upload with a Content-Length") from None
        limit = self.server.app.max_upload_bytes
        if length > limit:
            left = length if length <= _DRAIN_LIMIT else 0
            while left > 0 and (chunk := self.rfile.read(min(2**20, left))):
                left -= len(chunk)
            self.close_connection = True
            raise RequestError(
                413,
                f"upload of {length / 2**20:.1f} MB exceeds the limit of {limit / 2**20:.1f} MB",
            )
        body = self.rfile.read(length)
        if len(body) != length:
            raise RequestError(400, "upload ended early")
        return parse_multipart(self.headers.get("Content-Type", ""), body)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _page(self, status: int, result: dict | None = None, error: str | None = None) -> None:
        body = render_page(self.server.app, result, error).encode()
        self._send(status, "text/html; charset=utf-8", body)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CoCosNet demo</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 70em; }}
fieldset {{ display: inline-block; vertical-align: top; margin: 0 1em 1em 0; }}
label {{ display: block; margin: .3em 0; }}
#error {{ color: #b00020; font-weight: bold; }}
figure {{ display: inline-block; margin: 0 1em 0 0; }}
figure img {{ height: 16em; max-width: 30em; object-fit: contain; border: 1px solid #ccc; }}
</style></head><body>
<h1>CoCosNet demo</h1>
<form id="form" method="post" action="/translate" enctype="multipart/form-data">
<fieldset><legend>Model</legend>
<label>Checkpoint <select name="checkpoint">{checkpoints}</select></label>
<label>Input kind <select name="domain">{domains}</select></label></fieldset>
<fieldset><legend>Input (mask, edges or pose .npz)</legend>
<label>Upload <input type="file" id="input" name="input" accept="{accept}"></label>
<label>or example <select name="input_example">{input_examples}</select></label></fieldset>
<fieldset><legend>Exemplar (photo)</legend>
<label>Upload <input type="file" id="exemplar" name="exemplar" accept="{accept}"></label>
<label>or example <select name="exemplar_example">{exemplar_examples}</select></label></fieldset>
<p>An upload replaces the example. Limits: {max_mb:.1f} MB per request, {max_mpx:.1f} megapixels
per image. Examples: demo-dataset scenes (class ids 0-7).</p>
<button type="submit" id="submit">Translate</button>
</form>
<p id="error">{error}</p>
{results}
<script>
document.getElementById("form").addEventListener("submit", (event) => {{
  let total = 0;
  for (const input of document.querySelectorAll("input[type=file]")) {{
    for (const file of input.files) total += file.size;
  }}
  if (total > {max_bytes}) {{
    event.preventDefault();
    document.getElementById("error").textContent =
      "upload of " + (total / 1048576).toFixed(1) + " MB exceeds the limit of {max_mb:.1f} MB";
  }}
}});
</script></body></html>
"""


def _options(values: Sequence[str], selected: str | None, none: str | None = None) -> str:
    items = ([("", none)] if none is not None else []) + [(v, v) for v in values]
    return "".join(
        f'<option value="{html.escape(v)}"{" selected" if v == selected else ""}>'
        f"{html.escape(label)}</option>"
        for v, label in items
    )


def render_page(app: DemoApp, result: dict | None = None, error: str | None = None) -> str:
    """The form, and the output and warped exemplar of ``result`` side by side."""
    names = list(app.examples)
    results = ""
    if result is not None:
        size = f"{result['width']}x{result['height']}"
        results = (
            f'<div id="results"><p>{html.escape(result["checkpoint"])}, {size}, '
            f"{result['seconds']:.2f} s</p>"
            + "".join(
                f'<figure><img id="{key}" alt="{caption}" '
                f'src="data:image/png;base64,{result[key + "_png"]}"><figcaption>{caption}'
                "</figcaption></figure>"
                for key, caption in (("output", "output"), ("warped", "warped exemplar"))
            )
            + "</div>"
        )
    return _PAGE.format(
        checkpoints=_options(app.checkpoints, (result or {}).get("checkpoint", app.checkpoints[0])),
        domains=_options(DOMAINS, (result or {}).get("domain", "auto")),
        accept=",".join(UPLOAD_SUFFIXES),
        input_examples=_options(names, names[0] if names else None, "(none)"),
        exemplar_examples=_options(names, names[1 % len(names)] if names else None, "(none)"),
        max_mb=app.max_upload_bytes / 2**20,
        max_mpx=app.max_pixels / 1e6,
        max_bytes=app.max_upload_bytes,
        error=html.escape(error or ""),
        results=results,
    )


__all__ = ["DemoApp", "DemoServer", "RequestError", "find_checkpoints", "make_server", "serve"]
