"""evaluate@DS and `cocosnet evaluate` on the tiny demo: translation folders, metrics that run
without weights, metrics that are skipped with the reason, the JSON protocol and the MLflow run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from cocosnet.cli import main as cli
from cocosnet.io import write_image
from cocosnet.metrics.registry import MetricInputs, MetricOptions, evaluate, matched

from .test_training_loop import _params, data_root  # noqa: F401 - shared tiny demo data


@pytest.fixture(scope="module")
def evaluated(data_root, tmp_path_factory):  # noqa: F811
    from stages.evaluate import main as evaluate_stage
    from stages.train import main as train_stage

    work = tmp_path_factory.mktemp("evaluate")
    raw = _params(max_steps=2)
    raw["data"] = {"root": str(data_root)}
    raw["tracking"] = {"uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": "test"}
    raw["eval"] = {"image_format": "jpg", "jpeg_quality": 90, "batch_size": 3}
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        train_stage("demo", "params.yaml", str(work / "no-weights"))
        evaluate_stage("demo", "params.yaml", str(work / "no-weights"))
    numbers = json.loads((work / "metrics" / "eval_demo.json").read_text())
    record = json.loads((work / "metrics" / "eval_run_demo.json").read_text())
    assert "per_class" not in numbers["metrics"]["warp_accuracy"]
    assert "protocol" not in numbers and "mlflow_run_id" not in numbers
    return work, _merged(record, numbers)


def _merged(record: dict, numbers: dict) -> dict:
    """The stage's whole summary again, from its two files."""
    out = dict(record)
    for key, value in numbers.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def test_evaluate_stage_writes_folders_metrics_and_protocol(evaluated):
    work, summary = evaluated
    images = work / "eval" / "demo" / "images"
    fakes = sorted(images.joinpath("fake").iterdir())
    assert len(fakes) == 4 and all(p.suffix == ".jpg" for p in fakes)  # the 4 val queries
    for name in ("real", "warped", "exemplar", "label", "exemplar_label"):
        assert sorted(p.stem for p in images.joinpath(name).iterdir()) == [p.stem for p in fakes]
    protocol = summary["protocol"]
    assert protocol["images"] == 4 and protocol["image_format"] == "jpg"
    assert protocol["jpeg_quality"] == 90 and protocol["exemplar_mask"] == "hidden (noise)"
    metrics = summary["metrics"]
    assert (
        "weights-inception" in metrics["fid"]["skipped"] or "inception" in metrics["fid"]["skipped"]
    )
    assert "vgg19_conv.pth" in metrics["semantic_consistency"]["skipped"]
    assert "vgg19_conv.pth" in metrics["style_relevance"]["skipped"]
    swd = metrics["swd"]
    assert {"swd_64", "swd_32", "swd_16", "swd_avg"} <= set(swd) and swd["swd_avg"] > 0
    acc = metrics["warp_accuracy"]
    assert 0 <= acc["warp_accuracy_baseline"] <= acc["warp_accuracy_upper_bound"] <= 1
    assert acc["per_class"] and all(0 <= v["accuracy"] <= 1 for v in acc["per_class"].values())
    colour = metrics["colour_style"]  # no weights needed: computed on the demo
    assert colour["cases"] > 0
    for key in ("closer_fraction", "warped_closer_fraction"):
        assert 0 <= colour[key] <= 1
    assert colour["distance_to_exemplar"] > 0 and colour["prior_distance_to_exemplar"] > 0
    assert colour["swap_queries"] > 0 and math.isfinite(colour["swap_response"])


def test_evaluate_stage_logs_an_mlflow_run(evaluated):
    from mlflow.tracking import MlflowClient

    work, summary = evaluated
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["dvc_stage"] == "evaluate@demo"
    assert run.data.tags["train_run_id"] == summary["train_mlflow_run_id"]
    assert "fid" in run.data.tags["skipped"]
    assert run.data.metrics["swd/swd_avg"] == pytest.approx(summary["metrics"]["swd"]["swd_avg"])
    closer = summary["metrics"]["colour_style"]["closer_fraction"]
    assert run.data.metrics["colour_style/closer_fraction"] == pytest.approx(closer)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "images")]


def test_cli_runs_a_metric_on_two_folders(evaluated, capsys):
    work, summary = evaluated
    images = work / "eval" / "demo" / "images"
    code = cli(["evaluate", "swd", "--real", str(images / "real"), "--fake", str(images / "real")])
    out = json.loads(capsys.readouterr().out)
    # Real and fake neighbourhoods are sampled independently (PGGAN), so a set against itself
    # is small but not 0; a 2-step model's outputs are far worse.
    assert code == 0 and out["metric"] == "swd"
    assert out["swd_avg"] < 0.5 * summary["metrics"]["swd"]["swd_avg"]
    code = cli(
        [
            "evaluate",
            "fid",
            "--real",
            str(images / "real"),
            "--fake",
            str(images / "fake"),
            "--weights-dir",
            str(work / "no-weights"),
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 3 and "skipped" in out  # never computed with random weights


def test_registry_refuses_unmatched_folders_and_unknown_metrics(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    for name in ("a", "b"):
        write_image(tmp_path / "real" / f"{name}.png", rgb)
    write_image(tmp_path / "fake" / "a.png", rgb)
    inputs = MetricInputs(real=tmp_path / "real", fake=tmp_path / "fake")
    with pytest.raises(ValueError, match="no counterpart"):
        matched(inputs, ("real", "fake"))
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(["inception_score"], inputs, MetricOptions())
    result = evaluate(["semantic_consistency"], inputs, MetricOptions(weights_dir=tmp_path))
    assert result["semantic_consistency"] == {"skipped": "needs the label folder(s)"}


def test_metrics_of_one_evaluation_share_one_vgg(monkeypatch):
    from cocosnet.metrics.registry import PretrainedCache
    from cocosnet.models import vgg as vgg_module

    calls = []
    monkeypatch.setattr(
        vgg_module,
        "load_vgg19",
        lambda layout, weights_dir: calls.append(layout) or vgg_module.VGG19(),
    )
    loaded = PretrainedCache(MetricOptions())
    assert loaded.vgg() is loaded.vgg() and calls == ["caffe"]
