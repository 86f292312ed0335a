"""The DVC stage graph, and one stage run in three steps so that stages can run concurrently.

DVC owns the DAG: `read_dag` takes it from `dvc.repo.Repo(root).index.graph` (foreach stages
expanded, e.g. `train@demo`), never from a copy. `dvc repro` holds the repository lock while it
runs, so two of them cannot share a workspace; a stage's own command needs no lock, though, so a
stage runs as

1. `DvcProject.begin`: `dvc status STAGE`; when it changed, its outputs are removed (persistent
   ones unprotected), as `dvc repro` does before running a stage;
2. `run_commands`: the stage's `cmd` lines in its `wdir`, with DVC_ROOT and DVC_STAGE set as DVC
   sets them, and no lock held: independent stages run at the same time;
3. `DvcProject.commit`: `dvc commit -f STAGE` hashes deps and outs, caches the outs and writes
   dvc.lock, which is what `dvc repro` records after a stage.

Steps 1 and 3 of all stages go through one `DvcProject`, which serialises them with a threading
lock, and each also takes DVC's repository lock, so a `dvc` command started from a shell meanwhile
waits or fails instead of interleaving. Unlike `dvc repro`, a stage is never restored from the run
cache (it is run, as with `--no-run-cache`), and stages without a command (`.dvc` files) are left
out. Nothing here imports Prefect.

    python -m pipeline.dag [STAGE ...]   # the stages (and their upstream stages), in run order
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import chdir, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cocosnet.cores import budget_env


@dataclass(frozen=True)
class Stage:
    """One DVC stage as the flows need it: its address, commands, folder and upstream stages."""

    name: str  # DVC's address from the root: "prepare@demo", "model_summary", "sub/dvc.yaml:x"
    dvcfile: str  # the dvc.yaml that defines it, relative to the repository root
    cmd: tuple[str, ...]  # run one after the other, as DVC does for a list `cmd`
    wdir: str  # relative to the repository root
    upstream: tuple[str, ...]  # stages whose outputs this one depends on

    def target(self, root: Path) -> str:
        """The stage as a DVC target that does not depend on the current directory."""
        return f"{root / self.dvcfile}:{self.name.rpartition(':')[2]}"


class StageFailed(RuntimeError):
    """A stage command exited non-zero; carries the last lines it printed."""

    def __init__(self, stage: str, cmd: str, returncode: int, tail: Sequence[str]):
        self.stage, self.cmd, self.returncode, self.tail = stage, cmd, returncode, list(tail)
        lines = "".join(f"\n  | {line}" for line in self.tail)
        super().__init__(f"stage {stage!r}: `{cmd}` exited with {returncode}{lines}")


def read_dag(
    root: str | os.PathLike = ".", targets: Sequence[str] = (), repo: Any = None
) -> dict[str, Stage]:
    """The stages of the DVC project at `root` in run order (upstream first).

    With `targets` (stage names such as `train@demo`, foreach groups such as `train`), only those
    stages and the stages they depend on, as `dvc repro TARGET...` would consider. `repo`: an
    open `dvc.repo.Repo` of `root` to read it from (else one is opened).
    """
    import networkx as nx
    from dvc.repo import Repo

    root = Path(root).resolve()
    with nullcontext(repo) if repo is not None else Repo(str(root)) as repo:
        graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
        graph = graph.subgraph(s for s in graph if s.cmd)  # .dvc files have no command
        # DVC's own `addressing` is relative to the current directory; ours to the root.
        names = {s: _address(s.dvcfile.path, s.name, root) for s in graph}
        if targets:
            wanted = set()
            for target in targets:
                hits = [s for s in graph if _matches(names[s], target)]
                if not hits:
                    raise ValueError(
                        f"no stage {target!r} in {root} (stages: {sorted(names.values())})"
                    )
                for stage in hits:
                    wanted |= {stage} | nx.descendants(graph, stage)
            graph = graph.subgraph(wanted)
        order = nx.lexicographical_topological_sort(graph.reverse(), key=names.get)
        return {
            names[stage]: Stage(
                name=names[stage],
                dvcfile=os.path.relpath(stage.dvcfile.path, root),
                cmd=tuple(stage.cmd if isinstance(stage.cmd, list) else stage.cmd.splitlines()),
                wdir=os.path.relpath(stage.wdir, root),
                upstream=tuple(sorted(names[up] for up in graph.successors(stage))),
            )
            for stage in order
        }


def _address(dvcfile: str, name: str, root: Path) -> str:
    rel = os.path.relpath(dvcfile, root)
    return name if rel == "dvc.yaml" else f"{rel}:{name}"


def _matches(address: str, target: str) -> bool:
    """`target` names the stage, or the foreach group it was expanded from (`train` for
    `train@demo`)."""
    target = target.removeprefix("./").removeprefix("dvc.yaml:")
    return target in (address, address.partition("@")[0])


def describe(changes: Sequence[Any]) -> str:
    """`dvc status` entries of one stage as one line: 'changed deps: a.txt (modified); ...'."""
    parts = []
    for entry in changes:
        if isinstance(entry, dict):
            for kind, paths in entry.items():
                items = paths.items() if isinstance(paths, dict) else []
                parts.append(f"{kind}: " + ", ".join(f"{p} ({why})" for p, why in items))
        else:
            parts.append(str(entry))
    return "; ".join(parts) or "forced"


class DvcProject:
    """A DVC workspace whose DVC calls are serialised, so stage commands may run concurrently."""

    def __init__(self, root: str | os.PathLike = "."):
        self.root = Path(root).resolve()
        self._lock = threading.Lock()

    @contextmanager
    def _repo(self) -> Iterator[Any]:
        from dvc.repo import Repo

        # A fresh Repo per call: another thread's commit has changed dvc.lock since the last one.
        # DVC resolves some paths against the current directory (saving the run cache fails for
        # a project outside it), so it runs from the root, in one thread at a time.
        with self._lock, chdir(self.root), Repo(str(self.root)) as repo:
            yield repo

    def begin(self, stage: Stage, force: bool = False) -> tuple[str, list[Any]]:
        """Step 1, as `dvc repro` does before running a stage: ``("up to date", [])`` (or
        frozen); ``("restored", changes)`` when DVC's run-cache held the outputs of these deps
        and params (they are checked out and recorded in dvc.lock, nothing to run; not with
        ``force``); else ``("run", changes)`` with the stage's outputs removed."""
        from dvc.stage.cache import RunCacheNotFoundError

        target = stage.target(self.root)
        with self._repo() as repo:
            (dvc_stage,) = repo.stage.collect(target)
            if dvc_stage.frozen:
                return "up to date", []
            changes = [c for entries in repo.status(targets=[target]).values() for c in entries]
            if not (changes or force):
                return "up to date", []
            with repo.lock:  # remove_outs asserts that the caller holds it
                dvc_stage.remove_outs(ignore_remove=False, force=False)
                if force:
                    return "run", changes
                try:
                    repo.stage_cache.restore(dvc_stage)
                except RunCacheNotFoundError:
                    return "run", changes
                dvc_stage.save()
                dvc_stage.commit()
                dvc_stage.dump(update_pipeline=False)
            return "restored", changes

    def plan(self, targets: Sequence[str] = ()) -> tuple[dict[str, Stage], list[str]]:
        """The stages to consider (:func:`read_dag`) and what one `dvc status` of them reports
        as changed, from one open repo: nothing changed is the common no-op, found without a
        DVC call per stage."""
        with self._repo() as repo:
            dag = read_dag(self.root, targets, repo=repo)
            # The whole project in one pass (2.5x faster than naming every stage); with targets,
            # those stages and their upstream ones.
            status = repo.status(
                targets=[s.target(self.root) for s in dag.values()] if targets else None
            )
            return dag, sorted(status)

    def commit(self, stage: Stage) -> None:
        """Step 3: record the stage's deps and outputs in dvc.lock and the cache, as
        `dvc commit -f STAGE` does."""
        with self._repo() as repo:
            repo.commit(stage.target(self.root), force=True)


