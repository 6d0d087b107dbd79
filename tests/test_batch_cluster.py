"""Small folders on 2 local workers (forked processes; a Dask LocalCluster): one folder at a time per
worker, no network (processes) or loopback only (Dask), same bytes as ``-j 1``."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from dualmode.cli import main
from dualmode.simulate import SimulationConfig, simulate_folder


def _listening(procs):
    """Addresses of every listening TCP socket of ``procs``."""
    import psutil

    found = set()
    for p in procs:
        try:
            conns = p.net_connections(kind="inet") if hasattr(p, "net_connections") else p.connections("inet")
        except psutil.Error:
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return found


@pytest.mark.parametrize("mode,n", [("processes", 20), ("LocalCluster", 8)])
def test_folders_on_two_workers(tmp_path, mode, n):
    import psutil

    acq = tmp_path / "acq"
    simulate_folder(acq / "f00", SimulationConfig(seed=3, matrix=32))
    simulate_folder(acq / "f01", SimulationConfig(seed=14, matrix=32))
    for i in range(2, n):
        shutil.copytree(acq / f"f0{i % 2}", acq / f"f{i:02d}")
    out = tmp_path / "out"
    local = ["--scheduler", "local"] if mode == "LocalCluster" else []
    proc = subprocess.Popen([sys.executable, "-m", "dualmode", "run", str(acq / "*"), "-o", str(out),
                             "--workers", "2", *local], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    me, listening, oom = psutil.Process(proc.pid), set(), {}
    while proc.poll() is None:
        try:
            children = me.children(recursive=True)
            listening |= _listening([me, *children])
            for child in children:
                with open(f"/proc/{child.pid}/oom_score_adj") as f:
                    oom[child.pid] = f.read().strip()
        except (psutil.Error, OSError):
            pass
        time.sleep(0.3)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    with open(out / "summary.json") as f:
        s = json.load(f)
    assert s["ok"] == n and s["execution"]["mode"] == mode
    by_worker = {}
    for e in s["folders"]:
        by_worker.setdefault(e["worker"], []).append((e["started"], e["finished"], e["name"]))
    workers = [w for w in by_worker if not w.endswith(f":{proc.pid}")]
    assert len(workers) == 2, by_worker.keys()
    if mode == "processes":  # no socket at all; workers forked from the parent after its imports, none ran here
        assert not listening, listening
        assert s["execution"]["start_method"] == "fork" and len(by_worker) == 2
        worker_pids = {int(w.split(":")[-1]) for w in workers}  # the out-of-memory killer picks them first
        assert {oom.get(pid) for pid in worker_pids} == {"500"}, oom
        assert "Dask dashboard" not in stdout
    else:  # every socket the run listened on (scheduler, nannies, workers, dashboard) is on the loopback
        assert listening and {ip for ip, _ in listening} <= {"127.0.0.1", "::1"}, listening
        assert s["execution"]["dashboard"].startswith("http://127.0.0.1:")
        assert "Dask dashboard: http://127.0.0.1:" in stdout
        assert s["execution"]["start_method"] == "forkserver"  # from a forkserver that imported the pipeline
    for spans in by_worker.values():  # at most one folder at a time per worker process
        spans.sort()
        for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
            assert s1 >= e0, f"{n0} and {n1} overlapped on one worker"
    share = max(1, (len(os.sched_getaffinity(0)) // 2))  # each worker pinned to its share of the cores
    for e in s["folders"]:
        if not e["worker"].endswith(f":{proc.pid}"):
            assert e["threads"] == {"numba": share, "blas": share, "fft": share, "itk": 1}, e
            assert 0 < e["cpu_s"], e
    for e in s["folders"]:  # and the per-folder logs say where each ran
        assert f"start on {e['worker']}" in (out / e["name"] / "log.txt").read_text()
    # deterministic: byte-identical outputs in this process (-j 1)
    serial = tmp_path / "serial"
    assert main(["run", str(acq / "f00"), str(acq / "f01"), "-o", str(serial), "-j", "1", "-q"]) == 0
    for name in ("f00", "f01"):
        with open(out / name / "report.json") as f, open(serial / name / "report.json") as g:
            a, b = json.load(f), json.load(g)
        assert a["outputs"] == b["outputs"]
        for key in ("signflip", "registration", "mri"):
            assert a[key] == b[key]
    print(f"{mode}: {n} folders on 2 workers: {s['seconds']:.1f} s; "
          f"{s['execution'].get('in_process_while_starting', 0)} in the parent while the cluster started; "
          f"listening on {sorted(listening)}")
