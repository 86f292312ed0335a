"""The README's pictures, made by the trained demo model (models/demo/export) from the held-out
split of the prepared demo data, each column captioned:

    docs/demo.png        input | exemplar | warped exemplar | output | ground truth (evaluate@demo)
    docs/edit.png        photo | its mask | edited mask | output (paper Fig. 10)
    docs/makeup.png      strokes on one scene | other scenes | strokes carried over (Fig. 11)
    docs/correspond.png  points on the input mask | their matches on the exemplar (Fig. 8)

    make pictures        # after make repro (also run by make screenshots)

Scenes are picked by rule (the first held-out pairs, the first scenes with the classes an
application needs), never by how well they turn out; same model and data, same pictures. As in
evaluate@demo, the exemplar's mask is hidden (noise) when training hid it (eval.exemplar_mask:
auto), so every exemplar is matched by its appearance.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cocosnet.config import Params  # noqa: E402
from cocosnet.data.examples import PairExamples, heldout_pairs  # noqa: E402
from cocosnet.data.registry import adapter_for  # noqa: E402
from cocosnet.evaluation import exemplar_label_hidden  # noqa: E402
from cocosnet.formats.tensors import image_to_tensor  # noqa: E402
from cocosnet.inference import Translator  # noqa: E402
from cocosnet.inference.applications import correspondence_weights, edit_image  # noqa: E402
from cocosnet.inference.makeup import makeup_files  # noqa: E402
from cocosnet.inference.matches import (  # noqa: E402
    Match,
    draw_matches,
    input_picture,
    match_points,
)
from cocosnet.inference.prepare import prepare_exemplar, prepare_input  # noqa: E402
from cocosnet.io import read_image, read_label, write_image  # noqa: E402
from cocosnet.layout import DatasetPaths  # noqa: E402
from cocosnet.models.export import load_generator  # noqa: E402
from cocosnet.visualize import colour_labels, image_grid, with_captions  # noqa: E402
from stages._common import load_params  # noqa: E402
from stages._datasets import sample_loader  # noqa: E402

DATASET = "demo"
MODEL = REPO / "models" / DATASET / "export"
DOCS = REPO / "docs"
DEMO_ROWS = 6  # the first held-out pairs, in the pair list's order
DEMO_SCALE = 3  # 64-px scenes drawn 3x (pixel repetition): 192-px cells
SCALE = 4  # the application pictures, which have fewer columns
EDIT = ("road", "water")  # Fig. 10: this class of the mask becomes that one
STROKES = {"road": (255, 0, 0), "building": (255, 230, 0)}  # class -> stroke colour
MAKEUP_TARGETS = 3
MIN_PIXELS = 40  # a class smaller than this in a 64 x 64 scene is too small to show


@dataclasses.dataclass(frozen=True)
class Scene:
    id: str
    image: Path
    label: Path


def enlarge(rgb: np.ndarray, scale: int) -> np.ndarray:
    """H x W x 3 uint8 -> sH x sW x 3 by pixel repetition (no smoothing: the model's pixels)."""
    return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


def picture(rows: list[list[np.ndarray]], captions: tuple[str, ...]) -> np.ndarray:
    """Rows of H x W x 3 uint8 cells as one captioned grid (visualize.image_grid)."""
    columns = [torch.stack([image_to_tensor(row[c]) for row in rows]) for c in range(len(captions))]
    return image_grid(columns, max_rows=len(rows), captions=captions)


@torch.no_grad()
def demo_picture(pairs: PairExamples, params: Params) -> np.ndarray:
    """The first DEMO_ROWS held-out pairs translated as evaluate@demo translates them: its
    top-1 exemplars, its rule for hiding the exemplar's mask, its noise seed."""
    _, corr, gen = load_generator(MODEL)
    corr.eval()
    gen.eval()
    batch = torch.utils.data.default_collate([pairs[i] for i in range(DEMO_ROWS)])
    hidden = exemplar_label_hidden(params.eval.exemplar_mask, params.train.mask_epoch)
    torch.manual_seed(params.eval.seed)  # the noise that stands in for a hidden exemplar mask
    warp = corr(
        batch["input"], batch["exemplar"], batch["exemplar_input"], hide_exemplar_label=hidden
    )
    columns = [batch["input"], batch["exemplar"], warp.warped, gen(batch["input"], warp.warped)]
    columns.append(batch["image"])
    big = [F.interpolate(c.float(), scale_factor=DEMO_SCALE, mode="nearest") for c in columns]
    captions = ("input", "exemplar", "warped exemplar", "output", "ground truth")
    return image_grid(big, max_rows=DEMO_ROWS, captions=captions)


def class_id(name: str) -> int:
    return adapter_for(DATASET).class_names.index(name)


def has_classes(scene: Scene, names: Iterable[str]) -> bool:
    label = read_label(scene.label)
    return all((label == class_id(n)).sum() >= MIN_PIXELS for n in names)


def edit_picture(translator: Translator, scenes: list[Scene], tmp: Path) -> np.ndarray:
    """Fig. 10 on the first held-out scene with the class to edit: one class of its mask
    turned into another, re-synthesised with the photo as its own exemplar."""
    scene = next((s for s in scenes if has_classes(s, EDIT[:1])), None)
    if scene is None:
        raise SystemExit(f"pictures: no held-out scene with {EDIT[0]} to edit")
    mask = read_label(scene.label)
    edited = np.where(mask == class_id(EDIT[0]), class_id(EDIT[1]), mask).astype(np.uint8)
    write_image(tmp / "edited.png", edited)
    out = edit_image(translator, scene.image, scene.label, tmp / "edited.png", domain="label")
    n = translator.semantic_nc
    cells = [read_image(scene.image), colour_labels(mask, n), colour_labels(edited, n), out]
    captions = ("photo (its own exemplar)", "its mask", f"edited: {' -> '.join(EDIT)}", "output")
    return picture([[enlarge(c, SCALE) for c in cells]], captions)


def interior_point(region: np.ndarray) -> tuple[int, int]:
    """(x, y) of the region's pixel farthest from its edge (the first such, row-major)."""
    padded = np.pad(region.astype(np.uint8), 1)  # the image border is an edge too
    depth = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(depth.argmax()), depth.shape)
    return int(x), int(y)


