"""The softmax warp of eq. 4: ``r = softmax(alpha * M) y`` with ``M = query . key^T``.

One function, two implementations:

* ``naive`` materialises the (N x M) correlation matrix, exactly as the official code; it is the
  reference and what the paper's memory limitation refers to.
* ``fused`` is the same computation expressed as attention
  (``scaled_dot_product_attention`` with ``scale=alpha``): PyTorch's fused kernels tile the
  softmax and never hold the whole matrix, so memory grows with N instead of N*M.

The cycle warp (eq. 12) is the same call with query and key swapped.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

WarpImpl = Literal["naive", "fused"]


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
    if impl == "fused":
        out = F.scaled_dot_product_attention(
            query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1), scale=alpha
        )
        return out.squeeze(1)
    raise ValueError(f"unknown warp implementation {impl!r}; use 'naive' or 'fused'")
