"""Registry of the pretrained files the pipeline needs: name, file name, URL, checksum, loader.

Files live in a weights directory (``weights/`` at the repo root by default; the caller passes it).
Nothing here reads the environment. Before a file is used its SHA-256 is checked against the
registry: the full digest where it is published, or the 8-hex-digit prefix that torchvision and
pytorch-fid embed in their file names. For a file with no published digest, ``cocosnet weights
add`` records the digest of the copy the user registered (in ``weights/lock.json``) and every later
use is checked against that record, so a file that changes afterwards is refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .files import atomic_path, load_tensor_state, one_line, write_text_atomic

LOCK_FILE = "lock.json"


@dataclass(frozen=True)
class WeightSpec:
    name: str
    filename: str
    url: str
    description: str
    sha256: str | None = None  # full digest, where published
    sha256_prefix: str | None = None  # leading hex digits embedded in the official file name
    # For a model stored as a folder (filename is then the folder): the files it must hold; the
    # first one carries the weights and is the one checksummed. Others listed in ``optional``.
    files: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


REGISTRY: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in [
        WeightSpec(
            "vgg19_caffe",
            "vgg19_conv.pth",
            "https://drive.google.com/file/d/1fp7DAiXdf0Ay-jANb8f0RHYLTRyjNv4m/view",
            "Caffe VGG19 converted to PyTorch (conv layers only), used by CoCosNet's losses and "
            "by the authors' semantic-consistency / style-relevance metrics",
        ),
        WeightSpec(
            "vgg19_torchvision",
            "vgg19-dcbb9e9d.pth",
            "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
            "torchvision ImageNet VGG19 (used for exemplar retrieval embeddings)",
            sha256_prefix="dcbb9e9d",
        ),
        WeightSpec(
            "inception_fid",
            "weights-inception-2015-12-05-6726825d.pth",
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
            "InceptionV3 with the TF 2015-12-05 FID weights, torch-fidelity's file "
            "(torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3)",
            # Not published by torch-fidelity; the digest that independent public records give for
            # this file (95,628,359 bytes; the same bytes as pytorch-fid's pt_inception-...-6726825d
            # .pth). It starts with the 8 hex digits in the file name, the pytorch-fid convention.
            sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
            sha256_prefix="6726825d",
        ),
        WeightSpec(
            "openpose_body_prototxt",
            "pose_deploy_linevec.prototxt",
            "https://raw.githubusercontent.com/CMU-Perceptual-Computing-Lab/openpose/master/"
            "models/pose/coco/pose_deploy_linevec.prototxt",
            "OpenPose COCO body model definition (Caffe prototxt)",
        ),
        WeightSpec(
            "openpose_body_caffemodel",
            "pose_iter_440000.caffemodel",
            "http://posefs1.perception.cs.cmu.edu/OpenPose/models/pose/coco/pose_iter_440000.caffemodel",
            "OpenPose COCO body model weights (Caffe)",
        ),
        WeightSpec(
            "upernet_ade20k",
            "upernet_ade20k",
            "https://huggingface.co/openmmlab/upernet-convnext-small",
            "UPerNet ADE20k scene parser as a transformers UperNetForSemanticSegmentation "
            "folder, for masks of datasets without labels",
            files=("model.safetensors", "config.json"),
            optional=("preprocessor_config.json",),
        ),
    ]
}


class WeightsError(RuntimeError):
    """A pretrained file is missing, unknown, or fails its checksum."""


def spec(name: str) -> WeightSpec:
    if name not in REGISTRY:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _lock(weights_dir: Path) -> dict[str, str]:
    path = weights_dir / LOCK_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise WeightsError(f"{path} must map file names to sha256 digests")
    return data


def _check_digest(
    s: WeightSpec, path: Path, digest: str, recorded: str | None, registering: bool = False
) -> None:
    expected = s.sha256 or recorded
    if not (expected or s.sha256_prefix or registering):
        raise WeightsError(
            f"{path} has no checksum to verify it against ({s.name} publishes none): register it "
            f"once with `cocosnet weights add {s.name} {path}` to record its sha256"
        )
    if expected and digest != expected:
        raise WeightsError(
            f"{path} has sha256 {digest}, expected {expected} for {s.name}: the file is corrupt "
            f"or not the official one; get it again from {s.url}"
        )
    if s.sha256_prefix and not digest.startswith(s.sha256_prefix):
        raise WeightsError(
            f"{path} has sha256 {digest[:16]}..., expected it to start with {s.sha256_prefix} "
            f"({s.name}); get it again from {s.url}"
        )


def _weights_file(s: WeightSpec, path: Path) -> Path:
    """The file whose digest identifies the weights: the file itself, or a folder's first file."""
    return path / s.files[0] if s.files else path


