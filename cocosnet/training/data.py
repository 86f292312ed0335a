"""Training examples: a query (input, ground truth) and its exemplar, as CoCosNet trains on.

Each example draws its exemplar with the official probabilities (``ExemplarSampler``): the
last-ranked or the top-1 retrieval of the query, or a pseudo pair: the query's own photo under an
independent random crop and flip (official: new ``get_params`` for the reference), optionally
distorted further (``train.pseudo``), or with ``same_person`` (DeepFashion ``--video_like``) the
same person in another pose. Images are loaded as the official ``get_transform``: with
``resize_and_crop`` photo and label are squashed to ``load_size`` x ``load_size`` (bicubic /
nearest), randomly cropped to the network size and flipped with p = 0.5; at test time squashed to
the network size, no crop, no flip. ``scale_shortside_and_crop`` keeps the aspect ratio instead
(centre crop at test time). Every random number of an example comes from a generator seeded by
``(seed, epoch, index)``, so an example is the same whichever process or worker loads it and
whether or not training was interrupted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from ..config import TrainConfig
from ..data import celebahq, deepfashion
from ..data.exemplars import ExemplarSampler
from ..data.manifest import inside_root, read_manifest
from ..data.prepare import MANIFEST
from ..data.sample import image_to_tensor, one_hot
from ..io import DEFAULT_MAX_PIXELS, read_image, read_label
from ..retrieval.build import PAIRS as PAIRS_FILE
from ..retrieval.pairs import read_pairs
from .augment import Distortion, distort, sample_grid

Condition = Literal["label", "edges", "pose"]
Preprocess = Literal["resize_and_crop", "scale_shortside_and_crop"]
NO_DISTORTION = Distortion(flip=False)
NO_LABEL = -1  # label maps of samples that have none (edge/pose datasets without parsing)
# Channels of the stored multi-channel inputs that are distance maps: the official code resizes
# them bilinearly (transform_img), the discrete ones (edges, skeleton) nearest (transform_label).
_SMOOTH_CHANNELS = {"pose": tuple(range(3, 20)), "celebahq_edges": tuple(range(1, 14))}


def default_condition(dataset: str, configured: str = "auto") -> Condition:
    """The input domain of a dataset: ``configured`` (train.condition) unless it is ``auto``,
    then pose for DeepFashion and label masks otherwise."""
    if configured != "auto":
        return configured  # type: ignore[return-value]
    return "pose" if dataset == "deepfashion" else "label"


def training_load_size(cfg: TrainConfig, image_size: int) -> int:
    """The side training images are resized to before the crop (official: 286 for 256)."""
    return cfg.load_size if cfg.load_size is not None else round(image_size * 286 / 256)


@dataclass(frozen=True)
class Loaded:
    """One stored sample at its stored size, before resizing, cropping and flipping."""

    rgb: np.ndarray  # H x W x 3 uint8
    label: np.ndarray | None  # H x W class ids
    planes: np.ndarray | None  # H x W x C uint8 input planes (edges, pose; CelebA-HQ glasses)
    smooth: tuple[int, ...] = ()  # planes resized bilinearly (distance maps); others nearest


@dataclass(frozen=True)
class View:
    """Where a stored sample goes (official ``get_params``): resized to ``resize`` (H, W), the
    ``size``-square crop at (``top``, ``left``), mirrored when ``flip``."""

    resize: tuple[int, int]
    top: int
    left: int
    size: int
    flip: bool


def _resized_shape(h: int, w: int, side: int, mode: Preprocess) -> tuple[int, int]:
    if mode == "resize_and_crop":
        return side, side
    short, long = min(h, w), max(h, w)
    other = max(side, int(side * long / short))  # official __scale_shortside
    return (side, other) if h == short else (other, side)


def train_view(
    shape: tuple[int, int],
    size: int,
    load_size: int,
    mode: Preprocess,
    flip: bool,
    rng: np.random.Generator,
) -> View:
    """A random training view (always three draws: the stream stays aligned)."""
    h, w = _resized_shape(*shape, max(load_size, size), mode)
    left, top, flip_u = rng.integers(0, w - size + 1), rng.integers(0, h - size + 1), rng.random()
    return View((h, w), int(top), int(left), size, flip and flip_u > 0.5)


def eval_view(shape: tuple[int, int], size: int, mode: Preprocess) -> View:
    """The deterministic view of evaluation: squashed to ``size`` (resize_and_crop), or the
    shorter side scaled to ``size`` and the centre crop; never flipped."""
    h, w = _resized_shape(*shape, size, mode)
    return View((h, w), (h - size) // 2, (w - size) // 2, size, False)


def _resize(a: np.ndarray, shape: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    if a.shape[:2] == shape:
        return a
    return np.asarray(Image.fromarray(a).resize(shape[::-1], resample))


class ConditionSource:
    """Loads a prepared sample with the input of the chosen domain (masks, edges or pose)."""

    def __init__(
        self,
        dataset: str,
        dataset_dir: str | os.PathLike,
        condition: Condition,
        semantic_nc: int,
        *,
        edges_dir: str | os.PathLike | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.dataset, self.dir, self.condition = dataset, Path(dataset_dir), condition
        self.semantic_nc, self.max_pixels = semantic_nc, max_pixels
        self.edges_dir = Path(edges_dir) if edges_dir is not None else None
        if condition == "edges" and self.edges_dir is None:
            raise ValueError("condition 'edges' needs the edges stage's output directory")

    def __call__(self, row: Mapping) -> Loaded:
        rgb = read_image(inside_root(self.dir, row["image"]), max_pixels=self.max_pixels)
        label = None
        if row.get("label") is not None:
            label = read_label(inside_root(self.dir, row["label"]), max_pixels=self.max_pixels)
        planes, smooth = None, ()
        if self.condition == "label":
            if label is None:
                raise ValueError(f"sample {row['id']!r} has no label map for condition 'label'")
            if self.dataset == "celebahq":  # glasses ride on their own channel (official)
                glasses = read_label(celebahq.glasses_path(self.dir, row["id"]))
                planes = np.where(glasses >= 128, 255, 0).astype(np.uint8)[..., None]
        elif self.condition == "edges":
            planes, smooth = self._edges(row["id"])
        else:
            planes, smooth = deepfashion.load_pose(self.dir, row["id"]), _SMOOTH_CHANNELS["pose"]
        for name, a in (("label", label), ("input", planes)):
            if a is not None and a.shape[:2] != rgb.shape[:2]:
                raise ValueError(f"sample {row['id']!r}: {name} and image sizes differ")
        if self.condition != "label":
            label = None  # ids are scored only where the input is the label map itself
        return Loaded(rgb, label, planes, smooth)

    def _edges(self, sample: str) -> tuple[np.ndarray, tuple[int, ...]]:
        npz = self.edges_dir / f"{sample}.npz"
        if npz.is_file():  # the 15-channel CelebA-HQ encoding
            with np.load(npz) as f:
                return f["edges"], _SMOOTH_CHANNELS["celebahq_edges"]
        edges = read_label(self.edges_dir / f"{sample}.png", max_pixels=self.max_pixels)
        return edges.astype(np.uint8)[..., None], ()

    def view(self, loaded: Loaded, v: View) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input C x S x S, image 3 x S x S in [-1, 1], label ids S x S) of one view."""
        crop = (slice(v.top, v.top + v.size), slice(v.left, v.left + v.size))

        def place(a: np.ndarray, resample: Image.Resampling) -> np.ndarray:
            a = _resize(a, v.resize, resample)[crop]
            return np.ascontiguousarray(a[:, ::-1] if v.flip else a)

        rgb = place(loaded.rgb, Image.Resampling.BICUBIC)
        label = None
        if loaded.label is not None:
            label = place(loaded.label.astype(np.int32), Image.Resampling.NEAREST)
        planes = None
        if loaded.planes is not None:
            planes = np.stack(
                [
                    place(
                        loaded.planes[..., c],
                        Image.Resampling.BILINEAR
                        if c in loaded.smooth
                        else Image.Resampling.NEAREST,
                    )
                    for c in range(loaded.planes.shape[-1])
                ],
                axis=-1,
            )
        if self.condition == "label":
            if self.dataset == "celebahq":
                cond = celebahq.celebahq_input_channels(label, planes[..., 0])
            else:
                cond = one_hot(label, self.semantic_nc)
        else:
            cond = torch.from_numpy(planes.transpose(2, 0, 1).astype(np.float32) / 255.0)
        if cond.shape[0] != self.semantic_nc:
            raise ValueError(
                f"{self.dataset} {self.condition} inputs have {cond.shape[0]} channels but "
                f"model.semantic_nc is {self.semantic_nc}"
            )
        ids = torch.full((v.size, v.size), NO_LABEL, dtype=torch.int64)
        if label is not None:
            ids = torch.from_numpy(label.astype(np.int64))
        return cond, image_to_tensor(rgb), ids


