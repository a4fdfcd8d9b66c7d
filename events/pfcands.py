"""Pileup-mitigation samples: hard processes with real MET and jets, Poisson pileup overlaid, as L1-like
particle-flow candidates with per-particle truth (primary vertex or pileup), plus per-event truth MET and truth jets
built without pileup. Schema "l1forge.pileup/1"; PILEUP.md states every number used here.
"""

import concurrent.futures
import dataclasses
import importlib.metadata
import json
import math
import pathlib
import time
import zlib

import awkward as ak
import fastjet
import numpy as np
import pythia8mc

from l1forge.events.calorimeter import DETA, DPHI, ECAL, ETA_EDGE, HCAL, N_ETA, N_PHI, merge_deposits
from l1forge.events.l1objects import INVISIBLE, Particles
from l1forge.events.pileup import build_pileup_library, overlay, particles_from_batch
from l1forge.events.processes import COMMON_SETTINGS, SQRT_S_GEV, chunk_seeds, new_pythia, run_chunks
from l1forge.events.schema import checked_dataset, fail, open_h5, write_h5
from l1forge.events.substructure import pt_eta_phi, wrap_phi

SCHEMA = "l1forge.pileup/1"  # calorimeter "particles", no paired sample: the files of before, byte for byte
SCHEMA_2 = "l1forge.pileup/2"  # + pv_fraction, attributes calorimeter and paired, the paired sample if paired
PROCESSES: dict[str, list[str]] = {
    "ttbar": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"],
    "znunu_jet": ["WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on", "WeakZ0:gmZmode = 2",
                  "PhaseSpace:pTHatMin = 50.", "23:onMode = off", "23:onIfAny = 12 14 16"],
    # H -> ZZ* -> 4 neutrinos: an invisible Higgs within the SM particle content
    "vbf_hinv": ["HiggsSM:ff2Hff(t:ZZ) = on", "HiggsSM:ff2Hff(t:WW) = on", "25:onMode = off",
                 "25:onIfMatch = 23 23", "23:onMode = off", "23:onIfAny = 12 14 16"],
}
CHUNK_EVENTS = 100  # events per work unit: part of the seed derivation, so changing it changes the output
LIBRARY_EVENTS = 20_000
TRAIN_VAL = (0.8, 0.2)  # of the training-pileup events; the test events are generated per test pileup

# L1-like particle-flow candidates (PILEUP.md)
ETA_MAX = 4.0
PT_MIN = 1.0  # GeV, every candidate after smearing
CALO_TRUE_PT_MIN = 0.5  # GeV: softer particles leave no calorimeter candidate (noise floor)
TRACK_PT_MIN, TRACK_ETA_MAX = 2.0, 2.4  # charged particles inside these get a track (pT, charge, dz)
LUMINOUS_SIGMA_Z_CM = 4.5  # vertices spread along the beam: Gaussian, HL-LHC-like
DZ_RESOLUTION = (0.1, 0.6)  # sigma(dz) / cm = a (+) b / (pT / GeV)
CALO_RESOLUTION = {"photon": (0.15, 0.01), "neutral_hadron": (1.0, 0.05)}  # sigma(pT) = a sqrt(pT) (+) b pT
CHARGED_HADRON, ELECTRON, MUON, PHOTON, NEUTRAL_HADRON = range(5)
CALORIMETERS = ("merged", "particles")  # how neutral candidates form (candidates)
TYPE_NAMES = ("charged_hadron", "electron", "muon", "photon", "neutral_hadron")
FEATURE_NAMES = ("pt", "eta", "phi", "dz", "charge", "has_track", *(f"is_{t}" for t in TYPE_NAMES))

# truth jets: anti-kt R = 0.4 on the visible particles of the hard interaction alone (no pileup, no smearing)
JET_R, TRUTH_JET_PT_MIN, MAX_JETS = 0.4, 20.0, 8
_JETDEF = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_R)
_PARTICLE_FIELDS = ("pt", "eta", "phi", "dz", "charge", "type", "is_pv")
_SAMPLE_FIELDS = (*_PARTICLE_FIELDS, "pv_fraction")
NOPU_FIELDS = ("pt", "eta", "phi", "charge", "type")  # of the paired no-pileup candidates, datasets nopu_<field>
_CHARGE: dict[int, int] = {}


