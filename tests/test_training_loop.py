"""The training loop end to end on a tiny demo dataset: steps change every sub-network, DDP
replicas stay identical, a killed run resumes to the same weights, the stage tracks in MLflow."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from cocosnet.config import RuntimeConfig, parse_params
from cocosnet.cores import budget_env, thread_budget
from cocosnet.models.factory import build_correspondence, build_discriminator, build_translation
from cocosnet.training.checkpoint import list_checkpoints, load_checkpoint
from cocosnet.training.curve import curve_csv
from cocosnet.training.data import training_examples
from cocosnet.training.distributed import torchrun_command
from cocosnet.training.loop import train

from .helpers import demo_data, prepared_demo

REPO = Path(__file__).resolve().parent.parent
TINY = {
    "model": {"preset": "demo"},
    "loss": {"preset": "demo", "vgg": "off"},
    "train": {
        "preset": "demo",
        "batch_size": 2,
        "niter": 1,
        "niter_decay": 1,
        "max_steps": 3,
        "mask_epoch": 1,
        "pseudo": {"rotate": 10.0, "tps": 0.05},
    },
    "runtime": {"threads": 1, "log_every": 1, "checkpoint_every": 1},
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return prepared_demo(tmp_path_factory.mktemp("train"), n_train=8, n_val=4)


def _params(**keys):
    """TINY with ``keys`` set in train, or in runtime where they belong."""
    raw = json.loads(json.dumps(TINY))
    for k, v in keys.items():
        raw["runtime" if k in RuntimeConfig.model_fields else "train"][k] = v
    return raw


def _train_tiny(data_root, out_dir, p, **kw):
    """Run the loop in this process on the tiny demo data with parsed params ``p``; checkpoints
    in OUT_DIR/checkpoints, the export in OUT_DIR/export."""
    examples = training_examples(*demo_data(data_root), image_size=64, cfg=p.train)
    kw.setdefault("log", lambda m: None)
    return train(
        examples,
        model_cfg=p.model,
        loss_cfg=p.loss,
        cfg=p.train,
        runtime=p.runtime,
        checkpoint_dir=Path(out_dir) / "checkpoints",
        export_dir=Path(out_dir) / "export",
        fingerprint="test",
        **kw,
    )


def _worker(data_root, out_dir, overrides, *, torchrun: int = 0, **popen):
    args = ["-m", "tests.train_worker", str(data_root), str(out_dir), json.dumps(overrides)]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc-per-node={torchrun}", *args]
    else:
        cmd = [sys.executable, *args]
    # The ranks share the cores (and the test process waits meanwhile).
    env = budget_env(thread_budget(max(1, torchrun)), os.environ | {"PYTHONPATH": str(REPO)})
    return subprocess.Popen(cmd, cwd=REPO, env=env, **popen)


def test_a_few_steps_train_every_sub_network(data_root, tmp_path):
    p = parse_params(_params())
    torch.manual_seed(p.train.seed)  # the loop builds the networks from the same seed
    init = {
        "corr": build_correspondence(p.model).state_dict(),
        "translation": build_translation(p.model).state_dict(),
        "disc": build_discriminator(p.model).state_dict(),
    }
    result = _train_tiny(data_root, tmp_path, p)
    assert result.steps == 3 and result.stopped == "finished"
    assert len(result.history) == 3
    for row in result.history:
        assert all(math.isfinite(v) for v in row.values()), row
        assert "G/warped_mask" in row and "G/total" in row and "D/total" in row
    assert "no-vgg" in result.loss_set
    trained = {
        "corr": result.generator.corr.state_dict(),
        "translation": result.generator.translation.state_dict(),
        "disc": result.discriminator.state_dict(),
    }
    for net, before in init.items():
        tops = {k.split(".")[0] for k in before if "weight" in k or "bias" in k}
        for top in tops:
            keys = [k for k in before if k.startswith(top + ".") and before[k].is_floating_point()]
            changed = any(not torch.equal(before[k], trained[net][k]) for k in keys)
            assert changed, f"{net}.{top} did not change"
    # The export loads back as the trained correspondence and translation networks.
    assert (result.export_dir / "model.json").is_file()
    ckpt = load_checkpoint(list_checkpoints(tmp_path / "checkpoints")[-1][1])
    assert ckpt["step"] == 3
    assert len(list_checkpoints(tmp_path / "checkpoints")) == p.runtime.keep_checkpoints


def test_the_curve_is_written_as_the_training_goes(data_root, tmp_path):
    p = parse_params(_params(max_steps=3))
    curve = tmp_path / "curve.csv"
    rows_seen = []

    def watch() -> bool:  # polled after every step: what a user watching the file sees
        rows_seen.append(len(curve.read_text().splitlines()) if curve.exists() else 0)
        return False

    result = _train_tiny(data_root, tmp_path, p, curve_file=curve, stop_requested=watch)
    assert rows_seen == [2, 3, 4]  # the header and one row per logged step so far
    assert curve.read_text() == curve_csv(result.history)


def test_ddp_replicas_stay_identical(data_root, tmp_path):
    proc = _worker(
        data_root,
        tmp_path,
        _params(max_steps=2),
        torchrun=2,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    different = [k for k in r0 if not torch.equal(r0[k], r1[k])]
    assert not different, different[:5]
    # ...and they trained: each rank saw different data, so any desync would show.
    torch.manual_seed(0)
    init = build_correspondence(parse_params(_params()).model).state_dict()
    assert not torch.equal(init["theta.weight"], r0["g.corr.theta.weight"])


KILL_OVERRIDES = _params(max_steps=6)


def _kill_points() -> list:
    """(step, delay) kill points: the fixed one (once checkpoint 3 exists) and one drawn at
    random (seeded; COCOSNET_TEST_KILL_SEED picks another) anywhere in steps 1..4, up to 0.4 s
    after that step's checkpoint appears, so the kill may land mid-step or mid-checkpoint."""
    seed = int(os.environ.get("COCOSNET_TEST_KILL_SEED", "20240610"))
    rng = random.Random(seed)
    step, delay = rng.randint(1, 4), round(rng.uniform(0.0, 0.4), 3)
    return [
        pytest.param(3, 0.0, id="after-step-3"),
        pytest.param(  # the suite's time budget: with -m slow
            step, delay, id=f"random-seed{seed}-step{step}-delay{delay}s", marks=pytest.mark.slow
        ),
    ]


