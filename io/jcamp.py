"""JCAMP-DX parameter files as written by Bruker ParaVision (``acqp``, ``method``, ``visu_pars``).

A file is a list of records ``##KEY=value`` (``##$KEY`` for Bruker parameters),
values running on until the next ``##`` line; ``$$`` lines are comments.
Values come in four shapes (McDonald & Wilks, Appl. Spectrosc. 42, 151 (1988);
Bruker ParaVision "Parameter Files" manual):

* scalar ``##$NR=4`` or ``##$BYTORDA=little`` -> int, float or str;
* string ``##$PULPROG=( 32 )`` then ``<FLASH.ppg>`` -> str (the last dim is the
  string capacity, the leading dims count the strings);
* array ``##$PVM_Matrix=( 2 )`` then ``128 128`` -> ndarray of that shape, with
  ``@N*(x)`` meaning ``N`` copies of ``x`` (ParaVision 6+ run-length coding);
* struct ``##$ExcPulse1=(1, 5400, 30, Yes, ...)`` -> list of fields, and arrays of
  structs ``( 3 )`` then ``(..) (..) (..)`` -> list of lists.

ParaVision wraps lines at ~80 characters anywhere, even inside ``<strings>``,
so continuation lines join with nothing inside a string and with a space outside.
"""

from __future__ import annotations

import os
import re

import numpy as np

from dualmode.errors import InputError

#: Refuse arrays with more elements than this (declared dims or run-length counts).
MAX_ELEMENTS = 50_000_000

