"""What every stage shares at its entry point."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cocosnet.config import ConfigError, Params, parse_params_text
from cocosnet.io import os_error_message


def load_params(stage: str, params_path: str) -> Params:
    """Validated params.yaml; a missing, unreadable or invalid file stops the stage with one
    line per problem, not a traceback."""
    try:
        return parse_params_text(Path(params_path).read_text(encoding="utf-8"), params_path)
    except (OSError, UnicodeDecodeError, ConfigError) as err:
        raise SystemExit(f"{stage}: {err}") from None


def run_stage(name: str, main: Callable[..., object], argv: Sequence[str]) -> None:
    """Call a stage's ``main(*argv)``; an OSError (disk full, read-only output folder, missing
    file) ends the process with one line ``<name>: error: <path>: <reason>``, not a traceback."""
    try:
        main(*argv)
    except OSError as err:
        raise SystemExit(f"{name}: error: {os_error_message(err)}") from None
