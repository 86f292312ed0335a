import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

from cocosnet.models import warp
from cocosnet.models.correspondence import l2_normalize
from cocosnet.models.warp import correlation, softmax_warp


def descriptors(batch, grid, channels, seed):
    """Unit-norm, channel-centred 3x3-unfolded descriptors, as the correspondence network makes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, *grid, generator=g)
    x = F.unfold(x, 3, padding=1)
    x = x - x.mean(dim=1, keepdim=True)
    return l2_normalize(x, dim=1).transpose(1, 2).contiguous()


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


CASES = [
    # batch, query grid, key grid, feature channels (D = 9 * channels), value channels
    (1, (4, 4), (4, 4), 8, 3),
    (2, (8, 8), (8, 8), 32, 3),
    (3, (16, 16), (16, 16), 16, 154),
    (2, (12, 20), (12, 20), 16, 3),  # non-square grid
    (2, (8, 12), (10, 6), 16, 48),  # different query and exemplar grids, patch-sized values
    (1, (32, 32), (32, 32), 256, 3),  # D = 2304 as the paper
]


@pytest.mark.parametrize("block_elements", [warp.BLOCK_ELEMENTS, 1000])
@pytest.mark.parametrize("batch, qgrid, kgrid, channels, vdim", CASES)
def test_fused_matches_naive_outputs_and_gradients(
    monkeypatch, block_elements, batch, qgrid, kgrid, channels, vdim
):
    # The small block budget splits every case into many row blocks (uneven last block too).
    monkeypatch.setattr(warp, "BLOCK_ELEMENTS", block_elements)
    q0 = descriptors(batch, qgrid, channels, 1)
    k0 = descriptors(batch, kgrid, channels, 2)
    v0 = torch.randn(batch, k0.shape[1], vdim, generator=torch.Generator().manual_seed(3))
    upstream = torch.randn(batch, q0.shape[1], vdim, generator=torch.Generator().manual_seed(4))
    results = {}
    for impl in ("naive", "fused"):
        q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
        out = softmax_warp(q, k, v, alpha=100.0, impl=impl)
        (out * upstream).sum().backward()
        results[impl] = (out.detach(), q.grad, k.grad, v.grad)
    for name, a, b in zip(
        ("output", "dq", "dk", "dv"), results["fused"], results["naive"], strict=True
    ):
        assert rel_err(a, b) < 1e-4, f"{name}: relative error {rel_err(a, b):.2e}"


def test_warp_is_a_convex_combination_of_exemplar_rows():
    q = descriptors(2, (8, 8), 16, 5)
    k = descriptors(2, (8, 8), 16, 6)
    v = torch.randn(2, 64, 5)
    for impl in ("naive", "fused"):
        ones = softmax_warp(q, k, torch.ones(2, 64, 1), 100.0, impl)
        assert torch.allclose(ones, torch.ones_like(ones), atol=1e-5)
        out = softmax_warp(q, k, v, 100.0, impl)
        assert (out <= v.amax(1, keepdim=True) + 1e-5).all()
        assert (out >= v.amin(1, keepdim=True) - 1e-5).all()


def test_identical_descriptors_warp_to_themselves():
    """With exemplar == input features, each position's best match is itself (cosine 1), and at
    alpha = 100 the softmax concentrates there unless another descriptor is nearly identical."""
    q = descriptors(1, (8, 8), 64, 7)
    sim = correlation(q, q)[0]
    runner_up = (sim - 2 * torch.eye(64)).amax(1)
    assert (runner_up < 0.9).all()  # random 576-d descriptors are far apart
    v = torch.randn(1, 64, 3)
    out = softmax_warp(q, q, v, 100.0, "fused")
    assert torch.allclose(out, v, atol=1e-3)


def test_alpha_sharpens_the_softmax():
    q = descriptors(1, (6, 6), 8, 8)
    k = descriptors(1, (6, 6), 8, 9)
    v = torch.randn(1, 36, 3)
    hard = v[0][correlation(q, k)[0].argmax(1)]
    err = [(softmax_warp(q, k, v, a, "fused")[0] - hard).abs().mean() for a in (1.0, 100.0, 1e4)]
    assert err[0] > err[1] > err[2]
    assert err[2] < 1e-3


def test_bad_shapes_and_impl_are_refused():
    q = torch.randn(1, 4, 8)
    with pytest.raises(ValueError, match="shape mismatch"):
        softmax_warp(q, torch.randn(1, 4, 9), torch.randn(1, 4, 3), 100.0)
    with pytest.raises(ValueError, match="3-d"):
        softmax_warp(q[0], q[0], q[0], 100.0)
    with pytest.raises(ValueError, match="unknown warp implementation"):
        softmax_warp(q, q, q, 100.0, impl="cuda")  # type: ignore[arg-type]


def test_sdpa_path_matches_naive():
    """The CUDA path (PyTorch attention with values padded to 8 channels) computes the same warp;
    on the CPU it runs with PyTorch's math backend, which checks the padding and scaling."""
    q = descriptors(2, (8, 8), 16, 10)
    k = descriptors(2, (6, 10), 16, 11)
    v = torch.randn(2, 60, 5)
    expected = softmax_warp(q, k, v, 100.0, "naive")
    assert rel_err(warp.sdpa_warp(q, k, v, 100.0, SDPBackend.MATH), expected) < 1e-5


