"""The batch progress display says failures and flags on stderr, even when quiet."""

import io as stdio

from dualmode.progress import BatchProgress


def _show(entry, quiet):
    out, err = stdio.StringIO(), stdio.StringIO()
    BatchProgress(quiet=quiet, bar=False, out=out, err=err)(entry, 1, 2)
    return out.getvalue(), err.getvalue()


def test_flagged_folder_is_said_on_stderr_even_with_quiet():
    entry = {"name": "scan", "status": "ok", "seconds": 1.0,
             "flags": ["planned acquisition: data not explained by the optical support"]}
    for quiet in (False, True):
        out, err = _show(entry, quiet)
        assert "scan: FLAGGED: planned acquisition: data not explained" in err
    out, err = _show({"name": "clean", "status": "ok", "seconds": 1.0}, False)
    assert "FLAGGED" not in out + err and "clean: ok" in out
