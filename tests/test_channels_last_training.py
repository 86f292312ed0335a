"""runtime.channels_last: training in oneDNN's preferred layout computes the same steps as the plain
layout up to rounding, and a checkpoint resumes across the two layouts."""

from __future__ import annotations

import copy

import pytest
import torch

from cocosnet.config import RuntimeConfig, TrainConfig, loss_config, model_config
from cocosnet.losses.objective import Objective
from cocosnet.models.factory import build_correspondence, build_discriminator, build_translation
from cocosnet.training.steps import Generator, Trainer

from .helpers import single_thread, training_batch

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)

CFG = model_config(
    {"preset": "demo", "ngf": 4, "corr_nf": 2, "spade_hidden": 8, "ndf": 4, "corr_size": 32}
)


def _networks():
    torch.manual_seed(0)
    return (
        Generator(build_correspondence(CFG), build_translation(CFG)),
        build_discriminator(CFG),
    )


def _trainer(networks, channels_last: bool) -> Trainer:
    loss = loss_config({"preset": "demo", "vgg": "off"})
    objective = Objective(loss, None, warp_stride=CFG.warp_stride, warp_patch=CFG.warp_patch,
                          num_classes=CFG.semantic_nc)  # fmt: skip
    generator, discriminator = copy.deepcopy(networks)
    return Trainer(
        TrainConfig(),
        objective,
        generator,
        discriminator,
        device=torch.device("cpu"),
        channels_last=channels_last,
    )


def _step(trainer: Trainer, seed: int) -> torch.Tensor:
    batch = training_batch(CFG, seed=seed)
    result = trainer.generator_step(batch, hide_exemplar_label=False, warped_mask_weight=100.0)
    trainer.discriminator_step(batch, result.fake)
    return result.fake


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    nets = {"G": trainer.generator, "D": trainer.discriminator}
    return {f"{n}.{k}": v for n, net in nets.items() for k, v in net.state_dict().items()}


def _conv_weights(trainer: Trainer) -> list[torch.Tensor]:
    return [w for w in _weights(trainer).values() if w.dim() == 4 and min(w.shape[1:]) > 1]


def _grads(trainer: Trainer) -> dict[str, torch.Tensor]:
    nets = {"G": trainer.generator, "D": trainer.discriminator}
    return {
        f"{n}.{k}": p.grad for n, net in nets.items() for k, p in net.named_parameters()
        if p.grad is not None
    }  # fmt: skip


def _assert_grads_close(got: dict, want: dict) -> None:
    """Each gradient within rounding of its network's largest one: the biases of convs that a
    norm follows have a gradient of 0 up to rounding noise, which no per-tensor bound holds."""
    for net in ("G", "D"):
        scale = max(g.abs().max().item() for k, g in want.items() if k.startswith(net))
        for key in (k for k in want if k.startswith(net)):
            torch.testing.assert_close(got[key], want[key], rtol=1e-3, atol=1e-5 * scale)


def test_channels_last_steps_equal_the_plain_layout_up_to_rounding():
    networks = _networks()
    plain, last = _trainer(networks, False), _trainer(networks, True)
    assert all(w.is_contiguous() for w in _conv_weights(plain))
    assert not any(w.is_contiguous() for w in _conv_weights(last))  # really the other layout
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(last))
    torch.manual_seed(1)  # the same noise in both (pseudo pairs, attention)
    fake_plain = _step(plain, 1)
    torch.manual_seed(1)
    fake_last = _step(last, 1)
    torch.testing.assert_close(fake_last, fake_plain, rtol=1e-3, atol=1e-4)
    grads_plain, grads_last = _grads(plain), _grads(last)
    assert len(grads_plain) == len(grads_last) > 50
    _assert_grads_close(grads_last, grads_plain)
    # Adam moves a weight by at most ~lr a step, whatever its gradient's rounding (for a
    # gradient near 0 that rounding can flip the step's sign).
    bound = 2 * max(plain.base_lr_g, plain.base_lr_d)
    for key, value in _weights(plain).items():
        torch.testing.assert_close(_weights(last)[key], value, rtol=0, atol=bound)


@pytest.mark.parametrize("saved_last", [True, False])
def test_a_checkpoint_resumes_in_the_other_layout(saved_last):
    networks = _networks()
    saved = _trainer(networks, saved_last)
    _step(saved, 1)
    state = copy.deepcopy(saved.state_dict())
    resumed = _trainer(networks, not saved_last)
    resumed.load_state_dict(state)
    for optimizer in (resumed.generator_optimizer, resumed.discriminator_optimizer):
        for group in optimizer.param_groups:
            for param in group["params"]:
                for value in optimizer.state[param].values():
                    if value.shape == param.shape:  # Adam's moments: their parameter's layout
                        assert value.stride() == param.stride()
    torch.manual_seed(2)
    _step(saved, 2)
    torch.manual_seed(2)
    _step(resumed, 2)
    _assert_grads_close(_grads(resumed), _grads(saved))


def test_runtime_channels_last_is_on_for_the_cpu_unless_set():
    assert RuntimeConfig().channels_last_on("cpu")
    assert not RuntimeConfig().channels_last_on("cuda")
    assert not RuntimeConfig(channels_last=False).channels_last_on("cpu")
    assert RuntimeConfig(channels_last=True).channels_last_on("cuda")
