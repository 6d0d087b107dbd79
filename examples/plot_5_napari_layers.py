"""
Opening results in napari
=========================

``dualmode view OUT/<name>`` opens a result folder in napari: one image layer per fused channel
(13C and fluorescence, additive blending), the background (hidden) and the matched particles as
point layers, all placed in RAS millimetres by their affines, so that napari's world coordinates
are scanner coordinates. The layers come from :func:`dualmode.view.result_layers`, which needs
no GUI; with napari installed (``pip install 'dualmode[view]'``) the same list goes to a viewer::

    import napari
    from dualmode.view import result_layers

    viewer = napari.Viewer()
    for data, kwargs, kind in result_layers("out/demo"):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    napari.run()

The documentation is built without a display, so this example draws the same layers with
matplotlib: each image layer with its colormap and contrast limits, and the point layers at
their world positions.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from dualmode import SimulationConfig, process_folder, simulate_folder
from dualmode.view import result_layers

work = Path(tempfile.mkdtemp(prefix="dualmode-view-"))
simulate_folder(work / "acq", SimulationConfig(seed=2, rotation_deg=-15.0))
process_folder(work / "acq", work / "out")
layers = result_layers(work / "out" / "acq")
for data, kwargs, kind in layers:
    print(f"{kind:6s} {kwargs['name']!r:40s} shape {data.shape}")

# %%
# napari orders world axes (S, A, R) (slowest first, like the arrays it shows), so each image
# layer is ``data[k, j, i]`` with a 4 x 4 ``affine`` from array index to (S, A, R) mm, and points
# are (S, A, R) rows. Draw the middle slice of every visible image layer in world coordinates
# (R to the right, A up), blended additively with its colormap and contrast limits as napari
# does, and the particles on top.
from matplotlib.colors import to_rgb

images = [(d, k) for d, k, kind in layers if kind == "image" and k.get("visible", True)]
points = [(d, k) for d, k, kind in layers if kind == "points"]


def world_extent(shape, affine):
    """(R_min, R_max, A_min, A_max) of the pixel edges of an axis-aligned layer."""
    corners = np.array([[0, -0.5, -0.5, 1], [0, shape[1] - 0.5, shape[2] - 0.5, 1]]) @ np.asarray(affine).T
    return corners[0, 2], corners[1, 2], corners[0, 1], corners[1, 1]


rgb = None
for data, kwargs in images:
    lo, hi = kwargs["contrast_limits"]
    plane = np.clip((data[data.shape[0] // 2] - lo) / (hi - lo), 0, 1) ** kwargs.get("gamma", 1.0)
    layer_rgb = plane[..., None] * np.array(to_rgb(kwargs["colormap"]))
    rgb = layer_rgb if rgb is None else rgb + layer_rgb
    extent = world_extent(data.shape, kwargs["affine"])

fig, ax = plt.subplots(figsize=(5.5, 5.5), constrained_layout=True)
ax.imshow(np.clip(rgb, 0, 1), origin="lower", extent=extent)
for data, kwargs in points:
    marker = "o" if kwargs.get("symbol") == "ring" else "x"
    ax.scatter(data[:, 2], data[:, 1], s=70, marker=marker, label=kwargs["name"],
               facecolors="none" if marker == "o" else kwargs["face_color"],
               edgecolors=kwargs["face_color"] if marker == "o" else None)
ax.set(xlabel="R (mm)", ylabel="A (mm)", title="napari layers of one result folder")
ax.legend(loc="lower right", fontsize="small")
plt.show()
