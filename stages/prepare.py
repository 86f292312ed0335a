"""DVC stage `prepare@DS`: build (demo) or validate and index a dataset into ROOT/DS with
manifest.parquet and quarantine.csv."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cocosnet.config import DataConfig, ParallelConfig
from cocosnet.data.ade20k import prepare_ade20k
from cocosnet.data.celebahq import prepare_celebahq
from cocosnet.data.deepfashion import prepare_deepfashion
from cocosnet.data.demo import prepare_demo
from cocosnet.data.flickr import prepare_flickr
from cocosnet.data.folder import prepare_folder
from cocosnet.data.prepare import PrepareError, PrepareReport, write_prepared
from stages._common import load_params


def _prepare(dataset: str, out: Path, data: DataConfig, par: ParallelConfig) -> PrepareReport:
    raw = data.raw_roots.get(dataset)
    common = {
        "size": data.load_size,
        "max_pixels": data.max_pixels,
        "workers": par.workers,
        "dask_address": par.dask_address,
    }
    if dataset == "demo":
        return prepare_demo(
            out, data.demo, data.max_pixels, workers=par.workers, dask_address=par.dask_address
        )
    if dataset == "ade20k":
        return prepare_ade20k(raw, out, id_filter=data.ade20k_id_filter, **common)
    if dataset == "celebahq":
        return prepare_celebahq(raw, out, **common)
    if dataset == "deepfashion":
        return prepare_deepfashion(raw, out, **common)
    if dataset == "flickr":
        return prepare_flickr(raw, out, val_fraction=data.folder_val_fraction, **common)
    if dataset == "folder":
        return prepare_folder(raw, out, val_fraction=data.folder_val_fraction, **common)
    raise SystemExit(f"prepare: unknown dataset {dataset!r}")


STAGE = "prepare"


def main(dataset: str, params_path: str = "params.yaml") -> None:
    params = load_params(STAGE, params_path)
    data = params.data
    root = Path(data.root) / dataset
    try:
        report = _prepare(dataset, root, data, params.parallel)
        write_prepared(root, report)
    except (PrepareError, ValueError) as err:  # a bad layout or nothing valid: no traceback
        raise SystemExit(f"prepare: {err}") from None
    print(
        json.dumps(
            {
                "dataset": dataset,
                "samples": len(report.rows),
                "quarantined": len(report.quarantined),
            }
        )
    )


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage("prepare", main, sys.argv[1:])
