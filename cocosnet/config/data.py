"""The data-side sections: ``data``, ``preprocess`` (edges, pose, masks), ``index`` and
``parallel``, and the dataset names the other sections refer to."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import _Section


class DemoDataConfig(_Section):
    """The embedded demo dataset (cocosnet/formats/demo_scenes.py)."""

    n_train: int = Field(300, ge=1)
    n_val: int = Field(60, ge=1)
    size: int = Field(64, ge=16, description="side of the generated square images")
    seed: int = 0


DEMO_RAW_ROOT = "raw/demo"  # the demo is generated: this folder only stands for its raw data
DatasetName = Literal["demo", "ade20k", "celebahq", "deepfashion", "flickr", "folder"]


class DataConfig(_Section):
    """Datasets to prepare, where their raw files are, and where prepared data lives."""

    datasets: list[DatasetName] = Field(default_factory=lambda: ["demo"], min_length=1)
    raw_roots: dict[DatasetName, str] = Field(
        default_factory=lambda: {"demo": DEMO_RAW_ROOT},
        description="the raw folder of each dataset (official layout); prepare@DS depends on it",
    )
    root: str = Field("data", min_length=1, description="prepared datasets go to ROOT/<dataset>")
    load_size: int = Field(
        286, ge=16, description="shorter side of stored images (official: load 286, crop 256)"
    )
    max_pixels: int = Field(89_478_485, ge=64, description="larger images are quarantined")
    folder_val_fraction: float = Field(0.1, ge=0, lt=1)
    ade20k_id_filter: str | None = Field(
        None, description="text file of ADE20k ids to keep (e.g. the outdoor subset)"
    )
    demo: DemoDataConfig = DemoDataConfig()

    @model_validator(mode="after")
    def _check_raw_roots(self) -> DataConfig:
        # dvc.yaml makes one prepare@DS per raw_roots entry: the two lists must agree.
        missing = [d for d in self.datasets if d not in self.raw_roots]
        if missing:
            hint = f" (the demo's is {DEMO_RAW_ROOT})" if "demo" in missing else ""
            raise ValueError(f"raw_roots has no folder for dataset(s) {missing}{hint}")
        extra = [d for d in self.raw_roots if d not in self.datasets]
        if extra:
            raise ValueError(
                f"raw_roots names dataset(s) {extra} that datasets does not list (prepare@DS "
                "would run for them): list them or remove their folders"
            )
        return self


class EdgesConfig(_Section):
    """Canny edge extraction (edges@DS); thresholds None mean the backend's defaults."""

    backend: Literal["skimage", "opencv"] = Field(
        "skimage", description="skimage.feature.canny as the official CelebA-HQ code, or cv2"
    )
    sigma: float = Field(1.0, ge=0, description="Gaussian smoothing before Canny")
    low_threshold: float | None = Field(None, ge=0)
    high_threshold: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _check_order(self) -> EdgesConfig:
        lo, hi = self.low_threshold, self.high_threshold
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"low_threshold={lo} must not exceed high_threshold={hi}")
        return self


class PoseConfig(_Section):
    """OpenPose body keypoints (pose@DS), for the datasets listed here (they need the weights)."""

    datasets: list[DatasetName] = Field(default_factory=list)
    scales: list[float] = Field(
        default_factory=lambda: [0.5], min_length=1, description="official: 0.5, 1, 1.5, 2"
    )

    @model_validator(mode="after")
    def _check_scales(self) -> PoseConfig:
        if any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive, got {self.scales}")
        return self


class MasksConfig(_Section):
    """UPerNet ADE20k masks (masks@DS) for the datasets listed here (they need the model)."""

    datasets: list[DatasetName] = Field(default_factory=list)
    model_dir: str = Field("weights/upernet_ade20k", min_length=1)
    backend: Literal["transformers", "mmseg"] = "transformers"
    short_side: int = Field(512, ge=32)
    sha256: str | None = Field(None, description="expected digest of the model's weight file")
    device: str | None = Field(None, description="default: cuda when available, else cpu")


class PreprocessConfig(_Section):
    edges: EdgesConfig = EdgesConfig()
    pose: PoseConfig = PoseConfig()
    masks: MasksConfig = MasksConfig()


class IndexConfig(_Section):
    """Exemplar retrieval (index@DS): embeddings, FAISS index, top-K pair lists."""

    datasets: list[DatasetName] = Field(default_factory=lambda: ["demo"])
    embedding: Literal["vgg19", "layout"] = Field(
        "vgg19",
        description="vgg19: pool5 of torchvision's VGG19, as the official lists; layout: class "
        "fractions on a grid from the label maps (needs no weights; for the demo)",
    )
    pooling: Literal["gap", "flatten"] = "gap"
    image_size: int = Field(224, ge=32, description="VGG input side")
    batch_size: int = Field(16, ge=1)
    layout_grid: int = Field(4, ge=1)
    k: int = Field(10, ge=1, description="exemplars kept per query")
    kind: Literal["auto", "exact", "ivf"] = "auto"
    ivf_threshold: int = Field(100_000, ge=1)
    nprobe: int = Field(32, ge=1)
    exclude_identity: str | None = Field(
        None, description=r"regex of an identity in ids (DeepFashion: 'id_\d+')"
    )


class ParallelConfig(_Section):
    """How stages fan out over images (cocosnet/parallel.py)."""

    workers: int = Field(1, ge=1, description="local worker processes")
    dask_address: str | None = Field(None, description="existing Dask scheduler, e.g. tcp://h:8786")
