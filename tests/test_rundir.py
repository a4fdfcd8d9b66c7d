"""A run directory you can trust: its lock, the digests of what each stage wrote and read, failed writes, kill -9.

A toy task (generate -> teach -> distill, each writing real files through the real runner and atomic writers) keeps
this fast; the CLI runs it in subprocesses with the toy added to the task package.
"""

import errno
import hashlib
import json
import logging
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from conftest import extra_task

from l1forge.config import load_config
from l1forge.core.artifacts import ArtifactWriteError, write_arrays_atomic
from l1forge.runner import LOCK, RunDirBusy, Runner, run_lock, run_tasks

TOY = '''
import os
import signal

import numpy as np

from l1forge.core.artifacts import atomic_path, read_array, write_arrays_atomic, write_json_atomic
from l1forge.tasks.base import Task

N = 2_000_000  # bytes of data


def kill_at(point):
    """A real kill -9 of this process at ``point``, when RUNDIR_KILL names it."""
    if os.environ.get("RUNDIR_KILL") == point:
        os.kill(os.getpid(), signal.SIGKILL)


if os.environ.get("RUNDIR_KILL") == "state:replace":  # killed between state.json's temporary file and its rename
    _replace = os.replace

    def _replace_or_die(src, dst, *args, **kwargs):
        kill_at("state:replace" if str(dst).endswith("state.json") else None)
        return _replace(src, dst, *args, **kwargs)

    os.replace = _replace_or_die


class Rundir(Task):
    """generate -> teach -> distill: data bytes, their histogram, a directory of "weights" from the histogram."""

    name = "rundir"
    data_file = "numbers.bin"
    stages = ("generate", "teach", "distill")
    report_template = None

    def generate(self):
        seed = int(os.environ.get("RUNDIR_SEED", "7"))  # not in the configuration: other bytes, like a new training

        def work():
            if os.environ.get("RUNDIR_FAIL"):
                raise RuntimeError("generate failed")
            x = np.random.default_rng(seed).integers(0, 256, N, dtype=np.uint8).tobytes()
            with atomic_path(self.data_path) as tmp, open(tmp, "wb") as f:
                f.write(x[: N // 2])
                f.flush()
                kill_at("generate:mid-write")
                f.write(x[N // 2:])
            return {"bytes": N}

        return self.stage("generate", {"n": N}, [], [self.data_path], work)

    def teach(self):
        out = self.run.teacher("toy")

        def work():
            x = np.frombuffer(self.data_path.read_bytes(), np.uint8)
            write_arrays_atomic(out / "hist.h5", {"hist": np.bincount(x, minlength=256)})
            write_json_atomic(out / "stats.json", {"mean": float(x.mean())})
            kill_at("teach:after-write")
            return {"mean": float(x.mean())}

        return self.stage("teach", {}, ["generate"], [out / "hist.h5", out / "stats.json"], work)

    def distill(self):
        out = self.run.student

        def work():
            hist = read_array(self.run.teacher("toy") / "hist.h5", "hist")
            write_arrays_atomic(out / "weights.h5", {"w": hist / hist.sum()})
            with atomic_path(out / "config.json") as tmp:
                tmp.write_text('{"bins": 256}')
                kill_at("distill:mid-write")
            return {"bins": len(hist)}

        return self.stage("distill", {}, ["teach"], [out], work)  # a directory output

    def summary(self):
        return {name: self.run.state.get(name, {}).get("result") for name in self.stages}


TASK = Rundir
'''

# the l1forge command, with the toy task's folder (first argument) added to the task package
L1FORGE = [sys.executable, "-c", "import sys, l1forge.tasks as t; t.__path__.append(sys.argv.pop(1)); "
                                 "from l1forge.cli import main; main()"]
STAGES = ("generate", "teach", "distill")


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The folder of the toy task's module, which the task package (in this process too) now finds."""
    with extra_task(tmp_path / "extra_tasks", monkeypatch, "rundirtoy", TOY) as extra:
        yield extra


