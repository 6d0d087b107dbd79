"""Linear MRI encoding operators with ``forward``, ``adjoint`` and ``normal`` (SigPy-like, plain numpy).

Every operator ``A`` maps an image of shape ``ishape`` to data of shape ``oshape``
and follows :mod:`dualmode.conventions`: the forward DFT is unnormalised,
``(A x)_k = sum_x f(x) exp(-2 pi i k.x / N)``, so measured k-space can be used as
is. ``adjoint`` is the exact conjugate transpose (for the Cartesian DFT,
``N * ifft_centered``) and ``normal(x) = A^H A x`` is overridden where a cheaper
form exists (Cartesian mask: one FFT pair; NUFFT: Toeplitz embedding,
Wajer & Pruessmann, ISMRM 2001; Fessler et al., IEEE TSP 53, 3393 (2005)).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from dualmode.conventions import fft_centered, ifft_centered


def norm(x: np.ndarray) -> float:
    """Euclidean norm by an elementwise reduction (no BLAS call: vectors here are short-lived
    and BLAS thread start-up dominates on busy machines)."""
    return float(np.sqrt(np.sum(x.real**2) + np.sum(x.imag**2))) if np.iscomplexobj(x) else float(np.sqrt(np.sum(x**2)))


def inner(x: np.ndarray, y: np.ndarray) -> complex:
    """``<x, y> = sum conj(x) y`` without BLAS (see :func:`norm`)."""
    return complex(np.sum(np.conj(x) * y))


class Linop:
    """Base class: subclasses set ``ishape``/``oshape`` and implement ``forward``/``adjoint``."""

    ishape: tuple
    oshape: tuple

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def adjoint(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def normal(self, x: np.ndarray) -> np.ndarray:
        """``A^H A x``."""
        return self.adjoint(self.forward(x))

    def max_eig(self, n_iter: int = 30, seed: int = 0) -> float:
        """Largest eigenvalue of ``A^H A`` by power iteration (the Lipschitz constant of the data term)."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.ishape) + 1j * rng.standard_normal(self.ishape)
        lam = 0.0
        for _ in range(n_iter):
            x = x / norm(x)
            y = self.normal(x)
            lam = inner(x, y).real
            x = y
        return lam


def _axes_size(shape, axes) -> int:
    return int(np.prod([shape[a] for a in axes]))


class FFTOp(Linop):
    """Cartesian sampling ``y = M F x`` with the centred unnormalised DFT ``F`` and a mask ``M``.

    Parameters
    ----------
    shape : sequence of int
        Image shape (e.g. ``(N_i, N_j, 1)``).
    mask : array, optional
        Sampling mask (bool or real weights) broadcastable to ``shape``; None: fully sampled.
    axes : sequence of int
        Encoding axes.
    """

    def __init__(self, shape, mask=None, axes=(-3, -2, -1), workers: int = -1):
        self.ishape = self.oshape = tuple(shape)
        self.axes = tuple(axes)
        self.mask = None if mask is None else np.asarray(mask, dtype=float)
        self.n = _axes_size(self.ishape, [a % len(self.ishape) for a in self.axes])
        self.workers = workers
        self._normal_mask = None
        # length-1 axes are the identity; small transforms lose more to thread start-up than
        # they gain (128^2: 0.14 ms on one thread, 0.24 ms on two)
        self._axes = tuple(a for a in self.axes if self.ishape[a] > 1)
        self._workers = workers if int(np.prod(self.ishape)) >= 1 << 18 else 1

    def forward(self, x):
        y = fft_centered(x, self._axes, self._workers)
        return y if self.mask is None else y * self.mask

    def adjoint(self, y):
        y = y if self.mask is None else y * self.mask
        return ifft_centered(y, self._axes, self._workers) * self.n

    def max_eig(self, n_iter: int = 30, seed: int = 0) -> float:
        """Exact: ``N max(mask)^2`` (``A^H A = N F^-1 M^2 F``)."""
        return float(self.n * (1.0 if self.mask is None else np.max(np.abs(self.mask)) ** 2))

    def normal(self, x):
        """``A^H A x = N ifftn(ifftshift(M^2) fftn(x))``: no centring shifts needed.

        ``fftshift(ifftn(ifftshift(M^2 fftshift(fftn(ifftshift(x))))))`` is a circular
        convolution, which commutes with the circular shifts, and
        ``ifftshift(a fftshift(z)) = ifftshift(a) z`` (any ``N``).
        """
        if self.mask is None:
            return x * self.n
        if self._normal_mask is None:
            m2 = np.broadcast_to(self.mask**2, self.ishape)
            self._normal_mask = scipy.fft.ifftshift(m2, axes=self.axes) * self.n
        y = scipy.fft.fftn(x, axes=self._axes, workers=self._workers)
        y *= self._normal_mask
        return scipy.fft.ifftn(y, axes=self._axes, workers=self._workers, overwrite_x=True)


