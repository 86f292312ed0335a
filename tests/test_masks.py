"""Semantic masks: UPerNet segmenter (tiny random model), masks stage, Flickr adapter."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from cocosnet.data import flickr
from cocosnet.data.flickr import candidates as flickr_candidates
from cocosnet.data.folder import split_for
from cocosnet.data.manifest import read_manifest
from cocosnet.data.prepare import MANIFEST, write_prepared
from cocosnet.preprocess.segmentation import SegmentationError, Segmenter
from cocosnet.weights import sha256_of

HAVE_MMSEG = importlib.util.find_spec("mmseg") is not None


def save_tiny_upernet(folder):
    """A random-init UperNet (tiny ConvNext backbone, 150 ADE20k classes) saved as safetensors."""
    pytest.importorskip("transformers")
    from transformers import ConvNextConfig, UperNetConfig, UperNetForSemanticSegmentation

    backbone = ConvNextConfig(
        hidden_sizes=[8, 16, 32, 64],
        depths=[1, 1, 1, 1],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = UperNetConfig(
        backbone_config=backbone,
        hidden_size=16,
        auxiliary_in_channels=32,
        auxiliary_channels=8,
        use_auxiliary_head=False,
        num_labels=150,
    )
    torch.manual_seed(0)
    model = UperNetForSemanticSegmentation(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    return folder


@pytest.fixture(scope="module")
def tiny_upernet(tmp_path_factory):
    return save_tiny_upernet(tmp_path_factory.mktemp("upernet"))


@pytest.fixture
def offline(monkeypatch):
    """No hub access: offline flags set and any network connection fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("the segmenter tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_segmenter_loads_a_local_folder_and_returns_ade20k_ids(tiny_upernet, offline):
    seg = Segmenter(tiny_upernet, short_side=32)
    assert seg.weights_sha256 == sha256_of(tiny_upernet / "model.safetensors")
    rgb = photo(37, 53)
    ids = seg(rgb)
    assert ids.dtype == np.uint8 and ids.shape == (37, 53)
    assert ids.min() >= 1 and ids.max() <= 150
    # Deterministic: the same call, and a second load of the same folder, give the same map.
    assert np.array_equal(seg(rgb), ids)
    assert np.array_equal(Segmenter(tiny_upernet, short_side=32)(rgb), ids)
    # Portrait input keeps its size too; the map is the argmax of the logits, shifted by one.
    tall = photo(45, 20, seed=1)
    assert seg(tall).shape == (45, 20)
    assert np.array_equal(seg(tall), seg.logits(tall).argmax(1)[0].numpy() + 1)


def test_segmenter_checks_the_weight_digest(tiny_upernet, offline):
    good = sha256_of(tiny_upernet / "model.safetensors")
    Segmenter(tiny_upernet, short_side=32, sha256=good.upper())
    with pytest.raises(SegmentationError, match="expected 0{64}"):
        Segmenter(tiny_upernet, short_side=32, sha256="0" * 64)


def test_segmenter_reads_a_tensor_only_bin_checkpoint(tiny_upernet, tmp_path, offline):
    from safetensors.torch import load_file

    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(tiny_upernet / "config.json", folder / "config.json")
    torch.save(load_file(tiny_upernet / "model.safetensors"), folder / "pytorch_model.bin")
    rgb = photo(24, 30)
    expected = Segmenter(tiny_upernet, short_side=32)(rgb)
    assert np.array_equal(Segmenter(folder, short_side=32)(rgb), expected)
    # A pickle with arbitrary objects is refused.
    torch.save({"weights": object()}, folder / "pytorch_model.bin")
    with pytest.raises(SegmentationError, match="not a (loadable|plain) tensor state dict"):
        Segmenter(folder)


def test_segmenter_uses_the_preprocessor_config(tiny_upernet, tmp_path, offline):
    folder = tmp_path / "pre"
    shutil.copytree(tiny_upernet, folder)
    rgb = photo(20, 20)
    default = Segmenter(folder, short_side=32).logits(rgb)
    # mmseg-style statistics on 0..255 values equal ImageNet's on 0..1 (up to rounding).
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "do_rescale": False,
                "image_mean": [123.675, 116.28, 103.53],
                "image_std": [58.395, 57.12, 57.375],
            }
        )
    )
    assert torch.allclose(Segmenter(folder, short_side=32).logits(rgb), default, atol=1e-4)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_std": [1.0, 0.0, 1.0]}))
    with pytest.raises(SegmentationError, match="image_std"):
        Segmenter(folder)


