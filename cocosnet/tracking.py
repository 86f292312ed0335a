"""MLflow conventions in one place: where runs go, how params are named, what a run holds.

Everything is passed in explicitly (no argv, params.yaml or environment reads, and MLflow's own
env vars are left alone). :class:`Tracker` uses an explicit :class:`MlflowClient` rather than
``mlflow.start_run`` so that several trackers in one process never share an active run.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

TAG_GIT_COMMIT = "git_commit"
TAG_DVC_STAGE = "dvc_stage"
TAG_LOSSES = "losses"  # which loss set the run used

# MLflow's limits (mlflow/utils/validation.py): log_batch sizes, param value and key lengths.
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_LENGTH = 6000
MAX_KEY_LENGTH = 250
TRUNCATION_MARKER = "...[truncated]"

# MLflow's key characters minus ':' (refused on Windows), ASCII only, so keys stay portable.
_KEY_OK = re.compile(r"^[A-Za-z0-9_.\- /]+$")
_KEY_BAD_CHAR = re.compile(r"[^A-Za-z0-9_.\- /]")
_STATUSES = ("FINISHED", "FAILED", "KILLED")


# ------------------------------------------------------------------------------- where runs go


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


def git_commit(repo_root: str | os.PathLike) -> str | None:
    """HEAD of the repo, with ``-dirty`` if tracked files changed; None without git or repo."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["git", "-C", os.fspath(repo_root), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)

    try:
        head = git("rev-parse", "--verify", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode or status.returncode:
        return None
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


# ------------------------------------------------------------------------------------- params


def _check_key(key: str, what: str) -> str:
    """Raise ValueError unless MLflow (on any OS) accepts ``key`` as a param/metric name."""
    norm = posixpath.normpath(key)
    if not _KEY_OK.match(key) or norm != key or norm == "." or key.startswith(("..", "/")):
        raise ValueError(f"invalid MLflow {what} name {key!r}: use letters, digits, _ - . / space")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"MLflow {what} name longer than {MAX_KEY_LENGTH} chars: {key[:60]!r}...")
    return key