def l1forge(toy_dir, *args, **env):
    environ = {**os.environ, "COLUMNS": "400", **env}  # log lines unwrapped
    return subprocess.run([*L1FORGE, str(toy_dir), *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=environ)


def flow(out, caplog) -> list[str]:
    """Run the toy flow in ``out`` through the runner here; the stages that ran."""
    caplog.clear()
    Runner(load_config("smoke", None, "rundir"), out, progress=False).run_all()
    return [s for s in STAGES if f"rundir/{s}: running" in caplog.messages]


def notes(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def write_lock(out: pathlib.Path, pid: int, host: str = socket.gethostname()) -> pathlib.Path:
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK
    lock.write_text(json.dumps({"pid": pid, "host": host, "started": "2025-01-02T03:04:05+00:00"}))
    return lock


def artifacts(out: pathlib.Path) -> dict:
    """{file: bytes} of everything a run wrote, less what records times (state.json, summary.json, report.html)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in ("state.json", "summary.json", "report.html")}


def digests(out: pathlib.Path) -> dict:
    """state.json less the results (their times differ from run to run)."""
    return {stage: {k: v for k, v in entry.items() if k != "result"}
            for stage, entry in json.loads((out / "state.json").read_text()).items()}


# ---- the lock ------------------------------------------------------------------------------------------------------
def test_a_live_lock_stops_a_second_command_in_one_line(toy, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(["sleep", "120"])
    try:
        lock = write_lock(out, holder.pid)
        before = lock.read_text()
        res = l1forge(toy, "generate", "--task", "rundir", "--preset", "smoke", "--out", out, "-q")
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 1 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        host = socket.gethostname()
        assert f"in use by another l1forge (pid {holder.pid} on {host}, started 2025-01-02T03:04:05+00:00)" in lines[0]
        assert str(lock) in lines[0]
        assert lock.read_text() == before and sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written

        with pytest.raises(RunDirBusy, match=f"pid {holder.pid} on"):  # the runner itself, any stage
            Runner(load_config("smoke", None, "rundir"), out, progress=False).run_stage("teach")
        assert lock.read_text() == before
    finally:
        holder.kill()
        holder.wait()
    write_lock(out, 1, host="another-host")  # another host's process cannot be checked: assumed live
    with pytest.raises(RunDirBusy, match="pid 1 on another-host"):
        run_tasks({"rundir": load_config("smoke", None, "rundir")}, out)


def test_a_stale_lock_is_taken_over_with_a_note(toy, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="l1forge")
    gone = subprocess.Popen(["true"])
    gone.wait()
    out = tmp_path / "run"
    write_lock(out, gone.pid)
    assert flow(out, caplog) == list(STAGES)
    assert notes(caplog) == [f"{out.resolve()}: taking over the lock of pid {gone.pid} on {socket.gethostname()}, "
                             "started 2025-01-02T03:04:05+00:00, which is no longer running"]
    assert not (out / LOCK).exists()  # released when the run ended

    zombie = subprocess.Popen(["true"])  # exited but not reaped: its pid still answers kill(pid, 0)
    deadline = time.time() + 10
    while pathlib.Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.time() < deadline
        time.sleep(0.01)
    write_lock(out, zombie.pid)
    assert flow(out, caplog) == [] and f"lock of pid {zombie.pid}" in notes(caplog)[0]
    zombie.wait()

    (out / LOCK).write_text("")  # killed between creating its lock and writing it: empty, and old
    os.utime(out / LOCK, (time.time() - 60,) * 2)
    assert flow(out, caplog) == [] and "lock of pid None" in notes(caplog)[0] and not (out / LOCK).exists()


def test_the_lock_is_reentrant_in_a_process_and_released_on_errors(toy, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="l1forge")
    out = tmp_path / "run"
    with run_lock(out) as took:
        lock = json.loads((out / LOCK).read_text())
        assert took and lock["pid"] == os.getpid() and lock["host"] == socket.gethostname()
        assert flow(out, caplog) == list(STAGES)  # the runner inside the same process's hold
        assert (out / LOCK).exists()
    assert not (out / LOCK).exists()

    monkeypatch.setenv("RUNDIR_FAIL", "1")
    with pytest.raises(RuntimeError, match="generate failed"):
        flow(tmp_path / "failing", caplog)
    assert not (tmp_path / "failing" / LOCK).exists()

    monkeypatch.delenv("RUNDIR_FAIL")
    summary = run_tasks({"rundir": load_config("smoke", None, "rundir")}, tmp_path / "all", progress=False)
    assert summary["tasks"]["rundir"]["distill"]["bins"] == 256 and not list((tmp_path / "all").rglob(LOCK))


# ---- integrity -----------------------------------------------------------------------------------------------------
def test_a_truncated_output_reruns_its_stage_and_the_stages_that_read_it(toy, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="l1forge")
    out = tmp_path / "run"
    assert flow(out, caplog) == list(STAGES)
    assert flow(out, caplog) == [] and caplog.messages.count("rundir/teach: up to date, skipped") == 1
    data = out / "data" / "numbers.bin"

    data.write_bytes(data.read_bytes()[:1000])
    monkeypatch.setenv("RUNDIR_SEED", "8")  # the rerun writes other bytes (a new training would)
    assert flow(out, caplog) == list(STAGES)
    assert notes(caplog)[0] == ("rundir/generate: data/numbers.bin changed since it was written "
                                "(size 1000 != 2000000), rerunning")
    assert notes(caplog)[1].startswith("rundir/teach: data/numbers.bin changed since it was read by this stage "
                                       "(same size, sha256 ")
    assert notes(caplog)[2].startswith("rundir/distill: teachers/toy/hist.h5 changed since it was read by this stage")

    written = artifacts(out)
    data.unlink()  # rewritten with the same bytes: what the later stages read is what they read before
    assert flow(out, caplog) == ["generate"]
    assert notes(caplog) == ["rundir/generate: data/numbers.bin is missing, rerunning"]
    assert artifacts(out) == written

    (out / "students" / "student" / "config.json").unlink()  # a file of a directory output
    assert flow(out, caplog) == ["distill"]
    assert notes(caplog) == ["rundir/distill: students/student/config.json is missing, rerunning"]
    assert flow(out, caplog) == []


def test_an_altered_output_of_the_same_size_is_found(toy, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="l1forge")
    out = tmp_path / "run"
    flow(out, caplog)
    hist = out / "teachers" / "toy" / "hist.h5"
    original, before = hist.read_bytes(), digests(out)
    with h5py.File(hist) as f:
        offset = f["hist"].id.get_offset()
    altered = bytearray(original)
    altered[offset + 1] ^= 0x01  # one count of the histogram, +-256
    hist.write_bytes(bytes(altered))
    sha = {name: hashlib.sha256(data).hexdigest()[:12] for name, data in (("original", original), ("altered", altered))}

    # distill alone, on the altered file: it reruns (what it reads changed), without redoing teach
    caplog.clear()
    Runner(load_config("smoke", None, "rundir"), out, progress=False).run_stage("distill")
    assert notes(caplog) == ["rundir/distill: teachers/toy/hist.h5 changed since it was read by this stage "
                             f"(same size, sha256 {sha['altered']} != {sha['original']}), rerunning"]
    # the whole flow: teach writes the original bytes again, and distill, which read the altered ones, reruns again
    assert flow(out, caplog) == ["teach", "distill"]
    assert notes(caplog)[0] == ("rundir/teach: teachers/toy/hist.h5 changed since it was written "
                                f"(same size, sha256 {sha['altered']} != {sha['original']}), rerunning")
    assert hist.read_bytes() == original and digests(out) == before


def test_a_state_without_digests_is_trusted_once_then_recorded(toy, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="l1forge")
    out = tmp_path / "run"
    flow(out, caplog)
    state = json.loads((out / "state.json").read_text())
    before = digests(out)
    old = {stage: {"fingerprint": e["fingerprint"], "result": e["result"]} for stage, e in state.items()}
    (out / "state.json").write_text(json.dumps(old))  # as an older l1forge wrote it
    assert flow(out, caplog) == [] and not notes(caplog)
    assert digests(out) == before  # recorded now, from the files as they are
    (out / "students" / "student" / "weights.h5").write_bytes(b"")
    assert flow(out, caplog) == ["distill"]


# ---- failed writes -------------------------------------------------------------------------------------------------
def test_a_failed_write_is_one_line_naming_the_file_and_loses_nothing(toy, tmp_path, caplog, monkeypatch, capsys):
    import l1forge.cli
    import l1forge.core.artifacts as artifacts_module

    out = tmp_path / "run"
    flow(out, caplog)
    written, state = artifacts(out), (out / "state.json").read_bytes()

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(artifacts_module.os, "replace", disk_full)
        m.setenv("RUNDIR_SEED", "9")  # other bytes: were anything replaced, it would show
        m.setattr(sys, "argv", ["l1forge", "generate", "--task", "rundir", "--preset", "smoke", "--out", str(out),
                                "--force", "-q"])
        with pytest.raises(SystemExit) as exit_:
            l1forge.cli.main()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 1 and len(lines) == 1, lines
    assert f"error: {out / 'data' / 'numbers.bin'}: cannot be written (No space left on device)" in lines[0]
    assert artifacts(out) == written and (out / "state.json").read_bytes() == state  # no temporary file left either
    assert not (out / LOCK).exists()

    folder = out / "data" / "numbers.bin"  # a folder that is a file
    message = f"{folder / 'x.h5'}: cannot be written (File exists: {folder})"
    with pytest.raises(ArtifactWriteError, match=re.escape(message)):
        write_arrays_atomic(folder / "x.h5", {"x": np.zeros(3)})


# ---- kill -9 -------------------------------------------------------------------------------------------------------
def test_kill_9_at_any_point_then_a_run_gives_the_artifacts_of_an_uninterrupted_one(toy, tmp_path):
    run = ("run", "--task", "rundir", "--preset", "smoke", "-q", "--out")
    reference = tmp_path / "reference"
    assert l1forge(toy, *run, reference).returncode == 0

    out = tmp_path / "killed"
    recorded = {"generate:mid-write": [], "state:replace": [], "teach:after-write": ["generate"],
                "distill:mid-write": ["generate", "teach"]}
    for point, stages in recorded.items():  # each run resumes the one killed before it
        res = l1forge(toy, *run, out, RUNDIR_KILL=point)
        assert res.returncode == -9, (point, res.stderr)
        state = json.loads((out / "state.json").read_text()) if (out / "state.json").exists() else {}
        assert list(state) == stages, point
        assert (out / LOCK).exists()  # a kill -9 releases nothing
        if point == "generate:mid-write":
            assert not (out / "data" / "numbers.bin").exists() and list((out / "data").glob(".numbers.bin.*.tmp"))
        if point == "distill:mid-write":
            assert list((out / "students" / "student").glob(".config.json.*.tmp"))
        if point == "state:replace":
            assert list(out.glob(".state.json.*.tmp")) and (out / "data" / "numbers.bin").exists()
    res = l1forge(toy, *run, out)
    assert res.returncode == 0 and "taking over the lock of pid" in res.stderr, res.stderr
    assert res.stderr.count("up to date, skipped") == 2 and "rundir/distill: running" in res.stderr
    assert artifacts(out) == artifacts(reference) and digests(out) == digests(reference)
    assert not list(out.rglob("*.tmp")) and not (out / LOCK).exists()


def test_code_version_follows_the_sources_of_the_stage_floors(tmp_path, monkeypatch):
    """A change in a floor's source changes the fingerprint of the stages that run it, and of no other stage."""
    import sys
    import types

    from l1forge import runner

    for name in ("fake_a", "fake_b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        (tmp_path / name / "work.py").write_text(f"NAME = {name!r}\n")
        monkeypatch.setitem(sys.modules, f"l1forge.{name}", types.SimpleNamespace(__file__=str(tmp_path / name / "__init__.py")))
    monkeypatch.setattr(runner, "CODE", {"generate": ("fake_a",), "teach": ("fake_b",)})
    runner.code_version.cache_clear()
    before = runner.code_version("generate"), runner.code_version("teach.gnn")
    assert runner.code_version("teach.gnn") == runner.code_version("teach.transformer") != before[0]
    (tmp_path / "fake_b" / "work.py").write_text("X = 2\n")
    runner.code_version.cache_clear()
    assert runner.code_version("generate") == before[0] and runner.code_version("teach.gnn") != before[1]
    runner.code_version.cache_clear()


def test_placement_fields_stay_out_of_fingerprints():
    """Where work runs (workers, executor, address) is declared at the field and changes no fingerprint; what it
    computes (the seed) does."""
    from l1forge.config import DataConfig
    from l1forge.runner import RunDir

    base = RunDir.fingerprint("generate", DataConfig())
    assert RunDir.fingerprint("generate", DataConfig(workers=7, executor="dask", address="tcp://x:1")) == base
    assert RunDir.fingerprint("generate", DataConfig(seed=2)) != base
