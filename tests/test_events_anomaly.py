"""events/: anomaly-detection stream (pileup library and overlay, L1 objects, weights, schema, reader)."""

import math

import h5py
import numpy as np
import pytest

from l1forge.events import l1objects as L
from l1forge.events.anomaly import crossing_fractions, generate_anomaly, read_anomaly
from l1forge.events.l1objects import Particles, l1_objects
from l1forge.events.pileup import overlay
from l1forge.events.processes import check_settings, read_process_file
from l1forge.events.schema import DataError

GEN = dict(n_background=100, n_signal=20, seed=5, pileup=10.0, hard_mpi=False, library_events=200, progress=False)


def event(*particles):
    """One event from (pt, eta, phi, pid) tuples."""
    pt, eta, phi, pid = (np.array(c, np.float64) for c in zip(*particles))
    return Particles((pt * np.cos(phi)).astype(np.float32), (pt * np.sin(phi)).astype(np.float32),
                     (pt * np.sinh(eta)).astype(np.float32), pid.astype(np.int32), np.zeros(len(pt), np.int64), 1)


def centre(ieta, iphi):
    return L.ETA_CENTRES[ieta], L.PHI_CENTRES[iphi]


@pytest.fixture(scope="module")
def anomaly_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("anomaly") / "anomaly.h5"
    info = generate_anomaly(path, workers=2, signals=["a50_4l", "h60_tautau"], **GEN)
    return path, info


def test_objects_of_a_hand_built_event():
    e_eta, e_phi = centre(60, 10)
    m_eta, m_phi = centre(50, 40)
    j_eta, j_phi = centre(70, 60)
    objects = l1_objects(event(
        (40.0, e_eta, e_phi, 11),           # isolated electron
        (30.0, m_eta, m_phi, -13),          # isolated muon
        (20.0, j_eta + 0.1, j_phi, 13),     # muon inside a jet: not isolated
        *[(25.0, j_eta, j_phi + k * L.TOWER_PHI, 211) for k in (-2, 0, 2)],  # one jet
        (50.0, 0.3, 1.0, 12),               # neutrino: invisible
        (5.0, 0.0, 0.0, 13),                # soft isolated muon
        (2.0, *centre(80, 20), 22),         # photon below the 3 GeV e/gamma threshold: a tower only
    ))[0]
    assert objects.shape == (19, 4) and objects.dtype == np.float32
    types = objects[:, 3]
    assert types[0] == 1 and (types[1:5] <= 2).all() and (types[5:9] <= 3).all() and set(types[9:]) <= {0, 4}
    np.testing.assert_allclose(objects[1], [40, e_eta, e_phi, 2], rtol=1e-5)
    assert (objects[2:5] == 0).all()  # one e/gamma, zero-padded
    mu = objects[5:9]
    np.testing.assert_allclose(mu[0], [30, m_eta, m_phi, 3], rtol=1e-5)
    np.testing.assert_allclose(mu[1, [0, 3]], [5, 3], rtol=1e-5)
    assert (mu[2:] == 0).all()  # the non-isolated muon is rejected
    jets = objects[9:]
    assert (jets[:, 3] == 4).sum() == 2 and (jets[2:] == 0).all()  # the pion jet, then the electron's own jet
    assert jets[0, 0] == pytest.approx(25 * (1 + 2 * math.cos(2 * L.TOWER_PHI)), rel=1e-4)
    np.testing.assert_allclose(jets[1], [40, e_eta, e_phi, 4], rtol=1e-4)
    assert (np.diff(objects[5:9, 0]) <= 0).all()
    assert (objects[:, 2] >= -np.pi).all() and (objects[:, 2] < np.pi).all()
    # MET = - vector sum of towers (at tower centres) and all accepted muons, isolated or not
    visible = [(40, e_phi), (30, m_phi), (20, j_phi), (5, 0.0), (2, L.PHI_CENTRES[20])]
    visible += [(25, L.PHI_CENTRES[60 + k]) for k in (-2, 0, 2)]
    mx = -sum(pt * math.cos(phi) for pt, phi in visible)
    my = -sum(pt * math.sin(phi) for pt, phi in visible)
    np.testing.assert_allclose(objects[0, [0, 2]], [math.hypot(mx, my), math.atan2(my, mx)], rtol=1e-4)


def test_smearing_and_empty_events():
    rng = np.random.default_rng(1)
    p = event((40.0, 0.5, 1.0, 11), (30.0, -0.5, -2.0, 13))
    many = Particles(*(np.tile(a, 200) for a in p[:4]), np.repeat(np.arange(200), 2), 200)
    objects = l1_objects(many, rng)
    assert 0.01 < np.std(objects[:, 1, 0]) / 40 < 0.06 and 0.1 < np.std(objects[:, 5, 0]) / 30 < 0.2
    empty = l1_objects(Particles(*(np.zeros(0, t) for t in (np.float32,) * 3 + (np.int32, np.int64)), 3), rng)
    assert (empty[:, 0, 3] == 1).all() and (empty[:, 0, :3] == 0).all() and (empty[:, 1:] == 0).all()


