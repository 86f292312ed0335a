"""What train@DS reports: its MLflow run (a new one, or the interrupted run continued), the
summary metrics/train_DS.json, the loss curve metrics/train_curve_DS.csv and the warp accuracy
of the trained correspondence on held-out pairs.

``cocosnet.tracking`` (MLflow) is imported where it is used: only rank 0 tracks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..config import RuntimeConfig, TrackingConfig
from ..data.examples import PairExamples
from ..metric_files import is_number
from ..metrics.correspondence import warp_accuracy
from .checkpoint import PreviousRun
from .loop import TrainResult

if TYPE_CHECKING:
    from ..tracking import Tracker


def mlflow_params(resolved: Mapping[str, Any]) -> dict[str, str]:
    """What a training run logs as MLflow params: the sections its result depends on."""
    from .. import tracking

    return tracking.flatten_params({k: resolved[k] for k in ("model", "loss", "train")})


def continued_run_id(previous: PreviousRun | None, resolved: Mapping[str, Any]) -> str | None:
    """The MLflow run of ``previous`` where its params stay the same; else None, a new run (a
    longer max_steps, say, continues the checkpoint in a new run: MLflow params cannot change)."""
    if previous is None or not previous.run_id:
        return None
    if mlflow_params(previous.config) != mlflow_params(resolved):
        return None
    return previous.run_id


def start_tracking(
    tracking_cfg: TrackingConfig,
    runtime: RuntimeConfig,
    resolved: Mapping[str, Any],
    *,
    dataset: str,
    condition: str,
    code_digest: str,
    no_vgg_reason: str | None,
    previous: PreviousRun | None,
    repo: Path,
    run_name: str,
    parent_run_id: str | None = None,
) -> Tracker:
    """The MLflow run of train@``dataset`` (continued, see :func:`continued_run_id`), tagged with
    its source and where the run stands, with system metrics (``tracking.system_metrics``) and
    the resolved config as config.json."""
    from .. import tracking

    run_id = continued_run_id(previous, resolved)
    tags = tracking.source_tags(repo, "stages/train.py") | {
        tracking.TAG_DVC_STAGE: f"train@{dataset}",
        "dataset": dataset,
        "condition": condition,
        "code_digest": code_digest,
        "vgg_losses": "off: " + no_vgg_reason if no_vgg_reason else "on",
    }
    tags |= {f"runtime.{k}": str(v) for k, v in runtime.model_dump().items()}
    if previous is not None and run_id is None:
        tags["resumed_from_checkpoint"] = f"{previous.path} (run {previous.run_id or ''})"
    tracker = tracking.Tracker(
        tracking.resolve_tracking_uri(tracking_cfg.uri, repo),
        tracking_cfg.experiment,
        run_name=run_name,
        run_id=run_id,
        tags=tags,
        params=mlflow_params(resolved),
        flush_every=max(1, 50 // runtime.log_every),
        parent_run_id=parent_run_id,
        system_metrics_every=10.0 if tracking_cfg.system_metrics else None,
    )
    tracker.log_dict(resolved, "config.json")
    return tracker


def held_out_accuracy(
    export_dir: Path, pairs: PairExamples, *, object_classes: tuple[int, ...], seed: int
) -> dict:
    """Warp accuracy of the exported correspondence network on held-out ``pairs``."""
    from ..models.export import load_generator

    _, corr, _ = load_generator(export_dir)
    loader = torch.utils.data.DataLoader(pairs, batch_size=16)
    torch.manual_seed(seed)  # the noise that stands in for the hidden mask
    return warp_accuracy(corr, loader, object_classes=object_classes)


def held_out_numbers(held_out: dict | None) -> dict[str, float]:
    """The held-out accuracy as MLflow metrics (``eval/...``; NaN left out)."""
    numbers = {f"eval/{k}": float(v) for k, v in (held_out or {}).items() if is_number(v)}
    return {k: v for k, v in numbers.items() if v == v}


def finish_tracking(tracker: Tracker, result: TrainResult, *, log_checkpoint: bool) -> None:
    """Log the last checkpoint with ``log_checkpoint`` (DVC keeps them already) and close the
    run. The stage logs the exported model, with the held-out accuracy on it and on the run
    (:func:`cocosnet.inference.pyfunc.log_translator`)."""
    if log_checkpoint and result.checkpoint is not None:
        tracker.log_artifact(result.checkpoint, "checkpoints")
    tracker.close("FINISHED")


def train_summary(
    dataset: str,
    result: TrainResult,
    *,
    run_id: str,
    no_vgg_reason: str | None,
    held_out: dict | None,
) -> dict[str, Any]:
    """metrics/train_DS.json: the run, its length and time, the loss set and the last logged
    values (rounded), and the held-out accuracy where the dataset has label maps."""
    summary = {
        "dataset": dataset,
        "mlflow_run_id": run_id,
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
    if held_out is not None:
        summary["held_out"] = held_out
    return summary
