"""Inference plumbing (cocosnet.inference, ``cocosnet translate``) on tiny randomly initialised
models: sizes, domains, batching, determinism and one-line errors, not image quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cocosnet.cli import main
from cocosnet.formats.pose_render import write_openpose_txt
from cocosnet.inference import (
    Letterbox,
    Translator,
    prepare_exemplar,
    prepare_input,
    translate_files,
    translate_many,
)
from cocosnet.io import ImageProblem, read_image, write_image

from .helpers import single_thread, tiny_model

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


_model = tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """The demo architecture: 64 x 64, 8 classes, maskmix."""
    return _model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def translator(model) -> Translator:
    return Translator(model)


def _label(path: Path, height: int, width: int, seed: int = 0, top: int = 7) -> Path:
    """Blocky class-id map (8 x 8 cells) with ids 0..top."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, top + 1, (height // 8 + 1, width // 8 + 1), dtype=np.uint8)
    ids = cells.repeat(8, 0).repeat(8, 1)[:height, :width]
    ids.flat[0] = top
    write_image(path, np.ascontiguousarray(ids))
    return path


def _photo(path: Path, height: int, width: int, seed: int = 0, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert(mode).save(path)
    return path


def test_letterbox_geometry_and_restore():
    box = Letterbox.fit(50, 80, 64)
    assert (box.inner_height, box.inner_width, box.top, box.left) == (40, 64, 12, 0)
    assert box.padding == (0, 0, 12, 12)
    inner = torch.rand(3, 40, 64) * 2 - 1
    padded = box.pad(inner, "reflect")
    assert padded.shape == (3, 64, 64)
    assert torch.equal(padded[:, 12:52], inner)
    restored = box.restore(padded[None])
    assert restored.shape == (1, 3, 50, 80)
    thin = Letterbox.fit(100, 30, 64)  # 64 x 19: reflect padding would exceed the width
    assert thin.pad(torch.zeros(3, 64, 19), "reflect").shape == (3, 64, 64)


def test_prepare_label_pads_with_class_zero(tmp_path):
    prepared = prepare_input(_label(tmp_path / "a.png", 50, 80), 8, 64)
    x = prepared.tensor
    assert x.shape == (8, 64, 64) and torch.equal(x.sum(0), torch.ones(64, 64))
    assert torch.all(x[0, :12] == 1) and torch.all(x[0, 52:] == 1)  # the padding is class 0


def test_one_pair_any_size(tmp_path, translator):
    out, warped = tmp_path / "out" / "o.png", tmp_path / "w.png"
    result = translate_files(
        translator,
        _label(tmp_path / "in.png", 50, 80),
        _photo(tmp_path / "ex.png", 100, 30),
        out,
        warped_path=warped,
    )
    assert result.shape == (50, 80, 3) and result.dtype == np.uint8
    assert read_image(out).shape == (50, 80, 3)
    assert read_image(warped).shape == (50, 80, 3)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16"])
def test_exemplar_modes(tmp_path, mode):
    path = tmp_path / ("ex.tif" if mode == "CMYK" else "ex.png")
    if mode == "I;16":
        Image.fromarray(np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) * 50).save(path)
    else:
        _photo(path, 40, 30, mode=mode)
    prepared = prepare_exemplar(path, 64)
    assert prepared.tensor.shape == (3, 64, 64)
    assert prepared.tensor.min() >= -1 and prepared.tensor.max() <= 1


