"""DVC stage `model_summary`: build the configured networks, run one training-shaped forward and
backward pass on random inputs, and write metrics/model.json (numbers: parameter counts,
resolution, correlation size, pass time). A cheap end-to-end check that params.yaml describes
a model that runs."""

from __future__ import annotations

import json
import time

import torch

from cocosnet.files import write_text_atomic
from cocosnet.metric_files import split_summary
from cocosnet.models.factory import (
    build_correspondence,
    build_discriminator,
    build_translation,
    model_info,
)
from stages._common import load_params


def main(params_path: str = "params.yaml", out: str = "metrics/model.json") -> None:
    cfg = load_params("model_summary", params_path).model
    torch.manual_seed(0)
    corr, gen, disc = build_correspondence(cfg), build_translation(cfg), build_discriminator(cfg)
    size = cfg.image_size
    classes = torch.randint(0, cfg.semantic_nc, (1, 1, size, size))
    label = torch.zeros(1, cfg.semantic_nc, size, size).scatter_(1, classes, 1.0)
    exemplar = torch.rand(1, 3, size, size) * 2 - 1
    start = time.perf_counter()
    warp = corr(label, exemplar, label, real_image=exemplar, cycle=True)
    fake = gen(label, warp.warped)
    logits = [layers[-1] for layers in disc(torch.cat([label, fake], 1))]
    sum(x.mean() for x in logits).backward()
    seconds = time.perf_counter() - start
    summary = model_info(cfg) | {"train_pass_wall_s_batch1": round(seconds, 3)}
    # A DVC metrics file: numbers only, and not the per-module table (`cocosnet model-info`
    # prints it); the preset is a param.
    numbers, _ = split_summary({k: v for k, v in summary.items() if k != "parameters_by_module"})
    write_text_atomic(out, json.dumps(numbers, indent=2) + "\n")
    print(json.dumps(summary["parameters"]))


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage("model_summary", main, ())
