"""Sharing the machine's cores between the processes the pipeline runs at once.

Every torch (and OpenMP/BLAS) process takes all cores by default; two or more at once then fight
over them and each runs many times slower than its share (measured: 15-39 s per demo training
step at load 8 on 2 cores, against 0.5 s alone). So whatever starts several processes at once
(the Prefect flow, a sweep's queue, torchrun, the local worker pool, tests) gives each its share:
``thread_budget(concurrent)`` threads, passed to a child through its environment
(:func:`budget_env`) or set in a worker (:func:`limit_threads`). A process run alone keeps every
core, and an explicit ``runtime.threads`` still wins (the training loop sets it last).

The share of a process that was itself given a budget is divided again: a stage given 4 threads
that fans out to 2 workers gives each 2. Nothing here reads the environment on its own; the
callers at the top (stages, flows) hand it theirs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

# The variables the thread pools in our dependencies read when they start.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def current_budget(env: Mapping[str, str]) -> int:
    """The threads this process was given (``OMP_NUM_THREADS`` in ``env``), else all cores."""
    value = env.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else available_cores()


def process_threads() -> int:
    """The threads this process computes with: torch's setting once torch is imported (which
    follows ``OMP_NUM_THREADS`` and ``runtime.threads``), else all cores."""
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    return available_cores()


def thread_budget(concurrent: int, total: int | None = None) -> int:
    """Threads for each of ``concurrent`` processes sharing ``total`` (default: all cores)."""
    total = available_cores() if total is None else total
    return max(1, total // max(1, concurrent))


def budget_env(threads: int, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a child process that gets ``threads`` threads."""
    return {**env, **{name: str(threads) for name in THREAD_VARIABLES}}


def limit_threads(threads: int) -> None:
    """Give this (worker) process ``threads`` threads: for thread pools not yet started through
    the environment, and for torch and OpenCV if they are already imported."""
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(threads)


def describe(concurrent: int, threads: int, total: int) -> str:
    """The log line an orchestrator writes when it divides the cores."""
    return f"{concurrent} at once on {total} cores: {threads} thread(s) each"
