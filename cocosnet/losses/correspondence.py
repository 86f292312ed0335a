"""Correspondence losses of CoCosNet: domain alignment, cycle and warped mask.

(Warp-self is a pseudo-pair term: :func:`cocosnet.losses.perceptual.pseudo_pair_l1`.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "cycle_loss",
    "domain_alignment_loss",
    "warped_mask_loss",
    "warped_mask_weights",
]


def domain_alignment_loss(input_features: Tensor, real_features: Tensor) -> Tensor:
    """L1 between the (already L2-normalised) input-adaptor features and the exemplar-adaptor
    features of the ground-truth image, both ``B x C x h x w``
    (official: ``F.l1_loss(adaptive_feature_seg, adaptive_feature_img_pair)``)."""
    if input_features.shape != real_features.shape:
        raise ValueError(f"shape mismatch: {input_features.shape} vs {real_features.shape}")
    return F.l1_loss(input_features, real_features)


def cycle_loss(cycle: Tensor, exemplar: Tensor, warp_stride: int, patch: bool = False) -> Tensor:
    """L1 between the cycle-warped exemplar (exemplar warped to the input and back) and the
    exemplar itself.

    For non-patch warps the cycle lives on the correspondence grid ``h x w`` and is compared with
    the exemplar average-pooled by ``warp_stride``; for patch warps the cycle is full resolution
    and is compared with the exemplar directly.
    """
    if patch:
        target = exemplar
    else:
        if warp_stride < 1:
            raise ValueError(f"warp_stride must be >= 1, got {warp_stride}")
        target = F.avg_pool2d(exemplar, warp_stride) if warp_stride > 1 else exemplar
    target = target.detach()
    if cycle.shape != target.shape:
        raise ValueError(f"cycle shape {tuple(cycle.shape)} != target {tuple(target.shape)}")
    return F.l1_loss(cycle, target)


def _class_ids(label: Tensor) -> Tensor:
    """``B x L x H x W`` one-hot (argmax over channels) or ``B x 1 x H x W`` / ``B x H x W`` ids."""
    if label.dim() == 3:
        return label.long()
    if label.dim() != 4:
        raise ValueError(f"label must be 3-D or 4-D, got {label.dim()}-D")
    if label.shape[1] == 1:
        return label[:, 0].long()
    return label.argmax(dim=1)


def _on_grid(label: Tensor, size: tuple[int, int]) -> Tensor:
    """Class ids nearest-downsampled to ``size``, as the warp sees the labels (official: x1/4)."""
    ids = _class_ids(label)
    return F.interpolate(ids[:, None].float(), size=size, mode="nearest")[:, 0].long()


def warped_mask_weights(
    target: Tensor, exemplar_ids: Tensor, num_classes: int, ignore_class: int | None = 0
) -> Tensor:
    """Per-pixel weights (``B x h x w``, 0 or 1) of the warped-mask loss: 0 where the input's
    class is absent from the exemplar (both read on the warp grid) or is ``ignore_class``."""
    b = target.shape[0]
    if target.min() < 0 or target.max() >= num_classes:
        raise ValueError("input label has class ids outside the warped mask's channels")
    present = torch.zeros(b, num_classes, dtype=torch.bool, device=target.device)
    present.scatter_(1, exemplar_ids.reshape(b, -1).clamp(0, num_classes - 1), True)
    keep = torch.gather(present, 1, target.reshape(b, -1)).reshape(target.shape)
    if ignore_class is not None:
        keep &= target != ignore_class
    return keep.float()


def warped_mask_loss(
    warped_mask: Tensor, input_label: Tensor, exemplar_label: Tensor, ignore_class: int | None = 0
) -> Tensor:
    """Official 'direct' warped-mask loss.

    ``warped_mask`` is the exemplar's one-hot label warped by the correspondence
    (``B x L x h x w``, channels sum to 1). Both labels (one-hot or ids) are read on its grid
    (nearest), and ``sum(nll(log(warped_mask + 1e-10), input) * weights) / (sum(weights) +
    1e-5)`` with the weights of :func:`warped_mask_weights`: 0 when every pixel is ignored.
    """
    if warped_mask.dim() != 4:
        raise ValueError(f"warped_mask must be B x L x h x w, got {tuple(warped_mask.shape)}")
    grid = tuple(warped_mask.shape[-2:])
    target = _on_grid(input_label, grid)
    weights = warped_mask_weights(
        target, _on_grid(exemplar_label, grid), warped_mask.shape[1], ignore_class
    )
    # contiguous: NLLLoss2d's backward refuses the transposed layout the warp returns.
    log_p = torch.log(warped_mask.contiguous() + 1e-10)
    nll = F.nll_loss(log_p, target, reduction="none")
    return (nll * weights).sum() / (weights.sum() + 1e-5)