_DIMS = re.compile(r"^\(\s*(\d+(?:\s*,\s*\d+)*)\s*\)")
_RLE = re.compile(r"^@(\d+)\*\((.*)\)$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def read_jcamp(path: str | os.PathLike) -> dict:
    """Read a JCAMP-DX parameter file into ``{name: value}`` (Bruker ``$`` stripped).

    Raises
    ------
    InputError
        Missing/unreadable file, no ``##`` record, or a malformed value (names the parameter).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "parameter file not found" if not os.path.exists(path)
                         else "expected a file, found a directory")
    with open(path, "rb") as f:
        raw = f.read(64 * 1024**2 + 1)
    if len(raw) > 64 * 1024**2:
        raise InputError(path, "parameter file larger than 64 MB, refusing")
    return parse_jcamp(raw.decode("latin-1"), path)


def parse_jcamp(text: str, path: str | os.PathLike | None = None) -> dict:
    """Parse JCAMP-DX text (see the module docstring); ``path`` only names errors."""
    params: dict = {}
    key, first, parts, in_string = None, "", [], False
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.startswith("##"):
            if key is not None:
                params[key] = _value(path, key, first, "".join(parts))
            name, eq, rest = line[2:].partition("=")
            if not eq:
                raise InputError(path, f"record {line[:40]!r} has no '='", name.strip().lstrip("$") or "record")
            key = name.strip().lstrip("$")
            if key == "END":
                key = None
                break
            first, parts, in_string = rest, [], _string_open(rest, False)
        elif line.startswith("$$") or key is None:
            continue
        else:
            parts.append(line if in_string else " " + line)
            in_string = _string_open(line, in_string)
    if key is not None:
        params[key] = _value(path, key, first, "".join(parts))
    if not params:
        raise InputError(path, "no JCAMP-DX '##KEY=value' record found")
    return params


def _string_open(s: str, state: bool) -> bool:
    """Whether a ``<...>`` string is still open after ``s``."""
    for ch in s:
        if ch == "<" and not state:
            state = True
        elif ch == ">" and state:
            state = False
    return state


def _value(path, key: str, first: str, cont: str):
    """Array if the first line is only ``( dims )`` (with a space or data lines after)."""
    m = _DIMS.match(first.strip())
    if m and m.end() == len(first.strip()) and (cont.strip() or first.strip().startswith("( ")):
        dims = tuple(int(d) for d in m.group(1).split(","))
        return _array(path, key, dims, cont.strip())
    text = (first + cont).strip()
    if text.startswith("(") and text.endswith(")"):
        return _struct(path, key, text[1:-1])
    if text.startswith("<") and text.endswith(">") and text.count("<") == 1:
        return text[1:-1]
    return _scalar(text)


def _array(path, key: str, dims: tuple[int, ...], rest: str):
    n = int(np.prod(dims, dtype=np.int64)) if dims else 0
    if n > MAX_ELEMENTS:
        raise InputError(path, f"declared array size {dims} is absurd", key)
    if rest.startswith("<"):
        strings = re.findall(r"<([^>]*)>", rest)
        return strings[0] if len(strings) == 1 and len(dims) == 1 else strings
    if rest.startswith("("):
        return [_struct(path, key, g) for g in _top_level_groups(path, key, rest)]
    tokens = _expand_rle(path, key, rest.split())
    if not tokens:
        return np.zeros(0)
    values = [_scalar(t) for t in tokens]
    if values and all(isinstance(v, (int, float)) for v in values):
        try:
            arr = np.asarray(values, dtype=float if any(isinstance(v, float) for v in values) else np.int64)
        except OverflowError:  # integers beyond int64
            arr = np.asarray(values, dtype=float)
        if arr.size == n and len(dims) > 1:
            arr = arr.reshape(dims)
        return arr
    return values


def _expand_rle(path, key: str, tokens: list[str]) -> list[str]:
    out: list[str] = []
    for t in tokens:
        m = _RLE.match(t)
        if m:
            count = int(m.group(1))
            if count + len(out) > MAX_ELEMENTS:
                raise InputError(path, f"run-length count {count} is absurd", key)
            out.extend([m.group(2)] * count)
        else:
            out.append(t)
    return out


def _top_level_groups(path, key: str, text: str) -> list[str]:
    """Split ``(a) (b, (c)) ...`` into the inner texts of its top-level groups."""
    groups, depth, start, in_string = [], 0, 0, False
    for i, ch in enumerate(text):
        if ch == "<":
            in_string = True
        elif ch == ">":
            in_string = False
        elif in_string:
            continue
        elif ch == "(":
            if depth == 0:
                start = i + 1
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise InputError(path, "unbalanced ')' in value", key)
            if depth == 0:
                groups.append(text[start:i])
    if depth != 0:
        raise InputError(path, "unbalanced '(' in value", key)
    return groups


def _struct(path, key: str, inner: str) -> list:
    """Fields of one ``( ... )`` struct, split on top-level commas."""
    fields, depth, buf, in_string = [], 0, [], False
    for ch in inner:
        if ch == "<":
            in_string = True
        elif ch == ">":
            in_string = False
        elif not in_string and ch == "(":
            depth += 1
        elif not in_string and ch == ")":
            depth -= 1
            if depth < 0:
                raise InputError(path, "unbalanced ')' in struct", key)
        if ch == "," and depth == 0 and not in_string:
            fields.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    fields.append("".join(buf).strip())
    out = []
    for fld in fields:
        if fld.startswith("(") and fld.endswith(")"):
            out.append(_struct(path, key, fld[1:-1]))
        elif fld.startswith("<") and fld.endswith(">") and fld.count("<") == 1:
            out.append(fld[1:-1])
        else:
            out.append(_scalar(fld))
    return out


def _scalar(text: str):
    text = text.strip()
    if _NUMBER.match(text):
        try:
            return int(text)
        except ValueError:
            return float(text)
    return text


class Enum(str):
    """A symbolic (enum) value, written bare (``##$BYTORDA=little``) instead of as ``<string>``."""


def format_jcamp(params: dict, title: str = "Parameter List") -> str:
    """Write ``params`` as Bruker JCAMP-DX text (inverse of :func:`parse_jcamp`).

    Scalars and :class:`Enum` become ``##$KEY=value``, str values ``( n )`` + ``<str>``, 1-D/N-D arrays
    ``( dims )`` + values, lists of str ``( n, 64 )`` + ``<a> <b>``, lists of
    numbers/strings (structs) ``(a, b, <c>)``.
    """
    lines = [f"##TITLE={title}", "##JCAMPDX=4.24", "##DATATYPE=Parameter Values",
             "##ORIGIN=dualmode"]

    def field(v) -> str:
        if isinstance(v, str):
            return f"<{v}>"
        if isinstance(v, (list, tuple)):
            return "(" + ", ".join(field(x) for x in v) + ")"
        return _fmt_number(v)

    for key, v in params.items():
        if isinstance(v, Enum):
            lines.append(f"##${key}={v}")
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Enum) for x in v):
            lines += [f"##${key}=( {len(v)} )", " ".join(v)]
        elif isinstance(v, str):
            lines += [f"##${key}=( {max(len(v) + 1, 8)} )", f"<{v}>"]
        elif isinstance(v, np.ndarray):
            dims = ", ".join(str(d) for d in v.shape)
            lines += [f"##${key}=( {dims} )", " ".join(_fmt_number(x) for x in v.ravel())]
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
            lines += [f"##${key}=( {len(v)}, 64 )", " ".join(f"<{x}>" for x in v)]
        elif isinstance(v, (list, tuple)):
            lines.append(f"##${key}={field(list(v))}")
        else:
            lines.append(f"##${key}={_fmt_number(v) if not isinstance(v, bool) else ('Yes' if v else 'No')}")
    lines.append("##END=")
    return "\n".join(lines) + "\n"


def _fmt_number(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "Yes" if v else "No"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)
