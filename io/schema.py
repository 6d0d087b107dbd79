"""The schema of ``acquisition.json`` (format ``dualmode.acquisition/1``), as pydantic models.

Every field has a type, a unit and a range; unknown keys are refused (with a "did you
mean" suggestion) except keys starting with ``x-``, which are left for the user's own
notes. :func:`validate_manifest` turns the first problem into one
:class:`~dualmode.errors.InputError` naming the file and the field path::

    acquisition.json [mri.flip_angle_deg]: must be < 90 for hyperpolarized data (...), got 95

:func:`manifest_json_schema` is the JSON Schema (``dualmode schema`` prints it;
``docs/acquisition-format.md`` is checked against it by a test).

Examples
--------
>>> from dualmode.io.schema import validate_manifest
>>> man = validate_manifest({"format": "dualmode.acquisition/1",
...                          "mri": {"source": {"path": "k.h5"}, "polarization": [1, -1]}})
>>> man.mri.hyperpolarized, man.optics
(True, None)
"""

from __future__ import annotations

import difflib
import os
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic import ValidationError, WithJsonSchema, model_validator

from dualmode.errors import InputError

FORMAT = "dualmode.acquisition/1"
MANIFEST = "acquisition.json"
MAX_DEPTH = 16  # deepest nesting of a valid manifest is 4; refuse absurd nesting before validating
ORTHONORMAL_TOL = 1e-3


def _sign(v: int) -> int:
    if v not in (1, -1):
        raise ValueError(f"must be +1 or -1, got {v}")
    return v


def _orthonormal(m: list[list[float]]) -> list[list[float]]:
    a = np.asarray(m, dtype=float)
    err = float(np.abs(a.T @ a - np.eye(3)).max())
    if err > ORTHONORMAL_TOL:
        raise ValueError(f"must be orthonormal (unit, mutually perpendicular columns); |R^T R - I| = {err:.3g}")
    return m


Sign = Annotated[StrictInt, AfterValidator(_sign), WithJsonSchema({"type": "integer", "enum": [1, -1]})]
Vec3 = Annotated[list[float], Field(min_length=3, max_length=3)]
Matrix3 = Annotated[list[Vec3], Field(min_length=3, max_length=3), AfterValidator(_orthonormal)]
PositiveFloat = Annotated[float, Field(gt=0)]
RelPath = Annotated[StrictStr, Field(min_length=1, description="path relative to the acquisition folder")]


USER_KEYS = {"patternProperties": {"^x-": {}}}


