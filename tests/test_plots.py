"""`cocosnet plots`: DVC's plots and metrics as an offline page, for the workspace or to compare
commits and experiments (as `dvc plots diff`, which needs a CDN)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from cocosnet.plots import with_log_axes

STAGE = (
    "import json, yaml; x = yaml.safe_load(open('params.yaml'))['x']; "
    "json.dump({'m': x, 'note': 'text'}, open('metrics.json', 'w')); "
    "open('curve.csv', 'w').write('step,loss\\n' + ''.join(f'{s},{x * 1000 / s}\\n' "
    "for s in range(1, 6)))"
)


def _run(cmd: list[str], cwd: Path) -> str:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_log_axis_only_where_the_values_span_two_decades():
    def spec(values):
        return {"data": {"values": values}, "encoding": {"y": {"field": "v"}, "x": {"field": "s"}}}

    wide = with_log_axes(spec([{"v": "0.5", "s": 1}, {"v": "60", "s": 2}]))
    assert wide["encoding"]["y"]["scale"] == {"type": "log"}
    for values in ([{"v": 1}, {"v": 50}], [{"v": 0}, {"v": 500}], [{"v": "x"}]):
        assert "scale" not in with_log_axes(spec(values))["encoding"]["y"]
    layered = {"data": {"values": [{"v": 1}, {"v": 1000}]}, "layer": [spec([])]}
    layered["layer"][0].pop("data")
    assert with_log_axes(layered)["layer"][0]["encoding"]["y"]["scale"]["type"] == "log"


def test_plots_compare_a_commit_with_the_workspace(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    _run(["git", "init", "-q"], tmp_path)
    _run([sys.executable, "-m", "dvc", "init", "-q"], tmp_path)
    (tmp_path / "params.yaml").write_text("x: 1\n")
    stage = {
        "cmd": f'{sys.executable} -c "{STAGE}"',
        "params": ["x"],
        "metrics": [{"metrics.json": {"cache": False}}],
        "plots": [{"curve.csv": {"cache": False, "x": "step", "y": "loss"}}],
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"make": stage}}))
    _run([sys.executable, "-m", "dvc", "repro", "-q"], tmp_path)
    _run(["git", "add", "-A"], tmp_path)
    _run([*git, "commit", "-qm", "x=1"], tmp_path)
    (tmp_path / "params.yaml").write_text("x: 2\n")
    _run([sys.executable, "-m", "dvc", "repro", "-q"], tmp_path)

    cli = [sys.executable, "-m", "cocosnet.cli", "plots", "HEAD", "workspace", "--out", "page"]
    out = json.loads(_run(cli, tmp_path).strip().splitlines()[-1])
    assert out["not_loaded"] == []
    page = (tmp_path / "page" / "index.html").read_text()
    for rev, m in (("HEAD", 1), ("workspace", 2)):
        assert f"<td>{rev}</td><td>metrics.json</td><td>m</td><td>{m}</td>" in page
    svg = (tmp_path / "page" / "plot_00.svg").read_text()
    assert "HEAD" in svg and "workspace" in svg  # one curve per revision, named in the legend
    assert "note" not in page  # metric files hold numbers; the table shows only those
