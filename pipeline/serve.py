"""The pipeline's flows as Prefect deployments, run on demand from the Prefect UI or on a
schedule, by a process that serves them:

    prefect server start --host 127.0.0.1                   # the server and UI, loopback only
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python -m pipeline.serve                                 # serves dvc-repro and sweep
    python -m pipeline.serve --cron "0 3 * * *"              # ... and reruns the DAG nightly

Then "Run" on a deployment in the UI (http://127.0.0.1:4200/deployments), with parameters:
`dvc-repro/dvc-repro` takes `targets` (stages), `force`, `max_workers`, `retries`;
`sweep/sweep` takes `variants` (a list of {param: value} overrides), `jobs`, `name`, `out`.
`prefect deployment run dvc-repro/dvc-repro --param targets='["train@demo"]'` does the same
from a shell. The serving process runs the flow runs itself (no work pool to set up).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def deployments(root: Path, cron: str | None = None) -> list:
    """The two deployments of the project at ``root``: the DAG (on ``cron`` if given) and the
    sweep (on demand)."""
    from pipeline.flows import repro
    from pipeline.sweep import sweep

    return [
        repro.to_deployment(
            name="dvc-repro",
            parameters={"root": str(root)},
            cron=cron,
            description="dvc repro as a Prefect flow: the stages of dvc.yaml as tasks",
        ),
        sweep.to_deployment(
            name="sweep",
            parameters={"root": str(root), "variants": []},
            description="one DVC experiment per variant, run by the DVC queue, tabulated",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", default=os.curdir, help="the DVC project (default: .)")
    parser.add_argument("--cron", help="also run the whole DAG on this schedule (cron syntax)")
    args = parser.parse_args(argv)
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    from pipeline.flows import START_A_SERVER

    if not PREFECT_API_URL.value():  # the environment or the active Prefect profile
        print(
            "pipeline.serve: no Prefect server configured (PREFECT_API_URL): deployments live on "
            f"a server; {START_A_SERVER}",
            file=sys.stderr,
        )
        return 2

    serve(*deployments(Path(args.root).resolve(), args.cron))
    return 0


if __name__ == "__main__":
    sys.exit(main())
