"""NUFFT: dualmode's numba NUFFT vs FINUFFT, ducc0, mri-nufft, SigPy and BART on golden-angle radial data.

Cases: 2D 256^2 image, 403 spokes x 512 samples; 3D 128^3, 8008 spokes x 256 samples
(2.05 M points); forward (type 2) and adjoint (type 1), complex64 data, 2 threads for every
tool. ``rel_error`` is the relative l2 error against FINUFFT at ``eps = 1e-12`` (double).
Peers are mapped to dualmode's convention (``dualmode.recon.nufft``): FINUFFT with
``x = 2 pi k / N``, ``isign = -1`` (forward), ``modeord = 0``; SigPy and BART have the same
sign and centring but unitary scaling, so their outputs are multiplied by ``sqrt(prod N)``.
ducc0 (``ducc0.nufft.u2nu``/``nu2u``) takes the same ``x = 2 pi k / N`` with
``fft_order=False`` (centred grid) and ``forward`` = exponent -1; mri-nufft (its ``finufft``
backend, the operator MRI users call) takes ``k / N`` in [-0.5, 0.5) and divides by its documented
``norm_factor = sqrt(prod N 2^d)``, which is multiplied back here.
``dualmode`` times the one-shot call (sorting included, as FINUFFT's simple interface);
``dualmode plan`` the execution of a precomputed :class:`~dualmode.recon.nufft.NUFFTPlan`.
BART's time includes its process start and .cfl file I/O (inputs written before timing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import numba
import numpy as np

from dualmode.recon.nufft import NUFFTPlan, nufft, nufft_adjoint
from dualmode.recon.trajectory import golden_angle_radial, radial_3d

from . import best_time, interleaved_times, missing, nrmse, row

SUITE = "nufft"
THREADS = 2


def _cases(quick: bool):
    if quick:
        return [("2D 64^2 radial 101x128", (64, 64), golden_angle_radial(101, 128, (64, 64))),
                ("3D 32^3 radial 500x64", (32, 32, 32), radial_3d(500, 64, (32, 32, 32)))]
    return [("2D 256^2 radial 403x512", (256, 256), golden_angle_radial(403, 512, (256, 256))),
            ("3D 128^3 radial 8008x256", (128,) * 3, radial_3d(8008, 256, (128,) * 3))]


def _finufft(kind: str, coords, shape, data, eps: float):
    import finufft

    d = len(shape)
    real = np.float32 if data.dtype == np.complex64 else np.float64
    x = [(2 * np.pi * coords[..., a].ravel() / shape[a]).astype(real) for a in range(d)]
    if kind == "forward":
        return getattr(finufft, f"nufft{d}d2")(*x, data, eps=eps, isign=-1, modeord=0,
                                                 nthreads=THREADS)
    return getattr(finufft, f"nufft{d}d1")(*x, data.ravel(), tuple(shape), eps=eps, isign=1,
                                             modeord=0, nthreads=THREADS)


def _ducc0(kind: str, coords, shape, data, eps: float):
    import ducc0.nufft

    real = np.float32 if data.dtype == np.complex64 else np.float64
    x = (2 * np.pi * coords.reshape(-1, len(shape)) / np.asarray(shape)).astype(real)
    if kind == "forward":
        return ducc0.nufft.u2nu(grid=data, coord=x, forward=True, epsilon=eps, nthreads=THREADS)
    return ducc0.nufft.nu2u(points=data.ravel(), coord=x, forward=False, epsilon=eps, nthreads=THREADS,
                            out=np.empty(shape, data.dtype))


def _mrinufft_runner(kind: str, coords, shape, eps: float):
    """mri-nufft's finufft-backed operator (built once, as a user would), its documented scale undone."""
    import warnings

    from mrinufft import get_operator

    with warnings.catch_warnings():  # "samples will be rescaled to [-pi, pi)": expected
        warnings.simplefilter("ignore")
        op = get_operator("finufft")(coords.reshape(-1, len(shape)) / np.asarray(shape), tuple(shape),
                                     n_coils=1, squeeze_dims=True, eps=eps, nthreads=THREADS)
    if kind == "forward":
        return lambda data: op.op(data) * op.norm_factor
    return lambda data: op.adj_op(data.ravel()) * op.norm_factor


