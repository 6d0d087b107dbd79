"""The values dualmode reads from an ISMRMRD XML header, parsed with the standard library.

The ``ismrmrd`` package parses a header into xsdata dataclasses of the whole ISMRMRD schema
(``ismrmrd.xsd``): about 0.1 s of imports (xsdata, lxml, the schema classes) in every process
that reads a file, and the class metadata rebuilt at each parse, for the dozen values dualmode
uses. :func:`parse_header` reads those values with :mod:`xml.etree.ElementTree` and checks
what it reads more strictly than that parser does: every element on the way to a value must
be one the schema allows there (a misspelled ``<matrixSiz>`` is refused, not defaulted), the
schema's required elements must be present, and a number that does not parse is an
:class:`~dualmode.errors.InputError` naming the element (xsdata keeps such text as a string,
with a warning). Elements dualmode does not read (``subjectInformation``,
``encodingLimits``, ...) are not inspected. ``tests/test_io_ismrmrd_header.py`` checks every value
against the ``ismrmrd`` package's own parser.

References
----------
ISMRMRD schema: https://github.com/ismrmrd/ismrmrd/blob/master/schema/ismrmrd.xsd

Examples
--------
>>> xml = ('<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><experimentalConditions>'
...        '<H1resonanceFrequency_Hz>300000000</H1resonanceFrequency_Hz></experimentalConditions>'
...        '<encoding><encodedSpace><matrixSize><x>64</x><y>32</y></matrixSize><fieldOfView_mm>'
...        '<x>12.8</x><y>6.4</y><z>1</z></fieldOfView_mm></encodedSpace><reconSpace/><encodingLimits/>'
...        '<trajectory>cartesian</trajectory></encoding></ismrmrdHeader>')
>>> h = parse_header(xml, "k.h5")
>>> h["matrix"], h["fov_mm"], h["trajectory"], h["tr_ms"]
((64, 32, 1), (12.8, 6.4, 1.0), 'cartesian', None)
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any, Callable

from dualmode.errors import InputError

NS = "{http://www.ismrm.org/ISMRMRD}"
#: child elements the ISMRMRD schema allows in each element dualmode descends into
CHILDREN = {
    "ismrmrdHeader": ("version", "subjectInformation", "studyInformation", "measurementInformation",
                      "acquisitionSystemInformation", "experimentalConditions", "encoding",
                      "sequenceParameters", "userParameters", "waveformInformation"),
    "encoding": ("encodedSpace", "reconSpace", "encodingLimits", "trajectory", "trajectoryDescription",
                 "parallelImaging", "echoTrainLength"),
    "encodedSpace": ("matrixSize", "fieldOfView_mm"),
    "matrixSize": ("x", "y", "z"),
    "fieldOfView_mm": ("x", "y", "z"),
    "experimentalConditions": ("H1resonanceFrequency_Hz",),
    "sequenceParameters": ("TR", "TE", "TI", "flipAngle_deg", "sequence_type", "echo_spacing",
                           "diffusionDimension", "diffusion", "diffusionScheme"),
    "userParameters": ("userParameterLong", "userParameterDouble", "userParameterString", "userParameterBase64"),
    "userParameterDouble": ("name", "value"),
    "userParameterString": ("name", "value"),
}
#: children the schema requires (``minOccurs`` 1) in those elements
REQUIRED = {
    "ismrmrdHeader": ("experimentalConditions",),
    "encoding": ("encodedSpace", "reconSpace", "encodingLimits", "trajectory"),
    "encodedSpace": ("matrixSize", "fieldOfView_mm"),
    "fieldOfView_mm": ("x", "y", "z"),
    "experimentalConditions": ("H1resonanceFrequency_Hz",),
    "userParameterDouble": ("name", "value"),
    "userParameterString": ("name", "value"),
}


class _Reader:
    """Children of checked elements by local name; errors name the file and the element path."""

    def __init__(self, path: str):
        self.path = path

    def children(self, elem: ET.Element, where: str) -> dict[str, list[ET.Element]]:
        kind = where.rsplit(".", 1)[-1]
        out: dict[str, list[ET.Element]] = {}
        for child in elem:
            name = child.tag[len(NS):] if isinstance(child.tag, str) and child.tag.startswith(NS) else None
            if name not in CHILDREN[kind]:
                raise InputError(self.path, f"invalid ISMRMRD XML header: unknown element {_shown(child.tag)} in "
                                            f"<{kind}>", where)
            out.setdefault(name, []).append(child)
        missing = [n for n in REQUIRED.get(kind, ()) if n not in out]
        if missing:
            raise InputError(self.path, f"invalid ISMRMRD XML header: <{kind}> has no <{missing[0]}>", where)
        return out

    def values(self, elems: list[ET.Element], where: str, kind: Callable[[str], Any]) -> list:
        """The text of each element of ``elems`` as ``kind`` (int, float or str)."""
        out = []
        for e in elems:
            text = e.text or ""
            if kind is str:
                out.append(text)
                continue
            try:
                out.append(kind(text.strip()))
            except ValueError:
                what = {int: "an integer", float: "a number"}[kind]
                raise InputError(self.path, f"ISMRMRD header: <{where.rsplit('.', 1)[-1]}> must be {what}, "
                                            f"got {text[:40]!r}", where) from None
        return out


def _shown(tag) -> str:
    return f"<{tag.replace(NS, '')}>" if isinstance(tag, str) else "(comment or processing instruction)"


def parse_header(xml: str | bytes, path: str | os.PathLike) -> dict:
    """The header values :func:`dualmode.io.read_ismrmrd` uses.

    Parameters
    ----------
    xml : str or bytes
        The ``/dataset/xml`` string of the file.
    path : path-like
        File named in errors.

    Returns
    -------
    dict
        ``matrix`` and ``fov_mm`` (first encoding's encoded space; a missing matrix entry is
        1, the schema's default), ``trajectory`` (lower case), ``tr_ms``, ``te_ms``,
        ``flip_angle_deg`` (first value or None), ``h1_hz`` (``H1resonanceFrequency_Hz``),
        ``strings`` and ``doubles`` (user parameters by name; a repeated name: the last).

    Raises
    ------
    InputError
        Not XML, not an ISMRMRD header, no encoding, an unknown or missing element on the way
        to a value, or a number that does not parse (the field is the element path).
    """
    path = os.fspath(path)
    read = _Reader(path)
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise InputError(path, f"invalid ISMRMRD XML header (ParseError: {err})", "xml") from None
    if root.tag != NS + "ismrmrdHeader":
        raise InputError(path, f"invalid ISMRMRD XML header: root element {_shown(root.tag)}, not "
                               f"<ismrmrdHeader> of namespace {NS[1:-1]}", "xml")
    top = read.children(root, "ismrmrdHeader")
    if "encoding" not in top:
        raise InputError(path, "ISMRMRD header has no encoding", "encoding")
    out = _encoding(read, top["encoding"][0])
    h1 = read.children(top["experimentalConditions"][0], "experimentalConditions")
    out["h1_hz"] = read.values(h1["H1resonanceFrequency_Hz"], "experimentalConditions.H1resonanceFrequency_Hz",
                               int)[0]
    out.update(_sequence(read, top.get("sequenceParameters")), **_user(read, top.get("userParameters")))
    return out


def _encoding(read: _Reader, enc: ET.Element) -> dict:
    parts = read.children(enc, "encoding")
    space = read.children(parts["encodedSpace"][0], "encoding.encodedSpace")
    size = read.children(space["matrixSize"][0], "encoding.encodedSpace.matrixSize")
    fov = read.children(space["fieldOfView_mm"][0], "encoding.encodedSpace.fieldOfView_mm")
    where = "encoding.encodedSpace."
    return {
        "matrix": tuple(read.values(size[a], where + "matrixSize." + a, int)[0] if a in size else 1 for a in "xyz"),
        "fov_mm": tuple(read.values(fov[a], where + "fieldOfView_mm." + a, float)[0] for a in "xyz"),
        "trajectory": (parts["trajectory"][0].text or "").strip().lower(),
    }


def _sequence(read: _Reader, seq: list[ET.Element] | None) -> dict:
    found = read.children(seq[0], "sequenceParameters") if seq else {}
    first = {}
    for key, name in (("tr_ms", "TR"), ("te_ms", "TE"), ("flip_angle_deg", "flipAngle_deg")):
        values = read.values(found.get(name, []), "sequenceParameters." + name, float)
        first[key] = values[0] if values else None
    return first


def _user(read: _Reader, users: list[ET.Element] | None) -> dict:
    params = read.children(users[0], "userParameters") if users else {}
    out: dict[str, dict] = {"strings": {}, "doubles": {}}
    for key, name, kind in (("strings", "userParameterString", str), ("doubles", "userParameterDouble", float)):
        where = "userParameters." + name
        for p in params.get(name, []):
            fields = read.children(p, where)
            label = read.values(fields["name"], where + ".name", str)[0]
            out[key][label] = read.values(fields["value"], where + ".value", kind)[0]
    return out
