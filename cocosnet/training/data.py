"""Training examples: a query (input, ground truth) and its exemplar, as CoCosNet trains on.

Each example draws its exemplar with the official probabilities (``ExemplarSampler``): the
last-ranked or the top-1 retrieval of the query, or the query itself geometrically distorted (a
pseudo pair, for which the ground truth is a known answer). Query and exemplar get independent
random crops and flips, as the official loader. Every random number of an example comes from a
generator seeded by ``(seed, epoch, index)``, so an example is the same whichever process or
worker loads it and whether or not training was interrupted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

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
NO_LABEL = -1  # label maps of samples that have none (edge/pose datasets without parsing)


def default_condition(dataset: str, configured: str = "auto") -> Condition:
    """The input domain of a dataset: ``configured`` (train.condition) unless it is ``auto``,
    then pose for DeepFashion and label masks otherwise."""
    if configured != "auto":
        return configured  # type: ignore[return-value]
    return "pose" if dataset == "deepfashion" else "label"


@dataclass(frozen=True)
class Loaded:
    """One stored sample at its stored size: network input, photo and class ids."""

    input: torch.Tensor  # C x H x W float32
    image: torch.Tensor  # 3 x H x W in [-1, 1]
    label: torch.Tensor  # H x W int64 (NO_LABEL where the dataset has none)


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
        if self.condition == "label":
            if label is None:
                raise ValueError(f"sample {row['id']!r} has no label map for condition 'label'")
            if self.dataset == "celebahq":  # glasses ride on their own channel (official)
                glasses = read_label(celebahq.glasses_path(self.dir, row["id"]))
                cond = celebahq.celebahq_input_channels(label, glasses)
            else:
                cond = one_hot(label, self.semantic_nc)
        elif self.condition == "edges":
            cond = self._edges(row["id"])
        else:
            pose = deepfashion.load_pose(self.dir, row["id"])
            cond = torch.from_numpy(pose.transpose(2, 0, 1).astype(np.float32) / 255.0)
        if cond.shape[0] != self.semantic_nc:
            raise ValueError(
                f"{self.dataset} {self.condition} inputs have {cond.shape[0]} channels but "
                f"model.semantic_nc is {self.semantic_nc}"
            )
        if cond.shape[1:] != rgb.shape[:2]:
            raise ValueError(f"sample {row['id']!r}: input and image sizes differ")
        ids = torch.full(rgb.shape[:2], NO_LABEL, dtype=torch.int64)
        if label is not None and self.condition == "label":
            ids = torch.from_numpy(label.astype(np.int64))
        return Loaded(cond, image_to_tensor(rgb), ids)

    def _edges(self, sample: str) -> torch.Tensor:
        npz = self.edges_dir / f"{sample}.npz"
        if npz.is_file():  # the 15-channel CelebA-HQ encoding
            with np.load(npz) as f:
                return torch.from_numpy(f["edges"].transpose(2, 0, 1).astype(np.float32) / 255)
        edges = read_label(self.edges_dir / f"{sample}.png", max_pixels=self.max_pixels)
        return torch.from_numpy(edges.astype(np.float32) / 255.0)[None]


def _crop(
    loaded: Loaded, size: int, top_u: float, left_u: float, flip: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scale the shorter side to at least ``size``, then the ``size``² crop at fractions
    (``top_u``, ``left_u``) of the free room, mirrored when ``flip``."""
    inp, img, lab = loaded.input, loaded.image, loaded.label
    h, w = img.shape[-2:]
    if min(h, w) < size:
        scale = size / min(h, w)
        h, w = max(size, round(h * scale)), max(size, round(w * scale))
        img = F.interpolate(img[None], size=(h, w), mode="bicubic", align_corners=False)[0]
        inp = F.interpolate(inp[None], size=(h, w), mode="nearest")[0]
        lab = F.interpolate(lab[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
    top, left = int(top_u * (h - size + 1)), int(left_u * (w - size + 1))
    crop = (slice(top, top + size), slice(left, left + size))
    inp, img, lab = inp[:, crop[0], crop[1]], img[:, crop[0], crop[1]], lab[crop]
    if flip:
        inp, img, lab = inp.flip(-1), img.flip(-1), lab.flip(-1)
    return inp.contiguous(), img.clamp(-1, 1).contiguous(), lab.contiguous()


def _random_crop(loaded: Loaded, size: int, rng: np.random.Generator, flip: bool):
    """The official training crop and flip (always three draws: the stream stays aligned)."""
    top_u, left_u, flip_u = rng.random(3)
    return _crop(loaded, size, top_u, left_u, flip and flip_u < 0.5)


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


class TrainingExamples(torch.utils.data.Dataset):
    """Examples of one epoch: call :meth:`set_epoch` before iterating (like DistributedSampler)."""

    def __init__(
        self,
        rows: Sequence[Mapping],
        source: ConditionSource,
        sampler: ExemplarSampler,
        *,
        image_size: int,
        distortion: Distortion,
        flip: bool = True,
        seed: int = 0,
    ):
        if not rows:
            raise ValueError("no training samples")
        self.rows = list(rows)
        self.by_id = {row["id"]: row for row in self.rows}
        self.source, self.sampler = source, sampler
        self.image_size, self.distortion, self.flip = image_size, distortion, flip
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        row = self.rows[index]
        exemplar_id, kind = self.sampler.choose(row["id"], rng)
        if exemplar_id not in self.by_id:
            exemplar_id, kind = row["id"], "self"  # retrieved from outside the training split
        query = self.source(row)
        inp, img, lab = _random_crop(query, self.image_size, rng, self.flip)
        ex_loaded = query if kind == "self" else self.source(self.by_id[exemplar_id])
        ex_inp, ex_img, ex_lab = _random_crop(ex_loaded, self.image_size, rng, self.flip)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        grid = sample_grid(self.distortion, 1, self.image_size, self.image_size, gen)
        if kind == "self":
            # Pseudo pair: the exemplar is the query's own crop, geometrically distorted.
            semantic = torch.cat([inp, lab[None].float()], 0)[None]
            ex_img, warped = distort(grid, img[None], semantic)
            ex_img, ex_inp, ex_lab = ex_img[0], warped[0, :-1], warped[0, -1].long()
        return _example(index, (inp, img, lab), (ex_inp, ex_img, ex_lab), kind == "self")


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


def _center_crop(loaded: Loaded, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic counterpart of the training crop: scale up if needed, crop the centre."""
    return _crop(loaded, size, 0.5, 0.5, flip=False)


class PairExamples(torch.utils.data.Dataset):
    """Fixed (query, exemplar) pairs, centre-cropped, for evaluation (e.g. held-out top-1 pairs)."""

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        rows_by_id: Mapping[str, Mapping],
        source: ConditionSource,
        *,
        image_size: int,
    ):
        unknown = sorted({i for pair in pairs for i in pair} - set(rows_by_id))
        if unknown:
            raise ValueError(f"pairs name samples missing from the manifest: {unknown[:5]}")
        self.pairs, self.rows, self.source, self.size = list(pairs), rows_by_id, source, image_size

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        query, exemplar = self.pairs[index]
        inp, img, lab = _center_crop(self.source(self.rows[query]), self.size)
        ex_inp, ex_img, ex_lab = _center_crop(self.source(self.rows[exemplar]), self.size)
        return _example(index, (inp, img, lab), (ex_inp, ex_img, ex_lab), query == exemplar)


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
    condition = condition or default_condition(dataset)
    rows = [
        r
        for r in read_manifest(root / dataset / MANIFEST, root=root / dataset)
        if r["split"] == "train"
    ]
    pairs = [r for r in read_pairs(root / f"{dataset}_index" / PAIRS_FILE) if r["split"] == "train"]
    source = ConditionSource(
        dataset,
        root / dataset,
        condition,
        semantic_nc,
        edges_dir=root / f"{dataset}_edges",
        max_pixels=max_pixels,
    )
    p = cfg.pseudo
    return TrainingExamples(
        rows,
        source,
        ExemplarSampler(pairs, p_hard=cfg.p_hard, p_top1=cfg.p_top1, p_self=cfg.p_self),
        image_size=image_size,
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
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PairExamples:
    """Each ``split`` query with its top-1 retrieved exemplar (never itself)."""
    root = Path(root)
    rows = read_manifest(root / dataset / MANIFEST, root=root / dataset)
    pairs = [
        (r["query"], r["exemplar"])
        for r in read_pairs(root / f"{dataset}_index" / PAIRS_FILE)
        if r["split"] == split and r["rank"] == 1 and r["query"] != r["exemplar"]
    ]
    if not pairs:
        raise ValueError(f"no {split} pairs in {root / f'{dataset}_index' / PAIRS_FILE}")
    source = ConditionSource(
        dataset,
        root / dataset,
        condition or default_condition(dataset),
        semantic_nc,
        edges_dir=root / f"{dataset}_edges",
        max_pixels=max_pixels,
    )
    return PairExamples(pairs, {r["id"]: r for r in rows}, source, image_size=image_size)