def _optional_peers(kind: str, coords, shape, data) -> tuple[dict, list]:
    """ducc0 and mri-nufft at eps 1e-3 (complex64) and 1e-6 (complex128); missing ones as notes."""
    peers, absent = {}, []
    for eps, dtype in [(1e-3, np.complex64), (1e-6, np.complex128)]:
        cast = data.astype(dtype)
        try:
            import ducc0.nufft  # noqa: F401

            peers[f"ducc0 eps={eps:g}"] = lambda cast=cast, eps=eps: _ducc0(kind, coords, shape, cast, eps)
        except ImportError as e:
            absent.append((f"ducc0 eps={eps:g}", e))
        try:
            run_op = _mrinufft_runner(kind, coords, shape, eps)
            peers[f"mri-nufft eps={eps:g}"] = lambda cast=cast, run_op=run_op: run_op(cast)
        except ImportError as e:
            absent.append((f"mri-nufft eps={eps:g}", e))
    return peers, absent


def _sigpy(kind: str, coords, shape, data):
    import sigpy

    scale = np.sqrt(np.prod(shape))
    if kind == "forward":
        return sigpy.nufft(data, coords.reshape(-1, len(shape))) * scale
    return sigpy.nufft_adjoint(data.ravel(), coords.reshape(-1, len(shape)), tuple(shape)) * scale


