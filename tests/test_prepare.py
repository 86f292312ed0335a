import csv

import numpy as np
import pytest

from cocosnet.data.manifest import read_manifest
from cocosnet.data.prepare import Candidate, PrepareError, index_candidates, write_prepared
from cocosnet.io import write_image
from stages.prepare import main as prepare_stage


def quarantine_rows(root):
    with open(root / "quarantine.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def mixed_root(tmp_path):
    rng = np.random.default_rng(0)
    write_image(tmp_path / "good.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    write_image(tmp_path / "good_label.png", np.zeros((16, 16), np.uint8))
    write_image(tmp_path / "small_label.png", np.zeros((8, 8), np.uint8))
    write_image(tmp_path / "bad_ids.png", np.full((16, 16), 9, np.uint8))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    return tmp_path


def test_bad_items_are_quarantined_and_good_ones_kept(mixed_root):
    candidates = [
        Candidate("a", "train", "good.png", "good_label.png"),
        Candidate("b", "train", "empty.png"),
        Candidate("c", "val", "text.png"),
        Candidate("d", "val", "good.png", "small_label.png"),
        Candidate("e", "val", "good.png", "bad_ids.png"),
        Candidate("f", "val", "../outside.png"),
        Candidate("g", "val", "missing.png"),
    ]
    report = index_candidates(mixed_root, candidates, max_pixels=10_000, num_classes=8)
    assert [r["id"] for r in report.rows] == ["a"]
    reasons = dict(report.quarantined)
    assert set(reasons) == {"empty.png", "text.png", "good.png", "../outside.png", "missing.png"}
    assert reasons["empty.png"] == "zero-byte file"
    assert "not an image" in reasons["text.png"]
    assert "leaves the data root" in reasons["../outside.png"]
    assert all("\n" not in r for r in reasons.values())
    write_prepared(mixed_root, report)
    assert [r["id"] for r in read_manifest(mixed_root / "manifest.parquet", mixed_root)] == ["a"]
    rows = quarantine_rows(mixed_root)
    assert len(rows) == 6
    assert any("does not match image" in r["reason"] for r in rows)
    assert any("out of range" in r["reason"] for r in rows)


def test_nothing_valid_fails_clearly_but_keeps_the_report(mixed_root):
    report = index_candidates(mixed_root, [Candidate("b", "train", "empty.png")], max_pixels=100)
    with pytest.raises(PrepareError, match="no valid images"):
        write_prepared(mixed_root, report)
    assert quarantine_rows(mixed_root) == [{"path": "empty.png", "reason": "zero-byte file"}]
    assert not (mixed_root / "manifest.parquet").exists()


def test_decompression_bomb_limit_is_a_param(mixed_root):
    report = index_candidates(mixed_root, [Candidate("a", "train", "good.png")], max_pixels=100)
    assert not report.rows and "decompression bomb" in report.quarantined[0][1]


def test_prepare_stage_builds_the_demo_dataset(tmp_path):
    params = tmp_path / "params.yaml"
    root = tmp_path / "data"
    params.write_text(
        f"data:\n  root: {root}\n  demo: {{n_train: 6, n_val: 2, size: 32, seed: 3}}\n"
    )
    prepare_stage("demo", str(params))
    rows = read_manifest(root / "demo" / "manifest.parquet", root / "demo")
    assert [r["split"] for r in rows] == ["train"] * 6 + ["val"] * 2
    assert all(r["width"] == 32 and r["label"] for r in rows)
    assert quarantine_rows(root / "demo") == []
    with pytest.raises(SystemExit, match="unknown dataset 'imagenet'"):
        prepare_stage("imagenet", str(params))


def test_validation_is_identical_for_one_worker_two_workers_and_dask(mixed_root):
    distributed = pytest.importorskip("distributed")
    candidates = [
        Candidate("a", "train", "good.png", "good_label.png"),
        Candidate("b", "train", "empty.png"),
        Candidate("c", "val", "good.png"),
        Candidate("d", "val", "text.png"),
    ]
    kw = {"max_pixels": 10_000, "num_classes": 8}
    serial = index_candidates(mixed_root, candidates, **kw)
    pooled = index_candidates(mixed_root, candidates, workers=2, **kw)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        dask = index_candidates(
            mixed_root, candidates, dask_address=cluster.scheduler_address, **kw
        )
    assert serial == pooled == dask
    assert [r["id"] for r in serial.rows] == ["a", "c"]


def test_every_dataset_params_can_name_has_an_adapter():
    from typing import get_args

    from cocosnet.config.data import DatasetName
    from cocosnet.data.registry import ADAPTERS

    assert set(get_args(DatasetName)) == set(ADAPTERS)
    assert all(name == adapter.name for name, adapter in ADAPTERS.items())
