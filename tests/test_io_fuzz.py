"""Property tests: mutated inputs give a result or InputError, never another exception.

Quick budget (whole file < 30 s); ``tests/fuzz/campaign.py`` runs the long campaign.
"""

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dualmode.io import InputError, parse_jcamp, read_manifest

_spec = importlib.util.spec_from_file_location("fuzz_targets", Path(__file__).parent / "fuzz" / "targets.py")
targets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(targets)

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
EXAMPLES = {"bruker": 40, "varian": 40, "twix": 40, "npz": 30, "ismrmrd": 12, "ome_tiff": 30, "tiff": 30,
            "manifest": 40, "jcamp": 60, "procpar": 60}


@pytest.fixture(scope="module")
def fuzz_targets(tmp_path_factory):
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # corrupt pages are logged, then refused
    with pytest.MonkeyPatch.context() as mp:  # mutated headers: refuse > 512 MB, keep CI memory small
        mp.setattr("dualmode.errors.MAX_ALLOCATION_BYTES", 512 * 1024**2)
        yield targets.build_targets(tmp_path_factory.mktemp("fuzz"))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_seed_inputs_are_valid(fuzz_targets, name):
    tg = fuzz_targets[name]
    for which, seed in tg.files.items():
        assert tg.run(which, seed) == "ok"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_mutated_bytes_never_crash(fuzz_targets, name):
    tg = fuzz_targets[name]

    @settings(max_examples=EXAMPLES[name], **SETTINGS)
    @given(seed=st.integers(0, 2**32 - 1), which=st.sampled_from(sorted(tg.files)))
    def run(seed, which):
        data = targets.mutate(tg.files[which], np.random.default_rng(seed), tg.text)
        assert tg.run(which, data) in ("ok", "input_error")

    run()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**12) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10)
MANIFEST_PATHS = [("format",), ("mri",), ("mri", "source"), ("mri", "source", "path"), ("mri", "source", "format"),
                  ("mri", "polarization"), ("mri", "geometry"), ("mri", "geometry", "matrix"),
                  ("mri", "geometry", "fov_mm"), ("optics",), ("optics", "image"), ("optics", "pixel_size_um")]


@settings(max_examples=150, **SETTINGS)
@given(where=st.sampled_from(MANIFEST_PATHS), value=json_values, delete=st.booleans())
def test_manifest_with_replaced_or_missing_field(tmp_path_factory, where, value, delete):
    man = {"format": "dualmode.acquisition/1",
           "mri": {"source": {"path": "k.npz", "format": "npz"}, "polarization": [1, -1],
                   "geometry": {"matrix": [8, 6, 1], "fov_mm": [16, 12, 3]}},
           "optics": {"image": "img.tif", "pixel_size_um": [0.5, 0.5]}}
    node = man
    for key in where[:-1]:
        node = node[key]
    if delete:
        node.pop(where[-1])
    else:
        node[where[-1]] = value
    folder = tmp_path_factory.mktemp("man")
    (folder / "acquisition.json").write_text(json.dumps(man))
    try:
        read_manifest(folder)
    except InputError as err:
        assert "acquisition.json" in str(err)


@settings(max_examples=300, **SETTINGS)
@given(st.text(alphabet=st.sampled_from(list("##$=()<>@*,. \n-+e0123456789abXY")), max_size=300))
def test_jcamp_parser_on_random_text(text):
    try:
        out = parse_jcamp(text, "acqp")
    except InputError as err:
        assert err.path == "acqp"
    else:
        assert isinstance(out, dict) and out
