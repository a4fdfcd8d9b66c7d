"""Bit-accurate emulation of L1 object building from weighted particle-flow candidates: the algorithm between the
pileup student and the anomaly student of the chain task.

Inputs per candidate are fixed-point words (CMS Phase-2 correlator formats, cmssw ``DataFormats/L1TParticleFlow``
``datatypes.h``, namespace ``l1ct``): pT ``ap_ufixed<14,12,AP_TRN,AP_SAT>`` (LSB 0.25 GeV), global eta ``ap_int<12>``
and phi ``ap_int<11>`` (LSB pi/720), and the candidate's weight ``ap_ufixed<9,1,AP_TRN,AP_SAT>`` (LSB 1/256; 1.0 is
256). Integer arithmetic throughout:

* weighted pT: ``(pt * w) >> 8`` (truncated; LSB 0.25 GeV);
* MET: px, py = sum of weighted pT times cos/sin of phi from a table of ``TRIG_BITS``-fractional-bit values (rounded),
  each sum truncated by ``TRIG_BITS``; MET = floor(sqrt(px^2 + py^2)) and its phi = atan2(-py, -px) rounded to the phi
  LSB (what a CORDIC with enough iterations gives; its latency is counted below);
* e/gamma (electron and photon candidates, |eta| < EGAMMA_ETA_MAX) and muons: the N_EGAMMA (N_MUONS) highest weighted pT
  above OBJECT_PT_MIN;
* jets: seeded cone (the CMS Phase-2 L1 "SC4" algorithm): up to N_JETS times, the highest remaining weighted pT above
  SEED_PT_MIN seeds a jet that takes every remaining candidate within dR < JET_R (deta^2 + dphi^2 < R2 in LSB units,
  phi wrapped), jet axis = seed; jets with pT > JET_PT_MIN and |eta| < JET_ETA_MAX are kept.

The output is the ADC2021 layout of events/l1objects.py, (N, 19, 4) float32 [pT GeV, eta, phi, type] (type 1 MET,
2 e/gamma, 3 muon, 4 jet, 0 padding), every value an exact multiple of its LSB.

Latency (an estimate, not a measurement: no RTL is written for this block): ``latency_estimate`` counts pipeline
stages at one adder or comparator level per cycle (the pileup student's own RTL meets 240 MHz with one 2-input
adder level per stage): 1 cycle weighting; MET: 1 table, ceil(log2 n) adder levels for px/py, SQRT_ATAN_CYCLES for
the CORDIC; jets: N_JETS sequential seeded-cone steps of ceil(log2 n) comparator levels (argmax over the free
candidates) and 2 cycles for the distance test that frees the next step's candidates. A jet's pT sum is not on that
chain (step i + 1 needs the members of jet i, not its pT): each sum is an adder tree of ceil(log2 n) levels beside
the later steps, so after the last step come its sum, 1 cycle for the jet pT and eta cuts and ceil(log2 N_JETS)
levels placing the kept jets in their slots. e/gamma and muon sorting run in parallel with the jets. Fully
pipelined (each jet step its own logic): II = 1.
"""

from __future__ import annotations

import math

import numpy as np

from l1forge.quantize.fixed import FixedType

ETAPHI_LSB = math.pi / 720  # rad, l1ct::Scales::ETAPHI_LSB
PT = FixedType.parse("ufixed<14,12,TRN,SAT>")  # GeV: l1ct::pt_t
ETA = FixedType.parse("fixed<12,12,RND,SAT>")  # LSB units: l1ct::glbeta_t
PHI = FixedType.parse("fixed<11,11,RND,SAT>")  # LSB units: l1ct::glbphi_t
WEIGHT = FixedType.parse("ufixed<9,1,TRN,SAT>")
TRIG_BITS = 10
SQRT_ATAN_CYCLES = 16
N_EGAMMA, N_MUONS, N_JETS = 4, 4, 10
EGAMMA_ETA_MAX, JET_ETA_MAX = 3.0, 4.0
OBJECT_PT_MIN, SEED_PT_MIN, JET_PT_MIN = 3.0, 5.0, 15.0  # GeV
JET_R = 0.4
R2 = round((JET_R / ETAPHI_LSB) ** 2)
N_PHI_CODES = 1440  # 2 pi / ETAPHI_LSB
_PHI_CODES = np.arange(-720, 720)
COS_TABLE = np.round(np.cos(_PHI_CODES * ETAPHI_LSB) * 2**TRIG_BITS).astype(np.int64)
SIN_TABLE = np.round(np.sin(_PHI_CODES * ETAPHI_LSB) * 2**TRIG_BITS).astype(np.int64)
CHUNK = 2000  # crossings per dense block


