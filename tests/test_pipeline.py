"""pipeline/: the DVC graph read from DVC, the Prefect repro flow (concurrency, skips, failures,
retries, dvc.lock recorded) and the sweep flow, on scratch DVC projects of one-line stages."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.dag import read_dag

from .prefect_harness import prefect  # noqa: F401 - the session's Prefect test server

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# A diamond: a -> b, a -> c@x, a -> c@y, (b, c@x, c@y) -> d. b and the two c stages wait (up to
# 10 s) until all three have started, so they pass only when they run at the same time. A file
# fail_STAGE makes a stage fail; flaky_STAGE makes it fail on its first try only.
DVC_YAML = {
    "stages": {
        "a": {"cmd": "python steps.py a", "deps": ["steps.py"], "outs": ["a.txt"]},
        "b": {
            "cmd": "python steps.py b",
            "deps": ["steps.py", "a.txt"],
            "params": ["b.k"],
            "outs": ["b.txt"],
        },
        "c": {
            "foreach": ["x", "y"],
            "do": {
                "cmd": "python steps.py c@${item}",
                "deps": ["steps.py", "a.txt"],
                "outs": ["c_${item}.txt"],
            },
        },
        "d": {
            "cmd": "python steps.py d",
            "deps": ["steps.py", "b.txt", "c_x.txt", "c_y.txt"],
            "outs": ["d.txt"],
        },
    }
}
STEPS = """
import sys, time
from pathlib import Path

import yaml

name = sys.argv[1]
runs = Path("runs")
runs.mkdir(exist_ok=True)
(runs / f"{name}.start").write_text(repr(time.time()))
print(f"stage {name} says hello", flush=True)
if Path(f"fail_{name}").exists():
    sys.exit(f"{name} was told to fail")
if Path(f"flaky_{name}").exists() and not Path(f"{name}.failed_once").exists():
    Path(f"{name}.failed_once").touch()
    sys.exit(f"{name} fails once")
if name in ("b", "c@x", "c@y"):
    deadline = time.time() + 10
    while not all((runs / f"{peer}.start").exists() for peer in ("b", "c@x", "c@y")):
        if time.time() > deadline:
            sys.exit(f"{name}: b, c@x and c@y did not all start")
        time.sleep(0.02)
