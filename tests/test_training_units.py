"""Unit tests of the training pieces: schedules, checkpoints, objective, batches, warp accuracy,
and the loss/train/tracking params sections. Tensors are tiny: the whole file runs in seconds."""

from __future__ import annotations

import math
import os
import pickle

import pytest
import torch
import torch.nn.functional as F

from cocosnet.config import ConfigError, LossConfig, loss_config, parse_params
from cocosnet.losses.objective import LOSS_SET_NO_VGG, LOSS_SET_PAPER, GeneratorInputs, Objective
from cocosnet.metrics.correspondence import WarpAccuracy
from cocosnet.models.correspondence import CorrespondenceOutput
from cocosnet.models.vgg import VGG19
from cocosnet.training.checkpoint import (
    CheckpointError,
    fingerprint,
    list_checkpoints,
    load_checkpoint,
    previous_run,
    save_checkpoint,
)
from cocosnet.training.data import epoch_batches, steps_per_epoch
from cocosnet.training.schedule import exemplar_label_hidden, lr_factor, warped_mask_weight

# --- schedule ---------------------------------------------------------------------------------


def test_lr_factor_is_flat_then_decays_linearly_to_zero():
    got = [lr_factor(e, niter=2, niter_decay=4) for e in range(8)]
    assert got == pytest.approx([1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0])


def test_lr_factor_without_decay_epochs_stays_one():
    assert [lr_factor(e, 3, 0) for e in (0, 3, 50)] == [1.0, 1.0, 1.0]
    assert lr_factor(0, 0, 10) == 1.0 and lr_factor(5, 0, 10) == pytest.approx(0.5)


def test_exemplar_label_hidden_after_mask_epoch_only():
    assert [exemplar_label_hidden(e, 2) for e in range(4)] == [False, False, True, True]
    assert not exemplar_label_hidden(1000, None)


def test_warped_mask_weight_switches_after_warmup_when_set():
    cfg = LossConfig(warped_mask=100.0, warped_mask_after_warmup=1.0)
    assert [warped_mask_weight(e, 2, cfg) for e in range(4)] == [100.0, 100.0, 1.0, 1.0]
    assert warped_mask_weight(7, None, cfg) == 100.0
    unchanged = LossConfig(warped_mask=100.0)
    assert warped_mask_weight(7, 2, unchanged) == 100.0


# --- checkpoints ------------------------------------------------------------------------------


def _state(step: int, key: str = "abc") -> dict:
    return {"fingerprint": key, "step": step, "w": torch.arange(3.0) + step, "note": "x"}


def test_save_list_load_roundtrip_and_rotation(tmp_path):
    for step in (10, 30, 20, 40):
        save_checkpoint(tmp_path, step, _state(step), keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [30, 40]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000000030.pt", "step_000000040.pt"]
    state = load_checkpoint(list_checkpoints(tmp_path)[-1][1])
    assert state["step"] == 40 and state["note"] == "x"
    assert torch.equal(state["w"], torch.tensor([40.0, 41.0, 42.0]))
    assert list_checkpoints(tmp_path / "missing") == []


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path, 5, _state(5), keep=3)
    before = path.read_bytes()

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 5, _state(6), keep=3)
    assert path.read_bytes() == before  # the previous version survives, no temp file is left
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_checkpoint_keeps_the_file_it_just_wrote(tmp_path):
    for step in (1000, 2000):
        save_checkpoint(tmp_path, step, _state(step, key="old"), keep=2)
    path = save_checkpoint(tmp_path, 200, _state(200, key="new"), keep=2)
    assert path.exists()


