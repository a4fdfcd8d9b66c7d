"""Pileup-mitigation data (events/pfcands.py) and classic mitigation (events/mitigation.py), on real tiny samples."""

import dataclasses
import pathlib

import h5py
import numpy as np
import pytest
from scipy.stats import chi2

from l1forge.events import mitigation
from l1forge.events.l1objects import Particles
from l1forge.events.pfcands import (CHARGED_HADRON, MUON, NEUTRAL_HADRON, PileupSample, candidates, generate_pileup,
                                    read_pileup)
from l1forge.events.pileup import overlay
from l1forge.events.schema import DataError
from l1forge.resolution import met, met_performance, performance



@pytest.fixture(scope="module")
def sample_path(pileup_path):
    return pileup_path


@pytest.fixture(scope="module")
def sample(pileup_path):
    return read_pileup(pileup_path)


def test_layout_splits_and_pileup(sample):
    assert sample.n_events == 12 + 2 * 6 and sample.offsets[-1] == len(sample.pt)
    assert sorted(set(sample.pileup[sample.split == 2].tolist())) == [0.0, 30.0]
    assert set(sample.split[sample.pileup == 10].tolist()) <= {0, 1} and (sample.split == 0).sum() >= 6
    assert np.all(np.diff(np.bincount(sample.process)) == 0)  # the processes share the events equally
    counts = np.diff(sample.offsets)
    assert counts[sample.pileup == 30].mean() > 2 * counts[sample.pileup == 0].mean()
    assert np.all(sample.n_pileup[sample.pileup == 0] == 0)
    for e in range(sample.n_events):  # candidates ordered by decreasing pT within each crossing
        assert np.all(np.diff(sample.pt[sample.offsets[e]:sample.offsets[e + 1]]) <= 0)
    assert np.all((sample.pt > 1.0) & (np.abs(sample.eta) < 4.0) & (np.abs(sample.phi) <= np.pi))
    track = sample.has_track
    assert np.all(np.isin(sample.type[track], [0, 1, 2])) and np.all(np.isin(sample.type[~track], [3, 4]))
    assert np.all(sample.dz[~track] == 0) and np.all(sample.pt[track] > 2.0)


def test_truth_labels(sample):
    """Without pileup everything is from the primary vertex; PV tracks sit near dz = 0, pileup tracks spread."""
    zero = sample.particle_rows(sample.pileup == 0)
    assert sample.is_pv[zero].all()
    busy = sample.particle_rows(sample.pileup == 30)
    assert 0.02 < sample.is_pv[busy].mean() < 0.5
    pv, pu = sample.has_track & sample.is_pv, sample.has_track & ~sample.is_pv
    assert np.percentile(np.abs(sample.dz[pv]), 95) < 0.6 and np.std(sample.dz[pu]) > 3.0
    # the truth MET is the invisible pT: PV-only candidates measure it far better than all candidates
    truth = met_performance(met(sample, sample.is_pv)[sample.pileup == 30], sample.true_met[sample.pileup == 30])
    everything = met_performance(met(sample, np.ones(len(sample.pt)))[sample.pileup == 30],
                                 sample.true_met[sample.pileup == 30])
    assert truth["resolution_gev"] < everything["resolution_gev"]
    assert np.all(sample.truth_jets[..., 0][sample.truth_jets[..., 0] > 0] >= 20.0)


def test_overlay_keeps_the_hard_interaction_first():
    library = {"px": np.arange(1.0, 11.0, dtype=np.float32), "py": np.zeros(10, np.float32),
               "pz": np.ones(10, np.float32), "pid": np.full(10, 211, np.int32), "offsets": np.array([0, 3, 4, 8, 10])}
    hard = Particles(np.array([50.0, 60.0, 70.0], np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32),
                     np.array([211, -211, 22], np.int32), np.array([0, 1, 2]), 3)
    crossing, vertex, n_pileup = overlay(hard, library, 5.0, np.random.default_rng(1), with_vertex=True)
    assert np.all(vertex[:3] == 0) and np.all(vertex[3:] >= 1) and np.array_equal(crossing.px[:3], hard.px)
    for e in range(3):  # pileup interactions numbered 1..n_pileup in each crossing, each a whole library event
        own = crossing.event[3:] == e
        assert set(vertex[3:][own].tolist()) == set(range(1, n_pileup[e] + 1))
        sizes = np.bincount(vertex[3:][own])[1:]
        assert set(sizes.tolist()) <= {1, 2, 3, 4}
    pt = np.hypot(crossing.px[3:], crossing.py[3:])
    assert set(np.round(pt).astype(int).tolist()) <= set(range(1, 11))  # rotated in phi, pT kept
    plain = overlay(hard, library, 5.0, np.random.default_rng(1))  # the same draws with or without the vertex
    assert np.array_equal(plain.px, crossing.px)


