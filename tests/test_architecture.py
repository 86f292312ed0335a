"""The layout stays one a reader can hold: the import-linter contracts of pyproject.toml (the
layers of cocosnet/, no circles), functions of at most 80 lines, modules of at most 350."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("cocosnet", "stages", "pipeline") for p in (REPO / d).rglob("*.py"))
MAX_FUNCTION, MAX_MODULE = 80, 350


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_part_of_cocosnet_has_a_layer():
    # A new module outside the layers would escape the contract.
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    named = {m.strip() for layer in layers for m in layer.split("|")}
    parts = {
        f"cocosnet.{p.stem if p.is_file() else p.name}"
        for p in (REPO / "cocosnet").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert parts <= named, f"not in any layer: {sorted(parts - named)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_sizes_a_reader_can_hold(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE, f"{path.name}: over {MAX_MODULE} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION
    ]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION} lines: {long}"