@dataclasses.dataclass
class PileupSample:
    """Candidates of all crossings as flat arrays (event e owns rows offsets[e]:offsets[e+1], pT-ordered)."""

    path: pathlib.Path
    pt: np.ndarray  # float32 GeV
    eta: np.ndarray  # float32
    phi: np.ndarray  # float32 in [-pi, pi)
    dz: np.ndarray  # float32 cm, track z0 minus primary-vertex z; 0 without a track
    charge: np.ndarray  # int8, 0 without a track
    type: np.ndarray  # int8 TYPE_NAMES index
    is_pv: np.ndarray  # bool truth: from the hard (primary) interaction (merged towers: pv_fraction >= 0.5)
    offsets: np.ndarray  # int64 (n_events + 1)
    process: np.ndarray  # int16 index into process_names
    process_names: list[str]
    pileup: np.ndarray  # float32 Poisson mean of the crossing's pileup
    n_pileup: np.ndarray  # int16 pileup interactions in the crossing
    split: np.ndarray  # int8 0 train, 1 val, 2 test
    true_met: np.ndarray  # (n_events, 2) float32 invisible px, py of the hard interaction
    truth_jets: np.ndarray  # (n_events, MAX_JETS, 4) float32 pt, eta, phi, mass; zero rows pad
    attrs: dict
    pv_fraction: np.ndarray | None = None  # float32 in [0, 1]: PV share of the candidate's true ET (None: is_pv)
    nopu: "NoPileup | None" = None  # the paired sample: each crossing's hard interaction alone, same detector

    def __post_init__(self):
        if self.pv_fraction is None:
            self.pv_fraction = np.asarray(self.is_pv, np.float32)

    @property
    def calorimeter(self) -> str:
        """How the neutral candidates formed: "merged" (towers) or "particles" (files of schema 1)."""
        return str(self.attrs.get("calorimeter", "particles"))

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    @property
    def event(self) -> np.ndarray:
        """(n_particles,) event index of each candidate."""
        return np.repeat(np.arange(self.n_events), np.diff(self.offsets))

    @property
    def has_track(self) -> np.ndarray:
        return self.charge != 0

    def type_onehot(self) -> np.ndarray:
        """(n_particles, len(TYPE_NAMES)) float32 one-hot candidate type."""
        return (self.type[:, None] == np.arange(len(TYPE_NAMES))[None, :]).astype(np.float32)

    def features(self) -> np.ndarray:
        """(n_particles, len(FEATURE_NAMES)) float32: pt, eta, phi, dz, charge, has_track, one-hot type."""
        return np.concatenate([np.stack([self.pt, self.eta, self.phi, self.dz, self.charge, self.has_track], 1)
                               .astype(np.float32), self.type_onehot()], axis=1)

    def particle_rows(self, events: np.ndarray) -> np.ndarray:
        """Candidate rows of the given events (bool mask over events), in order."""
        return np.repeat(np.asarray(events, bool), np.diff(self.offsets))

    def select(self, candidates: np.ndarray) -> "PileupSample":
        """The same crossings holding only the chosen candidates (bool mask over candidates), order kept."""
        candidates = np.asarray(candidates, bool)
        counts = np.bincount(self.event[candidates], minlength=self.n_events)
        return dataclasses.replace(self, **{f: getattr(self, f)[candidates] for f in _SAMPLE_FIELDS},
                                   offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def subset(self, events) -> "PileupSample":
        """The chosen events (bool mask over events, or a slice of consecutive events: views, no copy) as a sample
        of their own."""
        if isinstance(events, slice):
            first, last, step = events.indices(self.n_events)
            if step != 1:
                raise ValueError(f"subset: a slice of consecutive events, not step {step}")
            rows = slice(self.offsets[first], self.offsets[last])
            offsets = self.offsets[first:last + 1] - self.offsets[first]
        else:
            events = np.asarray(events, bool)
            rows = self.particle_rows(events)
            offsets = np.concatenate([[0], np.cumsum(np.diff(self.offsets)[events])]).astype(np.int64)
        per_particle = {f: getattr(self, f)[rows] for f in _SAMPLE_FIELDS}
        per_event = {f: getattr(self, f)[events] for f in ("process", "pileup", "n_pileup", "split", "true_met",
                                                              "truth_jets")}
        nopu = None if self.nopu is None else self.nopu.subset(events)
        return dataclasses.replace(self, **per_particle, **per_event, offsets=offsets, nopu=nopu)


@dataclasses.dataclass
class NoPileup:
    """The paired sample: the candidates of each crossing's hard interaction without pileup, through the same
    detector model (event e owns rows offsets[e]:offsets[e+1], pT-ordered); NOPU_FIELDS as in PileupSample."""

    pt: np.ndarray  # float32 GeV
    eta: np.ndarray  # float32
    phi: np.ndarray  # float32
    charge: np.ndarray  # int8
    type: np.ndarray  # int8
    offsets: np.ndarray  # int64 (n_events + 1)

    def subset(self, events) -> "NoPileup":
        """The chosen events (bool mask, or a slice of consecutive events)."""
        if isinstance(events, slice):
            first, last, _ = events.indices(len(self.offsets) - 1)
            rows = slice(self.offsets[first], self.offsets[last])
            offsets = self.offsets[first:last + 1] - self.offsets[first]
        else:
            events = np.asarray(events, bool)
            rows = np.repeat(events, np.diff(self.offsets))
            offsets = np.concatenate([[0], np.cumsum(np.diff(self.offsets)[events])]).astype(np.int64)
        return NoPileup(**{f: getattr(self, f)[rows] for f in NOPU_FIELDS}, offsets=offsets)

    def met(self) -> np.ndarray:
        """(n_events, 2) float64 MET of the no-pileup candidates, GeV."""
        event, n = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets)), len(self.offsets) - 1
        pt = self.pt.astype(np.float64)
        return -np.stack([np.bincount(event, pt * np.cos(self.phi), n),
                          np.bincount(event, pt * np.sin(self.phi), n)], 1)


