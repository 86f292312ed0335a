"""Benchmark: the demo training step when several training processes share the machine.

The demo training step (generator + discriminator step, `bench/train_step.py`'s `demo` case) is
timed alone, then in 2 and 4 processes started at once, each process once with the default
threads (every torch process takes all cores) and once with its budget from `cocosnet.cores`
(the cores divided among the processes, what the Prefect flow, sweeps, torchrun and the worker
pool now give the processes they start). Prints each case's seconds per step against the solo
step, with the goal (2 at once: at most 2.5x; 4 at once: at most 5x), the load average before the
run, and writes bench/results/concurrency.json (or --out).

    python bench/concurrency.py                 # 1, 2, 4 processes; 3 timed steps each
    python bench/concurrency.py --counts 2 --steps 5
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

from machine import torch_machine  # bench/machine.py, beside this script

from cocosnet.cores import available_cores, budget_env, thread_budget

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "concurrency.json"
GOAL = {2: 2.5, 4: 5.0}  # at most this many times the solo step


def _run_together(count: int, steps: int, budget: bool) -> dict:
    """``count`` demo-training processes started at once; each one's median s/step."""
    cmd = [sys.executable, str(HERE / "train_step.py"), "--child", "demo", "fused"]
    cmd += ["--steps", str(steps)]
    env = dict(os.environ)
    if budget:
        env = budget_env(thread_budget(count), env)
    start = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    rows = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a training process failed:\n{err[-2000:]}")
        rows.append(json.loads(out.strip().splitlines()[-1]))
    medians = [r["s_per_step_median"] for r in rows]
    return {
        "processes": count,
        "budget": budget,
        "threads_each": thread_budget(count) if budget else available_cores(),
        "s_per_step_each": medians,
        "s_per_step_mean": statistics.mean(medians),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    load = os.getloadavg()
    solo = _run_together(1, args.steps, budget=False)
    rows = [solo]
    print(f"load average before: {load[0]:.2f}; solo: {solo['s_per_step_mean']:.3f} s/step")
    for count in args.counts:
        for budget in (False, True):
            row = _run_together(count, args.steps, budget)
            row["x_solo"] = round(row["s_per_step_mean"] / solo["s_per_step_mean"], 2)
            goal = GOAL.get(count)
            row["goal_x_solo"] = goal
            row["meets_goal"] = None if goal is None else row["x_solo"] <= goal
            rows.append(row)
            print(
                f"{count} at once, {'budget ' if budget else 'default'} "
                f"({row['threads_each']} threads each): {row['s_per_step_mean']:.3f} s/step = "
                f"{row['x_solo']}x solo (goal <= {goal}x)"
            )
    result = {
        "machine": torch_machine(),
        "cores": available_cores(),
        "load_average_before": load,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
