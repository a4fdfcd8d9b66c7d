"""Zero-bias crossings and BSM signals as L1 particle-flow candidates at several pileups: the input of the chain
(pileup mitigation in front of anomaly detection).

The samples are those of the anomaly task (events/anomaly.py: minimum bias, the hard SM BACKGROUNDS weighted by
``crossing_fractions`` at each pileup, SIGNALS and ``--process`` files); candidates, vertex model and truth are those
of the pileup task (events/pfcands.py ``candidates``, with its calorimeter model: "merged" towers or "particles").
Schema "l1forge.crossings/1" is "l1forge.pileup/1" (read by ``read_pileup``; its ``process`` dataset indexes the
sample names) plus the datasets and attributes below; "l1forge.crossings/2" (merged calorimeter) adds pv_fraction
and the attribute calorimeter, as "l1forge.pileup/2" does:

* ``weight`` (n_events,) float64: for a zero-bias crossing, the fraction of all crossings at its pileup that its
  sample stands for, divided by the crossings of that sample generated at that pileup (the weights of one pileup sum
  to 1); for a signal crossing, 1 / its sample's crossings at that pileup;
* attribute ``sample_is_signal`` (one flag per sample name) and ``crossing_fraction`` (JSON {pileup: {sample: f}}).

Splits: at ``reference_pileup`` (where models train and the threshold is set) twice as many zero-bias crossings are
generated and split REFERENCE_SPLIT 40/10/50 train/val/test, so the rate there rests on as many test crossings as at
every other pileup; every other crossing (other pileups, every signal) is test. ``Crossings.training_split`` shares
the reference pileup's training crossings among several pileups (the chain's ``train_pileups``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.metadata
import json
import math
import pathlib
import time
import zlib

import numpy as np

from l1forge.events.anomaly import MINBIAS, crossing_fractions, sample_plan
from l1forge.events.l1objects import Particles
from l1forge.events.pfcands import CALORIMETERS, PileupSample, _truth, candidates, read_pileup, stored_arrays
from l1forge.events.pileup import build_pileup_library, overlay, particles_from_batch
from l1forge.events.processes import BACKGROUNDS, QCD_PTHAT_BINS, SQRT_S_GEV, chunk_seeds, new_pythia, run_chunks
from l1forge.events.schema import checked_dataset, fail, open_h5, write_h5

SCHEMA = "l1forge.crossings/1"
SCHEMA_2 = "l1forge.crossings/2"
CHUNK_EVENTS = 100  # crossings per work unit: part of the seed derivation, so changing it changes the output
LIBRARY_EVENTS = 20_000
REFERENCE_SPLIT = (0.4, 0.1, 0.5)  # train/val/test of the zero-bias crossings at the reference pileup (2x as many)


@dataclasses.dataclass
class Crossings:
    """Candidates of every crossing (``sample``, a PileupSample whose ``process`` is the sample index) with the
    per-crossing rate weight and the signal flag of each sample."""

    sample: PileupSample
    weight: np.ndarray  # (n_events,) float64, module docstring
    sample_is_signal: np.ndarray  # (n_samples,) bool

    @property
    def names(self) -> list[str]:
        return self.sample.process_names

    @property
    def is_signal(self) -> np.ndarray:
        """(n_events,) bool: the crossing belongs to a signal sample."""
        return self.sample_is_signal[self.sample.process]

    def zero_bias_weights(self, rows: np.ndarray, pool_at: float | None = None) -> np.ndarray:
        """(n_events,) rate weights of the zero-bias crossings in `rows` (bool mask), 0 elsewhere: each (pileup,
        sample) block keeps its weight sum however many of its crossings the rows hold.

        pool_at: the rows of every pileup together stand for the zero-bias mixture at pileup `pool_at` (each sample's
        rows share that sample's crossing fraction there). Valid only for what does not depend on the pileup, such as
        primary-vertex candidates (the hard or first interaction is drawn the same way at every pileup).
        """
        s, rows = self.sample, np.asarray(rows, bool) & ~self.is_signal
        out = np.zeros(s.n_events)
        for mu in np.unique(s.pileup[rows]) if pool_at is None else [pool_at]:
            at = rows & (s.pileup == mu) if pool_at is None else rows
            for k in np.unique(s.process[at]):
                block = s.process == k
                out[block & at] = self.weight[block & (s.pileup == mu)].sum() / np.count_nonzero(block & at)
        return out

    def training_split(self, reference: float, train_pileups, seed: int) -> np.ndarray:
        """(n_events,) int8 split for models that train on the zero-bias crossings of several pileups: each
        sample's training (0) and validation (1) crossings at the `reference` pileup, counted, are shared equally
        among `train_pileups` (which hold the reference), drawn at each from that sample's zero-bias crossings (at
        the reference, from its own training and validation ones); every other crossing is test (2). With
        train_pileups [reference] this is the file's split."""
        s, train_pileups = self.sample, sorted(float(mu) for mu in train_pileups)
        if float(reference) not in train_pileups or not set(train_pileups) <= set(np.unique(s.pileup).tolist()):
            raise ValueError(f"train pileups {train_pileups} must hold the reference pileup {reference:g} and be "
                             f"among the crossings' pileups {sorted(set(np.unique(s.pileup).tolist()))}")
        rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(b"training_split")]))
        split = np.full(s.n_events, 2, np.int8)
        for k in np.flatnonzero(~self.sample_is_signal):
            for part in (0, 1):
                at_reference = (s.process == k) & (s.pileup == reference)
                n = np.count_nonzero(at_reference & (s.split == part)) // len(train_pileups)
                for mu in train_pileups:
                    pool = (s.process == k) & (s.pileup == mu) & (split == 2)
                    pool &= s.split == (part if mu == reference else 2)
                    split[rng.choice(np.flatnonzero(pool), n, replace=False)] = part
        return split


