"""Outputs never overwrite inputs: every command that writes refuses, before anything runs, an
output that is one of its inputs however spelled (the same path, ``./``, a symbolic or a hard
link), or an output folder that is an input folder; the input is left byte for byte. Written
files honour the umask."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cocosnet.cli import main
from cocosnet.files import atomic_dir, atomic_path, refuse_overwriting_inputs

from .helpers import tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "export")


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    mask = np.zeros((16, 16), np.uint8)
    mask[8:] = 3
    photo = np.full((16, 16, 3), 90, np.uint8)
    made = {
        "mask": _png(tmp_path / "in" / "m.png", mask),
        "edited": _png(tmp_path / "in" / "e.png", mask[::-1].copy()),
        "photo": _png(tmp_path / "in" / "p.png", photo),
        "strokes": _png(tmp_path / "in" / "s.png", photo + 20),
        "target": _png(tmp_path / "targets" / "t.png", photo),
        "target_mask": _png(tmp_path / "target_masks" / "t.png", mask),
    }
    (tmp_path / "pairs.txt").write_text("in/m.png,in/p.png\n")
    made["pairs"] = tmp_path / "pairs.txt"
    return made


def _spellings(path: Path, tmp_path: Path) -> dict[str, str]:
    """The same file as given, through ./, through a symbolic link and through a hard link."""
    sym, hard = tmp_path / "sym.png", tmp_path / "hard.png"
    sym.symlink_to(path)
    os.link(path, hard)
    dotted = f"{path.parent}/./{path.name}"
    return {"same": str(path), "dotted": dotted, "symlink": str(sym), "hardlink": str(hard)}


def _refused(argv: list[str], protected: list[Path], capsys) -> str:
    before = {p: p.read_bytes() for p in protected}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "would overwrite the input" in err and "\n" not in err, err
    assert {p: p.read_bytes() for p in protected} == before
    return err


def test_translate_one_pair(model, files, tmp_path, capsys):
    base = ["translate", "--checkpoint", str(model), "--input", str(files["mask"])]
    base += ["--exemplar", str(files["photo"])]
    for out in _spellings(files["mask"], tmp_path).values():
        _refused([*base, "--out", out], [files["mask"]], capsys)
    fine = str(tmp_path / "fine.png")
    _refused([*base, "--out", fine, "--warped", str(files["photo"])], [files["photo"]], capsys)


def test_translate_folders_and_pair_list(model, files, tmp_path, capsys):
    folder = str(files["mask"].parent)
    base = ["translate", "--checkpoint", str(model), "--input", folder]
    _refused([*base, "--exemplar", str(files["photo"]), "--out", folder], [files["mask"]], capsys)
    _refused(
        [*base, "--exemplar", str(files["photo"]), "--out", f"{folder}/."], [files["mask"]], capsys
    )
    # The list's first input is in/m.png; outputs are OUT/<stem>.png: OUT=in overwrites it.
    pairs = ["translate", "--checkpoint", str(model), "--pairs", str(files["pairs"])]
    _refused([*pairs, "--out", folder], [files["mask"]], capsys)
    out = tmp_path / "ok"
    assert main([*pairs, "--out", str(out)]) == 0 and (out / "m.png").is_file()


def test_edit_makeup_correspond(model, files, tmp_path, capsys):
    ckpt = ["--checkpoint", str(model)]
    edit = ["edit", *ckpt, "--photo", str(files["photo"]), "--mask", str(files["mask"])]
    edit += ["--edited-mask", str(files["edited"])]
    _refused([*edit, "--out", str(files["photo"])], [files["photo"]], capsys)
    _refused([*edit, "--out", str(files["edited"])], [files["edited"]], capsys)
    makeup = ["makeup", *ckpt, "--source", str(files["photo"]), "--source-mask"]
    makeup += [str(files["mask"]), "--strokes", str(files["strokes"])]
    makeup += ["--targets", str(files["target"].parent), "--target-masks"]
    makeup += [str(files["target_mask"].parent)]
    protected = [files["target"], files["target_mask"]]
    _refused([*makeup, "--out", str(files["target"].parent)], protected, capsys)
    _refused([*makeup, "--out", str(files["target_mask"].parent)], protected, capsys)
    co = ["correspond", *ckpt, "--input", str(files["mask"]), "--exemplar", str(files["photo"])]
    co += ["--points", "1,1"]
    _refused([*co, "--out", str(files["photo"])], [files["photo"]], capsys)
    fine = str(tmp_path / "c.png")
    _refused([*co, "--out", fine, "--warped", str(files["mask"])], [files["mask"]], capsys)


def test_pairs_and_import_official(files, tmp_path, capsys):
    pairs = tmp_path / "pairs.parquet"
    pairs.write_bytes(b"PAR1 not really")
    _refused(["pairs", "export", str(pairs), "--out", str(pairs)], [pairs], capsys)
    listing = tmp_path / "ade20k_ref.txt"
    listing.write_text("a.jpg,b.jpg\n")
    args = ["pairs", "import", "--dataset", "ade20k", "--dataset-dir", str(tmp_path)]
    _refused([*args, "--train", str(listing), "--out", str(listing)], [listing], capsys)
    weights = tmp_path / "official" / "model.json"
    weights.parent.mkdir()
    weights.write_bytes(b"not json")
    args = ["import-official", "--preset", "demo", "--corr", str(weights), "--gen", str(weights)]
    _refused([*args, "--out", str(weights.parent)], [weights], capsys)


def test_refuse_overwriting_inputs_allows_distinct_files(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"a")
    refuse_overwriting_inputs([a, None], [b, None, tmp_path / "new" / "a.png"])
    with pytest.raises(ValueError, match="would overwrite the input"):
        refuse_overwriting_inputs([tmp_path], [tmp_path / "." / ""])


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inner.txt").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~umask
