"""Run an exported model on prepared inputs: one pair, or many in batches (see prepare.py for
the geometry and the hidden-mask noise)."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import EdgesConfig
from ..formats.tensors import to_uint8
from ..io import (
    read_image,
    write_image,
)
from ..models.export import load_generator
from ..models.runtime import GeneratorRuntime, RuntimeOptions
from .domain import Domain
from .prepare import OUTPUT_SUFFIXES, Prepared, prepare_exemplar, prepare_input


class Translator:
    """An exported model (``model.json`` + safetensors) ready to translate batches.

    ``hide_exemplar_label``: whether exemplar inputs given to :meth:`translate` are replaced by
    noise, as after the training's mask warm-up. ``None`` would follow the training, but
    ``model.json`` records only the architecture, so it means False: an exemplar input, when
    given, is shown. Without exemplar inputs the noise is used either way. ``seed`` fixes that
    noise (see the module docstring). ``runtime`` picks precision, layout and compilation
    (:mod:`cocosnet.models.runtime`; default float32, eager).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        hide_exemplar_label: bool | None = None,
        seed: int = 0,
        runtime: RuntimeOptions | None = None,
    ):
        try:
            self.device = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"unknown device {device!r} ({err})") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        self.cfg, corr, gen = load_generator(model_dir)
        self.runtime = GeneratorRuntime(corr.to(self.device), gen.to(self.device), runtime)
        self.corr, self.gen = self.runtime.corr, self.runtime.gen
        self.hide_exemplar_label = bool(hide_exemplar_label)
        self.seed = seed

    @property
    def size(self) -> int:
        return self.cfg.image_size

    @property
    def semantic_nc(self) -> int:
        return self.cfg.semantic_nc

    def _exemplar_label(
        self, batch: int, exemplar_inputs: torch.Tensor | None
    ) -> torch.Tensor | None:
        """What maskmix sees for the exemplar: its input, or seeded noise on the grid."""
        if not self.cfg.maskmix:
            return None  # the exemplar mask would only feed the (unused) warped mask
        if exemplar_inputs is not None and not self.hide_exemplar_label:
            return exemplar_inputs.to(self.device)
        grid = self.size // self.cfg.warp_stride
        gen = torch.Generator().manual_seed(self.seed)
        # The draw the network makes itself (0.01 randn_like) for a batch of one, for every sample.
        noise = 0.01 * torch.randn((1, self.semantic_nc, grid, grid), generator=gen)
        return noise.expand(batch, -1, -1, -1).to(self.device)

    @torch.inference_mode()
    def translate(
        self,
        inputs: torch.Tensor,
        exemplars: torch.Tensor,
        exemplar_inputs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """B x C x S x S inputs, B x 3 x S x S exemplars in [-1, 1] (and optionally the
        exemplars' own B x C x S x S inputs) -> (output, warped exemplar), B x 3 x S x S."""
        s, c = self.size, self.semantic_nc
        expected = {"inputs": (c, s, s), "exemplars": (3, s, s), "exemplar_inputs": (c, s, s)}
        given = {"inputs": inputs, "exemplars": exemplars, "exemplar_inputs": exemplar_inputs}
        for name, x in given.items():
            if x is not None and (x.ndim != 4 or tuple(x.shape[1:]) != expected[name]):
                raise ValueError(
                    f"{name} must be B x {' x '.join(map(str, expected[name]))}, "
                    f"got {tuple(x.shape)}"
                )
            if x is not None and x.shape[0] != inputs.shape[0]:
                raise ValueError(f"{name} has batch {x.shape[0]}, inputs {inputs.shape[0]}")
        inputs, exemplars = inputs.to(self.device), exemplars.to(self.device)
        label = self._exemplar_label(inputs.shape[0], exemplar_inputs)
        return self.runtime(inputs, exemplars, label)


@dataclass(frozen=True)
class Job:
    """One translation: input, exemplar, output file; optionally the warped exemplar's file and
    the exemplar's own input (its mask, edges or pose)."""

    input: Path
    exemplar: Path
    out: Path
    warped: Path | None = None
    exemplar_input: Path | None = None
    source: str | None = None  # where the job was given, e.g. "pairs.txt:3", for messages


def _check_out(path: Path) -> None:
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"{path}: output must end in {', '.join(OUTPUT_SUFFIXES)}")


