"""One MLflow run, through an explicit client."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping

import numpy as np
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .location import _artifact_root
from .names import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    _check_key,
    _param_value,
)

TAG_DVC_STAGE = "dvc_stage"
TAG_LOSSES = "losses"  # which loss set the run used
TAG_PARENT_RUN = "mlflow.parentRunId"  # the UI nests the run under its parent
# The environment variable through which the Prefect flow and the sweep hand their parent run's
# id to the stage processes they start (the stages read it; the library never does).
PARENT_RUN_ENV = "COCOSNET_MLFLOW_PARENT_RUN"
# The experiment's kind: the UI opens a model-training experiment on its runs, not on the GenAI
# overview.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
_STATUSES = ("FINISHED", "FAILED", "KILLED")


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
    ``log_batch`` every ``flush_every`` calls of :meth:`log_metrics` and on flush/close. With
    ``system_metrics_every`` (seconds) MLflow's monitor samples CPU, memory (and GPU) into the
    run's ``system/`` metrics until :meth:`close`; ``parent_run_id`` nests the run.
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
        parent_run_id: str | None = None,
        system_metrics_every: float | None = None,
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self._client = MlflowClient(tracking_uri=tracking_uri)
        self._flush_every = flush_every
        self._buffer: list[Metric] = []
        self._pending_calls = 0
        self._closed = False
        wanted = {_check_key(k, "param"): _param_value(v) for k, v in (params or {}).items()}
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if parent_run_id:
            tags[TAG_PARENT_RUN] = parent_run_id
        if run_id is None:
            exp_id = self._experiment_id(experiment, _artifact_root(tracking_uri))
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
            self.set_tags(tags)
        new = [Param(k, v) for k, v in wanted.items() if k not in logged]
        for chunk in _chunks(new, MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(self._run_id, params=chunk, synchronous=True)
        self._monitor = None
        if system_metrics_every:  # CPU, memory, disk, network; GPUs where MLflow finds them
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(
                self._run_id,
                sampling_interval=system_metrics_every,
                resume_logging=run_id is not None,
                tracking_uri=tracking_uri,
            )
            self._monitor.start()

    def _experiment_id(self, name: str, artifact_location: str | None) -> str:
        exp = self._client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self._client.create_experiment(
                    name, artifact_location=artifact_location, tags=EXPERIMENT_KIND
                )
            except MlflowException:  # another process created it in between
                exp = self._client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage != "active":
            raise ValueError(f"MLflow experiment {name!r} is deleted; restore it or rename")
        for key, value in EXPERIMENT_KIND.items():  # experiments made before the tag existed
            if exp.tags.get(key) != value:
                self._client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id

    @property
    def client(self) -> MlflowClient:
        return self._client

    @property
    def experiment_id(self) -> str:
        return self._client.get_run(self._run_id).info.experiment_id

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
        """A uint8 H x W x 3 image under ``name`` at ``step`` (MLflow's image API: the UI shows
        each name with a step slider)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"log_image needs uint8 H x W x 3, got {image.dtype} {image.shape}")
        self._client.log_image(
            self._open_run(), image, key=_check_key(name, "image"), step=int(step), synchronous=True
        )

    def log_dataset(self, name: str, digest: str, source: str, rows: int, context: str) -> None:
        """A dataset input of the run (the UI's "Datasets"): ``context`` says what for (train,
        evaluation)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            name=name,
            digest=digest,
            source_type="local",
            source=json.dumps({"uri": source}),
            profile=json.dumps({"num_rows": rows}),
        )
        tags = [InputTag("mlflow.data.context", context)]
        self._client.log_inputs(self._open_run(), [DatasetInput(dataset, tags)])

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
            if self._monitor is not None:
                self._monitor.finish()
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
