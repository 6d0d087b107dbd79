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
from dualmode.conventions import apply_affine
from dualmode.view import result_layers

work = Path(tempfile.mkdtemp(prefix="dualmode-view-"))
simulate_folder(work / "acq", SimulationConfig(seed=2, rotation_deg=-15.0))
process_folder(work / "acq", work / "out")
layers = result_layers(work / "out" / "acq")
for data, kwargs, kind in layers:
    print(f"{kind:6s} {kwargs['name']!r:40s} shape {data.shape}")

# %%
# Draw the image layers in world coordinates (x right, y anterior) using their affines,
# additively blended like napari, and the points on top.
images = [(d, k) for d, k, kind in layers if kind == "image" and k.get("visible", True)]
points = [(d, k) for d, k, kind in layers if kind == "points"]
colours = {"magenta": (1, 0, 1), "green": (0, 1, 0), "gray": (1, 1, 1)}

data0, kw0 = images[0]
corner = apply_affine(kw0["affine"], np.array([[-0.5, -0.5, 0], [data0.shape[0] - 0.5, data0.shape[1] - 0.5, 0]]))
rgb = np.zeros(data0.shape[:2] + (3,))
for data, kwargs in images:
    lo, hi = kwargs["contrast_limits"]
    plane = np.clip((data[:, :, data.shape[2] // 2] - lo) / (hi - lo), 0, 1)
    rgb += plane[..., None] * colours.get(kwargs["colormap"], (1, 1, 1))

fig, ax = plt.subplots(figsize=(5.5, 5.5), constrained_layout=True)
ax.imshow(np.clip(rgb, 0, 1).transpose(1, 0, 2), origin="lower",
          extent=(corner[0, 0], corner[1, 0], corner[0, 1], corner[1, 1]))
for data, kwargs in points:
    ax.scatter(data[:, 0], data[:, 1], s=60, facecolors="none", edgecolors=kwargs["face_color"],
               label=kwargs["name"])
ax.set(xlabel="x (mm, R)", ylabel="y (mm, A)", title="napari layers of one result folder")
ax.legend(loc="lower right", fontsize="small")
plt.show()
