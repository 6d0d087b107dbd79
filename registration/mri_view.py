"""What an MRI of known voxel size sees of the particles detected in a fluorescence image.

The MRI blurs the optics to about its voxel: touching particles it cannot separate are one
blob, whose centre is the intensity-weighted centroid of the whole cluster
(:func:`as_mri_sees`), and detections closer than about a voxel are merged into one
lower-weight particle (:func:`merge_clusters`). Used by
:func:`dualmode.registration.particles.detect_optical_particles`.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage as ndi

__all__ = ["CLUSTER_ELONGATION", "CLUSTER_WEIGHT", "as_mri_sees", "merge_clusters"]


#: In-plane elongation (sqrt of the second-moment eigenvalue ratio) above which a blob is
#: taken for a cluster of touching particles; two touching spheres give ~1.9, a single ~1.0-1.2.
CLUSTER_ELONGATION = 1.4
#: Weight factor of a cluster (the MRI's weighting of its members is not known).
CLUSTER_WEIGHT = 0.3


def as_mri_sees(img, xyz_um, spacing, diameter_um, mri_voxel_mm, active):
    """Centroids on the image blurred to the MRI resolution (Gaussian sigma = half the median
    MRI voxel) over a window of 1.6 diameters, and the in-plane elongation of each blob.

    A cluster of touching particles is one blob for the MRI: its centroid there is the
    intensity-weighted centroid of the whole cluster, not the brightest member's. The window
    of a 3D stack is block-mean binned by ``b = floor(sigma / 4)`` pixels before the blur (:func:`_binned_patch`):
    the box adds ``b^2 / 12`` to the blur's variance (< 0.6 %) and the blur costs about ``b^3``
    times less than on the full-resolution window (0.3 s of a 3D folder's registration).
    """
    sig_um = 0.5e3 * float(np.median(np.asarray(mri_voxel_mm, float)))
    sig_px = np.where(active, sig_um / spacing, 0.0)
    radius = np.where(active, (1.6 * diameter_um + 2 * sig_um) / spacing, 0.0)
    # binned only in 3D stacks, where it pays: in a single plane (widefield) the full-resolution
    # window is cheap, and binning there degraded the widefield tilt fit (axis error median
    # 3.3 -> 3.8 deg over 12 seeds)
    bin_px = np.maximum(1, np.floor(sig_px / 4)) if np.all(active) else np.ones(3)
    binf = np.where(active, bin_px, 1).astype(int)
    out, elong = [], []
    for c in xyz_um / spacing:
        lo = np.maximum(np.floor(c - radius), 0).astype(int)
        hi = np.minimum(np.ceil(c + radius) + 1, img.shape).astype(int)
        patch, g, b = _binned_patch(img, lo, hi, binf)
        patch = ndi.gaussian_filter(patch, sig_px / b, mode="nearest")
        r2 = sum(((g[d] - c[d]) / radius[d]) ** 2 for d in range(3) if active[d])
        inside = np.broadcast_to(r2 <= 1.0, patch.shape)
        w = (patch - _plane(patch, g, ~inside, active)) * inside
        w = np.where(w > 0.15 * w.max(), w, 0.0)  # the blob, not the noise of the window
        if w.sum() <= 0:
            out.append(c)
            elong.append(1.0)
            continue
        cen = np.array([(w * g[d]).sum() / w.sum() for d in range(3)])
        dx = [(g[d] - cen[d]) * spacing[d] for d in range(2)]
        cov = np.array([[(w * dx[i] * dx[j]).sum() for j in range(2)] for i in range(2)]) / w.sum()
        ev = np.linalg.eigvalsh(cov)
        out.append(cen)
        elong.append(float(np.sqrt(ev[1] / max(ev[0], 1e-12))))
    return np.array(out).reshape(-1, 3) * spacing, np.array(elong)


def _binned_patch(img, lo, hi, binf):
    """Block means of ``img[lo:hi]`` over ``b = min(binf, hi - lo)`` pixels per axis (whole blocks
    only) and the pixel coordinates of the block centres ``lo + (n + 1/2) b - 1/2`` as full
    grids; returns ``(patch, [g0, g1, g2], b)``.

    The mean is the float64 sum of one strided view per offset inside the block, divided by
    the block size: 8x faster than ``mean`` over the axes of a blocked view, and the same
    values (float32 pixels add exactly in float64, whatever the order).
    """
    b = np.maximum(np.minimum(binf, hi - lo), 1)
    n = (hi - lo) // b
    patch = None
    for offset in itertools.product(*[range(k) for k in b]):
        view = img[tuple(slice(l + o, l + m * k, k) for l, m, k, o in zip(lo, n, b, offset))]
        if patch is None:
            patch = view.astype(np.float64)
        else:
            patch += view
    patch /= float(np.prod(b))
    g = np.meshgrid(*[l + (np.arange(m) + 0.5) * k - 0.5 for l, m, k in zip(lo, n, b)], indexing="ij")
    return patch, g, b


def _plane(patch, g, outside, active):
    """Background of a patch: least-squares plane (linear in the active axes) through ``outside``."""
    cols = [np.ones(patch.shape)] + [np.broadcast_to(g[d], patch.shape) for d in range(3) if active[d]]
    a = np.stack([c[outside] for c in cols], 1)
    if len(a) <= a.shape[1]:
        return np.median(patch)
    coef, *_ = np.linalg.lstsq(a, patch[outside], rcond=None)
    return sum(k * c for k, c in zip(coef, cols))


def merge_clusters(xyz_um, amplitude, confidence, merge_um: float, cluster_weight: float = CLUSTER_WEIGHT):
    """Merge detections closer than ``merge_um`` (touching particles the MRI sees as one blob).

    A cluster becomes one particle at the amplitude-weighted centroid of its members (the
    centroid an MRI of that resolution sees if 13C signal follows fluorescence) with the
    members' summed amplitude and ``cluster_weight`` times their best confidence (the MRI's
    relative weighting of the members is not known). Returns ``(xyz, amplitude, confidence,
    label)`` with ``label[n]`` the merged particle of detection ``n``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    xyz_um = np.asarray(xyz_um, float).reshape(-1, 3)
    n = len(xyz_um)
    pairs = cKDTree(xyz_um).query_pairs(merge_um, output_type="ndarray") if n > 1 else np.zeros((0, 2), int)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    ncomp, label = connected_components(graph, directed=False)
    members = np.bincount(label, minlength=ncomp)
    amp = np.bincount(label, amplitude, ncomp)
    xyz = np.stack([np.bincount(label, amplitude * xyz_um[:, d], ncomp) for d in range(3)], 1) / amp[:, None]
    conf = np.zeros(ncomp)
    np.maximum.at(conf, label, confidence)
    conf = np.where(members > 1, cluster_weight * conf, conf)
    return xyz, amp, conf, label
