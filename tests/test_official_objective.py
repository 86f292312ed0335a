"""The training objective against the official formulas, term by term.

Every reference function below is written from ../shared/REFERENCE.md and the official code it
cites (microsoft/CoCosNet ``models/pix2pix_model.py``, ``models/networks/ContextualLoss.py``,
``util/util.py``), never from cocosnet's loss units. One deliberate reading of the code where
REFERENCE.md is short: the pseudo-pair sample weight is ``self_ref / (sum(self_ref) + 1e-5)``
(``pix2pix_model.py``), so the whole-batch mean divides by the pseudo-pair count *and* by the
per-GPU batch.
"""

from __future__ import annotations

import copy
import sys

import pytest
import torch
import torch.nn.functional as F

from cocosnet.config import loss_config, model_config, train_config
from cocosnet.losses.objective import GeneratorInputs, Objective
from cocosnet.models.correspondence import CorrespondenceOutput
from cocosnet.models.factory import build_correspondence, build_discriminator, build_translation
from cocosnet.models.vgg import VGG19
from cocosnet.training.steps import Generator, Trainer

from .helpers import single_thread

single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)

FLT_EPS = sys.float_info.epsilon
VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")


# --- reference functions (from REFERENCE.md / the official code) -------------------------------


def ref_g_gan(pred_fake):
    """Hinge, generator side: mean over scales of -mean(logits)."""
    return sum(-scale[-1].mean() for scale in pred_fake) / len(pred_fake)


def ref_d_hinge(pred_real, pred_fake):
    real = sum(torch.clamp(1 - s[-1], min=0).mean() for s in pred_real) / len(pred_real)
    fake = sum(torch.clamp(1 + s[-1], min=0).mean() for s in pred_fake) / len(pred_fake)
    return real, fake


def ref_d_feature_matching(pred_fake, pred_real):
    """Official GAN_Feat_loss, unweighted: L1 per intermediate layer / num_D."""
    total = 0.0
    for fake, real in zip(pred_fake, pred_real, strict=True):
        for a, b in zip(fake[:-1], real[:-1], strict=True):
            total = total + (a - b).abs().mean() / len(pred_fake)
    return total


def ref_sample_weights(is_pseudo):
    s = is_pseudo.double()
    return s / (s.sum() + 1e-5)


def ref_weighted_l1(a, b, is_pseudo, batch=None):
    """util.weighted_l1_loss: mean(|a - b| * w) over the whole batch; ``batch`` re-scales to
    the batch the weights were set for."""
    w = ref_sample_weights(is_pseudo).view(-1, 1, 1, 1)
    loss = ((a.double() - b.double()).abs() * w).mean()
    return loss if batch is None else loss * a.shape[0] / batch


def ref_vgg_fm(fake_f, real_f, is_pseudo, batch):
    weights = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    return sum(
        w * ref_weighted_l1(fake_f[k], real_f[k], is_pseudo, batch)
        for w, k in zip(weights, VGG_LAYERS, strict=True)
    )


def ref_cx(x, y, h=0.1):
    """ContextualLoss_forward with --PONO (see tests/test_losses_vgg.py for the same facts), in
    the inputs' precision as the official code ran (float32): with VGG features all cosines
    are near 1, and 1 - cos keeps few float32 digits, so float64 would differ by ~1e-4."""
    out = []
    for b in range(x.shape[0]):
        mu = y[b].mean(0, keepdim=True)
        xb, yb = (x[b] - mu).flatten(1), (y[b] - mu).flatten(1)
        xb = xb / (xb.norm(dim=0, keepdim=True) + FLT_EPS)
        yb = yb / (yb.norm(dim=0, keepdim=True) + FLT_EPS)
        d = 1 - xb.t() @ yb
        d = d / (d.min(1, keepdim=True).values + 1e-3)
        w = torch.exp((1 - d) / h)
        out.append(-torch.log((w / w.sum(1, keepdim=True)).max(1).values.mean()))
    return torch.stack(out).mean()


