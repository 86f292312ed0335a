"""The softmax warp as Triton kernels: flash-style forward and backward, never holding the
N x M correlation (issue: full-resolution correspondence at the speed of the 64-grid model).

Forward (one program per block of query rows and batch item): for each block of keys, the scores
``alpha * q . k`` (the D-dim dot products in chunks of ``BLOCK_D``, so 2304-d descriptors never
sit in registers whole), an online softmax (running max and sum, in base 2) and the running
weighted sum of the values; it stores the output and each row's log-sum-exp. Backward
(flash-attention 2): ``delta = rowsum(dO * O)``; one kernel per block of keys recomputes the
probabilities from the saved log-sum-exp and accumulates ``dV = P^T dO`` and ``dK = alpha dS^T Q``;
one per block of queries accumulates ``dQ = alpha dS K``, with ``dS = P (dP - delta)`` and
``dP = dO V^T``. The gradient rows a program owns are updated in place chunk by chunk of D, so no
two programs write the same memory (no atomics).

Everything is float32 with IEEE dot products: ``alpha`` = 100 turns a TF32 or bfloat16 rounding of
a cosine (~1e-3) into ~0.1 in the exponent. The kernels run on CUDA, or on the CPU under Triton's
interpreter (``TRITON_INTERPRET=1`` set before Triton is imported), which is how the test suite
checks them against the naive warp.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

_LOG2E = math.log2(math.e)
BLOCK_M, BLOCK_N, BLOCK_D = 32, 32, 32


@triton.jit
def _scores(q_ptr, k_ptr, rm, rn, n_rows, n_keys, depth, sq, sk, BLOCK_D: tl.constexpr):
    """(BLOCK_M x BLOCK_N) dot products of query rows rm and key rows rn, D in chunks."""
    acc = tl.zeros([rm.shape[0], rn.shape[0]], dtype=tl.float32)
    for start in range(0, depth, BLOCK_D):
        rd = start + tl.arange(0, BLOCK_D)
        q = tl.load(
            q_ptr + rm[:, None] * sq + rd[None, :],
            mask=(rm[:, None] < n_rows) & (rd[None, :] < depth),
            other=0.0,
        )
        k = tl.load(
            k_ptr + rn[None, :] * sk + rd[:, None],
            mask=(rn[None, :] < n_keys) & (rd[:, None] < depth),
            other=0.0,
        )
        acc += tl.dot(q, k, input_precision="ieee")
    return acc


@triton.jit
def _forward(
    Q, K, V, Out, Lse, n_rows, n_keys, depth, channels, scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    b = tl.program_id(1)
    rc = tl.arange(0, BLOCK_C)
    q_ptr, k_ptr = Q + b * n_rows * depth, K + b * n_keys * depth
    v_ptr = V + b * n_keys * channels
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    for start in range(0, n_keys, BLOCK_N):
        rn = start + tl.arange(0, BLOCK_N)
        s = _scores(q_ptr, k_ptr, rm, rn, n_rows, n_keys, depth, depth, depth, BLOCK_D) * scale
        s = tl.where(rn[None, :] < n_keys, s, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(s, 1))
        p = tl.math.exp2(s - new_max[:, None])
        rescale = tl.math.exp2(row_max - new_max)
        row_sum = row_sum * rescale + tl.sum(p, 1)
        v = tl.load(
            v_ptr + rn[:, None] * channels + rc[None, :],
            mask=(rn[:, None] < n_keys) & (rc[None, :] < channels),
            other=0.0,
        )
        acc = acc * rescale[:, None] + tl.dot(p, v, input_precision="ieee")
        row_max = new_max
    out = acc / row_sum[:, None]
    rows = rm < n_rows
    o_ptr = Out + b * n_rows * channels + rm[:, None] * channels + rc[None, :]
    tl.store(o_ptr, out, mask=rows[:, None] & (rc[None, :] < channels))
    tl.store(Lse + b * n_rows + rm, row_max + tl.math.log2(row_sum), mask=rows)


@triton.jit
def _score_grads(
    q_ptr, k_ptr, v_ptr, do_ptr, l_ptr, d_ptr, rm, rn, rc,
    n_rows, n_keys, depth, channels, scale, alpha, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """(P, dS, dO) of one block pair: the probabilities recomputed from the log-sum-exp and
    the gradient with respect to the raw dot products."""
    s = _scores(q_ptr, k_ptr, rm, rn, n_rows, n_keys, depth, depth, depth, BLOCK_D) * scale
    s = tl.where(rn[None, :] < n_keys, s, float("-inf"))
    lse = tl.load(l_ptr + rm, mask=rm < n_rows, other=0.0)
    p = tl.math.exp2(s - lse[:, None])
    cmask = rc[None, :] < channels
    do = tl.load(
        do_ptr + rm[:, None] * channels + rc[None, :],
        mask=(rm[:, None] < n_rows) & cmask,
        other=0.0,
    )
    v = tl.load(
        v_ptr + rn[:, None] * channels + rc[None, :], mask=(rn[:, None] < n_keys) & cmask, other=0.0
    )
    dp = tl.dot(do, tl.trans(v), input_precision="ieee")
    delta = tl.load(d_ptr + rm, mask=rm < n_rows, other=0.0)
    return p, p * (dp - delta[:, None]) * alpha, do  # fmt: skip


@triton.jit
def _add_product(dst, dst_rows, n_dst, src, src_rows, n_src, weights, depth, BLOCK_D: tl.constexpr):
    """``dst[dst_rows] += weights @ src[src_rows]`` over the D columns in chunks: the gradient
    rows this program owns, updated in place."""
    for start in range(0, depth, BLOCK_D):
        rd = start + tl.arange(0, BLOCK_D)
        cols = rd[None, :] < depth
        rows = tl.load(
            src + src_rows[:, None] * depth + rd[None, :],
            mask=(src_rows[:, None] < n_src) & cols,
            other=0.0,
        )
        where = dst + dst_rows[:, None] * depth + rd[None, :]
        inside = (dst_rows[:, None] < n_dst) & cols
        total = tl.load(where, mask=inside, other=0.0)
        tl.store(where, total + tl.dot(weights, rows, input_precision="ieee"), mask=inside)


@triton.jit
def _backward_keys(
    Q, K, V, DO, Lse, Delta, DK, DV, n_rows, n_keys, depth, channels, scale, alpha,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    b = tl.program_id(1)
    rc = tl.arange(0, BLOCK_C)
    q_ptr, k_ptr = Q + b * n_rows * depth, K + b * n_keys * depth
    v_ptr, do_ptr = V + b * n_keys * channels, DO + b * n_rows * channels
    dk_ptr = DK + b * n_keys * depth
    dv = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
    for start in range(0, n_rows, BLOCK_M):
        rm = start + tl.arange(0, BLOCK_M)
        p, ds, do = _score_grads(
            q_ptr, k_ptr, v_ptr, do_ptr, Lse + b * n_rows, Delta + b * n_rows, rm, rn, rc,
            n_rows, n_keys, depth, channels, scale, alpha, BLOCK_D,
        )  # fmt: skip
        dv += tl.dot(tl.trans(p), do, input_precision="ieee")
        _add_product(dk_ptr, rn, n_keys, q_ptr, rm, n_rows, tl.trans(ds), depth, BLOCK_D)
    dv_ptr = DV + b * n_keys * channels + rn[:, None] * channels + rc[None, :]
    tl.store(dv_ptr, dv, mask=(rn[:, None] < n_keys) & (rc[None, :] < channels))


@triton.jit
def _backward_queries(
    Q, K, V, DO, Lse, Delta, DQ, n_rows, n_keys, depth, channels, scale, alpha,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    b = tl.program_id(1)
    rc = tl.arange(0, BLOCK_C)
    q_ptr, k_ptr = Q + b * n_rows * depth, K + b * n_keys * depth
    v_ptr, do_ptr = V + b * n_keys * channels, DO + b * n_rows * channels
    dq_ptr = DQ + b * n_rows * depth
    for start in range(0, n_keys, BLOCK_N):
        rn = start + tl.arange(0, BLOCK_N)
        p, ds, do = _score_grads(
            q_ptr, k_ptr, v_ptr, do_ptr, Lse + b * n_rows, Delta + b * n_rows, rm, rn, rc,
            n_rows, n_keys, depth, channels, scale, alpha, BLOCK_D,
        )  # fmt: skip
        _add_product(dq_ptr, rm, n_rows, k_ptr, rn, n_keys, ds, depth, BLOCK_D)


def _block_c(channels: int) -> int:
    return max(16, triton.next_power_of_2(channels))


class TritonSoftmaxWarp(torch.autograd.Function):
    """``softmax(alpha * query key^T) value`` (B x N x C) by the kernels above."""

    @staticmethod
    def forward(ctx, query, key, value, alpha: float):
        q, k, v = (x.float().contiguous() for x in (query, key, value))
        (batch, n_rows, depth), n_keys, channels = q.shape, k.shape[1], v.shape[-1]
        out = torch.empty(batch, n_rows, channels, device=q.device, dtype=torch.float32)
        lse = torch.empty(batch, n_rows, device=q.device, dtype=torch.float32)
        grid = (triton.cdiv(n_rows, BLOCK_M), batch)
        _forward[grid](
            q, k, v, out, lse, n_rows, n_keys, depth, channels, alpha * _LOG2E,
            BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D, BLOCK_C=_block_c(channels),
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.alpha, ctx.dtype = alpha, value.dtype
        return out.to(value.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        do = grad_out.float().contiguous()
        delta = (do * out).sum(-1).contiguous()
        (batch, n_rows, depth), n_keys, channels = q.shape, k.shape[1], v.shape[-1]
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.empty_like(v)
        scale, sizes = ctx.alpha * _LOG2E, (n_rows, n_keys, depth, channels)
        blocks = dict(BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D, BLOCK_C=_block_c(channels))
        _backward_keys[(triton.cdiv(n_keys, BLOCK_N), batch)](
            q, k, v, do, lse, delta, dk, dv, *sizes, scale, ctx.alpha, **blocks
        )
        _backward_queries[(triton.cdiv(n_rows, BLOCK_M), batch)](
            q, k, v, do, lse, delta, dq, *sizes, scale, ctx.alpha, **blocks
        )
        return dq.to(q.dtype), dk, dv.to(ctx.dtype), None


def triton_warp(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, alpha: float):
    return TritonSoftmaxWarp.apply(query, key, value, alpha)
