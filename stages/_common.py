"""What every stage shares at its entry point."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from cocosnet.config import ConfigError, Params, parse_params_text
from cocosnet.files import atomic_dir, os_error_message
from cocosnet.layout import DatasetPaths


def load_params(stage: str, params_path: str) -> Params:
    """Validated params.yaml; a missing, unreadable or invalid file stops the stage with one
    line per problem, not a traceback."""
    try:
        return parse_params_text(Path(params_path).read_text(encoding="utf-8"), params_path)
    except (OSError, UnicodeDecodeError, ConfigError) as err:
        raise SystemExit(f"{stage}: {err}") from None


def dataset_paths(params: Params, dataset: str) -> DatasetPaths:
    return DatasetPaths.of(params.data.root, dataset)


def require_prepared(stage: str, params: Params, dataset: str) -> DatasetPaths:
    """DS's paths, once prepare@DS has written its manifest (else one line saying so)."""
    paths = dataset_paths(params, dataset)
    if not paths.manifest.is_file():
        raise SystemExit(f"{stage}: {paths.manifest} not found; run prepare@{dataset} first")
    return paths


def run_dataset_stage(
    stage: str,
    dataset: str,
    params: Params,
    out_dir: Path,
    build: Callable[[Path], dict],
    errors: tuple[type[Exception], ...] = (ValueError,),
) -> None:
    """The shape of the per-dataset preprocessing stages (edges, pose, masks): check that
    prepare@DS ran, build the output aside and swap it in (a bad image never leaves half a
    folder), turn a bad input into one line, print ``build``'s summary as JSON."""
    require_prepared(stage, params, dataset)
    try:
        with atomic_dir(out_dir) as building:
            summary = build(building)
    except errors as err:  # ImageProblem, ManifestError: one line naming the file
        raise SystemExit(f"{stage}: {err}") from None
    print(json.dumps({"dataset": dataset, **summary, "out": str(out_dir)}))


def run_stage(name: str, main: Callable[..., object], argv: Sequence[str]) -> None:
    """Call a stage's ``main(*argv)``; an OSError (disk full, read-only output folder, missing
    file) ends the process with one line ``<name>: error: <path>: <reason>``, not a traceback."""
    try:
        main(*argv)
    except OSError as err:
        raise SystemExit(f"{name}: error: {os_error_message(err)}") from None
