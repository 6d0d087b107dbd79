"""Multi-coil combination.

Root-sum-of-squares (magnitude, for display) and a phase-preserving SVD
combination (complex, for the sign-flip lock-in, which needs the phase).
"""

from __future__ import annotations

import numpy as np


def rss(images: np.ndarray, axis: int = 0) -> np.ndarray:
    """Root-sum-of-squares over the coil axis: ``sqrt(sum_c |I_c|^2)``."""
    return np.sqrt(np.sum(np.abs(images) ** 2, axis=axis))


def svd_combine(images: np.ndarray, coil_axis: int = 1) -> np.ndarray:
    """Complex coil combination with one global weight vector (first principal component).

    ``I = sum_c conj(u_c) I_c`` where ``u`` is the dominant left singular vector of the
    coil x (all other samples) matrix: optimal SNR for coil sensitivities that are
    constant over the object (small samples such as diamond particles), and the
    relative phase between repetitions is preserved. Single-coil input is returned as is.
    """
    images = np.moveaxis(np.asarray(images), coil_axis, 0)
    if images.shape[0] == 1:
        return images[0]
    flat = images.reshape(images.shape[0], -1)
    u, _, _ = np.linalg.svd(flat @ flat.conj().T)
    w = u[:, 0]
    w = w * np.exp(-1j * np.angle(w[np.argmax(np.abs(w))]))  # reference phase: strongest coil
    return np.tensordot(w.conj(), images, axes=(0, 0))