def translate_many(
    translator: Translator,
    pairs: Sequence[Job | tuple],
    *,
    domain: Domain = "auto",
    batch_size: int = 8,
    warped_dir: str | os.PathLike | None = None,
    pose_size: tuple[int, int] | None = None,
    edges: EdgesConfig | None = None,
    progress: bool = True,
) -> list[Path]:
    """Translate ``pairs`` ((input, exemplar, out[, exemplar_input]) or :class:`Job`) in batches
    and write each output (and warped exemplar, to ``warped_dir/<out name>`` or the job's own
    path) at its input's original size. Returns the outputs written."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    jobs = []
    for pair in pairs:
        job = pair if isinstance(pair, Job) else _tuple_job(pair)
        if warped_dir is not None:
            job = dataclasses.replace(job, warped=Path(warped_dir) / job.out.name)
        for path in (job.out, job.warped):
            if path is not None:
                _check_out(path)
        jobs.append(job)
    if len({j.exemplar_input is None for j in jobs}) > 1:
        raise ValueError("give an exemplar input for every pair or for none")
    s, c = translator.size, translator.semantic_nc
    prepare = functools.partial(prepare_input, semantic_nc=c, size=s, domain=domain, edges=edges)
    exemplar = functools.lru_cache(maxsize=64)(functools.partial(prepare_exemplar, size=s))
    written = []
    with tqdm(total=len(jobs), desc="translate", unit="image", disable=not progress) as bar:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            inputs = [prepare(j.input, canvas=pose_size) for j in chunk]
            exemplars = [exemplar(j.exemplar) for j in chunk]
            ex_inputs = None
            if chunk[0].exemplar_input is not None:
                ex_inputs = torch.stack(
                    [
                        _exemplar_input(prepare, j.exemplar_input, e)
                        for j, e in zip(chunk, exemplars, strict=True)
                    ]
                )
            out, warped = translator.translate(
                torch.stack([p.tensor for p in inputs]),
                torch.stack([e.tensor for e in exemplars]),
                ex_inputs,
            )
            for i, (job, prepared) in enumerate(zip(chunk, inputs, strict=True)):
                write_image(job.out, to_uint8(prepared.box.restore(out[i : i + 1].cpu()))[0])
                if job.warped is not None:
                    image = to_uint8(prepared.box.restore(warped[i : i + 1].cpu()))[0]
                    write_image(job.warped, image)
                written.append(job.out)
            bar.update(len(chunk))
    return written


def _tuple_job(pair: tuple) -> Job:
    if len(pair) not in (3, 4):
        raise ValueError(f"a pair is (input, exemplar, out[, exemplar_input]), got {pair!r}")
    ex_input = Path(pair[3]) if len(pair) == 4 and pair[3] is not None else None
    return Job(Path(pair[0]), Path(pair[1]), Path(pair[2]), exemplar_input=ex_input)


def _exemplar_input(
    prepare: Callable[..., Prepared], path: Path, exemplar: Prepared
) -> torch.Tensor:
    """The exemplar's own input, which must share the exemplar photo's size."""
    box = exemplar.box
    prepared = prepare(path, canvas=(box.height, box.width))
    if (prepared.box.height, prepared.box.width) != (box.height, box.width):
        raise ValueError(
            f"exemplar input {path} is {prepared.box.width}x{prepared.box.height} but exemplar "
            f"{exemplar.path} is {box.width}x{box.height}"
        )
    return prepared.tensor


def translate_files(
    translator: Translator,
    input_path: str | os.PathLike,
    exemplar_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    warped_path: str | os.PathLike | None = None,
    exemplar_input: str | os.PathLike | None = None,
    domain: Domain = "auto",
    pose_size: tuple[int, int] | None = None,
    edges: EdgesConfig | None = None,
) -> np.ndarray:
    """Translate one pair, write the output (and the warped exemplar); returns the output."""
    job = Job(
        Path(input_path),
        Path(exemplar_path),
        Path(out_path),
        Path(warped_path) if warped_path is not None else None,
        Path(exemplar_input) if exemplar_input is not None else None,
    )
    translate_many(
        translator, [job], domain=domain, pose_size=pose_size, edges=edges, progress=False
    )
    return read_image(job.out)
