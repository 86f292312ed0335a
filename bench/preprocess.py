"""Benchmark: the edges stage against a bare OpenCV loop over the same files.

Builds (or reuses) a demo dataset with stages.prepare in a temporary directory, then times, in
the same run and over the same PNG files:

* ``bare opencv``: ``cv2.imread`` (grayscale) -> ``cv2.GaussianBlur`` (same sigma) ->
  ``cv2.Canny(100, 200)`` -> ``cv2.imwrite``, a plain Python loop in this process;
* ``edges stage``: :func:`cocosnet.preprocess.edges.edge_maps_for_dataset` with the opencv
  backend (same sigma and thresholds) at 1 and 2 workers, and with the skimage backend (the
  official CelebA-HQ choice) at 1 worker. It also reads and validates the manifest, decodes with
  Pillow through ``read_image`` (checks, EXIF, RGB), converts to gray with Pillow, and writes each
  PNG atomically (temporary file, fsync, rename); 2 workers include starting the spawn pool.

Each configuration runs ``--repeats`` times round-robin after one untimed warm-up pass (page
cache); the median is reported as images/s and as a ratio to the bare loop. Prints a table and
writes bench/results/preprocess.json.

    python bench/preprocess.py                          # 900 + 100 images at 128x128
    python bench/preprocess.py --n-train 90 --n-val 10 --size 64 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `stages` is not an installed package
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in the timings' output

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from cocosnet.config import EdgesConfig  # noqa: E402
from cocosnet.data.manifest import inside_root, read_manifest  # noqa: E402
from cocosnet.data.prepare import MANIFEST  # noqa: E402
from cocosnet.files import write_text_atomic  # noqa: E402
from cocosnet.preprocess.edges import OPENCV_DEFAULT_THRESHOLDS, edge_maps_for_dataset  # noqa: E402
from stages.prepare import main as prepare_stage  # noqa: E402

RESULTS = REPO / "bench" / "results" / "preprocess.json"


def build_dataset(work: Path, n_train: int, n_val: int, size: int, seed: int) -> tuple[Path, float]:
    """ROOT/demo under ``work``, reused when a manifest with the right row count is there."""
    dataset = work / "data" / "demo"
    if (dataset / MANIFEST).is_file():
        if len(read_manifest(dataset / MANIFEST)) == n_train + n_val:
            return dataset, 0.0
        shutil.rmtree(work / "data")
    work.mkdir(parents=True, exist_ok=True)
    params = work / "params.yaml"
    params.write_text(
        f"data:\n  root: {work / 'data'}\n"
        f"  demo: {{n_train: {n_train}, n_val: {n_val}, size: {size}, seed: {seed}}}\n"
    )
    start = time.perf_counter()
    prepare_stage("demo", str(params))
    return dataset, time.perf_counter() - start


def bare_opencv(paths: list[tuple[str, str]], sigma: float) -> None:
    low, high = OPENCV_DEFAULT_THRESHOLDS
    for src, dst in paths:
        gray = cv2.imread(src, cv2.IMREAD_GRAYSCALE)
        if sigma > 0:
            gray = cv2.GaussianBlur(gray, (0, 0), sigmaX=sigma, sigmaY=sigma)
        if not cv2.imwrite(dst, cv2.Canny(gray, low, high)):
            raise RuntimeError(f"cv2.imwrite failed for {dst}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=900)
    parser.add_argument("--n-val", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="dataset/output directory")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    tag = f"n{args.n_train}-v{args.n_val}-s{args.size}-seed{args.seed}"
    work = args.work or Path(tempfile.gettempdir()) / "cocosnet-bench-preprocess" / tag
    dataset, build_s = build_dataset(work, args.n_train, args.n_val, args.size, args.seed)
    rows = read_manifest(dataset / MANIFEST, root=dataset)
    n = len(rows)
    print(f"dataset {dataset}: {n} images " + (f"built in {build_s:.1f}s" if build_s else "reused"))

    outputs = work / "out"
    bare_out = outputs / "bare"
    bare_paths = [
        (str(inside_root(dataset, r["image"])), str(bare_out / f"{r['id']}.png")) for r in rows
    ]

    def make(name: str, backend: str, workers: int):
        cfg = EdgesConfig(backend=backend, sigma=args.sigma)
        out_dir = outputs / name.replace(" ", "_")

        def run() -> None:
            edge_maps_for_dataset(dataset, out_dir, cfg, workers=workers)

        return {"name": name, "backend": backend, "workers": workers, "run": run, "dir": out_dir}

    configs = [
        {
            "name": "bare opencv loop",
            "backend": "opencv",
            "workers": 1,
            "run": lambda: bare_opencv(bare_paths, args.sigma),
            "dir": bare_out,
        },
        make("edges stage opencv w1", "opencv", 1),
        make("edges stage opencv w2", "opencv", 2),
        make("edges stage skimage w1", "skimage", 1),
    ]
    times: dict[str, list[float]] = {c["name"]: [] for c in configs}
    for c in configs:
        c["dir"].mkdir(parents=True, exist_ok=True)
    bare_opencv(bare_paths, args.sigma)  # warm-up: page cache, cv2 codecs
    for _ in range(args.repeats):
        for c in configs:
            shutil.rmtree(c["dir"])
            c["dir"].mkdir(parents=True)
            start = time.perf_counter()
            c["run"]()
            times[c["name"]].append(time.perf_counter() - start)
            written = len(list(c["dir"].glob("*.png")))
            if written != n:
                raise RuntimeError(f"{c['name']}: wrote {written} files, expected {n}")

    # The opencv stage must agree with the bare loop up to Pillow-vs-OpenCV gray conversion.
    agree = [
        np.mean(
            cv2.imread(str(bare_out / f"{r['id']}.png"), cv2.IMREAD_GRAYSCALE)
            == cv2.imread(str(configs[1]["dir"] / f"{r['id']}.png"), cv2.IMREAD_GRAYSCALE)
        )
        for r in rows[:50]
    ]

    bare_median = statistics.median(times[configs[0]["name"]])
    results = []
    for c in configs:
        med = statistics.median(times[c["name"]])
        results.append(
            {
                "name": c["name"],
                "backend": c["backend"],
                "workers": c["workers"],
                "seconds_median": med,
                "seconds_all": times[c["name"]],
                "images_per_s": n / med,
                "throughput_ratio_vs_bare": bare_median / med,
            }
        )

    print(f"\n{'configuration':<24} {'median s':>9} {'images/s':>10} {'vs bare':>8}")
    for r in results:
        print(
            f"{r['name']:<24} {r['seconds_median']:9.3f} {r['images_per_s']:10.1f} "
            f"{r['throughput_ratio_vs_bare']:7.2f}x"
        )
    print(f"opencv stage vs bare loop: {100 * np.mean(agree):.2f}% identical pixels (50 images)")

    import skimage
    from PIL import __version__ as pillow_version

    report = {
        "benchmark": "edges stage vs bare OpenCV loop (Canny edge maps, PNG in/out)",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "opencv": cv2.__version__,
            "opencv_threads": cv2.getNumThreads(),
            "scikit_image": skimage.__version__,
            "numpy": np.__version__,
            "pillow": pillow_version,
        },
        "dataset": {
            "images": n,
            "n_train": args.n_train,
            "n_val": args.n_val,
            "size": args.size,
            "seed": args.seed,
            "build_seconds": build_s or None,
        },
        "sigma": args.sigma,
        "opencv_thresholds": list(OPENCV_DEFAULT_THRESHOLDS),
        "repeats": args.repeats,
        "opencv_stage_pixel_agreement_with_bare": float(np.mean(agree)),
        "rows": results,
    }
    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
