"""Validate and index a dataset: every image (and label map) is decoded once; the good ones go
into the manifest, the bad ones into quarantine.csv with a one-line reason."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..files import file_sha256, write_text_atomic
from ..io import ImageProblem, read_image, read_label
from ..parallel import parallel_map
from .manifest import ManifestError, inside_root, write_manifest

MANIFEST = "manifest.parquet"
QUARANTINE = "quarantine.csv"


class PrepareError(RuntimeError):
    """Nothing usable was found in a dataset."""


@dataclass(frozen=True)
class Candidate:
    """One sample as an adapter found it on disk (paths relative to the data root)."""

    id: str
    split: str
    image: str
    label: str | None = None
    problem: str | None = None  # why it cannot be a sample (quarantined without reading it)


@dataclass
class PrepareReport:
    rows: list[dict] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def index_candidates(
    root: str | os.PathLike,
    candidates: list[Candidate],
    *,
    max_pixels: int,
    num_classes: int | None = None,
    workers: int = 1,
    dask_address: str | None = None,
) -> PrepareReport:
    """Decode and check every candidate (fanned out by cocosnet.parallel); never stops on a bad
    file. The report lists rows and quarantined files in candidate order, however many workers."""
    jobs = [(str(root), c, max_pixels, num_classes) for c in candidates]
    report = PrepareReport()
    for ok, result in parallel_map(
        check_candidate, jobs, workers=workers, dask_address=dask_address, desc="validate"
    ):
        (report.rows if ok else report.quarantined).append(result)
    return report


def check_candidate(job: tuple[str, Candidate, int, int | None]) -> tuple[bool, object]:
    """(True, manifest row) for a usable candidate, else (False, (path, one-line reason))."""
    root, c, max_pixels, num_classes = job
    try:
        image = read_image(inside_root(root, c.image), max_pixels=max_pixels)
        if c.label is not None:
            label = read_label(
                inside_root(root, c.label), max_pixels=max_pixels, num_classes=num_classes
            )
            if label.shape != image.shape[:2]:
                raise ManifestError(
                    f"label {label.shape[1]}x{label.shape[0]} does not match image "
                    f"{image.shape[1]}x{image.shape[0]}"
                )
    except ImageProblem as err:
        return False, (c.image, err.reason)
    except ManifestError as err:
        return False, (c.image, str(err))
    return True, {
        "id": c.id,
        "split": c.split,
        "image": c.image,
        "label": c.label,
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "sha256": file_sha256(inside_root(root, c.image)),
    }


def write_prepared(root: str | os.PathLike, report: PrepareReport) -> Path:
    """Write manifest.parquet and quarantine.csv under ``root``; fail if nothing is valid."""
    root = Path(root)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "reason"])
    writer.writerows(report.quarantined)
    write_text_atomic(root / QUARANTINE, buffer.getvalue())
    if not report.rows:
        raise PrepareError(
            f"no valid images in {root} ({len(report.quarantined)} quarantined, "
            f"reasons in {root / QUARANTINE})"
        )
    write_manifest(root / MANIFEST, report.rows, root)
    return root / MANIFEST
