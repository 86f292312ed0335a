import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cocosnet.data.manifest import ManifestError, inside_root, read_manifest, write_manifest

DIGEST = "0" * 64


def row(i, **kw):
    base = {
        "id": f"s{i}",
        "split": "train",
        "image": f"images/s{i}.png",
        "label": None,
        "width": 64,
        "height": 64,
        "sha256": DIGEST,
    }
    return base | kw


@pytest.fixture
def root(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(3):
        (tmp_path / "images" / f"s{i}.png").write_bytes(b"x")
    return tmp_path


def test_round_trip(root):
    rows = [row(0), row(1, split="val", label="images/s2.png"), row(2)]
    assert write_manifest(root / "manifest.parquet", rows, root) == 3
    assert read_manifest(root / "manifest.parquet", root) == rows


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (row(1, id="s0"), "duplicate id, first at row 0"),
        (row(1, split="training"), "split 'training' not in"),
        (row(1, width=0), "width must be a positive integer"),
        (row(1, image="/etc/passwd"), "must be relative to the data root"),
        (row(1, image="../outside.png"), "leaves the data root"),
        (row(1, image="images/missing.png"), "does not exist under"),
        (row(1, sha256="abc"), "sha256 must be a 64-character"),
        (row(1, id=""), "empty id"),
    ],
)
def test_bad_rows_are_reported_with_row_numbers(root, bad, fragment):
    with pytest.raises(ManifestError) as err:
        write_manifest(root / "m.parquet", [row(0), bad], root)
    assert "row 1" in str(err.value) and fragment in str(err.value)
    assert not (root / "m.parquet").exists()


def test_symlink_escaping_the_root_is_refused(root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret.png"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "images" / "link.png")
    with pytest.raises(ManifestError, match="resolves outside the data root"):
        inside_root(root, "images/link.png")


def test_read_refuses_foreign_or_tampered_files(root):
    (root / "junk.parquet").write_text("not parquet")
    with pytest.raises(ManifestError, match="not a readable Parquet manifest"):
        read_manifest(root / "junk.parquet")
    pq.write_table(pa.table({"id": ["a"]}), root / "partial.parquet")
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(root / "partial.parquet")
    table = pa.Table.from_pylist([row(0), row(0)])
    pq.write_table(table, root / "dup.parquet")
    with pytest.raises(ManifestError, match="dup.parquet: invalid manifest"):
        read_manifest(root / "dup.parquet")
