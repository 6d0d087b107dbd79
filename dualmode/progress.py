"""What a user sees while a batch runs: a start line, a progress bar with ETA, failures always.

* Logging (:mod:`dualmode.cli_log`): ``-v`` shows each stage of each folder with its time,
  also from Dask workers (forwarded to this process as they happen).
* On a terminal a ``tqdm`` bar with ETA on stderr; otherwise one line per finished folder
  (``[3/20] s03: ok (1.2 s), ETA 0:21``) on stdout. ``--json``: one JSON line per folder.
* A failed folder is always printed on stderr, even with ``-q``.
"""

from __future__ import annotations

import json
import sys
import time

def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class BatchProgress:
    """Progress of ``dualmode run``: pass as ``progress=`` and ``on_start=`` to :func:`dualmode.batch.run_batch`.

    Parameters
    ----------
    quiet : bool
        Only failures (stderr).
    json_lines : bool
        One JSON line per finished folder on stdout.
    bar : bool, optional
        A ``tqdm`` bar (default: when stderr is a terminal).
    """

    def __init__(self, quiet: bool = False, json_lines: bool = False, bar: bool | None = None,
                 out=None, err=None):
        self.quiet, self.json_lines = quiet, json_lines
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.want_bar = (not quiet and not json_lines and self.err.isatty()) if bar is None else bar
        self.bar, self.t0, self.first_done, self.execution, self.dashboard_shown = None, time.time(), 0, {}, False

    def _say(self, text: str, stream) -> None:
        if self.bar is not None:
            self.bar.write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    def start(self, info: dict) -> None:
        """The start line: folders, where they run, the output root."""
        self.execution, self.t0 = info["execution"], time.time()
        ex = self.execution
        where = {"LocalCluster": f"Dask LocalCluster of {ex['workers']} workers",
                 "processes": f"{ex['workers']} local worker processes"}.get(ex["mode"], ex["mode"])
        text = (f"dualmode run: {info['folders']} folders ({info['to_run']} to run) -> {info['out_root']}; "
                f"{where}" + (f" ({ex['reason']})" if ex.get("reason") else ""))
        if ex.get("scheduler"):
            text += f"; scheduler {ex['scheduler']}"
        if not self.quiet:
            print(text, file=self.err if self.json_lines else self.out, flush=True)
        if self.want_bar and info["to_run"]:
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no monitor thread: local workers are forked from this process
            self.bar = tqdm(total=info["folders"], unit="folder", file=self.err, dynamic_ncols=True)

    def _dashboard(self) -> None:
        link = self.execution.get("dashboard")
        if link and not self.dashboard_shown and not self.quiet:
            self.dashboard_shown = True
            self._say(f"Dask dashboard: {link}", self.err if self.json_lines else self.out)

    def __call__(self, entry: dict, done: int, total: int) -> None:
        self._dashboard()
        failed = entry["status"] == "failed"
        if failed:
            self._say(f"{entry['name']}: FAILED: {entry['error']}", self.err)
        for flag in entry.get("flags") or ():  # a result the pipeline cannot fully vouch for: said, like failures
            self._say(f"{entry['name']}: FLAGGED: {flag}", self.err)
        if self.json_lines:
            print(json.dumps(entry), file=self.out, flush=True)
        elif self.bar is not None:
            self.bar.set_postfix_str(f"{entry['name']}: {entry['status']}", refresh=False)
            self.bar.update(1)
        elif not self.quiet:
            secs = "" if entry.get("seconds") is None else f" ({entry['seconds']:.1f} s)"
            self._say(f"[{done}/{total}] {entry['name']}: {entry['status']}{secs}{self._eta(done, total)}",
                      self.out)

    def _eta(self, done: int, total: int) -> str:
        if done >= total or done == 0:
            return ""
        return f", ETA {_clock((time.time() - self.t0) / done * (total - done))}"

    def close(self, summary: dict | None = None) -> None:
        """End the bar; print the closing line (stdout) unless quiet."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if summary is None:
            return
        if self.json_lines:
            print(json.dumps(summary), file=self.out, flush=True)
        elif not self.quiet:
            n = summary.get("this_run") or summary
            print(f"{n['ok']} ok, {n['skipped']} skipped, {n['failed']} failed "
                  f"in {summary['seconds']:.1f} s; summary: {summary['out_root']}/summary.json", file=self.out)
