"""Correspondence losses of CoCosNet: domain alignment, cycle, warped mask, warp-self."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "IGNORE_INDEX",
    "cycle_loss",
    "domain_alignment_loss",
    "warp_self_loss",
    "warped_mask_loss",
]

IGNORE_INDEX = -100


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


def warped_mask_target(
    warped_mask: Tensor, input_label: Tensor, exemplar_label: Tensor, ignore_class: int | None = 0
) -> Tensor:
    """Per-pixel target class ids (``B x h x w``) for :func:`warped_mask_loss`.

    The input label is nearest-downsampled to the warped mask's grid; pixels of ``ignore_class``
    (official: 0, ADE20k's "other"; None for datasets whose class 0 is real) and of classes
    absent from the exemplar label are set to :data:`IGNORE_INDEX`.
    """
    b, num_classes, h, w = warped_mask.shape
    label = input_label if input_label.dim() == 4 else input_label.unsqueeze(1)
    label = F.interpolate(label.float(), size=(h, w), mode="nearest")
    target = _class_ids(label)
    ex = _class_ids(exemplar_label)
    present = torch.zeros(b, num_classes, dtype=torch.bool, device=warped_mask.device)
    present.scatter_(1, ex.reshape(b, -1).clamp(0, num_classes - 1).to(present.device), True)
    if target.min() < 0 or target.max() >= num_classes:
        raise ValueError("input label has class ids outside the warped mask's channels")
    keep = torch.gather(present, 1, target.reshape(b, -1)).reshape(b, h, w)
    if ignore_class is not None:
        keep &= target != ignore_class
    return torch.where(keep, target, torch.full_like(target, IGNORE_INDEX))


def warped_mask_loss(
    warped_mask: Tensor, input_label: Tensor, exemplar_label: Tensor, ignore_class: int | None = 0
) -> Tensor:
    """Official 'direct' warped-mask loss.

    ``warped_mask`` is the exemplar's one-hot label warped by the correspondence
    (``B x L x h x w``, channels sum to 1); it is scored with
    ``F.nll_loss(torch.log(warped_mask + 1e-10), target)`` against the input's class ids at
    the same resolution, ignoring ``ignore_class`` pixels and classes absent from the exemplar.
    Returns 0 when every pixel is ignored.
    """
    if warped_mask.dim() != 4:
        raise ValueError(f"warped_mask must be B x L x h x w, got {tuple(warped_mask.shape)}")
    target = warped_mask_target(warped_mask, input_label, exemplar_label, ignore_class)
    if not bool((target != IGNORE_INDEX).any()):
        return (warped_mask * 0).sum()
    # contiguous: NLLLoss2d's backward refuses the transposed layout the warp returns.
    log_p = torch.log(warped_mask.contiguous() + 1e-10)
    return F.nll_loss(log_p, target, ignore_index=IGNORE_INDEX)


def warp_self_loss(warped: Tensor, ground_truth: Tensor) -> Tensor:
    """L1 between the self-warped result and the ground truth (DeepFashion pseudo pairs)."""
    if warped.shape != ground_truth.shape:
        raise ValueError(f"shape mismatch: {tuple(warped.shape)} vs {tuple(ground_truth.shape)}")
    return F.l1_loss(warped, ground_truth)
