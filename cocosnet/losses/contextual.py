"""Contextual loss (Mechrez et al., 2018) as CoCosNet trains with it, and the multi-layer objective.

Follows the official ``ContextualLoss_forward`` with ``--PONO`` (every released recipe): both
feature sets are centred on the target's mean over channels *at each position*, L2-normalised
over channels and compared by cosine distance ``d`` [B, Nx, Ny]; relative distances
``d / (min_y d + 1e-3)`` become affinities ``exp((1 - d_rel) / h)`` normalised over the target
positions ``y``. Each generated position ``x`` keeps its best target match, ``CX`` is the mean of
those over ``x``, and the loss is ``-log CX`` per sample, averaged over the batch.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import torch
import torch.nn.functional as F

__all__ = ["contextual_loss", "contextual_objective"]

_NORM_EPS = sys.float_info.epsilon  # added to the feature norms, as the official feature_normalize


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + _NORM_EPS)


def contextual_loss(
    x: torch.Tensor, y: torch.Tensor, h: float = 0.1, eps: float = 1e-3
) -> torch.Tensor:
    """Contextual loss of generated features ``x`` against target features ``y`` (B x C x H x W,
    same spatial size as the official PONO centring needs). Returns ``mean_b(-log CX_b)``."""
    if x.dim() != 4 or x.shape != y.shape:
        raise ValueError(
            f"expected two B x C x H x W features of one shape, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    n, c = x.shape[:2]
    y_mu = y.mean(dim=1, keepdim=True)  # per position, over channels (PONO)
    x_n = _unit(x - y_mu).reshape(n, c, -1)  # B C Nx
    y_n = _unit(y - y_mu).reshape(n, c, -1)  # B C Ny
    d = 1.0 - torch.bmm(x_n.transpose(1, 2), y_n)  # B Nx Ny
    d_rel = d / (d.min(dim=-1, keepdim=True).values + eps)
    # exp(z) / sum_y exp(z) is a softmax over y; (1 - d_rel) / h <= 1 / h, so nothing overflows.
    affinity = torch.softmax((1.0 - d_rel) / h, dim=-1)
    cx = affinity.max(dim=-1).values.mean(dim=-1)  # best target per x, mean over x
    return (-torch.log(cx)).mean()


def contextual_objective(
    fake_feats: Mapping[str, torch.Tensor],
    exemplar_feats: Mapping[str, torch.Tensor],
    use_22: bool = False,
    h: float = 0.1,
) -> torch.Tensor:
    """CoCosNet's contextual objective over VGG19 features (official ``get_ctx_loss``).

    ``8·CX(relu5_2) + 4·CX(relu4_2) + 2·CX(avgpool2(relu3_2))`` and, with ``use_22``,
    ``+ 1·CX(avgpool4(relu2_2))``. Exemplar features are detached.
    """

    def term(layer: str, pool: int) -> torch.Tensor:
        f = fake_feats[layer]
        e = exemplar_feats[layer].detach()
        if pool > 1:
            f, e = F.avg_pool2d(f, pool), F.avg_pool2d(e, pool)
        return contextual_loss(f, e, h=h)

    loss = term("relu5_2", 1) * 8 + term("relu4_2", 1) * 4 + term("relu3_2", 2) * 2
    if use_22:
        loss = loss + term("relu2_2", 4) * 1
    return loss