def resolve(name: str, weights_dir: str | Path) -> Path:
    """Path of a registered file (or folder) after its checksum passed; a clear error if it is
    missing."""
    s = spec(name)
    weights_dir = Path(weights_dir)
    path = weights_dir / s.filename
    missing = [f for f in s.files if not (path / f).is_file()] if s.files else []
    if not (path.is_dir() if s.files else path.is_file()) or missing:
        what = f"folder {path} with {', '.join(s.files)}" if s.files else f"file {path}"
        raise WeightsError(
            f"missing pretrained {what} ({s.name}: {s.description}).\n"
            f"Download it from {s.url} and register it with:\n"
            f"  cocosnet weights add {s.name} /path/to/{s.filename} --weights-dir {weights_dir}"
        )
    target = _weights_file(s, path)
    key = target.relative_to(weights_dir).as_posix()
    _check_digest(s, target, sha256_of(target), _lock(weights_dir).get(key))
    return path


def add(
    name: str,
    source: str | Path,
    weights_dir: str | Path,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Copy a local file (or model folder) into the weights directory after checking it
    (``check``: that it loads as its loader loads it, see :mod:`cocosnet.weight_checks`),
    recording its digest."""
    s = spec(name)
    source = Path(source)
    if s.files:
        missing = [f for f in s.files if not (source / f).is_file()]
        if not source.is_dir() or missing:
            raise WeightsError(f"{source} must be a folder holding {', '.join(s.files)}")
    elif not source.is_file():
        raise WeightsError(f"{source} is not a file")
    if check is not None:
        check(source)
    weights_dir = Path(weights_dir)
    digest = sha256_of(_weights_file(s, source))
    _check_digest(s, source, digest, None, registering=True)
    dest = weights_dir / s.filename
    copies = (
        [(source / f, dest / f) for f in (*s.files, *s.optional) if (source / f).is_file()]
        if s.files
        else [(source, dest)]
    )
    for src, dst in copies:
        if src.resolve() != dst.resolve():
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
    lock = _lock(weights_dir)
    lock[_weights_file(s, dest).relative_to(weights_dir).as_posix()] = digest
    write_text_atomic(weights_dir / LOCK_FILE, json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return dest


def fetch(name: str, weights_dir: str | Path) -> Path:
    """Download a file from its official URL (only where there is internet), then ``add`` it.

    Only files whose digest is published can be fetched: anything else (a folder, a page that
    must be clicked through) has to be downloaded by hand, so that an HTML page or a wrong file
    is never recorded as the trusted copy.
    """
    s = spec(name)
    if s.files or not (s.sha256 or s.sha256_prefix):
        raise WeightsError(
            f"{s.name} cannot be fetched automatically (no published checksum to verify the "
            f"download against); download it from {s.url} and use `cocosnet weights add "
            f"{s.name} PATH`"
        )
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    part = weights_dir / (s.filename + ".part")
    from torch.hub import download_url_to_file  # progress bar, and the digest checked on the way

    try:
        download_url_to_file(s.url, str(part), hash_prefix=s.sha256 or s.sha256_prefix)
    except (OSError, RuntimeError) as err:  # network errors; RuntimeError: a digest mismatch
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"could not download {s.name} from {s.url} ({one_line(str(err))}); download it by "
            f"hand and use `cocosnet weights add {s.name} PATH`"
        ) from None
    try:
        return add(name, part, weights_dir)
    finally:
        part.unlink(missing_ok=True)


def status(weights_dir: str | Path) -> list[dict]:
    """One row per registered file: present, verified, or the reason it is not usable."""
    rows = []
    for name, s in sorted(REGISTRY.items()):
        row = {"name": name, "file": s.filename, "url": s.url}
        try:
            resolve(name, weights_dir)
            row["status"] = "ok"
        except WeightsError as err:
            row["status"] = str(err).splitlines()[0]
        rows.append(row)
    return rows


def load_state_dict(name: str, weights_dir: str | Path) -> dict[str, torch.Tensor]:
    """Verify and load a PyTorch state dict without unpickling arbitrary objects."""
    return load_tensor_state(resolve(name, weights_dir), WeightsError, tensors_only=False)
