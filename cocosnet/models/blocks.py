"""Building blocks shared by the networks: SPADE, positional normalisation, residual blocks and
the SAGAN-style non-local block."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .label_conv import (
    conv_one_hot,
    gather_index,
    gather_supported,
    one_hot_ids,
    resize_ids,
)
from .spectral import spectral
from .warp import WarpImpl, softmax_warp

ParamFreeNorm = Literal["positional", "instance", "batch"]


def positional_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """PONO: normalise each pixel over channels (unbiased variance, as the official code).

    Computed as a layer norm over the channel axis, which is one fused kernel that accumulates
    in float32 even for bfloat16 inputs: with the biased variance v_b = v (C-1)/C,
    ``(x - m) / sqrt(v + eps) = sqrt((C-1)/C) * (x - m) / sqrt(v_b + eps (C-1)/C)``.
    """
    c = x.shape[1]
    if c < 2:
        raise ValueError("positional normalisation needs at least 2 channels")
    shrink = (c - 1) / c
    normed = F.layer_norm(x.movedim(1, -1), (c,), eps=eps * shrink).movedim(-1, 1)
    return normed * math.sqrt(shrink)


class PositionalNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return positional_norm(x)


def make_param_free_norm(kind: ParamFreeNorm, channels: int) -> nn.Module:
    if kind == "positional":
        return PositionalNorm()
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    # Converted to SyncBatchNorm by the training loop when it runs distributed.
    return nn.BatchNorm2d(channels, affine=False)


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last if ``x`` is laid out that way (and not also plain contiguous)."""
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return torch.contiguous_format
    return torch.channels_last


class ConditionPyramid:
    """A condition map resized (nearest) to each feature size once: every SPADE at one
    resolution shares it instead of resizing (and, channels-last, re-laying out) its own copy.
    The layout is the network weights' (not the caller's tensor's, so results do not depend on
    how an input happens to be strided).

    ``label`` is the trailing channels of ``cond`` when they are the input label map: if it is
    exactly one-hot (checked once, here) the pyramid carries its class ids, and
    :func:`conv_condition` convolves it by gathers (:mod:`.label_conv`). Nearest resizing of a
    one-hot map is the one-hot of the nearest-resized ids.
    """

    def __init__(
        self,
        cond: torch.Tensor,
        memory_format: torch.memory_format,
        label: torch.Tensor | None = None,
    ):
        self.cond, self.memory_format = cond.contiguous(memory_format=memory_format), memory_format
        self.ids = None if label is None else one_hot_ids(label)
        self.n_labels = 0 if self.ids is None else label.shape[1]
        self._sizes: dict[tuple[int, int], torch.Tensor] = {}
        self._dense: dict[tuple[int, int], torch.Tensor] = {}
        self._index: dict[tuple, torch.Tensor] = {}

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.cond.shape[-2:])

    def _resized(self, cache: dict, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if size not in cache:
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="nearest")
            cache[size] = x.contiguous(memory_format=self.memory_format)
        return cache[size]

    def at(self, size: tuple[int, int]) -> torch.Tensor:
        return self._resized(self._sizes, self.cond, tuple(size))

    def dense_at(self, size: tuple[int, int]) -> torch.Tensor | None:
        """The channels before the label at ``size`` (None if there are none)."""
        n_dense = self.cond.shape[1] - self.n_labels
        return self._resized(self._dense, self.cond[:, :n_dense], tuple(size)) if n_dense else None

    def gather_index(self, conv: nn.Conv2d, size: tuple[int, int]) -> torch.Tensor | None:
        """The label's :func:`~.label_conv.gather_index` for ``conv`` at ``size``, or None where
        ``conv`` takes the dense path (no ids, or a conv the gather does not compute)."""
        size = tuple(size)
        if self.ids is None or conv.in_channels != self.cond.shape[1]:
            return None
        if not gather_supported(conv, size):
            return None
        key = (size, conv.kernel_size[0], conv.padding_mode)
        if key not in self._index:
            ids = resize_ids(self.ids, size)
            self._index[key] = gather_index(ids, key[1], self.n_labels, conv.padding_mode)
        return self._index[key]


