"""The web demo's server: bound to loopback unless told otherwise (then warned)."""

from __future__ import annotations

import ipaddress
import os
import socket
import warnings
from collections.abc import Sequence
from http.server import ThreadingHTTPServer

from .app import DEFAULT_MAX_PIXELS, DemoApp
from .handler import DemoHandler


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) resolves to loopback addresses only."""
    try:
        infos = socket.getaddrinfo(host, None) if host else []
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos
    )


class DemoServer(ThreadingHTTPServer):
    """The HTTP server of a :class:`DemoApp`; ``url`` is where it listens."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: DemoApp) -> None:
        self.app = app
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, DemoHandler)

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
