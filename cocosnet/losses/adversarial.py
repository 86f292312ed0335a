"""Adversarial losses for the multiscale discriminator (SPADE / CoCosNet hinge GAN).

The multiscale discriminator returns one entry per scale; each entry is the list of that
scale's layer outputs, the last of which is the logit map (``list[list[Tensor]]``). A bare
tensor per scale is also accepted and treated as the logit map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["d_hinge_loss", "feature_matching_loss", "g_hinge_loss"]

DiscOutput = Sequence[Sequence[Tensor] | Tensor]


def _logits(pred: DiscOutput) -> list[Tensor]:
    if isinstance(pred, Tensor):
        return [pred]
    if len(pred) == 0:
        raise ValueError("discriminator output has no scales")
    return [p if isinstance(p, Tensor) else p[-1] for p in pred]


def d_hinge_loss(pred_real: DiscOutput, pred_fake: DiscOutput) -> tuple[Tensor, Tensor]:
    """Hinge loss for the discriminator, returned as ``(d_real, d_fake)``.

    ``d_real`` is the average over scales of ``mean(relu(1 - real_logits))`` and ``d_fake`` the
    average over scales of ``mean(relu(1 + fake_logits))`` (official GANLoss, hinge, for D).
    """
    real = _logits(pred_real)
    fake = _logits(pred_fake)
    d_real = torch.stack([F.relu(1.0 - x).mean() for x in real]).mean()
    d_fake = torch.stack([F.relu(1.0 + x).mean() for x in fake]).mean()
    return d_real, d_fake


def g_hinge_loss(pred_fake: DiscOutput) -> Tensor:
    """Hinge loss for the generator: average over scales of ``-mean(fake_logits)``."""
    return torch.stack([-x.mean() for x in _logits(pred_fake)]).mean()


def feature_matching_loss(pred_fake: DiscOutput, pred_real: DiscOutput) -> Tensor:
    """Discriminator feature-matching loss (unweighted; the caller applies lambda_feat).

    For each scale, the L1 distances between the fake and (detached) real intermediate
    features, every layer except the last (logit), are summed; the sums are averaged over
    scales, as ``GAN_Feat_loss += unweighted_loss * lambda_feat / num_D`` in the official code.
    """
    if len(pred_fake) != len(pred_real):
        raise ValueError(f"scale count mismatch: {len(pred_fake)} fake vs {len(pred_real)} real")
    if len(pred_fake) == 0:
        raise ValueError("discriminator output has no scales")
    num_d = len(pred_fake)
    total: Tensor | None = None
    for fake_scale, real_scale in zip(pred_fake, pred_real, strict=True):
        if isinstance(fake_scale, Tensor) or isinstance(real_scale, Tensor):
            raise ValueError("feature matching needs per-scale lists of layer outputs")
        n = len(fake_scale) - 1
        if len(real_scale) - 1 != n:
            raise ValueError("layer count mismatch between fake and real outputs")
        for j in range(n):
            term = F.l1_loss(fake_scale[j], real_scale[j].detach()) / num_d
            total = term if total is None else total + term
    if total is None:
        return pred_fake[0][-1].new_zeros(())
    return total
