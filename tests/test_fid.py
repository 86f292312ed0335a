"""FID: Fréchet distance against closed forms and torch-fidelity, streaming statistics, caching,
and torch-fidelity's InceptionV3 run end to end on a random-init file in the real layout."""

import dataclasses
import io
import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch_fidelity.feature_extractor_inceptionv3 import (
    URL_INCEPTION_V3,
    FeatureExtractorInceptionV3,
)
from torch_fidelity.metric_fid import fid_statistics_to_metric

from cocosnet import weights
from cocosnet.metrics import fid
from cocosnet.metrics.fid import (
    FeatureStats,
    InceptionFeatures,
    fid_folders,
    frechet_distance,
    image_folder_stats,
)

FILENAME = "weights-inception-2015-12-05-6726825d.pth"


def random_cov(rng, d):
    a = rng.normal(size=(d, 2 * d))
    return a @ a.T / (2 * d) + 0.1 * np.eye(d)


# --- Fréchet distance -------------------------------------------------------------------------


def test_diagonal_covariances_match_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_commuting_covariances_match_closed_form():
    """Covariances with the same eigenvectors: (Q A Qᵀ Q B Qᵀ)^½ = Q (AB)^½ Qᵀ."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a, b = rng.uniform(0.1, 2, 6), rng.uniform(0.1, 2, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = ((mu1 - mu2) ** 2).sum() + (a + b - 2 * np.sqrt(a * b)).sum()
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_general_covariances_agree_with_torch_fidelity():
    """torch-fidelity computes the trace term from eigenvalues, an independent route."""
    rng = np.random.default_rng(2)
    stats = [{"mu": rng.normal(size=16), "sigma": random_cov(rng, 16)} for _ in range(2)]
    expected = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    got = frechet_distance(stats[0]["mu"], stats[0]["sigma"], stats[1]["mu"], stats[1]["sigma"])
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [48, 400])
def test_agrees_with_pytorch_fid_also_for_singular_covariances(n):
    """pytorch-fid's scipy sqrtm route; with fewer images than dimensions (the demo's 48
    against 2048) both covariances are singular."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(n)
    stats = []
    for shift in (0.0, 0.3):
        s = FeatureStats()
        s.update(np.abs(rng.normal(shift, 1.0, size=(n, 128))) @ rng.normal(size=(128, 128)))
        stats.append(s.mean_cov())
    expected = calculate_frechet_distance(*stats[0], *stats[1])
    assert frechet_distance(*stats[0], *stats[1]) == pytest.approx(expected, rel=1e-7)


def test_same_set_is_zero():
    features = np.random.default_rng(3).normal(2.0, 1.5, size=(200, 12))
    stats = FeatureStats()
    stats.update(features)
    mu, sigma = stats.mean_cov()
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9


def test_not_covariances_raise():
    """A negative 'variance' gives sqrt of a negative eigenvalue: a large imaginary part."""
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# --- streaming statistics ---------------------------------------------------------------------


def streamed(features, batch):
    stats = FeatureStats()
    for start in range(0, len(features), batch):
        stats.update(torch.from_numpy(features[start : start + batch]))
    return stats


def test_streaming_stats_match_numpy_for_any_batch_size():
    features = np.random.default_rng(4).normal(3.0, 0.5, size=(103, 16))
    reference_mu, reference_sigma = features.mean(0), np.cov(features, rowvar=False)
    for batch in (1, 7, 103):
        stats = streamed(features, batch)
        mu, sigma = stats.mean_cov()
        assert stats.count == 103 and mu.dtype == sigma.dtype == np.float64
        np.testing.assert_allclose(mu, reference_mu, rtol=0, atol=1e-10)
        np.testing.assert_allclose(sigma, reference_sigma, rtol=0, atol=1e-10)


