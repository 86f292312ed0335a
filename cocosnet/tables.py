"""Parquet tables with a fixed schema (manifests, pair lists), and the one-message summary of
validation problems they share."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .files import atomic_path

MAX_SHOWN = 20


def summarize_problems(title: str, problems: Sequence[str], limit: int = MAX_SHOWN) -> str:
    """``title (N problem(s)):`` then the first ``limit`` problems, one per line."""
    shown = "\n  ".join(problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{title} ({len(problems)} problem(s)):\n  {shown}{more}"


def write_table(path: str | os.PathLike, rows: list[dict], schema: pa.Schema) -> None:
    """Write already-validated rows atomically."""
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(
    path: str | os.PathLike, schema: pa.Schema, what: str, error: type[ValueError]
) -> list[dict]:
    """Rows of a Parquet file holding (at least) ``schema``'s columns, cast to its types;
    ``error`` names the file and what is wrong with it."""
    try:
        table = pq.read_table(path)
        columns = table.column_names  # decoded here: a damaged name is not UTF-8
    except (OSError, pa.ArrowException, UnicodeDecodeError) as err:
        raise error(f"{path}: not a readable Parquet {what} ({err})") from None
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise error(f"{path}: missing column(s) {missing}")
    try:
        table = table.select(schema.names).cast(schema)
    except (pa.ArrowException, ValueError, TypeError) as err:  # nulls in a non-null column
        raise error(f"{path}: columns have the wrong types or nulls ({err})") from None
    return table.to_pylist()
