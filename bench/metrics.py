"""Benchmark: images per second of each evaluation metric on this machine (CPU by default).

Runs every metric on the same N synthetic 256x256 image pairs (smooth random fields with random
label maps) and reports images/s for the whole metric (feature extraction + statistics +
distance); FID's Frechet distance (sqrtm of a 2048 x 2048 matrix, once per evaluation) is timed
apart. Pretrained networks are replaced by randomly initialised ones of the same architecture
(torch-fidelity's InceptionV3, the Caffe-layout VGG19): they cost the same, and no number here is
a metric value. Writes bench/results/metrics.json (or --out).

    python bench/metrics.py                 # 32 images at 256x256
    python bench/metrics.py --images 64 --size 256
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import torch_machine  # bench/machine.py, beside this script
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from cocosnet.metrics.fid import FeatureStats, frechet_distance
from cocosnet.metrics.semantic import SemanticConsistency
from cocosnet.metrics.style import StyleRelevance
from cocosnet.metrics.swd import SWDStats, swd
from cocosnet.models.vgg import VGG19

RESULTS = Path(__file__).resolve().parent / "results" / "metrics.json"
CLASSES = 8


class _RandomInception(FeatureExtractorInceptionV3):
    """torch-fidelity's InceptionV3 keeping its random init (timing only)."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None


def _inception() -> FeatureExtractorInceptionV3:
    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    return _RandomInception("bench", ["2048"], feature_extractor_weights_path=empty).eval()


def _data(n: int, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def field(channels: int) -> torch.Tensor:
        coarse = torch.rand(n, channels, size // 16, size // 16, generator=g)
        return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)

    labels = field(CLASSES).argmax(1)
    return {
        "real": field(3).clamp(0, 1) * 2 - 1,
        "fake": field(3).clamp(0, 1) * 2 - 1,
        "exemplar": field(3).clamp(0, 1) * 2 - 1,
        "label": labels,
        "exemplar_label": labels.flip(-1),
    }


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(n: int, size: int, batch: int) -> list[dict]:
    data = _data(n, size)
    rows = []

    def fid():
        model = _inception()
        stats = {"real": FeatureStats(), "fake": FeatureStats()}
        with torch.no_grad():
            for key in stats:
                for s in range(0, n, batch):
                    feats = model(_uint8(data[key][s : s + batch]))[0].double()
                    stats[key].update(feats.numpy())
        fid_stats.update(stats)

    fid_stats: dict[str, FeatureStats] = {}

    def fid_distance():  # a fixed cost per evaluation: sqrtm of a 2048 x 2048 matrix
        frechet_distance(*fid_stats["real"].mean_cov(), *fid_stats["fake"].mean_cov())

    def swd_metric():
        sets = {k: SWDStats(size, seed=i) for i, k in enumerate(("real", "fake"))}
        for key, st in sets.items():
            for s in range(0, n, batch):
                st.update(_uint8(data[key][s : s + batch]).permute(0, 2, 3, 1).numpy())
        swd(sets["real"], sets["fake"])

    vgg = VGG19("caffe").eval().requires_grad_(False)

    def semantic():
        meter = SemanticConsistency(vgg, CLASSES)
        with torch.no_grad():
            for s in range(0, n, batch):
                sl = slice(s, s + batch)
                meter.update(data["fake"][sl], data["real"][sl], data["label"][sl])
        meter.result()

    def style():
        meter = StyleRelevance(vgg, CLASSES)
        with torch.no_grad():
            for s in range(0, n, batch):
                sl = slice(s, s + batch)
                meter.update(
                    data["fake"][sl],
                    data["exemplar"][sl],
                    data["label"][sl],
                    data["exemplar_label"][sl],
                )
        meter.result()

    for name, fn in (
        ("fid", fid),
        ("swd", swd_metric),
        ("semantic_consistency", semantic),
        ("style_relevance", style),
    ):
        seconds = _timed(fn)
        rows.append(
            {
                "metric": name,
                "images": n,
                "size": size,
                "seconds": seconds,
                "images_per_s": n / seconds,
            }
        )
        print(f"{name:22s} {n} images {size}x{size}: {seconds:7.1f} s, {n / seconds:6.2f} img/s")
    distance = _timed(fid_distance)
    print(
        f"fid: Frechet distance of the two 2048-d Gaussians (once per evaluation): {distance:.1f} s"
    )
    return rows, distance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows, distance = run(args.images, args.size, args.batch)
    fastest = max(rows, key=lambda r: r["images_per_s"])
    for r in rows:  # relative to the fastest metric, measured in the same run
        r["time_ratio_vs_fastest"] = fastest["images_per_s"] / r["images_per_s"]
        print(
            f"{r['metric']:22s} {r['time_ratio_vs_fastest']:.2f}x the time of {fastest['metric']}"
        )
    result = {
        "machine": torch_machine("cpu"),
        "note": "random-init networks of the real architectures: timing only",
        "results": rows,
        "fid_frechet_distance_seconds": distance,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
