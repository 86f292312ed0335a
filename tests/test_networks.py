import pytest
import torch

from cocosnet.config import model_config
from cocosnet.models.blocks import SPADE, NonLocalAttention, positional_norm
from cocosnet.models.factory import (
    build_correspondence,
    build_discriminator,
    build_translation,
    count_parameters,
    model_info,
)

from .helpers import official_keys, random_label


def demo(**overrides):
    return model_config({"preset": "demo", **overrides})


def inputs(cfg, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = cfg.image_size
    label = random_label(batch, cfg.semantic_nc, size, seed)
    exemplar_label = random_label(batch, cfg.semantic_nc, size, seed + 1)
    exemplar = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    return label, exemplar, exemplar_label


def test_demo_forward_backward_reaches_every_parameter(seeded):
    cfg = demo()
    corr, gen, disc = build_correspondence(cfg), build_translation(cfg), build_discriminator(cfg)
    label, exemplar, exemplar_label = inputs(cfg)
    out = corr(label, exemplar, exemplar_label, real_image=exemplar, cycle=True)
    fake = gen(label, out.warped)
    assert fake.shape == (2, 3, 64, 64) and fake.abs().max() <= 1
    scores = disc(torch.cat([label, fake], 1))
    loss = fake.mean() + out.warped_mask.mean() + out.cycle.mean() + out.real_features.mean()
    loss = loss + sum(s[-1].mean() for s in scores)
    loss.backward()
    for net in (corr, gen, disc):
        missing = [n for n, p in net.named_parameters() if p.grad is None]
        assert not missing, missing
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"warp_patch": True, "warp_bilinear": True, "maskmix": False, "warp_mask": "none"},
        {"warp_bilinear": True, "warp_mask": "cycle"},
        {"corr_size": 32},
        {"corr_size": 64, "warp_patch": True},
        {"match_kernel": 1, "pono_c": False},
        {"adaptor_kernel": 4},
        {"param_free_norm": "instance", "use_attention": False},
        {"param_free_norm": "batch"},
    ],
)
def test_correspondence_variants_shapes(seeded, overrides):
    cfg = demo(**overrides)
    corr = build_correspondence(cfg)
    label, exemplar, exemplar_label = inputs(cfg)
    out = corr(label, exemplar, exemplar_label, cycle=True)
    g = cfg.corr_size
    assert out.warped.shape == exemplar.shape
    assert out.input_features.shape == (2, 4 * cfg.corr_nf, g, g)
    if cfg.warp_mask == "none":
        assert out.warped_mask is None
    else:
        assert out.warped_mask.shape == (2, cfg.semantic_nc, g, g)
    assert out.cycle.shape == ((2, 3, 64, 64) if cfg.warp_patch else (2, 3, g, g))
    gen = build_translation(cfg)
    assert gen(label, out.warped).shape == exemplar.shape


def test_warped_outputs_are_convex_combinations(seeded):
    cfg = demo()
    corr = build_correspondence(cfg).eval()
    label, exemplar, exemplar_label = inputs(cfg)
    with torch.no_grad():
        out = corr(label, exemplar, exemplar_label)
    # A warped one-hot label is a distribution over classes at every position.
    assert torch.allclose(out.warped_mask.sum(1), torch.ones(2, 16, 16), atol=1e-5)
    assert out.warped.min() >= exemplar.min() - 1e-5 and out.warped.max() <= exemplar.max() + 1e-5
    norms = out.input_features.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_constant_exemplar_warps_to_itself(seeded):
    cfg = demo(warp_bilinear=True)
    corr = build_correspondence(cfg).eval()
    label, _, exemplar_label = inputs(cfg)
    exemplar = torch.full((2, 3, 64, 64), 0.25)
    with torch.no_grad():
        out = corr(label, exemplar, exemplar_label, cycle=True)
    assert torch.allclose(out.warped, exemplar, atol=1e-5)
    assert torch.allclose(out.cycle, torch.full_like(out.cycle, 0.25), atol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"warp_patch": True, "warp_mask": "cycle"}])
def test_fused_and_naive_correspondence_agree(overrides):
    cfg = demo(**overrides)
    torch.manual_seed(0)
    fused = build_correspondence(cfg).eval()
    naive = build_correspondence(demo(warp_impl="naive", **overrides)).eval()
    naive.load_state_dict(fused.state_dict())
    label, exemplar, exemplar_label = inputs(cfg)
    with torch.no_grad():
        a = fused(label, exemplar, exemplar_label, cycle=True)
        b = naive(label, exemplar, exemplar_label, cycle=True)
    for x, y in ((a.warped, b.warped), (a.warped_mask, b.warped_mask), (a.cycle, b.cycle)):
        assert ((x - y).abs().max() / y.abs().max()) < 1e-4


