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

SIGNAL = ("t", "top", "Tbqq")
BACKGROUND = ("g", "q", "QCD")
WORKING_POINTS = (0.3, 0.5)
BOOTSTRAP = 200  # resamples of the test jets for the AUC and rejection uncertainties
MIN_BACKGROUND = 10  # background jets that must pass a working point for its rejection to be quoted as a value
ONE_SIGMA = 0.8413447460685429  # one-sided confidence of a 1-sigma limit
RESOLVED_CROSSINGS = 10  # effective background crossings above an anomaly threshold for its rate to count as resolved


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _top_qcd_classes(class_names) -> tuple[int, list[int]] | None:
    """(index of the top class, indices of the QCD classes) among ``class_names``, or None."""
    names = list(class_names)
    sig = next((names.index(s) for s in SIGNAL if s in names), None)
    bkg = [names.index(b) for b in BACKGROUND if b in names]
    return None if sig is None or not bkg else (sig, bkg)


def _top_vs_qcd(labels, logits, class_names):
    """Return (is_signal, discriminant) on top and QCD events, or None if not computable. Top: the first of SIGNAL
    the classes name; QCD: every class of BACKGROUND they name (l1forge's t vs g, q; the top-tagging dataset's top
    vs QCD; JetClass's Tbqq vs QCD)."""
    classes = _top_qcd_classes(class_names)
    if classes is None:
        return None
    sig, bkg = classes
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


def _rejection_with_stats(fpr, tpr, eff, n_bkg):
    """(rejection, lower_bound, background jets passing) at signal efficiency ``eff``.

    With at least MIN_BACKGROUND background jets passing (eps_B x n_bkg, interpolated as in ``_rejection``) the
    rejection is the point estimate 1/eps_B. Below that it is a 1-sigma lower bound: 1 / (the one-sided 84.1%
    Clopper-Pearson upper limit of eps_B given that many passing jets out of n_bkg), flagged ``lower_bound``;
    a handful of passing jets (or none) cannot give a value, only a bound.
    """
    from scipy.stats import beta

    rej, _ = _rejection(fpr, tpr, eff, n_bkg)
    i = int(np.searchsorted(tpr, eff, side="left"))
    if tpr[i] == eff or i == 0:
        eps = float(fpr[i])
    else:
        eps = float(fpr[i - 1] + (fpr[i] - fpr[i - 1]) * (eff - tpr[i - 1]) / (tpr[i] - tpr[i - 1]))
    passing = eps * n_bkg
    if passing >= MIN_BACKGROUND:
        return rej, False, passing
    upper = float(beta.ppf(ONE_SIGMA, passing + 1, max(n_bkg - passing, 1e-9))) if passing < n_bkg else 1.0
    return 1.0 / upper, True, passing


class _Ranked:
    """A score ranked once (ties grouped), so that weighted AUCs and ROC curves of bootstrap resamples cost O(n)."""

    def __init__(self, is_pos, score):
        _, self.group = np.unique(score, return_inverse=True)  # ascending score groups
        self.m, self.pos = int(self.group.max()) + 1, np.asarray(is_pos, bool)

    def counts(self, w):
        wp = np.bincount(self.group, w * self.pos, self.m)
        return wp, np.bincount(self.group, w * ~self.pos, self.m)

    def auc(self, w):
        """Weighted AUC (ties count half), as roc_auc_score with sample_weight; None if a class has no weight."""
        wp, wn = self.counts(w)
        if wp.sum() <= 0 or wn.sum() <= 0:
            return None
        return float((wp * (np.cumsum(wn) - wn + 0.5 * wn)).sum() / (wp.sum() * wn.sum()))

    def roc(self, w):
        """(fpr, tpr, background weight) from the highest threshold down, starting at (0, 0), as roc_curve."""
        wp, wn = self.counts(w)
        tp, fp = np.r_[0.0, np.cumsum(wp[::-1])], np.r_[0.0, np.cumsum(wn[::-1])]
        return fp / fp[-1], tp / tp[-1], fp[-1]