class _Section(BaseModel):
    """Strict JSON types, no NaN/inf, unknown keys refused, ``x-...`` keys ignored."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, json_schema_extra=USER_KEYS)

    @model_validator(mode="before")
    @classmethod
    def _drop_user_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
        return data


class Source(_Section):
    path: RelPath = Field(description="raw k-space file or vendor experiment folder, relative to the folder")
    format: StrictStr | None = Field(None, description="reader: ismrmrd, npz, bruker, varian, twix "
                                                       "(docs/formats.md); guessed from the path when absent")
    package: Annotated[StrictInt, Field(ge=0)] | None = Field(
        None, description="slice package of a scan holding several (a Bruker tripilot); dualmode info lists them")

    @model_validator(mode="after")
    def _known_format(self) -> "Source":
        from .readers import READERS

        if self.format is not None and self.format not in READERS:
            raise _FieldError("format", f"unknown format {self.format!r}; known: {sorted(READERS)}")
        return self


class Geometry(_Section):
    matrix: Annotated[list[Annotated[StrictInt, Field(gt=0)]], Field(min_length=3, max_length=3)] = Field(
        description="voxels along array axes i, j, k (2D: third entry 1); must equal the raw data's matrix")
    fov_mm: Annotated[list[PositiveFloat], Field(min_length=3, max_length=3)] = Field(
        description="field of view along i, j, k in mm (2D: slice thickness third)")
    position_mm: Vec3 | None = Field(None, description="RAS mm of voxel (Ni//2, Nj//2, Nk//2), the DFT origin")
    orientation: Matrix3 | None = Field(None, description="3x3 orthonormal, columns = RAS unit vectors of "
                                                          "array axes i, j, k")


class MRI(_Section):
    model_config = ConfigDict(json_schema_extra=lambda s: _mri_schema(s))

    source: Source
    polarization: Annotated[list[Sign], Field(min_length=2)] = Field(
        description="polarization sign (+1/-1) of each repetition in repetition order; both signs needed")
    hyperpolarized: StrictBool = Field(True, description="signal from hyperpolarization (spent by every RF "
                                                         "pulse); false for thermal-equilibrium data")
    sampling: RelPath | None = Field(None, description="sampling plan file (optics-guided acquisition, "
                                                       "dualmode plan), relative to the folder")
    scheme: StrictStr | None = Field(None, description="informative, e.g. '+-'; the polarization list counts")
    nucleus: StrictStr | None = Field(None, description="e.g. '13C'; overrides the raw header")
    frequency_hz: PositiveFloat | None = Field(None, description="Larmor frequency in Hz (a number)")
    flip_angle_deg: Annotated[float, Field(gt=0, le=180)] | None = Field(
        None, description="excitation flip angle in degrees; 0 < flip < 90 for hyperpolarized data")
    tr_ms: PositiveFloat | None = Field(None, description="repetition time in ms")
    te_ms: Annotated[float, Field(ge=0)] | None = Field(None, description="echo time in ms")
    dwell_us: PositiveFloat | None = Field(None, description="readout dwell time per sample in us (Cartesian)")
    off_resonance_hz: float | None = Field(None, description="frequency offset of the signal from the receiver in "
                                                             "Hz (e.g. a chemical shift): moves a Cartesian image "
                                                             "by off_resonance_hz * dwell * N voxels along the readout")
    t2star_ms: PositiveFloat | None = Field(None, description="T2* of the signal in ms: the PSF along the readout "
                                                         "(reported); deconvolved on request (t2star_deconvolution)")
    geometry: Geometry | None = Field(None, description="overrides the raw header's geometry; optional "
                                                        "when the raw format carries it")

    @model_validator(mode="after")
    def _consistent(self) -> "MRI":
        if 1 not in self.polarization or -1 not in self.polarization:
            raise _FieldError("polarization", "needs both +1 and -1 shots for background cancellation, "
                                              f"got {self.polarization}")
        if self.hyperpolarized and self.flip_angle_deg is not None and self.flip_angle_deg >= 90:
            raise _FieldError("flip_angle_deg", "must be < 90 for hyperpolarized data (every pulse spends "
                                                "the polarization; set mri.hyperpolarized to false for "
                                                f"thermal data), got {self.flip_angle_deg:g}")
        return self


def _mri_schema(schema: dict) -> None:
    """The checks of :meth:`MRI._consistent` in JSON Schema."""
    schema.update(USER_KEYS)
    schema["if"] = {"not": {"properties": {"hyperpolarized": {"const": False}}, "required": ["hyperpolarized"]}}
    schema["then"] = {"properties": {"flip_angle_deg": {"exclusiveMaximum": 90}}}
    schema["properties"]["polarization"]["allOf"] = [{"contains": {"const": 1}}, {"contains": {"const": -1}}]


class Modulation(_Section):
    frames: RelPath = Field(description="OME-TIFF with axes TZYX, one frame per modulation state")
    states: Annotated[list[float], Field(min_length=2)] = Field(
        description="1 = NV bright (microwave on), 0 = off; or phases in radians (sinusoidal modulation)")
    kind: StrictStr | None = Field(None, description="free description of the modulation")


class Placement(_Section):
    center_mm: Vec3 | None = Field(None, description="RAS mm of the optical field centre (stage reading)")
    uncertainty_mm: PositiveFloat = Field(5.0, description="how rough center_mm is, mm")
    orientation: Matrix3 | None = Field(None, description="3x3 orthonormal: columns = optical axes x, y, z "
                                                          "in MRI RAS")
    orientation_uncertainty_deg: PositiveFloat | None = Field(None, description="how rough orientation is, "
                                                                                "degrees")
    note: StrictStr | None = None


class Optics(_Section):
    image: RelPath = Field(description="fluorescence image (TIFF/OME-TIFF)")
    channel: StrictStr | None = Field(None, description="free description of the channel")
    pixel_size_um: Annotated[list[PositiveFloat], Field(min_length=2, max_length=3)] | None = Field(
        None, description="x y [z] in µm, used when the file carries no physical size")
    particle_diameter_um: PositiveFloat = Field(200.0, description="particle diameter in µm (blob scale)")
    modulation: Modulation | None = None
    placement: Placement | None = None


class Manifest(_Section):
    """The whole ``acquisition.json``."""

    model_config = ConfigDict(title="dualmode acquisition.json")

    format: Literal["dualmode.acquisition/1"] = Field(description="format and version of this manifest")
    sample: StrictStr | None = Field(None, description="free description of the sample")
    simulated: StrictBool | None = Field(None, description="written by dualmode simulate")
    mri: MRI
    optics: Optics | None = Field(None, description="absent: 13C outputs only, nothing to fuse")


class _FieldError(ValueError):
    """A model-level check that blames one field of the model (``loc`` is extended with it)."""

    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field


def manifest_json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of ``acquisition.json``."""
    from .readers import READERS

    schema = Manifest.model_json_schema()
    fmt = schema["$defs"]["Source"]["properties"]["format"]
    fmt["anyOf"] = [{"enum": sorted(READERS)}, {"type": "null"}]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://dualmode.example/schema/acquisition-1.json"
    return schema


