"""Every dataset adapter by name (the ``prepare@DS`` names of dvc.yaml)."""

from __future__ import annotations

from . import ade20k, celebahq, deepfashion, demo, flickr, folder
from .adapter import Adapter

ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        demo.ADAPTER,
        ade20k.ADAPTER,
        celebahq.ADAPTER,
        deepfashion.ADAPTER,
        flickr.ADAPTER,
        folder.ADAPTER,
    )
}


def adapter_for(dataset: str) -> Adapter:
    """The adapter of ``dataset``; an unknown name is a ValueError naming the known ones."""
    try:
        return ADAPTERS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(ADAPTERS)}") from None
