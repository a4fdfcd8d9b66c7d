"""Anomaly-detection samples: a zero-bias-like background stream and BSM signals as L1 objects (ADC2021 layout).

Background = minimum-bias crossings plus hard SM processes, each overlaid with Poisson(mu) pileup from a library and
weighted so that the weights give the fraction of all crossings. Schema "l1forge.anomaly/1"; see ANOMALY.md.
"""

import concurrent.futures
import dataclasses
import importlib.metadata
import json
import math
import pathlib
import time
import zlib

import numpy as np

from l1forge.events import l1objects
from l1forge.events.l1objects import N_OBJECTS, Particles, l1_objects, true_met
from l1forge.events.pileup import build_pileup_library, overlay, particles_from_batch
from l1forge.events.processes import (
    BACKGROUNDS,
    COMMON_SETTINGS,
    MINBIAS_SETTINGS,
    QCD_PTHAT_BINS,
    SIGNALS,
    SQRT_S_GEV,
    check_settings,
    chunk_seeds,
    new_pythia,
    run_chunks,
)
from l1forge.events.schema import checked_dataset, fail, open_h5, write_h5

SCHEMA = "l1forge.anomaly/1"
MINBIAS = "minbias"
CHUNK_EVENTS = 1000  # events per work unit: part of the seed derivation, so changing it changes the output
BATCH_EVENTS = 100  # events per nextBatch / overlay / object pass (memory bound at high pileup)
LIBRARY_EVENTS = 20_000
BACKGROUND_SPLIT = (0.6, 0.2, 0.2)  # train/val/test per background sample; signals go half to val, half to test
SPLITS = {"train": 0, "val": 1, "test": 2}
# slot type codes of the 19 rows: MET, 4 e/gamma, 4 muons, 10 jets (padding is 0)
ROW_TYPES = np.repeat([1, 2, 3, 4], [1, l1objects.N_EGAMMA, l1objects.N_MUONS, l1objects.N_JETS])


@dataclasses.dataclass
class AnomalySample:
    path: pathlib.Path
    objects: np.ndarray  # (N, 19, 4) float32 [pT, eta, phi, type]
    sample: np.ndarray  # (N,) int16 index into sample_names
    sample_names: list[str]
    weight: np.ndarray  # (N,) float64: background = fraction of crossings; signal = 1 / N_sample
    split: np.ndarray  # (N,) int8: 0 train, 1 val, 2 test
    is_signal: np.ndarray  # (N,) bool
    true_met: np.ndarray | None  # (N,) float32 invisible pT sum; None for files without it
    attrs: dict

    def subset(self, which: str) -> "AnomalySample":
        """The events of one split, weights rescaled so each sample keeps its weight sum (rates stay true)."""
        if which not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, not {which!r}")
        rows = self.split == SPLITS[which]
        n_all = np.bincount(self.sample, minlength=len(self.sample_names))
        n_kept = np.bincount(self.sample[rows], minlength=len(self.sample_names))
        scale = n_all / np.maximum(n_kept, 1)
        return dataclasses.replace(
            self, objects=self.objects[rows], sample=self.sample[rows],
            weight=self.weight[rows] * scale[self.sample[rows]], split=self.split[rows], is_signal=self.is_signal[rows],
            true_met=None if self.true_met is None else self.true_met[rows])


def crossing_fractions(sigma_mb: dict[str, float], sigma_inel_mb: float, mu: float) -> dict[str, float]:
    """Fraction of zero-bias crossings holding each hard process, and the rest (MINBIAS).

    With p_k = sigma_k / sigma_inel per interaction and Poisson(mu) interactions, a crossing holds none of the hard
    processes with probability exp(-mu sum p); the others share 1 - exp(-mu sum p) in proportion to p_k
    (= mu sigma_k / sigma_inel for rare processes). The fractions sum to 1.
    """
    total = sum(sigma_mb.values()) / sigma_inel_mb
    hard = -math.expm1(-mu * total)
    return {MINBIAS: math.exp(-mu * total), **{k: hard * s / sigma_inel_mb / total for k, s in sigma_mb.items()}}