k = yaml.safe_load(open("params.yaml"))["b"]["k"]
inputs = {"a": [], "b": ["a.txt"], "d": ["b.txt", "c_x.txt", "c_y.txt"]}.get(name, ["a.txt"])
text = "".join(Path(p).read_text() for p in inputs) + (f"b{k}" if name == "b" else name)
Path(f"{name.replace('@', '_')}.txt").write_text(text)
(runs / f"{name}.end").write_text(repr(time.time()))
"""


def run(cmd, cwd):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(autouse=True)
def tool_env(monkeypatch):
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


def init_project(work: Path, files: dict) -> Path:
    work.mkdir(parents=True)
    for name, text in files.items():
        (work / name).write_text(text)
    run(["git", "init", "-q"], work)
    run(["git", "config", "user.email", "test@example.com"], work)
    run(["git", "config", "user.name", "test"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "config", "core.analytics", "false"], work)
    return work


@pytest.fixture(scope="module")
def diamond_template(tmp_path_factory):
    files = {
        "dvc.yaml": yaml.safe_dump(DVC_YAML, sort_keys=False),
        "params.yaml": "b:\n  k: 1\n",
        "steps.py": STEPS,
    }
    return init_project(tmp_path_factory.mktemp("diamond") / "project", files)


@pytest.fixture
def project(diamond_template, tmp_path):
    return Path(shutil.copytree(diamond_template, tmp_path / "project", symlinks=True))


def up_to_date(project: Path) -> bool:
    return "Data and pipelines are up to date" in run(["dvc", "status"], project)


def test_graph_is_read_from_dvc(project):
    dag = read_dag(project)
    assert {name: stage.upstream for name, stage in dag.items()} == {
        "a": (),
        "b": ("a",),
        "c@x": ("a",),
        "c@y": ("a",),
        "d": ("b", "c@x", "c@y"),
    }
    assert dag["c@y"].cmd == ("python steps.py c@y",) and dag["c@y"].wdir == "."
    assert list(read_dag(project, ["c"])) == ["a", "c@x", "c@y"]
    with pytest.raises(ValueError, match="no stage 'e'"):
        read_dag(project, ["e"])
    # The project's own pipeline, foreach stages expanded.
    cocosnet = read_dag(ROOT, ["train@demo"])
    assert "prepare@demo" in cocosnet["train@demo"].upstream


def test_stages_and_dag_do_not_import_prefect():
    code = "import sys, pipeline.dag; assert 'prefect' not in sys.modules"
    run([sys.executable, "-c", code], ROOT)
    for path in [*(ROOT / "stages").glob("*.py"), *(ROOT / "cocosnet").rglob("*.py")]:
        assert "import prefect" not in path.read_text() and "from prefect" not in path.read_text()


@pytest.mark.usefixtures("prefect")
def test_repro_runs_independent_stages_concurrently_then_skips(project, caplog, capsys):
    from pipeline.flows import main, repro

    report = repro(root=str(project), retries=0)
    assert report.outcome == dict.fromkeys(["a", "b", "c@x", "c@y", "d"], "ran")
    times = {f.name: float(f.read_text()) for f in (project / "runs").iterdir()}
    for one, other in [("b", "c@x"), ("b", "c@y"), ("c@x", "c@y")]:
        assert times[f"{one}.start"] < times[f"{other}.end"]
        assert times[f"{other}.start"] < times[f"{one}.end"]
    assert times["a.end"] < min(times[f"{s}.start"] for s in ("b", "c@x", "c@y"))
    assert times["d.start"] > max(times[f"{s}.end"] for s in ("b", "c@x", "c@y"))
    assert (project / "d.txt").read_text() == "ab1ac@xac@yd"
    # Stage output goes to the task run's logger.
    said = {r.message for r in caplog.records if r.name == "prefect.task_runs"}
    assert "stage c@y says hello" in said and "> python steps.py c@y" in said
    assert up_to_date(project)  # every run was committed to dvc.lock

    # Nothing to run: one DVC status, no flow run (a no-op costs about what `dvc repro`'s does).
    assert main(["repro", "--root", str(project)]) == 0
    assert "skipped: a, b, c@x, c@y, d); no flow run" in capsys.readouterr().out
    report = repro(root=str(project), retries=0)  # the flow itself (a deployment) skips too
    assert report.stages("skipped") == ["a", "b", "c@x", "c@y", "d"]

    (project / "params.yaml").write_text("b:\n  k: 2\n")
    report = repro(root=str(project), retries=0)
    assert report.stages("ran") == ["b", "d"] and report.stages("skipped") == ["a", "c@x", "c@y"]
    assert (project / "d.txt").read_text() == "ab2ac@xac@yd"
    assert up_to_date(project)

    # Set back: DVC's run-cache holds b and d for k = 1, and the flow restores them as `dvc
    # repro` would (b alone could not even run: it waits for the c stages to start).
    started = (project / "runs" / "b.start").read_text()
    (project / "params.yaml").write_text("b:\n  k: 1\n")
    report = repro(root=str(project), retries=0)
    assert report.stages("restored") == ["b", "d"] and report.stages("ran") == []
    assert (project / "runs" / "b.start").read_text() == started
    assert (project / "d.txt").read_text() == "ab1ac@xac@yd"
    assert up_to_date(project)


@pytest.mark.usefixtures("prefect")
def test_failed_stage_leaves_downstream_not_run(project):
    from pipeline.flows import PipelineFailed, repro

    (project / "fail_c@x").touch()
    with pytest.raises(PipelineFailed) as failed:
        repro(root=str(project), retries=0)
    report = failed.value.report
    assert report.outcome == {
        "a": "ran",
        "b": "ran",
        "c@x": "failed",
        "c@y": "ran",
        "d": "not run",
    }
    assert (
        "exited with 1" in report.errors["c@x"] and "c@x was told to fail" in report.errors["c@x"]
    )
    assert report.errors["d"] == "not run: upstream c@x did not complete"
    assert "failed: c@x" in str(failed.value)
    assert not (project / "d.txt").exists()


@pytest.mark.usefixtures("prefect")
def test_flaky_stage_succeeds_with_retries(project):
    from pipeline.flows import repro

    (project / "flaky_d").touch()
    report = repro(root=str(project), retries=1, retry_delay_s=0)
    assert report.ok and report.outcome["d"] == "ran"
    assert (project / "d.failed_once").exists()
    assert up_to_date(project)


TRAIN = """
import json
import os

import yaml

p = yaml.safe_load(open("params.yaml"))["train"]
json.dump({"loss": p["lr"] * 10, "steps": p["n"]}, open("metrics.json", "w"))
if "SWEEP_PARENT_LOG" in os.environ:  # the MLflow parent run this stage would nest under
    with open(os.environ["SWEEP_PARENT_LOG"], "a") as log:
        log.write(os.environ.get("COCOSNET_MLFLOW_PARENT_RUN", "none") + "\\n")
