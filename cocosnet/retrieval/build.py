"""Build the exemplar pair lists of a prepared dataset: embed every image, index the training
images, and retrieve for every image of every split its top-K training exemplars."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from ..config import IndexConfig
from ..data.manifest import inside_root, read_manifest
from ..data.pairs import (
    PAIRS,
    PairsError,
    export_official,
    import_official,
    pairs_from_topk,
    write_pairs,
)
from ..data.prepare import MANIFEST
from ..files import atomic_path
from ..io import read_label
from ..models.vgg import load_vgg19
from .embeddings import embed_images, layout_embedding
from .index import build_index, query_topk, same_identity


def dataset_embeddings(
    dataset_dir: Path,
    rows: list[dict],
    cfg: IndexConfig,
    out_dir: Path,
    *,
    weights_dir: str | os.PathLike,
    num_classes: int | None,
    max_pixels: int,
) -> np.ndarray:
    if cfg.embedding == "layout":
        unlabelled = sum(r["label"] is None for r in rows)
        if num_classes is None or unlabelled:
            raise ValueError(
                f"index.embedding: layout needs a label map of known classes for every image; "
                f"{dataset_dir} has {unlabelled or len(rows)} image(s) without one: use "
                "index.embedding: vgg19 (the paper's retrieval; register vgg19_torchvision)"
            )
        return np.stack(
            [
                layout_embedding(
                    read_label(inside_root(dataset_dir, r["label"]), max_pixels=max_pixels),
                    num_classes,
                    cfg.layout_grid,
                )
                for r in tqdm(rows, desc="layout embeddings", leave=False)
            ]
        )
    vgg = load_vgg19("torchvision", weights_dir)
    return embed_images(
        [inside_root(dataset_dir, r["image"]) for r in rows],
        [r["id"] for r in rows],
        vgg,
        out_dir / "embeddings",
        pooling=cfg.pooling,
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        max_pixels=max_pixels,
    )


def build_pairs(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: IndexConfig,
    *,
    weights_dir: str | os.PathLike = "weights",
    num_classes: int | None = None,
    max_pixels: int = 89_478_485,
) -> list[dict]:
    """Write ``out_dir/pairs.parquet``, ``pairs_<split>.txt`` (official format) and the FAISS
    index of the training embeddings; returns the pair rows."""
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    rows = read_manifest(dataset_dir / MANIFEST, dataset_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        emb = dataset_embeddings(
            dataset_dir,
            rows,
            cfg,
            out_dir,
            weights_dir=weights_dir,
            num_classes=num_classes,
            max_pixels=max_pixels,
        )
    except BaseException:
        if created and not any(out_dir.iterdir()):  # nothing to resume from: leave no trace
            out_dir.rmdir()
        raise
    train = [i for i, r in enumerate(rows) if r["split"] == "train"]
    if not train:
        raise ValueError(f"{dataset_dir}: no training images to retrieve exemplars from")
    index = build_index(
        emb[train], kind=cfg.kind, ivf_threshold=cfg.ivf_threshold, nprobe=cfg.nprobe
    )
    exclude = same_identity(cfg.exclude_identity) if cfg.exclude_identity else None
    train_ids = [rows[i]["id"] for i in train]
    pairs: list[dict] = []
    for split in ("train", "val", "test"):
        members = [i for i, r in enumerate(rows) if r["split"] == split]
        if not members:
            continue
        ids, scores = query_topk(
            index,
            emb[members],
            cfg.k,
            query_ids=[rows[i]["id"] for i in members],
            train_ids=train_ids,
            exclude=exclude,
        )
        split_rows = pairs_from_topk(
            [rows[i]["id"] for i in members],
            ids,
            [s[: len(t)] for s, t in zip(scores, ids, strict=True)],
            split,
        )
        export_official(out_dir / f"pairs_{split}.txt", split_rows)
        pairs += split_rows
    write_pairs(out_dir / PAIRS, pairs, known_ids={r["id"] for r in rows})
    with atomic_path(out_dir / "train.faiss") as tmp:
        faiss.write_index(index.index, str(tmp))
    return pairs


def import_official_lists(
    dataset_dir: str | os.PathLike,
    lists: dict[str, str | os.PathLike],
    out: str | os.PathLike,
    id_of: Callable[[str], str],
) -> list[dict]:
    """Use the published official lists (``{split: path}``) as ``out`` (pairs.parquet); every
    id (``id_of`` an entry: the dataset adapter's ``official_id``) must be in the prepared
    dataset's manifest, malformed lines are reported by number."""
    dataset_dir = Path(dataset_dir)
    known = {r["id"] for r in read_manifest(dataset_dir / MANIFEST, dataset_dir)}
    rows: list[dict] = []
    for split, path in lists.items():
        found = import_official(path, split=split, known_ids=known, id_of=id_of)
        if not found:  # an empty pairs.parquet would pass for a successful import
            raise PairsError(f"{path}: no pairs (an empty list); nothing written")
        rows += found
    write_pairs(out, rows, known_ids=known)
    return rows
