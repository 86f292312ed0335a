import math

import pytest
import torch
import torch.nn.functional as F

from cocosnet.losses.adversarial import d_hinge_loss, feature_matching_loss, g_hinge_loss
from cocosnet.losses.correspondence import cycle_loss, domain_alignment_loss, warped_mask_loss
from cocosnet.losses.perceptual import pseudo_pair_l1


def disc_out(values, feats=(0.0, 0.0), shape=(2, 1, 4, 4), requires_grad=False):
    """Two-scale discriminator output: intermediate layers then the logit map."""
    out = []
    for v in values:
        layers = [torch.full(shape, f, requires_grad=requires_grad) for f in feats]
        layers.append(torch.full(shape, float(v), requires_grad=requires_grad))
        out.append(layers)
    return out


def test_d_hinge_known_values():
    d_real, d_fake = d_hinge_loss(disc_out([2.0, 2.0]), disc_out([0.5, 0.5]))
    assert d_real.item() == pytest.approx(0.0)
    assert d_fake.item() == pytest.approx(1.5)
    # averaged over scales: real logits 0 and 2 -> (1 + 0) / 2
    d_real, d_fake = d_hinge_loss(disc_out([0.0, 2.0]), disc_out([-2.0, 1.0]))
    assert d_real.item() == pytest.approx(0.5)
    assert d_fake.item() == pytest.approx(1.0)


def test_g_hinge_known_values():
    assert g_hinge_loss(disc_out([0.5, 0.5])).item() == pytest.approx(-0.5)
    assert g_hinge_loss(disc_out([1.0, 3.0])).item() == pytest.approx(-2.0)
    # bare tensors per scale are taken as logits
    assert g_hinge_loss([torch.full((1, 1, 2, 2), 0.5)]).item() == pytest.approx(-0.5)


def test_feature_matching_zero_for_equal_features():
    torch.manual_seed(0)
    feats = [[torch.randn(2, 3, 4, 4) for _ in range(3)] for _ in range(2)]
    same = [[f.clone() for f in scale] for scale in feats]
    assert feature_matching_loss(feats, same).item() == pytest.approx(0.0)


def test_feature_matching_constant_offset():
    # 2 scales, 2 intermediate layers each with offset 0.3 and 0.7; logits differ but are ignored
    fake = disc_out([5.0, 5.0], feats=(0.3, 0.7))
    real = disc_out([-5.0, -5.0], feats=(0.0, 0.0))
    # per scale: 0.3 + 0.7 = 1.0; averaged over 2 scales -> 1.0
    assert feature_matching_loss(fake, real).item() == pytest.approx(1.0)
    fake = [[torch.full((1, 1, 2, 2), 1.0), torch.zeros(1, 1, 2, 2)]]
    real = [[torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)]]
    fake2 = fake + [[torch.full((1, 1, 2, 2), 3.0), torch.zeros(1, 1, 2, 2)]]
    real2 = real + [[torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)]]
    assert feature_matching_loss(fake2, real2).item() == pytest.approx((1.0 + 3.0) / 2)


def test_feature_matching_no_grad_into_real():
    fake = disc_out([0.0, 0.0], feats=(1.0, 2.0), requires_grad=True)
    real = disc_out([0.0, 0.0], feats=(0.0, 0.0), requires_grad=True)
    loss = feature_matching_loss(fake, real)
    loss.backward()
    for scale in real:
        for t in scale:
            assert t.grad is None
    assert fake[0][0].grad is not None and fake[0][0].grad.abs().sum() > 0
    assert fake[0][-1].grad is None  # logits do not take part


def test_domain_alignment_and_warp_self():
    torch.manual_seed(0)
    a = F.normalize(torch.randn(2, 8, 4, 4), dim=1)
    assert domain_alignment_loss(a, a.clone()).item() == pytest.approx(0.0)
    assert domain_alignment_loss(a, a + 0.25).item() == pytest.approx(0.25)
    x = torch.rand(2, 3, 8, 8)
    both = torch.tensor([True, True])
    assert pseudo_pair_l1(x, x.clone(), both).item() == pytest.approx(0.0)
    # official whole-batch mean: the pseudo-pair mean (0.5) over the batch (2)
    assert pseudo_pair_l1(x + 0.5, x, both).item() == pytest.approx(0.25, rel=1e-4)
    one = torch.tensor([False, True])
    assert pseudo_pair_l1(x + 0.5, x, one).item() == pytest.approx(0.25, rel=1e-4)
    assert pseudo_pair_l1(x + 0.5, x, one, batch=1).item() == pytest.approx(0.5, rel=1e-4)
    assert pseudo_pair_l1(x + 0.5, x, torch.tensor([False, False])).item() == 0.0


