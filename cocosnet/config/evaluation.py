"""The ``eval`` section (split, metrics, output format) and ``tracking`` (where MLflow runs
go)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .base import _Section
from .data import DatasetName

# The authors' semantic consistency and style relevance scripts score 256 x 256 images.
AUTHORS_METRIC_SIZE = 256
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
    fid_protocol: Literal["pytorch_fid", "torch_fidelity"] = Field(
        "pytorch_fid",
        description="how FID resizes and scales images for the Inception network: pytorch_fid "
        "(the CoCosNet authors': PyTorch bilinear, 2x - 1) or torch_fidelity (TF1 bilinear, "
        "(x - 128) / 128); they differ by 0.1-1.7% of FID",
    )
    semantic_style_size: int | Literal["auto", "native"] = Field(
        "auto",
        description="semantic consistency and style relevance resize every image (bilinear) "
        "and label (nearest) to N x N first, as the authors' scripts did (256); native: each "
        "label's own size; auto: 256 at the paper model presets, native otherwise",
    )
    exemplar_mask: Literal["auto", "given", "hidden"] = Field(
        "auto",
        description="give the exemplar's mask to the correspondence network or noise; auto: "
        "hidden when training replaced it by noise (train.mask_epoch set)",
    )
    batch_size: int = Field(16, ge=1)
    seed: int = Field(0, description="SWD sampling and the hidden-mask noise")
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("semantic_style_size")
    @classmethod
    def _positive_size(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 8 <= value <= 4096:
            raise ValueError("must be auto, native or a size from 8 to 4096")
        return value

    def metric_size(self, model_preset: str | None) -> int | None:
        """The size semantic consistency and style relevance work at (None: each label's)."""
        if self.semantic_style_size == "auto":
            paper = model_preset is not None and model_preset.startswith("paper_")
            return AUTHORS_METRIC_SIZE if paper else None
        return None if self.semantic_style_size == "native" else self.semantic_style_size


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
