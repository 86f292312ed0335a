"""Applications of the learned correspondence (paper §4.4 and supplement): image editing with the
photo as its own exemplar (Figs. 10/20), makeup transfer by warping user strokes (Figs. 11/21)
and point matches between the input and the exemplar (Figs. 8/17).

The correspondence is eq. 4's ``softmax(alpha * M)``: one row per input (query) cell of the
correspondence grid (h x w, stride r = S / h in the S x S network square), one column per
exemplar (key) cell, every row summing to 1. :class:`Correspondence` keeps the two descriptor
sets rather than the N x N matrix (N = h * w: 4096 at the paper's 64 x 64 grid, 65536 with warp
stride 1), so warping values costs N + N memory with the fused kernel; :meth:`weights` builds
rows of the matrix on demand. Files of any size enter and leave through their letterboxes
(prepare.py); pixel coordinates have integer values at pixel centres.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..evaluation import to_uint8
from ..io import read_image, write_image
from ..models.correspondence import l2_normalize
from ..models.warp import WarpImpl, softmax_warp
from ..visualize import _to_rgb
from .jobs import _by_stem
from .prepare import IMAGE_SUFFIXES, Domain, Letterbox, Prepared, prepare_exemplar, prepare_input
from .translator import Translator

Point = tuple[float, float]


@dataclass(frozen=True)
class Correspondence:
    """``softmax(alpha * query key^T)`` of one input/exemplar pair on an h x w grid of an S x S
    square, and the exemplar warped by it exactly as the network warps it."""

    query: torch.Tensor  # N x D input descriptors, N = h * w (row-major cells)
    key: torch.Tensor  # N x D exemplar descriptors
    alpha: float
    grid: tuple[int, int]
    size: int
    warped: torch.Tensor | None = None  # 3 x S x S, as Translator.translate's warped exemplar
    impl: WarpImpl = "fused"

    @property
    def stride(self) -> int:
        return self.size // self.grid[0]

    def weights(
        self, rows: torch.Tensor | None = None, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Rows (all, or the query cells ``rows``) of the dense matrix, each summing to 1;
        ``keep`` (N bools) restricts the softmax to those exemplar cells."""
        query = self.query if rows is None else self.query[rows]
        logits = self.alpha * query @ self.key.T
        if keep is not None:  # -inf, not zeroed weights: no 0/0 when every kept cell underflows
            logits = logits.masked_fill(~keep.to(logits.device), float("-inf"))
        return torch.softmax(logits, dim=-1)

    def warp_values(self, values: torch.Tensor) -> torch.Tensor:
        """C x h x w values at the exemplar's cells -> C x h x w at the input's cells (eq. 4)."""
        c = values.shape[0]
        rows = values.reshape(c, -1).T[None].to(self.query)
        out = softmax_warp(self.query[None], self.key[None], rows, self.alpha, self.impl)
        return out[0].T.reshape(c, *self.grid).to(values.device)

    def warp_field(self, field: torch.Tensor) -> torch.Tensor:
        """C x S x S exemplar-side field -> C x S x S input-side: averaged over each cell (as
        the network pools the exemplar's colours), warped, bilinearly upsampled."""
        pooled = F.avg_pool2d(field[None].float(), self.stride)[0]
        up = F.interpolate(
            self.warp_values(pooled)[None],
            size=(self.size, self.size),
            mode="bilinear",
            align_corners=False,
        )
        return up[0]


