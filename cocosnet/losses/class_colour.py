"""Class colour loss: a demo-only term, not in the paper.

The paper's pull towards the exemplar's style is the contextual loss on VGG19 features; without
VGG19 (the demo) nothing but pseudo pairs rewards the exemplar's colours, while the
discriminator's feature matching rewards the ground truth's, which for a retrieved exemplar are
another scene's. So the demo's generator drew its colours from the class. This term asks, per
class present in both label maps, that the output's mean colour over the class's pixels in the
input equal the exemplar's mean colour over the class's pixels in the exemplar: the style of the
semantically corresponding part, as the paper's style relevance metric measures it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# A class covering fewer pixels than this on either side is not compared (its mean is noise).
MIN_PIXELS = 16


def class_means(images: Tensor, label: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """``(B x K x 3 mean colours, B x K pixel counts)`` of each class id in ``label`` (B x H x W,
    ids outside 0..K-1 count for no class)."""
    if images.shape[0] != label.shape[0] or images.shape[-2:] != label.shape[-2:]:
        raise ValueError(f"images {tuple(images.shape)} and label {tuple(label.shape)} differ")
    valid = (label >= 0) & (label < num_classes)
    one_hot = F.one_hot(torch.where(valid, label, 0).long(), num_classes)
    one_hot = (one_hot * valid[..., None]).to(images.dtype)  # B x H x W x K
    counts = one_hot.sum((1, 2))
    sums = torch.einsum("bchw,bhwk->bkc", images, one_hot)
    return sums / counts.clamp(min=1)[..., None], counts


def class_colour_loss(
    fake: Tensor,
    exemplar: Tensor,
    label: Tensor,
    exemplar_label: Tensor,
    num_classes: int,
    min_pixels: int = MIN_PIXELS,
) -> Tensor:
    """Mean over (image, class with >= ``min_pixels`` pixels in both maps) of the L1 distance,
    averaged over RGB, between the output's and the exemplar's class mean colours; 0 (with a
    gradient path) when no class qualifies."""
    fake_means, fake_counts = class_means(fake, label, num_classes)
    with torch.no_grad():
        ex_means, ex_counts = class_means(exemplar, exemplar_label, num_classes)
    shared = (fake_counts >= min_pixels) & (ex_counts >= min_pixels)
    if not shared.any():
        return fake.sum() * 0.0
    return (fake_means - ex_means).abs().mean(-1)[shared].mean()
