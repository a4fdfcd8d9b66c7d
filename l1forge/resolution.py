"""MET and jet performance of per-candidate pileup weights, against the truth built without pileup.

* MET: reco = -sum_i w_i pT_i (cos phi_i, sin phi_i); truth = the hard interaction's invisible pT sum.
  Resolution: half the 16-84% interval of (reco - truth), x and y pooled (GeV; = sigma for a Gaussian).
  Response: median of reco projected on the truth direction / |truth|, for |truth| > MET_RESPONSE_MIN.
* Jets: anti-kt R = 0.4 on the weighted candidates (pT scaled by w), matched to truth jets with pT > JET_PT_MIN and
  |eta| < JET_ETA_MAX within dR < MATCH_DR. Response: median reco/truth pT; resolution: half the 16-84% interval
  of reco/truth pT divided by the response; the same for jet mass (truth mass > MASS_MIN); efficiency: matched
  fraction of truth jets.
"""

from __future__ import annotations

import numpy as np

from l1forge.events.pfcands import cluster_jets

MET_RESPONSE_MIN = 50.0
JET_PT_MIN, JET_ETA_MAX, MATCH_DR, MASS_MIN = 30.0, 2.4, 0.2, 5.0
RECO_JET_PT_MIN = 5.0


def _half_width(x: np.ndarray) -> float:
    if len(x) < 2:
        return float("nan")
    lo, hi = np.percentile(x, [15.865, 84.135])
    return float((hi - lo) / 2)


def met(sample, weight: np.ndarray) -> np.ndarray:
    """(n_events, 2) reco MET vector from weighted candidates."""
    w = np.asarray(weight, np.float64) * sample.pt
    event, n = sample.event, sample.n_events
    return -np.stack([np.bincount(event, w * np.cos(sample.phi), n), np.bincount(event, w * np.sin(sample.phi), n)], 1)


def met_performance(reco: np.ndarray, truth: np.ndarray) -> dict:
    """{"resolution_gev", "response", "n_events"} of reco vs truth MET vectors (n, 2)."""
    diff = (reco - truth).ravel()
    size = np.hypot(truth[:, 0], truth[:, 1])
    big = size > MET_RESPONSE_MIN
    along = (reco[big] * truth[big]).sum(1) / size[big] ** 2
    return {"resolution_gev": _half_width(diff), "response": float(np.median(along)) if big.any() else float("nan"),
            "n_events": int(len(reco))}


def jet_performance(sample, weight: np.ndarray, events: np.ndarray) -> dict:
    """Jet pT and mass response and resolution of the weighted candidates of the chosen events (bool mask)."""
    rows = sample.particle_rows(events)
    local = np.repeat(np.arange(int(events.sum())), np.diff(sample.offsets)[events])
    w = np.asarray(weight)[rows]
    reco = cluster_jets(local, sample.pt[rows] * w, sample.eta[rows], sample.phi[rows], int(events.sum()),
                        min_pt=RECO_JET_PT_MIN)
    truth = sample.truth_jets[events]
    good = (truth[..., 0] > JET_PT_MIN) & (np.abs(truth[..., 1]) < JET_ETA_MAX)
    dphi = np.mod(truth[:, :, None, 2] - reco[:, None, :, 2] + np.pi, 2 * np.pi) - np.pi
    dr = np.hypot(truth[:, :, None, 1] - reco[:, None, :, 1], dphi)
    dr = np.where(reco[:, None, :, 0] > 0, dr, np.inf)
    best = dr.argmin(axis=2)
    matched = good & (np.take_along_axis(dr, best[..., None], 2)[..., 0] < MATCH_DR)
    pair = np.take_along_axis(reco, best[..., None].repeat(4, -1), 1)
    ratio = pair[..., 0][matched] / truth[..., 0][matched]
    heavy = matched & (truth[..., 3] > MASS_MIN)
    mass_ratio = pair[..., 3][heavy] / truth[..., 3][heavy]
    pt_response = float(np.median(ratio)) if len(ratio) else float("nan")
    mass_response = float(np.median(mass_ratio)) if len(mass_ratio) else float("nan")
    return {"pt_response": pt_response, "pt_resolution": _half_width(ratio) / pt_response,
            "mass_response": mass_response, "mass_resolution": _half_width(mass_ratio) / mass_response,
            "efficiency": float(matched.sum() / max(good.sum(), 1)), "n_jets": int(good.sum())}


def _auc(is_pv: np.ndarray, weight: np.ndarray) -> float:
    """Per-candidate ROC AUC of PV versus pileup (NaN when one class is absent, e.g. at pileup 0)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(is_pv, weight)) if 0 < is_pv.sum() < len(is_pv) else float("nan")


def performance(sample, weights: dict[str, np.ndarray]) -> dict:
    """{pileup: {method: {"met": ..., "jets": ..., "auc": ...}}} on the test events (split 2) of each pileup."""
    out = {}
    for mu in sorted(set(sample.pileup[sample.split == 2].tolist())):
        events = (sample.split == 2) & (sample.pileup == mu)
        rows = sample.particle_rows(events)
        neutral = rows & ~sample.has_track
        block = {}
        for name, w in weights.items():
            block[name] = {"met": met_performance(met(sample, np.where(rows, w, 0.0))[events], sample.true_met[events]),
                           "jets": jet_performance(sample, w, events), "auc": _auc(sample.is_pv[rows], w[rows]),
                           "auc_neutral": _auc(sample.is_pv[neutral], w[neutral])}
        out[f"{mu:g}"] = block
    return out