"""


@pytest.fixture
def sweep_project(tmp_path):
    dvc_yaml = {
        "stages": {
            "train": {
                "cmd": "python train.py",
                "deps": ["train.py"],
                "params": ["train"],
                "metrics": [{"metrics.json": {"cache": False}}],
            }
        }
    }
    files = {
        "dvc.yaml": yaml.safe_dump(dvc_yaml),
        "params.yaml": "train:\n  lr: 0.1\n  n: 3\n",
        "train.py": TRAIN,
    }
    work = init_project(tmp_path / "sweep", files)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "scratch project"], work)
    return work


@pytest.mark.usefixtures("prefect")
def test_sweep_runs_variants_and_tabulates_them(sweep_project, tmp_path, monkeypatch):
    from pipeline.sweep import sweep

    out, parents = tmp_path / "sweep.csv", tmp_path / "parents.txt"
    variants = [{"train.lr": 0.2}, {"train.lr": 0.3, "train.n": 5}]
    monkeypatch.setenv("SWEEP_PARENT_LOG", str(parents))
    table = sweep(variants, root=str(sweep_project), out=str(out), name="lr")
    # Both experiments ran (in DVC's queue workers) under the sweep's one MLflow parent run.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{sweep_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cocosnet")
    runs = client.search_runs([experiment.experiment_id], "attributes.run_name = 'sweep: lr'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert parents.read_text().split() == [runs[0].info.run_id] * 2
    written = pd.read_csv(out)
    for frame in (table, written):
        assert list(frame["experiment"]) == ["lr-1", "lr-2"]
        assert list(frame["state"]) == ["success", "success"]
        assert list(frame["train.lr"]) == [0.2, 0.3] and list(frame["train.n"]) == [3, 5]
        assert list(frame["metrics.json:loss"]) == [2.0, 3.0]
        assert list(frame["metrics.json:steps"]) == [3, 5]
    assert list(written["overrides"]) == ["train.lr=0.2", "train.lr=0.3 train.n=5"]
    # The workspace itself is left alone.
    assert yaml.safe_load((sweep_project / "params.yaml").read_text())["train"]["lr"] == 0.1


def test_experiments_table_from_exp_show_json():
    from pipeline.sweep import experiments_table

    def exp(name, state, lr, metrics):
        data = {"params": {"params.yaml": {"data": {"train": {"lr": lr}}}}, "metrics": metrics}
        rev = {"rev": f"rev-{name}", "name": name, "data": data}
        return {"name": name, "revs": [rev], "executor": {"state": state}}

    shown = [
        {"rev": "workspace", "experiments": None},
        {
            "rev": "abc",
            "experiments": [
                exp("s-2", "failed", 0.5, {"m.json": {"error": {"type": "FileNotFoundError"}}}),
                exp("s-1", "success", 0.2, {"m.json": {"data": {"loss": 2.0, "extra": {"a": 1}}}}),
                exp("other", "success", 0.9, {}),
            ],
        },
    ]
    variants = {"s-1": {"train.lr": 0.2}, "s-2": {"train.lr": 0.5}, "s-3": {"train.lr": 1}}
    table = experiments_table(shown, variants)
    assert list(table["experiment"]) == ["s-1", "s-2", "s-3"]
    assert list(table["state"]) == ["success", "failed", "missing"]
    assert table.loc[0, "m.json:loss"] == 2.0 and table.loc[0, "m.json:extra.a"] == 1
    assert table.loc[1, "train.lr"] == 0.5 and pd.isna(table.loc[1, "m.json:loss"])
    assert list(table["overrides"]) == ["train.lr=0.2", "train.lr=0.5", "train.lr=1"]
    assert json.loads(table.to_json())  # plain values only


def test_sweep_command_line_variants():
    from pipeline.sweep import parse_variant

    assert parse_variant("train.lr_g=1e-4 'model.name=a b'") == {
        "train.lr_g": "1e-4",
        "model.name": "a b",
    }
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_variant("train.lr_g")


def test_temporary_server_timeout_is_one_line(project, tmp_path):
    """Without a server, a temporary one that does not start in time is one line that says
    what to do, not a traceback (the timeout made tiny here to force it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cmd = [sys.executable, "-m", "pipeline.flows", "repro", "--root", str(project)]
    proc = subprocess.run(
        [*cmd, "--server-timeout", "0"], env=env, capture_output=True, text=True, timeout=300,
        cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    ours = [line for line in proc.stderr.splitlines() if "temporary server did not" in line]
    assert len(ours) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert ours[0].startswith("pipeline.flows: Prefect's temporary server did not start in 0 s")
    assert "prefect server start --host 127.0.0.1" in ours[0]
