"""The chain's parts: crossings as L1 candidates at several pileups (events/crossings.py) and the fixed-point object
builder between the two students (emulation/objects.py), on hand-built crossings with known answers and a real tiny
Pythia sample."""

import math

import numpy as np
import pytest

from l1forge.emulation import objects
from l1forge.emulation.objects import ETAPHI_LSB, build_objects, latency_estimate


def _build(pt, eta, phi, weight=None, egamma=None, muon=None):
    n = len(pt)
    return build_objects(np.array([0, n]), np.array(pt, float), np.array(eta, float), np.array(phi, float),
                         np.ones(n) if weight is None else np.array(weight, float),
                         np.zeros(n, bool) if egamma is None else np.array(egamma), np.zeros(n, bool) if muon is None
                         else np.array(muon))[0]


def test_met_of_back_to_back_and_single_candidates():
    """Two equal candidates back to back cancel; a lone one gives MET = its pT (to the table's precision) opposite it."""
    out = _build([40.0, 40.0], [0.0, 0.0], [0.5, 0.5 - math.pi])
    assert out[0, 0] <= 0.25 and out[0, 3] == 1
    out = _build([40.0], [1.0], [0.5])
    assert abs(out[0, 0] - 40.0) <= 0.25
    assert out[0, 2] == pytest.approx(round((0.5 - math.pi) / ETAPHI_LSB) * ETAPHI_LSB, abs=1e-6)


def test_weights_scale_and_remove_candidates():
    """Weight w scales pT (truncated to the 0.25 GeV LSB); weight 0 removes the candidate everywhere."""
    out = _build([40.0], [0.0], [0.0], weight=[0.5])
    assert out[0, 0] == 20.0 and out[9, 0] == 20.0  # MET and the one jet
    out = _build([40.0, 33.3], [0.0, 2.0], [0.0, 1.0], weight=[0.0, 1.0])
    assert out[9, 0] == pytest.approx(33.25) and out[10, 0] == 0  # 33.3 truncated; the weight-0 candidate is gone
    assert out[9, 1] == pytest.approx(round(2.0 / ETAPHI_LSB) * ETAPHI_LSB, abs=1e-6)


def test_seeded_cone_takes_everything_within_the_radius_of_the_seed():
    """Seed at (0, 0); a candidate at dR 0.35 joins it, one at dR 0.45 seeds its own jet; jets below 15 GeV go."""
    out = _build([30.0, 10.0, 16.0, 6.0], [0.0, 0.35, 0.0, 2.5], [0.0, 0.0, 0.45, 0.0])
    jets = out[9:]
    assert jets[0].tolist() == pytest.approx([40.0, 0.0, 0.0, 4.0])
    assert jets[1, 0] == 16.0 and jets[1, 2] == pytest.approx(round(0.45 / ETAPHI_LSB) * ETAPHI_LSB, abs=1e-6)
    assert np.all(jets[2:] == 0)  # the 6 GeV seed makes a jet below JET_PT_MIN
    # phi wraps: a candidate just across -pi/pi is 0.2 from the seed
    out = _build([30.0, 10.0], [0.0, 0.0], [math.pi - 0.1, -math.pi + 0.1])
    assert out[9, 0] == 40.0 and out[10, 0] == 0


def test_egamma_and_muons_are_the_hardest_above_threshold():
    pt = [10.0, 50.0, 2.0, 20.0, 30.0, 40.0, 60.0, 25.0]
    egamma = [True, True, True, True, True, True, False, False]
    muon = [False] * 6 + [True, True]
    eta = [0.0, 0.5, 0.0, 1.0, -1.0, 3.5, 0.0, 1.0]  # the 40 GeV e/gamma is outside |eta| < 3
    out = _build(pt, eta, np.linspace(-3, 3, 8), egamma=egamma, muon=muon)
    assert out[1:5, 0].tolist() == [50.0, 30.0, 20.0, 10.0] and np.all(out[1:5, 3] == 2)
    assert out[5:7, 0].tolist() == [60.0, 25.0] and np.all(out[5:7, 3] == 3) and np.all(out[7:9] == 0)


