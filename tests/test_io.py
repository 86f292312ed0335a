"""Validated image I/O: every bad input below is generated in tmp_path, never checked in."""

from __future__ import annotations

import hashlib
import pickle
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFile

from cocosnet.files import atomic_path, file_sha256, write_text_atomic
from cocosnet.io import ImageProblem, read_image, read_label, write_image

# ---------------------------------------------------------------------------- corpus helpers


def _gradient(h: int = 32, w: int = 48) -> np.ndarray:
    """A smooth RGB uint8 test image (JPEG-friendly)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)], -1)


def _rgb() -> np.ndarray:
    return _gradient().astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int, bit_depth: int = 1, color_type: int = 0) -> bytes:
    """PNG signature plus a valid IHDR chunk declaring the given size."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)


def _write_bomb_png(path: Path, width: int, height: int) -> Path:
    """A complete, valid 1-bit PNG of ``width`` x ``height`` zeros: tiny file, huge image."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    path.write_bytes(_png_header(width, height) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def _save(path: Path, img: Image.Image, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _info(path: Path) -> SimpleNamespace:
    """Format, mode and frame count of an image file, read with Pillow directly."""
    with Image.open(path) as img:
        return SimpleNamespace(
            format=img.format, mode=img.mode, n_frames=getattr(img, "n_frames", 1)
        )


def _problem(fn, path: Path, **kwargs) -> ImageProblem:
    with pytest.raises(ImageProblem) as info:
        fn(path, **kwargs)
    err = info.value
    assert "\n" not in str(err) and "\r" not in str(err)
    assert str(err) == f"{path}: {err.reason}".replace("\n", "\\n")
    assert err.path == Path(path)
    return err


@pytest.fixture(autouse=True)
def _strict_truncation(monkeypatch):
    """Truncated data must be reported even if some other module relaxed Pillow globally."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)


# ---------------------------------------------------------------------------- round trips


def test_png_round_trip_exact(tmp_path):
    arr = _rgb()
    write_image(tmp_path / "a.png", arr)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("name", ["a.jpg", "a.JPEG"])
def test_jpeg_round_trip_close(tmp_path, name):
    arr = _rgb()
    write_image(tmp_path / name, arr)
    assert _info(tmp_path / name).format == "JPEG"
    out = read_image(tmp_path / name)
    assert out.dtype == np.uint8 and out.shape == arr.shape
    assert np.abs(out.astype(int) - arr).mean() < 3


def test_explicit_format_overrides_suffix(tmp_path):
    write_image(tmp_path / "a.bin", _rgb(), format="png")
    assert _info(tmp_path / "a.bin").format == "PNG"
    with pytest.raises(ValueError, match="suffix"):
        write_image(tmp_path / "a.bin", _rgb())
    with pytest.raises(ValueError, match="format"):
        write_image(tmp_path / "a.png", _rgb(), format="gif")


def test_label_round_trip(tmp_path):
    lab = (np.arange(20 * 30).reshape(20, 30) % 151).astype(np.uint8)
    write_image(tmp_path / "l.png", lab)
    out = read_label(tmp_path / "l.png", num_classes=151)
    assert out.dtype == np.uint8 and out.ndim == 2
    np.testing.assert_array_equal(out, lab)


# ---------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    assert _problem(read_image, tmp_path / "nope.png").reason == "file not found"


def test_directory_is_refused(tmp_path):
    (tmp_path / "d.png").mkdir()
    assert _problem(read_image, tmp_path / "d.png").reason == "not a regular file"


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.png").touch()
    assert _problem(read_image, tmp_path / "z.png").reason == "zero-byte file"
    assert _problem(read_label, tmp_path / "z.png").reason == "zero-byte file"


def test_text_file_named_png(tmp_path):
    (tmp_path / "t.png").write_text("this is not an image\n" * 10)
    err = _problem(read_image, tmp_path / "t.png")
    assert err.reason == "not an image (cannot identify format)"


def test_truncated_jpeg(tmp_path):
    path = _save(tmp_path / "t.jpg", Image.fromarray(_gradient(256, 256).astype(np.uint8)))
    err = _problem(read_image, _truncate(path))
    assert err.reason == "truncated or corrupt image data"


