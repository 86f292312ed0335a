"""A training process for the tests: `python -m tests.train_worker DATA_ROOT OUT_DIR JSON`, also
under torchrun (each rank then saves its replica's weights as OUT_DIR/rank<r>.pt)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from cocosnet.config import parse_params
from cocosnet.training.checkpoint import previous_run, training_fingerprint
from cocosnet.training.data import training_examples
from cocosnet.training.distributed import dist_info_from
from cocosnet.training.loop import total_steps, train
from tests.helpers import demo_data


def run(data_root: str, out_dir: str, overrides: dict):
    params = parse_params(overrides)
    examples = training_examples(
        *demo_data(data_root, params.model.semantic_nc),
        image_size=params.model.image_size,
        cfg=params.train,
    )
    info = dist_info_from(os.environ)
    checkpoints = Path(out_dir) / "checkpoints"
    total = total_steps(len(examples), params.train, info.world_size)
    result = train(
        examples,
        model_cfg=params.model,
        loss_cfg=params.loss,
        cfg=params.train,
        runtime=params.runtime,
        checkpoint_dir=checkpoints,
        export_dir=Path(out_dir) / "export",
        fingerprint=training_fingerprint(params.model, params.loss, params.train, code="test"),
        previous=previous_run(checkpoints, total) if params.runtime.resume == "auto" else None,
        info=info,
        log=lambda msg: print(msg, flush=True),
    )
    state = {f"g.{k}": v for k, v in result.generator.state_dict().items()}
    state |= {f"d.{k}": v for k, v in result.discriminator.state_dict().items()}
    torch.save(state, Path(out_dir) / f"rank{info.rank}.pt")
    print(json.dumps({"rank": info.rank, "steps": result.steps, "resumed": result.resumed_from}))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
