"""DeepFashion adapter on a tiny tree in the official layout with OpenPose txt files."""

import numpy as np
import pytest

from cocosnet.data import deepfashion
from cocosnet.data.manifest import read_manifest
from cocosnet.data.prepare import write_prepared
from cocosnet.formats.pose_render import write_openpose_txt
from cocosnet.io import write_image

# One person: (x, y) per COCO part in a 40 x 60 (w x h) photo; parts 14..17 missing.
JOINTS = [
    (20, 8),
    (20, 14),
    (14, 14),
    (12, 24),
    (11, 32),
    (26, 14),
    (28, 24),
    (29, 32),
    (16, 32),
    (16, 44),
    (16, 56),
    (24, 32),
    (24, 44),
    (24, 56),
]


def person():
    candidate = np.array([[x, y, 0.9, i] for i, (x, y) in enumerate(JOINTS)], dtype=float)
    subset = np.full((1, 20), -1.0)
    subset[0, : len(JOINTS)] = np.arange(len(JOINTS))
    subset[0, 18], subset[0, 19] = 12.0, len(JOINTS)
    return candidate, subset


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / "DeepFashion"
    names = [
        "WOMEN/Dresses/id_00000001/01_1_front",
        "WOMEN/Dresses/id_00000001/02_2_side",
        "MEN/Tees/id_00000002/01_1_front",
    ]
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        write_image(root / "img" / f"{name}.jpg", rng.integers(0, 255, (60, 40, 3), np.uint8))
        if i != 1:  # the second photo has no pose files
            folder, stem = name.rsplit("/", 1)
            write_openpose_txt(root / "pose" / folder, stem, *person())
    (root / "train.txt").write_text(
        "img\\WOMEN\\Dresses\\id_00000001\\01_1_front.jpg\nimg/WOMEN/Dresses/id_00000001/02_2_side.jpg\n"
    )
    (root / "val.txt").write_text("img/MEN/Tees/id_00000002/01_1_front.jpg\n")
    return tmp_path


def test_candidates_follow_the_official_lists(raw):
    found = deepfashion.candidates(raw)
    assert [(c.id, c.split) for c in found] == [
        ("WOMEN__Dresses__id_00000001__01_1_front", "train"),
        ("WOMEN__Dresses__id_00000001__02_2_side", "train"),
        ("MEN__Tees__id_00000002__01_1_front", "val"),
    ]
    (raw / "DeepFashion" / "val.txt").unlink()
    with pytest.raises(ValueError, match="val.txt not found"):
        deepfashion.candidates(raw)
    with pytest.raises(ValueError, match="expected img/ and pose/"):
        deepfashion.candidates(raw / "nothing")


def test_prepare_renders_the_20_channel_pose_input(raw, tmp_path):
    out = tmp_path / "prepared"
    report = deepfashion.ADAPTER.prepare(raw, out, size=20)
    write_prepared(out, report)
    rows = read_manifest(out / "manifest.parquet", out)
    assert [r["id"] for r in rows] == [
        "WOMEN__Dresses__id_00000001__01_1_front",
        "MEN__Tees__id_00000002__01_1_front",
    ]
    assert "02_2_side.jpg" in report.quarantined[0][0]
    pose = deepfashion.load_pose(out, rows[0]["id"])
    assert pose.shape == (30, 20, 20) and pose.dtype == np.uint8  # 60x40 -> shorter side 20
    # The neck (20, 14) in the photo is at (10, 7) after halving; its disc is drawn in colour.
    assert pose[7, 10, :3].max() > 0
    # Limb distance channels are 0 on their limb and grow away from it; the ear limbs
    # (parts 16, 17 missing) give all-255 channels.
    assert pose[..., 3:].min() == 0
    assert (pose[..., 3 + 14] == 255).all()
