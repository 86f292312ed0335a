"""Tests for the exemplar-retrieval index (cocosnet.retrieval.index)."""

import numpy as np
import pytest

from cocosnet.retrieval.index import (
    build_index,
    default_nlist,
    normalize,
    query_topk,
    same_identity,
)


def brute_topk(train, queries, k, query_ids, train_ids, exclude=None):
    """Reference: float64 cosine, argsort descending (ties by position), filtered."""
    t = train / np.linalg.norm(train, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ t.astype(np.float64).T
    out, out_s = [], []
    for i, qid in enumerate(query_ids):
        order = np.lexsort((np.arange(len(train_ids)), -sims[i]))
        keep = [
            j
            for j in order
            if train_ids[j] != qid and not (exclude is not None and exclude(qid, train_ids[j]))
        ][:k]
        out.append([train_ids[j] for j in keep])
        out_s.append(sims[i, keep])
    return out, out_s


@pytest.fixture(scope="module")
def random_data():
    rng = np.random.default_rng(3)  # seed checked for no near-ties, see the precondition below
    train = rng.standard_normal((500, 64)).astype(np.float32)
    new = rng.standard_normal((50, 64)).astype(np.float32)
    picked = rng.choice(500, size=50, replace=False)
    queries = np.concatenate([train[picked], new])
    train_ids = [f"train/{i:04d}.jpg" for i in range(500)]
    query_ids = [train_ids[i] for i in picked] + [f"val/{i:04d}.jpg" for i in range(50)]
    return train, queries, train_ids, query_ids


def test_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float64)
    y = normalize(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    assert x[0, 0] == 3.0  # input untouched
    with pytest.raises(ValueError, match="NaN"):
        normalize(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        normalize(np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="2-D"):
        normalize(np.ones(3))


def test_exact_matches_brute_force(random_data):
    train, queries, train_ids, query_ids = random_data
    k = 10
    ref_ids, ref_s = brute_topk(train, queries, k + 1, query_ids, train_ids)
    # precondition: no near-ties within the top k + 1 (well-separated data, chosen seed)
    assert min(np.min(-np.diff(s)) for s in ref_s) > 1e-5
    ref_ids, ref_s = [r[:k] for r in ref_ids], [s[:k] for s in ref_s]
    idx = build_index(train, kind="exact")
    assert idx.kind == "exact" and idx.n == 500
    ids, scores = query_topk(idx, queries, k, query_ids=query_ids, train_ids=train_ids)
    assert ids == ref_ids
    assert scores.shape == (100, k) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, np.stack(ref_s), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # the first 50 queries are train items: never matched to themselves
    for qid, row in zip(query_ids[:50], ids[:50], strict=True):
        assert qid not in row


def test_self_exclusion(random_data):
    train, _, train_ids, _ = random_data
    idx = build_index(train, kind="exact")
    ids, scores = query_topk(idx, train, 5, query_ids=train_ids, train_ids=train_ids)
    assert all(len(r) == 5 and tid not in r for tid, r in zip(train_ids, ids, strict=True))
    assert np.all(scores < 0.999)


def test_identity_exclusion_and_widening():
    rng = np.random.default_rng(1)
    n_id, per = 15, 20
    centres = rng.standard_normal((n_id, 32))
    # items of one identity are very similar, so the top of every ranking is its own identity
    train = (np.repeat(centres, per, axis=0) + 0.05 * rng.standard_normal((n_id * per, 32))).astype(
        np.float32
    )
    train_ids = [f"MEN/Tees/id_{i // per:08d}/{i % per:02d}_1_front.jpg" for i in range(len(train))]
    excl = same_identity(r"id_\d+")
    assert excl("a/id_00000001/x.jpg", "b/id_00000001/y.jpg")
    assert not excl("a/id_00000001/x.jpg", "b/id_00000002/y.jpg")
    assert not excl("no_identity.jpg", "no_identity_either.jpg")
    k = 8  # first search depth 2k+1 < per + k: the search must widen past the identity
    idx = build_index(train, kind="exact")
    ids, _ = query_topk(idx, train, k, query_ids=train_ids, train_ids=train_ids, exclude=excl)
    ref, _ = brute_topk(train, train, k, train_ids, train_ids, exclude=excl)
    assert ids == ref
    for qid, row in zip(train_ids, ids, strict=True):
        assert len(row) == k and not any(excl(qid, t) for t in row)
    # group-capturing pattern: the key is group 1
    excl2 = same_identity(r"id_(\d+)/")
    assert excl2("x/id_7/a.jpg", "y/id_7/b.jpg") and not excl2("x/id_7/a.jpg", "y/id_8/b.jpg")


def test_k_larger_than_eligible():
    rng = np.random.default_rng(2)
    train = rng.standard_normal((10, 8)).astype(np.float32)
    train_ids = [f"id_{i // 2}/{i}.jpg" for i in range(10)]
    idx = build_index(train, kind="exact")
    ids, scores = query_topk(idx, train[:3], 20, query_ids=train_ids[:3], train_ids=train_ids)
    assert [len(r) for r in ids] == [9, 9, 9]
    assert np.isfinite(scores[:, :9]).all() and np.isnan(scores[:, 9:]).all()
    ids, scores = query_topk(
        idx,
        train[:3],
        20,
        query_ids=train_ids[:3],
        train_ids=train_ids,
        exclude=same_identity(r"id_\d+"),
    )
    assert [len(r) for r in ids] == [8, 8, 8]
    assert np.isnan(scores[:, 8:]).all()


def test_ties_broken_by_train_position():
    rng = np.random.default_rng(3)
    v = rng.standard_normal(16).astype(np.float32)
    others = rng.standard_normal((50, 16)).astype(np.float32)
    train = np.concatenate([others[:20], np.tile(v, (30, 1)), others[20:]])
    train_ids = [f"t{i}" for i in range(len(train))]
    idx = build_index(train, kind="exact")
    ids, scores = query_topk(idx, v[None], 5, query_ids=["q"], train_ids=train_ids)
    assert ids == [[f"t{i}" for i in range(20, 25)]]
    np.testing.assert_allclose(scores, 1.0, atol=1e-6)


def test_errors(random_data):
    train, queries, train_ids, query_ids = random_data
    idx = build_index(train, kind="exact")
    with pytest.raises(ValueError, match="k must be"):
        query_topk(idx, queries, 0, query_ids=query_ids, train_ids=train_ids)
    with pytest.raises(ValueError, match="dimension"):
        query_topk(idx, queries[:, :32], 5, query_ids=query_ids, train_ids=train_ids)
    with pytest.raises(ValueError, match="query_ids"):
        query_topk(idx, queries, 5, query_ids=query_ids[:3], train_ids=train_ids)
    with pytest.raises(ValueError, match="train_ids"):
        query_topk(idx, queries, 5, query_ids=query_ids, train_ids=train_ids[:3])
    with pytest.raises(ValueError, match="unique"):
        query_topk(idx, queries, 5, query_ids=query_ids, train_ids=["x"] * 500)
    with pytest.raises(ValueError, match="kind"):
        build_index(train, kind="hnsw")  # type: ignore[arg-type]


def test_auto_kind_and_nlist():
    rng = np.random.default_rng(4)
    train = rng.standard_normal((400, 8)).astype(np.float32)
    assert build_index(train).kind == "exact"
    ivf = build_index(train, ivf_threshold=400)
    assert ivf.kind == "ivf" and ivf.nlist == default_nlist(400) == 10
    assert default_nlist(10) == 1 and default_nlist(10_000) == 256
    assert default_nlist(1_000_000) == 4000


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(5)
    n, d, c = 20_000, 64, 200
    centres = rng.standard_normal((c, d)).astype(np.float32)
    x = centres[rng.integers(0, c, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32)
    return x.astype(np.float32), [f"img{i:05d}" for i in range(n)]


def test_ivf_recall_on_clustered_data(clustered):
    x, ids = clustered
    exact = build_index(x, kind="exact")
    ivf = build_index(x, kind="ivf", nprobe=32, seed=0)
    assert ivf.kind == "ivf" and ivf.nlist == default_nlist(len(x)) and ivf.nprobe == 32
    qi = np.random.default_rng(6).choice(len(x), size=500, replace=False)
    q, qids = x[qi], [ids[i] for i in qi]
    e_ids, _ = query_topk(exact, q, 10, query_ids=qids, train_ids=ids)
    a_ids, a_s = query_topk(ivf, q, 10, query_ids=qids, train_ids=ids)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(a_ids, e_ids, strict=True)])
    print(f"IVF recall@10 vs exact (nlist={ivf.nlist}, nprobe={ivf.nprobe}): {recall:.4f}")
    assert recall >= 0.95
    assert all(qid not in row for qid, row in zip(qids, a_ids, strict=True))
    assert np.all(np.diff(a_s, axis=1) <= 0)


def test_deterministic_across_builds(clustered, random_data):
    x, ids = clustered
    q, qids = x[:200], ids[:200]
    runs = []
    for _ in range(2):
        idx = build_index(x, kind="ivf", seed=0)
        runs.append(query_topk(idx, q, 10, query_ids=qids, train_ids=ids))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    train, queries, train_ids, query_ids = random_data
    a = query_topk(
        build_index(train, kind="exact"), queries, 7, query_ids=query_ids, train_ids=train_ids
    )
    b = query_topk(
        build_index(train, kind="exact"), queries, 7, query_ids=query_ids, train_ids=train_ids
    )
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
