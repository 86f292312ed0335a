"""Adapter for the embedded demo dataset: generate it, then index it like any other dataset."""

from __future__ import annotations

import os

from ..config import DataConfig, DemoDataConfig
from ..formats.demo_scenes import DEMO_CLASSES, DEMO_OBJECT_CLASSES, generate_demo
from ..io import DEFAULT_MAX_PIXELS
from .adapter import Adapter
from .prepare import Candidate, PrepareReport, index_candidates


class DemoAdapter(Adapter):
    """Seeded synthetic scenes (``data.demo``); there is no raw folder to read."""

    name = "demo"
    channels = len(DEMO_CLASSES)
    class_names = DEMO_CLASSES
    object_classes = DEMO_OBJECT_CLASSES

    def options(self, data: DataConfig) -> dict:
        return {"cfg": data.demo}

    def prepare(
        self,
        raw_root: str | os.PathLike | None,
        out_root: str | os.PathLike,
        *,
        cfg: DemoDataConfig,
        size: int | None = None,  # the scenes' size is cfg.size
        max_pixels: int = DEFAULT_MAX_PIXELS,
        workers: int = 1,
        dask_address: str | None = None,
    ) -> PrepareReport:
        records = generate_demo(
            out_root, n_train=cfg.n_train, n_val=cfg.n_val, size=cfg.size, seed=cfg.seed
        )
        candidates = [Candidate(r.id, r.split, str(r.image), str(r.label)) for r in records]
        return index_candidates(
            out_root,
            candidates,
            max_pixels=max_pixels,
            num_classes=self.channels,
            workers=workers,
            dask_address=dask_address,
        )


ADAPTER = DemoAdapter()
