"""Dataset adapters (ADE20k, CelebA-HQ, photo folder) on tiny trees in the official layouts,
and the Sample loader."""

import csv

import numpy as np
import pytest
import torch

from cocosnet.data import ade20k, celebahq, folder, store
from cocosnet.data.manifest import read_manifest
from cocosnet.data.prepare import write_prepared
from cocosnet.data.sample import Sample, SampleLoader, View
from cocosnet.formats.tensors import image_to_tensor, one_hot
from cocosnet.io import read_image, read_label, write_image

RNG = np.random.default_rng(0)


def photo(h, w):
    return RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)


def blocky_label(h, w, block, ids):
    """A label map of block x block cells cycling through ``ids`` (survives 2x nearest)."""
    cells = np.array(ids, np.uint8)[np.arange((h // block) * (w // block)) % len(ids)]
    return np.kron(cells.reshape(h // block, w // block), np.ones((block, block), np.uint8))


def prepared_rows(out_root, report):
    write_prepared(out_root, report)
    return read_manifest(out_root / "manifest.parquet", out_root)


def quarantine(out_root):
    with open(out_root / "quarantine.csv", newline="") as f:
        return {r["path"]: r["reason"] for r in csv.DictReader(f)}


# ------------------------------------------------------------------ ADE20k

ADE_IDS = [0, 1, 37, 150]


@pytest.fixture
def ade_root(tmp_path):
    raw = tmp_path / "raw"
    base = raw / "ADEChallengeData2016" / "images"
    for sub, prefix, n in (("training", "ADE_train", 3), ("validation", "ADE_val", 2)):
        for i in range(1, n + 1):
            stem = f"{prefix}_{i:08d}"
            write_image(base / sub / f"{stem}.jpg", photo(30, 40))
            write_image(base / sub / f"{stem}.png", blocky_label(30, 40, 10, ADE_IDS))
    (base / "training" / "notes.txt").write_text("not an image")
    return raw


def test_ade20k_candidates_pair_images_with_labels(ade_root):
    found = ade20k.candidates(ade_root)
    assert [(c.id, c.split) for c in found] == [
        ("ADE_train_00000001", "train"),
        ("ADE_train_00000002", "train"),
        ("ADE_train_00000003", "train"),
        ("ADE_val_00000001", "val"),
        ("ADE_val_00000002", "val"),
    ]
    c = found[3]
    assert c.image == "ADEChallengeData2016/images/validation/ADE_val_00000001.jpg"
    assert c.label == "ADEChallengeData2016/images/validation/ADE_val_00000001.png"
    # raw_root may also be the ADEChallengeData2016 folder itself
    inner = ade20k.candidates(ade_root / "ADEChallengeData2016")
    assert inner[0].image == "images/training/ADE_train_00000001.jpg"


def test_ade20k_missing_layout_is_refused_clearly(ade_root, tmp_path):
    with pytest.raises(ValueError, match="ADEChallengeData2016/images/training"):
        ade20k.candidates(tmp_path / "nowhere")
    (ade_root / "ADEChallengeData2016/images/validation").rename(tmp_path / "moved")
    with pytest.raises(ValueError, match="images/validation"):
        ade20k.candidates(ade_root)


def test_ade20k_annotations_not_moved(tmp_path):
    raw = tmp_path / "ADEChallengeData2016"
    write_image(raw / "images/training/ADE_train_00000001.jpg", photo(30, 40))
    (raw / "images/validation").mkdir(parents=True)
    with pytest.raises(ValueError, match="move annotations/training"):
        ade20k.candidates(raw)
    # an unmodified download (annotations/<split>/) is found too
    write_image(raw / "annotations/training/ADE_train_00000001.png", np.zeros((30, 40), np.uint8))
    (c,) = ade20k.candidates(raw)
    assert c.label == "annotations/training/ADE_train_00000001.png"


def test_ade20k_outdoor_filter(ade_root, tmp_path):
    keep = {"ADE_train_00000002", "ADE_val_00000001"}
    by_set = ade20k.candidates(ade_root, id_filter=keep)
    assert {c.id for c in by_set} == keep
    listing = tmp_path / "outdoor.txt"
    listing.write_text(
        "# outdoor scenes\nADE_train_00000002\n\nimages/validation/ADE_val_00000001.jpg\n"
    )
    assert ade20k.candidates(ade_root, id_filter=listing) == by_set
    assert ade20k.candidates(ade_root, id_filter=lambda i: i in keep) == by_set
    with pytest.raises(ValueError, match="kept none"):
        ade20k.candidates(ade_root, id_filter={"ADE_train_1"})
    with pytest.raises(ValueError, match="not found"):
        ade20k.candidates(ade_root, id_filter=tmp_path / "missing.txt")


def test_ade20k_prepare_resizes_and_keeps_label_values(ade_root, tmp_path):
    out = tmp_path / "out"
    rows = prepared_rows(out, ade20k.ADAPTER.prepare(ade_root, out, size=15, max_pixels=10_000))
    assert [r["id"] for r in rows][:1] == ["ADE_train_00000001"] and len(rows) == 5
    row = rows[0]
    assert (row["width"], row["height"], row["split"]) == (20, 15, "train")
    assert row["image"] == "images/ADE_train_00000001.png"
    assert read_image(out / row["image"]).shape == (15, 20, 3)
    stored = read_label(out / row["label"])
    expected = blocky_label(30, 40, 10, ADE_IDS)[::2, ::2]
    np.testing.assert_array_equal(stored, expected)
    assert set(np.unique(stored)) == set(ADE_IDS)


def test_ade20k_bad_files_are_quarantined(ade_root, tmp_path):
    base = ade_root / "ADEChallengeData2016/images/training"
    (base / "ADE_train_00000001.jpg").write_bytes(b"not a jpeg")
    write_image(base / "ADE_train_00000002.png", np.full((30, 40), 151, np.uint8))
    (base / "ADE_train_00000003.png").unlink()
    out = tmp_path / "out"
    rows = prepared_rows(out, ade20k.ADAPTER.prepare(ade_root, out, size=15))
    assert [r["id"] for r in rows] == ["ADE_val_00000001", "ADE_val_00000002"]
    reasons = quarantine(out)
    img = "ADEChallengeData2016/images/training/ADE_train_0000000{}.jpg"
    assert "not an image" in reasons[img.format(1)]
    assert "ADE_train_00000002.png" in reasons[img.format(2)]
    assert "out of range" in reasons[img.format(2)]
    assert "file not found" in reasons[img.format(3)]


def test_out_root_inside_raw_root_is_refused(ade_root):
    with pytest.raises(ValueError, match="must not be the raw dataset folder"):
        ade20k.ADAPTER.prepare(ade_root, ade_root / "prepared")


# ------------------------------------------------------------------ CelebA-HQ


def rect(size, y0, y1, x0, x1):
    m = np.zeros((size, size), np.uint8)
    m[y0:y1, x0:x1] = 255
    return m


# 32 x 32 masks on a 4-pixel grid: skin, glasses over it, hair, and an eye (drawn after hair in
# the official part order).
MASKS = {
    "skin": rect(32, 4, 32, 4, 28),
    "eye_g": rect(32, 8, 16, 4, 28),
    "l_eye": rect(32, 8, 12, 8, 12),
    "hair": rect(32, 0, 12, 0, 32),
}


def merged_expected():
    label = np.zeros((32, 32), np.uint8)
    label[4:32, 4:28] = celebahq.PART_IDS["skin"]
    label[0:12, :] = celebahq.PART_IDS["hair"]
    label[8:12, 8:12] = celebahq.PART_IDS["l_eye"]
    return label  # glasses are kept out of the merged map, as the official


@pytest.fixture
def celeba_root(tmp_path):
    raw = tmp_path / "raw"
    base = raw / "CelebAMask-HQ"
    for n in (0, 1, 2, 2001, 7):
        write_image(base / "CelebA-HQ-img" / f"{n}.jpg", photo(64, 64))
    for n in (0, 1, 2, 2001):
        for part, mask in MASKS.items():
            if n == 1 and part == "hair":
                continue  # a missing part is simply absent
            path = base / "CelebAMask-HQ-mask-anno" / str(n // 2000) / f"{n:05d}_{part}.png"
            # one mask stored as RGB, as some copies of the dataset have them
            write_image(path, np.repeat(mask[:, :, None], 3, 2) if part == "skin" else mask)
    (base / "train.txt").write_text("2001\n0\n1\n7\n")
    (base / "val.txt").write_text("2\n")
    return raw


def test_celebahq_candidates(celeba_root):
    found = celebahq.candidates(celeba_root)
    assert [(c.id, c.split) for c in found] == [
        ("0", "train"),
        ("1", "train"),
        ("7", "train"),
        ("2001", "train"),
        ("2", "val"),
    ]
    assert found[3].image == "CelebAMask-HQ/CelebA-HQ-img/2001.jpg"
    paths = celebahq.mask_paths(celeba_root, 2001)
    assert paths["eye_g"].as_posix().endswith("CelebAMask-HQ-mask-anno/1/02001_eye_g.png")
    assert paths["eye_g"].is_file()


def test_celebahq_missing_layout_is_refused_clearly(celeba_root):
    (celeba_root / "CelebAMask-HQ" / "val.txt").unlink()
    with pytest.raises(ValueError, match="missing in .*: val.txt"):
        celebahq.candidates(celeba_root)


def test_celebahq_label_merges_parts_later_on_top():
    parts = {**MASKS, "hat": None}
    np.testing.assert_array_equal(celebahq.celebahq_label(parts), merged_expected())
    assert celebahq.celebahq_label({}, shape=(4, 5)).shape == (4, 5)
    with pytest.raises(ValueError, match="unknown CelebAMask-HQ part"):
        celebahq.celebahq_label({"beard": MASKS["skin"]})
    with pytest.raises(ValueError, match="differ in shape"):
        celebahq.celebahq_label({"skin": MASKS["skin"], "nose": np.zeros((8, 8), bool)})


def test_celebahq_input_channels_put_glasses_on_channel_16():
    assert celebahq.GLASSES == 16 and celebahq.PARTS[:2] == ("skin", "hair")
    label = merged_expected()
    channels = celebahq.celebahq_input_channels(label)
    assert channels.shape == (19, 32, 32) and channels.dtype == torch.float32
    assert torch.all(channels.sum(0) == 1) and channels[16].sum() == 0
    overlaid = celebahq.celebahq_input_channels(label, glasses=MASKS["eye_g"])
    glasses = torch.from_numpy(MASKS["eye_g"] > 0)
    assert torch.equal(overlaid[16].bool(), glasses)
    # The parts under the glasses stay: those pixels have two active channels.
    assert torch.equal(overlaid[:16], channels[:16]) and torch.equal(overlaid[17:], channels[17:])
    assert torch.all(overlaid.sum(0)[glasses] == 2)


def test_celebahq_prepare(celeba_root, tmp_path):
    out = tmp_path / "out"
    rows = prepared_rows(out, celebahq.ADAPTER.prepare(celeba_root, out, size=16))
    assert [r["id"] for r in rows] == ["0", "1", "2001", "2"]
    assert all((r["width"], r["height"]) == (16, 16) for r in rows)
    assert "no part masks" in quarantine(out)["CelebAMask-HQ/CelebA-HQ-img/7.jpg"]
    by_id = {r["id"]: r for r in rows}
    assert by_id["0"]["label"] == "labels/0.png"
    np.testing.assert_array_equal(read_label(out / "labels/0.png"), merged_expected()[::2, ::2])
    no_hair = read_label(out / by_id["1"]["label"])
    assert celebahq.PART_IDS["hair"] not in no_hair and celebahq.GLASSES not in no_hair
    glasses = read_label(out / "glasses/0.png")
    np.testing.assert_array_equal(glasses, MASKS["eye_g"][::2, ::2])
    loader = SampleLoader(celebahq.ADAPTER, out, "label", celebahq.SEMANTIC_NC)
    inp, _, _ = loader.view(loader(by_id["2"]), View((16, 16), 0, 0, 16, False))
    assert inp.shape == (19, 16, 16)
    assert torch.equal(inp[16].bool(), torch.from_numpy(glasses > 0))
    assert inp.sum(0).max() == 2  # glasses over skin


# ------------------------------------------------------------------ photo folder


@pytest.fixture
def photos(tmp_path):
    raw = tmp_path / "photos"
    write_image(raw / "a.jpg", photo(30, 40))
    write_image(raw / "sub" / "b.png", photo(40, 30))
    write_image(raw / "sub" / "deeper" / "c.JPEG", photo(20, 20), format="JPEG")
    write_image(raw / ".hidden" / "x.jpg", photo(20, 20))
    (raw / "notes.txt").write_text("not a photo")
    return raw


def test_folder_candidates_ids_and_paths(photos):
    found = folder.candidates(photos)
    assert [(c.id, c.image, c.label) for c in found] == [
        ("a", "a.jpg", None),
        ("sub__b", "sub/b.png", None),
        ("sub__deeper__c", "sub/deeper/c.JPEG", None),
    ]
    assert {c.split for c in folder.candidates(photos, val_fraction=0.0)} == {"train"}


def test_folder_quarantines_clashes_and_refuses_a_missing_folder(photos, tmp_path):
    with pytest.raises(ValueError, match="expected a folder of photos"):
        folder.candidates(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        folder.candidates(tmp_path / "empty")
    write_image(photos / "a.png", photo(8, 8))  # beside a.jpg: the same sample id "a"
    report = folder.ADAPTER.prepare(photos, tmp_path / "prepared", size=8)
    reason = "a.jpg and a.png map to the same sample id 'a' (rename one)"
    assert report.quarantined == [("a.jpg", reason), ("a.png", reason)]
    assert sorted(r["id"] for r in report.rows) == ["sub__b", "sub__deeper__c"]


def test_folder_split_is_stable_when_files_are_added(tmp_path):
    raw = tmp_path / "photos"
    for i in range(30):
        write_image(raw / f"img{i:03d}.png", photo(8, 8))
    before = {c.id: c.split for c in folder.candidates(raw, val_fraction=0.3)}
    assert set(before.values()) == {"train", "val"}
    for i in range(30, 45):
        write_image(raw / "more" / f"img{i:03d}.png", photo(8, 8))
    after = {c.id: c.split for c in folder.candidates(raw, val_fraction=0.3)}
    assert len(after) == 45
    assert {i: after[i] for i in before} == before


def test_folder_prepare(photos, tmp_path):
    out = tmp_path / "out"
    rows = prepared_rows(out, folder.ADAPTER.prepare(photos, out, size=10, val_fraction=0.5))
    sizes = {r["id"]: (r["width"], r["height"]) for r in rows}
    assert sizes == {"a": (13, 10), "sub__b": (10, 13), "sub__deeper__c": (10, 10)}
    assert all(r["label"] is None for r in rows)
    assert read_image(out / "images/sub__b.png").shape == (13, 10, 3)
    with pytest.raises(ValueError, match="must not be the raw dataset folder"):
        folder.ADAPTER.prepare(photos, photos / "out")


def test_scaled_size_keeps_aspect():
    assert store.scaled_size(30, 40, 16) == (16, 21)
    assert store.scaled_size(40, 30, 16) == (21, 16)
    assert store.scaled_size(10, 10, 256) == (256, 256)


# ------------------------------------------------------------------ Sample


def test_one_hot_and_image_tensor():
    label = np.array([[0, 2], [1, 2]], np.uint8)
    t = one_hot(label, 3)
    assert t.shape == (3, 2, 2) and t.dtype == torch.float32
    assert torch.equal(t.argmax(0), torch.from_numpy(label.astype(np.int64)))
    with pytest.raises(ValueError, match="class id 2 .*max id"):
        one_hot(label, 2)
    img = image_to_tensor(np.array([[[0, 255, 128]]], np.uint8))
    assert img.shape == (3, 1, 1)
    assert img.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)
    with pytest.raises(ValueError, match="RGB uint8"):
        image_to_tensor(np.zeros((2, 2), np.uint8))


def test_load_sample_from_prepared_ade20k(ade_root, tmp_path):
    out = tmp_path / "out"
    rows = prepared_rows(out, ade20k.ADAPTER.prepare(ade_root, out, size=15))
    loader = SampleLoader(ade20k.ADAPTER, out, "label", ade20k.SEMANTIC_NC)
    sample = loader(rows[0])
    assert isinstance(sample, Sample) and sample.id == "ADE_train_00000001"
    assert sample.rgb.shape == (15, 20, 3) and sample.label.shape == (15, 20)
    inp, image, label = loader.view(sample, View((15, 20), 0, 0, 15, False))
    assert inp.shape == (151, 15, 15) and inp.dtype == torch.float32
    assert torch.all(inp.sum(0) == 1)
    assert image.shape == (3, 15, 15) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    assert label.dtype == torch.int64
    assert torch.equal(inp.argmax(0), label)
    assert torch.equal(label, torch.from_numpy(sample.label[:, :15].astype(np.int64)))
    with pytest.raises(ValueError, match="no label map"):
        loader({**rows[0], "label": None})


def test_prepare_stage_runs_a_real_dataset_layout(ade_root, tmp_path):
    from cocosnet.data.manifest import read_manifest
    from stages.prepare import main as prepare_stage

    (tmp_path / "keep.txt").write_text("ADE_train_00000001\nADE_val_00000002\n")
    params = tmp_path / "params.yaml"
    params.write_text(
        "data:\n"
        "  datasets: [ade20k]\n"
        f"  raw_roots: {{ade20k: {ade_root}}}\n"
        f"  root: {tmp_path / 'prepared'}\n"
        "  load_size: 20\n"
        f"  ade20k_id_filter: {tmp_path / 'keep.txt'}\n"
    )
    prepare_stage("ade20k", str(params))
    out = tmp_path / "prepared" / "ade20k"
    rows = read_manifest(out / "manifest.parquet", out)
    assert [(r["id"], r["split"], r["height"]) for r in rows] == [
        ("ADE_train_00000001", "train", 20),
        ("ADE_val_00000002", "val", 20),
    ]


def test_real_datasets_need_a_raw_root():
    from cocosnet.config import ConfigError, parse_params

    with pytest.raises(ConfigError, match=r"raw_roots has no folder for dataset\(s\) \['ade20k'\]"):
        parse_params({"data": {"datasets": ["demo", "ade20k"]}})


def test_celebahq_edges_stage_writes_the_15_channel_encoding(celeba_root, tmp_path):
    from cocosnet.config import EdgesConfig
    from cocosnet.preprocess.edges import (
        INNER_PARTS,
        boundary,
        celebahq_edge_encoding,
        edge_maps_for_dataset,
    )

    out = tmp_path / "celebahq"
    prepared_rows(out, celebahq.ADAPTER.prepare(celeba_root, out, size=32))
    count = edge_maps_for_dataset(
        out, tmp_path / "celebahq_edges", EdgesConfig(), encoding="celebahq15"
    )
    assert count == 4
    with np.load(tmp_path / "celebahq_edges" / "0.npz") as f:
        encoding = f["edges"]
    assert encoding.shape == (32, 32, 15) and encoding.dtype == np.uint8
    # Recompute from the stored photo and the parts of its merged parsing map.
    label = read_label(out / "labels/0.png")
    from cocosnet.io import read_image

    parts = {p: (label == celebahq.PART_IDS[p]).astype(np.uint8) * 255 for p in ("skin", "hair")}
    expected = celebahq_edge_encoding(read_image(out / "images/0.png"), parts, EdgesConfig())
    np.testing.assert_array_equal(encoding[..., 1], expected[..., 1])  # skin distance map
    skin_edge = boundary(parts["skin"]).astype(bool)
    assert (encoding[..., 14][skin_edge] == 255).all()
    # Glasses come from their own mask (not the merged map): their distance channel is real.
    glasses_channel = 1 + list(INNER_PARTS).index("eye_g")
    assert encoding[..., glasses_channel].min() == 0
    with pytest.raises(ValueError, match="need parsing maps"):
        folder_out = tmp_path / "folder_prepared"
        prepared_rows(folder_out, folder.ADAPTER.prepare(celeba_root, folder_out, size=16))
        edge_maps_for_dataset(
            folder_out, tmp_path / "f_edges", EdgesConfig(), encoding="celebahq15"
        )


def test_ade20k_prepare_is_the_same_with_worker_processes(ade_root, tmp_path):
    base = ade_root / "ADEChallengeData2016/images/training"
    (base / "ADE_train_00000001.jpg").write_bytes(b"not a jpeg")  # quarantined, order kept
    (base / "ADE_train_00000003.png").unlink()
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        report = ade20k.ADAPTER.prepare(ade_root, out, size=15, workers=workers)
        rows = prepared_rows(out, report)
        files = {
            p.relative_to(out).as_posix(): p.read_bytes()
            for sub in (store.IMAGE_DIR, store.LABEL_DIR)
            for p in sorted((out / sub).iterdir())
        }
        with open(out / "quarantine.csv", newline="") as f:
            quarantined = [(r["path"], r["reason"]) for r in csv.DictReader(f)]
        results[workers] = rows, quarantined, files
    (rows1, quarantined1, files1), (rows2, quarantined2, files2) = results[1], results[2]
    assert [r["id"] for r in rows1] == [
        "ADE_train_00000002",
        "ADE_val_00000001",
        "ADE_val_00000002",
    ]
    assert all(r["sha256"] for r in rows1)
    assert rows2 == rows1
    assert [path for path, _ in quarantined1] == [
        "ADEChallengeData2016/images/training/ADE_train_00000001.jpg",
        "ADEChallengeData2016/images/training/ADE_train_00000003.jpg",
    ]
    assert quarantined2 == quarantined1
    assert len(files1) == 6 and files2 == files1


def test_condition_and_model_channels_are_checked_together():
    """train.condition's input must have model.semantic_nc channels: refused before any
    sample is read (it used to die inside a DataLoader worker), naming both keys."""
    from cocosnet.config import parse_params
    from cocosnet.data.registry import adapter_for
    from stages._datasets import sample_loader

    demo = adapter_for("demo")
    demo.check_model_channels("auto", 8)
    demo.check_model_channels("edges", 1)
    adapter_for("deepfashion").check_model_channels("auto", 20)
    from cocosnet.preprocess.edges import CELEBAHQ_EDGE_CHANNELS

    adapter_for("celebahq").check_model_channels("edges", CELEBAHQ_EDGE_CHANNELS)
    adapter_for("folder").check_model_channels("label", 151)  # a folder's masks: any classes
    with pytest.raises(ValueError, match="train.condition: auto .auto: pose. gives deepfashion"):
        adapter_for("deepfashion").check_model_channels("auto", 151)
    params = parse_params({"model": {"preset": "demo"}, "train": {"condition": "edges"}})
    with pytest.raises(SystemExit) as stop:
        sample_loader(params, "demo", params.model.semantic_nc, "train")
    assert str(stop.value) == (
        "train: train.condition: edges gives demo inputs of 1 channel(s), but model.semantic_nc "
        "is 8; set model.semantic_nc: 1 or another train.condition"
    )
