"""Long fuzz campaign over every dualmode.io reader (not collected by pytest).

Usage::

    python tests/fuzz/campaign.py [--inputs 12000] [--seed 0] [--timeout 10]

Mutates the seed inputs of ``tests/fuzz/targets.py`` (round-robin over targets)
and counts outcomes. A crash is any exception other than ``InputError``; a hang is
a single input running past ``--timeout`` seconds (SIGALRM). Prints one summary
line per target and the total; exits 1 if anything crashed or hung.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import logging
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np


class Hang(BaseException):
    """Raised by SIGALRM; a BaseException so readers' ``except Exception`` cannot swallow it."""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--only", nargs="*", help="target names (default: all)")
    args = ap.parse_args(argv)

    logging.disable(logging.CRITICAL)  # tifffile logs every corrupt tag
    warnings.simplefilter("ignore")
    spec = importlib.util.spec_from_file_location("fuzz_targets", Path(__file__).with_name("targets.py"))
    targets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(targets)
    tgs = targets.build_targets()
    names = args.only or sorted(tgs)
    rng = np.random.default_rng(args.seed)

    def alarm(*_):
        raise Hang()

    signal.signal(signal.SIGALRM, alarm)
    stats = {n: collections.Counter() for n in names}
    crashes: dict[tuple, str] = {}
    slowest = {n: 0.0 for n in names}
    t0 = time.time()
    for i in range(args.inputs):
        name = names[i % len(names)]
        tg = tgs[name]
        which = sorted(tg.files)[int(rng.integers(len(tg.files)))]
        data = targets.mutate(tg.files[which], rng, tg.text)
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, args.timeout)
        try:
            stats[name][tg.run(which, data)] += 1
        except Hang:
            stats[name]["hang"] += 1
            crashes.setdefault((name, "hang"), f"input ran past {args.timeout} s")
        except Exception as err:  # a crash: anything but InputError
            stats[name]["crash"] += 1
            key = (name, type(err).__name__, str(err)[:80])
            if key not in crashes:
                crashes[key] = "".join(traceback.format_exception(err)[-3:])
                bad = Path(f"/tmp/dualmode-fuzz-crash-{name}-{len(crashes)}.bin")
                bad.write_bytes(data)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest[name] = max(slowest[name], time.perf_counter() - start)

    total = collections.Counter()
    for name in names:
        s = stats[name]
        total.update(s)
        print(f"{name:10s} inputs {sum(s.values()):6d}  ok {s['ok']:6d}  input_error {s['input_error']:6d}  "
              f"crash {s['crash']:3d}  hang {s['hang']:3d}  slowest {slowest[name]:.2f} s")
    print(f"TOTAL      inputs {sum(total.values())}  ok {total['ok']}  input_error {total['input_error']}  "
          f"crash {total['crash']}  hang {total['hang']}  distinct crashes {len(crashes)}  "
          f"time {time.time() - t0:.0f} s")
    for key, tb in crashes.items():
        print("CRASH", key, "\n", tb)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
