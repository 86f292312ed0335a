"""Embedded demo dataset: seeded synthetic scenes textured with scikit-image's bundled photos."""

from __future__ import annotations

import colorsys
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..files import atomic_path

DEMO_CLASSES = ("sky", "water", "ground", "vegetation", "building", "road", "rock", "object")
SKY, WATER, GROUND, VEGETATION, BUILDING, ROAD, ROCK, OBJECT = range(8)
# The demo's things (as opposed to stuff): what `warp_accuracy_objects` scores.
DEMO_OBJECT_CLASSES = (VEGETATION, BUILDING, ROCK, OBJECT)

# Texture photo (scikit-image, shipped with the package, no download) and window zoom per class
# (larger zoom: finer texture); sky is a gradient.
_TEXTURES = {
    WATER: ("gravel", 1.0),  # stretched horizontally into ripples
    GROUND: ("camera", 1.0),  # the lawn in the photo's lower right, see _REGIONS
    VEGETATION: ("grass", 1.0),
    BUILDING: ("brick", 2.5),  # brick courses small enough to show on a small facade
    ROAD: ("gravel", 1.0),
    ROCK: ("moon", 1.0),
    OBJECT: ("coins", 1.0),
}
_REGIONS = {"camera": (slice(260, 512), slice(400, 512))}
# Base colour per class as (hue, saturation, value); each image perturbs these.
_BASE_HSV = (
    (0.58, 0.50, 0.90),
    (0.55, 0.60, 0.60),
    (0.09, 0.45, 0.55),
    (0.30, 0.60, 0.50),
    (0.03, 0.35, 0.65),
    (0.00, 0.05, 0.45),
    (0.08, 0.15, 0.55),
    (0.00, 0.80, 0.85),
)

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class DemoRecord:
    """One generated sample; paths are POSIX paths relative to the dataset directory."""

    id: str
    split: str
    image: str
    label: str
    class_mean_rgb: dict[str, RGB | None] = field(hash=False)


@functools.cache
def _texture(name: str) -> np.ndarray:
    """A scikit-image texture, contrast-stretched to the full uint8 range (2nd-98th percentile)."""
    import skimage.data

    img = getattr(skimage.data, name)()[_REGIONS.get(name, ...)].astype(np.float32)
    if name == "brick":
        img = img.T  # lay the bricks horizontally, as in a wall
    lo, hi = np.percentile(img, [2, 98])
    return np.clip((img - lo) / max(hi - lo, 1.0) * 255.0, 0, 255).astype(np.uint8)


def _crop(rng: np.random.Generator, c: int, r: int, stretch: float = 1.0) -> np.ndarray:
    """A random window of class ``c``'s texture resized to r x r, as floats in [0, 1]."""
    name, zoom = _TEXTURES[c]
    src = _texture(name)
    side = min(rng.uniform(0.75, 2.5) * zoom * r, src.shape[0], src.shape[1] / stretch)
    h, w = max(int(side), 2), max(int(side * stretch), 2)
    y0 = int(rng.integers(0, src.shape[0] - h + 1))
    x0 = int(rng.integers(0, src.shape[1] - w + 1))
    win = src[y0 : y0 + h, x0 : x0 + w]
    if rng.random() < 0.5:
        win = win[:, ::-1]
    out = Image.fromarray(np.ascontiguousarray(win)).resize((r, r), Image.Resampling.BILINEAR)
    tex = np.asarray(out, dtype=np.float32) / 255.0
    # Stretch each window's contrast too, so that flat patches (e.g. of the moon) stay textured.
    lo, hi = np.percentile(tex, [2, 98])
    return np.clip((tex - lo) / max(hi - lo, 0.1), 0.0, 1.0)


