"""L1-like trigger objects in the ADC2021 layout (MET, 4 e/gamma, 4 muons, 10 jets; 19 x 4) from generator particles.

Coarse calorimeter towers (0.087 x 2pi/72, |eta| < 5) hold every visible particle but muons and neutrinos; towers are
smeared and zeroed below a threshold. The event's pileup density rho(eta) is the median over phi of 5 x 6-tower
patches. e/gamma candidates are the electron+photon content of one tower (with little hadronic energy behind it);
muons are single generator muons; both must be isolated (cone pT - rho x cone area). Jets are anti-kt R = 0.4 on the
towers, corrected by - rho x jet area; MET is minus the vector sum of towers and muons. ANOMALY.md states the numbers.
"""

import typing

import awkward as ak
import fastjet
import numpy as np

from l1forge.events.substructure import pt_eta_phi, wrap_phi

MET, EGAMMA, MUON, JET = 1, 2, 3, 4  # type codes of the ADC2021 files; 0 = padding
N_EGAMMA, N_MUONS, N_JETS = 4, 4, 10
FIRST_ROW = {MET: 0, EGAMMA: 1, MUON: 1 + N_EGAMMA, JET: 1 + N_EGAMMA + N_MUONS}
N_OBJECTS = 1 + N_EGAMMA + N_MUONS + N_JETS
ETA_CALO, N_ETA, N_PHI = 5.0, 115, 72
TOWER_ETA, TOWER_PHI = 2 * ETA_CALO / N_ETA, 2 * np.pi / N_PHI  # 0.0870 x 0.0873
ETA_CENTRES = -ETA_CALO + (np.arange(N_ETA) + 0.5) * TOWER_ETA
PHI_CENTRES = -np.pi + (np.arange(N_PHI) + 0.5) * TOWER_PHI
TOWER_THRESHOLD_GEV = np.where(np.abs(ETA_CENTRES) < 2.5, 0.5, 3.0)  # forward pileup would fill the jet slots
TOWER_RESOLUTION = (0.7, 0.05)  # sigma(pT) = a sqrt(pT/GeV) (+) b pT, in quadrature
EGAMMA_RESOLUTION = (0.15, 0.02)
MUON_RESOLUTION = 0.15  # sigma(pT) / pT
EGAMMA_ETA_MAX, MUON_ETA_MAX, JET_ETA_MAX = 3.0, 2.4, 4.0
EGAMMA_PT_MIN, MUON_PT_MIN, JET_PT_MIN = 3.0, 3.0, 15.0  # GeV, after smearing
JET_R = 0.4
ISO_CONE, ISO_MAX = 0.3, 0.5  # cone tower pT, own tower excluded, < ISO_MAX x object pT
RHO_PATCH = (5, 6)  # eta x phi towers per patch; rho = median over the 12 patches of a patch row, per tower
JET_AREA_TOWERS = np.pi * JET_R**2 / (TOWER_ETA * TOWER_PHI)  # 66 towers
HOE_MAX = 0.25  # e/gamma: hadronic / electromagnetic pT of its tower
INVISIBLE = (12, 14, 16, 1000022, 1000039)  # neutrinos, lightest neutralino, gravitino
_DI, _DJ = np.meshgrid(np.arange(-4, 5), np.arange(-4, 5), indexing="ij")
_RING = ((_DI * TOWER_ETA) ** 2 + (_DJ * TOWER_PHI) ** 2 <= ISO_CONE**2) & ((_DI != 0) | (_DJ != 0))
RING_DETA, RING_DPHI = _DI[_RING], _DJ[_RING]  # towers of the isolation cone, the object's own tower excluded
_JETDEF = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_R)


class Particles(typing.NamedTuple):
    """Flat final-state particles of n_events events: momenta (GeV), PDG id, and the event each belongs to."""

    px: np.ndarray  # float32
    py: np.ndarray
    pz: np.ndarray
    pid: np.ndarray  # int32
    event: np.ndarray  # int64, 0..n_events-1, any order
    n_events: int


