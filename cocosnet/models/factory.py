"""Build the networks from a :class:`~cocosnet.config.ModelConfig` (the one place that reads it)."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .blocks import init_weights
from .correspondence import CorrespondenceNet
from .discriminator import MultiscaleDiscriminator
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
