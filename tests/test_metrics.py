import json

import numpy as np
import pytest

from l1forge.metrics import classification_metrics, confusion, top_vs_qcd_roc

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
    # no background passes: rejection clipped to n_bkg = 80 and flagged as lower bound
    assert m["rejection_at_30"] == m["rejection_at_50"] == 80.0
    assert m["rejection_at_30_lower_bound"] and m["rejection_at_50_lower_bound"]
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
    # eff 30%: cut at 8 keeps 2/10 background -> R30 = 5
    assert m["rejection_at_30"] == pytest.approx(5.0)
    # eff 50%: cut at 6 keeps 2/10 -> 5; 5.5 only enters at eff 60%
    assert m["rejection_at_50"] == pytest.approx(5.0)
    assert not m["rejection_at_30_lower_bound"]
    # AUC: each of the 10 sig counts bkg below it: pairs won = sum over sig
    won = sum((bkg < s).sum() for s in sig)
    assert m["top_vs_qcd_auc"] == pytest.approx(won / 100)


def test_rejection_interpolated():
    # 4 top, 40 QCD. One top alone at the top; one top tied with 10 QCD at 6.
    # ROC points (tpr, fpr): (0.25, 0) -> (0.5, 0.25), linear in between.
    labels = np.array([T, T] + [G] * 10 + [T, T] + [Q] * 30)
    x = np.array([10.0, 6] + [6] * 10 + [1, 1] + [0] * 30)
    m = classification_metrics(labels, top_logits(x), CLASSES)
    # eff 30%: eps_B = 0.25 * (0.3 - 0.25) / 0.25 = 0.05 -> R30 = 20
    assert m["rejection_at_30"] == pytest.approx(20.0)
    assert m["rejection_at_50"] == pytest.approx(4.0)
    assert not m["rejection_at_30_lower_bound"]
    # eps_B below 1/n_bkg is clipped: 3 top above 1 QCD out of 4 -> R30 = n_bkg = 4
    labels = np.array([T, T, T, G, T, Q, G, Q])
    x = np.array([9, 8, 7, 6.5, 6, 0, 0, 0])
    m = classification_metrics(labels, top_logits(x), CLASSES)
    assert m["rejection_at_30"] == 4.0 and m["rejection_at_30_lower_bound"]


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