def _charges(pid: np.ndarray) -> np.ndarray:
    """Electric charge of each PDG id (Pythia's particle data, cached per id)."""
    ids = np.unique(pid)
    missing = [int(i) for i in ids if int(i) not in _CHARGE]
    if missing:
        data = pythia8mc.Pythia("", False).particleData
        _CHARGE.update({i: int(round(data.charge(i))) for i in missing})
    return np.array([_CHARGE[int(i)] for i in ids], np.int8)[np.searchsorted(ids, pid)]


def _smear(pt, resolution, rng):
    a, b = resolution
    return pt + rng.standard_normal(len(pt)) * np.sqrt(a**2 * pt + (b * pt) ** 2)


def candidates(crossing: Particles, vertex: np.ndarray, n_pileup: np.ndarray, rng: np.random.Generator,
               calorimeter: str = "particles") -> dict:
    """L1-like particle-flow candidates of each crossing, ordered by event then decreasing pT.

    Charged particles with pT > TRACK_PT_MIN and |eta| < TRACK_ETA_MAX become tracks (pT and charge exact, dz
    smeared); muons without a track are dropped. The other visible particles reach the calorimeter: with
    `calorimeter` "particles" each is one candidate (e/gamma -> photon, hadrons -> neutral hadron, pT smeared, true
    pT > CALO_TRUE_PT_MIN); with "merged" the deposits of every interaction are summed per trigger tower and layer
    (events/calorimeter.py), the sum smeared, and each tower-layer above PT_MIN is one candidate (ECAL -> photon,
    HCAL -> neutral hadron) at the ET-weighted centroid of its deposits. Returns flat arrays _PARTICLE_FIELDS,
    'pv_fraction' (float32: the primary interaction's share of the candidate's true ET; 0 or 1 but for merged
    towers; is_pv = pv_fraction >= 0.5) and 'counts'.
    """
    if calorimeter not in CALORIMETERS:
        raise ValueError(f"calorimeter must be one of {CALORIMETERS}, not {calorimeter!r}")
    n = crossing.n_events
    pt, eta, phi = pt_eta_phi(*(a.astype(np.float64) for a in (crossing.px, crossing.py, crossing.pz)))
    apid = np.abs(crossing.pid)
    charge = _charges(crossing.pid)
    track = (charge != 0) & (pt > TRACK_PT_MIN) & (np.abs(eta) < TRACK_ETA_MAX)
    em = (apid == 11) | (apid == 22)
    kind = np.where(track, np.select([apid == 11, apid == 13], [ELECTRON, MUON], CHARGED_HADRON),
                    np.where(em, PHOTON, NEUTRAL_HADRON)).astype(np.int8)
    measured = pt.copy()
    if calorimeter == "particles":
        for name, code in (("photon", PHOTON), ("neutral_hadron", NEUTRAL_HADRON)):
            calo = ~track & (kind == code)
            measured[calo] = _smear(pt[calo], CALO_RESOLUTION[name], rng)
    # vertex z: one Gaussian draw per interaction, the hard interaction first
    first = np.concatenate([[0], np.cumsum(n_pileup + 1)])
    z = rng.normal(0.0, LUMINOUS_SIGMA_Z_CM, first[-1])
    a, b = DZ_RESOLUTION
    sigma = np.sqrt(a**2 + (b / np.maximum(pt, TRACK_PT_MIN)) ** 2)
    dz = np.where(track, z[first[crossing.event] + vertex] - z[first[crossing.event]]
                  + sigma * rng.standard_normal(len(pt)), 0.0)
    visible = ~np.isin(apid, INVISIBLE) & (np.abs(eta) < ETA_MAX)
    if calorimeter == "merged":
        return _merged(crossing.event, track & visible, visible & ~track & (apid != 13), pt, eta, phi, dz, charge,
                       kind, em, vertex == 0, n, rng)
    keep = (visible & (measured > PT_MIN) & ((apid != 13) | track) & (track | (pt > CALO_TRUE_PT_MIN)))
    order = np.flatnonzero(keep)[np.lexsort((-measured[keep], crossing.event[keep]))]
    return {"pt": measured[order].astype(np.float32), "eta": eta[order].astype(np.float32),
            "phi": phi[order].astype(np.float32), "dz": dz[order].astype(np.float32),
            "charge": np.where(track, charge, 0)[order].astype(np.int8), "type": kind[order],
            "is_pv": (vertex[order] == 0), "pv_fraction": (vertex[order] == 0).astype(np.float32),
            "counts": np.bincount(crossing.event[order], minlength=n)}


