"""The 16 high-level jet substructure features, computed in batches with numpy and fastjet."""

import warnings

import awkward as ak
import fastjet
import numpy as np

R0 = 0.8
MMDT_ZCUT = 0.1
FEATURE_NAMES = (
    "mass", "mass_mmdt", "multiplicity", "tau1_b1", "tau21_b1", "tau32_b1",
    "c1_b1", "c1_b2", "c2_b1", "c2_b2", "d2_b1", "d2_b2",
    "ptd", "zlogz", "girth", "lead_pt_frac",
)
# R far above any constituent separation, so exclusive clustering merges everything pairwise.
_RECLUSTER_R = 10.0


def wrap_phi(phi):
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(phi) + np.pi) % (2 * np.pi) - np.pi


def pt_eta_phi(px, py, pz):
    """Transverse momentum, pseudorapidity and azimuth in [-pi, pi) from momentum components."""
    pt = np.hypot(px, py)
    return pt, np.arcsinh(pz / np.where(pt > 0, pt, 1e-12)), wrap_phi(np.arctan2(py, px))


def padded_kinematics(constituents: ak.Array):
    """Zero-padded (J, n_max) pt, eta, phi, E of jagged px, py, pz, E constituents (padding has pt = 0)."""
    n_max = int(ak.max(ak.num(constituents)))
    px, py, pz, e = (ak.to_numpy(ak.fill_none(ak.pad_none(constituents[f], n_max, axis=1), 0.0))
                     for f in ("px", "py", "pz", "E"))
    return (*pt_eta_phi(px, py, pz), e)


def _exclusive_axes(cs, n):
    """(eta, phi) of the n exclusive subjets of every jet, each (J, n)."""
    with warnings.catch_warnings():  # fastjet warns for every jet definition object, even kt
        warnings.filterwarnings("ignore", "dcut and exclusive jets", UserWarning)
        sub = cs.exclusive_jets(n_jets=n, dcut=-1)
    px, py, pz = (ak.to_numpy(sub[f]).reshape(-1, n) for f in ("px", "py", "pz"))
    _, eta, phi = pt_eta_phi(px, py, pz)
    return eta, phi


def _safe_ratio(num, den):
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _ecf(z, dr, beta):
    """Normalized energy correlation functions e2, e3 (angular exponent beta) of padded jets."""
    m = dr**beta
    mz = m * z[:, None, :]
    e2 = 0.5 * np.einsum("ji,jik,jk->j", z, m, z)
    e3 = np.einsum("ji,jk,jik,jik->j", z, z, m, mz @ m) / 6.0
    return e2, e3


def jet_features(constituents: ak.Array, jet_eta, jet_phi, jet_mass) -> np.ndarray:
    """(J, 16) features of J jets; `constituents` is a jagged (J, var) record array of px, py, pz, E."""
    n = ak.to_numpy(ak.num(constituents)).astype(np.float64)
    pt, eta, phi, _ = padded_kinematics(constituents)
    z = pt / pt.sum(axis=1, keepdims=True)

    deta = eta - jet_eta[:, None]
    dphi = wrap_phi(phi - jet_phi[:, None])
    dr_jet = np.hypot(deta, dphi)
    dr = np.hypot(eta[:, :, None] - eta[:, None, :], wrap_phi(phi[:, :, None] - phi[:, None, :]))

    kt_wta = fastjet.JetDefinition(fastjet.kt_algorithm, _RECLUSTER_R, fastjet.WTA_pt_scheme)
    kt = fastjet.ClusterSequence(constituents, kt_wta)
    tau = []
    for n_axes in (1, 2, 3):
        ax_eta, ax_phi = _exclusive_axes(kt, n_axes)
        d = np.hypot(eta[:, :, None] - ax_eta[:, None, :], wrap_phi(phi[:, :, None] - ax_phi[:, None, :]))
        tau.append((z * d.min(axis=2)).sum(axis=1) / R0)
    ca = fastjet.ClusterSequence(constituents, fastjet.JetDefinition(fastjet.cambridge_algorithm, _RECLUSTER_R))
    mass_mmdt = ak.to_numpy(ca.exclusive_jets_softdrop_grooming(beta=0.0, symmetry_cut=MMDT_ZCUT, R0=R0).msoftdrop)

    e2_b1, e3_b1 = _ecf(z, dr, 1.0)
    e2_b2, e3_b2 = _ecf(z, dr, 2.0)
    zlogz = np.where(z > 0, z * np.log(np.where(z > 0, z, 1.0)), 0.0).sum(axis=1)
    return np.stack([
        jet_mass, mass_mmdt, n, tau[0], _safe_ratio(tau[1], tau[0]), _safe_ratio(tau[2], tau[1]),
        e2_b1, e2_b2, _safe_ratio(e3_b1, e2_b1**2), _safe_ratio(e3_b2, e2_b2**2),
        _safe_ratio(e3_b1, e2_b1**3), _safe_ratio(e3_b2, e2_b2**3),
        np.sqrt((pt**2).sum(axis=1)) / pt.sum(axis=1), zlogz, (z * dr_jet).sum(axis=1), z.max(axis=1),
    ], axis=1)
