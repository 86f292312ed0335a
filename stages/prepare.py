"""DVC stage `prepare@DS`: build (demo) or validate and index a dataset into ROOT/DS with
manifest.parquet and quarantine.csv."""

from __future__ import annotations

import json
import sys

from cocosnet.data.prepare import PrepareError, write_prepared
from stages._common import dataset_paths, load_params
from stages._datasets import adapter

STAGE = "prepare"


def main(dataset: str, params_path: str = "params.yaml") -> None:
    params = load_params(STAGE, params_path)
    data, par = params.data, params.parallel
    found, out = adapter(STAGE, dataset), dataset_paths(params, dataset).dataset_dir
    try:
        report = found.prepare(
            data.raw_roots.get(dataset),
            out,
            size=data.load_size,
            max_pixels=data.max_pixels,
            workers=par.workers,
            dask_address=par.dask_address,
            **found.options(data),
        )
        write_prepared(out, report)
    except (PrepareError, ValueError) as err:  # a bad layout or nothing valid: no traceback
        raise SystemExit(f"{STAGE}: {err}") from None
    summary = {"dataset": dataset, "samples": len(report.rows)}
    print(json.dumps(summary | {"quarantined": len(report.quarantined)}))


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage(STAGE, main, sys.argv[1:])
