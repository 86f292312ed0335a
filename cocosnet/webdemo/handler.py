"""The web demo's HTTP request handler: ``GET /``, ``POST /translate``, ``POST /api/translate``."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

from .forms import RequestError, parse_multipart
from .page import render_page

if TYPE_CHECKING:
    from .server import DemoServer

_DRAIN_LIMIT = 64 * 2**20  # an over-limit body up to this size is read (and dropped) so that
# the client, still sending, gets the 413 page instead of a reset connection.


class DemoHandler(BaseHTTPRequestHandler):
    """Serves the form and the translations of ``self.server.app``."""

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
