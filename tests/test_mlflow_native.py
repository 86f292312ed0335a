"""What MLflow users rely on: the exported model as a registered pyfunc model, dataset inputs,
system metrics, source tags, run names and parent runs, images with a step, the experiment's
kind and captioned grids."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from cocosnet import tracking
from cocosnet.data.manifest import log_manifest_input, split_digest, write_manifest
from cocosnet.inference import Translator, translate_files
from cocosnet.inference.pyfunc import LOGGED_MODEL_TAG, input_example, log_translator
from cocosnet.visualize import GRID_CAPTIONS, image_grid
from pipeline.parent_run import parent_run
from stages._tracking import mlflow_run_naming

from .helpers import single_thread, tiny_model

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="module")
def model_and_pair(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("pyfunc")
    export = tiny_model(root / "export")
    cfg = Translator(export).cfg
    g = np.random.default_rng(0)
    ids = g.integers(0, cfg.semantic_nc, (cfg.image_size // 8, cfg.image_size // 8))
    label = np.kron(ids, np.ones((8, 8), int)).astype(np.uint8)
    Image.fromarray(label).save(root / "label.png")
    photo = g.integers(0, 256, (cfg.image_size, cfg.image_size, 3)).astype(np.uint8)
    Image.fromarray(photo).save(root / "photo.jpg", quality=95)
    return export, root / "label.png", root / "photo.jpg"


def test_registered_pyfunc_model_translates_a_pair(store, model_and_pair, tmp_path):
    export, label, photo = model_and_pair
    tracker = tracking.Tracker(store, "models", run_name="train@x")
    example = input_example(label, photo)
    version = log_translator(
        tracker, export, registered_name="cocosnet-x", example=example,
        metrics={"eval/accuracy": 0.5}, step=7,
    )  # fmt: skip
    tracker.close()
    assert int(version.version) == 1 and version.run_id == tracker.run_id
    client = MlflowClient(store)
    model = client.get_logged_model(version.tags[LOGGED_MODEL_TAG])
    assert model.source_run_id == tracker.run_id and model.status.to_int() != 0
    assert {m.key: m.value for m in model.metrics} == {"eval/accuracy": 0.5}
    run = client.get_run(tracker.run_id)
    assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
    assert run.data.metrics == {"eval/accuracy": 0.5}  # on the run too, once
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    try:
        loaded = mlflow.pyfunc.load_model("models:/cocosnet-x/latest")  # as the README
    finally:
        mlflow.set_tracking_uri(previous)
    schema = loaded.metadata.get_input_schema()
    assert schema.input_names() == ["input", "exemplar"]
    # The safetensors travel as they are, with the code that loads them: nothing is pickled.
    local = mlflow.artifacts.download_artifacts(version.source, dst_path=str(tmp_path / "dl"))
    files = {p.name for p in Path(local).rglob("*") if p.is_file()}
    assert {"model.json", "pyfunc_entry.py", "MLmodel"} <= files
    assert any(name.endswith(".safetensors") for name in files)
    assert not any(name.endswith((".pkl", ".pickle", ".pt", ".pth")) for name in files)
    table = loaded.predict(pd.concat([example, example]))
    assert list(table.columns) == ["output", "warped"] and len(table) == 2
    expected = translate_files(Translator(export), label, photo, tmp_path / "out.png")
    for blob in table["output"]:
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(blob))), expected)
    with pytest.raises(ValueError, match="not a PNG, JPEG"):
        loaded.predict(pd.DataFrame({"input": [b"text"], "exemplar": [photo.read_bytes()]}))


def test_a_second_registration_is_a_new_version(store, model_and_pair):
    export, label, photo = model_and_pair
    versions = []
    for _ in range(2):
        with tracking.Tracker(store, "models") as tracker:
            versions.append(
                log_translator(
                    tracker, export, registered_name="m", example=None, metrics={}, step=0
                ).version
            )
    assert [int(v) for v in versions] == [1, 2]


def test_dataset_inputs_digest_the_split(store, tmp_path):
    rows = [
        {"id": f"s{i}", "split": "train" if i < 3 else "val", "image": f"images/{i}.png",
         "label": None, "width": 4, "height": 4, "sha256": f"{i:064x}"}
        for i in range(5)
    ]  # fmt: skip
    manifest = tmp_path / "manifest.parquet"
    write_manifest(manifest, rows)
    digest, n = split_digest(rows, ["train"])
    assert n == 3 and digest == split_digest(list(reversed(rows)), ["train"])[0]
    changed = [dict(r, sha256="f" * 64) if r["id"] == "s0" else r for r in rows]
    assert split_digest(changed, ["train"])[0] != digest
    assert split_digest(changed, ["val"]) == split_digest(rows, ["val"])
    with tracking.Tracker(store, "data") as tracker:
        log_manifest_input(tracker, manifest, "demo", ("train",), "training")
    inputs = MlflowClient(store).get_run(tracker.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    assert inputs[0].dataset.name == "demo/train" and inputs[0].dataset.digest == digest
    assert [(t.key, t.value) for t in inputs[0].tags] == [("mlflow.data.context", "training")]
    assert '"num_rows": 3' in inputs[0].dataset.profile


def test_experiment_kind_parent_and_images_with_a_step(store):
    client = MlflowClient(store)
    old = client.create_experiment("old")  # made before the kind tag existed
    with tracking.Tracker(store, "old") as parent:
        pass
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    with tracking.Tracker(store, "old", parent_run_id=parent.run_id) as child:
        for step in (1, 2):
            child.log_image(np.full((4, 5, 3), 40 * step, np.uint8), "train", step)
    run = client.get_run(child.run_id)
    assert run.data.tags[tracking.TAG_PARENT_RUN] == parent.run_id
    names = [f.path for f in client.list_artifacts(child.run_id, "images")]
    # MLflow's image API names files <key>+step+<step>+...: the UI's step slider reads them.
    steps = sorted(int(n.split("+step+")[1].split("+")[0]) for n in names if n.endswith(".png"))
    assert steps == [1, 2]


def test_system_metrics_are_sampled_during_a_run(store):
    with tracking.Tracker(store, "sys", system_metrics_every=0.2) as tracker:
        time.sleep(1.0)
    metrics = MlflowClient(store).get_run(tracker.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert "system/system_memory_usage_megabytes" in metrics
    with tracking.Tracker(store, "sys") as quiet:
        time.sleep(0.5)
    assert not MlflowClient(store).get_run(quiet.run_id).data.metrics


def test_gpu_system_metrics_can_be_logged():
    """MLflow's GPU monitor needs nvidia-ml-py (a dependency); without a GPU it declines."""
    from mlflow.system_metrics.metrics import gpu_monitor

    assert "pynvml" in sys.modules
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="NVML"):
            gpu_monitor.GPUMonitor()


