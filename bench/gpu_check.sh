#!/usr/bin/env bash
# The GPU checks of the full-resolution correspondence, as one short script for a lent device
# (issue 17 part 3): the Triton warp against the naive one on CUDA, the 256x256-grid warp
# forward+backward (fused vs triton), and a paper-size training step at corr_size 64 and 256.
# Writes bench/results/*_cuda.json; run from the repository root with the venv active.
set -euo pipefail
python -m tests.triton_checks
python -m pytest -q -m gpu tests/test_mlflow_native.py  # GPU system metrics in MLflow
python bench/warp.py --device cuda --sizes 64 128 256 --impls fused triton \
    --out bench/results/warp_triton_cuda.json
python bench/train_step.py --cases paper_ade20k --device cuda --corr-sizes 64 256 \
    --impls fused triton --out bench/results/train_step_triton_cuda.json
