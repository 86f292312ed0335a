"""Semantic consistency (CoCosNet, CVPR 2020, Sec. 4.1) as the authors' evaluation script did it.

For a generated image and its ground truth, the Caffe VGG19 features relu3_2, relu4_2 and relu5_2
are upsampled to the ground-truth label map's size; for every class of that label, the cosine of
the two images' mean feature vectors over the class's pixels is weighted by the class's pixel
fraction and summed. Each layer's score is averaged over images; the paper's single number is
the mean of the three layers. Statistics are computed in float64.

:func:`masked_means` (per-class mean features) is shared with :mod:`.style`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor

Upsample = Literal["bilinear", "nearest"]
# A VGG19 from cocosnet.models.vgg, or anything called the same way: (images in [-1, 1], layers).
FeatureExtractor = Callable[[Tensor, Sequence[str]], dict[str, Tensor]]
SEMANTIC_LAYERS = ("relu3_2", "relu4_2", "relu5_2")


def check_label(label: Tensor, num_classes: int) -> Tensor:
    """A B x H x W map of integer class ids in [0, num_classes), as int64."""
    if label.ndim != 3 or torch.is_floating_point(label) or label.dtype == torch.bool:
        raise ValueError(
            f"label must be a B x H x W map of integer class ids, got {label.dtype} "
            f"{tuple(label.shape)}"
        )
    if label.numel():
        low, high = int(label.min()), int(label.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"class ids must lie in 0..{num_classes - 1}, got {low}..{high} "
                "(a map without labels cannot be scored)"
            )
    return label.long()


def check_images(images: Tensor, label: Tensor, what: str) -> None:
    """``images`` must be B x 3 x H x W with the batch size and H x W of ``label``."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{what} must be B x 3 x H x W, got {tuple(images.shape)}")
    if images.shape[0] != label.shape[0] or images.shape[-2:] != label.shape[-2:]:
        raise ValueError(
            f"{what} {tuple(images.shape)} and its label {tuple(label.shape)} differ in batch "
            "size or H x W"
        )


def interpolation_matrix(
    out_size: int, in_size: int, mode: Upsample, device: torch.device | str | None = None
) -> Tensor:
    """``out x in`` float64 weights of 1-D resampling as ``F.interpolate`` does it.

    ``bilinear`` is align_corners=False (source = (i + 0.5) * in/out - 0.5, clamped at 0);
    ``nearest`` is torch's legacy nearest (source = floor(i * in/out), the scale in float32),
    the mode of the authors' scripts.
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"unknown upsampling mode {mode!r}; use 'bilinear' or 'nearest'")
    dst = torch.arange(out_size, device=device)
    weights = torch.zeros(out_size, in_size, dtype=torch.float64, device=device)
    if mode == "nearest":
        scale = torch.tensor(in_size / out_size, dtype=torch.float32, device=device)
        src = (dst.float() * scale).floor().long().clamp_max(in_size - 1)
        weights[dst, src] = 1.0
        return weights
    src = ((dst.double() + 0.5) * (in_size / out_size) - 0.5).clamp_min(0)
    left = src.floor().long().clamp_max(in_size - 1)
    right = (left + 1).clamp_max(in_size - 1)
    frac = src - left
    weights.index_put_((dst, left), 1 - frac, accumulate=True)
    weights.index_put_((dst, right), frac, accumulate=True)
    return weights


def masked_means(
    features: Tensor, label: Tensor, num_classes: int, *, upsample: Upsample = "nearest"
) -> tuple[Tensor, Tensor]:
    """Per-class mean feature vectors (B x K x C, float64; zero for absent classes) and pixel
    counts (B x K, int64) of ``features`` (B x C x h x w) upsampled to the label's H x W.

    Equals ``F.interpolate(features, (H, W), mode=upsample)`` followed by the mean over each
    class's pixels, without building the B x C x H x W map: resampling is linear and separable
    (``up = Ay f Axᵀ``), so class k's sum is ``Σ_pq f[:, p, q] (Ayᵀ 1[label = k] Ax)[p, q]``.
    """
    label = check_label(label, num_classes)
    if features.ndim != 4 or features.shape[0] != label.shape[0]:
        raise ValueError(
            f"features must be B x C x h x w with the label's batch size {label.shape[0]}, "
            f"got {tuple(features.shape)}"
        )
    b, c, h, w = features.shape
    height, width = label.shape[1:]
    device = features.device
    present, ids = torch.unique(label.to(device), return_inverse=True)  # only classes that occur
    k = present.numel()
    ay = interpolation_matrix(height, h, upsample, device)  # H x h
    ax = interpolation_matrix(width, w, upsample, device)  # W x w
    # rows[b, i, k, q]: sum of ax[j, q] over the pixels j of row i that hold class k.
    rows = torch.zeros(b, height, k, w, dtype=torch.float64, device=device)
    rows.scatter_add_(2, ids[..., None].expand(b, height, width, w), ax.expand(b, height, width, w))
    weights = torch.einsum("ip,bikq->bkpq", ay, rows)  # B x k x h x w
    sums = torch.einsum("bcpq,bkpq->bkc", features.double(), weights)
    counts = torch.zeros(b, k, dtype=torch.int64, device=device)
    counts.scatter_add_(1, ids.flatten(1), torch.ones_like(ids.flatten(1)))
    all_means = torch.zeros(b, num_classes, c, dtype=torch.float64, device=device)
    all_counts = torch.zeros(b, num_classes, dtype=torch.int64, device=device)
    all_means[:, present] = sums / counts.clamp_min(1)[..., None]
    all_counts[:, present] = counts
    return all_means, all_counts


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity over the last dim; a zero vector scores 0 (sklearn's ``normalize``,
    which the authors' scripts used, leaves zero vectors at zero)."""

    def unit(x: Tensor) -> Tensor:
        norm = x.norm(dim=-1, keepdim=True)
        return x / torch.where(norm > 0, norm, torch.ones_like(norm))

    return (unit(a) * unit(b)).sum(-1)


