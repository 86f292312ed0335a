"""Further random geometric distortion of pseudo exemplars (paper §4, "pseudo exemplar pairs").

The official pseudo exemplar is the ground-truth photo under an independent random crop and
flip (cocosnet.training.data); on top of that the exemplar photo and its semantic map can be
distorted by one random warp (flip, crop, affine and a thin-plate spline; ours, off in the
official recipes). The ground truth and the input are left untouched.

A warp is a backward sampling grid for :func:`torch.nn.functional.grid_sample`: output pixel p
reads the source at ``flip(crop(affine(tps(p))))``, i.e. the forward image pipeline is
flip -> crop -> affine -> TPS.

Random numbers: every call makes the same draws from the caller's generator whatever options are
on (one ``rand(batch, 10)`` and one 63-bit seed for the TPS displacements), so changing params
keeps the stream aligned and a run resumes exactly from a saved generator state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Columns of the per-sample uniform draws.
_FLIP, _CROP, _CROP_X, _CROP_Y, _ROTATE, _SCALE, _SHIFT_X, _SHIFT_Y, _SHEAR_X, _SHEAR_Y = range(10)
_N_UNIFORM = 10
_TPS_TRUNCATE = 3.0  # control-point displacements are truncated at 3 std: no rare extreme folds

# field -> (low, high), inclusive
_RANGES: dict[str, tuple[float, float]] = {
    "crop": (0.0, 0.9),
    "rotate": (0.0, 180.0),
    "scale": (0.0, 0.9),
    "translate": (0.0, 0.5),
    "shear": (0.0, 60.0),
    "tps": (0.0, 0.5),
}


@dataclass(frozen=True)
class Distortion:
    """Parameters of the random geometric distortion of a pseudo exemplar (all off = identity)."""

    flip: bool = True  # random horizontal flip with p=0.5
    # random crop keeping (1 - u*crop) of each side (a square for square images), u~U[0,1],
    # resized back; 0 = off
    crop: float = 0.0
    rotate: float = 0.0  # max |degrees| of a random rotation
    scale: float = 0.0  # random zoom factor in [1 - scale, 1 + scale]
    translate: float = 0.0  # max shift as a fraction of the side
    shear: float = 0.0  # max |degrees| of shear, drawn independently along x and y
    tps: float = 0.0  # thin-plate spline: std of control-point displacement / side; 0 = off
    tps_grid: int = 4  # control points per side for TPS

    def __post_init__(self) -> None:
        if not isinstance(self.flip, bool):
            raise ValueError(f"Distortion.flip must be a bool, got {self.flip!r}")
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"Distortion.{name} must be a number, got {value!r}")
            if not low <= value <= high:  # also rejects NaN
                raise ValueError(f"Distortion.{name} must be in [{low}, {high}], got {value}")
        if isinstance(self.tps_grid, bool) or not isinstance(self.tps_grid, int):
            raise ValueError(f"Distortion.tps_grid must be an int, got {self.tps_grid!r}")
        if self.tps_grid < 2:
            raise ValueError(f"Distortion.tps_grid must be >= 2, got {self.tps_grid}")

    @property
    def identity(self) -> bool:
        """Every option off: the distortion leaves images as they are."""
        return not (self.flip or self.crop > 0 or self._affine or self.tps > 0)

    @property
    def _affine(self) -> bool:
        return self.rotate > 0 or self.scale > 0 or self.translate > 0 or self.shear > 0


def _base_grid(height: int, width: int) -> torch.Tensor:
    """H x W x 2 identity grid (x, y) at pixel centres, as ``affine_grid(align_corners=False)``."""
    xs = (2 * torch.arange(width, dtype=torch.float64) + 1) / width - 1
    ys = (2 * torch.arange(height, dtype=torch.float64) + 1) / height - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((x, y), dim=-1)


def _tps_kernel(r2: torch.Tensor) -> torch.Tensor:
    """Thin-plate radial basis U(r) = r^2 log r^2 (written in r^2), with U(0) = 0."""
    return torch.where(r2 > 0, r2 * torch.log(r2.clamp_min(1e-30)), torch.zeros_like(r2))


def _tps_displacement(points: torch.Tensor, displacements: torch.Tensor, n: int) -> torch.Tensor:
    """Displacement at ``points`` (P x 2) of the TPS interpolating ``displacements`` (B x n^2 x 2)
    given at an n x n lattice of control points spanning [-1, 1]^2 -> B x P x 2 (float64)."""
    axis = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    cy, cx = torch.meshgrid(axis, axis, indexing="ij")
    ctrl = torch.stack((cx.flatten(), cy.flatten()), dim=-1)  # K x 2
    k = ctrl.shape[0]
    ones = torch.ones(k, 1, dtype=torch.float64)
    # Bookstein's system [[U, P], [P^T, 0]] [w; a] = [v; 0]: interpolation plus affine part.
    poly = torch.cat((ones, ctrl), dim=1)  # K x 3
    system = torch.zeros(k + 3, k + 3, dtype=torch.float64)
    system[:k, :k] = _tps_kernel(torch.cdist(ctrl, ctrl).square())
    system[:k, k:] = poly
    system[k:, :k] = poly.T
    rhs = torch.cat((displacements, displacements.new_zeros(displacements.shape[0], 3, 2)), dim=1)
    coef = torch.linalg.solve(system, rhs)  # B x (K+3) x 2
    basis = torch.cat(
        (
            _tps_kernel(torch.cdist(points, ctrl).square()),
            torch.ones(points.shape[0], 1, dtype=torch.float64),
            points,
        ),
        dim=1,
    )  # P x (K+3)
    return basis @ coef


def _inverse_affine(u: torch.Tensor, d: Distortion) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample inverse 2 x 2 matrix and shift (in fractions of the side) of the forward affine
    ``q -> zoom * R(angle) * Shear * q + shift`` about the image centre."""
    signed = 2 * u - 1  # U[-1, 1]
    angle = torch.deg2rad(signed[:, _ROTATE] * d.rotate)
    zoom = 1 + signed[:, _SCALE] * d.scale
    shear_x = torch.tan(torch.deg2rad(signed[:, _SHEAR_X] * d.shear))
    shear_y = torch.tan(torch.deg2rad(signed[:, _SHEAR_Y] * d.shear))
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack((cos, -sin, sin, cos), dim=-1).view(-1, 2, 2)
    shear = torch.stack((one, shear_x, zero, one), dim=-1).view(-1, 2, 2) @ torch.stack(
        (one, zero, shear_y, one), dim=-1
    ).view(-1, 2, 2)
    forward = zoom.view(-1, 1, 1) * rotation @ shear
    shift = torch.stack((signed[:, _SHIFT_X], signed[:, _SHIFT_Y]), dim=-1) * d.translate
    return torch.linalg.inv(forward), shift


