"""Sliced Wasserstein Distance (SWD) as PGGAN computed it (Karras et al. 2018, Sec. 5 and
``metrics/sliced_wasserstein.py``), the protocol CoCosNet reports.

Per image: a Laplacian pyramid (5x5 binomial filter, mirror borders as ``cv2.pyrDown``) from the
full size down to ``min_size`` (16), the coarsest level being the low-pass residual; per level
``per_image`` (128) random 7x7x3 neighbourhoods, flattened to 147-d descriptors. Per level and
set: every colour channel standardised over all descriptors of the set; then ``repeats`` (4) x
``directions`` (128) random unit directions: project both sets, sort, mean absolute difference,
averaged and multiplied by 1e3.

Differences from the (unseeded) reference, all chosen deliberately:

* randomness comes from seeds: each image's neighbourhoods from
  ``np.random.default_rng([seed, image_index])`` (so batching never changes the result), the
  directions from ``np.random.default_rng(seed)`` drawn level by level (finest first), repeat by
  repeat, as a 147 x ``directions`` standard normal matrix whose columns are normalised;
  :func:`swd_folders` gives the two sets independent seeds derived from ``seed``, because the
  reference samples them independently (equal seeds would put the neighbourhoods of paired
  images at the same places and lower the SWD, markedly so for few images);
* standardisation, projection and averaging run in float64 (the reference: float32); the pyramid
  and the stored descriptors stay float32 as in the reference;
* a channel that is constant over a whole set (std 0) is only centred; the reference divides by
  zero and reports NaN.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.ndimage
from tqdm import tqdm

from ..io import image_files, read_image

NHOOD = 7  # neighbourhood side (PGGAN nhood_size)
_BINOMIAL = np.float32([1, 4, 6, 4, 1])
# 5x5 binomial filter, as NCHW convolution weights acting on H and W only.
_FILTER = (np.outer(_BINOMIAL, _BINOMIAL) / 256.0).astype(np.float32)[None, None]


def _pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur and keep every second pixel (``cv2.pyrDown``; scipy 'mirror' = reflect-101)."""
    return scipy.ndimage.convolve(x, _FILTER, mode="mirror")[:, :, ::2, ::2]


def _pyr_up(x: np.ndarray) -> np.ndarray:
    """Insert zeros between pixels and blur with 4x the filter (``cv2.pyrUp``)."""
    n, c, h, w = x.shape
    up = np.zeros((n, c, 2 * h, 2 * w), x.dtype)
    up[:, :, ::2, ::2] = x
    return scipy.ndimage.convolve(up, _FILTER * 4.0, mode="mirror")


def laplacian_pyramid(images: np.ndarray, levels: int) -> list[np.ndarray]:
    """N x H x W x 3 images -> ``levels`` N x 3 x h x w float32 band-pass images, finest first.

    Each level is ``image - up(down(image))``; the last is the low-pass residual.
    """
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"expected images N x H x W x 3, got shape {images.shape}")
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    factor = 2 ** (levels - 1)
    h, w = images.shape[1:3]
    if h % factor or w % factor:
        raise ValueError(f"{h}x{w} images cannot be halved {levels - 1} times")
    pyramid = [np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)]
    for _ in range(1, levels):
        pyramid.append(_pyr_down(pyramid[-1]))
        pyramid[-2] -= _pyr_up(pyramid[-1])
    return pyramid


def _draw_corners(rng: np.random.Generator, count: int, h: int, w: int) -> tuple[np.ndarray, ...]:
    """Top-left corners in [0, size - 7], x (column) drawn before y (row) as in the reference."""
    x = rng.integers(0, w - NHOOD + 1, size=count)
    y = rng.integers(0, h - NHOOD + 1, size=count)
    return x, y