def semantic_consistency_from_features(
    fake_feats: Mapping[str, Tensor],
    real_feats: Mapping[str, Tensor],
    label: Tensor,
    num_classes: int,
    *,
    upsample: Upsample = "nearest",
) -> dict[str, Tensor]:
    """Per-image scores (B, float64) per layer: Σ over the ground-truth label's classes of
    cos(mean fake feature, mean real feature) x the class's pixel fraction."""
    if set(fake_feats) != set(real_feats):
        raise ValueError(f"layers differ: {sorted(fake_feats)} vs {sorted(real_feats)}")
    area = label.shape[-2] * label.shape[-1]
    scores = {}
    for layer, fake in fake_feats.items():
        real = real_feats[layer]
        if fake.shape != real.shape:
            raise ValueError(f"{layer}: fake {tuple(fake.shape)} vs real {tuple(real.shape)}")
        # One pass over [fake, real] stacked along channels: both share the label's masks.
        means, counts = masked_means(
            torch.cat([fake, real], 1), label, num_classes, upsample=upsample
        )
        fake_means, real_means = means.split(fake.shape[1], dim=-1)
        scores[layer] = (cosine(fake_means, real_means) * counts / area).sum(-1)
    return scores


class SemanticConsistency:
    """Streaming semantic consistency over batches of (generated, ground truth, its label)."""

    def __init__(
        self,
        vgg: FeatureExtractor,
        num_classes: int,
        layers: Sequence[str] = SEMANTIC_LAYERS,
        *,
        upsample: Upsample = "nearest",  # as the authors' scripts; "bilinear" is smoother
    ):
        if not layers:
            raise ValueError("need at least one layer")
        self.vgg, self.num_classes, self.upsample = vgg, num_classes, upsample
        self.layers = tuple(layers)
        self.sums = dict.fromkeys(self.layers, 0.0)
        self.images = 0

    @torch.no_grad()
    def update(self, fake: Tensor, real: Tensor, label: Tensor) -> dict[str, Tensor]:
        """Add a batch (images B x 3 x H x W in [-1, 1], label B x H x W); returns its
        per-image scores per layer."""
        check_images(fake, label, "fake")
        check_images(real, label, "real")
        feats = self.vgg(torch.cat([fake, real]), self.layers)
        b = fake.shape[0]
        scores = semantic_consistency_from_features(
            {k: feats[k][:b] for k in self.layers},
            {k: feats[k][b:] for k in self.layers},
            label,
            self.num_classes,
            upsample=self.upsample,
        )
        for layer, s in scores.items():
            self.sums[layer] += float(s.sum())
        self.images += b
        return scores

    def result(self) -> dict[str, float | int]:
        if not self.images:
            raise ValueError("no images were evaluated")
        per_layer = {f"semantic_consistency_{k}": self.sums[k] / self.images for k in self.layers}
        return {
            **per_layer,
            "semantic_consistency": sum(per_layer.values()) / len(per_layer),  # the paper's number
            "images": self.images,
        }
