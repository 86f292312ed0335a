"""DVC stage `train@DS`: train CoCosNet on the prepared ROOT/DS with the exemplars of ROOT/DS_index.

Writes models/DS/export (safetensors + model.json), metrics/train_DS.json (numbers only),
metrics/train_run_DS.json (the MLflow run id, the loss set, the held-out per-class table) and
metrics/train_curve_DS.csv (rewritten at every logged step): the stage's outputs. Checkpoints
live beside them in models/DS/checkpoints/<fingerprint>/, a resume area that is not an output:
`runtime.resume: auto` continues an interrupted training of the same configuration and code,
DVC's run-cache can restore the outputs of an earlier configuration, and changing
configurations never deletes another configuration's checkpoints. When params ask for more
than one process the stage re-launches itself under torchrun, so `dvc repro` is the same command
on a laptop and a GPU node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cocosnet.config import Params
from cocosnet.cores import budget_env, current_budget, describe, thread_budget
from cocosnet.data.examples import heldout_pairs
from cocosnet.data.manifest import inside_root, log_manifest_input, read_manifest
from cocosnet.data.registry import adapter_for
from cocosnet.data.sample import SampleLoader
from cocosnet.files import write_text_atomic
from cocosnet.inference.pyfunc import input_example, log_translator
from cocosnet.metric_files import split_summary
from cocosnet.models.vgg import load_vgg19
from cocosnet.sourcecode import import_closure
from cocosnet.training import distributed
from cocosnet.training.checkpoint import previous_run, source_digest, training_fingerprint
from cocosnet.training.curve import curve_csv
from cocosnet.training.data import training_examples
from cocosnet.training.loop import total_steps, train
from cocosnet.training.report import (
    finish_tracking,
    held_out_accuracy,
    held_out_numbers,
    start_tracking,
    train_summary,
)
from cocosnet.weights import WeightsError
from stages._common import dataset_paths, load_params
from stages._datasets import sample_loader
from stages._tracking import mlflow_run_naming

REPO = Path(__file__).resolve().parent.parent


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


def _held_out_accuracy(
    params: Params, dataset: str, loader: SampleLoader, export_dir: Path
) -> dict:
    """Warp accuracy of the exported model on DS's held-out pairs (train@DS's quick check)."""
    paths = dataset_paths(params, dataset)
    pairs = heldout_pairs(
        loader,
        paths.manifest,
        paths.pairs,
        image_size=params.model.image_size,
        preprocess=params.train.preprocess,
    )
    return held_out_accuracy(
        export_dir,
        pairs,
        object_classes=adapter_for(dataset).object_classes,
        seed=params.train.seed,
    )


def _model_example(manifest: Path, data_dir: Path, condition: str):
    """The logged model's input example: a label map and another sample's photo (label
    datasets; other conditions' inputs are made from photos by models the export lacks)."""
    if condition != "label":
        return None
    rows = [r for r in read_manifest(manifest) if r["label"]]
    if len(rows) < 2:
        return None
    return input_example(
        inside_root(data_dir, rows[0]["label"]), inside_root(data_dir, rows[1]["image"])
    )


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # what DVC, schedulers and Ctrl-C send


def _stop_on_signal() -> Callable[[], bool]:
    """Installs SIGTERM and SIGINT handlers; the returned callable says whether one came (the
    loop then finishes its step, writes a checkpoint and stops, on every rank at once)."""
    stop = {"requested": False}

    def request_stop(signum, frame):
        stop["requested"] = True

    for sig in STOP_SIGNALS:
        signal.signal(sig, request_stop)
    return lambda: stop["requested"]


def _launch_ranks(cmd: list[str], env: dict[str, str]) -> int:
    """Run torchrun in its own session and pass it SIGTERM/SIGINT (its agent passes them to
    every rank, which checkpoint and stop), then wait for it: stopping the stage stops every
    rank, and none is left behind. Ctrl-C in a terminal reaches only this process (the new
    session), so each rank is told once."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def forward(signum, frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, forward)
    return proc.wait()


def main(dataset: str, params_path: str = "params.yaml", weights_dir: str = "weights") -> None:
    params = load_params("train", params_path)
    cfg, runtime = params.train, params.runtime
    if cfg.nproc_per_node * cfg.nnodes > 1 and "WORLD_SIZE" not in os.environ:
        cmd = distributed.torchrun_command(
            cfg, runtime, ["stages.train", dataset, params_path, weights_dir]
        )
        total = current_budget(os.environ)
        threads = thread_budget(cfg.nproc_per_node, total)  # the ranks of this node share it
        print(f"train: {describe(cfg.nproc_per_node, threads, total)}", flush=True)
        raise SystemExit(_launch_ranks(cmd, budget_env(threads, os.environ)))
    info = distributed.dist_info_from(os.environ)
    paths = dataset_paths(params, dataset)
    loader = sample_loader(params, dataset, params.model.semantic_nc, "train")
    vgg, no_vgg_reason = _vgg(params, weights_dir)
    examples = training_examples(
        loader, paths.manifest, paths.pairs, image_size=params.model.image_size, cfg=cfg
    )
    resolved = params.model_dump(mode="json")
    code = source_digest(import_closure(Path(__file__), REPO), REPO)
    fingerprint = training_fingerprint(params.model, params.loss, cfg, code=code)
    checkpoint_dir = paths.checkpoints_dir / fingerprint
    total = total_steps(len(examples), cfg, info.world_size)
    previous = previous_run(checkpoint_dir, total) if runtime.resume == "auto" else None
    stop_requested = _stop_on_signal()
    tracker = None
    if info.is_main:
        run_name, parent = mlflow_run_naming(f"train@{dataset}")
        tracker = start_tracking(
            params.tracking,
            runtime,
            resolved,
            dataset=dataset,
            condition=loader.condition,
            code_digest=code,
            no_vgg_reason=no_vgg_reason,
            previous=previous,
            repo=REPO,
            run_name=run_name,
            parent_run_id=parent,
        )
        log_manifest_input(tracker, paths.manifest, dataset, ("train",), "training")
    try:
        result = train(
            examples,
            model_cfg=params.model,
            loss_cfg=params.loss,
            cfg=cfg,
            runtime=runtime,
            checkpoint_dir=checkpoint_dir,
            export_dir=paths.export_dir,
            fingerprint=fingerprint,
            previous=previous,
            vgg=vgg,
            info=info,
            tracker=tracker,
            resolved_config=resolved,
            stop_requested=stop_requested,
            run_id=tracker.run_id if tracker else None,
            curve_file=paths.metrics("train_curve", "csv"),
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
    _report(params, dataset, loader, tracker, result, no_vgg_reason)


def _report(params: Params, dataset: str, loader: SampleLoader, tracker, result, no_vgg_reason):
    """After a finished training (rank 0): held-out accuracy, the MLflow model and run, the
    summary and the curve."""
    paths = dataset_paths(params, dataset)
    held_out = None
    if loader.condition == "label":
        held_out = _held_out_accuracy(params, dataset, loader, result.export_dir)
    summary = train_summary(
        dataset, result, run_id=tracker.run_id, no_vgg_reason=no_vgg_reason, held_out=held_out
    )
    log_translator(
        tracker,
        result.export_dir,
        registered_name=params.tracking.registered_model.format(dataset=dataset),
        example=_model_example(paths.manifest, loader.dir, loader.condition),
        metrics=held_out_numbers(held_out),
        step=result.steps,
    )
    finish_tracking(tracker, result, log_checkpoint=params.tracking.log_checkpoints)
    write_text_atomic(paths.metrics("train_curve", "csv"), curve_csv(result.history))
    numbers, record = split_summary(summary)
    write_text_atomic(paths.metrics("train"), json.dumps(numbers, indent=2) + "\n")
    write_text_atomic(paths.metrics("train_run"), json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps({k: summary[k] for k in ("dataset", "steps", "mlflow_run_id", "losses")}))


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage("train", main, sys.argv[1:])
