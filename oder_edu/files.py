"""Every file the package writes goes through here: one atomic write, and one sweep of what a
killed write left behind.

A write goes to a temporary file beside its target, named ``.NAME.XXXXXXXX.partial`` (``NAME``
the target's name, ``XXXXXXXX`` random), is flushed to disk and renamed onto the target: readers
see the old file or the new one, never half of one. On any error -- a full disk, a denied
permission, Ctrl-C -- the temporary file is removed and the target is left as it was.

A process killed mid-write (SIGKILL, a power cut) cannot clean up, so ``sweep(folder)`` removes
the temporaries of this naming, and those of the fixed names earlier versions used
(``checkpoint.pt.partial``, ``log.json.partial``, ``.NAME.partial``, ``NAME.json.partial``, ...,
see ``is_temporary``), that no running process is writing: each writer holds an advisory lock
(``flock``) on its temporary file while it writes, which dies with it. The commands sweep the
folders they write into when they start, and ``oder-edu clean-partials DIR`` sweeps on request.
Where ``flock`` is missing (Windows) only temporaries older than ``STALE_SECONDS`` are removed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

SUFFIX = ".partial"
# the temporary files of ``atomic_path`` (and of checkpoints.py before it): .NAME.XXXXXXXX.partial
_RANDOM = re.compile(r"\..+\.[a-z0-9_]{8}\.partial")
# the fixed names of earlier versions: checkpoint.pt.partial, log.json.partial, .00_start.ipynb.partial,
# oder.json.partial, oder.md.partial, model.log.partial (the copy of model.log.csv)
_FIXED = re.compile(r"\.?[^/]+\.(pt|json|md|csv|log|png|ipynb)\.partial")
_PROBE = ".write-test"  # the writability probe of earlier versions
STALE_SECONDS = 3600.0  # without flock: a temporary this old is no longer being written


def is_temporary(name: str) -> bool:
    """True when a file name is one of the package's temporary names (module docstring)."""
    return name == _PROBE or bool(_RANDOM.fullmatch(name) or _FIXED.fullmatch(name))


def _fsync(fd: int) -> None:
    """Flush a file's data to the disk (a module function so a test can make the disk 'full')."""
    os.fsync(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); nothing where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _new_file_mode() -> int:
    """The mode a plain new file gets under the current umask (mkstemp's is a private 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, locked temporary file beside ``path``: ``(fd holding the lock, its path)``. A sweep that
    removed it between its creation and the lock is noticed (no link left) and a new one made."""
    while True:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=SUFFIX)
        if fcntl is None:
            return fd, Path(name)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            return fd, Path(name)
        os.close(fd)


def _unchanged(path: Path, error: OSError) -> OSError:
    """``error`` (same errno, so the same OSError subclass) saying which target was not written."""
    reason = error.strerror or str(error)
    return OSError(error.errno, f"cannot write {path}: {reason}; "
                                f"{f'{path} is unchanged' if path.exists() else 'nothing was written'}")


def _place(temporary: Path, path: Path, overwrite: bool) -> None:
    """Rename ``temporary`` onto ``path``; without ``overwrite`` by a hard link, which fails if
    ``path`` appeared meanwhile (no silent overwrite), or where links are missing (FAT, some
    network file systems) by a check and a rename."""
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, f"{path} exists; refusing to overwrite it") from None
    except OSError:
        if path.exists():
            raise FileExistsError(errno.EEXIST, f"{path} exists; refusing to overwrite it") from None
        os.replace(temporary, path)
        return
    os.remove(temporary)


@contextlib.contextmanager
def atomic_path(path, overwrite: bool = True):
    """Yield a temporary path beside ``path`` to write the whole file to; when the block ends, flush
    it to disk and rename it onto ``path``. On any error (``BaseException`` included) remove the
    temporary file and re-raise; an ``OSError`` (ENOSPC, EACCES, ...) is re-raised with the same
    errno and a message naming ``path``. ``overwrite=False`` refuses an existing ``path``
    (``FileExistsError``), before the block and again, atomically, at the rename."""
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(errno.EEXIST, f"{path} exists; refusing to overwrite it")
    fd = temporary = None
    try:
        fd, temporary = _create_temporary(path)
        os.chmod(temporary, _new_file_mode())
        yield temporary
        _fsync(fd)  # the file's data, whichever handle wrote it
        _place(temporary, path, overwrite)
        _fsync_folder(path.parent)
    except BaseException as error:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.remove(temporary)
        if isinstance(error, OSError) and not isinstance(error, FileExistsError):
            raise _unchanged(path, error) from error
        raise
    finally:
        if fd is not None:
            os.close(fd)


def write_bytes(path, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (``atomic_path``); returns ``path``."""
    with atomic_path(path, overwrite) as temporary, open(temporary, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text(path, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (``atomic_path``); returns ``path``."""
    return write_bytes(path, text.encode("utf-8"), overwrite)


def copy(source, path, overwrite: bool = True) -> Path:
    """Copy the file ``source`` to ``path`` atomically (small files: read whole)."""
    return write_bytes(path, Path(source).read_bytes(), overwrite)


def save_torch(obj, path, overwrite: bool = True) -> Path:
    """``torch.save(obj)`` to ``path`` atomically. Serialized in memory first (the package's files are
    a few MB): torch's own file writer turns a full disk into an opaque ``RuntimeError``
    ('unexpected pos ...'), a plain write into ``OSError(ENOSPC)`` naming the file."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue(), overwrite)


def _remove_if_stale(path: Path) -> bool:
    """Remove the temporary file ``path`` unless a running writer holds its lock (the lock is held
    while removing, so a writer that locks it next sees it gone); True when removed."""
    if fcntl is None:
        if time.time() - path.stat().st_mtime < STALE_SECONDS:
            return False
        path.unlink()
        return True
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        path.unlink()
    return True


def sweep(folder, recursive: bool = False) -> list[Path]:
    """Remove the stale temporary files (``is_temporary``; no writer holds them) in ``folder`` (and its
    subfolders with ``recursive``); returns what was removed. Nothing else is touched; a folder
    that does not exist is empty."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    walk = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    removed = []
    for root, _, names in walk:
        for name in sorted(names):
            path = Path(root) / name
            if not is_temporary(name) or path.is_symlink() or not path.is_file():
                continue
            with contextlib.suppress(FileNotFoundError):
                if _remove_if_stale(path):
                    removed.append(path)
    return removed
