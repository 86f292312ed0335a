"""Every stage and CLI command that reads user files, run on the bad-input corpus
(tests/badinput.py) mixed with valid files: each bad item gets a one-line reason naming it (in
quarantine.csv or on stderr, never a traceback), the valid items still go through, no temporary
or half-written output is left behind, and every subprocess runs under a timeout (a hang fails)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from cocosnet.cli import main as cli
from cocosnet.data.manifest import read_manifest
from stages import edges, index, masks, pose, prepare

from . import badinput
from .helpers import single_thread, tiny_model

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 240  # seconds; generous for a busy 2-core machine, finite so a hang fails
STAGES = {"prepare": prepare, "edges": edges, "pose": pose, "masks": masks, "index": index}

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def run(*args: str) -> subprocess.CompletedProcess:
    """A real entry point (``python -m stages.X`` as dvc.yaml runs it, or the console script)."""
    return subprocess.run(
        list(args), cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def leftovers(folder: Path) -> list[Path]:
    """Temporary files/folders (atomic writes use hidden ``.name.*.tmp``) under ``folder``."""
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


def quarantine(root: Path) -> dict[str, str]:
    with open(root / "quarantine.csv", newline="") as fh:
        return {row["path"]: row["reason"] for row in csv.DictReader(fh)}


# ------------------------------------------------------------------------------- stages


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The corpus prepared by the real stage entry points: folder photos and ADE20k labels."""
    base = tmp_path_factory.mktemp("bad")
    badinput.make_images(base / "raw_folder")
    for suffix in (".png", ".jpg"):  # two files, one sample id: both quarantined
        Image.fromarray(badinput.gradient()).save(base / "raw_folder" / f"clash{suffix}")
    badinput.make_ade20k(base / "raw_ade")
    params = base / "params.yaml"
    params.write_text(
        f"data:\n  root: {base / 'data'}\n  load_size: 32\n  datasets: [folder, ade20k]\n"
        f"  raw_roots: {{folder: {base / 'raw_folder'}, ade20k: {base / 'raw_ade'}}}\n"
        "index:\n  embedding: layout\n  datasets: [ade20k]\n  k: 1\n"
    )
    py = sys.executable
    runs = {
        "folder": run(py, "-m", "stages.prepare", "folder", str(params)),
        "ade20k": run(py, "-m", "stages.prepare", "ade20k", str(params)),
        "edges": run(py, "-m", "stages.edges", "folder", str(params)),
    }
    return SimpleNamespace(base=base, params=params, root=base / "data", runs=runs)


def test_stage_runs_succeed_without_leftovers(data):
    for name, proc in data.runs.items():
        assert proc.returncode == 0, (name, proc.stderr)
        no_traceback(proc.stderr)
    assert leftovers(data.root) == []


def test_prepare_folder_quarantines_a_name_clash(data):
    root = data.root / "folder"
    reasons = quarantine(root)
    reason = "clash.jpg and clash.png map to the same sample id 'clash' (rename one)"
    assert reasons["clash.jpg"] == reasons["clash.png"] == reason
    assert "clash" not in {r["id"] for r in read_manifest(root / "manifest.parquet", root)}


@pytest.mark.parametrize("stem", list(badinput.IMAGES))
def test_prepare_folder_item(data, stem):
    what, reason, _ = badinput.IMAGES[stem]
    root = data.root / "folder"
    ids = {r["id"] for r in read_manifest(root / "manifest.parquet", root)}
    reasons = quarantine(root)
    if reason is None:  # odd but valid: converted, stored, indexed, and given an edge map
        assert stem in ids and f"{stem}.png" not in reasons, what
        assert (root / "images" / f"{stem}.png").is_file()
        assert (data.root / "folder_edges" / f"{stem}.png").is_file()
    else:
        assert stem not in ids and reason in reasons[f"{stem}.png"], (what, reasons)
        assert "\n" not in reasons[f"{stem}.png"]
        assert not (root / "images" / f"{stem}.png").exists()
        assert not (data.root / "folder_edges" / f"{stem}.png").exists()


