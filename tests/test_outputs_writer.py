"""The helper thread of the folder writes: every call finishes, the first error reaches the caller."""

import threading
import time

import pytest

from dualmode.outputs import side_writer
from dualmode.registration.resample import folder_threads


@pytest.mark.parametrize("threads", [1, 2])
def test_side_writer_finishes_every_call_before_leaving(threads):
    done, names = [], set()

    def slow(i):
        time.sleep(0.02)
        names.add(threading.current_thread().name)
        done.append(i)

    with side_writer(threads) as submit:
        for i in range(3):
            submit(slow, i)
        submit(lambda: None)
    assert sorted(done) == [0, 1, 2]
    assert any(n.startswith("dualmode-write") for n in names) == (threads >= 2)


@pytest.mark.parametrize("threads", [1, 2])
def test_side_writer_raises_the_first_error_after_the_other_calls(threads):
    done = []

    def fail():
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        with side_writer(threads) as submit:
            submit(fail)
            submit(done.append, 1)  # queued behind the failure (or not run, at once): either way no hang
    assert done in ([1], [])


def test_writer_threads_follows_the_batch_share():
    import scipy.fft

    with scipy.fft.set_workers(3):
        assert folder_threads() >= 3
    assert folder_threads() >= 1
