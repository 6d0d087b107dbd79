"""Compressed sensing on real hyperpolarized k-space (LarsonLab hyperpolarized-mri-toolbox,
BSD-3, in shared/realdata/larsonlab-hp13c): the scanner's own prospective undersampling of a
[1-13C]pyruvate scan, and a retrospective Poisson-disc undersampling of a fully sampled 15N
urea scan whose full data are the truth. Peers: SigPy and BART ``pics`` on the same mask."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dualmode.conventions import fft_centered, ifft_centered
from dualmode.recon.iterative import fista, soft_threshold
from dualmode.recon.linop import FFTOp
from dualmode.recon.trajectory import poisson_disc_mask

HP = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "larsonlab-hp13c"
pytestmark = pytest.mark.skipif(not HP.is_dir(), reason=f"shared real data absent: {HP}")
LAM = 1e-2  # L1 in image space, unitary-FFT units, images scaled to peak 1


def _frame(name, key):
    import scipy.io as sio

    k = sio.loadmat(HP / name)[key]
    t = int(np.argmax([np.linalg.norm(k[..., i]) for i in range(k.shape[-1])]))
    return k[..., t].astype(np.complex128)


def _cs(y, mask, iters):
    op = FFTOp(y.shape, mask)
    return fista(op, y * mask, lambda v, t: soft_threshold(v, LAM * y.size * t), max_iter=iters)


def _objective(x, y, mask):
    return 0.5 * np.linalg.norm((fft_centered(x) - y) * mask) ** 2 / y.size + LAM * np.abs(x).sum()


def _nrmse(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_pyruvate_prospective_mask_dualmode_equals_sigpy_and_beats_zero_filling():
    import sigpy as sp

    y = _frame("kspace_c2pyr_prospective.mat", "kspace")
    mask = np.broadcast_to((np.abs(y) > 0).any(axis=0)[None], y.shape)
    assert 2.0 < mask.size / mask.sum() < 3.0  # the scanner's variable-density ky-kz mask
    y = y / np.abs(ifft_centered(y)).max()
    x = _cs(y, mask, 20)
    a = sp.linop.Multiply(y.shape, mask.astype(float)) * sp.linop.FFT(y.shape, center=True)
    ref = sp.app.LinearLeastSquares(a, y / np.sqrt(y.size), proxg=sp.prox.L1Reg(y.shape, LAM), max_iter=20,
                                    show_pbar=False).run()
    assert _nrmse(x, ref) < 1e-6  # the same minimisation, the same iterates
    assert _objective(x, y, mask) < 0.75 * _objective(ifft_centered(y), y, mask)
    assert np.linalg.norm((fft_centered(x) - y) * mask) / np.linalg.norm(y) < 0.2  # data kept (the rest is noise L1 removes)


def test_urea_retrospective_undersampling_beats_zero_filling_and_agrees_with_bart(tmp_path):
    full = _frame("n15urea_3D_kspace_VFA.mat", "kspace_pf")
    full = full / np.abs(ifft_centered(full)).max()
    truth = np.abs(ifft_centered(full))
    m2 = poisson_disc_mask(full.shape[1:], 3.0, calib=(8, 4), seed=0)
    mask = np.broadcast_to(m2[None], full.shape)
    y = full * mask
    x = _cs(y, mask, 100)
    zf = _nrmse(np.abs(ifft_centered(y)), truth)
    ours = _nrmse(np.abs(x), truth)
    assert ours < 0.8 * zf and ours < 0.4, (ours, zf)
    if shutil.which("bart") is None:
        pytest.fail("BART is not installed (Debian package 'bart'; .ci/run installs it)")
    dims = list(y.shape) + [1] * 13
    for name, arr in (("k", y / np.sqrt(y.size)), ("s", np.ones(y.shape))):
        (tmp_path / f"{name}.hdr").write_text("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
        np.asarray(arr, np.complex64).ravel(order="F").tofile(tmp_path / f"{name}.cfl")
    env = dict(os.environ, OMP_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE")
    subprocess.run(["bart", "pics", "-R", f"I:0:{LAM}", "-i", "100", "-w", "1", "k", "s", "o"], cwd=tmp_path,
                   check=True, capture_output=True, env=env)
    b = np.fromfile(tmp_path / "o.cfl", np.complex64).reshape(y.shape, order="F")
    assert _nrmse(np.abs(b), truth) < 0.8 * zf  # BART's answer is also far better than zero filling
    assert _nrmse(np.abs(x), np.abs(b)) < 0.2  # and close to ours
