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

import numpy as np
import torch

from ..config import TrainConfig
from ..data.examples import batch_entry
from ..data.manifest import read_manifest
from ..data.pairs import read_pairs
from ..data.sample import Preprocess, Sample, SampleLoader, Tensors, train_view
from .augment import Distortion, distort, sample_grid
from .exemplars import ExemplarSampler

NO_DISTORTION = Distortion(flip=False)


def training_load_size(cfg: TrainConfig, image_size: int) -> int:
    """The side training images are resized to before the crop (official: 286 for 256)."""
    return cfg.load_size if cfg.load_size is not None else round(image_size * 286 / 256)


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
        loader: SampleLoader,
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
        self.loader, self.sampler = loader, sampler
        self.image_size, self.load_size, self.preprocess = image_size, load_size, preprocess
        self.distortion, self.flip = distortion, flip
        self.same_person = same_person_views(list(self.by_id)) if same_person else {}
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def _random_view(self, sample: Sample, rng: np.random.Generator) -> Tensors:
        v = train_view(
            sample.rgb.shape[:2], self.image_size, self.load_size, self.preprocess, self.flip, rng
        )
        return self.loader.view(sample, v)

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
        sample = self.loader(row)
        query = self._random_view(sample, rng)
        exemplar = sample if exemplar_id == row["id"] else self.loader(self.by_id[exemplar_id])
        ex_inp, ex_img, ex_lab = self._random_view(exemplar, rng)  # independent crop and flip
        distortion_seed = int(rng.integers(2**62))
        if kind == "self" and not self.distortion.identity:
            # Further distortion of the pseudo exemplar (ours; the official recipe has none).
            gen = torch.Generator().manual_seed(distortion_seed)
            grid = sample_grid(self.distortion, 1, self.image_size, self.image_size, gen)
            semantic = torch.cat([ex_inp, ex_lab[None].float()], 0)[None]
            warped_img, warped = distort(grid, ex_img[None], semantic)
            ex_img, ex_inp, ex_lab = warped_img[0], warped[0, :-1], warped[0, -1].long()
        return batch_entry(index, query, (ex_inp, ex_img, ex_lab), kind == "self")


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


def training_examples(
    loader: SampleLoader,
    manifest: str | os.PathLike,
    pairs: str | os.PathLike,
    *,
    image_size: int,
    cfg: TrainConfig,
) -> TrainingExamples:
    """The training split of ``manifest`` with its exemplars from the pair list ``pairs``."""
    rows = [r for r in read_manifest(manifest, root=loader.dir) if r["split"] == "train"]
    train_pairs = [r for r in read_pairs(pairs) if r["split"] == "train"]
    p = cfg.pseudo
    return TrainingExamples(
        rows,
        loader,
        ExemplarSampler(train_pairs, p_hard=cfg.p_hard, p_top1=cfg.p_top1, p_self=cfg.p_self),
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
