"""events/: Pythia jet generation, the l1forge.jets/1 schema and its validating reader."""

import json
import shutil

import h5py
import numpy as np
import pytest

from l1forge.events.jets import CLASSES, generate_jets
from l1forge.events.schema import DataError, read_jets
from l1forge.events.substructure import FEATURE_NAMES


@pytest.fixture(scope="module")
def sample(smoke_jets):
    return read_jets(smoke_jets)


@pytest.fixture(scope="module")
def n_per_class(sample):
    return sample.attrs["n_per_class"]


def median(sample, cls, feature):
    return np.median(sample.features[sample.labels == CLASSES.index(cls), sample.feature_names.index(feature)])


def test_schema_and_shapes(sample, n_per_class):
    n = n_per_class * len(CLASSES)
    assert sample.constituents.shape == (n, 64, 4) and sample.constituents.dtype == np.float32
    assert sample.features.shape == (n, 16) and sample.feature_names == list(FEATURE_NAMES)
    assert sample.jet.shape == (n, 4) and sample.n_constituents.dtype == np.int16
    assert sample.class_names == list(CLASSES)
    assert np.bincount(sample.labels, minlength=5).tolist() == [n_per_class] * 5
    assert sample.attrs["schema"] == "l1forge.jets/1" and sample.attrs["seed"] == 7
    assert sample.attrs["generator"] == "pythia8mc 8.317.2" and sample.attrs["jet_algorithm"] == "antikt R=0.8"
    assert sample.attrs["sqrt_s_gev"] == 14000.0


def test_split_is_stratified_60_20_20(sample, n_per_class):
    n_train, n_val = round(0.6 * n_per_class), round(0.2 * n_per_class)
    for c in range(len(CLASSES)):
        counts = np.bincount(sample.split[sample.labels == c], minlength=3)
        assert counts.tolist() == [n_train, n_val, n_per_class - n_train - n_val]
    train = sample.subset("train")
    assert len(train.labels) == n_train * len(CLASSES) and (train.split == 0).all()
    assert train.constituents.shape[1:] == (64, 4)


def test_constituents_sorted_padded_and_in_range(sample):
    pt = sample.constituents[..., 0]
    assert (np.diff(pt, axis=1) <= 0).all()
    slots = np.arange(64)[None, :]
    real = slots < sample.n_constituents[:, None]
    assert (pt[real] > 0).all() and (sample.constituents[~real] == 0).all()
    assert (sample.n_constituents == np.minimum(sample.features[:, FEATURE_NAMES.index("multiplicity")], 64)).all()
    dphi = sample.constituents[..., 2][real]
    assert (dphi >= -np.pi).all() and (dphi < np.pi).all() and (np.abs(dphi) < 1.0).all()
    # clustering uses rapidity, so only soft massive hadrons may stray beyond R in pseudorapidity
    assert np.mean(np.abs(sample.constituents[..., 1][real]) < 0.8) > 0.99
    assert np.isfinite(sample.features).all() and np.isfinite(sample.constituents).all()


def test_jet_kinematics_within_cuts(sample):
    pt, eta, phi, mass = sample.jet.T
    assert (pt >= 800).all() and (pt <= 1200).all() and (np.abs(eta) < 2.5).all()
    assert (phi >= -np.pi).all() and (phi < np.pi).all()
    np.testing.assert_allclose(mass, sample.features[:, 0], rtol=1e-6)
    # jets with all constituents stored: their vector sum, in the jet's frame, is the jet pT along phi = 0
    whole = sample.features[:, FEATURE_NAMES.index("multiplicity")] <= 64
    c = sample.constituents[whole].astype(np.float64)
    np.testing.assert_allclose((c[..., 0] * np.cos(c[..., 2])).sum(axis=1), pt[whole], rtol=1e-4)
    np.testing.assert_allclose((c[..., 0] * np.sin(c[..., 2])).sum(axis=1), 0, atol=1e-2)


def test_physics_sanity(sample):
    assert median(sample, "t", "mass") > median(sample, "w", "mass")
    assert median(sample, "t", "mass_mmdt") > median(sample, "w", "mass_mmdt") > median(sample, "g", "mass_mmdt")
    assert 60 < median(sample, "w", "mass_mmdt") < 100 and 70 < median(sample, "z", "mass_mmdt") < 110
    assert 140 < median(sample, "t", "mass_mmdt") < 200
    assert median(sample, "w", "tau21_b1") < median(sample, "q", "tau21_b1")
    assert median(sample, "t", "tau32_b1") < median(sample, "g", "tau32_b1")
    assert median(sample, "g", "multiplicity") > median(sample, "q", "multiplicity")
    for ratio in ("tau21_b1", "tau32_b1"):
        values = sample.features[:, FEATURE_NAMES.index(ratio)]
        assert (values > 0).all() and np.mean(values <= 1) > 0.99


def test_byte_identical_for_any_worker_count(tmp_path):
    kwargs = dict(n_per_class=6, progress=False)
    a = generate_jets(tmp_path / "a.h5", seed=11, workers=1, **kwargs)
    generate_jets(tmp_path / "b.h5", seed=11, workers=2, **kwargs)
    generate_jets(tmp_path / "c.h5", seed=12, workers=2, **kwargs)
    assert a["n_jets"] == 30 and a["per_class"] == {c: 6 for c in CLASSES} and a["jets_per_s"] > 0
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    assert (tmp_path / "a.h5").read_bytes() != (tmp_path / "c.h5").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5", "c.h5"]  # no temp files left


