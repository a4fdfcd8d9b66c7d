import json

import numpy as np
import pytest

from l1forge.metrics import ONE_SIGMA, beats, classification_metrics, confusion, paired_difference, top_vs_qcd_roc

CLASSES = ("g", "q", "w", "z", "t")
G, Q, W, Z, T = range(5)


def top_logits(x):
    """Logits whose top-vs-QCD discriminant is monotonic in x (e^x / (e^x + 2))."""
    out = np.zeros((len(x), 5))
    out[:, T] = x
    return out


def test_perfect_classifier():
    labels = np.repeat(np.arange(5), 40)
    logits = np.eye(5)[labels] * 10.0
    m = classification_metrics(labels, logits, CLASSES)
    assert m["n"] == 200
    assert m["accuracy"] == 1.0
    assert m["top_vs_qcd_auc"] == 1.0
    assert all(v == 1.0 for v in m["auc"].values())
    # no background passes: a 1-sigma lower bound 1 / (1 - 0.1587^(1/80)) = 44.0, no error
    assert m["rejection_at_30"] == m["rejection_at_50"] == pytest.approx(1 / (1 - (1 - ONE_SIGMA) ** (1 / 80)))
    assert m["rejection_at_30_lower_bound"] and m["rejection_at_50_lower_bound"]
    assert m["rejection_at_30_n_background"] == 0 and m["rejection_at_30_err"] is None
    assert m["accuracy_err"] == 0 and m["top_vs_qcd_auc_err"] == 0
    json.dumps(m)


def test_random_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 20000)
    m = classification_metrics(labels, rng.normal(size=(20000, 5)), CLASSES)
    assert m["top_vs_qcd_auc"] == pytest.approx(0.5, abs=0.02)
    assert all(v == pytest.approx(0.5, abs=0.02) for v in m["auc"].values())
    assert m["accuracy"] == pytest.approx(0.2, abs=0.02)
    # random: eps_B ~ eps_S
    assert m["rejection_at_30"] == pytest.approx(1 / 0.3, rel=0.1)
    assert m["rejection_at_50"] == pytest.approx(2.0, rel=0.1)


def test_rejection_hand_built():
    # 10 top jets scored 1..10; 10 QCD jets: two above the 3rd-best top (9.5, 8.5), rest low.
    sig = np.arange(1, 11, dtype=float)
    bkg = np.array([9.5, 8.5, 5.5, 0, 0, 0, 0, 0, 0, 0])
    labels = np.array([T] * 10 + [G, Q] * 5)
    m = classification_metrics(labels, top_logits(np.concatenate([sig, bkg])), CLASSES)
    # eff 30%: cut at 8 keeps 2/10 background -> R30 = 5, but 2 < 10 passing jets: only a lower bound below 5
    assert m["rejection_at_30_n_background"] == pytest.approx(2.0) and m["rejection_at_30_lower_bound"]
    assert 1 < m["rejection_at_30"] < 5.0
    # eff 50%: cut at 6 keeps 2/10; 5.5 only enters at eff 60%
    assert m["rejection_at_50_n_background"] == pytest.approx(2.0)
    # AUC: each of the 10 sig counts bkg below it: pairs won = sum over sig
    won = sum((bkg < s).sum() for s in sig)
    assert m["top_vs_qcd_auc"] == pytest.approx(won / 100)


def test_rejection_interpolated():
    # 4 top, 40 QCD. One top alone at the top; one top tied with 10 QCD at 6.
    # ROC points (tpr, fpr): (0.25, 0) -> (0.5, 0.25), linear in between.
    labels = np.array([T, T] + [G] * 10 + [T, T] + [Q] * 30)
    x = np.array([10.0, 6] + [6] * 10 + [1, 1] + [0] * 30)
    m = classification_metrics(labels, top_logits(x), CLASSES)
    # eff 30%: eps_B = 0.25 * (0.3 - 0.25) / 0.25 = 0.05 -> 2 of 40 pass (a bound); eff 50%: 10 of 40 -> R50 = 4
    assert m["rejection_at_30_n_background"] == pytest.approx(2.0) and m["rejection_at_30_lower_bound"]
    assert m["rejection_at_50"] == pytest.approx(4.0) and m["rejection_at_50_n_background"] == pytest.approx(10.0)
    assert not m["rejection_at_50_lower_bound"] and m["rejection_at_50_err"] > 0
    # the same interpolation, scaled up so that 100 background jets pass at 30%: R30 = 20 quoted as a value
    m = classification_metrics(np.repeat(labels, 50), top_logits(np.repeat(x, 50)), CLASSES)
    assert m["rejection_at_30"] == pytest.approx(20.0) and not m["rejection_at_30_lower_bound"]


