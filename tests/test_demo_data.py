"""The embedded demo dataset: determinism, layout coverage, palettes and metadata."""

import json

import numpy as np
import pytest
from PIL import Image

from cocosnet.formats.demo_scenes import DEMO_CLASSES, DemoRecord, generate_demo, render_scene

N_TRAIN, N_VAL, SIZE = 12, 4, 64


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo(out, n_train=N_TRAIN, n_val=N_VAL, size=SIZE, seed=0)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(demo, tmp_path):
    out, records = demo
    again = generate_demo(tmp_path, n_train=N_TRAIN, n_val=N_VAL, size=SIZE, seed=0)
    assert again == records
    assert _files(tmp_path) == _files(out)
    assert not [p for p in tmp_path.rglob("*.tmp")]  # atomic writes leave no temporaries


def test_render_scene_is_order_independent():
    forward = [render_scene(i, 3, 32) for i in range(6)]
    backward = [render_scene(i, 3, 32) for i in reversed(range(6))][::-1]
    for (a_img, a_lab, a_meta), (b_img, b_lab, b_meta) in zip(forward, backward, strict=True):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_lab, b_lab)
        assert a_meta == b_meta


def test_different_seed_gives_different_images():
    for i in range(4):
        assert not np.array_equal(render_scene(i, 0, SIZE)[0], render_scene(i, 1, SIZE)[0])
    assert not np.array_equal(render_scene(0, 0, SIZE)[0], render_scene(1, 0, SIZE)[0])


def test_files_splits_and_label_range(demo):
    out, records = demo
    assert [r.id for r in records] == [f"demo_{i:05d}" for i in range(N_TRAIN + N_VAL)]
    assert [r.split for r in records] == ["train"] * N_TRAIN + ["val"] * N_VAL
    assert all(isinstance(r, DemoRecord) for r in records)
    for r in records:
        img, lab = Image.open(out / r.image), Image.open(out / r.label)
        assert (img.mode, lab.mode) == ("RGB", "L")
        assert img.size == lab.size == (SIZE, SIZE)
        assert np.asarray(lab).max() < len(DEMO_CLASSES)
    styles = json.loads((out / "styles.json").read_text())
    assert set(styles) == {r.id for r in records}
    assert sum(s["split"] == "val" for s in styles.values()) == N_VAL


def test_every_class_appears_and_layouts_vary():
    labels = [render_scene(i, 0, SIZE)[1] for i in range(40)]
    counts = np.array([[np.any(lab == c) for c in range(len(DEMO_CLASSES))] for lab in labels])
    frac = counts.mean(0)
    assert (frac >= 0.25).all(), dict(zip(DEMO_CLASSES, frac, strict=True))
    assert len({lab.tobytes() for lab in labels}) == len(labels)


def test_palettes_differ_between_images():
    means = [render_scene(i, 0, SIZE)[2]["class_mean_rgb"]["vegetation"] for i in range(30)]
    veg = np.array([m for m in means if m is not None])
    assert len(veg) >= 10
    assert veg.std(0).max() > 10.0  # colours spread by more than 10 grey levels
    assert len({tuple(np.round(v)) for v in veg}) == len(veg)


def test_styles_json_matches_pixels(demo):
    out, records = demo
    styles = json.loads((out / "styles.json").read_text())
    for r in records[:4]:
        img = np.asarray(Image.open(out / r.image)).astype(np.float64)
        lab = np.asarray(Image.open(out / r.label))
        for c, name in enumerate(DEMO_CLASSES):
            recorded = styles[r.id]["class_mean_rgb"][name]
            assert recorded == (
                None if r.class_mean_rgb[name] is None else list(r.class_mean_rgb[name])
            )
            if not np.any(lab == c):
                assert recorded is None
            else:
                np.testing.assert_allclose(recorded, img[lab == c].mean(0), atol=1e-3)


def _interior(mask):
    """Pixels whose 4 neighbours share the class, so anti-aliased edges do not count as texture."""
    inner = mask.copy()
    inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    inner[[0, -1], :] = inner[:, [0, -1]] = False
    return inner


def test_class_regions_are_textured():
    checked = {"vegetation": 0, "building": 0}
    for i in range(20):
        img, lab, _ = render_scene(i, 0, SIZE)
        for name in checked:
            m = _interior(lab == DEMO_CLASSES.index(name))
            if m.sum() >= 30:
                assert img[m].astype(float).std(0).max() > 5.0, (i, name)
                checked[name] += 1
    assert min(checked.values()) >= 3
