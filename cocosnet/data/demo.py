"""Adapter for the embedded demo dataset: generate it, then index it like any other dataset."""

from __future__ import annotations

import os

from ..config import DemoDataConfig
from ..preprocess.demo import DEMO_CLASSES, generate_demo
from .prepare import Candidate, PrepareReport, index_candidates


def prepare_demo(
    root: str | os.PathLike,
    cfg: DemoDataConfig,
    max_pixels: int,
    *,
    workers: int = 1,
    dask_address: str | None = None,
) -> PrepareReport:
    records = generate_demo(
        root, n_train=cfg.n_train, n_val=cfg.n_val, size=cfg.size, seed=cfg.seed
    )
    candidates = [Candidate(r.id, r.split, str(r.image), str(r.label)) for r in records]
    return index_candidates(
        root,
        candidates,
        max_pixels=max_pixels,
        num_classes=len(DEMO_CLASSES),
        workers=workers,
        dask_address=dask_address,
    )
