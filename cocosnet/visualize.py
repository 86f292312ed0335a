"""Pictures of batches: image grids (input | exemplar | warped exemplar | output | truth) for
tracking, reports and the README; label maps drawn with a fixed palette."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

_SEPARATOR = 2  # px of white between grid cells


def _palette(n: int) -> np.ndarray:
    """Pascal VOC colour map: class 0 black, then well-separated colours (n x 3 uint8)."""
    ids = np.arange(n)
    rgb = np.zeros((n, 3), np.uint8)
    for j in range(8):  # bit 3j+c of the class id -> bit 7-j of channel c
        for c in range(3):
            rgb[:, c] |= (((ids >> (3 * j + c)) & 1) << (7 - j)).astype(np.uint8)
    return rgb


def colour_labels(ids: np.ndarray, n: int) -> np.ndarray:
    """An H x W map of class ids below ``n`` -> H x W x 3 uint8 in the grids' palette."""
    return _palette(n)[ids]


def to_rgb(batch: torch.Tensor) -> torch.Tensor:
    """B x C x H x W -> B x 3 x H x W float in [0, 1], by the column's channel convention."""
    x = batch.detach().float().cpu()
    channels = x.shape[1]
    if channels == 3:
        x = (x + 1) / 2
    elif channels == 1:
        x = x.expand(-1, 3, -1, -1)
    else:  # one-hot / soft label map
        palette = torch.from_numpy(_palette(channels)).float() / 255
        x = palette[x.argmax(dim=1)].permute(0, 3, 1, 2)
    return torch.nan_to_num(x).clamp(0, 1)


GRID_CAPTIONS = ("input", "exemplar", "warped", "output", "truth")  # the usual five columns
_CAPTION_HEIGHT = 14  # px of the caption band (PIL's default bitmap font is 11 px high)


def with_captions(image: np.ndarray, captions: Sequence[str], lefts: Sequence[int]) -> np.ndarray:
    """``image`` (H x W x 3 uint8) under a white band of small captions, each left-aligned at
    its column's left edge ``lefts[i]`` (columns of any widths and gaps)."""
    from PIL import Image, ImageDraw

    if len(captions) != len(lefts):
        raise ValueError(f"{len(captions)} captions for {len(lefts)} columns")
    width = image.shape[1]
    if any(not 0 <= x < width for x in lefts):
        raise ValueError(f"column edges {list(lefts)} must lie in the {width}-px wide image")
    band = Image.new("RGB", (width, _CAPTION_HEIGHT), "white")
    draw = ImageDraw.Draw(band)
    for x, text in zip(lefts, captions, strict=True):
        draw.text((x + 2, 1), text, fill="black")
    return np.concatenate([np.asarray(band), image])


def image_grid(
    columns: Sequence[torch.Tensor],
    max_rows: int = 4,
    captions: Sequence[str] | None = None,
) -> np.ndarray:
    """Samples as rows, columns (input | exemplar | warped | output | ...) side by side, under
    a band with one caption per column when ``captions`` are given.

    RGB columns are in [-1, 1], single-channel ones in [0, 1], and C = 2 or C > 3 are label maps
    shown with a fixed palette. Returns uint8 H' x W' x 3 with 2-px white separators.
    """
    if not columns:
        raise ValueError("image_grid needs at least one column")
    if captions is not None and len(captions) != len(columns):
        raise ValueError(f"{len(captions)} captions for {len(columns)} columns")
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    for i, col in enumerate(columns):
        if col.ndim != 4 or col.shape[0] == 0:
            raise ValueError(
                f"column {i} must be a non-empty B x C x H x W batch: {tuple(col.shape)}"
            )
    sizes = [col.shape[0] for col in columns]
    if len(set(sizes)) > 1:
        raise ValueError(f"columns have different batch sizes: {sizes}")
    rows = min(sizes[0], max_rows)
    h, w = columns[0].shape[-2:]
    cells = []
    for col in columns:
        x = to_rgb(col[:rows])
        if x.shape[-2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="nearest")
        cells.append((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    step_y, step_x = h + _SEPARATOR, w + _SEPARATOR
    grid = np.full((rows * step_y - _SEPARATOR, len(cells) * step_x - _SEPARATOR, 3), 255, np.uint8)
    for c, cell in enumerate(cells):
        for r in range(rows):
            grid[r * step_y : r * step_y + h, c * step_x : c * step_x + w] = cell[r]
    if captions is None:
        return grid
    return with_captions(grid, captions, [c * step_x for c in range(len(cells))])
