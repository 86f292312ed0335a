"""Evaluate a trained model: translate an evaluation split with its retrieved exemplars, lay the
results out as folders that the metrics read (one file per query id in each), run the metrics:

    fake/            the synthesised images (PNG, or JPEG at a given quality: the format moves FID)
    real/            the ground truth at the network's resolution (PNG)
    warped/          the exemplar warped by the learned correspondence (PNG)
    exemplar/        the exemplar photo (PNG)
    label/, exemplar_label/   class-id maps of query and exemplar (PNG), where the dataset has them
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .config import EvalConfig
from .data.examples import PairExamples
from .formats.tensors import to_uint8
from .io import write_image
from .metrics.colour_style import colour_style_folders, swap_response
from .metrics.correspondence import warp_accuracy
from .metrics.registry import MetricOptions, evaluate, folder_inputs
from .models.correspondence import CorrespondenceNet
from .models.translation import TranslationNet
from .visualize import GRID_CAPTIONS, image_grid

FOLDERS = ("fake", "real", "warped", "exemplar", "label", "exemplar_label")


@dataclass(frozen=True)
class EvalFolders:
    root: Path
    image_format: str  # "png" or "jpg"
    count: int
    has_labels: bool

    def __getitem__(self, name: str) -> Path:
        if name not in FOLDERS:
            raise KeyError(f"unknown evaluation folder {name!r}; known: {FOLDERS}")
        return self.root / name


@torch.no_grad()
def translate_pairs(
    corr: CorrespondenceNet,
    gen: TranslationNet,
    pairs: PairExamples,
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    hide_exemplar_label: bool = False,
    image_format: str = "png",
    jpeg_quality: int = 95,
    seed: int = 0,
) -> tuple[EvalFolders, np.ndarray]:
    """Translate every (query, exemplar) pair; returns the folders and a preview grid
    (input | exemplar | warped | output | ground truth) of the first batch."""
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be png or jpg, got {image_format!r}")
    out = Path(out_dir)
    corr.eval().to(device)
    gen.eval().to(device)
    torch.manual_seed(seed)  # the noise that stands in for a hidden exemplar mask
    loader = torch.utils.data.DataLoader(pairs, batch_size=batch_size)
    has_labels, preview, count = True, None, 0
    for batch in tqdm(loader, desc="translate", unit="batch"):
        on_device = {k: v.to(device) for k, v in batch.items()}
        input, exemplar, real = on_device["input"], on_device["exemplar"], on_device["image"]
        warp = corr(
            input, exemplar, on_device["exemplar_input"], hide_exemplar_label=hide_exemplar_label
        )
        fake = gen(input, warp.warped)
        if preview is None:
            preview = image_grid([input, exemplar, warp.warped, fake, real], captions=GRID_CAPTIONS)
        images = {
            "fake": to_uint8(fake),
            "real": to_uint8(real),
            "warped": to_uint8(warp.warped),
            "exemplar": to_uint8(exemplar),
        }
        labelled = bool((batch["label"] >= 0).all() and (batch["exemplar_label"] >= 0).all())
        has_labels &= labelled
        for i, index in enumerate(batch["index"].tolist()):
            query = pairs.pairs[index][0]
            for name, arr in images.items():
                ext = image_format if name == "fake" else "png"
                quality = {"quality": jpeg_quality} if ext == "jpg" else {}
                write_image(out / name / f"{query}.{ext}", arr[i], **quality)
            if labelled:
                for name in ("label", "exemplar_label"):
                    ids = batch[name][i].numpy()
                    if ids.max() > 255:
                        raise ValueError("label maps with ids > 255 cannot be stored as 8-bit PNG")
                    write_image(out / name / f"{query}.png", ids.astype(np.uint8))
            count += 1
    return EvalFolders(out, image_format, count, has_labels), preview


@torch.no_grad()
def swap_test(
    corr: CorrespondenceNet,
    gen: TranslationNet,
    pairs: PairExamples,
    *,
    num_classes: int,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    hide_exemplar_label: bool = False,
    seed: int = 0,
) -> dict[str, float | int]:
    """Each query translated with its own exemplar and with the exemplar of the query half the
    set away (another scene, other colours): the mean :func:`swap_response` over the queries
    (1: the output's class colours move as the exemplars' do, 0: they do not move)."""
    n, responses = len(pairs), []
    for start in range(0, n, batch_size):
        own = [pairs[i] for i in range(start, min(n, start + batch_size))]
        other = [pairs[(i + n // 2) % n] for i in range(start, start + len(own))]
        query = torch.stack([s["input"] for s in own]).to(device)
        fakes, exemplars = [], []
        for side in (own, other):
            exemplar = torch.stack([s["exemplar"] for s in side]).to(device)
            exemplar_input = torch.stack([s["exemplar_input"] for s in side]).to(device)
            torch.manual_seed(seed)  # both sides get the same noise for a hidden exemplar mask
            warp = corr(query, exemplar, exemplar_input, hide_exemplar_label=hide_exemplar_label)
            fakes.append(to_uint8(gen(query, warp.warped)))
            exemplars.append(to_uint8(exemplar))
        for i, sample in enumerate(own):
            labels = (sample["exemplar_label"].numpy(), other[i]["exemplar_label"].numpy())
            responses.append(
                swap_response(
                    (fakes[0][i], fakes[1][i]),
                    (exemplars[0][i], exemplars[1][i]),
                    sample["label"].numpy(),
                    labels,
                    num_classes,
                )
            )
    scored = [r for r in responses if not np.isnan(r)]
    mean = float(np.mean(scored)) if scored else float("nan")
    return {"swap_response": mean, "swap_queries": len(scored)}


def exemplar_label_hidden(exemplar_mask: str, mask_epoch: int | None) -> bool:
    """Whether the correspondence network sees noise instead of the exemplar's mask:
    ``eval.exemplar_mask``, where ``auto`` follows training (hidden when ``train.mask_epoch``
    replaced the mask by noise)."""
    return {"given": False, "hidden": True, "auto": mask_epoch is not None}[exemplar_mask]


def evaluate_model(
    corr: CorrespondenceNet,
    gen: TranslationNet,
    pairs: PairExamples,
    out_dir: Path,
    cfg: EvalConfig,
    *,
    device: str,
    hide_exemplar_label: bool,
    label_input: bool,  # the network's input is a label map (not edges or a pose)
    num_classes: int,
    object_classes: Sequence[int],
    weights_dir: Path,
    class_prior: np.ndarray | None = None,
    ignore_class: int | None = None,
    metric_size: int | None = None,
) -> tuple[dict[str, dict], EvalFolders, np.ndarray]:
    """Translate ``pairs`` into OUT_DIR/images and run ``cfg.metrics`` on them (FID reference
    statistics cached in OUT_DIR/cache); returns the results by metric, the folders and a
    preview grid. The label-based metrics need label maps of inputs and exemplars; colour
    style relevance also the training set's ``class_prior`` (class ``ignore_class``: not a
    class, e.g. ADE20k's 0). Semantic consistency and style relevance resize to
    ``metric_size`` (:meth:`EvalConfig.metric_size`)."""
    (out_dir / "cache").mkdir(parents=True, exist_ok=True)
    folders, preview = translate_pairs(
        corr,
        gen,
        pairs,
        out_dir / "images",
        batch_size=cfg.batch_size,
        device=device,
        hide_exemplar_label=hide_exemplar_label,
        image_format=cfg.image_format,
        jpeg_quality=cfg.jpeg_quality,
        seed=cfg.seed,
    )
    labels = folders.has_labels and label_input
    inputs = folder_inputs(
        folders["real"],
        folders["fake"],
        folders["label"] if labels else None,
        folders["exemplar"],
        folders["exemplar_label"] if labels else None,
        num_classes=num_classes if labels else None,
    )
    options = MetricOptions(
        weights_dir=weights_dir, device=device, batch_size=cfg.batch_size, seed=cfg.seed,
        cache_dir=out_dir / "cache", fid_protocol=cfg.fid_protocol, resize=metric_size,
    )  # fmt: skip
    own = ("warp_accuracy", "colour_style")  # computed here, not by the folder metrics
    results = evaluate([m for m in cfg.metrics if m not in own], inputs, options)
    if "colour_style" in cfg.metrics:
        results["colour_style"] = {
            "skipped": "needs label maps of inputs and exemplars and the class prior"
        }
        if labels and class_prior is not None:
            colour = colour_style_folders(
                {name: folders[name] for name in FOLDERS}, class_prior, ignore_class=ignore_class
            )
            swap = {"num_classes": num_classes, "batch_size": cfg.batch_size, "seed": cfg.seed}
            results["colour_style"] = colour | swap_test(
                corr, gen, pairs, device=device, hide_exemplar_label=hide_exemplar_label, **swap
            )
    if "warp_accuracy" in cfg.metrics:
        if labels:
            loader = torch.utils.data.DataLoader(pairs, batch_size=cfg.batch_size)
            torch.manual_seed(cfg.seed)  # the noise that stands in for a hidden exemplar mask
            results["warp_accuracy"] = warp_accuracy(
                corr,
                loader,
                object_classes=object_classes,
                hide_exemplar_label=hide_exemplar_label,
                device=device,
            )
        else:
            results["warp_accuracy"] = {"skipped": "needs label maps of inputs and exemplars"}
    return results, folders, preview