def encode(pt, eta, phi, weight) -> tuple[np.ndarray, ...]:
    """Float candidates (GeV, rad, weight in [0, 1]) -> int64 codes of the input words (module docstring); phi codes
    wrap into -720..719."""
    phi_code = np.mod(PHI.from_float(np.asarray(phi, np.float64) / ETAPHI_LSB) + 720, N_PHI_CODES) - 720  # pi -> -pi
    return (PT.from_float(np.asarray(pt, np.float64)), ETA.from_float(np.asarray(eta, np.float64) / ETAPHI_LSB),
            phi_code, WEIGHT.from_float(np.asarray(weight, np.float64)))


def _dense(offsets: np.ndarray, lo: int, hi: int, *columns):
    """Rows lo..hi-1 of flat per-candidate columns as (hi - lo, n_max) blocks, zero padded, and the padding mask."""
    counts = np.diff(offsets[lo : hi + 1])
    n_max = max(int(counts.max(initial=0)), 1)
    real = np.arange(n_max)[None, :] < counts[:, None]
    index = offsets[lo:hi, None] + np.arange(n_max)[None, :]
    return real, [np.where(real, c[np.minimum(index, len(c) - 1)], 0) if len(c) else np.zeros(real.shape, np.int64)
                  for c in columns]


def _top(out, row, wpt, eta, phi, ok, n, kind):
    """The n highest weighted pT among `ok` into out[:, row:row + n] (ties: the earlier candidate)."""
    score = np.where(ok, wpt, -1)
    order = np.argsort(-score, axis=1, kind="stable")[:, :n]
    take = np.take_along_axis(score, order, 1) > 0
    for column, values in enumerate((wpt, eta, phi)):
        out[:, row : row + order.shape[1], column] = np.where(take, np.take_along_axis(values, order, 1), 0)
    out[:, row : row + order.shape[1], 3] = np.where(take, kind, 0)


