"""Run the generator (correspondence + translation) fast for inference.

Everything here is optional and measured in ``bench/inference.py``; the float32 eager path with
the ``naive`` warp (``model.warp_impl``) stays the baseline:

* spectral normalisation is folded into plain weights once (exact: the eval-mode weight is
  ``W / sigma`` with a fixed ``sigma``), instead of being recomputed on every call;
* each learned SPADE shortcut's 1x1 conv is folded into its beta conv where that is cheaper
  (:meth:`~.blocks.SPADEResBlock.fold_shortcut_beta`; exact up to float rounding), and the
  warped exemplar label (a training loss's input) is not computed;
* ``precision="bfloat16"`` stores weights and activations in bfloat16, where the CPU has
  avx512_bf16/AMX (or on CUDA tensor cores) the convolutions run about twice as fast. The
  normalisation statistics (layer/instance norms) and the warp's softmax still accumulate in
  float32;
* ``channels_last`` is oneDNN's preferred convolution layout;
* ``compile`` runs the forward through ``torch.compile`` (first call compiles, minutes on a
  small CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from .blocks import fold_shortcut_betas
from .correspondence import CorrespondenceNet
from .translation import TranslationNet

Precision = Literal["float32", "bfloat16"]
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class RuntimeOptions:
    precision: Precision = "float32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in DTYPES:
            raise ValueError(f"precision must be one of {sorted(DTYPES)}, got {self.precision!r}")


def fold_spectral_norm(net: nn.Module) -> nn.Module:
    """Replace every spectral-norm parametrisation by the weight it currently yields (eval)."""
    net.eval()
    for module in list(net.modules()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return net


def fold_for_inference(net: nn.Module) -> nn.Module:
    """Spectral norms folded (:func:`fold_spectral_norm`), then the shortcut betas (each block
    where it is cheaper). In place; the network is for inference only afterwards."""
    return fold_shortcut_betas(fold_spectral_norm(net))


class GeneratorRuntime:
    """``(input, exemplar, exemplar_label) -> (output, warped exemplar)`` in float32, with the
    networks prepared once per :class:`RuntimeOptions`. The networks are modified in place."""

    def __init__(
        self, corr: CorrespondenceNet, gen: TranslationNet, options: RuntimeOptions | None = None
    ):
        self.options = options or RuntimeOptions()
        self.dtype = DTYPES[self.options.precision]
        self.memory_format = (
            torch.channels_last if self.options.channels_last else torch.contiguous_format
        )
        for net in (corr, gen):
            fold_for_inference(net).requires_grad_(False)
            net.to(dtype=self.dtype, memory_format=self.memory_format)
        self.corr, self.gen = corr, gen
        self._forward = self._eager
        if self.options.compile:
            self._forward = torch.compile(self._eager, dynamic=False)

    def _prepare(self, x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        # Always one layout: conv kernels (and so the last bits of a result) depend on it.
        return x.to(self.dtype).contiguous(memory_format=self.memory_format)

    def _eager(self, label, exemplar, exemplar_label):
        warp = self.corr(
            label, exemplar, exemplar_label, hide_exemplar_label=False, with_warped_mask=False
        )
        return self.gen(label, warp.warped), warp.warped

    @torch.inference_mode()
    def __call__(
        self,
        label: torch.Tensor,
        exemplar: torch.Tensor,
        exemplar_label: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, warped = self._forward(
            self._prepare(label), self._prepare(exemplar), self._prepare(exemplar_label)
        )
        return out.float().contiguous(), warped.float().contiguous()
