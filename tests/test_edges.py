"""Edge extraction: Canny backends, the CelebA-HQ 15-channel encoding and the edges stage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cocosnet.config import EdgesConfig
from cocosnet.data.manifest import read_manifest
from cocosnet.preprocess.edges import (
    INNER_PARTS,
    canny,
    celebahq_edge_encoding,
    edge_maps_for_dataset,
)
from stages.edges import main as edges_stage
from stages.prepare import main as prepare_stage

BACKENDS = ("skimage", "opencv")


def square(size: int = 32, lo: int = 8, hi: int = 24, value: int = 200) -> np.ndarray:
    img = np.zeros((size, size), np.uint8)
    img[lo:hi, lo:hi] = value
    return img


@pytest.mark.parametrize("backend", BACKENDS)
def test_canny_finds_the_border_of_a_square(backend):
    edges = canny(square(), EdgesConfig(backend=backend))
    assert edges.dtype == np.uint8 and edges.shape == (32, 32)
    assert set(np.unique(edges)) == {0, 1}
    ys, xs = np.nonzero(edges)
    # Every edge pixel lies within 2 px of the square's outline (between pixels 7|8 and 23|24).
    dist = np.minimum(
        np.minimum(np.abs(ys - 7.5), np.abs(ys - 23.5)),
        np.minimum(np.abs(xs - 7.5), np.abs(xs - 23.5)),
    )
    assert dist.max() <= 2
    assert ((ys >= 5) & (ys <= 26) & (xs >= 5) & (xs <= 26)).all()
    # Each side of the square is traced along its straight middle part.
    mid = slice(11, 21)
    assert edges[6:10, mid].any(axis=0).all() and edges[22:26, mid].any(axis=0).all()
    assert edges[mid, 6:10].any(axis=1).all() and edges[mid, 22:26].any(axis=1).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_canny_finds_nothing_in_a_flat_image(backend):
    for value in (0, 128, 255):
        flat = np.full((24, 20), value, np.uint8)
        assert not canny(flat, EdgesConfig(backend=backend)).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_thresholds_change_the_result(backend):
    noise = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    default = canny(noise, EdgesConfig(backend=backend)).sum()
    low = canny(noise, EdgesConfig(backend=backend, low_threshold=1, high_threshold=2)).sum()
    high = EdgesConfig(backend=backend, low_threshold=5000, high_threshold=6000)
    assert low > default > 0
    assert canny(noise, high).sum() == 0
    assert canny(square(), high).sum() == 0


def test_a_lone_threshold_above_the_default_other_is_refused():
    with pytest.raises(ValueError, match="exceeds high threshold"):
        canny(square(), EdgesConfig(backend="skimage", low_threshold=100))


@pytest.mark.parametrize("backend", BACKENDS)
def test_rgb_input_uses_pillow_luma(backend):
    rgb = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    cfg = EdgesConfig(backend=backend)
    np.testing.assert_array_equal(canny(rgb, cfg), canny(gray, cfg))


# --- CelebA-HQ edge encoding -------------------------------------------------------------------


def four_neighbour_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another value (edge-padded, so the image border is not one)."""
    p = np.pad(mask.astype(np.int32), 1, mode="edge")
    c = p[1:-1, 1:-1]
    return (c != p[:-2, 1:-1]) | (c != p[2:, 1:-1]) | (c != p[1:-1, :-2]) | (c != p[1:-1, 2:])


def brute_l1_distance(edge: np.ndarray) -> np.ndarray:
    ey, ex = np.nonzero(edge)
    yy, xx = np.mgrid[: edge.shape[0], : edge.shape[1]]
    d = np.abs(yy[..., None] - ey) + np.abs(xx[..., None] - ex)
    return d.min(axis=-1)


