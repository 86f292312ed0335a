"""The ``gram`` warp: the correlation as shifted Gram sums (issue 17) equals the unfold-based one.

Reference: the descriptors exactly as ``CorrespondenceNet.descriptors`` builds them (k x k
zero-padded unfold, PONO_C centring, ``l2_normalize``) and the ``naive`` warp on them.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from cocosnet.models import gram
from cocosnet.models.correspondence import CorrespondenceNet, l2_normalize
from cocosnet.models.gram import GridDescriptors, gram_correlation, gram_softmax_warp
from cocosnet.models.warp import correlation, softmax_warp

from .helpers import one_hot, single_thread

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)

EPS = sys.float_info.epsilon


def unfold_rows(features: torch.Tensor, kernel: int) -> torch.Tensor:
    """B x N x D descriptors as CorrespondenceNet.descriptors makes them (PONO_C)."""
    x = F.unfold(features, kernel, padding=kernel // 2) if kernel > 1 else features.flatten(2)
    x = x - x.mean(dim=1, keepdim=True)
    return l2_normalize(x, dim=1).transpose(1, 2)


def features(batch, grid, channels, seed, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, *grid, generator=g) + offset


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


CASES = [
    # batch, query grid, key grid, channels, kernel, offset shared by all channels
    (1, (6, 6), (6, 6), 16, 3, 0.0),
    (3, (8, 8), (8, 8), 32, 3, 0.0),  # batch > 1
    (2, (5, 9), (5, 9), 16, 3, 0.0),  # non-square
    (2, (6, 10), (7, 4), 8, 3, 0.0),  # different query and exemplar grids
    (2, (8, 8), (8, 8), 16, 3, 3.0),  # features sharing an offset (the rank-one terms dominate)
    (1, (7, 5), (7, 5), 8, 1, 0.0),  # match_kernel 1
    (1, (9, 9), (9, 9), 8, 5, 0.0),  # match_kernel 5
]


@pytest.mark.parametrize("batch, qgrid, kgrid, channels, kernel, offset", CASES)
def test_shifted_gram_correlation_equals_unfold(batch, qgrid, kgrid, channels, kernel, offset):
    fq = features(batch, qgrid, channels, 1, offset)
    fk = features(batch, kgrid, channels, 2, offset)
    expected = correlation(unfold_rows(fq, kernel), unfold_rows(fk, kernel))
    got = gram_correlation(GridDescriptors.of(fq, kernel, EPS), GridDescriptors.of(fk, kernel, EPS))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_constant_windows_correlate_zero_as_l2_normalize_leaves_them():
    """A constant window centres to 0 (M = 0); its rounding noise must not be normalised up."""
    fq = features(1, (8, 8), 16, 3, offset=1.0)
    fq[..., :4, :4] = 2.0  # the windows inside are constant
    fq[..., 4:, 4:] = 0.0  # and these all zero
    fk = features(1, (8, 8), 16, 4)
    fq.requires_grad_(True)
    got = gram_correlation(GridDescriptors.of(fq, 3, EPS), GridDescriptors.of(fk, 3, EPS))
    expected = correlation(unfold_rows(fq, 3), unfold_rows(fk, 3))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert got.view(8, 8, 64)[1:3, 1:3].abs().max() == 0
    got.sum().backward()
    assert fq.grad.isfinite().all()


@pytest.mark.parametrize("block", [None, 1, 2])
@pytest.mark.parametrize("batch, qgrid, kgrid, channels, kernel, offset", CASES)
def test_gram_warp_matches_naive_outputs_and_gradients(
    block, batch, qgrid, kgrid, channels, kernel, offset
):
    """Output and gradients w.r.t. both features and the values, in one block (None: the
    budget covers these grids), row by row and in uneven blocks."""
    fq0 = features(batch, qgrid, channels, 5, offset)
    fk0 = features(batch, kgrid, channels, 6, offset)
    n_keys = kgrid[0] * kgrid[1]
    v0 = torch.randn(batch, n_keys, 5, generator=torch.Generator().manual_seed(7))
    upstream = torch.randn(
        batch, qgrid[0] * qgrid[1], 5, generator=torch.Generator().manual_seed(8)
    )
    results = {}
    for impl in ("naive", "gram"):
        fq, fk, v = (t.clone().requires_grad_(True) for t in (fq0, fk0, v0))
        if impl == "naive":
            out = softmax_warp(unfold_rows(fq, kernel), unfold_rows(fk, kernel), v, 100.0, "naive")
        else:
            q, k = GridDescriptors.of(fq, kernel, EPS), GridDescriptors.of(fk, kernel, EPS)
            out = gram_softmax_warp(q, k, v, 100.0, block)
        (out * upstream).sum().backward()
        results[impl] = (out.detach(), fq.grad, fk.grad, v.grad)
    for name, a, b in zip(
        ("output", "d_query", "d_key", "d_value"), results["gram"], results["naive"], strict=True
    ):
        assert rel_err(a, b) < 1e-4, f"{name}: relative error {rel_err(a, b):.2e}"


def test_block_rows_follow_the_budget(monkeypatch):
    assert gram.gram_block_rows((64, 64), (64, 64), 3) == 12  # the paper's grid
    assert gram.gram_block_rows((128, 128), (128, 128), 3) == gram.MIN_BLOCK_ROWS
    assert gram.gram_block_rows((5, 4), (5, 4), 3) == 5  # one block
    # A tiny budget without the floor: one grid row per block, same warp.
    monkeypatch.setattr(gram, "GRAM_BLOCK_ELEMENTS", 1)
    monkeypatch.setattr(gram, "MIN_BLOCK_ROWS", 1)
    assert gram.gram_block_rows((8, 8), (8, 8), 3) == 1
    fq, fk = features(1, (5, 4), 8, 9), features(1, (5, 4), 8, 10)
    v = torch.randn(1, 20, 3)
    q, k = GridDescriptors.of(fq, 3, EPS), GridDescriptors.of(fk, 3, EPS)
    expected = softmax_warp(unfold_rows(fq, 3), unfold_rows(fk, 3), v, 100.0, "naive")
    assert rel_err(gram_softmax_warp(q, k, v, 100.0), expected) < 1e-4


def test_bad_inputs_are_refused():
    f = features(1, (4, 4), 8, 11)
    with pytest.raises(ValueError, match="odd kernel"):
        GridDescriptors.of(f, 2, EPS)
    q = GridDescriptors.of(f, 3, EPS)
    with pytest.raises(ValueError, match="value must be"):
        gram_softmax_warp(q, q, torch.randn(1, 15, 3), 100.0)
    with pytest.raises(ValueError, match="do not match"):
        gram_softmax_warp(q, GridDescriptors.of(f, 1, EPS), torch.randn(1, 16, 3), 100.0)


def test_gram_on_descriptor_rows_is_the_fused_warp():
    """Given descriptor rows (the non-local attention, analyses) ``gram`` runs ``fused``."""
    q = unfold_rows(features(2, (6, 6), 8, 12), 3)
    k = unfold_rows(features(2, (6, 6), 8, 13), 3)
    v = torch.randn(2, 36, 3)
    assert torch.equal(softmax_warp(q, k, v, 100.0, "gram"), softmax_warp(q, k, v, 100.0, "fused"))


def _labels(batch, n, size, seed):
    """Blocky one-hot maps of size (H, W) (4x4 cells: nearest resizing keeps every class)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, n, (batch, size[0] // 4, size[1] // 4), generator=g)
    return one_hot(coarse.repeat_interleave(4, 1).repeat_interleave(4, 2), n)


@pytest.mark.parametrize(
    "size, options",
    [
        ((32, 32), {}),
        ((32, 48), {"warp_mask": "cycle"}),  # non-square; warped mask by the cycle warps
        ((32, 32), {"warp_patch": True, "warp_bilinear": True}),
        ((16, 16), {"warp_stride": 1, "match_kernel": 1}),
    ],
)
def test_correspondence_net_gram_equals_naive(size, options):
    """Same weights, same inputs: the warped exemplar, warped mask and cycle of the ``gram``
    impl equal the ``naive`` one's, and so do the gradients of the correspondence network."""
    labels = 5
    torch.manual_seed(0)
    # eval: in training mode every pass would run a spectral-norm power iteration
    net = CorrespondenceNet(labels, nf=4, spade_hidden=8, **options).eval()
    inp, ex_label = _labels(2, labels, size, 1), _labels(2, labels, size, 2)
    exemplar = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(3)) * 2 - 1
    results = {}
    for impl in ("naive", "gram"):
        net.warp_impl = impl
        net.zero_grad()
        out = net(inp, exemplar, ex_label, cycle=True)
        assert (impl == "gram") == net.uses_gram
        (out.warped.sum() + out.warped_mask.square().sum() + out.cycle.square().sum()).backward()
        theta = net.theta.weight.grad.clone()
        results[impl] = (out.warped.detach(), out.warped_mask.detach(), out.cycle.detach(), theta)
    for name, a, b in zip(
        ("warped", "warped_mask", "cycle", "d_theta"),
        results["gram"],
        results["naive"],
        strict=True,
    ):
        assert a.shape == b.shape
        assert rel_err(a, b) < 1e-4, f"{name}: relative error {rel_err(a, b):.2e}"


def test_warp_label_gram_equals_naive():
    torch.manual_seed(0)
    net = CorrespondenceNet(5, nf=4, spade_hidden=8).eval()
    inp, ex_label = _labels(2, 5, (32, 32), 4), _labels(2, 5, (32, 32), 5)
    exemplar = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(6)) * 2 - 1
    warped = {}
    for impl in ("naive", "gram"):
        net.warp_impl = impl
        with torch.no_grad():
            warped[impl] = net.warp_label(inp, exemplar, ex_label)
    assert rel_err(warped["gram"], warped["naive"]) < 1e-4


def test_gram_keeps_rows_without_pono_c():
    """Without PONO_C (channels centred over positions) the descriptors stay rows (fused)."""
    net = CorrespondenceNet(5, nf=4, spade_hidden=8, pono_c=False, warp_impl="gram").eval()
    assert not net.uses_gram
    inp = _labels(1, 5, (32, 32), 7)
    exemplar = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(8)) * 2 - 1
    with torch.no_grad():
        gram_out = net(inp, exemplar, inp).warped
        net.warp_impl = "fused"
        assert torch.equal(gram_out, net(inp, exemplar, inp).warped)
