"""Argument types and options shared by several ``cocosnet`` commands."""

from __future__ import annotations

import argparse
import sys


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "bfloat16"],
        help="bfloat16: about 2x faster on CPUs with avx512_bf16 and on GPUs (bench/inference.py)",
    )
    parser.add_argument("--channels-last", action="store_true", help="oneDNN's conv layout")
    parser.add_argument("--compile", action="store_true", help="torch.compile (slow first call)")


def runtime(args: argparse.Namespace):
    from ..models.runtime import RuntimeOptions

    return RuntimeOptions(args.precision, args.channels_last, args.compile)


def report_skipped(command: str, skipped: list[Exception], kept: list) -> bool:
    """One stderr line per skipped item (exit status 1 when others went through); False when
    nothing is left (exit status 2)."""
    for err in skipped:
        print(f"cocosnet {command}: skipped: {' '.join(str(err).split())}", file=sys.stderr)
    if not kept:
        print(f"cocosnet {command}: error: all {len(skipped)} inputs refused", file=sys.stderr)
    return bool(kept)
