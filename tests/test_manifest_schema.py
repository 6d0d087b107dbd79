"""The acquisition.json schema: one error line naming file and field for every kind of mistake."""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

from dualmode.errors import InputError
from dualmode.io import read_manifest
from dualmode.io.schema import field_paths, manifest_json_schema, validate_manifest

DOC = Path(__file__).parents[1] / "docs" / "acquisition-format.md"
EYE = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
BASE = {
    "format": "dualmode.acquisition/1",
    "mri": {"source": {"path": "mri/kspace.h5", "format": "ismrmrd"}, "polarization": [1, -1, 1, -1],
            "flip_angle_deg": 5.0, "tr_ms": 10.0, "frequency_hz": 75.47e6,
            "geometry": {"matrix": [64, 64, 1], "fov_mm": [12.8, 12.8, 1.0], "orientation": EYE}},
    "optics": {"image": "optics/f.ome.tif", "particle_diameter_um": 200.0,
               "placement": {"center_mm": [0, 0, 0], "uncertainty_mm": 1.5}},
}


def _set(path: str, value):
    man = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = man
    for k in parents:
        node = node[k]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return man


_DELETE = object()
ROT45 = [[0.7071, -0.7071, 0], [0.7071, 0.7071, 0], [0, 0, 1]]  # rounded as a user writes it

BAD = [  # (field to set, value, field named in the error, words in the message)
    ("mri.flipangle_deg", 5, "mri.flipangle_deg", "did you mean 'flip_angle_deg'"),
    ("mri.geometery", {}, "mri.geometery", "did you mean 'geometry'"),
    ("optics.pixelsize_um", [1, 1], "optics.pixelsize_um", "did you mean 'pixel_size_um'"),
    ("optics.placement.centre_mm", [0, 0, 0], "optics.placement.centre_mm", "did you mean 'center_mm'"),
    ("mri.flip_angle_deg", "five", "mri.flip_angle_deg", "must be a number, got text 'five'"),
    ("mri.flip_angle_deg", 90, "mri.flip_angle_deg", "< 90"),
    ("mri.flip_angle_deg", 0, "mri.flip_angle_deg", "> 0"),
    ("mri.flip_angle_deg", -5, "mri.flip_angle_deg", "> 0"),
    ("mri.tr_ms", -10, "mri.tr_ms", "> 0"),
    ("mri.tr_ms", float("nan"), "mri.tr_ms", "finite"),
    ("mri.frequency_hz", "75 MHz", "mri.frequency_hz", "must be a number"),
    ("mri.polarization", [True, False], "mri.polarization", "integer, got boolean"),
    ("mri.polarization", [1, 2, -1], "mri.polarization", "+1 or -1"),
    ("mri.polarization", [1, 1, 1], "mri.polarization", "both"),
    ("mri.polarization", "+-+-", "mri.polarization", "must be a list"),
    ("mri.polarization", _DELETE, "mri.polarization", "required"),
    ("mri.hyperpolarized", "yes", "mri.hyperpolarized", "true or false"),
    ("mri.geometry.matrix", [64, 64.5, 1], "mri.geometry.matrix", "integer"),
    ("mri.geometry.matrix", [64, 64], "mri.geometry.matrix", "must have at least 3 entries, got 2"),
    ("mri.geometry.fov_mm", [12.8, 0, 1], "mri.geometry.fov_mm", "> 0"),
    ("mri.geometry.orientation", [[1, 0, 0], [0, 2, 0], [0, 0, 1]], "mri.geometry.orientation", "orthonormal"),
    ("mri.source.format", "philips", "mri.source.format", "unknown format"),
    ("mri.source", "mri/kspace.h5", "mri.source", "must be an object"),
    ("optics.particle_diameter_um", 0, "optics.particle_diameter_um", "> 0"),
    ("optics.particle_diameter_um", -200, "optics.particle_diameter_um", "> 0"),
    ("optics.placement.uncertainty_mm", -1.5, "optics.placement.uncertainty_mm", "> 0"),
    ("optics.placement.orientation", [[1, 0, 0], [1, 0, 0], [0, 0, 1]], "optics.placement.orientation",
     "orthonormal"),
    ("optics.placement.orientation_uncertainty_deg", 0, "optics.placement.orientation_uncertainty_deg", "> 0"),
    ("optics.pixel_size_um", [1], "optics.pixel_size_um", "at least 2 entries, got 1"),
    ("optics.image", _DELETE, "optics.image", "required"),
    ("format", "dualmode.acquisition/2", "format", "dualmode.acquisition/1"),
]


@pytest.mark.parametrize("path, value, field, words", BAD, ids=[f"{b[0]}={b[1]!r}"[:40] for b in BAD])
def test_bad_field_names_file_and_field(tmp_path, path, value, field, words):
    (tmp_path / "acquisition.json").write_text(json.dumps(_set(path, value)))
    with pytest.raises(InputError) as err:
        read_manifest(tmp_path)
    msg = str(err.value)
    assert err.value.field == field, msg
    assert msg.startswith(f"{tmp_path / 'acquisition.json'} [{field}]: "), msg
    assert words in msg and "\n" not in msg, msg


def test_valid_variants_accepted(tmp_path):
    assert validate_manifest(BASE).mri.hyperpolarized is True
    thermal = _set("mri.hyperpolarized", False)
    thermal["mri"]["flip_angle_deg"] = 120.0
    assert validate_manifest(thermal).mri.flip_angle_deg == 120.0
    man = _set("optics.placement.orientation", ROT45)
    man["optics"]["placement"]["orientation_uncertainty_deg"] = 10
    man["mri"]["sampling"] = "plan.json"
    man["x-operator"] = {"name": "AB"}  # the user's own keys
    out = validate_manifest(man)
    assert out.optics.placement.orientation_uncertainty_deg == 10 and out.mri.sampling == "plan.json"
    del man["mri"]["geometry"]  # optional: the raw format carries the geometry
    assert validate_manifest(man).mri.geometry is None
    (tmp_path / "acquisition.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(BASE).encode())  # UTF-8 BOM
    assert read_manifest(tmp_path)["mri"]["tr_ms"] == 10.0


def test_deep_nesting_refused_cleanly(tmp_path):
    for text in ("[" * 100000 + "]" * 100000, json.dumps(_set("mri.x-deep", json.loads("[" * 40 + "]" * 40)))):
        (tmp_path / "acquisition.json").write_text(text)
        with pytest.raises(InputError, match="nested|top level") as err:
            read_manifest(tmp_path)
        assert "acquisition.json" in str(err.value)


def test_json_schema_agrees_with_models():
    """The printed JSON Schema (checked by jsonschema, an independent validator) accepts and refuses alike."""
    schema = manifest_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(BASE))
    example = json.loads(re.search(r"```json\n(.*?)```", DOC.read_text(), re.S).group(1))
    assert not list(validator.iter_errors(example))
    validate_manifest(example)
    for path, value, *_ in BAD:
        man = _set(path, value)
        if isinstance(value, float) or path.endswith(".orientation"):
            continue  # NaN (not JSON) and orthonormality: checks beyond JSON Schema
        assert list(validator.iter_errors(man)), path


def test_docs_table_matches_schema():
    table = [line for line in DOC.read_text().splitlines() if line.startswith("| `")]
    documented = {p for line in table for p in re.findall(r"`([a-z0-9_.]+)`", line.split("|")[1])}
    paths = set(field_paths())
    sections = {"mri", "mri.source", "optics.modulation", "optics.placement"}  # documented through their fields
    assert documented - paths == set(), "documented but not in the schema"
    assert paths - documented - sections == set(), "in the schema but not documented"
