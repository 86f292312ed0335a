"""Typed, frozen models of the sections of params.yaml, with the official presets.

A section may name a ``preset``; the preset's values are taken first and the section's own keys
override them. Unknown keys, wrong types and impossible combinations raise :class:`ConfigError`
with one line per problem, each naming the offending key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PresetName = Literal[
    "paper_ade20k", "paper_celebahq_mask", "paper_celebahq_edge", "paper_deepfashion", "demo"
]


class ConfigError(ValueError):
    """params.yaml (or a preset plus overrides) does not describe a valid configuration."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)


class ModelConfig(_Section):
    """Architecture of the correspondence, translation and discriminator networks."""

    preset: PresetName | None = None
    image_size: int = Field(256, ge=64, description="square crop the networks run at")
    semantic_nc: int = Field(151, ge=1, description="channels of the input domain")
    ngf: int = Field(64, ge=2, description="translation-network base width")
    corr_nf: int = Field(64, ge=2, description="domain-adaptor base width (official: fixed 64)")
    spade_hidden: int = Field(128, ge=1, description="SPADE hidden width (official: 128)")
    ndf: int = Field(64, ge=2, description="discriminator base width")
    num_d: int = Field(2, ge=1, description="discriminator scales")
    n_layers_d: int = Field(4, ge=2, description="conv layers per PatchGAN before the logit conv")
    adaptor_kernel: Literal[3, 4] = 3
    match_kernel: Literal[1, 3, 5] = 3
    corr_size: int = Field(64, ge=4, description="side of the correspondence grid")
    alpha: float = Field(100.0, gt=0, description="softmax sharpness of the warp (eq. 4)")
    warp_impl: Literal["naive", "fused"] = "fused"
    warp_bilinear: bool = False
    warp_patch: bool = False
    warp_mask: Literal["direct", "cycle", "none"] = "direct"
    maskmix: bool = True
    use_attention: bool = True
    pono_c: bool = Field(True, description="centre correlation features over channels (PONO_C)")
    param_free_norm: Literal["positional", "instance", "batch"] = "positional"
    init_gain: float = Field(0.02, gt=0)

    @model_validator(mode="after")
    def _check_geometry(self) -> ModelConfig:
        problems = []
        if self.image_size % 32:
            problems.append(
                f"image_size={self.image_size} must be a multiple of 32 "
                "(the translation network upsamples 5 times from image_size/32)"
            )
        if self.image_size % self.corr_size or self.image_size // self.corr_size not in (1, 2, 4):
            problems.append(
                f"corr_size={self.corr_size} must divide image_size={self.image_size} "
                "by 1, 2 or 4 (the domain adaptors have two optional stride-2 convs)"
            )
        if self.ngf % 2:
            problems.append(f"ngf={self.ngf} must be even (non-local block uses 4*ngf/8 channels)")
        # The exponent is capped (ndf << 9 > 512 already) so a huge n_layers_d cannot hang.
        if self.use_attention and min(self.ndf << min(self.n_layers_d - 2, 9), 512) % 8:
            problems.append(
                f"ndf={self.ndf} gives a discriminator attention width not divisible by 8"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def warp_stride(self) -> int:
        """How many image pixels one correspondence cell covers along each side."""
        return self.image_size // self.corr_size

    @property
    def adaptor_downsamples(self) -> int:
        return int(math.log2(self.warp_stride))


# The official settings, read off the README test commands of the released checkpoints
# (REFERENCE.md, shared/official/keys-*.json). demo is ours: tiny enough to train on 2 CPU cores.
PRESETS: dict[str, dict[str, Any]] = {
    "paper_ade20k": dict(
        semantic_nc=151,
        adaptor_kernel=3,
        maskmix=True,
        use_attention=True,
        warp_bilinear=False,
        warp_patch=False,
        warp_mask="direct",
    ),
    # The released CelebA-HQ mask checkpoint's test flags (no key listing in shared/official).
    "paper_celebahq_mask": dict(
        semantic_nc=19,
        adaptor_kernel=4,
        maskmix=True,
        use_attention=True,
        warp_bilinear=True,
        warp_patch=False,
        warp_mask="direct",
    ),
    "paper_celebahq_edge": dict(
        semantic_nc=15,
        adaptor_kernel=4,
        maskmix=True,
        use_attention=True,
        warp_bilinear=True,
        warp_patch=False,
        warp_mask="none",
    ),
    "paper_deepfashion": dict(
        semantic_nc=20,
        adaptor_kernel=4,
        maskmix=False,
        use_attention=True,
        warp_bilinear=True,
        warp_patch=True,
        warp_mask="none",
    ),
    "demo": dict(
        image_size=64,
        corr_size=16,
        semantic_nc=8,
        ngf=8,
        corr_nf=8,
        spade_hidden=16,
        ndf=8,
        n_layers_d=3,
        adaptor_kernel=3,
        maskmix=True,
        use_attention=True,
        warp_mask="direct",
    ),
}


class DemoDataConfig(_Section):
    """The embedded demo dataset (cocosnet/preprocess/demo.py)."""

    n_train: int = Field(300, ge=1)
    n_val: int = Field(60, ge=1)
    size: int = Field(64, ge=16, description="side of the generated square images")
    seed: int = 0


DatasetName = Literal["demo", "ade20k", "celebahq", "deepfashion", "flickr", "folder"]


class DataConfig(_Section):
    """Datasets to prepare, where their raw files are, and where prepared data lives."""

    datasets: list[DatasetName] = Field(default_factory=lambda: ["demo"], min_length=1)
    raw_roots: dict[DatasetName, str] = Field(
        default_factory=dict, description="official-layout folder of each real dataset"
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
        missing = [d for d in self.datasets if d != "demo" and d not in self.raw_roots]
        if missing:
            raise ValueError(f"raw_roots has no folder for dataset(s) {missing}")
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


LossPresetName = Literal[
    "paper_ade20k", "paper_celebahq_mask", "paper_celebahq_edge", "paper_deepfashion", "demo"
]


class LossConfig(_Section):
    """Weights of the training objective (paper eq. 8-14; REFERENCE.md "Losses and defaults").

    ``vgg``: ``auto`` uses the paper's VGG losses when the Caffe VGG19 file is registered and
    otherwise replaces them by ``fallback_l1`` (pixel L1 on pseudo pairs) and drops the
    contextual and perceptual terms, saying so in the run's tags; ``required`` stops without the
    weights; ``off`` never uses them.
    """

    preset: LossPresetName | None = None
    gan: float = Field(10.0, ge=0, description="hinge GAN, averaged over scales")
    d_feature_matching: float = Field(10.0, ge=0, description="lambda_feat (÷ num_D inside)")
    vgg_feature_matching: float = Field(10.0, ge=0, description="lambda_vgg on pseudo pairs")
    fm_ratio: float = Field(0.1, ge=0, description="x lambda_vgg for VGG feature matching")
    perceptual: float = Field(0.01, ge=0, description="MSE of the perceptual layer vs truth")
    perceptual_layer: Literal["relu4_2", "relu5_2"] = Field(
        "relu5_2", description="official which_perceptual: 5_2 (ADE20k), 4_2 (faces, DeepFashion)"
    )
    contextual: float = Field(10.0, ge=0, description="contextual loss vs the exemplar")
    contextual_relu2_2: bool = False
    domain_alignment: float = Field(10.0, ge=0)
    warped_mask: float = Field(0.0, ge=0, description="while the exemplar mask is visible")
    warped_mask_after_warmup: float | None = Field(
        None, ge=0, description="after train.mask_epoch (None: unchanged)"
    )
    warped_mask_ignore_class: int | None = Field(
        0, ge=0, description="class the warped-mask loss ignores (official: 0, ADE20k 'other')"
    )
    cycle: float = Field(0.0, ge=0)
    warp_self: float = Field(0.0, ge=0, description="L1(warped, truth) on pseudo pairs")
    pseudo_pair_batch: int | None = Field(
        None,
        ge=1,
        description="per-process batch the pseudo-pair weights were set for: those terms are "
        "whole-batch means, i.e. divided by it (official: the per-GPU batch, 4 in the 8-GPU "
        "batch-32 recipe); None: this run's per-process batch",
    )
    vgg: Literal["auto", "required", "off"] = "auto"
    fallback_l1: float = Field(
        10.0, ge=0, description="pixel L1 on pseudo pairs, only where VGG losses are off"
    )


# The official train commands (README of microsoft/CoCosNet; REFERENCE.md "Losses and
# defaults"): every weight spelled out. The pseudo-pair terms were set for the per-GPU batch of 4
# (batch 32 on 8 GPUs).
_PAPER_LOSS = dict(
    gan=10.0,
    d_feature_matching=10.0,
    vgg_feature_matching=10.0,
    contextual=10.0,
    contextual_relu2_2=False,
    domain_alignment=10.0,
    warped_mask_ignore_class=0,
    pseudo_pair_batch=4,
)
LOSS_PRESETS: dict[str, dict[str, Any]] = {
    "paper_ade20k": _PAPER_LOSS
    | dict(
        fm_ratio=0.1,
        perceptual=0.01,
        perceptual_layer="relu5_2",
        warped_mask=100.0,
        cycle=0.0,
        warp_self=0.0,
    ),
    "paper_celebahq_mask": _PAPER_LOSS
    | dict(
        fm_ratio=1.0,
        perceptual=0.001,
        perceptual_layer="relu4_2",
        warped_mask=100.0,
        cycle=0.1,
        warp_self=0.0,
    ),
    "paper_celebahq_edge": _PAPER_LOSS
    | dict(
        fm_ratio=1.0,
        perceptual=0.001,
        perceptual_layer="relu4_2",
        warped_mask=0.0,
        cycle=1.0,
        warp_self=0.0,
    ),
    "paper_deepfashion": _PAPER_LOSS
    | dict(
        fm_ratio=1.0,
        perceptual=0.001,
        perceptual_layer="relu4_2",
        warped_mask=0.0,
        cycle=0.0,
        warp_self=100.0,
    ),
    # The demo trains from scratch in minutes on a CPU: the warped-mask loss carries the
    # correspondence as in the ADE20k recipe; its class 0 (sky) is a real class. Its pseudo-pair
    # weights (pixel L1 without VGG19) were set for the mean over pseudo pairs (divisor 1).
    "demo": dict(
        warped_mask=100.0,
        warped_mask_ignore_class=None,
        cycle=0.0,
        fm_ratio=0.1,
        perceptual=0.01,
        pseudo_pair_batch=1,
    ),
}


class PseudoPairConfig(_Section):
    """Further random distortion of a pseudo exemplar (ours; all off in the official recipes,
    whose pseudo exemplar is the photo under an independent random crop and flip)."""

    flip: bool = False
    crop: float = Field(0.0, ge=0, le=0.9)
    rotate: float = Field(0.0, ge=0, le=180)
    scale: float = Field(0.0, ge=0, le=0.9)
    translate: float = Field(0.0, ge=0, le=0.5)
    shear: float = Field(0.0, ge=0, le=60)
    tps: float = Field(0.0, ge=0, le=0.5)
    tps_grid: int = Field(4, ge=2)


TrainPresetName = Literal[
    "paper_ade20k",
    "paper_ade20k_nomask",
    "paper_celebahq_mask",
    "paper_celebahq_edge",
    "paper_deepfashion",
    "demo",
]


class TrainConfig(_Section):
    """The training recipe (train@DS): schedule, optimisers, exemplars, data modes, processes.

    Every key can change what training computes; the settings that cannot (threads, logging and
    checkpoint cadence, ...) are in :class:`RuntimeConfig`.
    """

    preset: TrainPresetName | None = None
    datasets: list[DatasetName] = Field(default_factory=lambda: ["demo"])
    seed: int = 0
    batch_size: int = Field(8, ge=1, description="per process")
    niter: int = Field(100, ge=0, description="epochs at the initial learning rates")
    niter_decay: int = Field(100, ge=0, description="epochs of linear decay to 0 after niter")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    lr_g: float = Field(1e-4, gt=0, description="correspondence + translation (TTUR)")
    lr_d: float = Field(4e-4, gt=0, description="discriminator (TTUR)")
    beta1: float = Field(0.0, ge=0, lt=1)
    beta2: float = Field(0.9, ge=0, lt=1)
    eps_g: float = Field(1e-3, gt=0, description="Adam eps of G + correspondence (official)")
    eps_d: float = Field(1e-8, gt=0)
    p_hard: float = Field(0.2, ge=0, le=1, description="last-ranked retrieval as exemplar")
    p_top1: float = Field(0.5, ge=0, le=1, description="top-1 retrieval as exemplar")
    p_self: float = Field(0.3, ge=0, le=1, description="pseudo pair (self-reference)")
    pseudo: PseudoPairConfig = PseudoPairConfig()
    same_person: bool = Field(
        False,
        description="DeepFashion --video_like: a pseudo pair is another view of the same person "
        "in the same outfit where the training split has one",
    )
    flip: bool = Field(True, description="random horizontal flips (DeepFashion: off)")
    preprocess: Literal["resize_and_crop", "scale_shortside_and_crop"] = Field(
        "resize_and_crop",
        description="official resize_and_crop: squash to load_size^2, random crop; test: squash "
        "to the network size. scale_shortside_and_crop keeps the aspect ratio",
    )
    load_size: int | None = Field(
        None, ge=1, description="training resize side before the crop (None: 286/256 x size)"
    )
    condition: Literal["auto", "label", "edges", "pose"] = Field(
        "auto", description="input domain; auto: pose for deepfashion, label masks otherwise"
    )
    mask_epoch: int | None = Field(
        None, ge=0, description="epochs with the exemplar mask visible; then noise (None: never)"
    )
    amp: Literal["auto", "bf16", "fp16", "off"] = Field(
        "auto", description="auto: bf16 on CUDA, off on CPU; fp16 uses a gradient scaler"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = Field(True, description="deterministic kernels (resume == uninterrupted)")
    nproc_per_node: int = Field(1, ge=1, description=">1: the stage launches torchrun")
    nnodes: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        total = self.p_hard + self.p_top1 + self.p_self
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"p_hard + p_top1 + p_self must sum to 1 (got {total})")
        if self.niter + self.niter_decay == 0 and self.max_steps is None:
            raise ValueError("niter + niter_decay is 0 and max_steps is not set: nothing to train")
        return self


# The official train commands (README of microsoft/CoCosNet, options/*.py, data/*_dataset.py):
# batch 32 on 8 GPUs is 4 per process; TTUR lr 1e-4 / 4e-4; reference probabilities 0.2 hard,
# 0.5 top-1, 0.3 self (real_reference_probability 0.7, hard 0.2); every dataset class loads with
# resize_and_crop at 286 (test: 256). DeepFashion: real_reference_probability 0, --no_flip,
# --video_like. Losses (cycle, warp-self, ...) are in LOSS_PRESETS under the same names.
_PAPER_TRAIN = dict(
    batch_size=4,
    lr_g=1e-4,
    lr_d=4e-4,
    beta1=0.0,
    beta2=0.9,
    eps_g=1e-3,
    p_hard=0.2,
    p_top1=0.5,
    p_self=0.3,
    pseudo={},
    same_person=False,
    flip=True,
    preprocess="resize_and_crop",
    load_size=286,
    mask_epoch=None,
)
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper_ade20k": _PAPER_TRAIN | dict(niter=100, niter_decay=100),
    # --noise_for_mask --mask_epoch 150: the exemplar mask is replaced by noise after epoch 150
    "paper_ade20k_nomask": _PAPER_TRAIN | dict(niter=100, niter_decay=100, mask_epoch=150),
    "paper_celebahq_mask": _PAPER_TRAIN | dict(niter=30, niter_decay=30),
    "paper_celebahq_edge": _PAPER_TRAIN | dict(niter=30, niter_decay=30),
    "paper_deepfashion": _PAPER_TRAIN
    | dict(
        niter=50, niter_decay=50, p_hard=0.0, p_top1=0.0, p_self=1.0, flip=False, same_person=True
    ),
    # Ours: minutes on 2 CPU cores. The 64x64 demo images are squashed to 72 (286/256 x 64) and
    # cropped; pseudo exemplars are distorted further (a demo-only aid: no VGG19 losses here).
    "demo": dict(
        batch_size=8,
        niter=8,
        niter_decay=5,
        lr_g=2e-4,
        lr_d=4e-4,
        p_hard=0.2,
        p_top1=0.5,
        p_self=0.3,
        pseudo=dict(flip=True, rotate=10.0, scale=0.1, translate=0.05, tps=0.03),
        flip=True,
        preprocess="resize_and_crop",
        load_size=72,
        mask_epoch=4,
    ),
}


class RuntimeConfig(_Section):
    """How a training runs, never what it computes: no stage depends on these keys, and a
    checkpoint resumes across them (the same result, faster or slower)."""

    threads: int | None = Field(None, ge=1, description="torch intra-op threads per process")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    checkpoint_every: int = Field(200, ge=1, description="steps")
    keep_checkpoints: int = Field(2, ge=1)
    resume: Literal["auto", "never"] = "auto"
    log_every: int = Field(10, ge=1, description="steps between loss records")
    image_every: int = Field(200, ge=1, description="steps between image grids")
    rdzv_endpoint: str | None = Field(None, description="host:port for multi-node rendezvous")
    backend: Literal["auto", "nccl", "gloo"] = "auto"


MetricName = Literal["fid", "swd", "semantic_consistency", "style_relevance", "warp_accuracy"]


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


class Params(_Section):
    """The whole params.yaml (sections are added as the stages that read them land)."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    index: IndexConfig = IndexConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    tracking: TrackingConfig = TrackingConfig()
    parallel: ParallelConfig = ParallelConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="after")
    def _check_rendezvous(self) -> Params:
        if self.train.nnodes > 1 and not self.runtime.rdzv_endpoint:
            raise ValueError(
                "train.nnodes > 1 needs runtime.rdzv_endpoint (host:port of the rendezvous)"
            )
        return self


def _format_errors(section: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in (section, *e["loc"]) if p != "")
        msg = e["msg"].removeprefix("Value error, ")
        whole = e["type"] == "missing" or not e["loc"]  # a model-level check: no single input
        got = "" if whole else f" (got {e.get('input')!r})"
        if e["type"] == "extra_forbidden":
            msg, got = "unknown key", ""
            if section == "train" and e["loc"][-1] in RuntimeConfig.model_fields:
                msg += f" (it moved to runtime.{e['loc'][-1]}: it cannot change results)"
        lines.append(f"{where}: {msg}{got}" if where else f"{msg}{got}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _with_preset(
    name: str, cls: type[_Section], presets: Mapping[str, Mapping[str, Any]], values: dict
) -> Any:
    """Validate a section whose ``preset`` values come first and its own keys override them."""
    preset = values.get("preset")
    if preset is not None:
        if not isinstance(preset, str) or preset not in presets:  # a list/dict is unhashable
            raise ConfigError(f"{name}.preset: unknown preset {preset!r}; known: {sorted(presets)}")
        base = presets[preset]
        # Nested sections (train.pseudo) merge key by key too.
        values = {
            k: {**base[k], **v}
            if isinstance(v, Mapping) and isinstance(base.get(k), Mapping)
            else v
            for k, v in {**base, **values}.items()
        }
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        raise ConfigError(_format_errors(name, err)) from None


def model_config(section: Mapping[str, Any] | None = None, **overrides: Any) -> ModelConfig:
    """Resolve a ``model`` section: preset values first, then the section's keys, then overrides."""
    return _with_preset("model", ModelConfig, PRESETS, {**(section or {}), **overrides})


def loss_config(section: Mapping[str, Any] | None = None, **overrides: Any) -> LossConfig:
    """Resolve a ``loss`` section: preset weights first, then the section's keys."""
    return _with_preset("loss", LossConfig, LOSS_PRESETS, {**(section or {}), **overrides})


def train_config(section: Mapping[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    """Resolve a ``train`` section: the preset's recipe first, then the section's keys."""
    return _with_preset("train", TrainConfig, TRAIN_PRESETS, {**(section or {}), **overrides})


def parse_params_text(text: str, source: str = "params.yaml") -> Params:
    """Validate the YAML text of a params file (``source``: its name, for messages)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = " ".join((getattr(err, "problem", None) or str(err)).split())
        raise ConfigError(f"{source}{where}: not valid YAML ({problem})") from None
    return parse_params(raw)


def parse_params(raw: Mapping[str, Any] | None) -> Params:
    """Validate the parsed contents of params.yaml."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"params must be a mapping of sections, got {type(raw).__name__}")
    unknown = sorted((k for k in raw if k not in Params.model_fields), key=repr)  # any key type
    if unknown:
        raise ConfigError(
            f"unknown params section(s): {unknown}; known: {sorted(Params.model_fields)}"
        )
    sections = {}
    for name in Params.model_fields:
        section = raw.get(name) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{name}: expected a mapping, got {type(section).__name__}")
        sections[name] = section
    model = model_config(sections.pop("model"))
    loss = loss_config(sections.pop("loss"))
    train = train_config(sections.pop("train"))
    try:
        return Params(model=model, loss=loss, train=train, **sections)
    except ValidationError as err:
        raise ConfigError(_format_errors("", err)) from None