@pytest.fixture
def face():
    """A 32x32 synthetic parsing: skin disc with two eyes, hair over the top, and a photo of
    4x4 checker blocks (Canny edges everywhere)."""
    yy, xx = np.mgrid[:32, :32]
    skin = np.where((yy - 18) ** 2 + (xx - 16) ** 2 <= 10**2, 255, 0).astype(np.uint8)
    l_eye = np.zeros((32, 32), np.uint8)
    l_eye[14:18, 10:14] = 255
    r_eye = np.zeros((32, 32), np.uint8)
    r_eye[14:18, 19:23] = 255
    hair = np.where(yy < 13, 255, 0).astype(np.uint8)  # overlaps the top of the skin disc
    photo = np.where(((yy // 4) + (xx // 4)) % 2, 220, 30).astype(np.uint8)
    parts = {"skin": skin, "l_eye": l_eye, "r_eye": r_eye, "hair": hair, "mouth": None}
    return photo, parts


def test_celebahq_encoding_layout_and_boundaries(face):
    photo, parts = face
    out = celebahq_edge_encoding(photo, parts, EdgesConfig())
    assert out.shape == (32, 32, 15) and out.dtype == np.uint8
    union = np.zeros((32, 32), bool)
    for mask in parts.values():
        if mask is not None:
            union |= four_neighbour_boundary(mask)
    np.testing.assert_array_equal(out[:, :, 14], union.astype(np.uint8) * 255)
    assert set(np.unique(out[:, :, 0])) <= {0, 255}
    assert (out[:, :, 0][out[:, :, 14] == 255] == 255).all()  # channel 0 contains channel 14


def test_celebahq_distance_channels(face):
    photo, parts = face
    out = celebahq_edge_encoding(photo, parts, EdgesConfig())
    for name in ("skin", "l_eye", "hair"):
        channel = out[:, :, 1 + INNER_PARTS.index(name)]
        edge = four_neighbour_boundary(parts[name])
        assert (channel[edge] == 0).all()
        expected = np.clip(brute_l1_distance(edge) / 3, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(channel, expected)
    # A few pixels by hand: l_eye is rows 14..17, cols 10..13; its outer boundary ring includes
    # column 9 and column 14, so (16, 9) is on it, (16, 6) is 3 steps away, (16, 3) 6 steps.
    l_eye = out[:, :, 1 + INNER_PARTS.index("l_eye")]
    assert l_eye[16, 9] == 0 and l_eye[16, 7] == 0 and l_eye[16, 6] == 1 and l_eye[16, 3] == 2
    assert l_eye[0, 0] == 23 // 3  # nearest boundary pixels (13, 10) and (14, 9): 23 L1 steps


def test_celebahq_missing_parts_give_constant_max_channels(face):
    photo, parts = face
    out = celebahq_edge_encoding(photo, parts, EdgesConfig())
    for name in INNER_PARTS:
        channel = out[:, :, 1 + INNER_PARTS.index(name)]
        if parts.get(name) is None:  # absent keys and explicit None alike
            assert (channel == 255).all(), name
        else:
            assert channel.min() == 0, name


def test_celebahq_canny_suppressed_inside_face_parts_only(face):
    photo, parts = face
    cfg = EdgesConfig()
    out = celebahq_edge_encoding(photo, parts, cfg)
    photo_edges = canny(photo, cfg).astype(bool)
    face_parts = np.zeros((32, 32), bool)
    for name in ("skin", "l_eye", "r_eye"):
        face_parts |= parts[name] == 255
    suppressed = face_parts & ~(parts["hair"] == 255)  # hair comes last and wins
    boundaries = out[:, :, 14] == 255
    ch0 = out[:, :, 0] == 255
    # the test is only meaningful if Canny fires in every kind of region
    assert (photo_edges & suppressed & ~boundaries).any()
    assert (photo_edges & (parts["hair"] == 255) & face_parts & ~boundaries).any()
    assert (photo_edges & ~face_parts & ~boundaries).any()
    assert not ch0[photo_edges & suppressed & ~boundaries].any()
    assert ch0[photo_edges & ~suppressed].all()
    np.testing.assert_array_equal(ch0, boundaries | (photo_edges & ~suppressed))


def test_celebahq_refuses_unknown_parts_and_bad_shapes(face):
    photo, parts = face
    with pytest.raises(ValueError, match="unknown facial part"):
        celebahq_edge_encoding(photo, {"beard": parts["skin"]}, EdgesConfig())
    with pytest.raises(ValueError, match="mask shape"):
        celebahq_edge_encoding(photo, {"skin": parts["skin"][:16]}, EdgesConfig())


# --- the edges stage ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_params(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edges")
    params = tmp / "params.yaml"
    params.write_text(
        f"data:\n  root: {tmp / 'data'}\n  demo: {{n_train: 6, n_val: 2, size: 32, seed: 3}}\n"
        "preprocess:\n  edges: {backend: skimage, sigma: 1.0}\n"
    )
    prepare_stage("demo", str(params))
    return params, tmp / "data"


def test_edge_maps_one_png_per_row_same_for_one_and_two_workers(demo_params, tmp_path):
    _, root = demo_params
    dataset = root / "demo"
    rows = read_manifest(dataset / "manifest.parquet", root=dataset)
    cfg = EdgesConfig()
    one, two = tmp_path / "one", tmp_path / "two"
    assert edge_maps_for_dataset(dataset, one, cfg, workers=1) == len(rows)
    assert edge_maps_for_dataset(dataset, two, cfg, workers=2) == len(rows)
    assert sorted(p.name for p in one.iterdir()) == sorted(f"{r['id']}.png" for r in rows)
    for row in rows:
        a = (one / f"{row['id']}.png").read_bytes()
        assert a == (two / f"{row['id']}.png").read_bytes()
        with Image.open(one / f"{row['id']}.png") as img:
            assert img.mode == "L" and img.size == (row["width"], row["height"])
            values = set(np.unique(np.asarray(img)))
        assert values <= {0, 255} and 255 in values


def test_edge_maps_remove_stale_files_and_refuse_overlapping_dirs(demo_params, tmp_path):
    _, root = demo_params
    dataset = root / "demo"
    out = tmp_path / "edges"
    out.mkdir()
    (out / "gone.png").write_bytes(b"old")
    (out / "notes.txt").write_text("kept")
    n = edge_maps_for_dataset(dataset, out, EdgesConfig(backend="opencv"))
    assert not (out / "gone.png").exists() and (out / "notes.txt").exists()
    assert len(list(out.glob("*.png"))) == n
    with pytest.raises(ValueError, match="directory of their own"):
        edge_maps_for_dataset(dataset, dataset / "edges", EdgesConfig())
    with pytest.raises(ValueError, match="directory of their own"):
        edge_maps_for_dataset(dataset, root, EdgesConfig())


def test_edge_maps_fail_on_an_unreadable_image(demo_params, tmp_path):
    import shutil

    from cocosnet.io import ImageProblem

    _, root = demo_params
    copy = tmp_path / "demo"
    shutil.copytree(root / "demo", copy)
    row = read_manifest(copy / "manifest.parquet", root=copy)[0]
    (copy / row["image"]).write_bytes(b"not a png")
    with pytest.raises(ImageProblem):
        edge_maps_for_dataset(copy, tmp_path / "out", EdgesConfig())


def test_edges_stage_writes_the_sibling_dir_and_a_summary(demo_params, capsys):
    params, root = demo_params
    edges_stage("demo", str(params))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    out = root / "demo_edges"
    assert summary == {"dataset": "demo", "edge_maps": 8, "backend": "skimage", "out": str(out)}
    assert len(list(out.glob("*.png"))) == 8
    with pytest.raises(SystemExit, match="run prepare@other first"):
        edges_stage("other", str(params))
