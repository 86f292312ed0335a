"""The Triton warp against the naive one, run by tests/test_triton_warp.py in a subprocess with
``TRITON_INTERPRET=1``, or on a GPU without it (bench/gpu_check.sh). Triton reads the variable
when a kernel is defined, so it is set before cocosnet.models.triton_warp is imported. Prints one
JSON line: per case, the largest output and gradient differences relative to the largest
reference value."""

from __future__ import annotations

import json
import os
import sys

# The CPU through the interpreter (the suite), or a GPU (bench/gpu_check.sh).
DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"

import torch  # noqa: E402

from cocosnet.models.triton_warp import triton_warp  # noqa: E402

CASES = {  # batch, queries, keys, descriptor width, value channels
    "square": (1, 64, 64, 32, 3),
    "non_square_batch": (2, 45, 37, 40, 5),
    "wide_descriptors": (1, 33, 50, 9 * 24, 3),  # D not a multiple of the D block
    "warped_mask": (2, 40, 40, 32, 3 + 151),  # colours and a 151-class mask in one warp
}


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    want = want.to(got.device)
    return ((got.double() - want).abs().max() / want.abs().max().clamp(min=1e-12)).item()


def check(batch: int, n: int, m: int, depth: int, channels: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    unit = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=gen), dim=-1)  # noqa: E731
    q = unit(batch, n, depth).to(DEVICE).requires_grad_()
    k = unit(batch, m, depth).to(DEVICE).requires_grad_()
    v = torch.randn(batch, m, channels, generator=gen).to(DEVICE).requires_grad_()
    out = triton_warp(q, k, v, 100.0)
    ref = torch.softmax(100 * q.double() @ k.double().transpose(1, 2), -1) @ v.double()
    grad = torch.randn(out.shape, generator=gen).to(DEVICE)
    got = torch.autograd.grad(out, (q, k, v), grad)
    want = torch.autograd.grad(ref, (q, k, v), grad.double())
    errors = {"out": _relative(out, ref)}
    errors |= {f"grad_{n}": _relative(a, b) for n, a, b in zip("qkv", got, want, strict=True)}
    return errors


def cycle() -> dict:
    """The cycle warp: exemplar -> input -> exemplar, query and key swapped."""
    gen = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(1, 30, 24, generator=gen), dim=-1).to(DEVICE)
    k = torch.nn.functional.normalize(torch.randn(1, 42, 24, generator=gen), dim=-1).to(DEVICE)
    colours = torch.randn(1, 42, 3, generator=gen).to(DEVICE)
    there = triton_warp(q, k, colours, 100.0)
    back = triton_warp(k, q, there, 100.0)
    naive = lambda a, b, v: torch.softmax(100 * a.double() @ b.double().mT, -1) @ v.double()  # noqa: E731
    return {"out": _relative(back, naive(k, q, naive(q, k, colours)))}


def network() -> dict:
    """The demo correspondence network with ``warp_impl: triton`` against ``naive``: warped
    exemplar, warped mask and cycle, and the adaptors' gradients."""
    from cocosnet.config import model_config
    from cocosnet.models.factory import build_correspondence

    gen = torch.Generator().manual_seed(2)
    label = torch.nn.functional.one_hot(torch.randint(0, 8, (2, 32, 32), generator=gen), 8)
    label = label.permute(0, 3, 1, 2).float().to(DEVICE)
    exemplar = (torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1).to(DEVICE)
    outputs = {}
    for impl in ("naive", "triton"):
        torch.manual_seed(0)
        net = build_correspondence(model_config({"preset": "demo", "warp_impl": impl}))
        net = net.to(DEVICE)
        out = net(label, exemplar, label.flip(-1), cycle=True)
        loss = out.warped.square().mean() + out.cycle.square().mean()
        grad = torch.autograd.grad(loss, net.theta.weight)[0]
        outputs[impl] = (out.warped, out.warped_mask, out.cycle, grad)
    names = ("warped", "warped_mask", "cycle", "grad_theta")
    pairs = zip(names, outputs["triton"], outputs["naive"], strict=True)
    return {name: _relative(a, b.double()) for name, a, b in pairs}


if __name__ == "__main__":
    result = {name: check(*shape) for name, shape in CASES.items()}
    result["cycle"] = cycle()
    result["network"] = network()
    print(json.dumps(result))
    sys.exit(0)
