"""Semantic masks with an ADE20k scene parser (UPerNet), for datasets that come without labels.

Output convention (CoCosNet / ADE20k SceneParsing): an H x W uint8 label map with ids 0..150,
0 = "other / unlabelled" and 1..150 the ADE20k classes. The ADE20k UPerNet models predict 150
classes 0..149, so every prediction is shifted by one (a segmenter never outputs 0).

Backends:

* ``transformers`` (default): ``UperNetForSemanticSegmentation`` loaded from a LOCAL folder (never
  the hub) as written by ``save_pretrained`` / downloaded from e.g. ``openmmlab/upernet-convnext-
  small``: ``config.json`` plus ``model.safetensors`` (preferred) or ``pytorch_model.bin`` (read
  only with ``torch.load(weights_only=True)``; no pickled objects), and optionally
  ``preprocessor_config.json`` whose ``image_mean`` / ``image_std`` / ``do_rescale`` /
  ``rescale_factor`` / ``do_normalize`` are honoured (default: ImageNet mean/std on [0, 1]).
  Preprocessing: the image is resized (bilinear, antialiased) so that its shorter side is
  ``short_side`` (aspect ratio kept), normalised, run at batch size 1 under
  ``torch.inference_mode``; the logits are upsampled bilinearly to the original size and arg-maxed.
* ``mmseg``: an MMSegmentation config (``*.py``) and checkpoint (``*.pth``) in the folder, run with
  ``mmseg.apis.init_model`` / ``inference_model`` (the config's own test pipeline does the
  resizing; ``short_side`` is ignored). MMSegmentation is not a dependency; install it with::

      pip install -U openmim && mim install mmengine "mmcv>=2.0.0" && pip install mmsegmentation

  (on CPU-only machines ``mmcv`` has no prebuilt wheel and compiles from source).

Integrity: the weight file's SHA-256 is always computed (:attr:`Segmenter.weights_sha256`) and,
when an expected digest is given, compared with it before anything is loaded.

:func:`masks_for_dataset` writes one ``<id>.png`` (mode ``L``) per manifest row of a prepared
dataset into an output directory of its own.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.manifest import inside_root, read_manifest
from ..data.prepare import MANIFEST
from ..files import load_tensor_state
from ..io import DEFAULT_MAX_PIXELS, read_image, write_image
from ..parallel import parallel_map
from ..weights import sha256_of

ADE20K_CLASSES = 150  # classes the scene parser predicts (0..149)
SEMANTIC_NC = ADE20K_CLASSES + 1  # label ids in the output maps (0 = other)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKENDS = ("transformers", "mmseg")
HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # in order of preference
HF_PREPROCESSOR = "preprocessor_config.json"
MMSEG_INSTALL = (
    'pip install -U openmim && mim install mmengine "mmcv>=2.0.0" && pip install mmsegmentation'
    " (mmcv compiles from source on CPU-only machines)"
)


class SegmentationError(RuntimeError):
    """The segmentation model folder is missing, incomplete, corrupt or unusable."""


@dataclass(frozen=True)
class SegmenterSpec:
    """Everything needed to (re)build a :class:`Segmenter`; picklable, for worker processes."""

    model_dir: str
    backend: str = "transformers"
    short_side: int = 512
    sha256: str | None = None  # expected digest of the weight file (None: not checked)
    device: str = "cpu"


def _model_files(model_dir: Path, backend: str) -> tuple[Path, Path]:
    """(config, weights) of a model folder, or a SegmentationError saying what is expected."""
    if backend == "transformers":
        expected = f"{HF_CONFIG} and {' or '.join(HF_WEIGHTS)} (as written by save_pretrained)"
        if not model_dir.is_dir():
            raise SegmentationError(
                f"segmentation model folder {model_dir} not found: expected a folder with "
                f"{expected}, e.g. a local download of openmmlab/upernet-convnext-small"
            )
        config = model_dir / HF_CONFIG
        weights = next((model_dir / w for w in HF_WEIGHTS if (model_dir / w).is_file()), None)
        if not config.is_file() or weights is None:
            have = ", ".join(sorted(p.name for p in model_dir.iterdir())) or "nothing"
            raise SegmentationError(
                f"segmentation model folder {model_dir} is incomplete: expected {expected}; "
                f"found {have} (sharded checkpoints are not supported: re-save as one file)"
            )
        return config, weights
    if backend == "mmseg":
        expected = "one MMSegmentation config (*.py) and one checkpoint (*.pth)"
        if not model_dir.is_dir():
            raise SegmentationError(
                f"segmentation model folder {model_dir} not found: expected {expected} in it"
            )
        configs, checkpoints = sorted(model_dir.glob("*.py")), sorted(model_dir.glob("*.pth"))
        if len(configs) != 1 or len(checkpoints) != 1:
            raise SegmentationError(
                f"segmentation model folder {model_dir}: expected {expected}, found "
                f"{len(configs)} config(s) and {len(checkpoints)} checkpoint(s)"
            )
        return configs[0], checkpoints[0]
    raise SegmentationError(f"unknown segmentation backend {backend!r}; known: {BACKENDS}")


def _verify(weights: Path, expected: str | None) -> str:
    digest = sha256_of(weights)
    if expected is not None and digest != expected.strip().lower():
        raise SegmentationError(
            f"{weights} has sha256 {digest}, expected {expected}: the file is corrupt or not the "
            "model that was registered"
        )
    return digest


def _normalisation(model_dir: Path) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, mean, std) from preprocessor_config.json, else ImageNet on [0, 1]."""
    scale, mean, std = 1 / 255, np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    path = model_dir / HF_PREPROCESSOR
    if not path.is_file():
        return scale, mean, std
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
        scale = float(cfg.get("rescale_factor", scale)) if cfg.get("do_rescale", True) else 1.0
        if cfg.get("do_normalize", True):
            mean = np.asarray(cfg.get("image_mean", mean), dtype=np.float64)
            std = np.asarray(cfg.get("image_std", std), dtype=np.float64)
        else:
            mean, std = np.zeros(3), np.ones(3)
    except (ValueError, TypeError, AttributeError) as err:
        raise SegmentationError(f"{path}: unusable preprocessor config ({err})") from None
    if mean.shape != (3,) or std.shape != (3,) or (std <= 0).any():
        raise SegmentationError(f"{path}: image_mean/image_std must be 3 values (std > 0)")
    return scale, mean, std


