"""A batch under faults: FIFO and device inputs, stuck folders, Ctrl-C/SIGTERM, two runs, full disk, foreign files."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from dualmode import batch
from dualmode.cli import main
from dualmode.simulate import SimulationConfig, simulate_folder

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny 2D folder (matrix 32); tests copy it under other names."""
    folder = tmp_path_factory.mktemp("tiny") / "t0"
    simulate_folder(folder, SimulationConfig(seed=3, matrix=32))
    return str(folder)


def _copies(src, root, names):
    out = []
    for name in names:
        shutil.copytree(src, root / name)
        out.append(str(root / name))
    return out


def _summary(out):
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]),
               DASK_DISTRIBUTED__WORKER__PRELOAD='["dualmode_inject"]', **extra)
    env.pop("COLUMNS", None)
    return env


def _dualmode(args, **env):
    """``dualmode ARGS`` in a subprocess with fault injection loaded (parent and Dask workers)."""
    code = "import sys, dualmode_inject; from dualmode.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "run", *args], env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


#: ``dualmode run`` flags of the two local modes: forked worker processes, a Dask LocalCluster
LOCAL_MODES = {"processes": ["--workers", "2"], "LocalCluster": ["--workers", "2", "--scheduler", "local"]}


@pytest.mark.parametrize("mode", LOCAL_MODES)
def test_fifo_dev_zero_and_stuck_folder(tiny, tmp_path, mode):
    root = tmp_path / "acq"
    good = _copies(tiny, root, ["g1", "g2", "g3", "g4"])
    fifo, zero, stuck = _copies(tiny, root, ["fifo", "zero", "sleepy"])
    os.remove(os.path.join(fifo, "mri", "kspace.h5"))
    os.mkfifo(os.path.join(fifo, "mri", "kspace.h5"))  # would block any reader forever
    os.symlink("/dev/zero", os.path.join(zero, "notes.bin"))  # not referenced by the manifest: never read
    os.mkfifo(os.path.join(zero, "pipe"))
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = _dualmode([*good, fifo, zero, stuck, "-o", str(out), *LOCAL_MODES[mode], "--timeout", "30", "-q"],
                     DUALMODE_INJECT_SLEEP="sleepy")
    stdout, stderr = proc.communicate(timeout=30 + 300)
    seconds = time.monotonic() - t0
    assert proc.returncode == 1, stderr
    s = _summary(out)
    by = {e["name"]: e for e in s["folders"]}
    assert s["state"] == "finished" and s["execution"]["mode"] == mode
    assert [by[n]["status"] for n in ("g1", "g2", "g3", "g4", "zero")] == ["ok"] * 5, s["folders"]
    assert by["fifo"]["status"] == "failed"
    assert by["fifo"]["error"] == (f"{fifo}/mri/kspace.h5 [mri.source.path]: is a FIFO (named pipe), not a regular "
                                   f"file; refusing to read it")
    assert by["sleepy"]["status"] == "failed" and "time limit of 30 s" in by["sleepy"]["error"]
    assert "fifo: FAILED" in stderr and "sleepy: FAILED" in stderr  # failures on stderr even with -q
    print(f"{mode}: FIFO/dev-zero/stuck batch of 7 folders: {seconds:.1f} s with --timeout 30")


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_worker_dying_under_a_folder_is_replaced(tiny, tmp_path, method):
    """A worker killed under a folder (as by the out-of-memory killer): the folder is tried once
    more on a new worker, then failed naming the signal; the other folders are done."""
    folders = _copies(tiny, tmp_path / "acq", ["boom", "g1", "g2", "g3"])
    out = tmp_path / "out"
    code = (f"import sys, dualmode_inject, dualmode.batch.forked as f; f.start_method = lambda: {method!r}; "
            f"import multiprocessing.forkserver as fs; fs.set_forkserver_preload(['dualmode_inject']); "
            f"from dualmode.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "run", *folders, "-o", str(out), "--workers", "2", "-q"],
                          env=_env(DUALMODE_INJECT_CRASH="boom"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    s = _summary(out)
    assert s["state"] == "finished" and s["execution"]["start_method"] == method
    by = {e["name"]: e for e in s["folders"]}
    assert [by[n]["status"] for n in ("g1", "g2", "g3")] == ["ok"] * 3, s["folders"]
    assert by["boom"]["status"] == "failed"
    assert by["boom"]["error"] == (f"{folders[0]}: its worker process died (killed by SIGKILL, e.g. out of "
                                   f"memory) in each of 2 tries")


def test_stuck_folder_in_process_times_out(tiny, tmp_path, monkeypatch):
    import dualmode.pipeline as pipeline

    monkeypatch.setattr(pipeline, "process_folder", lambda *a, **k: time.sleep(30))
    t0 = time.monotonic()
    entry = batch.run_one(tiny, str(tmp_path), timeout=1.5)
    assert time.monotonic() - t0 < 10
    assert entry["status"] == "failed" and entry["error"] == f"{tiny}: not finished within the time limit of " \
                                                             f"1.5 s (--timeout)"


@pytest.mark.parametrize("sig,mode", [(signal.SIGINT, "processes"), (signal.SIGTERM, "processes"),
                                      (signal.SIGINT, "LocalCluster"), (signal.SIGTERM, "LocalCluster")])
def test_interrupt_stops_workers_within_seconds(tiny, tmp_path, sig, mode):
    import psutil

    folders = _copies(tiny, tmp_path / "acq", [f"sleepy{i}" for i in range(4)])
    out = tmp_path / "out"
    proc = _dualmode([*folders, "-o", str(out), *LOCAL_MODES[mode]], DUALMODE_INJECT_SLEEP="sleepy")
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # until both workers run a folder (LocalCluster: this process one too)
        time.sleep(1)
        if os.path.exists(out / "summary.json") and len(me.children(recursive=True)) >= (2 if mode == "processes" else 3) \
                and _summary(out).get("execution", {}).get("mode") == mode:
            break
    else:
        pytest.fail("the batch never got its workers running")
    time.sleep(3)
    children = me.children(recursive=True)
    t0 = time.monotonic()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    seconds = time.monotonic() - t0
    assert proc.returncode == 130, stderr
    assert seconds < 10, seconds
    s = _summary(out)
    assert s["state"] == "interrupted" and s["failed"] == 4
    assert all(e["error"].endswith("not finished: interrupted") for e in s["folders"])
    time.sleep(1)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    print(f"{signal.Signals(sig).name}: stopped in {seconds:.1f} s")


def test_one_run_per_out_and_summary_keeps_earlier_runs(tiny, tmp_path, capsys):
    a, b = _copies(tiny, tmp_path / "acq", ["a", "b"])
    out = tmp_path / "out"
    out.mkdir()
    with batch.outroot.OutputLock(str(out)):  # another run holds OUT
        t0 = time.monotonic()
        assert main(["run", a, "-o", str(out), "-q"]) == 2
        assert time.monotonic() - t0 < 5
    assert "another dualmode run is writing here (pid" in capsys.readouterr().err
    assert main(["run", a, "-o", str(out), "-q"]) == 0
    assert main(["run", b, "-o", str(out), "-q"]) == 0
    s = _summary(out)
    assert [(e["name"], e["status"]) for e in s["folders"]] == [("a", "ok"), ("b", "ok")]
    assert s["ok"] == 2 and s["folders"][0]["run"] != s["folders"][1]["run"] or s["folders"][0]["run"]


def test_out_from_another_source_is_refused_unless_overwrite(tiny, tmp_path):
    first = _copies(tiny, tmp_path / "one", ["scan"])[0]
    second = _copies(tiny, tmp_path / "two", ["scan"])[0]
    out = tmp_path / "out"
    assert main(["run", first, "-o", str(out), "-q"]) == 0
    before = (out / "scan" / "report.json").read_bytes()
    assert main(["run", second, "-o", str(out), "-q"]) == 1
    assert "holds the result of another folder" in _summary(out)["folders"][0]["error"]
    assert (out / "scan" / "report.json").read_bytes() == before
    assert main(["run", second, "-o", str(out), "-q", "--overwrite"]) == 0, _summary(out)["folders"]
    with open(out / "scan" / "report.json") as f:
        assert json.load(f)["folder"] == second


def test_out_inside_input_is_refused(tiny, tmp_path, capsys):
    acq = _copies(tiny, tmp_path, ["acq"])[0]
    assert main(["run", acq, "-o", os.path.join(acq, "results"), "-q"]) == 2
    assert "is inside the input folder" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(acq, "results"))


def test_foreign_entries_in_a_result_folder_are_never_deleted(tiny, tmp_path):
    acq = _copies(tiny, tmp_path / "acq", ["s"])[0]
    out = tmp_path / "out"
    assert main(["run", acq, "-o", str(out), "-q"]) == 0
    os.remove(out / "s" / "qc.png")
    (out / "s" / "qc.png").mkdir()  # a directory where an output file goes
    (out / "s" / "qc.png" / "mine.txt").write_text("user data")
    assert main(["run", acq, "-o", str(out), "-q"]) == 1
    err = _summary(out)["folders"][0]["error"]
    assert err == f"{out}/s/qc.png: a directory is where a dualmode output goes; not replacing it (move it away)"
    assert (out / "s" / "qc.png" / "mine.txt").read_text() == "user data"
    shutil.rmtree(out / "s" / "qc.png")
    (out / "s" / "notes.txt").write_text("mine")
    assert main(["run", acq, "-o", str(out), "-q"]) == 1
    assert "notes.txt: not written by dualmode" in _summary(out)["folders"][0]["error"]
    assert (out / "s" / "notes.txt").read_text() == "mine"


def _mount_tmpfs(path, size):
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs as a full disk here: {proc.stderr.strip()}")


def test_disk_full_fails_the_folder_naming_the_file(tiny, tmp_path):
    folders = _copies(tiny, tmp_path / "acq", ["first", "second", "third"])
    out = tmp_path / "out"
    _mount_tmpfs(out, "8m")
    try:
        st = os.statvfs(out)
        ballast = st.f_bavail * st.f_frsize - 3 * 2**20  # room for one result (about 2 MB), not two
        with open(out / "ballast", "wb") as f:
            f.write(b"\0" * ballast)
        code = main(["run", *folders, "-o", str(out), "-j", "1", "-q"])
        s = _summary(out)
        assert code == 1 and s["state"] == "finished", s["folders"]
        statuses = [e["status"] for e in s["folders"]]
        assert statuses[0] == "ok" and "failed" in statuses and "pending" not in statuses, s["folders"]
        for e in s["folders"]:
            if e["status"] == "failed":
                assert "No space left on device" in e["error"] and e["error"].startswith(f"{out}/{e['name']}/")
                assert not (out / e["name"] / "report.json").exists()
        assert not [n for n in os.listdir(out) if ".staging-" in n]
        print("disk full errors:", [e["error"] for e in s["folders"] if e["status"] == "failed"])
    finally:
        subprocess.run(["umount", str(out)], check=False)


def test_memory_guard_counts_every_reconstruction_array(tiny, tmp_path):
    """The issue's file: small, declaring matrix y = 1 000 000; refused before anything is allocated."""
    import h5py

    from dualmode import errors

    acq = _copies(tiny, tmp_path / "acq", ["huge"])[0]
    h5 = os.path.join(acq, "mri", "kspace.h5")
    with h5py.File(h5, "r+") as f:
        xml = f["dataset/xml"][0].decode()
        head, sep, rest = xml.partition("<encodedSpace>")
        f["dataset/xml"][0] = (head + sep + rest.replace("<y>32</y>", "<y>1000000</y>", 1)).encode()
    assert os.path.getsize(h5) < 300_000
    entry = batch.run_one(acq, str(tmp_path / "out"))
    assert entry["status"] == "failed"
    assert entry["error"].startswith(f"{h5} [data]: declared size (4, 1, 32, 1000000, 1) means about 12.3 GB "
                                     f"for the reconstruction (128000000 samples x 96 B)")
    assert entry["peak_rss_mb"] < 1500  # refused before allocating (the old guard let it grow to 4.8 GB)
    assert 128_000_000 * 8 < errors.MAX_ALLOCATION_BYTES  # what counting only the complex64 samples would pass
