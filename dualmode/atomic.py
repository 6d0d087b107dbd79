"""Atomic output: write beside the target under a hidden temporary name, then rename.

A killed process leaves either the previous complete output or the new complete one,
never a partial one: ``os.replace`` is atomic on POSIX within one file system.

Files
    ``os.replace(tmp, path)`` swaps in one step (after ``fsync`` of the data).
Directories (``.ome.zarr`` stores, whole result folders)
    On Linux the two directories are exchanged in one step (``renameat2`` with
    ``RENAME_EXCHANGE``), then the old one (now under the hidden name) is removed.
    Where that is not supported, the old one is renamed away first (``.<name>.*.old-<name>``),
    the new one renamed in, and the old one removed; a kill between the two renames leaves
    the previous copy under the hidden name, which :func:`remove_stale` puts back.
Result folders
    :func:`staged_folder` yields ``.<name>.staging-*`` beside the final folder; every output
    is written there and the whole folder is swapped in when the block succeeds.

Leftovers of killed runs all match ``.<name>.*.tmp-<name>``, ``.<name>.*.old-<name>`` or
``.<name>.staging-*``; :func:`remove_stale` deletes them (or restores an old copy).
A directory found where an output *file* should go is never deleted: the write fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import os
import shutil
import tempfile
from typing import Iterator

_TMP = ".tmp-"
_OLD = ".old-"
_STAGING = ".staging-"


class OutputWriteError(OSError):
    """An output file could not be written (disk full, read-only, a directory in the way).

    ``str(err)`` names the output file; ``err.errno`` is the cause's.
    """

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: str, b: str) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2``); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), a)


def _swap_in(tmp: str, path: str) -> None:
    """Rename ``tmp`` to ``path``; directories via an atomic exchange (or rename-away of the old one)."""
    if os.path.isdir(path) and not os.path.islink(path) and not os.path.isdir(tmp):
        raise OutputWriteError(errno.EISDIR, f"{path}: a directory is where this output file goes; "
                                             f"not replacing it (move it away)")
    if not os.path.isdir(tmp):
        _fsync_file(tmp)
        os.replace(tmp, path)
        return
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise OutputWriteError(errno.ENOTDIR, f"{path}: exists and is not a folder; not replacing it")
    if exchange(tmp, path):
        _remove(tmp)  # now the old copy
        return
    folder, name = os.path.split(path)
    old = tempfile.mkdtemp(prefix=f".{name}.", suffix=f"{_OLD}{name}", dir=folder or ".")
    os.rmdir(old)
    os.rename(path, old)
    os.rename(tmp, path)
    _remove(old)


def _naming(err: OSError, path: str, shown: str | None = None) -> OutputWriteError:
    """``err`` as an :class:`OutputWriteError` naming the output file (``shown`` or ``path``)."""
    if isinstance(err, OutputWriteError):
        return err
    return OutputWriteError(err.errno or errno.EIO, f"{shown or path}: cannot write ({err.strerror or err})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; move it to ``path`` if the block succeeds.

    The temporary name keeps the suffixes of ``path`` (``.nii.gz``, ``.ome.tif``,
    ``.ome.zarr``) so that libraries choosing a format by extension still do the
    right thing. The block may create a file or a directory there. On an exception
    the temporary is removed and ``path`` is left as it was; an ``OSError`` (disk full,
    read-only) becomes an :class:`OutputWriteError` naming ``path``.

    Examples
    --------
    >>> with atomic_path("out/report.json") as tmp:      # doctest: +SKIP
    ...     open(tmp, "w").write("{}")
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f"{_TMP}{name}", dir=folder or ".")
    except OSError as err:
        raise _naming(err, path) from err
    os.close(fd)
    os.remove(tmp)  # libraries create the file or directory themselves
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise FileNotFoundError(f"nothing was written to the temporary {tmp} for {path}")
        _swap_in(tmp, path)
    except OSError as err:
        if isinstance(err, FileNotFoundError) and not err.errno:
            raise
        raise _naming(err, path) from err
    finally:
        _remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike, carry: tuple[str, ...] = ()) -> Iterator[str]:
    """Yield an empty hidden folder beside ``path``; swap it in whole for ``path`` if the block succeeds.

    Parameters
    ----------
    path : path-like
        The final folder (e.g. ``OUT/<name>``); its previous content stays untouched
        until the new one is complete, then is removed in the same step as the swap.
    carry : tuple of str
        Files of the previous folder copied into the new one just before the swap
        (e.g. ``log.txt``, whose earlier runs are kept).

    Raises
    ------
    OutputWriteError
        Naming the output file (``path/<file>``, not the staging name) when a write or
        the swap fails; nothing of the new folder is left behind.
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    try:
        os.makedirs(parent, exist_ok=True)
        stage = tempfile.mkdtemp(prefix=f".{name}{_STAGING}", dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)  # an ordinary folder once swapped in (mkdtemp makes it 0700)
    except OSError as err:
        raise _naming(err, path) from err
    try:
        yield stage
        for keep in carry:
            src = os.path.join(path, keep)
            if os.path.isfile(src) and not os.path.lexists(os.path.join(stage, keep)):
                shutil.copy2(src, os.path.join(stage, keep))
        _swap_in(stage, path)
    except OSError as err:
        shown = None if err.filename is None else str(err.filename).replace(stage, path)
        if isinstance(err, OutputWriteError):
            raise OutputWriteError(err.errno, str(err).replace(stage, path)) from err
        raise _naming(err, path, shown) from err
    finally:
        _remove(stage)


def _stale_target(name: str) -> tuple[str, str] | None:
    """``(marker, target)`` of a leftover name made by this module, else None."""
    if name.startswith(".") and _STAGING in name:
        target = name[1:].rpartition(_STAGING)[0]
        if target:
            return _STAGING, target
    for marker in (_TMP, _OLD):
        head, sep, target = name.rpartition(marker)
        if sep and target and head.startswith(f".{target}."):
            return marker, target
    return None


def remove_stale(folder: str | os.PathLike) -> list[str]:
    """Delete temporaries left in ``folder`` by killed writers; return their paths.

    Only names made by :func:`atomic_path` and :func:`staged_folder` are touched. When a
    kill happened between the two renames of a directory, the old copy is put back
    instead of deleted.
    """
    folder = os.fspath(folder)
    removed = []
    for leftover in sorted(glob.glob(os.path.join(glob.escape(folder), ".*"))):
        found = _stale_target(os.path.basename(leftover))
        if found is None:
            continue
        marker, target = found
        dest = os.path.join(folder, target)
        if marker == _OLD and not os.path.lexists(dest):
            os.rename(leftover, dest)  # restore the previous complete copy
        else:
            _remove(leftover)
            removed.append(leftover)
    return removed
