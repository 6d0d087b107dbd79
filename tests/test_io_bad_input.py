"""Bad input: each case gives one clear InputError naming the file and the field."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from dualmode.io import (InputError, KSpace, KSpaceHeader, load_acquisition, read_kspace, read_manifest,
                         read_optical, write_npz)
from dualmode.simulate import write_bruker, write_twix

DATA = Path(__file__).parent / "data"


def _ksp(n_rep=2):
    data = np.ones((n_rep, 1, 8, 6, 1), np.complex64)
    return KSpace(data, KSpaceHeader(matrix=(8, 6, 1), fov_mm=(16.0, 12.0, 3.0), n_repetitions=n_rep))


def _bruker(tmp_path, fmt="GO_32BIT_SGN_INT") -> Path:
    write_bruker(tmp_path / "exp", _ksp(), fmt)
    return tmp_path / "exp"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _acq(tmp_path, polarization="absent", **mri) -> Path:
    folder = tmp_path / "acq"
    folder.mkdir()
    write_npz(folder / "k.npz", _ksp(2))
    sec = {"source": {"path": "k.npz", "format": "npz"}, **mri}
    if polarization != "absent":
        sec["polarization"] = polarization
    (folder / "acquisition.json").write_text(json.dumps({"format": "dualmode.acquisition/1", "mri": sec}))
    return folder


def _raises(func, *args, field=None, name=None, match=None, **kw) -> InputError:
    with pytest.raises(InputError, match=match) as err:
        func(*args, **kw)
    if field is not None:
        assert err.value.field == field, str(err.value)
    if name is not None:
        assert name in str(err.value), str(err.value)
    return err.value


def test_truncated_bruker_fid(tmp_path):
    exp = _bruker(tmp_path)
    raw = (exp / "fid").read_bytes()
    (exp / "fid").write_bytes(raw[: len(raw) - 100])
    _raises(read_kspace, exp, field="ACQ_size", name="fid", match="truncated")


def test_truncated_varian_fid(tmp_path):
    shutil.copytree(DATA / "varian_13c_1d.fid", tmp_path / "v.fid")
    raw = (tmp_path / "v.fid" / "fid").read_bytes()
    (tmp_path / "v.fid" / "fid").write_bytes(raw[:5000])
    _raises(read_kspace, tmp_path / "v.fid", field="nblocks", name="fid", match="truncated")


def test_truncated_twix(tmp_path):
    write_twix(tmp_path / "m.dat", _ksp())
    raw = (tmp_path / "m.dat").read_bytes()
    (tmp_path / "m.dat").write_bytes(raw[: len(raw) - 3000])
    _raises(read_kspace, tmp_path / "m.dat", name="m.dat")


def test_header_data_dimension_mismatch(tmp_path):
    exp = _bruker(tmp_path)
    _edit(exp / "acqp", "##$NR=2", "##$NR=3")  # the fid holds 2 repetitions
    _raises(read_kspace, exp, field="ACQ_size", name="fid", match="truncated")
    np.savez(tmp_path / "k.npz", data=np.ones((1, 1, 8, 6, 1), np.complex64), matrix=[8, 5, 1], fov_mm=[1, 1, 1])
    _raises(read_kspace, tmp_path / "k.npz", field="matrix", name="k.npz")


def test_bruker_fid_longer_than_declared(tmp_path):
    exp = _bruker(tmp_path)
    with open(exp / "fid", "ab") as f:
        f.write(b"\0" * 64)
    _raises(read_kspace, exp, field="ACQ_size", match="larger than declared")


@pytest.mark.parametrize("pol, match", [("absent", "polarization"), ([1, 1], "both"), ([1, 2, -1], "polarization")])
def test_manifest_missing_or_bad_polarization(tmp_path, pol, match):
    folder = _acq(tmp_path, pol)
    _raises(read_manifest, folder, field="mri.polarization", name="acquisition.json", match=match)


def test_manifest_polarization_wrong_length(tmp_path):
    folder = _acq(tmp_path, [1, -1, 1])  # k.npz holds 2 repetitions
    _raises(load_acquisition, folder, field="mri.polarization", name="acquisition.json", match="3 polarization")


def test_nan_and_inf_in_data(tmp_path):
    data = np.ones((1, 1, 8, 6, 1), np.complex64)
    data[0, 0, 3, 2, 0] = np.nan
    data[0, 0, 4, 2, 0] = np.inf
    np.savez(tmp_path / "k.npz", data=data, matrix=[8, 6, 1], fov_mm=[1, 1, 1])
    err = _raises(read_kspace, tmp_path / "k.npz", field="data", name="k.npz")
    assert "2 k-space samples" in str(err)
    exp = _bruker(tmp_path, "GO_32BIT_FLOAT")
    raw = np.fromfile(exp / "fid", "<f4")
    raw[7] = np.nan
    raw.tofile(exp / "fid")
    _raises(read_kspace, exp, field="data", name="fid", match="NaN")


@pytest.mark.parametrize("name", ["empty.npz", "empty.dat", "empty.h5"])
def test_zero_size_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    _raises(read_kspace, tmp_path / name, name=name, match="empty")


def test_zero_size_bruker_fid_and_tiff(tmp_path):
    exp = _bruker(tmp_path)
    (exp / "fid").write_bytes(b"")
    _raises(read_kspace, exp, field="ACQ_size", match="truncated")
    (tmp_path / "e.tif").write_bytes(b"")
    _raises(read_optical, tmp_path / "e.tif", name="e.tif", match="empty")


def test_corrupt_tiff(tmp_path):
    raw = (DATA / "stardist" / "img2d.tif").read_bytes()
    (tmp_path / "c.tif").write_bytes(raw[:8] + bytes(reversed(raw[8:4000])))
    _raises(read_optical, tmp_path / "c.tif", pixel_size_um=[1, 1], name="c.tif", match="TIFF")
    (tmp_path / "t.tif").write_bytes(raw[:300000])  # truncated strips
    _raises(read_optical, tmp_path / "t.tif", pixel_size_um=[1, 1], name="t.tif")


def test_missing_physical_size():
    _raises(read_optical, DATA / "stardist" / "img2d.tif", field="PhysicalSize", name="img2d.tif")


@pytest.mark.parametrize("fov", ["0 12", "-16 12"])
def test_absurd_geometry_bruker(tmp_path, fov):
    exp = _bruker(tmp_path)
    _edit(exp / "method", "##$PVM_Fov=( 2 )\n16.0 12.0", f"##$PVM_Fov=( 2 )\n{fov}")
    _raises(read_kspace, exp, field="PVM_Fov", name="method", match="absurd")


def test_absurd_geometry_manifest(tmp_path):
    folder = _acq(tmp_path, [1, -1], geometry={"matrix": [8, 6, 1], "fov_mm": [16, 0, 3]})
    _raises(read_manifest, folder, field="mri.geometry.fov_mm", match="absurd")


def test_unknown_format(tmp_path):
    (tmp_path / "x.raw").write_bytes(b"1234")
    _raises(read_kspace, tmp_path / "x.raw", field="format", name="x.raw", match="unknown")
    _raises(read_kspace, tmp_path / "x.raw", format="dicom", field="format")
    folder = _acq(tmp_path, [1, -1])
    man = json.loads((folder / "acquisition.json").read_text())
    man["mri"]["source"]["format"] = "philips"
    (folder / "acquisition.json").write_text(json.dumps(man))
    _raises(read_manifest, folder, field="mri.source.format", match="philips")


def test_unreadable_file_directory_in_place(tmp_path):
    """Tests run as root (chmod 000 does not stop root): a directory stands where a file must be."""
    exp = _bruker(tmp_path)
    os.remove(exp / "fid")
    os.mkdir(exp / "fid")
    _raises(read_kspace, exp, name="fid", match="directory")
    (tmp_path / "d.npz").mkdir()
    _raises(read_kspace, tmp_path / "d.npz", name="d.npz")
    (tmp_path / "d.tif").mkdir()
    _raises(read_optical, tmp_path / "d.tif", name="d.tif")
    (tmp_path / "v.fid").mkdir()
    (tmp_path / "v.fid" / "procpar").mkdir()
    (tmp_path / "v.fid" / "fid").write_bytes(b"x" * 64)
    _raises(read_kspace, tmp_path / "v.fid", name="procpar", match="directory")


def test_absurd_declared_size_refused_before_allocating(tmp_path):
    exp = _bruker(tmp_path)
    _edit(exp / "acqp", "##$ACQ_size=( 2 )\n16 6", "##$ACQ_size=( 2 )\n2000000 6000000")
    _edit(exp / "method", "##$PVM_EncMatrix=( 2 )\n8 6", "##$PVM_EncMatrix=( 2 )\n1000000 6000000")
    _edit(exp / "method", "##$PVM_Matrix=( 2 )\n8 6", "##$PVM_Matrix=( 2 )\n1000000 6000000")
    _edit(exp / "method", "##$PVM_EncSteps1=( 6 )\n-3 -2 -1 0 1 2", "##$PVM_EncSteps1=( 1 )\n0")
    _raises(read_kspace, exp, field="ACQ_size", match="GB.*refusing")
    # Varian: a 32-byte header declaring 2^30 blocks of 2^20 points
    (tmp_path / "v.fid").mkdir()
    shutil.copy(DATA / "varian_13c_1d.fid" / "procpar", tmp_path / "v.fid" / "procpar")
    import struct
    n = 1 << 20
    (tmp_path / "v.fid" / "fid").write_bytes(struct.pack(">6ihhi", 1 << 30, 1, n, 4, 4 * n, 4 * n + 28, 0, 9, 1))
    _raises(read_kspace, tmp_path / "v.fid", field="fileheader", match="refusing")


def test_corrupt_hdf5_heap_refused_instead_of_hanging(tmp_path):
    """A zero-size free-space object in an HDF5 global heap makes libhdf5 loop forever
    (found by tests/fuzz/campaign.py); the reader refuses it before opening the file."""
    import struct

    from dualmode.io import write_ismrmrd

    write_ismrmrd(tmp_path / "k.h5", _ksp())
    raw = bytearray((tmp_path / "k.h5").read_bytes())
    at = raw.find(b"GCOL")
    pos = at + 16
    while True:  # walk to the free-space object (index 0) and zero its size
        index, _, _, size = struct.unpack_from("<HHIQ", raw, pos)
        if index == 0:
            struct.pack_into("<Q", raw, pos + 8, 0)
            break
        pos += 16 + (size + 7) // 8 * 8
    (tmp_path / "bad.h5").write_bytes(bytes(raw))
    _raises(read_kspace, tmp_path / "bad.h5", field="heap", name="bad.h5", match="global heap")
    assert read_kspace(tmp_path / "k.h5").header.matrix == (8, 6, 1)  # the intact file still reads


def test_corrupt_vlen_length_refused_before_allocating(tmp_path):
    """A corrupt variable-length count in the ISMRMRD acquisition table made libhdf5
    allocate ~100 GB (found by tests/fuzz/campaign.py); refused from the raw records."""
    import struct

    import h5py

    from dualmode.io import write_ismrmrd

    write_ismrmrd(tmp_path / "k.h5", _ksp())
    with h5py.File(tmp_path / "k.h5", "r") as f:
        d = f["dataset/data"]
        info = d.id.get_chunk_info(0)
        ftype = d.id.get_type()
        data_member = [i for i in range(ftype.get_nmembers()) if ftype.get_member_name(i) == b"data"][0]
        where = info.byte_offset + ftype.get_member_offset(data_member)
    raw = bytearray((tmp_path / "k.h5").read_bytes())
    struct.pack_into("<I", raw, where, 2**31)  # 2^31 float32 for the first readout
    (tmp_path / "bad.h5").write_bytes(bytes(raw))
    _raises(read_kspace, tmp_path / "bad.h5", field="data", name="bad.h5", match="refusing|corrupt")


def test_uncompressed_tiff_declaring_more_pixels_than_the_file_holds(tmp_path):
    """Found by the fuzz campaign: a 2 kB TIFF whose header declared 16.7 M x 32 pixels
    decoded (zero-filled) for ~10 s into gigabytes."""
    import struct

    import tifffile

    tifffile.imwrite(tmp_path / "s.tif", np.ones((32, 32), np.uint16))
    raw = bytearray((tmp_path / "s.tif").read_bytes())
    with tifffile.TiffFile(tmp_path / "s.tif") as tf:
        length_tag = tf.pages.first.tags["ImageLength"]
        where, short = length_tag.valueoffset, length_tag.dtype == 3
    struct.pack_into("<H" if short else "<I", raw, where, 60000)
    (tmp_path / "big.tif").write_bytes(bytes(raw))
    _raises(read_optical, tmp_path / "big.tif", pixel_size_um=[1, 1], field="shape", name="big.tif",
            match="truncated or corrupt")


@pytest.mark.parametrize("value", ["1e999", "-3", "Yes"])
def test_bruker_repetition_count_not_a_valid_integer(tmp_path, value):
    """NR = inf (found by the fuzz campaign: OverflowError), negative or a word."""
    exp = _bruker(tmp_path)
    _edit(exp / "acqp", "##$NR=2", f"##$NR={value}")
    _raises(read_kspace, exp, field="ACQ_phase_factor" if value == "-3" else "NR", name="acqp")


def test_ismrmrd_chunk_smaller_than_its_stored_bytes_does_not_corrupt_memory(tmp_path):
    """Found by the fuzz campaign (--seed 3): one flipped byte declared the acquisition
    table's chunk as 1 record while 6 are stored; h5py's ``read_direct_chunk`` then let
    libhdf5 write past its buffer, and the worker segfaulted thousands of inputs later.
    Run under CPython's debug allocator, which aborts on any write past a block."""
    import struct
    import subprocess
    import sys

    import h5py

    from dualmode.io import write_ismrmrd

    write_ismrmrd(tmp_path / "k.h5", _ksp(n_rep=1))
    with h5py.File(tmp_path / "k.h5", "r") as f:
        n_rec, itemsize = f["dataset/data"].shape[0], f["dataset/data"].dtype.itemsize
        assert f["dataset/data"].chunks == (n_rec,)
    raw = bytearray((tmp_path / "k.h5").read_bytes())
    layout = struct.pack("<II", n_rec, itemsize)  # chunk dims then element size (layout message v3)
    assert raw.count(layout) == 1
    struct.pack_into("<I", raw, raw.index(layout), 1)
    (tmp_path / "bad.h5").write_bytes(bytes(raw))
    code = ("import sys\nfrom dualmode.io import InputError, read_kspace\n"
            "try:\n    read_kspace(sys.argv[1], 'ismrmrd')\nexcept InputError:\n    pass\nprint('clean')\n")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bad.h5")], capture_output=True, text=True,
                         env={**os.environ, "PYTHONMALLOC": "debug"}, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "clean", run.stderr[-2000:]
