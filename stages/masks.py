"""DVC stage `masks@DS`: ADE20k semantic masks (UPerNet, ids 0..150) of every image of the
prepared dataset ROOT/DS, written to the sibling directory ROOT/DS_masks (DVC does not allow a
stage to write inside ROOT/DS, which is prepare's output).

The model is read from a local folder (never downloaded): ``--model-dir`` or, when params.yaml
has a ``preprocess.masks`` section, its ``model_dir`` (default ``weights/upernet_ade20k``). See
:mod:`cocosnet.preprocess.segmentation` for the expected files.

Usage: ``python -m stages.masks DS [--params params.yaml] [--model-dir DIR] [--sha256 HEX]
[--backend transformers|mmseg] [--short-side 512] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from cocosnet import weights
from cocosnet.preprocess.segmentation import (
    BACKENDS,
    SegmentationError,
    SegmenterSpec,
    masks_for_dataset,
)
from stages._common import load_params, require_prepared, run_dataset_stage

DEFAULT_MODEL_DIR = "weights/upernet_ade20k"


STAGE = "masks"


def main(
    dataset: str,
    params_path: str = "params.yaml",
    model_dir: str | None = None,
    *,
    sha256: str | None = None,
    backend: str | None = None,
    short_side: int | None = None,
    device: str | None = None,
    weights_dir: str = "weights",
) -> None:
    params = load_params(STAGE, params_path)
    cfg = params.preprocess.masks  # the defaults; explicit arguments win

    def pick(value, key, default):
        return value if value is not None else getattr(cfg, key) or default

    paths = require_prepared(STAGE, params, dataset)
    if device is None:
        device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    spec = SegmenterSpec(
        model_dir=str(pick(model_dir, "model_dir", DEFAULT_MODEL_DIR)),
        backend=pick(backend, "backend", "transformers"),
        short_side=int(pick(short_side, "short_side", 512)),
        sha256=pick(sha256, "sha256", None),
        device=device,
    )
    registered = Path(weights_dir) / weights.spec("upernet_ade20k").filename
    if Path(spec.model_dir).resolve() == registered.resolve():
        try:  # the registered copy: verified against the digest recorded by `weights add`
            weights.resolve("upernet_ade20k", weights_dir)
        except weights.WeightsError as err:
            raise SystemExit(f"masks: {err}") from None

    def build(out):
        count, digest = masks_for_dataset(
            paths.dataset_dir,
            out,
            spec,
            workers=params.parallel.workers,
            dask_address=params.parallel.dask_address,
            max_pixels=params.data.max_pixels,
        )
        return {
            "masks": count,
            "backend": spec.backend,
            "model_dir": spec.model_dir,
            "weights_sha256": digest,
        }

    errors = (SegmentationError, ValueError)  # ImageProblem names the file
    run_dataset_stage(STAGE, dataset, params, paths.masks_dir, build, errors)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.masks", description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml", dest="params_path")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--sha256", default=None, help="expected sha256 of the weight file")
    parser.add_argument("--backend", choices=BACKENDS, default=None)
    parser.add_argument("--short-side", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = vars(parser.parse_args(argv))
    main(args.pop("dataset"), args.pop("params_path"), args.pop("model_dir"), **args)


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage("masks", cli, [sys.argv[1:]])
