"""Pileup: a reusable library of Pythia minimum-bias events, overlaid on hard events with random phi rotation and eta
mirror, so a crossing at pileup 60 costs a gather of ~60 stored events instead of 60 new Pythia events."""

import concurrent.futures

import awkward as ak
import numpy as np

from l1forge.events.l1objects import ETA_CALO, INVISIBLE, Particles, concat_particles
from l1forge.events.processes import COMMON_SETTINGS, MINBIAS_SETTINGS, chunk_seeds, new_pythia, run_chunks

LIBRARY_CHUNK = 2000  # events per work unit: part of the seed derivation, so changing it changes the library
BATCH_EVENTS = 200


def particles_from_batch(batch) -> Particles:
    """Final-state particles of a `pythia.nextBatch` record inside the calorimeter (|eta| < 5), plus invisibles."""
    prt = batch.prt
    counts = ak.to_numpy(ak.num(prt))
    pid = ak.to_numpy(ak.flatten(prt.id)).astype(np.int32)
    px, py, pz = (ak.to_numpy(ak.flatten(prt.p[f])).astype(np.float32) for f in ("px", "py", "pz"))
    inside = np.abs(pz) < np.sinh(ETA_CALO) * np.hypot(px, py)
    keep = (ak.to_numpy(ak.flatten(prt.status)) > 0) & (inside | np.isin(np.abs(pid), INVISIBLE))
    event = np.repeat(np.arange(len(counts)), counts)
    return Particles(px[keep], py[keep], pz[keep], pid[keep], event[keep], len(counts))


def _library_chunk(n_events: int, pythia_seed: int, pthat_max: float | None) -> dict:
    """n_events minimum-bias events with pTHat < pthat_max (all if None), as flat arrays and per-event counts."""
    pythia = new_pythia([*COMMON_SETTINGS, *MINBIAS_SETTINGS], pythia_seed, "pileup library")
    parts, counts, kept, generated, vetoed = [], [], 0, 0, 0
    while kept < n_events:
        batch = pythia.nextBatch(BATCH_EVENTS)
        generated += len(batch)
        p = particles_from_batch(batch)
        soft = np.ones(len(batch), bool) if pthat_max is None else ak.to_numpy(batch.info.pT2Hat) < pthat_max**2
        vetoed += int((~soft).sum())
        take = np.flatnonzero(soft)[:n_events - kept]
        rows = np.isin(p.event, take)
        parts.append({f: getattr(p, f)[rows] for f in ("px", "py", "pz", "pid")})  # rows stay in event order
        counts.append(np.bincount(p.event[rows], minlength=len(batch))[take])
        kept += len(take)
    return {"particles": parts, "counts": np.concatenate(counts), "generated": generated, "vetoed": vetoed,
            "sigma_inel_mb": pythia.infoPython().sigmaGen()}


def build_pileup_library(n_events: int, seed: int, workers: int = 2, pthat_max: float | None = None,
                         progress: bool = False, executor: concurrent.futures.Executor | None = None) -> dict:
    """Minimum-bias library (SoftQCD:inelastic, MPI on): flat px, py, pz (float32), pid (int32), offsets (int64),
    plus sigma_inel_mb (Pythia's inelastic cross section) and vetoed_fraction (events dropped for pTHat >= pthat_max).

    Chunks of LIBRARY_CHUNK events run on `executor` or, if None, on `workers` local processes (run_chunks);
    identical whatever the executor and worker count.
    """
    n_events, workers = int(n_events), int(workers)
    if n_events < 1 or workers < 1:
        raise ValueError("n_events and workers must be >= 1")
    tasks = [(min(LIBRARY_CHUNK, n_events - first), chunk_seeds(seed, "pileup", k)[0], pthat_max)
             for k, first in enumerate(range(0, n_events, LIBRARY_CHUNK))]
    results = run_chunks(_library_chunk, tasks, [t[0] for t in tasks], workers, "pileup library", progress,
                         executor)
    parts = [p for r in results for p in r["particles"]]
    counts = np.concatenate([r["counts"] for r in results])
    return {**{f: np.concatenate([p[f] for p in parts]) for f in ("px", "py", "pz", "pid")},
            "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "sigma_inel_mb": float(np.mean([r["sigma_inel_mb"] for r in results])),
            "vetoed_fraction": sum(r["vetoed"] for r in results) / sum(r["generated"] for r in results)}


def overlay(hard: Particles, library: dict, mu: float, rng: np.random.Generator,
            with_vertex: bool = False) -> Particles | tuple[Particles, np.ndarray, np.ndarray]:
    """Add Poisson(mu) library events to each event of `hard`, each rotated by a random phi and mirrored in eta
    with probability 1/2. mu = 0 returns the hard particles unchanged.

    with_vertex=True also returns each particle's interaction within its crossing (0 = the hard interaction,
    1..n = its pileup interactions, in the order drawn) and the number of pileup interactions per crossing.
    """
    offsets = library["offsets"]
    n_pileup = rng.poisson(mu, hard.n_events)
    picks = rng.integers(0, len(offsets) - 1, n_pileup.sum())
    angle = rng.uniform(-np.pi, np.pi, len(picks))
    mirror = np.where(rng.random(len(picks)) < 0.5, -1.0, 1.0)
    sizes = offsets[picks + 1] - offsets[picks]
    owner = np.repeat(np.arange(len(picks)), sizes)  # picked event of each pileup particle
    index = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes) + offsets[picks][owner]
    cos, sin = np.cos(angle)[owner], np.sin(angle)[owner]
    px, py = library["px"][index], library["py"][index]
    pileup = Particles((px * cos - py * sin).astype(np.float32), (px * sin + py * cos).astype(np.float32),
                       (library["pz"][index] * mirror[owner]).astype(np.float32), library["pid"][index],
                       np.repeat(np.repeat(np.arange(hard.n_events), n_pileup), sizes), hard.n_events)
    crossing = concat_particles([hard, pileup], hard.n_events)
    if not with_vertex:
        return crossing
    first_pick = np.repeat(np.cumsum(n_pileup) - n_pileup, n_pileup)  # first pick of each pick's crossing
    vertex = np.concatenate([np.zeros(len(hard.px), np.int32), (owner - first_pick[owner] + 1).astype(np.int32)])
    return crossing, vertex, n_pileup
