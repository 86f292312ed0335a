"""Makeup transfer (paper Figs. 11/21): strokes drawn on one portrait, warped by the learned
correspondence onto others and composited over them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io import read_image, write_image
from .applications import Correspondence, correspondence_weights, mask_input
from .domain import Domain
from .jobs import by_stem
from .prepare import IMAGE_SUFFIXES, Letterbox, prepare_exemplar
from .translator import Translator


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
        found = by_stem(photos[0], lambda p: p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        photos = list(found.values())
    if not photos:
        raise ValueError(f"{targets[0]}: no target photos")
    if not Path(masks).is_dir():
        raise FileNotFoundError(f"{masks}: target mask folder not found")
    masks_by_stem = by_stem(
        Path(masks), lambda p: p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    jobs, seen = [], set()
    for photo in photos:
        if not photo.is_file():
            raise FileNotFoundError(f"{photo}: target photo not found")
        if photo.stem not in masks_by_stem:
            raise ValueError(f"{masks}: no mask for target {photo.name} (matched by stem)")
        if photo.stem in seen:
            raise ValueError(f"two targets share the stem {photo.stem!r}")
        seen.add(photo.stem)
        jobs.append((photo, masks_by_stem[photo.stem], Path(out_dir) / f"{photo.stem}.png"))
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
    ex_in = mask_input(translator, source_mask, ex.path, (ex.box.height, ex.box.width), domain)
    written = []
    for photo, mask, out in targets:
        rgb = read_image(photo)
        inp = mask_input(translator, mask, Path(photo), rgb.shape[:2], domain)
        corr = correspondence_weights(translator, inp.tensor, ex.tensor, ex_in.tensor)
        write_image(out, composite(rgb, transfer_strokes(corr, layer, ex.box, inp.box)))
        written.append(Path(out))
    return written