Crop = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # input, image, label of one sample


def _example(index: int, query: Crop, exemplar: Crop, pseudo: bool) -> dict[str, torch.Tensor]:
    """The batch entry of one (query, exemplar) pair: the keys the training steps read."""
    return {
        "index": torch.tensor(index),
        "input": query[0],
        "image": query[1],
        "label": query[2],
        "exemplar_input": exemplar[0],
        "exemplar": exemplar[1],
        "exemplar_label": exemplar[2],
        "is_pseudo": torch.tensor(pseudo),
    }


def same_person_views(ids: Sequence[str]) -> dict[str, list[str]]:
    """DeepFashion ``--video_like`` pairs: for each id, the other views of the same person in
    the same outfit (official check: same folder, same ``NN`` prefix of ``NN_k_view``)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for sample in ids:
        folder, _, name = sample.rpartition("__")
        groups.setdefault((folder, name.split("_")[0]), []).append(sample)
    return {s: [o for o in group if o != s] for group in groups.values() for s in group}


class TrainingExamples(torch.utils.data.Dataset):
    """Examples of one epoch: call :meth:`set_epoch` before iterating (like DistributedSampler)."""

    def __init__(
        self,
        rows: Sequence[Mapping],
        source: ConditionSource,
        sampler: ExemplarSampler,
        *,
        image_size: int,
        load_size: int,
        preprocess: Preprocess = "resize_and_crop",
        distortion: Distortion = NO_DISTORTION,
        flip: bool = True,
        same_person: bool = False,
        seed: int = 0,
    ):
        if not rows:
            raise ValueError("no training samples")
        self.rows = list(rows)
        self.by_id = {row["id"]: row for row in self.rows}
        self.source, self.sampler = source, sampler
        self.image_size, self.load_size, self.preprocess = image_size, load_size, preprocess
        self.distortion, self.flip = distortion, flip
        self.same_person = same_person_views(list(self.by_id)) if same_person else {}
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def _random_view(self, loaded: Loaded, rng: np.random.Generator) -> Crop:
        v = train_view(
            loaded.rgb.shape[:2], self.image_size, self.load_size, self.preprocess, self.flip, rng
        )
        return self.source.view(loaded, v)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        row = self.rows[index]
        exemplar_id, kind = self.sampler.choose(row["id"], rng)
        if exemplar_id not in self.by_id:
            exemplar_id, kind = row["id"], "self"  # retrieved from outside the training split
        others = self.same_person.get(row["id"]) or [row["id"]]
        other = others[int(rng.integers(len(others)))]  # drawn always: the stream stays aligned
        if kind == "self":
            exemplar_id = other  # the photo itself, or the same person in another pose
        loaded = self.source(row)
        query = self._random_view(loaded, rng)
        ex_loaded = loaded if exemplar_id == row["id"] else self.source(self.by_id[exemplar_id])
        ex_inp, ex_img, ex_lab = self._random_view(ex_loaded, rng)  # independent crop and flip
        distortion_seed = int(rng.integers(2**62))
        if kind == "self" and not self.distortion.identity:
            # Further distortion of the pseudo exemplar (ours; the official recipe has none).
            gen = torch.Generator().manual_seed(distortion_seed)
            grid = sample_grid(self.distortion, 1, self.image_size, self.image_size, gen)
            semantic = torch.cat([ex_inp, ex_lab[None].float()], 0)[None]
            warped_img, warped = distort(grid, ex_img[None], semantic)
            ex_img, ex_inp, ex_lab = warped_img[0], warped[0, :-1], warped[0, -1].long()
        return _example(index, query, (ex_inp, ex_img, ex_lab), kind == "self")


def epoch_batches(
    n: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> list[list[int]]:
    """This process's batches of one epoch: a seeded shuffle, dealt round-robin to the ranks,
    incomplete last batches dropped (every rank does the same number of steps)."""
    order = np.random.default_rng((seed, epoch, 2**31)).permutation(n)
    per_rank = n // world
    mine = order[rank : per_rank * world : world]
    steps = per_rank // batch_size
    return [mine[i * batch_size : (i + 1) * batch_size].tolist() for i in range(steps)]


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    return (n // world) // batch_size


class PairExamples(torch.utils.data.Dataset):
    """Fixed (query, exemplar) pairs in their test views, for evaluation (e.g. held-out top-1
    pairs)."""

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        rows_by_id: Mapping[str, Mapping],
        source: ConditionSource,
        *,
        image_size: int,
        preprocess: Preprocess = "resize_and_crop",
    ):
        unknown = sorted({i for pair in pairs for i in pair} - set(rows_by_id))
        if unknown:
            raise ValueError(f"pairs name samples missing from the manifest: {unknown[:5]}")
        self.pairs, self.rows, self.source, self.size = list(pairs), rows_by_id, source, image_size
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.pairs)

    def _test_view(self, sample: str) -> Crop:
        loaded = self.source(self.rows[sample])
        return self.source.view(loaded, eval_view(loaded.rgb.shape[:2], self.size, self.preprocess))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        query, exemplar = self.pairs[index]
        return _example(index, self._test_view(query), self._test_view(exemplar), query == exemplar)


def _source(dataset, root, condition, semantic_nc, max_pixels) -> ConditionSource:
    return ConditionSource(
        dataset,
        root / dataset,
        condition or default_condition(dataset),
        semantic_nc,
        edges_dir=root / f"{dataset}_edges",
        max_pixels=max_pixels,
    )


def training_examples(
    dataset: str,
    root: str | os.PathLike,
    *,
    semantic_nc: int,
    image_size: int,
    cfg: TrainConfig,
    condition: Condition | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> TrainingExamples:
    """The training split of the prepared ROOT/DS, with exemplars from ROOT/DS_index."""
    root = Path(root)
    rows = [
        r
        for r in read_manifest(root / dataset / MANIFEST, root=root / dataset)
        if r["split"] == "train"
    ]
    pairs = [r for r in read_pairs(root / f"{dataset}_index" / PAIRS_FILE) if r["split"] == "train"]
    p = cfg.pseudo
    return TrainingExamples(
        rows,
        _source(dataset, root, condition, semantic_nc, max_pixels),
        ExemplarSampler(pairs, p_hard=cfg.p_hard, p_top1=cfg.p_top1, p_self=cfg.p_self),
        image_size=image_size,
        load_size=training_load_size(cfg, image_size),
        preprocess=cfg.preprocess,
        distortion=Distortion(
            flip=p.flip,
            crop=p.crop,
            rotate=p.rotate,
            scale=p.scale,
            translate=p.translate,
            shear=p.shear,
            tps=p.tps,
            tps_grid=p.tps_grid,
        ),
        flip=cfg.flip,
        same_person=cfg.same_person,
        seed=cfg.seed,
    )


def heldout_pairs(
    dataset: str,
    root: str | os.PathLike,
    *,
    semantic_nc: int,
    image_size: int,
    split: str = "val",
    condition: Condition | None = None,
    preprocess: Preprocess = "resize_and_crop",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PairExamples:
    """Each ``split`` query with its top-1 retrieved exemplar (never itself), in test views."""
    root = Path(root)
    rows = read_manifest(root / dataset / MANIFEST, root=root / dataset)
    pairs = [
        (r["query"], r["exemplar"])
        for r in read_pairs(root / f"{dataset}_index" / PAIRS_FILE)
        if r["split"] == split and r["rank"] == 1 and r["query"] != r["exemplar"]
    ]
    if not pairs:
        raise ValueError(f"no {split} pairs in {root / f'{dataset}_index' / PAIRS_FILE}")
    return PairExamples(
        pairs,
        {r["id"]: r for r in rows},
        _source(dataset, root, condition, semantic_nc, max_pixels),
        image_size=image_size,
        preprocess=preprocess,
    )
