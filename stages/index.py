"""DVC stage `index@DS`: exemplar retrieval for the prepared dataset ROOT/DS, written to
ROOT/DS_index: pairs.parquet, the official-format pairs_<split>.txt lists, and the FAISS index
of the training embeddings (VGG19 pool5 embeddings are kept in shards, so a run resumes)."""

from __future__ import annotations

import json
import sys

from cocosnet.retrieval.build import build_pairs
from cocosnet.weights import WeightsError
from stages._common import load_params, require_prepared
from stages._datasets import adapter

STAGE = "index"


def main(dataset: str, params_path: str = "params.yaml", weights_dir: str = "weights") -> None:
    params = load_params(STAGE, params_path)
    paths, found = require_prepared(STAGE, params, dataset), adapter(STAGE, dataset)
    cfg = params.index
    if cfg.exclude_identity is None and found.identity is not None:
        # ids that carry a person: never their own exemplar (DeepFashion: another pose)
        cfg = cfg.model_copy(update={"exclude_identity": found.identity})
    try:
        pairs = build_pairs(
            paths.dataset_dir,
            paths.index_dir,
            cfg,
            weights_dir=weights_dir,
            num_classes=found.channels if found.condition == "label" else None,
            max_pixels=params.data.max_pixels,
        )
    except (WeightsError, ValueError) as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    print(
        json.dumps({"dataset": dataset, "pairs": len(pairs), "embedding": params.index.embedding})
    )


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage(STAGE, main, sys.argv[1:])
