"""The MLflow parent run of one pipeline run or sweep: the stages it runs nest under it in the
MLflow UI (each stage reads the run id from :data:`cocosnet.tracking.PARENT_RUN_ENV`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml

from cocosnet import tracking
from cocosnet.config import TrackingConfig


@contextmanager
def parent_run(
    root: Path, name: str, entry_point: str, tags: Mapping[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """Open the parent run (tracking settings from ``root``'s params.yaml); yields the
    environment the child processes need. The run ends FINISHED, or FAILED on an error."""
    params_file = root / "params.yaml"
    raw = yaml.safe_load(params_file.read_text(encoding="utf-8")) if params_file.is_file() else {}
    # Only the tracking section: the flow runs any DVC project (the defaults without one).
    settings = TrackingConfig.model_validate((raw or {}).get("tracking") or {})
    tracker = tracking.Tracker(
        tracking.resolve_tracking_uri(settings.uri, root),
        settings.experiment,
        run_name=name,
        tags=tracking.source_tags(root, entry_point) | dict(tags or {}),
    )
    try:
        yield {tracking.PARENT_RUN_ENV: tracker.run_id}
    except BaseException as err:
        tracker.close("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    tracker.close("FINISHED")
