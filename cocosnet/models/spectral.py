"""Spectral normalisation as the official code has it, and the official weight init (which warms
the spectral norms' vectors up)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize


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
