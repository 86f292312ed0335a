"""Helpers shared by the tests: official key listings and label maps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

# State-dict keys, shapes and parameter counts of the official networks per preset, read off the
# official code (a copy of shared/official/ kept with the tests).
OFFICIAL_DIR = Path(__file__).resolve().parent / "fixtures" / "official"


def official_keys(preset: str) -> dict:
    """The official state-dict listing for a preset (read off the official code)."""
    return json.loads((OFFICIAL_DIR / f"keys-{preset}.json").read_text())


def one_hot(classes: torch.Tensor, n: int) -> torch.Tensor:
    """B x H x W class ids -> B x n x H x W one-hot float map."""
    return torch.nn.functional.one_hot(classes, n).permute(0, 3, 1, 2).float()


def random_label(batch: int, n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Blocky maps (4x4 cells) so nearest resizing keeps every class.
    coarse = torch.randint(0, n, (batch, size // 4, size // 4), generator=g)
    return one_hot(coarse.repeat_interleave(4, 1).repeat_interleave(4, 2), n)


def training_batch(cfg, n: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    """A training batch for model config ``cfg``: random blocky labels (seeds ``seed`` and
    ``seed + 1``), random photos, the first sample a pseudo pair."""
    s, c = cfg.image_size, cfg.semantic_nc
    g = torch.Generator().manual_seed(seed)
    inp, ex = random_label(n, c, s, seed=seed), random_label(n, c, s, seed=seed + 1)
    return {  # plain NCHW layout (one_hot().permute() is channels-last)
        "input": inp.contiguous(),
        "exemplar_input": ex.contiguous(),
        "exemplar": torch.rand(n, 3, s, s, generator=g) * 2 - 1,
        "image": torch.rand(n, 3, s, s, generator=g) * 2 - 1,
        "is_pseudo": torch.tensor([True, False][:n]),
        "label": inp.argmax(1),
        "exemplar_label": ex.argmax(1),
    }


def tiny_model(root, **overrides):
    """A randomly initialised demo-architecture model exported to ``root`` (plumbing tests)."""
    from cocosnet.config import model_config
    from cocosnet.models.export import save_generator
    from cocosnet.models.factory import build_correspondence, build_translation

    cfg = model_config({"preset": "demo", **overrides})
    torch.manual_seed(0)
    return save_generator(root, cfg, build_correspondence(cfg), build_translation(cfg))


def single_thread():
    """Generator for a module fixture: one intra-op thread while the module runs (on shared,
    busy cores OpenMP's spinning threads can be 100x slower for tiny models)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


REPO = Path(__file__).resolve().parents[1]


def dvc_project_copy(work: Path) -> Path:
    """A copy of the code and dvc.yaml in ``work`` (created), for a DVC project in a temp dir;
    the caller writes its params.yaml and runs git/dvc init."""
    work.mkdir(parents=True)
    for name in ("cocosnet", "stages", "raw"):
        shutil.copytree(REPO / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", work)
    return work


def prepared_demo(tmp: Path, n_train: int, n_val: int) -> Path:
    """A prepared and indexed micro demo dataset under ``tmp``/data (the stages, in process)."""
    import yaml

    from stages.index import main as index_stage
    from stages.prepare import main as prepare_stage

    params = tmp / "params.yaml"
    raw = {
        "data": {"root": str(tmp / "data"), "demo": {"n_train": n_train, "n_val": n_val}},
        "index": {"k": 3, "embedding": "layout"},
    }
    params.write_text(yaml.safe_dump(raw))
    prepare_stage("demo", str(params))
    index_stage("demo", str(params))
    return tmp / "data"


def demo_data(data_root, semantic_nc: int = 8, condition: str = "label"):
    """(sample loader, manifest, pair list) of the prepared demo under ``data_root``, at the
    paths dvc.yaml gives them."""
    from cocosnet.data.demo import ADAPTER
    from cocosnet.data.sample import SampleLoader
    from cocosnet.layout import DatasetPaths

    paths = DatasetPaths.of(data_root, "demo")
    loader = SampleLoader(
        ADAPTER, paths.dataset_dir, condition, semantic_nc, edges_dir=paths.edges_dir
    )
    return loader, paths.manifest, paths.pairs
