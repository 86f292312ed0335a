"""An MLflow UI over a tracking database (as ``make ui`` serves it) and headless Chromium to
render its pages: used by the browser test (a run logged in a temporary store) and by
``make screenshots`` (the repo's own mlflow.db after ``make repro``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1400, 900)
# MLflow 3.17's UI opens its assistant panel (a third of the window) on the first visit of a page
# whose hostname is localhost or 127.0.0.1. Chromium maps this name to the loopback server instead,
# so the page looks as it does once a user has closed the panel; the server must allow its Host
# header and Origin (its default allow-lists name localhost and private IPs only).
UI_HOST = "mlflow-ui.test"


def free_port() -> int:
    """A port free on loopback now (the OS picks it; the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mlflow_ui(db: Path, artifacts: Path, log: Path) -> Iterator[int]:
    """The port of an MLflow UI over the sqlite ``db`` (settings as ``make ui``); stopped
    after. RuntimeError with the server's log if it does not start in 60 s."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", f"sqlite:///{db}",
        "--default-artifact-root", artifacts.as_uri(),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--allowed-hosts", f"127.0.0.1:{port},{UI_HOST}:{port}",
        "--cors-allowed-origins", f"http://{UI_HOST}:{port}",
    ]  # fmt: skip
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
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
                raise RuntimeError(f"MLflow UI did not start ({state}):\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_page_url(port: int, experiment_id: str, run_id: str) -> str:
    # workflowType picks the "Model training" view (3.x opens experiments in the GenAI view).
    url = f"http://{UI_HOST}:{port}/#/experiments/{experiment_id}/runs/{run_id}"
    return url + "?workflowType=machine_learning"


def chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        os.fspath(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu",
        "--hide-scrollbars", "--no-first-run", f"--user-data-dir={profile}",
        f"--host-resolver-rules=MAP {UI_HOST} 127.0.0.1",
        # Virtual time runs the app's timers and waits for its fetches: 20 s of it lets the
        # run page render fully (in about 3 s of wall time).
        "--virtual-time-budget=20000", *args, url,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def screenshot(url: str, profile: Path, path: Path) -> bytes:
    """A WINDOW-sized PNG of ``url`` at ``path``; RuntimeError if Chromium fails or the page is
    blank."""
    shot = chromium(url, profile, f"--screenshot={path}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    if shot.returncode != 0:
        raise RuntimeError(shot.stderr[-4000:])
    png = path.read_bytes()
    width, height = (int.from_bytes(png[i : i + 4], "big") for i in (16, 20))  # IHDR
    if png[:8] != b"\x89PNG\r\n\x1a\n" or (width, height) != WINDOW or len(png) < 10_000:
        raise RuntimeError(f"{path}: not a {WINDOW} screenshot of a rendered page")
    return png