def concurrency(dag: Mapping[str, Stage]) -> dict[str, int]:
    """How many stages may run beside each stage: the stages at its depth in the DAG (depth:
    the longest chain of upstream stages), which wait for nothing the others wait for."""
    depth: dict[str, int] = {}
    for name, stage in dag.items():  # upstream first
        depth[name] = 1 + max((depth[up] for up in stage.upstream), default=-1)
    width = Counter(depth.values())
    return {name: width[depth[name]] for name in dag}


def shell_command(cmd: str) -> list[str]:
    """`cmd` for the user's shell without its rc files, as `dvc repro` runs it."""
    shell = os.environ.get("SHELL") or "/bin/sh"
    opts = {"bash": ["--noprofile", "--norc"], "zsh": ["--no-rcs"]}
    return [shell, *opts.get(Path(shell).name, []), "-c", cmd]


def run_commands(
    stage: Stage,
    root: str | os.PathLike,
    log: Callable[[str], object] = print,
    tail: int = 20,
    threads: int | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> None:
    """Step 2: run the stage's commands, passing each line they print (stdout and stderr) to
    `log`; raises `StageFailed` with the last `tail` lines when a command exits non-zero.
    ``threads``: the stage's share of the cores (None: all of this process's); ``extra_env``:
    more variables for the commands (the MLflow parent run)."""
    root = Path(root).resolve()
    env = dict(os.environ, DVC_ROOT=str(root), DVC_STAGE=stage.name, PYTHONUNBUFFERED="1")
    env |= dict(extra_env or {})
    if threads is not None:
        env = budget_env(threads, env)
    for cmd in stage.cmd:
        log(f"> {cmd}")
        last: deque[str] = deque(maxlen=tail)
        with subprocess.Popen(
            shell_command(cmd),
            cwd=root / stage.wdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,  # universal newlines: each tqdm '\r' update becomes its own line
            errors="replace",
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                last.append(line.rstrip("\n"))
                log(last[-1])
        if proc.returncode:
            raise StageFailed(stage.name, cmd, proc.returncode, last)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.dag", description=__doc__)
    parser.add_argument("targets", nargs="*", help="stages (default: all)")
    parser.add_argument("--root", default=".", help="the DVC project (default: .)")
    args = parser.parse_args(argv)
    for stage in read_dag(args.root, args.targets).values():
        print(stage.name, "<-", ", ".join(stage.upstream) or "-")


if __name__ == "__main__":
    main()
