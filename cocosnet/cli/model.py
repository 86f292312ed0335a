"""``cocosnet model-info`` and ``cocosnet import-official``: model tools."""

from __future__ import annotations

import argparse
import json

import yaml

from ..config import PRESETS, ModelConfig, model_config


def add_model_info(sub) -> None:
    info = sub.add_parser(
        "model-info", help="parameter counts, correspondence resolution and FLOPs per image"
    )
    info.add_argument("--preset", required=True, choices=sorted(PRESETS))
    info.set_defaults(func=run_model_info)


def run_model_info(args: argparse.Namespace) -> int:
    from ..models.factory import generator_flops, model_info

    cfg = model_config({"preset": args.preset})
    info = model_info(cfg) | {"flops_per_image": generator_flops(cfg)}
    print(json.dumps(info, indent=2))
    return 0


def _model_key(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of a model key, the value read as YAML (``ngf=32``, ``warp_bilinear=true``)."""
    key, sep, value = text.partition("=")
    keys = sorted(set(ModelConfig.model_fields) - {"preset"})
    if not sep or key not in keys:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE with KEY one of {keys}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not valid YAML") from None


def add_import_official(sub) -> None:
    imp = sub.add_parser("import-official", help="import released official checkpoints")
    imp.add_argument("--preset", required=True, choices=sorted(PRESETS))
    imp.add_argument("--corr", required=True, help="latest_net_Corr.pth")
    imp.add_argument("--gen", required=True, help="latest_net_G.pth")
    imp.add_argument("--out", required=True, help="output directory (safetensors + model.json)")
    imp.add_argument(
        "--set",
        action="append",
        default=[],
        type=_model_key,
        metavar="KEY=VALUE",
        help="a model key over the preset, as in params.yaml (e.g. ngf=32); repeatable",
    )
    imp.set_defaults(func=run_import_official)


def run_import_official(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..files import refuse_overwriting_inputs
    from ..models.export import CONFIG_FILE, FILES
    from ..models.official import import_official

    written = [Path(args.out) / name for name in (CONFIG_FILE, *FILES.values())]
    refuse_overwriting_inputs([args.corr, args.gen], [args.out, *written])
    cfg = model_config({"preset": args.preset, **dict(args.set)})
    out = import_official(cfg, args.corr, args.gen, args.out)
    print(json.dumps({"saved": str(out)}))
    return 0