def test_truncated_png(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    path = _save(tmp_path / "t.png", Image.fromarray(noise))
    err = _problem(read_image, _truncate(path))
    assert err.reason == "truncated or corrupt image data"


def test_too_small(tmp_path):
    path = _save(tmp_path / "one.png", Image.new("RGB", (1, 1)))
    assert _problem(read_image, path).reason == "too small: 1x1 (minimum 8x8)"
    path = _save(tmp_path / "thin.png", Image.new("RGB", (100, 7)))
    assert "too small: 100x7" in _problem(read_image, path).reason
    assert read_image(path, min_side=1).shape == (7, 100, 3)


def test_unsupported_modes(tmp_path):
    path = _save(tmp_path / "bits.png", Image.new("1", (16, 16)))
    assert _problem(read_image, path).reason == "unsupported mode '1'"
    path = _save(tmp_path / "float.tiff", Image.new("F", (16, 16)))
    assert _problem(read_image, path).reason == "unsupported mode 'F'"


def test_message_single_line_with_odd_path(tmp_path):
    path = tmp_path / "bad\nname.png"
    path.touch()
    err = _problem(read_image, path)
    assert "\n" not in str(err) and "bad\\nname.png" in str(err)
    assert str(err).endswith(": zero-byte file")


def test_image_problem_pickles():
    err = pickle.loads(pickle.dumps(ImageProblem("x/y.png", "zero-byte file")))
    assert isinstance(err, ValueError)
    assert (err.path, err.reason, str(err)) == (Path("x/y.png"), "zero-byte file", str(err))
    assert str(err) == f"{Path('x/y.png')}: zero-byte file"


# ---------------------------------------------------------------------------- decompression bombs


@pytest.fixture
def no_decode(monkeypatch):
    """Fail the test if any pixel data is decoded."""

    def forbidden(self):
        raise AssertionError("image data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden)


def test_bomb_refused_before_decoding(tmp_path, no_decode):
    path = _write_bomb_png(tmp_path / "bomb.png", 20_000, 20_000)
    assert path.stat().st_size < 200_000
    err = _problem(read_image, path)  # `no_decode` fails the test if pixels were decoded
    assert err.reason.startswith("decompression bomb: ")
    assert "400000000 pixels exceeds the limit of 89478485" in err.reason
    assert _problem(read_label, path).reason.startswith("decompression bomb: ")


def test_small_max_pixels_refuses_before_decoding(tmp_path, monkeypatch):
    path = _save(tmp_path / "a.png", Image.fromarray(_rgb()))
    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
        err = _problem(read_image, path, max_pixels=1000)
    assert err.reason == "decompression bomb: 48x32 pixels exceeds the limit of 1000"
    assert read_image(path, max_pixels=48 * 32).shape == (32, 48, 3)


@pytest.mark.parametrize("size", [(9500, 9500), (40_000, 40_000)])
def test_default_limit_refuses_huge_header(tmp_path, no_decode, size):
    # A valid IHDR declaring > 89.5 Mpx followed by a truncated IDAT: costs nothing to build.
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(*size, bit_depth=8, color_type=2) + b"\x00\x00\x10\x00IDAT\x78")
    w, h = size
    err = _problem(read_image, path)
    assert err.reason.startswith("decompression bomb: ")
    if w * h <= 2 * Image.MAX_IMAGE_PIXELS:  # below Pillow's hard error: our own check
        assert err.reason == f"decompression bomb: {w}x{h} pixels exceeds the limit of 89478485"
    else:  # Pillow refuses while parsing the header
        assert err.reason == f"decompression bomb: {w * h} pixels exceeds the limit of 89478485"


def test_pillow_global_limit_untouched(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    _write_bomb_png(tmp_path / "b.png", 10_000, 10_000)
    with pytest.raises(ImageProblem):
        read_image(tmp_path / "b.png")
    assert before == Image.MAX_IMAGE_PIXELS


# ---------------------------------------------------------------------------- mode conversion


def test_grayscale(tmp_path):
    gray = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
    out = read_image(_save(tmp_path / "g.png", Image.fromarray(gray)))
    assert out.shape == (16, 16, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_cmyk_jpeg(tmp_path):
    path = _save(tmp_path / "c.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)), quality=95)
    assert _info(path).mode == "CMYK"
    out = read_image(path)
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), (255, 0, 0), atol=6)


def test_sixteen_bit_grayscale(tmp_path):
    vals = np.array([[0, 255, 256, 257], [32768, 65280, 65534, 65535]], dtype=np.uint16)
    arr16 = np.tile(vals, (4, 2))  # 8x8
    path = _save(tmp_path / "g16.png", Image.fromarray(arr16))
    assert _info(path).mode.startswith("I")
    out = read_image(path)
    expect = np.tile(np.array([[0, 0, 1, 1], [128, 255, 255, 255]], dtype=np.uint8), (4, 2))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], expect)
    assert out[1, 3, 0] == 255 and out[0, 2, 0] == 1  # 65535 -> 255, 256 -> 1


def test_palette_expands(tmp_path):
    img = Image.new("P", (8, 8))
    img.putpalette([255, 0, 0, 0, 128, 0, 10, 20, 30] + [0] * (256 * 3 - 9))
    idx = np.array([[0, 1, 2, 1] * 2] * 8, dtype=np.uint8)
    img.putdata(idx.ravel().tolist())
    out = read_image(_save(tmp_path / "p.png", img))
    colours = np.array([(255, 0, 0), (0, 128, 0), (10, 20, 30)], dtype=np.uint8)
    np.testing.assert_array_equal(out, colours[idx])


def test_palette_with_transparency_over_white(tmp_path):
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 255, 0, 128, 0] + [0] * (256 * 3 - 6))
    img.putpixel((0, 0), 0)
    out = read_image(_save(tmp_path / "pt.png", img, transparency=0))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[1, 1]) == (0, 128, 0)


