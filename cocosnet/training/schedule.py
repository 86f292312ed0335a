"""Epoch schedules of the official recipe: learning-rate decay and the exemplar-mask warm-up."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import LossConfig, TrainConfig


def lr_factor(epoch: int, niter: int, niter_decay: int) -> float:
    """Learning-rate multiplier of 0-based ``epoch``: 1 for ``niter`` epochs, then linear decay
    by 1/niter_decay per epoch (official update_learning_rate, called after each epoch)."""
    if epoch < niter or niter_decay == 0:
        return 1.0
    return max(0.0, 1.0 - (epoch - niter) / niter_decay)


def exemplar_label_hidden(epoch: int, mask_epoch: int | None) -> bool:
    """After ``mask_epoch`` epochs the correspondence network sees noise instead of the
    exemplar's mask (official --noise_for_mask with --mask_epoch)."""
    return mask_epoch is not None and epoch >= mask_epoch


def warped_mask_weight(epoch: int, mask_epoch: int | None, cfg: LossConfig) -> float:
    """The warped-mask loss weight of ``epoch``: ``warped_mask`` during the warm-up, then
    ``warped_mask_after_warmup`` when set."""
    if exemplar_label_hidden(epoch, mask_epoch) and cfg.warped_mask_after_warmup is not None:
        return cfg.warped_mask_after_warmup
    return cfg.warped_mask


@dataclass(frozen=True)
class EpochSchedule:
    """Everything that changes from one epoch to the next, decided once per epoch."""

    lr_factor: float  # multiplies train.lr_g and train.lr_d
    exemplar_label_hidden: bool  # noise replaces the exemplar's mask
    warped_mask_weight: float


def epoch_schedule(epoch: int, cfg: TrainConfig, loss_cfg: LossConfig) -> EpochSchedule:
    """The schedule of 0-based ``epoch``."""
    return EpochSchedule(
        lr_factor=lr_factor(epoch, cfg.niter, cfg.niter_decay),
        exemplar_label_hidden=exemplar_label_hidden(epoch, cfg.mask_epoch),
        warped_mask_weight=warped_mask_weight(epoch, cfg.mask_epoch, loss_cfg),
    )
