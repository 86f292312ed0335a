"""Fixed (query, exemplar) pairs in their evaluation views, as batches the networks read.

Every batch entry, here and in training (:mod:`cocosnet.training.data`), has the same keys:
``index``, ``input``, ``image``, ``label`` of the query, ``exemplar_input``, ``exemplar``,
``exemplar_label`` of the exemplar, and ``is_pseudo`` (the exemplar is the query's own photo).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch

from .manifest import read_manifest
from .pairs import read_pairs
from .sample import Preprocess, SampleLoader, Tensors


def batch_entry(index: int, query: Tensors, exemplar: Tensors, pseudo: bool) -> dict:
    """The batch entry of one (query, exemplar) pair."""
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


class PairExamples(torch.utils.data.Dataset):
    """Fixed (query, exemplar) pairs in their test views, for evaluation (e.g. held-out top-1
    pairs)."""

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        rows_by_id: Mapping[str, Mapping],
        loader: SampleLoader,
        *,
        image_size: int,
        preprocess: Preprocess = "resize_and_crop",
    ):
        unknown = sorted({i for pair in pairs for i in pair} - set(rows_by_id))
        if unknown:
            raise ValueError(f"pairs name samples missing from the manifest: {unknown[:5]}")
        self.pairs, self.rows, self.loader, self.size = list(pairs), rows_by_id, loader, image_size
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.pairs)

    def _test_view(self, sample: str) -> Tensors:
        return self.loader.test_view(self.rows[sample], self.size, self.preprocess)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        query, exemplar = self.pairs[index]
        q, e = self._test_view(query), self._test_view(exemplar)
        return batch_entry(index, q, e, query == exemplar)


def heldout_pairs(
    loader: SampleLoader,
    manifest: str | os.PathLike,
    pairs: str | os.PathLike,
    *,
    image_size: int,
    split: str = "val",
    preprocess: Preprocess = "resize_and_crop",
) -> PairExamples:
    """Each ``split`` query of ``manifest`` with its top-1 exemplar in the pair list ``pairs``
    (never itself), in test views."""
    rows = read_manifest(manifest, root=loader.dir)
    chosen = [
        (r["query"], r["exemplar"])
        for r in read_pairs(pairs)
        if r["split"] == split and r["rank"] == 1 and r["query"] != r["exemplar"]
    ]
    if not chosen:
        raise ValueError(f"no {split} pairs in {pairs}")
    return PairExamples(
        chosen, {r["id"]: r for r in rows}, loader, image_size=image_size, preprocess=preprocess
    )
