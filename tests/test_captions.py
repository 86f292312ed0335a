"""Captions over columns of any width and gap (visualize.with_captions), as docs/pictures.py
puts them over the correspondence picture, and image_grid's captions through it."""

import numpy as np
import pytest
import torch

from cocosnet.visualize import image_grid, with_captions

BAND = 14  # px of the caption band


def _dark(band: np.ndarray, start: int, stop: int) -> bool:
    return bool((band[:, start:stop] < 128).any())


def test_captions_sit_over_their_columns_and_leave_the_image_alone():
    image = np.full((20, 100, 3), 200, np.uint8)  # columns at x 0-39 and, after a gap, 60-99
    out = with_captions(image, ["ab", "cd"], [0, 60])
    assert out.shape == (20 + BAND, 100, 3)
    assert np.array_equal(out[BAND:], image)
    band = out[:BAND]
    assert _dark(band, 0, 40) and _dark(band, 60, 100)
    assert not _dark(band, 40, 60)  # nothing over the gap: short captions stay in their column


def test_an_empty_caption_leaves_its_column_blank():
    out = with_captions(np.zeros((4, 50, 3), np.uint8), ["", "x"], [0, 25])
    assert not _dark(out[:BAND], 0, 25) and _dark(out[:BAND], 25, 50)


def test_captions_and_columns_must_agree():
    image = np.zeros((4, 50, 3), np.uint8)
    with pytest.raises(ValueError, match="2 captions for 1 columns"):
        with_captions(image, ["a", "b"], [0])
    with pytest.raises(ValueError, match="50-px wide"):
        with_captions(image, ["a"], [50])


def test_image_grid_captions_are_with_captions_at_each_cell():
    cols = [torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)]
    plain = image_grid(cols)
    assert np.array_equal(
        image_grid(cols, captions=["in", "out"]), with_captions(plain, ["in", "out"], [0, 10])
    )