def concat_particles(parts: list[Particles], n_events: int) -> Particles:
    """Concatenate particle lists whose `event` already index the same n_events events."""
    return Particles(*(np.concatenate([getattr(p, f) for p in parts]) for f in Particles._fields[:5]), n_events)


def _smear(pt, stochastic, constant, rng):
    if rng is None:
        return pt
    return pt + rng.standard_normal(len(pt)) * np.sqrt(stochastic**2 * np.abs(pt) + (constant * pt) ** 2)


def _tower_index(eta, phi):
    return (np.clip(((eta + ETA_CALO) / TOWER_ETA).astype(np.int64), 0, N_ETA - 1),
            ((phi + np.pi) / TOWER_PHI).astype(np.int64) % N_PHI)


def _grid(event, eta, phi, pt, n_events):
    """(n_events, N_ETA, N_PHI) sum of pT per tower."""
    ieta, iphi = _tower_index(eta, phi)
    flat = (event * N_ETA + ieta) * N_PHI + iphi
    return np.bincount(flat, weights=pt, minlength=n_events * N_ETA * N_PHI).reshape(n_events, N_ETA, N_PHI)


def _rho(towers):
    """(n_events, N_ETA) pileup pT per tower: median over phi of the patch sums of each patch row."""
    (de, dp), n = RHO_PATCH, len(towers)
    patches = towers.reshape(n, N_ETA // de, de, N_PHI // dp, dp).sum(axis=(2, 4))
    return np.repeat(np.median(patches, axis=2) / (de * dp), de, axis=1)


def _isolation(towers, rho, event, eta, phi):
    """Tower pT in the cone around each object, its own tower excluded, minus rho x the cone's towers."""
    ieta, iphi = _tower_index(eta, phi)
    ie, ip = ieta[:, None] + RING_DETA, (iphi[:, None] + RING_DPHI) % N_PHI
    inside = (ie >= 0) & (ie < N_ETA)
    cone = np.where(inside, towers[event[:, None], np.clip(ie, 0, N_ETA - 1), ip], 0.0).sum(axis=1)
    return cone - (rho[event[:, None], np.clip(ie, 0, N_ETA - 1)] * inside).sum(axis=1)


def _fill(out, kind, event, pt, eta, phi, n_max):
    """Write the n_max highest-pT objects of each event into the rows of `kind`."""
    order = np.lexsort((-pt, event))
    event, pt, eta, phi = event[order], pt[order], eta[order], phi[order]
    rank = np.arange(len(event)) - np.searchsorted(event, event)
    keep = rank < n_max
    out[event[keep], FIRST_ROW[kind] + rank[keep]] = np.stack(
        [pt[keep], eta[keep], phi[keep], np.full(keep.sum(), kind)], axis=1)


def l1_objects(particles: Particles, rng: np.random.Generator | None = None) -> np.ndarray:
    """(n_events, 19, 4) float32 [pT, eta, phi, type] per event, ADC2021 layout; rng=None switches smearing off."""
    n = particles.n_events
    pt, eta, phi = pt_eta_phi(*(a.astype(np.float64) for a in (particles.px, particles.py, particles.pz)))
    apid, event = np.abs(particles.pid), particles.event
    calo = ~np.isin(apid, INVISIBLE) & (apid != 13) & (np.abs(eta) < ETA_CALO)
    em = calo & ((apid == 11) | (apid == 22))
    em_towers = _grid(event[em], eta[em], phi[em], pt[em], n)
    had_towers = _grid(event[calo & ~em], eta[calo & ~em], phi[calo & ~em], pt[calo & ~em], n)
    towers = em_towers + had_towers
    hit = towers > 0
    towers[hit] = _smear(towers[hit], *TOWER_RESOLUTION, rng)
    towers = np.where(towers >= TOWER_THRESHOLD_GEV[None, :, None], towers, 0.0)
    rho = _rho(towers)
    out = np.zeros((n, N_OBJECTS, 4))

    ev, ie, ip = np.nonzero(em_towers * (np.abs(ETA_CENTRES) < EGAMMA_ETA_MAX)[None, :, None])
    e_pt = _smear(em_towers[ev, ie, ip], *EGAMMA_RESOLUTION, rng)
    e_eta, e_phi = ETA_CENTRES[ie], PHI_CENTRES[ip]
    ok = (e_pt > EGAMMA_PT_MIN) & (had_towers[ev, ie, ip] < HOE_MAX * em_towers[ev, ie, ip])
    ok[ok] = _isolation(towers, rho, ev[ok], e_eta[ok], e_phi[ok]) < ISO_MAX * e_pt[ok]
    _fill(out, EGAMMA, ev[ok], e_pt[ok], e_eta[ok], e_phi[ok], N_EGAMMA)

    mu = np.flatnonzero((apid == 13) & (np.abs(eta) < MUON_ETA_MAX))
    m_pt = pt[mu] if rng is None else pt[mu] * (1 + MUON_RESOLUTION * rng.standard_normal(len(mu)))
    mu, m_pt = mu[m_pt > MUON_PT_MIN], m_pt[m_pt > MUON_PT_MIN]
    iso = _isolation(towers, rho, event[mu], eta[mu], phi[mu]) < ISO_MAX * m_pt
    _fill(out, MUON, event[mu][iso], m_pt[iso], eta[mu][iso], phi[mu][iso], N_MUONS)

    ev, ie, ip = np.nonzero(towers)
    t_pt = towers[ev, ie, ip]
    t_px, t_py = t_pt * np.cos(PHI_CENTRES[ip]), t_pt * np.sin(PHI_CENTRES[ip])
    vectors = ak.zip({"px": t_px, "py": t_py, "pz": t_pt * np.sinh(ETA_CENTRES[ie]),
                      "E": t_pt * np.cosh(ETA_CENTRES[ie])})
    jets = fastjet.ClusterSequence(ak.unflatten(vectors, np.bincount(ev, minlength=n)), _JETDEF).inclusive_jets(
        min_pt=JET_PT_MIN)
    j_ev = np.repeat(np.arange(n), ak.to_numpy(ak.num(jets)))
    j_pt, j_eta, j_phi = pt_eta_phi(*(ak.to_numpy(ak.flatten(jets[f])) for f in ("px", "py", "pz")))
    j_pt = j_pt - rho[j_ev, _tower_index(j_eta, j_phi)[0]] * JET_AREA_TOWERS
    ok = (np.abs(j_eta) < JET_ETA_MAX) & (j_pt > JET_PT_MIN)
    _fill(out, JET, j_ev[ok], j_pt[ok], j_eta[ok], j_phi[ok], N_JETS)

    # MET: all towers and every accepted muon, isolated or not
    mx = np.bincount(ev, t_px, n) + np.bincount(event[mu], m_pt * np.cos(phi[mu]), n)
    my = np.bincount(ev, t_py, n) + np.bincount(event[mu], m_pt * np.sin(phi[mu]), n)
    met = np.hypot(mx, my)
    met_phi = np.where(met > 0, wrap_phi(np.arctan2(-my, -mx)), 0.0)
    out[:, 0] = np.stack([met, np.zeros(n), met_phi, np.full(n, MET)], axis=1)
    return out.astype(np.float32)


def true_met(particles: Particles) -> np.ndarray:
    """(n_events,) float32 magnitude of the vector pT sum of invisible particles (neutrinos, INVISIBLE)."""
    inv = np.isin(np.abs(particles.pid), INVISIBLE)
    ev, n = particles.event[inv], particles.n_events
    return np.hypot(np.bincount(ev, particles.px[inv], n), np.bincount(ev, particles.py[inv], n)).astype(np.float32)