def build_objects(offsets: np.ndarray, pt, eta, phi, weight, egamma, muon) -> np.ndarray:
    """(n_events, 19, 4) float32 L1 objects of weighted candidates (module docstring).

    offsets (n_events + 1,) int64: crossing e owns candidates offsets[e]:offsets[e + 1]; pt (GeV), eta, phi (rad),
    weight (in [0, 1]) and the bool masks egamma (electron or photon) and muon, all (n_candidates,). The inputs are
    first encoded into their words (``encode``). ValueError when the shapes disagree.
    """
    offsets = np.asarray(offsets, np.int64)
    n = len(offsets) - 1
    columns = [np.asarray(a) for a in (pt, eta, phi, weight, egamma, muon)]
    if n < 0 or any(a.shape != (int(offsets[-1]),) for a in columns):
        raise ValueError(f"pt, eta, phi, weight, egamma and muon must all have shape ({int(offsets[-1])},)")
    pt_c, eta_c, phi_c, w_c = encode(*columns[:4])
    wpt_all = np.minimum((pt_c * w_c) >> (WEIGHT.width - WEIGHT.integer), PT.max_code)
    flags = columns[4].astype(np.int64) + 2 * columns[5].astype(np.int64)
    out = np.zeros((n, 19, 4), np.int64)
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        real, (wpt, e, p, f) = _dense(offsets, lo, hi, wpt_all, eta_c, phi_c, flags)
        block = out[lo:hi]
        px = np.sum(wpt * COS_TABLE[p + 720], axis=1) >> TRIG_BITS
        py = np.sum(wpt * SIN_TABLE[p + 720], axis=1) >> TRIG_BITS
        met = np.floor(np.sqrt((px * px + py * py).astype(np.float64))).astype(np.int64)
        met_phi = np.round(np.arctan2(-py, -px) / ETAPHI_LSB).astype(np.int64)
        block[:, 0] = np.stack([np.minimum(met, PT.max_code), np.zeros_like(met),
                                np.where(met > 0, np.where(met_phi == 720, -720, met_phi), 0), np.ones_like(met)], 1)
        pt_min, eg_eta = round(OBJECT_PT_MIN / PT.lsb), EGAMMA_ETA_MAX / ETAPHI_LSB
        _top(block, 1, wpt, e, p, real & (f & 1 > 0) & (np.abs(e) < eg_eta) & (wpt > pt_min), N_EGAMMA, 2)
        _top(block, 1 + N_EGAMMA, wpt, e, p, real & (f & 2 > 0) & (wpt > pt_min), N_MUONS, 3)
        block[:, 1 + N_EGAMMA + N_MUONS :] = _seeded_cone(real, wpt, e, p)
    scale = np.array([PT.lsb, ETAPHI_LSB, ETAPHI_LSB, 1.0])
    return (out * scale).astype(np.float32)


def _seeded_cone(real, wpt, eta, phi) -> np.ndarray:
    """(events, N_JETS, 4) int64 codes [pT, eta, phi, 4] of seeded-cone jets, by decreasing seed pT."""
    n = len(real)
    jets = np.zeros((n, N_JETS, 4), np.int64)
    free = real.copy()
    rows = np.arange(n)
    seed_min = round(SEED_PT_MIN / PT.lsb)
    slot = np.zeros(n, np.int64)
    for _ in range(N_JETS):
        seed = np.argmax(np.where(free, wpt, -1), axis=1)
        seeded = free[rows, seed] & (wpt[rows, seed] > seed_min)
        s_eta, s_phi = eta[rows, seed][:, None], phi[rows, seed][:, None]
        dphi = np.mod(phi - s_phi + N_PHI_CODES // 2, N_PHI_CODES) - N_PHI_CODES // 2
        member = free & seeded[:, None] & ((eta - s_eta) ** 2 + dphi**2 < R2)
        jet_pt = np.minimum(np.sum(np.where(member, wpt, 0), axis=1), PT.max_code)
        free &= ~member
        keep = seeded & (jet_pt > round(JET_PT_MIN / PT.lsb)) & (np.abs(s_eta[:, 0]) < JET_ETA_MAX / ETAPHI_LSB)
        target = np.minimum(slot, N_JETS - 1)
        values = np.stack([jet_pt, s_eta[:, 0], s_phi[:, 0], np.full(n, 4)], 1)
        jets[rows[keep], target[keep]] = values[keep]
        slot += keep
    return jets


def latency_estimate(n_candidates: int, clock_mhz: float) -> dict:
    """Estimated pipeline latency (cycles, ns) and II of ``build_objects`` for n_candidates per crossing (module
    docstring; an estimate: no RTL of this block is built)."""
    depth = max(math.ceil(math.log2(max(n_candidates, 2))), 1)
    met = 2 + depth + SQRT_ATAN_CYCLES
    jets = N_JETS * (depth + 2) + depth + 1 + math.ceil(math.log2(N_JETS))
    cycles = 1 + max(met, jets)
    return {"latency_cycles": cycles, "latency_ns": cycles * 1e3 / clock_mhz, "ii_cycles": 1, "clock_mhz": clock_mhz,
            "source": "estimate (emulation/objects.py: pipeline stages counted, no RTL)"}
