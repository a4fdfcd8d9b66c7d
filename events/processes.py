"""Pythia processes of the anomaly-detection streams, settings validation, and reproducible parallel chunks.

Settings are the ones verified in shared/pythia_cards.md (pythia8mc 8.317.2, 14 TeV).
"""

import concurrent.futures
import contextlib
import os
import pathlib
import re
import sys
import zlib

import numpy as np
import pythia8mc
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from l1forge.core import executors

SQRT_S_GEV = 14000.0
COMMON_SETTINGS = (f"Beams:eCM = {SQRT_S_GEV:.1f}", "Print:quiet = on", "Next:numberCount = 0", "Check:event = off")
MINBIAS_SETTINGS = ("SoftQCD:inelastic = on",)  # Pythia defaults otherwise: MPI on
# GeV; the minimum-bias stream vetoes pTHat >= 30. Narrow bins below 170 GeV: the crossings that pass a 10 kHz
# threshold at high pileup lie in the upper part of a wide low bin, where each crossing would stand for ~50 kHz
QCD_PTHAT_BINS = ((30, 50), (50, 80), (80, 120), (120, 170), (170, 300), (300, None))


def _qcd(lo, hi):
    return ["HardQCD:all = on", f"PhaseSpace:pTHatMin = {lo}."] + ([f"PhaseSpace:pTHatMax = {hi}."] if hi else [])


BACKGROUNDS: dict[str, list[str]] = {
    **{f"qcd_pthat{lo}" + (f"_{hi}" if hi else ""): _qcd(lo, hi) for lo, hi in QCD_PTHAT_BINS},
    "wlnu": ["WeakSingleBoson:ffbar2W = on", "24:onMode = off", "24:onIfAny = 11 13 15"],
    "zll": ["WeakSingleBoson:ffbar2gmZ = on", "WeakZ0:gmZmode = 2", "23:onMode = off", "23:onIfAny = 11 13 15"],
    "ttbar": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"],
}
SIGNALS: dict[str, list[str]] = {
    "a50_4l": ["Higgs:useBSM = on", "HiggsBSM:gg2A3 = on", "36:m0 = 50.", "36:mWidth = 0.01", "36:mMin = 40.",
               "36:mMax = 60.", "36:onMode = off", "36:addChannel = 1 0.5 100 23 23", "23:mMin = 1.",
               "23:onMode = off", "23:onIfAny = 11 13"],
    "lq80_btau": ["LeptoQuark:all = on", "42:m0 = 80.", "42:mMin = 20.", "42:0:products = 5 -15"],
    "h60_tautau": ["HiggsSM:gg2H = on", "25:m0 = 60.", "25:mMin = 20.", "25:onMode = off", "25:onIfMatch = 15 -15"],
    "hplus60_taunu": ["Higgs:useBSM = on", "HiggsBSM:ffbar2H+- = on", "HiggsBSM:bg2H+-t = on", "37:m0 = 60.",
                      "37:mMin = 20.", "37:onMode = off", "37:onIfAny = 15"],
}
_FLAG_WORDS = {"on", "off", "yes", "no", "true", "false", "ok", "1", "0"}
# particle data properties ("id:property = value") whose value is a number, and those taking a list of PDG ids
_PARTICLE_NUMBERS = {"m0": float, "mwidth": float, "mmin": float, "mmax": float, "tau0": float, "spintype": int,
                     "chargetype": int, "coltype": int}
_PARTICLE_LISTS = {"onifany", "onifall", "onifmatch", "offifany", "offifall", "offifmatch"}


