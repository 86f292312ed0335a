"""The ``cocosnet`` console script. Parses arguments and calls library functions; nothing else."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import yaml

from . import weights
from .config import PRESETS, ConfigError, ModelConfig, model_config
from .io import os_error_message


def _model_info(args: argparse.Namespace) -> int:
    from .models.factory import model_info

    print(json.dumps(model_info(model_config({"preset": args.preset})), indent=2))
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


def _import_official(args: argparse.Namespace) -> int:
    from .models.official import import_official

    cfg = model_config({"preset": args.preset, **dict(args.set)})
    out = import_official(cfg, args.corr, args.gen, args.out)
    print(json.dumps({"saved": str(out)}))
    return 0


def _weights(args: argparse.Namespace) -> int:
    if args.weights_command == "list":
        print(json.dumps(weights.status(args.weights_dir), indent=2))
    elif args.weights_command == "add":
        print(json.dumps({"added": str(weights.add(args.name, args.path, args.weights_dir))}))
    elif args.weights_command == "fetch":
        print(json.dumps({"fetched": str(weights.fetch(args.name, args.weights_dir))}))
    return 0


def _pairs(args: argparse.Namespace) -> int:
    from .retrieval.build import import_official_lists
    from .retrieval.pairs import export_official, read_pairs

    if args.pairs_command == "import":
        lists = {split: path for split, path in (("train", args.train), ("val", args.val)) if path}
        if not lists:
            raise ValueError("give --train and/or --val official list files")
        rows = import_official_lists(args.dataset, args.dataset_dir, lists, args.out)
        print(json.dumps({"pairs": len(rows), "out": args.out}))
    else:
        rows = [r for r in read_pairs(args.pairs) if r["split"] == args.split]
        print(json.dumps({"lines": export_official(args.out, rows), "out": args.out}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .metrics.registry import MetricOptions, evaluate, folder_inputs

    inputs = folder_inputs(
        args.real, args.fake, args.labels, args.exemplars, args.exemplar_labels, args.num_classes
    )
    options = MetricOptions(
        weights_dir=args.weights_dir,
        device=args.device,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    result = evaluate([args.metric], inputs, options)[args.metric]
    print(json.dumps({"metric": args.metric} | result, indent=2))
    return 3 if "skipped" in result else 0


def _plots(args: argparse.Namespace) -> int:
    import subprocess

    from .plots import render

    def dvc_json(*cmd: str) -> dict:
        proc = subprocess.run(["dvc", *cmd, "--json"], capture_output=True, text=True)
        if proc.returncode != 0 and not proc.stdout.strip():
            raise ValueError(f"dvc {' '.join(cmd)} failed: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    index, problems = render(dvc_json("plots", "show"), dvc_json("metrics", "show"), args.out)
    print(json.dumps({"page": str(index), "not_loaded": problems}))
    return 0


def _size(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 256x176, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return height, width


def _add_runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "bfloat16"],
        help="bfloat16: about 2x faster on CPUs with avx512_bf16 and on GPUs (bench/inference.py)",
    )
    parser.add_argument("--channels-last", action="store_true", help="oneDNN's conv layout")
    parser.add_argument("--compile", action="store_true", help="torch.compile (slow first call)")


def _runtime(args: argparse.Namespace):
    from .models.runtime import RuntimeOptions

    return RuntimeOptions(args.precision, args.channels_last, args.compile)


def _report_skipped(command: str, skipped: list[Exception], kept: list) -> bool:
    """One stderr line per skipped item (exit status 1 when others went through); False when
    nothing is left (exit status 2)."""
    for err in skipped:
        print(f"cocosnet {command}: skipped: {' '.join(str(err).split())}", file=sys.stderr)
    if not kept:
        print(f"cocosnet {command}: error: all {len(skipped)} inputs refused", file=sys.stderr)
    return bool(kept)


def _translate(args: argparse.Namespace) -> int:
    import dataclasses
    import tempfile
    from pathlib import Path

    from .inference import Job, Translator, pairs_from_folders, read_pair_list, translate_many
    from .inference.jobs import check_job
    from .inference.photos import PhotoModels, materialize_input
    from .inference.prepare import is_keypoints_table

    warped_dir = None
    if args.pairs:
        if args.input or args.exemplar or args.exemplar_input:
            raise ValueError("--pairs replaces --input, --exemplar and --exemplar-input")
        jobs, warped_dir = read_pair_list(args.pairs, args.out), args.warped
    elif not (args.input and args.exemplar):
        raise ValueError("give --input and --exemplar (files or folders), or --pairs LIST")
    elif Path(args.input).is_dir():
        jobs = pairs_from_folders(
            args.input, args.exemplar, args.out, exemplar_input=args.exemplar_input
        )
        warped_dir = args.warped
    elif not Path(args.input).is_file():
        raise FileNotFoundError(f"{args.input}: input file or folder not found")
    elif Path(args.exemplar).is_dir():
        raise ValueError(f"{args.exemplar} is a folder but --input {args.input} is one file")
    else:
        ex_input = Path(args.exemplar_input) if args.exemplar_input else None
        warped = Path(args.warped) if args.warped else None
        jobs = [Job(Path(args.input), Path(args.exemplar), Path(args.out), warped, ex_input)]
    if args.image_id is not None and (args.pairs or not is_keypoints_table(args.input or "")):
        raise ValueError("--image-id selects an image of one keypoints .parquet --input")
    translator = Translator(
        args.checkpoint,
        device=args.device,
        hide_exemplar_label=True if args.hide_exemplar_mask else None,
        seed=args.seed,
        runtime=_runtime(args),
    )
    masks_dir = Path(args.masks_model_dir) if args.masks_model_dir else None
    models = PhotoModels(Path(args.weights_dir), masks_dir, device=args.device)
    with tempfile.TemporaryDirectory(prefix="cocosnet-inputs-") as made:
        # Photos and keypoint tables become the mask / pose files the label / pose domains read.
        # Every pair is read first: a bad file skips its pair (one line) and the others go on.
        domain, kept, skipped = args.domain, [], []
        for job in jobs:
            try:
                path, domain = materialize_input(
                    job.input,
                    args.domain,
                    made,
                    models=models,
                    image_id=args.image_id,
                    canvas=args.pose_size,
                )
                ex_input = job.exemplar_input
                if ex_input is not None and args.domain in ("photo-mask", "photo-pose"):
                    ex_input = materialize_input(ex_input, args.domain, made, models=models)[0]
                job = dataclasses.replace(job, input=path, exemplar_input=ex_input)
                size, channels = translator.size, translator.semantic_nc
                check_job(job, channels, size, domain=domain, canvas=args.pose_size)
            except (ValueError, FileNotFoundError) as err:
                if len(jobs) == 1:
                    raise
                skipped.append(err)
                continue
            kept.append(job)
        if not _report_skipped(args.command, skipped, kept):
            return 2
        written = translate_many(
            translator,
            kept,
            domain=domain,
            batch_size=args.batch_size,
            warped_dir=warped_dir,
            pose_size=args.pose_size,
            progress=len(jobs) > 1,
        )
    summary = {"translated": len(written), "out": args.out}
    print(json.dumps(summary | ({"skipped": len(skipped)} if skipped else {})))
    return 1 if skipped else 0


def _edit(args: argparse.Namespace) -> int:
    from .inference import Translator
    from .inference.applications import edit_image
    from .io import write_image

    translator = Translator(
        args.checkpoint, device=args.device, seed=args.seed, runtime=_runtime(args)
    )
    image = edit_image(translator, args.photo, args.mask, args.edited_mask, domain=args.domain)
    write_image(args.out, image)
    print(json.dumps({"edited": args.out, "size": list(image.shape[:2])}))
    return 0


def _makeup(args: argparse.Namespace) -> int:
    from .inference import Translator
    from .inference.applications import makeup_files, makeup_targets
    from .inference.jobs import check_masked_photo

    targets = makeup_targets(args.targets, args.target_masks, args.out)
    translator = Translator(
        args.checkpoint, device=args.device, seed=args.seed, runtime=_runtime(args)
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


def _correspond(args: argparse.Namespace) -> int:
    import dataclasses

    from .inference import Translator
    from .inference.applications import correspond_files, parse_points

    points = parse_points(args.points)
    translator = Translator(
        args.checkpoint, device=args.device, seed=args.seed, runtime=_runtime(args)
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


def _demo(args: argparse.Namespace) -> int:
    from .webdemo import find_checkpoints, make_server, serve

    checkpoints = args.checkpoint or find_checkpoints("models")
    if not checkpoints:
        raise ValueError("no models/*/export/model.json: give --checkpoint MODEL_DIR")
    server = make_server(
        checkpoints,
        host=args.host,
        port=args.port,
        device=args.device,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
    )
    print(json.dumps({"serving": server.url, "checkpoints": [str(c) for c in checkpoints]}))
    sys.stdout.flush()
    serve(server)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cocosnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("model-info", help="parameter counts and correspondence resolution")
    info.add_argument("--preset", required=True, choices=sorted(PRESETS))
    info.set_defaults(func=_model_info)

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
    imp.set_defaults(func=_import_official)

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
    w.set_defaults(func=_weights)

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
    exp_pairs.add_argument("--split", default="val")
    exp_pairs.add_argument("--out", required=True)
    pairs.set_defaults(func=_pairs)

    from .metrics.registry import METRICS

    ev = sub.add_parser(
        "evaluate", help="one metric on folders of images (files matched by name), as JSON"
    )
    ev.add_argument("metric", choices=sorted(METRICS))
    ev.add_argument("--real", help="ground-truth images")
    ev.add_argument("--fake", help="generated images")
    ev.add_argument("--labels", help="class-id maps of the inputs (semantic/style metrics)")
    ev.add_argument("--exemplars", help="exemplar photos (style relevance)")
    ev.add_argument("--exemplar-labels", help="class-id maps of the exemplars (style relevance)")
    ev.add_argument("--num-classes", type=int, help="classes of the label maps")
    ev.add_argument("--weights-dir", default="weights")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--seed", type=int, default=0, help="SWD sampling")
    ev.set_defaults(func=_evaluate)

    plots = sub.add_parser(
        "plots", help="DVC plots and metrics as an offline HTML page (inline SVG, no CDN)"
    )
    plots.add_argument("--out", default="dvc_plots", help="folder for index.html and the SVGs")
    plots.set_defaults(func=_plots)

    from .inference import DOMAINS

    tr = sub.add_parser(
        "translate",
        help="translate inputs with exemplars using an exported model (one pair, folders, list)",
    )
    tr.add_argument("--checkpoint", required=True, help="exported model dir (model.json)")
    tr.add_argument("--input", help="input file, or a folder of inputs (outputs <stem>.png)")
    tr.add_argument("--exemplar", help="exemplar photo, or a folder matched by stem")
    tr.add_argument("--pairs", help="text list of input,exemplar[,exemplar_input] lines")
    tr.add_argument("--out", required=True, help="output image (one pair) or folder")
    tr.add_argument("--warped", help="also write the warped exemplar: file or folder")
    tr.add_argument("--exemplar-input", help="the exemplar's own mask/edges/pose: file or folder")
    tr.add_argument("--domain", default="auto", choices=DOMAINS, help="input kind (auto: guess)")
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--batch-size", type=int, default=8)
    tr.add_argument("--hide-exemplar-mask", action="store_true", help="noise, not --exemplar-input")
    tr.add_argument("--pose-size", type=_size, help="HxW canvas of OpenPose txt inputs")
    tr.add_argument("--seed", type=int, default=0, help="noise standing in for the exemplar mask")
    tr.add_argument("--image-id", help="the image of a keypoints .parquet --input (pose stage)")
    tr.add_argument(
        "--weights-dir", default="weights", help="registered OpenPose files (photo-pose)"
    )
    tr.add_argument(
        "--masks-model-dir",
        help="UPerNet ADE20k folder for photo-mask (default: WEIGHTS_DIR/upernet_ade20k, as "
        "params.yaml preprocess.masks.model_dir)",
    )
    _add_runtime_args(tr)
    tr.set_defaults(func=_translate)

    demo = sub.add_parser("demo", help="web page to translate uploads (http://127.0.0.1:7860/)")
    demo.add_argument(
        "--checkpoint",
        action="append",
        help="exported model dir; repeat for several (default: every models/*/export)",
    )
    demo.add_argument("--host", default="127.0.0.1", help="other than loopback: warned")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--device", default="cpu")
    demo.add_argument("--max-upload-mb", type=float, default=10.0, help="per request (HTTP 413)")
    demo.add_argument("--max-pixels", type=int, default=4096 * 4096, help="per image (HTTP 400)")
    demo.set_defaults(func=_demo)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", required=True, help="exported model dir (model.json)")
    common.add_argument("--domain", default="auto", choices=DOMAINS, help="mask kind (auto: guess)")
    common.add_argument("--device", default="cpu")
    common.add_argument("--seed", type=int, default=0, help="noise standing in for a hidden mask")
    _add_runtime_args(common)

    ed = sub.add_parser(
        "edit", parents=[common], help="re-synthesise a photo from its edited mask (self-exemplar)"
    )
    ed.add_argument("--photo", required=True, help="the photo, used as its own exemplar")
    ed.add_argument("--mask", required=True, help="the photo's mask (same size)")
    ed.add_argument("--edited-mask", required=True, help="the edited mask (same size)")
    ed.add_argument("--out", required=True, help="output image, at the photo's size")
    ed.set_defaults(func=_edit)

    mk = sub.add_parser(
        "makeup", parents=[common], help="transfer strokes drawn on one portrait to others"
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
    mk.set_defaults(func=_makeup)

    co = sub.add_parser(
        "correspond", parents=[common], help="match input points on the exemplar; draw them"
    )
    co.add_argument("--input", required=True, help="input mask/edges/pose")
    co.add_argument("--exemplar", required=True, help="exemplar photo")
    co.add_argument("--exemplar-mask", help="the exemplar's own mask (else seeded noise)")
    co.add_argument("--points", required=True, help="input pixel points 'x,y;x,y;...'")
    co.add_argument("--out", required=True, help="picture: input | exemplar with the matches")
    co.add_argument("--warped", help="also write the densely warped exemplar (input's size)")
    co.add_argument("--soft", action="store_true", help="expected position, not the argmax")
    co.set_defaults(func=_correspond)
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


if __name__ == "__main__":
    raise SystemExit(main())