def _param_value(value: object) -> str:
    text = str(value)
    if len(text) <= MAX_PARAM_LENGTH:
        return text
    return text[: MAX_PARAM_LENGTH - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def _walk(nested: Mapping, prefix: str, sep: str) -> Iterator[tuple[str, object]]:
    for key, value in nested.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:  # an empty mapping is kept as "{}"
            yield from _walk(value, name, sep)
        else:
            yield name, value


def flatten_params(nested: Mapping, prefix: str = "", sep: str = ".") -> dict[str, str]:
    """``{"train": {"lr_g": 1e-4}}`` -> ``{"train.lr_g": "0.0001"}``, within MLflow's limits.

    Lists and scalars become ``str(value)``; values over 6000 chars end in TRUNCATION_MARKER;
    characters MLflow refuses in keys become ``_`` (a resulting clash raises ValueError).
    """
    flat: dict[str, str] = {}
    for raw, value in _walk(nested, prefix, sep):
        key = _KEY_BAD_CHAR.sub("_", raw)
        if key in flat:
            raise ValueError(f"param keys clash after replacing invalid characters: {key!r}")
        flat[_check_key(key, "param")] = _param_value(value)
    return flat


# ------------------------------------------------------------------------------------ tracker


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _finite(key: str, value: float, step: int) -> float:
    number = float(value)
    if not math.isfinite(number):  # MLflow would store it silently and spoil the plots
        raise ValueError(f"metric {key!r} is {number} at step {step}")
    return number


class Tracker:
    """One MLflow run for one training (or evaluation); callers create it on rank 0 only.

    With ``run_id`` the run is resumed (status RUNNING again) and ``experiment`` is not used;
    params already logged must have the same value. Metrics are buffered and sent with
    ``log_batch`` every ``flush_every`` calls of :meth:`log_metrics` and on flush/close.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        *,
        run_name: str | None = None,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        flush_every: int = 50,
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self._client = MlflowClient(tracking_uri=tracking_uri)
        self._flush_every = flush_every
        self._buffer: list[Metric] = []
        self._pending_calls = 0
        self._closed = False
        wanted = {_check_key(k, "param"): _param_value(v) for k, v in (params or {}).items()}
        if run_id is None:
            exp_id = self._experiment_id(experiment, _artifact_root(tracking_uri))
            tags = {k: str(v) for k, v in (tags or {}).items()}
            run = self._client.create_run(exp_id, tags=tags, run_name=run_name)
            self._run_id, logged = run.info.run_id, {}
        else:
            run = self._existing_run(run_id)
            self._run_id, logged = run_id, run.data.params
        for key, value in wanted.items():  # checked before the run is touched
            if key in logged and logged[key] != value:
                raise ValueError(
                    f"param {key!r} of run {self._run_id} is {logged[key]!r}; MLflow cannot "
                    f"change it to {value!r} (start a new run instead of resuming)"
                )
        if run_id is not None:
            self._client.update_run(run_id, status="RUNNING", name=run_name)
            self.set_tags(tags or {})
        new = [Param(k, v) for k, v in wanted.items() if k not in logged]
        for chunk in _chunks(new, MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(self._run_id, params=chunk, synchronous=True)

    def _experiment_id(self, name: str, artifact_location: str | None) -> str:
        exp = self._client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self._client.create_experiment(name, artifact_location=artifact_location)
            except MlflowException:  # another process created it in between
                exp = self._client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage != "active":
            raise ValueError(f"MLflow experiment {name!r} is deleted; restore it or rename")
        return exp.experiment_id

    def _existing_run(self, run_id: str) -> Run:
        try:
            run = self._client.get_run(run_id)
        except MlflowException as err:
            raise ValueError(f"cannot resume MLflow run {run_id!r}: {err.message}") from err
        if run.info.lifecycle_stage != "active":
            raise ValueError(f"cannot resume MLflow run {run_id!r}: it is deleted")
        return run

    @property
    def run_id(self) -> str:
        return self._run_id

    def _open_run(self) -> str:
        if self._closed:
            raise RuntimeError(f"tracker of MLflow run {self._run_id} is closed")
        return self._run_id

    def log_metrics(self, values: Mapping[str, float], step: int) -> None:
        """Buffer one step's scalars; non-finite values raise ValueError naming the key."""
        self._open_run()
        now = int(time.time() * 1000)
        self._buffer += [
            Metric(_check_key(k, "metric"), _finite(k, v, step), now, int(step))
            for k, v in values.items()
        ]
        self._pending_calls += 1
        if self._pending_calls >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Send buffered metrics, at most MAX_METRICS_PER_BATCH per call."""
        while self._buffer:
            # synchronous: MLflow's async mode (an env var) would hide errors until exit
            chunk = self._buffer[:MAX_METRICS_PER_BATCH]
            self._client.log_batch(self._run_id, metrics=chunk, synchronous=True)
            del self._buffer[: len(chunk)]
        self._pending_calls = 0

    def log_image(self, image: np.ndarray, name: str, step: int) -> None:
        """Store a uint8 H x W x 3 image as ``images/{name}_step{step:07d}.png``."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"log_image needs uint8 H x W x 3, got {image.dtype} {image.shape}")
        file = f"images/{name}_step{step:07d}.png"
        self._client.log_image(self._open_run(), image, artifact_file=file)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self._open_run(), os.fspath(path), artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        run_id = self._open_run()
        for chunk in _chunks(
            [RunTag(k, str(v)) for k, v in tags.items()], MAX_PARAMS_TAGS_PER_BATCH
        ):
            self._client.log_batch(run_id, tags=chunk, synchronous=True)

    def log_dict(self, data: Mapping, artifact_file: str) -> None:
        """E.g. the resolved config as ``config.json`` (JSON or YAML by extension)."""
        self._client.log_dict(self._open_run(), dict(data), artifact_file)

    def close(self, status: str = "FINISHED") -> None:
        """Flush and mark the run terminated; later calls do nothing."""
        if status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}, got {status!r}")
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._client.set_terminated(self._run_id, status)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close("FINISHED")
        else:
            self.close("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
