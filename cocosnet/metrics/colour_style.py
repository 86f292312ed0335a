"""Colour style relevance: does an output take each region's colour from the exemplar, or from
what that class usually looks like? Needs no pretrained weights (for the demo, which has none).

For every (pair, class) with the class present in the input label and in the exemplar label (at
least ``min_pixels`` each): the output's mean colour under the input label's class mask (o), the
exemplar's under the exemplar label's mask (e) and the class prior (p: the mean over the training
set of each image's mean colour of that class), all in CIELAB, where a distance is the CIE76
colour difference Delta E. A case counts as following the exemplar when ``|o - e| < |o - p|``.

Reported: the fraction of cases that follow the exemplar, the mean ``|o - e|``, and for the lower
reference the mean ``|p - e|`` (a model that paints every class in its prior colour, ignoring the
exemplar, scores 0 on the fraction). Evaluating the warped exemplar the same way gives the upper
reference. :func:`swap_response` is the paired test: the same inputs with two different
exemplars should give outputs that differ as the exemplars do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from skimage.color import rgb2lab
from tqdm import tqdm

from ..io import image_files, read_image, read_label

MIN_PIXELS = 16


def class_mean_lab(
    rgb: np.ndarray, label: np.ndarray, num_classes: int, min_pixels: int = MIN_PIXELS
) -> np.ndarray:
    """K x 3 float64 mean CIELAB colour of each class of ``label`` in ``rgb`` (H x W x 3 uint8);
    NaN rows for classes with fewer than ``min_pixels`` pixels."""
    if rgb.shape[:2] != label.shape:
        raise ValueError(f"image {rgb.shape[:2]} and label {label.shape} sizes differ")
    if label.size and int(label.max()) >= num_classes:
        raise ValueError(f"class id {int(label.max())} >= num_classes {num_classes}")
    lab = rgb2lab(rgb).reshape(-1, 3)
    ids = label.reshape(-1).astype(np.int64)
    counts = np.bincount(ids, minlength=num_classes).astype(np.float64)
    sums = np.stack([np.bincount(ids, lab[:, i], minlength=num_classes) for i in range(3)], 1)
    means = sums / np.maximum(counts, 1)[:, None]
    means[counts < min_pixels] = np.nan
    return means


def class_prior(pairs: Iterable[tuple[np.ndarray, np.ndarray]], num_classes: int) -> np.ndarray:
    """K x 3: the mean over ``(rgb, label)`` images of each image's class mean colour (every
    image weighs the same: it is one draw of that class's style); NaN for unseen classes."""
    total, seen = np.zeros((num_classes, 3)), np.zeros(num_classes)
    for rgb, label in pairs:
        means = class_mean_lab(rgb, label, num_classes)
        present = ~np.isnan(means[:, 0])
        total[present] += means[present]
        seen[present] += 1
    prior = total / np.maximum(seen, 1)[:, None]
    prior[seen == 0] = np.nan
    return prior


class ColourStyle:
    """Accumulates the (pair, class) cases of one set of outputs against their exemplars."""

    def __init__(self, prior: np.ndarray, *, ignore_class: int | None = None) -> None:
        if prior.ndim != 2 or prior.shape[1] != 3:
            raise ValueError(f"prior must be K x 3 CIELAB colours, got {prior.shape}")
        self.prior, self.ignore_class = prior.astype(np.float64), ignore_class
        self.to_exemplar: list[np.ndarray] = []
        self.to_prior: list[np.ndarray] = []
        self.prior_to_exemplar: list[np.ndarray] = []

    @property
    def num_classes(self) -> int:
        return self.prior.shape[0]

    def update(
        self,
        output: np.ndarray,
        exemplar: np.ndarray,
        label: np.ndarray,
        exemplar_label: np.ndarray,
    ) -> None:
        """One pair: the output (H x W x 3 uint8) under its input label, the exemplar under its
        own label."""
        o = class_mean_lab(output, label, self.num_classes)
        e = class_mean_lab(exemplar, exemplar_label, self.num_classes)
        keep = ~np.isnan(o[:, 0]) & ~np.isnan(e[:, 0]) & ~np.isnan(self.prior[:, 0])
        if self.ignore_class is not None and 0 <= self.ignore_class < self.num_classes:
            keep[self.ignore_class] = False
        o, e, p = o[keep], e[keep], self.prior[keep]
        self.to_exemplar.append(np.linalg.norm(o - e, axis=1))
        self.to_prior.append(np.linalg.norm(o - p, axis=1))
        self.prior_to_exemplar.append(np.linalg.norm(p - e, axis=1))

    def result(self) -> dict[str, float | int]:
        """closer_fraction, distance_to_exemplar, prior_distance_to_exemplar (Delta E), cases."""
        if not self.to_exemplar or not sum(len(d) for d in self.to_exemplar):
            raise ValueError("no (pair, class) case: no class is in both an input and its exemplar")
        to_e, to_p = np.concatenate(self.to_exemplar), np.concatenate(self.to_prior)
        return {
            "closer_fraction": float(np.mean(to_e < to_p)),
            "distance_to_exemplar": float(to_e.mean()),
            "prior_distance_to_exemplar": float(np.concatenate(self.prior_to_exemplar).mean()),
            "cases": int(to_e.size),
        }


def swap_response(
    outputs: tuple[np.ndarray, np.ndarray],
    exemplars: tuple[np.ndarray, np.ndarray],
    label: np.ndarray,
    exemplar_labels: tuple[np.ndarray, np.ndarray],
    num_classes: int,
) -> float:
    """How far the output moves when the exemplar changes, as a share of how far the exemplar
    moved: per class in both exemplars and the input, ``(do . de) / |de|^2`` with ``do`` the
    change of the output's class colour and ``de`` the exemplar's, averaged over the classes
    (1: follows the exemplar, 0: ignores it). NaN when no class is shared."""
    o = [class_mean_lab(out, label, num_classes) for out in outputs]
    e = [
        class_mean_lab(ex, lab, num_classes)
        for ex, lab in zip(exemplars, exemplar_labels, strict=True)
    ]
    do, de = o[1] - o[0], e[1] - e[0]
    moved = np.linalg.norm(de, axis=1)
    keep = ~np.isnan(do[:, 0]) & ~np.isnan(de[:, 0]) & (moved > 1.0)  # ignore unmoved classes
    if not keep.any():
        return float("nan")
    return float(np.mean(np.sum(do[keep] * de[keep], axis=1) / moved[keep] ** 2))


def colour_style_folders(
    folders: Mapping[str, Path], prior: np.ndarray, *, ignore_class: int | None = None
) -> dict[str, float | int]:
    """The colour style relevance of an evaluation's ``fake`` folder and, as the upper
    reference, its ``warped`` folder (files matched by stem with ``exemplar``, ``label`` and
    ``exemplar_label``): closer_fraction, distance_to_exemplar, prior_distance_to_exemplar,
    warped_closer_fraction, warped_distance_to_exemplar, cases."""
    by_stem = {
        name: {p.stem: p for p in image_files(folders[name], (".png", ".jpg", ".jpeg"))}
        for name in ("fake", "warped", "exemplar", "label", "exemplar_label")
    }
    stems = sorted(set.intersection(*(set(files) for files in by_stem.values())))
    if not stems:
        raise ValueError(f"no file is in all of {sorted(by_stem)}")
    meters = {name: ColourStyle(prior, ignore_class=ignore_class) for name in ("fake", "warped")}
    for stem in tqdm(stems, desc="colour style", unit="image", leave=False):
        exemplar = read_image(by_stem["exemplar"][stem])
        label = read_label(by_stem["label"][stem])
        exemplar_label = read_label(by_stem["exemplar_label"][stem])
        for name, meter in meters.items():
            meter.update(read_image(by_stem[name][stem]), exemplar, label, exemplar_label)
    fake, warped = (meters[n].result() for n in ("fake", "warped"))
    return fake | {
        "warped_closer_fraction": warped["closer_fraction"],
        "warped_distance_to_exemplar": warped["distance_to_exemplar"],
    }
