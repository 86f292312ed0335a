"""Tests for the contextual, feature-matching and perceptual losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cocosnet.losses.contextual import contextual_loss, contextual_objective
from cocosnet.losses.perceptual import perceptual_loss, vgg_feature_matching

LAYERS = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")


def _naive_cx(x: torch.Tensor, y: torch.Tensor, h: float = 0.1, eps: float = 1e-3) -> torch.Tensor:
    """The official contextual loss with --PONO, written from REFERENCE.md in float64 loops:
    centre both on Y's mean over channels at each position, L2-normalise channels,
    d = 1 - X^T Y [Nx, Ny], d~ = d / (min_y d + 1e-3), w = exp((1 - d~) / h), A = w / sum_y w,
    CX = mean_x max_y A, -log CX per sample, batch mean."""
    x, y = x.double(), y.double()
    losses = []
    for b in range(x.shape[0]):
        mu = y[b].mean(dim=0, keepdim=True)  # 1 x H x W
        xb = (x[b] - mu).flatten(1)  # C x Nx
        yb = (y[b] - mu).flatten(1)
        xb = xb / (xb.norm(dim=0, keepdim=True) + 2.220446049250313e-16)
        yb = yb / (yb.norm(dim=0, keepdim=True) + 2.220446049250313e-16)
        d = 1 - xb.t() @ yb  # Nx x Ny
        d_rel = d / (d.min(dim=1, keepdim=True).values + eps)
        w = torch.exp((1 - d_rel) / h)
        a = w / w.sum(dim=1, keepdim=True)
        cx = a.max(dim=1).values.mean()
        losses.append(-torch.log(cx))
    return torch.stack(losses).mean()


def _feats(seed: int, batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"relu1_2": (4, 16), "relu2_2": (6, 16), "relu3_2": (8, 8), "relu4_2": (8, 4)}
    shapes["relu5_2"] = (8, 3)
    return {k: torch.rand(batch, c, s, s, generator=g) for k, (c, s) in shapes.items()}


def test_contextual_matches_the_official_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 4, 5, generator=g)
    y = torch.randn(3, 8, 4, 5, generator=g)
    got = contextual_loss(x, y)
    assert got.dim() == 0
    torch.testing.assert_close(got.double(), _naive_cx(x, y), rtol=1e-5, atol=0)


def test_contextual_output_repeating_one_exemplar_feature_costs_nothing():
    # Separates the two readings: the official loss takes, for every output position, its best
    # exemplar match (here perfect), so it is 0; a max over output positions per exemplar
    # position (our earlier reading) would be large.
    g = torch.Generator().manual_seed(5)
    y = torch.randn(2, 16, 4, 4, generator=g)
    x = y[:, :, :1, :1].expand_as(y).clone()
    assert contextual_loss(x, y).item() == pytest.approx(0.0, abs=1e-4)
    assert _naive_cx(x, y).item() == pytest.approx(0.0, abs=1e-4)
    # Scored the other way round (each exemplar position's best output match), most exemplar
    # features have no counterpart: the loss is large.
    assert contextual_loss(y, x).item() > 1.0


def test_contextual_identical_well_separated_is_zero():
    # One-hot features: every position distinct and far from the others.
    eye = torch.eye(16).reshape(16, 4, 4).unsqueeze(0).repeat(2, 1, 1, 1) * 3.0
    assert contextual_loss(eye, eye.clone()).item() == pytest.approx(0.0, abs=1e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 64, 4, 4, generator=g)
    assert contextual_loss(x, x.clone()).item() == pytest.approx(0.0, abs=1e-3)


def test_contextual_identical_is_minimal():
    g = torch.Generator().manual_seed(2)
    y = torch.randn(2, 32, 4, 4, generator=g)
    same = contextual_loss(y, y.clone())
    other = contextual_loss(torch.randn(2, 32, 4, 4, generator=g), y)
    # Generated set with half of the target's features replaced by duplicates.
    flat = y.flatten(2).clone()
    flat[..., 8:] = flat[..., :8]
    partial = contextual_loss(flat.reshape_as(y), y)
    assert same.item() <= partial.item() <= other.item()
    assert same.item() < other.item()


def test_contextual_invariant_to_permuting_x_positions_given_the_centring():
    # PONO centres x on y's per-position channel mean, so permute x after centring: a constant
    # per-position mean makes the centring the same for every position.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 16, 4, 4, generator=g)
    y = torch.randn(2, 16, 4, 4, generator=g)
    y = y - y.mean(dim=1, keepdim=True)
    perm = torch.randperm(16, generator=g)
    x_perm = x.flatten(2)[..., perm].reshape_as(x)
    assert torch.allclose(contextual_loss(x, y), contextual_loss(x_perm, y), atol=1e-6)


def test_contextual_finite_and_differentiable():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 16, 4, 4, generator=g, requires_grad=True)
    y = torch.randn(2, 16, 4, 4, generator=g, requires_grad=True)
    loss = contextual_loss(x, y)
    assert torch.isfinite(loss)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.isfinite(y.grad).all()
    # Identical sets (zero distances on the diagonal) still give finite gradients.
    z = torch.randn(1, 8, 3, 3, generator=g, requires_grad=True)
    contextual_loss(z, z.detach().clone()).backward()
    assert torch.isfinite(z.grad).all()


def test_contextual_rejects_bad_shapes():
    with pytest.raises(ValueError):
        contextual_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError):  # PONO centring needs one grid
        contextual_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 3))
    with pytest.raises(ValueError):
        contextual_loss(torch.zeros(3, 2, 2), torch.zeros(3, 2, 2))


@pytest.mark.parametrize("use_22", [False, True])
def test_contextual_objective_weighted_sum(use_22: bool):
    fake, ex = _feats(10), _feats(11)
    for v in fake.values():
        v.requires_grad_(True)
    for v in ex.values():
        v.requires_grad_(True)
    got = contextual_objective(fake, ex, use_22=use_22)
    want = (
        8 * _naive_cx(fake["relu5_2"].detach(), ex["relu5_2"].detach())
        + 4 * _naive_cx(fake["relu4_2"].detach(), ex["relu4_2"].detach())
        + 2 * _naive_cx(F.avg_pool2d(fake["relu3_2"].detach(), 2), F.avg_pool2d(ex["relu3_2"], 2))
    )
    if use_22:
        want = want + _naive_cx(
            F.avg_pool2d(fake["relu2_2"].detach(), 4), F.avg_pool2d(ex["relu2_2"], 4)
        )
    torch.testing.assert_close(got.double(), want.double(), rtol=1e-5, atol=0)
    got.backward()
    assert all(v.grad is None for v in ex.values())  # exemplar detached
    assert fake["relu5_2"].grad is not None
    assert (fake["relu2_2"].grad is not None) == use_22
    assert fake["relu1_2"].grad is None


ALL_PSEUDO = torch.tensor([True, True])


def test_feature_matching_zero_and_offset():
    real = _feats(20)
    same = {k: v.clone() for k, v in real.items()}
    assert vgg_feature_matching(real, same, ALL_PSEUDO).item() == 0.0
    fake = {k: v + 1.0 for k, v in real.items()}
    # Every sample a pseudo pair: the official whole-batch mean is the offset / batch (2).
    want = (1 / 32 + 1 / 16 + 1 / 8 + 1 / 4 + 1.0) / 2
    got = vgg_feature_matching(fake, real, ALL_PSEUDO)
    assert got.item() == pytest.approx(want / (1 + 0.5e-5), rel=1e-6)
    w = (1.0, 2.0)
    got = vgg_feature_matching(fake, real, ALL_PSEUDO, weights=w, layers=("relu1_2", "relu4_2"))
    assert got.item() == pytest.approx(3.0 / 2, rel=1e-5)
    # The divisor named explicitly (the batch the weights assume) replaces the batch at hand.
    got = vgg_feature_matching(fake, real, ALL_PSEUDO, batch=4)
    assert got.item() == pytest.approx(want / 2, rel=1e-5)
    with pytest.raises(ValueError):
        vgg_feature_matching(fake, real, ALL_PSEUDO, weights=(1.0,), layers=LAYERS)


def test_perceptual_zero_and_offset():
    real = _feats(21)
    assert perceptual_loss(real, {k: v.clone() for k, v in real.items()}).item() == 0.0
    fake = {k: v + 2.0 for k, v in real.items()}
    assert perceptual_loss(fake, real).item() == pytest.approx(4.0, rel=1e-6)
    assert perceptual_loss(fake, real, layer="relu1_2").item() == pytest.approx(4.0, rel=1e-6)


def test_gradients_flow_only_into_fake():
    real = {k: v.requires_grad_(True) for k, v in _feats(22).items()}
    fake = {k: (v + 0.5).requires_grad_(True) for k, v in _feats(23).items()}
    (vgg_feature_matching(fake, real, ALL_PSEUDO) + perceptual_loss(fake, real)).backward()
    assert all(v.grad is None for v in real.values())
    for k, v in fake.items():
        assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0, k
    # L1 gradient magnitude per element is w_k / numel / (n_pseudo + 1e-5) for relu1_2 (no
    # MSE term there), the official per-sample weight.
    n = fake["relu1_2"].numel()
    want = torch.full_like(fake["relu1_2"], 1 / 32 / n / (2 + 1e-5))
    torch.testing.assert_close(fake["relu1_2"].grad.abs(), want)
    assert math.isfinite(perceptual_loss(fake, real).item())
