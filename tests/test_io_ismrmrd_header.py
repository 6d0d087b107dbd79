"""The ISMRMRD XML header read with the standard library (io/ismrmrd_header.py) against the
``ismrmrd`` package's own parser (xsdata dataclasses of the ISMRMRD schema)."""

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest

import ismrmrd.xsd as x
from dualmode.io import InputError, KSpace, KSpaceHeader, read_ismrmrd, write_ismrmrd
from dualmode.io.ismrmrd_header import CHILDREN, REQUIRED, parse_header
from dualmode.io.ismrmrd_io import _header_xml

#: the ISMRMRD project's example header (schema/ismrmrd_example.xml, ISMRMRD licence: LICENSE.ismrmrd.txt)
EXAMPLE = (Path(__file__).parent / "data" / "ismrmrd" / "ismrmrd_example.xml").read_text()


def _by_library(xml: str) -> dict:
    """The same values through ``ismrmrd.xsd.CreateFromDocument`` (the reference)."""
    hdr = x.CreateFromDocument(xml)
    enc, seq, users = hdr.encoding[0], hdr.sequenceParameters, hdr.userParameters
    ms, fov = enc.encodedSpace.matrixSize, enc.encodedSpace.fieldOfView_mm

    def first(values):
        return float(values[0]) if values else None

    return {"matrix": (int(ms.x), int(ms.y), int(ms.z)), "fov_mm": (float(fov.x), float(fov.y), float(fov.z)),
            "trajectory": str(getattr(enc.trajectory, "value", enc.trajectory)).lower(),
            "tr_ms": first(seq.TR) if seq else None, "te_ms": first(seq.TE) if seq else None,
            "flip_angle_deg": first(seq.flipAngle_deg) if seq else None,
            "h1_hz": int(hdr.experimentalConditions.H1resonanceFrequency_Hz),
            "strings": {p.name: p.value for p in (users.userParameterString if users else [])},
            "doubles": {p.name: float(p.value) for p in (users.userParameterDouble if users else [])}}


def _rich() -> str:
    """The example with several TE and flip angles, a second encoding and every user parameter kind."""
    users = ("<userParameters><userParameterLong><name>n</name><value>7</value></userParameterLong>"
             "<userParameterDouble><name>frequency_hz</name><value>32.1e6</value></userParameterDouble>"
             "<userParameterDouble><name>b</name><value>-INF</value></userParameterDouble>"
             "<userParameterString><name>nucleus</name><value>13C</value></userParameterString>"
             "<userParameterBase64><name>blob</name><value>QUJD</value></userParameterBase64></userParameters>")
    second = ("<encoding><encodedSpace><matrixSize><x>9</x></matrixSize><fieldOfView_mm><x>1</x><y>1</y><z>1</z>"
              "</fieldOfView_mm></encodedSpace><reconSpace><matrixSize/><fieldOfView_mm><x>1</x><y>1</y><z>1</z>"
              "</fieldOfView_mm></reconSpace><encodingLimits/><trajectory>radial</trajectory></encoding>")
    xml = EXAMPLE.replace("<TE>2.35</TE>", "<TE>2.35</TE><TE>4.35</TE><flipAngle_deg>12.5</flipAngle_deg>"
                                           "<flipAngle_deg>90</flipAngle_deg>")
    return xml.replace("</sequenceParameters>", "</sequenceParameters>" + users).replace(
        "<sequenceParameters>", second + "<sequenceParameters>")


def _written(**kw) -> str:
    h = dict(matrix=(16, 12, 4), fov_mm=(16.0, 12.5, 4.0), n_repetitions=2, n_coils=3)
    return _header_xml(KSpaceHeader(**{**h, **kw}))


HEADERS = {
    "official example": EXAMPLE,
    "rich": _rich(),
    "dualmode 13C": _written(tr_ms=10.0, flip_angle_deg=7.67, frequency_hz=75.47e6),
    "dualmode 1H thermal": _written(nucleus="1H", te_ms=1.5, frequency_hz=300.1e6, matrix=(8, 8, 1)),
    "dualmode radial": _written(trajectory="radial"),
}


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_values_equal_the_ismrmrd_packages_parse(name):
    xml = HEADERS[name]
    assert parse_header(xml, "k.h5") == _by_library(xml)
    assert parse_header(xml.encode(), "k.h5") == _by_library(xml)  # h5py may give bytes