def _chunk(name: str, settings, n_events: int, seed: int, chunk: int, mu: float, library: dict,
           calorimeter: str = "particles") -> dict:
    """Candidates and truth of n_events crossings of one sample at Poisson(mu) pileup (settings None: minimum bias,
    i.e. a crossing of pileup interactions only, the first of them counted as the primary)."""
    pythia_seed, rng = chunk_seeds(seed, f"{name}_pu{mu:g}", chunk)
    if settings is None:  # the primary interaction of a minimum-bias crossing is one more library event
        picks = rng.integers(0, len(library["offsets"]) - 1, n_events)
        lo, hi = library["offsets"][picks], library["offsets"][picks + 1]
        rows = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if n_events else np.zeros(0, np.int64)
        hard = Particles(library["px"][rows], library["py"][rows], library["pz"][rows], library["pid"][rows],
                         np.repeat(np.arange(n_events), hi - lo), n_events)
        sigma = math.nan
    else:
        pythia = new_pythia(settings, pythia_seed, name)
        hard = particles_from_batch(pythia.nextBatch(n_events))
        if hard.n_events != n_events:
            raise RuntimeError(f"{name}: Pythia returned {hard.n_events} of {n_events} events")
        sigma = pythia.infoPython().sigmaGen()
    met, jets = _truth(hard)
    crossing, vertex, n_pileup = overlay(hard, library, mu, rng, with_vertex=True)
    return {**candidates(crossing, vertex, n_pileup, rng, calorimeter), "true_met": met, "truth_jets": jets,
            "n_pileup": n_pileup.astype(np.int16), "sigma_mb": sigma}


