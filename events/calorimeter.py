"""An L1 calorimeter for the pileup task: the untracked deposits of every interaction of a crossing summed in trigger
towers, one ECAL and one HCAL layer, smeared per tower and thresholded (events/PILEUP.md, "Merged calorimeter").

Towers: N_ETA equal bins over |eta| < ETA_EDGE (0.0870 wide) times N_PHI = 72 phi sectors (2 pi / 72 = 0.0873): the
0.087 x 0.087 trigger tower of the CMS barrel L1 calorimeter trigger, which the Phase-2 endcap (HGCal trigger towers)
keeps (CMS-TDR-021, 2020). Deposits are transverse energies (pT of the particle, GeV); e/gamma deposit in ECAL,
hadrons in HCAL. A tower-layer with a smeared sum above threshold is one neutral candidate at the ET-weighted centroid
of its deposits (the finer cells inside a tower, ECAL crystals or HGCal trigger cells, measure it), and its truth is
the primary-vertex fraction of its unsmeared sum.
"""

from __future__ import annotations

import numpy as np

ETA_EDGE = 4.0
N_ETA, N_PHI = 92, 72
DETA, DPHI = 2 * ETA_EDGE / N_ETA, 2 * np.pi / N_PHI
ECAL, HCAL = 0, 1


def tower_index(eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ieta in 0..N_ETA-1, iphi in 0..N_PHI-1) int64 of each deposit; eta clipped to the edge, phi periodic."""
    ieta = np.clip(np.floor((np.asarray(eta, np.float64) + ETA_EDGE) / DETA).astype(np.int64), 0, N_ETA - 1)
    iphi = np.floor(np.mod(np.asarray(phi, np.float64) + np.pi, 2 * np.pi) / DPHI).astype(np.int64) % N_PHI
    return ieta, iphi


def tower_centre(ieta: np.ndarray, iphi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eta, phi) float64 of the centres of towers (ieta, iphi); phi in [-pi, pi)."""
    return -ETA_EDGE + (np.asarray(ieta) + 0.5) * DETA, -np.pi + (np.asarray(iphi) + 0.5) * DPHI


def merge_deposits(event: np.ndarray, layer: np.ndarray, eta: np.ndarray, phi: np.ndarray, et: np.ndarray,
                   from_pv: np.ndarray) -> dict[str, np.ndarray]:
    """Sum deposits (flat arrays: crossing, layer ECAL/HCAL, eta, phi, ET in GeV, from the primary interaction) in
    towers. Returns the hit tower-layers, ordered by (event, layer, ieta, iphi): "event", "layer", "ieta", "iphi"
    (int64), "et" (summed ET, float64, GeV), "pv_et" (its primary-vertex part), "eta" and "phi" (ET-weighted
    centroid, inside the tower) and "cell" ((n_deposits,) index of each deposit's tower-layer). Energy is
    conserved: et.sum() == the deposits' sum, per crossing and per layer."""
    ieta, iphi = tower_index(eta, phi)
    key = ((np.asarray(event, np.int64) * 2 + np.asarray(layer, np.int64)) * N_ETA + ieta) * N_PHI + iphi
    keys, cell = np.unique(key, return_inverse=True)
    et = np.asarray(et, np.float64)
    c_eta, c_phi = tower_centre(ieta, iphi)
    dphi = np.mod(np.asarray(phi, np.float64) - c_phi + np.pi, 2 * np.pi) - np.pi  # within the tower
    total = np.bincount(cell, et, len(keys))
    norm = np.where(total > 0, total, 1.0)
    ieta_c, iphi_c = keys // N_PHI % N_ETA, keys % N_PHI
    centre_eta, centre_phi = tower_centre(ieta_c, iphi_c)
    eta_c = np.where(total > 0, np.bincount(cell, et * np.asarray(eta, np.float64), len(keys)) / norm, centre_eta)
    phi_c = centre_phi + np.bincount(cell, et * dphi, len(keys)) / norm
    return {"event": keys // (2 * N_ETA * N_PHI), "layer": keys // (N_ETA * N_PHI) % 2, "ieta": ieta_c,
            "iphi": iphi_c, "et": total, "pv_et": np.bincount(cell, np.where(from_pv, et, 0.0), len(keys)),
            "eta": eta_c, "phi": np.mod(phi_c + np.pi, 2 * np.pi) - np.pi, "cell": cell}
