"""The data path of training and evaluation against the official loaders (data/base_dataset.py,
data/pix2pix_dataset.py of microsoft/CoCosNet): resize_and_crop views, independent pseudo-pair
crops, test views, held-out pairs and DeepFashion's same-person pairs. References are written
with PIL directly, as the official transforms are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cocosnet.config import train_config
from cocosnet.data import ade20k
from cocosnet.data.examples import PairExamples, heldout_pairs
from cocosnet.data.sample import Sample, SampleLoader, View, eval_view, train_view
from cocosnet.training.augment import Distortion
from cocosnet.training.data import TrainingExamples, same_person_views, training_examples
from cocosnet.training.exemplars import ExemplarSampler

from .helpers import demo_data, prepared_demo


def _photo(h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _label(h=24, w=32, seed=1, n=5):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n, (h // 4, w // 4))
    return coarse.repeat(4, 0).repeat(4, 1).astype(np.uint8)


def ref_official_view(rgb, label, load, crop, x, y, flip):
    """get_transform for resize_and_crop: PIL resize to load x load (bicubic photo, nearest
    label), crop at (x, y), optional mirror; ToTensor + Normalize((.5,)*3, (.5,)*3)."""
    img = Image.fromarray(rgb).resize((load, load), Image.BICUBIC).crop((x, y, x + crop, y + crop))
    lab = (
        Image.fromarray(label).resize((load, load), Image.NEAREST).crop((x, y, x + crop, y + crop))
    )
    if flip:
        img, lab = img.transpose(Image.FLIP_LEFT_RIGHT), lab.transpose(Image.FLIP_LEFT_RIGHT)
    tensor = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
    return (tensor - 0.5) / 0.5, torch.from_numpy(np.asarray(lab).astype(np.int64))


def _source(n=5):
    return SampleLoader(ade20k.ADAPTER, ".", "label", n)


@pytest.mark.parametrize("flip", [False, True])
def test_a_training_view_is_the_official_resize_crop_and_flip(flip):
    rgb, label = _photo(), _label()
    inp, img, lab = _source().view(Sample("s", rgb, label, None), View((20, 20), 3, 2, 16, flip))
    want_img, want_lab = ref_official_view(rgb, label, 20, 16, x=2, y=3, flip=flip)
    torch.testing.assert_close(img, want_img, rtol=0, atol=1e-6)
    assert torch.equal(lab, want_lab)
    assert torch.equal(inp.argmax(0), want_lab) and inp.sum(0).eq(1).all()


def test_training_views_cover_every_crop_position_and_flip_half_the_time():
    rng = np.random.default_rng(0)
    views = [train_view((24, 32), 16, 20, "resize_and_crop", True, rng) for _ in range(2000)]
    assert {v.resize for v in views} == {(20, 20)}  # squashed: the aspect ratio is not kept
    assert {v.top for v in views} == set(range(5)) and {v.left for v in views} == set(range(5))
    assert 0.45 < np.mean([v.flip for v in views]) < 0.55
    assert not any(v.flip for v in (train_view((24, 32), 16, 20, "resize_and_crop", False, rng),))
    kept = train_view((24, 32), 16, 20, "scale_shortside_and_crop", True, rng)
    assert kept.resize == (20, 26)  # the official int(load * long / short)


def test_the_test_view_squashes_to_the_network_size_without_crop_or_flip():
    rgb, label = _photo(), _label()
    v = eval_view(rgb.shape[:2], 16, "resize_and_crop")
    assert v == View((16, 16), 0, 0, 16, False)
    _, img, lab = _source().view(Sample("s", rgb, label, None), v)
    want_img, want_lab = ref_official_view(rgb, label, 16, 16, 0, 0, flip=False)
    torch.testing.assert_close(img, want_img, rtol=0, atol=1e-6)
    assert torch.equal(lab, want_lab)
    assert eval_view((24, 32), 16, "scale_shortside_and_crop") == View((16, 21), 0, 2, 16, False)


def test_same_person_views_follow_the_official_check():
    ids = [
        "MEN__Denim__id_1__01_1_front",
        "MEN__Denim__id_1__01_2_side",
        "MEN__Denim__id_1__02_1_front",
        "MEN__Denim__id_2__01_1_front",
    ]
    views = same_person_views(ids)
    assert views[ids[0]] == [ids[1]] and views[ids[1]] == [ids[0]]
    assert views[ids[2]] == [] and views[ids[3]] == []  # another outfit, another person


# --- on a prepared demo dataset ----------------------------------------------------------------


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return prepared_demo(tmp_path_factory.mktemp("data"), n_train=12, n_val=4)


def _examples(data_root, **train):
    cfg = train_config(
        {
            "preset": "demo",
            "pseudo": {"flip": False, "rotate": 0.0, "scale": 0.0, "translate": 0.0, "tps": 0.0},
            **train,
        }
    )
    loader, manifest, pairs = demo_data(data_root)
    return training_examples(loader, manifest, pairs, image_size=64, cfg=cfg)


def test_pseudo_pairs_are_the_photo_under_an_independent_crop_and_flip(data_root):
    examples = _examples(data_root, p_hard=0.0, p_top1=0.0, p_self=1.0)
    identical, checked = 0, 0
    for epoch in range(3):
        examples.set_epoch(epoch)
        for i in range(len(examples)):
            ex = examples[i]
            assert ex["is_pseudo"]
            identical += torch.equal(ex["exemplar"], ex["image"])
            checked += 1
            # The exemplar is one of the official views of the same resized photo.
            sample = examples.loader(examples.rows[i])
            views = [
                examples.loader.view(sample, View((72, 72), t, left, 64, f))[1]
                for t in range(9)
                for left in range(9)
                for f in (False, True)
            ]
            assert any(torch.equal(ex["exemplar"], v) for v in views)
            assert any(torch.equal(ex["image"], v) for v in views)
    # Identical only when both draws agree (1 in 9 * 9 * 2): never pixel-identical by design.
    assert identical <= checked // 10


def test_retrieved_exemplars_come_with_their_own_labels(data_root):
    examples = _examples(data_root, p_hard=0.0, p_top1=1.0, p_self=0.0)
    ex = examples[0]
    assert not ex["is_pseudo"]
    top1 = examples.sampler.top1(examples.rows[0]["id"])
    sample = examples.loader(examples.by_id[top1])
    views = [
        examples.loader.view(sample, View((72, 72), t, left, 64, f))
        for t in range(9)
        for left in range(9)
        for f in (False, True)
    ]
    assert any(
        torch.equal(ex["exemplar"], img) and torch.equal(ex["exemplar_label"], lab)
        for _, img, lab in views
    )


def test_examples_are_a_pure_function_of_seed_epoch_and_index(data_root):
    a, b = _examples(data_root), _examples(data_root)
    a.set_epoch(2), b.set_epoch(2)
    for i in (0, 5):
        assert all(torch.equal(a[i][k], b[i][k]) for k in a[i])
    b.set_epoch(3)
    assert not torch.equal(a[0]["image"], b[0]["image"])


def test_held_out_pairs_are_top1_test_views_never_the_query_itself(data_root):
    pairs = heldout_pairs(*demo_data(data_root), image_size=64)
    assert isinstance(pairs, PairExamples) and len(pairs) == 4
    for (query, exemplar), i in zip(pairs.pairs, range(len(pairs)), strict=True):
        assert query != exemplar
        item = pairs[i]
        sample = pairs.loader(pairs.rows[query])
        want = pairs.loader.view(sample, eval_view(sample.rgb.shape[:2], 64, "resize_and_crop"))
        assert torch.equal(item["image"], want[1]) and torch.equal(item["label"], want[2])
        assert not item["is_pseudo"]


def test_same_person_pseudo_pairs_use_another_view_of_the_person():
    class Source:
        def __call__(self, row):
            return Sample(row["id"], _photo(64, 64, seed=row["seed"]), _label(64, 64), None)

        view = SampleLoader(ade20k.ADAPTER, ".", "label", 5).view

    rows = [
        {"id": "WOMEN__Tees__id_7__01_1_front", "seed": 1},
        {"id": "WOMEN__Tees__id_7__01_2_side", "seed": 2},
    ]
    examples = TrainingExamples(
        rows,
        Source(),
        ExemplarSampler([], p_hard=0.0, p_top1=0.0, p_self=1.0),
        image_size=64,
        load_size=64,
        distortion=Distortion(flip=False),
        flip=False,
        same_person=True,
    )
    ex = examples[0]
    assert ex["is_pseudo"]
    other = Source().view(Source()(rows[1]), View((64, 64), 0, 0, 64, False))[1]
    assert torch.equal(ex["exemplar"], other)