def test_empty_and_padded_crossings_and_chunking(monkeypatch):
    """Crossings without candidates give zeros; results do not depend on the dense block size."""
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 40, 25)
    counts[[0, 7]] = 0
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n = offsets[-1]
    args = (offsets, rng.exponential(8, n), rng.uniform(-4, 4, n), rng.uniform(-np.pi, np.pi, n), rng.random(n),
            rng.random(n) < 0.2, rng.random(n) < 0.05)
    whole = build_objects(*args)
    monkeypatch.setattr(objects, "CHUNK", 4)
    assert np.array_equal(build_objects(*args), whole)
    for empty in (0, 7):  # the MET row keeps its type, as in the ADC2021 files
        assert np.all(whole[empty, 1:] == 0) and whole[empty, 0].tolist() == [0, 0, 0, 1]
    assert np.all(np.mod(whole[..., 0] / 0.25, 1) == 0)  # every pT a multiple of the LSB
    with pytest.raises(ValueError, match="shape"):
        build_objects(offsets, *args[1:3], args[3][:-1], *args[4:])


def test_latency_estimate_counts_pipeline_stages():
    est = latency_estimate(1024, 240.0)  # 10 comparator / adder levels
    # weighting, then N_JETS seed steps (argmax + distance test), the last jet's pT sum, the cuts, the 4-level placement
    assert est["latency_cycles"] == 1 + objects.N_JETS * (10 + 2) + 10 + 1 + 4 == 136 and est["ii_cycles"] == 1
    assert latency_estimate(2048, 240.0)["latency_cycles"] == 136 + objects.N_JETS + 1  # one level more per step
    assert 1 + 2 + 11 + objects.SQRT_ATAN_CYCLES < 136  # the MET path (table, adders, CORDIC) runs beside the jets
    assert est["latency_ns"] == pytest.approx(est["latency_cycles"] / 0.240) and "estimate" in est["source"]


@pytest.fixture(scope="module")
def crossings(tmp_path_factory):
    from l1forge.events.crossings import generate_crossings, read_crossings

    path = tmp_path_factory.mktemp("crossings") / "crossings.h5"
    generate_crossings(path, 24, 2, pileups=(10, 30), reference_pileup=10, seed=5, workers=1, library_events=200,
                       hard_mpi=False, signals=["a50_4l"], progress=False)
    return read_crossings(path)


def test_crossings_layout_weights_and_splits(crossings):
    s = crossings.sample
    assert crossings.names[:2] == ["minbias", "qcd_pthat30_50"] and crossings.names[-1] == "a50_4l"
    assert sorted(np.unique(s.pileup).tolist()) == [10, 30]
    for mu, n in ((10, 48), (30, 24)):  # twice the zero-bias crossings at the reference pileup (10)
        zero_bias = (s.pileup == mu) & ~crossings.is_signal
        assert zero_bias.sum() == n and crossings.weight[zero_bias].sum() == pytest.approx(1.0)
        assert crossings.weight[(s.pileup == mu) & crossings.is_signal].sum() == pytest.approx(1.0)
        # more pileup, more candidates; the PV share falls
        assert (s.pileup == mu).sum() == n + 2
        # as many zero-bias test crossings at the reference as at every other pileup
        assert (zero_bias & (s.split == 2)).sum() == 24
    counts = np.diff(s.offsets)
    assert counts[s.pileup == 30].mean() > 2 * counts[s.pileup == 10].mean()
    assert set(s.split[s.pileup == 30].tolist()) == {2} and set(s.split[crossings.is_signal].tolist()) == {2}
    assert {0, 1, 2} <= set(s.split[(s.pileup == 10) & ~crossings.is_signal].tolist())
    test = s.split == 2
    w = crossings.zero_bias_weights(test)
    assert np.all(w[~test | crossings.is_signal] == 0) and w[s.pileup == 30].sum() == pytest.approx(1.0)
    # minimum bias: pileup interactions only, the primary one included (n_pileup + 1 interactions)
    minbias = s.process == 0
    assert np.all(s.true_met[minbias] == 0) or np.abs(s.true_met[minbias]).max() < 50
    assert s.is_pv[s.particle_rows(minbias)].mean() < 0.2