def conv_condition(conv: nn.Conv2d, cond: ConditionPyramid, size: tuple[int, int]) -> torch.Tensor:
    """``conv(cond.at(size))``; by gathers (equal up to rounding) when the pyramid carries the
    label's class ids."""
    index = cond.gather_index(conv, size)
    if index is None:
        return conv(cond.at(size))
    # conv.weight read once: a spectral-normed weight runs a power iteration per read (training).
    dense = cond.dense_at(size)
    return conv_one_hot(index, dense, conv.weight, conv.bias, conv.padding_mode, cond.memory_format)


class SPADE(nn.Module):
    """Spatially-adaptive denormalisation: ``norm(x) * (1 + gamma(c)) + beta(c)``.

    gamma and beta are predicted from the condition ``c`` (nearest-resized to x) by a 3x3 conv
    with ReLU followed by two 3x3 convs; all convs use reflection padding as the official code.
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int, norm: ParamFreeNorm):
        super().__init__()
        self.norm = make_param_free_norm(norm, channels)
        self.mlp_shared = nn.Conv2d(cond_channels, hidden, 3, padding=1, padding_mode="reflect")
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1, padding_mode="reflect")
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1, padding_mode="reflect")

    def hidden(self, x: torch.Tensor, cond: torch.Tensor | ConditionPyramid) -> torch.Tensor:
        """The ReLU'd shared conv of the condition at x's size (what gamma and beta read)."""
        if isinstance(cond, ConditionPyramid):
            return F.relu(conv_condition(self.mlp_shared, cond, x.shape[-2:]))
        if cond.shape[-2:] != x.shape[-2:]:
            cond = F.interpolate(cond, size=x.shape[-2:], mode="nearest")
        return F.relu(self.mlp_shared(cond))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | ConditionPyramid) -> torch.Tensor:
        actv = self.hidden(x, cond)
        return self.norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResBlock(nn.Module):
    """Two SPADE -> LeakyReLU -> conv3x3 units plus a shortcut (learned if widths differ)."""

    def __init__(self, fin: int, fout: int, cond_channels: int, hidden: int, norm: ParamFreeNorm):
        super().__init__()
        fmid = min(fin, fout)
        self.norm_0 = SPADE(fin, cond_channels, hidden, norm)
        self.conv_0 = spectral(nn.Conv2d(fin, fmid, 3, padding=1, padding_mode="reflect"))
        self.norm_1 = SPADE(fmid, cond_channels, hidden, norm)
        self.conv_1 = spectral(nn.Conv2d(fmid, fout, 3, padding=1, padding_mode="reflect"))
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, cond_channels, hidden, norm)
            self.conv_s = spectral(nn.Conv2d(fin, fout, 1, bias=False))
        self.folded_beta_s: nn.Conv2d | None = None  # set by fold_shortcut_beta (inference)

    @torch.no_grad()
    def fold_shortcut_beta(self) -> bool:
        """Fold the 1x1 shortcut conv into the shortcut SPADE's beta conv (an exact FLOP cut for
        inference): ``W_s (W_b * a + b_b) = (W_s W_b) * a + W_s b_b``, one 3x3 conv hidden -> fout
        instead of hidden -> fin. Only where it is cheaper (fout < fin); needs plain weights
        (spectral norm folded). Returns whether it folded."""
        if not self.learned_shortcut or self.conv_s.out_channels >= self.conv_s.in_channels:
            return False
        if parametrize.is_parametrized(self.conv_s, "weight"):
            raise ValueError("fold the spectral norm before the shortcut's beta")
        beta, w_s = self.norm_s.mlp_beta, self.conv_s.weight[:, :, 0, 0]
        folded = nn.Conv2d(beta.in_channels, w_s.shape[0], 3, padding=1, padding_mode="reflect")
        folded = folded.to(beta.weight).requires_grad_(beta.weight.requires_grad)
        folded.weight.copy_(torch.einsum("of,fhij->ohij", w_s, beta.weight))
        folded.bias.copy_(w_s @ beta.bias)
        self.folded_beta_s = folded
        return True

    def _shortcut(self, x: torch.Tensor, cond: torch.Tensor | ConditionPyramid) -> torch.Tensor:
        if not self.learned_shortcut:
            return x
        if self.folded_beta_s is None:
            return self.conv_s(self.norm_s(x, cond))
        norm_s = self.norm_s
        actv = norm_s.hidden(x, cond)
        scaled = norm_s.norm(x) * (1 + norm_s.mlp_gamma(actv))
        return self.conv_s(scaled) + self.folded_beta_s(actv)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | ConditionPyramid) -> torch.Tensor:
        shortcut = self._shortcut(x, cond)
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, cond), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, cond), 0.2))
        return shortcut + dx


def fold_shortcut_betas(net: nn.Module) -> nn.Module:
    """:meth:`SPADEResBlock.fold_shortcut_beta` in every block of ``net`` (inference)."""
    for module in net.modules():
        if isinstance(module, SPADEResBlock):
            module.fold_shortcut_beta()
    return net


class ConvNormAct(nn.Module):
    """conv (optionally spectral-normed) -> optional InstanceNorm -> optional LeakyReLU(0.2).

    With instance norm the conv has no bias (it would be cancelled), as the official code.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        padding: int = 1,
        *,
        sn: bool = True,
        instance_norm: bool = True,
        act: bool = True,
    ):
        super().__init__()
        conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=not instance_norm)
        self.conv = spectral(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(cout, affine=False) if instance_norm else nn.Identity()
        self.act = nn.LeakyReLU(0.2) if act else nn.Identity()

    def forward(self, x: torch.Tensor | ConditionPyramid) -> torch.Tensor:
        """``x`` a pyramid: the conv of its full-size condition (by gathers if it has ids)."""
        if isinstance(x, ConditionPyramid):
            return self.act(self.norm(conv_condition(self.conv, x, x.size)))
        return self.act(self.norm(self.conv(x)))


class ResidualBlock(nn.Module):
    """(reflect-pad, conv3x3, InstanceNorm, PReLU) x2 with identity skip; one PReLU used twice."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect")
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect")
        self.prelu = nn.PReLU()

    def forward(
        self, x: torch.Tensor, label_index: torch.Tensor | None = None, n_labels: int = 0
    ) -> torch.Tensor:
        """``label_index``: :func:`~.label_conv.gather_index` (3x3, reflect) of the ids of x's
        last ``n_labels`` channels when they are a one-hot map (maskmix): conv1 gathers them."""
        if label_index is None:
            first = self.conv1(x)
        else:
            dense = x[:, : x.shape[1] - n_labels]
            w, b = self.conv1.weight, self.conv1.bias
            first = conv_one_hot(label_index, dense, w, b, "reflect", memory_format_of(x))
        out = self.prelu(F.instance_norm(first))
        out = F.instance_norm(self.conv2(out))
        return self.prelu(out + x)


class NonLocalAttention(nn.Module):
    """SAGAN self-attention: theta, phi (C/8) and g (C/2) 1x1 convs, phi and g 2x2 max-pooled,
    softmax(theta^T phi) (no 1/sqrt(d) scaling), 1x1 output conv, residual gain gamma (init 0)."""

    def __init__(self, channels: int, sn: bool = True, impl: WarpImpl = "fused"):
        super().__init__()
        self.impl: WarpImpl = impl  # naive: the (HW x HW/4) matrix materialised, as the official
        wrap = spectral if sn else (lambda m: m)
        self.theta = wrap(nn.Conv2d(channels, channels // 8, 1, bias=False))
        self.phi = wrap(nn.Conv2d(channels, channels // 8, 1, bias=False))
        self.g = wrap(nn.Conv2d(channels, channels // 2, 1, bias=False))
        self.out = wrap(nn.Conv2d(channels // 2, channels, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        query = self.theta(x).flatten(2).transpose(1, 2)
        key = F.max_pool2d(self.phi(x), 2).flatten(2).transpose(1, 2)
        value = F.max_pool2d(self.g(x), 2).flatten(2).transpose(1, 2)
        # Attention (scale 1, as SAGAN) without materialising the (HW x HW/4) matrix: the same
        # exact kernel as the correspondence warp.
        attended = softmax_warp(query, key, value, alpha=1.0, impl=self.impl)
        attended = attended.transpose(1, 2).reshape(b, -1, h, w)
        return self.gamma * self.out(attended) + x
