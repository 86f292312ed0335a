"""DVC stage `pose@DS`: OpenPose body keypoints of every image of the prepared dataset ROOT/DS,
written to the sibling directory ROOT/DS_pose: ``<id>_candidate.txt`` and ``<id>_subset.txt``
(the official DeepFashion OpenPose files), ``<id>.npz`` (key ``pose``: the 20-channel H x W x 20
uint8 pose input) and ``keypoints.parquet`` (one row per keypoint).

Needs the registered OpenPose COCO body files (``cocosnet weights add openpose_body_prototxt ...``
and ``openpose_body_caffemodel``); without them it stops with the message naming the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cocosnet.data.prepare import MANIFEST
from cocosnet.io import atomic_dir
from cocosnet.preprocess.pose import pose_for_dataset
from cocosnet.weights import WeightsError, resolve
from stages._common import load_params

STAGE = "pose"


def main(dataset: str, params_path: str = "params.yaml", weights_dir: str = "weights") -> None:
    params = load_params(STAGE, params_path)
    scales = params.preprocess.pose.scales
    root = Path(params.data.root)
    dataset_dir = root / dataset
    if not (dataset_dir / MANIFEST).is_file():
        raise SystemExit(f"pose: {dataset_dir / MANIFEST} not found; run prepare@{dataset} first")
    try:
        prototxt = resolve("openpose_body_prototxt", weights_dir)
        caffemodel = resolve("openpose_body_caffemodel", weights_dir)
    except WeightsError as err:
        raise SystemExit(f"pose: {err}") from None
    out_dir = root / f"{dataset}_pose"
    try:  # built aside and swapped in: a bad image never leaves half a folder of pose files
        with atomic_dir(out_dir) as building:
            count = pose_for_dataset(
                dataset_dir,
                building,
                prototxt,
                caffemodel,
                scales=scales,
                workers=params.parallel.workers,
                dask_address=params.parallel.dask_address,
                max_pixels=params.data.max_pixels,
            )
    except ValueError as err:  # ImageProblem, ManifestError: one line naming the file
        raise SystemExit(f"pose: {err}") from None
    print(
        json.dumps(
            {"dataset": dataset, "images": count, "scales": list(scales), "out": str(out_dir)}
        )
    )


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage("pose", main, sys.argv[1:])
