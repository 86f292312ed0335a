"""A small web page and JSON endpoint to try exported models; standard library only.

``GET /`` is a form: input (mask, edges or pose .npz) and exemplar, each uploaded or picked from
scenes of the demo dataset's generator, a checkpoint and a domain. ``POST /translate`` answers with
the same page showing the output and the warped exemplar as base64 PNGs; ``POST /api/translate``
takes the same form and answers JSON, for scripts. A request body over ``max_upload_bytes`` is
refused with HTTP 413, an image over ``max_pixels`` or any unusable file with HTTP 400 and the
file's one-line :class:`~cocosnet.io.ImageProblem` reason. Nothing is unpickled: models load from
safetensors + JSON, pose arrays with ``allow_pickle=False`` after their header is size-checked.
"""

from .app import DEFAULT_MAX_PIXELS, DemoApp, example_scenes, find_checkpoints
from .forms import UPLOAD_SUFFIXES, RequestError, parse_multipart
from .page import render_page
from .server import DemoServer, is_loopback, make_server, serve

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "UPLOAD_SUFFIXES",
    "DemoApp",
    "DemoServer",
    "RequestError",
    "example_scenes",
    "find_checkpoints",
    "is_loopback",
    "make_server",
    "parse_multipart",
    "render_page",
    "serve",
]