def depth(obj: Any) -> int:
    """Nesting depth of a JSON value (iterative: no recursion on deep input)."""
    best, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        if d > MAX_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return best


def validate_manifest(data: Any, path: str | os.PathLike = MANIFEST) -> Manifest:
    """Validate parsed ``acquisition.json`` content; raise :class:`InputError` for the first problem.

    Parameters
    ----------
    data : object
        The parsed JSON.
    path : path-like
        File named in the error.

    Returns
    -------
    Manifest

    Raises
    ------
    InputError
        ``path [field.path]: problem``.
    """
    if not isinstance(data, dict):
        raise InputError(path, f"top level must be a JSON object, got {_json_type(data)}")
    if data.get("format") != FORMAT:
        raise InputError(path, f"must be {FORMAT!r}, got {data.get('format')!r}", "format")
    if depth(data) > MAX_DEPTH:
        raise InputError(path, f"nested deeper than {MAX_DEPTH} levels; not an acquisition manifest")
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        raise _input_error(path, err) from None


def _input_error(path, err: ValidationError) -> InputError:
    """The most useful error of a pydantic ValidationError as one InputError."""
    errors = err.errors(include_url=False)
    e = min(errors, key=lambda x: x["type"] == "missing")  # a wrong value before a missing sibling
    keys = [str(k) for k in e["loc"] if isinstance(k, str)]
    index = "".join(f"[{k}]" for k in e["loc"] if isinstance(k, int))
    cause = (e.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldError):
        return InputError(path, str(cause), ".".join(keys + [cause.field]))
    if e["type"] == "extra_forbidden":
        return InputError(path, _unknown_key(keys), ".".join(keys))
    where = f"entry {index}: " if index else ""
    return InputError(path, where + _problem(e), ".".join(keys))


def _model_of(field) -> type[BaseModel] | None:
    """The section model of a field annotated ``Section`` or ``Section | None``."""
    ann = field.annotation
    return next((t for t in (getattr(ann, "__args__", None) or (ann,)) if isinstance(t, type)
                 and issubclass(t, BaseModel)), None)


def _unknown_key(keys: list[str]) -> str:
    section: type[BaseModel] = Manifest
    for k in keys[:-1]:
        section = _model_of(section.model_fields[k])
    known = list(section.model_fields)
    close = difflib.get_close_matches(keys[-1], known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {keys[-1]!r}: {hint}known keys here: {', '.join(known)} (prefix your own with 'x-')"


_TYPES = {"float_type": "a number", "int_type": "an integer", "bool_type": "true or false",
          "string_type": "text", "list_type": "a list", "dict_type": "an object", "model_type": "an object",
          "model_attributes_type": "an object", "finite_number": "a finite number"}


def _problem(e: dict) -> str:
    ctx, got = e.get("ctx") or {}, e.get("input")
    shown = f"{_json_type(got)} {got!r}" if e["type"] in _TYPES else repr(got)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    if e["type"] == "missing":
        return "required, missing"
    if e["type"] in _TYPES:
        return f"must be {_TYPES[e['type']]}, got {shown}"
    bounds = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}",
              "less_than_equal": "<= {le}"}
    if e["type"] in bounds:
        return f"must be {bounds[e['type']].format(**{k: f'{v:g}' for k, v in ctx.items()})}, got {shown}"
    if e["type"] in ("too_short", "too_long"):
        bound = f"at least {ctx['min_length']}" if e["type"] == "too_short" else f"at most {ctx['max_length']}"
        return f"must have {bound} entries, got {ctx.get('actual_length')}"
    if e["type"] == "literal_error":
        return f"must be {ctx.get('expected')}, got {shown}"
    if e["type"] == "value_error":
        return str(ctx.get("error", e["msg"]))
    return f"{e['msg'][0].lower()}{e['msg'][1:]}, got {shown}"


def _json_type(v: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "text", list: "list", dict: "object",
            type(None): "null"}.get(type(v), type(v).__name__)


def field_paths(model: type[BaseModel] = Manifest, prefix: str = "") -> dict[str, str]:
    """Every field of the manifest as ``{"mri.flip_angle_deg": description, ...}`` (sections included)."""
    out = {}
    for name, field in model.model_fields.items():
        path = prefix + name
        out[path] = field.description or ""
        sub = _model_of(field)
        if sub is not None:
            out.update(field_paths(sub, path + "."))
    return out