def ref_contextual(fake_f, ex_f, use_22=False):
    def pooled(k, p):
        return F.avg_pool2d(fake_f[k], p), F.avg_pool2d(ex_f[k], p)

    loss = (
        ref_cx(fake_f["relu5_2"], ex_f["relu5_2"]) * 8
        + ref_cx(fake_f["relu4_2"], ex_f["relu4_2"]) * 4
    )
    loss = loss + ref_cx(*pooled("relu3_2", 2)) * 2
    if use_22:
        loss = loss + ref_cx(*pooled("relu2_2", 4))
    return loss


def ref_warped_mask(warp_mask, label, ref_label, stride, ignore_zero=True):
    """The official loop: both labels nearest-downsampled x1/stride; weight 0 for input classes
    absent from the exemplar (and class 0); sum(nll * w) / (sum(w) + 1e-5)."""
    gt = F.interpolate(label[:, None].float(), scale_factor=1 / stride, mode="nearest")[:, 0]
    ref = F.interpolate(ref_label[:, None].float(), scale_factor=1 / stride, mode="nearest")[:, 0]
    gt, ref = gt.long(), ref.long()
    weights = []
    for i in range(gt.shape[0]):
        weight = torch.ones_like(gt[i]).double()
        for c in torch.unique(gt[i]):
            if c not in torch.unique(ref[i]):
                weight[gt[i] == c] = 0
        if ignore_zero:
            weight[gt[i] == 0] = 0
        weights.append(weight)
    weights = torch.stack(weights)
    nll = F.nll_loss(torch.log(warp_mask.double() + 1e-10), gt, reduction="none")
    return (nll * weights).sum() / (weights.sum() + 1e-5)


def ref_generator_terms(cfg, x, vgg, stride, mask_weight, patch=False):
    """Every weighted generator term of the official compute_generator_loss."""
    out = {"gan": ref_g_gan(x.pred_fake) * cfg.gan}
    out["d_feature_matching"] = (
        ref_d_feature_matching(x.pred_fake, x.pred_real) * cfg.d_feature_matching
    )
    with torch.no_grad():
        fake_f, real_f, ex_f = (vgg(t, set(VGG_LAYERS)) for t in (x.fake, x.real, x.exemplar))
    out["vgg_feature_matching"] = (
        ref_vgg_fm(fake_f, real_f, x.is_pseudo, cfg.pseudo_pair_batch)
        * cfg.vgg_feature_matching
        * cfg.fm_ratio
    )
    layer = cfg.perceptual_layer
    out["perceptual"] = ((fake_f[layer] - real_f[layer]) ** 2).mean() * cfg.perceptual
    out["contextual"] = ref_contextual(fake_f, ex_f) * cfg.contextual
    corr = x.corr
    out["domain_alignment"] = (
        corr.input_features - corr.real_features
    ).abs().mean() * cfg.domain_alignment
    if mask_weight > 0:
        out["warped_mask"] = (
            ref_warped_mask(corr.warped_mask, x.label, x.exemplar_label, stride) * mask_weight
        )
    if cfg.cycle > 0:
        target = x.exemplar if patch else F.avg_pool2d(x.exemplar, stride)
        out["cycle"] = (corr.cycle - target).abs().mean() * cfg.cycle
    if cfg.warp_self > 0:
        out["warp_self"] = (
            ref_weighted_l1(corr.warped, x.real, x.is_pseudo, cfg.pseudo_pair_batch) * cfg.warp_self
        )
    out["total"] = sum(out.values())
    return out


# --- fixed inputs ------------------------------------------------------------------------------

B, S, L, STRIDE = 3, 64, 6, 4
GRID = S // STRIDE


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    net = VGG19("caffe").eval().requires_grad_(False)  # random weights, the real architecture
    for m in net.modules():  # He init (/255 for the Caffe input scale): features keep their size
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            m.weight.data /= 255 if m.in_channels == 3 else 1
            torch.nn.init.zeros_(m.bias)
    return net


