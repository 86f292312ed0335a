"""evaluate@DS and `cocosnet evaluate` on the tiny demo: translation folders, metrics that run
without weights, metrics that are skipped with the reason, the JSON protocol and the MLflow run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
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
    assert protocol["fid"].startswith("pytorch-fid (the CoCosNet authors')")
    assert protocol["semantic_style_size"] == "each label's own"  # the demo is not a paper preset
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


def test_semantic_and_style_read_at_the_authors_size_when_asked(tmp_path):
    """resize=N: images bilinear and labels nearest to N x N (Pillow), as the authors' scripts;
    None: as stored."""
    from PIL import Image

    from cocosnet.metrics.registry import _batches

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 48, 3), np.uint8)
    ids = rng.integers(0, 5, (40, 48)).astype(np.uint8)
    write_image(tmp_path / "fake" / "a.png", rgb)
    Image.fromarray(ids).save(tmp_path / "label.png")
    rows = [{"fake": tmp_path / "fake" / "a.png", "label": tmp_path / "label.png"}]
    (native,) = _batches(rows, MetricOptions(), "t")
    assert native["fake"].shape == (1, 3, 40, 48) and native["label"].shape == (1, 40, 48)
    (resized,) = _batches(rows, MetricOptions(resize=32), "t")
    bilinear = np.asarray(Image.fromarray(rgb).resize((32, 32), Image.Resampling.BILINEAR))
    want = torch.from_numpy(bilinear).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(resized["fake"][0], want, rtol=0, atol=1e-6)
    nearest = np.asarray(Image.fromarray(ids).resize((32, 32), Image.Resampling.NEAREST))
    assert torch.equal(resized["label"][0], torch.from_numpy(nearest.astype(np.int64)))


def test_metric_size_follows_the_authors_at_the_paper_presets():
    from cocosnet.config import EvalConfig

    auto = EvalConfig()
    assert auto.fid_protocol == "pytorch_fid"
    assert auto.metric_size("paper_ade20k") == auto.metric_size("paper_deepfashion") == 256
    assert auto.metric_size("demo") is None and auto.metric_size(None) is None
    assert EvalConfig(semantic_style_size="native").metric_size("paper_ade20k") is None
    assert EvalConfig(semantic_style_size=128).metric_size("demo") == 128
    with pytest.raises(ValueError, match="auto, native or a size"):
        EvalConfig(semantic_style_size=0)


def test_cli_passes_the_fid_protocol_and_size_and_refuses_bad_ones(tmp_path, monkeypatch, capsys):
    from cocosnet.metrics import registry

    seen = []
    monkeypatch.setattr(
        registry, "evaluate", lambda names, inputs, options: seen.append(options) or {names[0]: {}}
    )
    folder = str(tmp_path)
    cli(["evaluate", "fid", "--real", folder, "--fake", folder, "--fid-protocol", "torch_fidelity"])
    cli(["evaluate", "semantic_consistency", "--fake", folder, "--resize", "256"])
    assert seen[0].fid_protocol == "torch_fidelity" and seen[0].resize is None
    assert seen[1].fid_protocol == "pytorch_fid" and seen[1].resize == 256
    for bad in (["--fid-protocol", "tf"], ["--resize", "0"]):
        with pytest.raises(SystemExit) as exit_:
            cli(["evaluate", "fid", "--real", folder, *bad])
        assert exit_.value.code == 2
    assert "8 to 4096" in capsys.readouterr().err


def test_metrics_file_keeps_the_fid_protocol_beside_the_fid():
    from cocosnet.metric_files import split_summary

    numbers, record = split_summary(
        {"metrics": {"fid": {"fid": 26.4, "fid_protocol": "pytorch_fid", "weights_sha256": "ab"}}}
    )
    assert numbers == {"metrics": {"fid": {"fid": 26.4, "fid_protocol": "pytorch_fid"}}}
    assert record == {"metrics": {"fid": {"weights_sha256": "ab"}}}