def test_missing_or_incomplete_model_folder_is_a_clear_error(tiny_upernet, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SegmentationError) as err:
        Segmenter(missing)
    message = str(err.value)
    assert str(missing) in message and "not found" in message
    assert "config.json" in message and "model.safetensors" in message
    assert "pytorch_model.bin" in message
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_upernet / "config.json", partial / "config.json")
    with pytest.raises(SegmentationError, match="incomplete.*found config.json"):
        Segmenter(partial)


def test_a_model_with_another_number_of_classes_is_refused(tiny_upernet, tmp_path):
    folder = tmp_path / "other"
    shutil.copytree(tiny_upernet, folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): f"c{i}" for i in range(19)}
    config.pop("label2id", None)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SegmentationError, match="predicts 19 classes"):
        Segmenter(folder)


def test_weights_that_do_not_match_the_config_are_refused(tiny_upernet, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "partial_weights"
    shutil.copytree(tiny_upernet, folder)
    state = load_file(folder / "model.safetensors")
    del state["decode_head.classifier.weight"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(SegmentationError, match="1 missing keys .decode_head.classifier.weight"):
        Segmenter(folder)


@pytest.mark.skipif(HAVE_MMSEG, reason="mmseg is installed")
def test_mmseg_backend_without_mmseg_names_the_install(tmp_path):
    (tmp_path / "upernet_r50.py").write_text("model = dict()\n")
    (tmp_path / "upernet_r50.pth").write_bytes(b"x")
    with pytest.raises(SegmentationError, match="mim install mmengine"):
        Segmenter(tmp_path, backend="mmseg")


def _demo_dataset(tmp_path):
    from stages.prepare import main as prepare_stage

    params = tmp_path / "params.yaml"
    params.write_text(
        f"data:\n  root: {tmp_path / 'data'}\n  demo: {{n_train: 3, n_val: 1, size: 32, seed: 0}}\n"
    )
    prepare_stage("demo", str(params))
    return params


def test_masks_stage_writes_one_map_per_manifest_row(tiny_upernet, tmp_path, offline, capsys):
    from stages.masks import main as masks_stage

    params = _demo_dataset(tmp_path)
    capsys.readouterr()
    out = tmp_path / "data" / "demo_masks"
    out.mkdir()
    (out / "stale.png").write_bytes(b"old")
    masks_stage("demo", str(params), str(tiny_upernet), short_side=32, device="cpu")
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = read_manifest(tmp_path / "data" / "demo" / MANIFEST)
    assert report["masks"] == len(rows) == 4
    assert report["weights_sha256"] == sha256_of(tiny_upernet / "model.safetensors")
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{r['id']}.png" for r in rows)
    for row in rows:
        with Image.open(out / f"{row['id']}.png") as img:
            assert img.mode == "L" and img.size == (row["width"], row["height"])
            ids = np.asarray(img)
        assert ids.min() >= 1 and ids.max() <= 150
    # Rerunning gives the same maps (deterministic, atomic overwrite).
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    masks_stage("demo", str(params), str(tiny_upernet), short_side=32, device="cpu")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_masks_stage_reports_a_missing_model_folder(tmp_path):
    from stages.masks import main as masks_stage

    params = _demo_dataset(tmp_path)
    with pytest.raises(SystemExit, match=r"nope not found.*config.json.*model.safetensors"):
        masks_stage("demo", str(params), str(tmp_path / "nope"))
    with pytest.raises(SystemExit, match="run prepare@other first"):
        masks_stage("other", str(params), str(tmp_path / "nope"))


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_flickr_adapter_pairs_photos_with_masks(tmp_path):
    raw = tmp_path / "flickr"
    label = np.zeros((24, 36), np.uint8)
    label[:, 18:] = 150
    label[:8] = 3
    _write(raw / "images" / "a.jpg", photo(24, 36))
    _write(raw / "mask" / "a.png", label)
    _write(raw / "images" / "b.png", photo(24, 36, seed=2))
    _write(raw / "mask" / "b.png", label)
    _write(raw / "images" / "c.jpg", photo(24, 36, seed=3))  # no mask
    _write(raw / "images" / "d.png", photo(24, 36, seed=4))
    _write(raw / "mask" / "d.png", np.full((24, 36), 151, np.uint8))  # id out of range
    _write(raw / "mask" / "orphan.png", label)  # mask without photo: ignored
    (raw / "images" / "notes.txt").write_text("not a photo")

    found = flickr_candidates(raw, val_fraction=0.5)
    assert [c.id for c in found] == ["a", "b", "c", "d"]
    assert [c.label for c in found] == [f"mask/{s}.png" for s in "abcd"]
    assert all(c.split == split_for(c.id, 0.5) for c in found)

    out = tmp_path / "prepared"
    report = flickr.ADAPTER.prepare(raw, out, size=12, max_pixels=10_000, val_fraction=0.5)
    reasons = dict(report.quarantined)
    assert set(reasons) == {"images/c.jpg", "images/d.png"}
    assert reasons["images/c.jpg"] == "no mask: expected mask/c.png"
    assert "151 out of range" in reasons["images/d.png"]
    write_prepared(out, report)
    rows = read_manifest(out / MANIFEST, root=out)
    assert [(r["id"], r["width"], r["height"]) for r in rows] == [("a", 18, 12), ("b", 18, 12)]
    stored = np.asarray(Image.open(out / rows[0]["label"]))
    assert stored.shape == (12, 18) and set(np.unique(stored)) == {0, 3, 150}


def test_flickr_adapter_refuses_a_wrong_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="expected images/ .* and mask/"):
        flickr_candidates(tmp_path)
    (tmp_path / "mask").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        flickr_candidates(tmp_path)
    _write(tmp_path / "images" / "x.jpg", photo(8, 8))
    _write(tmp_path / "images" / "x.png", photo(8, 8))
    with pytest.raises(ValueError, match="share a stem"):
        flickr_candidates(tmp_path)


def test_masks_stage_verifies_the_registered_model(tiny_upernet, tmp_path, offline):
    from cocosnet import weights
    from stages.masks import main as masks_stage

    params = _demo_dataset(tmp_path)
    wdir = tmp_path / "weights"
    registered = str(wdir / "upernet_ade20k")
    with pytest.raises(
        SystemExit, match="(?s)missing pretrained folder.*weights add upernet_ade20k"
    ):
        masks_stage("demo", str(params), registered, weights_dir=str(wdir))
    weights.add("upernet_ade20k", tiny_upernet, wdir)
    masks_stage("demo", str(params), registered, short_side=32, device="cpu", weights_dir=str(wdir))
    (wdir / "upernet_ade20k" / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(SystemExit, match="corrupt or not the official one"):
        masks_stage("demo", str(params), registered, weights_dir=str(wdir))


def test_weights_add_checks_the_scene_parser_folder(tiny_upernet, tmp_path, capsys, offline):
    """`weights add upernet_ade20k` loads the folder as the masks stage will before recording."""
    from safetensors.torch import load_file, save_file

    from cocosnet.cli import main

    folder = tmp_path / "partial"
    shutil.copytree(tiny_upernet, folder)
    state = load_file(folder / "model.safetensors")
    del state["decode_head.classifier.weight"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    wdir = tmp_path / "weights"
    assert main(["weights", "--weights-dir", str(wdir), "add", "upernet_ade20k", str(folder)]) == 2
    assert "1 missing keys (decode_head.classifier.weight" in capsys.readouterr().err
    assert not (wdir / "lock.json").exists()
    argv = ["weights", "--weights-dir", str(wdir), "add", "upernet_ade20k", str(tiny_upernet)]
    assert main(argv) == 0
