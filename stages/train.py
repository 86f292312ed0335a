"""DVC stage `train@DS`: train CoCosNet on the prepared ROOT/DS with the exemplars of ROOT/DS_index.

Writes models/DS/export (safetensors + model.json), metrics/train_DS.json (with the MLflow run
id) and metrics/train_curve_DS.csv: the stage's outputs. Checkpoints live beside them in
models/DS/checkpoints/<fingerprint>/, a resume area that is not an output: `runtime.resume: auto`
continues an interrupted training of the same configuration and code, DVC's run-cache can
restore the outputs of an earlier configuration, and changing configurations never deletes
another configuration's checkpoints. When params ask for more than one process the stage
re-launches itself under torchrun, so `dvc repro` is the same command on a laptop and a GPU node.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from cocosnet.config import Params
from cocosnet.io import write_text_atomic
from cocosnet.metrics.correspondence import warp_accuracy
from cocosnet.models.vgg import load_vgg19
from cocosnet.preprocess.demo import DEMO_OBJECT_CLASSES
from cocosnet.sourcecode import import_closure
from cocosnet.training import distributed
from cocosnet.training.checkpoint import resumable, source_digest, training_fingerprint
from cocosnet.training.data import default_condition, heldout_pairs, training_examples
from cocosnet.training.loop import TrainResult, total_steps, train
from cocosnet.weights import WeightsError
from stages._common import load_params

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS, EXPORT = "checkpoints", "export"
# Classes whose pixels `warp_accuracy_objects` scores.
OBJECT_CLASSES = {"demo": DEMO_OBJECT_CLASSES}


def _vgg(params: Params, weights_dir: str):
    """The Caffe VGG19 for the paper's losses, or None (and why) where params allow it."""
    if params.loss.vgg == "off":
        return None, "loss.vgg is off"
    try:
        return load_vgg19("caffe", weights_dir), None
    except WeightsError as err:
        if params.loss.vgg == "required":
            raise SystemExit(f"train: {err}") from None
        return None, str(err).splitlines()[0]


def _curve_csv(history: list[dict[str, float]]) -> str:
    keys = sorted({k for row in history for k in row} - {"step"})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *keys])
    for row in history:
        writer.writerow([int(row["step"]), *(row.get(k, "") for k in keys)])
    return out.getvalue()


def _held_out_accuracy(params: Params, dataset: str, export_dir: Path) -> dict:
    from cocosnet.models.export import load_generator

    _, corr, _ = load_generator(export_dir)
    pairs = heldout_pairs(
        dataset,
        params.data.root,
        semantic_nc=params.model.semantic_nc,
        image_size=params.model.image_size,
        preprocess=params.train.preprocess,
        max_pixels=params.data.max_pixels,
    )
    loader = torch.utils.data.DataLoader(pairs, batch_size=16)
    torch.manual_seed(params.train.seed)  # the noise that stands in for the hidden mask
    return warp_accuracy(corr, loader, object_classes=OBJECT_CLASSES.get(dataset, ()))


def _mlflow_params(resolved: dict) -> dict[str, str]:
    """What a training run logs as MLflow params: the sections its result depends on."""
    from cocosnet import tracking

    return tracking.flatten_params({k: resolved[k] for k in ("model", "loss", "train")})


