"""The softmax warp of eq. 4: ``r = softmax(alpha * M) y`` with ``M = query . key^T``.

One function, two implementations:

* ``naive`` materialises the (N x M) correlation matrix, exactly as the official code; it is the
  reference and what the paper's memory limitation refers to.
* ``fused`` computes the same result without ever holding the whole matrix, so memory grows with
  N + M instead of N * M:

  - on CUDA it is ``scaled_dot_product_attention`` with ``scale=alpha`` (the softmax warp *is*
    attention), pinned to the memory-efficient kernel in float32 (see :func:`sdpa_warp`);
  - on the CPU, PyTorch's flash-attention kernel requires values as wide as the descriptors. It
    is used where the values are at least as wide (the descriptors are zero-padded: the
    translation network's non-local attention); otherwise (2304-d descriptors against 3 RGB
    values) it would fall back to its math path, which materialises the matrix (measured:
    bench/warp.py), and the warp runs our own exact kernel:
    query rows in blocks, each block's softmax completed against all exemplar positions, and a
    flash-attention-style backward that recomputes each block from the saved log-sum-exp.

A third, ``gram`` (:mod:`.gram`), is the correspondence network's: it never builds the k x k
descriptors, computing M from the projected features as shifted sums of one Gram matrix (~9x fewer
FLOPs, exact). Given descriptor rows (the non-local attention, analyses), ``gram`` is ``fused``.

A fourth, ``triton`` (:mod:`.triton_warp`), is the warp as flash-style Triton kernels (forward
and backward) for CUDA; on the CPU it runs only under Triton's interpreter (the tests).

The cycle warp (eq. 12) is the same call with query and key swapped.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.nn.attention import SDPBackend, sdpa_kernel

WarpImpl = Literal["naive", "fused", "gram", "triton"]

# Scores held at once by the blockwise kernel (per batch item): 4M floats = 16 MiB in float32.
BLOCK_ELEMENTS = 1 << 22


def correlation(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """The correlation matrix M (B x N x M) of eq. 3; only the naive path and analyses build it."""
    return torch.bmm(query, key.transpose(1, 2))


def softmax_warp(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    alpha: float,
    impl: WarpImpl = "fused",
) -> torch.Tensor:
    """Warp ``value`` (B x M x C, one row per exemplar position) to the query positions.

    ``query`` is B x N x D and ``key`` B x M x D (already centred and L2-normalised, so their
    inner products are cosine similarities). Returns B x N x C.
    """
    if query.dim() != 3 or key.dim() != 3 or value.dim() != 3:
        raise ValueError("softmax_warp expects 3-d tensors: query BxNxD, key BxMxD, value BxMxC")
    if query.shape[-1] != key.shape[-1] or key.shape[1] != value.shape[1]:
        raise ValueError(
            f"shape mismatch: query {tuple(query.shape)}, key {tuple(key.shape)}, "
            f"value {tuple(value.shape)}"
        )
    if impl == "naive":
        weights = torch.softmax(alpha * correlation(query, key), dim=-1)
        return torch.bmm(weights, value)
    if impl == "triton":  # flash kernels (cocosnet/models/triton_warp.py), imported on use
        from .triton_warp import triton_warp

        return triton_warp(query, key, value, alpha).to(value.dtype)
    if impl in ("fused", "gram"):  # "gram" needs grid features; given descriptor rows, fused
        if query.is_cuda:
            return sdpa_warp(query, key, value, alpha)
        if value.shape[-1] >= query.shape[-1]:  # e.g. the non-local attention's 32-d q/k
            return cpu_flash_warp(query, key, value, alpha)
        return BlockwiseSoftmaxWarp.apply(query, key, value, alpha, block_rows(key.shape[1]))
    raise ValueError(
        f"unknown warp implementation {impl!r}; use 'naive', 'fused', 'gram' or 'triton'"
    )


def sdpa_warp(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    alpha: float,
    backend: SDPBackend = SDPBackend.EFFICIENT_ATTENTION,
):
    """The warp as PyTorch's memory-efficient attention kernel, in float32.

    float32 because alpha = 100 turns bfloat16's rounding of a cosine (~0.004) into ~0.4 in the
    exponent. The kernel needs contiguous channels and values padded to a multiple of 8; given
    transposed descriptors, PyTorch silently falls back to its math path, which materialises the
    matrix (measured: 86 GiB for a 256x256-grid training step on an H200). So only the
    memory-efficient backend is allowed here: it never silently materialises (it raises).
    ``backend`` exists for tests of the padding and scaling on machines without CUDA.
    """
    channels = value.shape[-1]
    with (
        torch.autocast(query.device.type, enabled=False),
        sdpa_kernel(backend),
    ):
        # The kernel needs unit stride along channels (descriptors arrive transposed).
        q, k = (x.float().contiguous().unsqueeze(1) for x in (query, key))
        v = F.pad(value.float(), (0, -channels % 8)).contiguous().unsqueeze(1)
        out = F.scaled_dot_product_attention(q, k, v, scale=alpha)
    return out.squeeze(1)[..., :channels].to(value.dtype)


def cpu_flash_warp(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, alpha: float):
    """PyTorch's CPU flash-attention kernel, which needs query, key and value equally wide:
    descriptors narrower than the values are zero-padded (adding 0 to every inner product).
    Pinned to that kernel so it can never fall back to the materialising math path."""
    width = value.shape[-1]
    q, k = (F.pad(x, (0, width - x.shape[-1])).contiguous().unsqueeze(1) for x in (query, key))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        out = F.scaled_dot_product_attention(q, k, value.contiguous().unsqueeze(1), scale=alpha)
    return out.squeeze(1)


def _scores(query_rows: torch.Tensor, key_t: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * q k^T for a block of query rows, in float32."""
    return torch.bmm(query_rows, key_t).float().mul_(alpha)


