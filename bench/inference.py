"""Benchmark: end-to-end inference (correspondence + translation) of the paper ADE20k preset.

Variants, each in a fresh subprocess (so peak memory is its own), on the same machine in the
same run:

* ``baseline``: eager, float32, the ``naive`` warp (materialised correlation), ``torch.no_grad``,
  spectral norm recomputed per call, the one-hot label map convolved densely (no gathers,
  :mod:`cocosnet.models.label_conv`): the official implementation's way;
* ``fused``: :class:`cocosnet.models.runtime.GeneratorRuntime` in float32 (inference mode,
  spectral norm folded, fused warp);
* ``fused_cl``: the same, channels-last;
* ``bf16_autocast``: the float32 runtime under ``torch.autocast(bfloat16)`` (weights re-cast on
  every call);
* ``bf16_cl``: bfloat16 weights and activations, channels-last (norm statistics and the warp's
  softmax in float32);
* ``bf16_cl_compiled``: the same through ``torch.compile`` (the first call, which compiles, is
  reported separately);
* ``gram``, ``bf16_cl_gram``: ``fused`` and ``bf16_cl`` with the correlation as shifted Gram
  sums of the 256-d features (``model.warp_impl: gram``, :mod:`cocosnet.models.gram`).

For each: median latency per batch and per image, peak memory (CPU: the process's RSS
high-water mark; CUDA: peak allocated), and the output's max/mean absolute difference and PSNR
against the baseline. The floor is the model's FLOPs per image (torch.utils.flop_counter; dense for
the baseline, with the one-hot gathers for the others) over this machine's measured matmul rate
in the variant's precision. With ``--trained DIR`` the bfloat16 cost is also measured on a
trained export (the demo model) on real inputs: random weights give softer correlations than
trained ones.

Random-init weights of the real architecture (timing and numerical deviation only). Writes
bench/results/inference.json (or --out).

    python bench/inference.py                                   # CPU, batch 1, 2 timed runs
    python bench/inference.py --batch 1 8 --trained models/demo/export
    python bench/inference.py --device cuda --batch 1 8 --out bench/results/inference_cuda.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import peak_mib, torch_machine  # bench/machine.py, beside this script

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
VARIANTS = [
    "baseline",
    "fused",
    "fused_cl",
    "gram",
    "bf16_autocast",
    "bf16_cl",
    "bf16_cl_gram",
    "bf16_cl_compiled",
]


def _inputs(cfg, batch: int, device: str):
    g = torch.Generator().manual_seed(0)
    size = cfg.image_size
    ids = torch.randint(0, cfg.semantic_nc, (batch, size // 16, size // 16), generator=g)
    ids = ids.repeat_interleave(16, 1).repeat_interleave(16, 2)
    label = torch.nn.functional.one_hot(ids, cfg.semantic_nc).permute(0, 3, 1, 2).float()
    exemplar = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    return label.to(device), exemplar.to(device), label.flip(-1).to(device)


def _nets(impl: str, corr_size: int, device: str):
    from cocosnet.config import model_config
    from cocosnet.models.factory import build_correspondence, build_translation

    cfg = model_config({"preset": "paper_ade20k", "warp_impl": impl, "corr_size": corr_size})
    torch.manual_seed(0)
    return (
        cfg,
        build_correspondence(cfg).eval().to(device),
        build_translation(cfg).eval().to(device),
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_variant(variant: str, batch: int, runs: int, corr_size: int, device: str, out: Path):
    """Child process: time one variant; the output tensor goes to ``out`` for the parent."""
    from cocosnet.models.label_conv import set_one_hot_gather
    from cocosnet.models.runtime import GeneratorRuntime, RuntimeOptions

    impl = "naive" if variant == "baseline" else "gram" if "gram" in variant else "fused"
    cfg, corr, gen = _nets(impl, corr_size, device)
    mode = "fused" if variant == "gram" else variant.removesuffix("_gram")  # runtime options
    label, exemplar, ex_label = _inputs(cfg, batch, device)
    if mode == "baseline":
        set_one_hot_gather(corr, False)
        set_one_hot_gather(gen, False)

        @torch.no_grad()
        def forward():
            warp = corr(label, exemplar, ex_label)
            return gen(label, warp.warped)

    elif mode == "bf16_autocast":
        runtime = GeneratorRuntime(corr, gen)
        autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16)

        def forward():
            with autocast:
                return runtime(label, exemplar, ex_label)[0]

    else:
        options = RuntimeOptions(
            "bfloat16" if mode.startswith("bf16") else "float32",
            channels_last=mode.endswith(("_cl", "_cl_compiled")),
            compile=mode.endswith("_compiled"),
        )
        runtime = GeneratorRuntime(corr, gen, options)

        def forward():
            return runtime(label, exemplar, ex_label)[0]

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(runs + 1):  # the first call warms up (and compiles)
        _sync(device)
        start = time.perf_counter()
        result = forward()
        _sync(device)
        times.append(time.perf_counter() - start)
    torch.save(result.float().cpu(), out)
    median = statistics.median(times[1:])
    return {
        "variant": variant,
        "batch": batch,
        "corr_size": corr_size,
        "first_call_s": times[0],
        "s_per_batch": median,
        "s_per_image": median / batch,
        "all_s": times[1:],
        "peak_mib": peak_mib(device),
    }


def _spawn(variant: str, batch: int, runs: int, corr_size: int, device: str, out: Path) -> dict:
    cmd = [
        sys.executable, __file__, "--child", variant, "--batch", str(batch), "--runs", str(runs),
        "--corr-size", str(corr_size), "--device", device, "--out", str(out),
    ]  # fmt: skip
    # Default allocator settings (not CHILD_ENV's mmap threshold, which costs page faults on
    # every large tensor): the peak RSS then includes glibc's caching, as in real use.
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        return {"variant": variant, "batch": batch, "error": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(out: torch.Tensor, reference: torch.Tensor) -> dict:
    """Max/mean absolute difference and PSNR (outputs span [-1, 1]: peak-to-peak 2)."""
    diff = (out - reference).abs()
    mse = float((diff**2).mean())
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "psnr_db": math.inf if mse == 0 else 10 * math.log10(4.0 / mse),
    }


def _flops_key(variant: str) -> str:
    """Which FLOP count a variant computes: dense (the official way), with the one-hot gathers,
    or with the gathers and the Gram correlation."""
    return "dense" if variant == "baseline" else "total_with_gram" if "gram" in variant else "total"


def count_flops(corr_size: int) -> dict[str, int]:
    """FLOPs per image, dense and with the one-hot gathers (cocosnet model-info's count)."""
    from cocosnet.config import model_config
    from cocosnet.models.factory import generator_flops

    return generator_flops(model_config({"preset": "paper_ade20k", "corr_size": corr_size}))


def matmul_rate(dtype: torch.dtype, device: str, n: int = 4096, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def trained_quality(export: Path, data: Path, pairs: int = 16) -> dict:
    """bfloat16 vs float32 outputs of a trained export on its dataset's first label maps and
    photos (input i with exemplar i+1)."""
    from cocosnet.inference.prepare import prepare_exemplar, prepare_input
    from cocosnet.inference.translator import Translator
    from cocosnet.models.runtime import RuntimeOptions

    labels = sorted((data / "labels").glob("*.png"))[:pairs]
    images = sorted((data / "images").glob("*.png"))[1 : pairs + 1]
    outs = {}
    for precision in ("float32", "bfloat16"):
        tr = Translator(export, runtime=RuntimeOptions(precision, channels_last=True))
        x = torch.stack([prepare_input(p, tr.semantic_nc, tr.size, domain="label").tensor
                         for p in labels])  # fmt: skip
        ex = torch.stack([prepare_exemplar(p, tr.size).tensor for p in images])
        outs[precision] = tr.translate(x, ex)
    return {
        "export": str(export),
        "data": str(data),
        "pairs": len(labels),
        "output": compare(outs["bfloat16"][0], outs["float32"][0]),
        "warped": compare(outs["bfloat16"][1], outs["float32"][1]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    ap.add_argument("--corr-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--trained", type=Path, help="a trained export for the bf16 quality check")
    ap.add_argument("--trained-data", type=Path, default=Path("data/demo"), help="its dataset")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        row = run_variant(
            args.child, args.batch[0], args.runs, args.corr_size, args.device, args.out
        )
        print(json.dumps(row))
        return
    load = os.getloadavg()  # benchmarks mean something only on an otherwise idle machine

    flops = count_flops(args.corr_size)
    rates = {
        name: matmul_rate(dtype, args.device)
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))
    }
    print(
        f"{torch_machine(args.device)['device']}: FLOPs per image {flops['dense'] / 1e9:.1f} G "
        f"dense, {flops['total'] / 1e9:.1f} G with one-hot gathers; matmul "
        f"GFLOP/s fp32 {rates['float32'] / 1e9:.0f}, bf16 {rates['bfloat16'] / 1e9:.0f}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batch:
            reference, base = None, None
            for variant in args.variants:
                out_file = Path(tmp) / f"{variant}_{batch}.pt"
                row = _spawn(variant, batch, args.runs, args.corr_size, args.device, out_file)
                rows.append(row)
                if "error" in row:
                    print(f"B{batch} {variant}: failed: {row['error'].splitlines()[-1]}")
                    continue
                out = torch.load(out_file, weights_only=True)
                if reference is None:
                    reference, base = out, row
                rate = rates["bfloat16" if variant.startswith("bf16") else "float32"]
                row |= compare(out, reference) | {
                    "vs": base["variant"],
                    "floor_s_per_image": flops[_flops_key(variant)] / rate,
                    "speedup": base["s_per_image"] / row["s_per_image"],
                    "memory_ratio": row["peak_mib"] / base["peak_mib"],
                }
                print(
                    f"B{batch} {variant:16s} {row['s_per_image']:7.3f} s/img "
                    f"(x{row['speedup']:.2f} vs {base['variant']}), peak "
                    f"{row['peak_mib']:7.0f} MiB (x{row['memory_ratio']:.2f}), PSNR "
                    f"{row['psnr_db']:.1f} dB, floor {row['floor_s_per_image']:.3f} s, "
                    f"first call {row['first_call_s']:.1f} s"
                )
    result = {
        "machine": torch_machine(args.device),
        "load_average_before": load,
        "preset": "paper_ade20k",
        "corr_size": args.corr_size,
        "note": "random-init weights of the real architecture: timing and numerical deviation",
        "flops_per_image": flops,
        "matmul_flops_per_s": rates,
        "results": rows,
    }
    if args.trained:
        result["trained_bf16_vs_fp32"] = quality = trained_quality(args.trained, args.trained_data)
        print(f"trained {args.trained}: bf16 vs fp32 output {quality['output']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
