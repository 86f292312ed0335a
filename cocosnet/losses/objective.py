"""CoCosNet's training objective: the loss units combined with typed weights (eq. 8-14).

:meth:`Objective.generator_terms` and :meth:`Objective.discriminator_terms` return dicts of
*weighted* terms plus their ``total``; that dict is what gets logged. Without the Caffe VGG19
(``vgg=None``) the VGG-based terms are not computed at all: pixel L1 on pseudo pairs
(``fallback_l1``) stands in for VGG feature matching and perceptual loss, and there is no
contextual loss. :attr:`Objective.loss_set` names which set a run used. ``class_colour``
(:mod:`.class_colour`) is ours, demo-only, never in a paper preset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import LossConfig
from ..models.correspondence import CorrespondenceOutput
from ..models.vgg import VGG19
from .adversarial import DiscOutput, d_hinge_loss, feature_matching_loss, g_hinge_loss
from .class_colour import class_colour_loss
from .contextual import contextual_objective
from .correspondence import cycle_loss, domain_alignment_loss, warped_mask_loss
from .perceptual import DEFAULT_LAYERS, perceptual_loss, pseudo_pair_l1, vgg_feature_matching

LOSS_SET_PAPER = "paper (VGG19 feature matching, perceptual, contextual)"
LOSS_SET_NO_VGG = (
    "no-vgg: pixel L1 on pseudo pairs replaces VGG feature matching and perceptual loss; "
    "no contextual loss; D feature matching and the correspondence losses as in the paper"
)

LOSS_SET_DEMO_ONLY = "; plus the demo-only class colour loss (not in the paper)"


@dataclass
class GeneratorInputs:
    """Everything the generator terms look at, for one batch."""

    fake: Tensor  # B x 3 x H x W
    real: Tensor  # ground truth
    exemplar: Tensor
    label: Tensor  # B x H x W input class ids (NO_LABEL = -1 where the dataset has none)
    exemplar_label: Tensor  # the exemplar's class ids
    is_pseudo: Tensor  # B bool: the exemplar is a pseudo pair whose truth is the ground truth
    corr: CorrespondenceOutput
    pred_fake: DiscOutput
    pred_real: DiscOutput

    @property
    def has_labels(self) -> bool:
        """Both sides carry class ids (the warped-mask loss needs them)."""
        return bool((self.label >= 0).all() and (self.exemplar_label >= 0).all())


class Objective:
    """The loss terms of one ``loss`` config, and what they need the networks to compute."""

    def __init__(
        self,
        cfg: LossConfig,
        vgg: VGG19 | None,
        *,
        warp_stride: int,
        warp_patch: bool = False,
        num_classes: int | None = None,  # of the label maps (the class colour term needs it)
    ):
        if cfg.vgg == "required" and vgg is None:
            raise ValueError("loss.vgg is 'required' but no VGG19 network was given")
        self.cfg = cfg
        self.vgg = vgg if cfg.vgg != "off" else None
        self.warp_stride, self.warp_patch = warp_stride, warp_patch
        if cfg.class_colour > 0 and num_classes is None:
            raise ValueError("loss.class_colour needs the number of classes of the label maps")
        self.num_classes = num_classes

    @property
    def loss_set(self) -> str:
        """Which loss set this objective computes (logged with every run)."""
        loss_set = LOSS_SET_PAPER if self.vgg is not None else LOSS_SET_NO_VGG
        return loss_set + (LOSS_SET_DEMO_ONLY if self.cfg.class_colour > 0 else "")

    @property
    def needs_real_features(self) -> bool:
        """The correspondence network must also encode the ground truth (domain alignment)."""
        return self.cfg.domain_alignment > 0

    @property
    def needs_cycle(self) -> bool:
        """The correspondence network must also warp back (the cycle loss)."""
        return self.cfg.cycle > 0

    def generator_terms(
        self, inputs: GeneratorInputs, *, warped_mask_weight: float
    ) -> dict[str, Tensor]:
        """The weighted generator terms and their total; ``warped_mask_weight`` is the epoch's
        (:func:`cocosnet.training.schedule.warped_mask_weight`)."""
        cfg, terms = self.cfg, {}
        terms["gan"] = g_hinge_loss(inputs.pred_fake) * cfg.gan
        if cfg.d_feature_matching > 0:
            terms["d_feature_matching"] = (
                feature_matching_loss(inputs.pred_fake, inputs.pred_real) * cfg.d_feature_matching
            )
        # Pseudo-pair terms are whole-batch means (0 for a batch without pseudo pairs, so that
        # every batch and every process reports the same terms).
        pseudo, pseudo_batch = inputs.is_pseudo, cfg.pseudo_pair_batch
        if self.vgg is not None:
            layers = set(DEFAULT_LAYERS) | {cfg.perceptual_layer}
            fake_f = self.vgg(inputs.fake, layers)
            with torch.no_grad():
                real_f = self.vgg(inputs.real, layers)
                ex_f = self.vgg(inputs.exemplar, layers)
            # Feature matching only where the truth is the exemplar (eq. 8).
            terms["vgg_feature_matching"] = vgg_feature_matching(
                fake_f, real_f, pseudo, batch=pseudo_batch
            ) * (cfg.vgg_feature_matching * cfg.fm_ratio)
            terms["perceptual"] = (
                perceptual_loss(fake_f, real_f, cfg.perceptual_layer) * cfg.perceptual
            )
            if cfg.contextual > 0:
                terms["contextual"] = (
                    contextual_objective(fake_f, ex_f, use_22=cfg.contextual_relu2_2)
                    * cfg.contextual
                )
        elif cfg.fallback_l1 > 0:
            terms["pixel_l1"] = (
                pseudo_pair_l1(inputs.fake, inputs.real, pseudo, pseudo_batch) * cfg.fallback_l1
            )
        if cfg.class_colour > 0 and inputs.has_labels:
            terms["class_colour"] = (
                class_colour_loss(
                    inputs.fake,
                    inputs.exemplar,
                    inputs.label,
                    inputs.exemplar_label,
                    self.num_classes,
                )
                * cfg.class_colour
            )
        if self.needs_real_features and inputs.corr.real_features is not None:
            terms["domain_alignment"] = (
                domain_alignment_loss(inputs.corr.input_features, inputs.corr.real_features)
                * cfg.domain_alignment
            )
        if warped_mask_weight > 0 and inputs.has_labels and inputs.corr.warped_mask is not None:
            terms["warped_mask"] = (
                warped_mask_loss(
                    inputs.corr.warped_mask,
                    inputs.label,
                    inputs.exemplar_label,
                    cfg.warped_mask_ignore_class,
                )
                * warped_mask_weight
            )
        if self.needs_cycle and inputs.corr.cycle is not None:
            terms["cycle"] = (
                cycle_loss(inputs.corr.cycle, inputs.exemplar, self.warp_stride, self.warp_patch)
                * cfg.cycle
            )
        if cfg.warp_self > 0:
            terms["warp_self"] = (
                pseudo_pair_l1(inputs.corr.warped, inputs.real, pseudo, pseudo_batch)
                * cfg.warp_self
            )
        terms["total"] = torch.stack(list(terms.values())).sum()
        return terms

    def discriminator_terms(
        self, pred_real: DiscOutput, pred_fake: DiscOutput
    ) -> dict[str, Tensor]:
        d_real, d_fake = d_hinge_loss(pred_real, pred_fake)
        terms = {"d_real": d_real * self.cfg.gan, "d_fake": d_fake * self.cfg.gan}
        terms["total"] = terms["d_real"] + terms["d_fake"]
        return terms