def _batch(tmp_path: Path, n: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = [
        prepare_input(_label(tmp_path / f"l{i}.png", 40 + 9 * i, 70, i), 8, size) for i in range(n)
    ]
    exemplars = [
        prepare_exemplar(_photo(tmp_path / f"e{i}.png", 30 + 20 * i, 50, i), size) for i in range(n)
    ]
    return torch.stack([p.tensor for p in inputs]), torch.stack([p.tensor for p in exemplars])


def test_deterministic_batched_and_rng_free(tmp_path, translator):
    inputs, exemplars = _batch(tmp_path, 3)
    rng = torch.get_rng_state()
    out, warped = translator.translate(inputs, exemplars)
    again, _ = translator.translate(inputs, exemplars)
    assert torch.equal(out, again)
    assert torch.equal(torch.get_rng_state(), rng)  # the hidden-mask noise has its own generator
    for i in range(3):
        single, single_warped = translator.translate(inputs[i : i + 1], exemplars[i : i + 1])
        torch.testing.assert_close(single, out[i : i + 1], atol=5e-5, rtol=0)
        torch.testing.assert_close(single_warped, warped[i : i + 1], atol=5e-5, rtol=0)
    assert out.shape == warped.shape == (3, 3, 64, 64)


def test_noise_is_the_networks_own_draw(tmp_path, translator):
    """For one sample, the seeded noise equals what the network draws after manual_seed(seed)."""
    inputs, exemplars = _batch(tmp_path, 1)
    out, warped = translator.translate(inputs, exemplars)
    torch.manual_seed(translator.seed)
    with torch.no_grad():
        own = translator.corr(inputs, exemplars, None, hide_exemplar_label=True).warped
        own_out = translator.gen(inputs, own)
    torch.testing.assert_close(warped, own, atol=1e-5, rtol=0)
    torch.testing.assert_close(out, own_out, atol=1e-4, rtol=0)


def test_exemplar_input_shown_or_hidden(tmp_path, model):
    inputs, exemplars = _batch(tmp_path, 2)
    ex_inputs = inputs.flip(0)
    shown = Translator(model).translate(inputs, exemplars, ex_inputs)[1]
    hidden = Translator(model, hide_exemplar_label=True)
    assert not torch.allclose(shown, hidden.translate(inputs, exemplars, ex_inputs)[1])
    assert torch.equal(
        hidden.translate(inputs, exemplars, ex_inputs)[1], hidden.translate(inputs, exemplars)[1]
    )


def test_translate_many_batched_equals_one_by_one(tmp_path, translator):
    pairs = [
        (
            _label(tmp_path / f"l{i}.png", 30 + 11 * i, 70, i),
            _photo(tmp_path / f"e{i}.png", 50, 40, i),
        )
        for i in range(3)
    ]
    jobs = [(inp, ex, tmp_path / "b" / f"{i}.png") for i, (inp, ex) in enumerate(pairs)]
    translate_many(translator, jobs, batch_size=2, warped_dir=tmp_path / "bw", progress=False)
    for i, (inp, ex) in enumerate(pairs):
        single = translate_files(translator, inp, ex, tmp_path / "s" / f"{i}.png")
        batched = read_image(tmp_path / "b" / f"{i}.png").astype(int)
        # Floats agree to 1e-5 (above); a value on a rounding boundary may move one level.
        assert np.abs(batched - single).max() <= 1
        assert read_image(tmp_path / "bw" / f"{i}.png").shape == single.shape


def test_cli_one_pair_and_folders(tmp_path, model, capsys):
    inputs, exemplars = tmp_path / "in", tmp_path / "ex"
    inputs.mkdir()
    exemplars.mkdir()
    sizes = {"a": (50, 80), "b": (64, 64), "c": (90, 33)}
    for i, (stem, (h, w)) in enumerate(sizes.items()):
        _label(inputs / f"{stem}.png", h, w, i)
        suffix, mode = (".jpg", "L") if i else (".png", "RGBA")  # grayscale and RGBA exemplars
        _photo(exemplars / f"{stem}{suffix}", 40 + i, 60, i, mode=mode)
    (inputs / "notes.txt").write_text("not an input")
    args = ["translate", "--checkpoint", str(model)]
    one = [*args, "--input", str(inputs / "a.png"), "--exemplar", str(exemplars / "a.png")]
    assert (
        main([*one, "--out", str(tmp_path / "one.png"), "--warped", str(tmp_path / "w.png")]) == 0
    )
    assert (
        read_image(tmp_path / "one.png").shape
        == read_image(tmp_path / "w.png").shape
        == (50, 80, 3)
    )

    folders = [*args, "--input", str(inputs), "--batch-size", "2"]
    out = tmp_path / "out"
    assert (
        main(
            [
                *folders,
                "--exemplar",
                str(exemplars),
                "--out",
                str(out),
                "--warped",
                str(tmp_path / "wd"),
            ]
        )
        == 0
    )
    assert "translate" in capsys.readouterr().err  # the progress bar
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    for stem, (h, w) in sizes.items():
        assert read_image(out / f"{stem}.png").shape == (h, w, 3)
        assert read_image(tmp_path / "wd" / f"{stem}.png").shape == (h, w, 3)
    # One exemplar file for every input.
    assert (
        main([*folders, "--exemplar", str(exemplars / "c.jpg"), "--out", str(tmp_path / "o2")]) == 0
    )
    assert len(list((tmp_path / "o2").iterdir())) == 3
    # A missing exemplar stem is a one-line error.
    (exemplars / "c.jpg").unlink()
    capsys.readouterr()
    assert main([*folders, "--exemplar", str(exemplars), "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no matching exemplar for 1 inputs: c" in err and "\n" not in err


def test_cli_pair_list(tmp_path, model, capsys):
    root = tmp_path / "set"
    (root / "masks").mkdir(parents=True)
    (root / "photos").mkdir()
    _label(root / "masks" / "x.png", 48, 60)
    _photo(root / "photos" / "y.png", 70, 50)
    _photo(tmp_path / "outside.png", 70, 50)
    listing = root / "pairs.txt"
    listing.write_text("# input,exemplar\nmasks/x.png, photos/y.png\n")
    cmd = [
        "translate",
        "--checkpoint",
        str(model),
        "--pairs",
        str(listing),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(cmd) == 0
    assert read_image(tmp_path / "o" / "x.png").shape == (48, 60, 3)
    # A list with bad lines is refused whole, every bad line named with its own cause.
    bad_lines = [
        ("masks/x.png,../outside.png", "no '..'"),
        ("masks/x.png,/etc/passwd", "must be relative"),
        ("masks/x.png,photos/missing.png", "not found"),
        ("masks/x.png", "expected input,exemplar[,exemplar_input]"),
        ("masks/x.png,photos/y.png", "output x.png already written by line 1"),
    ]
    listing.write_text("\n".join(["masks/x.png,photos/y.png", *(b for b, _ in bad_lines)]))
    capsys.readouterr()
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert f"{listing}: bad lines ({len(bad_lines)} problem(s)):" in err
    for number, (_, reason) in enumerate(bad_lines, start=2):
        assert reason in next(e for e in err.splitlines() if f"{listing}:{number}:" in e)
    # Files that cannot be read skip their pair (with the line), the others are written.
    (root / "masks" / "cut.png").write_bytes((root / "masks" / "x.png").read_bytes()[:60])
    _photo(root / "masks" / "rgb.png", 30, 30)
    listing.write_text(
        "masks/cut.png,photos/y.png\nmasks/x.png,photos/y.png\nmasks/rgb.png,photos/y.png"
    )
    (tmp_path / "o" / "x.png").unlink()
    assert main(cmd) == 1 and (tmp_path / "o" / "x.png").is_file()
    err = [e for e in capsys.readouterr().err.splitlines() if "cocosnet translate:" in e]
    assert len(err) == 2, err  # one line each (the rest is the progress bar)
    assert err[0].startswith(f"cocosnet translate: skipped: {listing}:1: ")
    assert err[0].endswith("cut.png: truncated or corrupt image data")
    assert err[1].startswith(f"cocosnet translate: skipped: {listing}:3: ")
    assert "rgb.png gives 3 (a 3-band image" in err[1]


@pytest.mark.parametrize(
    ("domain", "make", "message"),
    [
        ("label", lambda p: _label(p, 30, 40, top=9), "largest class id is 9"),
        ("label", lambda p: _photo(p, 30, 40), "gives 3"),
        ("auto", lambda p: _photo(p, 30, 40, mode="RGBA"), "gives 4"),
        ("edges", lambda p: _label(p, 30, 40, top=1), "gives 1 (edges)"),
        ("photo-edges", lambda p: _photo(p, 30, 40), "gives 1 (photo-edges)"),
    ],
)
def test_cli_clear_errors(tmp_path, model, capsys, domain, make, message):
    path = make(tmp_path / "in.png")
    exemplar = _photo(tmp_path / "ex.png", 30, 30)
    args = [
        "translate",
        "--checkpoint",
        str(model),
        "--input",
        str(path),
        "--exemplar",
        str(exemplar),
    ]
    assert main([*args, "--out", str(tmp_path / "o.png"), "--domain", domain]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(path) in err and "\n" not in err
    if "gives" in message:
        assert "model expects 8 input channels (a mask with 8 classes)" in err
    assert not (tmp_path / "o.png").exists()


def test_cli_truncated_png(tmp_path, model, capsys):
    good = _label(tmp_path / "good.png", 40, 40)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:60])
    exemplar = _photo(tmp_path / "ex.png", 30, 30)
    for inp, ex in [(bad, exemplar), (good, bad)]:
        code = main(
            [
                "translate",
                "--checkpoint",
                str(model),
                "--input",
                str(inp),
                "--exemplar",
                str(ex),
                "--out",
                str(tmp_path / "o.png"),
            ]
        )
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("cocosnet translate: error:") and str(bad) in err and "\n" not in err


def test_edges_and_pose_domains(tmp_path):
    edges_model = Translator(_model(tmp_path / "edges", semantic_nc=1))
    photo = _photo(tmp_path / "photo.png", 50, 90)
    edge_map = np.zeros((70, 45), np.uint8)
    edge_map[::7] = 255
    write_image(tmp_path / "edges.png", edge_map)
    x = prepare_input(tmp_path / "edges.png", 1, 64).tensor
    assert x.shape == (1, 64, 64) and x.max() == 1  # thin lines survive the shrinking
    for inp, domain in [(tmp_path / "edges.png", "auto"), (photo, "photo-edges")]:
        out = translate_files(edges_model, inp, photo, tmp_path / f"{domain}.png", domain=domain)
        assert out.shape == read_image(inp).shape[:2] + (3,)

    pose_model = Translator(_model(tmp_path / "pose", semantic_nc=20))
    candidate = np.array([[20.0, 10, 0.9, 0], [20, 30, 0.9, 1], [10, 30, 0.8, 2], [8, 50, 0.8, 3]])
    subset = np.full((1, 20), -1.0)
    subset[0, :4], subset[0, 18:] = [0, 1, 2, 3], [3.4, 4]
    cand, _ = write_openpose_txt(tmp_path / "pose", "p", candidate, subset)
    out = translate_files(
        pose_model, cand, photo, tmp_path / "p.png", domain="auto", pose_size=(80, 40)
    )
    assert out.shape == (80, 40, 3)
    with pytest.raises(ValueError, match="do not record the image size"):
        prepare_input(cand, 20, 64)
    _photo(tmp_path / "pose" / "p.png", 60, 30)  # the photo beside the txt files gives the size
    pose = prepare_input(cand, 20, 64)
    assert pose.tensor.shape == (20, 64, 64) and (pose.box.height, pose.box.width) == (60, 30)
    np.savez(tmp_path / "q.npz", pose=np.zeros((40, 30, 20), np.uint8))
    assert translate_files(pose_model, tmp_path / "q.npz", photo, tmp_path / "q.png").shape == (
        40,
        30,
        3,
    )
    with pytest.raises(ValueError, match="model expects 8 input channels"):
        prepare_input(tmp_path / "q.npz", 8, 64)


def test_cli_exemplar_input(tmp_path, model, capsys):
    inp = _label(tmp_path / "in.png", 40, 56)
    exemplar = _photo(tmp_path / "ex.png", 48, 36)
    ex_mask = _label(tmp_path / "ex_mask.png", 48, 36, seed=3)
    args = ["translate", "--checkpoint", str(model), "--input", str(inp), "--exemplar"]
    outs = {}
    for name, extra in [
        ("shown", ["--exemplar-input", str(ex_mask)]),
        ("hidden", ["--exemplar-input", str(ex_mask), "--hide-exemplar-mask"]),
        ("none", []),
    ]:
        out = tmp_path / f"{name}.png"
        assert main([*args, str(exemplar), "--out", str(out), *extra]) == 0
        outs[name] = read_image(out)
    assert np.array_equal(outs["hidden"], outs["none"])
    assert not np.array_equal(outs["shown"], outs["none"])
    wrong = _label(tmp_path / "wrong.png", 30, 36)
    out = str(tmp_path / "o.png")
    assert main([*args, str(exemplar), "--out", out, "--exemplar-input", str(wrong)]) == 2
    assert "is 36x30 but exemplar" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--channels-last"], ["--precision", "bfloat16"]])
def test_translate_cli_runtime_options(tmp_path, model, extra):
    """--precision / --channels-last change the arithmetic, not the result: the output stays
    within a few grey levels of the float32 one (random weights; bench/inference.py measures)."""
    _label(tmp_path / "in.png", 64, 64)
    _photo(tmp_path / "ex.png", 64, 64, 1)
    args = ["translate", "--checkpoint", str(model), "--input", str(tmp_path / "in.png")]
    args += ["--exemplar", str(tmp_path / "ex.png")]
    assert main([*args, "--out", str(tmp_path / "f32.png")]) == 0
    assert main([*args, "--out", str(tmp_path / "opt.png"), *extra]) == 0
    f32 = read_image(tmp_path / "f32.png").astype(int)
    opt = read_image(tmp_path / "opt.png").astype(int)
    assert np.abs(opt - f32).mean() < 3 and np.abs(opt - f32).max() < 40


def test_correspondence_in_bfloat16(model):
    """The correspondence application runs on a bfloat16 runtime and returns float32 weights."""
    from cocosnet.inference.applications import correspondence_weights
    from cocosnet.models.runtime import RuntimeOptions

    tr = Translator(model, runtime=RuntimeOptions("bfloat16", channels_last=True))
    g = torch.Generator().manual_seed(0)
    label = torch.nn.functional.one_hot(torch.randint(0, 8, (64, 64), generator=g), 8)
    label = label.permute(2, 0, 1).float()
    corr = correspondence_weights(tr, label, torch.rand(3, 64, 64, generator=g) * 2 - 1)
    weights = corr.weights()
    assert weights.dtype == torch.float32
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[0]), atol=1e-4)


def test_inputs_are_checked_against_the_models_domain(tmp_path):
    """A grey photo is no edge map, a photo no mask, a 3-channel array no pose: each refused
    in one line that points at the domain that makes the input from a photo."""
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.float32), (48, 1)).astype(np.uint8)
    write_image(tmp_path / "grey.png", ramp)  # continuous tone, single channel
    with pytest.raises(ImageProblem, match=r"not an edge map: 78% of its pixels are mid-grey"):
        prepare_input(tmp_path / "grey.png", 1, 64)
    with pytest.raises(ImageProblem, match="--domain photo-edges makes"):
        prepare_input(tmp_path / "grey.png", 1, 64)
    soft = np.zeros((48, 64), np.uint8)
    soft[::6], soft[1::6] = 255, 128  # resized edges: a grey fringe beside each line is fine
    write_image(tmp_path / "soft.png", soft)
    assert prepare_input(tmp_path / "soft.png", 1, 64).tensor.max() == 1
    _photo(tmp_path / "photo.png", 40, 40)
    with pytest.raises(ValueError, match="3-band image; a photo\\? --domain photo-mask makes"):
        prepare_input(tmp_path / "photo.png", 151, 64)
    with pytest.raises(ImageProblem, match="has 151 classes .*--domain photo-mask"):
        prepare_input(tmp_path / "grey.png", 151, 64)  # ids up to 255
    np.savez(tmp_path / "rgb.npz", pose=np.zeros((40, 30, 3), np.uint8))
    with pytest.raises(ImageProblem, match="'pose' must be H x W x 20 uint8"):
        prepare_input(tmp_path / "rgb.npz", 20, 64)
