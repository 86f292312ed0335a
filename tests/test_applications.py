"""Applications of the correspondence (cocosnet.inference.applications; ``cocosnet edit``,
``makeup``, ``correspond``) on a tiny random model: exact invariants of the softmax warp, the
makeup composite under a hand-built identity correspondence, sizes and one-line CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cocosnet.cli import main
from cocosnet.inference import (
    Translator,
    makeup,
    matches,
    prepare_exemplar,
    prepare_input,
    translate_files,
)
from cocosnet.inference import applications as apps
from cocosnet.io import read_image, write_image

from .helpers import single_thread, tiny_model

SQUARE = (slice(16, 40), slice(16, 40))  # the stroke: rows, columns of a 48 x 64 portrait
STROKE = (200, 30, 90)


one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """The demo architecture: 64 x 64, 8 classes, maskmix, a 16 x 16 grid (stride 4)."""
    return tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def translator(model) -> Translator:
    return Translator(model)


def _label(path: Path, height: int, width: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 8, (height // 8 + 1, width // 8 + 1), dtype=np.uint8)
    write_image(path, np.ascontiguousarray(cells.repeat(8, 0).repeat(8, 1)[:height, :width]))
    return path


def _photo(path: Path, height: int, width: int, seed: int = 0) -> Path:
    write_image(path, np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8))
    return path


def _pair(tmp_path: Path, translator: Translator, ex_size=(50, 80)):
    inp = prepare_input(_label(tmp_path / "in.png", 40, 70), 8, translator.size)
    ex = prepare_exemplar(_photo(tmp_path / "ex.png", *ex_size, seed=1), translator.size)
    ex_in = prepare_input(_label(tmp_path / "exl.png", *ex_size, seed=2), 8, translator.size)
    return inp, ex, ex_in


def _identity(corr: apps.Correspondence) -> apps.Correspondence:
    """Every input cell matched to the same exemplar cell: exp(-1000) is 0 in float32."""
    eye = torch.eye(corr.query.shape[0])
    return apps.Correspondence(eye, eye, 1000.0, corr.grid, corr.size)


def test_rows_sum_to_one_and_warp_is_the_translators(tmp_path, model, translator):
    inp, ex, ex_in = _pair(tmp_path, translator)
    corr = apps.correspondence_weights(translator, inp.tensor, ex.tensor, ex_in.tensor)
    weights = corr.weights()
    assert corr.grid == (16, 16) and corr.stride == 4 and weights.shape == (256, 256)
    torch.testing.assert_close(weights.sum(-1), torch.ones(256), atol=1e-5, rtol=0)
    keep = torch.zeros(256, dtype=torch.bool)
    keep[100:120] = True
    part = corr.weights(torch.tensor([0, 5]), keep)
    assert torch.all(part[:, ~keep] == 0)
    torch.testing.assert_close(part.sum(-1), torch.ones(2), atol=1e-5, rtol=0)
    # The same correspondence as translate's (exemplar mask shown): same warped exemplar, and
    # warp_values of the cell-averaged exemplar, nearest-upsampled, is that warp too.
    _, warped = translator.translate(inp.tensor[None], ex.tensor[None], ex_in.tensor[None])
    torch.testing.assert_close(corr.warped, warped[0], atol=1e-5, rtol=0)
    pooled = corr.warp_values(F.avg_pool2d(ex.tensor[None], 4)[0])
    up = F.interpolate(pooled[None], scale_factor=4, mode="nearest")[0]
    torch.testing.assert_close(up, warped[0], atol=1e-5, rtol=0)
    # Hidden: the translator's seeded noise, as translate without exemplar inputs.
    hidden = Translator(model, hide_exemplar_label=True)
    corr_hidden = apps.correspondence_weights(hidden, inp.tensor, ex.tensor, ex_in.tensor)
    _, warped_hidden = hidden.translate(inp.tensor[None], ex.tensor[None])
    torch.testing.assert_close(corr_hidden.warped, warped_hidden[0], atol=1e-5, rtol=0)


def test_constant_fields_warp_to_themselves(tmp_path, translator):
    inp, ex, _ = _pair(tmp_path, translator)
    corr = apps.correspondence_weights(translator, inp.tensor, ex.tensor)
    values = torch.tensor([0.25, -3.0, 7.0]).view(3, 1, 1)
    torch.testing.assert_close(
        corr.warp_values(values.expand(3, 16, 16)), values.expand(3, 16, 16), atol=1e-5, rtol=0
    )
    field = corr.warp_field(values.expand(3, 64, 64))
    torch.testing.assert_close(field, values.expand(3, 64, 64), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="exemplar_photo must be 3 x 64 x 64"):
        apps.correspondence_weights(translator, inp.tensor, ex.tensor[:, :32])


def test_stroke_layer():
    clean = np.full((10, 12, 3), 100, np.uint8)
    stroked = clean.copy()
    stroked[2:4, 3:6] = (255, 0, 100)
    stroked[8, 8] = (110, 100, 100)  # below the threshold: noise, no stroke
    layer = makeup.stroke_layer(clean, stroked, threshold=24)
    assert layer.shape == (4, 10, 12) and int(layer[3].sum()) == 6
    torch.testing.assert_close(layer[:3, 2, 3], torch.tensor([1.0, 0.0, 100 / 255]))
    assert torch.all(layer[:3, 8, 8] == 0)
    with pytest.raises(ValueError, match="stroked portrait is 12x9"):
        makeup.stroke_layer(clean, stroked[:9])


def _portraits(tmp_path: Path) -> dict[str, Path]:
    """A 48 x 64 source (its stroked copy: one square) and two 48 x 64 targets with masks."""
    files = {"source": _photo(tmp_path / "src.png", 48, 64, 1)}
    source = read_image(files["source"])
    source[..., 0] //= 2  # red below 128: the stroke (red 200) differs at every pixel
    write_image(files["source"], source)
    stroked = source.copy()
    stroked[SQUARE] = STROKE
    write_image(tmp_path / "stroked.png", stroked)
    files["strokes"] = tmp_path / "stroked.png"
    files["source_mask"] = _label(tmp_path / "src_mask.png", 48, 64, 1)
    for d in ("targets", "masks"):
        (tmp_path / d).mkdir()
    for i, stem in enumerate(("t1", "t2")):
        _photo(tmp_path / "targets" / f"{stem}.png", 48, 64, 10 + i)
        _label(tmp_path / "masks" / f"{stem}.png", 48, 64, 10 + i)
    return files


def test_makeup_identity_correspondence(tmp_path, translator, monkeypatch):
    """Same-size portraits and the identity correspondence: the strokes land where they were
    drawn (blurred by at most two cells), and the target is untouched where alpha is 0."""
    files = _portraits(tmp_path)
    real = apps.correspondence_weights
    monkeypatch.setattr(makeup, "correspondence_weights", lambda *a: _identity(real(*a)))
    jobs = makeup.makeup_targets([tmp_path / "targets"], tmp_path / "masks", tmp_path / "out")
    assert [j[2].name for j in jobs] == ["t1.png", "t2.png"]
    written = makeup.makeup_files(translator, **files, targets=jobs)
    assert written == [j[2] for j in jobs]
    rows, cols = np.mgrid[:48, :64]
    near = (abs(rows - 27.5) <= 12 + 8) & (abs(cols - 27.5) <= 12 + 8)  # stroke + two cells
    for photo, _, out in jobs:
        target, result = read_image(photo), read_image(out)
        assert result.shape == target.shape == (48, 64, 3)
        assert np.array_equal(result[~near], target[~near])
        assert np.all(result[20:36, 20:36] == STROKE)  # alpha 1 well inside the square
        changed = np.any(result != target, -1)
        assert changed[SQUARE].mean() > 0.9
        ys, xs = np.nonzero(changed)
        assert abs(ys.mean() - 27.5) < 1.5 and abs(xs.mean() - 27.5) < 1.5


def test_makeup_real_correspondence_and_cli(tmp_path, model, capsys):
    files = _portraits(tmp_path)

    def makeup(targets: Path, strokes: Path = files["strokes"]) -> int:
        return main(
            ["makeup", "--checkpoint", str(model), "--source", str(files["source"])]
            + ["--source-mask", str(files["source_mask"]), "--strokes", str(strokes)]
            + ["--target-masks", str(tmp_path / "masks"), "--out", str(tmp_path / "out")]
            + ["--targets", str(targets)]
        )

    target = tmp_path / "targets" / "t2.png"
    assert makeup(target) == 0
    assert json.loads(capsys.readouterr().out) == {"made_up": 1, "out": str(tmp_path / "out")}
    result = read_image(tmp_path / "out" / "t2.png")
    assert result.shape == (48, 64, 3)
    # target * (1 - a) + a * STROKE (premultiplied warp of one colour): between the two.
    t = read_image(target).astype(int)
    assert np.all(np.minimum(t, STROKE) - 1 <= result)
    assert np.all(result <= np.maximum(t, STROKE) + 1) and np.any(result != t)
    assert makeup(target, strokes=files["source"]) == 2
    assert "no pixel differs from" in capsys.readouterr().err
    write_image(tmp_path / "masks" / "t1.png", np.zeros((40, 64), np.uint8))
    assert makeup(tmp_path / "targets") == 2
    err = capsys.readouterr().err.strip()
    assert "t1.png is 64x40 but photo" in err and "\n" not in err
    (tmp_path / "masks" / "t1.png").unlink()
    assert makeup(tmp_path / "targets") == 2
    assert "no mask for target t1.png" in capsys.readouterr().err


def test_edit_is_translate_with_the_photo_as_its_own_exemplar(tmp_path, translator):
    photo = _photo(tmp_path / "p.png", 50, 80)
    mask, edited = _label(tmp_path / "m.png", 50, 80), _label(tmp_path / "e.png", 50, 80, 3)
    out = apps.edit_image(translator, photo, mask, edited)
    assert out.shape == (50, 80, 3) and out.dtype == np.uint8
    same = translate_files(translator, edited, photo, tmp_path / "t.png", exemplar_input=mask)
    assert np.array_equal(out, same)


def test_cli_edit_and_errors(tmp_path, model, capsys):
    photo = _photo(tmp_path / "p.png", 50, 80)
    mask, edited = _label(tmp_path / "m.png", 50, 80), _label(tmp_path / "e.png", 50, 80, 3)
    cmd = ["edit", "--checkpoint", str(model), "--photo", str(photo), "--mask", str(mask)]
    assert main([*cmd, "--edited-mask", str(edited), "--out", str(tmp_path / "o.png")]) == 0
    assert read_image(tmp_path / "o.png").shape == (50, 80, 3)
    capsys.readouterr()
    small = _label(tmp_path / "small.png", 40, 80)
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(edited.read_bytes()[:60])
    for bad, reason in [(small, "small.png is 80x40 but photo"), (truncated, "trunc.png: ")]:
        assert main([*cmd, "--edited-mask", str(bad), "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("cocosnet edit: error: ") and reason in err and "\n" not in err
    assert not (tmp_path / "x.png").exists()


def test_match_points(tmp_path, translator):
    inp, ex, ex_in = _pair(tmp_path, translator, ex_size=(100, 30))  # thin: wide padding
    corr = apps.correspondence_weights(translator, inp.tensor, ex.tensor, ex_in.tensor)
    points = [(x, y) for x in (0, 13.5, 69) for y in (0, 20, 39)]
    for soft in (False, True):
        for m in matches.match_points(corr, points, inp.box, ex.box, soft=soft):
            assert 0 <= m.exemplar[0] <= 29 and 0 <= m.exemplar[1] <= 99 and 0 < m.weight <= 1
    with pytest.raises(ValueError, match=r"point \(70, 3\) is outside the 70x40 input"):
        matches.match_points(corr, [(70, 3)], inp.box, ex.box)
    # The identity between same-size images maps each point to within half a cell of itself.
    same = prepare_input(_label(tmp_path / "same.png", 50, 80), 8, 64).box
    half_cell = 2 * 80 / 64
    for m in matches.match_points(_identity(corr), points, same, same):
        assert abs(m.exemplar[0] - m.input[0]) <= half_cell + 1e-9
        assert abs(m.exemplar[1] - m.input[1]) <= half_cell + 1e-9


def test_cli_correspond(tmp_path, model, capsys):
    inp, ex = _label(tmp_path / "in.png", 40, 70), _photo(tmp_path / "ex.png", 60, 30)
    ex_mask = _label(tmp_path / "exm.png", 60, 30, 2)
    out, warped = tmp_path / "c.png", tmp_path / "w.png"
    cmd = ["correspond", "--checkpoint", str(model), "--input", str(inp), "--exemplar", str(ex)]
    args = ["--points", "1,2; 30,20;69,39", "--out", str(out), "--warped", str(warped)]
    assert main([*cmd, "--exemplar-mask", str(ex_mask), *args]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [m["input"] for m in found["matches"]] == [[1, 2], [30, 20], [69, 39]]
    for m in found["matches"]:
        assert 0 <= m["exemplar"][0] <= 29 and 0 <= m["exemplar"][1] <= 59
    assert read_image(out).shape == (60, 70 + 8 + 30, 3)
    assert read_image(warped).shape == (40, 70, 3)
    assert main([*cmd, "--soft", "--points", "3,4", "--out", str(out)]) == 0
    capsys.readouterr()
    for points, reason in [("1,2;3", "points must be 'x,y;x,y;...'"), ("99,1", "outside")]:
        assert main([*cmd, "--points", points, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert reason in err and "\n" not in err
    bad_mask = _label(tmp_path / "bad.png", 59, 30)
    assert main([*cmd, "--exemplar-mask", str(bad_mask), *args]) == 2
    assert "bad.png is 30x59 but photo" in capsys.readouterr().err
