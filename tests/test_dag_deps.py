"""dvc.yaml stays honest: each stage depends on exactly the project code its module imports, and
on the params that can change its results, never on the runtime-only ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cocosnet.config import Params, RuntimeConfig, parse_params_text
from cocosnet.sourcecode import import_closure

REPO = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
PARAMS_TEXT = (REPO / "params.yaml").read_text()
RAW_PARAMS = yaml.safe_load(PARAMS_TEXT)

# Sections no stage may depend on: they cannot change a result.
UNTRACKED_SECTIONS = {"runtime", "parallel", "tracking"}
# Keys of tracked sections that cannot change a result either (the foreach lists; batching of
# per-image embeddings).
UNTRACKED_KEYS = {
    "data.datasets",
    "data.root",
    "preprocess.pose.datasets",
    "preprocess.masks.datasets",
    "index.datasets",
    "index.batch_size",
    "eval.datasets",
}


def _stage(name: str) -> dict:
    """A stage's definition; in a foreach over a mapping, ``${key}`` read as its first key."""
    stage = DVC[name]
    if "do" not in stage:
        return stage
    over = stage["foreach"].removeprefix("${").removesuffix("}").split(".")
    node = RAW_PARAMS
    for part in over:
        node = node[part]
    if not isinstance(node, dict):
        return stage["do"]
    first = next(iter(node))
    text = yaml.safe_dump(stage["do"]).replace("${key}", first).replace("${item}", node[first])
    return yaml.safe_load(text)


def _code_deps(stage: dict) -> set[str]:
    return {d for d in stage["deps"] if d.endswith(".py")}


@pytest.mark.parametrize("name", sorted(DVC))
def test_code_deps_are_the_import_closure(name):
    closure = {
        p.relative_to(REPO).as_posix() for p in import_closure(REPO / "stages" / f"{name}.py", REPO)
    }
    deps = _code_deps(_stage(name))
    assert not closure - deps, f"{name}: imported but not in deps: {sorted(closure - deps)}"
    assert not deps - closure, f"{name}: in deps but not imported: {sorted(deps - closure)}"


def test_closure_follows_relative_imports_and_function_level_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .leaf import x\n")
    (pkg / "sub" / "leaf.py").write_text("from .. import other\nx = 1\n")
    (pkg / "other.py").write_text("import json\n")
    (pkg / "lazy.py").write_text("")
    (tmp_path / "entry.py").write_text("def f():\n    from pkg import lazy\nimport pkg.sub\n")
    got = {
        p.relative_to(tmp_path).as_posix() for p in import_closure(tmp_path / "entry.py", tmp_path)
    }
    assert got == {
        "entry.py",
        "pkg/__init__.py",
        "pkg/sub/__init__.py",
        "pkg/sub/leaf.py",
        "pkg/other.py",
        "pkg/lazy.py",
    }


def _leaf_keys(section: dict, prefix: str) -> set[str]:
    keys = set()
    for k, v in section.items():
        name = f"{prefix}.{k}"
        keys |= _leaf_keys(v, name) if isinstance(v, dict) and v else {name}
    return keys


def _covered(key: str, tracked: set[str]) -> bool:
    parts = key.split(".")
    return any(".".join(parts[:i]) in tracked for i in range(1, len(parts) + 1))


@pytest.mark.parametrize("name", sorted(DVC))
def test_params_exist_and_are_never_runtime_only(name):
    tracked = set(_stage(name).get("params", []))
    for key in tracked:
        node = RAW_PARAMS
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{name}: {key} not in params.yaml"
            node = node[part]
        assert key.split(".")[0] not in UNTRACKED_SECTIONS, f"{name} depends on {key}"
        assert key not in UNTRACKED_KEYS, f"{name} depends on {key}"


# The section each stage reads key by key (the others it reads are tracked whole, or only the
# keys it uses, e.g. data.max_pixels).
OWN_SECTION = {
    "prepare": "data",
    "edges": "preprocess.edges",
    "pose": "preprocess.pose",
    "masks": "preprocess.masks",
    "index": "index",
    "train": "train",
    "evaluate": "eval",
    "model_summary": "model",
}


@pytest.mark.parametrize("name", sorted(DVC))
def test_every_result_key_of_the_stage_section_is_a_param(name):
    # A key added to params.yaml cannot slip past DVC.
    tracked = set(_stage(name).get("params", []))
    node = RAW_PARAMS
    for part in OWN_SECTION[name].split("."):
        node = node[part]
    for key in _leaf_keys(node, OWN_SECTION[name]) - UNTRACKED_KEYS:
        assert _covered(key, tracked), f"{name}: {key} can change results but is not a param"


def test_runtime_section_holds_the_settings_that_cannot_change_results():
    params = parse_params_text(PARAMS_TEXT)
    assert isinstance(params, Params)
    assert set(RuntimeConfig.model_fields) >= {
        "threads",
        "num_workers",
        "log_every",
        "image_every",
        "checkpoint_every",
        "keep_checkpoints",
        "resume",
    }
    assert not set(RuntimeConfig.model_fields) & set(type(params.train).model_fields)