def _bootstrap_errors(labels, probs, is_sig, disc, keep, class_names, n_boot, seed) -> dict:
    """Standard deviations over ``n_boot`` bootstrap resamples of the test jets (fixed seed): per-class AUC,
    top-vs-QCD AUC and R30/R50. Resamples where a quantity is undefined (a class drawn zero times) are skipped."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    ranked = {name: _Ranked(labels == k, probs[:, k]) for k, name in enumerate(class_names)}
    top = _Ranked(is_sig, disc) if keep is not None else None
    sub = np.flatnonzero(keep) if keep is not None else None
    samples: dict = {name: [] for name in class_names}
    samples.update(top=[], **{f"r{round(wp * 100)}": [] for wp in WORKING_POINTS})
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        for name, r in ranked.items():
            if (value := r.auc(w)) is not None:
                samples[name].append(value)
        if top is None or (value := top.auc(w[sub])) is None:
            continue
        samples["top"].append(value)
        fpr, tpr, n_bkg = top.roc(w[sub])
        for wp in WORKING_POINTS:
            samples[f"r{round(wp * 100)}"].append(_rejection(fpr, tpr, wp, n_bkg)[0])
    std = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else None  # noqa: E731
    return {key: std(v) for key, v in samples.items()}


def classification_metrics(labels, logits, class_names, n_boot: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Accuracy, one-vs-rest AUCs, top-vs-QCD AUC and rejections R30/R50, each with its statistical uncertainty.

    Returns {"n", "accuracy", "accuracy_err", "auc": {class: AUC or None}, "auc_err": {class: err or None},
    "top_vs_qcd_auc", "top_vs_qcd_auc_err", "rejection_at_30", "rejection_at_30_err",
    "rejection_at_30_lower_bound", "rejection_at_30_n_background" (and the same at 50)}.

    Uncertainties are one standard deviation: binomial sqrt(p (1 - p) / n) for the accuracy; the spread over
    ``n_boot`` bootstrap resamples of the test jets (seed ``seed``) for the AUCs and rejections (``n_boot=0``: no
    bootstrap, errors None). A rejection is quoted as a value only where at least MIN_BACKGROUND (10) background
    jets pass its cut (``*_n_background``, eps_B x n_bkg); otherwise ``*_lower_bound`` is true, the value is a
    1-sigma lower bound (``_rejection_with_stats``) and its error is None. Quantities that cannot be computed
    (class absent, only one class present) are None.
    """
    labels = np.asarray(labels).astype(np.int64)
    logits = np.asarray(logits)
    probs = softmax(logits)
    auc = {}
    for k, name in enumerate(class_names):
        is_k = labels == k
        ok = 0 < is_k.sum() < len(labels)
        auc[name] = float(roc_auc_score(is_k, probs[:, k])) if ok else None
    accuracy = float(np.mean(probs.argmax(axis=1) == labels)) if len(labels) else None
    out = {
        "n": int(len(labels)),
        "accuracy": accuracy,
        "accuracy_err": float(np.sqrt(accuracy * (1 - accuracy) / len(labels))) if len(labels) else None,
        "auc": auc,
        "auc_err": {name: None for name in class_names},
        "top_vs_qcd_auc": None,
        "top_vs_qcd_auc_err": None,
    }
    for wp in WORKING_POINTS:
        key = f"rejection_at_{round(wp * 100)}"
        out.update({key: None, f"{key}_err": None, f"{key}_lower_bound": False, f"{key}_n_background": None})
    tq = _top_vs_qcd(labels, logits, class_names)
    if tq is not None:
        is_sig, disc = tq
        out["top_vs_qcd_auc"] = float(roc_auc_score(is_sig, disc))
        fpr, tpr, _ = roc_curve(is_sig, disc)
        for wp in WORKING_POINTS:
            rej, lower, passing = _rejection_with_stats(fpr, tpr, wp, int((~is_sig).sum()))
            key = f"rejection_at_{round(wp * 100)}"
            out.update({key: rej, f"{key}_lower_bound": lower, f"{key}_n_background": passing})
    if n_boot and len(labels) > 1:
        keep = None
        if tq is not None:
            sig, bkg = _top_qcd_classes(class_names)
            keep = np.isin(labels, [sig, *bkg])
        errors = _bootstrap_errors(labels, probs, *(tq or (None, None)), keep, class_names, n_boot, seed)
        out["auc_err"] = {name: errors[name] if auc[name] is not None else None for name in class_names}
        if tq is not None:
            out["top_vs_qcd_auc_err"] = errors["top"]
            for wp in WORKING_POINTS:
                key = f"rejection_at_{round(wp * 100)}"
                out[f"{key}_err"] = None if out[f"{key}_lower_bound"] else errors[f"r{round(wp * 100)}"]
    return out


