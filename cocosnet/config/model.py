"""The ``model`` section: architecture of the networks (:class:`ModelConfig`)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from .base import _Section

PresetName = Literal[
    "paper_ade20k", "paper_celebahq_mask", "paper_celebahq_edge", "paper_deepfashion", "demo"
]


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
    # naive: the official materialised correlation; fused: memory-efficient (SDPA on CUDA, our
    # blockwise kernel on the CPU); gram: shifted Gram sums of the 256-d features (exact, ~9x
    # fewer correlation FLOPs; CPU speed, memory grows with the grid); triton: flash kernels
    # (CUDA, or the CPU under TRITON_INTERPRET=1).
    warp_impl: Literal["naive", "fused", "gram", "triton"] = "fused"
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