def _palette(rng: np.random.Generator) -> np.ndarray:
    """Per-image class colours (8 x 3, 0..255): a global hue shift plus per-class jitter."""
    shift = rng.uniform(-0.08, 0.08)
    colours = np.empty((len(DEMO_CLASSES), 3))
    for c, (h, s, v) in enumerate(_BASE_HSV):
        hue = rng.random() if c == OBJECT else h + shift + rng.uniform(-0.05, 0.05)
        sat = np.clip(s * rng.uniform(0.6, 1.4), 0.0, 1.0)
        val = np.clip(v * rng.uniform(0.7, 1.25), 0.05, 1.0)
        colours[c] = colorsys.hsv_to_rgb(hue % 1.0, sat, val)
    return colours * 255.0


def _blob(
    yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, cy: float, cx: float, r: float
) -> np.ndarray:
    """An irregular round region: radius modulated by a low-frequency angular wave."""
    ang = np.arctan2(yy - cy, xx - cx)
    k = int(rng.integers(2, 5))
    rad = r * (1.0 + 0.25 * np.sin(k * ang + rng.uniform(0, 2 * np.pi)))
    ecc = rng.uniform(0.6, 1.4)  # horizontal stretch
    return ((yy - cy) ** 2 + ((xx - cx) / ecc) ** 2) < rad**2


