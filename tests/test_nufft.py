"""NUFFT: convention (vs a direct DFT and fft_centered), accuracy vs FINUFFT, adjointness,
batching, thread invariance (race-free spreading), Toeplitz normal operator, bad input."""

import finufft
import numpy as np
import pytest

from dualmode.conventions import fft_centered, ifft_centered
from dualmode.recon.nufft import NUFFTPlan, nufft, nufft_adjoint

RNG = np.random.default_rng(12)


def _random(shape, dtype=np.complex128):
    return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(dtype)


def _coords(m, shape):
    """Uniform random points in [-N/2, N/2) per axis."""
    return (RNG.random((m, len(shape))) - 0.5) * np.array(shape)


def _finufft_forward(image, coords):
    """Reference type 2: our k maps to finufft's x = 2 pi k / N, our image to its modes."""
    d = coords.shape[-1]
    n = image.shape[-d:]
    x = [2 * np.pi * coords[..., a].ravel() / n[a] for a in range(d)]
    f = getattr(finufft, f"nufft{d}d2")
    return f(*x, image.astype(np.complex128), eps=1e-12, isign=-1, modeord=0)


def _finufft_adjoint(kdata, coords, shape):
    d = coords.shape[-1]
    x = [2 * np.pi * coords[..., a].ravel() / shape[a] for a in range(d)]
    f = getattr(finufft, f"nufft{d}d1")
    return f(*x, kdata.astype(np.complex128).ravel(), tuple(shape), eps=1e-12, isign=1,
             modeord=0)


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("shape", [(12, 9), (6, 8, 5)])
def test_forward_is_the_documented_dft(shape):
    """y_j = sum_x f(x) exp(-2 pi i k_j.x / N), x = index - N//2 (checked by brute force)."""
    coords = _coords(40, shape)
    image = _random(shape)
    x = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij"), -1)
    phase = np.einsum("...a,ja->j...", x / np.array(shape), coords)
    direct = np.sum(image * np.exp(-2j * np.pi * phase), axis=tuple(range(1, len(shape) + 1)))
    assert _rel(nufft(image, coords, eps=1e-6), direct) < 1e-5
    # and FINUFFT with our mapping is the same DFT
    assert _rel(_finufft_forward(image, coords), direct) < 1e-10


@pytest.mark.parametrize("shape", [(64, 48), (20, 24, 18)])
def test_default_accuracy_vs_finufft(shape):
    coords = _coords(4000, shape)
    image = _random(shape)
    kdata = _random(4000)
    y = nufft(image, coords)
    assert _rel(y, _finufft_forward(image, coords)) <= 2e-3
    im = nufft_adjoint(kdata, coords, shape)
    assert _rel(im, _finufft_adjoint(kdata, coords, shape)) <= 2e-3
    # single precision keeps the accuracy and the dtype
    y32 = nufft(image.astype(np.complex64), coords)
    assert y32.dtype == np.complex64
    assert _rel(y32, _finufft_forward(image, coords)) <= 2e-3


def test_tighter_eps_is_more_accurate():
    shape = (32, 32)
    coords = _coords(2000, shape)
    image = _random(shape)
    ref = _finufft_forward(image, coords)
    assert _rel(nufft(image, coords, eps=1e-6), ref) < 5e-6
    assert _rel(nufft(image, coords, eps=1e-3, upsampling=1.25), ref) <= 2e-3


@pytest.mark.parametrize("shape", [(16, 15), (10, 7, 8)])
def test_grid_coords_equal_fft_centered(shape):
    """On integer coordinates the NUFFT is fft_centered (odd sizes included)."""
    grid = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij"), -1)
    image = _random(shape)
    axes = tuple(range(len(shape)))
    full = fft_centered(image, axes=axes)
    assert _rel(nufft(image, grid.astype(float)), full) <= 2e-3
    assert _rel(nufft(image, grid.astype(float), eps=1e-6), full) < 1e-5
    back = nufft_adjoint(full, grid.astype(float), shape, eps=1e-6)
    assert _rel(back, np.prod(shape) * ifft_centered(full, axes=axes)) < 1e-5


@pytest.mark.parametrize("shape", [(24, 20), (12, 10, 14)])
def test_adjointness(shape):
    """<A x, y> = <x, A^H y>: the adjoint is the exact conjugate transpose."""
    coords = _coords(500, shape)
    for dtype, tol in [(np.complex128, 1e-12), (np.complex64, 1e-5)]:
        plan = NUFFTPlan(coords, shape)
        x = _random((3, *shape), dtype)
        y = _random((3, 500), dtype)
        lhs = np.vdot(plan.forward(x), y)
        rhs = np.vdot(x, plan.adjoint(y))
        assert abs(lhs - rhs) / abs(lhs) < tol


def test_batched_equals_per_item_and_point_shape():
    shape = (20, 16)
    coords = _coords(300, shape).reshape(10, 30, 2)
    plan = NUFFTPlan(coords, shape)
    images = _random((2, 3, *shape))
    y = plan.forward(images)
    assert y.shape == (2, 3, 10, 30)
    for i in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[i, c], plan.forward(images[i, c]), rtol=0, atol=1e-12)
    back = plan.adjoint(y)
    assert back.shape == (2, 3, *shape)
    np.testing.assert_allclose(back[1, 2], plan.adjoint(y[1, 2]), rtol=0, atol=1e-10)


