"""DVC stage `evaluate@DS`: translate the evaluation split of ROOT/DS with its top-1 retrieved
exemplars using the trained models/DS/export, then compute the paper's metrics (FID, SWD,
semantic consistency, style relevance) and the warp accuracy.

Writes eval/DS/images (fake/, real/, warped/, exemplar/, label/, exemplar_label/),
eval/DS/cache (FID reference statistics keyed by their inputs; kept between runs and not a DVC
output, so DVC's run-cache can restore the stage),
metrics/eval_DS.json (every metric with its protocol, or `skipped` with the reason),
metrics/eval_per_class_DS.csv (warp accuracy per class, a DVC plot) and an MLflow run with
the numbers, a preview grid and the per-class tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from cocosnet.evaluation import translate_pairs
from cocosnet.io import write_text_atomic
from cocosnet.metrics.correspondence import warp_accuracy
from cocosnet.metrics.registry import MetricOptions, evaluate, folder_inputs
from cocosnet.models.export import load_generator
from cocosnet.preprocess.demo import DEMO_CLASSES, DEMO_OBJECT_CLASSES
from cocosnet.training.data import default_condition, heldout_pairs
from stages._common import load_params

REPO = Path(__file__).resolve().parent.parent
CLASS_NAMES = {"demo": DEMO_CLASSES}  # for the per-class table (others: class ids)
OBJECT_CLASSES = {"demo": DEMO_OBJECT_CLASSES}  # what warp_accuracy_objects scores


def main(dataset: str, params_path: str = "params.yaml", weights_dir: str = "weights") -> None:
    params = load_params("evaluate", params_path)
    ecfg = params.eval
    export = Path("models") / dataset / "export"
    if not (export / "model.json").is_file():
        raise SystemExit(f"evaluate: {export} has no trained model; run train@{dataset}")
    model_cfg, corr, gen = load_generator(export)
    device = ecfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    condition = default_condition(dataset, params.train.condition)
    pairs = heldout_pairs(
        dataset,
        params.data.root,
        semantic_nc=model_cfg.semantic_nc,
        image_size=model_cfg.image_size,
        split=ecfg.split,
        condition=condition,
        preprocess=params.train.preprocess,
        max_pixels=params.data.max_pixels,
    )
    hidden = {"given": False, "hidden": True, "auto": params.train.mask_epoch is not None}
    hide = hidden[ecfg.exemplar_mask]
    out = Path("eval") / dataset
    (out / "cache").mkdir(parents=True, exist_ok=True)
    folders, preview = translate_pairs(
        corr,
        gen,
        pairs,
        out / "images",
        batch_size=ecfg.batch_size,
        device=device,
        hide_exemplar_label=hide,
        image_format=ecfg.image_format,
        jpeg_quality=ecfg.jpeg_quality,
        seed=ecfg.seed,
    )
    labels = folders.has_labels and condition == "label"
    inputs = folder_inputs(
        folders["real"],
        folders["fake"],
        folders["label"] if labels else None,
        folders["exemplar"],
        folders["exemplar_label"] if labels else None,
        num_classes=model_cfg.semantic_nc if labels else None,
    )
    options = MetricOptions(
        weights_dir=Path(weights_dir),
        device=device,
        batch_size=ecfg.batch_size,
        seed=ecfg.seed,
        cache_dir=out / "cache",
    )
    image_metrics = [m for m in ecfg.metrics if m != "warp_accuracy"]
    results = evaluate(image_metrics, inputs, options)
    if "warp_accuracy" in ecfg.metrics:
        if labels:
            loader = torch.utils.data.DataLoader(pairs, batch_size=ecfg.batch_size)
            torch.manual_seed(ecfg.seed)
            results["warp_accuracy"] = warp_accuracy(
                corr,
                loader,
                object_classes=OBJECT_CLASSES.get(dataset, ()),
                hide_exemplar_label=hide,
                device=device,
            )
        else:
            results["warp_accuracy"] = {"skipped": "needs label maps of inputs and exemplars"}
    protocol = {
        "split": ecfg.split,
        "images": folders.count,
        "image_size": model_cfg.image_size,
        "image_format": ecfg.image_format,
        "jpeg_quality": ecfg.jpeg_quality if ecfg.image_format == "jpg" else None,
        "exemplar": "top-1 retrieval (index@DS)",
        "exemplar_mask": "hidden (noise)" if hide else "given",
        "seed": ecfg.seed,
    }
    summary = {"dataset": dataset, "protocol": protocol, "metrics": results}
    train_json = Path("metrics") / f"train_{dataset}.json"
    if train_json.is_file():
        summary["train_mlflow_run_id"] = json.loads(train_json.read_text()).get("mlflow_run_id")
    summary["mlflow_run_id"] = _track(params, dataset, summary, preview)
    write_text_atomic(
        Path("metrics") / f"eval_{dataset}.json", json.dumps(summary, indent=2) + "\n"
    )
    per_class = results.get("warp_accuracy", {}).get("per_class", {})
    names = CLASS_NAMES.get(dataset, ())
    rows = ["class,pixels,accuracy"] + [
        f"{names[k] if k < len(names) else k},{v['pixels']},{v['accuracy']:.6f}"
        for k, v in per_class.items()
    ]
    write_text_atomic(Path("metrics") / f"eval_per_class_{dataset}.csv", "\n".join(rows) + "\n")
    print(json.dumps({k: _headline(v) for k, v in results.items()}))


def _headline(result: dict):
    if "skipped" in result:
        return "skipped"
    return {k: round(v, 4) for k, v in result.items() if isinstance(v, float)}


def _track(params, dataset: str, summary: dict, preview) -> str:
    from cocosnet import tracking

    numbers = {
        f"{metric}/{key}": float(value)
        for metric, result in summary["metrics"].items()
        for key, value in result.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value
    }
    with tracking.Tracker(
        tracking.resolve_tracking_uri(params.tracking.uri, REPO),
        params.tracking.experiment,
        run_name=f"evaluate@{dataset}",
        tags={
            tracking.TAG_GIT_COMMIT: tracking.git_commit(REPO) or "unknown",
            tracking.TAG_DVC_STAGE: f"evaluate@{dataset}",
            "dataset": dataset,
            "train_run_id": summary.get("train_mlflow_run_id") or "",
            "skipped": ", ".join(m for m, r in summary["metrics"].items() if "skipped" in r)
            or "none",
        },
        params=tracking.flatten_params({"eval": params.eval.model_dump(mode="json")}),
    ) as tracker:
        tracker.log_metrics(numbers, 0)
        if preview is not None:
            tracker.log_image(preview, "eval", 0)
        tracker.log_dict(summary, "eval.json")
        return tracker.run_id


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage("evaluate", main, sys.argv[1:])