def main(dataset: str, params_path: str = "params.yaml", weights_dir: str = "weights") -> None:
    params = load_params("train", params_path)
    cfg, runtime = params.train, params.runtime
    if cfg.nproc_per_node * cfg.nnodes > 1 and "WORLD_SIZE" not in os.environ:
        cmd = distributed.torchrun_command(
            cfg, runtime, ["stages.train", dataset, params_path, weights_dir]
        )
        raise SystemExit(subprocess.call(cmd))
    info = distributed.dist_info_from(os.environ)
    root = Path(params.data.root)
    out_dir = Path("models") / dataset
    condition = default_condition(dataset, cfg.condition)
    vgg, no_vgg_reason = _vgg(params, weights_dir)
    examples = training_examples(
        dataset,
        root,
        semantic_nc=params.model.semantic_nc,
        image_size=params.model.image_size,
        cfg=cfg,
        condition=condition,
        max_pixels=params.data.max_pixels,
    )
    resolved = params.model_dump(mode="json")
    code = source_digest(import_closure(Path(__file__), REPO), REPO)
    key = training_fingerprint(params.model, params.loss, cfg, code=code)
    checkpoint_dir = out_dir / CHECKPOINTS / key
    total = total_steps(len(examples), cfg, info.world_size)
    previous = resumable(checkpoint_dir, total) if runtime.resume == "auto" else None
    # The MLflow run continues only where its params stay the same (a longer max_steps, say,
    # continues the checkpoint in a new run, since MLflow params cannot change).
    run_id = None
    if previous is not None and previous[1].get("run_id"):
        before = json.loads(previous[1]["config"])
        if _mlflow_params(before) == _mlflow_params(resolved):
            run_id = previous[1]["run_id"]

    stop = {"requested": False}

    def request_stop(signum, frame):  # finish the step, write a checkpoint, exit
        stop["requested"] = True

    signal.signal(signal.SIGTERM, request_stop)
    tracker = None
    if info.is_main:
        from cocosnet import tracking

        tags = {
            tracking.TAG_GIT_COMMIT: tracking.git_commit(REPO) or "unknown",
            tracking.TAG_DVC_STAGE: f"train@{dataset}",
            "dataset": dataset,
            "condition": condition,
            "code_digest": code,
            "vgg_losses": "off: " + no_vgg_reason if no_vgg_reason else "on",
        }
        tags |= {f"runtime.{k}": str(v) for k, v in runtime.model_dump().items()}
        if previous is not None and run_id is None:
            tags["resumed_from_checkpoint"] = f"{previous[0]} (run {previous[1].get('run_id')})"
        tracker = tracking.Tracker(
            tracking.resolve_tracking_uri(params.tracking.uri, REPO),
            params.tracking.experiment,
            run_name=f"train@{dataset}",
            run_id=run_id,
            tags=tags,
            params=_mlflow_params(resolved),
            flush_every=max(1, 50 // runtime.log_every),
        )
        tracker.log_dict(resolved, "config.json")
    try:
        result: TrainResult = train(
            examples,
            model_cfg=params.model,
            loss_cfg=params.loss,
            cfg=cfg,
            runtime=runtime,
            checkpoint_dir=checkpoint_dir,
            export_dir=out_dir / EXPORT,
            fingerprint=key,
            previous=previous,
            vgg=vgg,
            info=info,
            tracker=tracker,
            resolved_config=resolved,
            stop_requested=lambda: stop["requested"],
            run_id=tracker.run_id if tracker else None,
        )
    except BaseException:
        if tracker is not None:
            tracker.close("FAILED")
        raise
    if not info.is_main:
        return
    if result.stopped != "finished":
        tracker.close("KILLED")
        raise SystemExit(f"train: interrupted at step {result.steps}; rerun to resume")
    summary = {
        "dataset": dataset,
        "mlflow_run_id": tracker.run_id,
        "steps": result.steps,
        "epochs": result.epochs_started,
        "resumed_from_step": result.resumed_from,
        "seconds": round(result.seconds, 1),
        "losses": result.loss_set,
        "vgg_losses_off_reason": no_vgg_reason,
        "final": {
            k: round(v, 5) for k, v in (result.history[-1] if result.history else {}).items()
        },
    }
    if condition == "label":
        acc = _held_out_accuracy(params, dataset, result.export_dir)
        summary["held_out"] = acc
        numbers = {f"eval/{k}": float(v) for k, v in acc.items() if isinstance(v, int | float)}
        tracker.log_metrics({k: v for k, v in numbers.items() if v == v}, result.steps)
    tracker.log_artifact(result.export_dir, "model")
    if result.checkpoint is not None:
        tracker.log_artifact(result.checkpoint, "checkpoints")
    tracker.close("FINISHED")
    write_text_atomic(Path("metrics") / f"train_curve_{dataset}.csv", _curve_csv(result.history))
    write_text_atomic(
        Path("metrics") / f"train_{dataset}.json", json.dumps(summary, indent=2, default=str) + "\n"
    )
    print(json.dumps({k: summary[k] for k in ("dataset", "steps", "mlflow_run_id", "losses")}))


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage("train", main, sys.argv[1:])
