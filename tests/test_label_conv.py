"""One-hot label convolutions as gathers (cocosnet.models.label_conv): equal to the dense conv up
to float rounding, with the same gradients, and taken only for an exactly one-hot input."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cocosnet.config import model_config
from cocosnet.models.blocks import ConditionPyramid, SPADEResBlock, conv_condition
from cocosnet.models.factory import build_correspondence, build_translation, generator_flops
from cocosnet.models.label_conv import (
    conv_one_hot,
    gather_flop_formulas,
    gather_index,
    one_hot_ids,
    resize_ids,
    set_one_hot_gather,
)
from cocosnet.models.runtime import GeneratorRuntime, RuntimeOptions

from .helpers import one_hot, random_label

L, DENSE = 11, 3


def _case(n_dense: int, padding_mode: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, L, (2, 9, 13), generator=g)
    dense = torch.randn(2, n_dense, 9, 13, generator=g) if n_dense else None
    torch.manual_seed(seed)
    conv = nn.Conv2d(n_dense + L, 6, 3, padding=1, padding_mode=padding_mode)
    x = one_hot(ids, L) if dense is None else torch.cat([dense, one_hot(ids, L)], 1)
    return ids, dense, conv, x


def _gather(ids, dense, conv, memory_format=torch.contiguous_format):
    index = gather_index(ids.int(), 3, L, conv.padding_mode)
    return conv_one_hot(index, dense, conv.weight, conv.bias, conv.padding_mode, memory_format)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
@pytest.mark.parametrize("n_dense", [0, DENSE])
def test_gather_equals_dense_conv_and_its_gradients(padding_mode, n_dense):
    ids, dense, conv, x = _case(n_dense, padding_mode)
    if dense is not None:
        dense.requires_grad_(True)
        x = torch.cat([dense, one_hot(ids, L)], 1)
    expected = conv(x)
    out = _gather(ids, dense, conv)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(expected)
    inputs = [conv.weight, conv.bias, *([dense] if n_dense else [])]
    wanted = torch.autograd.grad(expected, inputs, grad)
    got = torch.autograd.grad(out, inputs, grad)
    for a, b in zip(got, wanted, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_gather_in_bfloat16_and_channels_last(padding_mode):
    ids, dense, conv, x = _case(DENSE, padding_mode)
    cl = torch.channels_last
    with torch.no_grad():
        expected = conv(x)
        out = _gather(ids, dense.contiguous(memory_format=cl), conv.to(memory_format=cl), cl)
        assert out.is_contiguous(memory_format=cl)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        conv = conv.to(torch.bfloat16)
        low = _gather(ids, dense.bfloat16(), conv, cl)
        assert low.dtype == torch.bfloat16
        torch.testing.assert_close(low.float(), expected, atol=3e-2, rtol=3e-2)


def test_one_hot_ids_only_for_an_exactly_one_hot_map():
    ids = torch.randint(0, L, (2, 5, 7))
    label = one_hot(ids, L)
    assert torch.equal(one_hot_ids(label), ids.int())
    assert torch.equal(one_hot_ids(label.bfloat16()), ids.int())
    overlap = label.clone()
    overlap[0, 0, 0, 0] = 1.0  # a second class on a pixel (CelebA-HQ's glasses over skin)
    overlap[0, 1, 0, 0] = 1.0
    soft = label.clone()
    soft[:, :, 0, 0] = 1 / L
    empty = label.clone()
    empty[0, :, 2, 3] = 0
    for not_one_hot in (overlap, soft, empty, label * 2, label.requires_grad_(True)):
        assert one_hot_ids(not_one_hot) is None


@pytest.mark.parametrize("size", [(5, 7), (4, 3), (18, 26), (13, 20)])
def test_nearest_resized_ids_are_the_nearest_resized_one_hot_map(size):
    ids = torch.randint(0, L, (2, 9, 13))
    expected = F.interpolate(one_hot(ids, L), size=size, mode="nearest")
    assert torch.equal(one_hot(resize_ids(ids.int(), size).long(), L), expected)


def test_spade_block_gather_on_and_off():
    torch.manual_seed(0)
    block = SPADEResBlock(8, 4, DENSE + L, 16, "positional").eval()
    ids = torch.randint(0, L, (2, 16, 16))
    dense = torch.randn(2, DENSE, 16, 16)
    x = torch.randn(2, 8, 8, 8)
    fmt = torch.contiguous_format
    for label in (one_hot(ids, L), one_hot(ids, L) * 0.5):
        cond = torch.cat([dense, label], 1)
        with torch.no_grad():
            dense_out = block(x, ConditionPyramid(cond, fmt))
            out = block(x, ConditionPyramid(cond, fmt, label))
            plain = block(x, cond)
        assert torch.equal(dense_out, plain)
        if label.max() == 1:
            torch.testing.assert_close(out, dense_out, atol=1e-5, rtol=1e-5)
        else:  # not one-hot: the dense path, bit for bit
            assert torch.equal(out, dense_out)


def _demo():
    return model_config({"preset": "demo"})


def _generator(label, exemplar, exemplar_label, gather: bool, train: bool = False):
    torch.manual_seed(0)
    cfg = _demo()
    corr, gen = build_correspondence(cfg), build_translation(cfg)
    for net in (corr, gen):
        set_one_hot_gather(net.train(train), gather)
    torch.manual_seed(1)
    warp = corr(label, exemplar, exemplar_label, real_image=exemplar if train else None)
    return corr, gen, warp, gen(label, warp.warped)


def _inputs(seed=0):
    cfg = _demo()
    label = random_label(2, cfg.semantic_nc, cfg.image_size, seed)
    exemplar_label = random_label(2, cfg.semantic_nc, cfg.image_size, seed + 1)
    g = torch.Generator().manual_seed(seed)
    exemplar = torch.rand(2, 3, cfg.image_size, cfg.image_size, generator=g) * 2 - 1
    return label, exemplar, exemplar_label


def test_networks_give_the_same_output_with_and_without_gathers():
    label, exemplar, exemplar_label = _inputs()
    spy = mock.patch("cocosnet.models.blocks.conv_one_hot", wraps=conv_one_hot)
    with torch.no_grad(), spy as gathers:
        *_, warp, out = _generator(label, exemplar, exemplar_label, gather=True)
        # Input adaptor: first conv + 7 SPADEs; the shared block's first conv (maskmix);
        # translation: stem + 18 SPADEs.
        assert gathers.call_count == 28
        *_, warp_d, out_d = _generator(label, exemplar, exemplar_label, gather=False)
        assert gathers.call_count == 28
    torch.testing.assert_close(warp.input_features, warp_d.input_features, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(warp.warped, warp_d.warped, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out, out_d, atol=1e-4, rtol=1e-4)
    overlap = label.clone()
    overlap[:, 1, :8, :8] = 1.0  # two classes on some pixels: not one-hot, the dense path
    with torch.no_grad(), spy as gathers:
        *_, warp, out = _generator(overlap, exemplar, exemplar_label, gather=True)
        *_, warp_d, out_d = _generator(overlap, exemplar, exemplar_label, gather=False)
        assert gathers.call_count == 0
    assert torch.equal(warp.warped, warp_d.warped) and torch.equal(out, out_d)


def test_training_gradients_and_spectral_norm_state_match_the_dense_path():
    label, exemplar, exemplar_label = _inputs()
    nets, grads = {}, {}
    for gather in (True, False):
        corr, gen, warp, out = _generator(label, exemplar, exemplar_label, gather, train=True)
        (out.square().mean() + warp.warped_mask.mean()).backward()
        nets[gather] = (corr, gen)
        grads[gather] = {name: p.grad for net in (corr, gen) for name, p in net.named_parameters()}
    assert grads[True].keys() == grads[False].keys()
    for name, g in grads[True].items():
        torch.testing.assert_close(g, grads[False][name], atol=1e-5, rtol=1e-3, msg=name)
    # One power iteration per forward in both paths: the stored vectors agree.
    for a, b in zip(*(nets[g][0].state_dict().items() for g in (True, False)), strict=True):
        assert a[0] == b[0]
        torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=1e-4, msg=a[0])


@pytest.mark.parametrize("options", [("float32", True), ("bfloat16", True)])
def test_runtime_with_and_without_gathers(options):
    precision, channels_last = options
    label, exemplar, exemplar_label = _inputs()
    outs = []
    for gather in (True, False):
        torch.manual_seed(0)
        cfg = _demo()
        corr, gen = build_correspondence(cfg), build_translation(cfg)
        set_one_hot_gather(corr, gather)
        set_one_hot_gather(gen, gather)
        runtime = GeneratorRuntime(corr, gen, RuntimeOptions(precision, channels_last))
        with mock.patch("cocosnet.models.blocks.conv_one_hot", wraps=conv_one_hot) as gathers:
            outs.append(runtime(label, exemplar, exemplar_label)[0])
        assert gathers.call_count == (28 if gather else 0)
    tol = 1e-4 if precision == "float32" else 0.1
    torch.testing.assert_close(outs[0], outs[1], atol=tol, rtol=tol)


def test_meta_flop_count_is_the_real_count():
    """model-info counts on the meta device; real runs with a one-hot input count the same at
    every step of the cuts (gathers, shortcut folds, no warped mask)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model_config({"preset": "demo", "warp_impl": "naive"})
    flops = generator_flops(cfg)
    label = random_label(1, cfg.semantic_nc, cfg.image_size)
    exemplar = torch.rand(1, 3, cfg.image_size, cfg.image_size)
    corr, gen = build_correspondence(cfg).eval(), build_translation(cfg).eval()
    for net in (corr, gen):
        for m in list(net.modules()):  # count without the spectral norms' mat-vecs, as model-info
            if hasattr(m, "parametrizations"):
                torch.nn.utils.parametrize.remove_parametrizations(m, "weight")

    def count(warped_mask=True):
        counter = FlopCounterMode(display=False, custom_mapping=gather_flop_formulas())
        with torch.no_grad(), counter:
            gen(label, corr(label, exemplar, label, with_warped_mask=warped_mask).warped)
        return counter.get_total_flops()

    set_one_hot_gather(corr, False)
    set_one_hot_gather(gen, False)
    assert count() == flops["dense"]
    set_one_hot_gather(corr, True)
    set_one_hot_gather(gen, True)
    assert count() == flops["dense"] - flops["one_hot_gather_removed"]
    folds = [
        m.fold_shortcut_beta()
        for net in (corr, gen)
        for m in net.modules()
        if isinstance(m, SPADEResBlock)
    ]
    assert any(folds) and flops["shortcut_fold_removed"] > 0
    assert count() == flops["total"] + flops["warped_mask_removed"]
    assert count(warped_mask=False) == flops["total"]
    assert flops["one_hot_gather_removed"] > 0 and flops["warped_mask_removed"] > 0


