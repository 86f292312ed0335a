"""The training loop: epochs of generator and discriminator steps, with the official schedules,
checkpoints every N steps and on request (SIGTERM), resume, non-finite checks and tracking.

Resuming from a checkpoint gives the same weights as an uninterrupted run: examples are a pure
function of (seed, epoch, index), the data order of (seed, epoch), and the checkpoint holds the
networks, optimisers, scaler, RNG states and progress.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..config import LossConfig, ModelConfig, RuntimeConfig, TrainConfig
from ..losses.objective import Objective
from ..models.export import save_generator
from ..models.factory import build_correspondence, build_discriminator, build_translation
from ..models.vgg import VGG19
from ..visualize import image_grid
from . import distributed as dist_utils
from .checkpoint import save_checkpoint
from .data import TrainingExamples, epoch_batches, steps_per_epoch
from .distributed import DistInfo
from .schedule import exemplar_label_hidden, lr_factor, warped_mask_weight
from .steps import Generator, NonFiniteError, Trainer


@dataclass
class TrainResult:
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


class Tracking:
    """What the loop needs from a tracker (cocosnet.tracking.Tracker fits); rank 0 only."""

    def log_metrics(self, values: Mapping[str, float], step: int) -> None: ...
    def log_image(self, image: Any, name: str, step: int) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def total_steps(n_examples: int, cfg: TrainConfig, world_size: int = 1) -> int:
    """Steps of the whole run: every epoch of the schedule, capped by ``max_steps``."""
    spe = steps_per_epoch(n_examples, cfg.batch_size, world_size)
    if spe == 0:
        raise ValueError(
            f"{n_examples} training samples make no full batch of {cfg.batch_size} per process "
            f"on {world_size} process(es)"
        )
    epochs = cfg.niter + cfg.niter_decay
    total = epochs * spe if epochs else cfg.max_steps
    return min(total, cfg.max_steps) if cfg.max_steps is not None else total


def train(
    examples: TrainingExamples,
    *,
    model_cfg: ModelConfig,
    loss_cfg: LossConfig,
    cfg: TrainConfig,
    checkpoint_dir: str | Path,
    export_dir: str | Path,
    fingerprint: str,
    runtime: RuntimeConfig | None = None,
    previous: tuple[Path, dict] | None = None,
    vgg: VGG19 | None = None,
    info: DistInfo | None = None,
    tracker: Tracking | None = None,
    resolved_config: Mapping[str, Any] | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    run_id: str | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train CoCosNet on ``examples``.

    Checkpoints go to ``checkpoint_dir`` (the resume area of this ``fingerprint``), the exported
    model to ``export_dir``. ``previous`` (:func:`cocosnet.training.checkpoint.resumable`) is
    the checkpoint of the same fingerprint to continue from, if any.
    """
    start = time.perf_counter()
    info, runtime = info or DistInfo(), runtime or RuntimeConfig()
    device = dist_utils.choose_device(cfg, info)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    dist_utils.init_process_group(runtime, info, device)
    try:
        return _train(
            examples,
            model_cfg=model_cfg,
            loss_cfg=loss_cfg,
            cfg=cfg,
            runtime=runtime,
            checkpoint_dir=Path(checkpoint_dir),
            export_dir=Path(export_dir),
            key=fingerprint,
            previous=previous,
            vgg=vgg,
            info=info,
            device=device,
            tracker=tracker,
            resolved_config=dict(resolved_config or {}),
            stop_requested=stop_requested,
            run_id=run_id,
            log=log,
            start=start,
        )
    finally:
        dist_utils.shutdown()


