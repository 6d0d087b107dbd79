"""Atomic outputs: an exception or a kill mid-write never leaves a partial file or directory."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dualmode.atomic import atomic_path, remove_stale, write_text
from dualmode.outputs import write_json, write_nifti


def test_exception_keeps_previous_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"run": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write('{"run": 2, "half')  # partial content
            raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "run": 1\n}\n'
    assert os.listdir(tmp_path) == ["report.json"]


def test_exception_on_new_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "c13.nii.gz") as tmp:
            assert tmp.endswith(".nii.gz") and os.path.dirname(tmp) == str(tmp_path)
            with open(tmp, "wb") as f:
                f.write(b"\x1f\x8b partial")
            raise ValueError
    assert os.listdir(tmp_path) == []


def test_library_writer_keeps_suffix(tmp_path):
    import nibabel as nib

    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    write_nifti(tmp_path / "c13.nii.gz", data, np.eye(4))
    assert np.array_equal(nib.load(tmp_path / "c13.nii.gz").get_fdata(), data)
    assert os.listdir(tmp_path) == ["c13.nii.gz"]


def _store(path, files: dict) -> None:
    os.makedirs(path)
    for name, text in files.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)


def test_directory_replaced_whole(tmp_path):
    target = tmp_path / "fused.ome.zarr"
    _store(target, {"old.chunk": "old", ".zattrs": "{}"})
    with atomic_path(target) as tmp:
        assert tmp.endswith(".ome.zarr")
        _store(tmp, {"new.chunk": "new"})
    assert sorted(os.listdir(target)) == ["new.chunk"]
    assert os.listdir(tmp_path) == ["fused.ome.zarr"]
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            _store(tmp, {"half.chunk": "x"})
            raise OSError("disk full")
    assert sorted(os.listdir(target)) == ["new.chunk"]
    assert os.listdir(tmp_path) == ["fused.ome.zarr"]


def test_real_zarr_store(tmp_path):
    import zarr

    target = str(tmp_path / "image.zarr")
    for value in (1.0, 2.0):
        with atomic_path(target) as tmp:
            z = zarr.open(tmp, mode="w", shape=(4, 4), chunks=(2, 2), dtype="f4")
            z[:] = value
    assert np.all(zarr.open(target, mode="r")[:] == 2.0)
    assert os.listdir(tmp_path) == ["image.zarr"]


def test_nothing_written_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "qc.png"):
            pass
    assert os.listdir(tmp_path) == []


def test_kill_mid_write_leaves_old_file_then_stale_removed(tmp_path):
    target = tmp_path / "fused.ome.tif"
    write_text(target, "complete old output")
    script = textwrap.dedent(f"""
        import sys, time
        from dualmode.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "w") as f:
                f.write("partial new output")
                f.flush()
                print("writing", flush=True)
                time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert target.read_text() == "complete old output"
    leftovers = [f for f in os.listdir(tmp_path) if f != "fused.ome.tif"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".fused.ome.tif.")
    assert remove_stale(tmp_path) == [str(tmp_path / leftovers[0])]
    assert os.listdir(tmp_path) == ["fused.ome.tif"]


def test_stale_old_directory_restored_after_kill_between_renames(tmp_path):
    # a kill after "rename old away" and before "rename new in" leaves only the hidden old copy
    _store(tmp_path / ".fused.ome.zarr.ab12cd.old-fused.ome.zarr", {"chunk": "previous"})
    _store(tmp_path / ".fused.ome.zarr.ef34gh.tmp-fused.ome.zarr", {"chunk": "partial"})
    with open(tmp_path / ".unrelated.hidden", "w") as f:
        f.write("not ours")
    removed = remove_stale(tmp_path)
    assert removed == [str(tmp_path / ".fused.ome.zarr.ef34gh.tmp-fused.ome.zarr")]
    assert sorted(os.listdir(tmp_path)) == [".unrelated.hidden", "fused.ome.zarr"]
    assert (tmp_path / "fused.ome.zarr" / "chunk").read_text() == "previous"
