"""Jet-tagging samples (g, q, W, Z, top jets near 1 TeV) from Pythia8 + FastJet, generated reproducibly in parallel."""

import concurrent.futures
import importlib.metadata
import json
import pathlib
import time

import awkward as ak
import fastjet
import numpy as np
from threadpoolctl import threadpool_limits

from l1forge.events import schema
from l1forge.events.processes import COMMON_SETTINGS, SQRT_S_GEV, new_pythia, run_chunks
from l1forge.events.substructure import FEATURE_NAMES, jet_features, padded_kinematics, pt_eta_phi, wrap_phi
from l1forge.events.truth import EventRecord, match_label

CLASSES = ("g", "q", "w", "z", "t")
R_JET = 0.8
ETA_MAX = 2.5
MIN_CONSTITUENTS = 3
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
CHUNK_JETS = 500          # jets per work unit; part of the seed derivation, so changing it changes the output
EVENTS_PER_BATCH = 32     # events per pythia.nextBatch call; also part of the output definition
PTHAT_WINDOW = (0.8, 1.2)  # PhaseSpace:pTHatMin/Max as fractions of the jet pT window's low/high edges
_HADRONIC = "1 2 3 4 5"
PROCESS_SETTINGS = {
    "g": ("HardQCD:all = on",),
    "q": ("HardQCD:all = on",),
    "w": ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
          "24:onMode = off", f"24:onIfAny = {_HADRONIC}"),
    "z": ("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on", "WeakZ0:gmZmode = 2",
          "23:onMode = off", f"23:onIfAny = {_HADRONIC}"),
    "t": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", f"24:onIfAny = {_HADRONIC}"),
}


def class_settings(cls: str, pt_range, mpi: bool) -> list[str]:
    """All Pythia settings of one class except the random seed."""
    lo, hi = pt_range
    return [*COMMON_SETTINGS, *PROCESS_SETTINGS[cls],
            f"PhaseSpace:pTHatMin = {PTHAT_WINDOW[0] * lo:g}", f"PhaseSpace:pTHatMax = {PTHAT_WINDOW[1] * hi:g}",
            f"PartonLevel:MPI = {'on' if mpi else 'off'}"]


def chunk_seed(seed: int, cls: str, chunk: int) -> int:
    """Pythia seed (1..900_000_000) of one chunk, derived from (master seed, class, chunk index)."""
    state = np.random.SeedSequence([seed, CLASSES.index(cls), chunk]).generate_state(1)[0]
    return int(state) % 900_000_000 + 1


def _visible_particles(prt):
    """Jagged px, py, pz, E records of visible final-state particles (all but neutrinos)."""
    aid = abs(prt.id)
    keep = (prt.status > 0) & (aid != 12) & (aid != 14) & (aid != 16)
    p = prt.p[keep]
    return ak.to_packed(ak.zip({"px": p.px, "py": p.py, "pz": p.pz, "E": p.e}))


def _records(prt):
    """One EventRecord per event of a batch (built from flat numpy arrays)."""
    offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(prt)))])
    flat = {f: ak.to_numpy(ak.flatten(prt[f])) for f in ("id", "status", "mother1", "daughter1", "daughter2")}
    flat.update({f: ak.to_numpy(ak.flatten(prt.p[f])) for f in ("px", "py", "pz")})
    return [EventRecord(*(flat[f][a:b] for f in ("id", "status", "mother1", "daughter1", "daughter2", "px", "py", "pz")))
            for a, b in zip(offsets[:-1], offsets[1:])]


def _constituent_array(consts, jet_eta, jet_phi):
    """(J, 64, 4) [pt, deta, dphi, E] of the leading constituents by pT, zero-padded."""
    pt, eta, phi, e = padded_kinematics(consts)
    order = np.argsort(-pt, axis=1, kind="stable")[:, :schema.MAX_CONSTITUENTS]
    pt, eta, phi, e = (np.take_along_axis(a, order, axis=1) for a in (pt, eta, phi, e))
    table = np.stack([pt, eta - jet_eta[:, None], wrap_phi(phi - jet_phi[:, None]), e], axis=2) * (pt > 0)[:, :, None]
    out = np.zeros((len(pt), schema.MAX_CONSTITUENTS, 4), np.float32)
    out[:, :table.shape[1]] = table
    return out


def _batch_jets(batch, cls: str, jetdef, pt_range):
    """Arrays of the jets of one event batch that pass the cuts and are truth-matched to class cls."""
    particles = _visible_particles(batch.prt)
    cs = fastjet.ClusterSequence(particles, jetdef)
    jets, consts = cs.inclusive_jets(min_pt=pt_range[0]), cs.constituents(min_pt=pt_range[0])
    event = np.repeat(np.arange(len(jets)), ak.to_numpy(ak.num(jets)))
    jets, consts = ak.flatten(jets), ak.flatten(consts, axis=1)
    px, py, pz, e = (ak.to_numpy(jets[f]) for f in ("px", "py", "pz", "E"))
    pt, eta, phi = pt_eta_phi(px, py, pz)
    mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    candidates = np.flatnonzero((pt >= pt_range[0]) & (pt <= pt_range[1]) & (np.abs(eta) < ETA_MAX)
                                & (ak.to_numpy(ak.num(consts)) >= MIN_CONSTITUENTS))
    keep = []
    if len(candidates):
        records, truth = _records(batch.prt), {}
        for j in candidates:
            if event[j] not in truth:
                truth[event[j]] = records[event[j]].truth_objects()
            if match_label(eta[j], phi[j], truth[event[j]], R_JET) == cls:
                keep.append(j)
    keep = np.asarray(keep, dtype=np.int64)
    if not len(keep):
        return None
    kept = consts[keep]
    return {
        "constituents": _constituent_array(kept, eta[keep], phi[keep]),
        "n_constituents": np.minimum(ak.to_numpy(ak.num(kept)), schema.MAX_CONSTITUENTS).astype(np.int16),
        "features": jet_features(kept, eta[keep], phi[keep], mass[keep]),
        "jet": np.stack([pt[keep], eta[keep], phi[keep], mass[keep]], axis=1),
    }


