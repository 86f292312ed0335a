"""What evaluate@DS reports: the summary metrics/eval_DS.json (every metric with its protocol),
the per-class warp accuracy table metrics/eval_per_class_DS.csv, the one-line headline and the
MLflow run with the numbers, a preview grid and the summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import EvalConfig, TrackingConfig
from .evaluation import EvalFolders
from .metric_files import is_number
from .metrics.fid import PROTOCOLS

if TYPE_CHECKING:
    from .tracking import Tracker


def eval_summary(
    dataset: str,
    cfg: EvalConfig,
    folders: EvalFolders,
    results: dict[str, dict],
    *,
    image_size: int,
    exemplar_label_hidden: bool,
    train_summary: Mapping[str, Any] | None,
    metric_size: int | None = None,
) -> dict[str, Any]:
    """metrics/eval_DS.json without its MLflow run id: the protocol the numbers depend on, the
    results, and the training run they evaluate (where metrics/train_DS.json exists)."""
    protocol = {
        "split": cfg.split,
        "images": folders.count,
        "image_size": image_size,
        "image_format": cfg.image_format,
        "jpeg_quality": cfg.jpeg_quality if cfg.image_format == "jpg" else None,
        "exemplar": "top-1 retrieval (index@DS)",
        "exemplar_mask": "hidden (noise)" if exemplar_label_hidden else "given",
        "seed": cfg.seed,
        "fid": PROTOCOLS[cfg.fid_protocol],
        "semantic_style_size": metric_size or "each label's own",
    }
    summary = {"dataset": dataset, "protocol": protocol, "metrics": results}
    if train_summary is not None:
        summary["train_mlflow_run_id"] = train_summary.get("mlflow_run_id")
    return summary


def per_class_csv(results: Mapping[str, dict], class_names: Sequence[str]) -> str:
    """Warp accuracy per class (a DVC plot); classes without a name by id."""
    per_class = results.get("warp_accuracy", {}).get("per_class", {})
    rows = ["class,pixels,accuracy"] + [
        f"{class_names[k] if k < len(class_names) else k},{v['pixels']},{v['accuracy']:.6f}"
        for k, v in per_class.items()
    ]
    return "\n".join(rows) + "\n"


def headlines(results: Mapping[str, dict]) -> dict[str, Any]:
    """Each metric's float results rounded to 4 digits, or "skipped" (the stage's output line)."""
    return {name: _headline(result) for name, result in results.items()}


def _headline(result: dict) -> Any:
    if "skipped" in result:
        return "skipped"
    return {k: round(v, 4) for k, v in result.items() if isinstance(v, float)}


def start_evaluation_run(
    tracking_cfg: TrackingConfig,
    cfg: EvalConfig,
    dataset: str,
    *,
    repo: Path,
    run_name: str,
    parent_run_id: str | None = None,
) -> Tracker:
    """The MLflow run of evaluate@``dataset``, opened before the evaluation so that its duration
    is the evaluation's."""
    from . import tracking

    return tracking.Tracker(
        tracking.resolve_tracking_uri(tracking_cfg.uri, repo),
        tracking_cfg.experiment,
        run_name=run_name,
        tags=tracking.source_tags(repo, "stages/evaluate.py")
        | {tracking.TAG_DVC_STAGE: f"evaluate@{dataset}", "dataset": dataset},
        params=tracking.flatten_params({"eval": cfg.model_dump(mode="json")}),
        parent_run_id=parent_run_id,
    )


def finish_evaluation_run(
    tracker: Tracker, summary: Mapping[str, Any], preview: np.ndarray | None
) -> str:
    """Log the numbers, the preview and the summary, and close the run; returns its id."""
    numbers = {
        f"{metric}/{key}": float(value)
        for metric, result in summary["metrics"].items()
        for key, value in result.items()
        if is_number(value) and value == value
    }
    skipped = [m for m, r in summary["metrics"].items() if "skipped" in r]
    tracker.set_tags(
        {
            "train_run_id": summary.get("train_mlflow_run_id") or "",
            "skipped": ", ".join(skipped) or "none",
        }
    )
    tracker.log_metrics(numbers, 0)
    if preview is not None:
        tracker.log_image(preview, "eval", 0)
    tracker.log_dict(dict(summary), "eval.json")
    tracker.close("FINISHED")
    return tracker.run_id
