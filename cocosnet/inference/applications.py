"""Applications of the learned correspondence (paper §4.4 and supplement): image editing with the
photo as its own exemplar (Figs. 10/20) here; makeup transfer by warping user strokes
(Figs. 11/21) in :mod:`.makeup` and point matches between the input and the exemplar
(Figs. 8/17) in :mod:`.matches`.

The correspondence is eq. 4's ``softmax(alpha * M)``: one row per input (query) cell of the
correspondence grid (h x w, stride r = S / h in the S x S network square), one column per
exemplar (key) cell, every row summing to 1. :class:`Correspondence` keeps the two descriptor
sets rather than the N x N matrix (N = h * w: 4096 at the paper's 64 x 64 grid, 65536 with warp
stride 1), so warping values costs N + N memory with the fused kernel; :meth:`weights` builds
rows of the matrix on demand. Files of any size enter and leave through their letterboxes
(prepare.py); pixel coordinates have integer values at pixel centres.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..formats.tensors import to_uint8
from ..models.correspondence import l2_normalize
from ..models.warp import WarpImpl, softmax_warp
from .domain import Domain
from .prepare import Prepared, prepare_exemplar, prepare_input
from .translator import Translator

Point = tuple[float, float]


@dataclass(frozen=True)
class Correspondence:
    """``softmax(alpha * query key^T)`` of one input/exemplar pair on an h x w grid of an S x S
    square, and the exemplar warped by it exactly as the network warps it."""

    query: torch.Tensor  # N x D input descriptors, N = h * w (row-major cells)
    key: torch.Tensor  # N x D exemplar descriptors
    alpha: float
    grid: tuple[int, int]
    size: int
    warped: torch.Tensor | None = None  # 3 x S x S, as Translator.translate's warped exemplar
    impl: WarpImpl = "fused"

    @property
    def stride(self) -> int:
        return self.size // self.grid[0]

    def weights(
        self, rows: torch.Tensor | None = None, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Rows (all, or the query cells ``rows``) of the dense matrix, each summing to 1;
        ``keep`` (N bools) restricts the softmax to those exemplar cells."""
        query = self.query if rows is None else self.query[rows]
        logits = self.alpha * query @ self.key.T
        if keep is not None:  # -inf, not zeroed weights: no 0/0 when every kept cell underflows
            logits = logits.masked_fill(~keep.to(logits.device), float("-inf"))
        return torch.softmax(logits, dim=-1)

    def warp_values(self, values: torch.Tensor) -> torch.Tensor:
        """C x h x w values at the exemplar's cells -> C x h x w at the input's cells (eq. 4)."""
        c = values.shape[0]
        rows = values.reshape(c, -1).T[None].to(self.query)
        out = softmax_warp(self.query[None], self.key[None], rows, self.alpha, self.impl)
        return out[0].T.reshape(c, *self.grid).to(values.device)

    def warp_field(self, field: torch.Tensor) -> torch.Tensor:
        """C x S x S exemplar-side field -> C x S x S input-side: averaged over each cell (as
        the network pools the exemplar's colours), warped, bilinearly upsampled."""
        pooled = F.avg_pool2d(field[None].float(), self.stride)[0]
        up = F.interpolate(
            self.warp_values(pooled)[None],
            size=(self.size, self.size),
            mode="bilinear",
            align_corners=False,
        )
        return up[0]


def _check(name: str, x: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    if x is not None and tuple(x.shape) != shape:
        raise ValueError(f"{name} must be {' x '.join(map(str, shape))}, got {tuple(x.shape)}")


@torch.inference_mode()
def correspondence_weights(
    translator: Translator,
    input_mask: torch.Tensor,
    exemplar_photo: torch.Tensor,
    exemplar_mask: torch.Tensor | None = None,
) -> Correspondence:
    """The correspondence of one prepared pair (C x S x S input, 3 x S x S exemplar in [-1, 1],
    optionally the exemplar's own C x S x S input), computed as :meth:`Translator.translate`
    does: the same adaptors and, for maskmix, the same shown mask or seeded noise."""
    corr, s, c = translator.corr, translator.size, translator.semantic_nc
    for name, x, shape in [
        ("input_mask", input_mask, (c, s, s)),
        ("exemplar_photo", exemplar_photo, (3, s, s)),
        ("exemplar_mask", exemplar_mask, (c, s, s)),
    ]:
        _check(name, x, shape)
    dtype = translator.runtime.dtype  # the networks' precision (bfloat16 runtimes)
    x = input_mask[None].to(translator.device, dtype)
    ex = exemplar_photo[None].to(translator.device, dtype)
    label = translator._exemplar_label(1, None if exemplar_mask is None else exemplar_mask[None])
    label = None if label is None else label.to(dtype)
    f_in = l2_normalize(corr.input_adaptor(x))
    f_ex = l2_normalize(corr.exemplar_adaptor(ex))
    grid = tuple(f_in.shape[-2:])
    seg = F.interpolate(x, size=grid, mode="nearest")
    ref = None if label is None else F.interpolate(label, size=grid, mode="nearest")
    query, key = corr._match(f_in, f_ex, seg, ref, hide_exemplar_label=False)
    warped = corr._to_image(corr.warp(query, key, corr._exemplar_values(ex)), grid)[0]
    return Correspondence(
        query[0].float(), key[0].float(), corr.alpha, grid, s, warped.float(), corr.warp_impl
    )


def mask_input(
    translator: Translator,
    path: str | os.PathLike,
    photo: Path,
    size: tuple[int, int],
    domain: Domain,
) -> Prepared:
    """The prepared mask (edges, pose) of a ``photo`` of (H, W) ``size``, which it must match."""
    prepared = prepare_input(
        path, translator.semantic_nc, translator.size, domain=domain, canvas=size
    )
    box = prepared.box
    if (box.height, box.width) != tuple(size):
        raise ValueError(
            f"{prepared.path} is {box.width}x{box.height} but photo {photo} is {size[1]}x{size[0]}"
        )
    return prepared


def edit_image(
    translator: Translator,
    photo: str | os.PathLike,
    mask: str | os.PathLike,
    edited_mask: str | os.PathLike,
    *,
    domain: Domain = "auto",
) -> np.ndarray:
    """Synthesise ``edited_mask`` with ``photo`` as its own exemplar and the photo's original
    ``mask`` as the exemplar's mask (Fig. 10: like the training's pseudo pairs) -> H x W x 3
    uint8 at the photo's size. The translator decides whether that mask is shown (default)."""
    ex = prepare_exemplar(photo, translator.size)
    size = (ex.box.height, ex.box.width)
    original = mask_input(translator, mask, ex.path, size, domain)
    edited = mask_input(translator, edited_mask, ex.path, size, domain)
    out, _ = translator.translate(edited.tensor[None], ex.tensor[None], original.tensor[None])
    return to_uint8(edited.box.restore(out.cpu()))[0]
