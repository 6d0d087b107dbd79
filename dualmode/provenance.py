"""Where a result came from: input checksums, output checksums, library versions, peak memory.

Input checksums cover the manifest and every file it references, wherever it lives
(``"../shared-kspace.h5"``, a directory symlink to a scanner export: followed), so that
``dualmode run --resume`` sees any change that could change a result. Files the manifest
does not reference (notes, ``truth.json``, a stray FIFO) are not read at all. A referenced
path that is not a regular file (FIFO, device, socket) is refused with an
:class:`~dualmode.errors.InputError`: reading it could block forever.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import stat

from dualmode import __version__
from dualmode.errors import InputError

MANIFEST = "acquisition.json"
#: Manifest keys whose string values are paths the readers open (relative to the folder).
PATH_KEYS = ("path", "image", "frames", "file", "files")


def sha256_file(path: str) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a regular file"


def _hash_regular(path: str, field: str | None) -> str:
    """sha256 of a regular file (symlinks followed); InputError for anything else or a read error."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"  # the reader reports it with its own words
    except OSError as err:
        raise InputError(path, f"cannot read ({err.strerror})", field) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(path, f"is {_kind(st.st_mode)}, not a regular file; refusing to read it", field)
    try:
        return sha256_file(path)
    except OSError as err:
        raise InputError(path, f"cannot read ({err.strerror})", field) from None


def referenced_paths(manifest) -> list[tuple[str, str]]:
    """``(field, path)`` of every file or folder the manifest references (keys in :data:`PATH_KEYS`)."""
    out = []

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            for key, val in node.items():
                here = f"{where}.{key}" if where else str(key)
                if key in PATH_KEYS and isinstance(val, str):
                    out.append((here, val))
                elif key in PATH_KEYS and isinstance(val, list):
                    out.extend((f"{here}[{i}]", v) for i, v in enumerate(val) if isinstance(v, str))
                else:
                    walk(val, here)
        elif isinstance(node, list):
            for i, val in enumerate(node):
                walk(val, f"{where}[{i}]")

    walk(manifest, "")
    return out


def _hash_tree(root: str, key: str, field: str, out: dict) -> None:
    """Every file under a referenced folder, symlinks followed (each real folder once)."""
    seen = set()
    for here, dirs, files in os.walk(root, followlinks=True, onerror=None):
        real = os.path.realpath(here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(here, name)
            out[f"{key}/{os.path.relpath(path, root)}"] = _hash_regular(path, field)


def input_checksums(folder: str | os.PathLike) -> dict[str, str]:
    """sha256 of the manifest and of every file it references (folders: every file inside).

    Keys are the paths as written in the manifest (``"mri/kspace.h5"``,
    ``"../shared-kspace.h5"``, ``"scan/fid"`` for a file inside a referenced folder).

    Raises
    ------
    InputError
        A referenced path is a FIFO, device or socket, or cannot be read (the folder
        fails; nothing blocks).

    Examples
    --------
    >>> input_checksums("my-acq")              # doctest: +SKIP
    {'acquisition.json': '9f2c...', 'mri/kspace.h5': '51d0...', 'optics/image.ome.tif': '0b7a...'}
    """
    folder = os.fspath(folder)
    mpath = os.path.join(folder, MANIFEST)
    out = {MANIFEST: _hash_regular(mpath, None)}
    if out[MANIFEST] == "missing":
        return out
    try:
        with open(mpath, encoding="utf-8-sig") as f:
            manifest = json.load(f)
    except (OSError, ValueError, RecursionError):
        return out  # the manifest reader reports it
    for field, ref in referenced_paths(manifest):
        path = os.path.join(folder, ref)
        if os.path.isdir(path):
            _hash_tree(path, ref, field, out)
        else:
            out[ref] = _hash_regular(path, field)
    return out


def output_checksums(folder: str | os.PathLike, exclude: tuple[str, ...] = ("report.json", "log.txt")) -> dict:
    """sha256 of every file under a result folder (relative POSIX paths), except ``exclude``."""
    folder = os.fspath(folder)
    out = {}
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(here, name), folder).replace(os.sep, "/")
            if rel not in exclude:
                out[rel] = sha256_file(os.path.join(here, name))
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB): Linux ``VmHWM`` (which the batch resets per
    folder), else ``getrusage``, whose maximum also counts the parent of a spawned worker."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def versions() -> dict[str, str]:
    """Versions of dualmode and the libraries that shape its numbers (read once per process)."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    """:func:`versions`, cached: reading package metadata costs ~35 ms, a batch asks once per folder."""
    import importlib.metadata as md

    names = ["numpy", "scipy", "scikit-image", "SimpleITK", "nibabel", "numba", "tifffile", "ismrmrd"]
    out = [("dualmode", __version__)]
    for n in names:
        try:
            out.append((n, md.version(n)))
        except md.PackageNotFoundError:
            out.append((n, "missing"))
    return tuple(out)
