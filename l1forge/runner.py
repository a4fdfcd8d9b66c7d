"""The runner: one task, one configuration, one run directory; it owns the bookkeeping of every task.

``state.json`` maps each finished stage to the fingerprint of its configuration, of the stages it read and of the code
it runs (``code_version``: the package version and the sources of its floors), to its
result block, and to the size and sha256 of every file it wrote (``outputs``: a directory output as each file under
it, compiled ``*.so``/``*.o`` left out, which later stages rebuild in place) and of every upstream output it read
(``inputs``). A stage is skipped when its fingerprint is unchanged and all those files are still as recorded;
otherwise it reruns, with one warning naming the first file that differs ("tagging/teach.gnn: data/jets.h5 changed
since it was read by this stage (size 123 != 456), rerunning"). So a stage whose output was truncated or altered
reruns, and if it writes other bytes, so does every stage that read them; if it writes the same bytes again, they
are skipped (what they read is what they read before). A stage recorded without digests (an older l1forge) is trusted
once if its outputs exist, and its digests are recorded then. Another run directory's ``state.json`` as an output
(the chain's pileup run) is digested as the outputs that run recorded. Each file is hashed once per process (sha256
streams at about 1.3 GB/s: 75 ms for 100 MB). A stage killed midway never reached ``state.json`` and is redone, after
the temporary files that killed atomic writes left beside its outputs are removed. ``state.json`` is replaced
atomically after every stage, and ``summary.json`` and ``report.html`` are written atomically by ``report``.

The lock: while a runner works in its run directory (``stage``, ``run_stage``, ``run_all``, ``report``) it holds
``<run dir>/.l1forge.lock``, created with O_CREAT|O_EXCL and holding {pid, host, started}; ``run_tasks`` holds those of
``out/`` and of every ``out/<task>/`` for the whole run. A second process stops at once with RunDirBusy, one line
naming the holder. Within a process the lock is re-entrant (nested runners: the chain's pileup run, the runners of
``run_tasks``) and is released when the outermost hold ends, on an exception too. A lock whose process is gone (same
host, its pid not running or a zombie) is taken over with a warning; one from another host is assumed live.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import logging
import os
import pathlib
import shutil
import socket
import time

from l1forge import __version__
from l1forge.core.artifacts import ArtifactError, ArtifactWriteError, write_json_atomic

log = logging.getLogger("l1forge")

LOCK = ".l1forge.lock"
_held: dict[pathlib.Path, int] = {}  # the locks this process holds, with their nesting depth
_hashes: dict[tuple, str] = {}  # sha256 of the files this process hashed, by their stat


# the floors (packages) whose code each kind of stage runs; a stage not listed runs on every floor
CODE = {"generate": ("events", "quantize"), "teach": ("teachers",), "distill": ("students", "quantize"),
        "synthesize": ("firmware", "graph", "quantize"), "emulate": ("emulation", "graph", "quantize"),
        "rtl": ("rtl", "graph", "emulation", "quantize"), "scan": ("firmware", "students", "graph", "quantize")}
FLOORS = ("core", "quantize", "graph", "events", "teachers", "students", "firmware", "emulation", "rtl")


@functools.cache
def code_version(stage: str) -> str:
    """The version of the code stage ``stage`` runs: the package version and a digest of the sources (``*.py``,
    ``*.json``) of its floors (``CODE``, by the part of the name before the first dot), so that a code change reruns
    the stages it can change and no other."""
    import importlib

    digest = hashlib.sha256(__version__.encode())
    for floor in CODE.get(stage.split(".")[0], FLOORS):
        root = pathlib.Path(importlib.import_module(f"l1forge.{floor}").__file__).parent
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json")):
            digest.update(f"{path.relative_to(root)}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _plain(value):
    """A configuration section as a stage's fingerprint sees it: every field but those that say where the work runs
    (``json_schema_extra={"fingerprint": False}`` in l1forge/config.py), so no stage lists what to leave out."""
    fields = getattr(type(value), "model_fields", None)
    if fields is None:
        return str(value)
    return {k: getattr(value, k) for k, f in fields.items() if (f.json_schema_extra or {}).get("fingerprint", True)}


class RunDirBusy(RuntimeError):
    """The run directory is in use by another live l1forge process; the message is one line naming it."""


@contextlib.contextmanager
def run_lock(root):
    """Hold the lock of run directory ``root`` for the block (re-entrant in a process); yields True if it took it."""
    path = pathlib.Path(root).resolve() / LOCK
    first = path not in _held
    if first:
        _acquire(path)
    _held[path] = _held.get(path, 0) + 1
    try:
        yield first
    finally:
        _held[path] -= 1
        if not _held[path]:
            del _held[path]
            path.unlink(missing_ok=True)


def _acquire(path: pathlib.Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    for _ in range(10):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                text, age = path.read_text(), time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile
            holder = _holder(text)
            who = f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
            if _alive(holder) if holder else age < 10:  # an empty lock is being written, unless it is old
                raise RunDirBusy(f"{path.parent} is in use by another l1forge ({who}); wait for it to finish, or "
                                 f"delete {path} if that process is gone") from None
            log.warning("%s: taking over the lock of %s, which is no longer running", path.parent, who)
            _discard(path, text)
            continue
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
        except OSError as err:  # a full disk: no empty lock left behind
            path.unlink(missing_ok=True)
            raise ArtifactWriteError(err.errno, f"{path}: cannot be written ({err.strerror})") from None
        return
    raise RunDirBusy(f"{path.parent}: could not take the lock {path} (other processes keep taking it)")


def _holder(text: str) -> dict:
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(holder: dict) -> bool:
    """Whether a lock's holder may still run: one on another host is assumed to; here its pid must run and not be a
    zombie (this process's own pid is an earlier process's: a lock of ours would be in ``_held``)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname():
        return True
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _discard(path: pathlib.Path, text: str):
    """Remove the stale lock ``path`` if it still holds ``text`` (two processes may find it stale at once)."""
    aside = path.with_name(f"{path.name}.{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if aside.read_text() == text:
        aside.unlink()
    else:  # another process's fresh lock: put it back
        os.rename(aside, path)


def _digest(path: pathlib.Path) -> dict:
    """{"size", "sha256"} of a file, hashed once per process while its stat is unchanged."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key not in _hashes:
            _hashes[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return {"size": st.st_size, "sha256": _hashes[key]}


def _recorded(path: pathlib.Path) -> bool:
    """Whether a file under a directory output is recorded: not a compiled library nor a temporary file."""
    return path.suffix not in (".so", ".o") and not (path.name.startswith(".") and path.name.endswith(".tmp"))


class RunDir:
    """Where the stages of one task write (layout in the README), and the record of which stages are done."""

    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.resolved = self.root.resolve()
        self.state_path = self.root / "state.json"
        self.reload()
        self.student = self.root / "students" / "student"
        self.baseline = self.root / "students" / "baseline"
        self.firmware = self.root / "firmware"
        self.hls_project = self.firmware / "hls_project"
        self.emulation = self.root / "emulation"

    def reload(self):
        """(Re)read state.json: another command may have written it since."""
        try:
            self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        except ValueError as err:
            raise ArtifactError(f"{self.state_path}: not valid JSON ({err}); delete it to redo every stage") from None

    def data(self, name: str) -> pathlib.Path:
        return self.root / "data" / name

    def teacher(self, kind: str) -> pathlib.Path:
        return self.root / "teachers" / kind

    @staticmethod
    def fingerprint(*parts) -> str:
        text = json.dumps(parts, sort_keys=True, default=_plain)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def rel(self, path) -> str:
        """``path`` as state.json names it: relative to the run directory if inside it (a copied run stays whole)."""
        path = pathlib.Path(path).resolve()
        return path.relative_to(self.resolved).as_posix() if path.is_relative_to(self.resolved) else str(path)

    def inputs(self, upstream) -> list[str]:
        """The recorded outputs of the ``upstream`` stages."""
        return list(dict.fromkeys(rel for u in upstream for rel in self.state.get(u, {}).get("outputs", {})))

    def snapshot(self, rel: str):
        """What ``rel`` holds now: {"size", "sha256"} of a file, {"files": {name: that}} of a directory, None if it is
        missing; another run's state.json as {"sha256"} of the outputs it records."""
        path = self.root / rel
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _recorded(p))
            return {"files": {p.relative_to(path).as_posix(): _digest(p) for p in files}}
        if not path.is_file():
            return None
        if path.name == "state.json":
            outputs = {stage: entry.get("outputs") for stage, entry in json.loads(path.read_text()).items()}
            return {"sha256": hashlib.sha256(json.dumps(outputs, sort_keys=True).encode()).hexdigest()}
        return _digest(path)

    def _check(self, rel: str, want: dict, verb: str) -> str | None:
        """Why ``rel`` is no longer as recorded (``want``), or None."""
        path = self.root / rel
        if "files" in want:
            if not path.is_dir():
                return f"{rel} is missing"
            whys = (self._check(f"{rel}/{name}", w, verb) for name, w in want["files"].items())
            return next((why for why in whys if why), None)
        if not path.is_file():
            return f"{rel} is missing"
        if "size" in want and path.stat().st_size != want["size"]:
            return f"{rel} changed since it was {verb} (size {path.stat().st_size} != {want['size']})"
        have = (_digest(path) if "size" in want else self.snapshot(rel))["sha256"]
        if have != want["sha256"]:
            same = "same size, " if "size" in want else ""
            return f"{rel} changed since it was {verb} ({same}sha256 {have[:12]} != {want['sha256'][:12]})"
        return None

    def changed(self, entry: dict, upstream, outputs) -> str | None:
        """Why the recorded stage ``entry`` is out of date on disk (the first output it wrote or upstream output it
        read that is missing or differs), or None; what it has no digest of yet only needs to exist."""
        for kind, verb, rels in (("outputs", "written", [self.rel(p) for p in outputs]),
                                 ("inputs", "read by this stage", self.inputs(upstream))):
            recorded = entry.get(kind, {})
            for rel in rels:
                if rel in recorded:
                    why = self._check(rel, recorded[rel], verb)
                else:
                    why = None if (self.root / rel).exists() else f"{rel} is missing"
                if why:
                    return why
        return None

    def untrusted(self, entry: dict, upstream, outputs) -> bool:
        """Whether ``entry`` lacks the digest of one of its outputs or inputs (recorded by an older l1forge)."""
        return bool({self.rel(p) for p in outputs} - entry.get("outputs", {}).keys()
                    or set(self.inputs(upstream)) - entry.get("inputs", {}).keys())

    def done(self, stage: str, fingerprint: str, outputs, upstream=()) -> bool:
        entry = self.state.get(stage)
        return bool(entry) and entry["fingerprint"] == fingerprint and self.changed(entry, upstream, outputs) is None

    def result(self, stage: str) -> dict:
        return self.state[stage]["result"]

    def results(self) -> dict:
        """{stage: result block} of every finished stage."""
        return {name: entry["result"] for name, entry in self.state.items()}

    def record(self, stage: str, fingerprint: str, result: dict, upstream=(), outputs=()):
        """Record ``stage`` as done, with the digests of the outputs it wrote and of the upstream outputs it read."""
        digests = lambda rels: {rel: d for rel in rels if (d := self.snapshot(rel)) is not None}  # noqa: E731
        self.state[stage] = {"fingerprint": fingerprint, "result": result, "outputs": digests(map(self.rel, outputs)),
                             "inputs": digests(self.inputs(upstream))}
        write_json_atomic(self.state_path, self.state)

    @staticmethod
    def sweep(folders):
        """Remove the temporary files (``.*.tmp``) that killed atomic writes left in ``folders``."""
        for folder in folders:
            for junk in pathlib.Path(folder).glob(".*.tmp"):
                shutil.rmtree(junk) if junk.is_dir() else junk.unlink(missing_ok=True)


