"""Fréchet Inception Distance: Inception pool3 features -> float64 statistics -> distance.

The network is the TF 2015-12-05 FID InceptionV3 in torch-fidelity's layout (the same weights
pytorch-fid ships). Two protocols feed it (``eval.fid_protocol``), and they differ by 0.1-1.7%
of FID on the same images:

* ``pytorch_fid``, the CoCosNet authors': uint8 / 255, PyTorch bilinear resize to 299
  (align_corners=False), then 2x - 1, as ``pytorch_fid.inception.InceptionV3`` with
  ``resize_input`` and ``normalize_input``;
* ``torch_fidelity``: torch-fidelity's own forward, a TF1-style bilinear resize of the uint8
  values, then (x - 128) / 128, as the original TF FID.

Statistics are streamed in float64 (count, sum, sum of outer products) so batch size does not
matter. The distance's trace term is the sum of the square roots of the eigenvalues of
sigma1 · sigma2, computed on the symmetric matrix sigma1^½ sigma2 sigma1^½ (same eigenvalues):
two symmetric eigendecompositions instead of scipy's general ``sqrtm`` (pytorch-fid's route,
13.5 s of each FID on 2 cores in bench/results/metrics.json). The image format is part of the
protocol (REFERENCE.md: JPEG vs PNG moves CelebA-HQ FID by 2.6): this module scores the files it
is given.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import weights
from ..files import atomic_path, load_tensor_state
from ..io import image_files, read_image

WEIGHTS_NAME = "inception_fid"
FEATURE_LAYER = "2048"  # torch-fidelity's name for the pool3 features
FidProtocol = Literal["pytorch_fid", "torch_fidelity"]
# How each protocol prepares the images (reported with every FID).
PROTOCOLS: dict[str, str] = {
    "pytorch_fid": "pytorch-fid (the CoCosNet authors'): uint8 / 255, PyTorch bilinear resize to "
    "299, 2x - 1",
    "torch_fidelity": "torch-fidelity: TF1-style bilinear resize to 299 of the uint8 values, "
    "(x - 128) / 128",
}
# Bump when anything that changes features or statistics changes; part of every cache key.
PROTOCOL_VERSION = "fid/tf-fid-inceptionv3/pool3/float32/v2"
INPUT_SIZE = 299
# torch-fidelity's modules from the input to pool3, in order (pytorch-fid's blocks 0-3).
_TO_POOL3 = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "MaxPool_1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "MaxPool_2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
    "AvgPool",
)


def _torch_fidelity_inception(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """torch-fidelity's InceptionV3 holding ``state``, without letting it unpickle any file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    # Its __init__ always unpickles the path it is given with weights_only=False (or
    # downloads when given none). A file read twice could also be swapped between our check and
    # its load. So it gets no file: it gets an in-memory buffer that we wrote here with
    # torch.save from plain tensors already loaded with weights_only=True. The only pickle it
    # unpickles is ours; nothing is read from disk again or written to it.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        return FeatureExtractorInceptionV3(
            "inception-v3-compat", [FEATURE_LAYER], feature_extractor_weights_path=buffer
        )
    except RuntimeError as err:  # load_state_dict: missing / unexpected keys, wrong shapes
        raise weights.WeightsError(
            f"{WEIGHTS_NAME}: not torch-fidelity's InceptionV3 layout ({str(err)[:300]})"
        ) from None


