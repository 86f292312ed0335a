"""DVC stage `pose@DS`: OpenPose body keypoints of every image of the prepared dataset ROOT/DS,
written to the sibling directory ROOT/DS_pose: ``<id>_candidate.txt`` and ``<id>_subset.txt``
(the official DeepFashion OpenPose files), ``<id>.npz`` (key ``pose``: the 20-channel H x W x 20
uint8 pose input) and ``keypoints.parquet`` (one row per keypoint).

Needs the registered OpenPose COCO body files (``cocosnet weights add openpose_body_prototxt ...``
and ``openpose_body_caffemodel``); without them it stops with the message naming the file.
"""

from __future__ import annotations

import sys

from cocosnet.preprocess.pose import pose_for_dataset
from cocosnet.weights import WeightsError, resolve
from stages._common import load_params, require_prepared, run_dataset_stage

STAGE = "pose"


def main(dataset: str, params_path: str = "params.yaml", weights_dir: str = "weights") -> None:
    params = load_params(STAGE, params_path)
    paths, scales = require_prepared(STAGE, params, dataset), params.preprocess.pose.scales
    try:
        prototxt = resolve("openpose_body_prototxt", weights_dir)
        caffemodel = resolve("openpose_body_caffemodel", weights_dir)
    except WeightsError as err:
        raise SystemExit(f"{STAGE}: {err}") from None

    def build(out):
        count = pose_for_dataset(
            paths.dataset_dir,
            out,
            prototxt,
            caffemodel,
            scales=scales,
            workers=params.parallel.workers,
            dask_address=params.parallel.dask_address,
            max_pixels=params.data.max_pixels,
        )
        return {"images": count, "scales": list(scales)}

    run_dataset_stage(STAGE, dataset, params, paths.pose_dir, build)


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage(STAGE, main, sys.argv[1:])
