"""Which orientations are searched, and in which frame.

Three cases, by the dimensionality of the data (all in the MRI *grid frame*: mm along the
array axes, origin at voxel 0; see :func:`.register.grid_frame`):

``"3d"``  an optical z-stack against a 3D MRI: every rotation and rotoreflection (O(3)),
          from congruent particle triangles (:mod:`.triplets`).
``"slice"`` any optical image against a 2D MRI (one slice): the optical axis along the
          slice normal; in-plane rotations, optionally mirrored (:mod:`.matching`).
``"widefield"`` one optical plane against a 3D MRI: the optical axis along each MRI array
          axis (i, j, k; both signs through the mirror state) or along the axis of the
          coarse orientation when it is given; in-plane rotations about it
          (:mod:`.matching`), and the focal plane's depth from the matched MRI particles.

A coarse orientation (``placement.orientation``: optical axes as columns, in MRI RAS)
restricts every search to rotations within ``orientation_uncertainty_deg`` of it, with its
handedness.
"""

from __future__ import annotations

import numpy as np

from .hypotheses import Match, SearchSpace
from .matching import match_particles
from .triplets import match_particles_3d

#: Proper rotations taking the grid frame to a frame whose z is the named grid axis.
AXIS_FRAMES = {
    "k": np.eye(3),
    "i": np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]]),
    "j": np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]),
}


def search_mode(optical_planar: bool, mri_planar: bool) -> str:
    """``"slice"`` (2D MRI), ``"widefield"`` (one optical plane, 3D MRI) or ``"3d"``."""
    if mri_planar:
        return "slice"
    return "widefield" if optical_planar else "3d"


def prior_frame(prior: np.ndarray) -> np.ndarray:
    """Proper rotation whose rows are the prior's optical x, y and z axes (orthonormalised)."""
    u, _, vt = np.linalg.svd(np.asarray(prior, float))
    r = u @ vt
    if np.linalg.det(r) < 0:
        r = r @ np.diag([1.0, -1.0, 1.0])  # the mirror state carries the handedness
    return r.T


def describe(mode: str, space: SearchSpace, mirrors: tuple) -> str:
    """One line saying which orientations were searched (for reports and errors)."""
    hand = "proper and mirrored" if len(mirrors) == 2 else ("mirrored only" if mirrors[0] else "proper only")
    if space.prior is not None and space.prior_deg < 180:
        cone = f"within {space.prior_deg:g} deg of placement.orientation"
    else:
        cone = "any angle"
    if mode == "3d":
        return f"all 3D rotations ({hand}; {cone}) from congruent particle triangles"
    if mode == "slice":
        return f"in-plane rotations about the MRI slice normal ({hand}; {cone})"
    axes = "the placement.orientation optical axis" if space.prior is not None else "MRI array axes i, j, k"
    return f"optical axis along {axes}, in-plane rotations about it ({hand}; {cone})"


def _in_frame(space: SearchSpace, frame: np.ndarray) -> SearchSpace:
    """The search space expressed in a rotated frame (``x_frame = frame @ x_grid``)."""
    tol = np.abs(frame) @ space.tol
    center = None if space.center is None else frame @ space.center
    prior = None if space.prior is None else frame @ space.prior
    return SearchSpace(tol=tol, scale=space.scale, center=center, optical_center=space.optical_center,
                       uncertainty=space.uncertainty, prior=prior, prior_deg=space.prior_deg,
                       model=space.model, scale_bounds=space.scale_bounds, planar=True)


def _widefield_frames(space: SearchSpace) -> dict[str, np.ndarray]:
    if space.prior is not None and space.prior_deg < 90:
        return {"prior": prior_frame(space.prior)}
    return AXIS_FRAMES


def search(mode: str, o: np.ndarray, m: np.ndarray, wo: np.ndarray, wm: np.ndarray, space: SearchSpace,
           mirrors: tuple) -> list[Match]:
    """Every candidate (best per mirror state and axis), most pairs first, then most significant.

    ``m`` is in the grid frame; each match carries its search ``frame`` (3x3, ``x_frame =
    frame @ x_grid``) and its transform maps optical um into that frame.
    """
    found: list[Match] = []
    if mode == "3d":
        found = [c for c in match_particles_3d(o, m, space, wo=wo, wm=wm, mirrors=mirrors).values() if c]
    elif mode == "slice":
        found = [c for c in match_particles(o, m, space, wo=wo, wm=wm, mirrors=mirrors).values() if c]
    else:
        for name, frame in _widefield_frames(space).items():
            sub = _in_frame(space, frame)
            res = match_particles(o, m @ frame.T, sub, wo=wo, wm=wm, mirrors=mirrors,
                                  label=f"optical axis along {name}")
            for c in res.values():
                if c is not None:
                    c.frame = frame
                    found.append(c)
    found.sort(key=lambda c: (len(c.pairs), c.significance), reverse=True)
    return found
