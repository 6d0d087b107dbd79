"""``scipy.fft`` on the folder's threads while the pipeline analyses a folder.

``scipy.fft`` runs on one thread unless told otherwise, while numba, BLAS and SimpleITK
use every core of a plain process. :func:`folder_fft_workers` gives the FFTs of a folder
the same share: :func:`dualmode.registration.resample.folder_threads` (all cores in a plain
process; in a batch worker, the share :func:`dualmode.batch.threads.pinned_threads` set).
pocketfft splits a multi-dimensional transform by lines over its workers, each line
transformed as on one thread, so the results are identical for any count.
"""

from __future__ import annotations

import functools


def folder_fft_workers(func):
    """Decorate ``func`` to run with ``scipy.fft.set_workers(folder_threads())``.

    Examples
    --------
    >>> @folder_fft_workers
    ... def workers():
    ...     import scipy.fft
    ...     return scipy.fft.get_workers()
    >>> workers() >= 1
    True
    """
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import scipy.fft

        from dualmode.registration.resample import folder_threads

        with scipy.fft.set_workers(folder_threads()):
            return func(*args, **kwargs)

    return wrapper
