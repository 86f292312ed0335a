"""The web demo: a Gradio page to try exported models (``cocosnet demo``).

Upload an input (mask, edges or pose .npz) and an exemplar, or pick a demo scene; the page shows
the input, the exemplar, the output and the warped exemplar side by side. Each file over
``max_upload_bytes`` is refused by Gradio, an image over ``max_pixels`` (read from its header) or
any empty or unusable file with the file's one-line reason; nothing is unpickled (models load
from safetensors + JSON, pose arrays with ``allow_pickle=False`` after their header is
size-checked). Scripts call the page's ``/translate`` endpoint with ``gradio_client``.
:mod:`.app` holds the checks and translations and imports no Gradio.
"""

from .app import (
    DEFAULT_MAX_PIXELS,
    UPLOAD_SUFFIXES,
    DemoApp,
    DemoError,
    DemoResult,
    find_checkpoints,
    write_examples,
)
from .page import build_page
from .server import DemoServer, is_loopback, start_server, warn_unless_loopback

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "UPLOAD_SUFFIXES",
    "DemoApp",
    "DemoError",
    "DemoResult",
    "DemoServer",
    "build_page",
    "find_checkpoints",
    "is_loopback",
    "start_server",
    "warn_unless_loopback",
    "write_examples",
]
