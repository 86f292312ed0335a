"""Parameter sweeps as DVC experiments, driven by Prefect, gathered into one table.

    python -m pipeline.sweep --set train.lr_g=1e-4 --set train.lr_g=2e-4 --out sweep.csv
    python -m pipeline.sweep --set "train.lr_g=1e-4 train.lr_d=4e-4" --set train.lr_g=2e-4 \\
        --jobs 2 --name lr --out sweep.parquet

Each `--set` is one variant: whitespace-separated KEY=VALUE overrides of params.yaml (values in
DVC's `-S` syntax). Each variant is queued as `dvc exp run --queue -S KEY=VALUE ... -n NAME-i`;
`dvc exp run --run-all -j JOBS` then runs the queue (DVC runs each experiment in a temporary
copy of the workspace as it was when queued, so variants never share outputs and the workspace is
left as it was), and `dvc exp show --json` is read into one
table, a row per variant: experiment, rev, state, the variant's overrides, then every param
(`train.lr_g`; `FILE:key` for params files other than params.yaml) and every metric
(`metrics/train_demo.json:steps`). The table goes to `--out` (.csv or .parquet). The run fails
when an experiment failed, after writing the table (its state column says which).

Experiments already waiting in the DVC queue run too. Inspect or apply one afterwards with
`dvc exp show`, `dvc exp apply NAME-i`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from cocosnet.cores import budget_env, current_budget, describe, thread_budget
from pipeline.parent_run import parent_run

PARAMS_FILE = "params.yaml"
DVC = [sys.executable, "-m", "dvc"]  # the dvc of this environment, whatever PATH says


class SweepFailed(RuntimeError):
    """One or more experiments of the sweep did not succeed."""


def override(key: str, value: Any) -> str:
    """One `-S` argument; values that are not strings are written as JSON (valid YAML)."""
    return f"{key}={value if isinstance(value, str) else json.dumps(value)}"


def _dvc(args: Sequence[str], root: Path, log: Callable[[str], object]) -> str:
    """Run a dvc command in `root`, passing its output lines to `log`; raise when it fails."""
    proc = subprocess.run(
        DVC + list(args), cwd=root, capture_output=True, text=True, errors="replace"
    )
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.strip():
            log(line)
    if proc.returncode:
        raise RuntimeError(f"`dvc {' '.join(args)}` exited with {proc.returncode}")
    return proc.stdout


@task(name="queue-experiment", cache_policy=NO_CACHE, persist_result=False)
def queue_variant(root: Path, name: str, variant: Mapping[str, Any]) -> str:
    """`dvc exp run --queue -S key=value ... -n NAME`."""
    sets = [arg for key, value in variant.items() for arg in ("-S", override(key, value))]
    _dvc(["exp", "run", "--queue", *sets, "-n", name], root, get_run_logger().info)
    return name


@task(name="run-experiments", cache_policy=NO_CACHE, persist_result=False)
def run_queue(root: Path, jobs: int, extra_env: Mapping[str, str] | None = None) -> None:
    """`dvc exp run --run-all -j JOBS`: runs the queue and returns when it is empty
    (``extra_env``: more variables its workers inherit, the MLflow parent run)."""
    log = get_run_logger()
    total = current_budget(os.environ)
    threads = thread_budget(jobs, total)
    log.info("experiments: %s", describe(jobs, threads, total))
    env = budget_env(threads, os.environ) | dict(extra_env or {})  # the workers inherit it
    returncode = _follow([*DVC, "exp", "run", "--run-all", "-j", str(jobs)], root, log.info, env)
    if returncode:
        raise RuntimeError(f"`dvc exp run --run-all` exited with {returncode}")


def _follow(
    args: Sequence[str],
    root: Path,
    log: Callable[[str], object],
    env: Mapping[str, str] | None = None,
) -> int:
    """Run a command, passing its output lines to `log` as they come; its exit status.

    The output goes through a file, not a pipe: DVC's queue workers inherit the command's stdout
    and outlive it by seconds, so a pipe would not reach its end when the command exits.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "output.log"
        with open(path, "wb") as sink, open(path, errors="replace") as source:
            proc = subprocess.Popen(args, cwd=root, env=env, stdout=sink, stderr=subprocess.STDOUT)
            pending = ""
            while True:
                done = proc.poll() is not None
                *lines, pending = (pending + source.read()).split("\n")
                for line in lines:
                    if line.strip():
                        log(line)
                if done:
                    break
                time.sleep(0.2)
            if pending.strip():
                log(pending)
    return proc.returncode


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _columns(files: Mapping[str, Any] | None, params: bool) -> dict[str, Any]:
    """{column: value} for one experiment's params or metrics, keyed by file in `dvc exp show`."""
    row = {}
    for path, content in (files or {}).items():
        prefix = "" if params and path == PARAMS_FILE else f"{path}:"
        row.update((prefix + key, value) for key, value in _flatten(content.get("data") or {}))
    return row


