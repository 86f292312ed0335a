"""``cocosnet edit``, ``makeup`` and ``correspond``: the paper's applications of a model."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_runtime_args, runtime


def add_apps(sub) -> None:
    """The three commands, which share ``--checkpoint``, ``--domain``, ``--device``, ``--seed``
    and the runtime options."""
    from ..inference import DOMAINS

    shared_options = argparse.ArgumentParser(add_help=False)
    shared_options.add_argument(
        "--checkpoint", required=True, help="exported model dir (model.json)"
    )
    shared_options.add_argument(
        "--domain", default="auto", choices=DOMAINS, help="mask kind (auto: guess)"
    )
    shared_options.add_argument("--device", default="cpu")
    shared_options.add_argument(
        "--seed", type=int, default=0, help="noise standing in for a hidden mask"
    )
    add_runtime_args(shared_options)
    add_edit(sub, shared_options)
    add_makeup(sub, shared_options)
    add_correspond(sub, shared_options)


def add_edit(sub, shared_options: argparse.ArgumentParser) -> None:
    ed = sub.add_parser(
        "edit",
        parents=[shared_options],
        help="re-synthesise a photo from its edited mask (self-exemplar)",
    )
    ed.add_argument("--photo", required=True, help="the photo, used as its own exemplar")
    ed.add_argument("--mask", required=True, help="the photo's mask (same size)")
    ed.add_argument("--edited-mask", required=True, help="the edited mask (same size)")
    ed.add_argument("--out", required=True, help="output image, at the photo's size")
    ed.set_defaults(func=run_edit)


def run_edit(args: argparse.Namespace) -> int:
    from ..files import refuse_overwriting_inputs
    from ..inference import Translator
    from ..inference.applications import edit_image
    from ..io import write_image

    refuse_overwriting_inputs(
        [args.photo, args.mask, args.edited_mask, args.checkpoint], [args.out]
    )
    translator = Translator(
        args.checkpoint, device=args.device, seed=args.seed, runtime=runtime(args)
    )
    image = edit_image(translator, args.photo, args.mask, args.edited_mask, domain=args.domain)
    write_image(args.out, image)
    print(json.dumps({"edited": args.out, "size": list(image.shape[:2])}))
    return 0


def add_makeup(sub, shared_options: argparse.ArgumentParser) -> None:
    mk = sub.add_parser(
        "makeup", parents=[shared_options], help="transfer strokes drawn on one portrait to others"
    )
    mk.add_argument("--source", required=True, help="the clean source portrait")
    mk.add_argument("--source-mask", required=True, help="the source portrait's mask")
    mk.add_argument("--strokes", required=True, help="the source portrait with strokes drawn on")
    mk.add_argument("--targets", required=True, nargs="+", help="a folder or target photos")
    mk.add_argument("--target-masks", required=True, help="folder of target masks (by stem)")
    mk.add_argument("--out", required=True, help="output folder (<target stem>.png)")
    mk.add_argument(
        "--threshold", type=int, default=24, help="stroke where a channel differs by more (0-255)"
    )
    mk.set_defaults(func=run_makeup)


def run_makeup(args: argparse.Namespace) -> int:
    from ..files import refuse_overwriting_inputs
    from ..inference import Translator
    from ..inference.jobs import check_masked_photo
    from ..inference.makeup import makeup_files, makeup_targets

    targets = makeup_targets(args.targets, args.target_masks, args.out)
    sources = [args.source, args.source_mask, args.strokes, args.target_masks, args.checkpoint]
    refuse_overwriting_inputs(
        [*sources, *args.targets, *(p for t in targets for p in t[:2])],
        [args.out, *(t[2] for t in targets)],
    )
    translator = Translator(
        args.checkpoint, device=args.device, seed=args.seed, runtime=runtime(args)
    )
    problems = []
    for photo, mask, _ in targets:  # all read first: a bad target refuses the run, not halfway
        try:
            check_masked_photo(
                photo, mask, translator.semantic_nc, translator.size, domain=args.domain
            )
        except (ValueError, FileNotFoundError) as err:
            problems.append(err)
    if len(problems) == 1:
        raise problems[0]
    for err in problems:
        print(f"cocosnet makeup: error: {' '.join(str(err).split())}", file=sys.stderr)
    if problems:
        return 2
    written = makeup_files(
        translator,
        args.source,
        args.source_mask,
        args.strokes,
        targets,
        threshold=args.threshold,
        domain=args.domain,
    )
    print(json.dumps({"made_up": len(written), "out": args.out}))
    return 0


def add_correspond(sub, shared_options: argparse.ArgumentParser) -> None:
    co = sub.add_parser(
        "correspond", parents=[shared_options], help="match input points on the exemplar; draw them"
    )
    co.add_argument("--input", required=True, help="input mask/edges/pose")
    co.add_argument("--exemplar", required=True, help="exemplar photo")
    co.add_argument("--exemplar-mask", help="the exemplar's own mask (else seeded noise)")
    co.add_argument("--points", required=True, help="input pixel points 'x,y;x,y;...'")
    co.add_argument("--out", required=True, help="picture: input | exemplar with the matches")
    co.add_argument("--warped", help="also write the densely warped exemplar (input's size)")
    co.add_argument("--soft", action="store_true", help="expected position, not the argmax")
    co.set_defaults(func=run_correspond)


def run_correspond(args: argparse.Namespace) -> int:
    import dataclasses

    from ..files import refuse_overwriting_inputs
    from ..inference import Translator
    from ..inference.matches import correspond_files, parse_points

    points = parse_points(args.points)
    refuse_overwriting_inputs(
        [args.input, args.exemplar, args.exemplar_mask, args.checkpoint], [args.out, args.warped]
    )
    translator = Translator(
        args.checkpoint, device=args.device, seed=args.seed, runtime=runtime(args)
    )
    matches = correspond_files(
        translator,
        args.input,
        args.exemplar,
        points,
        args.out,
        exemplar_input=args.exemplar_mask,
        warped=args.warped,
        domain=args.domain,
        soft=args.soft,
    )
    found = [dataclasses.asdict(m) for m in matches]
    print(json.dumps({"matches": found, "out": args.out, "warped": args.warped}))
    return 0
