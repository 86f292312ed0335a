"""Every paper preset carries the official recipe: the values below are copied from the official
train commands (microsoft/CoCosNet README), its options and dataset classes, and
../shared/REFERENCE.md, not from cocosnet/config/."""

from __future__ import annotations

import pytest

from cocosnet.config import loss_config, model_config, train_config

# lambda_vgg 10 x ctx_w 1 = contextual 10; novgg_featpair 10 = domain alignment; per-GPU batch 4.
COMMON_LOSS = dict(
    gan=10.0,
    d_feature_matching=10.0,
    vgg_feature_matching=10.0,
    contextual=10.0,
    contextual_relu2_2=False,
    domain_alignment=10.0,
    warped_mask_ignore_class=0,
    pseudo_pair_batch=4,
)
OFFICIAL_LOSS = {
    "paper_ade20k": dict(
        fm_ratio=0.1,
        perceptual=0.01,
        perceptual_layer="relu5_2",
        warped_mask=100.0,
        cycle=0.0,
        warp_self=0.0,
    ),
    "paper_celebahq_mask": dict(
        fm_ratio=1.0,
        perceptual=0.001,
        perceptual_layer="relu4_2",
        warped_mask=100.0,
        cycle=0.1,
        warp_self=0.0,
    ),
    "paper_celebahq_edge": dict(
        fm_ratio=1.0,
        perceptual=0.001,
        perceptual_layer="relu4_2",
        warped_mask=0.0,
        cycle=1.0,
        warp_self=0.0,
    ),
    "paper_deepfashion": dict(
        fm_ratio=1.0,
        perceptual=0.001,
        perceptual_layer="relu4_2",
        warped_mask=0.0,
        cycle=0.0,
        warp_self=100.0,
    ),
}
# batch 32 on 8 GPUs; --lr 2e-4 with TTUR: G 1e-4 (Adam eps 1e-3), D 4e-4, betas (0, 0.9);
# real_reference_probability 0.7 of which hard 0.2: hard 0.2, top-1 0.5, self 0.3; every
# dataset class: resize_and_crop, load 286, crop 256; flips unless --no_flip.
COMMON_TRAIN = dict(
    batch_size=4,
    lr_g=1e-4,
    lr_d=4e-4,
    beta1=0.0,
    beta2=0.9,
    eps_g=1e-3,
    preprocess="resize_and_crop",
    load_size=286,
)
OFFICIAL_TRAIN = {
    "paper_ade20k": dict(
        niter=100, niter_decay=100, flip=True, p_hard=0.2, p_top1=0.5, p_self=0.3, mask_epoch=None
    ),
    "paper_ade20k_nomask": dict(
        niter=100, niter_decay=100, flip=True, p_hard=0.2, p_top1=0.5, p_self=0.3, mask_epoch=150
    ),
    "paper_celebahq_mask": dict(
        niter=30, niter_decay=30, flip=True, p_hard=0.2, p_top1=0.5, p_self=0.3, mask_epoch=None
    ),
    "paper_celebahq_edge": dict(
        niter=30, niter_decay=30, flip=True, p_hard=0.2, p_top1=0.5, p_self=0.3, mask_epoch=None
    ),
    # --real_reference_probability 0.0 --no_flip --video_like
    "paper_deepfashion": dict(
        niter=50,
        niter_decay=50,
        flip=False,
        p_hard=0.0,
        p_top1=0.0,
        p_self=1.0,
        mask_epoch=None,
        same_person=True,
    ),
}


@pytest.mark.parametrize("preset", sorted(OFFICIAL_LOSS))
def test_loss_presets_are_the_official_weights_and_layers(preset):
    cfg = loss_config({"preset": preset})
    for key, want in (COMMON_LOSS | OFFICIAL_LOSS[preset]).items():
        assert getattr(cfg, key) == want, f"{preset}: loss.{key}"


@pytest.mark.parametrize("preset", sorted(OFFICIAL_TRAIN))
def test_train_presets_are_the_official_recipes(preset):
    cfg = train_config({"preset": preset})
    for key, want in (COMMON_TRAIN | OFFICIAL_TRAIN[preset]).items():
        assert getattr(cfg, key) == want, f"{preset}: train.{key}"
    # The official pseudo exemplar is only the independent crop and flip: no further distortion.
    assert all(not v for k, v in cfg.pseudo.model_dump().items() if k != "tps_grid")
    assert cfg.same_person == (preset == "paper_deepfashion")


def test_preset_keys_are_overridden_one_by_one_also_inside_nested_sections():
    cfg = train_config({"preset": "demo", "niter": 3, "pseudo": {"rotate": 0.0}})
    assert cfg.niter == 3 and cfg.niter_decay == train_config({"preset": "demo"}).niter_decay
    assert (
        cfg.pseudo.rotate == 0.0 and cfg.pseudo.tps == train_config({"preset": "demo"}).pseudo.tps
    )


@pytest.mark.parametrize(
    "preset, warp_mask",
    [
        ("paper_ade20k", "direct"),
        ("paper_celebahq_mask", "direct"),
        ("paper_celebahq_edge", "none"),
        ("paper_deepfashion", "none"),
    ],
)
def test_model_presets_compute_the_warped_mask_where_the_loss_preset_weighs_it(preset, warp_mask):
    assert model_config({"preset": preset}).warp_mask == warp_mask
    assert (loss_config({"preset": preset}).warped_mask > 0) == (warp_mask == "direct")