class InceptionFeatures:
    """Pool3 (2048-d) features of uint8 RGB images, resized and scaled as ``protocol`` says."""

    def __init__(
        self,
        weights_dir: str | Path,
        device: str | torch.device = "cpu",
        protocol: FidProtocol = "pytorch_fid",
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown FID protocol {protocol!r}; known: {sorted(PROTOCOLS)}")
        self.protocol = protocol
        path = weights.resolve(WEIGHTS_NAME, weights_dir)
        data = path.read_bytes()
        # The digest of the bytes actually loaded (resolve checked the file a moment earlier).
        self.weights_sha256 = hashlib.sha256(data).hexdigest()
        try:
            state = load_tensor_state(data, weights.WeightsError)
        except weights.WeightsError as err:  # name the file, not the bytes
            raise weights.WeightsError(str(err).replace("<bytes>", str(path), 1)) from None
        self.device = torch.device(device)
        self.model = _torch_fidelity_inception(state).to(self.device)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W uint8 -> N x 2048 float64 (any H, W: resized to 299 inside)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected N x 3 x H x W uint8 images, got {tuple(images.shape)} {images.dtype}"
            )
        images = images.to(self.device)
        if self.protocol == "torch_fidelity":
            (features,) = self.model(images)
        else:
            x = F.interpolate(
                images.float() / 255.0, size=(INPUT_SIZE,) * 2, mode="bilinear",
                align_corners=False,
            )  # fmt: skip
            x = 2.0 * x - 1.0
            for name in _TO_POOL3:
                x = getattr(self.model, name)(x)
            features = x.flatten(1)
        return features.to("cpu", torch.float64)


class FeatureStats:
    """Count, sum and sum of outer products of feature vectors in float64; mergeable."""

    def __init__(self, dim: int | None = None) -> None:
        self.count = 0
        self._sum = None if dim is None else np.zeros(dim)
        self._outer = None if dim is None else np.zeros((dim, dim))

    def update(self, features: torch.Tensor | np.ndarray) -> None:
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be N x D, got shape {x.shape}")
        if self._sum is None:
            self._sum, self._outer = np.zeros(x.shape[1]), np.zeros((x.shape[1],) * 2)
        elif x.shape[1] != self._sum.shape[0]:
            raise ValueError(f"features have {x.shape[1]} dims, the statistics {self.dim}")
        self.count += x.shape[0]
        self._sum += x.sum(axis=0)
        self._outer += x.T @ x

    @property
    def dim(self) -> int | None:
        return None if self._sum is None else self._sum.shape[0]

    def merge(self, other: FeatureStats) -> None:
        """Add another set's statistics (e.g. another shard's) to these."""
        if other._sum is None:
            return
        if self._sum is None:
            self._sum, self._outer = np.zeros_like(other._sum), np.zeros_like(other._outer)
        elif other.dim != self.dim:
            raise ValueError(f"cannot merge {other.dim}-d statistics into {self.dim}-d ones")
        self.count += other.count
        self._sum += other._sum
        self._outer += other._outer

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased covariance (N - 1, as np.cov in pytorch-fid and torch-fidelity)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.count}")
        n = self.count
        mu = self._sum / n
        sigma = (self._outer - n * np.outer(mu, mu)) / (n - 1)
        return mu, sigma

    def save(self, path: str | Path, key: str) -> None:
        """Write to an .npz file, tagged with ``key`` (a hash of the inputs they came from)."""
        if self._sum is None:
            raise ValueError("no features to save")
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh, key=np.str_(key), count=np.int64(self.count), sum=self._sum, outer=self._outer
            )

    @classmethod
    def load(cls, path: str | Path, key: str) -> FeatureStats | None:
        """Statistics saved with the same ``key``; None if the file is absent or for other
        inputs. A file that is not such statistics is a ValueError."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != key:
                    return None
                count, total, outer = int(data["count"]), data["sum"], data["outer"]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}: not saved FeatureStats ({err})") from None
        if total.ndim != 1 or outer.shape != (total.shape[0],) * 2:
            raise ValueError(f"{path}: inconsistent FeatureStats shapes")
        stats = cls()
        stats.count = count
        stats._sum, stats._outer = total.astype(np.float64), outer.astype(np.float64)
        return stats


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance matrix (eigenvalues below 0 by rounding: 0)."""
    values, vectors = np.linalg.eigh(sigma)
    _check_not_negative(values, "a covariance")
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _check_not_negative(values: np.ndarray, what: str, tolerance: float = 1e-3) -> None:
    """pytorch-fid's test: a square root whose imaginary part exceeds 1e-3 is not rounding."""
    imaginary = float(np.sqrt(max(-values.min(), 0.0)))
    if imaginary > tolerance:
        raise ValueError(
            f"not {what}: an eigenvalue of {values.min():g} (its square root has imaginary "
            f"part {imaginary:g})"
        )


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """||mu1 - mu2||² + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^½).

    Tr((sigma1 sigma2)^½) is the sum of the square roots of the eigenvalues of sigma1 sigma2,
    which are those of the symmetric sigma1^½ sigma2 sigma1^½ (nonnegative for covariances)."""
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"mismatched statistics: {mu1.shape}, {sigma1.shape} vs {mu2.shape}, {sigma2.shape}"
        )
    root1 = _psd_sqrt(sigma1)
    product = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)  # symmetric up to rounding
    _check_not_negative(eigenvalues, "covariances (sigma1^½ sigma2 sigma1^½)")
    trace_covmean = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)


