"""The npe2 reader: which paths dualmode opens, and how."""

from __future__ import annotations

import functools
import os

KINDS = ("result", "acquisition", "nifti", "ome-zarr")


def path_kind(path: str | os.PathLike) -> str | None:
    """``"result"``, ``"acquisition"``, ``"nifti"`` or ``"ome-zarr"`` for a path dualmode can open, else ``None``.

    Examples
    --------
    >>> path_kind("out/demo")  # doctest: +SKIP
    'result'
    """
    path = os.fspath(path).rstrip("/")
    if os.path.isdir(path):
        if path.endswith(".ome.zarr") and os.path.isfile(os.path.join(path, "zarr.json")):
            return "ome-zarr"
        if os.path.isfile(os.path.join(path, "c13.nii.gz")) and os.path.isfile(os.path.join(path, "report.json")):
            return "result"
        if os.path.isfile(os.path.join(path, "acquisition.json")):
            return "acquisition"
        return None
    if path.endswith((".nii", ".nii.gz")) and os.path.isfile(path):
        return "nifti"
    return None


def get_reader(path):
    """npe2 ``get_reader`` hook: a reader function for dualmode paths, ``None`` for anything else."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    kind = path_kind(path)
    return None if kind is None else functools.partial(read, kind=kind)


def _orient_current_viewer() -> None:
    """Anterior up and the RAS axis labels in the viewer that is opening the layers."""
    try:
        import napari
    except ImportError:  # pragma: no cover - the hook only runs inside napari
        return
    viewer = napari.current_viewer()
    if viewer is not None:
        from dualmode.view import AXIS_LABELS

        camera = viewer.camera
        if hasattr(camera, "orientation2d"):
            camera.orientation2d = ("up", "right")
        if viewer.dims.ndim <= len(AXIS_LABELS):
            viewer.dims.axis_labels = AXIS_LABELS[-viewer.dims.ndim:] if viewer.dims.ndim else ()


def read(path, kind: str | None = None) -> list[tuple]:
    """Layer data of ``path``: :func:`dualmode.view.result_layers`, ``acquisition_layers`` or ``nifti_layers``."""
    from dualmode import view

    if isinstance(path, (list, tuple)):
        path = path[0]
    kind = kind or path_kind(path)
    if kind not in KINDS:
        raise ValueError(f"{path}: not a dualmode result folder, acquisition folder or NIfTI file")
    layers = {"result": view.result_layers, "acquisition": view.acquisition_layers,
              "nifti": view.nifti_layers, "ome-zarr": view.ome_zarr_layers}[kind](path)
    _orient_current_viewer()
    return layers
