"""The project files a module imports, transitively: what a DVC stage depends on and what a
training checkpoint's fingerprint covers (one closure for both).

Imports are read from the source (``ast``), wherever they appear, so imports inside functions
count too. Only modules under the project root are followed; importing ``a.b.c`` also runs
``a/__init__.py`` and ``a/b/__init__.py``, which are included.
"""

from __future__ import annotations

import ast
from pathlib import Path

__all__ = ["import_closure", "module_file"]


def module_file(name: str, root: Path) -> Path | None:
    """``a.b`` -> ``root/a/b.py`` or ``root/a/b/__init__.py``; None outside the project."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, root: Path) -> set[str]:
    """Module names ``path`` imports (absolute; ``from p import n`` gives ``p`` and ``p.n``)."""
    package = _module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return {n for n in names if n}


def import_closure(entry: Path, root: Path) -> list[Path]:
    """``entry`` and every project file it imports, transitively, sorted."""
    root, seen = root.resolve(), set()
    todo = [entry.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported(path, root):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # parent packages run their __init__ first
                found = module_file(".".join(parts[:i]), root)
                if found is not None and found not in seen:
                    todo.append(found)
    return sorted(seen)
