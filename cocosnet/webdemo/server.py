"""Serving the web demo: bound to loopback unless told otherwise (then warned), no telemetry,
no server-side rendering (which would need Node.js), upload size enforced by Gradio."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .app import DEFAULT_MAX_PIXELS, DemoApp, write_examples
from .page import build_page


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) resolves to loopback addresses only."""
    try:
        infos = socket.getaddrinfo(host, None) if host else []
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos
    )


def warn_unless_loopback(host: str) -> None:
    """Warn when the demo would be reachable from other machines."""
    if not is_loopback(host):
        warnings.warn(
            f"the demo is bound to {host or 'all interfaces'}, not loopback: anyone who can "
            "reach this machine can upload files to it",
            stacklevel=3,
        )


@dataclass
class DemoServer:
    """A running demo: its page, where it listens, and the folder of its example files."""

    page: object  # gradio.Blocks
    url: str
    app: DemoApp
    _examples: tempfile.TemporaryDirectory

    def close(self) -> None:
        self.page.close()
        self._examples.cleanup()

    def block(self) -> None:
        """Serve until Ctrl-C or SIGTERM, then close (call from the main thread)."""
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C cannot cut the close
            self.close()


def start_server(
    checkpoints: Sequence[str | os.PathLike],
    *,
    host: str = "127.0.0.1",  # loopback: other machines cannot reach the demo
    port: int | None = 7860,  # None: the first free port from 7860
    device: str = "cpu",
    max_upload_bytes: int = 10 * 2**20,  # per file
    max_pixels: int = DEFAULT_MAX_PIXELS,  # per uploaded image
    example_count: int = 4,
    example_size: int = 256,
    quiet: bool = True,
) -> DemoServer:
    """Start the demo page in a background thread; ``DemoServer.block()`` waits on it."""
    warn_unless_loopback(host)
    app = DemoApp(
        checkpoints, device=device, max_upload_bytes=max_upload_bytes, max_pixels=max_pixels
    )
    examples = tempfile.TemporaryDirectory(prefix="cocosnet-demo-examples-")
    try:
        paths = write_examples(Path(examples.name), example_count, example_size)
        page = build_page(app, paths)
        page.queue(default_concurrency_limit=1)
        _, url, _ = page.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=True,
            share=False,
            max_file_size=max_upload_bytes,
            ssr_mode=False,
            mcp_server=False,
            pwa=False,
            quiet=quiet,
            allowed_paths=[examples.name],
        )
    except BaseException:
        examples.cleanup()
        raise
    return DemoServer(page, url, app, examples)
