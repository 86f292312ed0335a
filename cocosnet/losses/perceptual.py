"""VGG feature-matching (weighted L1) and perceptual (MSE) losses as used by CoCosNet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = ["DEFAULT_LAYERS", "DEFAULT_WEIGHTS", "perceptual_loss", "vgg_feature_matching"]

DEFAULT_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")
DEFAULT_WEIGHTS: tuple[float, ...] = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def vgg_feature_matching(
    fake_feats: Mapping[str, torch.Tensor],
    real_feats: Mapping[str, torch.Tensor],
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    layers: Sequence[str] = DEFAULT_LAYERS,
) -> torch.Tensor:
    """``sum_k w_k · L1(fake_k, real_k.detach())`` over the given VGG layers (mean-reduced L1)."""
    if len(weights) != len(layers):
        raise ValueError(f"{len(weights)} weights for {len(layers)} layers")
    loss = None
    for w, layer in zip(weights, layers, strict=True):
        term = F.l1_loss(fake_feats[layer], real_feats[layer].detach()) * w
        loss = term if loss is None else loss + term
    if loss is None:
        raise ValueError("no layers given")
    return loss


def perceptual_loss(
    fake_feats: Mapping[str, torch.Tensor],
    real_feats: Mapping[str, torch.Tensor],
    layer: str = "relu4_2",
) -> torch.Tensor:
    """MSE between ``fake_feats[layer]`` and the detached ``real_feats[layer]``."""
    return F.mse_loss(fake_feats[layer], real_feats[layer].detach())