@pytest.fixture(scope="module")
def straight_weights(data_root, tmp_path_factory):
    """Final weights of an uninterrupted run, shared by the kill points."""
    out = tmp_path_factory.mktemp("straight")
    assert _worker(data_root, out, KILL_OVERRIDES).wait(timeout=240) == 0
    return torch.load(out / "rank0.pt", weights_only=True)


@pytest.mark.parametrize(("kill_step", "delay"), _kill_points())
def test_killed_training_resumes_to_the_same_weights(
    data_root, tmp_path, straight_weights, kill_step, delay
):
    killed = tmp_path / "killed"
    proc = _worker(data_root, killed, KILL_OVERRIDES)
    deadline = time.monotonic() + 240
    while not any(s >= kill_step for s, _ in list_checkpoints(killed / "checkpoints")):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(delay)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = _worker(data_root, killed, KILL_OVERRIDES, stdout=subprocess.PIPE, text=True)
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["resumed"] is not None and kill_step <= summary["resumed"] < 6, summary
    b = torch.load(killed / "rank0.pt", weights_only=True)
    different = [k for k in straight_weights if not torch.equal(straight_weights[k], b[k])]
    assert not different, different[:5]


def test_sigterm_writes_a_checkpoint_and_stops(data_root, tmp_path):
    stops = iter([False, True])
    p = parse_params(_params(max_steps=5, checkpoint_every=100))
    result = _train_tiny(data_root, tmp_path, p, stop_requested=lambda: next(stops))
    assert result.stopped == "interrupted" and result.steps == 2
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [2]
    assert result.export_dir is None


def test_torchrun_command_for_one_node_and_many():
    p = parse_params(_params(nproc_per_node=4))
    cmd = torchrun_command(p.train, p.runtime, ["stages.train", "demo"])
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--nproc-per-node=4"]
    assert "--standalone" in cmd and cmd[-3:] == ["-m", "stages.train", "demo"]
    p = parse_params(_params(nproc_per_node=8, nnodes=2, rdzv_endpoint="node0:29500"))
    cmd = torchrun_command(p.train, p.runtime, ["stages.train", "demo"])
    assert "--nnodes=2" in cmd and "--rdzv-endpoint=node0:29500" in cmd
    assert "--standalone" not in cmd


def _leaves_are_numbers(tree) -> bool:
    return all(
        _leaves_are_numbers(v) if isinstance(v, dict) else type(v) in (int, float)
        for v in tree.values()
    )


