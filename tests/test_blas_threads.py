"""``single_thread_blas``: BLAS pools are process-wide, so concurrent callers share one limit."""

from __future__ import annotations

import threading

import numpy as np  # noqa: F401  (loads the BLAS pools threadpoolctl sees)
import pytest
from threadpoolctl import threadpool_info

from dualmode.recon.blas import single_thread_blas


def _blas_threads() -> int:
    return max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1)


def test_limit_holds_until_the_last_thread_leaves_and_is_then_restored():
    before = _blas_threads()
    if before < 2:
        pytest.skip("needs a BLAS pool of 2+ threads to tell limited from unlimited")
    both_in, first_left = threading.Barrier(2), threading.Event()
    seen = {}

    @single_thread_blas
    def work(name: str) -> None:
        both_in.wait()
        if name == "second":
            first_left.wait(5)
            seen[name] = _blas_threads()

    def run(name: str) -> None:
        work(name)
        if name == "first":
            first_left.set()

    threads = [threading.Thread(target=run, args=(n,)) for n in ("first", "second")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert seen == {"second": 1}  # still limited while inside, after the other thread left
    assert _blas_threads() == before  # and not left at 1 for the rest of the process
