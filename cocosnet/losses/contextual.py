"""Contextual loss (Mechrez et al., 2018) and CoCosNet's multi-layer contextual objective.

Follows the official CoCosNet ``ContextualLoss_forward``: both feature sets are centred on the
per-channel mean of the target (over batch and space), L2-normalised over channels, compared
with cosine distance, turned into relative distances, exponentiated with bandwidth ``h`` and
normalised over target positions. For each target position the best-matching generated position
is taken; the mean over target positions is the contextual similarity ``CX`` and the loss is
``-log(CX)`` averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

__all__ = ["contextual_loss", "contextual_objective"]


def contextual_loss(
    x: torch.Tensor, y: torch.Tensor, h: float = 0.1, eps: float = 1e-3
) -> torch.Tensor:
    """Contextual loss between generated features ``x`` and target features ``y`` (B×C×H×W).

    Returns a scalar: ``mean_b(-log CX_b)``. ``eps`` is the constant added to the minimum
    distance in the relative-distance normalisation (1e-3 in the official code).
    """
    if x.dim() != 4 or y.dim() != 4:
        raise ValueError(f"expected 4-D features, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[:2] != y.shape[:2]:
        raise ValueError(f"batch/channel mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    n, c = x.shape[:2]
    # Per-channel mean of the target over batch and spatial positions.
    y_mu = y.mean(dim=(0, 2, 3), keepdim=True)
    x_n = F.normalize(x - y_mu, p=2, dim=1).reshape(n, c, -1)  # N C Px
    y_n = F.normalize(y - y_mu, p=2, dim=1).reshape(n, c, -1)  # N C Py
    cos = torch.bmm(x_n.transpose(1, 2), y_n)  # N Px Py
    d = 1.0 - cos
    d_rel = d / (d.min(dim=-1, keepdim=True).values + eps)  # min over target positions j
    # Softmax over j of (1 - d_rel)/h == exp(...)/sum_j exp(...), computed stably.
    cx_ij = torch.softmax((1.0 - d_rel) / h, dim=-1)
    cx = cx_ij.max(dim=1).values.mean(dim=-1)  # max over generated i, mean over target j
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
