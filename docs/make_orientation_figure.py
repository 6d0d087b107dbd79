"""Generate docs/optical-frame.png: the optical frame in MRI RAS, the stack direction, the
centre ``optics.placement.center_mm`` of a stack, and how a widefield image relates to the
MRI slice in depth.

The geometry is computed with the simulator's own camera model
(:func:`dualmode.simulate.optics.data_rotation`: camera x, y and the viewing direction into
the sample; a stack recorded ``"into"`` or ``"out"`` of the sample) and the registration's
definition of the optical data's centre (``(shape - 1) / 2 * spacing``, the middle pixel and,
for a stack, the middle plane). The handedness printed in panel (b) is
``det(optical_to_mri)`` of those frames.

Run: ``python docs/make_orientation_figure.py`` (writes ``docs/optical-frame.png``).
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from dualmode.simulate.optics import data_rotation  # noqa: E402

SHAPE = np.array([6, 5, 4])  # a small stack: x, y pixels and z planes
SPACING = np.array([400.0, 400.0, 250.0])  # um


def stack_frame(camera, direction, surface_mm, shape=SHAPE):
    """``optical_to_mri`` (um -> RAS mm) of a stack whose surface plane is centred at ``surface_mm``."""
    rot = data_rotation(camera, False, direction)
    centre_um = np.r_[(shape[:2] - 1) / 2 * SPACING[:2], 0.0 if direction == "into" else (shape[2] - 1) * SPACING[2]]
    o2m = np.eye(4)
    o2m[:3, :3] = rot * 1e-3
    o2m[:3, 3] = surface_mm - rot @ centre_um * 1e-3
    return o2m


def to_ras(o2m, pts_um):
    return np.asarray(pts_um, float) @ o2m[:3, :3].T + o2m[:3, 3]


def panel_frame(ax):
    """(a) The optical frame of a stack in MRI RAS, its origin and its centre."""
    camera = Rotation.from_euler("xyz", [180, 10, 30], degrees=True).as_matrix()  # looking down, tilted 10 deg
    o2m = stack_frame(camera, "into", np.zeros(3))
    hi = (SHAPE - 1) * SPACING
    corners = np.array([[x, y, z] for x in (0, hi[0]) for y in (0, hi[1]) for z in (0, hi[2])])
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
    c = to_ras(o2m, corners)
    for a, b in edges:
        ax.plot(*c[[a, b]].T, color="0.6", lw=0.8)
    planes = to_ras(o2m, [[0, 0, z] for z in range(0, int(hi[2]) + 1, int(SPACING[2]))])
    ax.scatter(*planes.T, color="0.4", s=6)
    origin = to_ras(o2m, [[0, 0, 0]])[0]
    labels = ("optical x\n(columns)", "optical y\n(rows)", "optical z (plane index,\nviewing direction)")
    for k, (name, col) in enumerate(zip(labels, ("tab:red", "tab:green", "tab:blue"))):
        tip = to_ras(o2m, [np.eye(3)[k] * 1400.0])[0]
        ax.quiver(*origin, *(tip - origin), color=col, lw=2, arrow_length_ratio=0.15)
        ax.text(*(tip + 0.15 * (tip - origin)), name, color=col, fontsize=7)
    centre = to_ras(o2m, [(SHAPE - 1) / 2 * SPACING])[0]
    ax.scatter(*centre, marker="*", s=140, color="k")
    ax.text(*centre, "  placement.center_mm\n  (middle pixel, middle plane)", fontsize=7)
    ax.text(*origin, "origin: centre of\npixel (0, 0, 0)  ", fontsize=7, ha="right")
    for k, name in enumerate(("R", "A", "S")):
        ax.quiver(1.2, 1.2, -1.4, *(np.eye(3)[k] * 0.6), color="k", lw=1, arrow_length_ratio=0.25)
        ax.text(*(np.array([1.2, 1.2, -1.4]) + np.eye(3)[k] * 0.7), name, fontsize=8)
    ax.set(xlabel="R (mm)", ylabel="A (mm)", zlabel="S (mm)", title="(a) optical frame of a stack in MRI RAS")
    ax.view_init(elev=25, azim=-15)


def panel_direction(ax):
    """(b) The same sample recorded as a stack into and out of the sample (side view)."""
    camera = np.diag([1.0, -1.0, -1.0])  # looking down: viewing direction -S, a proper rotation
    ax.axhspan(-1.3, 0.0, color="#f3e3d3")
    ax.text(3.9, -1.25, "sample", fontsize=8, ha="right")
    ax.text(3.9, 0.05, "surface", fontsize=8, ha="right")
    narrow = np.array([3, 3, SHAPE[2]])
    for x0, direction in ((0.0, "into"), (2.2, "out")):
        o2m = stack_frame(camera, direction, np.array([x0 + 0.6, 0.0, 0.0]), narrow)
        for z in range(narrow[2]):
            p = to_ras(o2m, [[0, 0, z * SPACING[2]], [(narrow[0] - 1) * SPACING[0], 0, z * SPACING[2]]])
            ax.plot(p[:, 0], p[:, 2], color="tab:blue", lw=1.5)
            ax.text(p[1, 0] + 0.05, p[1, 2], f"plane {z}", fontsize=7, va="center")
        det = np.linalg.det(o2m[:3, :3] * 1e3)
        ax.annotate("", xy=(x0 + 0.05, -0.95), xytext=(x0 + 0.05, 0.45), arrowprops=dict(arrowstyle="->", color="k"))
        ax.text(x0, 0.75, f'"{direction}": z index runs\n{"into" if direction == "into" else "out of"} the sample\n'
                          f"det(optical_to_mri) = {det:+.0f}", fontsize=7.5)
    ax.text(0.1, 0.5, "viewing direction (from the objective)", fontsize=7)
    ax.set(xlim=(-0.2, 4.0), ylim=(-1.35, 1.35), xlabel="R (mm)", ylabel="S (mm)",
           title="(b) stack direction (side view)")
    ax.set_aspect("equal")


def panel_widefield(ax, rng):
    """(c) Widefield: particles at several depths, projected along the optical axis onto the
    image; the focal plane and the MRI slice / volume."""
    ax.axhspan(-1.0, 0.0, color="#f3e3d3")
    x = rng.uniform(0.3, 3.7, 9)
    z = -rng.uniform(0.1, 0.9, 9)
    focal = float(np.median(z))
    ax.scatter(x, z, s=40, color="tab:red", zorder=3, label="particles")
    for xi, zi in zip(x, z):
        ax.plot([xi, xi], [zi, 0.35], color="tab:red", lw=0.5, ls=":")
    ax.plot([0.1, 3.9], [0.35, 0.35], color="k", lw=3)
    ax.text(0.1, 0.42, "widefield image: every particle projected along the optical axis", fontsize=7)
    ax.axhline(focal, color="tab:blue", ls="--", lw=1.2)
    ax.text(3.95, focal + 0.03, "focal plane (optical z = 0)\nvs 3D MRI: median depth of the\nmatched MRI particles "
            "along the\nfitted (tilted) optical axis", fontsize=6.5, ha="right", va="bottom", color="tab:blue")
    ax.axhspan(-0.65, -0.35, color="tab:green", alpha=0.18)
    ax.text(0.12, -0.63, "2D MRI slice (its thickness): against a slice,\nthe focal plane is the slice's centre plane",
            fontsize=6.5, color="darkgreen")
    ax.set(xlim=(0, 4.0), ylim=(-1.05, 0.6), xlabel="in-plane (mm)", ylabel="depth along the optical axis (mm)",
           title="(c) widefield image and the MRI in depth")


def main(path=os.path.join(os.path.dirname(__file__), "optical-frame.png")):
    fig = plt.figure(figsize=(15, 4.8))
    panel_frame(fig.add_subplot(1, 3, 1, projection="3d"))
    panel_direction(fig.add_subplot(1, 3, 2))
    panel_widefield(fig.add_subplot(1, 3, 3), np.random.default_rng(3))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(path)


if __name__ == "__main__":
    main()