def test_merge_save_load_round_trip_and_key_mismatch(tmp_path):
    features = np.random.default_rng(5).normal(size=(40, 5))
    whole = streamed(features, 40)
    merged = streamed(features[:15], 4)
    merged.merge(streamed(features[15:], 6))
    merged.merge(FeatureStats())  # empty: no-op
    assert merged.count == 40
    for a, b in zip(merged.mean_cov(), whole.mean_cov(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)

    path = tmp_path / "cache" / "real.npz"
    merged.save(path, key="abc")
    loaded = FeatureStats.load(path, key="abc")
    assert loaded.count == 40
    for a, b in zip(loaded.mean_cov(), merged.mean_cov(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert FeatureStats.load(path, key="other inputs") is None
    assert FeatureStats.load(tmp_path / "absent.npz", key="abc") is None
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="not saved FeatureStats"):
        FeatureStats.load(tmp_path / "junk.npz", key="abc")
    with pytest.raises(ValueError, match="at least 2"):
        streamed(features[:1], 1).mean_cov()
    with pytest.raises(ValueError, match="dims"):
        merged.update(np.zeros((2, 6)))


# --- folders, with a cheap stand-in for Inception ---------------------------------------------


class PooledColours:
    """Stand-in feature extractor: 2 x 2 average-pooled colours (12-d), counting its images."""

    weights_sha256 = "0" * 64
    images_seen = 0

    def __init__(self, weights_dir=None, device="cpu", protocol="pytorch_fid"):
        self.protocol = protocol

    def __call__(self, images):
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        type(self).images_seen += images.shape[0]
        return torch.nn.functional.adaptive_avg_pool2d(images.double(), 2).flatten(1)


def write_images(folder, n, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        size = (12, 10) if i % 5 == 3 else (8, 8)  # mixed sizes within a batch
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        suffix = ".jpg" if i == 2 else ".png"
        Image.fromarray(pixels).save(folder / f"{i:03d}{suffix}")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub.png").mkdir()
    return folder


def test_folder_stats_do_not_depend_on_batch_size(tmp_path, capsys):
    folder = write_images(tmp_path / "real", 17, seed=0)
    results = [image_folder_stats(folder, PooledColours(), batch_size=b) for b in (1, 4, 50)]
    assert {r.count for r in results} == {17}
    assert "FID features real" in capsys.readouterr().err  # long work shows progress
    for other in results[1:]:
        for a, b in zip(other.mean_cov(), results[0].mean_cov(), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="no PNG or JPEG"):
        image_folder_stats(tmp_path, PooledColours())


def test_fid_folders_same_set_is_zero_and_reference_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(fid, "InceptionFeatures", PooledColours)
    real = write_images(tmp_path / "real", 20, seed=0)
    fake = write_images(tmp_path / "fake", 15, seed=1)
    same = fid_folders(real, real, tmp_path / "w", batch_size=6)
    assert same["real_images"] == same["fake_images"] == 20
    assert abs(same["fid"]) < 1e-8
    assert same["weights_sha256"] == PooledColours.weights_sha256

    cache = tmp_path / "cache" / "fid_real.npz"
    PooledColours.images_seen = 0
    first = fid_folders(real, fake, tmp_path / "w", real_stats_cache=cache)
    assert cache.is_file() and PooledColours.images_seen == 35 and first["fid"] > 0
    second = fid_folders(real, fake, tmp_path / "w", batch_size=4, real_stats_cache=cache)
    assert PooledColours.images_seen == 35 + 15  # the real folder was not read again
    assert second["fid"] == pytest.approx(first["fid"], abs=1e-10)
    assert second["real_images"] == 20

    # Changed real images give another key: recomputed, not reused.
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(real / "000.png")
    third = fid_folders(real, fake, tmp_path / "w", real_stats_cache=cache)
    assert PooledColours.images_seen == 50 + 35 and third["fid"] != first["fid"]


# --- the registry entry and torch-fidelity's InceptionV3 --------------------------------------


def test_registry_entry_is_torch_fidelity_file(tmp_path):
    spec = weights.spec("inception_fid")
    assert spec.filename == FILENAME and spec.url == URL_INCEPTION_V3
    assert spec.sha256.startswith(spec.sha256_prefix) and spec.sha256_prefix in spec.filename
    stranger = tmp_path / FILENAME
    torch.save({"fc.weight": torch.zeros(1)}, stranger)
    with pytest.raises(weights.WeightsError, match="not the official one"):
        weights.add("inception_fid", stranger, tmp_path / "w")


def test_missing_weights_name_the_file_and_where_to_get_it(tmp_path):
    for call in (
        lambda: InceptionFeatures(tmp_path),
        lambda: fid_folders(tmp_path, tmp_path, tmp_path),
    ):
        with pytest.raises(weights.WeightsError) as err:
            call()
        msg = str(err.value)
        assert FILENAME in msg and URL_INCEPTION_V3 in msg and "weights add inception_fid" in msg


class _Unloaded(FeatureExtractorInceptionV3):
    """torch-fidelity's model keeping its fresh init (offline: gives the real keys and shapes)."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None


@pytest.fixture(scope="module")
def standin_file(tmp_path_factory):
    """A random-init state dict of torch-fidelity's InceptionV3, saved as the real file is.

    He-normal convolutions so that activations neither vanish nor explode over 90 layers.
    """
    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    model = _Unloaded("standin", ["2048"], feature_extractor_weights_path=empty)
    g = torch.Generator().manual_seed(0)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("conv.weight") or key == "fc.weight":
            fan_in = math.prod(value.shape[1:])
            value.copy_(torch.randn(value.shape, generator=g) * (2 / fan_in) ** 0.5)
    path = tmp_path_factory.mktemp("download") / FILENAME
    torch.save(state, path)
    return path


@pytest.fixture
def unpublished_digest(monkeypatch):
    """The entry without its published digest, so a stand-in file can be registered with
    ``weights.add`` (which then records and checks the stand-in's own digest)."""
    spec = dataclasses.replace(weights.spec("inception_fid"), sha256=None, sha256_prefix=None)
    monkeypatch.setitem(weights.REGISTRY, "inception_fid", spec)


def test_inception_features_end_to_end(tmp_path, standin_file, unpublished_digest):
    weights.add("inception_fid", standin_file, tmp_path)
    inception = InceptionFeatures(tmp_path)
    assert inception.weights_sha256 == weights.sha256_of(standin_file)
    assert isinstance(inception.model, FeatureExtractorInceptionV3)
    loaded = torch.load(standin_file, weights_only=True)
    assert all(torch.equal(v, loaded[k]) for k, v in inception.model.state_dict().items())

    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), np.uint8))
    features = inception(images)
    assert features.shape == (2, 2048) and features.dtype == torch.float64
    assert torch.isfinite(features).all() and (features >= 0).all() and features.std() > 0
    assert not torch.equal(features[0], features[1])
    assert torch.equal(inception(images), features)  # deterministic
    # Per image up to float32 rounding inside the network (its batch norm is in eval mode).
    torch.testing.assert_close(inception(images[1:]), features[1:], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        inception(images.float())


def _pytorch_fid_inception(state, monkeypatch):
    """pytorch-fid's own InceptionV3 (resize and normalisation on) holding ``state``: its
    download is replaced by the state, the rest of its construction is its own."""
    from pytorch_fid import inception as pf

    monkeypatch.setattr(pf, "load_state_dict_from_url", lambda *a, **k: state)
    block = pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]
    return pf.InceptionV3([block], resize_input=True, normalize_input=True).eval()


def test_each_protocol_equals_its_library(tmp_path, standin_file, unpublished_digest, monkeypatch):
    """pytorch_fid: pytorch-fid's InceptionV3 on uint8 / 255 (its ToTensor); torch_fidelity:
    torch-fidelity's forward. Same weights, same images; the two protocols differ."""
    weights.add("inception_fid", standin_file, tmp_path)
    state = torch.load(standin_file, weights_only=True)
    rng = np.random.default_rng(5)
    images = torch.from_numpy(rng.integers(0, 256, (3, 3, 48, 72), np.uint8))

    ours = InceptionFeatures(tmp_path, protocol="pytorch_fid")(images)
    with torch.no_grad():
        (theirs,) = _pytorch_fid_inception(state, monkeypatch)(images.float() / 255)
    torch.testing.assert_close(ours, theirs.flatten(1).double(), rtol=1e-5, atol=1e-6)

    fidelity = InceptionFeatures(tmp_path, protocol="torch_fidelity")
    assert torch.equal(fidelity(images), fidelity.model(images)[0].double())
    assert not torch.allclose(fidelity(images), ours, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="unknown FID protocol"):
        InceptionFeatures(tmp_path, protocol="tf")


def test_reference_statistics_are_kept_per_protocol(tmp_path, monkeypatch):
    monkeypatch.setattr(fid, "InceptionFeatures", PooledColours)
    real = write_images(tmp_path / "real", 6, seed=0)
    cache = tmp_path / "fid_real.npz"
    PooledColours.images_seen = 0
    result = fid_folders(real, real, tmp_path / "w", real_stats_cache=cache)
    assert result["fid_protocol"] == "pytorch_fid" and PooledColours.images_seen == 12
    fid_folders(real, real, tmp_path / "w", real_stats_cache=cache, protocol="torch_fidelity")
    assert PooledColours.images_seen == 24  # the other protocol's statistics were not reused


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_inception_refuses_pickled_code_and_wrong_layout(tmp_path, unpublished_digest):
    marker = tmp_path / "exploit-ran"

    class Exploit:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"fc.weight": Exploit()}))
    weights.add("inception_fid", evil, tmp_path / "w1")
    with pytest.raises(weights.WeightsError, match="not a (loadable|plain) tensor state dict"):
        InceptionFeatures(tmp_path / "w1")
    assert not marker.exists()

    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, wrong)
    weights.add("inception_fid", wrong, tmp_path / "w2")
    with pytest.raises(weights.WeightsError, match="not torch-fidelity's InceptionV3 layout"):
        InceptionFeatures(tmp_path / "w2")
