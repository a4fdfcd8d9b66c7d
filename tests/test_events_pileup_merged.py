"""The merged L1 calorimeter (events/calorimeter.py), its PV-fraction truth, the paired no-pileup sample, and the
particles model's files unchanged."""

import hashlib

import h5py
import numpy as np
import pytest

from l1forge.events import calorimeter
from l1forge.events.l1objects import Particles
from l1forge.events.pfcands import (CHARGED_HADRON, NEUTRAL_HADRON, PHOTON, SCHEMA_2, candidates, read_pileup,
                                    require_paired)
from l1forge.events.schema import DataError

# sha256 of the datasets and attributes (version attributes aside) of conftest's PILEUP_SMALL sample, recorded with
# the code before the merged calorimeter existed (commit 3b0f1f0): calorimeter "particles" writes the same file
PARTICLES_DIGEST = "5b83cd2a2f36d7f3bc0c699d9bb9e195ca7ce86c07c5fa9618a0bbb1f94b309c"


def _digest(path) -> str:
    h = hashlib.sha256()
    with h5py.File(path) as f:
        for k in sorted(f):
            h.update(k.encode())
            h.update(np.ascontiguousarray(f[k][()]).tobytes())
        for k in sorted(set(f.attrs) - {"l1forge_version", "generator"}):
            h.update(k.encode())
            h.update(str(f.attrs[k]).encode())
    return h.hexdigest()


def test_particles_calorimeter_writes_the_samples_of_before(pileup_path):
    assert _digest(pileup_path) == PARTICLES_DIGEST
    assert read_pileup(pileup_path).calorimeter == "particles"


def test_towers_conserve_energy_and_share_it():
    rng = np.random.default_rng(0)
    n = 4000
    event, layer = rng.integers(0, 3, n), rng.integers(0, 2, n)
    eta, phi = rng.uniform(-4, 4, n), rng.uniform(-np.pi, np.pi, n)
    et, pv = rng.exponential(2.0, n), rng.random(n) < 0.3
    cells = calorimeter.merge_deposits(event, layer, eta, phi, et, pv)
    for e in range(3):
        for lay in range(2):
            mine = (cells["event"] == e) & (cells["layer"] == lay)
            own = (event == e) & (layer == lay)
            assert cells["et"][mine].sum() == pytest.approx(et[own].sum(), rel=1e-12)
            assert cells["pv_et"][mine].sum() == pytest.approx(et[own & pv].sum(), rel=1e-12)
    ieta, iphi = calorimeter.tower_index(eta, phi)  # every deposit in the tower-layer of its own position
    c = cells["cell"]
    assert np.array_equal(cells["ieta"][c], ieta) and np.array_equal(cells["iphi"][c], iphi)
    assert np.array_equal(cells["event"][c], event) and np.array_equal(cells["layer"][c], layer)
    assert np.all((cells["pv_et"] >= 0) & (cells["pv_et"] <= cells["et"] * (1 + 1e-12)))
    lo_eta, lo_phi = calorimeter.tower_centre(cells["ieta"], cells["iphi"])  # centroid inside its tower
    assert np.all(np.abs(cells["eta"] - lo_eta) <= calorimeter.DETA / 2 + 1e-9)
    dphi = np.mod(cells["phi"] - lo_phi + np.pi, 2 * np.pi) - np.pi
    assert np.all(np.abs(dphi) <= calorimeter.DPHI / 2 + 1e-9)
    assert calorimeter.tower_index([0.01], [np.pi - 1e-9])[1][0] == calorimeter.N_PHI - 1