class SenseOp(Linop):
    """Multi-coil Cartesian SENSE: ``y_c = M F (s_c x)`` (Pruessmann et al., MRM 42, 952 (1999)).

    ``sens`` has shape ``(C, *shape)``; data have shape ``(C, *shape)``.
    """

    def __init__(self, sens, mask=None, axes=(-3, -2, -1), workers: int = -1):
        self.sens = np.asarray(sens)
        self.ishape = self.sens.shape[1:]
        self.oshape = self.sens.shape
        self.fft = FFTOp(self.oshape, mask, axes, workers)

    def forward(self, x):
        return self.fft.forward(self.sens * x)

    def adjoint(self, y):
        return np.sum(self.sens.conj() * self.fft.adjoint(y), axis=0)

    def normal(self, x):
        return np.sum(self.sens.conj() * self.fft.normal(self.sens * x), axis=0)


class NUFFTOp(Linop):
    """Non-Cartesian sampling ``y_c = A (s_c x)`` with :class:`dualmode.recon.nufft.NUFFTPlan`.

    Parameters
    ----------
    coords : (..., d) array
        k-space coordinates in cycles per FOV.
    shape : sequence of int
        Image shape (2D images as ``(N_i, N_j, 1)`` are fine).
    sens : array, optional
        Coil sensitivities, shape ``(C, *shape)``; data then have a leading coil axis.
    toeplitz : bool
        Compute ``normal`` by Toeplitz embedding (one 2N-grid FFT pair, no gridding).
    eps : float, optional
        NUFFT accuracy (default: the NUFFT module's default, so the numba kernels compiled
        for it are shared).
    """

    def __init__(self, coords, shape, sens=None, *, toeplitz: bool = True, eps: float | None = None,
                 threads: int | None = None):
        from .nufft import DEFAULT_EPS
        from .trajectory_cache import cached_plan

        # one plan (and Toeplitz kernel) per trajectory, shared by every operator on it
        self.plan = cached_plan(coords, shape, eps=DEFAULT_EPS if eps is None else eps, threads=threads)
        self.sens = None if sens is None else np.asarray(sens)
        self.ishape = tuple(shape)
        pts = tuple(np.shape(coords)[:-1])
        self.oshape = pts if self.sens is None else (self.sens.shape[0], *pts)
        self.toeplitz = toeplitz

    def forward(self, x):
        return self.plan.forward(x if self.sens is None else self.sens * x)

    def adjoint(self, y):
        img = self.plan.adjoint(y)
        return img if self.sens is None else np.sum(self.sens.conj() * img, axis=0)

    def normal(self, x):
        if not self.toeplitz:
            return self.adjoint(self.forward(x))
        if self.sens is None:
            return self.plan.normal(x)
        return np.sum(self.sens.conj() * self.plan.normal(self.sens * x), axis=0)


class MatrixOp(Linop):
    """Explicit matrix ``y = A x`` on flat vectors (small problems, e.g. support-restricted Fourier)."""

    def __init__(self, matrix):
        self.matrix = np.asarray(matrix)
        self.oshape, self.ishape = (self.matrix.shape[0],), (self.matrix.shape[1],)
        self._gram = None

    def forward(self, x):
        return self.matrix @ x

    def adjoint(self, y):
        return self.matrix.conj().T @ y

    def normal(self, x):
        if self._gram is None:
            self._gram = self.matrix.conj().T @ self.matrix
        return self._gram @ x


class RestrictOp(Linop):
    """``A`` restricted to the voxels of a boolean ``support``: ``x_S -> A(embed(x_S))``."""

    def __init__(self, op: Linop, support):
        self.op = op
        self.support = np.asarray(support, dtype=bool)
        if self.support.shape != tuple(op.ishape):
            raise ValueError(f"support shape {self.support.shape} != operator input {op.ishape}")
        self.ishape = (int(self.support.sum()),)
        self.oshape = op.oshape

    def embed(self, xs):
        x = np.zeros(self.support.shape, dtype=np.result_type(xs, np.complex64))
        x[self.support] = xs
        return x

    def forward(self, xs):
        return self.op.forward(self.embed(xs))

    def adjoint(self, y):
        return self.op.adjoint(y)[self.support]

    def normal(self, xs):
        return self.op.normal(self.embed(xs))[self.support]