def test_overlay_counts_rotation_and_identity():
    library = {"px": np.array([3.0, 1.0, 0.5], np.float32), "py": np.array([4.0, 0.0, 0.5], np.float32),
               "pz": np.array([2.0, 1.0, -1.0], np.float32), "pid": np.array([211, 22, 211], np.int32),
               "offsets": np.array([0, 1, 2, 3])}
    hard = event((40.0, 0.5, 1.0, 11), (30.0, -0.5, -2.0, 13))
    same = overlay(hard, library, 0.0, np.random.default_rng(0))
    for a, b in zip(same[:5], hard[:5]):
        np.testing.assert_array_equal(a, b)
    empty = Particles(*(np.zeros(0, t) for t in (np.float32,) * 3 + (np.int32, np.int64)), 4000)
    out = overlay(empty, library, 7.5, np.random.default_rng(1))
    counts = np.bincount(out.event, minlength=4000)  # one particle per library event
    assert abs(counts.mean() - 7.5) < 0.15 and abs(counts.var() - 7.5) < 0.6
    pt_lib = {round(float(x), 4) for x in np.hypot(library["px"], library["py"])}
    assert {round(float(x), 4) for x in np.hypot(out.px, out.py)} <= pt_lib
    assert np.std(np.arctan2(out.py, out.px)) > 1.5  # phi is rotated
    assert set(np.round(np.abs(out.pz), 4)) <= {1.0, 2.0} and (out.pz < 0).mean() > 0.3  # eta mirror


def test_crossing_fractions_by_hand():
    f = crossing_fractions({"a": 1.0, "b": 3.0}, sigma_inel_mb=80.0, mu=20.0)
    hard = 1 - math.exp(-20 * 4 / 80)
    assert f["minbias"] == pytest.approx(math.exp(-1.0))
    assert f["a"] == pytest.approx(hard / 4) and f["b"] == pytest.approx(3 * hard / 4)
    assert sum(f.values()) == pytest.approx(1.0)
    rare = crossing_fractions({"x": 1e-6}, 80.0, 200.0)
    assert rare["x"] == pytest.approx(200 * 1e-6 / 80, rel=1e-5)


def test_generated_file_and_physics(anomaly_file):
    path, info = anomaly_file
    s = read_anomaly(path)
    names = ["minbias", "qcd_pthat30_50", "qcd_pthat50_80", "qcd_pthat80_120", "qcd_pthat120_170",
             "qcd_pthat170_300", "qcd_pthat300", "wlnu", "zll", "ttbar", "a50_4l", "h60_tautau"]
    assert s.sample_names == names and info["n_events"] == 140 == len(s.objects)
    assert s.objects.shape == (140, 19, 4) and s.objects.dtype == np.float32 and s.sample.dtype == np.int16
    assert np.bincount(s.sample).tolist() == [50, 6, 6, 6, 6, 6, 5, 5, 5, 5, 20, 20]
    k = {name: i for i, name in enumerate(names)}
    assert s.attrs["schema"] == "l1forge.anomaly/1" and s.attrs["pileup_mu"] == 10.0
    bkg = ~s.is_signal
    assert s.weight[bkg].sum() == pytest.approx(1.0) and (s.split[s.is_signal] > 0).all()
    frac = s.weight[s.sample == k["qcd_pthat30_50"]].sum()
    sigma = info["cross_section_mb"]
    assert frac == pytest.approx(10 * sigma["qcd_pthat30_50"] / s.attrs["sigma_inel_mb"], rel=0.1)
    for signal in ("a50_4l", "h60_tautau"):
        np.testing.assert_allclose(s.weight[s.sample == k[signal]], 1 / 20)
    train = s.subset("train")
    assert not train.is_signal.any() and train.weight.sum() == pytest.approx(1.0)
    assert s.subset("test").weight[s.subset("test").sample == k["a50_4l"]].sum() == pytest.approx(1.0)
    leptons = (s.objects[:, 1:9, 0] > 0).sum(axis=1)
    assert leptons[s.sample == k["a50_4l"]].mean() > 2.0 > leptons[s.sample == 0].mean() + 1
    lead_jet = s.objects[:, 9, 0]
    assert np.median(lead_jet[s.sample == k["qcd_pthat300"]]) > 200 > np.median(lead_jet[s.sample == 0])
    assert np.median(s.true_met[s.sample == k["wlnu"]]) > 15 > np.median(s.true_met[s.sample == 0])
    assert (s.objects[..., 2] >= -np.pi).all() and (s.objects[..., 2] < np.pi).all()


