"""The trainer's Adam (a fused kernel on the CPU) against Adam written out from REFERENCE.md:
TTUR, betas (0, 0.9), G + correspondence eps 1e-3, D eps 1e-8, bias-corrected moments."""

from __future__ import annotations

import pytest
import torch

from cocosnet.config import TrainConfig, loss_config, model_config
from cocosnet.losses.objective import Objective
from cocosnet.models.factory import build_correspondence, build_discriminator, build_translation
from cocosnet.training.steps import Generator, Trainer

from .helpers import single_thread

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)


def reference_adam(param, grads, lr, beta1, beta2, eps):
    """``param`` after one Adam step per gradient in ``grads`` (Kingma & Ba, Algorithm 1)."""
    p, m, v = param.double().clone(), torch.zeros_like(param.double()), 0 * param.double()
    for t, g in enumerate(grads, start=1):
        g = g.double()
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        p = p - lr * m_hat / (v_hat.sqrt() + eps)
    return p


def test_both_optimizers_take_the_reference_adam_steps():
    torch.manual_seed(0)
    cfg = model_config({"preset": "demo", "ngf": 4, "corr_nf": 2, "spade_hidden": 8, "ndf": 4})
    loss = loss_config({"preset": "demo", "vgg": "off"})
    objective = Objective(loss, None, warp_stride=cfg.warp_stride, warp_patch=cfg.warp_patch,
                          num_classes=cfg.semantic_nc)  # fmt: skip
    train = TrainConfig(lr_g=2e-4, lr_d=4e-4, beta1=0.0, beta2=0.9)
    trainer = Trainer(
        train,
        objective,
        Generator(build_correspondence(cfg), build_translation(cfg)),
        build_discriminator(cfg),
        device=torch.device("cpu"),
    )
    sides = [
        (trainer.generator_params, trainer.generator_optimizer, train.lr_g, train.eps_g),
        (trainer.discriminator_params, trainer.discriminator_optimizer, train.lr_d, train.eps_d),
    ]
    g = torch.Generator().manual_seed(3)
    for params, optimizer, lr, eps in sides:
        start = [p.detach().clone() for p in params]
        # Gradients of very different sizes: eps matters for the small ones.
        grads = [[torch.randn(p.shape, generator=g) * s for p in params] for s in (1e-2, 1e-4)]
        for step_grads in grads:
            for p, grad in zip(params, step_grads, strict=True):
                p.grad = grad.clone()
            optimizer.step()
        for i, p in enumerate(params):
            want = reference_adam(start[i], [step[i] for step in grads], lr, 0.0, 0.9, eps)
            torch.testing.assert_close(p.detach().double(), want, rtol=1e-6, atol=1e-9)
        moved = max((p.detach() - s).abs().max().item() for p, s in zip(params, start, strict=True))
        assert moved > lr / 2  # the steps were taken (Adam moves a weight by up to ~lr a step)
