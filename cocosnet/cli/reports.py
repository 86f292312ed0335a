"""``cocosnet evaluate`` and ``cocosnet plots``: metrics of image folders, DVC plots as HTML."""

from __future__ import annotations

import argparse
import json
import sys


def add_evaluate(sub) -> None:
    from ..metrics.fid import PROTOCOLS
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
    ev.add_argument(
        "--fid-protocol",
        choices=sorted(PROTOCOLS),
        default="pytorch_fid",
        help="pytorch_fid: the CoCosNet authors' (PyTorch bilinear resize, 2x - 1); "
        "torch_fidelity: TF1-style resize, (x - 128) / 128",
    )
    ev.add_argument(
        "--resize",
        type=_metric_size,
        metavar="N",
        help="semantic consistency / style relevance: resize images (bilinear) and labels "
        "(nearest) to N x N first, as the authors' scripts (256); default: each label's size",
    )
    ev.set_defaults(func=run_evaluate)


def _metric_size(text: str) -> int:
    size = int(text)
    if not 8 <= size <= 4096:
        raise argparse.ArgumentTypeError(f"a size from 8 to 4096, got {size}")
    return size


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
        fid_protocol=args.fid_protocol,
        resize=args.resize,
    )
    result = evaluate([args.metric], inputs, options)[args.metric]
    print(json.dumps({"metric": args.metric} | result, indent=2))
    return 3 if "skipped" in result else 0


DVC = [sys.executable, "-m", "dvc"]  # the dvc of this environment, whatever PATH says


def add_plots(sub) -> None:
    plots = sub.add_parser(
        "plots", help="DVC plots and metrics as an offline HTML page (inline SVG, no CDN)"
    )
    plots.add_argument(
        "revisions",
        nargs="*",
        metavar="REV",
        help="commits, branches or experiments to compare (as `dvc plots diff`); none: workspace",
    )
    plots.add_argument("--out", default="dvc_plots", help="folder for index.html and the SVGs")
    plots.set_defaults(func=run_plots)


def revision_metrics(revisions: list[str]) -> dict:
    """``{rev: {"data": {file: {"data": metrics}}}}`` for each revision (a commit-ish, an
    experiment or ``workspace``), from `dvc exp show` (which reads commits and experiments
    alike), shaped as `dvc metrics show --json`."""
    import subprocess

    def entries(*args: str) -> list[dict]:
        proc = subprocess.run(
            [*DVC, "exp", "show", "--json", *args], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise ValueError(f"dvc exp show {' '.join(args)} failed: {proc.stderr.strip()}")
        return _exp_entries(json.loads(proc.stdout))

    def sha(rev: str) -> str | None:
        proc = subprocess.run(["git", "rev-parse", "--verify", "-q", f"{rev}^{{commit}}"],
                              capture_output=True, text=True)  # fmt: skip
        return proc.stdout.strip() or None

    known = entries()  # the workspace, HEAD and HEAD's experiments
    table = {}
    for rev in revisions:
        commit = sha(rev) if rev != "workspace" else None
        candidates = (
            known
            if commit is None or commit in {e.get("rev") for e in known}
            else (entries("--rev", rev, "-n", "1"))
        )
        for entry in candidates:
            if rev in (entry.get("rev"), entry.get("name")) or (
                commit and entry.get("rev") == commit
            ):
                table[rev] = {"data": (entry.get("data") or {}).get("metrics") or {}}
                break
        else:
            raise ValueError(f"no such commit or experiment: {rev} (see dvc exp show)")
    return table


def _exp_entries(rows: list) -> list[dict]:
    """Every commit and experiment of `dvc exp show --json` (experiments nest in ``experiments``
    and their ``revs``), each with ``rev`` and ``name`` at the top."""
    out = []
    for row in rows:
        out.append(row)
        for exp in row.get("experiments") or []:
            for r in exp.get("revs") or []:
                out.append(r | {"name": r.get("name") or exp.get("name")})
    return out


def run_plots(args: argparse.Namespace) -> int:
    import subprocess

    from ..plots import render

    def dvc_json(*cmd: str) -> dict:
        proc = subprocess.run([*DVC, *cmd, "--json"], capture_output=True, text=True)
        if proc.returncode != 0 and not proc.stdout.strip():
            raise ValueError(f"dvc {' '.join(cmd)} failed: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    revisions = list(args.revisions)
    plots = dvc_json("plots", "diff", *revisions) if revisions else dvc_json("plots", "show")
    # The metrics of each revision (workspace included), as `dvc exp show` lists them.
    metrics = dvc_json("metrics", "show") if not revisions else revision_metrics(revisions)
    index, problems = render(plots, metrics, args.out)
    print(json.dumps({"page": str(index), "not_loaded": problems}))
    return 0
