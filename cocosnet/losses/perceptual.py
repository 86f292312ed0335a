"""VGG feature-matching on pseudo pairs (weighted L1) and the perceptual (MSE) loss of CoCosNet.

Pseudo-pair terms follow the official ``weighted_l1_loss``: each sample gets the weight
``s_b / (sum_b s_b + 1e-5)`` (``s_b`` = 1 for a pseudo pair, else 0) and the weighted absolute
difference is averaged over the *whole* per-GPU batch, so the term is the mean over pseudo
pairs divided by the per-GPU batch size. ``batch`` names that divisor explicitly (the batch the
loss weights were set for); None uses the batch at hand, as the official code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_LAYERS",
    "DEFAULT_WEIGHTS",
    "perceptual_loss",
    "pseudo_pair_l1",
    "vgg_feature_matching",
]

DEFAULT_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")
DEFAULT_WEIGHTS: tuple[float, ...] = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
_EPS = 1e-5  # in the official sample-weight denominator


def pseudo_pair_l1(
    a: torch.Tensor, b: torch.Tensor, is_pseudo: torch.Tensor, batch: int | None = None
) -> torch.Tensor:
    """``mean(|a - b| * w)`` over the whole batch with ``w_i = s_i / (sum s + 1e-5)``, scaled to
    the divisor ``batch`` when given (see the module docstring); 0 without pseudo pairs."""
    if a.shape != b.shape or a.shape[0] != is_pseudo.shape[0]:
        raise ValueError(f"shapes {tuple(a.shape)}, {tuple(b.shape)}, {tuple(is_pseudo.shape)}")
    s = is_pseudo.to(a.dtype)
    w = (s / (s.sum() + _EPS)).view(-1, *([1] * (a.dim() - 1)))
    loss = ((a - b.detach()).abs() * w).mean()
    return loss if batch is None else loss * (a.shape[0] / batch)


def vgg_feature_matching(
    fake_feats: Mapping[str, torch.Tensor],
    real_feats: Mapping[str, torch.Tensor],
    is_pseudo: torch.Tensor,
    *,
    batch: int | None = None,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    layers: Sequence[str] = DEFAULT_LAYERS,
) -> torch.Tensor:
    """``sum_k w_k · pseudo_pair_l1(fake_k, real_k)`` over the VGG layers (official ``fm``)."""
    if len(weights) != len(layers) or not layers:
        raise ValueError(f"{len(weights)} weights for {len(layers)} layers")
    terms = [
        pseudo_pair_l1(fake_feats[k], real_feats[k], is_pseudo, batch) * w
        for w, k in zip(weights, layers, strict=True)
    ]
    return torch.stack(terms).sum()


def perceptual_loss(
    fake_feats: Mapping[str, torch.Tensor],
    real_feats: Mapping[str, torch.Tensor],
    layer: str = "relu5_2",
) -> torch.Tensor:
    """MSE between ``fake_feats[layer]`` and the detached ``real_feats[layer]`` over the batch."""
    return F.mse_loss(fake_feats[layer], real_feats[layer].detach())
