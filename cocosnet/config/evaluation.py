"""The ``eval`` section (split, metrics, output format) and ``tracking`` (where MLflow runs
go)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .base import _Section
from .data import DatasetName

MetricName = Literal[
    "fid", "swd", "semantic_consistency", "style_relevance", "warp_accuracy", "colour_style"
]


class EvalConfig(_Section):
    """Evaluation (evaluate@DS): which split, how outputs are stored, which metrics."""

    datasets: list[DatasetName] = Field(default_factory=lambda: ["demo"])
    split: str = Field("val", min_length=1)
    metrics: list[MetricName] = Field(
        default_factory=lambda: [
            "fid",
            "swd",
            "semantic_consistency",
            "style_relevance",
            "warp_accuracy",
            "colour_style",
        ]
    )
    image_format: Literal["png", "jpg"] = Field(
        "png", description="format of the translated images: part of the FID protocol"
    )
    jpeg_quality: int = Field(95, ge=1, le=100)
    exemplar_mask: Literal["auto", "given", "hidden"] = Field(
        "auto",
        description="give the exemplar's mask to the correspondence network or noise; auto: "
        "hidden when training replaced it by noise (train.mask_epoch set)",
    )
    batch_size: int = Field(16, ge=1)
    seed: int = Field(0, description="SWD sampling and the hidden-mask noise")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class TrackingConfig(_Section):
    """MLflow: where runs go (None: sqlite mlflow.db at the repo root, absolute)."""

    uri: str | None = None
    experiment: str = Field("cocosnet", min_length=1)
    system_metrics: bool = True  # CPU, memory (and GPU) of training runs, every 10 s
    # DVC already stores checkpoints; at paper size an upload would double gigabytes per run.
    log_checkpoints: bool = False
    registered_model: str = Field("cocosnet-{dataset}", min_length=1)  # the registry's name

    @field_validator("registered_model")
    @classmethod
    def _dataset_placeholder_only(cls, value: str) -> str:
        try:
            value.format(dataset="x")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"may hold only the placeholder {{dataset}} ({err!r})") from None
        return value
