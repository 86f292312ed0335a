"""The image metrics behind one interface: each reads folders of images (matched by file stem)
and returns a dict of numbers, or is reported as skipped with the reason (missing pretrained
weights, missing label maps) — never computed with random weights.

| metric | reads | weights |
|---|---|---|
| fid | real, fake | inception_fid (torch-fidelity's InceptionV3) |
| swd | real, fake | none |
| semantic_consistency | real, fake, label | vgg19_caffe |
| style_relevance | fake, exemplar, label, exemplar_label | vgg19_caffe |
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..formats.tensors import image_to_tensor
from ..io import image_files, read_image, read_label
from ..weights import WeightsError, resolve, sha256_of


@dataclass(frozen=True)
class MetricInputs:
    """Folders of one evaluation; files are matched by stem (``<id>.png`` / ``<id>.jpg``)."""

    real: Path | None = None
    fake: Path | None = None
    label: Path | None = None
    exemplar: Path | None = None
    exemplar_label: Path | None = None
    num_classes: int | None = None


@dataclass(frozen=True)
class MetricOptions:
    weights_dir: Path = Path("weights")
    device: str = "cpu"
    batch_size: int = 16
    seed: int = 0
    cache_dir: Path | None = None  # where FID reference statistics are kept
    fid_protocol: str = "pytorch_fid"  # cocosnet.metrics.fid.PROTOCOLS
    # Semantic consistency and style relevance resize images and labels to N x N first (the
    # authors' scripts: 256); None scores each image at its label's size.
    resize: int | None = None


@dataclass(frozen=True)
class MetricSpec:
    name: str
    inputs: tuple[str, ...]
    weights: tuple[str, ...]
    run: Callable[[MetricInputs, MetricOptions, PretrainedCache], dict] = field(repr=False)


class PretrainedCache:
    """Pretrained files verified, and networks built, once per :func:`evaluate` call: the
    semantic and style metrics share one VGG19, and a file is hashed once for its report."""

    def __init__(self, options: MetricOptions):
        self.options = options
        self._digests: dict[str, str] = {}
        self._vgg = None

    def digest(self, name: str) -> str:
        """sha256 of a registered file after it passed its check (WeightsError otherwise)."""
        if name not in self._digests:
            self._digests[name] = sha256_of(resolve(name, self.options.weights_dir))
        return self._digests[name]

    def vgg(self):
        if self._vgg is None:
            from ..models.vgg import load_vgg19

            self._vgg = load_vgg19("caffe", self.options.weights_dir).to(self.options.device)
        return self._vgg


def stems(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the images in ``folder`` (refusing two files with one stem)."""
    found: dict[str, Path] = {}
    for path in image_files(folder):
        if path.stem in found:
            raise ValueError(f"{folder}: two images named {path.stem!r}")
        found[path.stem] = path
    if not found:
        raise ValueError(f"{folder}: no PNG/JPEG images")
    return found


def matched(inputs: MetricInputs, names: Sequence[str]) -> list[dict[str, Path]]:
    """One ``{folder name: path}`` per id present in every named folder; mismatches are errors."""
    listings = {n: stems(getattr(inputs, n)) for n in names}
    ids = set.intersection(*(set(v) for v in listings.values()))
    for n, listing in listings.items():
        extra = sorted(set(listing) - ids)
        if extra:
            raise ValueError(
                f"{getattr(inputs, n)}: {len(extra)} image(s) have no counterpart, e.g. {extra[:3]}"
            )
    return [{n: listings[n][i] for n in names} for i in sorted(ids)]


def _resized(array: np.ndarray, size: int | None, resample: Image.Resampling) -> np.ndarray:
    """``array`` (an RGB image or a label map) resized to size x size with Pillow, as the
    authors' scripts read their files; unchanged when ``size`` is None or already its size."""
    if size is None or array.shape[:2] == (size, size):
        return array
    return np.asarray(Image.fromarray(array).resize((size, size), resample))