def load_scene_parser(config_path: Path, weights: Path, device: str) -> torch.nn.Module:
    """The transformers UperNet ADE20k parser of a folder, refused (SegmentationError) unless
    its config predicts the 150 classes and its weights match the config exactly."""
    try:
        from transformers import UperNetConfig, UperNetForSemanticSegmentation
    except ImportError:
        raise SegmentationError(
            'the transformers backend needs `pip install "transformers>=4.45"`'
        ) from None
    folder = config_path.parent
    try:
        config = UperNetConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise SegmentationError(f"{config_path}: not a UperNet config ({err})") from None
    if config.model_type != "upernet":
        raise SegmentationError(f"{config_path}: model_type {config.model_type!r}, not 'upernet'")
    if config.num_labels != ADE20K_CLASSES:
        raise SegmentationError(
            f"{config_path}: the model predicts {config.num_labels} classes; an ADE20k scene "
            f"parser predicts {ADE20K_CLASSES}"
        )
    if weights.suffix == ".safetensors":
        try:
            model, info = UperNetForSemanticSegmentation.from_pretrained(
                folder,
                config=config,
                local_files_only=True,
                use_safetensors=True,
                output_loading_info=True,
            )
        except (OSError, ValueError, RuntimeError) as err:
            raise SegmentationError(f"{weights}: cannot load the model ({err})") from None
        bad = [
            f"{len(v)} {kind.replace('_', ' ')} ({', '.join(sorted(map(str, v))[:5])}, ...)"
            for kind, v in info.items()
            if v
        ]
        if bad:  # from_pretrained would silently leave those weights random
            raise SegmentationError(f"{weights} does not match {config_path}: {'; '.join(bad)}")
    else:  # pytorch_model.bin: tensors only, never unpickled objects
        state = load_tensor_state(weights, SegmentationError)
        model = UperNetForSemanticSegmentation(config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise SegmentationError(f"{weights} does not match {config_path}: {err}") from None
    return model.to(device).eval()


class Segmenter:
    """ADE20k scene parser: ``segmenter(rgb uint8 H x W x 3)`` -> H x W uint8 ids in 1..150."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        backend: str = "transformers",
        short_side: int = 512,
        sha256: str | None = None,
        device: str = "cpu",
    ) -> None:
        if short_side < 32:  # the backbones downsample by 32
            raise ValueError(f"short_side must be at least 32, got {short_side}")
        self.model_dir = Path(model_dir)
        self.backend = backend
        self.short_side = short_side
        self.device = torch.device(device)
        config, weights = _model_files(self.model_dir, backend)
        if backend == "mmseg":
            try:
                from mmseg.apis import inference_model, init_model
            except ImportError:
                raise SegmentationError(
                    f"the mmseg backend needs MMSegmentation: {MMSEG_INSTALL}"
                ) from None
            self.weights_sha256 = _verify(weights, sha256)
            self._inference = inference_model
            self.model = init_model(str(config), str(weights), device=str(self.device))
            return
        self.weights_sha256 = _verify(weights, sha256)
        scale, mean, std = _normalisation(self.model_dir)
        self._scale = scale
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.model = load_scene_parser(config, weights, str(self.device))

    @classmethod
    def from_spec(cls, spec: SegmenterSpec) -> Segmenter:
        return cls(
            spec.model_dir,
            backend=spec.backend,
            short_side=spec.short_side,
            sha256=spec.sha256,
            device=spec.device,
        )

    def _input_size(self, height: int, width: int) -> tuple[int, int]:
        s = self.short_side
        if height <= width:
            return s, max(1, round(width * s / height))
        return max(1, round(height * s / width)), s

    @torch.inference_mode()
    def logits(self, rgb: np.ndarray) -> torch.Tensor:
        """1 x 150 x H x W class scores at the size of ``rgb`` (transformers backend)."""
        height, width = rgb.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
        size = self._input_size(height, width)
        if size != (height, width):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = (x * self._scale - self._mean) / self._std
        out = self.model(pixel_values=x.to(self.device)).logits.float()
        return F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
            raise ValueError(f"expected an RGB uint8 H x W x 3 image, got {rgb.dtype} {rgb.shape}")
        if self.backend == "mmseg":
            with torch.inference_mode():
                result = self._inference(self.model, np.ascontiguousarray(rgb[:, :, ::-1]))
            ids = result.pred_sem_seg.data[0].cpu().numpy()  # mmseg reads arrays as BGR
        else:
            ids = self.logits(rgb).argmax(dim=1)[0].cpu().numpy()
        if ids.shape != rgb.shape[:2]:
            raise SegmentationError(f"prediction {ids.shape} does not match image {rgb.shape[:2]}")
        return (ids.astype(np.int64) + 1).clip(0, ADE20K_CLASSES).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _cached(spec: SegmenterSpec) -> Segmenter:
    """One model per process (the main one, or each worker of a pool / Dask cluster)."""
    return Segmenter.from_spec(spec)


def _mask_file(task: tuple[SegmenterSpec, str, str, int]) -> str:
    """Worker: read one image, write its label map; returns the output path."""
    spec, image_path, out_path, max_pixels = task
    write_image(out_path, _cached(spec)(read_image(image_path, max_pixels=max_pixels)))
    return out_path


def masks_for_dataset(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    spec: SegmenterSpec,
    *,
    workers: int = 1,
    dask_address: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, str]:
    """Write ``out_dir/<id>.png`` (ids 0..150, mode L) for every manifest row.

    The model is loaded (and its digest checked) here first, so a bad model folder fails before
    any work is spread; with ``workers > 1`` or a Dask cluster each worker loads its own copy.
    Maps whose id is no longer in the manifest are removed afterwards. Returns the number of maps
    written and the weight file's sha256.
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    data, out = dataset_dir.resolve(), out_dir.resolve()
    if out.is_relative_to(data) or data.is_relative_to(out):
        raise ValueError(f"masks must go to a directory of their own: {out_dir} overlaps {data}")
    rows = read_manifest(dataset_dir / MANIFEST, root=dataset_dir)
    digest = _cached(spec).weights_sha256
    tasks = [
        (
            spec,
            str(inside_root(dataset_dir, row["image"])),
            str(inside_root(out_dir, f"{row['id']}.png")),
            max_pixels,
        )
        for row in rows
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = parallel_map(
        _mask_file, tasks, workers=workers, dask_address=dask_address, desc="masks", chunksize=1
    )
    expected = {Path(p) for p in written}
    for stale in out_dir.resolve().rglob("*.png"):
        if stale not in expected:
            stale.unlink()
    return len(written), digest