def test_rich_header_values_are_the_known_ones():
    h = parse_header(_rich(), "k.h5")
    assert h["matrix"] == (256, 140, 80) and h["fov_mm"] == (600.0, 328.153125, 160.0)
    assert (h["tr_ms"], h["te_ms"], h["flip_angle_deg"], h["h1_hz"]) == (4.6, 2.35, 12.5, 63642459)
    assert h["strings"] == {"nucleus": "13C"} and h["doubles"] == {"frequency_hz": 32.1e6, "b": -np.inf}


def test_element_names_are_the_ismrmrd_schemas():
    """CHILDREN and REQUIRED are the fields of the ismrmrd package's schema classes."""
    classes = {"ismrmrdHeader": x.ismrmrdHeader, "encoding": x.encodingType, "encodedSpace": x.encodingSpaceType,
               "matrixSize": x.matrixSizeType, "fieldOfView_mm": x.fieldOfViewMm,
               "experimentalConditions": x.experimentalConditionsType,
               "sequenceParameters": x.sequenceParametersType, "userParameters": x.userParametersType,
               "userParameterDouble": x.userParameterDoubleType, "userParameterString": x.userParameterStringType}
    assert set(classes) == set(CHILDREN)
    for kind, cls in classes.items():
        fields = dataclasses.fields(cls)
        assert set(CHILDREN[kind]) == {f.metadata.get("name", f.name) for f in fields}, kind
        required = {f.name for f in fields if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        assert set(REQUIRED.get(kind, ())) == required, kind


def _bad(old: str, new: str, count: int = 1) -> str:
    assert old in EXAMPLE
    return EXAMPLE.replace(old, new, count)


BAD = [  # (header, field, message part): the ismrmrd package keeps the first three as text (a later crash)
    (_bad("<x>256</x>", "<x>abc</x>"), "encoding.encodedSpace.matrixSize.x", "must be an integer, got 'abc'"),
    (_bad("<TR>4.6</TR>", "<TR>fast</TR>"), "sequenceParameters.TR", "must be a number"),
    (_bad("63642459", "6.4e7"), "experimentalConditions.H1resonanceFrequency_Hz", "must be an integer"),
    (_bad("<matrixSize>", "<matrixSiz>").replace("</matrixSize>", "</matrixSiz>", 1), "encoding.encodedSpace",
     "unknown element <matrixSiz> in <encodedSpace>"),
    (_bad("<y>140</y>", "<q>140</q>"), "encoding.encodedSpace.matrixSize", "unknown element <q>"),
    (_bad("<sequenceParameters>", "<sequenceParameter>").replace("</sequenceParameters>", "</sequenceParameter>"),
     "ismrmrdHeader", "unknown element <sequenceParameter>"),
    (_bad("<reconSpace>", "<!--").replace("</reconSpace>", "-->"), "encoding", "<encoding> has no <reconSpace>"),
    (_bad("<z>160</z>", ""), "encoding.encodedSpace.fieldOfView_mm", "has no <z>"),
    (_bad("<experimentalConditions>", "<!--").replace("</experimentalConditions>", "-->"), "ismrmrdHeader",
     "has no <experimentalConditions>"),
    (_bad('xmlns="http://www.ismrm.org/ISMRMRD"', 'xmlns="urn:other"'), "xml", "root element"),
    (_bad("</ismrmrdHeader>", ""), "xml", "ParseError"),
    (EXAMPLE[:EXAMPLE.index("<encoding>")] + EXAMPLE[EXAMPLE.index("</encoding>") + 11:], "encoding",
     "has no encoding"),
]


@pytest.mark.parametrize("xml, field, part", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_header_is_one_input_error_naming_file_and_element(xml, field, part):
    with pytest.raises(InputError) as err:
        parse_header(xml, "scan/k.h5")
    assert err.value.field == field and part in str(err.value)
    assert str(err.value).startswith(f"scan/k.h5 [{field}]: ")


def test_read_ismrmrd_refuses_a_bad_header_naming_the_file(tmp_path):
    h = KSpaceHeader(matrix=(8, 6, 1), fov_mm=(16.0, 12.0, 3.0), n_repetitions=2)
    path = tmp_path / "k.h5"
    write_ismrmrd(path, KSpace(np.ones((2, 1, 8, 6, 1), np.complex64), h))
    assert read_ismrmrd(path).header.matrix == (8, 6, 1)
    with h5py.File(path, "a") as f:
        xml = f["dataset/xml"][0].decode()
        f["dataset/xml"][0] = xml.replace("<y>6</y>", "<y>six</y>", 1).encode()
    with pytest.raises(InputError, match=r"k\.h5 \[encoding\.encodedSpace\.matrixSize\.y\]: .*'six'"):
        read_ismrmrd(path)