def paint_strokes(photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The photo with a 3-px band across each STROKES class, through the row of the class's
    most interior pixel and clipped to the class: strokes with a meaning to carry over."""
    stroked = photo.copy()
    rows = np.arange(mask.shape[0])[:, None]
    for name, colour in STROKES.items():
        region = mask == class_id(name)
        _, y = interior_point(region)
        stroked[region & (abs(rows - y) <= 1)] = colour
    return stroked


def makeup_picture(translator: Translator, scenes: list[Scene], tmp: Path) -> np.ndarray:
    """Fig. 11: strokes painted on the first held-out scene with every STROKES class, carried
    to the next MAKEUP_TARGETS such scenes by `cocosnet makeup`'s function."""
    chosen = [s for s in scenes if has_classes(s, STROKES)][: 1 + MAKEUP_TARGETS]
    if len(chosen) <= MAKEUP_TARGETS:
        raise SystemExit(
            f"pictures: fewer than {1 + MAKEUP_TARGETS} held-out scenes with "
            f"{' and '.join(STROKES)}"
        )
    source, targets = chosen[0], chosen[1:]
    stroked = paint_strokes(read_image(source.image), read_label(source.label))
    write_image(tmp / "strokes.png", stroked)
    jobs = [(t.image, t.label, tmp / "made_up" / f"{t.id}.png") for t in targets]
    makeup_files(translator, source.image, source.label, tmp / "strokes.png", jobs, domain="label")
    rows = [[stroked, read_image(photo), read_image(out)] for photo, _, out in jobs]
    captions = ("strokes on one scene", "another scene", "strokes carried over")
    return picture([[enlarge(c, SCALE) for c in row] for row in rows], captions)


def scaled(point: tuple[float, float]) -> tuple[float, float]:
    """A pixel-centre coordinate of a file, on the file enlarged SCALE times."""
    return tuple((v + 0.5) * SCALE - 0.5 for v in point)


def correspond_picture(translator: Translator, query: Scene, exemplar: Scene) -> np.ndarray:
    """Fig. 8 on the first held-out pair: the most interior point of each class of the input
    mask and its argmax match on the exemplar (exemplar mask hidden: matched by appearance)."""
    inp = prepare_input(query.label, translator.semantic_nc, translator.size, domain="label")
    ex = prepare_exemplar(exemplar.image, translator.size)
    corr = correspondence_weights(translator, inp.tensor, ex.tensor)
    mask = read_label(query.label)
    classes = [c for c in np.unique(mask) if (mask == c).sum() >= MIN_PIXELS]
    points = [interior_point(mask == c) for c in classes]
    matches = match_points(corr, points, inp.box, ex.box)
    big = [Match(scaled(m.input), scaled(m.exemplar), m.weight) for m in matches]
    left = enlarge(input_picture(inp), SCALE)
    gap = 8
    drawn = draw_matches(left, enlarge(read_image(exemplar.image), SCALE), big, gap=gap)
    captions = ("input mask: a point per class", "exemplar: each point's best match")
    return with_captions(drawn, captions, [0, left.shape[1] + gap])


def heldout(params: Params, semantic_nc: int, image_size: int) -> PairExamples:
    """evaluate@demo's pairs: each held-out query with its top-1 retrieved exemplar."""
    paths = DatasetPaths.of(params.data.root, DATASET)
    loader = sample_loader(params, DATASET, semantic_nc, "pictures")
    return heldout_pairs(
        loader,
        paths.manifest,
        paths.pairs,
        image_size=image_size,
        split=params.eval.split,
        preprocess=params.train.preprocess,
    )


def make_pictures(params: Params) -> dict[str, np.ndarray]:
    """Every picture by its file name in docs/, computed before any is written."""
    hidden = exemplar_label_hidden(params.eval.exemplar_mask, params.train.mask_epoch)
    translator = Translator(MODEL, hide_exemplar_label=hidden, seed=params.eval.seed)
    pairs = heldout(params, translator.semantic_nc, translator.size)
    root = DatasetPaths.of(params.data.root, DATASET).dataset_dir

    def scene(sample: str) -> Scene:
        row = pairs.rows[sample]
        return Scene(sample, root / row["image"], root / row["label"])

    queries = [scene(q) for q, _ in pairs.pairs]
    with tempfile.TemporaryDirectory(prefix="pictures.") as tmp:
        return {
            "demo.png": demo_picture(pairs, params),
            "edit.png": edit_picture(translator, queries, Path(tmp)),
            "makeup.png": makeup_picture(translator, queries, Path(tmp)),
            "correspond.png": correspond_picture(translator, queries[0], scene(pairs.pairs[0][1])),
        }


def main() -> int:
    os.chdir(REPO)  # params.yaml's data root is relative to the repo
    params = load_params("pictures", "params.yaml")
    data = DatasetPaths.of(params.data.root, DATASET)
    missing = [p for p in (MODEL / "model.json", data.manifest, data.pairs) if not p.is_file()]
    if missing:
        names = ", ".join(str(p.relative_to(REPO) if p.is_absolute() else p) for p in missing)
        print(f"pictures: {names} not found: run make repro first", file=sys.stderr)
        return 1
    for name, image in make_pictures(params).items():
        write_image(DOCS / name, image)  # atomic: a reader never sees half a picture
        print(f"docs/{name}: {image.shape[1]}x{image.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
