"""SWD (PGGAN protocol): Laplacian pyramid, descriptors, distance against naive NumPy
re-computations, invariants (identical sets, batching, seeds) and input checks."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cocosnet.io import write_image
from cocosnet.metrics.swd import (
    SWDStats,
    descriptors,
    laplacian_pyramid,
    sliced_wasserstein,
    swd,
    swd_folders,
)

SIZE = 64  # levels 64, 32, 16


def smooth_images(n, size=SIZE, seed=0):
    """Blobby RGB uint8 images: structure at every pyramid level, unlike white noise."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(n, size, size, 3)), (0, 3, 3, 0))
    return np.clip(128 + field / field.std() * 50, 0, 255).astype(np.uint8)


def add_noise(images, sigma, seed=1):
    noisy = images + np.random.default_rng(seed).normal(0, sigma, images.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def stats(images, seed=0, batch=None, **kw):
    s = SWDStats(images.shape[1], seed=seed, **kw)
    batch = batch or len(images)
    for i in range(0, len(images), batch):
        s.update(images[i : i + batch])
    return s


# ---------------------------------------------------------------- naive references


def naive_blur(x):
    """5x5 binomial filter on an H x W array, reflect-101 borders, as an explicit tap loop."""
    k = np.array([1, 4, 6, 4, 1], np.float64)
    k = np.outer(k, k) / 256
    pad = np.pad(x.astype(np.float64), 2, mode="reflect")  # numpy 'reflect' = d c b | a b c d
    h, w = x.shape
    return sum(k[i, j] * pad[i : i + h, j : j + w] for i in range(5) for j in range(5))


def naive_down(x):
    return naive_blur(x)[::2, ::2]


def naive_up(x):
    up = np.zeros((2 * x.shape[0], 2 * x.shape[1]))
    up[::2, ::2] = x
    return 4 * naive_blur(up)


def naive_standardise(desc):
    out = desc.astype(np.float64).copy()
    for c in range(3):
        block = out[:, c * 49 : (c + 1) * 49]
        out[:, c * 49 : (c + 1) * 49] = (block - block.mean()) / block.std()
    return out


def naive_swd(real_desc, fake_desc, directions, repeats, seed):
    """Directions drawn as documented; per direction: sort, mean |difference|; x1e3."""
    rng = np.random.default_rng(seed)
    per_level = []
    for a, b in zip(real_desc, fake_desc, strict=True):
        a, b = naive_standardise(a), naive_standardise(b)
        dists = []
        for _ in range(repeats):
            dirs = rng.standard_normal((147, directions))
            for j in range(directions):
                d = dirs[:, j] / np.linalg.norm(dirs[:, j])
                pa, pb = sorted(a @ d), sorted(b @ d)
                dists.append(np.mean([abs(u - v) for u, v in zip(pa, pb, strict=True)]))
        per_level.append(1e3 * np.mean(dists))
    return per_level


# ---------------------------------------------------------------- pyramid and descriptors


def test_pyramid_levels_match_naive_filter_and_reconstruct():
    images = smooth_images(2, 32) ^ np.random.default_rng(3).integers(0, 8, (2, 32, 32, 3), "u1")
    pyr = laplacian_pyramid(images, 3)
    assert [p.shape for p in pyr] == [(2, 3, 32, 32), (2, 3, 16, 16), (2, 3, 8, 8)]
    assert all(p.dtype == np.float32 for p in pyr)
    for n in range(2):
        for c in range(3):
            g0 = images[n, :, :, c].astype(np.float64)
            g1 = naive_down(g0)
            g2 = naive_down(g1)
            expected = [g0 - naive_up(g1), g1 - naive_up(g2), g2]
            for got, want in zip(pyr, expected, strict=True):
                np.testing.assert_allclose(got[n, c], want, atol=1e-3)
            # Upsample-and-add from the coarsest level back gives the image.
            rec = pyr[2][n, c].astype(np.float64)
            for band in (pyr[1], pyr[0]):
                rec = naive_up(rec) + band[n, c]
            np.testing.assert_allclose(rec, g0, atol=1e-3)


def test_descriptors_are_channel_major_patches_in_reference_order():
    rng = np.random.default_rng(0)
    level = rng.normal(size=(2, 3, 16, 24)).astype(np.float32)
    desc = descriptors(level, 5, np.random.default_rng(7))
    assert desc.shape == (10, 147) and desc.dtype == np.float32
    draw = np.random.default_rng(7)
    x = draw.integers(0, 24 - 6, 10)  # corners in [0, size - 7], x (column) first
    y = draw.integers(0, 16 - 6, 10)
    for k in range(10):
        patch = level[k // 5, :, y[k] : y[k] + 7, x[k] : x[k] + 7]
        # The reference indexes [nhood, chan, x, y]: each channel's patch transposed.
        np.testing.assert_array_equal(desc[k], patch.transpose(0, 2, 1).ravel())


# ---------------------------------------------------------------- distance


def test_identical_sets_give_zero():
    images = smooth_images(4)
    result = swd(stats(images), stats(images))
    assert set(result) == {"swd_64", "swd_32", "swd_16", "swd_avg"}
    assert all(v == 0.0 for v in result.values())


def test_swd_grows_with_noise_on_the_finest_level():
    real = smooth_images(8)
    finest = [
        swd(stats(real, 0), stats(add_noise(real, sigma), 1), directions=32)["swd_64"]
        for sigma in (0, 5, 15, 40)
    ]
    assert np.all(np.diff(finest) > 0), finest


def test_matches_naive_numpy_computation():
    real, fake = stats(smooth_images(4), seed=0), stats(smooth_images(4, seed=5), seed=1)
    result = swd(real, fake, directions=32, repeats=2, seed=3)
    expected = naive_swd(real.descriptors(), fake.descriptors(), 32, 2, seed=3)
    got = [result["swd_64"], result["swd_32"], result["swd_16"]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert result["swd_avg"] == pytest.approx(np.mean(expected), rel=1e-6)


def test_sliced_wasserstein_of_shifted_set_in_one_dimension():
    # For 1-D data every unit direction is +-1: the distance is exactly the shift.
    a = np.random.default_rng(0).normal(size=(100, 1))
    assert sliced_wasserstein(a, a + 0.5, 8, 2, np.random.default_rng(0)) == pytest.approx(0.5)


def test_batch_size_does_not_change_result():
    real, fake = smooth_images(5), add_noise(smooth_images(5), 10)
    whole = (stats(real, 0), stats(fake, 1))
    single = (stats(real, 0, batch=1), stats(fake, 1, batch=2))
    for a, b in zip(whole[0].descriptors(), single[0].descriptors(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert swd(*whole) == swd(*single)


def test_seed_determinism():
    real, fake = smooth_images(3), add_noise(smooth_images(3), 10)

    def run(real_seed, seed):
        return swd(stats(real, real_seed), stats(fake, 1), directions=16, seed=seed)

    first = run(0, 4)
    assert run(0, 4) == first
    assert run(0, 5) != first  # other directions
    assert run(2, 4) != first  # other neighbourhoods


# ---------------------------------------------------------------- input checks


def test_unequal_counts_raise():
    with pytest.raises(ValueError, match="equal image counts.*3.*2"):
        swd(stats(smooth_images(3)), stats(smooth_images(2)))


def test_empty_sets_raise():
    with pytest.raises(ValueError, match="at least one image"):
        swd(SWDStats(SIZE), SWDStats(SIZE))


def test_wrong_inputs_raise_clear_errors():
    s = SWDStats(SIZE)
    with pytest.raises(ValueError, match="uint8"):
        s.update(smooth_images(1).astype(np.float32))
    with pytest.raises(ValueError, match=r"N x 64 x 64 x 3.*\(1, 32, 32, 3\)"):
        s.update(smooth_images(1, 32))
    with pytest.raises(ValueError, match="N x 64 x 64 x 3"):
        s.update(smooth_images(1)[..., 0])
    with pytest.raises(TypeError, match="numpy array"):
        s.update(smooth_images(1).tolist())
    with pytest.raises(ValueError, match="power of two"):
        SWDStats(48)
    with pytest.raises(ValueError, match="power of two >= 16"):
        SWDStats(8)
    with pytest.raises(ValueError, match="levels"):
        swd(stats(smooth_images(1)), stats(smooth_images(1, 32)))
    assert s.num_images == 0


# ---------------------------------------------------------------- folders


def write_folder(path, images, suffix=".png"):
    path.mkdir()
    for i, img in enumerate(images):
        write_image(path / f"{i:03d}{suffix}", img)
    return path


def test_swd_folders(tmp_path, capsys):
    real = smooth_images(6)
    real_dir = write_folder(tmp_path / "real", real)
    same_dir = write_folder(tmp_path / "same", real)
    noisy_dir = write_folder(tmp_path / "noisy", add_noise(real, 30))
    (tmp_path / "noisy" / "notes.txt").write_text("ignored")

    same = swd_folders(real_dir, same_dir, seed=0)
    progress = capsys.readouterr().err  # long work shows progress
    assert "SWD real" in progress and "SWD fake" in progress
    noisy = swd_folders(real_dir, noisy_dir, seed=0)
    assert set(noisy) == {"swd_64", "swd_32", "swd_16", "swd_avg"}
    # The two sets sample their neighbourhoods independently, so identical folders are not
    # exactly 0, but far below a noisy copy.
    assert 0 < same["swd_64"] < noisy["swd_64"]
    assert swd_folders(real_dir, noisy_dir, seed=0, batch_size=4, image_size=SIZE) == noisy

    write_folder(tmp_path / "few", real[:5])
    with pytest.raises(ValueError, match="equal image counts"):
        swd_folders(real_dir, tmp_path / "few")
    write_folder(tmp_path / "small", smooth_images(6, 32), suffix=".jpg")
    with pytest.raises(ValueError, match=r"000\.jpg: expected 64x64, got 32x32"):
        swd_folders(real_dir, tmp_path / "small")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no PNG/JPG"):
        swd_folders(real_dir, tmp_path / "empty")
