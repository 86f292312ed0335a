"""Multi-scale PatchGAN discriminator (paper §3.3; official ``MultiscaleDiscriminator``).

Each scale: conv4 s2 + LeakyReLU, then spectral-normed conv4 + InstanceNorm + LeakyReLU layers
(strides 2, ..., 2, 1), a SAGAN block before the last of them, and a conv4 logit layer. Every
layer's output is returned for the discriminator feature-matching loss. The official class also
builds a decoder (``dec``) that its forward never calls; it is left out here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvNormAct, NonLocalAttention


class PatchDiscriminator(nn.Module):
    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4, use_attention: bool = True):
        super().__init__()
        layers = [ConvNormAct(input_nc, ndf, 4, 2, 1, sn=False, instance_norm=False)]
        nf = ndf
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            layers.append(ConvNormAct(nf_prev, nf, 4, stride, 1))
        layers.append(ConvNormAct(nf, 1, 4, 1, 1, sn=False, instance_norm=False, act=False))
        self.layers = nn.ModuleList(layers)
        self.attention_at = n_layers - 1
        self.attention = NonLocalAttention(nf_prev) if use_attention else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, layer in enumerate(self.layers):
            if i == self.attention_at and self.attention is not None:
                x = self.attention(x)
            x = layer(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    def __init__(
        self,
        input_nc: int,
        *,
        ndf: int = 64,
        n_layers: int = 4,
        num_d: int = 2,
        use_attention: bool = True,
    ):
        super().__init__()
        self.scales = nn.ModuleList(
            PatchDiscriminator(input_nc, ndf, n_layers, use_attention) for _ in range(num_d)
        )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per scale (finest first), the outputs of every layer; the last one is the logit map."""
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs
