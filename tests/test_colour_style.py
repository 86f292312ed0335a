"""Colour style relevance (cocosnet.metrics.colour_style) on pictures whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2lab

from cocosnet.metrics.colour_style import (
    ColourStyle,
    class_mean_lab,
    class_prior,
    swap_response,
)

RED, GREEN, BLUE, GREY = (200, 30, 30), (30, 160, 40), (40, 60, 220), (128, 128, 128)


def _lab(rgb) -> np.ndarray:
    return rgb2lab(np.array([[rgb]], np.uint8))[0, 0]


def _paint(label: np.ndarray, colours: dict[int, tuple]) -> np.ndarray:
    img = np.zeros((*label.shape, 3), np.uint8)
    for c, rgb in colours.items():
        img[label == c] = rgb
    return img


def _halves(flip: bool = False) -> np.ndarray:
    label = np.zeros((16, 16), np.int64)
    label[:, 8:] = 1
    return label[:, ::-1].copy() if flip else label


def test_class_means_in_lab_and_small_classes_are_nan():
    label = _halves()
    label[0, 0] = 2  # one pixel of class 2: too few
    means = class_mean_lab(_paint(label, {0: RED, 1: BLUE, 2: GREEN}), label, 4)
    assert np.allclose(means[0], _lab(RED)) and np.allclose(means[1], _lab(BLUE))
    assert np.isnan(means[2]).all() and np.isnan(means[3]).all()
    with pytest.raises(ValueError, match="sizes differ"):
        class_mean_lab(np.zeros((4, 4, 3), np.uint8), label, 4)


def test_prior_is_the_mean_of_per_image_means():
    a, b = _halves(), _halves()
    b[:, :4] = 1  # class 1 covers more of b: still one image's worth
    prior = class_prior([(_paint(a, {0: RED, 1: BLUE}), a), (_paint(b, {0: RED, 1: GREY}), b)], 3)
    assert np.allclose(prior[1], (_lab(BLUE) + _lab(GREY)) / 2)
    assert np.allclose(prior[0], _lab(RED)) and np.isnan(prior[2]).all()


def test_output_with_the_exemplars_colours_follows_it_and_prior_colours_do_not():
    prior = np.stack([_lab(GREY), _lab(GREY)])
    label, exemplar_label = _halves(), _halves(flip=True)  # the exemplar's layout differs
    exemplar = _paint(exemplar_label, {0: RED, 1: BLUE})
    follows, ignores = ColourStyle(prior), ColourStyle(prior)
    follows.update(_paint(label, {0: RED, 1: BLUE}), exemplar, label, exemplar_label)
    ignores.update(_paint(label, {0: GREY, 1: GREY}), exemplar, label, exemplar_label)
    good, bad = follows.result(), ignores.result()
    assert good["closer_fraction"] == 1.0 and good["distance_to_exemplar"] < 1e-6
    assert bad["closer_fraction"] == 0.0 and good["cases"] == bad["cases"] == 2
    assert bad["distance_to_exemplar"] == pytest.approx(bad["prior_distance_to_exemplar"])
    skip_sky = ColourStyle(prior, ignore_class=0)
    skip_sky.update(_paint(label, {0: RED, 1: BLUE}), exemplar, label, exemplar_label)
    assert skip_sky.result()["cases"] == 1
    with pytest.raises(ValueError, match="no .pair, class. case"):
        ColourStyle(prior).result()


def test_swap_response_measures_how_far_the_output_follows_a_new_exemplar():
    label = _halves()
    ex = (_paint(label, {0: RED, 1: BLUE}), _paint(label, {0: GREEN, 1: GREY}))
    follows = swap_response(ex, ex, label, (label, label), 2)
    ignores = swap_response((ex[0], ex[0]), ex, label, (label, label), 2)
    assert follows == pytest.approx(1.0) and ignores == 0.0
    assert np.isnan(swap_response(ex, (ex[0], ex[0]), label, (label, label), 2))
