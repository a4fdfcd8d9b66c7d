"""Classification metrics for the jet-tagging task.

All functions take numpy arrays (integer labels, raw logits) and return plain
Python values that serialise to JSON. "Top vs QCD" uses signal "t" against
background "g" + "q" with the discriminant p_t / (p_t + p_g + p_q).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from l1forge.emulation.lhc import HL_LHC_BUNCHES, zero_bias_rate_khz
from l1forge.emulation.trigger import signal_efficiency, threshold_for_rate

SIGNAL = "t"
BACKGROUND = ("g", "q")
WORKING_POINTS = (0.3, 0.5)
RESOLVED_CROSSINGS = 10  # effective background crossings above an anomaly threshold for its rate to count as resolved


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _top_vs_qcd(labels, logits, class_names):
    """Return (is_signal, discriminant) on t/g/q events, or None if not computable."""
    names = list(class_names)
    if SIGNAL not in names or not all(b in names for b in BACKGROUND):
        return None
    sig, bkg = names.index(SIGNAL), [names.index(b) for b in BACKGROUND]
    labels = np.asarray(labels)
    keep = np.isin(labels, [sig, *bkg])
    is_sig = labels[keep] == sig
    if is_sig.all() or not is_sig.any():
        return None
    p = softmax(np.asarray(logits)[keep])
    disc = p[:, sig] / (p[:, sig] + p[:, bkg].sum(axis=1))
    return is_sig, disc


def _rejection(fpr, tpr, eff, n_bkg):
    """Background rejection 1/eps_B at signal efficiency `eff`.

    eps_B is linearly interpolated on the ROC curve between the last point with
    tpr < eff and the first with tpr >= eff. It is clipped from below at 1/n_bkg
    (fewer than one background event passing is not resolvable), so the returned
    rejection is at most n_bkg; the flag says when that clip made it a lower bound.
    """
    i = int(np.searchsorted(tpr, eff, side="left"))
    if tpr[i] == eff or i == 0:
        eps = fpr[i]
    else:
        t0, t1, f0, f1 = tpr[i - 1], tpr[i], fpr[i - 1], fpr[i]
        eps = f0 + (f1 - f0) * (eff - t0) / (t1 - t0)
    floor = 1.0 / n_bkg
    return 1.0 / max(float(eps), floor), bool(eps < floor)


def classification_metrics(labels, logits, class_names) -> dict:
    """Accuracy, one-vs-rest AUCs, top-vs-QCD AUC and rejections R30/R50.

    Returns {"n", "accuracy", "auc": {class: AUC or None}, "top_vs_qcd_auc",
    "rejection_at_30", "rejection_at_50", "rejection_at_30_lower_bound",
    "rejection_at_50_lower_bound"}. A rejection flagged as lower bound means no
    background passed at that working point and the value is n_bkg
    ("rejection >= n_bkg"). Quantities that cannot be computed (class absent,
    only one class present) are None.
    """
    labels = np.asarray(labels).astype(np.int64)
    logits = np.asarray(logits)
    probs = softmax(logits)
    auc = {}
    for k, name in enumerate(class_names):
        is_k = labels == k
        ok = 0 < is_k.sum() < len(labels)
        auc[name] = float(roc_auc_score(is_k, probs[:, k])) if ok else None
    out = {
        "n": int(len(labels)),
        "accuracy": float(np.mean(probs.argmax(axis=1) == labels)) if len(labels) else None,
        "auc": auc,
        "top_vs_qcd_auc": None,
    }
    for wp in WORKING_POINTS:
        out[f"rejection_at_{round(wp * 100)}"] = None
        out[f"rejection_at_{round(wp * 100)}_lower_bound"] = False
    tq = _top_vs_qcd(labels, logits, class_names)
    if tq is None:
        return out
    is_sig, disc = tq
    out["top_vs_qcd_auc"] = float(roc_auc_score(is_sig, disc))
    fpr, tpr, _ = roc_curve(is_sig, disc)
    for wp in WORKING_POINTS:
        rej, lower = _rejection(fpr, tpr, wp, int((~is_sig).sum()))
        out[f"rejection_at_{round(wp * 100)}"] = rej
        out[f"rejection_at_{round(wp * 100)}_lower_bound"] = lower
    return out


def top_vs_qcd_roc(labels, logits, class_names) -> tuple[np.ndarray, np.ndarray]:
    """Top-vs-QCD ROC as (signal efficiency, background rejection 1/eps_B).

    Points with eps_B = 0 or zero signal efficiency are dropped (infinite
    rejection). Empty arrays if the curve cannot be computed.
    """
    tq = _top_vs_qcd(labels, logits, class_names)
    if tq is None:
        return np.empty(0), np.empty(0)
    fpr, tpr, _ = roc_curve(*tq)
    ok = (fpr > 0) & (tpr > 0)
    return tpr[ok], 1.0 / fpr[ok]


def confusion(labels, logits, n_classes) -> np.ndarray:
    """Row-normalised confusion matrix C[true, predicted]; empty rows stay zero."""
    labels = np.asarray(labels).astype(np.int64)
    pred = np.asarray(logits).argmax(axis=1)
    c = np.zeros((n_classes, n_classes))
    np.add.at(c, (labels, pred), 1)
    rows = c.sum(axis=1, keepdims=True)
    return np.divide(c, rows, out=np.zeros_like(c), where=rows > 0)


def anomaly_metrics(scores_bkg, weights_bkg, scores_by_signal: dict, rates_khz=(1.0, 10.0),
                    n_bunches: int = HL_LHC_BUNCHES) -> dict:
    """Per signal: AUC against the weighted background and efficiency at each fixed L1 rate, with the statistics
    that say whether the rate is resolved at all.

    weights_bkg are per-crossing weights (e.g. read_anomaly's fractions of crossings); signal events count equally.
    The threshold for a rate is ``threshold_for_rate`` on the weighted background (fires on score > threshold).
    Each threshold entry also has: ``rate_khz_err`` [down, up] (the achieved rate's error), ``n_background_above``
    (test crossings above the threshold), ``n_effective_above`` ((sum w)^2 / sum w^2 of those: the rate rests on this
    many equal-weight crossings), ``crossing_rate_khz`` (the rate one test crossing carries, max over the background:
    the rate resolution; a target rate below a few times this is set by a handful of crossings) and ``resolved``
    (n_effective_above >= 10, i.e. the rate known to ~30% or better). Efficiency errors are Clopper-Pearson 68% intervals
    (signal events count equally); they do not include the threshold's own uncertainty from the background statistics.
    Returns {"n_background", "crossing_rate_khz", "thresholds": {"<rate>kHz": {...}},
    "signals": {name: {"auc", "n", "efficiency": {"<rate>kHz": eff}, "efficiency_err": {"<rate>kHz": [down, up]}}}}.
    """
    scores_bkg = np.asarray(scores_bkg, np.float64)
    weights_bkg = np.asarray(weights_bkg, np.float64)
    crossing_khz = float(weights_bkg.max() / weights_bkg.sum() * zero_bias_rate_khz(n_bunches)) if len(weights_bkg) else None
    cuts = {}
    for rate in rates_khz:
        threshold, achieved, err = threshold_for_rate(scores_bkg, rate, weights_bkg, n_bunches)
        w = weights_bkg[scores_bkg > threshold]
        n_eff = float(w.sum() ** 2 / (w**2).sum()) if len(w) else 0.0
        cuts[f"{rate:g}kHz"] = {"threshold": float(threshold), "rate_khz": float(achieved),
                                "rate_khz_err": [float(e) for e in err], "n_background_above": int(len(w)),
                                "n_effective_above": n_eff, "crossing_rate_khz": crossing_khz,
                                "resolved": n_eff >= RESOLVED_CROSSINGS}
    signals = {}
    for name, scores in scores_by_signal.items():
        scores = np.asarray(scores, np.float64)
        labels = np.r_[np.zeros(len(scores_bkg)), np.ones(len(scores))]
        weights = np.r_[weights_bkg / weights_bkg.sum(), np.full(len(scores), 1.0 / len(scores))]
        entry = {"auc": float(roc_auc_score(labels, np.r_[scores_bkg, scores], sample_weight=weights)),
                 "n": int(len(scores)), "efficiency": {}, "efficiency_err": {}}
        for key, cut in cuts.items():
            eff, err = signal_efficiency(scores, cut["threshold"])
            entry["efficiency"][key], entry["efficiency_err"][key] = eff, [float(e) for e in err]
        signals[name] = entry
    return {"n_background": int(len(scores_bkg)), "crossing_rate_khz": crossing_khz, "thresholds": cuts,
            "signals": signals}
