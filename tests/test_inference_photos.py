"""translate from photos (UPerNet masks, OpenPose poses) and from the pose stage's keypoints
table, with tiny random-init models in the real file formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cocosnet import weights
from cocosnet.cli import main
from cocosnet.formats.pose_render import keypoints_table, render_pose_input
from cocosnet.inference import Translator, prepare_input
from cocosnet.inference.photos import PhotoModels
from cocosnet.io import read_image, write_image
from cocosnet.preprocess.pose import KEYPOINTS_SCHEMA
from cocosnet.tables import write_table

from .helpers import single_thread, tiny_model
from .test_masks import save_tiny_upernet
from .test_pose import tiny_model as tiny_openpose

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


@pytest.fixture(scope="module")
def mask_model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("mask_model"), semantic_nc=151)


@pytest.fixture(scope="module")
def pose_model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("pose_model"), semantic_nc=20)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """Registered OpenPose files (tiny random net) and UPerNet folder."""
    wdir = tmp_path_factory.mktemp("weights")
    prototxt, caffemodel = tiny_openpose(tmp_path_factory.mktemp("openpose"), random=True)
    weights.add("openpose_body_prototxt", prototxt, wdir)
    weights.add("openpose_body_caffemodel", caffemodel, wdir)
    weights.add("upernet_ade20k", save_tiny_upernet(tmp_path_factory.mktemp("upernet")), wdir)
    return wdir


def _photo(path: Path, height: int, width: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    write_image(path, rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return path


def _translate(tmp_path, model, inp, *extra) -> tuple[int, Path]:
    out = tmp_path / "out.png"
    ex = _photo(tmp_path / "ex.png", 40, 30, seed=1)
    args = ["translate", "--checkpoint", str(model), "--input", str(inp), "--exemplar", str(ex)]
    return main([*args, "--out", str(out), *extra]), out


def test_photo_mask_segments_at_the_photos_size(tmp_path, mask_model, weights_dir, capsys):
    photo = _photo(tmp_path / "photo.png", 50, 70)
    models = PhotoModels(weights_dir, short_side=32)
    ids = models.mask(read_image(photo))
    assert ids.shape == (50, 70) and ids.dtype == np.uint8 and 1 <= ids.min() <= ids.max() <= 150
    prepared = prepare_input(photo, 151, 64, domain="photo-mask", models=models)
    assert prepared.tensor.shape == (151, 64, 64) and prepared.box.height == 50
    expected = prepare_input(_write(tmp_path / "ids.png", ids), 151, 64, domain="label")
    assert (prepared.tensor == expected.tensor).all()  # letterboxed like a given mask
    rc, out = _translate(
        tmp_path, mask_model, photo, "--domain", "photo-mask", "--weights-dir", str(weights_dir)
    )
    assert rc == 0, capsys.readouterr().err
    assert read_image(out).shape == (50, 70, 3)


def _write(path: Path, array: np.ndarray) -> Path:
    write_image(path, array)
    return path


def test_photo_pose_detects_and_renders(tmp_path, pose_model, weights_dir, capsys):
    photo = _photo(tmp_path / "photo.png", 60, 44)
    models = PhotoModels(weights_dir, short_side=32)  # shrunk for OpenPose, drawn at full size
    pose = models.pose(read_image(photo))
    assert pose.shape == (60, 44, 20) and pose.dtype == np.uint8
    prepared = prepare_input(photo, 20, 64, domain="photo-pose", models=models)
    assert prepared.tensor.shape == (20, 64, 64) and prepared.tensor.min() >= 0
    rc, out = _translate(
        tmp_path, pose_model, photo, "--domain", "photo-pose", "--weights-dir", str(weights_dir)
    )
    assert rc == 0, capsys.readouterr().err
    assert read_image(out).shape == (60, 44, 3)


def _keypoints(path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    candidate = np.array([[10, 8, 0.9, 0], [12, 20, 0.8, 1], [20, 22, 0.7, 2], [30, 40, 0.6, 3]])
    subset = np.full((1, 20), -1.0)
    subset[0, [0, 1, 2, 3]] = [0, 1, 2, 3]
    subset[0, 18:] = [3.0, 4]
    rows = keypoints_table("a", candidate, subset) + keypoints_table("b", candidate[:1], subset * 0)
    write_table(path, rows, KEYPOINTS_SCHEMA)
    return path, candidate, subset


def test_keypoints_table_by_image_id(tmp_path, pose_model, capsys):
    table, candidate, subset = _keypoints(tmp_path / "keypoints.parquet")
    prepared = prepare_input(table, 20, 64, canvas=(48, 40), image_id="a")
    np.savez(tmp_path / "a.npz", pose=render_pose_input(candidate, subset, 48, 40))
    expected = prepare_input(tmp_path / "a.npz", 20, 64)
    assert (prepared.tensor == expected.tensor).all()
    rc, out = _translate(tmp_path, pose_model, table, "--image-id", "a", "--pose-size", "48x40")
    assert rc == 0, capsys.readouterr().err
    assert read_image(out).shape == (48, 40, 3)
    rc, _ = _translate(tmp_path, pose_model, table, "--image-id", "zz", "--pose-size", "48x40")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no keypoints for image id 'zz'" in err and "a, b" in err
    rc, _ = _translate(tmp_path, pose_model, table, "--image-id", "a")
    assert rc == 2 and "--pose-size" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("domain", "missing"),
    [("photo-pose", "pose_deploy_linevec.prototxt"), ("photo-mask", "upernet_ade20k")],
)
def test_missing_weights_are_one_clear_line(tmp_path, pose_model, capsys, domain, missing):
    photo = _photo(tmp_path / "photo.png", 30, 30)
    empty = tmp_path / "no_weights"
    rc, out = _translate(
        tmp_path, pose_model, photo, "--domain", domain, "--weights-dir", str(empty)
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "missing pretrained" in err
    assert str(empty / missing) in err and "cocosnet weights add" in err
    assert not out.exists()


def test_photo_domains_without_models_are_a_clear_error(tmp_path, pose_model):
    with pytest.raises(ValueError, match="needs the preprocessing models"):
        prepare_input(_photo(tmp_path / "p.png", 20, 20), 20, 64, domain="photo-pose")
    assert Translator(pose_model).semantic_nc == 20