def _labels(g):
    coarse = torch.randint(0, L - 1, (B, S // 8, S // 8), generator=g)  # L - 1 placed by hand
    return coarse.repeat_interleave(8, 1).repeat_interleave(8, 2)


def fixed_inputs(pseudo=(True, False, True), seed=0) -> GeneratorInputs:
    g = torch.Generator().manual_seed(seed)
    label, ex_label = _labels(g), _labels(g)
    # A class present in the exemplar only off the x1/4 sampling grid (nearest keeps rows and
    # columns 0, 4, 8, ...): read at full resolution it would count as present.
    ex_label[0, 1::4, 1::4] = L - 1
    label[0, :8, :8] = L - 1

    def img():
        return torch.rand(B, 3, S, S, generator=g) * 2 - 1

    def disc():
        return [[torch.randn(B, 4, 8, 8, generator=g), torch.randn(B, 1, 5, 5, generator=g)]] * 2

    corr = CorrespondenceOutput(
        warped=img(),
        warped_mask=torch.softmax(torch.randn(B, L, GRID, GRID, generator=g) * 3, 1),
        cycle=torch.rand(B, 3, GRID, GRID, generator=g),
        input_features=F.normalize(torch.randn(B, 8, GRID, GRID, generator=g), dim=1),
        real_features=F.normalize(torch.randn(B, 8, GRID, GRID, generator=g), dim=1),
    )
    return GeneratorInputs(
        fake=img(),
        real=img(),
        exemplar=img(),
        label=label,
        exemplar_label=ex_label,
        is_pseudo=torch.tensor(pseudo),
        corr=corr,
        pred_fake=disc(),
        pred_real=disc(),
    )


def _assert_terms_equal(ours, ref):
    assert set(ours) == set(ref), (sorted(ours), sorted(ref))
    for k in ref:
        torch.testing.assert_close(ours[k].double(), ref[k].double(), rtol=1e-5, atol=1e-7, msg=k)


PAPER = ["paper_ade20k", "paper_celebahq_mask", "paper_celebahq_edge", "paper_deepfashion"]


@pytest.mark.parametrize(
    "preset, pseudo",
    [(p, (True, False, True)) for p in PAPER]
    + [("paper_deepfashion", (False,) * 3), ("paper_ade20k", (True,) * 3)],
)
def test_generator_terms_equal_the_official_formulas(vgg, preset, pseudo):
    cfg = loss_config({"preset": preset})
    x = fixed_inputs(pseudo)
    mask_weight = cfg.warped_mask
    ours = Objective(cfg, vgg, warp_stride=STRIDE).generator_terms(
        x, warped_mask_weight=mask_weight
    )
    _assert_terms_equal(ours, ref_generator_terms(cfg, x, vgg, STRIDE, mask_weight))


def test_warped_mask_reads_the_exemplar_classes_on_the_warp_grid(vgg):
    cfg = loss_config({"preset": "paper_ade20k"})
    x = fixed_inputs()
    ours = Objective(cfg, vgg, warp_stride=STRIDE).generator_terms(x, warped_mask_weight=100.0)
    full_res = fixed_inputs()
    full_res.exemplar_label[0, :8, :8] = L - 1  # now on the grid too: the class counts
    changed = Objective(cfg, vgg, warp_stride=STRIDE).generator_terms(
        full_res, warped_mask_weight=100.0
    )
    assert ours["warped_mask"].item() != pytest.approx(changed["warped_mask"].item(), rel=1e-4)


def test_discriminator_terms_equal_the_official_hinge():
    x = fixed_inputs()
    ours = Objective(loss_config({"preset": "paper_ade20k"}), None, warp_stride=4)
    terms = ours.discriminator_terms(x.pred_real, x.pred_fake)
    real, fake = ref_d_hinge(x.pred_real, x.pred_fake)
    torch.testing.assert_close(terms["d_real"], real * 10)
    torch.testing.assert_close(terms["d_fake"], fake * 10)
    torch.testing.assert_close(terms["total"], (real + fake) * 10)


# --- spectral norm and a whole training step -----------------------------------------------------


def ref_power_iteration(weight, u, v):
    """torch.nn.utils.spectral_norm (the API of the official code): v first, then u."""
    mat = weight.flatten(1)
    v = F.normalize(mat.t() @ u, dim=0, eps=1e-12)
    u = F.normalize(mat @ v, dim=0, eps=1e-12)
    return u, v, torch.dot(u, mat @ v)


def _sn_layers(module):
    return [m for m in module.modules() if hasattr(m, "parametrizations")]


def test_spectral_norm_is_the_old_api_in_training_and_eval():
    conv = torch.nn.Conv2d(5, 7, 3)
    torch.manual_seed(3)
    old = torch.nn.utils.spectral_norm(copy.deepcopy(conv))
    from cocosnet.models.spectral import spectral

    ours = spectral(copy.deepcopy(conv))
    sn = ours.parametrizations.weight[0]
    with torch.no_grad():
        sn._u.copy_(old.weight_u)
        sn._v.copy_(old.weight_v)
    x = torch.randn(2, 5, 9, 9)
    for _ in range(3):  # training: a power iteration per forward
        torch.testing.assert_close(ours(x), old(x), rtol=0, atol=0)
    old.eval(), ours.eval()
    torch.testing.assert_close(ours(x), old(x), rtol=0, atol=0)
    torch.testing.assert_close(sn._u, old.weight_u, rtol=0, atol=0)


def _batch(seed=0, semantic_nc=8, size=64):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, semantic_nc, (2, size // 8, size // 8), generator=g)
    label = coarse.repeat_interleave(8, 1).repeat_interleave(8, 2)
    ex_label = label.flip(-1)
    return {
        "input": F.one_hot(label, semantic_nc).permute(0, 3, 1, 2).float(),
        "image": torch.rand(2, 3, size, size, generator=g) * 2 - 1,
        "label": label,
        "exemplar_input": F.one_hot(ex_label, semantic_nc).permute(0, 3, 1, 2).float(),
        "exemplar": torch.rand(2, 3, size, size, generator=g) * 2 - 1,
        "exemplar_label": ex_label,
        "is_pseudo": torch.tensor([True, False]),
    }


def test_a_training_step_equals_the_official_objective_with_power_iterations_running(vgg):
    mcfg = model_config({"preset": "demo", "semantic_nc": 8})
    lcfg = loss_config({"preset": "paper_ade20k", "warped_mask_ignore_class": None})
    torch.manual_seed(0)
    gen = Generator(build_correspondence(mcfg), build_translation(mcfg)).train()
    disc = build_discriminator(mcfg).train()
    # The official code's networks (before the step): ours, copied, run as its forward does.
    ref_gen, ref_disc = copy.deepcopy(gen), copy.deepcopy(disc)
    adaptor_sn = _sn_layers(ref_gen.corr.exemplar_adaptor)[0].parametrizations.weight
    u0, v0 = adaptor_sn[0]._u.clone(), adaptor_sn[0]._v.clone()

    objective = Objective(lcfg, vgg, warp_stride=mcfg.warp_stride)
    tcfg = train_config({"amp": "off"})
    trainer = Trainer(tcfg, objective, gen, disc, device=torch.device("cpu"))
    batch = _batch()
    result = trainer.generator_step(batch, hide_exemplar_label=False, warped_mask_weight=100.0)

    fake, corr = ref_gen(
        batch["input"],
        batch["exemplar"],
        batch["exemplar_input"],
        real_image=batch["image"],
        cycle=False,
    )
    both = torch.cat([batch["input"], fake], 1), torch.cat([batch["input"], batch["image"]], 1)
    pred = ref_disc(torch.cat(both, 0))
    x = GeneratorInputs(
        fake=fake,
        real=batch["image"],
        exemplar=batch["exemplar"],
        label=batch["label"],
        exemplar_label=batch["exemplar_label"],
        is_pseudo=batch["is_pseudo"],
        corr=corr,
        pred_fake=[[t[:2] for t in s] for s in pred],
        pred_real=[[t[2:] for t in s] for s in pred],
    )
    ref = ref_generator_terms(lcfg, x, vgg, mcfg.warp_stride, 100.0)
    ref["warped_mask"] = (
        ref_warped_mask(corr.warped_mask, x.label, x.exemplar_label, 4, ignore_zero=False) * 100
    )
    ref["total"] = sum(v for k, v in ref.items() if k != "total")
    _assert_terms_equal(result.terms, {k: v.detach() for k, v in ref.items()})

    # The exemplar adaptor ran twice (exemplar, then ground truth): its vectors advanced twice.
    weight = adaptor_sn.original.detach()
    u1, v1, _ = ref_power_iteration(weight, u0, v0)
    u2, v2, _ = ref_power_iteration(weight, u1, v1)
    stepped = _sn_layers(trainer.generator.corr.exemplar_adaptor)[0].parametrizations.weight[0]
    torch.testing.assert_close(stepped._u, u2)
    torch.testing.assert_close(stepped._v, v2)
