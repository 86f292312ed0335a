"""DVC stage `edges@DS`: Canny edge maps (for CelebA-HQ the official 15-channel edge input) of
every image of the prepared dataset ROOT/DS, written to the sibling directory ROOT/DS_edges (DVC
does not allow a stage to write inside ROOT/DS, which is prepare's output)."""

from __future__ import annotations

import sys

from cocosnet.preprocess.edges import edge_maps_for_dataset
from stages._common import load_params, require_prepared, run_dataset_stage
from stages._datasets import adapter

STAGE = "edges"


def main(dataset: str, params_path: str = "params.yaml") -> None:
    params = load_params(STAGE, params_path)
    paths, cfg = require_prepared(STAGE, params, dataset), params.preprocess.edges
    encoding = adapter(STAGE, dataset).edge_encoding

    def build(out):
        count = edge_maps_for_dataset(
            paths.dataset_dir,
            out,
            cfg,
            encoding=encoding,
            workers=params.parallel.workers,
            dask_address=params.parallel.dask_address,
            max_pixels=params.data.max_pixels,
        )
        return {"edge_maps": count, "backend": cfg.backend}

    run_dataset_stage(STAGE, dataset, params, paths.edges_dir, build)


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage(STAGE, main, sys.argv[1:])
