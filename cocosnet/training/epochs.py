"""The epochs of a training run: each step optimised, logged, checkpointed and stopped on
request; each epoch with its data order and its schedule (:mod:`.schedule`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..config import LossConfig, RuntimeConfig, TrainConfig
from ..files import write_text_atomic
from ..visualize import GRID_CAPTIONS, image_grid
from . import distributed as dist_utils
from .checkpoint import CheckpointWriter
from .curve import curve_csv
from .data import TrainingExamples, epoch_batches
from .distributed import DistInfo
from .schedule import EpochSchedule, epoch_schedule
from .steps import GeneratorResult, NonFiniteError, Trainer


class Tracking:
    """What the loop needs from a tracker (cocosnet.tracking.Tracker fits); rank 0 only."""

    def log_metrics(self, values: Mapping[str, float], step: int) -> None: ...
    def log_image(self, image: Any, name: str, step: int) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...


class EpochLoop:
    """The epochs of one training run: optimise, log, checkpoint, stop on request."""

    def __init__(
        self,
        trainer: Trainer,
        total: int,
        epoch_steps: int,
        runtime: RuntimeConfig,
        info: DistInfo,
        device: torch.device,
        checkpoints: CheckpointWriter,
        tracker: Tracking | None,
        history: list[dict[str, float]],  # logged before a resume
        curve: Path | None = None,  # rewritten at every logged step (rank 0)
    ):
        self.trainer, self.total, self.epoch_steps = trainer, total, epoch_steps
        self.runtime, self.info, self.device = runtime, info, device
        self.checkpoints, self.tracker = checkpoints, tracker
        self.history = history  # every logged step's values, a resumed run's included
        self.curve = curve if info.is_main else None
        self.epochs_started = trainer.step // epoch_steps
        self.checkpoint: Path | None = None  # the last one written
        self.stopped = "finished"  # or "interrupted"

    def train(
        self,
        examples: TrainingExamples,
        cfg: TrainConfig,
        loss_cfg: LossConfig,
        *,
        stop_requested: Callable[[], bool],
        log: Callable[[str], None],
    ) -> None:
        """Epochs from the trainer's step on, each with its schedule."""
        trainer = self.trainer
        progress = tqdm(
            total=self.total,
            initial=trainer.step,
            desc="train",
            unit="step",
            disable=not self.info.is_main,
        )
        try:
            while trainer.step < self.total and self.stopped == "finished":
                epoch = trainer.step // self.epoch_steps
                loader = self._loader(examples, epoch, cfg)
                schedule = epoch_schedule(epoch, cfg, loss_cfg)
                trainer.set_lr_factor(schedule.lr_factor)
                self.epochs_started = epoch + 1
                self._train_epoch(loader, epoch, schedule, progress, stop_requested, log)
        except NonFiniteError as err:
            log(f"train: {err}; the last good checkpoint is kept ({self.checkpoint or 'none yet'})")
            raise
        finally:
            progress.close()

    def _loader(
        self, examples: TrainingExamples, epoch: int, cfg: TrainConfig
    ) -> torch.utils.data.DataLoader:
        """This process's batches of ``epoch`` from the trainer's step on (a resumed epoch skips
        the batches it already trained on)."""
        batches = epoch_batches(
            len(examples),
            cfg.batch_size,
            seed=cfg.seed,
            epoch=epoch,
            rank=self.info.rank,
            world=self.info.world_size,
        )[self.trainer.step % self.epoch_steps :]
        examples.set_epoch(epoch)
        return torch.utils.data.DataLoader(
            examples,
            batch_sampler=batches,
            num_workers=self.runtime.num_workers,
            pin_memory=self.device.type == "cuda",
            # Its own generator: a loader seeds its workers from the global RNG otherwise,
            # which would make a resumed epoch draw different noise than an uninterrupted one.
            generator=torch.Generator().manual_seed(cfg.seed + epoch),
        )

    def _train_epoch(
        self,
        loader: torch.utils.data.DataLoader,
        epoch: int,
        schedule: EpochSchedule,
        progress: tqdm,
        stop_requested: Callable[[], bool],
        log: Callable[[str], None],
    ) -> None:
        """Train on ``loader``'s batches until the epoch, the run or a stop request ends."""
        for batch in loader:
            batch = _to_device(batch, self.device)
            generated, d_terms = _optimise(self.trainer, batch, schedule)
            step = self.trainer.step
            progress.update()
            self._report(batch, generated, d_terms, epoch, schedule, progress)
            # Every process takes part, so that all stop at the same step.
            stop = dist_utils.broadcast_flag(stop_requested(), self.info, self.device)
            if step % self.runtime.checkpoint_every == 0 or stop or step == self.total:
                self.checkpoint = self.checkpoints.write(self.trainer, self.history)
            if stop:
                self.stopped = "interrupted"
                log(f"train: stop requested; checkpoint of step {step} written")
                return
            if step >= self.total:
                return

    def _report(
        self,
        batch: dict[str, torch.Tensor],
        generated: GeneratorResult,
        d_terms: dict[str, torch.Tensor],
        epoch: int,
        schedule: EpochSchedule,
        progress: tqdm,
    ) -> None:
        """Log the step's values and image where the runtime settings ask for them."""
        step, tracker = self.trainer.step, self.tracker
        if step % self.runtime.log_every == 0 or step == self.total:
            values = dist_utils.mean_across(
                {f"G/{k}": v for k, v in generated.terms.items()}
                | {f"D/{k}": v for k, v in d_terms.items()},
                self.info,
            )
            values |= {
                "lr_g": self.trainer.lr_g,
                "epoch": float(epoch),
                "exemplar_label_hidden": float(schedule.exemplar_label_hidden),
            }
            self.history.append({"step": float(step)} | values)
            if self.curve is not None:  # a curve to watch while the training runs
                write_text_atomic(self.curve, curve_csv(self.history))
            progress.set_postfix(G=f"{values['G/total']:.3g}", D=f"{values['D/total']:.3g}")
            if tracker is not None:
                tracker.log_metrics(values, step)
        if tracker is not None and (step % self.runtime.image_every == 0 or step == self.total):
            tracker.log_image(_grid(batch, generated), "train", step)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _optimise(
    trainer: Trainer, batch: dict[str, torch.Tensor], schedule: EpochSchedule
) -> tuple[GeneratorResult, dict[str, torch.Tensor]]:
    """One training step: the generator step, then the discriminator on the same fake."""
    generated = trainer.generator_step(
        batch,
        hide_exemplar_label=schedule.exemplar_label_hidden,
        warped_mask_weight=schedule.warped_mask_weight,
    )
    d_terms = trainer.discriminator_step(batch, generated.fake)
    trainer.step += 1
    return generated, d_terms


def _grid(batch: dict[str, torch.Tensor], generated: GeneratorResult) -> Any:
    """input | exemplar | warped | fake | ground truth."""
    return image_grid(
        [
            batch["input"],
            batch["exemplar"],
            generated.corr.warped.detach(),
            generated.fake,
            batch["image"],
        ],
        captions=GRID_CAPTIONS,
    )
