"""Translation jobs from folders (matched by stem) or from pair lists (paths relative to the
list, never outside it)."""

from __future__ import annotations

import os
from pathlib import Path

from ..io import read_image
from ..tables import summarize_problems
from .prepare import IMAGE_SUFFIXES, pose_name, prepare_exemplar, prepare_input
from .translator import Job


def _is_input_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and (
        path.suffix.lower() in (*IMAGE_SUFFIXES, ".npz") or name.endswith("_candidate.txt")
    )


def by_stem(folder: Path, keep) -> dict[str, Path]:
    """``{stem: file}`` of a folder's files that ``keep`` accepts; a repeated stem is an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.name.startswith(".") and keep(path):
            stem = pose_name(path)
            if stem in found:
                raise ValueError(
                    f"{folder}: {found[stem].name} and {path.name} share stem {stem!r}"
                )
            found[stem] = path
    return found


def pairs_from_folders(
    input_dir: str | os.PathLike,
    exemplar: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    exemplar_input: str | os.PathLike | None = None,
) -> list[Job]:
    """One job per input file (masks, edge maps, photos, ``.npz``, ``*_candidate.txt``) of
    ``input_dir``, writing ``out_dir/<stem>.png``; exemplars matched by stem in the folder
    ``exemplar``, or the single file ``exemplar`` for all. ``exemplar_input``: a folder of the
    exemplars' own inputs matched by the exemplar's stem, or one file."""
    input_dir, exemplar = Path(input_dir), Path(exemplar)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"{input_dir}: not a folder")
    inputs = by_stem(input_dir, _is_input_file)
    if not inputs:
        raise ValueError(f"{input_dir}: no input files")
    photos = {"": exemplar}
    if exemplar.is_dir():
        photos = by_stem(exemplar, lambda p: p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif not exemplar.is_file():
        raise FileNotFoundError(f"{exemplar}: exemplar file or folder not found")
    ex_inputs = {}
    if exemplar_input is not None and Path(exemplar_input).is_dir():
        ex_inputs = by_stem(Path(exemplar_input), _is_input_file)
    elif exemplar_input is not None and not Path(exemplar_input).is_file():
        raise FileNotFoundError(f"{exemplar_input}: exemplar input file or folder not found")
    jobs, missing = [], []
    for stem, path in inputs.items():
        photo = photos.get(stem if exemplar.is_dir() else "")
        ex_input = None
        if photo is not None and exemplar_input is not None:
            ex_input = ex_inputs.get(pose_name(photo)) if ex_inputs else Path(exemplar_input)
        if photo is None or (exemplar_input is not None and ex_input is None):
            missing.append(stem)
            continue
        jobs.append(Job(path, photo, Path(out_dir) / f"{stem}.png", exemplar_input=ex_input))
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        what = "exemplar" + (" or exemplar input" if exemplar_input is not None else "")
        raise ValueError(f"{input_dir}: no matching {what} for {len(missing)} inputs: {shown}")
    return jobs


def _list_path(root: Path, text: str, where: str) -> Path:
    """A path of a pair list, relative to the list's folder and never leaving it."""
    rel = Path(text)
    if not text or rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"{where}: path {text!r} must be relative to the list's folder, no '..'")
    path = root / rel
    if not path.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"{where}: path {text!r} leaves the list's folder")
    if not path.is_file():
        raise FileNotFoundError(f"{where}: {path} not found")
    return path


def read_pair_list(list_path: str | os.PathLike, out_dir: str | os.PathLike) -> list[Job]:
    """``input,exemplar[,exemplar_input]`` per line (paths relative to the list's folder; blank
    lines and ``#`` comments skipped) -> jobs writing ``out_dir/<input stem>.png``. A list with
    bad lines is refused whole, naming every bad line (``list:line: reason``)."""
    list_path = Path(list_path)
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{list_path}: pair list not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{list_path}: cannot read ({err})") from None
    jobs, outs, problems = [], {}, []
    for lineno, line in enumerate(lines, start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{list_path}:{lineno}"
        fields = [f.strip() for f in line.split(",")]
        try:
            if len(fields) not in (2, 3):
                raise ValueError(f"{where}: expected input,exemplar[,exemplar_input], got {line!r}")
            paths = [_list_path(list_path.parent, f, where) for f in fields]
        except (ValueError, FileNotFoundError) as err:
            problems.append(str(err))
            continue
        out = Path(out_dir) / f"{pose_name(paths[0])}.png"
        if out in outs:
            problems.append(f"{where}: output {out.name} already written by line {outs[out]}")
            continue
        outs[out] = lineno
        ex_input = (paths[2:] or [None])[0]
        jobs.append(Job(paths[0], paths[1], out, exemplar_input=ex_input, source=where))
    if len(problems) > 1:
        raise ValueError(summarize_problems(f"{list_path}: bad lines", problems))
    if problems:
        raise ValueError(problems[0])
    if not jobs:
        raise ValueError(f"{list_path}: no pairs")
    return jobs


def check_job(
    job: Job,
    semantic_nc: int,
    size: int,
    *,
    domain: str = "auto",
    canvas: tuple[int, int] | None = None,
) -> None:
    """Read every file of ``job`` as translation will and raise its problem (ValueError, e.g.
    ImageProblem, naming the file), so that a batch can skip a bad pair before it starts
    writing instead of stopping halfway through."""
    prepare_input(job.input, semantic_nc, size, domain=domain, canvas=canvas)
    ex = prepare_exemplar(job.exemplar, size)
    if job.exemplar_input is not None:
        own = prepare_input(
            job.exemplar_input,
            semantic_nc,
            size,
            domain=domain,
            canvas=(ex.box.height, ex.box.width),
        )
        if (own.box.height, own.box.width) != (ex.box.height, ex.box.width):
            raise ValueError(
                f"exemplar input {job.exemplar_input} is {own.box.width}x{own.box.height} but "
                f"exemplar {job.exemplar} is {ex.box.width}x{ex.box.height}"
            )


def check_masked_photo(
    photo: str | os.PathLike, mask: str | os.PathLike, semantic_nc: int, size: int, *, domain="auto"
) -> None:
    """Read a photo and its mask (edges, pose), which must share its size, as makeup will; raise
    the problem (ValueError naming the file) so a batch skips that target up front."""
    rgb = read_image(photo)
    own = prepare_input(mask, semantic_nc, size, domain=domain, canvas=rgb.shape[:2])
    if (own.box.height, own.box.width) != rgb.shape[:2]:
        raise ValueError(
            f"{mask} is {own.box.width}x{own.box.height} but photo {photo} is "
            f"{rgb.shape[1]}x{rgb.shape[0]}"
        )