def _check(name: str, x: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    if x is not None and tuple(x.shape) != shape:
        raise ValueError(f"{name} must be {' x '.join(map(str, shape))}, got {tuple(x.shape)}")


@torch.inference_mode()
def correspondence_weights(
    translator: Translator,
    input_mask: torch.Tensor,
    exemplar_photo: torch.Tensor,
    exemplar_mask: torch.Tensor | None = None,
) -> Correspondence:
    """The correspondence of one prepared pair (C x S x S input, 3 x S x S exemplar in [-1, 1],
    optionally the exemplar's own C x S x S input), computed as :meth:`Translator.translate`
    does: the same adaptors and, for maskmix, the same shown mask or seeded noise."""
    corr, s, c = translator.corr, translator.size, translator.semantic_nc
    for name, x, shape in [
        ("input_mask", input_mask, (c, s, s)),
        ("exemplar_photo", exemplar_photo, (3, s, s)),
        ("exemplar_mask", exemplar_mask, (c, s, s)),
    ]:
        _check(name, x, shape)
    dtype = translator.runtime.dtype  # the networks' precision (bfloat16 runtimes)
    x = input_mask[None].to(translator.device, dtype)
    ex = exemplar_photo[None].to(translator.device, dtype)
    label = translator._exemplar_label(1, None if exemplar_mask is None else exemplar_mask[None])
    label = None if label is None else label.to(dtype)
    f_in = l2_normalize(corr.input_adaptor(x))
    f_ex = l2_normalize(corr.exemplar_adaptor(ex))
    grid = tuple(f_in.shape[-2:])
    seg = F.interpolate(x, size=grid, mode="nearest")
    ref = None if label is None else F.interpolate(label, size=grid, mode="nearest")
    query, key = corr._match(f_in, f_ex, seg, ref, hide_exemplar_label=False)
    warped = corr._to_image(corr.warp(query, key, corr._exemplar_values(ex)), grid)[0]
    return Correspondence(
        query[0].float(), key[0].float(), corr.alpha, grid, s, warped.float(), corr.warp_impl
    )


def _mask_of(
    translator: Translator,
    path: str | os.PathLike,
    photo: Path,
    size: tuple[int, int],
    domain: Domain,
) -> Prepared:
    """The prepared mask (edges, pose) of a ``photo`` of (H, W) ``size``, which it must match."""
    prepared = prepare_input(
        path, translator.semantic_nc, translator.size, domain=domain, canvas=size
    )
    box = prepared.box
    if (box.height, box.width) != tuple(size):
        raise ValueError(
            f"{prepared.path} is {box.width}x{box.height} but photo {photo} is {size[1]}x{size[0]}"
        )
    return prepared


def edit_image(
    translator: Translator,
    photo: str | os.PathLike,
    mask: str | os.PathLike,
    edited_mask: str | os.PathLike,
    *,
    domain: Domain = "auto",
) -> np.ndarray:
    """Synthesise ``edited_mask`` with ``photo`` as its own exemplar and the photo's original
    ``mask`` as the exemplar's mask (Fig. 10: like the training's pseudo pairs) -> H x W x 3
    uint8 at the photo's size. The translator decides whether that mask is shown (default)."""
    ex = prepare_exemplar(photo, translator.size)
    size = (ex.box.height, ex.box.width)
    original = _mask_of(translator, mask, ex.path, size, domain)
    edited = _mask_of(translator, edited_mask, ex.path, size, domain)
    out, _ = translator.translate(edited.tensor[None], ex.tensor[None], original.tensor[None])
    return to_uint8(edited.box.restore(out.cpu()))[0]


def stroke_layer(clean: np.ndarray, stroked: np.ndarray, threshold: int = 24) -> torch.Tensor:
    """Premultiplied RGBA strokes, 4 x H x W in [0, 1]: alpha 1 where some channel of the
    stroked portrait differs from the clean one by more than ``threshold`` (of 255, above JPEG
    noise), 0 elsewhere; colour the stroked pixel's (so translucent strokes carry the source's
    skin blended in). Premultiplied, because averaging and warping are then exact "over"s."""
    if clean.shape != stroked.shape:
        raise ValueError(
            f"stroked portrait is {stroked.shape[1]}x{stroked.shape[0]}, "
            f"the clean one {clean.shape[1]}x{clean.shape[0]}"
        )
    alpha = np.abs(stroked.astype(np.int16) - clean).max(-1) > threshold
    alpha = torch.from_numpy(alpha).float()[None]
    rgb = torch.from_numpy(np.ascontiguousarray(stroked.transpose(2, 0, 1))).float() / 255
    return torch.cat([rgb * alpha, alpha])


def _crop_resize(x: torch.Tensor, box: Letterbox) -> torch.Tensor:
    """C x S x S -> C x H x W: crop the letterbox's padding, bilinear resize (antialiased)."""
    crop = x[:, box.top : box.top + box.inner_height, box.left : box.left + box.inner_width]
    return F.interpolate(crop[None], (box.height, box.width), mode="bilinear", antialias=True)[0]


def transfer_strokes(
    corr: Correspondence, layer: torch.Tensor, source: Letterbox, target: Letterbox
) -> torch.Tensor:
    """Premultiplied strokes on the source (4 x Hs x Ws) -> on the target (4 x Ht x Wt):
    letterboxed like the exemplar but transparent in the padding, warped at the grid's
    resolution (strokes come out blurred over about one cell, r pixels of the square)."""
    small = F.interpolate(
        layer[None].float(),
        (source.inner_height, source.inner_width),
        mode="bilinear",
        antialias=True,
    )[0]
    out = _crop_resize(corr.warp_field(source.pad(small)), target)
    alpha = out[3:].clamp(0, 1)
    return torch.cat([torch.minimum(out[:3].clamp(min=0), alpha), alpha])


def composite(target: np.ndarray, strokes: torch.Tensor) -> np.ndarray:
    """Premultiplied RGBA ``strokes`` (4 x H x W) over an RGB uint8 H x W x 3 ``target``; the
    target is returned unchanged wherever the strokes' alpha is 0."""
    t = torch.from_numpy(np.ascontiguousarray(target.transpose(2, 0, 1))).float()
    out = t * (1 - strokes[3:]) + 255 * strokes[:3]
    return out.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def makeup_targets(
    targets: Sequence[str | os.PathLike], masks: str | os.PathLike, out_dir: str | os.PathLike
) -> list[tuple[Path, Path, Path]]:
    """(photo, mask, out) per target: ``targets`` is one folder or photo files, their masks are
    matched by stem in the folder ``masks``, outputs are ``out_dir/<stem>.png``."""
    photos = [Path(t) for t in targets]
    if len(photos) == 1 and photos[0].is_dir():
        found = _by_stem(photos[0], lambda p: p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        photos = list(found.values())
    if not photos:
        raise ValueError(f"{targets[0]}: no target photos")
    if not Path(masks).is_dir():
        raise FileNotFoundError(f"{masks}: target mask folder not found")
    by_stem = _by_stem(Path(masks), lambda p: p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    jobs, seen = [], set()
    for photo in photos:
        if not photo.is_file():
            raise FileNotFoundError(f"{photo}: target photo not found")
        if photo.stem not in by_stem:
            raise ValueError(f"{masks}: no mask for target {photo.name} (matched by stem)")
        if photo.stem in seen:
            raise ValueError(f"two targets share the stem {photo.stem!r}")
        seen.add(photo.stem)
        jobs.append((photo, by_stem[photo.stem], Path(out_dir) / f"{photo.stem}.png"))
    return jobs


def makeup_files(
    translator: Translator,
    source: str | os.PathLike,
    source_mask: str | os.PathLike,
    strokes: str | os.PathLike,
    targets: Sequence[tuple[Path, Path, Path]],
    *,
    threshold: int = 24,
    domain: Domain = "auto",
) -> list[Path]:
    """Transfer the strokes drawn on ``source`` (``strokes``: the stroked copy) to each target
    (photo, mask, out) (Fig. 11): the query is the target's mask, the key the source photo with
    its mask; the warped strokes are composited onto the target photo. Returns the outputs."""
    layer = stroke_layer(read_image(source), read_image(strokes), threshold)
    if not layer[3].any():
        raise ValueError(f"{strokes}: no pixel differs from {source} by more than {threshold}")
    ex = prepare_exemplar(source, translator.size)
    ex_in = _mask_of(translator, source_mask, ex.path, (ex.box.height, ex.box.width), domain)
    written = []
    for photo, mask, out in targets:
        rgb = read_image(photo)
        inp = _mask_of(translator, mask, Path(photo), rgb.shape[:2], domain)
        corr = correspondence_weights(translator, inp.tensor, ex.tensor, ex_in.tensor)
        write_image(out, composite(rgb, transfer_strokes(corr, layer, ex.box, inp.box)))
        written.append(Path(out))
    return written


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
    rgb = _to_rgb(x[None, :, :, box.left : box.left + box.inner_width])
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
        ex_in = _mask_of(translator, exemplar_input, ex.path, size, domain).tensor
    corr = correspondence_weights(translator, inp.tensor, ex.tensor, ex_in)
    matches = match_points(corr, points, inp.box, ex.box, soft=soft)
    write_image(out, draw_matches(input_picture(inp), read_image(exemplar_path), matches))
    if warped is not None:
        write_image(warped, to_uint8(inp.box.restore(corr.warped[None].cpu()))[0])
    return matches
