"""The pipeline's FFTs run on the folder's threads; a batch's pinning wins; results do not change."""

import numpy as np
import scipy.fft

from dualmode.batch.threads import pinned_threads
from dualmode.fft_threads import folder_fft_workers
from dualmode.registration.resample import folder_threads


@folder_fft_workers
def _workers_and_fft(x):
    return scipy.fft.get_workers(), scipy.fft.fftn(x)


def test_plain_process_uses_the_folder_threads():
    expected = folder_threads()
    workers, _ = _workers_and_fft(np.zeros((4, 4)))
    assert workers == expected
    assert scipy.fft.get_workers() == 1  # restored after the call


def test_batch_pinning_wins():
    with pinned_threads(1):
        workers, _ = _workers_and_fft(np.zeros((4, 4)))
    assert workers == 1


def test_fft_identical_for_any_worker_count():
    """pocketfft splits by lines: the same bits on 1 and on 4 workers (the reconstruction's shapes)."""
    x = np.random.default_rng(0).standard_normal((8, 64, 64, 32)).astype(np.complex64)
    for axes in ((-3, -2, -1), (-2, -1)):
        one = scipy.fft.ifftn(x, axes=axes, workers=1)
        assert np.array_equal(one, scipy.fft.ifftn(x, axes=axes, workers=4))
