"""DVC stage `evaluate@DS`: translate the evaluation split of ROOT/DS with its top-1 retrieved
exemplars using the trained models/DS/export, then compute the paper's metrics (FID, SWD,
semantic consistency, style relevance) and the warp accuracy.

Writes eval/DS/images (fake/, real/, warped/, exemplar/, label/, exemplar_label/),
eval/DS/cache (FID reference statistics keyed by their inputs; kept between runs and not a DVC
output, so DVC's run-cache can restore the stage),
metrics/eval_DS.json (the numbers), metrics/eval_run_DS.json (the protocol, the run ids, each
skipped metric with the reason),
metrics/eval_per_class_DS.csv (warp accuracy per class, a DVC plot) and an MLflow run with
the numbers, a preview grid and the per-class tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from cocosnet.data.examples import heldout_pairs
from cocosnet.data.manifest import log_manifest_input, read_manifest
from cocosnet.data.registry import adapter_for
from cocosnet.evaluation import evaluate_model, exemplar_label_hidden
from cocosnet.evaluation_report import (
    eval_summary,
    finish_evaluation_run,
    headlines,
    per_class_csv,
    start_evaluation_run,
)
from cocosnet.files import write_text_atomic
from cocosnet.metric_files import split_summary
from cocosnet.metrics.colour_style import class_prior
from cocosnet.models.export import load_generator
from stages._common import dataset_paths, load_params
from stages._datasets import sample_loader
from stages._tracking import mlflow_run_naming

REPO = Path(__file__).resolve().parent.parent


def _class_prior(params, loader, manifest: Path, num_classes: int):
    """Each class's mean colour over the training split (colour style relevance), or None
    where that metric is off or the input is not a label map."""
    if "colour_style" not in params.eval.metrics or loader.condition != "label":
        return None
    rows = [r for r in read_manifest(manifest, manifest.parent) if r["split"] == "train"]
    samples = (loader(r) for r in rows)
    return class_prior(((s.rgb, s.label) for s in samples if s.label is not None), num_classes)


def main(dataset: str, params_path: str = "params.yaml", weights_dir: str = "weights") -> None:
    params = load_params("evaluate", params_path)
    eval_cfg = params.eval
    paths = dataset_paths(params, dataset)
    export = paths.export_dir
    if not (export / "model.json").is_file():
        raise SystemExit(f"evaluate: {export} has no trained model; run train@{dataset}")
    model_cfg, corr, gen = load_generator(export)
    device = eval_cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    loader = sample_loader(params, dataset, model_cfg.semantic_nc, "evaluate")
    pairs = heldout_pairs(
        loader,
        paths.manifest,
        paths.pairs,
        image_size=model_cfg.image_size,
        split=eval_cfg.split,
        preprocess=params.train.preprocess,
    )
    hidden = exemplar_label_hidden(eval_cfg.exemplar_mask, params.train.mask_epoch)
    metric_size = eval_cfg.metric_size(params.model.preset)
    run_name, parent = mlflow_run_naming(f"evaluate@{dataset}")
    tracker = start_evaluation_run(
        params.tracking, eval_cfg, dataset, repo=REPO, run_name=run_name, parent_run_id=parent
    )
    try:
        log_manifest_input(tracker, paths.manifest, dataset, (eval_cfg.split,), "evaluation")
        results, folders, preview = evaluate_model(
            corr,
            gen,
            pairs,
            paths.eval_dir,
            eval_cfg,
            device=device,
            hide_exemplar_label=hidden,
            label_input=loader.condition == "label",
            num_classes=model_cfg.semantic_nc,
            object_classes=adapter_for(dataset).object_classes,
            weights_dir=Path(weights_dir),
            class_prior=_class_prior(params, loader, paths.manifest, model_cfg.semantic_nc),
            ignore_class=params.loss.warped_mask_ignore_class,
            metric_size=metric_size,
        )
    except BaseException as err:
        tracker.close("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    train_json = paths.metrics("train_run")  # the training's run id
    summary = eval_summary(
        dataset,
        eval_cfg,
        folders,
        results,
        image_size=model_cfg.image_size,
        exemplar_label_hidden=hidden,
        metric_size=metric_size,
        train_summary=json.loads(train_json.read_text()) if train_json.is_file() else None,
    )
    summary["mlflow_run_id"] = finish_evaluation_run(tracker, summary, preview)
    numbers, record = split_summary(summary)
    write_text_atomic(paths.metrics("eval"), json.dumps(numbers, indent=2) + "\n")
    write_text_atomic(paths.metrics("eval_run"), json.dumps(record, indent=2) + "\n")
    write_text_atomic(
        paths.metrics("eval_per_class", "csv"),
        per_class_csv(results, adapter_for(dataset).class_names),
    )
    print(json.dumps(headlines(results)))


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage("evaluate", main, sys.argv[1:])
