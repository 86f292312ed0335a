"""Translate an evaluation split with its retrieved exemplars and lay the results out as folders
that the metrics read (one file per query id in each):

    fake/            the synthesised images (PNG, or JPEG at a given quality: the format moves FID)
    real/            the ground truth at the network's resolution (PNG)
    warped/          the exemplar warped by the learned correspondence (PNG)
    exemplar/        the exemplar photo (PNG)
    label/, exemplar_label/   class-id maps of query and exemplar (PNG), where the dataset has them
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .io import write_image
from .models.correspondence import CorrespondenceNet
from .models.translation import TranslationNet
from .training.data import PairExamples
from .visualize import image_grid

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


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """B x 3 x H x W in [-1, 1] -> B x H x W x 3 uint8 (round half up, as torchvision's save)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5 + 0.5).floor()
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()


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
        b = {k: v.to(device) for k, v in batch.items()}
        warp = corr(
            b["input"], b["exemplar"], b["exemplar_input"], hide_exemplar_label=hide_exemplar_label
        )
        fake = gen(b["input"], warp.warped)
        if preview is None:
            preview = image_grid([b["input"], b["exemplar"], warp.warped, fake, b["image"]])
        images = {
            "fake": to_uint8(fake),
            "real": to_uint8(b["image"]),
            "warped": to_uint8(warp.warped),
            "exemplar": to_uint8(b["exemplar"]),
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
                for name, key in (("label", "label"), ("exemplar_label", "exemplar_label")):
                    ids = batch[key][i].numpy()
                    if ids.max() > 255:
                        raise ValueError("label maps with ids > 255 cannot be stored as 8-bit PNG")
                    write_image(out / name / f"{query}.png", ids.astype(np.uint8))
            count += 1
    return EvalFolders(out, image_format, count, has_labels), preview
