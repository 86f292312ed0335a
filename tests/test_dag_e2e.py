"""The whole DAG with `dvc repro` in a temporary copy of the project, on a micro demo (12 scenes,
2 training steps): every stage runs, a second repro is a no-op, a runtime-only key reruns
nothing, `dvc exp run -S` of a train key reruns only train and evaluate, and setting it back
restores the earlier outputs from DVC's run-cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .helpers import dvc_project_copy

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd, cwd):
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        DVC_NO_ANALYTICS="1",
        DO_NOT_TRACK="1",
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def ran(output: str) -> list[str]:
    return sorted(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    work = dvc_project_copy(tmp_path_factory.mktemp("dag") / "project")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["demo"] = {"n_train": 8, "n_val": 4, "size": 64, "seed": 0}
    params["index"]["k"] = 3
    params["train"].update(batch_size=2, niter=1, niter_decay=0, max_steps=2, mask_epoch=1)
    params["runtime"].update(checkpoint_every=1, log_every=1, image_every=2)
    params["eval"]["batch_size"] = 4
    params["tracking"]["uri"] = f"sqlite:///{work / 'mlflow.db'}"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "config", "core.analytics", "false"], work)
    return work


def test_dvc_repro_runs_the_whole_dag(project):
    out = run(["dvc", "repro"], project)
    assert ran(out) == [
        "edges@demo",
        "evaluate@demo",
        "index@demo",
        "model_summary",
        "prepare@demo",
        "train@demo",
    ]
    assert (project / "models/demo/export/model.json").is_file()
    train = json.loads((project / "metrics/train_demo.json").read_text())
    train_run = json.loads((project / "metrics/train_run_demo.json").read_text())
    evaluation = json.loads((project / "metrics/eval_demo.json").read_text())
    eval_run = json.loads((project / "metrics/eval_run_demo.json").read_text())
    assert train["steps"] == 2 and eval_run["protocol"]["images"] == 4
    assert evaluation["metrics"]["swd"]["swd_avg"] > 0
    assert "skipped" in eval_run["metrics"]["fid"]
    assert eval_run["train_mlflow_run_id"] == train_run["mlflow_run_id"]
    assert (project / "metrics/eval_per_class_demo.csv").read_text().startswith("class,")

    again = run(["dvc", "repro"], project)
    assert ran(again) == [] and "up to date" in again


def _set(project, section, **keys):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section].update(keys)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_a_runtime_key_reruns_nothing(project):
    run(["dvc", "repro"], project)
    _set(project, "runtime", threads=1, log_every=2, checkpoint_every=5)
    _set(project, "tracking", experiment="elsewhere")
    out = run(["dvc", "repro"], project)
    assert ran(out) == [] and "up to date" in out


def test_dvc_exp_run_of_a_train_key_and_the_run_cache_when_it_is_set_back(project):
    run(["dvc", "repro"], project)
    first = (project / "models/demo/export/translation.safetensors").read_bytes()
    first_metrics = (project / "metrics/train_demo.json").read_text()
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], project)
    # A train key reruns train and evaluate only. Longer than the finished 2-step run: its
    # checkpoint is resumed (in a new MLflow run, since MLflow params cannot change) and training
    # goes on. (A shorter run never takes a longer run's checkpoint: test_training_loop.py.)
    out = run(["dvc", "exp", "run", "-S", "train.max_steps=3"], project)
    assert ran(out) == ["evaluate@demo", "train@demo"]
    summary = json.loads((project / "metrics/train_run_demo.json").read_text())
    steps = json.loads((project / "metrics/train_demo.json").read_text())["steps"]
    assert steps == 3 and summary["resumed_from_step"] == 2, out
    assert (project / "models/demo/export/translation.safetensors").read_bytes() != first
    from mlflow.tracking import MlflowClient

    run_ = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_run(summary["mlflow_run_id"])
    assert run_.data.params["train.max_steps"] == "3"
    assert "resumed_from_checkpoint" in run_.data.tags
    # Set back: both stages come back from DVC's run-cache, nothing runs.
    start = time.perf_counter()
    out = run(["dvc", "exp", "run", "-S", "train.max_steps=2"], project)
    seconds = time.perf_counter() - start
    assert ran(out) == [], out
    assert "Stage 'train@demo' is cached - skipping run" in out
    assert "Stage 'evaluate@demo' is cached - skipping run" in out
    assert (project / "models/demo/export/translation.safetensors").read_bytes() == first
    assert (project / "metrics/train_demo.json").read_text() == first_metrics
    print(f"run-cache restore of train@demo and evaluate@demo: {seconds:.1f} s")
