"""The MLflow UI (as ``make ui`` serves it) renders a run logged the way the pipeline logs one.

Needs Debian's ``chromium`` (``make test-ui`` installs it). The UI is a single-page app, so the
page is loaded in headless Chromium with a virtual time budget that lets its scripts fetch the run
and render; the rendered DOM is checked and a screenshot is saved as ``docs/mlflow_ui.png``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from cocosnet.tracking import TAG_DVC_STAGE, Tracker

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "mlflow_ui.png"
WINDOW = (1400, 900)
RUN_NAME = "train@demo"
# MLflow 3.17's UI opens its assistant panel (a third of the window) on the first visit of a page
# whose hostname is localhost or 127.0.0.1. Chromium maps this name to the loopback server instead,
# so the page looks as it does once a user has closed the panel; the server must allow its Host
# header and Origin (its default allow-lists name localhost and private IPs only).
UI_HOST = "mlflow-ui.test"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"{CHROMIUM} missing: `make test-ui` installs Debian's chromium",
    ),
]


def _free_port() -> int:
    """A port free on loopback now (the OS picks it; the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def logged_run(tmp_path: Path) -> tuple[str, str, Path]:
    """(experiment id, run id, sqlite path) of a finished run logged through Tracker."""
    db = tmp_path / "mlflow.db"
    params = {"train.lr_g": "0.0001", "train.lr_d": "0.0004", "train.batch_size": "4"}
    tags = {TAG_DVC_STAGE: RUN_NAME}
    with Tracker(f"sqlite:///{db}", "cocosnet", run_name=RUN_NAME, tags=tags, params=params) as t:
        for step in range(5):
            t.log_metrics({"G/total": 2.0 / (step + 1), "D/total": 1.0 - 0.1 * step}, step=step)
        ramp = np.linspace(0, 255, 32 * 32 * 3).astype(np.uint8).reshape(32, 32, 3)
        t.log_image(ramp, "fake", step=4)
    run = MlflowClient(f"sqlite:///{db}").get_run(t.run_id)
    return run.info.experiment_id, run.info.run_id, db


@pytest.fixture
def ui_port(logged_run: tuple[str, str, Path], tmp_path: Path) -> Iterator[int]:
    """Port of an MLflow UI over ``logged_run``'s store, settings as ``make ui``; stopped after."""
    db = logged_run[2]
    port = _free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", f"sqlite:///{db}",
        "--default-artifact-root", (db.parent / "mlruns").as_uri(),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--allowed-hosts", f"127.0.0.1:{port},{UI_HOST}:{port}",
        "--cors-allowed-origins", f"http://{UI_HOST}:{port}",
    ]  # fmt: skip
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        # Own session: the CLI starts uvicorn as a child, and the whole group is stopped below.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {proc.returncode}" if proc.poll() is not None else "timed out"
                pytest.fail(f"MLflow UI did not start ({state}):\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        os.fspath(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu",
        "--hide-scrollbars", "--no-first-run", f"--user-data-dir={profile}",
        f"--host-resolver-rules=MAP {UI_HOST} 127.0.0.1",
        # Virtual time runs the app's timers and waits for its fetches: 20 s of it lets the
        # run page render fully (in about 3 s of wall time).
        "--virtual-time-budget=20000", *args, url,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def test_run_page_renders(logged_run: tuple[str, str, Path], ui_port: int, tmp_path: Path):
    exp_id, run_id, _ = logged_run
    api = f"http://127.0.0.1:{ui_port}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=images"
    with urllib.request.urlopen(api, timeout=30) as r:
        files = [f["path"] for f in json.load(r).get("files", [])]
    # MLflow's image API (<key>+step+<step>+...): the UI shows the image with a step slider.
    assert [f.split("+")[:3] for f in files if f.endswith(".png")] == [["images/fake", "step", "4"]]

    # workflowType picks the "Model training" view (3.x opens experiments in the GenAI view).
    url = f"http://{UI_HOST}:{ui_port}/#/experiments/{exp_id}/runs/{run_id}"
    url += "?workflowType=machine_learning"
    dump = _chromium(url, tmp_path / "chrome-dom", "--dump-dom")
    assert dump.returncode == 0, dump.stderr[-4000:]
    dom = dump.stdout
    for text in (RUN_NAME, run_id, "G/total", "D/total", "train.lr_g", TAG_DVC_STAGE):
        assert text in dom, f"{text!r} not in the rendered run page ({len(dom)} chars of DOM)"
    assert "Failed to load" not in dom  # a blocked or failed API call (Host/CORS) shows this

    path = tmp_path / "mlflow_ui.png"  # copied to docs/ once checked
    size = f"--window-size={WINDOW[0]},{WINDOW[1]}"
    shot = _chromium(url, tmp_path / "chrome-shot", f"--screenshot={path}", size)
    assert shot.returncode == 0, shot.stderr[-4000:]
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = (int.from_bytes(png[i : i + 4], "big") for i in (16, 20))  # IHDR
    assert (width, height) == WINDOW
    assert len(png) > 10_000, f"screenshot is only {len(png)} bytes: a blank page?"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(png)
