"""ParaVision slice geometry to RAS: slice packages, gradient matrices, offsets, ``visu_pars``.

ParaVision describes the placement of each *object* (slice, or slab of a 3D scan) by a
gradient orientation matrix ``G`` whose rows are the read, phase and slice directions in
the magnet frame, and offsets of the field-of-view centre along those rows (mm). Per
slice package the method holds ``PVM_SPackArrGradOrient``, ``PVM_SPackArrReadOffset``,
``PVM_SPackArrPhase1Offset``, ``PVM_SPackArrSliceOffset``, ``PVM_SPackArrNSlices`` and
``PVM_SPackArrSliceDistance``; per object the acqp holds ``ACQ_grad_matrix`` and
``ACQ_read_offset``/``ACQ_phase1_offset``/``ACQ_slice_offset``, in acquisition order
(position ``a`` of the ``NI`` loop holds object ``ACQ_obj_order[a]``).

Subject frame
    The scanner's own geometry of a reconstruction (``visu_pars``:
    ``VisuCoreOrientation`` rows = image axes, ``VisuCorePosition`` = centre of the first
    voxel) is in ParaVision's subject frame, left-posterior-superior like DICOM. For a
    head-first supine subject it is ``diag(1, 1, -1) @ magnet``; prone turns the subject
    180 deg about the bore axis, feet-first 180 deg about the vertical axis
    (:data:`MAGNET_TO_SUBJECT`). RAS is ``diag(-1, -1, 1) @ LPS``.

Image axes
    dualmode's array axes of a Bruker scan are read (``i``), phase (``j``) and slice or
    second phase (``k``), with the DFT origin (index ``N // 2``) at the FOV centre. Their
    RAS directions are ``D @ G[0]``, ``D @ G[1]``, ``D @ G[2]`` with
    ``D = diag(-1, -1, 1) @ MAGNET_TO_SUBJECT[patient_pos]``; the FOV centre is
    ``D @ G.T @ (read_offset, phase1_offset, slice_offset)``. This rule was fixed on the
    real ParaVision 5.1 tripilot in ``shared/realdata/bruker-flash-pv51`` (three
    orthogonal slices, six in-plane axes, one rule) against its ``visu_pars``; offsets are
    assumed applied during acquisition (receiver frequency and phase), as ParaVision does
    for the standard Cartesian methods.

A package of parallel slices is one volume: slices sorted along ``G[2]``, equal spacing
(``PVM_SPackArrSliceDistance``, gaps included), the voxel ``N // 2`` at that slice's
centre. Packages with different orientations (a tripilot) are separate volumes.
"""

from __future__ import annotations

import os

import numpy as np

from dualmode.errors import InputError
from .jcamp import read_jcamp

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

#: Subject (LPS) = M @ magnet frame, per ``ACQ_patient_pos``.
MAGNET_TO_SUBJECT = {
    "Head_Supine": np.diag([1.0, 1.0, -1.0]),
    "Head_Prone": np.diag([-1.0, -1.0, -1.0]),
    "Foot_Supine": np.diag([-1.0, 1.0, 1.0]),
    "Foot_Prone": np.diag([1.0, -1.0, 1.0]),
}


def magnet_to_ras(patient_pos: str) -> np.ndarray | None:
    """3x3 map from the magnet (gradient) frame to RAS, or ``None`` for an unmodelled position."""
    m = MAGNET_TO_SUBJECT.get(str(patient_pos))
    return None if m is None else _LPS_TO_RAS @ m


def _array(params: dict, key: str, path: str, shape_tail: tuple, n: int) -> np.ndarray | None:
    if key not in params:
        return None
    try:
        arr = np.asarray(params[key], dtype=float).reshape(-1, *shape_tail)
    except (TypeError, ValueError):
        raise InputError(path, f"{key} is not numeric", key) from None
    if arr.shape[0] < n or not np.all(np.isfinite(arr)):
        raise InputError(path, f"{key} holds {arr.shape[0]} entries for {n} objects", key)
    return arr[:n]