def _batches(
    rows: list[dict[str, Path]], options: MetricOptions, desc: str
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of ``rows`` read onto the device (resized to ``options.resize``: images
    bilinear, labels nearest), with a progress bar (images) named ``desc``."""
    bar = tqdm(total=len(rows), desc=desc, unit="image", leave=False)
    size, bilinear, nearest = options.resize, Image.Resampling.BILINEAR, Image.Resampling.NEAREST
    for start in range(0, len(rows), options.batch_size):
        chunk = rows[start : start + options.batch_size]
        bar.update(len(chunk))
        out: dict[str, torch.Tensor] = {}
        for name in chunk[0]:
            if name.endswith("label"):
                arrays = [
                    torch.from_numpy(_resized(read_label(r[name]), size, nearest).astype(np.int64))
                    for r in chunk
                ]
            else:
                arrays = [image_to_tensor(_resized(read_image(r[name]), size, bilinear))
                          for r in chunk]  # fmt: skip
            out[name] = torch.stack(arrays).to(options.device)
        yield out
    bar.close()


def _fid(inputs: MetricInputs, options: MetricOptions, pretrained: PretrainedCache) -> dict:
    from .fid import fid_folders

    cache = options.cache_dir / "fid_real_stats.npz" if options.cache_dir else None
    return fid_folders(
        inputs.real,
        inputs.fake,
        options.weights_dir,
        batch_size=options.batch_size,
        device=options.device,
        real_stats_cache=cache,
        protocol=options.fid_protocol,
    )


def _swd(inputs: MetricInputs, options: MetricOptions, pretrained: PretrainedCache) -> dict:
    from .swd import swd_folders

    return swd_folders(inputs.real, inputs.fake, seed=options.seed)


def _semantic(inputs: MetricInputs, options: MetricOptions, pretrained: PretrainedCache) -> dict:
    from .semantic import SemanticConsistency

    meter = SemanticConsistency(pretrained.vgg(), inputs.num_classes)
    rows = matched(inputs, ("fake", "real", "label"))
    for b in _batches(rows, options, "semantic consistency"):
        meter.update(b["fake"], b["real"], b["label"])
    return meter.result()


def _style(inputs: MetricInputs, options: MetricOptions, pretrained: PretrainedCache) -> dict:
    from .style import StyleRelevance

    meter = StyleRelevance(pretrained.vgg(), inputs.num_classes)
    rows = matched(inputs, ("fake", "exemplar", "label", "exemplar_label"))
    for b in _batches(rows, options, "style relevance"):
        meter.update(b["fake"], b["exemplar"], b["label"], b["exemplar_label"])
    return meter.result()


METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        MetricSpec("fid", ("real", "fake"), ("inception_fid",), _fid),
        MetricSpec("swd", ("real", "fake"), (), _swd),
        MetricSpec("semantic_consistency", ("real", "fake", "label"), ("vgg19_caffe",), _semantic),
        MetricSpec(
            "style_relevance",
            ("fake", "exemplar", "label", "exemplar_label"),
            ("vgg19_caffe",),
            _style,
        ),
    )
}


def missing(spec: MetricSpec, inputs: MetricInputs, pretrained: PretrainedCache) -> str | None:
    """Why ``spec`` cannot run on these inputs (None when it can)."""
    absent = [n for n in spec.inputs if getattr(inputs, n) is None]
    if absent:
        return f"needs the {', '.join(absent)} folder(s)"
    if "label" in spec.inputs and not inputs.num_classes:
        return "needs the number of classes of the label maps"
    for name in spec.weights:
        try:
            pretrained.digest(name)
        except WeightsError as err:
            return str(err).splitlines()[0]
    return None


def evaluate(names: Sequence[str], inputs: MetricInputs, options: MetricOptions) -> dict[str, dict]:
    """Run the named metrics; each result is its numbers plus ``weights_sha256``, or
    ``{"skipped": reason}``."""
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    results, pretrained = {}, PretrainedCache(options)
    for name in names:
        spec = METRICS[name]
        reason = missing(spec, inputs, pretrained)
        if reason is not None:
            results[name] = {"skipped": reason}
            continue
        digests = {n: pretrained.digest(n) for n in spec.weights}
        results[name] = spec.run(inputs, options, pretrained) | {"weights_sha256": digests}
    return results


def folder_inputs(
    real: str | os.PathLike | None = None,
    fake: str | os.PathLike | None = None,
    label: str | os.PathLike | None = None,
    exemplar: str | os.PathLike | None = None,
    exemplar_label: str | os.PathLike | None = None,
    num_classes: int | None = None,
) -> MetricInputs:
    """MetricInputs from paths, each checked to be a folder."""
    paths = {
        "real": real,
        "fake": fake,
        "label": label,
        "exemplar": exemplar,
        "exemplar_label": exemplar_label,
    }
    for name, p in paths.items():
        if p is not None and not Path(p).is_dir():
            raise ValueError(f"--{name.replace('_', '-')}: {p} is not a folder")
    return MetricInputs(
        **{k: Path(v) if v is not None else None for k, v in paths.items()},
        num_classes=num_classes,
    )