def _locked(method):
    """``method`` run holding the run directory's lock; the hold that takes it rereads state.json and removes the
    temporary files left in the root."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with run_lock(self.run.root) as first:
            if first:
                self.run.reload()
                self.run.sweep([self.run.root])
            return method(self, *args, **kwargs)

    return locked


class Runner:
    """Runs the stages of one task (``l1forge.tasks``) in one run directory, skipping those already done."""

    def __init__(self, cfg, out: pathlib.Path, progress: bool = True, force: bool = False):
        from l1forge.tasks import task_class

        self.cfg, self.run, self.progress, self.force = cfg, RunDir(out), progress, force
        self.task = task_class(cfg.task)(self)

    def fingerprint(self, name: str, config, upstream: list[str]) -> str:
        """Of stage ``name``: the configuration it reads, the fingerprints of the stages it reads, its code."""
        upstream_fingerprints = [self.run.state.get(u, {}).get("fingerprint") for u in upstream]
        return self.run.fingerprint(name, config, upstream_fingerprints, code_version(name))

    @_locked
    def stage(self, name: str, config, upstream: list[str], outputs: list[pathlib.Path], fn) -> dict:
        """``fn()`` unless stage ``name`` is up to date (same config and upstream fingerprints, the files it wrote and
        read as recorded); records its result (with ``stage_seconds``) and their digests, and returns it. Raises
        RuntimeError if an upstream stage is missing."""
        fingerprint = self.fingerprint(name, config, upstream)
        entry = self.run.state.get(name)
        if not self.force and entry and entry["fingerprint"] == fingerprint:
            why = self.run.changed(entry, upstream, outputs)
            if why is None:
                log.info("%s/%s: up to date, skipped", self.cfg.task, name)
                if self.run.untrusted(entry, upstream, outputs):  # trusted once: its digests are recorded now
                    self.run.record(name, fingerprint, entry["result"], upstream, outputs)
                return entry["result"]
            log.warning("%s/%s: %s, rerunning", self.cfg.task, name, why)
        missing = [u for u in upstream if u not in self.run.state]
        if missing:
            raise RuntimeError(f"stage '{name}' needs '{missing[0]}' first (run `l1forge {missing[0].split('.')[0]}`)")
        log.info("%s/%s: running", self.cfg.task, name)
        mine = [pathlib.Path(p) for p in outputs if pathlib.Path(p).name != "state.json"]  # not another run's
        self.run.sweep({p.parent for p in mine} | {p for p in mine if p.is_dir()})
        start = time.perf_counter()
        result = fn()
        result["stage_seconds"] = time.perf_counter() - start
        self.run.record(name, fingerprint, result, upstream, outputs)
        return result

    @_locked
    def run_stage(self, name: str, **kwargs):
        """One stage by its CLI name: a stage of the task, or ``report``."""
        if name == "report":
            return self.report()
        if name not in self.task.stages:
            raise RuntimeError(f"task '{self.cfg.task}' has no stage '{name}' (stages: {', '.join(self.task.stages)})")
        return getattr(self.task, name)(**kwargs)

    @_locked
    def run_all(self) -> dict:
        for name in self.task.stages:
            getattr(self.task, name)()
        self.report()
        return self.summary()

    def summary(self) -> dict:
        """The summary.json contents for this task alone (schema in the README)."""
        timings = {name: result.get("stage_seconds") for name, result in self.run.results().items()}
        return {"version": __version__, "preset": self.cfg.preset, "tasks": {self.cfg.task: self.task.summary()},
                "stage_seconds": timings}

    @_locked
    def report(self) -> pathlib.Path:
        return write_summary_and_report(self.run.root, self.summary(), {self.cfg.task: self.run.root})


def write_summary_and_report(root: pathlib.Path, summary: dict, task_dirs: dict) -> pathlib.Path:
    """``root/summary.json`` and ``root/report.html`` (a section per task, read from its run directory)."""
    from l1forge.report import write_report

    write_json_atomic(pathlib.Path(root) / "summary.json", summary)
    return write_report(root, summary, task_dirs)


def run_tasks(configs: dict, out: pathlib.Path, progress: bool = True, force: bool = False) -> dict:
    """Several tasks into one run directory: each in ``out/<task>/`` (its own state.json, resumable), then one
    ``out/summary.json`` with the task blocks side by side and one ``out/report.html`` with a section per task.
    ``configs``: {task name: its RunConfig}. Holds the locks of ``out/`` and of every ``out/<task>/`` throughout."""
    out = pathlib.Path(out)
    summary = {"version": __version__, "preset": next(iter(configs.values())).preset, "tasks": {}, "stage_seconds": {}}
    runners = {}
    with contextlib.ExitStack() as held:
        for folder in (out, *(out / name for name in configs)):
            if held.enter_context(run_lock(folder)):
                RunDir.sweep([folder])
        for name, cfg in configs.items():  # each runner reads its state when it starts: one task may run another's
            runner = runners[name] = Runner(cfg, out / name, progress, force)
            part = runner.run_all()
            summary["tasks"][name] = part["tasks"][name]
            summary["stage_seconds"].update({f"{name}/{stage}": s for stage, s in part["stage_seconds"].items()})
        write_summary_and_report(out, summary, {name: runner.run.root for name, runner in runners.items()})
    return summary
