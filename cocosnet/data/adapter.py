"""What the pipeline knows about one dataset, in one place: an :class:`Adapter`.

An adapter says what it finds in a raw folder (:meth:`Adapter.find`), how it loads one raw
sample (:meth:`Adapter.load`), how it prepares the whole set (:meth:`Adapter.prepare`: by default
resize every found sample into the shared prepared layout of :mod:`cocosnet.data.store` and index
it), the input domain and channel count of its stored samples (``condition``, ``channels``), the
planes it stores beside a sample (:meth:`Adapter.stored_planes`) and how a label map becomes the
network input (:meth:`Adapter.label_input`). :mod:`cocosnet.data.registry` lists them by name;
nothing else branches on a dataset's name.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import PurePath
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from ..config import DataConfig
from ..formats.pose_render import POSE_CHANNELS
from ..formats.tensors import one_hot
from ..io import DEFAULT_MAX_PIXELS
from .prepare import Candidate, PrepareReport
from .store import resize_and_index

Condition = Literal["label", "edges", "pose"]
# Stored planes read bilinearly when resized (distance maps); the others nearest (official).
Planes = tuple[np.ndarray, tuple[int, ...]]


class Adapter:
    """The base adapter: a folder of photos and optional label maps, resized and indexed."""

    name: ClassVar[str]
    condition: ClassVar[Condition] = "label"  # the input domain its prepared samples carry
    channels: ClassVar[int | None] = None  # channels of that input (None: model.semantic_nc)
    class_names: ClassVar[tuple[str, ...]] = ()  # label-map class names, where known
    object_classes: ClassVar[tuple[int, ...]] = ()  # the things `warp_accuracy_objects` scores
    identity: ClassVar[str | None] = None  # id pattern of a person (never their own exemplar)
    edge_encoding: ClassVar[str] = "canny"  # the edges stage's input encoding
    edge_channels: ClassVar[int] = 1  # channels of that encoding

    def options(self, data: DataConfig) -> dict[str, Any]:
        """The adapter-specific ``data.*`` settings, as keyword arguments of :meth:`find`."""
        return {}

    def find(self, raw_root: str | os.PathLike, **options: Any) -> list[Candidate]:
        raise NotImplementedError

    def load(self, raw_root: str, max_pixels: int, c: Candidate):
        """(RGB uint8, label ids or None) of a found candidate; runs in worker processes."""
        raise NotImplementedError

    def prepare(
        self,
        raw_root: str | os.PathLike | None,
        out_root: str | os.PathLike,
        *,
        size: int = 256,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        workers: int = 1,
        dask_address: str | None = None,
        **options: Any,
    ) -> PrepareReport:
        """Resize every sample :meth:`find` finds into ``out_root`` and index it; bad samples
        are quarantined with a one-line reason, never fatal."""
        if raw_root is None:
            raise ValueError(f"data.raw_roots has no folder for {self.name!r}")
        return resize_and_index(
            raw_root,
            out_root,
            self.find(raw_root, **options),
            partial(self.load, str(raw_root), max_pixels),
            size=size,
            max_pixels=max_pixels,
            num_classes=self.channels if self.condition == "label" else None,
            desc=self.name,
            workers=workers,
            dask_address=dask_address,
        )

    def input_condition(self, configured: str = "auto") -> Condition:
        """The input domain a model of this dataset reads: ``configured`` (train.condition)
        unless it is ``auto``."""
        return self.condition if configured == "auto" else configured  # type: ignore[return-value]

    def input_channels(self, condition: Condition) -> int | None:
        """Channels of this dataset's ``condition`` input, which model.semantic_nc must equal
        (None: any, a folder's label maps)."""
        if condition == "edges":
            return self.edge_channels
        if condition == "pose":
            return POSE_CHANNELS
        return self.channels

    def check_model_channels(self, configured: str, semantic_nc: int) -> None:
        """ValueError naming both keys when train.condition's input cannot feed the model."""
        condition = self.input_condition(configured)
        channels = self.input_channels(condition)
        if channels is not None and channels != semantic_nc:
            given = "" if configured == condition else f" (auto: {condition})"
            raise ValueError(
                f"train.condition: {configured}{given} gives {self.name} inputs of {channels} "
                f"channel(s), but model.semantic_nc is {semantic_nc}; set model.semantic_nc: "
                f"{channels} or another train.condition"
            )

    def stored_planes(self, dataset_dir: str | os.PathLike, sample: str) -> Planes | None:
        """Input planes stored beside a prepared sample (H x W x C uint8) and which of them
        are distance maps, or None."""
        return None

    def label_input(
        self, label: np.ndarray, planes: np.ndarray | None, semantic_nc: int
    ) -> torch.Tensor:
        """The network input of a label map (and the stored planes): one-hot by default."""
        return one_hot(label, semantic_nc)

    def official_id(self, key: str) -> str:
        """Our sample id of an entry of an official pair list: the file stem by default."""
        return PurePath(key).stem