def experiments_table(
    shown: list[dict[str, Any]], variants: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """The rows of `dvc exp show --json` output for the experiments named in `variants`
    ({name: overrides}), in that order; one that `dvc exp show` lacks has state 'missing'."""
    found = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            if exp.get("name") in variants and exp.get("revs"):
                rev = exp["revs"][0]  # the experiment's result (first of its revisions)
                data = rev.get("data") or {}
                found[exp["name"]] = {
                    "rev": rev.get("rev"),
                    "state": (exp.get("executor") or {}).get("state", "success"),
                    **_columns(data.get("params"), params=True),
                    **_columns(data.get("metrics"), params=False),
                }
    rows = []
    for name, variant in variants.items():
        overrides = " ".join(override(k, v) for k, v in variant.items())
        rows.append(
            {"experiment": name, "overrides": overrides, **found.get(name, {"state": "missing"})}
        )
    return pd.DataFrame(rows)


@task(name="collect-experiments", cache_policy=NO_CACHE, persist_result=False)
def collect(root: Path, variants: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Params and metrics of the sweep's experiments from `dvc exp show --json`."""
    shown = json.loads(_dvc(["exp", "show", "--json"], root, lambda line: None))
    return experiments_table(shown, variants)


def write_table(table: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        table.to_parquet(out, index=False)
    else:
        table.to_csv(out, index=False)


@flow(name="dvc-sweep")
def sweep(
    variants: list[dict[str, Any]],
    root: str = ".",
    out: str | None = None,  # .csv or .parquet; no file when None
    jobs: int = 1,  # experiments at once (DVC queue workers)
    name: str | None = None,  # experiment names are NAME-1, NAME-2, ... (default: sweep-TIME)
) -> pd.DataFrame:
    """Queue one DVC experiment per variant ({param: value}), run them, and tabulate them."""
    log = get_run_logger()
    project = Path(root).resolve()
    name = name or time.strftime("sweep-%Y%m%d-%H%M%S")
    named = {f"{name}-{i}": dict(variant) for i, variant in enumerate(variants, 1)}
    for exp_name, variant in named.items():  # one at a time: queueing takes DVC's repo lock
        queue_variant(project, exp_name, variant)
    with parent_run(project, f"sweep: {name}", "pipeline/sweep.py") as env:
        run_queue(project, jobs, env)
    table = collect(project, named)
    if out:
        write_table(table, Path(out))
        log.info("%d experiments written to %s", len(table), out)
    failed = table.loc[table["state"] != "success", "experiment"].tolist()
    if failed:
        raise SweepFailed(f"experiments did not succeed: {', '.join(failed)} (see dvc exp show)")
    return table


def parse_variant(text: str) -> dict[str, str]:
    """'train.lr_g=1e-4 train.lr_d=4e-4' -> {'train.lr_g': '1e-4', 'train.lr_d': '4e-4'}."""
    variant = {}
    for item in shlex.split(text):
        key, sep, value = item.partition("=")
        if not (key and sep):
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
        variant[key] = value
    return variant


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--set",
        dest="variants",
        action="append",
        type=parse_variant,
        required=True,
        metavar='"KEY=VALUE ..."',
        help="one variant (repeat for more)",
    )
    parser.add_argument("--out", help="table of params and metrics (.csv or .parquet)")
    parser.add_argument("--jobs", type=int, default=1, help="experiments at once (default: 1)")
    parser.add_argument("--name", help="experiment name prefix (default: sweep-TIME)")
    parser.add_argument("--root", default=os.curdir, help="the DVC project (default: .)")
    args = parser.parse_args(argv)
    try:
        table = sweep(args.variants, root=args.root, out=args.out, jobs=args.jobs, name=args.name)
    except SweepFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
