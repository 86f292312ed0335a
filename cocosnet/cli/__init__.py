"""The ``cocosnet`` console script. Parses arguments and calls library functions; nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import weights
from ..config import ConfigError
from ..files import os_error_message
from . import apps, data, demo, model, reports, translate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cocosnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    model.add_model_info(sub)
    model.add_import_official(sub)
    data.add_weights(sub)
    data.add_pairs(sub)
    reports.add_evaluate(sub)
    reports.add_plots(sub)
    translate.add_translate(sub)
    demo.add_demo(sub)
    apps.add_apps(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, weights.WeightsError, FileNotFoundError, ValueError) as err:
        print(f"cocosnet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, read-only output folder...: one line, no traceback
        print(f"cocosnet {args.command}: error: {os_error_message(err)}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main"]