def exp_shifted_(shifted: torch.Tensor) -> torch.Tensor:
    """In-place exp of scores shifted to <= 0 (float32 only).

    Clamped at -80 first: exp(-80) = 1.8e-35 is far below float32 resolution next to the row's
    largest term (1), and the vectorised exp is about 4x slower on inputs that underflow
    (alpha = 100 puts most of a row near -100 to -200).
    """
    return shifted.clamp_(min=-80.0).exp_()


def block_rows(n_keys: int) -> int:
    return max(1, BLOCK_ELEMENTS // n_keys)


class BlockwiseSoftmaxWarp(torch.autograd.Function):
    """Exact softmax(alpha q k^T) v, one block of query rows at a time.

    Forward keeps only the output and the per-row log-sum-exp; backward recomputes each block's
    probabilities from them (as flash attention does), so no step holds more than
    ``block x M`` scores.
    """

    @staticmethod
    def forward(ctx, query, key, value, alpha: float, block: int):
        b, n, _ = query.shape
        out = value.new_empty(b, n, value.shape[-1])
        # The softmax itself runs in float32 whatever the input dtype: in bfloat16, alpha = 100
        # times a cosine would carry errors of ~0.4 into the exponent.
        lse = query.new_empty(b, n, dtype=torch.float32)
        key_t = key.transpose(1, 2)
        for start in range(0, n, block):
            rows = slice(start, start + block)
            scores = _scores(query[:, rows], key_t, alpha)
            peak = scores.amax(dim=-1, keepdim=True)
            probs = exp_shifted_(scores.sub_(peak))  # unnormalised: divided after the bmm
            total = probs.sum(dim=-1, keepdim=True)
            lse[:, rows] = (peak + total.log()).squeeze(-1)
            out[:, rows] = torch.bmm(probs.to(value.dtype), value).div_(total.to(value.dtype))
        ctx.save_for_backward(query, key, value, out, lse)
        ctx.alpha, ctx.block = alpha, block
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        query, key, value, out, lse = ctx.saved_tensors
        alpha, block = ctx.alpha, ctx.block
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        grad_q = torch.zeros_like(query) if need_q else None
        grad_k = torch.zeros_like(key) if need_k else None
        grad_v = torch.zeros_like(value) if need_v else None
        key_t, value_t = key.transpose(1, 2), value.transpose(1, 2)
        # delta_i = sum_c dO_ic O_ic: the softmax Jacobian's row term.
        delta = (grad_out * out).sum(-1)
        for start in range(0, query.shape[1], block):
            rows = slice(start, start + block)
            probs = exp_shifted_(_scores(query[:, rows], key_t, alpha).sub_(lse[:, rows, None]))
            probs = probs.to(value.dtype)
            if need_v:
                grad_v += torch.bmm(probs.transpose(1, 2), grad_out[:, rows])
            if need_q or need_k:
                dscores = torch.bmm(grad_out[:, rows], value_t).sub_(delta[:, rows, None])
                dscores.mul_(probs).mul_(alpha)
                # Under autocast the descriptors (conv outputs) can be bfloat16 while the values
                # (pooled photos) stay float32: the products run in the wider of the two.
                wide = torch.promote_types(dscores.dtype, query.dtype)
                if need_q:
                    grad_q[:, rows] = torch.bmm(dscores.to(wide), key.to(wide))
                if need_k:
                    grad_k += torch.bmm(dscores.transpose(1, 2).to(wide), query[:, rows].to(wide))
        return grad_q, grad_k, grad_v, None, None
