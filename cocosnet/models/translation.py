"""Translation network (paper §3.2; official ``SPADEGenerator`` with ``CBN_intype=warp_mask``).

Starts from the condition (warped exemplar ⊕ input) resized to image_size/32, then 7 SPADE
residual blocks with positional normalisation, each conditioned on the same condition, upsampling
x2 between stages, and a SAGAN non-local block at image_size/2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import (
    ConditionPyramid,
    NonLocalAttention,
    ParamFreeNorm,
    SPADEResBlock,
    conv_condition,
    memory_format_of,
)
from .warp import WarpImpl

# (in, out) widths of the 7 blocks in units of ngf, and whether a x2 upsampling precedes each.
_BLOCKS = [
    (16, 16, False),
    (16, 16, True),
    (16, 16, False),
    (16, 8, True),
    (8, 4, True),
    (4, 2, True),
    (2, 1, True),
]
_ATTENTION_BEFORE = 5  # the non-local block runs right before the 6th block (at image_size/2)


class TranslationNet(nn.Module):
    def __init__(
        self,
        semantic_nc: int,
        image_size: int,
        *,
        ngf: int = 64,
        spade_hidden: int = 128,
        use_attention: bool = True,
        norm: ParamFreeNorm = "positional",
        warp_impl: WarpImpl = "fused",
    ):
        super().__init__()
        cond = 3 + semantic_nc
        self.latent_size = image_size // 32
        self.stem = nn.Conv2d(cond, 16 * ngf, 3, padding=1)
        self.blocks = nn.ModuleList(
            SPADEResBlock(fin * ngf, fout * ngf, cond, spade_hidden, norm)
            for fin, fout, _ in _BLOCKS
        )
        self.attention = NonLocalAttention(4 * ngf, impl=warp_impl) if use_attention else None
        self.to_rgb = nn.Conv2d(ngf, 3, 3, padding=1)
        # An exactly one-hot input is convolved by gathers (stem, SPADE condition convs).
        self.one_hot_gather = True

    def forward(self, input_label: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        """Synthesise an image in [-1, 1] from the input and the warped exemplar."""
        fmt = memory_format_of(self.stem.weight)  # the layout the weights were given
        label = input_label if self.one_hot_gather else None
        cond = ConditionPyramid(torch.cat([warped, input_label], dim=1), fmt, label)
        x = conv_condition(self.stem, cond, (self.latent_size, self.latent_size))
        for i, (block, (_, _, up)) in enumerate(zip(self.blocks, _BLOCKS, strict=True)):
            if up:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            if i == _ATTENTION_BEFORE and self.attention is not None:
                x = self.attention(x)
            x = block(x, cond)
        return torch.tanh(self.to_rgb(F.leaky_relu(x, 0.2)))
