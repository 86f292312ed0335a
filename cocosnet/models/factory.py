"""Build the networks from a :class:`~cocosnet.config.ModelConfig` (the one place that reads it)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..config import ModelConfig
from .blocks import fold_shortcut_betas
from .correspondence import CorrespondenceNet
from .discriminator import MultiscaleDiscriminator
from .label_conv import gather_flop_formulas, set_one_hot_gather
from .spectral import init_weights
from .translation import TranslationNet


def build_correspondence(cfg: ModelConfig, init: bool = True) -> CorrespondenceNet:
    net = CorrespondenceNet(
        cfg.semantic_nc,
        nf=cfg.corr_nf,
        spade_hidden=cfg.spade_hidden,
        adaptor_kernel=cfg.adaptor_kernel,
        warp_stride=cfg.warp_stride,
        match_kernel=cfg.match_kernel,
        alpha=cfg.alpha,
        maskmix=cfg.maskmix,
        pono_c=cfg.pono_c,
        warp_bilinear=cfg.warp_bilinear,
        warp_patch=cfg.warp_patch,
        warp_mask=cfg.warp_mask,
        warp_impl=cfg.warp_impl,
        norm=cfg.param_free_norm,
    )
    return _initialised(net, cfg) if init else net


def build_translation(cfg: ModelConfig, init: bool = True) -> TranslationNet:
    net = TranslationNet(
        cfg.semantic_nc,
        cfg.image_size,
        ngf=cfg.ngf,
        spade_hidden=cfg.spade_hidden,
        use_attention=cfg.use_attention,
        norm=cfg.param_free_norm,
        warp_impl=cfg.warp_impl,
    )
    return _initialised(net, cfg) if init else net


def build_discriminator(cfg: ModelConfig, init: bool = True) -> MultiscaleDiscriminator:
    net = MultiscaleDiscriminator(
        cfg.semantic_nc + 3,
        ndf=cfg.ndf,
        n_layers=cfg.n_layers_d,
        num_d=cfg.num_d,
        use_attention=cfg.use_attention,
    )
    return _initialised(net, cfg) if init else net


def _initialised(net: nn.Module, cfg: ModelConfig) -> nn.Module:
    init_weights(net, cfg.init_gain)
    return net


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def model_info(cfg: ModelConfig) -> dict:
    """Parameter counts per sub-network and the correspondence resolution (``model-info``)."""
    corr = build_correspondence(cfg, init=False)
    gen = build_translation(cfg, init=False)
    disc = build_discriminator(cfg, init=False)
    counts = {
        name: count_parameters(net)
        for name, net in [("correspondence", corr), ("translation", gen), ("discriminator", disc)]
    }
    return {
        "preset": cfg.preset,
        "image_size": cfg.image_size,
        "correspondence_resolution": [cfg.corr_size, cfg.corr_size],
        "correlation_entries_per_image": cfg.corr_size**4,
        "parameters": {
            **counts,
            "correspondence+translation": counts["correspondence"] + counts["translation"],
            "total": sum(counts.values()),
        },
        "parameters_by_module": {
            "correspondence": _by_top_module(corr),
            "translation": _by_top_module(gen),
        },
    }


def _by_top_module(net: nn.Module) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, p in net.named_parameters():
        top = name.split(".")[0]
        out[top] = out.get(top, 0) + p.numel()
    return out


def generator_flops(cfg: ModelConfig) -> dict[str, int]:
    """FLOPs per image of correspondence + translation (inference: batch 1, eval, a one-hot input
    and exemplar label), counted by ``torch.utils.flop_counter`` on the meta device (no compute;
    spectral norm folded, as the inference runtime does).

    ``dense``: as the official code (every conv dense, the warped exemplar label computed).
    Then the exact cuts of the inference runtime, each with the FLOPs it removes:
    ``one_hot_gather_removed`` (:mod:`.label_conv`, the gathers' adds counted),
    ``shortcut_fold_removed`` (:meth:`.blocks.SPADEResBlock.fold_shortcut_beta`),
    ``warped_mask_removed`` (a loss input, not computed); ``total`` is what remains. Inputs
    that are not exactly one-hot (edges, pose, overlapping masks) run the gathered convs dense.
    """
    from torch.utils.flop_counter import FlopCounterMode

    # The materialised warp: the FLOPs of eq. 4 (the fused CPU kernels pad or block them).
    cfg = cfg.model_copy(update={"warp_impl": "naive"})
    with torch.device("meta"):
        corr = build_correspondence(cfg, init=False).eval()
        gen = build_translation(cfg, init=False).eval()
        label = torch.empty(1, cfg.semantic_nc, cfg.image_size, cfg.image_size)
        exemplar = torch.empty(1, 3, cfg.image_size, cfg.image_size)
    for module in [*corr.modules(), *gen.modules()]:
        # Plain weights, as the inference runtime folds spectral norm (whose sigma would also
        # need autocast, which has no meta device).
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)

    def count(warped_mask: bool) -> int:
        counter = FlopCounterMode(display=False, custom_mapping=gather_flop_formulas())
        with torch.no_grad(), counter:
            gen(label, corr(label, exemplar, label, with_warped_mask=warped_mask).warped)
        return counter.get_total_flops()

    set_one_hot_gather(corr, False)
    set_one_hot_gather(gen, False)
    dense = count(True)
    set_one_hot_gather(corr, True)
    set_one_hot_gather(gen, True)
    gathered = count(True)
    fold_shortcut_betas(corr)
    fold_shortcut_betas(gen)
    folded = count(True)
    total = count(False)
    # The warp's correlation with ``warp_impl: gram`` (counted, not run: the meta device has no
    # data for its blocks): one Gram matrix of the 4*corr_nf-wide features and k*k adds per
    # entry instead of the k*k*4*corr_nf-wide descriptors' products.
    n, width, taps = cfg.corr_size**2, 4 * cfg.corr_nf, cfg.match_kernel**2
    gram_removed = 2 * n * n * width * taps - (2 * n * n * width + taps * n * n)
    return {
        "dense": dense,
        "one_hot_gather_removed": dense - gathered,
        "shortcut_fold_removed": gathered - folded,
        "warped_mask_removed": folded - total,
        "total": total,
        "gram_correlation_removed": gram_removed,
        "total_with_gram": total - gram_removed,
    }