def object_geometry(acqp: dict, method: dict, ni: int, folder: str) -> tuple[list[dict], str] | tuple[None, str]:
    """Per object (object order): ``rows`` (3x3 ``G``), ``offsets`` (read, phase, slice mm), ``package``.

    Method package arrays first (unambiguous), else acqp per-object arrays through
    ``ACQ_obj_order``. Returns ``(None, reason)`` when neither describes ``ni`` objects.
    """
    mpath, apath = os.path.join(folder, "method"), os.path.join(folder, "acqp")
    nslices = method.get("PVM_SPackArrNSlices")
    if "PVM_SPackArrGradOrient" in method and nslices is not None:
        counts = np.atleast_1d(np.asarray(nslices)).astype(int)
        npk = counts.size
        grads = _array(method, "PVM_SPackArrGradOrient", mpath, (3, 3), npk)
        if int(counts.sum()) == ni and grads is not None:
            offs = [_array(method, f"PVM_SPackArr{k}Offset", mpath, (), npk) for k in ("Read", "Phase1", "Slice")]
            offs = [np.zeros(npk) if o is None else o for o in offs]
            dist = _array(method, "PVM_SPackArrSliceDistance", mpath, (), npk)
            objs = []
            for p, n in enumerate(counts):
                for s in range(n):
                    step = (s - (n - 1) / 2) * (dist[p] if dist is not None else 0.0)
                    objs.append({"rows": grads[p], "package": p,
                                 "offsets": np.array([offs[0][p], offs[1][p], offs[2][p] + step])})
            return objs, "method (PVM_SPackArr*)"
    grads = _array(acqp, "ACQ_grad_matrix", apath, (3, 3), ni)
    if grads is None:
        return None, "no ACQ_grad_matrix or PVM_SPackArrGradOrient"
    order = np.atleast_1d(np.asarray(acqp.get("ACQ_obj_order", np.arange(ni)))).astype(int).ravel()
    if sorted(order.tolist()[:ni]) != list(range(ni)):
        raise InputError(apath, f"ACQ_obj_order {order.tolist()} is not a permutation of {ni} objects",
                         "ACQ_obj_order")
    pos = np.argsort(order[:ni])  # acquisition position of each object
    offs = [_array(acqp, f"ACQ_{k}_offset", apath, (), ni) for k in ("read", "phase1", "slice")]
    offs = [np.zeros(ni) if o is None else o for o in offs]
    objs = [{"rows": grads[pos[o]], "offsets": np.array([offs[0][pos[o]], offs[1][pos[o]], offs[2][pos[o]]]),
             "package": None} for o in range(ni)]
    # objects with the same orientation and in-plane offsets form a package
    keys: list = []
    for ob in objs:
        key = next((i for i, k in enumerate(keys) if np.allclose(k, np.r_[ob["rows"].ravel(), ob["offsets"][:2]],
                                                                atol=1e-4)), None)
        if key is None:
            keys.append(np.r_[ob["rows"].ravel(), ob["offsets"][:2]])
            key = len(keys) - 1
        ob["package"] = key
    return objs, "acqp (ACQ_grad_matrix, ACQ_*_offset, ACQ_obj_order)"