def test_pooled_zero_bias_weights_stand_for_one_pileup(crossings):
    """pool_at: the test crossings of both pileups stand for the mixture at 30; each sample keeps its fraction there,
    so a score that depends on the sample only (as the truth weighting's objects do not depend on the pileup) gives
    the same rate pooled as from the crossings at 30 alone."""
    from l1forge.emulation.trigger import rate_khz

    s = crossings.sample
    test = (s.split == 2) & ~crossings.is_signal
    pooled = crossings.zero_bias_weights(test, pool_at=30)
    at30 = crossings.zero_bias_weights(test & (s.pileup == 30))
    assert np.all(pooled[~test] == 0) and np.all(pooled[test & (s.pileup == 10)] > 0)
    for k in np.unique(s.process[test]):
        fraction = crossings.weight[(s.process == k) & (s.pileup == 30)].sum()
        assert pooled[s.process == k].sum() == pytest.approx(fraction)
        assert len(np.unique(pooled[test & (s.process == k)])) == 1  # every crossing of a sample counts the same
    score = s.process.astype(float)  # minimum bias (0) below, every hard sample above the threshold
    rate, _ = rate_khz(score[test], 0.5, pooled[test])
    assert rate == pytest.approx(rate_khz(score[test & (s.pileup == 30)], 0.5, at30[test & (s.pileup == 30)])[0])
    assert rate > rate_khz(score[test], 0.5, crossings.zero_bias_weights(test, pool_at=10)[test])[0]  # more hard ones


def test_training_split_shares_the_reference_training_crossings_among_pileups(crossings):
    """[reference]: the file's split. [10, 30]: each sample's training and validation counts at the reference are
    halved there and drawn again at 30; the rest, and every signal, are test; the same seed, the same split."""
    s, zero_bias = crossings.sample, ~crossings.is_signal
    assert np.array_equal(crossings.training_split(10, [10], seed=1), s.split)
    split = crossings.training_split(10, [10, 30], seed=1)
    assert np.array_equal(split, crossings.training_split(10, [30, 10], seed=1))
    assert set(split[crossings.is_signal].tolist()) == {2}
    for k in np.flatnonzero(~crossings.sample_is_signal):
        for part in (0, 1):
            n = np.count_nonzero((s.process == k) & (s.pileup == 10) & (s.split == part)) // 2
            for mu in (10, 30):
                assert np.count_nonzero((split == part) & (s.process == k) & (s.pileup == mu)) == n
    # at the reference, training crossings come from the file's own training (validation) ones
    at10 = (s.pileup == 10) & zero_bias
    assert np.all(s.split[at10 & (split == 0)] == 0) and np.all(s.split[at10 & (split == 1)] == 1)
    assert np.count_nonzero((split < 2) & (s.pileup == 30)) > 0 and np.count_nonzero((split == 2) & (s.pileup == 30))
    with pytest.raises(ValueError, match="must hold the reference pileup 10"):
        crossings.training_split(10, [30], seed=1)


def test_crossings_bad_arguments_are_one_line_errors(tmp_path):
    from l1forge.events.crossings import generate_crossings

    with pytest.raises(ValueError, match="reference pileup 60"):
        generate_crossings(tmp_path / "x.h5", 24, 1, pileups=(140, 200), progress=False)
    with pytest.raises(ValueError, match="unknown signal"):
        generate_crossings(tmp_path / "x.h5", 24, 1, signals=["nope"], progress=False)
