"""What code a run ran: MLflow's source tags, and the commit (dirty when tracked code differs)."""

from __future__ import annotations

import os
import subprocess

TAG_GIT_COMMIT = "git_commit"  # HEAD, with "-dirty" when tracked code differs
# MLflow's own tags (mlflow/utils/mlflow_tags.py): the UI shows the source and the commit.
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_SOURCE_COMMIT = "mlflow.source.git.commit"
# What "tracked code" is for the dirty flag: not params.yaml (dvc exp rewrites it; the params are
# logged), not the outputs DVC removes before it reruns a stage.
CODE_PATHS = ("cocosnet", "stages", "pipeline", "pyproject.toml", "requirements.lock", "dvc.yaml")


def git_commit(
    repo_root: str | os.PathLike, code_paths: tuple[str, ...] = CODE_PATHS
) -> str | None:
    """HEAD of the repo, with ``-dirty`` if tracked files under ``code_paths`` changed; None
    without git or repo."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["git", "-C", os.fspath(repo_root), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)

    try:
        head = git("rev-parse", "--verify", "HEAD")
        top = git("rev-parse", "--show-toplevel")
        # Pathspecs from the top (``:/``), whatever folder repo_root is.
        specs = [f":/{p}" for p in code_paths]
        status = git("status", "--porcelain", "--untracked-files=no", "--", *specs)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode or top.returncode or status.returncode:
        return None
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def source_tags(repo_root: str | os.PathLike, entry_point: str) -> dict[str, str]:
    """MLflow's source tags (entry point, commit) and ours (:data:`TAG_GIT_COMMIT`, with the
    dirty mark, and ``git_dirty``)."""
    commit = git_commit(repo_root)
    tags = {TAG_SOURCE_NAME: entry_point, TAG_SOURCE_TYPE: "LOCAL"}
    if commit is None:
        return tags | {TAG_GIT_COMMIT: "unknown"}
    head = commit.removesuffix("-dirty")
    dirty = str(commit != head).lower()
    return tags | {TAG_SOURCE_COMMIT: head, TAG_GIT_COMMIT: commit, "git_dirty": dirty}
