"""Building blocks shared by the networks: SPADE, positional normalisation, residual blocks,
the SAGAN-style non-local block, and weight initialisation."""

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
from .warp import WarpImpl, softmax_warp

ParamFreeNorm = Literal["positional", "instance", "batch"]


class SpectralNorm(nn.Module):
    """Spectral normalisation (Miyato et al.) as the official ``torch.nn.utils.spectral_norm``.

    In training every forward runs one power iteration that updates ``v`` first
    (``v <- n(W^T u)``, then ``u <- n(W v)``; PyTorch's parametrization API updates ``u``
    first), and ``sigma = u^T W v``; in eval the stored vectors are used as they are. The
    vectors start as normalised N(0, 1) draws, as the old API (:func:`init_weights` then warms
    them up). They are stored as ``_u``/``_v``, the state-dict keys of PyTorch's parametrization.
    """

    def __init__(self, weight: torch.Tensor, eps: float = 1e-12):
        super().__init__()
        self.eps = eps
        h = weight.shape[0]
        with torch.no_grad():
            u = F.normalize(weight.new_empty(h).normal_(0, 1), dim=0, eps=eps)
            v = F.normalize(weight.new_empty(weight.numel() // h).normal_(0, 1), dim=0, eps=eps)
        self.register_buffer("_u", u)
        self.register_buffer("_v", v)

    @torch.no_grad()
    def power_iterations(self, weight: torch.Tensor, n: int = 1) -> None:
        """``n`` updates of the stored vectors, v first: ``v <- n(W^T u)``, ``u <- n(W v)``."""
        mat = weight.flatten(1)
        for _ in range(n):
            F.normalize(torch.mv(mat.t(), self._u), dim=0, eps=self.eps, out=self._v)
            F.normalize(torch.mv(mat, self._v), dim=0, eps=self.eps, out=self._u)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # sigma in the weight's precision, also under autocast (as the float32 official code).
        with torch.autocast(weight.device.type, enabled=False):
            u, v = self._u, self._v
            if self.training:
                self.power_iterations(weight)
                # Copies: the in-place updates of the next forward must not touch this graph.
                u, v = u.clone(), v.clone()
            mat = weight.flatten(1)
            return weight / torch.dot(u, torch.mv(mat, v))


def spectral(module: nn.Module) -> nn.Module:
    """Spectral normalisation of a conv's weight (:class:`SpectralNorm`)."""
    # unsafe: registering would otherwise call forward once, i.e. run a power iteration.
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight), unsafe=True)
    return module


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

    def forward(self, x: torch.Tensor, cond: torch.Tensor | ConditionPyramid) -> torch.Tensor:
        if isinstance(cond, ConditionPyramid):
            shared = conv_condition(self.mlp_shared, cond, x.shape[-2:])
        else:
            if cond.shape[-2:] != x.shape[-2:]:
                cond = F.interpolate(cond, size=x.shape[-2:], mode="nearest")
            shared = self.mlp_shared(cond)
        actv = F.relu(shared)
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

    def forward(self, x: torch.Tensor, cond: torch.Tensor | ConditionPyramid) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, cond)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, cond), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, cond), 0.2))
        return shortcut + dx


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(F.instance_norm(self.conv1(x)))
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


def conv_weight(module: nn.Module) -> torch.Tensor | None:
    """The trainable weight of a conv/linear, looking through the spectral-norm parametrisation."""
    if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
        return module.parametrizations.weight.original
    return getattr(module, "weight", None)


@torch.no_grad()
def init_weights(net: nn.Module, gain: float = 0.02, sn_warm_up: int = 15) -> None:
    """Xavier-normal (gain 0.02) conv/linear weights and zero biases, as the official init.

    Then ``sn_warm_up`` power iterations bring each spectral norm's random vectors to the new
    weight (as PyTorch's parametrization does at registration): the official vectors start
    random, which matters only for an untrained network in eval mode, whose sigma would
    otherwise be a random number; training's first forward iterates anyway.
    """
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_normal_(conv_weight(m), gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        if parametrize.is_parametrized(m, "weight"):
            for p in m.parametrizations.weight:
                if isinstance(p, SpectralNorm):
                    p.power_iterations(m.parametrizations.weight.original, sn_warm_up)
