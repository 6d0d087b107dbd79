"""Fuzz targets shared by ``tests/test_io_fuzz.py`` (hypothesis, quick) and
``tests/fuzz/campaign.py`` (long random campaign).

Each target owns a seed input (a valid file or folder built from known data or the
committed real files), a mutator of its bytes and a call of the public reader. A
target passes when the call returns normally or raises :class:`InputError`;
anything else is a crash.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from dualmode.io import (InputError, KSpace, KSpaceHeader, parse_jcamp, read_kspace, read_manifest, read_optical,
                         read_procpar, write_ismrmrd, write_npz, write_ome_tiff)
from dualmode.simulate import write_bruker, write_twix

DATA = Path(__file__).resolve().parent.parent / "data"


def _ksp(n_rep=2, n_coils=2):
    rng = np.random.default_rng(0)
    shape = (n_rep, n_coils, 8, 6, 1)
    data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    return KSpace(data, KSpaceHeader(matrix=(8, 6, 1), fov_mm=(16.0, 12.0, 3.0), tr_ms=5.0, te_ms=1.0,
                                     flip_angle_deg=7.0, nucleus="13C", frequency_hz=75.4e6,
                                     n_repetitions=n_rep, n_coils=n_coils))


class Target:
    """One reader under fuzz: ``files`` maps a file name inside ``root`` to seed bytes."""

    def __init__(self, name: str, root: Path, files: dict[str, bytes], call, text: bool = False):
        self.name, self.root, self.files, self.call, self.text = name, root, files, call, text

    def run(self, which: str, data: bytes) -> str:
        """Write ``data`` as file ``which`` (others at their seed), call the reader.

        Returns ``"ok"`` or ``"input_error"``; any other exception propagates (a crash).
        """
        for fname, seed in self.files.items():
            (self.root / fname).write_bytes(data if fname == which else seed)
        try:
            self.call(self.root)
        except InputError as err:
            assert str(err)  # one non-empty message
            return "input_error"
        return "ok"


def build_targets(workdir: str | os.PathLike | None = None) -> dict[str, Target]:
    """Create seed inputs under ``workdir`` (a new temp dir by default)."""
    base = Path(workdir or tempfile.mkdtemp(prefix="dualmode-fuzz-"))
    targets: dict[str, Target] = {}

    def folder(name):
        d = base / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    def seeds(d: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}

    d = folder("bruker")
    write_bruker(d, _ksp(), "GO_32BIT_SGN_INT", steps1=np.array([0, -3, 1, -2, 2, -1]))
    targets["bruker"] = Target("bruker", d, seeds(d), lambda r: read_kspace(r, "bruker"))

    d = folder("varian.fid")
    for f in ("fid", "procpar"):
        shutil.copy(DATA / "varian_13c_1d.fid" / f, d / f)
    targets["varian"] = Target("varian", d, seeds(d), lambda r: read_kspace(r, "varian"))

    d = folder("twix")
    write_twix(d / "meas.dat", _ksp(1, 1))
    targets["twix"] = Target("twix", d, seeds(d), lambda r: read_kspace(r / "meas.dat", "twix"))

    d = folder("npz")
    write_npz(d / "k.npz", _ksp())
    targets["npz"] = Target("npz", d, seeds(d), lambda r: read_kspace(r / "k.npz", "npz"))

    d = folder("ismrmrd")
    write_ismrmrd(d / "k.h5", _ksp(1, 1))
    targets["ismrmrd"] = Target("ismrmrd", d, seeds(d), lambda r: read_kspace(r / "k.h5", "ismrmrd"))

    d = folder("tiff")
    write_ome_tiff(d / "img.ome.tif", np.arange(8 * 6 * 2, dtype=np.uint16).reshape(8, 6, 2), (0.5, 0.5, 2.0))
    import tifffile

    plain = tifffile.imread(DATA / "stardist" / "img2d.tif")[:32, :32]
    tifffile.imwrite(d / "plain.tif", plain)
    targets["ome_tiff"] = Target("ome_tiff", d, {"img.ome.tif": (d / "img.ome.tif").read_bytes()},
                                 lambda r: read_optical(r / "img.ome.tif"))
    targets["tiff"] = Target("tiff", d, {"plain.tif": (d / "plain.tif").read_bytes()},
                             lambda r: read_optical(r / "plain.tif", pixel_size_um=[0.5, 0.5]))

    d = folder("acq")
    write_npz(d / "k.npz", _ksp())
    man = {"format": "dualmode.acquisition/1",
           "mri": {"source": {"path": "k.npz", "format": "npz"}, "polarization": [1, -1],
                   "geometry": {"matrix": [8, 6, 1], "fov_mm": [16, 12, 3]}, "tr_ms": 5.0},
           "optics": {"image": "img.ome.tif", "pixel_size_um": [0.5, 0.5, 2.0],
                      "placement": {"center_mm": [0, 0, 0], "uncertainty_mm": 2.0}}}
    (d / "acquisition.json").write_text(json.dumps(man, indent=1))
    targets["manifest"] = Target("manifest", d, {"acquisition.json": (d / "acquisition.json").read_bytes()},
                                 read_manifest, text=True)

    d = folder("jcamp")
    (d / "acqp").write_bytes(targets["bruker"].files["acqp"])
    targets["jcamp"] = Target("jcamp", d, {"acqp": targets["bruker"].files["acqp"]},
                              lambda r: parse_jcamp((r / "acqp").read_bytes().decode("latin-1"), r / "acqp"),
                              text=True)
    targets["procpar"] = Target("procpar", targets["varian"].root, {"procpar": targets["varian"].files["procpar"]},
                                lambda r: read_procpar(r / "procpar"), text=True)
    return targets


_TOKENS = [b"0", b"-1", b"1e308", b"nan", b"inf", b"99999999999", b"-", b"(", b")", b"<", b">", b"@9999*(0)",
           b"##$", b"\n", b'"', b"{", b"}", b"[", b"]", b",", b":", b"null", b"1.5", b"( 0 )", b"$$"]


def mutate(seed: bytes, rng: np.random.Generator, text: bool = False) -> bytes:
    """1-4 random edits: bit flips, byte overwrites, truncation, chunk delete/duplicate,
    numeric/token splices (text formats) and integer field overwrites (binary formats)."""
    buf = bytearray(seed)
    for _ in range(int(rng.integers(1, 5))):
        n = len(buf)
        op = int(rng.integers(0, 8))
        pos = int(rng.integers(0, max(n, 1)))
        if op == 0 and n:
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and n:
            buf[pos] = int(rng.integers(0, 256))
        elif op == 2:
            del buf[pos:]
        elif op == 3 and n:
            del buf[pos:pos + int(rng.integers(1, 64))]
        elif op == 4 and n:
            chunk = buf[pos:pos + int(rng.integers(1, 256))]
            buf[pos:pos] = chunk
        elif op == 5 or (op == 6 and text):
            tok = _TOKENS[int(rng.integers(0, len(_TOKENS)))]
            if text and n:  # replace a number or word at pos
                end = pos
                while end < n and buf[end:end + 1].isalnum():
                    end += 1
                buf[pos:end] = tok
            else:
                buf[pos:pos] = tok
        elif op in (6, 7) and n >= 4:
            val = rng.choice([0, 1, -1, 2**31 - 1, -(2**31), 2**16, 2**24, int(rng.integers(-2**31, 2**31))])
            buf[pos:pos + 4] = int(val).to_bytes(4, "little", signed=True)[: max(0, min(4, n - pos))]
    return bytes(buf)
