"""The official presets of the ``model``, ``loss`` and ``train`` sections, and the resolvers
that apply them (preset values first, then the section's own keys)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .base import ConfigError, _Section
from .model import ModelConfig
from .training import LossConfig, RuntimeConfig, TrainConfig

# The official settings, read off the README test commands of the released checkpoints
# (REFERENCE.md, shared/official/keys-*.json). demo is ours: tiny enough to train on 2 CPU cores.
PRESETS: dict[str, dict[str, Any]] = {
    "paper_ade20k": dict(
        semantic_nc=151,
        adaptor_kernel=3,
        maskmix=True,
        use_attention=True,
        warp_bilinear=False,
        warp_patch=False,
        warp_mask="direct",
    ),
    # The released CelebA-HQ mask checkpoint's test flags (no key listing in shared/official).
    "paper_celebahq_mask": dict(
        semantic_nc=19,
        adaptor_kernel=4,
        maskmix=True,
        use_attention=True,
        warp_bilinear=True,
        warp_patch=False,
        warp_mask="direct",
    ),
    "paper_celebahq_edge": dict(
        semantic_nc=15,
        adaptor_kernel=4,
        maskmix=True,
        use_attention=True,
        warp_bilinear=True,
        warp_patch=False,
        warp_mask="none",
    ),
    "paper_deepfashion": dict(
        semantic_nc=20,
        adaptor_kernel=4,
        maskmix=False,
        use_attention=True,
        warp_bilinear=True,
        warp_patch=True,
        warp_mask="none",
    ),
    "demo": dict(
        image_size=64,
        corr_size=16,
        semantic_nc=8,
        ngf=8,
        corr_nf=8,
        spade_hidden=16,
        ndf=8,
        n_layers_d=3,
        adaptor_kernel=3,
        maskmix=True,
        use_attention=True,
        warp_mask="direct",
    ),
}


# The official train commands (README of microsoft/CoCosNet; REFERENCE.md "Losses and
# defaults"): every weight spelled out. The pseudo-pair terms were set for the per-GPU batch of 4
# (batch 32 on 8 GPUs).
_PAPER_LOSS = dict(
    gan=10.0,
    d_feature_matching=10.0,
    vgg_feature_matching=10.0,
    contextual=10.0,
    contextual_relu2_2=False,
    domain_alignment=10.0,
    warped_mask_ignore_class=0,
    pseudo_pair_batch=4,
)
LOSS_PRESETS: dict[str, dict[str, Any]] = {
    "paper_ade20k": _PAPER_LOSS
    | dict(
        fm_ratio=0.1,
        perceptual=0.01,
        perceptual_layer="relu5_2",
        warped_mask=100.0,
        cycle=0.0,
        warp_self=0.0,
    ),
    "paper_celebahq_mask": _PAPER_LOSS
    | dict(
        fm_ratio=1.0,
        perceptual=0.001,
        perceptual_layer="relu4_2",
        warped_mask=100.0,
        cycle=0.1,
        warp_self=0.0,
    ),
    "paper_celebahq_edge": _PAPER_LOSS
    | dict(
        fm_ratio=1.0,
        perceptual=0.001,
        perceptual_layer="relu4_2",
        warped_mask=0.0,
        cycle=1.0,
        warp_self=0.0,
    ),
    "paper_deepfashion": _PAPER_LOSS
    | dict(
        fm_ratio=1.0,
        perceptual=0.001,
        perceptual_layer="relu4_2",
        warped_mask=0.0,
        cycle=0.0,
        warp_self=100.0,
    ),
    # The demo trains from scratch in minutes on a CPU: the warped-mask loss carries the
    # correspondence as in the ADE20k recipe; its class 0 (sky) is a real class. Its pseudo-pair
    # weights (pixel L1 without VGG19) were set for the mean over pseudo pairs (divisor 1).
    # class_colour is demo-only: without VGG19 there is no contextual loss to pull the output
    # towards the exemplar's style, and without it the generator painted every class in its
    # usual colour (issue 20: 31% of held-out cases closer to the exemplar than to the prior).
    # fallback_l1 100 (its default 10): on pseudo pairs the warped exemplar is the truth, so
    # this is what teaches the generator to copy its warped input (issue 20: held-out cases
    # closer to the exemplar 66% -> 85% at corr_size 32).
    "demo": dict(
        warped_mask=100.0,
        warped_mask_ignore_class=None,
        cycle=0.0,
        fm_ratio=0.1,
        perceptual=0.01,
        pseudo_pair_batch=1,
        class_colour=100.0,
        fallback_l1=100.0,
    ),
}


# The official train commands (README of microsoft/CoCosNet, options/*.py, data/*_dataset.py):
# batch 32 on 8 GPUs is 4 per process; TTUR lr 1e-4 / 4e-4; reference probabilities 0.2 hard,
# 0.5 top-1, 0.3 self (real_reference_probability 0.7, hard 0.2); every dataset class loads with
# resize_and_crop at 286 (test: 256). DeepFashion: real_reference_probability 0, --no_flip,
# --video_like. Losses (cycle, warp-self, ...) are in LOSS_PRESETS under the same names.
_PAPER_TRAIN = dict(
    batch_size=4,
    lr_g=1e-4,
    lr_d=4e-4,
    beta1=0.0,
    beta2=0.9,
    eps_g=1e-3,
    p_hard=0.2,
    p_top1=0.5,
    p_self=0.3,
    pseudo={},
    same_person=False,
    flip=True,
    preprocess="resize_and_crop",
    load_size=286,
    mask_epoch=None,
)
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper_ade20k": _PAPER_TRAIN | dict(niter=100, niter_decay=100),
    # --noise_for_mask --mask_epoch 150: the exemplar mask is replaced by noise after epoch 150
    "paper_ade20k_nomask": _PAPER_TRAIN | dict(niter=100, niter_decay=100, mask_epoch=150),
    "paper_celebahq_mask": _PAPER_TRAIN | dict(niter=30, niter_decay=30),
    "paper_celebahq_edge": _PAPER_TRAIN | dict(niter=30, niter_decay=30),
    "paper_deepfashion": _PAPER_TRAIN
    | dict(
        niter=50, niter_decay=50, p_hard=0.0, p_top1=0.0, p_self=1.0, flip=False, same_person=True
    ),
    # Ours: minutes on 2 CPU cores. The 64x64 demo images are squashed to 72 (286/256 x 64) and
    # cropped; pseudo exemplars are distorted further and make 70% of the exemplars (demo-only
    # aids: no VGG19 losses here; pseudo pairs are where the exemplar's colours are the truth's).
    "demo": dict(
        batch_size=8,
        niter=14,
        niter_decay=6,
        lr_g=2e-4,
        lr_d=4e-4,
        p_hard=0.1,
        p_top1=0.2,
        p_self=0.7,
        pseudo=dict(flip=True, rotate=10.0, scale=0.1, translate=0.05, tps=0.03),
        flip=True,
        preprocess="resize_and_crop",
        load_size=72,
        mask_epoch=4,
    ),
}


def _format_errors(section: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in (section, *e["loc"]) if p != "")
        msg = e["msg"].removeprefix("Value error, ")
        whole = e["type"] == "missing" or not e["loc"]  # a model-level check: no single input
        got = "" if whole else f" (got {e.get('input')!r})"
        if e["type"] == "extra_forbidden":
            msg, got = "unknown key", ""
            if section == "train" and e["loc"][-1] in RuntimeConfig.model_fields:
                msg += f" (it moved to runtime.{e['loc'][-1]}: it cannot change results)"
        lines.append(f"{where}: {msg}{got}" if where else f"{msg}{got}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _with_preset(
    name: str, cls: type[_Section], presets: Mapping[str, Mapping[str, Any]], values: dict
) -> Any:
    """Validate a section whose ``preset`` values come first and its own keys override them."""
    preset = values.get("preset")
    if preset is not None:
        if not isinstance(preset, str) or preset not in presets:  # a list/dict is unhashable
            raise ConfigError(f"{name}.preset: unknown preset {preset!r}; known: {sorted(presets)}")
        base = presets[preset]
        # Nested sections (train.pseudo) merge key by key too.
        values = {
            k: {**base[k], **v}
            if isinstance(v, Mapping) and isinstance(base.get(k), Mapping)
            else v
            for k, v in {**base, **values}.items()
        }
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        raise ConfigError(_format_errors(name, err)) from None


def model_config(section: Mapping[str, Any] | None = None, **overrides: Any) -> ModelConfig:
    """Resolve a ``model`` section: preset values first, then the section's keys, then overrides."""
    return _with_preset("model", ModelConfig, PRESETS, {**(section or {}), **overrides})


def loss_config(section: Mapping[str, Any] | None = None, **overrides: Any) -> LossConfig:
    """Resolve a ``loss`` section: preset weights first, then the section's keys."""
    return _with_preset("loss", LossConfig, LOSS_PRESETS, {**(section or {}), **overrides})


def train_config(section: Mapping[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    """Resolve a ``train`` section: the preset's recipe first, then the section's keys."""
    return _with_preset("train", TrainConfig, TRAIN_PRESETS, {**(section or {}), **overrides})