class _Payload:
    """Unpickling this runs os.mkdir(marker): a harmless stand-in for arbitrary code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_load_refuses_a_pickle_that_runs_code(tmp_path, writer):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "step_000000001.pt"
    state = {"fingerprint": "abc", "step": 1, "payload": _Payload(str(marker))}
    if writer == "torch.save":
        torch.save(state, evil)
        torch.load(evil, weights_only=False)  # the payload is live: a full unpickle runs it
    else:
        evil.write_bytes(pickle.dumps(state, protocol=2))
        pickle.loads(evil.read_bytes())
    assert marker.exists()
    marker.rmdir()
    with pytest.raises(CheckpointError, match="not a (loadable|plain) tensor state dict"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError):
        previous_run(tmp_path, 10)
    assert not marker.exists()


def test_load_refuses_truncated_missing_and_foreign_files(tmp_path):
    good = save_checkpoint(tmp_path, 1, _state(1), keep=5)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    for path in (truncated, tmp_path / "missing.pt", foreign):
        with pytest.raises(CheckpointError):
            load_checkpoint(path)


def test_previous_run_is_the_newest_checkpoint_not_past_the_last_step(tmp_path):
    assert previous_run(tmp_path, 10) is None
    older = save_checkpoint(tmp_path, 3, _state(3), keep=5)
    newest = save_checkpoint(tmp_path, 7, _state(7), keep=5)
    previous = previous_run(tmp_path, 10)
    assert previous.path == newest and previous.state["step"] == 7 and previous.step == 7
    assert previous_run(tmp_path, 7).path == newest
    assert previous_run(tmp_path, 6).path == older  # a shorter run never takes a longer one's
    assert previous_run(tmp_path, 2) is None


def test_fingerprint_ignores_key_order_but_not_values():
    a = fingerprint({"lr": 1e-4, "model": {"ngf": 8, "alpha": 100}})
    assert a == fingerprint({"model": {"alpha": 100, "ngf": 8}, "lr": 1e-4})
    assert a != fingerprint({"lr": 2e-4, "model": {"ngf": 8, "alpha": 100}})
    assert len(a) == 16 and int(a, 16) >= 0


# --- objective --------------------------------------------------------------------------------

B, L, S, G = 2, 4, 16, 4  # batch, label channels, image side, correspondence grid side


def _disc(seed: int, shift: float = 0.0) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(B, 3, 4, 4, generator=g), torch.randn(B, 1, 3, 3, generator=g) + shift]
        for _ in range(2)
    ]


def _inputs(pseudo=(False, False), *, real_features=True, has_labels=True, cycle=False):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, L, (B, G, G), generator=g).repeat_interleave(S // G, 1)
    ids = ids.repeat_interleave(S // G, 2)
    corr = CorrespondenceOutput(
        warped=torch.rand(B, 3, S, S, generator=g) * 2 - 1,
        warped_mask=torch.softmax(torch.randn(B, L, G, G, generator=g), 1),
        cycle=torch.rand(B, 3, G, G, generator=g) if cycle else None,
        input_features=F.normalize(torch.randn(B, 8, G, G, generator=g), dim=1),
        real_features=(
            F.normalize(torch.randn(B, 8, G, G, generator=g), dim=1) if real_features else None
        ),
    )
    return GeneratorInputs(
        fake=torch.rand(B, 3, S, S, generator=g) * 2 - 1,
        real=torch.rand(B, 3, S, S, generator=g) * 2 - 1,
        exemplar=torch.rand(B, 3, S, S, generator=g) * 2 - 1,
        label=ids if has_labels else torch.full_like(ids, -1),
        exemplar_label=ids.flip(-1),
        is_pseudo=torch.tensor(pseudo),
        corr=corr,
        pred_fake=_disc(1),
        pred_real=_disc(2),
    )


def _terms(cfg=None, x=None, vgg=None, mask_weight=1.0, **kw):
    objective = Objective(cfg or loss_config({}), vgg, warp_stride=S // G, **kw)
    return objective.generator_terms(x or _inputs(), warped_mask_weight=mask_weight)


# Terms of pseudo pairs only: a batch without pseudo pairs reports them as 0 (or not at all).
PSEUDO_TERMS = {"pixel_l1", "vgg_feature_matching", "warp_self"}


def _active(terms) -> set[str]:
    """The terms that contribute: every key except pseudo-pair terms that are exactly 0."""
    return {k for k, v in terms.items() if k not in PSEUDO_TERMS or v.item() != 0}


def _assert_total_is_sum(terms):
    rest = [v for k, v in terms.items() if k != "total"]
    assert torch.allclose(terms["total"], torch.stack(rest).sum())


def test_no_vgg_terms_without_pseudo_pairs():
    terms = _terms()
    assert _active(terms) == {
        "gan",
        "d_feature_matching",
        "domain_alignment",
        "warped_mask",
        "total",
    }
    assert terms.get("pixel_l1", 0) == 0
    _assert_total_is_sum(terms)
    assert Objective(loss_config({}), None, warp_stride=4).loss_set == LOSS_SET_NO_VGG


def test_pixel_l1_only_on_pseudo_pairs():
    x = _inputs(pseudo=(False, True))
    terms = _terms(x=x)
    assert not {"contextual", "perceptual", "vgg_feature_matching"} & set(terms)
    # fallback_l1 default 10; the official whole-batch mean: the pseudo pair's mean over B
    expected = F.l1_loss(x.fake[1:], x.real[1:]) * 10.0 / B / (1 + 1e-5)
    assert torch.allclose(terms["pixel_l1"], expected)
    _assert_total_is_sum(terms)


def test_weights_scale_their_terms_linearly():
    base = _terms()
    doubled = _terms(cfg=loss_config({"gan": 20.0, "d_feature_matching": 5.0}))
    assert torch.allclose(doubled["gan"], 2 * base["gan"])
    assert torch.allclose(doubled["d_feature_matching"], 0.5 * base["d_feature_matching"])
    assert torch.allclose(doubled["domain_alignment"], base["domain_alignment"])
    assert torch.allclose(_terms(mask_weight=3.0)["warped_mask"], 3 * base["warped_mask"])
    assert "d_feature_matching" not in _terms(cfg=loss_config({"d_feature_matching": 0.0}))


def test_warped_mask_needs_a_weight_and_labels():
    assert "warped_mask" not in _terms(mask_weight=0.0)
    assert "warped_mask" not in _terms(x=_inputs(has_labels=False))
    assert _terms(mask_weight=0.5)["warped_mask"] > 0


def test_domain_alignment_needs_real_features():
    assert "domain_alignment" not in _terms(x=_inputs(real_features=False))
    x = _inputs()
    expected = F.l1_loss(x.corr.input_features, x.corr.real_features) * 10.0
    assert torch.allclose(_terms(x=x)["domain_alignment"], expected)


def test_cycle_and_warp_self_terms_follow_their_weights():
    cfg = loss_config({"cycle": 1.0, "warp_self": 2.0})
    x = _inputs(pseudo=(True, False), cycle=True)
    terms = _terms(cfg=cfg, x=x)
    assert {"cycle", "warp_self"} <= _active(terms)
    want = F.l1_loss(x.corr.warped[:1], x.real[:1]) * 2.0 / B / (1 + 1e-5)
    assert torch.allclose(terms["warp_self"], want)
    assert torch.allclose(terms["cycle"], F.l1_loss(x.corr.cycle, F.avg_pool2d(x.exemplar, 4)))
    assert not {"cycle", "warp_self"} & _active(_terms(cfg=cfg, x=_inputs(cycle=False)))
    _assert_total_is_sum(terms)


def test_discriminator_hinge_terms():
    objective = Objective(loss_config({}), None, warp_stride=4)
    real = [[torch.zeros(1, 2, 2, 2), torch.full((1, 1, 2, 2), 1.5)]]
    fake = [[torch.zeros(1, 2, 2, 2), torch.full((1, 1, 2, 2), -1.0)]]
    terms = objective.discriminator_terms(real, fake)
    assert set(terms) == {"d_real", "d_fake", "total"}
    assert terms["total"].item() == 0.0
    zero = [[torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 2, 2)]]
    terms = objective.discriminator_terms(zero, zero)
    assert terms["d_real"].item() == pytest.approx(10.0)  # relu(1 - 0) x gan weight 10
    assert terms["total"].item() == pytest.approx(20.0)


def test_required_vgg_without_network_raises():
    with pytest.raises(ValueError, match="required"):
        Objective(loss_config({"vgg": "required"}), None, warp_stride=4)


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return VGG19("caffe").eval()  # random weights: only the shapes matter here


def test_paper_loss_set_with_vgg(vgg):
    objective = Objective(loss_config({}), vgg, warp_stride=4)
    assert objective.loss_set == LOSS_SET_PAPER
    plain = objective.generator_terms(_inputs(), warped_mask_weight=0.0)
    assert plain.get("vgg_feature_matching", 0) == 0
    assert _active(plain) == {
        "gan",
        "d_feature_matching",
        "perceptual",
        "contextual",
        "domain_alignment",
        "total",
    }
    pseudo = objective.generator_terms(_inputs(pseudo=(True, False)), warped_mask_weight=0.0)
    assert pseudo["vgg_feature_matching"] > 0 and "pixel_l1" not in pseudo
    assert all(torch.isfinite(v) for v in pseudo.values())
    _assert_total_is_sum(pseudo)


def test_vgg_off_ignores_the_network(vgg):
    terms = _terms(cfg=loss_config({"vgg": "off"}), x=_inputs(pseudo=(True, True)), vgg=vgg)
    assert "pixel_l1" in terms and not {"perceptual", "contextual"} & set(terms)


# --- batches ----------------------------------------------------------------------------------


def test_epoch_batches_split_disjointly_over_ranks():
    n, bs, world = 23, 3, 2
    per_rank = [epoch_batches(n, bs, seed=1, epoch=0, rank=r, world=world) for r in range(world)]
    assert [len(b) for b in per_rank] == [3, 3] == [steps_per_epoch(n, bs, world)] * 2
    flat = [i for batches in per_rank for batch in batches for i in batch]
    assert len(flat) == len(set(flat)) == 18 and all(0 <= i < n for i in flat)
    assert all(len(batch) == bs for batches in per_rank for batch in batches)


def test_epoch_batches_order_depends_on_seed_and_epoch():
    def batches(seed, epoch):
        return epoch_batches(40, 4, seed=seed, epoch=epoch)

    assert batches(0, 3) == batches(0, 3)
    assert batches(0, 3) != batches(0, 4)
    assert batches(0, 3) != batches(1, 3)
    assert sorted(i for b in batches(0, 3) for i in b) == list(range(40))


def test_steps_per_epoch_drops_incomplete_batches():
    assert steps_per_epoch(10, 3) == 3 and steps_per_epoch(10, 3, world=2) == 1
    assert steps_per_epoch(5, 8) == 0 and epoch_batches(5, 8, seed=0, epoch=0) == []


# --- warp accuracy ----------------------------------------------------------------------------


def _ids(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows)[None]


def _onehot(ids: torch.Tensor, n: int = 4) -> torch.Tensor:
    return F.one_hot(ids, n).permute(0, 3, 1, 2).float()


HALVES = _ids([[1, 1, 2, 2]] * 4)  # input: left half class 1, right half class 2
SWAPPED = _ids([[2, 2, 1, 1]] * 4)  # exemplar: the halves swapped


def _accuracy(warped, inp, ex, **kw) -> dict:
    meter = WarpAccuracy(**kw)
    meter.update(warped, inp, ex)
    return meter.result()


def test_identity_warp_scores_zero_and_perfect_warp_closes_the_gap():
    identity = _accuracy(_onehot(SWAPPED), HALVES, SWAPPED)
    assert identity["warp_accuracy"] == 0.0 and identity["warp_accuracy_baseline"] == 0.0
    assert identity["warp_accuracy_upper_bound"] == 1.0 and identity["gap_closed"] == 0.0
    assert identity["pairs_pixels"] == 16
    perfect = _accuracy(_onehot(HALVES), HALVES, SWAPPED)
    assert perfect["warp_accuracy"] == 1.0 and perfect["gap_closed"] == 1.0


def test_missing_class_lowers_the_upper_bound():
    inp = _ids([[1, 1, 1, 2]] * 4)  # class 2 covers a quarter and is absent from the exemplar
    ex = _ids([[1, 1, 1, 1]] * 4)
    result = _accuracy(_onehot(ex), inp, ex)
    assert result["warp_accuracy_upper_bound"] == 0.75
    assert result["warp_accuracy"] == result["warp_accuracy_baseline"] == 0.75
    assert math.isnan(result["gap_closed"])  # nothing to close: baseline == upper bound


def test_object_accuracy_counts_reachable_object_pixels_only():
    inp = _ids([[1, 1, 2, 3]] * 4)
    ex = _ids([[2, 2, 1, 1]] * 4)  # class 3 never occurs in the exemplar
    pred = inp.clone()
    pred[0, :2, 2] = 1  # half of the class-2 pixels go wrong
    result = _accuracy(_onehot(pred), inp, ex, object_classes=(2, 3))
    assert result["object_pixels"] == 4 and result["warp_accuracy_objects"] == 0.5
    assert result["warp_accuracy"] == 14 / 16
    assert math.isnan(_accuracy(_onehot(pred), inp, ex)["warp_accuracy_objects"])


def test_ignore_class_excludes_pixels():
    inp = _ids([[0, 1, 2, 2]] * 4)
    ex = _ids([[2, 2, 1, 1]] * 4)
    result = _accuracy(_onehot(inp), inp, ex, ignore_class=0)
    assert result["pairs_pixels"] == 12 and result["warp_accuracy"] == 1.0
    assert result["warp_accuracy_upper_bound"] == 1.0  # class 0 would be unreachable
    with pytest.raises(ValueError, match="no labelled pixels"):
        _accuracy(_onehot(ex), torch.zeros_like(ex), ex, ignore_class=0)


def test_ignore_class_outside_the_label_channels():
    inp = _ids([[255, 1, 2, 2]] * 4)
    ex = _ids([[2, 2, 1, 255]] * 4)
    result = _accuracy(_onehot(torch.ones_like(inp)), inp, ex, ignore_class=255)
    assert result["pairs_pixels"] == 12


def test_ids_are_nearest_downsampled_to_the_warped_grid():
    # 8x8 ids whose even rows/cols hold HALVES and odd ones noise: nearest keeps the even ones.
    g = torch.Generator().manual_seed(0)
    inp = torch.randint(0, 4, (1, 8, 8), generator=g)
    ex = torch.randint(0, 4, (1, 8, 8), generator=g)
    inp[:, ::2, ::2], ex[:, ::2, ::2] = HALVES, SWAPPED
    result = _accuracy(_onehot(HALVES), inp, ex)
    assert result["pairs_pixels"] == 16 and result["warp_accuracy"] == 1.0
    assert result["warp_accuracy_baseline"] == 0.0


def test_streaming_updates_match_one_batch():
    g = torch.Generator().manual_seed(3)
    inp, ex = torch.randint(0, 4, (2, 3, 8, 8), generator=g)
    warped = torch.rand(3, 4, 4, 4, generator=g)
    meter = WarpAccuracy(object_classes=(2,))
    for i in range(3):
        meter.update(warped[i : i + 1], inp[i : i + 1], ex[i : i + 1])
    streamed, whole = meter.result(), _accuracy(warped, inp, ex, object_classes=(2,))
    assert streamed.pop("per_class") == whole.pop("per_class")
    assert streamed == pytest.approx(whole, nan_ok=True)


def test_per_class_accuracy_counts_each_class():
    inp = _ids([[1, 1, 2, 2]] * 4)
    ex = _ids([[2, 2, 1, 1]] * 4)
    warped = _onehot(_ids([[1, 2, 2, 1]] * 4))  # half right for each class
    per_class = _accuracy(warped, inp, ex)["per_class"]
    assert per_class == {1: {"pixels": 8, "accuracy": 0.5}, 2: {"pixels": 8, "accuracy": 0.5}}


# --- params sections --------------------------------------------------------------------------


def test_parse_params_accepts_loss_train_tracking():
    params = parse_params(
        {
            "loss": {"gan": 5.0, "vgg": "off"},
            "train": {"batch_size": 2, "p_hard": 0.0, "p_top1": 0.5, "p_self": 0.5},
            "tracking": {"experiment": "unit"},
        }
    )
    assert params.loss.gan == 5.0 and params.loss.vgg == "off"
    assert (params.train.batch_size, params.train.p_self) == (2, 0.5)
    assert params.tracking.experiment == "unit" and params.tracking.uri is None


@pytest.mark.parametrize(
    "train, fragment",
    [
        ({"p_hard": 0.5, "p_top1": 0.5, "p_self": 0.5}, "p_hard + p_top1 + p_self"),
        ({"nnodes": 2}, "runtime.rdzv_endpoint"),
        ({"bogus": 1}, "train.bogus: unknown key"),
        ({"threads": 1}, "train.threads: unknown key (it moved to runtime.threads"),
    ],
)
def test_bad_train_sections_are_errors(train, fragment):
    with pytest.raises(ConfigError, match="train") as err:
        parse_params({"train": train})
    assert fragment in str(err.value)


def test_multi_node_with_rendezvous_is_accepted():
    params = parse_params({"train": {"nnodes": 2}, "runtime": {"rdzv_endpoint": "host:29500"}})
    assert params.train.nnodes == 2


def test_loss_preset_and_overrides():
    assert parse_params({"loss": {"preset": "paper_ade20k"}}).loss.warped_mask == 100.0
    assert loss_config({}).warped_mask == 0.0
    override = parse_params({"loss": {"preset": "paper_ade20k", "warped_mask": 5.0}})
    assert override.loss.warped_mask == 5.0 and override.loss.perceptual == 0.01
    with pytest.raises(ConfigError, match=r"loss\.preset"):
        parse_params({"loss": {"preset": "paper_mars"}})


def test_loss_config_is_frozen():
    cfg = loss_config({})
    with pytest.raises(Exception, match="frozen"):
        cfg.gan = 1.0
    assert cfg.gan == 10.0


def test_class_colour_term_is_the_weighted_loss_on_labelled_batches():
    from cocosnet.losses.class_colour import class_colour_loss

    x = _inputs()
    terms = _terms(cfg=loss_config({"class_colour": 2.0}), x=x, num_classes=L)
    expected = class_colour_loss(x.fake, x.exemplar, x.label, x.exemplar_label, L) * 2.0
    assert torch.equal(terms["class_colour"], expected) and expected > 0
    _assert_total_is_sum(terms)
    unlabelled = _terms(cfg=loss_config({"class_colour": 2.0}), x=_inputs(has_labels=False),
                        num_classes=L)  # fmt: skip
    assert "class_colour" not in unlabelled
