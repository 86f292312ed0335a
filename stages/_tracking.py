"""What the tracked stages (train, evaluate) read from their environment for MLflow."""

from __future__ import annotations

import os
from collections.abc import Mapping

from cocosnet.tracking import PARENT_RUN_ENV


def mlflow_run_naming(
    stage_ref: str, env: Mapping[str, str] = os.environ
) -> tuple[str, str | None]:
    """The MLflow run name of ``stage_ref`` (``train@demo``), prefixed with the DVC experiment
    it runs in (``dvc exp run`` sets DVC_EXP_NAME), and the parent run to nest under."""
    experiment = env.get("DVC_EXP_NAME", "").strip()
    name = f"{experiment}: {stage_ref}" if experiment else stage_ref
    return name, env.get(PARENT_RUN_ENV, "").strip() or None