def _same_shape_runs(images: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """Consecutive images grouped by size, so that each group stacks into one batch."""
    runs: list[list[np.ndarray]] = []
    for image in images:
        if runs and runs[-1][0].shape == image.shape:
            runs[-1].append(image)
        else:
            runs.append([image])
    return runs


def image_folder_stats(
    folder: str | Path,
    features: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 50,
) -> FeatureStats:
    """Feature statistics of every PNG / JPEG file in ``folder`` (read as RGB uint8)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    files = image_files(folder)
    if not files:
        raise ValueError(f"{folder} holds no PNG or JPEG images")
    stats = FeatureStats()
    with tqdm(total=len(files), desc=f"FID features {Path(folder).name}", unit="image",
              leave=False) as bar:  # fmt: skip
        for start in range(0, len(files), batch_size):
            images = [read_image(f) for f in files[start : start + batch_size]]
            for run in _same_shape_runs(images):
                stats.update(features(torch.from_numpy(np.stack(run)).permute(0, 3, 1, 2)))
            bar.update(len(images))
    return stats


def inputs_key(files: Sequence[Path], weights_sha256: str, protocol: FidProtocol) -> str:
    """Hash of everything reference statistics depend on: file names and bytes, the weights,
    torch-fidelity's version (its network) and the protocol."""
    import torch_fidelity

    head = f"{PROTOCOL_VERSION}\n{protocol}\ntorch-fidelity {torch_fidelity.__version__}\n"
    digest = hashlib.sha256(f"{head}{weights_sha256}\n".encode())
    for f in files:
        digest.update(f"{f.name}\0{weights.sha256_of(f)}\n".encode())
    return digest.hexdigest()


def fid_folders(
    real_dir: str | Path,
    fake_dir: str | Path,
    weights_dir: str | Path,
    *,
    batch_size: int = 50,  # images per Inception forward
    device: str = "cpu",
    real_stats_cache: Path | None = None,  # .npz reused while the real images are unchanged
    protocol: FidProtocol = "pytorch_fid",
) -> dict:
    """FID between the images of two folders, and the protocol that computed it."""
    features = InceptionFeatures(weights_dir, device, protocol)
    real = key = None
    if real_stats_cache is not None:
        key = inputs_key(image_files(real_dir), features.weights_sha256, protocol)
        real = FeatureStats.load(real_stats_cache, key)
    if real is None:
        real = image_folder_stats(real_dir, features, batch_size)
        if real_stats_cache is not None:
            real.save(real_stats_cache, key)
    fake = image_folder_stats(fake_dir, features, batch_size)
    return {
        "fid": frechet_distance(*real.mean_cov(), *fake.mean_cov()),
        "fid_protocol": protocol,
        "real_images": real.count,
        "fake_images": fake.count,
        "weights_sha256": features.weights_sha256,
    }