def test_exemplar_label_is_hidden_by_noise(seeded):
    cfg = demo()
    corr = build_correspondence(cfg).eval()
    label, exemplar, exemplar_label = inputs(cfg)
    with torch.no_grad():
        seen = corr(label, exemplar, exemplar_label).warped
        torch.manual_seed(1)
        hidden = corr(label, exemplar, exemplar_label, hide_exemplar_label=True)
        torch.manual_seed(1)
        no_label = corr(label, exemplar, None)
    assert not torch.allclose(seen, hidden.warped)
    assert torch.allclose(hidden.warped, no_label.warped, atol=1e-6)
    # The warped-mask output still uses the exemplar label when it is hidden from the features.
    assert hidden.warped_mask is not None and no_label.warped_mask is None


def test_positional_norm_normalises_each_pixel_over_channels():
    x = torch.randn(2, 16, 5, 7) * 3 + 1
    y = positional_norm(x)
    assert torch.allclose(y.mean(1), torch.zeros(2, 5, 7), atol=1e-5)
    assert torch.allclose(y.var(1), torch.ones(2, 5, 7), atol=1e-3)


def test_spade_with_zero_modulation_is_the_plain_norm():
    spade = SPADE(8, 4, 16, "positional")
    for conv in (spade.mlp_gamma, spade.mlp_beta):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(spade(x, torch.randn(2, 4, 12, 12)), positional_norm(x), atol=1e-6)


def test_non_local_attention_matches_materialised_sagan():
    torch.manual_seed(0)
    att = NonLocalAttention(16, sn=False)
    with torch.no_grad():
        att.gamma.fill_(0.7)
    x = torch.randn(2, 16, 8, 6)
    theta = att.theta(x).flatten(2)
    phi = torch.nn.functional.max_pool2d(att.phi(x), 2).flatten(2)
    g = torch.nn.functional.max_pool2d(att.g(x), 2).flatten(2)
    beta = torch.softmax(theta.transpose(1, 2) @ phi, -1)
    expected = 0.7 * att.out((g @ beta.transpose(1, 2)).view(2, 8, 8, 6)) + x
    assert torch.allclose(att(x), expected, atol=1e-5)


@pytest.mark.parametrize("preset", ["ade20k", "celebahq_edge", "deepfashion"])
def test_parameter_counts_equal_the_official(preset):
    official = official_keys(preset)["nets"]
    cfg = model_config({"preset": f"paper_{preset}"})
    info = model_info(cfg)["parameters"]
    assert info["correspondence"] == official["Corr"]["params"]
    assert info["translation"] == official["G"]["params"]
    assert info["correspondence+translation"] == (
        official["Corr"]["params"] + official["G"]["params"]
    )
    # The official discriminator also builds a decoder its forward never calls; ours leaves it out.
    dec = official_keys(preset)["D_unused_dec_params"]
    assert count_parameters(build_discriminator(cfg, init=False)) == official["D"]["params"] - dec


# One paper preset in the default suite (15-18 s each on 2 cores); the others with -m slow.
@pytest.mark.parametrize(
    "preset",
    [
        "paper_ade20k",
        pytest.param("paper_celebahq_edge", marks=pytest.mark.slow),
        pytest.param("paper_deepfashion", marks=pytest.mark.slow),
    ],
)
def test_paper_size_forward_at_256(preset):
    torch.manual_seed(0)
    cfg = model_config({"preset": preset})
    corr, gen = build_correspondence(cfg).eval(), build_translation(cfg).eval()
    label, exemplar, exemplar_label = inputs(cfg, batch=1)
    with torch.inference_mode():
        out = corr(label, exemplar, exemplar_label)
        fake = gen(label, out.warped)
    assert fake.shape == (1, 3, 256, 256)
    assert torch.isfinite(fake).all()


@pytest.mark.parametrize(
    "corr_size, strides", [(16, [1, 2, 1, 2, 1]), (32, [1, 2, 1, 1, 1]), (64, [1, 1, 1, 1, 1])]
)
def test_adaptor_strides_follow_the_official_warp_stride(corr_size, strides):
    """Official --warp_stride 2 keeps layer 2 strided (adaptor kernel) and makes layer 4 a
    stride-1 3x3 conv; a full-resolution grid has no strided layer."""
    corr = build_correspondence(demo(corr_size=corr_size, adaptor_kernel=4))
    convs = [c.conv for c in corr.input_adaptor.convs]
    assert [c.stride[0] for c in convs] == strides
    assert [c.kernel_size[0] for c in convs] == [4 if s == 2 else 3 for s in strides]
