"""Stopping a multi-process training: SIGTERM (DVC, schedulers) or SIGINT (Ctrl-C) to the stage
reaches torchrun and every rank; the ranks checkpoint at the same step and exit, and no process
is left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from cocosnet.cores import budget_env, thread_budget
from cocosnet.training.checkpoint import list_checkpoints

from .helpers import REPO, prepared_demo


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stop")
    prepared_demo(root, n_train=8, n_val=4)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw |= {
        "model": {"preset": "demo"},
        "loss": {"preset": "demo", "vgg": "off"},
        "train": {"preset": "demo", "batch_size": 2, "max_steps": 100_000, "nproc_per_node": 2},
        "runtime": {"log_every": 1, "checkpoint_every": 2},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "system_metrics": False},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root


def _checkpoints(project: Path) -> list[int]:
    found = list((project / "models" / "demo" / "checkpoints").glob("*"))
    return [step for step, _ in list_checkpoints(found[0])] if found else []


def _stop_training(project: Path, sig: signal.Signals) -> None:
    env = budget_env(thread_budget(2), os.environ | {"PYTHONPATH": str(REPO)})
    cmd = [sys.executable, "-m", "stages.train", "demo", "params.yaml", "no-weights"]
    before = _checkpoints(project)
    log = project / f"stage_{sig.name}.log"
    with log.open("w") as sink:
        stage = subprocess.Popen(cmd, cwd=project, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while _checkpoints(project) == before:  # the ranks are training
            assert stage.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint in 180 s"
            time.sleep(0.2)
        ranks = psutil.Process(stage.pid).children(recursive=True)
        assert len([p for p in ranks if "stages.train" in " ".join(p.cmdline())]) >= 2
        stage.send_signal(sig)
        stage.wait(timeout=120)
    finally:
        if stage.poll() is None:
            stage.kill()
    text = log.read_text()
    assert stage.returncode != 0, text[-3000:]
    stopped = re.search(r"stop requested; checkpoint of step (\d+) written", text)
    assert stopped and "rerun to resume" in text, text[-3000:]
    assert _checkpoints(project)[-1] == int(stopped.group(1))
    time.sleep(0.5)
    alive = [p for p in ranks if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left behind: {[p.cmdline() for p in alive]}"


def test_sigterm_stops_every_rank_with_a_checkpoint(project):
    _stop_training(project, signal.SIGTERM)


@pytest.mark.slow
def test_sigint_stops_every_rank_with_a_checkpoint(project):
    _stop_training(project, signal.SIGINT)


def _fake_slurm(tmp_path: Path, srun_body: str) -> tuple[Path, dict[str, str]]:
    """A folder with fake srun, scontrol and .venv/bin/dvc that log their calls to calls.log."""
    bin_dir, venv = tmp_path / "bin", tmp_path / ".venv" / "bin"
    for folder in (bin_dir, venv):
        folder.mkdir(parents=True)
    calls = tmp_path / "calls.log"
    fakes = {
        bin_dir / "srun": srun_body,
        bin_dir / "scontrol": f'echo "scontrol $*" >> {calls}\n[ "$1" = show ] && echo node0\n',
        venv / "dvc": f'echo "dvc $*" >> {calls}\n',
    }
    for path, body in fakes.items():
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    env = os.environ | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "node[0-1]",
        "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "42",
    }
    return calls, env


SBATCH = REPO / "examples" / "slurm_train.sbatch"


def test_sbatch_commits_the_stage_when_training_finishes(tmp_path):
    calls, env = _fake_slurm(tmp_path, f'echo "srun $*" >> {tmp_path}/calls.log\n')
    done = subprocess.run(["bash", SBATCH, "demo"], cwd=tmp_path, env=env, timeout=30)
    assert done.returncode == 0
    log = calls.read_text().splitlines()
    assert log[0] == "scontrol show hostnames node[0-1]"
    assert log[1].startswith("srun --kill-on-bad-exit=1") and "-m stages.train demo" in log[1]
    assert log[2] == "dvc commit --force train@demo"


def test_sbatch_stops_the_ranks_and_requeues_before_the_time_limit(tmp_path):
    # srun stands in for the ranks: on SIGTERM it "checkpoints" and exits.
    srun = (
        f"trap 'echo checkpointed >> {tmp_path}/calls.log; exit 0' TERM\n"
        f"echo started >> {tmp_path}/calls.log\nwhile true; do sleep 0.1; done\n"
    )
    calls, env = _fake_slurm(tmp_path, srun)
    job = subprocess.Popen(["bash", SBATCH, "demo"], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 30
    while "started" not in (calls.read_text() if calls.exists() else ""):
        assert time.monotonic() < deadline and job.poll() is None
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@300 sends
    assert job.wait(timeout=30) == 0
    log = calls.read_text().splitlines()
    assert log[-2:] == ["checkpointed", "scontrol requeue 42"]
    assert not any(line.startswith("dvc") for line in log)  # not finished: no commit
