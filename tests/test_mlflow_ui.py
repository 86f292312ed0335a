"""The MLflow UI (as ``make ui`` serves it) renders a run logged the way the pipeline logs one.

Needs Debian's ``chromium`` (``make test-ui`` installs it). The UI is a single-page app, so the
page is loaded in headless Chromium with a virtual time budget that lets its scripts fetch the run
and render; the rendered DOM is checked and a screenshot taken (in the test's own folder).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from cocosnet.tracking import TAG_DVC_STAGE, Tracker

from .mlflow_browser import CHROMIUM, chromium, mlflow_ui, run_page_url, screenshot

RUN_NAME = "train@demo"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"{CHROMIUM} missing: `make test-ui` installs Debian's chromium",
    ),
]


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
    try:
        with mlflow_ui(db, db.parent / "mlruns", tmp_path / "server.log") as port:
            yield port
    except RuntimeError as err:
        pytest.fail(str(err))


def test_run_page_renders(logged_run: tuple[str, str, Path], ui_port: int, tmp_path: Path):
    exp_id, run_id, _ = logged_run
    api = f"http://127.0.0.1:{ui_port}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=images"
    with urllib.request.urlopen(api, timeout=30) as r:
        files = [f["path"] for f in json.load(r).get("files", [])]
    # MLflow's image API (<key>+step+<step>+...): the UI shows the image with a step slider.
    assert [f.split("+")[:3] for f in files if f.endswith(".png")] == [["images/fake", "step", "4"]]

    url = run_page_url(ui_port, exp_id, run_id)
    dump = chromium(url, tmp_path / "chrome-dom", "--dump-dom")
    assert dump.returncode == 0, dump.stderr[-4000:]
    dom = dump.stdout
    for text in (RUN_NAME, run_id, "G/total", "D/total", "train.lr_g", TAG_DVC_STAGE):
        assert text in dom, f"{text!r} not in the rendered run page ({len(dom)} chars of DOM)"
    assert "Failed to load" not in dom  # a blocked or failed API call (Host/CORS) shows this
    # The screenshot stays in the test's folder: the README's comes from a real run
    # (`make screenshots`).
    screenshot(url, tmp_path / "chrome-shot", tmp_path / "mlflow_ui.png")
