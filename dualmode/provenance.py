"""Where a result came from: input checksums, library versions, peak memory."""

from __future__ import annotations

import hashlib
import os
import resource

from dualmode import __version__


def sha256_file(path: str) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_checksums(folder: str) -> dict[str, str]:
    """sha256 of every file in the acquisition folder except ground truth."""
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "truth")
        for name in sorted(files):
            if name == "truth.json":
                continue
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = sha256_file(path)
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
    """Versions of dualmode and the libraries that shape its numbers."""
    import importlib.metadata as md

    names = ["numpy", "scipy", "scikit-image", "SimpleITK", "nibabel", "numba", "tifffile", "ismrmrd"]
    out = {"dualmode": __version__}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = "missing"
    return out
