"""Faults: a stage SIGKILLed in the middle of `dvc repro` is rebuilt correctly by the next
`dvc repro`; a full disk, a read-only output folder or a file-size limit ends a stage or the CLI
with one clear line naming the path and the cause, and leaves no partial or temporary file.

(Killing and resuming training is in test_training_loop.py.)  The tests run as root, so chmod
cannot make a folder read-only: real full / read-only filesystems are small tmpfs mounts in a
private mount namespace (`unshare -m`, skipped where that is not allowed), and the file-size
limit (RLIMIT_FSIZE, no privileges needed) always runs."""

from __future__ import annotations

import errno
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cocosnet.data.pairs import write_pairs
from cocosnet.files import OutputError, atomic_path, write_text_atomic
from stages._common import run_stage

from .helpers import dvc_project_copy

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO = {"n_train": 6, "n_val": 2, "size": 32, "seed": 3}

# Run by a `python` shim on PATH in place of `python -m MODULE ARGS`: makes the copied project's
# cocosnet the one imported, then blocks the stage inside its Nth atomic write (temporary file
# written, not yet renamed) and tells the test so; the env vars are read only here.
HARNESS = """
import contextlib, os, runpy, sys, time
from pathlib import Path
assert sys.argv[1] == "-m", sys.argv
sys.path[0] = os.getcwd()
import cocosnet.files as files
original, count = files.atomic_path, 0

@contextlib.contextmanager
def blocking(path):
    global count
    with original(path) as tmp:
        yield tmp
        count += 1
        if count == int(os.environ["FAULT_BLOCK_AT_WRITE"]):
            Path(os.environ["FAULT_MARKER"]).write_text(str(tmp))
            time.sleep(600)

files.atomic_path = blocking
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _env(**extra) -> dict:
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    return dict(os.environ, PATH=path, DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="1", **extra)


def _dvc(args, cwd) -> str:
    proc = subprocess.run(["dvc", *args], cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (hidden ones included), by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _params(data_root: str) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(root=data_root, demo=DEMO)
    params["parallel"]["workers"] = 1
    return params


@pytest.fixture
def project(tmp_path):
    work = dvc_project_copy(tmp_path / "project")
    (work / "params.yaml").write_text(yaml.safe_dump(_params("data")))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    _dvc(["init", "-q"], work)
    return work


def test_sigkilled_stage_is_rebuilt_by_the_next_repro(project, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "harness.py").write_text(HARNESS)
    (shim / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{shim}/harness.py" "$@"\n')
    (shim / "python").chmod(0o755)
    marker = tmp_path / "blocked"
    env = _env(FAULT_BLOCK_AT_WRITE="7", FAULT_MARKER=str(marker))
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    # Its own process group, so the kill takes dvc, its shell and the stage at once.
    proc = subprocess.Popen(
        ["dvc", "repro", "prepare@demo"],
        cwd=project,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        assert time.monotonic() < deadline, "the stage never reached its 7th write"
        time.sleep(0.05)
    partial = Path(marker.read_text())
    assert partial.is_file() and partial.suffix == ".tmp"  # killed mid-write
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (project / "data/demo/manifest.parquet").exists()

    out = _dvc(["repro", "prepare@demo"], project)
    assert "Running stage 'prepare@demo'" in out
    after = _digests(project / "data/demo")
    assert not [p for p in after if p.endswith(".tmp") or Path(p).name.startswith(".")], after
    assert "Data and pipelines are up to date" in _dvc(["repro", "prepare@demo"], project)

    # A clean run from nothing (-f: rerun, not restored from DVC's run cache) is identical.
    out = _dvc(["repro", "-f", "prepare@demo"], project)
    assert "Running stage 'prepare@demo'" in out
    assert _digests(project / "data/demo") == after
    assert len([p for p in after if p.startswith("images/")]) == DEMO["n_train"] + DEMO["n_val"]


# --- full disk, read-only folder, file-size limit ---------------------------------------------


def test_atomic_path_names_the_output_and_removes_its_temporary_file(tmp_path):
    out = tmp_path / "out" / "result.txt"
    write_text_atomic(out, "previous\n")
    with pytest.raises(OutputError) as caught, atomic_path(out) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")  # as a failing write() raises
    assert str(caught.value) == f"{out}: cannot write (No space left on device)"
    assert caught.value.errno == errno.ENOSPC
    assert out.read_text() == "previous\n" and os.listdir(out.parent) == ["result.txt"]

    # An OSError about another file (an input read while writing) is left as it is.
    other = tmp_path / "input.png"
    with pytest.raises(FileNotFoundError) as caught, atomic_path(out):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(other))
    assert caught.value.filename == str(other)

    # The stage boundary turns either into one line, not a traceback.
    def stage_main():
        raise OutputError(out, "Read-only file system", errno.EROFS)

    with pytest.raises(SystemExit) as stopped:
        run_stage("edges", stage_main, ())
    assert stopped.value.code == f"edges: error: {out}: cannot write (Read-only file system)"


def _one_line_error(stderr: str, prefix: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(prefix), stderr[-3000:]
    return lines[-1]


def test_cli_under_a_file_size_limit_fails_clearly(tmp_path):
    """RLIMIT_FSIZE with SIGXFSZ ignored: writing past 4 KiB fails with EFBIG (as a full disk
    fails with ENOSPC) while the export writes its ~8 KiB text list."""
    pairs = tmp_path / "pairs.parquet"
    rows = [
        {"query": f"q{i:04d}", "exemplar": f"e{i:04d}_{r}", "rank": r, "score": 1.0, "split": "val"}
        for i in range(300)
        for r in (1, 2)
    ]
    write_pairs(pairs, rows)
    out = tmp_path / "lists" / "ref_test.txt"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = subprocess.run(
        [BIN / "cocosnet", "pairs", "export", str(pairs), "--split", "val", "--out", str(out)],
        preexec_fn=limit,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    line = _one_line_error(proc.stderr, "cocosnet pairs: error: ")
    assert line == f"cocosnet pairs: error: {out}: cannot write (File too large)"
    assert os.listdir(out.parent) == []


def _can_mount_tmpfs(where: Path) -> str | None:
    """None if `unshare -m` + a tmpfs mount works here, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=8k tmpfs '{where}'"],
        capture_output=True,
        text=True,
    )
    return None if probe.returncode == 0 else f"cannot mount a tmpfs: {probe.stderr.strip()}"


@pytest.mark.parametrize(
    ("options", "cause"),
    [("size=24k", "No space left on device"), ("ro,size=24k", "Read-only file system")],
    ids=["full-disk", "read-only"],
)
def test_stage_on_a_full_or_read_only_filesystem_fails_clearly(tmp_path, options, cause):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    reason = _can_mount_tmpfs(mnt)
    if reason:
        pytest.skip(reason)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_params(str(mnt / "data"))))
    leftovers = tmp_path / "leftovers.txt"
    # The mount lives only in this namespace: list what the stage left before it goes.
    script = (
        f"mount -t tmpfs -o {options} tmpfs '{mnt}' && cd '{ROOT}' && "
        f"'{sys.executable}' -m stages.prepare demo '{params}'; rc=$?; "
        f"find '{mnt}' -type f > '{leftovers}'; exit $rc"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = _one_line_error(proc.stderr, "prepare: error: ")
    assert line.startswith(f"prepare: error: {mnt}/") and line.endswith(f"({cause})"), line
    left = leftovers.read_text().split()
    assert not [p for p in left if p.endswith(".tmp")], left
    if "ro" not in options:
        assert left, "the disk filled before the first file: the test shows nothing"