def _chunk(name: str, settings, n_events: int, seed: int, chunk: int, mu: float, library: dict) -> dict:
    """L1 objects of n_events crossings of one sample (settings None: minimum-bias crossings, pileup only), with
    Poisson(mu) pileup from `library` (build_pileup_library)."""
    pythia_seed, rng = chunk_seeds(seed, name, chunk)
    pythia = None if settings is None else new_pythia(settings, pythia_seed, name)
    objects, met = [], []
    for first in range(0, n_events, BATCH_EVENTS):
        n = min(BATCH_EVENTS, n_events - first)
        if pythia is None:
            hard = Particles(*(np.zeros(0, t) for t in (np.float32,) * 3 + (np.int32, np.int64)), n)
        else:
            hard = particles_from_batch(pythia.nextBatch(n))
            if hard.n_events != n:
                raise RuntimeError(f"{name}: Pythia returned {hard.n_events} of {n} events")
        crossing = overlay(hard, library, mu, rng)
        objects.append(l1_objects(crossing, rng))
        met.append(true_met(crossing))
    return {"objects": np.concatenate(objects), "true_met": np.concatenate(met),
            "sigma_mb": math.nan if pythia is None else pythia.infoPython().sigmaGen()}


def _split(sample: np.ndarray, signal: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(b"split")]))
    split = np.empty(len(sample), np.int8)
    for s in range(len(signal)):
        rows = np.flatnonzero(sample == s)
        rows = rows[rng.permutation(len(rows))]
        fractions = (0.0, 0.5, 0.5) if signal[s] else BACKGROUND_SPLIT
        edges = np.round(np.cumsum(fractions)[:2] * len(rows)).astype(int)
        for value, part in enumerate(np.split(rows, edges)):
            split[part] = value
    return split


