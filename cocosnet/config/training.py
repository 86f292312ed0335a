"""The training sections: ``loss`` (objective weights), ``train`` (the recipe, with its
pseudo-pair distortions) and ``runtime`` (settings that never change results)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import _Section
from .data import DatasetName

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
    class_colour: float = Field(
        0.0,
        ge=0,
        description="demo-only, not in the paper: L1 between the output's and the exemplar's "
        "mean colour per class in both label maps (cocosnet/losses/class_colour.py)",
    )
    fallback_l1: float = Field(
        10.0, ge=0, description="pixel L1 on pseudo pairs, only where VGG losses are off"
    )


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
    one_hot_gather: bool = Field(
        False,
        description="one-hot label convs as gathers in training (exact up to rounding, which a "
        "GAN's trajectory amplifies: off keeps runs bitwise comparable; inference always uses it)",
    )
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
    channels_last: bool | None = Field(
        None,
        description="networks in the channels-last layout (the same computation, rounded "
        "differently); null: on the CPU, where oneDNN's convolutions run faster so",
    )

    def channels_last_on(self, device_type: str) -> bool:
        return self.channels_last if self.channels_last is not None else device_type == "cpu"