def package_geometry(objs: list[dict], members: list[int], d_ras: np.ndarray, thickness: float,
                     path: str) -> dict:
    """RAS ``orientation``, ``position_mm``, slice ``spacing`` and object order of one package."""
    rows = objs[members[0]]["rows"]
    if not np.allclose(rows @ rows.T, np.eye(3), atol=1e-3):
        raise InputError(path, f"gradient matrix {rows.tolist()} is not orthonormal", "ACQ_grad_matrix")
    for o in members[1:]:
        if not np.allclose(objs[o]["rows"], rows, atol=1e-4):
            raise InputError(path, "slices of one package have different orientations", "PVM_SPackArrGradOrient")
    along = np.array([objs[o]["offsets"][2] for o in members])
    sort = np.argsort(along, kind="stable")
    ordered = [members[i] for i in sort]
    along = along[sort]
    spacing = thickness
    if len(members) > 1:
        steps = np.diff(along)
        if np.any(steps <= 0) or np.ptp(steps) > 1e-3:
            raise InputError(path, f"slice offsets {along.tolist()} mm are not equally spaced: cannot form one "
                             "volume", "ACQ_slice_offset")
        spacing = float(steps.mean())
    read, phase = objs[members[0]]["offsets"][:2]
    centre = rows.T @ np.array([read, phase, along[len(along) // 2]])
    orientation = d_ras @ rows.T  # columns: RAS directions of read, phase, slice
    return {"orientation": orientation, "position_mm": tuple(float(v) for v in d_ras @ centre),
            "spacing_mm": spacing, "objects": ordered}


def parameter_sources(method: dict, geometry: str) -> dict:
    """Which parameter each header value came from (shown by ``dualmode info``)."""
    fov = "method PVM_Fov x PVM_AntiAlias" if "PVM_Fov" in method else "acqp ACQ_fov (cm)"
    return {"matrix": "acqp ACQ_size, method PVM_Matrix/PVM_EncMatrix", "fov_mm": fov,
            "position_mm": geometry, "orientation": geometry,
            "tr_ms": "method PVM_RepetitionTime" if "PVM_RepetitionTime" in method else "acqp ACQ_repetition_time",
            "te_ms": "method PVM_EchoTime" if "PVM_EchoTime" in method else "acqp ACQ_echo_time",
            "flip_angle_deg": "acqp ACQ_flip_angle", "frequency_hz": "acqp SFO1", "nucleus": "method PVM_Nucleus1",
            "n_repetitions": "acqp NR"}


def visu_frame_affines(visu: dict, path: str) -> tuple[list[np.ndarray], tuple[int, int, int]]:
    """Voxel -> RAS affine of every 2dseq frame from ``visu_pars``, and the frame size.

    ``VisuCoreOrientation`` rows are the LPS directions of the frame axes,
    ``VisuCorePosition`` the LPS centre of its first voxel, ``VisuCoreExtent / VisuCoreSize``
    the voxel size (2D frames: ``VisuCoreFrameThickness`` across).
    """
    try:
        size = np.atleast_1d(np.asarray(visu["VisuCoreSize"], dtype=float)).ravel()
        extent = np.atleast_1d(np.asarray(visu["VisuCoreExtent"], dtype=float)).ravel()
        orient = np.asarray(visu["VisuCoreOrientation"], dtype=float).reshape(-1, 3, 3)
        pos = np.asarray(visu["VisuCorePosition"], dtype=float).reshape(-1, 3)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"visu_pars geometry unreadable ({err})", "VisuCorePosition") from None
    if size.size not in (2, 3) or extent.size != size.size:
        raise InputError(path, f"VisuCoreSize {size.tolist()} is not a 2D or 3D frame", "VisuCoreSize")
    thick = np.atleast_1d(np.asarray(visu.get("VisuCoreFrameThickness", 1.0), dtype=float)).ravel()
    voxel = np.ones(3)
    voxel[: size.size] = extent / size
    if size.size == 2:
        voxel[2] = float(thick[0])
    out = []
    for o, p in zip(orient, pos):
        aff = np.eye(4)
        aff[:3, :3] = _LPS_TO_RAS @ o.T @ np.diag(voxel)
        aff[:3, 3] = _LPS_TO_RAS @ p
        out.append(aff)
    shape = tuple(int(v) for v in size) + ((1,) if size.size == 2 else ())
    return out, shape


def visu_mismatch_mm(affine: np.ndarray, matrix, frames: list[np.ndarray], frame_shape) -> float:
    """Largest distance from a corner voxel centre of ``affine`` to the nearest voxel
    centre inside any 2dseq frame (``inf`` if a corner lies outside every frame)."""
    corners = np.array([[i, j, k, 1.0] for i in (0, matrix[0] - 1) for j in (0, matrix[1] - 1)
                        for k in sorted({0, matrix[2] - 1})])
    world = corners @ np.asarray(affine).T
    worst = 0.0
    for w in world:
        best = np.inf
        for aff in frames:
            ijk = np.linalg.solve(aff, w)[:3]
            near = np.round(ijk)
            if np.any(near < 0) or np.any(near > np.asarray(frame_shape) - 1):
                continue
            best = min(best, float(np.linalg.norm(aff[:3, :3] @ (near - ijk))))
        worst = max(worst, best)
    return worst


def check_against_visu(folder: str, header) -> None:
    """Compare the RAS geometry of a :class:`KSpaceHeader` with the scanner's ``pdata/1/visu_pars`` (same voxel grid only)."""
    vpath = os.path.join(folder, "pdata", "1", "visu_pars")
    if not os.path.isfile(vpath) or header.extra["geometry_source"].startswith("none"):
        return
    try:
        frames, shape = visu_frame_affines(read_jcamp(vpath), vpath)
    except InputError as err:
        header.extra["visu_pars_check"] = f"unreadable: {err}"
        return
    voxel = np.asarray(header.fov_mm[:2]) / np.asarray(header.matrix[:2])
    vvox = np.sort(np.linalg.norm(frames[0][:3, :2], axis=0))
    if not np.allclose(np.sort(voxel), vvox, rtol=1e-4):
        header.extra["visu_pars_check"] = f"skipped: 2dseq voxel {vvox.tolist()} mm differs from {voxel.tolist()}"
        return
    miss = visu_mismatch_mm(header.affine(), header.matrix, frames, shape)
    header.extra["visu_pars_mismatch_mm"] = miss
    if miss > 0.01:
        header.extra["geometry_source"] += f"; DISAGREES with pdata/1/visu_pars by {miss:.3g} mm: set mri.geometry"
        header.extra["geometry_warning"] = f"visu_pars places the grid {miss:.3g} mm away"
    else:
        header.extra["visu_pars_check"] = f"agrees with pdata/1/visu_pars within {miss:.2g} mm"
