"""`dvc repro` of the data stages in a scratch copy of the project: the demo and an ADE20k layout
fixture are prepared and edge-mapped, and a second `dvc repro` is a no-op."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cocosnet.data.manifest import read_manifest
from cocosnet.io import write_image

from .helpers import dvc_project_copy
from .test_adapters import celeba_root  # noqa: F401 - fixtures shared with the adapter tests
from .test_deepfashion import raw as deepfashion_raw  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd, cwd):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def ade_fixture(raw: Path) -> Path:
    rng = np.random.default_rng(0)
    base = raw / "ADEChallengeData2016" / "images"
    for sub, prefix, n in (("training", "ADE_train", 2), ("validation", "ADE_val", 1)):
        for i in range(1, n + 1):
            stem = f"{prefix}_{i:08d}"
            write_image(base / sub / f"{stem}.jpg", rng.integers(0, 255, (24, 32, 3), np.uint8))
            write_image(base / sub / f"{stem}.png", rng.integers(0, 151, (24, 32), np.uint8))
    (base / "training" / "ADE_train_00000009.jpg").write_bytes(b"")  # quarantined
    return raw


@pytest.fixture
def project(tmp_path):
    work = dvc_project_copy(tmp_path / "project")
    raw = ade_fixture(tmp_path / "raw")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())  # every section DVC templates
    params["data"].update(
        datasets=["demo", "ade20k"],
        raw_roots={"demo": "raw/demo", "ade20k": str(raw / "ADEChallengeData2016")},
        load_size=16,
        max_pixels=1_000_000,
        demo={"n_train": 6, "n_val": 2, "size": 32, "seed": 1},
    )
    params["preprocess"]["edges"]["backend"] = "opencv"
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "config", "core.analytics", "false"], work)
    return work


def test_dvc_repro_prepares_and_maps_edges_then_is_a_no_op_then_sees_raw_changes(project):
    out = run(["dvc", "repro", "edges"], project)
    assert "Running stage 'prepare@demo'" in out and "Running stage 'edges@ade20k'" in out
    demo = read_manifest(project / "data/demo/manifest.parquet", project / "data/demo")
    ade = read_manifest(project / "data/ade20k/manifest.parquet", project / "data/ade20k")
    assert len(demo) == 8 and [r["id"] for r in ade] == [
        "ADE_train_00000001",
        "ADE_train_00000002",
        "ADE_val_00000001",
    ]
    assert "zero-byte file" in (project / "data/ade20k/quarantine.csv").read_text()
    assert len(list((project / "data/ade20k_edges").glob("*.png"))) == 3
    again = run(["dvc", "repro", "edges"], project)
    assert "Running stage" not in again
    assert "Data and pipelines are up to date" in again
    raw_files_added_changed_or_removed_rerun_prepare(project, project.parent / "raw")


def raw_files_added_changed_or_removed_rerun_prepare(project: Path, raw: Path) -> None:
    """The raw folder is a dependency of prepare@DS: DVC sees every change to it (part of the
    test above, which has prepared the project already)."""
    train = raw / "ADEChallengeData2016" / "images" / "training"
    rng = np.random.default_rng(5)
    write_image(train / "ADE_train_00000003.jpg", rng.integers(0, 255, (24, 32, 3), np.uint8))
    write_image(train / "ADE_train_00000003.png", rng.integers(0, 151, (24, 32), np.uint8))
    assert "prepare@ade20k" in run(["dvc", "status", "prepare@ade20k"], project)

    def ids() -> list[str]:
        out = run(["dvc", "repro", "prepare@ade20k"], project)
        assert "Running stage 'prepare@ade20k'" in out, out
        root = project / "data/ade20k"
        return [r["id"] for r in read_manifest(root / "manifest.parquet", root)]

    assert "ADE_train_00000003" in ids()  # added
    stored = project / "data/ade20k/images/ADE_train_00000001.png"
    before = stored.read_bytes()
    write_image(train / "ADE_train_00000001.jpg", rng.integers(0, 255, (24, 32, 3), np.uint8))
    assert "ADE_train_00000001" in ids() and stored.read_bytes() != before  # changed
    for suffix in (".jpg", ".png"):
        (train / f"ADE_train_00000002{suffix}").unlink()
    assert "ADE_train_00000002" not in ids()  # removed


def test_dvc_repro_runs_pose_and_masks_with_tiny_registered_weights(tmp_path):
    """A photo folder goes through prepare, edges, pose and masks under `dvc repro`, with tiny
    random-init OpenPose (Caffe) and UPerNet (transformers) models registered in weights/."""
    pytest.importorskip("transformers")
    from cocosnet import weights

    from .test_masks import save_tiny_upernet
    from .test_pose import tiny_model

    work = dvc_project_copy(tmp_path / "project")
    rng = np.random.default_rng(1)
    raw = tmp_path / "photos"
    for i in range(3):
        write_image(raw / f"p{i}.jpg", rng.integers(0, 255, (40, 32, 3), np.uint8))
    (tmp_path / "models").mkdir()
    prototxt, caffemodel = tiny_model(tmp_path / "models")
    wdir = work / "weights"
    weights.add("openpose_body_prototxt", prototxt, wdir)
    weights.add("openpose_body_caffemodel", caffemodel, wdir)
    weights.add("upernet_ade20k", save_tiny_upernet(tmp_path / "upernet"), wdir)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(datasets=["folder"], raw_roots={"folder": str(raw)}, load_size=32)
    params["preprocess"]["pose"]["datasets"] = ["folder"]
    params["preprocess"]["masks"].update(datasets=["folder"], short_side=32, device="cpu")
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    out = run(["dvc", "repro", "edges", "pose", "masks"], work)
    for stage in ("prepare@folder", "edges@folder", "pose@folder", "masks@folder"):
        assert f"Running stage '{stage}'" in out
    assert len(list((work / "data/folder_masks").glob("*.png"))) == 3
    assert len(list((work / "data/folder_pose").glob("*.npz"))) == 3
    assert (work / "data/folder_pose/keypoints.parquet").is_file()
    again = run(["dvc", "repro", "edges", "pose", "masks"], work)
    assert "Running stage" not in again


@pytest.mark.slow  # 28 s on 2 cores; test_adapters.py covers each layout in process
def test_dvc_repro_prepares_every_official_layout(tmp_path, celeba_root, deepfashion_raw):  # noqa: F811
    """CelebA-HQ, DeepFashion and Flickr fixture trees through prepare and edges under DVC."""
    flickr = tmp_path / "flickr"
    rng = np.random.default_rng(2)
    for stem in ("a", "b"):
        write_image(flickr / "images" / f"{stem}.jpg", rng.integers(0, 255, (24, 36, 3), np.uint8))
        write_image(flickr / "mask" / f"{stem}.png", rng.integers(0, 151, (24, 36), np.uint8))
    work = dvc_project_copy(tmp_path / "project")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    roots = {
        "celebahq": str(celeba_root),
        "deepfashion": str(deepfashion_raw),
        "flickr": str(flickr),
    }
    params["data"].update(datasets=sorted(roots), raw_roots=roots, load_size=16)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "repro", "edges"], work)
    counts = {
        ds: len(read_manifest(work / f"data/{ds}/manifest.parquet", work / f"data/{ds}"))
        for ds in roots
    }
    assert counts == {"celebahq": 4, "deepfashion": 2, "flickr": 2}
    assert len(list((work / "data/celebahq_edges").glob("*.npz"))) == 4  # 15-channel input
    assert len(list((work / "data/deepfashion/pose").glob("*.npz"))) == 2
    assert "Running stage" not in run(["dvc", "repro", "edges"], work)
