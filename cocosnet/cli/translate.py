"""``cocosnet translate``: inputs with exemplars through an exported model."""

from __future__ import annotations

import argparse
import json

from .common import add_runtime_args, report_skipped, runtime


def _size(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 256x176, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return height, width


def add_translate(sub) -> None:
    from ..inference import DOMAINS

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
    add_runtime_args(tr)
    tr.set_defaults(func=run_translate)


def _jobs(args: argparse.Namespace) -> tuple[list, str | None]:
    """The jobs of one pair, two folders or a pair list, and the folder of warped exemplars."""
    from pathlib import Path

    from ..inference import Job, pairs_from_folders, read_pair_list
    from ..inference.prepare import is_keypoints_table

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
    return jobs, warped_dir


def _prepare(args: argparse.Namespace, jobs: list, translator, models, made: str):
    """(domain, kept jobs, skipped errors): photos and keypoint tables become the mask / pose
    files the label / pose domains read. Every pair is read first: a bad file skips its pair
    (one line) and the others go on; the only pair's error is raised."""
    import dataclasses

    from ..inference.jobs import check_job
    from ..inference.photos import materialize_input

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
            if len(jobs) == 1 and not args.pairs:
                raise
            skipped.append(ValueError(f"{job.source}: {err}") if job.source else err)
            continue
        kept.append(job)
    return domain, kept, skipped


def _refuse_overwrites(args: argparse.Namespace, jobs: list, warped_dir: str | None) -> None:
    """No output (file, or file in the output folders) may be an input, before any is read."""
    from pathlib import Path

    from ..files import refuse_overwriting_inputs

    inputs = [args.pairs, args.input, args.exemplar, args.exemplar_input, args.checkpoint]
    outputs = [args.out, args.warped]
    for job in jobs:
        inputs += [job.input, job.exemplar, job.exemplar_input]
        outputs += [job.out, job.warped, Path(warped_dir) / job.out.name if warped_dir else None]
    refuse_overwriting_inputs(inputs, outputs)


def run_translate(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from ..inference import Translator, translate_many
    from ..inference.photos import PhotoModels

    jobs, warped_dir = _jobs(args)
    _refuse_overwrites(args, jobs, warped_dir)
    translator = Translator(
        args.checkpoint,
        device=args.device,
        hide_exemplar_label=True if args.hide_exemplar_mask else None,
        seed=args.seed,
        runtime=runtime(args),
    )
    masks_dir = Path(args.masks_model_dir) if args.masks_model_dir else None
    models = PhotoModels(Path(args.weights_dir), masks_dir, device=args.device)
    with tempfile.TemporaryDirectory(prefix="cocosnet-inputs-") as made:
        domain, kept, skipped = _prepare(args, jobs, translator, models, made)
        if not report_skipped(args.command, skipped, kept):
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
