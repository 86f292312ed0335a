"""Benchmark: seconds per training step (generator step + discriminator step), fused vs naive warp.

Cases: the tiny `demo` preset at its training batch size (`demo_nf4`: its adaptors at half width,
against `demo` as the baseline; `demo_nf2_b4`: the quarter width and batch 4 params.yaml trains,
against `demo_nf4`, per step and per sample; `demo_nf2_b4_cl`: the same in the channels-last
layout, against `demo_nf2_b4`), and the paper ADE20k preset at batch 1,
each with the warp `naive` (materialised correlation, the baseline) and `fused`, in the same run on
the same machine, at each correspondence size asked for (``--corr-sizes``: 64, 128, 256 for the
paper's 256x256 images). Each configuration runs in a fresh subprocess, which also reports its peak
memory (CPU: RSS high-water mark; CUDA: peak allocated); one that runs out of memory is recorded as
such. Inputs are random label maps and photos (a step costs the same whatever the pixels); the paper
case also runs the VGG19 losses with a randomly initialised VGG19, which costs what the pretrained
one does (timing only: no number here is a loss value). Prints fused/naive ratios and writes
bench/results/train_step.json (or the file given by --out).

    python bench/train_step.py                  # demo (B8) and paper_ade20k (B1), 3 timed steps
    python bench/train_step.py --cases demo --steps 10
    python bench/train_step.py --cases demo demo_nf4 --corr-sizes 32 --impls fused --steps 10
    python bench/train_step.py --cases demo_nf4 demo_nf2_b4 --corr-sizes 32 --impls fused --steps 20
    python bench/train_step.py --cases demo_nf2_b4 demo_nf2_b4_cl --corr-sizes 32 --impls fused
    python bench/train_step.py --cases paper_ade20k --corr-sizes 64 128 256 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine import peak_mib, torch_machine  # bench/machine.py, beside this script

from cocosnet.config import loss_config, model_config, parse_params
from cocosnet.losses.objective import Objective
from cocosnet.models.factory import build_correspondence, build_discriminator, build_translation
from cocosnet.models.label_conv import set_one_hot_gather
from cocosnet.models.vgg import VGG19
from cocosnet.training.steps import Generator, Trainer

RESULTS = Path(__file__).resolve().parent / "results" / "train_step.json"
_DEMO = dict(model="demo", loss="demo", batch=8, vgg=False)
_NF2_B4 = {**_DEMO, "batch": 4, "model_overrides": {"corr_nf": 2}}
CASES = {
    "demo": _DEMO,
    # Adaptors at half width (the demo recipe before batch 4), against the preset's width.
    "demo_nf4": {**_DEMO, "model_overrides": {"corr_nf": 4}, "baseline": "demo"},
    # The demo recipe of params.yaml (issue 20): adaptors at a quarter width, batch 4. Against
    # demo_nf4 per sample too: an epoch of batch 4 is twice the steps.
    "demo_nf2_b4": {**_NF2_B4, "baseline": "demo_nf4"},
    # The same in the channels-last layout training uses on the CPU (runtime.channels_last).
    "demo_nf2_b4_cl": {**_NF2_B4, "channels_last": True, "baseline": "demo_nf2_b4"},
    "paper_ade20k": dict(model="paper_ade20k", loss="paper_ade20k", batch=1, vgg=True),
}


def _batch(semantic_nc: int, size: int, batch: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, semantic_nc, (batch, size // 8, size // 8), generator=g)
    ids = ids.repeat_interleave(8, 1).repeat_interleave(8, 2)
    onehot = torch.nn.functional.one_hot(ids, semantic_nc).permute(0, 3, 1, 2).float()
    photo = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    out = {
        "input": onehot,
        "image": photo,
        "label": ids,
        "exemplar": photo.flip(-1),
        "exemplar_input": onehot.flip(-1),
        "exemplar_label": ids.flip(-1),
        "is_pseudo": torch.arange(batch) % 3 == 0,
    }
    return {k: v.to(device) for k, v in out.items()}


def time_case(
    name: str, impl: str, steps: int, device: torch.device, corr_size: int | None = None
) -> dict:
    case = CASES[name]
    overrides = dict(case.get("model_overrides", {}))
    if corr_size is not None:
        overrides["corr_size"] = corr_size
    mcfg = model_config({"preset": case["model"], "warp_impl": impl, **overrides})
    lcfg = loss_config({"preset": case["loss"], "vgg": "auto" if case["vgg"] else "off"})
    tcfg = parse_params({"train": {"batch_size": case["batch"], "deterministic": False}}).train
    torch.manual_seed(0)
    vgg = VGG19("caffe").eval().requires_grad_(False).to(device) if case["vgg"] else None
    objective = Objective(
        lcfg,
        vgg,
        warp_stride=mcfg.warp_stride,
        warp_patch=mcfg.warp_patch,
        num_classes=mcfg.semantic_nc,  # the demo's class colour loss reads the label maps
    )
    corr, translation = build_correspondence(mcfg), build_translation(mcfg)
    for net in (corr, translation):  # as the training loop: the dense convs unless asked
        set_one_hot_gather(net, tcfg.one_hot_gather)
    trainer = Trainer(
        tcfg,
        objective,
        Generator(corr, translation),
        build_discriminator(mcfg),
        device=device,
        channels_last=case.get("channels_last", False),
    )
    batch = _batch(mcfg.semantic_nc, mcfg.image_size, case["batch"], device)
    times = []
    for i in range(steps + 1):  # the first step warms up allocators and kernels
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        g = trainer.generator_step(batch, hide_exemplar_label=False, warped_mask_weight=100.0)
        trainer.discriminator_step(batch, g.fake)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return {
        "case": name,
        "warp_impl": impl,
        "batch": case["batch"],
        "image_size": mcfg.image_size,
        "corr_size": mcfg.corr_size,
        "corr_nf": mcfg.corr_nf,
        "vgg_losses": case["vgg"],
        "channels_last": case.get("channels_last", False),
        "steps": steps,
        "s_per_step_median": statistics.median(times),
        "s_per_step_all": times,
        "peak_mib": peak_mib(device),
    }


def _spawn(name: str, impl: str, steps: int, device: str, corr_size: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", name, impl, "--steps", str(steps)]
    cmd += ["--device", device] + ([] if corr_size is None else ["--corr-sizes", str(corr_size)])
    # Default allocator settings: CHILD_ENV's mmap threshold would time page faults (measured:
    # 2x slower demo steps). The peak RSS then includes glibc's caching, as in real use.
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        tail = proc.stderr.strip()[-2000:]
        oom = "out of memory" in tail.lower() or proc.returncode in (-9, 137)
        return {
            "case": name,
            "warp_impl": impl,
            "corr_size": corr_size,
            "error": "out of memory" if oom else tail,
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _against_baselines(rows: list[dict]) -> None:
    """Each row of a case with a ``baseline`` case: its time as a ratio of the baseline's at the
    same corr size and impl (both in this run)."""
    ok = {(r["case"], r["corr_size"], r["warp_impl"]): r for r in rows if "error" not in r}
    for (case, corr_size, impl), row in ok.items():
        base = ok.get((CASES[case].get("baseline"), corr_size, impl))
        if base is None:
            continue
        row["baseline"] = base["case"]
        row["time_ratio_over_baseline"] = row["s_per_step_median"] / base["s_per_step_median"]
        # Per sample (an epoch's time) where the batch sizes differ.
        row["sample_time_ratio_over_baseline"] = (
            row["time_ratio_over_baseline"] * base["batch"] / row["batch"]
        )
        print(
            f"{case} / {base['case']} at corr {corr_size} {impl}: time per step "
            f"{row['time_ratio_over_baseline']:.3f}, per sample "
            f"{row['sample_time_ratio_over_baseline']:.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--corr-sizes", type=int, nargs="+", help="default: each preset's own")
    ap.add_argument(
        "--impls",
        nargs="+",
        default=["naive", "fused"],
        choices=["naive", "fused", "gram", "triton"],
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        corr = args.corr_sizes[0] if args.corr_sizes else None
        row = time_case(args.child[0], args.child[1], args.steps, torch.device(args.device), corr)
        print(json.dumps(row))
        return
    load_before = os.getloadavg()
    rows: list[dict] = []
    for name in args.cases:
        for corr_size in args.corr_sizes or [None]:
            by_impl = {}
            for impl in args.impls:
                row = by_impl[impl] = _spawn(name, impl, args.steps, args.device, corr_size)
                rows.append(row)
                if "error" in row:
                    print(f"{name:14s} corr {corr_size} {impl:6s}: {row['error'][-300:]}")
                    continue
                print(
                    f"{name:14s} corr {row['corr_size']:3d} {impl:6s} B{row['batch']}: "
                    f"{row['s_per_step_median']:.3f} s/step, peak {row['peak_mib']:.0f} MiB"
                )
            if all("error" not in by_impl.get(i, {"error": 1}) for i in ("naive", "fused")):
                naive, fused = by_impl["naive"], by_impl["fused"]
                fused["time_ratio_fused_over_naive"] = (
                    fused["s_per_step_median"] / naive["s_per_step_median"]
                )
                fused["memory_ratio_fused_over_naive"] = fused["peak_mib"] / naive["peak_mib"]
                print(
                    f"{name:14s} corr {fused['corr_size']:3d} fused/naive: time "
                    f"{fused['time_ratio_fused_over_naive']:.3f}, memory "
                    f"{fused['memory_ratio_fused_over_naive']:.3f}"
                )
    _against_baselines(rows)
    result = {
        "machine": torch_machine(args.device),  # its load_average: after the runs
        "load_average_before": load_before,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