def _merged(event, track, calo, pt, eta, phi, dz, charge, kind, em, from_pv, n, rng) -> dict:
    """``candidates`` for calorimeter "merged": the tracks as they are, the calorimeter deposits `calo` as towers."""
    cells = merge_deposits(event[calo], np.where(em[calo], ECAL, HCAL), eta[calo], phi[calo], pt[calo], from_pv[calo])
    ecal = cells["layer"] == ECAL
    (ea, eb), (ha, hb) = CALO_RESOLUTION["photon"], CALO_RESOLUTION["neutral_hadron"]
    a, b, et = np.where(ecal, ea, ha), np.where(ecal, eb, hb), cells["et"]
    smeared = et + rng.standard_normal(len(et)) * np.sqrt(a**2 * et + (b * et) ** 2)
    on = smeared > PT_MIN
    c_eta, c_phi = cells["eta"][on], cells["phi"][on]
    columns = {"pt": (pt[track], smeared[on]), "eta": (eta[track], c_eta), "phi": (phi[track], c_phi),
               "dz": (dz[track], np.zeros(on.sum())), "charge": (charge[track], np.zeros(on.sum(), np.int8)),
               "type": (kind[track], np.where(ecal[on], PHOTON, NEUTRAL_HADRON).astype(np.int8)),
               "pv_fraction": (from_pv[track].astype(np.float64), cells["pv_et"][on] / cells["et"][on]),
               "event": (event[track], cells["event"][on])}
    flat = {k: np.concatenate(v) for k, v in columns.items()}
    order = np.lexsort((-flat["pt"], flat["event"]))
    fraction = np.clip(flat["pv_fraction"][order], 0.0, 1.0).astype(np.float32)
    return {"pt": flat["pt"][order].astype(np.float32), "eta": flat["eta"][order].astype(np.float32),
            "phi": flat["phi"][order].astype(np.float32), "dz": flat["dz"][order].astype(np.float32),
            "charge": flat["charge"][order].astype(np.int8), "type": flat["type"][order].astype(np.int8),
            "is_pv": fraction >= 0.5, "pv_fraction": fraction, "counts": np.bincount(flat["event"], minlength=n)}


