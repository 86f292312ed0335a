import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cocosnet.cli import main
from cocosnet.config import model_config
from cocosnet.models.export import load_generator, save_generator
from cocosnet.models.factory import build_correspondence, build_translation
from stages.model_summary import main as stage_main

from .helpers import random_label


def test_model_info_prints_counts_and_resolution(capsys):
    assert main(["model-info", "--preset", "paper_ade20k"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"]["correspondence"] == 59_315_716
    assert info["parameters"]["translation"] == 96_664_260
    assert info["correspondence_resolution"] == [64, 64]


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("cocosnet")
    out = subprocess.run(
        [exe, "model-info", "--preset", "demo"], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout)["image_size"] == 64


def test_export_round_trip_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    cfg = model_config({"preset": "demo"})
    corr, gen = build_correspondence(cfg).eval(), build_translation(cfg).eval()
    save_generator(tmp_path, cfg, corr, gen)
    cfg2, corr2, gen2 = load_generator(tmp_path)
    assert cfg2 == cfg
    label = random_label(1, cfg.semantic_nc, 64)
    exemplar = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a = gen(label, corr(label, exemplar, label).warped)
        b = gen2(label, corr2(label, exemplar, label).warped)
    assert torch.equal(a, b)


def test_model_summary_stage_writes_metrics(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("model:\n  preset: demo\n  ngf: 4\n")
    out = tmp_path / "metrics" / "model.json"
    stage_main(str(params), str(out))
    summary = json.loads(out.read_text())
    assert summary["parameters"]["translation"] < 1_483_324  # ngf 4 overrides the preset's 8
    assert "train_pass_wall_s_batch1" in summary and summary["image_size"] == 64
    assert "preset" not in summary and "parameters_by_module" not in summary  # numbers, briefly


def test_model_summary_stage_refuses_bad_params(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("model:\n  preset: demo\n  corr_size: 24\n")
    out = tmp_path / "model.json"
    with pytest.raises(SystemExit, match="(?s)model_summary: .*corr_size=24"):
        stage_main(str(params), str(out))
    assert not out.exists()


def test_corrupt_or_mismatched_export_is_a_clear_error(tmp_path):
    cfg = model_config({"preset": "demo"})
    save_generator(tmp_path, cfg, build_correspondence(cfg), build_translation(cfg))
    (tmp_path / "model.json").write_text(json.dumps(cfg.model_dump() | {"ngf": 4}))
    with pytest.raises(ValueError, match="translation.safetensors does not match"):
        load_generator(tmp_path)
    (tmp_path / "correspondence.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="correspondence.safetensors does not match"):
        load_generator(tmp_path)