def test_rgba_composited_over_white(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 10, 20)
    rgba[..., 3] = 255
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black
    rgba[0, 1] = (255, 0, 0, 128)  # half-transparent red
    out = read_image(_save(tmp_path / "a.png", Image.fromarray(rgba)))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert np.abs(out[0, 1].astype(int) - (255, 127, 127)).max() <= 1
    assert tuple(out[4, 4]) == (200, 10, 20)


def test_la_composited_over_white(tmp_path):
    la = np.zeros((8, 8, 2), dtype=np.uint8)
    la[..., 0] = 50
    la[..., 1] = 255
    la[2, 2, 1] = 0
    out = read_image(_save(tmp_path / "la.png", Image.fromarray(la, "LA")))
    assert tuple(out[2, 2]) == (255, 255, 255) and tuple(out[0, 0]) == (50, 50, 50)


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[0, 0] = (255, 255, 255)  # marker at top-left of the stored image
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = _save(tmp_path / "o.png", Image.fromarray(arr), exif=exif)
    out = read_image(path)
    assert out.shape == (20, 10, 3)
    assert tuple(out[0, -1]) == (255, 255, 255)  # top-left went to top-right


def test_multi_frame_uses_first(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert _info(path).n_frames == 2
    out = read_image(path)
    assert tuple(out[8, 8]) == (255, 0, 0)


# ---------------------------------------------------------------------------- labels


def test_label_l_and_p(tmp_path):
    ids = (np.arange(64).reshape(8, 8) % 5).astype(np.uint8)
    out = read_label(_save(tmp_path / "l.png", Image.fromarray(ids)))
    np.testing.assert_array_equal(out, ids)
    p = Image.fromarray(ids).convert("P")
    p.putpalette(list(range(256)) * 3)
    p.putdata(ids.ravel().tolist())
    out = read_label(_save(tmp_path / "p.png", p), num_classes=5)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, ids)  # palette indices, not colours


def test_label_sixteen_bit(tmp_path):
    ids = np.array([[0, 1, 300, 2]] * 4, dtype=np.uint16)
    out = read_label(_save(tmp_path / "l16.png", Image.fromarray(ids)))
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, ids.astype(np.int32))
    small = read_label(_save(tmp_path / "s16.png", Image.fromarray(ids % 200)))
    assert small.dtype == np.uint8


def test_label_rgb_refused(tmp_path):
    path = _save(tmp_path / "rgb.png", Image.fromarray(_rgb()))
    assert _problem(read_label, path).reason == "label map must be single-channel (got mode RGB)"
    path = _save(tmp_path / "rgba.png", Image.new("RGBA", (8, 8)))
    assert "got mode RGBA" in _problem(read_label, path).reason


def test_label_out_of_range(tmp_path):
    ids = np.zeros((8, 8), dtype=np.uint8)
    ids[3, 3] = 200
    path = _save(tmp_path / "l.png", Image.fromarray(ids))
    err = _problem(read_label, path, num_classes=151)
    assert err.reason == "class id 200 out of range [0, 151)"
    assert read_label(path, num_classes=201)[3, 3] == 200


def test_label_bad_files(tmp_path):
    (tmp_path / "t.png").write_text("nope")
    assert "cannot identify" in _problem(read_label, tmp_path / "t.png").reason
    path = _save(tmp_path / "l.png", Image.fromarray(np.zeros((64, 64), np.uint8)))
    assert "decompression bomb" in _problem(read_label, path, max_pixels=100).reason


# ---------------------------------------------------------------------------- writing


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8, 3), dtype=np.float32),
        np.zeros((8, 8, 4), dtype=np.uint8),
        np.zeros((8, 8, 3, 1), dtype=np.uint8),
        np.zeros((0, 8, 3), dtype=np.uint8),
        np.zeros((8, 8), dtype=bool),
        [[0, 1], [2, 3]],
    ],
)
def test_write_refuses_bad_arrays(tmp_path, bad):
    target = tmp_path / "x.png"
    target.write_bytes(b"previous")
    with pytest.raises(ValueError):
        write_image(target, bad)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    write_image(target, _rgb())
    before = target.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_image(target, np.zeros((8, 8, 3), dtype=np.uint8))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no .tmp left behind


def test_write_creates_parents_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "img.jpg"
    write_image(target, _rgb(), quality=80)
    assert [p.name for p in target.parent.iterdir()] == ["img.jpg"]
    with pytest.raises(ValueError, match="quality"):
        write_image(target, _rgb(), quality=0)


# ---------------------------------------------------------------------------- misc


def test_file_sha256(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "f.bin").write_bytes(data)
    assert file_sha256(tmp_path / "f.bin") == hashlib.sha256(data).hexdigest()


def test_text_helpers_unchanged(tmp_path):
    write_text_atomic(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    with pytest.raises(KeyError), atomic_path(tmp_path / "t.txt") as tmp:
        assert tmp.name.endswith(".tmp")
        tmp.write_text("half")
        raise KeyError("boom")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]
