"""docs/mlflow_ui.png from the repo's own MLflow store: the newest finished train@demo run of a
real `make repro`, rendered by the MLflow UI (as `make ui` serves it) in headless Chromium.

    make screenshots        # after make repro; installs Debian's chromium when missing
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlflow.tracking import MlflowClient  # noqa: E402

from tests.mlflow_browser import mlflow_ui, run_page_url, screenshot  # noqa: E402

OUT = REPO / "docs" / "mlflow_ui.png"


def main() -> int:
    db = REPO / "mlflow.db"
    if not db.is_file():
        print(f"{db} not found: run make repro first", file=sys.stderr)
        return 1
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("cocosnet")
    runs = (
        []
        if experiment is None
        else client.search_runs(
            [experiment.experiment_id],
            "tags.dvc_stage = 'train@demo' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    )
    if not runs:
        print("no finished train@demo run in mlflow.db: run make repro first", file=sys.stderr)
        return 1
    run = runs[0]
    with (
        tempfile.TemporaryDirectory() as tmp,
        mlflow_ui(db, REPO / "mlruns", Path(tmp) / "server.log") as port,
    ):
        url = run_page_url(port, run.info.experiment_id, run.info.run_id)
        png = screenshot(url, Path(tmp) / "profile", Path(tmp) / "shot.png")
    OUT.write_bytes(png)
    print(f"{OUT}: run {run.info.run_id} ({run.info.run_name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
