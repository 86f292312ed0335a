"""The demo-only class colour loss: per shared class, L1 of the output's and the exemplar's mean
colours, against a loop written here; and how the objective uses it."""

import pytest
import torch

from cocosnet.config import loss_config
from cocosnet.losses.class_colour import class_colour_loss, class_means
from cocosnet.losses.objective import LOSS_SET_DEMO_ONLY, LOSS_SET_NO_VGG, Objective


def reference(fake, exemplar, label, exemplar_label, num_classes, min_pixels):
    """A plain loop over images and classes."""
    distances = []
    for b in range(fake.shape[0]):
        for k in range(num_classes):
            mine, theirs = label[b] == k, exemplar_label[b] == k
            if mine.sum() < min_pixels or theirs.sum() < min_pixels:
                continue
            ours = fake[b][:, mine].mean(1)
            target = exemplar[b][:, theirs].mean(1)
            distances.append((ours - target).abs().mean())
    return torch.stack(distances).mean()


def test_equals_a_loop_by_class_and_image():
    g = torch.Generator().manual_seed(0)
    fake = torch.rand(3, 3, 12, 10, generator=g) * 2 - 1
    exemplar = torch.rand(3, 3, 12, 10, generator=g) * 2 - 1
    label = torch.randint(0, 4, (3, 12, 10), generator=g)
    exemplar_label = torch.randint(0, 5, (3, 12, 10), generator=g)
    exemplar_label[1] = 4  # image 1: only a class the input lacks: nothing to compare
    label[2, :2] = -1  # unlabelled pixels count for no class
    got = class_colour_loss(fake, exemplar, label, exemplar_label, 5, min_pixels=20)
    want = reference(fake, exemplar, label, exemplar_label, 5, 20)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_by_hand_and_small_classes_left_out():
    """Class 0: fake mean 0.5 vs exemplar -0.5 in every channel (distance 1); class 1 has 2
    pixels in the exemplar: left out below 3, else distance 0.5 (mean 0.75)."""
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    label[0, 0] = 1
    exemplar_label = torch.zeros(1, 4, 4, dtype=torch.long)
    exemplar_label[0, 0, :2] = 1
    fake = torch.full((1, 3, 4, 4), 0.5)
    exemplar = torch.full((1, 3, 4, 4), -0.5)
    exemplar[0, :, 0, :2] = 1.0  # class 1 (left out) would change the result if counted
    assert class_colour_loss(fake, exemplar, label, exemplar_label, 2, min_pixels=3) == 1.0
    assert class_colour_loss(fake, exemplar, label, exemplar_label, 2, min_pixels=2) == 0.75


def test_only_the_output_gets_gradients_and_no_shared_class_is_zero():
    fake = torch.zeros(1, 3, 4, 4, requires_grad=True)
    exemplar = torch.ones(1, 3, 4, 4, requires_grad=True)
    ids = torch.zeros(1, 4, 4, dtype=torch.long)
    class_colour_loss(fake, exemplar, ids, ids, 1, min_pixels=1).backward()
    assert fake.grad.abs().sum() > 0 and exemplar.grad is None
    none = class_colour_loss(fake, exemplar, ids, ids + 1, 2, min_pixels=1)
    assert none == 0 and none.requires_grad
    with pytest.raises(ValueError, match="differ"):
        class_means(fake, ids[:, :2], 1)


def test_objective_adds_the_term_only_when_weighted_and_names_it():
    with pytest.raises(ValueError, match="number of classes"):
        Objective(loss_config({"class_colour": 1.0}), None, warp_stride=4)
    demo = Objective(loss_config({"preset": "demo"}), None, warp_stride=4, num_classes=8)
    assert demo.loss_set == LOSS_SET_NO_VGG + LOSS_SET_DEMO_ONLY
    for preset in ("paper_ade20k", "paper_celebahq_mask", "paper_deepfashion"):
        assert loss_config({"preset": preset}).class_colour == 0  # never in the paper's recipes
