"""What the stages that read a dataset's samples share: its adapter and its sample loader."""

from __future__ import annotations

from cocosnet.config import Params
from cocosnet.data.adapter import Adapter
from cocosnet.data.registry import adapter_for
from cocosnet.data.sample import SampleLoader
from stages._common import dataset_paths


def adapter(stage: str, dataset: str) -> Adapter:
    """The dataset's adapter; an unknown name stops the stage with the known ones."""
    try:
        return adapter_for(dataset)
    except ValueError as err:
        raise SystemExit(f"{stage}: {err}") from None


def sample_loader(params: Params, dataset: str, semantic_nc: int, stage: str) -> SampleLoader:
    """The loader of DS's prepared samples with the input of ``train.condition``; a condition
    whose input cannot feed the model stops ``stage`` with one line naming both keys."""
    paths, found = dataset_paths(params, dataset), adapter_for(dataset)
    try:
        found.check_model_channels(params.train.condition, semantic_nc)
    except ValueError as err:
        raise SystemExit(f"{stage}: {err}") from None
    return SampleLoader(
        found,
        paths.dataset_dir,
        found.input_condition(params.train.condition),
        semantic_nc,
        edges_dir=paths.edges_dir,
        max_pixels=params.data.max_pixels,
    )
