"""DVC stage `index@DS`: exemplar retrieval for the prepared dataset ROOT/DS, written to
ROOT/DS_index: pairs.parquet, the official-format pairs_<split>.txt lists, and the FAISS index
of the training embeddings (VGG19 pool5 embeddings are kept in shards, so a run resumes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cocosnet.data import ade20k, celebahq, flickr
from cocosnet.data.prepare import MANIFEST
from cocosnet.preprocess.demo import DEMO_CLASSES
from cocosnet.retrieval.build import build_pairs
from cocosnet.weights import WeightsError
from stages._common import load_params

# Datasets whose ids carry an identity that must not serve as its own exemplar (DeepFashion: the
# same person in another pose), used unless index.exclude_identity says otherwise.
IDENTITY = {"deepfashion": r"id_\d+"}
# Label-map classes per dataset, for layout embeddings.
NUM_CLASSES = {
    "demo": len(DEMO_CLASSES),
    "ade20k": ade20k.SEMANTIC_NC,
    "celebahq": celebahq.SEMANTIC_NC,
    "flickr": flickr.SEMANTIC_NC,
}


STAGE = "index"


def main(dataset: str, params_path: str = "params.yaml", weights_dir: str = "weights") -> None:
    params = load_params(STAGE, params_path)
    root = Path(params.data.root)
    if not (root / dataset / MANIFEST).is_file():
        raise SystemExit(f"index: {root / dataset / MANIFEST} not found; run prepare@{dataset}")
    cfg = params.index
    if cfg.exclude_identity is None and dataset in IDENTITY:
        cfg = cfg.model_copy(update={"exclude_identity": IDENTITY[dataset]})
    try:
        pairs = build_pairs(
            root / dataset,
            root / f"{dataset}_index",
            cfg,
            weights_dir=weights_dir,
            num_classes=NUM_CLASSES.get(dataset),
            max_pixels=params.data.max_pixels,
        )
    except (WeightsError, ValueError) as err:
        raise SystemExit(f"index: {err}") from None
    print(
        json.dumps({"dataset": dataset, "pairs": len(pairs), "embedding": params.index.embedding})
    )


if __name__ == "__main__":
    from stages._common import run_stage

    run_stage("index", main, sys.argv[1:])
