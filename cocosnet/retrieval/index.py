"""Exemplar-retrieval index: cosine top-K over training-image embeddings with faiss.

The official CoCosNet exemplar lists pair every query image (of every split) with its top-K most
similar TRAINING images by cosine similarity of VGG19 features (after the last max-pool), never
the query itself and, where the dataset says so, never an image of the same identity (e.g. the
``id_XXXX`` person folders of DeepFashion). This module provides that search:

* :func:`normalize` - float32 L2-normalised rows (cosine = inner product of normalised rows).
* :func:`build_index` - an exact (``IndexFlatIP``) or approximate (``IndexIVFFlat``) index.
* :func:`query_topk` - per-query top-K train ids and cosine scores with self/identity exclusion.
* :func:`same_identity` - an ``exclude`` callable comparing a regex-extracted identity key.

The library never changes faiss's global thread count (``faiss.omp_set_num_threads``); callers
that want a fixed count set it themselves.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np

__all__ = [
    "RetrievalIndex",
    "build_index",
    "default_nlist",
    "normalize",
    "query_topk",
    "same_identity",
]

MIN_POINTS_PER_CENTROID = 39  # faiss warns (and clusters poorly) below this
MAX_POINTS_PER_CENTROID = 256  # faiss's own k-means subsampling cap

Exclude = Callable[[str, str], bool]


def normalize(embeddings: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit L2 norm (a new array; all-zero rows stay zero).

    Raises ValueError for a non-2-D array or any NaN/inf value.
    """
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, d), got shape {x.shape}")
    x = np.array(x, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def default_nlist(n: int) -> int:
    """About 4*sqrt(n) inverted lists, clipped to [1, n // 39] (>= 39 training points each)."""
    return int(max(1, min(round(4 * math.sqrt(n)), n // MIN_POINTS_PER_CENTROID)))


@dataclass(frozen=True)
class RetrievalIndex:
    """A built faiss index over L2-normalised training embeddings (row i = train item i)."""

    index: faiss.Index
    kind: Literal["exact", "ivf"]
    n: int
    d: int
    nlist: int | None = None
    nprobe: int | None = None


def build_index(
    train: np.ndarray,
    *,
    kind: Literal["auto", "exact", "ivf"] = "auto",
    ivf_threshold: int = 100_000,
    nlist: int | None = None,
    nprobe: int = 32,
    seed: int = 0,
) -> RetrievalIndex:
    """Index ``train`` (n, d) embeddings for cosine search (inner product of normalised rows).

    ``kind="exact"`` uses ``faiss.IndexFlatIP``; ``kind="ivf"`` an ``IndexIVFFlat`` with an
    ``IndexFlatIP`` quantizer and ``nlist`` lists (default :func:`default_nlist`), trained by
    k-means on a seeded sample of at most 256 points per list, searched with ``nprobe`` lists.
    ``kind="auto"`` picks IVF when ``n >= ivf_threshold``. IVF results are approximate.
    """
    x = normalize(train)
    n, d = x.shape
    if n < 1 or d < 1:
        raise ValueError(f"need at least one train vector of dimension >= 1, got shape {x.shape}")
    if kind == "auto":
        kind = "ivf" if n >= ivf_threshold else "exact"
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
        index.add(x)
        return RetrievalIndex(index=index, kind="exact", n=n, d=d)
    if kind != "ivf":
        raise ValueError(f"kind must be 'auto', 'exact' or 'ivf', got {kind!r}")
    if nprobe < 1:
        raise ValueError(f"nprobe must be >= 1, got {nprobe}")
    if nlist is None:
        nlist = default_nlist(n)
    if not 1 <= nlist <= n:
        raise ValueError(f"nlist must be in [1, n={n}], got {nlist}")
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    n_train = min(n, MAX_POINTS_PER_CENTROID * nlist)
    if n_train < n:
        rng = np.random.default_rng(seed)
        sample = x[np.sort(rng.choice(n, size=n_train, replace=False))]
    else:
        sample = x
    index.train(sample)
    index.add(x)
    index.nprobe = min(nprobe, nlist)
    # faiss's Python wrapper keeps `quantizer` referenced by `index` (add_ref_in_constructor)
    return RetrievalIndex(index=index, kind="ivf", n=n, d=d, nlist=nlist, nprobe=index.nprobe)


def same_identity(pattern: str | re.Pattern[str]) -> Exclude:
    """An ``exclude(query_id, train_id)`` that is True when both ids carry the same identity key.

    The key is the first match of ``pattern`` in the id (group 1 if the pattern has a group,
    else the whole match), e.g. ``same_identity(r"id_\\d+")`` for DeepFashion person folders.
    Ids where the pattern does not match have no identity and are never excluded by it.
    """
    rx = re.compile(pattern)

    def key(s: str) -> str | None:
        m = rx.search(s)
        if m is None:
            return None
        return m.group(1) if rx.groups else m.group(0)

    def exclude(query_id: str, train_id: str) -> bool:
        kq = key(query_id)
        return kq is not None and kq == key(train_id)

    exclude.pattern = rx.pattern  # type: ignore[attr-defined]
    return exclude


def query_topk(
    index: RetrievalIndex,
    queries: np.ndarray,
    k: int,
    *,
    query_ids: Sequence[str],
    train_ids: Sequence[str],
    exclude: Exclude | None = None,
) -> tuple[list[list[str]], np.ndarray]:
    """Top-``k`` training ids for each query by descending cosine similarity.

    A train item is never returned for a query with the same id (the query itself), nor when
    ``exclude(query_id, train_id)`` is True. Candidates are searched ``k + 1`` deep (deeper with
    ``exclude``) and filtered; queries left short are searched again with the depth doubled
    until they have ``k`` survivors or the index is exhausted. Equal scores are ordered by train
    position, and the search is widened while a tie straddles the search depth, so results do not
    depend on faiss's internal tie order.

    Returns ``(ids, scores)``: ``ids[i]`` is a list of train ids, ``scores`` a float32
    ``(n_queries, k)`` array of their cosine similarities. A query with fewer than ``k`` eligible
    train items gets only those: its list is shorter and the rest of its score row is NaN. For
    an IVF index only the ``nprobe`` probed lists are searched, so "eligible" means found there.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    q = normalize(queries)
    if q.shape[1] != index.d:
        raise ValueError(f"query dimension {q.shape[1]} != index dimension {index.d}")
    if len(query_ids) != q.shape[0]:
        raise ValueError(f"{len(query_ids)} query_ids for {q.shape[0]} queries")
    if len(train_ids) != index.n:
        raise ValueError(f"{len(train_ids)} train_ids for an index of {index.n} items")
    train_ids = list(train_ids)
    if len(set(train_ids)) != len(train_ids):
        raise ValueError("train_ids must be unique")

    nq, n = q.shape[0], index.n
    out_ids: list[list[str]] = [[] for _ in range(nq)]
    scores = np.full((nq, k), np.nan, dtype=np.float32)
    depth = min(n, 2 * k + 1 if exclude is not None else k + 1)
    pending = np.arange(nq)
    while pending.size:
        dist, lab = index.index.search(q[pending], depth)
        retry = []
        for row, qi in enumerate(pending):
            labels, sims = lab[row], dist[row]
            valid = labels >= 0
            exhausted = depth >= n or not valid.all()
            labels, sims = labels[valid], sims[valid]
            order = np.lexsort((labels, -sims))  # descending score, then train position
            qid = query_ids[qi]
            kept_l: list[int] = []
            kept_s: list[float] = []
            for j in order:
                tid = train_ids[labels[j]]
                if tid == qid or (exclude is not None and exclude(qid, tid)):
                    continue
                kept_l.append(int(labels[j]))
                kept_s.append(float(sims[j]))
                if len(kept_l) == k:
                    break
            complete = len(kept_l) == k and (sims.size == 0 or sims.min() < kept_s[-1])
            if complete or exhausted:
                out_ids[qi] = [train_ids[t] for t in kept_l]
                scores[qi, : len(kept_s)] = kept_s
            else:
                retry.append(qi)
        pending = np.asarray(retry, dtype=np.int64)
        depth = min(n, depth * 2)
    return out_ids, scores
