"""MLflow conventions: URIs, param flattening, image grids and the Tracker on a tmp sqlite store."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from cocosnet import tracking
from cocosnet.tracking import (
    MAX_PARAM_LENGTH,
    TRUNCATION_MARKER,
    Tracker,
    default_tracking_uri,
    flatten_params,
    git_commit,
    resolve_tracking_uri,
)
from cocosnet.visualize import image_grid


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One sqlite store per module: MLflow migrates a new database for 2-5 s."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    (root / "cwd").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        # MLflow caches the store with a default artifact root taken from the cwd: keep it
        # out of the repo in case the Tracker's own artifact location ever stops applying.
        patch.chdir(root / "cwd")
        MlflowClient(tracking_uri=uri).search_experiments()  # pay the migration once, here
    return uri, root


@pytest.fixture
def client(store: tuple[str, Path]) -> MlflowClient:
    return MlflowClient(tracking_uri=store[0])


@pytest.fixture
def batch_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, int]]:
    """Sizes of every MlflowClient.log_batch call (still forwarded to MLflow)."""
    calls: list[dict[str, int]] = []
    original = MlflowClient.log_batch

    def counting(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        calls.append({"metrics": len(metrics), "params": len(params), "tags": len(tags)})
        return original(self, run_id, metrics, params, tags, synchronous=synchronous)

    monkeypatch.setattr(MlflowClient, "log_batch", counting)
    return calls


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


# ----------------------------------------------------------------------------- flatten_params


def test_flatten_params_nested_dicts_lists_and_none() -> None:
    nested = {
        "train": {"lr_g": 1e-4, "betas": [0.5, 0.999], "amp": False},
        "model": {"preset": "demo", "extra": None, "sub": {"k": 3}},
        "data": {"datasets": ["demo"], "options": {}},
        "seed": 0,
    }
    flat = flatten_params(nested)
    assert flat == {
        "train.lr_g": "0.0001",
        "train.betas": "[0.5, 0.999]",
        "train.amp": "False",
        "model.preset": "demo",
        "model.extra": "None",
        "model.sub.k": "3",
        "data.datasets": "['demo']",
        "data.options": "{}",
        "seed": "0",
    }
    assert flatten_params({"a": {"b": 1}}, prefix="cfg", sep="/") == {"cfg/a/b": "1"}


def test_flatten_params_limits_and_invalid_keys() -> None:
    flat = flatten_params({"long": "x" * 10_000, "short": "y" * MAX_PARAM_LENGTH, "a:b@c": 1})
    assert len(flat["long"]) == MAX_PARAM_LENGTH
    assert flat["long"].endswith(TRUNCATION_MARKER) and flat["long"].startswith("x" * 100)
    assert flat["short"] == "y" * MAX_PARAM_LENGTH  # exactly at the limit: untouched
    assert flat["a_b_c"] == "1"
    with pytest.raises(ValueError, match="clash"):
        flatten_params({"a:b": 1, "a_b": 2})


# ------------------------------------------------------------------------------- tracking URIs


def test_resolve_tracking_uri_rules(tmp_path: Path) -> None:
    root = tmp_path.resolve()  # URIs name the real path, not a symlinked one
    assert default_tracking_uri(tmp_path) == f"sqlite:///{root / 'mlflow.db'}"
    assert default_tracking_uri(tmp_path).startswith("sqlite:////")
    assert resolve_tracking_uri(None, tmp_path) == default_tracking_uri(tmp_path)
    assert resolve_tracking_uri("sqlite:///runs/x.db", tmp_path) == f"sqlite:///{root}/runs/x.db"
    assert resolve_tracking_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_tracking_uri("mlruns", tmp_path) == (root / "mlruns").as_uri()
    assert resolve_tracking_uri("file:store", tmp_path) == (root / "store").as_uri()
    assert resolve_tracking_uri("file:///abs/store", tmp_path) == "file:///abs/store"
    for server in ("http://127.0.0.1:5000", "https://mlflow.example.org/x"):
        assert resolve_tracking_uri(server, tmp_path) == server
    for bad in ("", "  ", "ftp://host/x", "sqlite://", "sqlite:///", "file://otherhost/x"):
        with pytest.raises(ValueError):
            resolve_tracking_uri(bad, tmp_path)


def test_queued_dvc_experiment_copies_log_to_the_main_repo(tmp_path: Path) -> None:
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    assert default_tracking_uri(copy) == default_tracking_uri(tmp_path)
    assert resolve_tracking_uri("sqlite:///x.db", copy) == f"sqlite:///{tmp_path.resolve()}/x.db"


# ---------------------------------------------------------------------------------- git_commit


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_commit_clean_dirty_and_outside_a_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # even if /tmp is in a repo
    repo = tmp_path / "repo"
    repo.mkdir()
    assert git_commit(repo) is None  # tmp_path is not inside a repository

    def git(*args: str) -> str:
        cmd = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
        cmd += ["-c", "commit.gpgsign=false", *args]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (repo / "cocosnet").mkdir()
    (repo / "cocosnet/f.py").write_text("a")
    git("add", "cocosnet/f.py")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD")
    assert git_commit(repo) == head
    (repo / "untracked.txt").write_text("u")
    assert git_commit(repo) == head  # untracked files do not make the tree dirty
    (repo / "cocosnet/f.py").write_text("b")
    assert git_commit(repo) == f"{head}-dirty"


def test_git_commit_without_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def missing(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(tracking.source.subprocess, "run", missing)
    assert git_commit(tmp_path) is None


# ---------------------------------------------------------------------------------- image_grid


def test_image_grid_layout_and_value_ranges() -> None:
    b, h, w = 6, 8, 5
    black = -torch.ones(b, 3, h, w)
    white = torch.ones(b, 3, h, w)
    mid = torch.zeros(b, 3, h, w)
    grey = torch.full((b, 1, h, w), 0.25)
    grid = image_grid([black, white, mid, grey], max_rows=4)
    assert grid.dtype == np.uint8
    assert grid.shape == (4 * h + 3 * 2, 4 * w + 3 * 2, 3)
    for r in range(4):
        y = r * (h + 2)
        cells = [grid[y : y + h, c * (w + 2) : c * (w + 2) + w].astype(int) for c in range(4)]
        assert (cells[0] == 0).all() and (cells[1] == 255).all()
        assert (abs(cells[2] - 0.5 * 255) <= 1).all()  # RGB 0 is the middle of [-1, 1]
        assert (abs(cells[3] - 0.25 * 255) <= 1).all()  # grey is in [0, 1]
    assert (grid[:, w : w + 2] == 255).all() and (grid[h : h + 2, :w] == 255).all()
    assert image_grid([black[:2]], max_rows=4).shape[0] == 2 * h + 2  # fewer samples than rows


def test_image_grid_resizes_to_the_first_column() -> None:
    small = torch.tensor([[-1.0, 1.0], [1.0, -1.0]]).expand(1, 3, 2, 2)
    grid = image_grid([torch.zeros(1, 3, 4, 4), small])
    assert grid.shape == (4, 4 + 2 + 4, 3)
    right = grid[:, 6:, 0]
    expected = np.kron(np.array([[0, 255], [255, 0]]), np.ones((2, 2), dtype=int))
    assert (right == expected).all()  # nearest: each source pixel becomes a 2 x 2 block


def test_image_grid_colours_label_maps() -> None:
    classes = 6
    labels = torch.tensor([[0, 1, 2], [3, 4, 5]])
    one_hot = torch.nn.functional.one_hot(labels, classes).permute(2, 0, 1)[None].float()
    grid = image_grid([one_hot])
    colours = [tuple(grid[i, j]) for i in range(2) for j in range(3)]
    assert len(set(colours)) == classes  # every class its own colour
    soft = torch.softmax(one_hot * 5, dim=1)  # argmax decides, not the exact values
    assert (image_grid([soft]) == grid).all()
    assert (image_grid([one_hot, one_hot])[:, 5:] == grid).all()  # a fixed palette


def test_image_grid_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        image_grid([])
    with pytest.raises(ValueError, match="batch sizes"):
        image_grid([torch.zeros(2, 3, 4, 4), torch.zeros(3, 3, 4, 4)])
    with pytest.raises(ValueError, match="B x C x H x W"):
        image_grid([torch.zeros(3, 4, 4)])


# ------------------------------------------------------------------------------------- Tracker


def test_tracker_end_to_end(
    store: tuple[str, Path],
    client: MlflowClient,
    batch_calls: list[dict[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(store[1] / "cwd")  # artifacts must not follow the cwd
    params = flatten_params({"train": {f"p{i}": i for i in range(150)}, "model": {"k:v": None}})
    tags = {tracking.TAG_LOSSES: "paper", tracking.TAG_DVC_STAGE: "train"}
    tracker = Tracker(store[0], "e2e", run_name="r", tags=tags, params=params, flush_every=5)
    assert [c["params"] for c in batch_calls] == [100, 50 + 1]
    batch_calls.clear()
    steps = 12
    for step in range(steps):
        tracker.log_metrics({"loss/G": step * 0.5, "loss/D": torch.tensor(1.0 + step)}, step)
    tracker.log_image(np.zeros((6, 7, 3), np.uint8), "val", 3)
    tracker.log_dict({"model": {"preset": "demo"}}, "config.json")
    tracker.set_tags({tracking.TAG_GIT_COMMIT: "abc"})
    tracker.close()
    tracker.close()  # idempotent

    metric_calls = [c["metrics"] for c in batch_calls if c["metrics"]]
    assert sum(metric_calls) == 2 * steps and len(metric_calls) < 2 * steps
    assert metric_calls == [10, 10, 4]  # every 5 steps, then the rest on close
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "r"
    assert run.data.params == params
    assert run.data.tags[tracking.TAG_LOSSES] == "paper"
    assert run.data.tags[tracking.TAG_GIT_COMMIT] == "abc"
    assert _history(client, tracker.run_id, "loss/G") == {s: s * 0.5 for s in range(steps)}
    assert _history(client, tracker.run_id, "loss/D") == {s: 1.0 + s for s in range(steps)}
    files = [f.path for f in client.list_artifacts(tracker.run_id, "images")]
    assert [f.split("+")[:3] for f in files if f.endswith(".png")] == [["images/val", "step", "3"]]
    assert "config.json" in [f.path for f in client.list_artifacts(tracker.run_id)]
    assert run.info.artifact_uri.startswith((store[1] / "mlruns").as_uri())
    assert not (store[1] / "cwd" / "mlruns").exists()
    with pytest.raises(RuntimeError, match="closed"):
        tracker.log_metrics({"x": 1.0}, 0)


def test_tracker_splits_large_metric_batches(
    store: tuple[str, Path], client: MlflowClient, batch_calls: list[dict[str, int]]
) -> None:
    with Tracker(store[0], "big", flush_every=1000) as tracker:
        for step in range(40):
            tracker.log_metrics({f"m{k}": float(k + step) for k in range(30)}, step)
    assert [c["metrics"] for c in batch_calls if c["metrics"]] == [1000, 200]
    assert len(client.get_metric_history(tracker.run_id, "m29")) == 40


def test_trackers_in_one_process_do_not_interfere(
    store: tuple[str, Path], client: MlflowClient
) -> None:
    with Tracker(store[0], "two", flush_every=1) as a, Tracker(store[0], "two") as b:
        for step in range(3):
            a.log_metrics({"loss": 1.0}, step)
            b.log_metrics({"loss": 2.0}, step)
    assert a.run_id != b.run_id
    assert _history(client, a.run_id, "loss") == dict.fromkeys(range(3), 1.0)
    assert _history(client, b.run_id, "loss") == dict.fromkeys(range(3), 2.0)


def test_context_manager_marks_failed_and_killed_runs(
    store: tuple[str, Path], client: MlflowClient
) -> None:
    with pytest.raises(ZeroDivisionError), Tracker(store[0], "ctx") as failed:
        failed.log_metrics({"loss": 1.0}, 0)
        _ = 1 / 0
    with pytest.raises(KeyboardInterrupt), Tracker(store[0], "ctx") as killed:
        raise KeyboardInterrupt
    assert client.get_run(failed.run_id).info.status == "FAILED"
    assert len(client.get_metric_history(failed.run_id, "loss")) == 1  # flushed on failure too
    assert client.get_run(killed.run_id).info.status == "KILLED"


def test_resume_continues_the_same_run(store: tuple[str, Path], client: MlflowClient) -> None:
    params = {"train.lr_g": "0.0001"}
    with Tracker(store[0], "resume", params=params) as first:
        for step in range(3):
            first.log_metrics({"loss": float(step)}, step)
    resumed = Tracker(store[0], "ignored", run_id=first.run_id, params={**params, "new": "1"})
    assert resumed.run_id == first.run_id
    assert client.get_run(first.run_id).info.status == "RUNNING"
    for step in range(3, 5):
        resumed.log_metrics({"loss": float(step)}, step)
    resumed.close()
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"train.lr_g": "0.0001", "new": "1"}
    assert _history(client, first.run_id, "loss") == {s: float(s) for s in range(5)}


def test_resume_refuses_changed_params_and_unknown_runs(
    store: tuple[str, Path], client: MlflowClient
) -> None:
    with Tracker(store[0], "resume", params={"train.lr_g": "0.0001"}) as first:
        pass
    with pytest.raises(ValueError, match="train.lr_g"):
        Tracker(store[0], "resume", run_id=first.run_id, params={"train.lr_g": "0.0002"})
    assert client.get_run(first.run_id).info.status == "FINISHED"  # left untouched
    missing = "0123456789abcdef0123456789abcdef"
    with pytest.raises(ValueError, match=missing):
        Tracker(store[0], "resume", run_id=missing)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_metrics_raise(store: tuple[str, Path], client: MlflowClient, bad) -> None:
    with Tracker(store[0], "nan") as tracker:
        with pytest.raises(ValueError, match="loss_D"):
            tracker.log_metrics({"loss_G": 1.0, "loss_D": bad}, 0)
        tracker.log_metrics({"loss_G": 2.0}, 1)
    assert _history(client, tracker.run_id, "loss_G") == {1: 2.0}  # nothing of the bad call


def test_invalid_names_raise_before_mlflow(store: tuple[str, Path]) -> None:
    with Tracker(store[0], "names") as tracker:
        for key in ("a:b", "../up", "/abs", "a//b", ""):
            with pytest.raises(ValueError, match="invalid MLflow metric name"):
                tracker.log_metrics({key: 1.0}, 0)
        with pytest.raises(ValueError, match="uint8"):
            tracker.log_image(np.zeros((4, 4, 3), np.float32), "x", 0)
    with pytest.raises(ValueError, match="invalid MLflow param name"):
        Tracker(store[0], "names", params={"a?": "1"})