def _split(sample: np.ndarray, pileup: np.ndarray, signal: np.ndarray, reference: float, seed: int) -> np.ndarray:
    """REFERENCE_SPLIT for zero-bias crossings at the reference pileup, test for every other crossing."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(b"split")]))
    split = np.full(len(sample), 2, np.int8)
    for s in np.flatnonzero(~signal):
        rows = np.flatnonzero((sample == s) & (pileup == reference))
        rows = rows[rng.permutation(len(rows))]
        edges = np.round(np.cumsum(REFERENCE_SPLIT)[:2] * len(rows)).astype(int)
        for value, part in enumerate(np.split(rows, edges)):
            split[part] = value
    return split


def generate_crossings(out: pathlib.Path, n_zero_bias: int, n_signal: int, pileups=(60.0, 140.0, 200.0),
                       reference_pileup: float = 60.0, seed: int = 1, workers: int = 2, signals=None,
                       extra_processes: dict[str, list[str]] | None = None, hard_mpi: bool = True,
                       library_events: int = LIBRARY_EVENTS, progress: bool = True,
                       executor: concurrent.futures.Executor | None = None, calorimeter: str = "particles") -> dict:
    """Write, at each pileup, n_zero_bias zero-bias crossings (half minimum bias, half shared by BACKGROUNDS; twice as
    many at the reference pileup) and n_signal crossings of each signal (SIGNALS names, default all, then
    extra_processes {name: settings}), as L1 candidates with truth (module docstring). Chunks run on `executor` or
    `workers` local processes; the output is byte-identical whatever the executor. Returns {"n_events",
    "n_candidates", "candidates_per_event" (per pileup), "per_sample", "seconds", "events_per_s", "library_seconds",
    "path"}; ValueError on bad arguments."""
    if calorimeter not in CALORIMETERS:
        raise ValueError(f"calorimeter must be one of {CALORIMETERS}, not {calorimeter!r}")
    n_zero_bias, n_signal, seed, workers = int(n_zero_bias), int(n_signal), int(seed), int(workers)
    pileups, reference = [float(m) for m in pileups], float(reference_pileup)
    if n_zero_bias < 2 * len(BACKGROUNDS) or n_signal < 1 or workers < 1 or library_events < 1:
        raise ValueError(f"need n_zero_bias >= {2 * len(BACKGROUNDS)} and n_signal, workers, library_events >= 1")
    if not pileups or any(not (math.isfinite(m) and m > 0) for m in pileups) or reference not in pileups:
        raise ValueError(f"pileups must be positive numbers including the reference pileup {reference:g}, not {pileups}")
    processes, counts, signal = sample_plan(n_zero_bias, n_signal, signals, extra_processes, hard_mpi)
    names = list(processes)
    start = time.perf_counter()
    library = build_pileup_library(library_events, seed, workers, pthat_max=QCD_PTHAT_BINS[0][0], progress=progress,
                                   executor=executor)
    library_seconds = time.perf_counter() - start
    n_at = {(f"{mu:g}", k): counts[k] * (2 if mu == reference and not signal[i] else 1)
            for mu in pileups for i, k in enumerate(names)}
    tasks = [(name, processes[name], min(CHUNK_EVENTS, n_at[f"{mu:g}", name] - first), seed, k, mu)
             for mu in pileups for name in names
             for k, first in enumerate(range(0, n_at[f"{mu:g}", name], CHUNK_EVENTS))]
    results = run_chunks(_chunk, tasks, [t[2] for t in tasks], workers, "crossings", progress, executor,
                         shared={"library": library, "calorimeter": calorimeter})
    sigma = {n: float(np.mean([r["sigma_mb"] for r, t in zip(results, tasks) if t[0] == n])) for n in names[1:]}
    fractions = {f"{mu:g}": crossing_fractions({k: sigma[k] for k in BACKGROUNDS}, library["sigma_inel_mb"], mu)
                 for mu in pileups}
    sample = np.concatenate([np.full(t[2], names.index(t[0]), np.int16) for t in tasks])
    pileup = np.concatenate([np.full(t[2], t[5], np.float32) for t in tasks])
    per_event = {(f"{mu:g}", k): (1.0 if signal[i] else fractions[f"{mu:g}"][k]) / n_at[f"{mu:g}", k]
                 for mu in pileups for i, k in enumerate(names)}
    weight = np.array([per_event[f"{mu:g}", names[s]] for mu, s in zip(pileup.tolist(), sample.tolist())])
    n_candidates = np.concatenate([r["counts"] for r in results])
    particles, _, schema = stored_arrays(results, calorimeter, False)
    arrays = {**particles, "process": sample, "pileup": pileup,
              "split": _split(sample, pileup, signal, reference, seed), "weight": weight,
              **{f: np.concatenate([r[f] for r in results]) for f in ("n_pileup", "true_met", "truth_jets")}}
    attrs = {"schema": SCHEMA if schema.endswith("/1") else SCHEMA_2, "seed": seed, "sqrt_s_gev": SQRT_S_GEV,
             "process_names": names,
             "sample_is_signal": signal.astype(np.int8), "pileups": pileups, "reference_pileup": reference,
             "crossing_fraction": json.dumps(fractions), "sigma_inel_mb": library["sigma_inel_mb"],
             "cross_section_mb": json.dumps({MINBIAS: library["sigma_inel_mb"], **sigma}),
             "settings": json.dumps({"pythia": {**processes}, "hard_mpi": hard_mpi, "chunk_events": CHUNK_EVENTS,
                                     "library_events": int(library_events),
                                     "minbias_pthat_veto_gev": QCD_PTHAT_BINS[0][0]}),
             "generator": f"pythia8mc {importlib.metadata.version('pythia8mc')}",
             "l1forge_version": importlib.metadata.version("l1forge")}
    if calorimeter != "particles":
        attrs["calorimeter"] = calorimeter
    write_h5(out, arrays, attrs)
    seconds = time.perf_counter() - start
    per_pileup = {f"{m:g}": float(n_candidates[pileup == m].mean()) for m in pileups}
    return {"n_events": len(sample), "n_candidates": int(n_candidates.sum()), "candidates_per_event": per_pileup,
            "per_sample": counts, "seconds": seconds, "events_per_s": len(sample) / seconds,
            "library_seconds": library_seconds, "path": pathlib.Path(out)}


def read_crossings(path) -> Crossings:
    """Read and validate an l1forge.crossings/1 or /2 file; DataError (one line naming file and dataset) otherwise."""
    path = pathlib.Path(path)
    sample = read_pileup(path, schema=SCHEMA)
    with open_h5(path) as f:
        ds = checked_dataset(f, path, "weight", (), sample.n_events, "offsets")
        weight = ds[()].astype(np.float64)
    if not np.all(np.isfinite(weight) & (weight >= 0)):
        fail(path, "dataset 'weight' has negative or non-finite values")
    flags = np.atleast_1d(sample.attrs.get("sample_is_signal", [])).astype(bool)
    if len(flags) != len(sample.process_names):
        fail(path, f"attribute 'sample_is_signal' has {len(flags)} entries for {len(sample.process_names)} samples")
    return Crossings(sample, weight, flags)
