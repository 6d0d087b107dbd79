"""Long fuzz campaign over every dualmode.io reader (not collected by pytest).

Usage::

    python tests/fuzz/campaign.py [--inputs 12000] [--seed 0] [--timeout 10]

Mutates the seed inputs of ``tests/fuzz/targets.py`` (round-robin over targets).
Inputs run in a worker process (spawned), so that a hang inside C code (libhdf5,
tifffile's decoders) or a segfault is caught too: a *hang* is an input running
past ``--timeout`` seconds (the worker is killed and restarted), a *crash* any
exception other than ``InputError`` or a dead worker. Each failure is re-run in a
fresh worker; one that does not repeat is counted as *flaky* (reported, not failed). Failing inputs are saved to
``/tmp/dualmode-fuzz-*.bin``. Prints a line per target and the total; exits 1 if
anything crashed or hung.

Inputs are a pure function of ``--seed`` and ``--only`` (the RNG never depends on
outcomes), so a worker is recorded as the list of input indices it ran. When a
worker dies, that list is saved to ``/tmp/dualmode-fuzz-history-s<seed>-<i>.txt``;
``--replay FILE`` re-runs exactly those inputs in one fresh worker (to bisect a
delayed crash: replay halves of the list).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import logging
import multiprocessing as mp
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np


#: Declared-size limit inside the worker: mutated headers may legitimately ask for
#: up to the library's 8 GB limit, which on a shared 24 GB machine invites the OOM killer.
FUZZ_ALLOCATION_BYTES = 512 * 1024**2


def _load_targets():
    spec = importlib.util.spec_from_file_location("fuzz_targets", Path(__file__).with_name("targets.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _worker(conn, workdir: str) -> None:
    import faulthandler

    import dualmode.errors

    faulthandler.enable()  # a segfault prints the Python stack of the worker to stderr

    dualmode.errors.MAX_ALLOCATION_BYTES = FUZZ_ALLOCATION_BYTES
    logging.disable(logging.CRITICAL)  # tifffile logs every corrupt tag
    warnings.simplefilter("ignore")
    tgs = _load_targets().build_targets(workdir)
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        name, which, data = msg
        try:
            conn.send(("done", tgs[name].run(which, data)))
        except Exception as err:  # a crash: anything but InputError
            conn.send(("crash", f"{type(err).__name__}: {str(err)[:100]}",
                       "".join(traceback.format_exception(err)[-3:])))


class Runner:
    """A forked worker holding the targets; restarted after a hang or a death."""

    def __init__(self, workdir: str):
        self.workdir, self.proc = workdir, None
        self.history: list[int] = []  # indices of the inputs the current worker has run

    def start(self):
        ctx = mp.get_context("spawn")  # a forked child of a process with library threads can segfault
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, self.workdir), daemon=True)
        self.proc.start()
        assert self.conn.recv() == "ready"
        self.history = []

    def run(self, name, which, data, timeout, index=-1):
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.history.append(index)
        self.conn.send((name, which, data))
        if not self.conn.poll(timeout):
            self.proc.kill()
            self.proc.join()
            self.proc = None
            return ("hang", f"ran past {timeout} s", "")
        try:
            return self.conn.recv()
        except (EOFError, ConnectionResetError):
            self.proc.join(5)
            code = self.proc.exitcode
            self.proc = None
            return ("crash", f"worker died (exit code {code})", "")

    def stop(self):
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--only", nargs="*", help="target names (default: all)")
    ap.add_argument("--replay", help="file of input indices (a saved worker history) to run in one worker")
    args = ap.parse_args(argv)
    if args.replay:
        return replay(args)

    targets = _load_targets()
    with tempfile.TemporaryDirectory(prefix="dualmode-fuzz-") as workdir:
        seeds = targets.build_targets(Path(workdir) / "seeds")  # same seeds as the worker builds
        names = args.only or sorted(seeds)
        runner = Runner(str(Path(workdir) / "work"))
        stats = {n: collections.Counter() for n in names}
        failures: dict[tuple, str] = {}
        slowest = {n: 0.0 for n in names}
        t0 = time.time()
        for i, name, which, data in generate(seeds, names, args.seed, args.inputs):
            start = time.perf_counter()
            kind, *info = runner.run(name, which, data, args.timeout, i)
            if kind == "crash" and info[0].startswith("worker died"):
                hist = Path(f"/tmp/dualmode-fuzz-history-s{args.seed}-{i}.txt")
                hist.write_text("\n".join(map(str, runner.history)) + "\n")
                print(f"worker died at input {i} ({name}/{which}); its {len(runner.history)} inputs: {hist}",
                      flush=True)
            if kind != "done":  # confirm in a fresh worker; a failure that does not repeat is "flaky"
                runner.stop()
                runner.proc = None
                again = runner.run(name, which, data, args.timeout)
                if again[0] == "done":
                    kind, info = "flaky", [f"{info[0]}; then {again[1]} on a fresh worker", ""]
            elapsed = time.perf_counter() - start
            if elapsed > args.timeout / 4 and elapsed > slowest[name]:
                Path(f"/tmp/dualmode-fuzz-slow-{name}.bin").write_bytes(data)  # the slowest input so far
            slowest[name] = max(slowest[name], elapsed)
            if kind == "done":
                stats[name][info[0]] += 1
            else:
                stats[name][kind] += 1
                key = (name, kind, info[0][:80])
                if key not in failures:
                    failures[key] = info[1]
                    Path(f"/tmp/dualmode-fuzz-{kind}-{name}-{len(failures)}.bin").write_bytes(data)
            if (i + 1) % 1000 == 0:
                print(f"... {i + 1} inputs, {len(failures)} distinct failures, {time.time() - t0:.0f} s", flush=True)
        runner.stop()

    total = collections.Counter()
    for name in names:
        s = stats[name]
        total.update(s)
        print(f"{name:10s} inputs {sum(s.values()):6d}  ok {s['ok']:6d}  input_error {s['input_error']:6d}  "
              f"crash {s['crash']:3d}  hang {s['hang']:3d}  flaky {s['flaky']:2d}  slowest {slowest[name]:.2f} s")
    print(f"TOTAL      inputs {sum(total.values())}  ok {total['ok']}  input_error {total['input_error']}  "
          f"crash {total['crash']}  hang {total['hang']}  flaky {total['flaky']}  "
          f"distinct failures {sum(1 for k in failures if k[1] != 'flaky')}  "
          f"time {time.time() - t0:.0f} s")
    for key, tb in failures.items():
        print("FAILURE", key, "\n", tb)
    return 1 if any(k[1] != "flaky" for k in failures) else 0


def generate(seeds, names, seed: int, n: int):
    """Yield the campaign's inputs ``(i, name, which, data)`` for ``i < n`` (deterministic)."""
    targets = _load_targets()
    rng = np.random.default_rng(seed)
    for i in range(n):
        name = names[i % len(names)]
        tg = seeds[name]
        which = sorted(tg.files)[int(rng.integers(len(tg.files)))]
        yield i, name, which, targets.mutate(tg.files[which], rng, tg.text)


def replay(args) -> int:
    """Run the inputs listed in ``args.replay`` in one fresh worker; exit 1 if it dies."""
    wanted = sorted({int(t) for t in Path(args.replay).read_text().split()})
    wanted_set = set(wanted)
    with tempfile.TemporaryDirectory(prefix="dualmode-fuzz-") as workdir:
        seeds = _load_targets().build_targets(Path(workdir) / "seeds")
        names = args.only or sorted(seeds)
        runner = Runner(str(Path(workdir) / "work"))
        t0 = time.time()
        for i, name, which, data in generate(seeds, names, args.seed, wanted[-1] + 1):
            if i not in wanted_set:
                continue
            kind, *info = runner.run(name, which, data, args.timeout, i)
            if kind != "done":
                print(f"REPLAY {kind} at input {i} ({name}/{which}) after {len(runner.history)} inputs: {info[0]}")
                Path(f"/tmp/dualmode-fuzz-replay-{i}.bin").write_bytes(data)
                runner.stop()
                return 1
        runner.stop()
        print(f"REPLAY ok: {len(wanted)} inputs, {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
