"""NIfTI outputs: the one-call libdeflate gzip writes the bytes nibabel writes, in a standard gzip stream."""

import gzip

import nibabel as nib
import numpy as np
import pytest

import dualmode.outputs as outputs
from dualmode.conventions import mri_affine


@pytest.mark.parametrize("whole", [True, False], ids=["libdeflate", "nibabel-stream"])
def test_nii_gz_holds_the_bytes_nibabel_saves(tmp_path, monkeypatch, whole):
    if not whole:  # the path taken for a volume above the in-memory limit
        monkeypatch.setattr(outputs, "_WHOLE_GZIP_BYTES", 0)
    data = np.random.default_rng(3).standard_normal((9, 7, 5, 2)).astype(np.float32)
    aff = mri_affine((9, 7, 5), (1.8, 1.4, 2.0), (0.5, -1.0, 2.0))
    outputs.write_vector_nifti(tmp_path / "fused.nii.gz", data, aff, ["13C", "optical"])
    reference = outputs._nifti_image(data[:, :, :, None, :], aff, "dualmode fused: c0 13C, c1 optical")
    reference.header.set_intent("vector", (), name="13C/optical")
    reference.header.set_xyzt_units("mm", "unknown")
    nib.save(reference, tmp_path / "reference.nii.gz")
    with gzip.open(tmp_path / "fused.nii.gz") as a, gzip.open(tmp_path / "reference.nii.gz") as b:
        assert a.read() == b.read()
    back = nib.load(tmp_path / "fused.nii.gz")
    assert np.array_equal(np.asarray(back.dataobj)[:, :, :, 0, :], data)
    assert np.allclose(back.get_sform(), aff) and np.allclose(back.get_qform(), aff)


def test_plain_nii_is_written_by_nibabel(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    outputs.write_nifti(tmp_path / "x.nii", data, np.eye(4))
    assert np.array_equal(nib.load(tmp_path / "x.nii").get_fdata(), data)
