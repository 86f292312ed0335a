import numpy as np
import pytest
import torch

from cocosnet.io import write_image
from cocosnet.models.vgg import VGG19
from cocosnet.retrieval.embeddings import embed_batch, embed_images


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return VGG19("torchvision").eval()  # random init: the layout and pipeline, not the weights


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"im{i}.png")
        write_image(paths[-1], rng.integers(0, 255, (40 + i, 48, 3), np.uint8))
    return paths


def test_embeddings_are_pool5_features_in_shards_and_resume(vgg, images, tmp_path):
    ids = [p.stem for p in images]
    shards = tmp_path / "shards"
    emb = embed_images(images, ids, vgg, shards, image_size=64, batch_size=2, shard_size=2)
    assert emb.shape == (5, 512) and emb.dtype == np.float32
    assert sorted(p.name for p in shards.glob("shard_*.npy")) == [
        "shard_00000.npy",
        "shard_00001.npy",
        "shard_00002.npy",
    ]
    from cocosnet.io import read_image

    direct = embed_batch(vgg, [read_image(p) for p in images], 64, "gap")
    np.testing.assert_allclose(emb, direct, rtol=1e-4, atol=1e-5)
    # Interrupted run: one shard missing -> only it is recomputed, results identical.
    first = (shards / "shard_00000.npy").stat().st_mtime_ns
    (shards / "shard_00001.npy").unlink()
    again = embed_images(images, ids, vgg, shards, image_size=64, batch_size=2, shard_size=2)
    np.testing.assert_array_equal(again, emb)
    assert (shards / "shard_00000.npy").stat().st_mtime_ns == first


def test_flatten_pooling_and_foreign_shards_are_refused(vgg, images, tmp_path):
    ids = [p.stem for p in images]
    flat = embed_images(images[:2], ids[:2], vgg, tmp_path / "f", image_size=64, pooling="flatten")
    assert flat.shape == (2, 512 * 2 * 2)
    with pytest.raises(ValueError, match="holds embeddings of other images"):
        embed_images(images[:3], ids[:3], vgg, tmp_path / "f", image_size=64, pooling="flatten")
    with pytest.raises(ValueError, match="5 paths but 4 ids"):
        embed_images(images, ids[:4], vgg, tmp_path / "g")
