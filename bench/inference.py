"""Benchmark: end-to-end inference (correspondence + translation) of the paper ADE20k preset.

Compares, in the same run on the same machine:

* ``baseline``: eager, float32, the ``naive`` warp (materialised correlation), autograd off only
  through ``torch.no_grad``;
* ``fused``: ``torch.inference_mode``, the fused warp, float32;
* ``fused_bf16``: the same under bf16 autocast (where the CPU has avx512_bf16 / AMX this is
  where matrix products get faster), with its quality cost: max/mean absolute difference and PSNR
  of the output against the float32 result;
* ``fused_bf16_cl``: the same with channels-last tensors and weights.

Also counts the model's FLOPs per image (torch.utils.flop_counter) and measures this machine's
float32 and bf16 matmul rates, so the floor (FLOPs / rate) is printed beside each latency.
Random-init weights of the real architecture (timing and numerical deviation only). Writes
bench/results/inference.json (or --out).

    python bench/inference.py                  # batch 1, 3 timed runs each
    python bench/inference.py --batch 1 8 --runs 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch
from machine import torch_machine  # bench/machine.py, beside this script
from torch.utils.flop_counter import FlopCounterMode

from cocosnet.config import model_config
from cocosnet.models.factory import build_correspondence, build_translation

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"


def _inputs(cfg, batch: int):
    g = torch.Generator().manual_seed(0)
    size = cfg.image_size
    ids = torch.randint(0, cfg.semantic_nc, (batch, size // 16, size // 16), generator=g)
    ids = ids.repeat_interleave(16, 1).repeat_interleave(16, 2)
    label = torch.nn.functional.one_hot(ids, cfg.semantic_nc).permute(0, 3, 1, 2).float()
    exemplar = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    return label, exemplar, label.flip(-1)


def _nets(impl: str):
    cfg = model_config({"preset": "paper_ade20k", "warp_impl": impl})
    torch.manual_seed(0)
    return cfg, build_correspondence(cfg).eval(), build_translation(cfg).eval()


def _forward(corr, gen, label, exemplar, ex_label):
    torch.manual_seed(0)  # the maskmix noise is not used here: the exemplar mask is given
    warp = corr(label, exemplar, ex_label)
    return gen(label, warp.warped)


def _run(variant: str, batch: int, runs: int) -> tuple[dict, torch.Tensor]:
    impl = "naive" if variant == "baseline" else "fused"
    cfg, corr, gen = _nets(impl)
    label, exemplar, ex_label = _inputs(cfg, batch)
    if variant.endswith("_cl"):  # channels-last convolutions (oneDNN's preferred layout)
        corr, gen = (
            corr.to(memory_format=torch.channels_last),
            gen.to(memory_format=torch.channels_last),
        )
        label, exemplar, ex_label = (
            x.contiguous(memory_format=torch.channels_last) for x in (label, exemplar, ex_label)
        )
    mode = torch.no_grad() if variant == "baseline" else torch.inference_mode()
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if "bf16" in variant
        else contextlib.nullcontext()
    )
    times, out = [], None
    with mode, autocast:
        for i in range(runs + 1):  # the first run warms up
            start = time.perf_counter()
            out = _forward(corr, gen, label, exemplar, ex_label)
            if i:
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "variant": variant,
        "batch": batch,
        "s_per_batch": median,
        "s_per_image": median / batch,
        "all_s": times,
    }, out.float()


def count_flops() -> int:
    cfg, corr, gen = _nets("naive")
    label, exemplar, ex_label = _inputs(cfg, 1)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _forward(corr, gen, label, exemplar, ex_label)
    return counter.get_total_flops()


def matmul_rate(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    flops = count_flops()
    rates = {"float32": matmul_rate(torch.float32), "bfloat16": matmul_rate(torch.bfloat16)}
    print(
        f"FLOPs per image: {flops / 1e9:.1f} G; matmul GFLOP/s fp32 {rates['float32'] / 1e9:.0f}"
        f", bf16 {rates['bfloat16'] / 1e9:.0f}"
    )
    rows = []
    for batch in args.batch:
        reference, baseline = None, None
        for variant in ("baseline", "fused", "fused_bf16", "fused_bf16_cl"):
            row, out = _run(variant, batch, args.runs)
            if reference is None:
                reference, baseline = out, row
            diff = (out - reference).abs()
            mse = float((diff**2).mean())
            row |= {
                "max_abs_diff_vs_baseline": float(diff.max()),
                "mean_abs_diff_vs_baseline": float(diff.mean()),
                # outputs span [-1, 1]: peak-to-peak 2
                "psnr_db_vs_baseline": float("inf")
                if mse == 0
                else 10 * torch.log10(torch.tensor(4.0 / mse)).item(),
                "floor_s_per_image": flops / rates["bfloat16" if "bf16" in variant else "float32"],
            }
            rows.append(row)
            row["speedup_vs_baseline"] = baseline["s_per_image"] / row["s_per_image"]
            print(
                f"B{batch} {variant:11s} {row['s_per_image']:6.2f} s/img "
                f"(x{row['speedup_vs_baseline']:.2f} vs baseline), "
                f"PSNR {row['psnr_db_vs_baseline']:.1f} dB, floor "
                f"{row['floor_s_per_image']:.2f} s"
            )
    result = {
        "machine": torch_machine("cpu"),
        "preset": "paper_ade20k",
        "note": "random-init weights of the real architecture: timing and numerical deviation",
        "flops_per_image": flops,
        "matmul_flops_per_s": rates,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
