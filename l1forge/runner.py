"""The runner: one task, one configuration, one run directory; it owns the bookkeeping of every task.

``state.json`` maps each finished stage to the fingerprint of its configuration and of the stages it read, and to
its result block. A stage whose fingerprint is unchanged and whose outputs exist is skipped; a stage killed midway
never reached ``state.json`` and is redone. ``state.json`` is replaced atomically after every stage, and
``summary.json`` and ``report.html`` are written atomically by ``report``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib
import time

from l1forge import __version__
from l1forge.core.artifacts import write_json_atomic

log = logging.getLogger("l1forge")


class RunDir:
    """Where the stages of one task write (layout in the README), and the record of which stages are done."""

    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path = self.root / "state.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.student = self.root / "students" / "student"
        self.baseline = self.root / "students" / "baseline"
        self.firmware = self.root / "firmware"
        self.hls_project = self.firmware / "hls_project"
        self.emulation = self.root / "emulation"

    def data(self, name: str) -> pathlib.Path:
        return self.root / "data" / name

    def teacher(self, kind: str) -> pathlib.Path:
        return self.root / "teachers" / kind

    @staticmethod
    def fingerprint(*parts) -> str:
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def done(self, stage: str, fingerprint: str, outputs) -> bool:
        entry = self.state.get(stage)
        return bool(entry) and entry["fingerprint"] == fingerprint and all(pathlib.Path(p).exists() for p in outputs)

    def result(self, stage: str) -> dict:
        return self.state[stage]["result"]

    def results(self) -> dict:
        """{stage: result block} of every finished stage."""
        return {name: entry["result"] for name, entry in self.state.items()}

    def record(self, stage: str, fingerprint: str, result: dict):
        self.state[stage] = {"fingerprint": fingerprint, "result": result}
        write_json_atomic(self.state_path, self.state)


class Runner:
    """Runs the stages of one task (``l1forge.tasks``) in one run directory, skipping those already done."""

    def __init__(self, cfg, out: pathlib.Path, progress: bool = True, force: bool = False):
        from l1forge.tasks import task_class

        self.cfg, self.run, self.progress, self.force = cfg, RunDir(out), progress, force
        self.task = task_class(cfg.task)(self)

    def stage(self, name: str, config, upstream: list[str], outputs: list[pathlib.Path], fn) -> dict:
        """``fn()`` unless stage ``name`` is up to date (same config, same upstream fingerprints, outputs exist);
        records its result (with ``stage_seconds``) and returns it. Raises RuntimeError if an upstream stage is
        missing."""
        fingerprint = self.run.fingerprint(name, config, [self.run.state.get(u, {}).get("fingerprint") for u in upstream])
        if not self.force and self.run.done(name, fingerprint, outputs):
            log.info("%s/%s: up to date, skipped", self.cfg.task, name)
            return self.run.result(name)
        missing = [u for u in upstream if u not in self.run.state]
        if missing:
            raise RuntimeError(f"stage '{name}' needs '{missing[0]}' first (run `l1forge {missing[0].split('.')[0]}`)")
        log.info("%s/%s: running", self.cfg.task, name)
        start = time.perf_counter()
        result = fn()
        result["stage_seconds"] = time.perf_counter() - start
        self.run.record(name, fingerprint, result)
        return result

    def run_stage(self, name: str, **kwargs):
        """One stage by its CLI name: a stage of the task, or ``report``."""
        if name == "report":
            return self.report()
        if name not in self.task.stages:
            raise RuntimeError(f"task '{self.cfg.task}' has no stage '{name}' (stages: {', '.join(self.task.stages)})")
        return getattr(self.task, name)(**kwargs)

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
    ``configs``: {task name: its RunConfig}."""
    out = pathlib.Path(out)
    summary = {"version": __version__, "preset": next(iter(configs.values())).preset, "tasks": {}, "stage_seconds": {}}
    runners = {}
    for name, cfg in configs.items():  # each runner reads its state when it starts: one task may run another's
        runner = runners[name] = Runner(cfg, out / name, progress, force)
        part = runner.run_all()
        summary["tasks"][name] = part["tasks"][name]
        summary["stage_seconds"].update({f"{name}/{stage}": s for stage, s in part["stage_seconds"].items()})
    write_summary_and_report(out, summary, {name: runner.run.root for name, runner in runners.items()})
    return summary