def test_candidates_of_a_hand_built_crossing():
    """A charged pion inside the tracker becomes a track; one outside, a smeared neutral; a muon outside, nothing."""
    px = np.array([5.0, 5.0, 5.0, 0.1], np.float32)
    pz = np.array([0.0, 5.0 * np.sinh(3.0), 5.0 * np.sinh(3.0), 0.0], np.float32)
    pid = np.array([211, 211, 13, 22], np.int32)
    crossing = Particles(px, np.zeros(4, np.float32), pz, pid, np.zeros(4, np.int64), 1)
    out = candidates(crossing, np.array([0, 0, 0, 0]), np.array([0]), np.random.default_rng(0))
    assert out["counts"].tolist() == [2]  # the soft photon is below threshold, the forward muon has no track
    track = out["charge"] != 0
    assert out["type"][track].tolist() == [CHARGED_HADRON] and out["pt"][track][0] == pytest.approx(5.0)
    assert out["type"][~track].tolist() == [NEUTRAL_HADRON] and abs(out["eta"][~track][0] - 3.0) < 1e-5
    assert abs(out["dz"][track][0]) < 1.0 and out["dz"][~track][0] == 0


def test_generation_is_reproducible(sample_path, pileup_settings, tmp_path):
    other = tmp_path / "again.h5"
    generate_pileup(other, workers=2, **pileup_settings)
    with h5py.File(sample_path) as a, h5py.File(other) as b:
        for key in a:
            assert np.array_equal(a[key][()], b[key][()]), key


@pytest.mark.parametrize("key, value, message", [
    ("pt", np.nan, "dataset 'pt' has 1 row(s) with NaN/Inf"),
    ("offsets", None, "dataset 'offsets' must start at 0"),
    ("split", 7, "dataset 'split' has values outside"),
])
def test_bad_files_are_one_line_errors(sample_path, tmp_path, key, value, message):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(pathlib.Path(sample_path).read_bytes())
    with h5py.File(bad, "r+") as f:
        data = f[key][()]
        if key == "offsets":
            data = data[::-1].copy()
        else:
            data[0] = value
        del f[key]
        f[key] = data
    with pytest.raises(DataError) as err:
        read_pileup(bad)
    assert str(err.value).startswith(f"{bad}: {message}") and "\n" not in str(err.value)


def _event(rows):
    """A one-crossing PileupSample from (pt, eta, phi, dz, type, is_pv) rows (type < 3 = track)."""
    pt, eta, phi, dz, kind, pv = (np.array(c) for c in zip(*rows))
    n = len(rows)
    return PileupSample(
        path=pathlib.Path("hand"), pt=pt.astype(np.float32), eta=eta.astype(np.float32), phi=phi.astype(np.float32),
        dz=dz.astype(np.float32), charge=np.where(kind < 3, 1, 0).astype(np.int8), type=kind.astype(np.int8),
        is_pv=pv.astype(bool), offsets=np.array([0, n]), process=np.zeros(1, np.int16), process_names=["hand"],
        pileup=np.zeros(1, np.float32), n_pileup=np.zeros(1, np.int16), split=np.full(1, 2, np.int8),
        true_met=np.zeros((1, 2), np.float32), truth_jets=np.zeros((1, 8, 4), np.float32), attrs={})


def test_puppi_weights_of_a_hand_built_crossing():
    """One PV track, four pileup tracks at dR 0.20..0.35 from it (the pileup alpha distribution), a neutral next
    to the PV track and one far from everything: weights follow alpha, the median/left-RMS and the chi2 CDF."""
    rows = [(10.0, 0.0, 0.0, 0.0, CHARGED_HADRON, 1)]
    rows += [(2.0, d, 0.0, 5.0, CHARGED_HADRON, 0) for d in (0.20, 0.25, 0.30, 0.35)]
    rows += [(20.0, 0.0, 0.05, 0.0, NEUTRAL_HADRON, 1), (5.0, 1.5, 2.0, 0.0, NEUTRAL_HADRON, 0),
             (3.0, 0.0, -0.22, 0.0, NEUTRAL_HADRON, 0)]
    event = _event(rows)
    alpha_pu = np.log((10.0 / np.array([0.20, 0.25, 0.30, 0.35])) ** 2)
    median = np.median(alpha_pu)
    rms = np.sqrt(np.mean((alpha_pu[alpha_pu <= median] - median) ** 2))
    expected_near = chi2.cdf((np.log((10 / 0.05) ** 2) - median) ** 2 / rms**2, 1)
    expected_mid = chi2.cdf((np.log((10 / 0.22) ** 2) - median) ** 2 / rms**2, 1)
    w = mitigation.puppi_weights(event)
    assert w[:5].tolist() == [1, 0, 0, 0, 0]  # tracks: by dz
    assert w[5] == pytest.approx(expected_near, rel=1e-5) and w[5] > 0.99
    assert w[6] == 0  # no PV track within R0: alpha = -inf
    assert w[7] == pytest.approx(expected_mid, rel=1e-5) and 0.5 < w[7] < 0.9
    assert mitigation.chs_weights(event).tolist() == [1, 0, 0, 0, 0, 1, 1, 1]
    sums = mitigation.local_sums(event, 0.4)  # PV tracks, pileup tracks, neutrals within 0.4 (itself excluded)
    assert sums[5].tolist() == pytest.approx([10.0, 8.0, 3.0])
    assert sums[6].tolist() == [0, 0, 0]