@pytest.mark.gpu
def test_gpu_system_metrics_are_sampled(store):
    with tracking.Tracker(store, "gpu", system_metrics_every=0.2) as tracker:
        torch.ones(1, device="cuda")
        time.sleep(1.0)
    metrics = MlflowClient(store).get_run(tracker.run_id).data.metrics
    assert "system/gpu_0_utilization_percentage" in metrics


@pytest.mark.skipif(subprocess.run(["git", "--version"]).returncode, reason="no git")
def test_dirty_only_when_tracked_code_differs(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = tmp_path / "repo"
    for name in ("cocosnet/a.py", "params.yaml", "metrics/train_demo.json", "README.md"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("x")

    def git(*args):
        cmd = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
               "-c", "commit.gpgsign=false", *args]  # fmt: skip
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "c")
    head = git("rev-parse", "HEAD")
    (repo / "params.yaml").write_text("y")  # dvc exp rewrites it
    (repo / "metrics/train_demo.json").unlink()  # DVC removes a stage's outputs before a rerun
    (repo / "README.md").write_text("y")
    tags = tracking.source_tags(repo / "cocosnet", "stages/train.py")
    assert tags[tracking.TAG_SOURCE_COMMIT] == head and tags["git_dirty"] == "false"
    assert tags[tracking.TAG_GIT_COMMIT] == head
    assert tags[tracking.TAG_SOURCE_NAME] == "stages/train.py"
    (repo / "cocosnet/a.py").write_text("y")
    tags = tracking.source_tags(repo, "stages/train.py")
    assert tags["git_dirty"] == "true" and tags[tracking.TAG_GIT_COMMIT] == f"{head}-dirty"


def test_run_names_and_parent_from_the_environment():
    assert mlflow_run_naming("train@demo", {}) == ("train@demo", None)
    env = {"DVC_EXP_NAME": "lr-2", tracking.PARENT_RUN_ENV: "abc"}
    assert mlflow_run_naming("train@demo", env) == ("lr-2: train@demo", "abc")


def test_parent_run_of_a_pipeline(tmp_path):
    (tmp_path / "params.yaml").write_text(f"tracking:\n  uri: sqlite:///{tmp_path}/p.db\n")
    with parent_run(tmp_path, "pipeline: all stages", "pipeline/flows.py") as env:
        run_id = env[tracking.PARENT_RUN_ENV]
    with pytest.raises(RuntimeError), parent_run(tmp_path, "pipeline: x", "pipeline/flows.py"):
        raise RuntimeError("a stage failed")
    client = MlflowClient(f"sqlite:///{tmp_path}/p.db")
    runs = client.search_runs([client.get_experiment_by_name("cocosnet").experiment_id])
    status = {r.info.run_name: r.info.status for r in runs}
    assert status == {"pipeline: all stages": "FINISHED", "pipeline: x": "FAILED"}
    assert client.get_run(run_id).data.tags[tracking.TAG_SOURCE_NAME] == "pipeline/flows.py"


def test_grid_captions_name_the_columns():
    cols = [torch.zeros(2, 3, 16, 16) for _ in GRID_CAPTIONS]
    plain, captioned = image_grid(cols), image_grid(cols, captions=GRID_CAPTIONS)
    assert captioned.shape == (plain.shape[0] + 14, plain.shape[1], 3)
    assert np.array_equal(captioned[14:], plain)
    band = captioned[:14]
    for c in range(len(cols)):  # dark caption pixels over every column
        assert (band[:, c * 18 : c * 18 + 16] < 128).any()
    with pytest.raises(ValueError, match="captions"):
        image_grid(cols, captions=GRID_CAPTIONS[:2])


def test_metric_files_hold_numbers_and_the_rest_goes_to_the_record():
    from cocosnet.metric_files import split_summary

    summary = {
        "dataset": "demo",
        "steps": 3,
        "resumed_from_step": 2,
        "ok": True,
        "held_out": {"accuracy": 0.5, "per_class": {"0": {"accuracy": 1.0}}, "note": None},
        "metrics": {"fid": {"skipped": "no weights"}, "swd": {"swd_avg": 1.5, "sha": "ab"}},
    }
    numbers, record = split_summary(summary)
    assert numbers == {
        "steps": 3,
        "held_out": {"accuracy": 0.5},
        "metrics": {"swd": {"swd_avg": 1.5}},
    }
    assert record == {
        "dataset": "demo",
        "resumed_from_step": 2,
        "ok": True,
        "held_out": {"per_class": {"0": {"accuracy": 1.0}}, "note": None},
        "metrics": {"fid": {"skipped": "no weights"}, "swd": {"sha": "ab"}},
    }
