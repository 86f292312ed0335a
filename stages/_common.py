"""What every stage shares at its entry point."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cocosnet.io import os_error_message


def run_stage(name: str, main: Callable[..., object], argv: Sequence[str]) -> None:
    """Call a stage's ``main(*argv)``; an OSError (disk full, read-only output folder, missing
    file) ends the process with one line ``<name>: error: <path>: <reason>``, not a traceback."""
    try:
        main(*argv)
    except OSError as err:
        raise SystemExit(f"{name}: error: {os_error_message(err)}") from None
