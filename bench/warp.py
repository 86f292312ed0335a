"""Benchmark: the softmax warp (eq. 4), naive (materialised correlation) vs fused (SDPA).

For each correspondence grid size and pass (forward, forward+backward) it runs each
implementation in a fresh subprocess and records the median wall time and the peak extra memory
(process RSS high-water mark above the RSS after the inputs were allocated; on CUDA, the peak
allocated memory). Descriptors are 3x3-unfolded 256-channel features (D = 2304) as the paper's
model, values are RGB (3 channels), batch 1. Prints a table with fused/naive ratios and writes
bench/results/warp.json.

    python bench/warp.py                       # 32, 64, 128 both; 256 fused only
    python bench/warp.py --sizes 32 64 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import CHILD_ENV  # bench/machine.py, beside this script

RESULTS = Path(__file__).resolve().parent / "results" / "warp.json"
NAIVE_MAX = 128  # the naive 256^2 correlation alone would be 16 GiB per image in float32


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def run_one(size: int, impl: str, backward: bool, repeats: int, device: str) -> dict:
    """Runs inside the child process: time and peak memory of one configuration."""
    import torch
    import torch.nn.functional as F

    from cocosnet.models.correspondence import l2_normalize
    from cocosnet.models.warp import softmax_warp

    torch.manual_seed(0)
    n = size * size

    def descriptors():
        x = torch.randn(1, 256, size, size, device=device)
        x = F.unfold(x, 3, padding=1)
        return l2_normalize(x - x.mean(1, keepdim=True), 1).transpose(1, 2).contiguous()

    q, k = descriptors(), descriptors()
    v = torch.rand(1, n, 3, device=device)
    if backward:
        q.requires_grad_(True)
        k.requires_grad_(True)
        v.requires_grad_(True)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    base_rss = _rss_kib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            out = softmax_warp(q, k, v, 100.0, impl)
            if backward:
                out.sum().backward()
        sync()
        times.append(time.perf_counter() - start)
        del out
        q.grad = k.grad = v.grad = None
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {
        "seconds_median": statistics.median(times),
        "seconds_all": times,
        "peak_extra_mib": max(peak_rss - base_rss, 0) / 1024,
    }
    if device == "cuda":
        result["peak_extra_mib"] = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--impls", nargs="+", default=["naive", "fused"], choices=["naive", "fused", "triton"]
    )  # triton: CUDA (the CPU only under TRITON_INTERPRET=1, far too slow to time)
    parser.add_argument(
        "--child", nargs=4, metavar=("SIZE", "IMPL", "BACKWARD", "REPEATS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        size, impl, backward, repeats = args.child
        res = run_one(int(size), impl, backward == "1", int(repeats), args.device)
        print(json.dumps(res))
        return

    import torch

    rows = []
    for size in args.sizes:
        for backward in (False, True):
            entry = {
                "grid": f"{size}x{size}",
                "positions": size * size,
                "pass": "forward+backward" if backward else "forward",
            }
            for impl in args.impls:
                if impl == "naive" and size > NAIVE_MAX:
                    entry[impl] = None
                    continue
                repeats = args.repeats if size <= 128 else 1
                cmd = [
                    sys.executable,
                    __file__,
                    "--device",
                    args.device,
                    "--child",
                    str(size),
                    impl,
                    "1" if backward else "0",
                    str(repeats),
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=CHILD_ENV)
                if proc.returncode != 0:
                    entry[impl] = {"error": proc.stderr.strip().splitlines()[-1]}
                else:
                    entry[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
            n, f = entry.get("naive"), entry.get("fused")
            if n and f and "error" not in n and "error" not in f:
                entry["time_ratio_fused_over_naive"] = f["seconds_median"] / n["seconds_median"]
                entry["memory_ratio_fused_over_naive"] = (
                    f["peak_extra_mib"] / n["peak_extra_mib"] if n["peak_extra_mib"] else None
                )
            rows.append(entry)
            print(_format_row(entry), flush=True)
    report = {
        "benchmark": "softmax warp, naive vs fused",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": args.device,
        },
        "descriptor_dim": 2304,
        "value_channels": 3,
        "batch": 1,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


def _format_row(e: dict) -> str:
    def cell(r):
        if r is None:
            return "      skipped      "
        if "error" in r:
            return f"error: {r['error'][:40]}"
        return f"{r['seconds_median']:8.3f}s {r['peak_extra_mib']:8.1f}MiB"

    ratio = e.get("time_ratio_fused_over_naive")
    mem = e.get("memory_ratio_fused_over_naive")
    tail = f"  time x{ratio:.2f}  mem x{mem:.3f}" if ratio and mem else ""
    return (
        f"{e['grid']:>8} {e['pass']:<17} naive {cell(e['naive'])} | fused {cell(e['fused'])}{tail}"
    )


if __name__ == "__main__":
    main()
