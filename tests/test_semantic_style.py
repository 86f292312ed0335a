"""Tests for semantic consistency and style relevance (hand-computed cases, invariants, VGG)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cocosnet.metrics.semantic import (
    SemanticConsistency,
    interpolation_matrix,
    masked_means,
    semantic_consistency_from_features,
)
from cocosnet.metrics.style import StyleRelevance, style_relevance_from_features
from cocosnet.models.vgg import VGG19


def _pixels(*rows: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    """1 x C x H x W float64 features from rows of per-pixel channel vectors."""
    return torch.tensor(rows, dtype=torch.float64).permute(2, 0, 1)[None]


def _label(*rows: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)[None]


def _pyramid(images: torch.Tensor, layers) -> dict[str, torch.Tensor]:
    """Stand-in feature extractor: the image itself, then 2x and 4x average-pooled, per layer."""
    return {layer: F.avg_pool2d(images, 2**i) if i else images for i, layer in enumerate(layers)}


def _as_features(images: torch.Tensor, layers) -> dict[str, torch.Tensor]:
    """Stand-in feature extractor that returns the pixels themselves for every layer."""
    return {layer: images for layer in layers}


# Semantic consistency hand case: label [[0, 0], [0, 1]], two channels per pixel.
FAKE = _pixels(((1, 0), (0, 1)), ((1, 1), (3, 4)))
REAL = _pixels(((1, 0), (1, 0)), ((1, 0), (0, 1)))
LABEL = _label((0, 0), (0, 1))
# class 0: cos((2/3, 2/3), (1, 0)) = 1/sqrt2 over 3/4 of the pixels; class 1: cos((3, 4), (0, 1))
# = 0.8 over 1/4.
SEMANTIC_EXPECTED = 0.75 / math.sqrt(2) + 0.25 * 0.8


def test_masked_means_by_hand():
    means, counts = masked_means(FAKE, LABEL, num_classes=3)
    assert means.dtype == torch.float64 and means.shape == (1, 3, 2)
    assert counts.tolist() == [[3, 1, 0]]
    torch.testing.assert_close(means[0], torch.tensor([[2 / 3, 2 / 3], [3, 4], [0, 0]]).double())


@pytest.mark.parametrize(
    ("upsample", "expected"), [("bilinear", [0.5, 3.5]), ("nearest", [0.0, 4.0])]
)
def test_masked_means_upsamples_features_to_the_label(upsample, expected):
    # 1 x 2 features [0, 4] -> width 4: bilinear [0, 1, 3, 4], nearest [0, 0, 4, 4].
    features = torch.tensor([[[[0.0, 4.0]]]])
    means, counts = masked_means(features, _label((0, 0, 1, 1)), 2, upsample=upsample)
    assert counts.tolist() == [[2, 2]]
    assert means[0, :, 0].tolist() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
@pytest.mark.parametrize(("size", "label_size"), [((4, 4), (16, 16)), ((5, 3), (17, 10))])
def test_masked_means_matches_interpolate_then_mask(upsample, size, label_size):
    g = torch.Generator().manual_seed(1)
    features = torch.randn(2, 6, *size, dtype=torch.float64, generator=g)
    label = torch.randint(0, 5, (2, *label_size), generator=g)
    label[1] = label[1].clamp_max(2)  # classes absent from one image
    means, counts = masked_means(features, label, 7, upsample=upsample)
    # Independent reference: materialise the upsampled map, average under one-hot masks.
    up = F.interpolate(features, size=label_size, mode=upsample)
    onehot = F.one_hot(label, 7).permute(0, 3, 1, 2).double()
    sums = torch.einsum("bchw,bkhw->bkc", up, onehot)
    ref_counts = onehot.sum((2, 3))
    torch.testing.assert_close(counts, ref_counts.long())
    torch.testing.assert_close(means, sums / ref_counts.clamp_min(1)[..., None])
    assert (means[1, 3:] == 0).all()


def test_interpolation_matrix_rows_sum_to_one():
    for mode in ("bilinear", "nearest"):
        weights = interpolation_matrix(13, 4, mode)
        torch.testing.assert_close(weights.sum(1), torch.ones(13, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown upsampling"):
        interpolation_matrix(4, 2, "bicubic")


def test_semantic_consistency_by_hand():
    scores = semantic_consistency_from_features({"a": FAKE}, {"a": REAL}, LABEL, 2)
    assert scores["a"].tolist() == pytest.approx([SEMANTIC_EXPECTED], abs=1e-12)


def test_semantic_consistency_identical_is_one_and_negated_is_minus_one():
    g = torch.Generator().manual_seed(2)
    feats = {
        "relu3_2": torch.randn(3, 4, 8, 8, generator=g),
        "relu4_2": torch.randn(3, 8, 4, 4, generator=g),
        "relu5_2": torch.randn(3, 8, 2, 2, generator=g),
    }
    label = torch.randint(0, 4, (3, 16, 16), generator=g)
    same = semantic_consistency_from_features(feats, feats, label, 4)
    negated = semantic_consistency_from_features(feats, {k: -v for k, v in feats.items()}, label, 4)
    for layer in feats:
        torch.testing.assert_close(same[layer], torch.ones(3, dtype=torch.float64))
        torch.testing.assert_close(negated[layer], -torch.ones(3, dtype=torch.float64))


def test_semantic_consistency_rejects_bad_labels():
    with pytest.raises(ValueError, match="class ids"):
        semantic_consistency_from_features({"a": FAKE}, {"a": REAL}, LABEL, 1)  # id 1 >= 1
    with pytest.raises(ValueError, match="class ids"):
        masked_means(FAKE, torch.full_like(LABEL, -1), 2)  # a map without labels
    with pytest.raises(ValueError, match="integer class ids"):
        masked_means(FAKE, LABEL.float(), 2)


# Style relevance hand case (4 classes): input label [[1, 1], [2, 3]], exemplar [[2, 1], [0, 2]].
OUT = _pixels(((1, 0), (1, 0)), ((0, 1), (-1, 0)))
EXEMPLAR = _pixels(((1, 1), (1, 0)), ((5, 5), (1, 3)))
INPUT_LABEL = _label((1, 1), (2, 3))
EXEMPLAR_LABEL = _label((2, 1), (0, 2))
# Shared: 1 (2 input pixels, cos((1, 0), (1, 0)) = 1) and 2 (1 pixel, cos((0, 1), (1, 2)) =
# 2/sqrt5); class 3 is absent from the exemplar, so the weights are 2/3 and 1/3.
STYLE_EXPECTED = 2 / 3 + (2 / math.sqrt(5)) / 3


def _style(out=OUT, ex=EXEMPLAR, inp=INPUT_LABEL, ex_label=EXEMPLAR_LABEL, **kw) -> float:
    return float(style_relevance_from_features({"a": out}, {"a": ex}, inp, ex_label, 4, **kw)["a"])


def test_style_relevance_by_hand():
    assert _style() == pytest.approx(STYLE_EXPECTED, abs=1e-12)


def test_style_relevance_drops_classes_absent_from_the_exemplar_and_renormalises():
    changed = OUT.clone()
    changed[0, :, 1, 1] = torch.tensor([7.0, -3.0])  # the class-3 pixel
    assert _style(out=changed) == pytest.approx(STYLE_EXPECTED, abs=1e-12)
    # Once the exemplar has class 3 too (its pixel (1, 0), features (5, 5)), it counts:
    # weights 2/4, 1/4, 1/4 and cos((-1, 0), (5, 5)) = -1/sqrt2.
    with_3 = _label((2, 1), (3, 2))
    expected = 0.5 + 0.25 * 2 / math.sqrt(5) - 0.25 / math.sqrt(2)
    assert _style(ex_label=with_3) == pytest.approx(expected, abs=1e-12)


def test_style_relevance_excludes_class_0_by_default():
    out = _pixels(((0, 1), (0, 1)), ((1, 0), (1, 0)))
    ex = _pixels(((1, 0), (1, 0)), ((1, 0), (1, 0)))
    inp, ex_label = _label((0, 0), (1, 1)), _label((0, 1), (0, 1))
    # Class 1 agrees (cos 1); class 0 does not (cos 0) and weighs half when kept.
    assert _style(out, ex, inp, ex_label) == pytest.approx(1.0, abs=1e-12)
    assert _style(out, ex, inp, ex_label, ignore_class=None) == pytest.approx(0.5, abs=1e-12)
    assert _style(out, ex, inp, ex_label, ignore_class=1) == pytest.approx(0.0, abs=1e-12)


def _hand_batch() -> tuple[torch.Tensor, ...]:
    """Two images as 3-channel 'pixels': the hand case, then one sharing no class."""
    out = torch.zeros(2, 3, 2, 2, dtype=torch.float64)
    ex = torch.zeros_like(out)
    out[0, :2], ex[0, :2] = OUT[0], EXEMPLAR[0]
    out[1], ex[1] = 1.0, 1.0
    inp = torch.cat([INPUT_LABEL, torch.ones_like(INPUT_LABEL)])
    ex_label = torch.cat([EXEMPLAR_LABEL, torch.full_like(EXEMPLAR_LABEL, 2)])
    return out, ex, inp, ex_label


def test_style_relevance_skips_and_counts_images_without_shared_classes():
    batch = _hand_batch()
    meter = StyleRelevance(_as_features, 4, empty_as_zero=False)
    scores = meter.update(*batch)
    assert scores["relu1_2"][0].item() == pytest.approx(STYLE_EXPECTED, abs=1e-12)
    assert scores["relu1_2"][1].isnan()
    result = meter.result()
    assert result["images"] == 1 and result["images_without_shared_classes"] == 1
    assert result["style_relevance_color"] == pytest.approx(STYLE_EXPECTED, abs=1e-12)
    assert result["style_relevance_texture"] == pytest.approx(STYLE_EXPECTED, abs=1e-12)
    # The authors' script scored such an image 0 instead.
    authors = StyleRelevance(_as_features, 4, empty_as_zero=True)
    authors.update(*batch)
    assert authors.result()["style_relevance_color"] == pytest.approx(STYLE_EXPECTED / 2)


def test_style_relevance_with_no_scored_image_is_nan_and_empty_meter_raises():
    out, ex, inp, ex_label = (t[1:] for t in _hand_batch())
    meter = StyleRelevance(_as_features, 4, empty_as_zero=False)
    with pytest.raises(ValueError, match="no images"):
        meter.result()
    meter.update(out, ex, inp, ex_label)
    result = meter.result()
    assert math.isnan(result["style_relevance_color"])
    assert (result["images"], result["images_without_shared_classes"]) == (0, 1)


def test_semantic_meter_by_hand_and_checks():
    images = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    fake, real = images.clone(), images.clone()
    fake[:, :2], real[:, :2] = FAKE, REAL
    meter = SemanticConsistency(_as_features, 2, layers=("x", "y"))
    with pytest.raises(ValueError, match="no images"):
        meter.result()
    meter.update(fake, real, LABEL)
    result = meter.result()
    assert result["images"] == 1
    for key in ("semantic_consistency_x", "semantic_consistency_y", "semantic_consistency"):
        assert result[key] == pytest.approx(SEMANTIC_EXPECTED, abs=1e-12)
    with pytest.raises(ValueError, match="differ"):
        meter.update(fake, real, torch.zeros(1, 4, 4, dtype=torch.int64))


def test_streaming_over_batches_equals_one_batch():
    g = torch.Generator().manual_seed(3)
    fake, real, exemplar = (torch.rand(6, 3, 16, 16, generator=g) * 2 - 1 for _ in range(3))
    label = torch.randint(0, 5, (6, 16, 16), generator=g)
    ex_label = torch.randint(0, 5, (6, 16, 16), generator=g)
    ex_label[4] = 0  # shares only the ignored class: skipped
    layers = ("relu3_2", "relu4_2", "relu5_2")
    args = (fake, real, label, exemplar, ex_label)

    def run(splits):
        sem = SemanticConsistency(_pyramid, 5, layers)
        sty = StyleRelevance(_pyramid, 5)
        for part in zip(*(t.split(splits) for t in args), strict=True):
            f, r, lab, ex, ex_lab = part
            sem.update(f, r, lab)
            sty.update(f, ex, lab, ex_lab)
        return sem.result(), sty.result()

    one, streamed = run([6]), run([1, 2, 3])
    for whole, parts in zip(one, streamed, strict=True):
        assert whole.keys() == parts.keys()
        for key, value in whole.items():
            assert parts[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    assert one[1]["images"] == 5 and one[1]["images_without_shared_classes"] == 1
    assert one[0]["images"] == 6 and one[0]["semantic_consistency"] < 1


def test_style_meter_with_an_exemplar_of_another_size():
    g = torch.Generator().manual_seed(4)
    output, exemplar = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    inp, ex_label = torch.randint(0, 3, (2, 8, 8), generator=g), torch.randint(0, 3, (2, 16, 16))
    meter = StyleRelevance(_pyramid, 3, empty_as_zero=False)
    scores = meter.update(output, exemplar, inp, ex_label)
    ref = style_relevance_from_features(
        _pyramid(output, ("relu1_2", "relu2_2")),
        _pyramid(exemplar, ("relu1_2", "relu2_2")),
        inp,
        ex_label,
        3,
    )
    for layer in ("relu1_2", "relu2_2"):
        torch.testing.assert_close(scores[layer], ref[layer])
    assert meter.result()["images"] == 2


@pytest.fixture(scope="module")
def vgg() -> VGG19:
    torch.manual_seed(0)
    return VGG19("caffe").eval()


def test_vgg_end_to_end_identical_images_score_one(vgg):
    g = torch.Generator().manual_seed(5)
    images = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    other = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    label = torch.randint(0, 4, (2, 32, 32), generator=g)
    ex_label = torch.randint(0, 4, (2, 32, 32), generator=g)

    sem = SemanticConsistency(vgg, 4)
    sem.update(images, images, label)
    result = sem.result()
    assert result["images"] == 2
    for key in ("relu3_2", "relu4_2", "relu5_2"):
        assert result[f"semantic_consistency_{key}"] == pytest.approx(1.0, abs=1e-6)
    assert result["semantic_consistency"] == pytest.approx(1.0, abs=1e-6)

    sty = StyleRelevance(vgg, 4)
    sty.update(images, images, label, label)
    result = sty.result()
    assert result["style_relevance_color"] == pytest.approx(1.0, abs=1e-6)
    assert result["style_relevance_texture"] == pytest.approx(1.0, abs=1e-6)
    assert result["images"] == 2

    # Different images score below 1 (both metrics see the difference).
    sem_other = SemanticConsistency(vgg, 4)
    sem_other.update(images, other, label)
    assert sem_other.result()["semantic_consistency"] < 1 - 1e-6
    sty_other = StyleRelevance(vgg, 4)
    sty_other.update(images, other, label, ex_label)
    assert sty_other.result()["style_relevance_color"] < 1 - 1e-6