@pytest.mark.parametrize("stem", list(badinput.ADE_LABELS))
def test_prepare_ade20k_label_item(data, stem):
    what, reason, _ = badinput.ADE_LABELS[stem]
    root = data.root / "ade20k"
    ids = {r["id"] for r in read_manifest(root / "manifest.parquet", root)}
    photo = f"ADEChallengeData2016/images/training/{stem}.jpg"
    if reason is None:
        assert stem in ids and (root / "labels" / f"{stem}.png").is_file()
    else:
        found = quarantine(root)[photo]
        assert stem not in ids and reason in found and "\n" not in found, what
        assert not (root / "images" / f"{stem}.png").exists()
        assert not (root / "labels" / f"{stem}.png").exists()


def test_prepare_with_nothing_valid_fails_in_one_line(tmp_path):
    badinput.make_images(tmp_path / "raw", stems=["zero_byte", "text", "truncated_png"])
    params = tmp_path / "params.yaml"
    params.write_text(
        f"data:\n  root: {tmp_path / 'data'}\n  datasets: [folder]\n"
        f"  raw_roots: {{folder: {tmp_path / 'raw'}}}\n"
    )
    with pytest.raises(SystemExit, match=r"^prepare: no valid images .*3 quarantined") as info:
        prepare.main("folder", str(params))
    assert "\n" not in str(info.value.code)
    out = tmp_path / "data" / "folder"
    assert set(quarantine(out)) == {"zero_byte.png", "text.png", "truncated_png.png"}
    assert not (out / "manifest.parquet").exists() and leftovers(tmp_path / "data") == []
    (tmp_path / "empty").mkdir()
    params.write_text(
        f"data:\n  root: {tmp_path / 'data2'}\n  datasets: [folder]\n"
        f"  raw_roots: {{folder: {tmp_path / 'empty'}}}\n"
    )
    with pytest.raises(SystemExit, match=r"^prepare: no image files .* found under"):
        prepare.main("folder", str(params))


def _tampered(data, tmp_path, dataset: str) -> tuple[Path, Path]:
    """A copy of a prepared dataset whose first stored file was truncated afterwards."""
    shutil.copytree(data.root / dataset, tmp_path / "data" / dataset)
    row = read_manifest(data.root / dataset / "manifest.parquet", data.root / dataset)[0]
    broken = tmp_path / "data" / dataset / (row["label"] or row["image"])
    broken.write_bytes(broken.read_bytes()[:40])
    params = tmp_path / "params.yaml"
    params.write_text(data.params.read_text().replace(str(data.root), str(tmp_path / "data")))
    return params, broken


def test_edges_stage_on_a_tampered_image_keeps_the_previous_maps(data, tmp_path):
    params, broken = _tampered(data, tmp_path, "folder")
    out = tmp_path / "data" / "folder_edges"
    out.mkdir()
    (out / "previous.png").write_bytes(b"kept")
    with pytest.raises(SystemExit) as info:
        edges.main("folder", str(params))
    message = str(info.value.code)
    assert message.startswith(f"edges: {broken}: ") and "\n" not in message
    assert [p.name for p in out.iterdir()] == ["previous.png"]  # no half-written folder
    assert leftovers(tmp_path / "data") == []


def test_index_stage_on_a_tampered_label_fails_in_one_line(data, tmp_path):
    index.main("ade20k", str(data.params))  # the valid corpus items are indexed
    assert (data.root / "ade20k_index" / "pairs.parquet").is_file()
    params, broken = _tampered(data, tmp_path, "ade20k")
    with pytest.raises(SystemExit) as info:
        index.main("ade20k", str(params))
    message = str(info.value.code)
    assert message.startswith("index: ") and str(broken) in message and "\n" not in message
    assert not (tmp_path / "data" / "ade20k_index" / "pairs.parquet").exists()
    assert leftovers(tmp_path / "data") == []


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("case", list(badinput.BAD_PARAMS))
def test_bad_params_stop_every_stage_clearly(tmp_path, stage, case):
    text, fragment = badinput.BAD_PARAMS[case]
    params = tmp_path / "params.yaml"
    params.write_text(text.format(root=tmp_path / "data"))
    with pytest.raises(SystemExit) as info:
        STAGES[stage].main("folder", str(params))
    message = str(info.value.code)
    assert message.startswith(f"{stage}: ") and fragment in message, message
    # one problem per line (a params file may have several)
    assert any(fragment in line for line in message.splitlines())
    assert not (tmp_path / "data").exists()