@contextlib.contextmanager
def _quiet_stdout():
    """Silence file descriptor 1 (Pythia prints its own multi-line errors there)."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _check_line(pythia, line: str, where: str) -> None:
    key, _, value = line.replace("=", " ", 1).strip().partition(" ")  # Pythia: '=' or blanks between key and value
    if not value.strip():
        raise ValueError(f"{where}: expected 'Key = value', got {line!r}")
    if key.lower().startswith("random:"):
        raise ValueError(f"{where}: setting {line!r} is not allowed (seeds derive from the master seed)")
    with _quiet_stdout():
        ok = pythia.readString(line)
    # Pythia reads any word as a flag value (anything but on/yes/true/ok/1 is off) and a bad number of particle data
    # as 0: catch both
    words, prop = value.split(), key.partition(":")[2].lower() if key[:1].isdigit() else ""
    bad_flag = pythia.settings.isFlag(key) and words[0].lower() not in _FLAG_WORDS
    bad_number = prop in _PARTICLE_NUMBERS and not _is_number(words[0], _PARTICLE_NUMBERS[prop])
    bad_ids = prop in _PARTICLE_LISTS and not all(_is_number(w, int) for w in words)
    if not ok or bad_flag or bad_number or bad_ids:
        raise ValueError(f"{where}: Pythia rejects setting {line.strip()!r} (unknown key or bad value)")


def _is_number(word: str, kind: type) -> bool:
    try:
        kind(word)
    except ValueError:
        return False
    return True


def check_settings(settings, source: str) -> None:
    """Validate each 'Key = value' line with readString on a fresh, uninitialised Pythia; one-line ValueError."""
    pythia = pythia8mc.Pythia("", False)
    for line in settings:
        _check_line(pythia, line, source)


def read_process_file(path) -> list[str]:
    """Settings of a user process file in Pythia's command-file conventions: one `Key = value` (or `Key value`) per
    line; a line whose first character is not a letter or digit is a comment, as in Pythia, and `!` (as in Pythia's
    own example files) or `#` after a setting starts one; errors read "FILE:LINE: ..."."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read process file ({exc.__class__.__name__})") from None
    pythia, settings = pythia8mc.Pythia("", False), []
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.split("[!#]", raw, maxsplit=1)[0].strip()
        if line[:1].isalnum():
            _check_line(pythia, line, f"{path}:{number}")
            settings.append(line)
    if not settings:
        raise ValueError(f"{path}: no settings in process file")
    return settings


def chunk_seeds(seed: int, name: str, chunk: int) -> tuple[int, np.random.Generator]:
    """Pythia seed (1..900_000_000) and numpy generator of one chunk, from (master seed, sample name, chunk)."""
    pythia_ss, numpy_ss = np.random.SeedSequence([seed, zlib.crc32(name.encode()), chunk]).spawn(2)
    return int(pythia_ss.generate_state(1)[0]) % 900_000_000 + 1, np.random.default_rng(numpy_ss)


def new_pythia(settings, pythia_seed: int, label: str):
    """An initialised Pythia with the given settings and seed; RuntimeError naming `label` otherwise."""
    pythia = pythia8mc.Pythia("", False)
    for line in [*settings, "Random:setSeed = on", f"Random:seed = {pythia_seed}"]:
        if not pythia.readString(line):
            raise RuntimeError(f"{label}: Pythia rejected setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"{label}: Pythia init failed (is a process switched on?)")
    return pythia


def run_chunks(fn, tasks: list[tuple], sizes: list[int], workers: int, label: str, progress: bool,
               executor: concurrent.futures.Executor | None = None, shared: dict | None = None) -> list:
    """[fn(*task, **shared) for task in tasks], in task order, with a progress bar counting sizes[i] per task.

    executor None: in this process for workers == 1, else on a local pool of `workers` processes
    (l1forge.core.executors); otherwise on `executor` (e.g. a Dask cluster's), which stays open. `shared` holds
    keyword arguments common to all tasks (large arrays such as the pileup library): they travel with the tasks
    (once per Dask worker), never through inherited module state. A failing task cancels the tasks not started
    and its exception is raised.
    """
    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not progress)
    shared = dict(shared or {})
    if executor is None and workers == 1:
        results = []
        with bar:
            task_id = bar.add_task(label, total=sum(sizes))
            for task, size in zip(tasks, sizes):
                results.append(fn(*task, **shared))
                bar.advance(task_id, size)
        return results
    if executor is None:
        with executors.executor("local", None, workers) as pool:
            return _run_on(pool, fn, tasks, sizes, shared, bar, label)
    return _run_on(executor, fn, tasks, sizes, shared, bar, label)


def _call(fn, args: tuple, kwargs: dict):
    """fn(*args, **kwargs): keeps the task's keyword arguments apart from the executor's own (Dask's submit takes
    `key`, `workers`, ...)."""
    return fn(*args, **kwargs)


def _run_on(pool: concurrent.futures.Executor, fn, tasks, sizes, shared: dict, bar: Progress, label: str) -> list:
    """run_chunks on an executor: the shared arguments go out through executors.share (once per Dask worker, with
    each task on a process pool); the results are collected as they come and returned in task order."""
    handles = {key: executors.share(pool, value) for key, value in shared.items()}
    futures = {pool.submit(_call, fn, task, handles): i for i, task in enumerate(tasks)}
    results = [None] * len(tasks)
    with bar:
        task_id = bar.add_task(label, total=sum(sizes))
        try:
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                bar.advance(task_id, sizes[futures[future]])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results