def _gather(level_images: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """N x 3 x H x W and N x P corners -> (N*P) x 147 float32 descriptors.

    Flattened in the reference's order (channel, column offset, row offset): its index grid is
    ``ogrid[nhood, chan, x, y]``, i.e. each channel's patch is stored transposed.
    """
    n, p = x.shape
    off = np.arange(NHOOD)
    img = np.arange(n)[:, None, None, None, None]
    chan = np.arange(3)[None, None, :, None, None]
    cols = x[:, :, None, None, None] + off[:, None]  # axis 3: column offset
    rows = y[:, :, None, None, None] + off[None, :]  # axis 4: row offset
    return level_images[img, chan, rows, cols].reshape(n * p, 3 * NHOOD * NHOOD)


def descriptors(level_images: np.ndarray, per_image: int, rng: np.random.Generator) -> np.ndarray:
    """``per_image`` random 7x7x3 neighbourhoods of each N x 3 x H x W image -> (N*P) x 147.

    Corners come from ``rng`` for the whole batch at once (all x, then all y), as in the reference.
    """
    n, c, h, w = level_images.shape
    if c != 3 or h < NHOOD or w < NHOOD:
        raise ValueError(f"expected N x 3 x H x W with H, W >= {NHOOD}, got {level_images.shape}")
    x, y = _draw_corners(rng, n * per_image, h, w)
    return _gather(level_images, x.reshape(n, per_image), y.reshape(n, per_image))


def _standardise(desc: np.ndarray) -> np.ndarray:
    """Per colour channel: subtract the mean and divide by the std over the whole set."""
    d = desc.astype(np.float64).reshape(len(desc), 3, -1)
    d -= d.mean(axis=(0, 2), keepdims=True)
    std = d.std(axis=(0, 2), keepdims=True)
    d /= np.where(std > 0, std, 1.0)  # a constant channel is only centred (reference: NaN)
    return d.reshape(len(desc), -1)


def sliced_wasserstein(
    a: np.ndarray, b: np.ndarray, directions: int, repeats: int, rng: np.random.Generator
) -> float:
    """Mean over ``repeats`` x ``directions`` random unit directions of the 1-D Wasserstein-1
    distance between the sorted projections of descriptor sets ``a`` and ``b`` (same shape)."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"descriptor sets must have equal 2-D shapes, got {a.shape}, {b.shape}")
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    results = []
    for _ in range(repeats):
        dirs = rng.standard_normal((a.shape[1], directions))
        dirs /= np.sqrt(np.sum(dirs**2, axis=0, keepdims=True))
        # direction x descriptor, so each direction's projections sort contiguously
        proj_a = np.sort(dirs.T @ a.T, axis=1)
        proj_b = np.sort(dirs.T @ b.T, axis=1)
        results.append(np.mean(np.abs(proj_a - proj_b)))
    return float(np.mean(results))


class SWDStats:
    """Streaming descriptor sampler for one image set (real or fake).

    Use different seeds for two sets that are compared: the reference samples them independently,
    and equal seeds put the neighbourhoods of paired images at the same places.
    """

    def __init__(self, image_size: int, *, per_image: int = 128, seed: int = 0, min_size: int = 16):
        if min_size < NHOOD:
            raise ValueError(
                f"min_size must be >= {NHOOD} (the neighbourhood size), got {min_size}"
            )
        if image_size < min_size or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= {min_size}, got {image_size}")
        if per_image < 1:
            raise ValueError(f"per_image must be >= 1, got {per_image}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.image_size = image_size
        self.per_image = per_image
        self.seed = seed
        # Levels halve the size down to min_size (PGGAN: 256, 128, 64, 32, 16).
        sizes = (image_size >> k for k in range(image_size.bit_length()))
        self.resolutions = [r for r in sizes if r >= min_size]
        self.num_images = 0
        self._desc: list[list[np.ndarray]] = [[] for _ in self.resolutions]

    def update(self, images: np.ndarray) -> None:
        """Sample the neighbourhoods of a batch of N x H x W x 3 uint8 RGB images."""
        if not isinstance(images, np.ndarray):
            raise TypeError(f"SWD expects a numpy array, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise ValueError(f"SWD expects uint8 images (0..255), got dtype {images.dtype}")
        s = self.image_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise ValueError(f"SWD expects N x {s} x {s} x 3 images, got shape {images.shape}")
        n = len(images)
        if n == 0:
            return
        pyramid = laplacian_pyramid(images, len(self.resolutions))
        # One generator per image, keyed by its index in the stream: batching cannot matter.
        rngs = [np.random.default_rng([self.seed, self.num_images + i]) for i in range(n)]
        for level, store in zip(pyramid, self._desc, strict=True):
            h, w = level.shape[2:]
            corners = [_draw_corners(rng, self.per_image, h, w) for rng in rngs]
            x = np.stack([c[0] for c in corners])
            y = np.stack([c[1] for c in corners])
            store.append(_gather(level, x, y))
        self.num_images += n

    def descriptors(self) -> list[np.ndarray]:
        """The raw (unstandardised) float32 descriptors per level, finest first: (N*P) x 147."""
        width = 3 * NHOOD * NHOOD
        return [np.concatenate(d) if d else np.zeros((0, width), np.float32) for d in self._desc]


def swd(
    real: SWDStats, fake: SWDStats, *, directions: int = 128, repeats: int = 4, seed: int = 0
) -> dict[str, float]:
    """SWD x 1e3 per pyramid level (``swd_<resolution>``) and their mean (``swd_avg``)."""
    if real.resolutions != fake.resolutions or real.per_image != fake.per_image:
        raise ValueError(
            f"real and fake stats differ in levels {real.resolutions} vs {fake.resolutions} "
            f"or neighbourhoods per image {real.per_image} vs {fake.per_image}"
        )
    if real.num_images != fake.num_images:
        raise ValueError(
            f"SWD needs equal image counts (as PGGAN's protocol): "
            f"real has {real.num_images}, fake has {fake.num_images}"
        )
    if real.num_images == 0:
        raise ValueError("SWD needs at least one image per set")
    rng = np.random.default_rng(seed)
    result = {}
    for res, a, b in zip(real.resolutions, real.descriptors(), fake.descriptors(), strict=True):
        dist = sliced_wasserstein(_standardise(a), _standardise(b), directions, repeats, rng)
        result[f"swd_{res}"] = dist * 1e3
    result["swd_avg"] = float(np.mean(list(result.values())))
    return result


def _image_files(folder: str | os.PathLike) -> list[Path]:
    files = image_files(folder)
    if not files:
        raise ValueError(f"{folder}: no PNG/JPG images")
    return files


def _stats_for(
    files: list[Path], image_size: int, seed: int, batch_size: int, desc: str
) -> SWDStats:
    stats = SWDStats(image_size, seed=seed)
    for start in tqdm(range(0, len(files), batch_size), desc=desc, unit="batch", leave=False):
        batch = []
        for path in files[start : start + batch_size]:
            img = read_image(path)
            if img.shape[:2] != (image_size, image_size):
                raise ValueError(
                    f"{path}: expected {image_size}x{image_size}, got {img.shape[0]}x{img.shape[1]}"
                )
            batch.append(img)
        stats.update(np.stack(batch))
    return stats


def swd_folders(
    real_dir: str | os.PathLike,
    fake_dir: str | os.PathLike,
    *,
    image_size: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, float]:
    """SWD between every PNG/JPG of two folders (sorted by name; equal counts and sizes).

    ``image_size`` defaults to the first real image's side. The two sets sample their
    neighbourhoods independently (seeds derived from ``seed``), the directions use ``seed``.
    """
    real_files, fake_files = _image_files(real_dir), _image_files(fake_dir)
    if len(real_files) != len(fake_files):
        raise ValueError(
            f"SWD needs equal image counts: {real_dir} has {len(real_files)}, "
            f"{fake_dir} has {len(fake_files)}"
        )
    if image_size is None:
        first = read_image(real_files[0])
        if first.shape[0] != first.shape[1]:
            raise ValueError(f"{real_files[0]}: SWD needs square images, got {first.shape[:2]}")
        image_size = first.shape[0]
    real_seed, fake_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    real = _stats_for(real_files, image_size, real_seed, batch_size, "SWD real")
    fake = _stats_for(fake_files, image_size, fake_seed, batch_size, "SWD fake")
    return swd(real, fake, seed=seed)