def test_cycle_loss_identity_and_offset():
    torch.manual_seed(0)
    exemplar = torch.rand(2, 3, 16, 16)
    pooled = F.avg_pool2d(exemplar, 4)
    assert cycle_loss(pooled.clone(), exemplar, 4, patch=False).item() == pytest.approx(0.0)
    assert cycle_loss(pooled + 0.2, exemplar, 4, patch=False).item() == pytest.approx(0.2)
    # patch warps: full resolution, compared with the exemplar itself
    assert cycle_loss(exemplar.clone(), exemplar, 4, patch=True).item() == pytest.approx(0.0)
    assert cycle_loss(exemplar - 0.1, exemplar, 4, patch=True).item() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        cycle_loss(exemplar, exemplar, 4, patch=False)


def one_hot(ids, num_classes):
    return F.one_hot(ids, num_classes).permute(0, 3, 1, 2).float()


def labels():
    """Input label at 8x8 (¼ grid 4x4 after nearest downsampling) and an exemplar label."""
    num_classes = 4
    ids = torch.zeros(1, 4, 4, dtype=torch.long)
    ids[0, 0, :] = 0  # background: ignored
    ids[0, 1, :] = 1
    ids[0, 2, :] = 2
    ids[0, 3, :] = 3  # absent from the exemplar: ignored
    input_label = one_hot(ids.repeat_interleave(2, 1).repeat_interleave(2, 2), num_classes)
    ex_ids = torch.tensor([[[0, 1], [2, 2]]]).repeat_interleave(4, 1).repeat_interleave(4, 2)
    exemplar_label = one_hot(ex_ids, num_classes)
    return ids, input_label, exemplar_label, num_classes


def test_warped_mask_perfect_is_zero():
    ids, input_label, exemplar_label, num_classes = labels()
    warped = one_hot(ids, num_classes)
    loss = warped_mask_loss(warped, input_label, exemplar_label)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_warped_mask_uniform_is_log_l():
    ids, input_label, exemplar_label, num_classes = labels()
    warped = torch.full((1, num_classes, 4, 4), 1.0 / num_classes)
    loss = warped_mask_loss(warped, input_label, exemplar_label)
    assert loss.item() == pytest.approx(math.log(num_classes), rel=1e-5)


def test_warped_mask_ignores_background_and_absent_classes():
    ids, input_label, exemplar_label, num_classes = labels()
    torch.manual_seed(0)
    warped = torch.softmax(torch.randn(1, num_classes, 4, 4), dim=1)
    base = warped_mask_loss(warped, input_label, exemplar_label)
    # hand-computed over rows 1 and 2 only (classes 1 and 2); official denominator + 1e-5
    logp = torch.log(warped + 1e-10)
    expected = -(logp[0, 1, 1, :].sum() + logp[0, 2, 2, :].sum()) / (8 + 1e-5)
    assert base.item() == pytest.approx(expected.item(), rel=1e-5)
    changed = warped.clone()
    changed[0, :, 0, :] = torch.tensor([0.97, 0.01, 0.01, 0.01])[:, None]  # class-0 pixels
    changed[0, :, 3, :] = torch.tensor([0.01, 0.01, 0.01, 0.97])[:, None]  # absent class 3
    assert warped_mask_loss(changed, input_label, exemplar_label).item() == pytest.approx(
        base.item(), rel=1e-6
    )
    # changing a counted pixel does change it
    changed[0, :, 1, 0] = torch.tensor([0.01, 0.97, 0.01, 0.01])
    assert warped_mask_loss(changed, input_label, exemplar_label).item() != pytest.approx(
        base.item(), rel=1e-6
    )


def test_warped_mask_all_ignored_is_zero_with_grad():
    num_classes = 3
    input_label = one_hot(torch.zeros(1, 8, 8, dtype=torch.long), num_classes)
    exemplar_label = one_hot(torch.ones(1, 8, 8, dtype=torch.long), num_classes)
    warped = torch.full((1, num_classes, 4, 4), 1.0 / 3, requires_grad=True)
    loss = warped_mask_loss(warped, input_label, exemplar_label)
    assert loss.item() == 0.0
    loss.backward()
    assert warped.grad is not None
