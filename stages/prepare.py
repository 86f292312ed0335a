"""DVC stage `prepare@DS`: build (demo) or validate and index a dataset into ROOT/DS with
manifest.parquet and quarantine.csv."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from cocosnet.config import parse_params
from cocosnet.data.demo import prepare_demo
from cocosnet.data.prepare import write_prepared

ADAPTERS = {"demo": lambda root, data: prepare_demo(root, data.demo, data.max_pixels)}


def main(dataset: str, params_path: str = "params.yaml") -> None:
    data = parse_params(yaml.safe_load(Path(params_path).read_text())).data
    if dataset not in ADAPTERS:
        raise SystemExit(f"prepare: unknown dataset {dataset!r}; known: {sorted(ADAPTERS)}")
    root = Path(data.root) / dataset
    report = ADAPTERS[dataset](root, data)
    write_prepared(root, report)
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
    main(*sys.argv[1:])
