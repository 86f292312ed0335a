"""One optimisation step of each player: the generator (correspondence + translation) and the
discriminator, with TTUR Adam, optional bf16/fp16 autocast and non-finite checks.

Following the official trainer, the generator step runs first and the discriminator then sees
the same (detached) fake. Gradients of the generator step never touch the discriminator's
parameters (they are frozen for that pass) and vice versa.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..losses.objective import GeneratorInputs, Objective
from ..models.correspondence import CorrespondenceNet, CorrespondenceOutput
from ..models.discriminator import MultiscaleDiscriminator
from ..models.translation import TranslationNet


class NonFiniteError(FloatingPointError):
    """A loss or gradient became NaN/inf: training stops, the last good checkpoint is kept."""


class Generator(nn.Module):
    """Correspondence and translation networks as one module (one DDP wrapper, one optimiser)."""

    def __init__(self, corr: CorrespondenceNet, translation: TranslationNet):
        super().__init__()
        self.corr, self.translation = corr, translation

    def forward(
        self,
        input: Tensor,
        exemplar: Tensor,
        exemplar_input: Tensor | None,
        *,
        hide_exemplar_label: bool = False,
        real_image: Tensor | None = None,
        cycle: bool = False,
    ) -> tuple[Tensor, CorrespondenceOutput]:
        corr = self.corr(
            input,
            exemplar,
            exemplar_input,
            hide_exemplar_label=hide_exemplar_label,
            real_image=real_image,
            cycle=cycle,
        )
        return self.translation(input, corr.warped), corr


@dataclass
class GeneratorResult:
    terms: dict[str, Tensor]  # weighted loss terms (detached), "total" included
    fake: Tensor  # detached
    corr: CorrespondenceOutput


def _autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if amp == "fp16" else torch.bfloat16


def _fake_and_real(batch: dict[str, Tensor], fake: Tensor) -> Tensor:
    """Input ⊕ fake and input ⊕ real as one discriminator batch (official), fakes first."""
    return torch.cat(
        [torch.cat([batch["input"], fake], 1), torch.cat([batch["input"], batch["image"]], 1)], 0
    )


def _moments_like_params(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape:
                    state[key] = torch.empty_like(param).copy_(value)


def _grad_norm(params: list[nn.Parameter]) -> Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, foreach=True)  # one fused kernel, not ~300


class Trainer:
    """The networks, their optimisers and the two steps. What the networks compute besides the
    fake (ground-truth features, the cycle warp) is what ``objective`` needs."""

    def __init__(
        self,
        train_cfg: TrainConfig,
        objective: Objective,
        generator: Generator,
        discriminator: MultiscaleDiscriminator,
        *,
        device: torch.device,
        ddp: bool = False,
        channels_last: bool = False,
    ):
        self.objective, self.device = objective, device
        self.base_lr_g, self.base_lr_d = train_cfg.lr_g, train_cfg.lr_d
        if ddp and device.type == "cuda":
            # Batch statistics over all GPUs where the config uses batch norm (the official SPADE
            # "syncbatch" norms when positional normalisation is off); SyncBatchNorm needs CUDA,
            # so CPU processes keep per-process statistics.
            generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        # channels_last: oneDNN's preferred convolution layout (the same computation, rounded
        # differently); the inputs stay as they come, the first conv's output follows its weight.
        layout = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = generator.to(device, memory_format=layout)
        self.discriminator = discriminator.to(device, memory_format=layout)
        self.generator_params = [p for p in self.generator.parameters() if p.requires_grad]
        self.discriminator_params = [p for p in self.discriminator.parameters() if p.requires_grad]
        # One fused kernel per step instead of a loop over ~300 tensors (3x faster on the CPU, equal
        # to the loop up to rounding); torch has it on CPU and CUDA.
        fused = device.type in ("cpu", "cuda")
        self.generator_optimizer = torch.optim.Adam(
            self.generator_params,
            lr=train_cfg.lr_g,
            betas=(train_cfg.beta1, train_cfg.beta2),
            eps=train_cfg.eps_g,
            fused=fused,
        )
        self.discriminator_optimizer = torch.optim.Adam(
            self.discriminator_params,
            lr=train_cfg.lr_d,
            betas=(train_cfg.beta1, train_cfg.beta2),
            eps=train_cfg.eps_d,
            fused=fused,
        )
        self.amp_dtype = _autocast_dtype(train_cfg.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        # DDP wrappers average gradients across processes (without DDP: the bare modules); the
        # bare modules stay reachable for checkpoints and for the frozen discriminator pass of
        # the generator step.
        self.generator_ddp: nn.Module = self.generator
        self.discriminator_ddp: nn.Module = self.discriminator
        if ddp:
            device_ids = [device.index] if device.type == "cuda" else None
            self.generator_ddp = nn.parallel.DistributedDataParallel(
                self.generator, device_ids=device_ids
            )
            self.discriminator_ddp = nn.parallel.DistributedDataParallel(
                self.discriminator, device_ids=device_ids
            )
        self.step = 0
        # Turns a local flag into "true on any process", so every rank stops together instead of
        # the others waiting forever in the next all-reduce (set by the loop under DDP).
        self.any_process: Callable[[bool], bool] = lambda flag: flag

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def set_lr_factor(self, factor: float) -> None:
        """Scale both players' learning rates alike (the epoch's :class:`EpochSchedule`)."""
        for group in self.generator_optimizer.param_groups:
            group["lr"] = self.base_lr_g * factor
        for group in self.discriminator_optimizer.param_groups:
            group["lr"] = self.base_lr_d * factor

    @property
    def lr_g(self) -> float:
        """The generator's learning rate now (logged)."""
        return self.generator_optimizer.param_groups[0]["lr"]

    def generator_step(
        self, batch: dict[str, Tensor], *, hide_exemplar_label: bool, warped_mask_weight: float
    ) -> GeneratorResult:
        """One Adam step of correspondence + translation against the frozen discriminator;
        ``hide_exemplar_label`` and ``warped_mask_weight`` come from the epoch's schedule."""
        objective = self.objective
        self.discriminator.requires_grad_(False)
        self.generator_optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            fake, corr = self.generator_ddp(
                batch["input"],
                batch["exemplar"],
                batch["exemplar_input"],
                hide_exemplar_label=hide_exemplar_label,
                real_image=batch["image"] if objective.needs_real_features else None,
                cycle=objective.needs_cycle,
            )
            pred = self.discriminator(_fake_and_real(batch, fake))
        n = fake.shape[0]  # fakes first, then reals
        pred_fake = [[f[:n].float() for f in scale] for scale in pred]
        pred_real = [[f[n:].float() for f in scale] for scale in pred]
        terms = objective.generator_terms(
            GeneratorInputs(
                fake=fake.float(),
                real=batch["image"],
                exemplar=batch["exemplar"],
                label=batch["label"],
                exemplar_label=batch["exemplar_label"],
                is_pseudo=batch["is_pseudo"],
                corr=corr,
                pred_fake=pred_fake,
                pred_real=pred_real,
            ),
            warped_mask_weight=warped_mask_weight,
        )
        self._check_finite("generator", terms)
        self.scaler.scale(terms["total"]).backward()
        self.scaler.unscale_(self.generator_optimizer)
        self._check_grads("generator", self.generator_params)
        self.scaler.step(self.generator_optimizer)
        self.discriminator.requires_grad_(True)
        return GeneratorResult({k: v.detach() for k, v in terms.items()}, fake.detach(), corr)

    def discriminator_step(self, batch: dict[str, Tensor], fake: Tensor) -> dict[str, Tensor]:
        """One Adam step of the discriminator on the generator step's (detached) ``fake``."""
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            pred = self.discriminator_ddp(_fake_and_real(batch, fake.detach()))
        n = fake.shape[0]  # fakes first, then reals
        terms = self.objective.discriminator_terms(
            [[f[n:].float() for f in scale] for scale in pred],
            [[f[:n].float() for f in scale] for scale in pred],
        )
        self._check_finite("discriminator", terms)
        self.scaler.scale(terms["total"]).backward()
        self.scaler.unscale_(self.discriminator_optimizer)
        self._check_grads("discriminator", self.discriminator_params)
        self.scaler.step(self.discriminator_optimizer)
        self.scaler.update()
        return {k: v.detach() for k, v in terms.items()}

    def _check_finite(self, who: str, terms: dict[str, Tensor]) -> None:
        bad = [k for k, v in terms.items() if not torch.isfinite(v).all()]
        if self.any_process(bool(bad)):
            raise NonFiniteError(
                f"step {self.step}: non-finite {who} loss term(s) {bad or '(on another process)'}"
            )

    def _check_grads(self, who: str, params: list[nn.Parameter]) -> None:
        # With fp16 the scaler skips steps with inf gradients by design; otherwise stop.
        if self.scaler.is_enabled():
            return
        norm = _grad_norm(params)
        if self.any_process(not bool(torch.isfinite(norm))):
            raise NonFiniteError(f"step {self.step}: non-finite {who} gradients (norm {norm})")

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.generator_optimizer.state_dict(),
            "opt_d": self.discriminator_optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.generator_optimizer.load_state_dict(state["opt_g"])
        self.discriminator_optimizer.load_state_dict(state["opt_d"])
        # A checkpoint of a run in the other layout: Adam's moments take their parameter's.
        for optimizer in (self.generator_optimizer, self.discriminator_optimizer):
            _moments_like_params(optimizer)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