def test_neighbours_wrap_in_phi_and_stay_in_their_crossing():
    a = _event([(5.0, 0.0, 3.10, 0.0, NEUTRAL_HADRON, 1), (5.0, 0.0, -3.10, 0.0, NEUTRAL_HADRON, 1)])
    both = dataclasses.replace(a, pt=np.tile(a.pt, 2), eta=np.tile(a.eta, 2), phi=np.tile(a.phi, 2),
                               offsets=np.array([0, 2, 4]))
    i, j, dr = (np.concatenate(a) for a in zip(*mitigation.neighbour_pairs(both.event, both.eta, both.phi, 0.2)))
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert dr == pytest.approx(2 * np.pi - 6.2, rel=1e-5)


def test_mitigation_improves_met_at_pileup(sample):
    """On the real sample: PUPPI-like beats no mitigation on MET, and the truth weights beat both."""
    sub = sample.subset(sample.split == 2)
    table = performance(sub, {"none": np.ones(len(sub.pt)), "puppi": mitigation.puppi_weights(sub),
                              "truth": sub.is_pv.astype(float)})["30"]
    res = {k: v["met"]["resolution_gev"] for k, v in table.items()}
    assert res["truth"] < res["puppi"] < res["none"]
    assert table["puppi"]["auc_neutral"] > 0.55 and table["truth"]["auc"] == 1.0


def test_regional_cap_keeps_the_hardest_candidates_of_each_region(sample):
    """Against a plain per-(crossing, region) loop: the cap keeps exactly the `cap` highest-pT candidates."""
    cap, n_eta, n_phi = 3, 4, 3
    kept = mitigation.regional_cap(sample, n_eta, n_phi, cap)
    region = mitigation.region_index(sample.eta, sample.phi, n_eta, n_phi)
    assert region.min() >= 0 and region.max() < n_eta * n_phi
    for e in range(min(sample.n_events, 6)):
        rows = np.arange(sample.offsets[e], sample.offsets[e + 1])
        for r in np.unique(region[rows]):
            members = rows[region[rows] == r]
            hardest = members[np.argsort(-sample.pt[members], kind="stable")[:cap]]
            assert set(members[kept[members]]) == set(hardest)
    selected = sample.select(kept)
    assert selected.n_events == sample.n_events and len(selected.pt) == kept.sum()
    assert np.bincount(selected.event, minlength=sample.n_events).max() <= cap * n_eta * n_phi
    assert np.array_equal(selected.pt, sample.pt[kept]) and np.array_equal(selected.is_pv, sample.is_pv[kept])


def test_student_weights_tracks_by_vertex_network_on_neutrals():
    """The deployable student's weights on a hand-built crossing, a cap of 2 in one region: the two hardest are a
    PV track (CHS weight 1) and a neutral (the network's weight, clipped); the pileup track kept in another region
    gets CHS 0; what the cap drops gets 0. 'network' hands every kept candidate to the network instead."""
    from l1forge.tasks.pileup import PileupConfig
    from l1forge.students.pileup import INPUT_NAMES, network_inputs, region_kept, student_candidates, student_weights

    rows = [(10.0, 0.1, 0.1, 0.0, CHARGED_HADRON, 1), (8.0, 0.12, 0.1, 0.0, NEUTRAL_HADRON, 1),
            (3.0, 0.15, 0.12, 0.0, NEUTRAL_HADRON, 0), (4.0, -2.0, -2.0, 5.0, MUON, 0)]
    event = _event(rows)
    p = PileupConfig(region_eta=2, region_phi=2, region_cap=2)
    kept = region_kept(event, p)
    assert kept.tolist() == [True, True, False, True]
    assert student_candidates(event, kept, p).tolist() == [False, True, False, False]
    x = network_inputs(event, kept, p)
    assert x.shape == (1, len(INPUT_NAMES)) and x[0, 0] == pytest.approx(8.0 * 2**-3)
    assert x[0, INPUT_NAMES.index("sum_pv_tracks_r0.1")] == pytest.approx(10.0 * 2**-3)  # its PV-track neighbour
    assert student_weights(event, kept, p, np.array([1.7])).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert student_weights(event, kept, p, np.array([0.25])).tolist() == [1.0, 0.25, 0.0, 0.0]
    every = p.model_copy(update={"student_tracks": "network"})
    assert student_candidates(event, kept, every).tolist() == [True, True, False, True]
    assert student_weights(event, kept, every, np.array([0.5, -1.0, 0.75])).tolist() == [0.5, 0.0, 0.0, 0.75]