def test_cpu_flash_path_matches_naive_with_gradients():
    """Values wider than the descriptors (the non-local attention) take PyTorch's CPU flash
    kernel with zero-padded descriptors: same output and gradients as the naive warp."""
    q = descriptors(2, (8, 8), 6, 20).requires_grad_(True)
    k = descriptors(2, (4, 4), 6, 21).requires_grad_(True)
    v = torch.randn(2, 16, 12, requires_grad=True)
    fused = softmax_warp(q, k, v, 1.0, "fused")
    grads = torch.autograd.grad(fused.square().sum(), (q, k, v))
    naive = softmax_warp(q, k, v, 1.0, "naive")
    expected = torch.autograd.grad(naive.square().sum(), (q, k, v))
    assert rel_err(fused, naive) < 1e-5
    for g, e in zip(grads, expected, strict=True):
        assert rel_err(g, e) < 1e-4


def test_blockwise_gradients_only_where_needed():
    q = descriptors(1, (4, 4), 8, 12).requires_grad_(True)
    k = descriptors(1, (4, 4), 8, 13)
    v = torch.randn(1, 16, 3)
    softmax_warp(q, k, v, 100.0, "fused").sum().backward()
    assert q.grad is not None and k.grad is None and v.grad is None


def test_fused_gradients_with_bfloat16_descriptors_and_float32_values():
    """Under autocast the descriptors come from convs in bfloat16 while the pooled photo stays
    float32: backward must take both (it failed with a dtype mismatch in bmm) and give each
    gradient in its input's dtype, close to the float32 ones."""
    q0 = descriptors(2, (8, 8), 16, 14)
    k0 = descriptors(2, (8, 8), 16, 15)
    v0 = torch.randn(2, 64, 3, generator=torch.Generator().manual_seed(16))
    grads = {}
    for dtype in (torch.float32, torch.bfloat16):
        q, k = (t.to(dtype).detach().requires_grad_(True) for t in (q0, k0))
        v = v0.clone().requires_grad_(True)
        softmax_warp(q, k, v, 100.0, "fused").square().sum().backward()
        grads[dtype] = (q.grad, k.grad, v.grad)
    for name, low, full in zip("qkv", grads[torch.bfloat16], grads[torch.float32], strict=True):
        assert low.dtype == (torch.float32 if name == "v" else torch.bfloat16)
        # bfloat16 descriptors move the scores by ~alpha * 2^-8 (measured: 1-2% here).
        assert rel_err(low.float(), full) < 0.1, name
