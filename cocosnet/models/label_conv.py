"""Convolutions of a one-hot label map as gathers (an exact FLOP cut).

A k x k convolution of a one-hot map reads, at each output pixel and kernel offset, one weight
column: the one of the neighbour's class. So ``conv(one_hot(ids))`` is, per pixel, the sum of k*k
rows of a (k*k*L) x out table (the weight, permuted): one ``F.embedding_bag`` instead of L*k*k
multiply-adds per output channel. It equals the dense conv up to float rounding (the order of the
sum). The SPADE condition convs, the translation network's stem and the input domain adaptor's
first conv all convolve the input label map (ADE20k: 151 channels) this way when it is exactly
one-hot (:class:`~cocosnet.models.blocks.ConditionPyramid` checks once per forward).

Padding: reflect padding of a one-hot map is the one-hot of the reflected ids; zero padding is a
"void" id L whose table rows are zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def one_hot_ids(label: torch.Tensor) -> torch.Tensor | None:
    """B x H x W int32 class ids if ``label`` (B x L x H x W) is exactly one-hot, else None.

    Exactly: every value 0 or 1 and one 1 per pixel (CelebA-HQ's glasses overlap the skin; edge
    and pose maps are not label maps). None too when ``label`` needs a gradient: the gather has
    none for its input. On the meta device, without values, the map is taken to be one-hot (FLOP
    counting).
    """
    if label.dim() != 4 or not label.is_floating_point() or label.requires_grad:
        return None
    if not label.is_meta:
        binary = ((label == 0) | (label == 1)).all()
        if not bool(binary & (label.sum(1) == 1).all()):  # sums of <= 256 ones are exact in bf16
            return None
    return label.argmax(1).int()  # int32: indexing with int64 is ~3x slower on the CPU


def resize_ids(ids: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest resize of class ids: the ids of the nearest-resized one-hot map (the same kernel
    picks the same source pixels; float32 holds ids exactly)."""
    if tuple(ids.shape[-2:]) == tuple(size):
        return ids
    return F.interpolate(ids[:, None].float(), size=size, mode="nearest")[:, 0].int()


def gather_supported(conv: nn.Conv2d, size: tuple[int, int]) -> bool:
    """Whether :func:`conv_one_hot` computes ``conv`` at ``size``: an odd square kernel, stride 1,
    'same' zero or reflect padding, no dilation or groups."""
    k = conv.kernel_size[0]
    reflect_ok = conv.padding_mode == "zeros" or min(size) > k // 2  # F.pad's reflect limit
    return (
        conv.kernel_size == (k, k)
        and k % 2 == 1
        and conv.stride == (1, 1)
        and conv.padding == (k // 2, k // 2)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode in ("zeros", "reflect")
        and reflect_ok
    )


def _reflected(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source index of each of n + 2 pad positions under reflect padding (edge not repeated)."""
    i = torch.arange(-pad, n + pad, device=device).abs()
    return torch.where(i >= n, 2 * (n - 1) - i, i)


def gather_index(ids: torch.Tensor, kernel: int, n_labels: int, padding_mode: str) -> torch.Tensor:
    """B x H x W x k*k rows of :func:`conv_one_hot`'s table: at offset o = (i, j) the neighbour
    with id c reads row ``o * (L + 1) + c``; id L is the zero padding's void."""
    pad, (h, w) = kernel // 2, ids.shape[-2:]
    if padding_mode == "reflect":
        padded = ids[:, _reflected(h, pad, ids.device)][:, :, _reflected(w, pad, ids.device)]
    elif padding_mode == "zeros":
        padded = F.pad(ids, (pad, pad, pad, pad), value=n_labels)
    else:
        raise ValueError(f"padding mode {padding_mode!r}: use 'zeros' or 'reflect'")
    rows = [
        padded[:, i : i + h, j : j + w] + (i * kernel + j) * (n_labels + 1)
        for i in range(kernel)
        for j in range(kernel)
    ]
    return torch.stack(rows, dim=-1)


def conv_one_hot(
    index: torch.Tensor,
    dense: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding_mode: str,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """``conv2d(cat([dense, one_hot(ids)], 1), weight, bias)`` (stride 1, 'same' padding) from
    :func:`gather_index`'s ``index`` of the ids, without the one-hot map.

    ``dense`` (B x D x H x W, or None) are the condition's channels before the label; the label
    takes the weight's last L input channels. Differentiable in the weight, the bias and ``dense``
    (not in the label). The sum runs in float32 at least (as a bfloat16 conv accumulates) and is
    rounded to the weight's dtype once; the output is laid out in ``memory_format``.
    """
    out_c, _, k, _ = weight.shape
    n_dense = 0 if dense is None else dense.shape[1]
    acc_dtype = torch.promote_types(weight.dtype, torch.float32)
    label_w = weight[:, n_dense:].to(acc_dtype)
    void = label_w.new_zeros(out_c, 1, k, k)
    table = torch.cat([label_w, void], 1).permute(2, 3, 1, 0).reshape(k * k, -1, out_c)
    if bias is not None:  # every pixel reads exactly one row of offset 0: the bias rides there
        table = torch.cat([table[:1] + bias.to(acc_dtype), table[1:]])
    b, h, w, _ = index.shape
    out = F.embedding_bag(index.reshape(-1, k * k), table.reshape(-1, out_c), mode="sum")
    out = out.view(b, h, w, out_c).permute(0, 3, 1, 2)
    if dense is not None:
        dense_w = weight[:, :n_dense]
        if padding_mode == "reflect":  # as nn.Conv2d does for a non-zero padding mode
            out = out + F.conv2d(F.pad(dense, (k // 2,) * 4, mode="reflect"), dense_w)
        else:
            out = out + F.conv2d(dense, dense_w, padding=k // 2)
    return out.to(weight.dtype).contiguous(memory_format=memory_format)


def set_one_hot_gather(net: nn.Module, enabled: bool) -> nn.Module:
    """Switch the gathers on or off in every module of ``net`` that has them (``one_hot_gather``):
    off, the label map is convolved densely, as the official code does (comparisons, baselines)."""
    for module in net.modules():
        if hasattr(module, "one_hot_gather"):
            module.one_hot_gather = enabled
    return net


def _embedding_bag_flops(weight_shape, indices_shape, offsets_shape, *args, **kwargs) -> int:
    # A bag of n rows costs n - 1 adds per output channel (mode "sum"; 1-d indices + offsets).
    return weight_shape[1] * (indices_shape[0] - offsets_shape[0])


def gather_flop_formulas() -> dict:
    """``custom_mapping`` for ``torch.utils.flop_counter.FlopCounterMode``: the gathers' adds
    (it counts no FLOPs for an embedding bag otherwise)."""
    aten = torch.ops.aten
    return {
        aten._embedding_bag: _embedding_bag_flops,
        aten._embedding_bag_forward_only: _embedding_bag_flops,
    }