def test_merged_candidates_of_a_hand_built_crossing():
    """A PV photon and a pileup photon in one tower make one photon with PV fraction 10/40; a forward pion in the
    same tower is the HCAL candidate; a PV track stays a track (fraction 1), a pileup track one of fraction 0."""
    eta0, phi0 = 3.02, 0.50
    pt = np.array([10.0, 30.0, 25.0, 8.0, 6.0])
    eta = np.array([eta0, eta0 + 0.01, eta0 - 0.01, 0.3, -1.0])
    phi = np.array([phi0, phi0 - 0.01, phi0, 1.0, -2.0])
    pid = np.array([22, 22, 211, 211, -211], np.int32)
    crossing = Particles((pt * np.cos(phi)).astype(np.float32), (pt * np.sin(phi)).astype(np.float32),
                         (pt * np.sinh(eta)).astype(np.float32), pid, np.zeros(5, np.int64), 1)
    vertex = np.array([0, 1, 0, 0, 1])
    out = candidates(crossing, vertex, np.array([1]), np.random.default_rng(0), calorimeter="merged")
    assert out["counts"].tolist() == [4]
    photon, hadron = out["type"] == PHOTON, out["type"] == NEUTRAL_HADRON
    assert photon.sum() == 1 and hadron.sum() == 1
    assert out["pv_fraction"][photon][0] == pytest.approx(10 / 40)
    assert not out["is_pv"][photon][0] and out["pv_fraction"][hadron][0] == 1.0
    assert out["eta"][photon][0] == pytest.approx((10 * eta0 + 30 * (eta0 + 0.01)) / 40, abs=1e-5)
    track = out["type"] == CHARGED_HADRON
    assert sorted(out["pt"][track].tolist()) == pytest.approx([6.0, 8.0], rel=1e-5)
    assert out["pv_fraction"][track][np.argmax(out["pt"][track])] == 1.0
    assert out["pv_fraction"][track][np.argmin(out["pt"][track])] == 0.0
    assert np.all(np.diff(out["pt"]) <= 0)
    with pytest.raises(ValueError, match="calorimeter must be one of"):
        candidates(crossing, vertex, np.array([1]), np.random.default_rng(0), calorimeter="towers")


@pytest.fixture(scope="module")
def merged(merged_path):
    return read_pileup(merged_path)


def test_merged_truth_is_a_fraction_and_one_without_pileup(merged):
    assert merged.attrs["schema"] == SCHEMA_2 and merged.calorimeter == "merged"
    f = merged.pv_fraction
    assert f.dtype == np.float32 and np.all((f >= 0) & (f <= 1))
    assert np.all(f[merged.particle_rows(merged.pileup == 0)] == 1)
    busy = merged.particle_rows(merged.pileup == 30) & ~merged.has_track
    shared = (f[busy] > 0) & (f[busy] < 1)
    assert shared.sum() > 10  # towers that primary and pileup interactions share
    assert np.array_equal(merged.is_pv, f >= 0.5)
    assert np.all(np.isin(f[merged.has_track], (0, 1)))


def test_paired_sample_is_the_hard_scatter_alone(merged):
    """Each crossing's no-pileup event holds exactly its primary-vertex tracks (tracks are unsmeared in pT), and
    subsets keep the pairing."""
    nopu = require_paired(merged)
    assert len(nopu.offsets) == merged.n_events + 1
    for e in range(merged.n_events):
        rows = slice(merged.offsets[e], merged.offsets[e + 1])
        pv_tracks = merged.has_track[rows] & (merged.pv_fraction[rows] == 1)
        own = slice(nopu.offsets[e], nopu.offsets[e + 1])
        tracks = nopu.charge[own] != 0
        assert np.array_equal(np.sort(merged.pt[rows][pv_tracks]), np.sort(nopu.pt[own][tracks]))
    test = merged.subset(merged.split == 2)
    assert test.nopu.offsets[-1] == np.diff(nopu.offsets)[merged.split == 2].sum()
    assert np.array_equal(test.nopu.pt, nopu.pt[np.repeat(merged.split == 2, np.diff(nopu.offsets))])


def test_optimal_transport_needs_the_paired_sample(pileup_path):
    with pytest.raises(DataError) as err:
        require_paired(read_pileup(pileup_path))
    message = str(err.value)
    assert message.startswith(f"{pileup_path}: has no paired") and "regenerate" in message and "\n" not in message


def test_configuration_of_the_calorimeter_and_trainings():
    """merged and both trainings by default; particles alone trains on truth; unknown values are one line naming
    the key."""
    from l1forge.config import ConfigError, load_config

    p = load_config("smoke", task="pileup").pileup
    assert (p.calorimeter, p.is_paired, p.trainings, p.student_training) == (
        "merged", True, ["truth", "optimal_transport"], "optimal_transport")
    p = load_config("smoke", task="pileup", overrides={"pileup": {"calorimeter": "particles"}}).pileup
    assert (p.is_paired, p.trainings, p.student_training) == (False, ["truth"], "truth")
    for key, value in (("calorimeter", "towers"), ("teacher_trainings", ["labels"])):
        with pytest.raises(ConfigError) as err:
            load_config("smoke", task="pileup", overrides={"pileup": {key: value}})
        assert f"key 'pileup.{key}" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="student_teacher_training optimal_transport is not among"):
        load_config("smoke", task="pileup", overrides={"pileup": {"teacher_trainings": ["truth"],
                                                                  "student_teacher_training": "optimal_transport"}})