def test_bad_params_through_the_real_entry_point(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(badinput.BAD_PARAMS["nan"][0].format(root=tmp_path / "data"))
    proc = run(sys.executable, "-m", "stages.prepare", "folder", str(params))
    assert proc.returncode == 1
    no_traceback(proc.stderr)
    assert "data.folder_val_fraction" in proc.stderr


# ------------------------------------------------------------------------------- the CLI

LABEL_INPUTS = {  # a label-map folder for an 8-class model: name -> reason fragment or None
    "valid_a.png": None,
    "valid_b.png": None,
    "one_pixel_label.png": None,  # a 1x1 class map is usable (letterboxed like any other)
    "out_of_range.png": "largest class id is 9",
    "photo.png": "gives 3",  # an RGB photo given where a mask is expected
    **{f"{s}.png": badinput.IMAGES[s][1] for s in ("truncated_png", "zero_byte", "text", "bomb")},
}


def _labels(folder: Path) -> None:
    folder.mkdir()
    for name, top in (("valid_a.png", 7), ("valid_b.png", 3), ("out_of_range.png", 9)):
        Image.fromarray(badinput.blocky_label(20, 28, top, seed=top)).save(folder / name)
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(folder / "one_pixel_label.png")
    Image.fromarray(badinput.gradient()).save(folder / "photo.png")
    badinput.make_images(folder, stems=["truncated_png", "zero_byte", "text", "bomb"])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def translated(model, tmp_path_factory):
    """``cocosnet translate`` (the console script) on a folder of good and bad masks."""
    base = tmp_path_factory.mktemp("translate")
    _labels(base / "in")
    Image.fromarray(badinput.gradient(seed=3)).save(base / "ex.jpg")
    exe = str(Path(sys.executable).with_name("cocosnet"))
    args = ["translate", "--checkpoint", str(model), "--input", str(base / "in")]
    proc = run(exe, *args, "--exemplar", str(base / "ex.jpg"), "--out", str(base / "out"))
    return SimpleNamespace(base=base, proc=proc)


def test_translate_folder_exit_status_and_leftovers(translated):
    assert translated.proc.returncode == 1, translated.proc.stderr  # done, some skipped
    no_traceback(translated.proc.stderr)
    assert '"skipped": 6' in translated.proc.stdout
    assert leftovers(translated.base) == []


@pytest.mark.parametrize("name", list(LABEL_INPUTS))
def test_translate_folder_item(translated, name):
    reason = LABEL_INPUTS[name]
    out = translated.base / "out" / f"{Path(name).stem}.png"
    lines = [line for line in translated.proc.stderr.splitlines() if name in line]
    if reason is None:
        assert out.is_file() and lines == []
    else:
        assert not out.exists()
        assert len(lines) == 1 and reason in lines[0], translated.proc.stderr
        assert lines[0].startswith("cocosnet translate: skipped: ")
        assert str(translated.base / "in" / name) in lines[0]


@pytest.mark.parametrize("stem", list(badinput.IMAGES))
def test_translate_exemplar_item(model, tmp_path, capsys, stem):
    """One mask with each corpus file as its exemplar (one pair: a bad one is exit status 2)."""
    what, reason, _ = badinput.IMAGES[stem]
    badinput.make_images(tmp_path, stems=[stem])
    mask = tmp_path / "mask.png"
    Image.fromarray(badinput.blocky_label(20, 28, 7)).save(mask)
    out = tmp_path / "out" / "o.png"
    args = ["translate", "--checkpoint", str(model), "--input", str(mask), "--out", str(out)]
    code = cli([*args, "--exemplar", str(tmp_path / f"{stem}.png")])
    err = capsys.readouterr().err.strip()
    if reason is None:  # CMYK, 16-bit, palette, gray and RGBA exemplars are converted
        assert code == 0 and out.is_file() and err == "", what
    else:
        assert code == 2 and not out.exists()
        assert err.startswith("cocosnet translate: error: ") and "\n" not in err
        assert f"{stem}.png" in err and reason in err, err
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ("a.png,ex.png\n../in/a.png,ex.png\n", ":2: path '../in/a.png' must be relative"),
        ("a.png,ex.png\n/etc/passwd,ex.png\n", ":2: path '/etc/passwd' must be relative"),
        ("a.png,ex.png\nmissing.png,ex.png\n", ":2:"),
        ("a.png,ex.png\na.png,ex.png\n", ":2: output a.png already written by line 1"),
        ("a.png ex.png\n", ":1: expected input,exemplar"),
        ("\n# only comments\n", "no pairs"),
    ],
    ids=["dotdot", "absolute", "unknown_file", "duplicate", "malformed", "empty"],
)
def test_translate_pair_list(model, tmp_path, capsys, lines, reason):
    Image.fromarray(badinput.blocky_label(20, 28, 7)).save(tmp_path / "a.png")
    Image.fromarray(badinput.gradient()).save(tmp_path / "ex.png")
    (tmp_path / "pairs.txt").write_text(lines)
    out = tmp_path / "out"
    code = cli(
        ["translate", "--checkpoint", str(model), "--pairs", str(tmp_path / "pairs.txt"), "--out"]
        + [str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and reason in err and "\n" not in err, err
    assert str(tmp_path / "pairs.txt") in err
    assert not out.exists()  # a bad list is refused before anything is written


@pytest.fixture(scope="module")
def pose_model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("pose_model"), semantic_nc=20)


@pytest.fixture(scope="module")
def posed(pose_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("pose")
    badinput.make_openpose(base / "in")
    Image.fromarray(badinput.gradient()).save(base / "ex.png")
    args = ["translate", "--checkpoint", str(pose_model), "--input", str(base / "in")]
    args += ["--exemplar", str(base / "ex.png"), "--pose-size", "24x32"]
    return SimpleNamespace(base=base, args=args)


@pytest.mark.parametrize("stem", list(badinput.POSES))
def test_translate_openpose_item(posed, capsys, stem):
    """A folder of OpenPose txt pairs, one of them valid (run once; parametrized assertions)."""
    out = posed.base / "out"
    if not hasattr(posed, "code"):
        posed.code = cli([*posed.args, "--out", str(out)])
        posed.err = capsys.readouterr().err
    what, reason, _, _ = badinput.POSES[stem]
    assert posed.code == 1 and "Traceback" not in posed.err
    lines = [line for line in posed.err.splitlines() if f"{stem}_" in line]
    if reason is None:
        assert (out / f"{stem}.png").is_file() and lines == []
    else:
        assert not (out / f"{stem}.png").exists()
        assert len(lines) == 1 and reason in lines[0], (what, posed.err)
    assert leftovers(posed.base) == []


def test_pairs_import_names_every_bad_line(data, tmp_path, capsys):
    listing = tmp_path / "ade20k_ref.txt"
    listing.write_text(
        "ADE_train_00000001.jpg,ADE_train_00000002.jpg\n"
        "ADE_train_00000404.jpg,ADE_train_00000001.jpg\n"  # unknown id (never prepared)
        "ADE_train_00000001.jpg,ADE_train_00000002.jpg\n"  # duplicate key
        "../../../etc/passwd,ADE_train_00000001.jpg\n"  # a path: only its stem is an id
        "ADE_train_00000002.jpg\n"  # no ref
    )
    out = tmp_path / "pairs.parquet"
    code = cli(
        ["pairs", "import", "--dataset", "ade20k", "--dataset-dir", str(data.root / "ade20k")]
        + ["--train", str(listing), "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    for line in (2, 3, 4, 5):
        assert f"{listing}:{line}:" in err, err
    assert "ADE_train_00000404" in err and "passwd" in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_evaluate_names_the_bad_image(tmp_path, capsys):
    real, fake = tmp_path / "real", tmp_path / "fake"
    for folder in (real, fake):
        folder.mkdir()
        for i in range(3):
            Image.fromarray(badinput.gradient(32, 32, seed=i)).save(folder / f"{i}.png")
    (fake / "1.png").write_bytes((fake / "1.png").read_bytes()[:50])
    code = cli(["evaluate", "swd", "--real", str(real), "--fake", str(fake)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and str(fake / "1.png") in err and "\n" not in err, err


@pytest.mark.parametrize("bad", ["photo", "mask", "edited_mask"])
def test_edit_refuses_a_bad_file(model, tmp_path, capsys, bad):
    files = {
        "photo": tmp_path / "photo.png",
        "mask": tmp_path / "mask.png",
        "edited_mask": tmp_path / "edited.png",
    }
    Image.fromarray(badinput.gradient()).save(files["photo"])
    for key in ("mask", "edited_mask"):
        Image.fromarray(badinput.blocky_label(24, 32, 7)).save(files[key])
    files[bad].write_bytes(files[bad].read_bytes()[:30])
    out = tmp_path / "edited_out.png"
    args = ["edit", "--checkpoint", str(model), "--photo", str(files["photo"])]
    args += ["--mask", str(files["mask"]), "--edited-mask", str(files["edited_mask"])]
    code = cli([*args, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and str(files[bad]) in err and "\n" not in err, err
    assert not out.exists() and leftovers(tmp_path) == []


def test_correspond_refuses_a_bad_exemplar(model, tmp_path, capsys):
    Image.fromarray(badinput.blocky_label(24, 32, 7)).save(tmp_path / "mask.png")
    badinput.make_images(tmp_path, stems=["bomb"])
    out = tmp_path / "matches.png"
    args = ["correspond", "--checkpoint", str(model), "--input", str(tmp_path / "mask.png")]
    args += ["--exemplar", str(tmp_path / "bomb.png"), "--points", "3,4", "--out", str(out)]
    code = cli(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "bomb.png: decompression bomb" in err and "\n" not in err, err
    assert not out.exists()


def test_makeup_refuses_bad_targets_before_writing(model, tmp_path, capsys):
    """makeup is all or nothing (its contract in test_applications): every bad target is named,
    one line each, and nothing is written."""
    source = badinput.gradient(seed=1)
    Image.fromarray(source).save(tmp_path / "source.png")
    strokes = source.copy()
    strokes[4:10, 4:20] = (255, 0, 0)
    Image.fromarray(strokes).save(tmp_path / "strokes.png")
    Image.fromarray(badinput.blocky_label(24, 32, 7)).save(tmp_path / "source_mask.png")
    targets, target_masks = tmp_path / "targets", tmp_path / "target_masks"
    badinput.make_images(targets, stems=["valid_rgb", "cmyk", "truncated_png", "text"])
    target_masks.mkdir()
    for stem in ("valid_rgb", "cmyk", "truncated_png", "text"):
        Image.fromarray(badinput.blocky_label(24, 32, 7)).save(target_masks / f"{stem}.png")
    Image.fromarray(badinput.blocky_label(8, 8, 7)).save(target_masks / "cmyk.png")  # wrong size
    out = tmp_path / "out"
    args = ["makeup", "--checkpoint", str(model), "--source", str(tmp_path / "source.png")]
    args += ["--source-mask", str(tmp_path / "source_mask.png")]
    args += ["--strokes", str(tmp_path / "strokes.png"), "--targets", str(targets)]
    code = cli([*args, "--target-masks", str(target_masks), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 3, err
    assert all(line.startswith("cocosnet makeup: error: ") for line in err)
    assert not out.exists()
    reasons = {"truncated_png.png": "truncated", "text.png": "not an image", "cmyk.png": "8x8"}
    for name, reason in reasons.items():
        assert any(name in line and reason in line for line in err), (name, err)
    assert leftovers(tmp_path) == []
