"""Optics-prior accelerated reconstruction: support-constrained least squares.

The fluorescence image locates every diamond particle; once registered to the MRI
grid the 13C image can only be non-zero on a small support ``S`` (the particle
voxels, dilated by the registration uncertainty). The unknowns are then the
``s = |S|`` amplitudes ``x_S`` and the k-space samples obey

    y = A_S x_S + n,     (A_S)_{jp} = exp(-2 pi i k_j . x_p / N),   x_p in S,

the columns of the Fourier (or NUFFT) matrix restricted to the support (same
convention as :mod:`dualmode.conventions`). With ``m >= s`` well-chosen samples
the least-squares solution recovers ``x_S`` with noise covariance
``sigma^2 (A_S^H A_S)^{-1}``, so the acceleration ``N / m`` is bounded by the support
size and by how well conditioned ``A_S`` is, not by a sparsity prior: the
problem is linear and needs no regularisation (cf. the "support-constrained"
or "spectroscopic imaging by a priori knowledge" methods, Hu, Levin et al.,
MRM 8, 314 (1988); Liang & Lauterbur, IEEE TMI 10, 132 (1991)).

:func:`choose_kspace_samples` picks the samples: greedy D-optimal design
(maximise ``log det(A^H A + delta I)`` one row at a time with rank-one updates;
Fedorov, *Theory of Optimal Experiments*, 1972) or variable-density random
sampling with a conditioning check.
"""

from __future__ import annotations


import numpy as np
import scipy.ndimage as ndi


from .iterative import cg
from .linop import Linop, RestrictOp
from .blas import single_thread_blas





def support_mask(shape, positions=None, *, mask=None, dilation: float = 1.0) -> np.ndarray:
    """Boolean support on the MRI grid from particle positions or a mask, dilated.

    Parameters
    ----------
    shape : sequence of int
        MRI grid shape (2D as ``(N_i, N_j, 1)``).
    positions : (P, d) array, optional
        Particle centres in voxel indices (float allowed, rounded), ``d <= len(shape)``.
    mask : bool array, optional
        A ready-made support (used instead of, or in addition to, ``positions``).
    dilation : float
        Radius (voxels) of the Euclidean ball added around every support voxel, covering
        the registration uncertainty; 0 keeps the support as is.
    """
    shape = tuple(int(n) for n in shape)
    out = np.zeros(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).copy()
    if out.shape != shape:
        raise ValueError(f"mask shape {out.shape} != grid shape {shape}")
    if positions is not None:
        pos = np.rint(np.atleast_2d(np.asarray(positions, dtype=float))).astype(int)
        if pos.shape[1] > len(shape):
            raise ValueError(f"positions have {pos.shape[1]} coordinates for a {len(shape)}D grid")
        idx = np.zeros((pos.shape[0], len(shape)), dtype=int)
        idx[:, :pos.shape[1]] = pos
        inside = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
        if not np.all(inside):
            raise ValueError(f"{int((~inside).sum())} particle positions fall outside the grid {shape}")
        out[tuple(idx.T)] = True
    if dilation > 0:
        r = int(np.floor(dilation))
        axes_r = [r if n > 1 else 0 for n in shape]
        grids = np.meshgrid(*[np.arange(-a, a + 1) for a in axes_r], indexing="ij")
        ball = sum(g.astype(float) ** 2 for g in grids) <= dilation**2 + 1e-9
        out = ndi.binary_dilation(out, structure=ball)
    return out


def _centred_positions(support: np.ndarray, ndim: int) -> np.ndarray:
    """Support voxel coordinates ``x = index - N//2`` divided by ``N`` (first ``ndim`` axes)."""
    idx = np.argwhere(support)[:, :ndim].astype(float)
    n = np.array(support.shape[:ndim], dtype=float)
    return (idx - n // 2) / n


def fourier_matrix(coords, support: np.ndarray) -> np.ndarray:
    """``(A_S)_{jp} = exp(-2 pi i k_j . x_p / N)`` for sample coords ``(m, d)`` and a boolean support.

    Columns follow ``np.argwhere(support)`` (C order). ``coords`` in cycles per FOV,
    ``coords[:, a]`` pairs with grid axis ``a``.
    """
    k = np.atleast_2d(np.asarray(coords, dtype=float))
    x = _centred_positions(np.asarray(support, dtype=bool), k.shape[1])
    return np.exp(-2j * np.pi * (k @ x.T))


def cartesian_coords(shape) -> np.ndarray:
    """All Cartesian k-space points ``(prod, d)`` of the axes of ``shape`` longer than 1 (cycles/FOV).

    ``d`` counts the leading axes up to the last one longer than 1 (2D grids ``(N, N, 1)``
    give ``d = 2``), in C order of the centred k-space array.
    """
    shape = tuple(int(n) for n in shape)
    d = max(i + 1 for i, n in enumerate(shape) if n > 1)
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape[:d]], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(float)