def sample_plan(n_background: int, n_signal: int, signals=None, extra_processes: dict | None = None,
                hard_mpi: bool = True) -> tuple[dict, dict, np.ndarray]:
    """The samples of a zero-bias stream with signals: ({name: Pythia settings, None for minimum bias}, {name:
    events}, per-sample signal flags). Half the background is minimum bias, the rest shared by BACKGROUNDS; each
    signal (SIGNALS names, default all, then extra_processes {name: settings}) gets n_signal. ValueError (one line)
    for an unknown signal, a clashing name or a bad setting."""
    signals = list(SIGNALS) if signals is None else list(signals)
    if unknown := [s for s in signals if s not in SIGNALS]:
        raise ValueError(f"unknown signal(s) {unknown}; choose from {sorted(SIGNALS)}")
    extra = dict(extra_processes or {})
    for name, settings in extra.items():
        if name in (MINBIAS, *BACKGROUNDS, *signals):
            raise ValueError(f"extra process name {name!r} is already a sample name")
        check_settings(settings, f"extra process '{name}'")
    common = [*COMMON_SETTINGS, f"PartonLevel:MPI = {'on' if hard_mpi else 'off'}"]
    processes = {MINBIAS: None, **{k: [*common, *v] for k, v in
                                   {**BACKGROUNDS, **{s: SIGNALS[s] for s in signals}, **extra}.items()}}
    names = list(processes)
    n_hard = n_background - n_background // 2
    counts = {MINBIAS: n_background // 2,
              **{k: n_hard // len(BACKGROUNDS) + (i < n_hard % len(BACKGROUNDS)) for i, k in enumerate(BACKGROUNDS)},
              **{k: n_signal for k in names[1 + len(BACKGROUNDS):]}}
    return processes, counts, np.array([i > len(BACKGROUNDS) for i in range(len(names))])


def generate_anomaly(out: pathlib.Path, n_background: int, n_signal: int, seed: int = 1, pileup: float = 60.0,
                     workers: int = 2, signals=None, extra_processes: dict[str, list[str]] | None = None,
                     hard_mpi: bool = True, library_events: int = LIBRARY_EVENTS, progress: bool = True,
                     executor: concurrent.futures.Executor | None = None) -> dict:
    """Write n_background zero-bias-like crossings (half minimum bias, half shared by BACKGROUNDS) and n_signal
    events of each signal (SIGNALS names, default all, then extra_processes {name: settings}) to `out`.

    All events carry Poisson(pileup) interactions from a library of library_events minimum-bias events.
    hard_mpi=False switches MPI off in the hard event only (faster). Chunks run on `executor` (l1forge.core.executors,
    e.g. a Dask cluster's, which receives the library once per worker) or, if None, on `workers` local processes;
    the output is byte-identical whatever the executor and worker count.
    Returns {"n_events", "per_sample", "cross_section_mb", "seconds", "events_per_s", "library_seconds", "path"}.
    """
    n_background, n_signal, seed, workers = int(n_background), int(n_signal), int(seed), int(workers)
    pileup = float(pileup)
    if n_signal < 1 or workers < 1 or seed < 0 or library_events < 1:
        raise ValueError("n_signal, workers and library_events must be >= 1 and seed >= 0")
    if n_background < 2 * len(BACKGROUNDS):
        raise ValueError(f"n_background must be >= {2 * len(BACKGROUNDS)} (half minimum bias, >= 1 per process)")
    if not (math.isfinite(pileup) and pileup > 0):
        raise ValueError(f"pileup must be a positive number, not {pileup}")
    processes, counts, signal = sample_plan(n_background, n_signal, signals, extra_processes, hard_mpi)
    names = list(processes)
    start = time.perf_counter()

    library = build_pileup_library(library_events, seed, workers, pthat_max=QCD_PTHAT_BINS[0][0], progress=progress,
                                   executor=executor)
    library_seconds = time.perf_counter() - start
    tasks = [(name, processes[name], min(CHUNK_EVENTS, counts[name] - first), seed, k, pileup)
             for name in names for k, first in enumerate(range(0, counts[name], CHUNK_EVENTS))]
    results = run_chunks(_chunk, tasks, [t[2] for t in tasks], workers, "crossings", progress, executor,
                         shared={"library": library})
    sigma = {name: float(np.mean([r["sigma_mb"] for r, t in zip(results, tasks) if t[0] == name]))
             for name in names[1:]}
    fractions = crossing_fractions({k: sigma[k] for k in BACKGROUNDS}, library["sigma_inel_mb"], pileup)
    per_event = [fractions[k] / counts[k] if not signal[i] else 1.0 / counts[k] for i, k in enumerate(names)]
    sample = np.repeat(np.arange(len(names), dtype=np.int16), [counts[k] for k in names])
    arrays = {"Particles": np.concatenate([r["objects"] for r in results]),
              "sample": sample,
              "weight": np.asarray(per_event)[sample],
              "split": _split(sample, signal, seed),
              "true_met": np.concatenate([r["true_met"] for r in results])}
    definition = {k: getattr(l1objects, k) for k in (
        "ETA_CALO", "N_ETA", "N_PHI", "TOWER_RESOLUTION", "EGAMMA_RESOLUTION", "MUON_RESOLUTION", "EGAMMA_ETA_MAX",
        "MUON_ETA_MAX", "JET_ETA_MAX", "EGAMMA_PT_MIN", "MUON_PT_MIN", "JET_PT_MIN", "JET_R", "ISO_CONE", "ISO_MAX",
        "HOE_MAX", "RHO_PATCH", "INVISIBLE")}
    definition["TOWER_THRESHOLD_GEV"] = {"abs_eta<2.5": 0.5, "abs_eta>=2.5": 3.0}
    attrs = {
        "schema": SCHEMA, "seed": seed, "pileup_mu": pileup, "sqrt_s_gev": SQRT_S_GEV,
        "sample_names": names, "sample_is_signal": signal.astype(np.int8),
        "cross_section_mb": json.dumps({MINBIAS: library["sigma_inel_mb"], **sigma}),
        "crossing_fraction": json.dumps(fractions),
        "sigma_inel_mb": library["sigma_inel_mb"],
        "minbias_vetoed_fraction": library["vetoed_fraction"],
        "settings": json.dumps({"pythia": {**processes, MINBIAS: [*COMMON_SETTINGS, *MINBIAS_SETTINGS]},
                                "minbias_pthat_veto_gev": QCD_PTHAT_BINS[0][0], "hard_mpi": bool(hard_mpi),
                                "library_events": int(library_events), "chunk_events": CHUNK_EVENTS,
                                "batch_events": BATCH_EVENTS, "l1_objects": definition}),
        "generator": f"pythia8mc {importlib.metadata.version('pythia8mc')}",
        "l1forge_version": importlib.metadata.version("l1forge"),
    }
    write_h5(out, arrays, attrs)
    seconds = time.perf_counter() - start
    return {"n_events": len(sample), "per_sample": counts, "cross_section_mb": sigma, "seconds": seconds,
            "events_per_s": len(sample) / seconds, "library_seconds": library_seconds, "path": pathlib.Path(out)}


def _dataset(f, path, name, shape, kind, n):
    ds = checked_dataset(f, path, name, shape, n, "Particles")
    if ds.dtype.kind not in kind:
        fail(path, f"dataset '{name}' has dtype {ds.dtype}, expected a {'float' if kind == 'f' else 'integer'} type")
    data = ds[()]
    if kind == "f":
        _check(path, name, ~np.isfinite(data), "NaN/Inf values")
    return data


def _check(path, name, bad, what):
    rows = bad.reshape(len(bad), -1).any(axis=1)
    if rows.any():
        fail(path, f"dataset '{name}' has {int(rows.sum())} row(s) with {what} (first at row {int(np.argmax(rows))})")


def read_anomaly(path, signal: bool = False) -> AnomalySample:
    """Read an l1forge.anomaly/1 file, or an ADC2021-style file with just 'Particles' (N, 19, 4).

    A 'Particles'-only file is one sample named after the file, weight 1/N, marked signal if `signal` (then all
    test) or background (split 60/20/20 by a fixed seed). Raises DataError (one line, naming file and dataset).
    """
    path = pathlib.Path(path)
    with open_h5(path) as f:
        objects = _dataset(f, path, "Particles", (N_OBJECTS, 4), "f", None).astype(np.float32)
        n = len(objects)
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        if "schema" not in attrs and "sample" not in f:
            sample, names, true = np.zeros(n, np.int16), [path.stem], None
            weight, flags = np.full(n, 1.0 / max(n, 1)), np.array([signal])
            split = np.full(n, 2, np.int8) if signal else _split(sample, flags, 0)
        else:
            if attrs.get("schema") != SCHEMA:
                fail(path, f"attribute 'schema' is {attrs.get('schema')!r}, expected {SCHEMA!r}")
            sample = _dataset(f, path, "sample", (), "iu", n).astype(np.int16)
            weight = _dataset(f, path, "weight", (), "f", n).astype(np.float64)
            split = _dataset(f, path, "split", (), "iu", n).astype(np.int8)
            true = _dataset(f, path, "true_met", (), "f", n).astype(np.float32)
            if "sample_names" not in attrs or "sample_is_signal" not in attrs:
                fail(path, "attribute 'sample_names' or 'sample_is_signal' is missing")
            names = [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(attrs["sample_names"])]
            flags = np.atleast_1d(attrs["sample_is_signal"]).astype(bool)
            if len(flags) != len(names):
                fail(path, f"attribute 'sample_is_signal' has {len(flags)} entries for {len(names)} sample names")
            _check(path, "sample", (sample < 0) | (sample >= len(names)), f"values outside 0..{len(names) - 1}")
            _check(path, "weight", weight < 0, "negative values")
            _check(path, "split", ~np.isin(split, list(SPLITS.values())), "values outside {0, 1, 2}")
    types = objects[..., 3]
    _check(path, "Particles", (types != 0) & (types != ROW_TYPES),
           "type codes off the layout 1 MET, 4 x 2 e/gamma, 4 x 3 muons, 10 x 4 jets (0 padding)")
    return AnomalySample(path=path, objects=objects, sample=sample, sample_names=names, weight=weight, split=split,
                         is_signal=flags[sample], true_met=true, attrs=attrs)