def test_conv_condition_falls_back_for_convs_the_gather_does_not_compute():
    ids = torch.randint(0, L, (1, 6, 6))
    label = one_hot(ids, L).contiguous()  # the pyramid's layout: the dense conv, bit for bit
    cond = ConditionPyramid(label, torch.contiguous_format, label)
    strided = nn.Conv2d(L, 4, 3, stride=2, padding=1)
    five = nn.Conv2d(L, 4, 5, padding=2, padding_mode="reflect")
    assert cond.gather_index(strided, (6, 6)) is None
    assert torch.equal(conv_condition(strided, cond, (6, 6)), strided(label))
    torch.testing.assert_close(conv_condition(five, cond, (6, 6)), five(label))


def test_shortcut_beta_fold_equals_the_unfolded_block():
    """SPADEResBlock.fold_shortcut_beta (the runtime's): the same output to float rounding, only
    where the shortcut narrows (else it would add FLOPs), and only on plain weights."""
    from cocosnet.models.runtime import fold_spectral_norm

    torch.manual_seed(0)
    cond = torch.cat(
        [torch.randn(2, DENSE, 16, 16), one_hot(torch.randint(0, L, (2, 16, 16)), L)], 1
    )
    x = torch.randn(2, 8, 8, 8)
    narrowing = SPADEResBlock(8, 4, DENSE + L, 16, "positional").eval()
    with pytest.raises(ValueError, match="spectral norm"):
        narrowing.fold_shortcut_beta()
    fold_spectral_norm(narrowing)
    for block in (
        SPADEResBlock(8, 8, DENSE + L, 16, "positional"),
        SPADEResBlock(4, 8, DENSE + L, 16, "positional"),
    ):
        assert not fold_spectral_norm(block).fold_shortcut_beta()
        assert block.folded_beta_s is None
    with torch.no_grad():
        expected = narrowing(x, cond)
        assert narrowing.fold_shortcut_beta()
        # hidden 16 -> 4 instead of hidden 16 -> 8 then 8 -> 4
        assert narrowing.folded_beta_s.weight.shape == (4, 16, 3, 3)
        with mock.patch.object(narrowing.norm_s.mlp_beta, "forward", side_effect=AssertionError):
            folded = narrowing(x, cond)
            folded_pyramid = narrowing(
                x, ConditionPyramid(cond, torch.contiguous_format, cond[:, DENSE:])
            )
    torch.testing.assert_close(folded, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded_pyramid, expected, atol=1e-5, rtol=1e-5)


def test_shared_block_gathers_only_when_both_domains_labels_are_one_hot():
    """The maskmix label channels of the shared block's first conv: gathered when the input's and
    the exemplar's labels are one-hot; dense (bit for bit) when the exemplar label is hidden
    behind noise."""
    label, exemplar, exemplar_label = _inputs()
    torch.manual_seed(0)
    corr = build_correspondence(_demo()).eval()
    set_one_hot_gather(corr, True)
    calls = {}
    real = corr.shared[0].forward

    def spy(x, index=None, n_labels=0):
        calls["index"] = index
        return real(x, index, n_labels)

    with torch.no_grad(), mock.patch.object(corr.shared[0], "forward", side_effect=spy):
        corr(label, exemplar, exemplar_label)
        assert calls["index"] is not None
        torch.manual_seed(3)
        hidden = corr(label, exemplar, exemplar_label, hide_exemplar_label=True)
        assert calls["index"] is None
        set_one_hot_gather(corr, False)
        torch.manual_seed(3)
        hidden_dense = corr(label, exemplar, exemplar_label, hide_exemplar_label=True)
    assert torch.equal(hidden.warped, hidden_dense.warped)