def test_missing_classes_skip_gracefully():
    labels = np.array([0, 1, 0, 1])
    logits = np.array([[2.0, 0], [0, 2.0], [1, 0], [0, 1]])
    m = classification_metrics(labels, logits, ("a", "b"))
    assert m["accuracy"] == 1.0 and m["auc"] == {"a": 1.0, "b": 1.0}
    assert m["top_vs_qcd_auc"] is None and m["rejection_at_30"] is None
    # no top jets at all
    m = classification_metrics(np.array([G, Q, W]), np.zeros((3, 5)), CLASSES)
    assert m["top_vs_qcd_auc"] is None and m["auc"]["t"] is None
    eff, rej = top_vs_qcd_roc(np.array([G, Q]), np.zeros((2, 5)), CLASSES)
    assert len(eff) == len(rej) == 0


def test_roc_curve_shape():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 2000)
    logits = rng.normal(size=(2000, 5)) + 2 * np.eye(5)[labels]
    eff, rej = top_vs_qcd_roc(labels, logits, CLASSES)
    assert len(eff) > 10 and np.all(np.isfinite(rej)) and np.all(rej >= 1)
    assert np.all(np.diff(eff) >= 0) and np.all(np.diff(rej) <= 0)


def test_confusion_rows_sum_to_one():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, 500)  # class 4 absent -> zero row
    c = confusion(labels, rng.normal(size=(500, 5)), 5)
    assert c.shape == (5, 5)
    np.testing.assert_allclose(c[:4].sum(axis=1), 1.0)
    assert c[4].sum() == 0
    np.testing.assert_allclose(confusion([0, 1, 1], np.array([[1, 0], [1, 0], [0, 1]]), 2),
                               [[1, 0], [0.5, 0.5]])


def test_uncertainties_match_their_closed_forms():
    """Binomial accuracy error exactly; bootstrap AUC error close to Hanley-McNeil's sqrt((n1 + n2 + 1) / (12 n1 n2))
    at AUC 0.5; rejection error close to R / sqrt(k) for k passing background jets (eps_B small)."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 5000)
    m = classification_metrics(labels, rng.normal(size=(5000, 5)), CLASSES)
    p = m["accuracy"]
    assert m["accuracy_err"] == pytest.approx(np.sqrt(p * (1 - p) / 5000))
    n1 = (labels == T).sum()
    n2 = np.isin(labels, [G, Q]).sum()
    assert m["top_vs_qcd_auc_err"] == pytest.approx(np.sqrt((n1 + n2 + 1) / (12 * n1 * n2)), rel=0.25)
    for k, name in enumerate(CLASSES):
        n1 = (labels == k).sum()
        assert m["auc_err"][name] == pytest.approx(np.sqrt(5000 / (12 * n1 * (5000 - n1))), rel=0.25)
    r = m["rejection_at_50"]
    assert not m["rejection_at_50_lower_bound"]
    assert m["rejection_at_50_err"] == pytest.approx(r * np.sqrt(1 / m["rejection_at_50_n_background"]), rel=0.5)


def test_beats_only_beyond_the_combined_uncertainty():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, 4000)
    good = rng.normal(size=(4000, 5)) + 1.5 * np.eye(5)[labels]
    same = good + rng.normal(scale=0.05, size=good.shape)  # a twin: no resolvable difference
    poor = rng.normal(size=(4000, 5)) + 0.8 * np.eye(5)[labels]
    a, b, c = (classification_metrics(labels, lg, CLASSES) for lg in (good, same, poor))
    assert beats(a, c) and beats(a, c, "top_vs_qcd_auc") and not beats(c, a)
    assert not beats(a, b) and not beats(b, a)
    assert beats({"rejection_at_30": 50, "rejection_at_30_lower_bound": True}, c, "rejection_at_30") is None
    assert paired_difference(labels, good, poor, CLASSES)["verdict"] == "A"
    assert paired_difference(labels, poor, good, CLASSES, "top_vs_qcd_auc")["verdict"] == "B"
    assert paired_difference(labels, good, same, CLASSES)["verdict"] == "tie"


def test_paired_bootstrap_resolves_what_independent_errors_cannot():
    """Two models on the same 8000 jets that differ on 8% of them, A right on 4.5%, B on 3.5%: a 0.01 difference.
    Independent binomial errors (0.0048 each, combined 0.0069) do not resolve it at 2 sigma; the paired bootstrap
    (sqrt(0.08 / 8000) = 0.0032) does."""
    rng = np.random.default_rng(5)
    n = 8000
    labels = rng.integers(0, 5, n)
    right = np.eye(5)[labels] * 3
    wrong = np.eye(5)[(labels + 1) % 5] * 3
    u = rng.permutation(n) / n  # exact fractions of the jets
    base = np.where((u < 0.7)[:, None], right, wrong)
    a = np.where((u >= 0.92)[:, None] & (u < 0.965)[:, None], right, base)
    b = np.where((u >= 0.965)[:, None], right, base)
    ma, mb = classification_metrics(labels, a, CLASSES, n_boot=0), classification_metrics(labels, b, CLASSES, n_boot=0)
    assert ma["accuracy"] - mb["accuracy"] == pytest.approx(0.01)
    assert not beats(ma, mb)
    paired = paired_difference(labels, a, b, CLASSES)
    assert paired["verdict"] == "A" and paired["difference_err"] == pytest.approx(np.sqrt(0.08 / n), rel=0.2)