def test_same_bytes_with_one_worker(anomaly_file, tmp_path):
    path, _ = anomaly_file
    other = tmp_path / "one.h5"
    generate_anomaly(other, workers=1, signals=["a50_4l", "h60_tautau"], **GEN)
    assert other.read_bytes() == path.read_bytes()


def test_reads_adc2021_style_file(tmp_path, anomaly_file):
    objects = read_anomaly(anomaly_file[0]).objects[:30]
    adc = tmp_path / "background_for_training.h5"
    with h5py.File(adc, "w") as f:
        f["Particles"] = objects.astype(np.float64)
    s = read_anomaly(adc)
    np.testing.assert_array_equal(s.objects, objects)
    assert s.sample_names == ["background_for_training"] and not s.is_signal.any() and s.true_met is None
    assert s.weight.sum() == pytest.approx(1.0) and np.bincount(s.split).tolist() == [18, 6, 6]
    assert read_anomaly(adc, signal=True).is_signal.all()


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.__setitem__("Particles", np.zeros((5, 19, 3), np.float32)),
     "dataset 'Particles' has shape (5, 19, 3), expected (N, 19, 4)"),
    (lambda f: f.__setitem__("Particles", np.full((5, 19, 4), np.nan, np.float32)), "dataset 'Particles' has 5 row(s) with NaN/Inf"),
    (lambda f: f.__setitem__("Particles", np.ones((5, 19, 4), np.float32)), "dataset 'Particles' has 5 row(s) with type codes off"),
])
def test_bad_adc_files(tmp_path, edit, message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        edit(f)
    with pytest.raises(DataError) as err:
        read_anomaly(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_bad_own_file(tmp_path, anomaly_file):
    path = tmp_path / "broken.h5"
    path.write_bytes(anomaly_file[0].read_bytes())
    with h5py.File(path, "a") as f:
        w = f["weight"][()]
        w[3] = np.nan
        del f["weight"]
        f["weight"] = w
    with pytest.raises(DataError, match=r"broken.h5: dataset 'weight' has 1 row\(s\) with NaN/Inf values \(first at row 3\)"):
        read_anomaly(path)


def test_process_files_and_settings(tmp_path):
    good = tmp_path / "zprime.cmnd"
    good.write_text("# Z' to leptons\nNewGaugeBoson:ffbar2gmZZprime = on  # switch\n\n32:m0 = 1000.\n")
    assert read_process_file(good) == ["NewGaugeBoson:ffbar2gmZZprime = on", "32:m0 = 1000."]
    pythia_style = tmp_path / "pythia.cmnd"  # as Pythia's own example files: '!' comments, alone and after a setting
    pythia_style.write_text("! main03.cmnd-like file\n! 1) Settings\nNewGaugeBoson:ffbar2gmZZprime = on   ! Z'\n"
                            "32:m0 = 1000.   ! mass in GeV\n")
    assert read_process_file(pythia_style) == ["NewGaugeBoson:ffbar2gmZZprime = on", "32:m0 = 1000."]
    # Pythia: a line not starting with a letter or digit is a comment; '=' or blanks separate key and value
    loose = tmp_path / "loose.cmnd"
    loose.write_text("// C++-style comment\n* starred\n  32:m0 1000.\n32:onIfAny=11 13\n")
    assert read_process_file(loose) == ["32:m0 1000.", "32:onIfAny=11 13"]
    for text, expected in [("HardQCD:all = on\nHardQCD:nonsense = on\n",
                            ":2: Pythia rejects setting 'HardQCD:nonsense = on'"),
                           ("HardQCD:all = maybe\n", ":1: Pythia rejects setting 'HardQCD:all = maybe'"),
                           ("PhaseSpace:pTHatMin = abc\n", ":1: Pythia rejects setting"),
                           ("HardQCD:all\n", ":1: expected 'Key = value'"),
                           # Pythia itself reads a bad number of particle data as 0
                           ("HardQCD:all = on\n32:m0 = abc\n", ":2: Pythia rejects setting '32:m0 = abc'"),
                           ("32:onIfAny = 11 mu\n", ":1: Pythia rejects setting '32:onIfAny = 11 mu'"),
                           ("Random:seed = 3\n", ":1: setting 'Random:seed = 3' is not allowed")]:
        bad = tmp_path / "bad.cmnd"
        bad.write_text(text)
        with pytest.raises(ValueError) as err:
            read_process_file(bad)
        assert str(err.value).startswith(f"{bad}{expected}") and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="extra process 'x': Pythia rejects setting 'Foo:bar = 1'"):
        check_settings(["HardQCD:all = on", "Foo:bar = 1"], "extra process 'x'")
    with pytest.raises(ValueError, match="extra process 'bad'"):
        generate_anomaly(tmp_path / "x.h5", extra_processes={"bad": ["Nope:nope = 1"]}, **GEN)
