"""Checks of the data against what the manifest says, in words: a polarization list that contradicts the shots.

The lock-in trusts ``mri.polarization``. A list in the wrong order still "works" (no error)
but the sign-invariant background then leaks into ``H``: on the default simulated folder
``[1, -1, -1, 1]`` for ``[1, -1, 1, -1]`` drops the background suppression from 48 to 17
dB. :func:`polarization_check` reads the signs the shots themselves carry and, when they
disagree with the list and would suppress the background clearly better, returns a warning
that says so with both suppressions.
"""

from __future__ import annotations

import numpy as np

#: the lock-in's ``|cos|`` between fitted shot weights and the listed signs below which the list is checked
ALIGNMENT_OK = 0.8
#: warn when the data's own signs suppress the background at least this much better (dB)
GAIN_DB = 3.0


def data_signs(shots: np.ndarray) -> np.ndarray | None:
    """The polarization signs the shot images carry (up to a global sign), or None if unclear.

    The sign-invariant part is removed by subtracting the mean over shots; the dominant
    direction over shots of what is left, on the 5 % most varying voxels, is ``s_k c_k``
    (``c_k`` the shot's complex polarization, near one common phase); rotated to that
    phase its real part has the sign ``s_k``.
    """
    n = shots.shape[0]
    m = shots.reshape(n, -1).astype(np.complex128)
    m = m - m.mean(axis=0)
    energy = np.sum(np.abs(m) ** 2, axis=0)
    keep = energy >= np.quantile(energy, 0.95)
    if n < 2 or not np.any(energy[keep] > 0):
        return None
    u = np.linalg.svd(m[:, keep], full_matrices=False)[0][:, 0]
    u = u * np.exp(-0.5j * np.angle(np.sum(u**2)))
    signs = np.where(u.real >= 0, 1, -1)
    if signs[0] < 0:
        signs = -signs
    return signs if (1 in signs and -1 in signs) else None


def polarization_check(shots: np.ndarray, polarization, lockin, affine) -> dict | None:
    """``None`` when the list agrees with the data; else what the data say and what the list costs.

    Returns
    -------
    dict or None
        ``given``, ``data_signs`` (first sign +1), ``sign_alignment`` of the given list,
        ``background_suppression_db`` as given and with the data's signs, ``message``.
    """
    from dualmode.conventions import voxel_sizes
    from dualmode.recon.metrics import signflip_metrics
    from dualmode.recon.signflip import signflip_combine

    given = np.asarray(polarization, dtype=int)
    alignment = (lockin.info or {}).get("sign_alignment")
    if alignment is None or alignment >= ALIGNMENT_OK:
        return None
    signs = data_signs(shots)
    if signs is None or np.array_equal(signs, given) or np.array_equal(signs, -given):
        return None
    vox = voxel_sizes(affine)
    as_given = signflip_metrics(shots, given, lockin, voxel_size=vox).get("background_suppression_db")
    other = signflip_combine(shots, signs)
    better = signflip_metrics(shots, signs, other, voxel_size=vox).get("background_suppression_db")
    if as_given is None or better is None or better - as_given < GAIN_DB:
        return None
    message = (f"{given.tolist()} contradicts the data, whose shots carry the signs {signs.tolist()} "
               f"(up to a global sign): background suppression {as_given:.1f} dB as listed, {better:.1f} dB "
               f"with the data's signs; check the order of the list")
    return {"given": given.tolist(), "data_signs": signs.tolist(), "sign_alignment": float(alignment),
            "background_suppression_db": float(as_given), "background_suppression_db_data_signs": float(better),
            "message": message}
