"""Batch runs through ``dualmode run``: fault isolation, summary, exit code, logs, resume, Dask schedulers."""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time

import distributed
import numpy as np
import pytest

import dualmode.batch.run as batch_run
from dualmode import batch
from dualmode.cli import main
from dualmode.pipeline import PipelineOptions
from dualmode.simulate import SimulationConfig, simulate_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two good small simulated folders and one with a truncated kspace.h5."""
    root = tmp_path_factory.mktemp("batch")
    good = []
    for seed in (3, 14):  # seeds that register at matrix 32
        simulate_folder(root / f"good{seed}", SimulationConfig(seed=seed, matrix=32))
        good.append(str(root / f"good{seed}"))
    bad = root / "corrupt"
    shutil.copytree(good[0], bad)
    h5 = bad / "mri" / "kspace.h5"
    with open(h5, "r+b") as f:
        f.truncate(os.path.getsize(h5) // 2)
    return root, good, str(bad)


@pytest.fixture(scope="module")
def first_run(folders, tmp_path_factory):
    """One batch on a local Dask cluster of 2 worker processes (``--scheduler local``), given as a glob pattern."""
    root, good, bad = folders
    out = tmp_path_factory.mktemp("out")
    ballast = np.ones(2**30 // 8)  # 1 GiB in the parent: must not count in the workers' peak RSS
    t0 = time.perf_counter()
    code = main(["run", str(root / "*"), "-o", str(out), "--workers", "2", "--scheduler", "local", "-q"])
    seconds = time.perf_counter() - t0
    del ballast
    return code, out, seconds


def _summary(out):
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def _report(out, name):
    with open(os.path.join(out, name, "report.json")) as f:
        return json.load(f)


def test_corrupt_folder_is_isolated_and_reported(folders, first_run):
    root, good, bad = folders
    code, out, _ = first_run
    assert code == 1
    s = _summary(out)
    assert (s["ok"], s["failed"], s["skipped"]) == (2, 1, 0)
    assert s["execution"]["mode"] == "LocalCluster" and s["execution"]["workers"] == 2
    by_name = {e["name"]: e for e in s["folders"]}
    assert set(by_name) == {"good3", "good14", "corrupt"}
    assert by_name["corrupt"]["status"] == "failed"
    assert os.path.join("corrupt", "mri", "kspace.h5") in by_name["corrupt"]["error"]
    for name in ("good3", "good14"):
        assert by_name[name]["status"] == "ok" and by_name[name]["error"] is None
        rep = _report(out, name)
        assert batch.resume.incomplete_outputs(str(out / name), rep) == ""  # every listed file, checksum ok
        assert {"c13.nii.gz", "fused.ome.tif", "qc.png", "fused.ome.zarr/zarr.json"} <= set(rep["outputs"]) \
            or "fused.ome.zarr/.zgroup" in rep["outputs"]
        assert not [f for f in os.listdir(out / name) if f.startswith(".")]  # no temporaries left
        assert not [f for f in os.listdir(out) if f.startswith(".") and f != ".dualmode-lock"]
        assert by_name[name]["peak_rss_mb"] == rep["peak_rss_mb"]
        if by_name[name]["worker"].split(":")[-1] != str(os.getpid()):  # a worker's own peak, per folder
            assert 50 < rep["peak_rss_mb"] < 900
        else:  # ran here while the cluster started: this process's peak, ballast included
            assert rep["peak_rss_mb"] > 1024
        log = (out / name / "log.txt").read_text()
        assert "particles matched" in log and f"{name}: ok" in log and f"{name}: register" in log
    assert "kspace.h5" in (out / "corrupt" / "log.txt").read_text()


def test_resume_skips_complete_folders(folders, first_run, monkeypatch):
    root, good, bad = folders
    code, out, first_seconds = first_run
    calls = []
    import dualmode.pipeline as pipeline

    real = pipeline.process_folder

    def counting(folder, *args, **kwargs):
        calls.append(os.path.basename(folder))
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(pipeline, "process_folder", counting)
    code = main(["run", *good, bad, "-o", str(out), "--resume", "-q"])
    assert code == 1
    assert calls == ["corrupt"]  # only the failed folder was tried again, in this process
    s = _summary(out)
    assert [e["status"] for e in s["folders"]] == ["skipped", "skipped", "failed"]
    assert "skipped" in (out / "good3" / "log.txt").read_text()


def test_resume_detects_changed_inputs_options_and_outputs(folders, first_run, tmp_path):
    root, good, bad = folders
    _, out, _ = first_run
    work = tmp_path / "good14"
    shutil.copytree(out / "good14", work)
    opts = PipelineOptions()
    report, why = batch.completed_report(good[1], str(work), opts)
    assert report is not None and why == ""
    report, why = batch.completed_report(good[1], str(work), PipelineOptions(refine=False))
    assert report is None and why == "options changed"
    copy = tmp_path / "changed" / "good14"
    shutil.copytree(good[1], copy)
    with open(copy / "acquisition.json", "a") as f:
        f.write("\n")
    report, why = batch.completed_report(str(copy), str(work), opts)
    assert report is None and why == "inputs changed: acquisition.json"
    with open(work / "particles.csv", "a") as f:
        f.write("tampered\n")
    assert batch.completed_report(good[1], str(work), opts) == (None, "output particles.csv changed since "
                                                                     "it was written")
    os.remove(work / "qc.png")
    assert batch.completed_report(good[1], str(work), opts)[1] == "output particles.csv changed since it was written"
    shutil.copy(out / "good14" / "particles.csv", work / "particles.csv")
    assert batch.completed_report(good[1], str(work), opts)[1] == "output qc.png missing"
    # a partial zarr store under the final name is not complete
    shutil.copy(out / "good14" / "qc.png", work / "qc.png")
    chunk = sorted(k for k in _report(out, "good14")["outputs"] if k.startswith("fused.ome.zarr/"))[-1]
    os.remove(work / chunk)
    assert batch.completed_report(good[1], str(work), opts)[1] == f"output {chunk} missing"


def test_external_scheduler_and_json_lines(folders, tmp_path, capsys):
    root, good, bad = folders
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        code = main(["run", good[0], bad, "-o", str(tmp_path), "--scheduler", cluster.scheduler_address,
                     "--json"])
    assert code == 1
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert len(lines) == 3  # one per folder as it finishes, then the summary
    assert sorted(e["status"] for e in lines[:2]) == ["failed", "ok"]
    assert "corrupt: FAILED" in captured.err
    summary = lines[2]
    assert {k: v for k, v in summary.items() if k != "this_run"} == _summary(tmp_path)
    assert summary["state"] == "finished" and "pending" not in summary
    assert summary["execution"]["mode"] == "scheduler"
    assert summary["execution"]["scheduler"] == cluster.scheduler_address
    assert [e["name"] for e in summary["folders"]] == ["good3", "corrupt"]
    # two 1-thread workers on this host share its cores: numba, BLAS and FFT at cores // 2 each
    share = max(1, batch.default_workers() // 2)
    assert summary["execution"]["threads_per_host"] == {socket.gethostname(): share}, summary["execution"]
    assert summary["folders"][0]["threads"] == {"numba": share, "blas": share, "fft": share,
                                                "itk": batch.ITK_THREADS}, summary["folders"][0]


def test_same_output_name_is_refused(folders, tmp_path):
    root, good, bad = folders
    other = tmp_path / "elsewhere" / "corrupt"
    shutil.copytree(bad, other)
    s = batch.run_batch([bad, str(other), bad], str(tmp_path / "out"), workers=1)
    assert [e["folder"] for e in s["folders"]] == [bad, str(other)]  # the repeat is dropped
    assert "already used by" in s["folders"][1]["error"] and s["failed"] == 2


def test_glob_expansion_and_literal_paths(folders, tmp_path):
    root, good, bad = folders
    assert batch.expand_folders([str(root / "good*")]) == sorted(good)
    assert batch.expand_folders([str(root / "nothing*"), good[0]]) == [str(root / "nothing*"), good[0]]
    (tmp_path / "scan[1]").mkdir()
    (tmp_path / "scan1").mkdir()
    assert batch.expand_folders([str(tmp_path / "scan[1]")]) == [str(tmp_path / "scan[1]")]


def _fake_run_one(folder, out_root=None, options=None, **kwargs):
    """Stand-in task: fails as a dying worker would for 'corrupt', succeeds instantly otherwise."""
    if os.path.basename(folder) == "corrupt":
        raise MemoryError("worker exceeded its memory budget")
    return {"folder": folder, "name": os.path.basename(folder), "status": "ok", "error": None, "seconds": 0.0}


def test_failed_dask_task_is_isolated(folders, tmp_path, monkeypatch):
    root, good, bad = folders
    monkeypatch.setattr(batch.cluster, "run_one", _fake_run_one)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        s = batch.run_batch([bad, *good], str(tmp_path), scheduler=client)
    assert [e["status"] for e in s["folders"]] == ["failed", "ok", "ok"]
    assert "Dask task failed (MemoryError" in s["folders"][0]["error"] and bad in s["folders"][0]["error"]


def test_interrupt_writes_summary(folders, tmp_path, monkeypatch):
    root, good, bad = folders
    calls = []

    def interrupted(folder, *args, **kwargs):
        calls.append(folder)
        if len(calls) == 2:
            running = _summary(tmp_path)  # rewritten after every folder: a killed run says how far it got
            assert running["state"] == "running"
            assert [e["status"] for e in running["folders"]] == ["ok", "pending", "pending"]
            raise KeyboardInterrupt
        return _fake_run_one(folder)

    monkeypatch.setattr(batch_run, "run_one", interrupted)
    assert main(["run", *good, bad, "-o", str(tmp_path), "-j", "1", "-q"]) == 130
    s = _summary(tmp_path)
    assert s["state"] == "interrupted"
    assert [e["status"] for e in s["folders"]] == ["ok", "failed", "failed"]
    assert s["folders"][1]["error"].endswith("not finished: interrupted")


def test_unreachable_scheduler_exits_2(folders, tmp_path, capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["run", folders[1][0], "-o", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    assert "tcp://127.0.0.1:9" in capsys.readouterr().err
    assert main(["run", folders[1][0], "-o", str(tmp_path), "--scheduler", "http//x:1"]) == 2
    assert "http//x:1" in capsys.readouterr().err


def test_folder_log_collects_info_without_flooding_the_console(tmp_path):
    class Keep(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record.getMessage())

    root, logger = logging.getLogger(), logging.getLogger("dualmode")
    console = Keep()
    saved = (root.level, logger.level, logger.propagate)
    handlers = list(logger.handlers)
    root.addHandler(console)
    root.setLevel(logging.WARNING)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
    try:
        (tmp_path / "log.txt").write_text("earlier run\n")
        with batch.folder_log(str(tmp_path / "log.txt"), logging.INFO):
            logging.getLogger("dualmode.registration").info("particles found")
            logging.getLogger("dualmode").warning("odd header")
            logging.getLogger("dualmode").error("summarised elsewhere", extra={"folder_only": True})
        assert (root.level, logger.level, logger.propagate) == (logging.WARNING, logging.NOTSET, True)
        assert logger.handlers == handlers
    finally:
        root.removeHandler(console)
        root.setLevel(saved[0])
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    text = (tmp_path / "log.txt").read_text().splitlines()
    assert text[0] == "earlier run" and len(text) == 4
    assert "INFO dualmode.registration: particles found" in text[1]
    assert "WARNING dualmode: odd header" in text[2] and "summarised elsewhere" in text[3]
    assert console.records == ["odd header"]


def test_peak_rss_is_reset_per_folder(folders, tmp_path):
    import resource

    block = np.ones(400 * 2**20 // 8)  # 400 MB touched, then freed: the process peak stays high
    del block
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    entry = batch.run_one(folders[2], str(tmp_path))  # the corrupt folder: fails fast after the reset
    assert entry["status"] == "failed"
    assert entry["peak_rss_mb"] < peak_before - 300


def test_thread_share_per_local_worker(monkeypatch):
    monkeypatch.setattr(batch.threads, "default_workers", lambda: 8)
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice wins
    env = batch.thread_env(2)
    assert env["NUMBA_NUM_THREADS"] == "4" and env["OPENBLAS_NUM_THREADS"] == "4"
    assert env["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] == str(batch.ITK_THREADS)
    assert "OMP_NUM_THREADS" not in env
    assert batch.thread_env(16)["NUMBA_NUM_THREADS"] == "1"


def test_pinned_threads_limits_every_pool():
    import numba
    import SimpleITK as sitk
    from threadpoolctl import threadpool_info

    before = numba.get_num_threads()
    with batch.pinned_threads(1):
        assert numba.get_num_threads() == 1
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == batch.ITK_THREADS
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert numba.get_num_threads() == before


def test_pinned_threads_hold_while_another_thread_of_the_process_finishes():
    """Two folders on two threads of one process (a threaded Dask worker): the first to finish must
    not give the BLAS pools back while the second still runs (the race that flaked in CI)."""
    import threading

    from threadpoolctl import threadpool_info

    def blas() -> int:
        return max((p["num_threads"] for p in threadpool_info()), default=1)

    if batch.default_workers() < 2 or blas() < 2:
        pytest.skip("needs a BLAS pool of 2+ threads to tell limited from unlimited")
    entered, first_left = threading.Barrier(2), threading.Event()
    seen = {}

    def folder(name: str, leave_first: bool) -> None:
        with batch.pinned_threads(1):
            entered.wait()
            if not leave_first:
                first_left.wait(5)
                seen[name] = blas()
        if leave_first:
            first_left.set()

    threads = [threading.Thread(target=folder, args=(n, n == "a")) for n in ("a", "b")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert seen == {"b": 1}
    assert blas() >= 2  # restored once both have left


def test_automatic_execution_choice(folders, monkeypatch):
    root, good, bad = folders
    monkeypatch.setattr(batch.threads, "default_workers", lambda: 2)
    monkeypatch.setattr(batch_run, "default_workers", lambda: 2)
    mode, n, why = batch.choose_execution(good, None, None)
    assert (mode, n) == ("processes", 2) and "2 folders on 2 cores" in why and "no cluster start" in why
    assert batch.choose_execution(good * 20, None, None)[:2] == ("processes", 2)
    assert batch.choose_execution(good, 2, None)[:2] == ("processes", 2)
    assert batch.choose_execution(good, 2, "local")[:2] == ("LocalCluster", 2)
    assert batch.choose_execution(good, 1, None) == ("in-process", 1, "-j 1")
    assert batch.choose_execution(good[:1], None, None) == ("in-process", 1, "one folder")
    assert batch.choose_execution(good, None, "tcp://10.0.0.5:8786")[0] == "scheduler"


def test_forked_workers_same_bytes_as_the_local_cluster(folders, first_run, tmp_path):
    """``--workers 2``: two worker processes forked here, one folder at a time each, their share
    of the cores, a failing folder isolated, and outputs byte for byte those of the Dask run."""
    root, good, bad = folders
    out = tmp_path / "out"
    assert main(["run", *good, bad, "-o", str(out), "--workers", "2", "-q"]) == 1
    s = _summary(out)
    assert s["execution"]["mode"] == "processes" and s["execution"]["workers"] == 2
    assert s["execution"]["start_method"] in ("fork", "forkserver")  # forkserver once numba's pool runs here
    by_name = {e["name"]: e for e in s["folders"]}
    assert [by_name[n]["status"] for n in ("good3", "good14", "corrupt")] == ["ok", "ok", "failed"]
    assert os.path.join("corrupt", "mri", "kspace.h5") in by_name["corrupt"]["error"]
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    for name in ("good3", "good14"):
        entry = by_name[name]
        assert entry["worker"].split(":")[-1] != str(os.getpid())  # ran in a worker, not here
        assert entry["threads"] == {"numba": share, "blas": share, "fft": share, "itk": batch.ITK_THREADS}
        mine, dask_run = _report(out, name), _report(first_run[1], name)
        assert mine["outputs"] == dask_run["outputs"]  # every file's sha256
        assert batch.resume.incomplete_outputs(str(out / name), mine) == ""
        assert f"start on {entry['worker']}" in (out / name / "log.txt").read_text()
    assert (out / "index.html").is_file() and "good3/report.html" in (out / "index.html").read_text()


def test_unwritable_output_is_a_failed_entry(folders, tmp_path):
    blocker = tmp_path / "out"
    blocker.mkdir()
    (blocker / "good3").write_text("a file where the result folder should be")
    entry = batch.run_one(folders[1][0], str(blocker))
    assert entry["status"] == "failed" and "good3: exists and is not a result folder" in entry["error"]
    assert (blocker / "good3").read_text() == "a file where the result folder should be"


def test_effective_threads_reports_the_pinned_pools():
    with batch.pinned_threads(1):
        assert batch.threads.effective_threads() == {"numba": 1, "blas": 1, "fft": 1, "itk": batch.ITK_THREADS}


def test_command_exits_with_its_code_and_all_output(folders, tmp_path):
    """``python -m dualmode run`` ends without the interpreter's teardown: the exit code, the
    buffered stdout (a pipe) and stderr must still all come out."""
    root, good, bad = folders
    proc = subprocess.run([sys.executable, "-m", "dualmode", "run", good[0], bad, "-o", str(tmp_path), "-j", "1",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["status"] for e in lines[:-1]] == ["ok", "failed"]
    assert lines[-1]["state"] == "finished" and (lines[-1]["ok"], lines[-1]["failed"]) == (1, 1)
    assert "corrupt: FAILED" in proc.stderr
    assert _summary(tmp_path)["state"] == "finished" and (tmp_path / "index.html").is_file()


def test_workers_are_forked_only_from_a_single_threaded_process():
    """Another thread may hold a lock the child would inherit locked: then the workers start from a
    forkserver instead."""
    import threading

    from dualmode.batch import forked

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert forked.start_method() in ("forkserver", "spawn")
    finally:
        stop.set()
        other.join()


_HANDOUT = """
import json, time
import dualmode.batch.forked as f
f.warm_imports = lambda: None
f.run_one = lambda folder, **kw: {"folder": folder, "name": folder, "status": "ok", "finished": time.time()}
workers = f.ForkedWorkers(1, {}, method="fork")
seen = []
def report(entry):
    held = [w.folder for w in workers.workers]
    time.sleep(0.5)  # slow bookkeeping (summary.json, the study page): the worker must not wait for it
    seen.append([entry["name"], held, entry["finished"], time.time()])
workers.run(["a", "b", "c"], report)
print(json.dumps(seen))
"""


def test_next_folder_is_handed_out_before_the_bookkeeping():
    """A forked worker gets its next folder as soon as it returns one, before this process writes
    ``summary.json`` and the study page for it (that work is off the workers' critical path)."""
    import multiprocessing

    # the subprocess forks (method="fork"); this process may not (pytest's threads, numba's pool)
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this system")
    out = subprocess.run([sys.executable, "-c", _HANDOUT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout)
    assert [(name, held) for name, held, _, _ in seen] == [("a", ["b"]), ("b", ["c"]), ("c", [None])]
    # b and c were done while the folder before each was still being reported
    assert seen[1][2] < seen[0][3] and seen[2][2] < seen[1][3]