def _layout(rng: np.random.Generator, r: int) -> np.ndarray:
    """An r x r class-id map: sky over ground, then optional water, road, buildings, etc."""
    yy, xx = np.mgrid[0:r, 0:r].astype(np.float32) + 0.5
    h0 = rng.uniform(0.3, 0.6) * r
    slope = rng.uniform(-0.1, 0.1)
    hy = h0 + slope * (xx - r / 2)  # horizon height per column
    lab = np.full((r, r), GROUND, np.uint8)
    lab[yy < hy] = SKY
    if rng.random() < 0.55:
        lab[(yy >= hy) & (yy < hy + rng.uniform(0.08, 0.3) * r)] = WATER
    if rng.random() < 0.65:
        if rng.random() < 0.5:  # perspective road towards a vanishing point on the horizon
            vx, cb, wb = (
                rng.uniform(0.2, 0.8) * r,
                rng.uniform(0.3, 0.7) * r,
                rng.uniform(0.2, 0.45) * r,
            )
            t = np.clip((yy - hy) / np.maximum(r - hy, 1.0), 0.0, 1.0)
            road = (xx > vx + (cb - wb - vx) * t) & (xx < vx + (cb + wb - vx) * t)
        else:  # horizontal band
            y0 = rng.uniform(h0 + 0.1 * r, 0.9 * r)
            road = (yy >= y0) & (yy < y0 + rng.uniform(0.06, 0.15) * r)
        lab[road & (lab == GROUND)] = ROAD
    if rng.random() < 0.65:
        for _ in range(int(rng.integers(1, 4))):
            w = rng.uniform(0.12, 0.3) * r
            x0 = rng.uniform(-0.05 * r, r - 0.9 * w)
            cx = x0 + w / 2
            base = h0 + slope * (cx - r / 2) + rng.uniform(0.0, 0.08) * r
            top = base - rng.uniform(0.15, 0.45) * r
            bld = (xx >= x0) & (xx < x0 + w) & (yy >= top) & (yy < base)
            if rng.random() < 0.5:  # triangular roof
                rh = rng.uniform(0.05, 0.15) * r
                d = np.abs(xx - cx) / (w / 2)
                bld |= (d < 1) & (yy < top) & (yy >= top - rh * (1 - d))
            lab[bld] = BUILDING
    if rng.random() < 0.8:
        for i in range(int(rng.integers(1, 5))):
            cx = rng.uniform(0, r)
            hc = h0 + slope * (cx - r / 2)
            # The first blob is a tree at the horizon, later ones are bushes anywhere below it.
            cy = hc - rng.uniform(0.0, 0.12) * r if i == 0 else rng.uniform(hc, 0.95 * r)
            lab[_blob(yy, xx, rng, cy, cx, rng.uniform(0.06, 0.14) * r)] = VEGETATION
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(1, 4))):
            cx = rng.uniform(0, r)
            cy = rng.uniform(h0 + slope * (cx - r / 2) + 0.05 * r, r)
            lab[_blob(yy, xx, rng, cy, cx, rng.uniform(0.04, 0.1) * r)] = ROCK
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(1, 4))):
            cx = rng.uniform(0.05, 0.95) * r
            cy = rng.uniform(h0 + slope * (cx - r / 2) + 0.03 * r, 0.97 * r)
            ry, rx = rng.uniform(0.03, 0.07, size=2) * r
            lab[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = OBJECT
    return lab


def render_scene(index: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render scene ``index`` as (RGB uint8 image, class-id label, metadata), from (seed, index)."""
    rng = np.random.default_rng([seed, index])
    r = 2 * size  # rendered at 2x, then area-averaged for anti-aliasing
    lab = _layout(rng, r)
    colours = _palette(rng)
    img = np.zeros((r, r, 3), np.float32)
    for c in range(len(DEMO_CLASSES)):
        m = lab == c
        if not m.any():
            continue
        if c == SKY:  # vertical gradient, darker at the top
            shade = np.linspace(0.75, 1.2, r, dtype=np.float32)[:, None].repeat(r, 1)
        else:
            shade = 0.6 + 0.8 * _crop(rng, c, r, stretch=4.0 if c == WATER else 1.0)
        img[m] = colours[c] * shade[m, None]
    img = np.clip(img, 0, 255).reshape(size, 2, size, 2, 3).mean((1, 3))
    image = np.round(img).astype(np.uint8)
    # Label: majority of each 2x2 block, ties broken by the block's top-left pixel.
    blocks = lab.reshape(size, 2, size, 2).transpose(0, 2, 1, 3).reshape(size, size, 4)
    votes = (blocks[..., None] == np.arange(len(DEMO_CLASSES))).sum(2) * 2
    votes += blocks[..., :1] == np.arange(len(DEMO_CLASSES))
    label = votes.argmax(-1).astype(np.uint8)
    palette = {n: [round(float(v), 3) for v in colours[c]] for c, n in enumerate(DEMO_CLASSES)}
    return image, label, {"class_mean_rgb": class_means(image, label), "palette": palette}


def class_means(image: np.ndarray, label: np.ndarray) -> dict[str, RGB | None]:
    """Mean RGB of every class's pixels (rounded to 3 decimals), or None where it is absent."""
    out: dict[str, RGB | None] = {}
    for c, name in enumerate(DEMO_CLASSES):
        m = label == c
        if m.any():
            r, g, b = (round(float(v), 3) for v in image[m].mean(0))
            out[name] = (r, g, b)
        else:
            out[name] = None
    return out


def _save_png(arr: np.ndarray, dest: Path) -> None:
    with atomic_path(dest) as tmp:  # tmp ends in .tmp, so the format is named explicitly
        Image.fromarray(arr).save(tmp, format="PNG")


def generate_demo(
    out_dir: str | os.PathLike,
    *,
    n_train: int = 300,
    n_val: int = 60,
    size: int = 64,
    seed: int = 0,
) -> list[DemoRecord]:
    """Write images/, labels/ and styles.json under ``out_dir``; return the records."""
    if n_train < 0 or n_val < 0 or size < 8:
        raise ValueError(f"bad demo settings: n_train={n_train} n_val={n_val} size={size}")
    out = Path(out_dir)
    records: list[DemoRecord] = []
    for i in range(n_train + n_val):
        image, label, meta = render_scene(i, seed, size)
        rid = f"demo_{i:05d}"
        rec = DemoRecord(
            id=rid,
            split="train" if i < n_train else "val",
            image=f"images/{rid}.png",
            label=f"labels/{rid}.png",
            class_mean_rgb=meta["class_mean_rgb"],
        )
        _save_png(image, out / rec.image)
        _save_png(label, out / rec.label)
        records.append(rec)
    styles = {
        rec.id: {
            "split": rec.split,
            "class_mean_rgb": {
                k: None if v is None else list(v) for k, v in rec.class_mean_rgb.items()
            },
        }
        for rec in records
    }
    with atomic_path(out / "styles.json") as tmp:
        tmp.write_text(json.dumps(styles, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return records