def beats(a: dict, b: dict, metric: str = "accuracy", n_sigma: float = 2.0) -> bool | None:
    """Whether model A's ``metric`` exceeds B's by more than ``n_sigma`` combined uncertainties.

    ``a`` and ``b`` are ``classification_metrics`` blocks; ``metric`` one of their keys with a ``<metric>_err``
    (accuracy, top_vs_qcd_auc, rejection_at_30, rejection_at_50). The combined uncertainty sqrt(err_a^2 + err_b^2)
    treats the two as independent; on the same test jets they are positively correlated, so this is conservative
    (``paired_difference`` is the sharper test on shared jets). None when the claim cannot be judged: a value or
    error missing, or a rejection that is only a lower bound.
    """
    if a.get(f"{metric}_lower_bound") or b.get(f"{metric}_lower_bound"):
        return None
    va, vb, ea, eb = a.get(metric), b.get(metric), a.get(f"{metric}_err"), b.get(f"{metric}_err")
    if None in (va, vb, ea, eb):
        return None
    return bool(va - vb > n_sigma * float(np.hypot(ea, eb)))


def paired_difference(labels, logits_a, logits_b, class_names, metric: str = "accuracy", n_boot: int = BOOTSTRAP,
                      seed: int = 0, n_sigma: float = 2.0) -> dict:
    """A minus B on the same test jets, with the spread of the difference over paired bootstrap resamples.

    ``metric``: "accuracy" or "top_vs_qcd_auc". Returns {"metric", "difference", "difference_err", "n_sigma",
    "verdict"}: verdict "A" or "B" when |difference| > n_sigma x difference_err, else "tie"; None for
    "top_vs_qcd_auc" where the classes name no top and QCD (a user's bkg/sig) or the jets hold only one of them. Resampling the jets
    once for both models keeps their correlation, so a 0.01 accuracy difference is resolved with far fewer jets
    than two independent binomial errors need (docs/formats.md, "Metrics and uncertainties").
    """
    labels = np.asarray(labels).astype(np.int64)
    if metric == "top_vs_qcd_auc" and _top_vs_qcd(labels, logits_a, class_names) is None:
        return None
    value = {
        "accuracy": lambda lg, w: np.average(np.asarray(lg).argmax(axis=1) == labels, weights=w),
        "top_vs_qcd_auc": lambda lg, w: _weighted_top_auc(labels, lg, class_names, w),
    }[metric]
    n = len(labels)
    diff = float(value(logits_a, None) - value(logits_b, None))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        draws.append(value(logits_a, w) - value(logits_b, w))
    err = float(np.std(draws, ddof=1))
    verdict = "tie" if abs(diff) <= n_sigma * err else ("A" if diff > 0 else "B")
    return {"metric": metric, "difference": diff, "difference_err": err, "n_sigma": n_sigma, "verdict": verdict}


def _weighted_top_auc(labels, logits, class_names, weights):
    is_sig, disc = _top_vs_qcd(labels, logits, class_names)
    sig, bkg = _top_qcd_classes(class_names)
    keep = np.isin(labels, [sig, *bkg])
    return roc_auc_score(is_sig, disc, sample_weight=None if weights is None else np.asarray(weights)[keep])


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