def _write_cfl(base: str, arr) -> None:
    arr = np.asarray(arr, np.complex64)
    dims = list(arr.shape) + [1] * (16 - arr.ndim)
    with open(base + ".hdr", "w") as f:
        f.write("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    arr.ravel(order="F").tofile(base + ".cfl")


def _read_cfl(base: str) -> np.ndarray:
    with open(base + ".hdr") as f:
        dims = [int(v) for v in f.read().split("\n")[1].split()]
    return np.fromfile(base + ".cfl", np.complex64).reshape(dims, order="F")


def _bart_runner(kind: str, coords, shape, data, workdir: str):
    """Callable running ``bart nufft`` on files written once; returns result reader."""
    d = len(shape)
    traj = np.zeros((3, coords.size // d), np.float64)
    traj[:d] = coords.reshape(-1, d).T
    _write_cfl(os.path.join(workdir, "traj"), traj)
    dims = list(shape) + [1] * (3 - d)
    inp = os.path.join(workdir, "in")
    out = os.path.join(workdir, "out")
    if kind == "forward":
        _write_cfl(inp, data.reshape(dims))
        cmd = ["bart", "nufft", os.path.join(workdir, "traj"), inp, out]
    else:
        _write_cfl(inp, data.reshape(1, -1))
        cmd = ["bart", "nufft", "-a", "-d", ":".join(map(str, dims)),
               os.path.join(workdir, "traj"), inp, out]
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))

    def run():
        subprocess.run(cmd, check=True, capture_output=True, env=env)

    def result():
        arr = _read_cfl(out) * np.sqrt(np.prod(shape))
        return arr.reshape(-1) if kind == "forward" else arr.reshape(shape)

    return run, result


def _bench_case(case: str, shape, coords, kind: str, quick: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    name = f"{case} {kind}"
    rows = []
    if kind == "forward":
        data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    else:
        n = coords.shape[:-1]
        data = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)
    try:
        ref = _finufft(kind, coords, shape, data.astype(np.complex128), 1e-12)
        ref = ref.reshape(-1) if kind == "forward" else ref
    except ImportError as err:
        return [missing(SUITE, name, "finufft eps=1e-12 (reference)", err)]

    def err(out):
        out = np.asarray(out)
        return nrmse(out.reshape(ref.shape), ref)

    # dualmode one-shot and FINUFFT in alternation (drift-free ratio), then the rest
    if kind == "forward":
        ours = lambda: nufft(data, coords, threads=THREADS)  # noqa: E731
    else:
        ours = lambda: nufft_adjoint(data, coords, shape, threads=THREADS)  # noqa: E731
    plan = NUFFTPlan(coords, shape, threads=THREADS)
    op = plan.forward if kind == "forward" else plan.adjoint
    peers = {"dualmode": ours, "dualmode plan": lambda: op(data)}
    for eps, dtype in [(1e-3, np.complex64), (1e-6, np.complex128)]:
        cast = data.astype(dtype)
        peers[f"finufft eps={eps:g}"] = (
            lambda cast=cast, eps=eps: _finufft(kind, coords, shape, cast, eps))
    extra, absent = _optional_peers(kind, coords, shape, data)
    peers.update(extra)
    best, median, outs = interleaved_times(peers, rounds=3 if quick else 7)
    rows.append(row(SUITE, name, "dualmode", best["dualmode"], rel_error=err(outs["dualmode"]),
                    note=f"eps=1e-3, sigma={plan.upsampling:g}, w={plan.width}, one-shot"))
    rows.append(row(SUITE, name, "dualmode plan", best["dualmode plan"],
                    rel_error=err(outs["dualmode plan"]),
                    note="precomputed NUFFTPlan (sorting excluded)"))
    for eps, dtype in [(1e-3, np.complex64), (1e-6, np.complex128)]:
        tool = f"finufft eps={eps:g}"
        rows.append(row(SUITE, name, tool, best[tool], rel_error=err(outs[tool]),
                        note=f"{np.dtype(dtype).name}, nthreads={THREADS}; dualmode / finufft "
                             f"median over alternating rounds {1 / median[tool]:.2f}"))
    for tool in extra:
        rows.append(row(SUITE, name, tool, best[tool], rel_error=err(outs[tool]),
                        note=f"nthreads={THREADS}; dualmode / {tool.split()[0]} median over alternating "
                             f"rounds {1 / median[tool]:.2f}"))
    rows += [missing(SUITE, name, tool, e) for tool, e in absent]
    rows += _stage_rows(name, coords, plan, kind, data)

    try:
        import sigpy  # noqa: F401

        t, out = best_time(lambda: _sigpy(kind, coords, shape, data), 1 if not quick else 3)
        rows.append(row(SUITE, name, "sigpy", t, rel_error=err(out),
                        note="defaults (oversamp 1.25, width 4), CPU"))
    except ImportError as e:
        rows.append(missing(SUITE, name, "sigpy", e))

    if shutil.which("bart") is None:
        rows.append(missing(SUITE, name, "bart", "bart not on PATH (apt-get install bart)"))
    else:
        with tempfile.TemporaryDirectory() as workdir:
            try:
                run, result = _bart_runner(kind, coords, shape, data, workdir)
                t, _ = best_time(run, 1 if not quick else 3)
                rows.append(row(SUITE, name, "bart", t, rel_error=err(result()),
                                note=f"bart nufft{' -a' if kind != 'forward' else ''}, "
                                     f"OMP_NUM_THREADS={THREADS}, incl. process + file I/O"))
            except (subprocess.CalledProcessError, OSError) as e:
                rows.append(missing(SUITE, name, "bart", e))
    return rows


def _stage_rows(name: str, coords, plan: NUFFTPlan, kind: str, data) -> list[dict]:
    """Per-stage times of the one-shot call (best of 3, same threads): where the time goes.

    Stages: sort (plan build), then forward = deapodise + zero-pad, FFT, interpolate (incl. the
    reorder of the output), adjoint = spread (incl. the reorder of the input), inverse FFT,
    crop + deapodise. Uses the plan's internals on purpose (the stages are not public API).
    """
    import scipy.fft

    from dualmode.recon import nufft_kernels as k

    d, cdt, rdt = plan.ndim, np.complex64, np.float32
    axes = tuple(range(1, d + 1))
    grid = np.zeros((1, *plan.oversampled_shape), cdt)
    stages = {"sort (plan build)": lambda: NUFFTPlan(coords, plan.shape, threads=THREADS)}
    if kind == "forward":
        img = data.reshape(1, *plan.grid_size)
        pad = k.pad3d if d == 3 else k.pad2d
        stages["deapodise + pad"] = lambda: pad(img, grid, *plan._idx, *plan._corr32)
        stages["FFT"] = lambda: scipy.fft.fftn(grid, axes=axes, workers=THREADS)
        stages["interpolate"] = lambda: plan._interp(grid, rdt)
    else:
        y = data.reshape(1, -1)
        stages["spread"] = lambda: plan._spread(np.zeros_like(grid), y, rdt)
        stages["FFT"] = lambda: scipy.fft.ifftn(grid, axes=axes, workers=THREADS, norm="forward")
        crop = k.crop3d if d == 3 else k.crop2d
        img = np.empty((1, *plan.grid_size), cdt)
        stages["crop + deapodise"] = lambda: crop(grid, img, *plan._idx, *plan._corr32)
    rows = []
    for stage, fn in stages.items():
        t, _ = best_time(fn, 3)
        rows.append(row(SUITE, name, f"stage: {stage}", t, note="dualmode one-shot stage, "
                        f"{THREADS} threads (x dualmode = share of the one-shot time)"))
    return rows


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _contention_rows(case: str, shape, coords, quick: bool) -> list[dict]:
    """dualmode vs FINUFFT (eps 1e-3) forward while two other processes keep both cores busy.

    The ratio dualmode / FINUFFT under load, next to the idle one, shows whether numba's
    parallel kernels degrade more than FINUFFT's OpenMP ones when the cores are oversubscribed.
    """
    import multiprocessing as mp

    name = f"{case} forward, 2 busy processes"
    rng = np.random.default_rng(1)
    data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    peers = {"dualmode": lambda: nufft(data, coords, threads=THREADS),
             "finufft eps=0.001": lambda: _finufft("forward", coords, shape, data, 1e-3)}
    try:
        import finufft  # noqa: F401
    except ImportError as e:
        return [missing(SUITE, name, "finufft eps=0.001", e)]
    busy = [mp.get_context("spawn").Process(target=_spin, args=(60.0,), daemon=True) for _ in range(2)]
    for p in busy:
        p.start()
    try:
        time.sleep(1.0)  # let the spinners start
        best, median, _ = interleaved_times(peers, rounds=3 if quick else 7)
    finally:
        for p in busy:
            p.terminate()
            p.join()
    return [row(SUITE, name, "dualmode", best["dualmode"], note="one-shot, cores shared with 2 spinning processes"),
            row(SUITE, name, "finufft eps=0.001", best["finufft eps=0.001"],
                note=f"dualmode / finufft median over alternating rounds under load "
                     f"{1 / median['finufft eps=0.001']:.2f}")]


def run(quick: bool = False) -> list[dict]:
    """Rows ``{"suite", "case", "tool", "time_s", "rel_error", "note"}`` for all cases."""
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    rows = []
    for case, shape, coords in _cases(quick):
        for kind in ("forward", "adjoint"):
            rows += _bench_case(case, shape, coords, kind, quick)
        rows += _contention_rows(case, shape, coords, quick)
    return rows


def _table(rows: list[dict]) -> str:
    ref = {r["case"]: r["time_s"] for r in rows if r["tool"] == "dualmode" and r["time_s"]}
    lines = [f"{'case':<38} {'tool':<18} {'time (s)':>9} {'x dualmode':>10} {'rel err':>9}  note"]
    for r in rows:
        t = r["time_s"]
        ratio = t / ref[r["case"]] if t and r["case"] in ref else None
        lines.append(f"{r['case']:<38} {r['tool']:<18} "
                     f"{'missing' if t is None else f'{t:.4f}':>9} "
                     f"{'-' if ratio is None else f'{ratio:.2f}':>10} "
                     f"{'-' if r.get('rel_error') is None else format(r['rel_error'], '.2e'):>9}"
                     f"  {r['note']}")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(_table(run(quick="--quick" in sys.argv)))
