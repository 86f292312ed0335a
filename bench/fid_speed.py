"""Benchmark: our FID against torch-fidelity and pytorch-fid on the same folders and weights.

Writes two folders of N random-field PNGs (256 x 256 by default) and one stand-in weights file
(torch-fidelity's InceptionV3 with random He-normal convolutions: the real architecture, so the
real cost; no number here is a metric value), then times, each from the folders to the number:

* ``cocosnet``: :func:`cocosnet.metrics.fid.fid_folders` under each protocol;
* ``torch-fidelity``: ``torch_fidelity.calculate_metrics(fid=True)`` (no cache);
* ``pytorch-fid``: ``pytorch_fid.fid_score.calculate_fid_given_paths`` (its download replaced
  by the same weights).

Prints each time as a ratio to torch-fidelity's, measured in the same run, and the FID values
(ours under each protocol must equal its library's). Writes bench/results/fid_speed.json.
Run it alone on the machine: the load average is recorded with the numbers.

    python bench/fid_speed.py                # 2 x 48 images, as the issue measured
    python bench/fid_speed.py --images 96
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import torch_machine  # bench/machine.py, beside this script
from PIL import Image
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from cocosnet import weights
from cocosnet.metrics.fid import WEIGHTS_NAME, fid_folders

RESULTS = Path(__file__).resolve().parent / "results" / "fid_speed.json"
FILENAME = "weights-inception-2015-12-05-6726825d.pth"


class _Unloaded(FeatureExtractorInceptionV3):
    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None


def standin_weights(path: Path) -> dict[str, torch.Tensor]:
    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    state = _Unloaded("bench", ["2048"], feature_extractor_weights_path=empty).state_dict()
    g = torch.Generator().manual_seed(0)
    for key, value in state.items():
        if key.endswith("conv.weight") or key == "fc.weight":
            fan_in = math.prod(value.shape[1:])
            value.copy_(torch.randn(value.shape, generator=g) * (2 / fan_in) ** 0.5)
    torch.save(state, path)
    return state


def write_folder(folder: Path, n: int, size: int, seed: int) -> None:
    """Smooth random colour fields (a low-resolution noise upsampled), as PNG."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC)
        img.save(folder / f"{i:04d}.png")


def timed(fn) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run(n: int, size: int, batch: int, work: Path) -> list[dict]:
    real, fake = work / "real", work / "fake"
    write_folder(real, n, size, seed=0)
    write_folder(fake, n, size, seed=1)
    wdir = work / "weights"
    wdir.mkdir()
    state = standin_weights(work / FILENAME)
    # Register the stand-in under its own digest (the published one is the real file's).
    spec = weights.spec(WEIGHTS_NAME)
    weights.REGISTRY[WEIGHTS_NAME] = dataclasses.replace(spec, sha256=None, sha256_prefix=None)
    weights.add(WEIGHTS_NAME, work / FILENAME, wdir)

    def ours(protocol: str):
        return lambda: fid_folders(real, fake, wdir, batch_size=batch, protocol=protocol)["fid"]

    def torch_fidelity():
        import torch_fidelity as tf

        metrics = tf.calculate_metrics(
            input1=str(fake), input2=str(real), fid=True, cuda=False, batch_size=batch,
            feature_extractor_weights_path=str(work / FILENAME), verbose=False, cache=False,
        )  # fmt: skip
        return metrics["frechet_inception_distance"]

    def pytorch_fid():
        from pytorch_fid import fid_score
        from pytorch_fid import inception as pf

        pf.load_state_dict_from_url = lambda *a, **k: state
        return fid_score.calculate_fid_given_paths(
            [str(real), str(fake)], batch, "cpu", 2048, num_workers=0
        )

    rows = []
    for name, fn in (
        ("torch-fidelity", torch_fidelity),
        ("cocosnet torch_fidelity protocol", ours("torch_fidelity")),
        ("pytorch-fid", pytorch_fid),
        ("cocosnet pytorch_fid protocol", ours("pytorch_fid")),
    ):
        seconds, value = timed(fn)
        rows.append({"method": name, "seconds": seconds, "fid": float(value)})
        print(f"{name:34s} {seconds:7.1f} s  FID {value:.6f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48, help="per folder")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(args.images, args.size, args.batch, Path(tmp))
    base = rows[0]["seconds"]
    for r in rows:
        r["time_ratio_vs_torch_fidelity"] = r["seconds"] / base
        print(f"{r['method']:34s} {r['time_ratio_vs_torch_fidelity']:.2f}x torch-fidelity's time")
    result = {
        "machine": torch_machine("cpu"),
        "note": "random-init InceptionV3 of the real architecture: timing only",
        "images_per_folder": args.images,
        "size": args.size,
        "batch": args.batch,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
