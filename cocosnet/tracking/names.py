"""Param and metric names and values within MLflow's limits (mlflow/utils/validation.py)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping

# MLflow's limits: log_batch sizes, param value and key lengths.
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_LENGTH = 6000
MAX_KEY_LENGTH = 250
TRUNCATION_MARKER = "...[truncated]"

# MLflow's key characters minus ':' (refused on Windows), ASCII only, so keys stay portable.
_KEY_OK = re.compile(r"^[A-Za-z0-9_.\- /]+$")
_KEY_BAD_CHAR = re.compile(r"[^A-Za-z0-9_.\- /]")


def _check_key(key: str, what: str) -> str:
    """Raise ValueError unless MLflow (on any OS) accepts ``key`` as a param/metric name."""
    norm = posixpath.normpath(key)
    if not _KEY_OK.match(key) or norm != key or norm == "." or key.startswith(("..", "/")):
        raise ValueError(f"invalid MLflow {what} name {key!r}: use letters, digits, _ - . / space")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"MLflow {what} name longer than {MAX_KEY_LENGTH} chars: {key[:60]!r}...")
    return key


def _param_value(value: object) -> str:
    text = str(value)
    if len(text) <= MAX_PARAM_LENGTH:
        return text
    return text[: MAX_PARAM_LENGTH - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def _walk(nested: Mapping, prefix: str, sep: str) -> Iterator[tuple[str, object]]:
    for key, value in nested.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:  # an empty mapping is kept as "{}"
            yield from _walk(value, name, sep)
        else:
            yield name, value


def flatten_params(nested: Mapping, prefix: str = "", sep: str = ".") -> dict[str, str]:
    """``{"train": {"lr_g": 1e-4}}`` -> ``{"train.lr_g": "0.0001"}``, within MLflow's limits.

    Lists and scalars become ``str(value)``; values over 6000 chars end in TRUNCATION_MARKER;
    characters MLflow refuses in keys become ``_`` (a resulting clash raises ValueError).
    """
    flat: dict[str, str] = {}
    for raw, value in _walk(nested, prefix, sep):
        key = _KEY_BAD_CHAR.sub("_", raw)
        if key in flat:
            raise ValueError(f"param keys clash after replacing invalid characters: {key!r}")
        flat[_check_key(key, "param")] = _param_value(value)
    return flat
