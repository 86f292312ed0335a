"""Training CoCosNet: build the networks, resume a checkpoint, run the epochs of generator and
discriminator steps (:mod:`.epochs`: official schedules, checkpoints every N steps and on request
(SIGTERM), non-finite checks, tracking) and export the trained generator.

Resuming from a checkpoint gives the same weights as an uninterrupted run: examples are a pure
function of (seed, epoch, index), the data order of (seed, epoch), and the checkpoint holds the
networks, optimisers, scaler, RNG states and progress.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import LossConfig, ModelConfig, RuntimeConfig, TrainConfig
from ..losses.objective import Objective
from ..models.export import save_generator
from ..models.factory import build_correspondence, build_discriminator, build_translation
from ..models.label_conv import set_one_hot_gather
from ..models.vgg import VGG19
from . import distributed as dist_utils
from .checkpoint import CheckpointWriter, PreviousRun, restore
from .data import TrainingExamples, steps_per_epoch
from .distributed import DistInfo
from .epochs import EpochLoop, Tracking
from .steps import Generator, Trainer


@dataclass
class TrainResult:
    """What a training run did; the stage reports it."""

    steps: int
    epochs_started: int
    stopped: str  # "finished" or "interrupted"
    loss_set: str
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    export_dir: Path | None = None
    resumed_from: int | None = None
    seconds: float = 0.0
    generator: Generator | None = None  # the trained networks (this process's replica)
    discriminator: torch.nn.Module | None = None


def total_steps(n_examples: int, cfg: TrainConfig, world_size: int = 1) -> int:
    """Steps of the whole run: every epoch of the schedule, capped by ``max_steps``."""
    epoch_steps = steps_per_epoch(n_examples, cfg.batch_size, world_size)
    if epoch_steps == 0:
        raise ValueError(
            f"{n_examples} training samples make no full batch of {cfg.batch_size} per process "
            f"on {world_size} process(es)"
        )
    epochs = cfg.niter + cfg.niter_decay
    total = epochs * epoch_steps if epochs else cfg.max_steps
    return min(total, cfg.max_steps) if cfg.max_steps is not None else total


def train(
    examples: TrainingExamples,
    *,
    model_cfg: ModelConfig,
    loss_cfg: LossConfig,
    cfg: TrainConfig,
    checkpoint_dir: str | Path,
    export_dir: str | Path,
    fingerprint: str,  # of the settings and code (the resume key)
    runtime: RuntimeConfig | None = None,
    previous: PreviousRun | None = None,  # the checkpoint to continue from
    vgg: VGG19 | None = None,  # None: the no-VGG loss set
    info: DistInfo | None = None,  # this process among the torchrun processes
    tracker: Tracking | None = None,  # rank 0 only
    resolved_config: Mapping[str, Any] | None = None,  # saved in every checkpoint
    stop_requested: Callable[[], bool] = lambda: False,  # polled after every step
    run_id: str | None = None,  # the MLflow run, saved in every checkpoint
    log: Callable[[str], None] = print,
    curve_file: str | Path | None = None,  # the loss curve, written as the training goes
) -> TrainResult:
    """Train CoCosNet on ``examples``: checkpoints go to ``checkpoint_dir`` (the resume area of
    ``fingerprint``), the exported model of a finished run to ``export_dir``."""
    start = time.perf_counter()
    info, runtime = info or DistInfo(), runtime or RuntimeConfig()
    device = dist_utils.choose_device(cfg, info)
    with _process_group(cfg, runtime, info, device):
        # Initialize.
        trainer = _build_trainer(model_cfg, loss_cfg, cfg, vgg, info, device, runtime)
        epoch_steps = steps_per_epoch(len(examples), cfg.batch_size, info.world_size)
        total = total_steps(len(examples), cfg, info.world_size)

        # Resume.
        history: list[dict[str, float]] = []
        if previous is not None:
            history = restore(
                trainer, previous, fingerprint=fingerprint, total=total, device=device
            )
            log(f"train: resumed from {previous.path} (step {previous.step} of {total})")
        if tracker is not None:
            tracker.set_tags({"losses": trainer.objective.loss_set, "fingerprint": fingerprint})

        # Checkpoints: everything the run needs to continue as if never stopped.
        checkpoints = CheckpointWriter(
            Path(checkpoint_dir),
            fingerprint=fingerprint,
            epoch_steps=epoch_steps,
            keep=runtime.keep_checkpoints,
            config=json.dumps(dict(resolved_config or {}), default=str),
            run_id=run_id or "",
            info=info,
            device=device,
        )

        # Train: epochs of steps until the last one, a stop request or a non-finite loss.
        curve = Path(curve_file) if curve_file is not None else None
        run = EpochLoop(
            trainer, total, epoch_steps, runtime, info, device, checkpoints, tracker, history, curve
        )
        run.train(examples, cfg, loss_cfg, stop_requested=stop_requested, log=log)

        # Done.
        exported = None
        if run.stopped == "finished" and info.is_main:
            generator = trainer.generator
            exported = save_generator(export_dir, model_cfg, generator.corr, generator.translation)
        return TrainResult(
            steps=trainer.step,
            epochs_started=run.epochs_started,
            stopped=run.stopped,
            loss_set=trainer.objective.loss_set,
            history=run.history,
            checkpoint=run.checkpoint,
            export_dir=exported,
            resumed_from=previous.step if previous is not None else None,
            seconds=time.perf_counter() - start,
            generator=trainer.generator,
            discriminator=trainer.discriminator,
        )


@contextlib.contextmanager
def _process_group(
    cfg: TrainConfig, runtime: RuntimeConfig, info: DistInfo, device: torch.device
) -> Iterator[None]:
    """Threads, determinism and the process group of the run; the group ends with it."""
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        # The kernels stay deterministic; NaN-filling every new tensor (a check for reads of
        # uninitialised memory, which the resume tests would see) cost 5% of a demo step.
        torch.utils.deterministic.fill_uninitialized_memory = False
    dist_utils.init_process_group(runtime, info, device)
    try:
        yield
    finally:
        dist_utils.shutdown()


def _build_trainer(
    model_cfg: ModelConfig,
    loss_cfg: LossConfig,
    cfg: TrainConfig,
    vgg: VGG19 | None,
    info: DistInfo,
    device: torch.device,
    runtime: RuntimeConfig,
) -> Trainer:
    """Networks, objective and optimisers; identical initial weights on every process."""
    torch.manual_seed(cfg.seed)
    corr, translation, discriminator = (
        build_correspondence(model_cfg),
        build_translation(model_cfg),
        build_discriminator(model_cfg),
    )
    set_one_hot_gather(corr, cfg.one_hot_gather)
    set_one_hot_gather(translation, cfg.one_hot_gather)
    objective = Objective(
        loss_cfg,
        vgg.to(device) if vgg is not None else None,
        warp_stride=model_cfg.warp_stride,
        warp_patch=model_cfg.warp_patch,
        num_classes=model_cfg.semantic_nc,
    )
    trainer = Trainer(
        cfg,
        objective,
        Generator(corr, translation),
        discriminator,
        device=device,
        ddp=info.distributed,
        channels_last=runtime.channels_last_on(device.type),
    )
    if info.distributed:
        trainer.any_process = lambda flag: dist_utils.broadcast_flag(flag, info, device)
    return trainer