def test_train_stage_tracks_the_run_in_mlflow(data_root, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from stages.train import main as train_stage

    raw = _params(max_steps=2, image_every=1)
    raw["data"] = {"root": str(data_root)}
    raw["train"]["datasets"] = ["demo"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw["tracking"] = {"uri": uri, "experiment": "test"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    train_stage("demo", "params.yaml", str(tmp_path / "no-weights"))
    numbers = json.loads((tmp_path / "metrics" / "train_demo.json").read_text())
    summary = json.loads((tmp_path / "metrics" / "train_run_demo.json").read_text())
    assert _leaves_are_numbers(numbers)  # what `dvc metrics show` tabulates
    assert numbers["steps"] == 2 and "no-vgg" in summary["losses"]
    assert "loss.vgg is off" in summary["vgg_losses_off_reason"]
    held_out = numbers["held_out"]
    assert 0 <= held_out["warp_accuracy_baseline"] <= held_out["warp_accuracy_upper_bound"] <= 1
    assert summary["held_out"]["per_class"] and summary["resumed_from_step"] is None
    curve = (tmp_path / "metrics" / "train_curve_demo.csv").read_text().splitlines()
    assert curve[0].startswith("step,") and len(curve) == 3
    client = MlflowClient(uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["losses"] == summary["losses"]
    assert run.data.tags["dvc_stage"] == "train@demo"
    assert run.data.params["train.batch_size"] == "2"
    (held_out_metric,) = client.get_metric_history(run.info.run_id, "eval/warp_accuracy")
    assert held_out_metric.value == pytest.approx(held_out["warp_accuracy"])
    history = client.get_metric_history(run.info.run_id, "G/total")
    assert [m.step for m in history] == [1, 2]
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    # MLflow's image API: <key>+step+<step>+... files, which the UI shows with a step slider.
    steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in images if p.endswith(".png"))
    assert steps == [1, 2]
    # The export is the run's pyfunc model, registered; checkpoints stay with DVC by default.
    assert not client.list_artifacts(run.info.run_id, "checkpoints")
    (output,) = run.outputs.model_outputs
    (version,) = client.search_model_versions("name='cocosnet-demo'")
    assert version.run_id == run.info.run_id
    assert version.tags["logged_model_id"] == output.model_id
    assert run.data.tags["mlflow.source.name"] == "stages/train.py"
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "demo/train"


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(
    data_root, tmp_path, monkeypatch
):
    from cocosnet.losses.objective import Objective
    from cocosnet.training.steps import NonFiniteError

    real = Objective.generator_terms
    calls = {"n": 0}

    def poisoned(self, x, **kw):
        terms = real(self, x, **kw)
        calls["n"] += 1
        if calls["n"] == 3:  # the third generator step produces NaN
            terms["gan"] = terms["gan"] * float("nan")
        return terms

    monkeypatch.setattr(Objective, "generator_terms", poisoned)
    p = parse_params(_params(max_steps=5))
    messages = []
    with pytest.raises(
        NonFiniteError, match=r"step 2: non-finite generator loss term\(s\) \['gan'\]"
    ):
        _train_tiny(data_root, tmp_path, p, log=messages.append)
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [1, 2]
    assert "last good checkpoint is kept" in messages[-1] and "step_000000002" in messages[-1]
    assert not (tmp_path / "export").exists()


def test_resume_key_covers_settings_and_code_but_not_where_a_run_stops():
    from cocosnet.training import checkpoint

    def key(p, code="a"):
        return checkpoint.training_fingerprint(p.model, p.loss, p.train, code=code)

    p = parse_params(_params())
    longer = parse_params(_params(max_steps=50, checkpoint_every=7, log_every=3, threads=2))
    assert key(longer) == key(p)
    assert key(parse_params(_params(lr_g=3e-4))) != key(p)
    assert key(parse_params(_params(load_size=80))) != key(p)
    assert key(p, code="edited") != key(p)


def test_a_longer_run_resumes_a_shorter_one_but_never_the_reverse(data_root, tmp_path):
    from cocosnet.training.checkpoint import previous_run

    p = parse_params(_params(max_steps=2))
    first = _train_tiny(data_root, tmp_path, p)
    assert first.steps == 2
    # A 1-step run takes the step-1 checkpoint, never step 2.
    assert previous_run(tmp_path / "checkpoints", 1).state["step"] == 1
    previous = previous_run(tmp_path / "checkpoints", 3)
    assert previous is not None and previous.state["step"] == 2
    longer = _train_tiny(data_root, tmp_path, parse_params(_params()), previous=previous)
    assert longer.resumed_from == 2 and longer.steps == 3
    with pytest.raises(ValueError, match="cannot be resumed"):
        _train_tiny(data_root, tmp_path, p, previous=previous_run(tmp_path / "checkpoints", 3))
