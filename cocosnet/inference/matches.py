"""Point matches between an input and its exemplar (paper Figs. 8/17), read off the learned
correspondence and drawn side by side."""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..formats.tensors import to_uint8
from ..io import read_image, write_image
from ..visualize import to_rgb
from .applications import Correspondence, Point, correspondence_weights, mask_input
from .domain import Domain
from .prepare import Letterbox, Prepared, prepare_exemplar, prepare_input
from .translator import Translator


@dataclass(frozen=True)
class Match:
    """An input point and its match on the exemplar, in each file's pixel coordinates."""

    input: Point
    exemplar: Point
    weight: float  # the row's peak weight, renormalised over the cells inside the exemplar


def parse_points(text: str) -> list[Point]:
    """``"x,y;x,y"`` -> [(x, y), ...]."""
    try:
        points = [tuple(float(v) for v in p.split(",")) for p in text.split(";") if p.strip()]
    except ValueError:
        points = [()]
    if not points or any(len(p) != 2 for p in points):
        raise ValueError(f"points must be 'x,y;x,y;...', got {text!r}")
    return points


def match_points(
    corr: Correspondence,
    points: Sequence[Point],
    input_box: Letterbox,
    exemplar_box: Letterbox,
    *,
    soft: bool = False,
) -> list[Match]:
    """Each point's match: the argmax (``soft``: the expected position) of its query cell's row,
    over the exemplar cells that overlap the photo (reflected padding is no match), at the
    matched cell's centre, mapped back through both letterboxes and clamped into the photo."""
    (h, w), r = corr.grid, corr.stride
    cells = []
    for x, y in points:
        if not (0 <= x <= input_box.width - 1 and 0 <= y <= input_box.height - 1):
            raise ValueError(
                f"point ({x:g}, {y:g}) is outside the {input_box.width}x{input_box.height} input"
            )
        u = input_box.left + (x + 0.5) * input_box.inner_width / input_box.width
        v = input_box.top + (y + 0.5) * input_box.inner_height / input_box.height
        cells.append(min(int(v // r), h - 1) * w + min(int(u // r), w - 1))
    b = exemplar_box
    cols = torch.arange(w) * r < b.left + b.inner_width
    cols &= (torch.arange(w) + 1) * r > b.left
    rows = torch.arange(h) * r < b.top + b.inner_height
    rows &= (torch.arange(h) + 1) * r > b.top
    weights = corr.weights(torch.tensor(cells), (rows[:, None] & cols[None]).flatten()).cpu()
    cu = ((torch.arange(w) + 0.5) * r).repeat(h).double()
    cv = ((torch.arange(h) + 0.5) * r).repeat_interleave(w).double()
    best = weights.argmax(-1)
    us, vs = (weights.double() @ cu, weights.double() @ cv) if soft else (cu[best], cv[best])
    matches = []
    for (x, y), u, v, p in zip(
        points, us.tolist(), vs.tolist(), weights.max(-1).values.tolist(), strict=True
    ):
        ex = (u - b.left) * b.width / b.inner_width - 0.5
        ey = (v - b.top) * b.height / b.inner_height - 0.5
        clamped = (min(max(ex, 0.0), b.width - 1.0), min(max(ey, 0.0), b.height - 1.0))
        matches.append(Match((float(x), float(y)), clamped, p))
    return matches


def input_picture(prepared: Prepared) -> np.ndarray:
    """The input as the model sees it (label maps in the palette of visualize.py), at its
    file's size: H x W x 3 uint8."""
    box = prepared.box
    x = prepared.tensor[:, box.top : box.top + box.inner_height]
    rgb = to_rgb(x[None, :, :, box.left : box.left + box.inner_width])
    rgb = F.interpolate(rgb, (box.height, box.width), mode="nearest")
    return (rgb[0] * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def draw_matches(
    input_rgb: np.ndarray, exemplar_rgb: np.ndarray, matches: Sequence[Match], *, gap: int = 8
) -> np.ndarray:
    """input | gap | exemplar, top-aligned on white, a coloured dot on each point and a line
    to its match: (max H) x (Wi + gap + We) x 3 uint8."""
    (hi, wi), (he, we) = input_rgb.shape[:2], exemplar_rgb.shape[:2]
    canvas = Image.new("RGB", (wi + gap + we, max(hi, he)), "white")
    canvas.paste(Image.fromarray(input_rgb), (0, 0))
    canvas.paste(Image.fromarray(exemplar_rgb), (wi + gap, 0))
    draw = ImageDraw.Draw(canvas)
    radius = max(2, round(0.012 * max(canvas.size)))
    for i, m in enumerate(matches):
        colour = tuple(round(255 * v) for v in colorsys.hsv_to_rgb(i / len(matches), 0.9, 1.0))
        a, e = m.input, (m.exemplar[0] + wi + gap, m.exemplar[1])
        draw.line([a, e], fill=colour, width=max(1, radius // 2))
        for x, y in (a, e):
            box = [x - radius, y - radius, x + radius, y + radius]
            draw.ellipse(box, fill=colour, outline="black")
    return np.asarray(canvas)


def correspond_files(
    translator: Translator,
    input_path: str | os.PathLike,
    exemplar_path: str | os.PathLike,
    points: Sequence[Point],
    out: str | os.PathLike,
    *,
    exemplar_input: str | os.PathLike | None = None,
    warped: str | os.PathLike | None = None,
    domain: Domain = "auto",
    soft: bool = False,
) -> list[Match]:
    """Match ``points`` of the input on the exemplar (Fig. 8); write the side-by-side picture
    to ``out`` and, optionally, the densely warped exemplar at the input's size (Fig. 17)."""
    ex = prepare_exemplar(exemplar_path, translator.size)
    inp = prepare_input(input_path, translator.semantic_nc, translator.size, domain=domain)
    ex_in = None
    if exemplar_input is not None:
        size = (ex.box.height, ex.box.width)
        ex_in = mask_input(translator, exemplar_input, ex.path, size, domain).tensor
    corr = correspondence_weights(translator, inp.tensor, ex.tensor, ex_in)
    matches = match_points(corr, points, inp.box, ex.box, soft=soft)
    write_image(out, draw_matches(input_picture(inp), read_image(exemplar_path), matches))
    if warped is not None:
        write_image(warped, to_uint8(inp.box.restore(corr.warped[None].cpu()))[0])
    return matches
