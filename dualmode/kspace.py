"""The in-memory k-space object every reader returns.

Axis order of :attr:`KSpace.data`: ``(repetition, coil, k_i, k_j, k_k)`` for
Cartesian data (2D data have ``k_k`` of length 1), ``(repetition, coil, sample)``
for non-Cartesian data, with :attr:`KSpace.coords` of shape ``(sample, 3)`` in
cycles per field of view (see :mod:`dualmode.conventions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from dualmode.conventions import mri_affine

from dualmode.errors import InputError


@dataclass
class KSpaceHeader:
    """Acquisition parameters. Units: mm, ms, degrees, Hz.

    ``matrix``/``fov_mm`` always have 3 entries (2D: 1 and the slice thickness);
    ``position_mm`` and ``orientation`` follow :func:`dualmode.conventions.mri_affine`.
    ``line_order`` gives, for each Cartesian line ``(k_j, k_k)``, its excitation
    index within one repetition (time order), or ``None`` when unknown.
    """

    matrix: tuple[int, int, int]
    fov_mm: tuple[float, float, float]
    position_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: np.ndarray = field(default_factory=lambda: np.eye(3))
    trajectory: str = "cartesian"
    tr_ms: float | None = None
    te_ms: float | None = None
    flip_angle_deg: float | None = None
    nucleus: str = "13C"
    frequency_hz: float | None = None
    n_repetitions: int = 1
    n_coils: int = 1
    line_order: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def affine(self) -> np.ndarray:
        """Voxel -> RAS mm affine of the reconstruction grid."""
        return mri_affine(self.matrix, self.fov_mm, self.position_mm, self.orientation)

    def describe(self) -> dict:
        """JSON-friendly summary (for ``dualmode info`` and ``report.json``)."""
        out = {
            "matrix": [int(m) for m in self.matrix],
            "fov_mm": [float(f) for f in self.fov_mm],
            "voxel_mm": [float(f) / int(m) for f, m in zip(self.fov_mm, self.matrix)],
            "position_mm": [float(p) for p in self.position_mm],
            "orientation": np.asarray(self.orientation, dtype=float).tolist(),
            "trajectory": self.trajectory,
            "tr_ms": self.tr_ms,
            "te_ms": self.te_ms,
            "flip_angle_deg": self.flip_angle_deg,
            "nucleus": self.nucleus,
            "frequency_hz": self.frequency_hz,
            "n_repetitions": int(self.n_repetitions),
            "n_coils": int(self.n_coils),
        }
        out.update({k: v for k, v in self.extra.items() if isinstance(v, (str, int, float, bool))})
        return out


@dataclass
class KSpace:
    """Complex k-space plus header; ``source`` names the file it came from.

    ``mask[k_j, k_k]`` marks the acquired lines of undersampled Cartesian data (the
    same lines in every repetition; unacquired lines hold zeros); ``None`` means fully
    sampled. ``coords`` (non-Cartesian) has ``header.extra["readout_length"]`` samples per
    readout, consecutive.
    """

    data: np.ndarray
    header: KSpaceHeader
    source: str = ""
    coords: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check shapes against the header and finite values; raise :class:`InputError`."""
        d, h = self.data, self.header
        if not np.iscomplexobj(d):
            raise InputError(self.source, f"k-space must be complex, got {d.dtype}", "data")
        if h.trajectory in ("cartesian", "spectroscopic"):  # spectroscopic: FIDs, matrix (n, 1, 1)
            expect = (h.n_repetitions, h.n_coils, *h.matrix)
            if d.shape != tuple(expect):
                raise InputError(
                    self.source,
                    f"data shape {d.shape} does not match header (rep, coil, matrix) {tuple(expect)}",
                    "matrix",
                )
        else:
            if self.coords is None or d.ndim != 3 or self.coords.shape != (d.shape[-1], 3):
                raise InputError(self.source, "non-Cartesian data need coords of shape (samples, 3)", "coords")
        if d.size == 0:
            raise InputError(self.source, "k-space is empty", "data")
        if not np.all(np.isfinite(d)):
            bad = int(np.count_nonzero(~np.isfinite(d)))
            raise InputError(self.source, f"{bad} k-space samples are NaN or Inf", "data")
        if self.mask is not None and (self.mask.shape != tuple(h.matrix[1:]) or not self.mask.any()):
            raise InputError(self.source, f"sampling mask {self.mask.shape} does not fit matrix {h.matrix}", "mask")
        try:
            mri_affine(h.matrix, h.fov_mm, h.position_mm, h.orientation)
        except ValueError as err:
            raise InputError(self.source, str(err), "geometry") from None

    def with_header(self, **changes) -> "KSpace":
        """Copy with header fields replaced (used for manifest overrides)."""
        return KSpace(self.data, replace(self.header, **changes), self.source, self.coords, self.mask)

    @property
    def undersampling(self) -> float:
        """Acceleration factor: lines of the full grid / acquired lines (1 if fully sampled)."""
        if self.header.trajectory != "cartesian":
            n_full = np.prod(self.header.matrix[:2]) * (np.pi / 4 if self.header.matrix[2] == 1 else 1.0)
            return float(n_full / max(self.data.shape[-1], 1))
        if self.mask is None:
            return 1.0
        return float(self.mask.size / self.mask.sum())
