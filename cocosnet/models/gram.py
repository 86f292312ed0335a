"""The correlation M of eq. 3 as shifted Gram sums: exact, with ~k*k times fewer FLOPs.

A descriptor is the k x k zero-padded unfolding (k = match_kernel, r = k // 2) of C-channel
projected features f, so with o over the k*k offsets (f = 0 outside the grid)

    q(p) . k(p') = S(p, p') = sum_o G(p + o, p' + o),    G = F_q F_k^T,

one C-d Gram matrix (C = 256 instead of D = k*k*C = 2304 at the paper's size) followed by a
"diagonal" k x k box sum over (y, x, y', x'): both positions shifted by the same offset.
PONO_C centring is a rank-one correction. With m the mean of a descriptor's D entries and
a = D m / sqrt(D) = box(sum_c f) / sqrt(D) (box: the zero-padded k x k box sum),

    (q - m_q) . (k - m_k) = S - a_q a_k,    |q - m_q|^2 = box(|f_q|^2) - a_q^2,

so ``M = (S - a_q a_k) / ((n_q + eps) (n_k + eps))`` exactly as ``l2_normalize`` divides by
``norm + eps``. (The same holds with a constant subtracted from every entry, padding included,
which :class:`GridDescriptors` uses to keep the cancellation small.)

:func:`gram_correlation` materialises M; :func:`gram_softmax_warp` is the warp
``softmax(alpha M) value`` over blocks of query grid rows (plus an r-row halo each side), with a
flash-attention-style backward that recomputes each block from the saved log-sum-exp, as
:class:`~.warp.BlockwiseSoftmaxWarp` does. Both compute in float32.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .warp import exp_shifted_

# Halo-block Gram entries held at once (per batch item): 4M floats = 16 MiB in float32, 12
# query rows at the paper's 64 x 64 grid (one block of all 64 rows measured slower on a 2-core
# CPU), and at least 8 rows: with fewer, the 2-row halo's recomputation dominates (at a
# 128 x 128 grid 1 row took 3x as long as 8). Finer grids so hold more: 8 rows of a 256 x 256
# grid are ~0.7 GB per block buffer (forward ~2 GB, backward ~5.5 GB per batch item).
GRAM_BLOCK_ELEMENTS = 1 << 22
MIN_BLOCK_ROWS = 8
# Centred square norms below this fraction of the descriptor's square norm are rounding noise.
DEGENERATE = 1e-5


@dataclass(frozen=True)
class GridDescriptors:
    """The centred, L2-normalised k x k descriptors of eq. 3, kept implicit: the projected
    features on their zero-padded grid and, per position, the centring term and inverse norm."""

    padded: torch.Tensor  # B x C x (h+2r) x (w+2r): projected features, padded, minus a constant
    shift: torch.Tensor  # B x h x w: a = D (m - c) / sqrt(D) = box(sum_c g) / sqrt(D)
    inv_norm: torch.Tensor  # B x h x w: 1 / (|centred descriptor| + eps)
    kernel: int

    @classmethod
    def of(cls, features: torch.Tensor, kernel: int, eps: float) -> GridDescriptors:
        """Descriptors of B x C x h x w features with an odd ``kernel`` (match_kernel)."""
        if kernel % 2 != 1:
            raise ValueError(f"shifted Gram descriptors need an odd kernel, got {kernel}")
        f = features.float()
        r, dim = kernel // 2, f.shape[1] * kernel * kernel
        # Centring makes M blind to a constant c subtracted from every descriptor entry (padding
        # included: pad, then subtract). Any c is exact; the features' mean keeps the rank-one
        # terms small, so less of S cancels in float32 when the features share an offset.
        g = F.pad(f, (r, r, r, r)) - f.mean(dim=(1, 2, 3), keepdim=True).detach()
        shift = _box_sum(g.sum(1), kernel) / math.sqrt(dim)
        energy = _box_sum(g.square().sum(1), kernel)
        norm_sq = energy - shift.square()
        # A constant descriptor centres to 0, which l2_normalize leaves 0 (a row of M = 0); here
        # its norm drowns in rounding (~1e-7 of the energy), so below DEGENERATE of the energy
        # the descriptor counts as constant. The clamp keeps sqrt's gradient finite there.
        inv_norm = torch.where(
            norm_sq > DEGENERATE * energy, 1.0 / (norm_sq.clamp(min=1e-30).sqrt() + eps), 0.0
        )
        return cls(g, shift, inv_norm, kernel)

    @property
    def grid(self) -> tuple[int, int]:
        return self.shift.shape[-2], self.shift.shape[-1]

    def rows(self) -> torch.Tensor:
        """B x (h+2r) x (w+2r) x C: the padded features channels last (the query side)."""
        return self.padded.permute(0, 2, 3, 1).contiguous()

    def cols(self) -> torch.Tensor:
        """B x C x (h+2r)(w+2r): the padded features (the key side)."""
        return self.padded.flatten(2)


def _box_sum(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """k x k box sums of B x (h+2r) x (w+2r) padded maps -> B x h x w."""
    return F.avg_pool2d(x[:, None], kernel, stride=1, divisor_override=1)[:, 0]


@dataclass(frozen=True)
class _Layout:
    """Shapes of one query block against all keys: ``rows`` query grid rows of ``width``."""

    rows: int
    width: int
    kgrid: tuple[int, int]
    kernel: int

    def padded(self) -> tuple[int, int, int, int]:
        r2 = 2 * (self.kernel // 2)
        return self.rows + r2, self.width + r2, self.kgrid[0] + r2, self.kgrid[1] + r2

    def shift_sum(self, gram: torch.Tensor, buffers: _Buffers | None = None) -> torch.Tensor:
        """S = sum_o G(p + o, p' + o): B x (rows+2r)(width+2r) x (hk+2r)(wk+2r) padded Gram
        block -> B x (rows*width) x (hk*wk). Separable: the x shifts, then the y shifts (2k
        strided passes instead of k*k)."""
        b, (rp, _, hkp, _), (hk, wk), k = gram.shape[0], self.padded(), self.kgrid, self.kernel
        g = gram.view(b, *self.padded())
        by_x = _take(buffers, "by_x", (b, rp, self.width, hkp, wk), g)
        by_x = _diagonal_sum(g, 2, 4, k, by_x)
        s = _take(buffers, "s", (b, self.rows, self.width, hk, wk), g)
        return _diagonal_sum(by_x, 1, 3, k, s).view(b, self.rows * self.width, hk * wk)

    def shift_scatter(self, grad: torch.Tensor, buffers: _Buffers | None = None) -> torch.Tensor:
        """The adjoint of :meth:`shift_sum`: dS (B x rows*width x hk*wk) -> dG (padded)."""
        b, (rp, wp, hkp, wkp), k = grad.shape[0], self.padded(), self.kernel
        by_y = _take(buffers, "d_by_x", (b, rp, self.width, hkp, self.kgrid[1]), grad).zero_()
        _diagonal_scatter(grad.view(b, self.rows, self.width, *self.kgrid), 1, 3, k, by_y)
        g = _take(buffers, "d_gram", (b, rp, wp, hkp, wkp), grad).zero_()
        return _diagonal_scatter(by_y, 2, 4, k, g).flatten(3).flatten(1, 2)


class _Buffers:
    """Block-sized buffers reused from block to block: fresh multi-MiB tensors each block
    page-fault (the gram warp ran ~2x slower at a 128 x 128 grid)."""

    def __init__(self) -> None:
        self._flat: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        n = math.prod(shape)
        flat = self._flat.get(name)
        if flat is None or flat.numel() < n:
            flat = self._flat[name] = like.new_empty(n)
        return flat[:n].view(shape)


def _take(buffers: _Buffers | None, name: str, shape: tuple[int, ...], like: torch.Tensor):
    """A reused buffer, or a new tensor where autograd records the ops (``buffers`` None)."""
    return like.new_empty(shape) if buffers is None else buffers.take(name, shape, like)


def _diagonal_sum(x: torch.Tensor, dim_a: int, dim_b: int, k: int, out: torch.Tensor):
    """``out`` = sum over d < k of x[..., a + d, ..., b + d, ...] (dims dim_a and dim_b of x
    are k - 1 longer than out's). Writes into ``out`` unless autograd records (then new)."""
    size_a, size_b = out.shape[dim_a], out.shape[dim_b]
    parts = [x.narrow(dim_a, d, size_a).narrow(dim_b, d, size_b) for d in range(k)]
    if k == 1:
        return out.copy_(parts[0])
    total = torch.add(parts[0], parts[1], out=None if torch.is_grad_enabled() else out)
    for part in parts[2:]:
        total.add_(part)
    return total


def _diagonal_scatter(x: torch.Tensor, dim_a: int, dim_b: int, k: int, out: torch.Tensor):
    """The adjoint of :func:`_diagonal_sum`: adds x's k shifted copies into (zeroed) ``out``."""
    for d in range(k):
        out.narrow(dim_a, d, x.shape[dim_a]).narrow(dim_b, d, x.shape[dim_b]).add_(x)
    return out


def _block_centred(
    q_pad, k_cols, shift_q, shift_k, layout: _Layout, y0: int, buffers: _Buffers | None = None
) -> torch.Tensor:
    """The centred inner products S - a_q a_k of query grid rows [y0, y0 + layout.rows) with
    all keys: B x (rows*w) x M. ``q_pad`` and ``k_cols`` are :meth:`GridDescriptors.rows` and
    :meth:`GridDescriptors.cols`; the shifts are flattened to B x N. Differentiable when
    ``buffers`` is None; otherwise the result lives in ``buffers`` (until the next block)."""
    halo = q_pad[:, y0 : y0 + layout.padded()[0]].flatten(1, 2)
    shape = (halo.shape[0], halo.shape[1], k_cols.shape[2])
    gram = torch.bmm(halo, k_cols, out=None if buffers is None else buffers.take("g", shape, halo))
    s = layout.shift_sum(gram, buffers)
    rows = slice(y0 * layout.width, (y0 + layout.rows) * layout.width)
    return s.baddbmm_(shift_q[:, rows, None], shift_k[:, None, :], alpha=-1.0)


def _check(query: GridDescriptors, key: GridDescriptors) -> None:
    if query.kernel != key.kernel or query.padded.shape[:2] != key.padded.shape[:2]:
        raise ValueError(
            f"query (kernel {query.kernel}, {tuple(query.padded.shape)}) and key "
            f"(kernel {key.kernel}, {tuple(key.padded.shape)}) descriptors do not match"
        )


def gram_correlation(query: GridDescriptors, key: GridDescriptors) -> torch.Tensor:
    """The whole correlation matrix M (B x N x M, float32) of eq. 3, materialised."""
    _check(query, key)
    layout = _Layout(query.grid[0], query.grid[1], key.grid, query.kernel)
    centred = _block_centred(
        query.rows(), key.cols(), query.shift.flatten(1), key.shift.flatten(1), layout, 0
    )
    return centred.mul_(key.inv_norm.flatten(1)[:, None]).mul_(query.inv_norm.flatten(1)[..., None])


def gram_block_rows(qgrid: tuple[int, int], kgrid: tuple[int, int], kernel: int) -> int:
    """Query grid rows per block: as many as one halo block's Gram matrix fits in the budget,
    but at least MIN_BLOCK_ROWS (else the halo's recomputation dominates)."""
    r2 = 2 * (kernel // 2)
    per_row = (qgrid[1] + r2) * (kgrid[0] + r2) * (kgrid[1] + r2)
    return min(qgrid[0], max(MIN_BLOCK_ROWS, GRAM_BLOCK_ELEMENTS // per_row - r2))


def gram_softmax_warp(
    query: GridDescriptors,
    key: GridDescriptors,
    value: torch.Tensor,
    alpha: float,
    block: int | None = None,
) -> torch.Tensor:
    """``softmax(alpha M) value`` (eq. 4) for ``value`` B x M x C with one row per key position;
    M is never held whole. ``block``: query grid rows per block (default: the memory budget)."""
    _check(query, key)
    n_keys = key.grid[0] * key.grid[1]
    if value.dim() != 3 or value.shape[:2] != (key.padded.shape[0], n_keys):
        raise ValueError(f"value must be B x {n_keys} x C, got {tuple(value.shape)}")
    block = block or gram_block_rows(query.grid, key.grid, query.kernel)
    with torch.autocast(value.device.type, enabled=False):
        out = GramSoftmaxWarp.apply(
            query.rows(),
            key.cols(),
            query.shift.flatten(1),
            query.inv_norm.flatten(1),
            key.shift.flatten(1),
            key.inv_norm.flatten(1),
            value.float(),
            alpha,
            (query.grid, key.grid, query.kernel, block),
        )
    return out.to(value.dtype)


def _blocks(qgrid: tuple[int, int], kgrid: tuple[int, int], kernel: int, block: int):
    """(first grid row, layout) of each query block."""
    for y0 in range(0, qgrid[0], block):
        yield y0, _Layout(min(block, qgrid[0] - y0), qgrid[1], kgrid, kernel)


class GramSoftmaxWarp(torch.autograd.Function):
    """Exact ``softmax(alpha M) value`` with M from shifted Gram sums, one block of query grid
    rows at a time; backward recomputes each block (no step holds more than a block x M)."""

    @staticmethod
    def forward(ctx, q_pad, k_cols, shift_q, inv_q, shift_k, inv_k, value, alpha, shape):
        qgrid, kgrid, kernel, block = shape
        b, n = shift_q.shape
        out = value.new_empty(b, n, value.shape[-1])
        lse = value.new_empty(b, n)
        buffers = _Buffers()
        for y0, layout in _blocks(qgrid, kgrid, kernel, block):
            rows = slice(y0 * qgrid[1], (y0 + layout.rows) * qgrid[1])
            centred = _block_centred(q_pad, k_cols, shift_q, shift_k, layout, y0, buffers)
            # alpha M, scaled in the order backward recomputes it (same rounding)
            scores = centred.mul_(inv_k[:, None, :]).mul_(alpha * inv_q[:, rows, None])
            peak = scores.amax(dim=-1, keepdim=True)
            probs = exp_shifted_(scores.sub_(peak))  # unnormalised, divided after the bmm
            total = probs.sum(dim=-1, keepdim=True)
            lse[:, rows] = (peak + total.log()).squeeze(-1)
            out[:, rows] = torch.bmm(probs, value).div_(total)
        ctx.save_for_backward(q_pad, k_cols, shift_q, inv_q, shift_k, inv_k, value, out, lse)
        ctx.alpha, ctx.shape = alpha, shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q_pad, k_cols, shift_q, inv_q, shift_k, inv_k, value, out, lse = ctx.saved_tensors
        qgrid, kgrid, kernel, block = ctx.shape
        alpha = ctx.alpha
        grads = [torch.zeros_like(t) for t in (q_pad, k_cols, shift_q, inv_q, shift_k, inv_k)]
        d_qpad, d_kcols, d_shift_q, d_inv_q, d_shift_k, d_inv_k = grads
        d_value = torch.zeros_like(value)
        value_t = value.transpose(1, 2)
        delta = (grad_out * out).sum(-1)  # the softmax Jacobian's row term
        buffers = _Buffers()
        for y0, layout in _blocks(qgrid, kgrid, kernel, block):
            rows = slice(y0 * qgrid[1], (y0 + layout.rows) * qgrid[1])
            # M = X inv_q inv_k with X = S - a_q a_k (centred), S the shifted Gram sums.
            centred = _block_centred(q_pad, k_cols, shift_q, shift_k, layout, y0, buffers)
            take = functools.partial(buffers.take, shape=centred.shape, like=centred)
            by_key = torch.mul(centred, inv_k[:, None, :], out=take("by_key"))
            scores = torch.mul(by_key, alpha * inv_q[:, rows, None], out=take("probs"))
            probs = exp_shifted_(scores.sub_(lse[:, rows, None]))
            d_value += torch.bmm(probs.transpose(1, 2), grad_out[:, rows])
            # dL/dM = alpha P (dO V^T - delta)
            d_corr = torch.bmm(grad_out[:, rows], value_t, out=take("d_corr"))
            d_corr.sub_(delta[:, rows, None]).mul_(probs).mul_(alpha)
            d_inv_q[:, rows] = torch.mul(d_corr, by_key, out=take("product")).sum(-1)
            d_centred = d_corr.mul_(inv_q[:, rows, None])
            d_inv_k += torch.mul(d_centred, centred, out=take("product")).sum(1)
            d_s = d_centred.mul_(inv_k[:, None, :])
            d_shift_q[:, rows] = -torch.bmm(d_s, shift_k[..., None])[..., 0]
            d_shift_k -= torch.bmm(shift_q[:, None, rows], d_s)[:, 0]
            d_gram = layout.shift_scatter(d_s, buffers)
            halo = slice(y0, y0 + layout.padded()[0])
            d_qpad[:, halo] += torch.bmm(d_gram, k_cols.transpose(1, 2)).view_as(q_pad[:, halo])
            d_kcols += torch.bmm(q_pad[:, halo].flatten(1, 2).transpose(1, 2), d_gram)
        return (*grads, d_value, None, None)
