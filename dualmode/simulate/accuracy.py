"""Accuracy against a known truth (simulations): target registration error and the
precision/recall of the particle correspondences."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from dualmode.conventions import apply_affine


def true_tre(optical_to_mri: np.ndarray, true_optical_to_mri: np.ndarray, optical_xyz_um: np.ndarray,
             *, planar: bool = False) -> np.ndarray:
    """Distance (mm) between estimated and true mappings of optical points (in-plane if ``planar``:
    widefield points have no optical z)."""
    o = np.array(optical_xyz_um, float)
    if planar:
        o[:, 2] = 0.0
    err = apply_affine(optical_to_mri, o) - apply_affine(true_optical_to_mri, o)
    return np.linalg.norm(err[:, :2] if planar else err, axis=1)


def matching_precision_recall(
    pairs: np.ndarray,
    optical_found_um: np.ndarray,
    mri_found_mm: np.ndarray,
    optical_true_um: np.ndarray,
    mri_true_mm: np.ndarray,
    true_pairs: np.ndarray,
    *,
    tol_um: float = 150.0,
    tol_mm: float = 0.15,
    planar: bool = False,
) -> tuple[float, float]:
    """Precision and recall of found pairs against the true correspondences.

    Each found particle is identified with its nearest true particle (within ``tol_um`` /
    ``tol_mm``; in-plane for both when ``planar``: widefield optics or a 2D MRI slice). A found pair is correct when both members
    are identified with the two sides of one true pair. Recall is over ``true_pairs``
    (``(S, 2)`` indices into the true optical / MRI lists).
    """
    pairs = np.asarray(pairs, int).reshape(-1, 2)
    dims = 2 if planar else 3
    do, io = cKDTree(np.asarray(optical_true_um)[:, :dims]).query(
        np.asarray(optical_found_um)[pairs[:, 0], :dims])
    dm, im = cKDTree(np.asarray(mri_true_mm)[:, :dims]).query(np.asarray(mri_found_mm)[pairs[:, 1], :dims])
    truth = {tuple(p) for p in np.asarray(true_pairs, int).reshape(-1, 2)}
    hits = sum((a, b) in truth and d1 <= tol_um and d2 <= tol_mm for a, b, d1, d2 in zip(io, im, do, dm))
    precision = hits / len(pairs) if len(pairs) else float("nan")
    recall = hits / len(truth) if truth else float("nan")
    return float(precision), float(recall)