@pytest.fixture
def broken(smoke_jets, tmp_path):
    """A copy of the smoke file to damage."""
    path = tmp_path / "jets.h5"
    shutil.copy(smoke_jets, path)
    return path


def assert_one_line_error(path, *fragments):
    with pytest.raises(DataError) as info:
        read_jets(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_missing_dataset(broken):
    with h5py.File(broken, "a") as f:
        del f["features"]
    assert_one_line_error(broken, "dataset 'features' is missing")


def test_wrong_shape(broken):
    with h5py.File(broken, "a") as f:
        data = f["features"][:, :15]
        del f["features"]
        f["features"] = data
    assert_one_line_error(broken, "dataset 'features' has shape", ", 15), expected (N, 16)")


def test_inconsistent_rows(broken):
    with h5py.File(broken, "a") as f:
        data = f["labels"][:-1]
        del f["labels"]
        f["labels"] = data
    assert_one_line_error(broken, "dataset 'labels' has", "rows")


def test_nan_values(broken):
    with h5py.File(broken, "a") as f:
        f["features"][17, 3] = np.nan
        f["features"][40, :2] = np.inf
    assert_one_line_error(broken, "dataset 'features' contains 3 NaN/Inf values (first at row 17)")


def test_label_and_split_out_of_range(broken):
    with h5py.File(broken, "a") as f:
        f["split"][5] = 3
    assert_one_line_error(broken, "dataset 'split'", "first at row 5")
    with h5py.File(broken, "a") as f:
        f["split"][5] = 0
        f["labels"][9] = 5
    assert_one_line_error(broken, "dataset 'labels'", "first at row 9")


def test_not_hdf5(tmp_path):
    path = tmp_path / "jets.h5"
    path.write_text("not hdf5")
    assert_one_line_error(path, "not a readable HDF5 file")
    assert_one_line_error(tmp_path / "missing.h5", "not a readable HDF5 file")


def test_subset_rejects_unknown_split(sample):
    with pytest.raises(ValueError):
        sample.subset("training")


def test_features_of_a_three_particle_jet():
    """Brute-force check of the batched formulas on a jet small enough to do by hand."""
    import awkward as ak
    from l1forge.events.substructure import jet_features, pt_eta_phi

    pt, eta, phi = np.array([300.0, 200.0, 100.0]), np.array([0.0, 0.3, -0.2]), np.array([0.0, 0.1, 0.4])
    p = {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta), "E": pt * np.cosh(eta)}
    constituents = ak.Array([[dict(zip(p, v)) for v in zip(*p.values())]])
    total = {k: v.sum() for k, v in p.items()}
    mass = np.sqrt(total["E"] ** 2 - total["px"] ** 2 - total["py"] ** 2 - total["pz"] ** 2)
    _, jet_eta, jet_phi = pt_eta_phi(total["px"], total["py"], total["pz"])
    f = dict(zip(FEATURE_NAMES, jet_features(constituents, np.array([jet_eta]), np.array([jet_phi]), np.array([mass]))[0]))

    z = pt / pt.sum()
    dr = np.hypot(eta[:, None] - eta[None, :], phi[:, None] - phi[None, :])
    for beta in (1, 2):
        e2 = sum(z[i] * z[j] * dr[i, j] ** beta for i in range(3) for j in range(i + 1, 3))
        e3 = z.prod() * (dr[0, 1] * dr[0, 2] * dr[1, 2]) ** beta
        assert f[f"c1_b{beta}"] == pytest.approx(e2)
        assert f[f"c2_b{beta}"] == pytest.approx(e3 / e2**2)
        assert f[f"d2_b{beta}"] == pytest.approx(e3 / e2**3)
    assert f["mass"] == pytest.approx(mass) and f["multiplicity"] == 3
    assert f["tau32_b1"] == 0 and 0 < f["tau21_b1"] < 1
    assert f["ptd"] == pytest.approx(np.sqrt((pt**2).sum()) / pt.sum())
    assert f["zlogz"] == pytest.approx((z * np.log(z)).sum())
    assert f["lead_pt_frac"] == pytest.approx(0.5)
    assert f["girth"] == pytest.approx((z * np.hypot(eta - jet_eta, phi - jet_phi)).sum())
    assert 0 < f["mass_mmdt"] <= f["mass"] + 1e-9


def test_options_reach_pythia_and_cuts(tmp_path):
    info = generate_jets(tmp_path / "j.h5", n_per_class=3, seed=5, pt_range=(400.0, 600.0), mpi=False, progress=False)
    sample = read_jets(info["path"])
    settings = json.loads(sample.attrs["settings"])
    assert "PartonLevel:MPI = off" in settings["pythia"]["t"] and settings["cuts"]["pt_range_gev"] == [400, 600]
    assert ((sample.jet[:, 0] >= 400) & (sample.jet[:, 0] <= 600)).all()
    with pytest.raises(ValueError):
        generate_jets(tmp_path / "bad.h5", n_per_class=3, pt_range=(600.0, 400.0), progress=False)
