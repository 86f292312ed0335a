"""The Triton softmax warp (cocosnet/models/triton_warp.py) equals the naive warp, outputs and
gradients, on the CPU through Triton's interpreter: square and non-square, batch > 1, descriptor
widths off the kernel's block, the warped mask's 154 value channels and the cycle warp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def errors():
    env = os.environ | {"TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.triton_checks"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["square", "non_square_batch", "wide_descriptors", "warped_mask"])
def test_outputs_and_gradients_equal_the_naive_warp(errors, case):
    # float32 kernels against a float64 reference; alpha = 100 scales score rounding by 100.
    assert errors[case]["out"] < 1e-5, errors[case]
    for name in ("grad_q", "grad_k", "grad_v"):
        assert errors[case][name] < 1e-5, errors[case]


def test_the_cycle_warp_equals_the_naive_one(errors):
    assert errors["cycle"]["out"] < 1e-5, errors["cycle"]


def test_the_correspondence_network_warps_the_same_with_triton(errors):
    # Float32 both sides; the network's own rounding (alpha = 100) bounds the agreement.
    assert all(v < 1e-4 for v in errors["network"].values()), errors["network"]
