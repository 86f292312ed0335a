"""Correspondence accuracy of the warp, where input and exemplar both have label maps.

On the correspondence grid (labels nearest-downsampled to it), for held-out pairs (input i,
exemplar j != i):

* ``warp_accuracy``: the exemplar's label warped by the learned correspondence (argmax) equals
  the input's label;
* ``warp_accuracy_baseline``: the exemplar's own label at the same position equals it (no
  correspondence at all);
* ``warp_accuracy_upper_bound``: the input pixel's class occurs in the exemplar (no warp can do
  better);
* ``warp_accuracy_objects``: warp accuracy on the pixels of object classes whose class occurs
  in the exemplar (large background classes dominate the first number);
* ``gap_closed``: (accuracy - baseline) / (upper bound - baseline).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..models.correspondence import CorrespondenceNet


@dataclass
class WarpAccuracy:
    """Streaming pixel counts; :meth:`result` turns them into the metrics."""

    object_classes: Sequence[int] = ()
    ignore_class: int | None = None
    per_class: dict[int, list[int]] = field(default_factory=dict)  # class: [pixels, correct]
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("pixels", "correct", "baseline", "reachable", "object_pixels", "object_correct"), 0
        )
    )

    def update(
        self, warped_label: torch.Tensor, input_ids: torch.Tensor, exemplar_ids: torch.Tensor
    ):
        """``warped_label`` B x L x h x w; ``input_ids``/``exemplar_ids`` B x H x W class ids."""
        b, num_classes, h, w = warped_label.shape
        target = _nearest(input_ids, (h, w))
        ex = _nearest(exemplar_ids, (h, w))
        pred = warped_label.argmax(1)
        valid = (target >= 0) & (target < num_classes)
        if self.ignore_class is not None:
            valid &= target != self.ignore_class
        # Classes present in each exemplar (ids outside the channels, e.g. 255, are not classes).
        ex_valid = ((ex >= 0) & (ex < num_classes)).reshape(b, -1).long()
        counts = torch.zeros(b, num_classes, dtype=torch.long, device=target.device)
        counts.scatter_add_(1, ex.clamp(0, num_classes - 1).reshape(b, -1), ex_valid)
        safe = target.clamp(0, num_classes - 1).reshape(b, -1)
        reachable = torch.gather(counts > 0, 1, safe).reshape(b, h, w) & valid
        objects = torch.isin(target, torch.tensor(list(self.object_classes), device=target.device))
        objects &= reachable
        c = self.counts
        c["pixels"] += int(valid.sum())
        c["correct"] += int(((pred == target) & valid).sum())
        c["baseline"] += int(((ex == target) & valid).sum())
        c["reachable"] += int(reachable.sum())
        c["object_pixels"] += int(objects.sum())
        c["object_correct"] += int(((pred == target) & objects).sum())
        hits = ((pred == target) & valid).reshape(-1)
        ids = target.reshape(-1)[valid.reshape(-1)]
        for k, n in zip(*torch.unique(ids, return_counts=True), strict=True):
            self.per_class.setdefault(int(k), [0, 0])[0] += int(n)
        for k, n in zip(*torch.unique(target.reshape(-1)[hits], return_counts=True), strict=True):
            self.per_class.setdefault(int(k), [0, 0])[1] += int(n)

    def result(self) -> dict[str, float | int]:
        c = self.counts
        if c["pixels"] == 0:
            raise ValueError("no labelled pixels were evaluated")
        acc, base, upper = (c[k] / c["pixels"] for k in ("correct", "baseline", "reachable"))
        gap = upper - base
        return {
            "warp_accuracy": acc,
            "warp_accuracy_baseline": base,
            "warp_accuracy_upper_bound": upper,
            "warp_accuracy_objects": (
                c["object_correct"] / c["object_pixels"] if c["object_pixels"] else float("nan")
            ),
            "gap_closed": (acc - base) / gap if gap > 0 else float("nan"),
            "pairs_pixels": c["pixels"],
            "object_pixels": c["object_pixels"],
            "per_class": {
                k: {"pixels": n, "accuracy": hit / n}
                for k, (n, hit) in sorted(self.per_class.items())
            },
        }


def _nearest(ids: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(ids[:, None].float(), size=size, mode="nearest")[:, 0].long()


@torch.no_grad()
def warp_accuracy(
    corr: CorrespondenceNet,
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    object_classes: Sequence[int] = (),
    ignore_class: int | None = None,
    hide_exemplar_label: bool = True,
    device: torch.device | str = "cpu",
) -> dict[str, float | int]:
    """Warp accuracy over batches holding ``input``, ``exemplar``, ``exemplar_input`` (one-hot
    label maps and photos) and ``label``/``exemplar_label`` (class ids). By default the exemplar's
    mask is hidden from the network (noise), so matching relies on appearance alone."""
    meter = WarpAccuracy(object_classes, ignore_class)
    was_training = corr.training
    corr.eval()
    try:
        for batch in batches:
            warped = corr.warp_label(
                batch["input"].to(device),
                batch["exemplar"].to(device),
                batch["exemplar_input"].to(device),
                hide_exemplar_label=hide_exemplar_label,
            )
            meter.update(
                warped.float(), batch["label"].to(device), batch["exemplar_label"].to(device)
            )
    finally:
        corr.train(was_training)
    return meter.result()
