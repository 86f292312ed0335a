"""Request validation of the web demo: refusals, ``multipart/form-data`` bodies, file names."""

from __future__ import annotations

import email.message
import re
from email.parser import BytesParser
from email.policy import HTTP

from ..inference.prepare import IMAGE_SUFFIXES

UPLOAD_SUFFIXES = (*IMAGE_SUFFIXES, ".npz")


class RequestError(Exception):
    """A request the demo refuses: HTTP ``status`` and a one-line ``message`` for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, " ".join(message.split())


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


def safe_name(filename: str) -> str:
    """A file name safe to write in a temporary folder and to show: basename, tame characters."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", filename.replace("\\", "/").rsplit("/", 1)[-1])
    return base.lstrip(".")[:100] or "upload"