def generate_chunk(cls: str, n_jets: int, pythia_seed: int, settings: list[str], pt_range) -> dict:
    """Generate events until exactly n_jets jets of class cls are found; one Pythia instance, one process.

    Besides the jet arrays, returns the cross section of this chunk's accepted jets, ``sigma_mb`` = Pythia's
    generated cross section (mb) x accepted jets per generated event.
    """
    pythia = new_pythia(settings, pythia_seed, f"class {cls!r}")
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, R_JET)
    parts, n_found, n_events = [], 0, 0
    with threadpool_limits(1):
        while n_found < n_jets:
            batch = pythia.nextBatch(EVENTS_PER_BATCH)
            n_events += len(batch)
            found = _batch_jets(batch, cls, jetdef, pt_range)
            if found is not None:
                parts.append(found)
                n_found += len(found["jet"])
            if n_events >= 2000 and n_found == 0:
                raise RuntimeError(f"no {cls} jets with pT in {pt_range} GeV after {n_events} events")
    jets_sigma_mb = pythia.infoPython().sigmaGen() * n_found / n_events
    return {**{k: np.concatenate([p[k] for p in parts])[:n_jets] for k in parts[0]}, "sigma_mb": jets_sigma_mb}


def _assign_split(labels: np.ndarray, seed: int) -> np.ndarray:
    """Per-class random 60/20/20 train/val/test split derived from the master seed."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, len(CLASSES)]))
    split = np.empty(len(labels), np.int8)
    for c in range(len(CLASSES)):
        rows = np.flatnonzero(labels == c)
        rows = rows[rng.permutation(len(rows))]
        n_train, n_val = round(SPLIT_FRACTIONS[0] * len(rows)), round(SPLIT_FRACTIONS[1] * len(rows))
        split[rows[:n_train]], split[rows[n_train:n_train + n_val]], split[rows[n_train + n_val:]] = 0, 1, 2
    return split


def generate_jets(out: pathlib.Path, n_per_class: int, seed: int = 1, workers: int = 2,
                  pt_range=(800.0, 1200.0), mpi: bool = True, progress: bool = True,
                  executor: concurrent.futures.Executor | None = None) -> dict:
    """Generate n_per_class jets of each class in CLASSES and write them to `out` (schema l1forge.jets/1).

    Chunks of CHUNK_JETS jets run on `executor` (l1forge.core.executors, e.g. a Dask cluster's) or, if None, on
    `workers` local processes. The file is byte-identical for the same arguments whatever the executor and the
    number of workers. Returns {"n_jets", "per_class", "seconds", "jets_per_s", "path"}.
    """
    n_per_class, workers, seed, mpi = int(n_per_class), int(workers), int(seed), bool(mpi)
    if n_per_class < 1 or workers < 1 or seed < 0:
        raise ValueError("n_per_class and workers must be >= 1 and seed >= 0")
    pt_range = (float(pt_range[0]), float(pt_range[1]))
    if not 0 < pt_range[0] < pt_range[1]:
        raise ValueError(f"pt_range must be (low, high) with 0 < low < high, not {pt_range}")
    start = time.perf_counter()
    settings = {cls: class_settings(cls, pt_range, mpi) for cls in CLASSES}
    tasks = [(cls, min(CHUNK_JETS, n_per_class - first), chunk_seed(seed, cls, k), settings[cls], pt_range)
             for cls in CLASSES for k, first in enumerate(range(0, n_per_class, CHUNK_JETS))]
    results = run_chunks(generate_chunk, tasks, [t[1] for t in tasks], workers, "generating jets", progress,
                         executor)
    arrays = {k: np.concatenate([r[k] for r in results]) for k in ("constituents", "n_constituents", "features", "jet")}
    arrays["labels"] = np.repeat(np.arange(len(CLASSES), dtype=np.int8), n_per_class)
    arrays["split"] = _assign_split(arrays["labels"], seed)
    cuts = {"pt_range_gev": list(pt_range), "abs_eta_max": ETA_MAX, "min_constituents": MIN_CONSTITUENTS,
            "truth_match_dr": R_JET, "chunk_jets": CHUNK_JETS, "events_per_batch": EVENTS_PER_BATCH,
            "split_fractions": list(SPLIT_FRACTIONS), "mpi": mpi}
    # Cross section of the accepted jets of each class (mean over its chunks): weights for trigger rates.
    sigma = {cls: float(np.mean([r["sigma_mb"] for r, t in zip(results, tasks) if t[0] == cls])) for cls in CLASSES}
    attrs = {
        "jet_cross_section_mb": json.dumps(sigma, sort_keys=True),
        "l1forge_version": importlib.metadata.version("l1forge"),
        "seed": seed,
        "generator": f"pythia8mc {importlib.metadata.version('pythia8mc')}",
        "sqrt_s_gev": SQRT_S_GEV,
        "jet_algorithm": f"antikt R={R_JET}",
        "settings": json.dumps({"pythia": settings, "cuts": cuts}, sort_keys=True),
        "n_per_class": n_per_class,
    }
    schema.write_jets(out, arrays, FEATURE_NAMES, CLASSES, attrs)
    seconds = time.perf_counter() - start
    n_jets = len(arrays["labels"])
    return {"n_jets": n_jets, "per_class": {cls: n_per_class for cls in CLASSES},
            "seconds": seconds, "jets_per_s": n_jets / seconds, "path": pathlib.Path(out)}
