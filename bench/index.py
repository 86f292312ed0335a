"""Benchmark: exemplar-retrieval index, exact (IndexFlatIP) vs IVF (IndexIVFFlat).

For each train size it draws random float32 vectors (default 512-d, standard normal; or
``--data clustered``: Gaussian blobs, closer to real image features), builds both indexes with
``cocosnet.retrieval.index.build_index`` and queries ``--queries`` new vectors top-``--k`` with
``query_topk`` (self/identity filtering included). Reports build s, query s, queries/s, IVF
recall@k against the exact result, and IVF/exact time ratios; prints a table and writes
bench/results/index.json atomically.

    python bench/index.py                                   # 10k and 100k
    python bench/index.py --sizes 10000 100000 1000000      # + 1M (about 2 GiB of vectors)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import faiss
import numpy as np

from cocosnet.retrieval.index import build_index, query_topk

RESULTS = Path(__file__).resolve().parent / "results" / "index.json"


def make_data(n: int, nq: int, d: int, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return (
            rng.standard_normal((n, d), dtype=np.float32),
            rng.standard_normal((nq, d), dtype=np.float32),
        )
    n_centres = max(1, n // 100)
    centres = rng.standard_normal((n_centres, d), dtype=np.float32)

    def draw(m: int) -> np.ndarray:
        x = rng.standard_normal((m, d), dtype=np.float32)
        x *= 0.5
        x += centres[rng.integers(0, n_centres, m)]
        return x

    return draw(n), draw(nq)


def bench_size(n: int, args: argparse.Namespace) -> dict:
    train, queries = make_data(n, args.queries, args.dim, args.data, args.seed)
    train_ids = [f"train/{i:07d}" for i in range(n)]
    query_ids = [f"query/{i:07d}" for i in range(args.queries)]
    row: dict = {"n": n, "d": args.dim, "queries": args.queries, "k": args.k}
    results = {}
    for kind in ("exact", "ivf"):
        t0 = time.perf_counter()
        idx = build_index(train, kind=kind, nprobe=args.nprobe, seed=args.seed)
        t1 = time.perf_counter()
        ids, _ = query_topk(idx, queries, args.k, query_ids=query_ids, train_ids=train_ids)
        t2 = time.perf_counter()
        results[kind] = ids
        row[kind] = {
            "build_s": t1 - t0,
            "query_s": t2 - t1,
            "qps": args.queries / (t2 - t1),
        }
        if kind == "ivf":
            row[kind].update(nlist=idx.nlist, nprobe=idx.nprobe)
        del idx
    row["ivf_recall"] = float(
        np.mean(
            [
                len(set(a) & set(e)) / args.k
                for a, e in zip(results["ivf"], results["exact"], strict=True)
            ]
        )
    )
    row["build_ratio_ivf_over_exact"] = row["ivf"]["build_s"] / row["exact"]["build_s"]
    row["query_ratio_ivf_over_exact"] = row["ivf"]["query_s"] / row["exact"]["query_s"]
    return row


def print_table(rows: list[dict], k: int) -> None:
    head = (
        f"{'n':>9} {'index':>6} {'nlist':>6} {'build s':>9} {'query s':>9} {'q/s':>10} "
        f"{'recall@' + str(k):>10} {'build ivf/ex':>13} {'query ivf/ex':>13}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        for kind in ("exact", "ivf"):
            m = r[kind]
            extra = (
                f"{r['ivf_recall']:>10.4f} {r['build_ratio_ivf_over_exact']:>13.2f} "
                f"{r['query_ratio_ivf_over_exact']:>13.3f}"
                if kind == "ivf"
                else f"{'':>10} {'':>13} {'':>13}"
            )
            nlist = str(m.get("nlist", "-"))
            print(
                f"{r['n']:>9} {kind:>6} {nlist:>6} {m['build_s']:>9.3f} {m['query_s']:>9.3f} "
                f"{m['qps']:>10.0f} {extra}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--data", choices=["gaussian", "clustered"], default="gaussian")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)  # a script, not the library: fixing it here is fine

    rows = [bench_size(n, args) for n in args.sizes]
    print_table(rows, args.k)
    payload = {
        "benchmark": "retrieval index: exact IndexFlatIP vs IndexIVFFlat (cosine)",
        "data": args.data,
        "threads": args.threads,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
