"""JSON serialisation shared by every output: numpy values to Python, non-finite to null."""

from __future__ import annotations

import json

import numpy as np

__all__ = ["jsonable", "dumps"]


def jsonable(value):
    """Recursively convert numpy scalars/arrays to Python and non-finite floats to ``None``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` of :func:`jsonable` ``(obj)`` (strict JSON: no NaN or Infinity)."""
    return json.dumps(jsonable(obj), allow_nan=False, **kwargs)
