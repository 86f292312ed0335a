"""`dvc repro` as a Prefect flow: each DVC stage a task with retries and logs, and the stages that
do not depend on each other run at the same time.

    python -m pipeline.flows repro                        # every stage of dvc.yaml
    python -m pipeline.flows repro train@demo evaluate    # these and the stages they depend on
    python -m pipeline.flows repro --max-workers 2 --retries 1 --retry-delay 30 --force

The graph comes from DVC (`pipeline.dag.read_dag`). A stage task asks DVC whether the stage is out
of date, restores it from DVC's run-cache when that holds it (as `dvc repro` does), or runs its
command, and commits it (see `pipeline.dag` for why this, not `dvc repro`, lets stages run
concurrently); the output of the command goes to the Prefect run logger. Up-to-date stages are
reported as skipped, run-cache hits as restored; a failed stage (retries spent) leaves the
stages below it not run, and the flow run fails with `PipelineFailed`, whose `report` gives every
stage's outcome. The exit status of the command line is 1 then.

Without a Prefect server configured (PREFECT_API_URL), Prefect starts a temporary local one for
the run (about 30 s on 2 cores; the run is not kept), and the command line says so. With one
(`prefect server start --host 127.0.0.1`), runs are kept and browsable, and `python -m
pipeline.serve` offers this flow and the sweep as deployments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from cocosnet.cores import current_budget, thread_budget
from cocosnet.cores import describe as describe_share
from pipeline.dag import DvcProject, Stage, concurrency, describe, run_commands

SERVER_START_TIMEOUT_S = 120.0  # a temporary server on 2 loaded cores took 30-60 s
# How to have a Prefect server (printed where one is missing).
START_A_SERVER = (
    "start one with `prefect server start --host 127.0.0.1` and export "
    "PREFECT_API_URL=http://127.0.0.1:4200/api"
)

RAN, RESTORED, SKIPPED, FAILED, NOT_RUN = "ran", "restored", "skipped", "failed", "not run"


@dataclass(frozen=True)
class ReproReport:
    """What happened to each stage: `outcome[name]` is ran, restored (from DVC's run-cache),
    skipped, failed or not run."""

    outcome: dict[str, str]
    errors: dict[str, str]  # stage -> why it failed, or which upstream stage kept it from running

    @property
    def ok(self) -> bool:
        return all(o in (RAN, RESTORED, SKIPPED) for o in self.outcome.values())

    @classmethod
    def all_skipped(cls, dag: dict[str, Stage]) -> ReproReport:
        """Nothing out of date: every stage skipped."""
        return cls(dict.fromkeys(dag, SKIPPED), {})

    def stages(self, outcome: str) -> list[str]:
        return [name for name, o in self.outcome.items() if o == outcome]

    def summary(self) -> str:
        counts = "; ".join(
            f"{o}: {', '.join(self.stages(o))}"
            for o in (RAN, RESTORED, SKIPPED, FAILED, NOT_RUN)
            if self.stages(o)
        )
        lines = [f"{len(self.outcome)} stages ({counts})"]
        lines += [f"{name}: {why}" for name, why in self.errors.items()]
        return "\n".join(lines)


class PipelineFailed(RuntimeError):
    """A stage failed; the flow run fails with this, and `report` says what ran."""

    def __init__(self, report: ReproReport):
        self.report = report
        super().__init__(report.summary())


@task(name="dvc-stage", cache_policy=NO_CACHE, persist_result=False)
def run_stage(
    project: DvcProject,
    stage: Stage,
    force: bool = False,
    threads: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> str:
    """Run one stage if DVC says it is out of date, and record it: 'ran' or 'skipped'.
    ``threads``: its share of the cores."""
    log = get_run_logger()
    state, changes = project.begin(stage, force=force)
    if state == "up to date":
        log.info("%s is up to date: skipped", stage.name)
        return SKIPPED
    if state == "restored":
        log.info("%s: %s; restored from DVC's run-cache", stage.name, describe(changes))
        return RESTORED
    log.info("%s: %s", stage.name, describe(changes))
    run_commands(stage, project.root, log=log.info, threads=threads, extra_env=extra_env)
    project.commit(stage)
    log.info("%s: committed to dvc.lock", stage.name)
    return RAN


def _thread_shares(dag: dict[str, Stage], max_workers: int, log) -> dict[str, int]:
    """Each stage's share of this process's cores: divided among the stages that may run
    beside it (never more than ``max_workers``), so concurrent stages do not fight."""
    total = current_budget(os.environ)
    shares = {}
    for name, beside in concurrency(dag).items():
        at_once = min(max_workers, beside)
        shares[name] = thread_budget(at_once, total)
        log.info("%s: %s", name, describe_share(at_once, shares[name], total))
    return shares


def _report(dag: dict[str, Stage], futures: dict) -> ReproReport:
    """What each stage's task came to: ran, skipped, failed (why), or not run (whose fault)."""
    outcome, errors = {}, {}
    for name, future in futures.items():
        state = future.state
        if state.is_completed():
            outcome[name] = future.result()
        elif state.is_failed() or state.is_crashed():
            outcome[name] = FAILED
            errors[name] = state.message or state.name
        else:
            outcome[name] = NOT_RUN
            blocked = [up for up in dag[name].upstream if outcome[up] in (FAILED, NOT_RUN)]
            errors[name] = f"not run: upstream {', '.join(blocked)} did not complete"
    return ReproReport(outcome, errors)


@flow(name="dvc-repro")
def repro(
    root: str = ".",
    targets: list[str] | None = None,
    max_workers: int = 4,  # at most this many stages at once
    retries: int = 2,  # further tries of a failed stage
    retry_delay_s: float = 10.0,  # wait between tries
    force: bool = False,  # run every stage even when up to date (`dvc repro -f`)
) -> ReproReport:
    """Run the DVC stages of the project at `root` (or `targets` and their upstream stages)."""
    log = get_run_logger()
    project = DvcProject(root)
    dag, stale = project.plan(targets or ())
    log.info("%d stages from DVC: %s", len(dag), ", ".join(dag))
    if not (force or stale):  # the common no-op: no task, no MLflow run
        report = ReproReport.all_skipped(dag)
        log.info("%s", report.summary())
        return report
    from pipeline.parent_run import parent_run  # MLflow is imported only when stages run

    threads = _thread_shares(dag, max_workers, log)
    futures = {}
    run_name = f"pipeline: {' '.join(targets) if targets else 'all stages'}"
    parent = parent_run(project.root, run_name, "pipeline/flows.py")
    # Tasks are submitted upstream first and each waits for its upstream futures in its worker
    # thread; a thread only ever waits on tasks submitted before it, so a small pool cannot
    # deadlock. A task whose upstream failed ends NotReady without running.
    with parent as env, ThreadPoolTaskRunner(max_workers=max_workers) as runner:
        for name, stage in dag.items():
            stage_task = run_stage.with_options(
                task_run_name=name, retries=retries, retry_delay_seconds=retry_delay_s
            )
            args = {"project": project, "stage": stage, "force": force}
            futures[name] = runner.submit(
                stage_task,
                args | {"threads": threads[name], "extra_env": env},
                wait_for=[futures[up] for up in stage.upstream],
            )
        wait(list(futures.values()))
        report = _report(dag, futures)
        if not report.ok:  # inside: the parent run ends FAILED
            raise PipelineFailed(report)
    log.info("%s", report.summary())
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.flows",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("repro", help="run the DVC stages as a Prefect flow")
    cmd.add_argument("targets", nargs="*", metavar="STAGE", help="default: every stage")
    cmd.add_argument("--root", default=os.curdir, help="the DVC project (default: .)")
    cmd.add_argument("--max-workers", type=int, default=4, help="stages at once (default: 4)")
    cmd.add_argument("--retries", type=int, default=2, help="tries after a failure (default: 2)")
    cmd.add_argument("--retry-delay", type=float, default=10.0, help="seconds (default: 10)")
    cmd.add_argument("--force", action="store_true", help="run up-to-date stages too")
    cmd.add_argument(
        "--server-timeout",
        type=float,
        default=SERVER_START_TIMEOUT_S,
        help="seconds the temporary Prefect server may take to start "
        f"(default: {SERVER_START_TIMEOUT_S:.0f}; Prefect's own 20 is short on a loaded machine)",
    )
    args = parser.parse_args(argv)
    if not args.force:  # nothing to run: say so as `dvc repro` does, without a flow run
        dag, stale = DvcProject(args.root).plan(args.targets)
        if not stale:
            print(ReproReport.all_skipped(dag).summary() + "; no flow run")
            return 0
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    if not PREFECT_API_URL.value():
        print(
            "pipeline.flows: no Prefect server configured (PREFECT_API_URL): Prefect starts a "
            f"temporary one for this run (about 30 s) and does not keep the run; {START_A_SERVER} "
            "to keep runs and skip the start",
            file=sys.stderr,
        )
    timeout = {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: args.server_timeout}
    try:
        with temporary_settings(updates=timeout):
            report = repro(
                root=args.root,
                targets=args.targets,
                max_workers=args.max_workers,
                retries=args.retries,
                retry_delay_s=args.retry_delay,
                force=args.force,
            )
    except PipelineFailed as exc:
        print(exc.report.summary(), file=sys.stderr)
        return 1
    except RuntimeError as exc:
        if "ephemeral Prefect API server" not in str(exc):
            raise
        print(
            f"pipeline.flows: Prefect's temporary server did not start in {args.server_timeout:g} "
            f"s (a loaded machine? --server-timeout gives it longer); {START_A_SERVER}",
            file=sys.stderr,
        )
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
