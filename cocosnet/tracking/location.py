"""Where runs go: the tracking URI, made absolute against the repo (also from a ``dvc exp``
temporary copy), and artifacts beside a sqlite database."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit


def _main_repo(repo_root: str | os.PathLike) -> Path:
    """The repo itself, also when ``repo_root`` is a ``dvc exp run --queue/--temp`` copy.

    DVC runs those in ``<repo>/.dvc/tmp/exps/<tmpdir>`` (dvc/repo/experiments/executor/local.py)
    and deletes the copy afterwards, which would take a database inside it along.
    """
    root = Path(repo_root).resolve()
    for i in range(len(root.parts) - 2):
        if root.parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*root.parts[:i])
    return root


def default_tracking_uri(repo_root: str | os.PathLike) -> str:
    """Absolute ``sqlite:////abs/mlflow.db`` at the repo root, so temp-copy runs are kept."""
    return f"sqlite:///{_main_repo(repo_root) / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None, repo_root: str | os.PathLike) -> str:
    """Make ``uri`` absolute against the repo root; None means :func:`default_tracking_uri`."""
    if uri is None:
        return default_tracking_uri(repo_root)
    if not uri.strip():
        raise ValueError("tracking URI is empty")
    root = _main_repo(repo_root)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") or scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        return uri
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or len(uri) == len("sqlite:///"):
            raise ValueError(f"sqlite tracking URI needs a file path (sqlite:///file.db): {uri!r}")
        path, mark, query = uri[len("sqlite:///") :].partition("?")
        return f"sqlite:///{os.path.normpath(root / path)}{mark}{query}"
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file tracking URI must be local: {uri!r}")
        return Path(os.path.normpath(root / unquote(parts.path))).as_uri()
    if scheme == "":
        return Path(os.path.normpath(root / uri)).as_uri()
    raise ValueError(f"unknown tracking URI scheme {scheme!r} in {uri!r}: use sqlite:///, http(s)")


def _artifact_root(tracking_uri: str) -> str | None:
    """Artifacts next to a sqlite database; MLflow's default ``./mlruns`` follows the cwd."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = tracking_uri[len("sqlite:///") :].split("?", 1)[0]
    if not db or db == ":memory:":
        return None
    return (Path(db).absolute().parent / "mlruns").as_uri()
