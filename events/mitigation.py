"""Classic pileup mitigation on L1 candidates (events/pfcands.py), and the eta-phi neighbourhood sums they share
with the per-particle student.

* none: every candidate weight 1.
* CHS (charged-hadron subtraction): tracks with |dz| >= DZ_CUT_CM are pileup (weight 0); the rest keep weight 1.
* PUPPI-like (Bertolini, Harris, Low, Tran, JHEP 10 (2014) 059, arXiv:1407.6013): for each candidate i,
  alpha_i = log sum_j (pT_j / dR_ij)^2 over R_MIN < dR_ij < R0, where j runs over PV tracks (|dz| < DZ_CUT_CM) for
  candidates inside the tracker (|eta| < TRACK_ETA_MAX) and over all candidates outside it. In each crossing the
  pileup alpha distribution is that of the pileup tracks (|dz| >= DZ_CUT_CM) inside the tracker and of all
  candidates outside; with its median m and left-side RMS s (RMS of the values below m, about m),
  chi2_i = (alpha_i - m)^2 / s^2 if alpha_i > m else 0, and w_i = F_chi2(chi2_i; 1 d.o.f.). Tracks keep their CHS
  weight; neutral weights below W_CUT are set to 0, and so are neutrals whose weighted pT w_i pT_i is below
  NEUTRAL_PT_CUT = a + b N_PV (inside, outside the tracker; the CMS Run-2 PUPPI values), N_PV being the number of
  interactions in the crossing (offline PUPPI counts reconstructed vertices). Neighbourless candidates get
  alpha = -inf (weight 0).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import chi2

from l1forge.events.pfcands import ETA_MAX, TRACK_ETA_MAX

DZ_CUT_CM = 0.5
R0, R_MIN = 0.4, 0.01
W_CUT = 0.1
NEUTRAL_PT_CUT = {"central": (0.2, 0.015), "forward": (1.7, 0.08)}  # GeV: a + b N_PV
CHUNK_EVENTS = 200  # events per neighbour search (bounds memory at pileup 200)
NEIGHBOUR_SUMS = ("pv_tracks", "pu_tracks", "neutrals")  # what local_sums adds up around each candidate


def neighbour_pairs(event: np.ndarray, eta: np.ndarray, phi: np.ndarray, radius: float):
    """Yield, per block of CHUNK_EVENTS events, all ordered pairs (i, j), i != j, of candidates of the same event
    closer than `radius` in (eta, phi), phi periodic, with their distance dR. Rows must be grouped by event (as in
    PileupSample); consumers accumulate per block, so memory stays bounded at any pileup."""
    event = np.asarray(event)
    bounds = np.searchsorted(event, np.arange(0, int(event.max(initial=0)) + 1 + CHUNK_EVENTS, CHUNK_EVENTS))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi <= lo:
            continue
        ev = event[lo:hi] - event[lo]
        # events sit 100 units apart in eta (|eta| < 5), so no pair crosses events; phi lives on a circle
        points = np.stack([eta[lo:hi] + 100.0 * ev + 10.0, np.mod(phi[lo:hi] + np.pi, 2 * np.pi)], 1)
        box = [100.0 * (ev[-1] + 1) + 20.0, 2 * np.pi]
        pairs = cKDTree(np.minimum(points, np.nextafter(np.array(box), 0)), boxsize=box).query_pairs(
            radius, output_type="ndarray")
        i, j = pairs[:, 0] + lo, pairs[:, 1] + lo
        dphi = np.mod(phi[i] - phi[j] + np.pi, 2 * np.pi) - np.pi
        dr = np.hypot(eta[i].astype(np.float64) - eta[j], dphi)
        yield np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([dr, dr])


def pv_track(sample) -> np.ndarray:
    """Tracks compatible with the primary vertex (|dz| < DZ_CUT_CM)."""
    return sample.has_track & (np.abs(sample.dz) < DZ_CUT_CM)


def region_index(eta: np.ndarray, phi: np.ndarray, n_eta: int, n_phi: int) -> np.ndarray:
    """Region of each candidate: n_eta equal bands over |eta| < ETA_MAX times n_phi equal phi sectors, numbered
    eta band * n_phi + phi sector."""
    band = np.clip(((np.asarray(eta) + ETA_MAX) / (2 * ETA_MAX) * n_eta).astype(np.int64), 0, n_eta - 1)
    sector = np.clip(((np.asarray(phi) + np.pi) / (2 * np.pi) * n_phi).astype(np.int64), 0, n_phi - 1)
    return band * n_phi + sector


def regional_cap(sample, n_eta: int, n_phi: int, cap: int) -> np.ndarray:
    """(n_particles,) bool: the `cap` highest-pT candidates of each region (``region_index``) of each crossing, as
    L1 firmware that reads a fixed number of candidates per region sees them; the rest are dropped."""
    key = sample.event * (n_eta * n_phi) + region_index(sample.eta, sample.phi, n_eta, n_phi)
    order = np.lexsort((-sample.pt, key))
    rank = np.empty(len(key), np.int64)
    rank[order] = np.arange(len(key)) - np.searchsorted(key[order], key[order])
    return rank < cap


def candidates_p99(sample, kept: np.ndarray) -> dict[str, float]:
    """Per pileup ('60', '200', ...): the 99th percentile over crossings of the candidates in `kept` ((n_particles,)
    bool mask), the number a firmware that reads them must serve per crossing."""
    counts = np.bincount(sample.event[kept], minlength=sample.n_events)
    return {f"{m:g}": float(np.percentile(counts[sample.pileup == m], 99)) for m in np.unique(sample.pileup)}


def chs_weights(sample) -> np.ndarray:
    """1 for PV-compatible tracks and every neutral candidate, 0 for pileup tracks."""
    return (~sample.has_track | pv_track(sample)).astype(np.float32)


def _left_rms(values: np.ndarray, median: float) -> float:
    below = values[values <= median]
    return float(np.sqrt(np.mean((below - median) ** 2))) if len(below) > 1 else 0.0


def puppi_weights(sample) -> np.ndarray:
    """PUPPI-like weight per candidate (module docstring)."""
    n = len(sample.pt)
    event, central, pv, track = sample.event, np.abs(sample.eta) < TRACK_ETA_MAX, pv_track(sample), sample.has_track
    xi = np.zeros(n)
    for i, j, dr in neighbour_pairs(event, sample.eta, sample.phi, R0):
        use = (dr > R_MIN) & np.where(central[i], pv[j], True)
        xi += np.bincount(i[use], (sample.pt[j[use]] / dr[use]) ** 2, minlength=n)
    with np.errstate(divide="ignore"):
        alpha = np.log(xi)
    reference = np.where(central, track & ~pv, True) & np.isfinite(alpha)  # pileup-like alpha values
    weight = np.zeros(n)
    for e in range(sample.n_events):
        lo, hi = sample.offsets[e], sample.offsets[e + 1]
        for region in (central[lo:hi], ~central[lo:hi]):
            ref = alpha[lo:hi][region & reference[lo:hi]]
            if len(ref) < 2:
                continue
            median = float(np.median(ref))
            rms = _left_rms(ref, median)
            a = alpha[lo:hi][region]
            x2 = np.where(a > median, (a - median) ** 2 / max(rms, 1e-6) ** 2, 0.0)
            weight[lo:hi][region] = chi2.cdf(x2, 1)
    n_pv = np.repeat(sample.n_pileup.astype(np.float64) + 1, np.diff(sample.offsets))
    (ca, cb), (fa, fb) = NEUTRAL_PT_CUT["central"], NEUTRAL_PT_CUT["forward"]
    pt_cut = np.where(central, ca + cb * n_pv, fa + fb * n_pv)
    weight = np.where((weight < W_CUT) | (weight * sample.pt < pt_cut), 0.0, weight)
    return np.where(track, pv, weight).astype(np.float32)


def local_sums(sample, radius: float) -> np.ndarray:
    """(n_particles, 3) pT sums within `radius` of each candidate (itself excluded) of NEIGHBOUR_SUMS: PV tracks,
    pileup tracks, neutral candidates. Plain adder trees over a fixed eta-phi window: firmware-computable."""
    pv, track = pv_track(sample), sample.has_track
    groups = (pv, track & ~pv, ~track)
    sums = np.zeros((len(sample.pt), len(groups)))
    for i, j, _ in neighbour_pairs(sample.event, sample.eta, sample.phi, radius):
        for column, group in enumerate(groups):
            use = group[j]
            sums[:, column] += np.bincount(i[use], sample.pt[j[use]], minlength=len(sample.pt))
    return sums.astype(np.float32)
