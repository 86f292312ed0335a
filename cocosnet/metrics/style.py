"""Style relevance (CoCosNet, CVPR 2020, Sec. 4.1) as the authors' evaluation script did it.

Output vs exemplar: for each class present in both the input label and the exemplar label
(class 0 excluded), the cosine between the mean of the output's features under the input label's
class mask and the mean of the exemplar's features under the exemplar label's class mask,
weighted by the class's pixel count in the input label (normalised over the kept classes). Low
layers: relu1_2 scores colour, relu2_2 texture. Averaged over images; an image whose labels share
no kept class has no score and is counted apart. Statistics are computed in float64.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .semantic import FeatureExtractor, Upsample, check_images, cosine, masked_means

STYLE_LAYERS = {"relu1_2": "color", "relu2_2": "texture"}  # layer -> name in the result


def shared_class_weights(
    input_counts: Tensor, exemplar_counts: Tensor, ignore_class: int | None = 0
) -> Tensor:
    """B x K float64 weights: the input label's pixel counts of the classes present in both
    labels (``ignore_class`` dropped), normalised to sum 1 per image; all zero where no class
    is shared."""
    keep = (input_counts > 0) & (exemplar_counts > 0)
    if ignore_class is not None and 0 <= ignore_class < keep.shape[1]:
        keep[:, ignore_class] = False
    weights = torch.where(keep, input_counts, 0).double()
    total = weights.sum(-1, keepdim=True)
    return weights / torch.where(total > 0, total, torch.ones_like(total))


def style_relevance_from_features(
    out_feats: Mapping[str, Tensor],
    ex_feats: Mapping[str, Tensor],
    input_label: Tensor,
    exemplar_label: Tensor,
    num_classes: int,
    *,
    ignore_class: int | None = 0,
    upsample: Upsample = "nearest",
) -> dict[str, Tensor]:
    """Per-image scores (B, float64) per layer; NaN for an image whose labels share no kept
    class (the authors' script scored such an image 0; :class:`StyleRelevance` skips it)."""
    if set(out_feats) != set(ex_feats):
        raise ValueError(f"layers differ: {sorted(out_feats)} vs {sorted(ex_feats)}")
    scores = {}
    for layer, out in out_feats.items():
        out_means, input_counts = masked_means(out, input_label, num_classes, upsample=upsample)
        ex_means, ex_counts = masked_means(
            ex_feats[layer], exemplar_label, num_classes, upsample=upsample
        )
        weights = shared_class_weights(input_counts, ex_counts, ignore_class)
        score = (cosine(out_means, ex_means) * weights).sum(-1)
        scores[layer] = torch.where(weights.sum(-1) > 0, score, torch.nan)
    return scores


class StyleRelevance:
    """Streaming style relevance over batches of (output, exemplar, input label, exemplar label)."""

    def __init__(
        self,
        vgg: FeatureExtractor,
        num_classes: int,
        *,
        layers: Mapping[str, str] = STYLE_LAYERS,
        ignore_class: int | None = 0,  # the authors kept only ids > 0; None keeps every class
        upsample: Upsample = "nearest",  # as the authors' scripts; "bilinear" is smoother
        empty_as_zero: bool = True,  # as the authors: an image without shared classes scores 0
    ):
        if not layers:
            raise ValueError("need at least one layer")
        self.vgg, self.num_classes, self.layers = vgg, num_classes, dict(layers)
        self.ignore_class, self.upsample, self.empty_as_zero = ignore_class, upsample, empty_as_zero
        self.sums = dict.fromkeys(self.layers, 0.0)
        self.images = 0  # images with at least one shared class
        self.images_without_shared_classes = 0

    @torch.no_grad()
    def update(
        self, output: Tensor, exemplar: Tensor, input_label: Tensor, exemplar_label: Tensor
    ) -> dict[str, Tensor]:
        """Add a batch (images B x 3 x H x W in [-1, 1], labels B x H x W, each image the size
        of its own label); returns its per-image scores per layer (NaN: no shared class)."""
        check_images(output, input_label, "output")
        check_images(exemplar, exemplar_label, "exemplar")
        if output.shape[0] != exemplar.shape[0]:
            raise ValueError(f"batch sizes differ: {output.shape[0]} vs {exemplar.shape[0]}")
        layers = tuple(self.layers)
        b = output.shape[0]
        if output.shape == exemplar.shape:  # one VGG pass for both
            feats = self.vgg(torch.cat([output, exemplar]), layers)
            out_feats = {k: feats[k][:b] for k in layers}
            ex_feats = {k: feats[k][b:] for k in layers}
        else:
            out_feats, ex_feats = self.vgg(output, layers), self.vgg(exemplar, layers)
        scores = style_relevance_from_features(
            {k: out_feats[k] for k in layers},
            {k: ex_feats[k] for k in layers},
            input_label,
            exemplar_label,
            self.num_classes,
            ignore_class=self.ignore_class,
            upsample=self.upsample,
        )
        scored = ~scores[layers[0]].isnan()
        for layer, s in scores.items():
            self.sums[layer] += float(s[scored].sum())
        self.images += int(scored.sum())
        self.images_without_shared_classes += int((~scored).sum())
        return scores

    def result(self) -> dict[str, float | int]:
        """Means per layer (NaN if no image had a shared class), ``images`` (those scored) and
        ``images_without_shared_classes`` (skipped, or scored 0 with ``empty_as_zero``)."""
        skipped = self.images_without_shared_classes
        if not self.images + skipped:
            raise ValueError("no images were evaluated")
        n = self.images + (skipped if self.empty_as_zero else 0)
        return {
            **{
                f"style_relevance_{name}": self.sums[layer] / n if n else float("nan")
                for layer, name in self.layers.items()
            },
            "images": self.images,
            "images_without_shared_classes": skipped,
        }
