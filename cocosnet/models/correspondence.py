"""Cross-domain correspondence network (paper §3.1; official ``NoVGGCorrespondence``).

Two domain adaptors (no weight sharing) map the input (mask/edges/pose) and the exemplar photo to
a shared feature space; a shared block of residual blocks adapts them further (optionally mixed
with the semantic masks, ``maskmix``); 1x1 projections theta/phi, k x k unfolding, channel-wise
centring and L2 normalisation give the descriptors whose cosine similarities form M (eq. 3);
the exemplar is warped by ``softmax(alpha * M)`` (eq. 4).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import (
    ConditionPyramid,
    ConvNormAct,
    ParamFreeNorm,
    ResidualBlock,
    SPADEResBlock,
    memory_format_of,
)
from .gram import GridDescriptors, gram_softmax_warp
from .label_conv import gather_index, gather_supported, one_hot_ids
from .warp import WarpImpl, softmax_warp

_EPS = sys.float_info.epsilon  # added to feature norms, as the official code


def l2_normalize(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return x / (torch.linalg.vector_norm(x, dim=dim, keepdim=True) + _EPS)


def _grid_to_rows(x: torch.Tensor) -> torch.Tensor:
    """B x C x h x w -> B x (h*w) x C."""
    return x.flatten(2).transpose(1, 2)


def _rows_to_grid(rows: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """B x (h*w) x C -> B x C x h x w."""
    return rows.transpose(1, 2).reshape(rows.shape[0], -1, *grid)


class DomainAdaptor(nn.Module):
    """Five spectral-normed conv + InstanceNorm layers (LeakyReLU between) that reduce the image
    to the correspondence grid, then three SPADE residual blocks conditioned on the adaptor's
    own input (8nf, 8nf, then 8nf -> 4nf).

    With ``label_input`` (the input adaptor) an exactly one-hot input is convolved by gathers
    (first conv and SPADE condition convs; :mod:`.label_conv`) while ``one_hot_gather`` is on.
    """

    def __init__(
        self,
        in_channels: int,
        nf: int,
        kernel: int,
        downsamples: int,
        spade_hidden: int,
        norm: ParamFreeNorm,
        label_input: bool = False,
    ):
        super().__init__()
        self.label_input = label_input  # photos never take the gathers: no per-call check
        self.one_hot_gather = True
        # The official strided convs are layers 2 and 4; for a finer grid layer 4 (then 2)
        # becomes a stride-1 3x3 conv (official --warp_stride 2).
        strided = {1: downsamples >= 1, 3: downsamples >= 2}
        widths = [in_channels, nf, 2 * nf, 4 * nf, 8 * nf, 8 * nf]
        self.convs = nn.ModuleList()
        for i in range(5):
            k, s = (kernel, 2) if strided.get(i) else (3, 1)
            self.convs.append(ConvNormAct(widths[i], widths[i + 1], k, s, 1, act=False))
        self.blocks = nn.ModuleList(
            [
                SPADEResBlock(8 * nf, 8 * nf, in_channels, spade_hidden, norm),
                SPADEResBlock(8 * nf, 8 * nf, in_channels, spade_hidden, norm),
                SPADEResBlock(8 * nf, 4 * nf, in_channels, spade_hidden, norm),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A plain conv's weight: reading a spectral-normed one would run a power iteration.
        layout = memory_format_of(self.blocks[0].norm_0.mlp_shared.weight)
        label = x if self.label_input and self.one_hot_gather else None
        cond = ConditionPyramid(x, layout, label)
        # Without ids the first conv reads x as given (its layout), as the dense path always did.
        h = self.convs[0](cond if cond.ids is not None else x)
        for conv in self.convs[1:]:
            h = conv(F.leaky_relu(h, 0.2))
        for block in self.blocks:
            h = block(h, cond)
        return h


@dataclass
class CorrespondenceOutput:
    """What the correspondence network gives the generator and the losses."""

    warped: torch.Tensor  # B x 3 x H x W: exemplar warped to the input's layout
    warped_mask: torch.Tensor | None  # B x L x h x w: exemplar label warped (warped-mask loss)
    cycle: torch.Tensor | None  # warped warped back to the exemplar (eq. 12), h x w (patch: H x W)
    input_features: torch.Tensor  # B x C x h x w: L2-normalised input-adaptor features
    real_features: torch.Tensor | None  # same, exemplar adaptor on the ground truth (eq. 9)


Descriptors = torch.Tensor | GridDescriptors  # B x N x D rows, or implicit (the gram impl)


class CorrespondenceNet(nn.Module):
    def __init__(
        self,
        semantic_nc: int,
        *,
        nf: int = 64,
        spade_hidden: int = 128,
        adaptor_kernel: int = 3,
        warp_stride: int = 4,
        match_kernel: int = 3,
        alpha: float = 100.0,
        maskmix: bool = True,
        pono_c: bool = True,
        warp_bilinear: bool = False,
        warp_patch: bool = False,
        warp_mask: str = "direct",
        warp_impl: WarpImpl = "gram",  # exact; ~4.5x faster than fused on the CPU (issue 17)
        norm: ParamFreeNorm = "positional",
    ):
        super().__init__()
        downsamples = {1: 0, 2: 1, 4: 2}[warp_stride]
        self.input_adaptor = DomainAdaptor(
            semantic_nc, nf, adaptor_kernel, downsamples, spade_hidden, norm, label_input=True
        )
        self.exemplar_adaptor = DomainAdaptor(
            3, nf, adaptor_kernel, downsamples, spade_hidden, norm
        )
        width = 4 * nf + (semantic_nc if maskmix else 0)
        self.shared = nn.Sequential(*[ResidualBlock(width) for _ in range(4)])
        self.theta = nn.Conv2d(width, 4 * nf, 1)
        self.phi = nn.Conv2d(width, 4 * nf, 1)
        self.semantic_nc = semantic_nc
        self.warp_stride = warp_stride
        self.match_kernel = match_kernel
        self.alpha = alpha
        self.maskmix = maskmix
        self.pono_c = pono_c
        self.warp_bilinear = warp_bilinear
        self.warp_patch = warp_patch
        self.warp_mask = warp_mask
        self.warp_impl: WarpImpl = warp_impl
        self.one_hot_gather = True  # maskmix's label channels in the shared block's first conv

    @property
    def uses_gram(self) -> bool:
        """Whether the warps take :class:`GridDescriptors` (the ``gram`` impl): it needs PONO_C
        (a per-descriptor centring) and an odd match_kernel; otherwise ``gram`` warps the
        descriptor rows as ``fused``."""
        return self.warp_impl == "gram" and self.pono_c and self.match_kernel % 2 == 1

    def descriptors(self, features: torch.Tensor, projection: nn.Conv2d) -> torch.Tensor:
        """B x N x D descriptors: projection, k x k unfold, centring, L2 normalisation (eq. 3)."""
        x = projection(features)
        k = self.match_kernel
        x = F.unfold(x, k, padding=k // 2) if k > 1 else x.flatten(2)
        # PONO_C centres each position's descriptor over its channels; without it the official
        # code centres each channel over positions.
        x = x - x.mean(dim=1 if self.pono_c else -1, keepdim=True)
        return l2_normalize(x, dim=1).transpose(1, 2)

    def _exemplar_values(self, exemplar: torch.Tensor) -> torch.Tensor:
        """B x N x C rows to warp: avg-pooled colours, or r x r RGB patches with warp_patch."""
        r = self.warp_stride
        if self.warp_patch:
            return F.unfold(exemplar, r, stride=r).transpose(1, 2)
        return _grid_to_rows(F.avg_pool2d(exemplar, r) if r > 1 else exemplar)

    def _to_image(self, rows: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Inverse of _exemplar_values: rows back to a full-resolution image."""
        r = self.warp_stride
        h, w = grid
        if self.warp_patch:
            return F.fold(rows.transpose(1, 2), (h * r, w * r), r, stride=r)
        img = _rows_to_grid(rows, grid)
        if r == 1:
            return img
        mode = "bilinear" if self.warp_bilinear else "nearest"
        return F.interpolate(img, scale_factor=r, mode=mode)

    def warp(self, query: Descriptors, key: Descriptors, value: torch.Tensor) -> torch.Tensor:
        """Eq. 4: ``value`` (B x M x C) at the key positions warped to the query positions."""
        if isinstance(query, GridDescriptors):
            return gram_softmax_warp(query, key, value, self.alpha)
        return softmax_warp(query, key, value, self.alpha, self.warp_impl)

    def _shared(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The shared residual blocks. ``labels``: the maskmix label channels that end ``x``; if
        exactly one-hot (both domains), the first conv gathers them (:mod:`.label_conv`)."""
        first, index = self.shared[0], None
        if (
            labels is not None
            and self.one_hot_gather
            and gather_supported(first.conv1, x.shape[-2:])
        ):
            ids = one_hot_ids(labels)
            if ids is not None:
                index = gather_index(ids, first.conv1.kernel_size[0], labels.shape[1], "reflect")
        x = first(x, index, 0 if labels is None else labels.shape[1])
        for block in self.shared[1:]:
            x = block(x)
        return x

    def _match(
        self,
        f_in: torch.Tensor,
        f_ex: torch.Tensor,
        seg: torch.Tensor,
        ref: torch.Tensor | None,
        hide_exemplar_label: bool,
        implicit: bool = False,
    ) -> tuple[Descriptors, Descriptors]:
        """Descriptors of the input (query) and the exemplar (key) from the adaptor features:
        B x N x D rows, or with ``implicit`` in the form :meth:`warp` takes for this impl
        (:class:`GridDescriptors` for ``gram``: the 9x-wider rows are never built)."""
        labels = None
        if self.maskmix:
            visible = ref is not None and not hide_exemplar_label
            ref_mix = ref if visible else 0.01 * torch.randn_like(seg)
            f_in, f_ex = torch.cat([f_in, seg], 1), torch.cat([f_ex, ref_mix], 1)
            labels = torch.cat([seg, ref_mix], 0)
        # The shared block is per-sample (instance norm): both domains go through it as one batch.
        content, reference = self._shared(torch.cat([f_in, f_ex], 0), labels).chunk(2, dim=0)
        if implicit and self.uses_gram:
            k = self.match_kernel
            return (
                GridDescriptors.of(self.theta(content), k, _EPS),
                GridDescriptors.of(self.phi(reference), k, _EPS),
            )
        return self.descriptors(content, self.theta), self.descriptors(reference, self.phi)

    def warp_label(
        self,
        input_label: torch.Tensor,
        exemplar: torch.Tensor,
        exemplar_label: torch.Tensor,
        *,
        hide_exemplar_label: bool = False,
    ) -> torch.Tensor:
        """The exemplar's label map (B x L x H x W, one-hot) warped to the input's layout on the
        correspondence grid (B x L x h x w): what correspondence accuracy is measured on."""
        f_in = l2_normalize(self.input_adaptor(input_label))
        f_ex = l2_normalize(self.exemplar_adaptor(exemplar))
        grid = f_in.shape[-2:]
        seg = F.interpolate(input_label, size=grid, mode="nearest")
        ref = F.interpolate(exemplar_label, size=grid, mode="nearest")
        query, key = self._match(f_in, f_ex, seg, ref, hide_exemplar_label, implicit=True)
        return _rows_to_grid(self.warp(query, key, _grid_to_rows(ref)), grid)

    def forward(
        self,
        input_label: torch.Tensor,
        exemplar: torch.Tensor,
        exemplar_label: torch.Tensor | None = None,
        *,
        hide_exemplar_label: bool = False,
        real_image: torch.Tensor | None = None,
        cycle: bool = False,
        with_warped_mask: bool = True,
    ) -> CorrespondenceOutput:
        """Warp ``exemplar`` (B x 3 x H x W in [-1, 1]) to the layout of ``input_label``.

        ``exemplar_label`` feeds maskmix (unless ``hide_exemplar_label``: after the mask warm-up,
        and at test time without exemplar masks, it is replaced by 0.01 N(0, 1) noise) and the
        warped mask (a loss term: inference skips it with ``with_warped_mask=False``).
        ``real_image`` adds its adaptor features for the domain-alignment loss.
        """
        input_features = l2_normalize(self.input_adaptor(input_label))
        f_ex = l2_normalize(self.exemplar_adaptor(exemplar))
        real_features = None
        if real_image is not None:
            # A second pass, as the official code: in training each pass runs one spectral-norm
            # power iteration, so one batched pass would leave the adaptor's vectors behind.
            real_features = l2_normalize(self.exemplar_adaptor(real_image))
        grid = input_features.shape[-2:]
        seg = F.interpolate(input_label, size=grid, mode="nearest")
        ref = None
        if exemplar_label is not None:
            ref = F.interpolate(exemplar_label, size=grid, mode="nearest")
        query, key = self._match(input_features, f_ex, seg, ref, hide_exemplar_label, implicit=True)

        values = self._exemplar_values(exemplar)
        n_colour = values.shape[-1]
        want_mask = with_warped_mask and self.warp_mask == "direct" and ref is not None
        if want_mask:  # the exemplar label rides along with the colours in one warp
            values = torch.cat([values, _grid_to_rows(ref)], dim=-1)
        warped_rows = self.warp(query, key, values)
        colour_rows = warped_rows[..., :n_colour]

        warped_mask = None
        if want_mask:
            warped_mask = _rows_to_grid(warped_rows[..., n_colour:], grid)
        elif with_warped_mask and self.warp_mask == "cycle":
            # Input label warped to the exemplar and back (official 'cycle' mask loss).
            to_ref = self.warp(key, query, _grid_to_rows(seg))
            warped_mask = _rows_to_grid(self.warp(query, key, to_ref), grid)

        cycled = None
        if cycle:
            back = self.warp(key, query, colour_rows)
            cycled = self._to_image(back, grid) if self.warp_patch else _rows_to_grid(back, grid)
        return CorrespondenceOutput(
            warped=self._to_image(colour_rows, grid),
            warped_mask=warped_mask,
            cycle=cycled,
            input_features=input_features,
            real_features=real_features,
        )
