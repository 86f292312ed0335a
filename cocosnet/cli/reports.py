"""``cocosnet evaluate`` and ``cocosnet plots``: metrics of image folders, DVC plots as HTML."""

from __future__ import annotations

import argparse
import json


def add_evaluate(sub) -> None:
    from ..metrics.registry import METRICS

    ev = sub.add_parser(
        "evaluate", help="one metric on folders of images (files matched by name), as JSON"
    )
    ev.add_argument("metric", choices=sorted(METRICS))
    ev.add_argument("--real", help="ground-truth images")
    ev.add_argument("--fake", help="generated images")
    ev.add_argument("--labels", help="class-id maps of the inputs (semantic/style metrics)")
    ev.add_argument("--exemplars", help="exemplar photos (style relevance)")
    ev.add_argument("--exemplar-labels", help="class-id maps of the exemplars (style relevance)")
    ev.add_argument("--num-classes", type=int, help="classes of the label maps")
    ev.add_argument("--weights-dir", default="weights")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--seed", type=int, default=0, help="SWD sampling")
    ev.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..metrics.registry import MetricOptions, evaluate, folder_inputs

    inputs = folder_inputs(
        args.real, args.fake, args.labels, args.exemplars, args.exemplar_labels, args.num_classes
    )
    options = MetricOptions(
        weights_dir=args.weights_dir,
        device=args.device,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    result = evaluate([args.metric], inputs, options)[args.metric]
    print(json.dumps({"metric": args.metric} | result, indent=2))
    return 3 if "skipped" in result else 0


def add_plots(sub) -> None:
    plots = sub.add_parser(
        "plots", help="DVC plots and metrics as an offline HTML page (inline SVG, no CDN)"
    )
    plots.add_argument("--out", default="dvc_plots", help="folder for index.html and the SVGs")
    plots.set_defaults(func=run_plots)


def run_plots(args: argparse.Namespace) -> int:
    import subprocess

    from ..plots import render

    def dvc_json(*cmd: str) -> dict:
        proc = subprocess.run(["dvc", *cmd, "--json"], capture_output=True, text=True)
        if proc.returncode != 0 and not proc.stdout.strip():
            raise ValueError(f"dvc {' '.join(cmd)} failed: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    index, problems = render(dvc_json("plots", "show"), dvc_json("metrics", "show"), args.out)
    print(json.dumps({"page": str(index), "not_loaded": problems}))
    return 0