def coords_to_mask(coords, shape) -> np.ndarray:
    """Boolean Cartesian sampling mask of ``shape`` with the integer ``coords`` set."""
    k = np.rint(np.atleast_2d(coords)).astype(int)
    mask = np.zeros(tuple(shape), dtype=bool)
    idx = [k[:, a] + shape[a] // 2 for a in range(k.shape[1])] + [np.zeros(len(k), int)] * (len(shape) - k.shape[1])
    mask[tuple(idx)] = True
    return mask


@single_thread_blas
def support_lstsq(kdata, coords, support: np.ndarray, *, damping: float = 0.0, op: Linop | None = None,
                  max_iter: int = 100, tol: float = 1e-8) -> np.ndarray:
    """Support-constrained least squares ``argmin ||A_S x_S - y||^2 + damping ||x_S||^2``.

    Parameters
    ----------
    kdata : (m,) complex array
        Samples at ``coords`` (or, with ``op``, data in ``op.oshape``).
    coords : (m, d) array
        Sample positions in cycles per FOV (Cartesian: integers). Ignored when ``op`` is given.
    support : bool array
        Support on the image grid (see :func:`support_mask`).
    damping : float
        Tikhonov weight (0: plain least squares; use > 0 when ``m`` is close to ``s``).
    op : Linop, optional
        Full encoding operator (e.g. :class:`~dualmode.recon.linop.FFTOp` with a mask or
        :class:`~dualmode.recon.linop.NUFFTOp`) for large supports: solved by CG on
        :class:`~dualmode.recon.linop.RestrictOp` instead of a dense matrix.

    Returns
    -------
    image : complex ndarray of ``support.shape``, zero outside the support.
    """
    support = np.asarray(support, dtype=bool)
    image = np.zeros(support.shape, dtype=complex)
    if op is not None:
        rop = RestrictOp(op, support)
        image[support] = cg(rop.normal, rop.adjoint(kdata), damping=damping, max_iter=max_iter, tol=tol)
        return image
    a = fourier_matrix(coords, support)
    y = np.asarray(kdata).ravel()
    if damping > 0:
        a = np.vstack([a, np.sqrt(damping) * np.eye(a.shape[1])])
        y = np.concatenate([y, np.zeros(a.shape[1])])
    image[support] = np.linalg.lstsq(a, y, rcond=None)[0]
    return image


@single_thread_blas
def condition_number(coords, support: np.ndarray) -> float:
    """2-norm condition number of the support-restricted Fourier matrix ``A_S``."""
    sv = np.linalg.svd(fourier_matrix(coords, support), compute_uv=False)
    return float(sv[0] / sv[-1]) if sv[-1] > 0 else np.inf


def _greedy_d_optimal(blocks: list[np.ndarray], n_samples: int, priority: np.ndarray,
                      deltas: list[float]) -> np.ndarray:
    """Greedy ``max sum_b log det(delta_b I + A_b,sel^H A_b,sel)`` over shared candidate rows.

    Every block ``A_b`` (candidates x unknowns of one independent sub-problem, e.g. one
    readout position) sees the same row choice. Adding row ``i`` multiplies block ``b``'s
    determinant by ``1 + d_bi``, ``d_bi = a_bi M_b^-1 a_bi^H``; with ``u = M_b^-1 a_bi^H`` the
    scores update as ``d_bj -= |a_bj u|^2 / (1 + d_bi)`` and ``M_b^-1`` by Sherman-Morrison.
    ``priority`` breaks near-ties (lower first, e.g. ``|k|``).
    """
    c = blocks[0].shape[0]
    minvs = [np.eye(a.shape[1], dtype=complex) / d for a, d in zip(blocks, deltas)]
    scores = [np.sum(np.abs(a) ** 2, axis=1) / d for a, d in zip(blocks, deltas)]
    taken = np.zeros(c, dtype=bool)
    chosen = []
    tie = 1e-9 * priority / max(priority.max(), 1.0)
    for _ in range(n_samples):
        gain = sum(np.log1p(sc) for sc in scores) if len(blocks) > 1 else scores[0]
        i = int(np.argmax(np.where(taken, -np.inf, gain * (1.0 - tie))))
        chosen.append(i)
        taken[i] = True
        for b, a in enumerate(blocks):
            u = minvs[b] @ a[i].conj()
            q = float(np.real(a[i] @ u))
            scores[b] = scores[b] - np.abs(a @ u) ** 2 / (1.0 + q)
            minvs[b] -= np.outer(u, u.conj()) / (1.0 + q)
    return np.array(chosen)


@single_thread_blas
def choose_kspace_samples(support: np.ndarray, n_samples: int, *, method: str = "greedy",
                          candidates=None, delta: float = 1e-2, max_cond: float = 10.0,
                          density_power: float = 2.0, max_tries: int = 20, seed: int = 0) -> np.ndarray:
    """Pick ``n_samples`` k-space positions for support-constrained reconstruction.

    Parameters
    ----------
    support : bool array
        Support on the image grid.
    n_samples : int
        Number of samples to acquire (``>= support.sum()`` for a unique solution).
    method : {"greedy", "random"}
        ``"greedy"``: D-optimal greedy design on ``A_S`` over the candidate points (every
        pick maximises the gain in ``log det(A^H A + delta I)``; near-ties go to low ``|k|``).
        ``"random"``: variable-density random sampling, density ``(1 - |k|/k_max)^power``
        without replacement, redrawn (up to ``max_tries``) until ``cond(A_S) <= max_cond``;
        the best draw is returned.
    candidates : (c, d) array, optional
        Allowed positions (cycles/FOV); default the full Cartesian grid.
    delta : float
        Ridge of the D-optimal criterion relative to one sample's energy (``s`` per row).

    Returns
    -------
    coords : (n_samples, d) float array
        Chosen positions, in pick order for ``"greedy"`` (every prefix is itself a greedy design).
    """
    support = np.asarray(support, dtype=bool)
    s = int(support.sum())
    cand = cartesian_coords(support.shape) if candidates is None else np.atleast_2d(np.asarray(candidates, float))
    if not 0 < n_samples <= len(cand):
        raise ValueError(f"n_samples must be in 1..{len(cand)}, got {n_samples}")
    if s == 0:
        raise ValueError("empty support")
    radius = np.sqrt(np.sum((cand / (np.array(support.shape[:cand.shape[1]]) / 2.0)) ** 2, axis=1))
    if method == "greedy":
        a = fourier_matrix(cand, support)
        return cand[_greedy_d_optimal([a], n_samples, radius, [delta * s])]
    if method != "random":
        raise ValueError(f"method must be 'greedy' or 'random', got {method!r}")
    rng = np.random.default_rng(seed)
    p = np.clip(1.0 - radius / max(radius.max(), 1e-12), 1e-3, None) ** density_power
    best, best_cond = None, np.inf
    for _ in range(max_tries):
        pick = rng.choice(len(cand), size=n_samples, replace=False, p=p / p.sum())
        cond = condition_number(cand[pick], support) if n_samples >= s else np.inf
        if cond < best_cond or best is None:
            best, best_cond = pick, cond
        if cond <= max_cond:
            break
    return cand[best]


@single_thread_blas
def choose_phase_encodes(support: np.ndarray, n_lines: int, *, readout_axis: int = 0,
                         delta: float = 1e-2) -> np.ndarray:
    """Greedy D-optimal choice of phase-encode positions when every line is read out in full.

    In Cartesian MRI the readout axis costs nothing: a line gives all ``N_r`` samples along
    ``readout_axis``. After the inverse FFT along the readout, every readout position ``r``
    is an independent problem whose unknowns are the support voxels of plane ``r``; the
    same phase-encode positions serve them all. The greedy criterion is therefore
    ``sum_r log det(delta I + A_r^H A_r)`` (see :func:`choose_kspace_samples`), and the
    least number of lines is the largest support count of any plane.

    Parameters
    ----------
    support : bool array
        Support on the image grid (2D as ``(N_i, N_j, 1)``).
    n_lines : int
        Number of phase-encode positions (lines) to acquire.
    readout_axis : int
        Image/k-space axis read out in full.

    Returns
    -------
    pe_coords : (n_lines, d - 1) float array
        Phase-encode positions (cycles/FOV) over the other encoding axes, in pick order;
        expand them to sample coordinates with :func:`line_coords`.
    """
    support = np.asarray(support, dtype=bool)
    d = max(i + 1 for i, n in enumerate(support.shape) if n > 1)
    readout_axis %= d
    pe_axes = [a for a in range(d) if a != readout_axis]
    planes = np.moveaxis(support, readout_axis, 0)
    pe_shape = tuple(support.shape[a] for a in pe_axes) + (1,) * (support.ndim - d)
    cand = cartesian_coords(pe_shape)[:, :len(pe_axes)] if len(pe_axes) else np.zeros((1, 0))
    if not 0 < n_lines <= len(cand):
        raise ValueError(f"n_lines must be in 1..{len(cand)}, got {n_lines}")
    blocks, deltas = [], []
    for plane in planes:
        plane = plane.reshape(pe_shape)
        if plane.any():
            blocks.append(fourier_matrix(cand, plane))
            deltas.append(delta * plane.sum())
    if not blocks:
        raise ValueError("empty support")
    radius = np.sqrt(np.sum((cand / (np.array(pe_shape[:len(pe_axes)]) / 2.0)) ** 2, axis=1))
    return cand[_greedy_d_optimal(blocks, n_lines, radius, deltas)]


def line_coords(pe_coords, shape, readout_axis: int = 0) -> np.ndarray:
    """Sample coordinates ``(n_lines * N_r, d)`` of full readouts at the phase-encode positions."""
    pe = np.atleast_2d(np.asarray(pe_coords, dtype=float))
    shape = tuple(int(n) for n in shape)
    d = pe.shape[1] + 1
    readout = np.arange(shape[readout_axis]) - shape[readout_axis] // 2
    out = np.empty((len(pe), len(readout), d))
    out[..., readout_axis] = readout[None, :]
    others = [a for a in range(d) if a != readout_axis]
    out[..., others] = pe[:, None, :]
    return out.reshape(-1, d)
