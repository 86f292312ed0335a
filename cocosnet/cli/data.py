"""``cocosnet weights`` and ``cocosnet pairs``: pretrained files and exemplar pair lists."""

from __future__ import annotations

import argparse
import json

from .. import weights


def add_weights(sub) -> None:
    w = sub.add_parser("weights", help="pretrained files: list, add a local copy, fetch")
    w.add_argument("--weights-dir", default="weights")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    wsub.add_parser("list")
    add = wsub.add_parser("add")
    add.add_argument("name", choices=sorted(weights.REGISTRY))
    add.add_argument("path")
    fetch = wsub.add_parser("fetch")
    fetch.add_argument("name", choices=sorted(weights.REGISTRY))
    for p in (add, fetch):
        p.add_argument("--weights-dir", default=argparse.SUPPRESS)
    w.set_defaults(func=run_weights)


def run_weights(args: argparse.Namespace) -> int:
    if args.weights_command == "list":
        print(json.dumps(weights.status(args.weights_dir), indent=2))
    elif args.weights_command == "add":
        from ..weight_checks import add_checked

        print(json.dumps({"added": str(add_checked(args.name, args.path, args.weights_dir))}))
    elif args.weights_command == "fetch":
        print(json.dumps({"fetched": str(weights.fetch(args.name, args.weights_dir))}))
    return 0


def add_pairs(sub) -> None:
    pairs = sub.add_parser("pairs", help="exemplar pair lists in the official text format")
    psub = pairs.add_subparsers(dest="pairs_command", required=True)
    imp_pairs = psub.add_parser("import", help="official key,ref1,...,refK lists -> parquet")
    imp_pairs.add_argument("--dataset", required=True, help="e.g. ade20k, deepfashion")
    imp_pairs.add_argument("--dataset-dir", required=True, help="prepared dataset (manifest)")
    imp_pairs.add_argument("--train", help="official training list, e.g. ade20k_ref.txt")
    imp_pairs.add_argument("--val", help="official test list, e.g. ade20k_ref_test.txt")
    imp_pairs.add_argument("--out", required=True, help="pairs.parquet to write")
    exp_pairs = psub.add_parser("export", help="pairs.parquet -> official text list")
    exp_pairs.add_argument("pairs", help="pairs.parquet")
    exp_pairs.add_argument("--split", default="val", help="train, val or test")
    exp_pairs.add_argument("--out", required=True)
    pairs.set_defaults(func=run_pairs)


def run_pairs(args: argparse.Namespace) -> int:
    from ..data.manifest import SPLITS
    from ..data.pairs import export_official, read_pairs
    from ..data.registry import adapter_for
    from ..files import refuse_overwriting_inputs
    from ..retrieval.build import import_official_lists

    if args.pairs_command == "import":
        lists = {split: path for split, path in (("train", args.train), ("val", args.val)) if path}
        if not lists:
            raise ValueError("give --train and/or --val official list files")
        refuse_overwriting_inputs([*lists.values(), args.dataset_dir], [args.out])
        id_of = adapter_for(args.dataset).official_id
        rows = import_official_lists(args.dataset_dir, lists, args.out, id_of)
        print(json.dumps({"pairs": len(rows), "out": args.out}))
    else:
        refuse_overwriting_inputs([args.pairs], [args.out])
        if args.split not in SPLITS:
            raise ValueError(f"unknown split {args.split!r}; known: {', '.join(SPLITS)}")
        every = read_pairs(args.pairs)
        rows = [r for r in every if r["split"] == args.split]
        if not rows:  # an empty list written with exit 0 would look like success
            present = sorted({r["split"] for r in every}) or ["none"]
            raise ValueError(
                f"{args.pairs}: no pairs of split {args.split!r} (splits there: "
                f"{', '.join(present)}); nothing written"
            )
        print(json.dumps({"lines": export_official(args.out, rows), "out": args.out}))
    return 0
