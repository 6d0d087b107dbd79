"""Compressed sensing: time to reach equal NRMSE, dualmode vs SigPy ``L1WaveletRecon`` vs BART ``pics``.

Problem: 2D Shepp-Logan (128 x 128; 64 x 64 with ``quick``), Cartesian variable-density
random mask at R = 4 with a fully sampled centre, complex Gaussian noise (data SNR 40),
``min 1/2 ||M F x - y||^2 + lam ||W x||_1``. Every tool solves its own version of this
problem with the same ``lam`` in unitary-FFT units (dualmode's DFT is unnormalised, so it
gets ``lam * N`` and the data unchanged; SigPy and BART get ``y / sqrt(N)``):

* dualmode: FISTA, db4 wavelet with random shifts (:func:`dualmode.recon.iterative.l1_wavelet_recon`);
* SigPy: ``sigpy.mri.app.L1WaveletRecon`` (accelerated proximal gradient, db4, no shifts);
* BART: ``bart pics -l1 -r lam -i iters -w 1`` (FISTA, Daubechies-2 with random shifts).

For iteration budgets 5, 10, 20, ... each tool runs from scratch; its ``time_s`` is the
wall time of the smallest budget whose NRMSE (to the phantom) is within 2 % of the target,
the target being the worst of the tools' best NRMSEs (so every tool can reach it). BART's
time includes process start and .cfl file I/O (noted). Two threads everywhere
(``workers=2`` for scipy.fft, ``OMP_NUM_THREADS=2`` for BART).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from dualmode.recon.iterative import l1_wavelet_recon
from dualmode.recon.linop import FFTOp

from . import missing, nrmse, row

SUITE = "cs"
THREADS = 2
LAM = 1e-3  # in unitary-FFT units (image intensities ~1)


def write_cfl(path_base: str, array: np.ndarray) -> None:
    """BART ``.hdr``/``.cfl`` pair: dims line, complex64 data in Fortran (column-major) order."""
    dims = list(array.shape) + [1] * (16 - array.ndim)
    with open(path_base + ".hdr", "w") as f:
        f.write("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    np.asarray(array, dtype=np.complex64).ravel(order="F").tofile(path_base + ".cfl")


def read_cfl(path_base: str) -> np.ndarray:
    """Read a BART ``.cfl`` written by :func:`write_cfl` or by BART (trailing 1s dropped)."""
    with open(path_base + ".hdr") as f:
        lines = [ln for ln in f if not ln.startswith("#")]
    dims = [int(d) for d in lines[0].split()]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    data = np.fromfile(path_base + ".cfl", dtype=np.complex64)
    return data.reshape(dims, order="F")


def variable_density_mask(n: int, accel: float, seed: int = 0, power: float = 2.0, centre: int = 6) -> np.ndarray:
    """2D variable-density random mask, density ``(1 - r)^power``, fully sampled disk at the centre."""
    kx, ky = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    r = np.minimum(np.hypot(kx, ky) / (n / 2), 1.0)
    pdf = (1 - r) ** power
    lo, hi = 0.0, 1e3
    for _ in range(60):
        s = (lo + hi) / 2
        lo, hi = (lo, s) if np.clip(pdf * s, 0, 1).sum() > n * n / accel else (s, hi)
    mask = np.random.default_rng(seed).random((n, n)) < np.clip(pdf * s, 0, 1)
    mask[np.hypot(kx, ky) < centre] = True
    return mask


def problem(n: int, seed: int = 0):
    truth = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True).astype(complex)[:, :, None]
    mask = variable_density_mask(n, 4.0, seed)[:, :, None]
    op = FFTOp((n, n, 1), mask, workers=THREADS)
    clean = op.forward(truth)
    sigma = np.sqrt(np.mean(np.abs(clean[mask]) ** 2)) / 40
    rng = np.random.default_rng(seed + 1)
    y = clean + mask * sigma * (rng.standard_normal(mask.shape) + 1j * rng.standard_normal(mask.shape)) / np.sqrt(2)
    return truth, mask, op, y


def _dualmode(op, y, iters):
    n_pix = y.size
    return l1_wavelet_recon(op, y, LAM * n_pix, max_iter=iters)


def _sigpy(mask, y, iters):
    import sigpy.mri as mr

    n = y.shape[0]
    ksp = (y[:, :, 0] / np.sqrt(y.size))[None]
    app = mr.app.L1WaveletRecon(ksp, np.ones((1, n, n), complex), LAM, weights=mask[None, :, :, 0].astype(float),
                                max_iter=iters, show_pbar=False)
    return app.run()[:, :, None]


def _bart(mask, y, iters, workdir):
    n = y.shape[0]
    write_cfl(os.path.join(workdir, "ksp"), (y / np.sqrt(y.size)).reshape(n, n, 1, 1))
    write_cfl(os.path.join(workdir, "sens"), np.ones((n, n, 1, 1)))
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    subprocess.run(["bart", "pics", "-l1", "-r", str(LAM), "-i", str(iters), "-w", "1",
                    os.path.join(workdir, "ksp"), os.path.join(workdir, "sens"), os.path.join(workdir, "out")],
                   check=True, capture_output=True, env=env)
    return read_cfl(os.path.join(workdir, "out")).reshape(n, n, 1)


def _sweep(fn, truth, budgets):
    out = []
    for it in budgets:
        t0 = time.perf_counter()
        img = fn(it)
        out.append((it, time.perf_counter() - t0, nrmse(img, truth)))
    return out


def run(quick: bool = False) -> list[dict]:
    n = 64 if quick else 128
    budgets = [5, 10, 20, 40, 80] if quick else [5, 10, 20, 40, 80, 160]
    case = f"2D Cartesian {n}x{n} R=4 VD random, L1-wavelet lam={LAM:g}"
    truth, mask, op, y = problem(n)
    sweeps, rows = {}, []
    sweeps["dualmode"] = _sweep(lambda it: _dualmode(op, y, it), truth, budgets)
    try:
        import sigpy  # noqa: F401

        sweeps["sigpy L1WaveletRecon"] = _sweep(lambda it: _sigpy(mask, y, it), truth, budgets)
    except ImportError as err:
        rows.append(missing(SUITE, case, "sigpy L1WaveletRecon", err))
    if shutil.which("bart") is None:
        rows.append(missing(SUITE, case, "bart pics", "bart not on PATH (apt-get install bart)"))
    else:
        with tempfile.TemporaryDirectory() as work:
            try:
                sweeps["bart pics"] = _sweep(lambda it: _bart(mask, y, it, work), truth, budgets)
            except (subprocess.CalledProcessError, OSError) as err:
                rows.append(missing(SUITE, case, "bart pics", err))
    target = max(min(e for _, _, e in sw) for sw in sweeps.values()) * 1.02
    notes = {"dualmode": "FISTA, db4 + random shifts, workers=2",
             "sigpy L1WaveletRecon": "APG, db4, no shifts, numpy backend",
             "bart pics": "FISTA, dau2 + random shifts, OMP_NUM_THREADS=2, incl. process start and .cfl I/O"}
    for tool, sw in sweeps.items():
        best = min(e for _, _, e in sw)
        hit = next((s for s in sw if s[2] <= target), None)
        rows.insert(len(rows) if tool != "dualmode" else 0,
                    row(SUITE, case, tool, hit[1] if hit else None, nrmse=hit[2] if hit else best,
                        iterations=hit[0] if hit else None, best_nrmse=best,
                        note=f"{notes[tool]}; target NRMSE {target:.4f}"
                             + ("" if hit else "; target not reached")))
    return rows


if __name__ == "__main__":
    import sys

    for r in run(quick="--quick" in sys.argv):
        print(r)
