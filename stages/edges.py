"""DVC stage `edges@DS`: Canny edge maps (for CelebA-HQ the official 15-channel edge input) of
every image of the prepared dataset ROOT/DS, written to the sibling directory ROOT/DS_edges (DVC
does not allow a stage to write inside ROOT/DS, which is prepare's output)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cocosnet.data.prepare import MANIFEST
from cocosnet.io import atomic_dir
from cocosnet.preprocess.edges import edge_maps_for_dataset
from stages._common import load_params

# Datasets whose edge input is not plain Canny: CelebA-HQ edge uses the official 15 channels.
ENCODINGS = {"celebahq": "celebahq15"}


STAGE = "edges"


def main(dataset: str, params_path: str = "params.yaml") -> None:
    params = load_params(STAGE, params_path)
    root = Path(params.data.root)
    dataset_dir = root / dataset
    if not (dataset_dir / MANIFEST).is_file():
        raise SystemExit(f"edges: {dataset_dir / MANIFEST} not found; run prepare@{dataset} first")
    out_dir = root / f"{dataset}_edges"
    cfg = params.preprocess.edges
    try:  # built aside and swapped in: a bad image never leaves half a folder of edge maps
        with atomic_dir(out_dir) as building:
            count = edge_maps_for_dataset(
                dataset_dir,
                building,
                cfg,
                encoding=ENCODINGS.get(dataset, "canny"),
                workers=params.parallel.workers,
                dask_address=params.parallel.dask_address,
                max_pixels=params.data.max_pixels,
            )
    except ValueError as err:  # ImageProblem, ManifestError: one line naming the file
        raise SystemExit(f"edges: {err}") from None
    print(
        json.dumps(
            {"dataset": dataset, "edge_maps": count, "backend": cfg.backend, "out": str(out_dir)}
        )
    )


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage("edges", main, sys.argv[1:])
