"""Writing files safely and reading tensor files safely.

Every output is written to a temporary file beside it and renamed (:func:`atomic_path`,
:func:`atomic_dir`): readers never see half a file and a crash leaves the previous version. An
OSError while writing is one line naming the final path (:class:`OutputError`). Tensor files are
read only with ``torch.load(weights_only=True)`` (:func:`load_tensor_state`): a file that needs
arbitrary unpickling is refused, never run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch


class OutputError(OSError):
    """An output file could not be written (disk full, read-only, quota, size limit...);
    ``str(err)`` is ``"<path>: cannot write (<cause>)"``, one line, naming the final path."""

    def __init__(self, path: str | os.PathLike, cause: str, errno_: int | None = None) -> None:
        super().__init__(errno_, cause)
        self.path = Path(path)
        self.cause = one_line(cause)

    def __str__(self) -> str:
        return f"{one_line(str(self.path))}: cannot write ({self.cause})"

    def __reduce__(self):  # keep picklable across worker processes
        return (type(self), (self.path, self.cause, self.errno))


def os_error_message(err: OSError) -> str:
    """One line for an OSError: ``"<file>: <reason>"`` (no errno number, no traceback)."""
    if isinstance(err, OutputError):
        return str(err)
    reason = err.strerror or str(err) or type(err).__name__
    where = err.filename if err.filename is not None else None
    return one_line(f"{where}: {reason}" if where is not None else reason)


def _output_error(path: Path, tmp: Path | None, err: OSError) -> OSError:
    """``err`` as an OutputError for ``path``, unless it is already one or, inside the block
    (``tmp`` given), it names some other file (an input read while writing)."""
    if isinstance(err, OutputError):
        return err
    named = {os.fsdecode(f) for f in (err.filename, err.filename2) if isinstance(f, str | bytes)}
    if tmp is not None and named and not named & {str(path), str(tmp)}:
        return err
    # Arrow and some C writers put the reason only in the message (errno unset).
    cause = err.strerror or str(err) or type(err).__name__
    return OutputError(path, cause, err.errno)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc), else by
    setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    """(resolved path, (device, inode) if it exists): two spellings, a link or a hard link of
    one file compare equal on one of the two."""
    try:
        st = path.stat()
        inode = (st.st_dev, st.st_ino)
    except OSError:
        inode = None
    return os.path.realpath(path), inode


def refuse_overwriting_inputs(
    inputs: Iterable[str | os.PathLike | None],
    outputs: Iterable[str | os.PathLike | None],
) -> None:
    """ValueError (one line) when an output file or folder is one of the inputs, however
    spelled (``./a.png``, a symbolic or hard link): checked before anything is written. An
    output folder that is an input folder is refused too, since the outputs would mix with
    the inputs (and be read as inputs next time)."""
    seen: dict[object, Path] = {}
    for given in inputs:
        if given is not None:
            real, inode = _identity(Path(given))
            seen[real] = Path(given)
            if inode is not None:
                seen[inode] = Path(given)
    for given in outputs:
        if given is None:
            continue
        real, inode = _identity(Path(given))
        clash = seen.get(real) or (seen.get(inode) if inode is not None else None)
        if clash is not None:
            raise ValueError(f"output {given} would overwrite the input {clash}; write elsewhere")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Readers never see a half-written file, and a crash leaves the previous version in place.
    An OSError while creating, writing or renaming the file (ENOSPC, EROFS, EFBIG...) is raised
    as :class:`OutputError` naming ``path``, and the temporary file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~current_umask())  # as open() would create it, not mkstemp's 0600
        os.close(fd)
    except OSError as err:
        raise _output_error(path, None, err) from err
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        translated = _output_error(path, tmp_path, err)
        if translated is err:
            raise
        raise translated from err
    finally:
        with contextlib.suppress(OSError):  # never hide the real error behind a cleanup one
            tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it replaces ``path`` (and whatever was
    there) only if the block succeeds, else it is removed and ``path`` is left as it was.

    For stages that rebuild a whole output folder: a failure never leaves half of one behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~current_umask())  # as mkdir would create it, not mkdtemp's 0700
    old = None
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        try:
            os.replace(tmp, path)
        except OSError:
            if old is not None:  # put the previous version back
                os.replace(old / path.name, path)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def one_line(text: str) -> str:
    """Escape newlines and other control characters so ``text`` stays on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def load_tensor_state(
    source: str | os.PathLike | bytes, error: type[Exception], *, tensors_only: bool = True
) -> dict:
    """The dict a tensor file holds (onto the CPU, never unpickling objects), or ``error`` with
    one line ``"<file>: not a loadable tensor state dict (<reason>)"``; ``tensors_only``: every
    value must be a tensor."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    readable = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        state = torch.load(readable, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # what weights_only refuses: objects beyond tensors
        raise error(
            f"{name}: not a plain tensor state dict (it holds pickled Python objects, which are "
            "never unpickled here); refused"
        ) from None
    except Exception as err:  # noqa: BLE001 - a corrupt archive, I/O
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise error(f"{name}: not a loadable tensor state dict ({first})") from None
    if not isinstance(state, dict):
        raise error(f"{name}: expected a state dict, got {type(state).__name__}")
    if tensors_only and not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise error(f"{name}: expected a state dict of tensors")
    return state
