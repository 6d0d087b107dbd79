"""Cartesian reconstruction: ``reconstruct_repetitions`` vs bare ``scipy.fft`` / ``numpy.fft`` on the same data.

dualmode does the centred inverse FFT of every repetition and coil and the SVD coil
combination; the peers do the centred ``ifftn`` only (``ifftshift -> ifftn -> fftshift``
over the three image axes). ``nrmse`` compares each peer's image, coil-combined by
the same :func:`dualmode.recon.coils.svd_combine` outside the timing, with dualmode's.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from dualmode.kspace import KSpace, KSpaceHeader
from dualmode.recon.cartesian import reconstruct_repetitions
from dualmode.recon.coils import svd_combine

from . import best_time, nrmse, row

SUITE = "cartesian"
AXES = (-3, -2, -1)


def _kspace(matrix, reps: int, coils: int, seed: int = 0) -> KSpace:
    rng = np.random.default_rng(seed)
    shape = (reps, coils, *matrix)
    data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    header = KSpaceHeader(matrix=tuple(matrix), fov_mm=(12.8, 12.8, 12.8 if matrix[2] > 1 else 1.0),
                          n_repetitions=reps, n_coils=coils)
    return KSpace(data, header, source="benchmark")


def _scipy(data):
    return scipy.fft.fftshift(scipy.fft.ifftn(scipy.fft.ifftshift(data, axes=AXES), axes=AXES, workers=-1),
                              axes=AXES)


def _numpy(data):
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(data, axes=AXES), axes=AXES), axes=AXES)


def run(quick: bool) -> list[dict]:
    cases = [("2D 64x64, 8 shots, 1 coil", (64, 64, 1), 8, 1),
             ("3D 64^3, 8 shots, 1 coil", (64, 64, 64), 8, 1),
             ("3D 64^3, 8 shots, 4 coils", (64, 64, 64), 8, 4)]
    if not quick:
        cases.append(("3D 128^3, 4 shots, 1 coil", (128, 128, 128), 4, 1))
    repeat = 2 if quick else 5
    rows = []
    for case, matrix, reps, coils in cases:
        ksp = _kspace(matrix, reps, coils)
        t_dm, ref = best_time(lambda: reconstruct_repetitions(ksp, rf_correction=False), repeat)
        rows.append(row(SUITE, case, "dualmode", t_dm, nrmse=0.0,
                        note="ifft_centered + SVD coil combination" if coils > 1 else "ifft_centered"))
        for tool, fn in (("scipy.fft", _scipy), ("numpy.fft", _numpy)):
            t, img = best_time(lambda: fn(ksp.data), repeat)
            err = nrmse(svd_combine(img, coil_axis=1), ref)
            note = "centred ifftn only" + (", coil combination not timed" if coils > 1 else "")
            if tool == "scipy.fft":
                note += ", workers=-1"
            rows.append(row(SUITE, case, tool, t, nrmse=err, note=note))
    return rows