def sample_grid(
    d: Distortion, batch: int, height: int, width: int, generator: torch.Generator
) -> torch.Tensor:
    """B x H x W x 2 sampling grid (normalised [-1,1] coords, align_corners=False) composing flip,
    crop, affine and TPS; deterministic given the generator state; identity grid when every
    option is off. ``generator`` must be a CPU generator; the grid is float32 on the CPU."""
    # The same draws every call, whatever is enabled (see the module docstring).
    u = torch.rand(batch, _N_UNIFORM, generator=generator, dtype=torch.float64)
    tps_seed = int(torch.randint(2**63 - 1, (1,), generator=generator).item())

    grid = _base_grid(height, width).expand(batch, height, width, 2)
    if d.tps > 0:
        n = d.tps_grid
        noise = torch.randn(
            batch,
            n * n,
            2,
            generator=torch.Generator().manual_seed(tps_seed),
            dtype=torch.float64,
        )
        # A fraction of the side is twice that in normalised coordinates (the side spans 2).
        disp = noise.clamp(-_TPS_TRUNCATE, _TPS_TRUNCATE) * (2 * d.tps)
        grid = grid + _tps_displacement(grid[0].reshape(-1, 2), disp, n).view(grid.shape)
    if d._affine:
        # Rotation and shear act in pixel units so that they stay rigid on non-square images.
        half = torch.tensor([width / 2, height / 2], dtype=torch.float64)
        inverse, shift = _inverse_affine(u, d)
        q = (grid - 2 * shift.view(batch, 1, 1, 2)) * half
        q = torch.einsum("bij,bhwj->bhwi", inverse, q)
        grid = q / half
    if d.crop > 0:
        side = 1 - u[:, _CROP] * d.crop  # kept fraction of each side
        centre = (2 * u[:, [_CROP_X, _CROP_Y]] - 1) * (1 - side).unsqueeze(1)
        grid = centre.view(batch, 1, 1, 2) + side.view(batch, 1, 1, 1) * grid
    if d.flip:
        sign = torch.where(u[:, _FLIP] < 0.5, -1.0, 1.0).to(torch.float64)
        grid = grid * torch.stack((sign, torch.ones_like(sign)), dim=-1).view(batch, 1, 1, 2)
    return grid.to(torch.float32).contiguous()


def distort(
    grid: torch.Tensor,
    image: torch.Tensor,
    semantic: torch.Tensor | None = None,
    *,
    padding_mode: str = "reflection",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply a grid from sample_grid: image (B x 3 x H x W, bilinear) and semantic (B x C x H x W,
    nearest, same grid). Pixels sampled from outside the image use reflection padding by default
    (so the exemplar has no black borders).

    The output size is the grid's H x W. Nearest sampling keeps a one-hot map one-hot (with
    ``"reflection"`` or ``"border"`` padding); an integer-typed semantic map is sampled exactly
    and returned with its dtype.
    """
    if grid.ndim != 4 or grid.shape[-1] != 2:
        raise ValueError(f"grid must be B x H x W x 2, got {tuple(grid.shape)}")
    for name, x in (("image", image), ("semantic", semantic)):
        if x is not None and (x.ndim != 4 or x.shape[0] != grid.shape[0]):
            raise ValueError(
                f"{name} must be B x C x H x W with B = {grid.shape[0]}, got {tuple(x.shape)}"
            )
    warped = F.grid_sample(
        image,
        grid.to(device=image.device, dtype=image.dtype),
        mode="bilinear",
        padding_mode=padding_mode,
        align_corners=False,
    )
    if semantic is None:
        return warped, None
    dtype = semantic.dtype if semantic.is_floating_point() else torch.float32
    warped_semantic = F.grid_sample(
        semantic.to(dtype),
        grid.to(device=semantic.device, dtype=dtype),
        mode="nearest",
        padding_mode=padding_mode,
        align_corners=False,
    ).to(semantic.dtype)
    return warped, warped_semantic


__all__ = ["Distortion", "distort", "sample_grid"]