def _train(
    examples: TrainingExamples,
    *,
    model_cfg: ModelConfig,
    loss_cfg: LossConfig,
    cfg: TrainConfig,
    runtime: RuntimeConfig,
    checkpoint_dir: Path,
    export_dir: Path,
    key: str,
    previous: tuple[Path, dict] | None,
    vgg: VGG19 | None,
    info: DistInfo,
    device: torch.device,
    tracker: Tracking | None,
    resolved_config: dict[str, Any],
    stop_requested: Callable[[], bool],
    run_id: str | None,
    log: Callable[[str], None],
    start: float,
) -> TrainResult:
    torch.manual_seed(cfg.seed)  # identical initial weights on every process
    corr, gen, disc = (
        build_correspondence(model_cfg),
        build_translation(model_cfg),
        build_discriminator(model_cfg),
    )
    objective = Objective(
        loss_cfg,
        vgg.to(device) if vgg is not None else None,
        warp_stride=model_cfg.warp_stride,
        warp_patch=model_cfg.warp_patch,
    )
    trainer = Trainer(
        model_cfg, cfg, objective, Generator(corr, gen), disc, device=device, ddp=info.distributed
    )
    if info.distributed:
        trainer.any_process = lambda flag: dist_utils.broadcast_flag(flag, info, device)
    spe = steps_per_epoch(len(examples), cfg.batch_size, info.world_size)
    total = total_steps(len(examples), cfg, info.world_size)

    history: list[dict[str, float]] = []
    resumed_from = None
    if previous is not None:
        path, state = previous
        if state["fingerprint"] != key or int(state["step"]) > total:
            raise ValueError(f"{path} cannot be resumed by this configuration")
        trainer.load_state_dict(state["trainer"])
        _set_rng_state(state["rng"], device)
        trainer.step = resumed_from = int(state["step"])
        history = json.loads(state["history"])
        log(f"train: resumed from {path} (step {resumed_from} of {total})")
    if tracker is not None:
        tracker.set_tags({"losses": objective.loss_set, "fingerprint": key})

    def checkpoint() -> Path | None:
        path = None
        if info.is_main:
            state = {
                "fingerprint": key,
                "step": trainer.step,
                "epoch": trainer.step // spe,
                "trainer": trainer.state_dict(),
                "rng": _rng_state(device),
                "history": json.dumps(history),
                "config": json.dumps(resolved_config, default=str),
                "run_id": run_id or "",
            }
            path = save_checkpoint(checkpoint_dir, trainer.step, state, runtime.keep_checkpoints)
        if info.distributed:
            torch.distributed.barrier()
        return path

    last_ckpt, stopped = None, "finished"
    epochs_started = trainer.step // spe
    progress = tqdm(
        total=total, initial=trainer.step, desc="train", unit="step", disable=not info.is_main
    )
    try:
        while trainer.step < total:
            epoch = trainer.step // spe
            batches = epoch_batches(
                len(examples),
                cfg.batch_size,
                seed=cfg.seed,
                epoch=epoch,
                rank=info.rank,
                world=info.world_size,
            )[trainer.step % spe :]
            examples.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(
                examples,
                batch_sampler=batches,
                num_workers=runtime.num_workers,
                pin_memory=device.type == "cuda",
                # Its own generator: a loader seeds its workers from the global RNG otherwise,
                # which would make a resumed epoch draw different noise than an uninterrupted one.
                generator=torch.Generator().manual_seed(cfg.seed + epoch),
            )
            trainer.set_lr_factor(lr_factor(epoch, cfg.niter, cfg.niter_decay))
            hide = exemplar_label_hidden(epoch, cfg.mask_epoch)
            mask_w = warped_mask_weight(epoch, cfg.mask_epoch, loss_cfg)
            epochs_started = epoch + 1
            for batch in loader:
                batch = _to_device(batch, device)
                g = trainer.generator_step(
                    batch, hide_exemplar_label=hide, warped_mask_weight=mask_w
                )
                d = trainer.discriminator_step(batch, g.fake)
                trainer.step += 1
                step = trainer.step
                progress.update()
                if step % runtime.log_every == 0 or step == total:
                    values = dist_utils.mean_across(
                        {f"G/{k}": v for k, v in g.terms.items()}
                        | {f"D/{k}": v for k, v in d.items()},
                        info,
                    )
                    values |= {
                        "lr_g": trainer.opt_g.param_groups[0]["lr"],
                        "epoch": float(epoch),
                        "exemplar_label_hidden": float(hide),
                    }
                    history.append({"step": float(step)} | values)
                    progress.set_postfix(G=f"{values['G/total']:.3g}", D=f"{values['D/total']:.3g}")
                    if tracker is not None:
                        tracker.log_metrics(values, step)
                if tracker is not None and (step % runtime.image_every == 0 or step == total):
                    tracker.log_image(_grid(batch, g), "train", step)
                stop = dist_utils.broadcast_flag(stop_requested(), info, device)
                if step % runtime.checkpoint_every == 0 or stop or step == total:
                    last_ckpt = checkpoint()
                if stop:
                    stopped = "interrupted"
                    log(f"train: stop requested; checkpoint of step {step} written")
                    break
                if step >= total:
                    break
            if stopped != "finished":
                break
    except NonFiniteError as err:
        log(f"train: {err}; the last good checkpoint is kept ({last_ckpt or 'none yet'})")
        raise
    finally:
        progress.close()
    exported = None
    if stopped == "finished" and info.is_main:
        exported = save_generator(export_dir, model_cfg, corr, gen)
    return TrainResult(
        steps=trainer.step,
        epochs_started=epochs_started,
        stopped=stopped,
        loss_set=objective.loss_set,
        history=history,
        checkpoint=last_ckpt,
        export_dir=exported,
        resumed_from=resumed_from,
        seconds=time.perf_counter() - start,
        generator=trainer.generator,
        discriminator=trainer.discriminator,
    )


def _grid(batch: dict[str, torch.Tensor], g) -> Any:
    return image_grid(
        [batch["input"], batch["exemplar"], g.corr.warped.detach(), g.fake, batch["image"]]
    )