def cluster_jets(event: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, n_events: int,
                 min_pt: float = TRUTH_JET_PT_MIN, mass: np.ndarray | None = None) -> np.ndarray:
    """(n_events, MAX_JETS, 4) float32 pt, eta, phi, mass of the anti-kt R=0.4 jets above min_pt, by decreasing pT.

    Inputs are massless unless `mass` is given; rows with pt <= 0 are ignored (weight-0 candidates).
    """
    event, pt, eta, phi = (np.asarray(a) for a in (event, pt, eta, phi))
    use = pt > 0
    event, pt, eta, phi = event[use], pt[use].astype(np.float64), eta[use].astype(np.float64), phi[use]
    m = np.zeros_like(pt) if mass is None else np.asarray(mass, np.float64)[use]
    order = np.argsort(event, kind="stable")
    event, pt, eta, phi, m = event[order], pt[order], eta[order], phi[order], m[order]
    pz = pt * np.sinh(eta)
    vectors = ak.zip({"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pz, "E": np.sqrt(pt**2 + pz**2 + m**2)})
    jets = fastjet.ClusterSequence(ak.unflatten(vectors, np.bincount(event, minlength=n_events)), _JETDEF)
    jets = jets.inclusive_jets(min_pt=min_pt)
    owner = np.repeat(np.arange(n_events), ak.to_numpy(ak.num(jets)))
    px, py, pz, e = (ak.to_numpy(ak.flatten(jets[f])).astype(np.float64) for f in ("px", "py", "pz", "E"))
    j_pt, j_eta, j_phi = pt_eta_phi(px, py, pz)
    j_mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    order = np.lexsort((-j_pt, owner))
    owner, rows = owner[order], np.stack([j_pt, j_eta, j_phi, j_mass], 1)[order]
    rank = np.arange(len(owner)) - np.searchsorted(owner, owner)
    out = np.zeros((n_events, MAX_JETS, 4), np.float32)
    out[owner[rank < MAX_JETS], rank[rank < MAX_JETS]] = rows[rank < MAX_JETS]
    return out


def _truth(hard: Particles) -> tuple[np.ndarray, np.ndarray]:
    """Invisible (px, py) per event and truth jets from the hard interaction's visible particles."""
    n = hard.n_events
    invisible = np.isin(np.abs(hard.pid), INVISIBLE)
    met = np.stack([np.bincount(hard.event[invisible], hard.px[invisible], n),
                    np.bincount(hard.event[invisible], hard.py[invisible], n)], 1).astype(np.float32)
    pt, eta, phi = pt_eta_phi(*(a[~invisible].astype(np.float64) for a in (hard.px, hard.py, hard.pz)))
    inside = np.abs(eta) < ETA_MAX
    jets = cluster_jets(hard.event[~invisible][inside], pt[inside], eta[inside], phi[inside], n)
    return met, jets


def calorimeter_definition(calorimeter: str) -> dict:
    """The calorimeter model's constants, for a file's settings attribute."""
    if calorimeter == "particles":
        return {"calorimeter": "particles"}
    return {"calorimeter": "merged", "towers": {"eta_edge": ETA_EDGE, "n_eta": N_ETA, "n_phi": N_PHI, "deta": DETA,
                                                "dphi": DPHI, "layers": ["ecal", "hcal"]}}


def paired_candidates(hard: Particles, pythia_seed: int, calorimeter: str) -> dict:
    """``candidates`` of the hard interactions alone (the paired sample), smeared with their own generator (from
    the chunk's Pythia seed), so that the crossings' candidates do not depend on whether the pair is made."""
    rng = np.random.default_rng(np.random.SeedSequence([pythia_seed, zlib.crc32(b"paired")]))
    return candidates(hard, np.zeros(len(hard.px), np.int64), np.zeros(hard.n_events, np.int64), rng, calorimeter)


def _chunk(process: str, settings: list[str], n_events: int, seed: int, name: str, chunk: int, mu: float,
           library: dict, calorimeter: str = "particles", paired: bool = False) -> dict:
    """Candidates and truth of n_events crossings of one process block, Poisson(mu) pileup from `library`; with
    `paired`, also the candidates of each hard interaction alone ("nopu")."""
    pythia_seed, rng = chunk_seeds(seed, name, chunk)
    pythia = new_pythia(settings, pythia_seed, process)
    hard = particles_from_batch(pythia.nextBatch(n_events))
    if hard.n_events != n_events:
        raise RuntimeError(f"{process}: Pythia returned {hard.n_events} of {n_events} events")
    met, jets = _truth(hard)
    crossing, vertex, n_pileup = overlay(hard, library, mu, rng, with_vertex=True)
    out = {**candidates(crossing, vertex, n_pileup, rng, calorimeter), "true_met": met, "truth_jets": jets,
           "n_pileup": n_pileup.astype(np.int16), "sigma_mb": pythia.infoPython().sigmaGen()}
    if paired:
        out["nopu"] = paired_candidates(hard, pythia_seed, calorimeter)
    return out


def stored_arrays(results: list[dict], calorimeter: str, paired: bool) -> tuple[dict, dict, str]:
    """The per-candidate datasets of chunk results, the paired sample's ({} unless paired) and the schema they make:
    SCHEMA for particles without a pair (the files of before), SCHEMA_2 otherwise (with pv_fraction)."""
    v2 = calorimeter != "particles" or paired
    counts = np.concatenate([r["counts"] for r in results])
    arrays = {**{f: np.concatenate([r[f] for r in results]) for f in (_SAMPLE_FIELDS if v2 else _PARTICLE_FIELDS)},
              "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)}
    arrays["is_pv"] = arrays["is_pv"].astype(np.int8)
    pair = {}
    if paired:
        nopu = [r["nopu"] for r in results]
        pair = {f"nopu_{f}": np.concatenate([c[f] for c in nopu]) for f in NOPU_FIELDS}
        pair["nopu_offsets"] = np.concatenate([[0], np.cumsum(np.concatenate([c["counts"] for c in nopu]))]).astype(np.int64)
    return arrays, pair, (SCHEMA_2 if v2 else SCHEMA)


def _plan(n_train: int, n_test: int, train_pileup: float, test_pileups, n_distill: int = 0,
          distill_pileups=()) -> list[tuple[str, float, str, int]]:
    """(process, mu, role, n_events) blocks: training events at train_pileup, n_distill at each distillation pileup,
    n_test at each test pileup."""
    roles = [("train", train_pileup, n_train), *(("distill", m, n_distill) for m in distill_pileups),
             *(("test", m, n_test) for m in test_pileups)]
    blocks = []
    for role, mu, total in roles:
        for i, process in enumerate(PROCESSES):
            blocks.append((process, float(mu), role, total // len(PROCESSES) + (i < total % len(PROCESSES))))
    return blocks


def generate_pileup(out: pathlib.Path, n_train: int, n_test: int, seed: int = 1, train_pileup: float = 60.0,
                    test_pileups=(60.0, 200.0), workers: int = 2, hard_mpi: bool = True,
                    library_events: int = LIBRARY_EVENTS, n_distill: int = 0, distill_pileups=(),
                    progress: bool = True, executor: concurrent.futures.Executor | None = None,
                    calorimeter: str = "particles", paired: bool = False) -> dict:
    """Write n_train crossings at train_pileup and n_distill at each of distill_pileups (all split TRAIN_VAL into
    train/val), and n_test test crossings at each test pileup, shared equally by PROCESSES, as candidates with
    truth. The distillation crossings let a student learn the teacher's weights at other pileups (the teacher
    labels them; their truth is not needed). Chunks run on `executor` (l1forge.core.executors, e.g. a Dask cluster's,
    which receives the library once per worker) or, if None, on `workers` local processes; the output is
    byte-identical whatever the executor and worker count. `calorimeter` ("merged" or "particles", ``candidates``)
    forms the neutral candidates; `paired` also stores each crossing's hard interaction alone through the same
    detector (datasets nopu_*, PILEUP.md). Particles without a pair write schema 1 exactly as before."""
    if calorimeter not in CALORIMETERS:
        raise ValueError(f"calorimeter must be one of {CALORIMETERS}, not {calorimeter!r}")
    n_train, n_test, seed, workers = int(n_train), int(n_test), int(seed), int(workers)
    test_pileups, distill_pileups = [float(m) for m in test_pileups], [float(m) for m in distill_pileups]
    if n_train < 2 * len(PROCESSES) or n_test < len(PROCESSES):
        raise ValueError(f"need n_train >= {2 * len(PROCESSES)} and n_test >= {len(PROCESSES)} (every process)")
    if workers < 1 or library_events < 1 or not test_pileups or (distill_pileups and n_distill < len(PROCESSES)):
        raise ValueError(f"workers and library_events must be >= 1, test_pileups non-empty, n_distill >= "
                         f"{len(PROCESSES)} with distill_pileups")
    for mu in (train_pileup, *test_pileups, *distill_pileups):
        if not (math.isfinite(mu) and mu >= 0):
            raise ValueError(f"pileup must be a number >= 0, not {mu}")
    start = time.perf_counter()
    library = build_pileup_library(library_events, seed, workers, progress=progress, executor=executor)
    library_seconds = time.perf_counter() - start
    common = [*COMMON_SETTINGS, f"PartonLevel:MPI = {'on' if hard_mpi else 'off'}"]
    blocks = _plan(n_train, n_test, train_pileup, test_pileups, int(n_distill), distill_pileups)
    tasks = [(process, [*common, *PROCESSES[process]], min(CHUNK_EVENTS, n - first), seed, f"{process}_{role}_pu{mu:g}",
              k, mu) for process, mu, role, n in blocks for k, first in enumerate(range(0, n, CHUNK_EVENTS))]
    results = run_chunks(_chunk, tasks, [t[2] for t in tasks], workers, "crossings", progress, executor,
                         shared={"library": library, "calorimeter": calorimeter, "paired": bool(paired)})
    names = list(PROCESSES)
    process = np.concatenate([np.full(t[2], names.index(t[0]), np.int16) for t in tasks])
    pileup = np.concatenate([np.full(t[2], t[6], np.float32) for t in tasks])
    is_test = np.concatenate([np.full(t[2], "_test_" in t[4]) for t in tasks])
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(b"split")]))
    split = np.where(is_test, 2, (rng.random(len(is_test)) >= TRAIN_VAL[0]).astype(np.int8)).astype(np.int8)
    counts = np.concatenate([r["counts"] for r in results])
    arrays, pair, schema = stored_arrays(results, calorimeter, paired)
    arrays = {**arrays, "process": process, "pileup": pileup, "split": split,
              **{f: np.concatenate([r[f] for r in results]) for f in ("n_pileup", "true_met", "truth_jets")}, **pair}
    sigma = {p: float(np.mean([r["sigma_mb"] for r, t in zip(results, tasks) if t[0] == p])) for p in names}
    definition = {"ETA_MAX": ETA_MAX, "PT_MIN": PT_MIN, "CALO_TRUE_PT_MIN": CALO_TRUE_PT_MIN, "TRACK_PT_MIN": TRACK_PT_MIN, "TRACK_ETA_MAX": TRACK_ETA_MAX,
                  "LUMINOUS_SIGMA_Z_CM": LUMINOUS_SIGMA_Z_CM, "DZ_RESOLUTION": DZ_RESOLUTION,
                  "CALO_RESOLUTION": CALO_RESOLUTION, "TYPE_NAMES": TYPE_NAMES, "JET_R": JET_R,
                  "TRUTH_JET_PT_MIN": TRUTH_JET_PT_MIN, "MAX_JETS": MAX_JETS, "INVISIBLE": INVISIBLE}
    if schema == SCHEMA_2:
        definition.update(calorimeter_definition(calorimeter))
    attrs = {"schema": schema, "seed": seed, "sqrt_s_gev": SQRT_S_GEV, "process_names": names,
             "train_pileup": float(train_pileup), "test_pileups": test_pileups, "distill_pileups": distill_pileups,
             "cross_section_mb": json.dumps(sigma), "sigma_inel_mb": library["sigma_inel_mb"],
             "settings": json.dumps({"pythia": {p: [*common, *s] for p, s in PROCESSES.items()}, "hard_mpi": hard_mpi,
                                     "library_events": int(library_events), "chunk_events": CHUNK_EVENTS,
                                     "candidates": definition}),
             "generator": f"pythia8mc {importlib.metadata.version('pythia8mc')}",
             "l1forge_version": importlib.metadata.version("l1forge")}
    if schema == SCHEMA_2:
        attrs.update(calorimeter=calorimeter, paired=int(bool(paired)))
    write_h5(out, arrays, attrs)
    seconds = time.perf_counter() - start
    n_events = len(process)
    per_pileup = {f"{m:g}": float(counts[pileup == m].mean()) for m in sorted(set(pileup.tolist()))}
    return {"n_events": n_events, "n_candidates": int(counts.sum()), "candidates_per_event": per_pileup,
            "calorimeter": calorimeter, "paired": bool(paired), "cross_section_mb": sigma, "seconds": seconds, "events_per_s": n_events / seconds,
            "library_seconds": library_seconds, "path": pathlib.Path(out)}


# ---- reading ----------------------------------------------------------------------------------------------------
_EVENT_DATASETS = {"process": ((), "iu"), "pileup": ((), "f"), "n_pileup": ((), "iu"), "split": ((), "iu"),
                   "true_met": ((2,), "f"), "truth_jets": ((MAX_JETS, 4), "f")}
_PARTICLE_KINDS = {"pt": "f", "eta": "f", "phi": "f", "dz": "f", "charge": "iu", "type": "iu", "is_pv": "iub"}


def _read(f, path, name, shape, kind, n):
    ds = checked_dataset(f, path, name, shape, n, "offsets")
    if ds.dtype.kind not in kind:
        fail(path, f"dataset '{name}' has dtype {ds.dtype}, expected kind {kind!r}")
    data = ds[()]
    if ds.dtype.kind == "f" and not np.all(np.isfinite(data)):
        bad = ~np.isfinite(data.reshape(len(data), -1)).all(axis=1)
        fail(path, f"dataset '{name}' has {int(bad.sum())} row(s) with NaN/Inf values (first at row {int(np.argmax(bad))})")
    return data


def read_pileup(path, schema: str = SCHEMA) -> PileupSample:
    """Read and validate an l1forge.pileup/1 or /2 file (or a superset of it with the given `schema` name, such as
    events/crossings.py's; any version 1 or 2 of that name); DataError (one line naming file and dataset) otherwise.
    Version 2 adds pv_fraction and, where attribute 'paired' is set, the paired sample (``PileupSample.nopu``)."""
    path = pathlib.Path(path)
    name = schema.rsplit("/", 1)[0]
    with open_h5(path) as f:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        if attrs.get("schema") not in (f"{name}/1", f"{name}/2"):
            fail(path, f"attribute 'schema' is {attrs.get('schema')!r}, expected {name + '/1'!r} or {name + '/2'!r}")
        v2 = attrs["schema"].endswith("/2")
        offsets = _read(f, path, "offsets", (), "iu", None).astype(np.int64)
        n_events = len(offsets) - 1
        if n_events < 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            fail(path, "dataset 'offsets' must start at 0 and never decrease")
        particles = {k: _read(f, path, k, (), kind, int(offsets[-1])) for k, kind in _PARTICLE_KINDS.items()}
        events = {k: _read(f, path, k, shape, kind, n_events) for k, (shape, kind) in _EVENT_DATASETS.items()}
        fraction = _read(f, path, "pv_fraction", (), "f", int(offsets[-1])).astype(np.float32) if v2 else None
        nopu = _read_nopu(f, path, n_events) if v2 and attrs.get("paired") else None
    if fraction is not None and np.any((fraction < 0) | (fraction > 1)):
        fail(path, "dataset 'pv_fraction' has values outside [0, 1]")
    names = [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(attrs.get("process_names", []))]
    if np.any((events["process"] < 0) | (events["process"] >= len(names))):
        fail(path, f"dataset 'process' has values outside 0..{len(names) - 1} (attribute 'process_names')")
    if np.any(~np.isin(events["split"], (0, 1, 2))):
        fail(path, "dataset 'split' has values outside {0, 1, 2}")
    if np.any((particles["type"] < 0) | (particles["type"] >= len(TYPE_NAMES))):
        fail(path, f"dataset 'type' has values outside 0..{len(TYPE_NAMES) - 1}")
    return PileupSample(
        path=path, pt=particles["pt"].astype(np.float32), eta=particles["eta"].astype(np.float32),
        phi=wrap_phi(particles["phi"].astype(np.float32)).astype(np.float32), dz=particles["dz"].astype(np.float32),
        charge=particles["charge"].astype(np.int8), type=particles["type"].astype(np.int8),
        is_pv=particles["is_pv"].astype(bool), offsets=offsets, process=events["process"].astype(np.int16),
        process_names=names, pileup=events["pileup"].astype(np.float32), n_pileup=events["n_pileup"].astype(np.int16),
        split=events["split"].astype(np.int8), true_met=events["true_met"].astype(np.float32),
        truth_jets=events["truth_jets"].astype(np.float32), attrs=attrs, pv_fraction=fraction, nopu=nopu)


def _read_nopu(f, path, n_events: int) -> NoPileup:
    """The paired sample of a version-2 file (datasets nopu_offsets, nopu_<NOPU_FIELDS>)."""
    offsets = _read(f, path, "nopu_offsets", (), "iu", n_events + 1).astype(np.int64)
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        fail(path, "dataset 'nopu_offsets' must start at 0 and never decrease")
    data = {k: _read(f, path, f"nopu_{k}", (), "f" if k in ("pt", "eta", "phi") else "iu", int(offsets[-1]))
            for k in NOPU_FIELDS}
    return NoPileup(pt=data["pt"].astype(np.float32), eta=data["eta"].astype(np.float32),
                    phi=wrap_phi(data["phi"].astype(np.float32)).astype(np.float32),
                    charge=data["charge"].astype(np.int8), type=data["type"].astype(np.int8), offsets=offsets)


def require_paired(sample: PileupSample) -> NoPileup:
    """The paired sample, or DataError naming the file and saying to regenerate it with one."""
    if sample.nopu is None:
        fail(sample.path, "has no paired no-pileup events, which optimal_transport training needs: regenerate it "
                          "with the paired sample (pileup.paired: true, e.g. `l1forge generate --task pileup --force`)")
    return sample.nopu
