"""Dataset manifests: one Parquet table per prepared dataset, one row per sample.

Columns: ``id`` (unique), ``split`` (train/val/test), ``image`` and ``label`` (paths relative to
the data root; ``label`` may be null), ``width``, ``height`` and ``sha256`` of the image file.
Paths are validated on the way in and out: absolute paths and paths that leave the root (``..``
or symlinks) are refused, so a manifest can never make a stage read or write outside its data.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pyarrow as pa

from ..tables import read_table, summarize_problems, write_table

if TYPE_CHECKING:
    from ..tracking import Tracker

SPLITS = ("train", "val", "test")
SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("image", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=True),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
    ]
)


class ManifestError(ValueError):
    """A manifest (or a row about to enter one) is malformed."""


def inside_root(root: str | os.PathLike, relative: str) -> Path:
    """Resolve ``relative`` under ``root``, refusing absolute paths and any escape from root."""
    if not relative or PurePosixPath(relative).is_absolute() or Path(relative).is_absolute():
        raise ManifestError(f"path {relative!r} must be relative to the data root")
    if "\x00" in relative:  # os calls would raise a bare "embedded null byte"
        raise ManifestError(f"path {relative!r} contains a NUL byte")
    if ".." in PurePosixPath(relative).parts:
        raise ManifestError(f"path {relative!r} leaves the data root ('..')")
    root_resolved = Path(root).resolve()
    full = (root_resolved / relative).resolve()
    if not full.is_relative_to(root_resolved):
        raise ManifestError(f"path {relative!r} resolves outside the data root {root_resolved}")
    return full


def _check_rows(rows: list[Mapping], root: str | os.PathLike | None) -> None:
    problems = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        where = f"row {i} (id {row.get('id')!r})"
        if not row.get("id"):
            problems.append(f"{where}: empty id")
        elif row["id"] in seen:
            problems.append(f"{where}: duplicate id, first at row {seen[row['id']]}")
        else:
            seen[row["id"]] = i
        if row.get("split") not in SPLITS:
            problems.append(f"{where}: split {row.get('split')!r} not in {SPLITS}")
        for key in ("width", "height"):
            value = row.get(key)
            if not isinstance(value, int) or value <= 0:
                problems.append(f"{where}: {key} must be a positive integer, got {value!r}")
        for key in ("image", "label"):
            value = row.get(key)
            if value is None and key == "label":
                continue
            try:
                path = inside_root(root or ".", value if isinstance(value, str) else "")
            except ManifestError as err:
                problems.append(f"{where}: {key}: {err}")
                continue
            if root is not None and not path.is_file():
                problems.append(f"{where}: {key} file {value!r} does not exist under {root}")
        if not isinstance(row.get("sha256"), str) or len(row["sha256"]) != 64:
            problems.append(f"{where}: sha256 must be a 64-character hex digest")
    if problems:
        raise ManifestError(summarize_problems("invalid manifest", problems))


def write_manifest(
    path: str | os.PathLike, rows: Iterable[Mapping], root: str | os.PathLike | None = None
) -> int:
    """Validate rows (and, with ``root``, that their files exist) and write them atomically."""
    rows = [dict(r) for r in rows]
    _check_rows(rows, root)
    write_table(path, rows, SCHEMA)
    return len(rows)


def read_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[dict]:
    """Read and validate a manifest; with ``root``, also check every referenced file exists."""
    rows = read_table(path, SCHEMA, "manifest", ManifestError)
    try:
        _check_rows(rows, root)
    except ManifestError as err:
        raise ManifestError(f"{path}: {err}") from None
    return rows


def split_digest(rows: Iterable[Mapping], splits: Iterable[str]) -> tuple[str, int]:
    """A digest of the rows in ``splits`` (their ids, files and image hashes, in id order) and
    their number: what an MLflow dataset input records, so two runs on the same data match."""
    wanted = set(splits)
    chosen = sorted(
        (r["id"], r["image"], r["label"] or "", r["sha256"]) for r in rows if r["split"] in wanted
    )
    digest = hashlib.sha256(json.dumps(chosen).encode()).hexdigest()[:16]
    return digest, len(chosen)


def log_manifest_input(
    tracker: Tracker, manifest: Path, dataset: str, splits: tuple[str, ...], context: str
) -> None:
    """The prepared data of ``splits`` as the run's MLflow dataset input (digest, rows)."""
    digest, rows = split_digest(read_manifest(manifest), splits)
    tracker.log_dataset(f"{dataset}/{'+'.join(splits)}", digest, str(manifest), rows, context)