def test_trailing_unit_axis_for_2d_data():
    """2D images stored as (N_i, N_j, 1) work with 2D coords."""
    shape = (16, 12)
    coords = _coords(200, shape)
    image = _random(shape)
    plan = NUFFTPlan(coords, (*shape, 1))
    np.testing.assert_allclose(plan.forward(image[..., None]), nufft(image, coords), atol=1e-12)
    assert plan.adjoint(_random(200)).shape == (*shape, 1)
    np.testing.assert_allclose(nufft(image[..., None], coords), nufft(image, coords), atol=1e-12)


@pytest.mark.parametrize("shape", [(64, 64), (24, 24, 24)])
def test_thread_count_does_not_change_result(shape):
    """Race-free spreading: dense points, 1 vs 2 threads give identical grids."""
    coords = _coords(20000, shape) * 0.2  # crowded near the centre
    kdata = _random(20000)
    one = NUFFTPlan(coords, shape, threads=1).adjoint(kdata)
    two = NUFFTPlan(coords, shape, threads=2).adjoint(kdata)
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-9 * np.abs(one).max())
    assert _rel(one, _finufft_adjoint(kdata, coords, shape)) <= 2e-3


def test_toeplitz_normal_operator():
    shape = (24, 20)
    coords = _coords(1500, shape)
    weights = RNG.random(1500)
    plan = NUFFTPlan(coords, shape, eps=1e-6)
    x = _random((2, *shape))
    expected = plan.adjoint(weights * plan.forward(x))
    assert _rel(plan.normal(x, weights), expected) < 1e-4
    assert _rel(plan.normal(x), plan.adjoint(plan.forward(x))) < 1e-4


def test_bad_input_raises_input_error():
    with pytest.raises(ValueError, match="coords"):
        NUFFTPlan(np.full((5, 2), np.nan), (8, 8))
    with pytest.raises(ValueError, match="coords"):
        NUFFTPlan(np.zeros((5, 4)), (8, 8))
    with pytest.raises(ValueError, match="shape"):
        NUFFTPlan(np.zeros((5, 3)), (8, 8))
    plan = NUFFTPlan(np.zeros((5, 2)), (8, 8))
    with pytest.raises(ValueError, match="image"):
        plan.forward(np.zeros((8, 9)))
    with pytest.raises(ValueError, match="kdata"):
        plan.adjoint(np.zeros(6))
    with pytest.raises(ValueError, match="eps"):
        NUFFTPlan(np.zeros((5, 2)), (8, 8), eps=2.0)


@pytest.mark.parametrize("shape", [(40, 36), (16, 20, 12)])
@pytest.mark.parametrize("upsampling", [1.25, 2.0])
def test_points_at_the_grid_edge(shape, upsampling):
    """Points within w/2 of k = +-N/2 take the periodic-wrap path of the kernels."""
    edge = np.array(shape) / 2
    coords = edge * np.sign(RNG.standard_normal((600, len(shape)))) - RNG.random((600, len(shape)))
    coords[::2, 0] = -edge[0]  # exactly on the boundary
    image, kdata = _random(shape), _random(600)
    plan = NUFFTPlan(coords, shape, upsampling=upsampling)
    assert _rel(plan.forward(image), _finufft_forward(image, coords)) <= 2e-3
    assert _rel(plan.adjoint(kdata), _finufft_adjoint(kdata, coords, shape)) <= 2e-3


def test_parallel_sort_is_stable_and_chunk_invariant():
    """The parallel counting sort equals a stable argsort of the bin keys, for any chunking."""
    from dualmode.recon import nufft_kernels as k

    n = np.array([20, 24, 16])
    pts = (RNG.random((5000, 3)) - 0.5) * 16
    pts[:50] = pts[50:100]  # ties keep their input order
    nslab, tile = 4, np.array([1, 8, 8])
    scale, offset = n / 16.0, n / 2.0
    u = (pts * scale + offset) % n
    slab = np.minimum(((np.floor(u[:, 0]) + 0.5) * nslab / n[0]).astype(int), nslab - 1)
    ntile = -(-n // tile)
    key = (slab * ntile[1] + np.floor(u[:, 1]) // 8) * ntile[2] + np.floor(u[:, 2]) // 8
    expected = np.argsort(key, kind="stable")
    for nchunk in (1, 3, 7):
        perm, us = np.empty(5000, np.int64), np.empty((5000, 3))
        ptr = k.sort_points(pts, scale, offset, n, nslab, tile, nchunk,
                            np.empty(5000, np.int32), perm, us)
        np.testing.assert_array_equal(perm, expected)
        np.testing.assert_allclose(us, u[perm], atol=1e-12)
        np.testing.assert_array_equal(ptr, np.searchsorted(slab[perm], np.arange(nslab + 1)))


def test_default_upsampling_keeps_the_3d_kernel_narrow():
    from dualmode.recon.nufft import default_upsampling, kernel_parameters

    assert default_upsampling(2, 1e-3) == 2.0
    assert [default_upsampling(3, e) for e in (1e-3, 1e-4, 1e-6)] == [1.25, 1.5, 2.0]
    for eps in np.logspace(-12, -2, 21):
        sigma = default_upsampling(3, eps)
        narrow = {1.25: kernel_parameters(eps, 1.25)[0] <= 6,
                  1.5: kernel_parameters(eps, 1.5)[0] <= 8}
        # the smallest grid whose kernel is narrow enough; 2 only when neither is
        assert sigma == next((s for s in (1.25, 1.5) if narrow[s]), 2.0)
    plan = NUFFTPlan(_coords(10, (8, 8, 8)), (8, 8, 8), eps=1e-6)
    assert plan.upsampling == 2.0
