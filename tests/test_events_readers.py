"""Readers of published jet-data layouts (events/external.py), each on a small file written here in its exact layout.

Layouts as in ../shared/data-layouts.md: key names, shapes, dtypes and label encodings; contents are seeded random
physics-like jets (pT-falling constituents around a jet axis).
"""

import awkward as ak
import h5py
import numpy as np
import pandas as pd
import pytest
import uproot
import yaml

from l1forge.events import schema
from l1forge.events.external import convert_external, read_external, stratified_split
from l1forge.events.layout_hls4ml import HLF_NAMES
from l1forge.events.schema import DataError
from l1forge.events.substructure import FEATURE_NAMES, jet_features, pt_eta_phi, wrap_phi

HLS4ML_JET_COLUMNS = [
    "j_ptfrac", "j_pt", "j_eta", "j_mass", "j_tau1_b1", "j_tau2_b1", "j_tau3_b1", "j_tau1_b2", "j_tau2_b2", "j_tau3_b2",
    "j_tau32_b1", "j_tau32_b2", "j_zlogz", "j_c1_b0", "j_c1_b1", "j_c1_b2", "j_c2_b1", "j_c2_b2", "j_d2_b1", "j_d2_b2",
    "j_d2_a1_b1", "j_d2_a1_b2", "j_m2_b1", "j_m2_b2", "j_n2_b1", "j_n2_b2", "j_tau1_b1_mmdt", "j_tau2_b1_mmdt",
    "j_tau3_b1_mmdt", "j_tau1_b2_mmdt", "j_tau2_b2_mmdt", "j_tau3_b2_mmdt", "j_tau32_b1_mmdt", "j_tau32_b2_mmdt",
    "j_c1_b0_mmdt", "j_c1_b1_mmdt", "j_c1_b2_mmdt", "j_c2_b1_mmdt", "j_c2_b2_mmdt", "j_d2_b1_mmdt", "j_d2_b2_mmdt",
    "j_d2_a1_b1_mmdt", "j_d2_a1_b2_mmdt", "j_m2_b1_mmdt", "j_m2_b2_mmdt", "j_n2_b1_mmdt", "j_n2_b2_mmdt",
    "j_mass_trim", "j_mass_mmdt", "j_mass_prun", "j_mass_sdb2", "j_mass_sdm1", "j_multiplicity",
    "j_g", "j_q", "j_w", "j_z", "j_t", "j_undef"]
HLS4ML_PARTICLE_NAMES = [
    "j1_px", "j1_py", "j1_pz", "j1_e", "j1_pdgid", "j1_erel", "j1_pt", "j1_ptrel", "j1_eta", "j1_etarel", "j1_etarot",
    "j1_phi", "j1_phirel", "j1_phirot", "j1_deltaR", "j1_costheta", "j1_costhetarel"]  # 17: pdgid has no column
HLF_COLUMNS = [12, *range(34, 47), 48, 52]
KNOWN_PHI3 = -np.pi + np.arcsin(0.2 * np.sin(0.1))  # 50 sin(phi3) = -(100 - 90) sin(0.1)
JETCLASS_LABELS = ["label_QCD", "label_Hbb", "label_Hcc", "label_Hgg", "label_H4q", "label_Hqql", "label_Zqq",
                   "label_Wqq", "label_Tbqq", "label_Tbl"]


def physics_jets(rng, n, width, min_count=4):
    """n jets of 4..width massive-pion constituents: counts and zero-padded (n, width) px, py, pz, E, pT-ordered."""
    counts = rng.integers(min_count, width + 1, n)
    valid = np.arange(width) < counts[:, None]
    axis_eta, axis_phi = rng.uniform(-2, 2, (n, 1)), rng.uniform(-np.pi, np.pi, (n, 1))
    pt = np.where(valid, -np.sort(-(rng.exponential(20.0, (n, width)) + 0.5), axis=1), 0.0)
    eta = axis_eta + rng.normal(0, 0.25, (n, width))
    phi = wrap_phi(axis_phi + rng.normal(0, 0.25, (n, width)))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.where(valid, np.sqrt(px**2 + py**2 + pz**2 + 0.14**2), 0.0)
    return counts, px, py, pz, e


def jet_sum(px, py, pz, e):
    sums = [a.sum(axis=1, dtype=np.float64) for a in (px, py, pz, e)]
    pt, eta, phi = pt_eta_phi(*sums[:3])
    return pt, eta, phi, np.sqrt(np.maximum(sums[3]**2 - sums[0]**2 - sums[1]**2 - sums[2]**2, 0))


def expected_features(counts, px, py, pz, e, eta, phi, mass):
    valid = np.arange(px.shape[1]) < counts[:, None]
    consts = ak.unflatten(ak.zip({k: np.asarray(a[valid], np.float64)
                                  for k, a in zip(("px", "py", "pz", "E"), (px, py, pz, e))}), counts)
    return jet_features(consts, np.asarray(eta, np.float64), np.asarray(phi, np.float64), np.asarray(mass, np.float64))


def assert_sorted_relative(arrays, counts, px, py, pz, e, jet_eta, jet_phi):
    """Constituents pT-sorted, truncated to 64, with deta/dphi to the given axis, equal to numpy on the inputs."""
    pt, eta, phi = pt_eta_phi(*(np.asarray(a, np.float64) for a in (px, py, pz)))
    order = np.argsort(-pt, axis=1, kind="stable")[:, :64]
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    k = order.shape[1]
    mask = np.arange(k) < np.minimum(counts, 64)[:, None]
    c = arrays["constituents"][:, :k]
    assert np.array_equal(arrays["n_constituents"], np.minimum(counts, 64))
    assert (np.diff(c[:, :, 0], axis=1) <= 0).all()
    np.testing.assert_allclose(c[:, :, 0], np.where(mask, take(pt), 0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(c[:, :, 1], np.where(mask, take(eta) - jet_eta[:, None], 0), atol=2e-5)
    np.testing.assert_allclose(c[:, :, 2], np.where(mask, wrap_phi(take(phi) - jet_phi[:, None]), 0), atol=2e-5)
    np.testing.assert_allclose(c[:, :, 3], np.where(mask, take(np.asarray(e, np.float64)), 0), rtol=1e-5)
    assert not arrays["constituents"][:, k:].any()


# ----------------------------------------------------------------------------------------------- (a) hls4ml HDF5

def write_hls4ml(path, rng, n=40, width=30, known_jet=True):
    """jetImage_*_30p_*.h5: jetConstituentList (N, 30, 16), jets (N, 59), jetFeatureNames, particleFeatureNames."""
    counts, px, py, pz, e = physics_jets(rng, n, width)
    if known_jet:  # jet 0: 50, 100, 90 GeV on both sides of the phi seam, balanced in py: the axis is at phi = pi
        pts, etas = np.array([50.0, 100.0, 90.0]), np.array([0.3, 0.5, 0.1])
        phis = np.array([KNOWN_PHI3, np.pi - 0.1, 0.1 - np.pi])
        counts[0] = 3
        for a in (px, py, pz, e):
            a[0] = 0
        px[0, :3], py[0, :3], pz[0, :3] = pts * np.cos(phis), pts * np.sin(phis), pts * np.sinh(etas)
        e[0, :3] = pts * np.cosh(etas)
    pt, eta, phi = pt_eta_phi(px, py, pz)
    jpt, jeta, jphi, jmass = jet_sum(px, py, pz, e)
    valid = np.arange(width) < counts[:, None]
    lists = np.zeros((n, width, 16), np.float32)
    for k, value in enumerate((px, py, pz, e, e / e.sum(1, keepdims=True), pt, pt / jpt[:, None], eta,
                               eta - jeta[:, None], rng.normal(size=(n, width)), phi, wrap_phi(phi - jphi[:, None]),
                               rng.normal(size=(n, width)),
                               np.hypot(eta - jeta[:, None], wrap_phi(phi - jphi[:, None])),
                               np.tanh(eta), rng.uniform(-1, 1, (n, width)))):
        lists[:, :, k] = np.where(valid, value, 0)
    labels = rng.integers(0, 5, n)
    jets = rng.uniform(0.0, 1.0, (n, 59)).astype(np.float32)
    jets[:, 1], jets[:, 2], jets[:, 3], jets[:, 52] = jpt, jeta, jmass, counts
    if known_jet:
        jets[0, 2] = 0.3  # the file's jet eta, which the reader takes as the axis
    jets[:, 53:58] = np.eye(5)[labels]
    jets[:, 58] = 0
    with h5py.File(path, "w") as f:
        f["jetConstituentList"] = lists
        f["jets"] = jets
        f["jetFeatureNames"] = np.array([c.encode() for c in HLS4ML_JET_COLUMNS])
        f["particleFeatureNames"] = np.array([c.encode() for c in HLS4ML_PARTICLE_NAMES])
        f["jetImage"] = np.zeros((n, 10, 10), np.float32)  # (N, 100, 100) in the real files
    return dict(counts=counts, lists=lists, jets=jets, labels=labels)


def test_hls4ml_hdf5(tmp_path):
    path = tmp_path / "jetImage_7_30p_0_10000.h5"
    truth = write_hls4ml(path, np.random.default_rng(1))
    result = read_external(str(tmp_path / "*.h5"), seed=3)
    a, jets = result["arrays"], truth["jets"]
    assert result["attrs"]["source_layout"] == "hls4ml" and result["class_names"] == ["g", "q", "w", "z", "t"]
    assert np.array_equal(a["labels"], truth["labels"])            # one-hot (g, q, w, z, t) -> 0..4
    assert result["feature_names"] == list(HLF_NAMES)
    np.testing.assert_array_equal(a["features"], jets[:, HLF_COLUMNS])  # zlogz, 13 mmdt ECF ratios, mass_mmdt, mult.
    lists = truth["lists"]
    px, py, pz, e = (lists[:, :, k] for k in range(4))
    jet_phi = np.arctan2(py.sum(1, dtype=np.float64), px.sum(1, dtype=np.float64))
    np.testing.assert_allclose(a["jet"], np.stack([jets[:, 1], jets[:, 2], wrap_phi(jet_phi), jets[:, 3]], 1),
                               atol=1e-5)
    assert_sorted_relative(a, truth["counts"], px, py, pz, e, jets[:, 2], wrap_phi(jet_phi))
    # known jet: pT-sorted 100 @ (0.5, pi - 0.1), 90 @ (0.1, -pi + 0.1), 50 @ (0.3, phi3); axis (0.3 from the file, pi)
    np.testing.assert_allclose(a["constituents"][0, :4], [[100, 0.2, -0.1, 100 * np.cosh(0.5)],
                                                          [90, -0.2, 0.1, 90 * np.cosh(0.1)],
                                                          [50, 0.0, KNOWN_PHI3 + np.pi, 50 * np.cosh(0.3)],
                                                          [0, 0, 0, 0]], atol=3e-5, rtol=1e-6)
    assert a["n_constituents"][0] == 3
    # the 16 flow features from the same constituents, on request, equal events/substructure.py's
    computed = read_external(path, compute_features=True)
    assert computed["feature_names"] == list(FEATURE_NAMES)
    np.testing.assert_allclose(computed["arrays"]["features"],
                               expected_features(truth["counts"], px, py, pz, e, jets[:, 2], jet_phi, jets[:, 3]),
                               rtol=2e-5, atol=1e-6)


def test_convert_writes_a_valid_jet_file_and_chunks_change_nothing(tmp_path):
    write_hls4ml(tmp_path / "a.h5", np.random.default_rng(2), n=25)
    write_hls4ml(tmp_path / "b.h5", np.random.default_rng(3), n=30, width=50)
    info = convert_external(sorted(tmp_path.glob("*.h5")), tmp_path / "out" / "jets.h5", seed=5)
    sample = schema.read_jets(info["path"])
    assert info["n_jets"] == len(sample.labels) == 55 and sample.attrs["source_layout"] == "hls4ml"
    small = read_external([tmp_path / "a.h5", tmp_path / "b.h5"], seed=5, chunk_jets=7)["arrays"]
    for name in schema.DATASETS:
        np.testing.assert_array_equal(getattr(sample, name), small[name])


# ------------------------------------------------------------------------------------------- (b) OpenML HLF table

def test_openml_arff_and_csv(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 16))
    y = rng.choice(["g", "q", "t", "w", "z"], 30)
    lines = ["% hls4ml_lhc_jets_hlf", "@RELATION hls4ml_lhc_jets_hlf", ""]
    lines += [f"@ATTRIBUTE {name} NUMERIC" for name in HLF_NAMES] + ["@ATTRIBUTE class {g,q,t,w,z}", "", "@DATA"]
    lines += [",".join(f"{v:.9g}" for v in row) + f",{c}" for row, c in zip(x, y)]
    (tmp_path / "hls4ml_lhc_jets_hlf.arff").write_text("\n".join(lines) + "\n")
    pd.DataFrame(x, columns=HLF_NAMES).assign(**{"class": y}).to_csv(tmp_path / "hlf.csv", index=False)
    for name in ("hls4ml_lhc_jets_hlf.arff", "hlf.csv"):
        result = read_external(tmp_path / name, chunk_jets=8)
        a = result["arrays"]
        assert result["attrs"]["source_layout"] == "openml" and result["feature_names"] == list(HLF_NAMES)
        # by name, into the HDF5 order (g, q, w, z, t), not the tutorial LabelEncoder's (g, q, t, w, z)
        assert result["class_names"] == ["g", "q", "w", "z", "t"]
        assert [result["class_names"][k] for k in a["labels"]] == list(y)
        np.testing.assert_allclose(a["features"], x, rtol=1e-6)
        assert not a["n_constituents"].any() and result["attrs"]["constituents_available"] == 0


# -------------------------------------------------------------------------------------------- (c) top tagging

def write_toptagging(path, rng, n, fmt="fixed"):
    """pandas HDF5, key 'table': E_i, PX_i, PY_i, PZ_i (i < 200, interleaved per constituent), truth*, ttv, label."""
    counts, px, py, pz, e = physics_jets(rng, n, 200, min_count=5)
    counts = np.minimum(counts, 60)  # real top jets have ~40-80 constituents; the rest of the 200 is zero
    valid = np.arange(200) < counts[:, None]
    px, py, pz, e = (np.where(valid, a, 0.0) for a in (px, py, pz, e))
    columns = {}
    for i in range(200):
        columns.update({f"E_{i}": e[:, i], f"PX_{i}": px[:, i], f"PY_{i}": py[:, i], f"PZ_{i}": pz[:, i]})
    label = rng.integers(0, 2, n)
    columns.update(truthE=rng.uniform(600, 900, n) * label, truthPX=np.zeros(n), truthPY=np.zeros(n),
                   truthPZ=np.zeros(n), ttv=np.zeros(n, np.int64), is_signal_new=label.astype(np.int64))
    pd.DataFrame(columns).to_hdf(path, key="table", mode="w", format=fmt)
    return counts, px, py, pz, e, label


def test_toptagging_files_and_their_split(tmp_path):
    rng = np.random.default_rng(5)
    truth = {name: write_toptagging(tmp_path / f"{name}.h5", rng, n) for name, n in
             (("train", 24), ("val", 10), ("test", 12))}
    result = read_external(str(tmp_path / "*.h5"), chunk_jets=10)
    a = result["arrays"]
    assert result["attrs"]["source_layout"] == "toptagging" and result["attrs"]["split_source"] == "files"
    assert result["class_names"] == ["QCD", "top"] and result["attrs"]["features_source"] == "computed"
    order = ("test", "train", "val")  # sorted glob
    counts, px, py, pz, e, label = (np.concatenate([truth[k][i] for k in order]) for i in range(6))
    assert np.array_equal(a["split"], np.repeat([2, 0, 1], [12, 24, 10]))
    assert np.array_equal(a["labels"], label)
    jet = np.stack(jet_sum(px, py, pz, e), axis=1)  # no jet in the file: the constituents' sum
    np.testing.assert_allclose(a["jet"], jet, rtol=1e-6, atol=1e-5)
    assert_sorted_relative(a, counts, px, py, pz, e, jet[:, 1], jet[:, 2])
    np.testing.assert_allclose(a["features"], expected_features(counts, px, py, pz, e, *jet[:, 1:].T),
                               rtol=2e-5, atol=1e-6)


def test_toptagging_table_format(tmp_path):
    counts, px, py, pz, e, label = write_toptagging(tmp_path / "x.h5", np.random.default_rng(6), 9, fmt="table")
    a = read_external(tmp_path / "x.h5", chunk_jets=4)["arrays"]
    assert np.array_equal(a["labels"], label) and np.array_equal(a["n_constituents"], counts)


def test_jets_too_small_for_the_features_are_dropped(tmp_path):
    write_toptagging(tmp_path / "x.h5", np.random.default_rng(17), 8)
    frame = pd.read_hdf(tmp_path / "x.h5", "table")
    frame.loc[3, [f"{c}_{i}" for c in ("E", "PX", "PY", "PZ") for i in range(2, 200)]] = 0.0  # 2 constituents left
    frame.to_hdf(tmp_path / "x.h5", key="table", mode="w")
    result = read_external(tmp_path / "x.h5")
    assert len(result["arrays"]["labels"]) == 7 and result["attrs"]["dropped_jets_fewer_than_3_constituents"] == 1
    assert np.array_equal(result["arrays"]["labels"], np.delete(frame["is_signal_new"].to_numpy(), 3))


# ------------------------------------------------------------------------------------------------- (d) JetClass

def write_jetclass(path, rng, n, edit=None):
    """JetClass TTree: jagged part_* floats (and int flags), jet_* floats, ten label_* of mixed dtypes."""
    counts, px, py, pz, e = physics_jets(rng, n, 40)
    shuffle = np.argsort(rng.random(px.shape) + (np.arange(40) >= counts[:, None]), axis=1)  # not pT-ordered
    px, py, pz, e = (np.take_along_axis(a, shuffle, axis=1) for a in (px, py, pz, e))
    valid = np.arange(40) < counts[:, None]
    jagged = lambda a: ak.unflatten(a[valid].astype(np.float32), counts)  # noqa: E731
    jpt, jeta, jphi, jmass = jet_sum(px, py, pz, e)
    pt, eta, phi = pt_eta_phi(px, py, pz)
    label = rng.integers(0, 10, n)
    one_hot = np.eye(10)[label]
    data = {"part_px": jagged(px), "part_py": jagged(py), "part_pz": jagged(pz), "part_energy": jagged(e),
            "part_deta": jagged((eta - jeta[:, None]) * np.sign(jeta)[:, None]),
            "part_dphi": jagged(wrap_phi(phi - jphi[:, None])),
            "part_isPhoton": ak.unflatten(np.zeros(counts.sum(), np.int32), counts),
            "jet_pt": jpt.astype(np.float32), "jet_eta": jeta.astype(np.float32), "jet_phi": jphi.astype(np.float32),
            "jet_energy": e.sum(1).astype(np.float32), "jet_nparticles": counts.astype(np.float32),
            "jet_sdmass": (0.8 * jmass).astype(np.float32)}
    dtypes = [np.float32] + [np.bool_] * 5 + [np.int32] * 4  # label_QCD float, H* bool, Z/W/T int32
    data.update({name: one_hot[:, k].astype(dt) for k, (name, dt) in enumerate(zip(JETCLASS_LABELS, dtypes))})
    if edit:
        edit(data)
    with uproot.recreate(path) as f:
        types = {k: ("var * " + str(v.layout.content.dtype) if isinstance(v, ak.Array) else v.dtype)
                 for k, v in data.items()}
        f.mktree("tree", types, counter_name=lambda name: "n_" + name).extend(data)
    return counts, px, py, pz, e, np.stack([jpt, jeta, jphi], 1), data["jet_energy"], label


def test_jetclass_root(tmp_path):
    rng = np.random.default_rng(7)
    parts = []
    for folder, n in (("train_100M", 20), ("val_5M", 8), ("test_20M", 8)):
        (tmp_path / folder).mkdir()
        parts.append(write_jetclass(tmp_path / folder / "HToBB_000.root", rng, n))
    result = read_external(str(tmp_path / "*" / "*.root"), chunk_jets=6)
    a = result["arrays"]
    assert result["attrs"]["source_layout"] == "jetclass" and result["attrs"]["split_source"] == "files"
    assert result["class_names"] == [name.removeprefix("label_") for name in JETCLASS_LABELS]
    order = [2, 0, 1]  # sorted glob: test_20M, train_100M, val_5M
    counts, px, py, pz, e, jet, energy, label = (np.concatenate([parts[k][i] for k in order]) for i in range(8))
    assert np.array_equal(a["labels"], label) and np.array_equal(a["split"], np.repeat([2, 0, 1], [8, 20, 8]))
    jet = jet.astype(np.float32).astype(np.float64)
    f32 = lambda x: x.astype(np.float32)  # noqa: E731  (the branches are float)
    assert_sorted_relative(a, counts, f32(px), f32(py), f32(pz), f32(e), jet[:, 1], jet[:, 2])
    mass = np.sqrt(np.maximum(energy.astype(np.float64)**2 - (jet[:, 0] * np.cosh(jet[:, 1]))**2, 0))
    np.testing.assert_allclose(a["jet"], np.column_stack([jet, mass]), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(a["features"], expected_features(counts, f32(px), f32(py), f32(pz), f32(e),
                                                                jet[:, 1], jet[:, 2], a["jet"][:, 3]),
                               rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------------------------------- (e) a mapping, any file

def test_mapping_hdf5_padded_columns(tmp_path):
    rng = np.random.default_rng(8)
    counts, px, py, pz, e = physics_jets(rng, 30, 20)
    pt, eta, phi = pt_eta_phi(px, py, pz)
    cands = np.stack([pt, eta, phi, np.full_like(pt, 0.14), rng.integers(-1, 2, pt.shape)], axis=2)
    cands *= (pt > 0)[..., None]
    hlf, truth = rng.normal(size=(30, 16)), np.array([b"light", b"b"])[rng.integers(0, 2, 30)]
    fold, w = np.tile([0, 1, 2], 10), rng.uniform(0.5, 2, 30)
    with h5py.File(tmp_path / "ntuple.h5", "w") as f:
        f["cands"], f["hlf"], f["truth"], f["fold"], f["w"] = cands, hlf, truth, fold, w
    names = [f"x{k}" for k in range(16)]
    (tmp_path / "map.yaml").write_text(yaml.safe_dump({
        "constituents": {"pt": "cands[0]", "eta": "cands[1]", "phi": "cands[2]", "mass": "cands[3]"},
        "features": "hlf", "feature_names": names, "labels": {"index": "truth"}, "classes": ["light", "b"],
        "weights": "w", "split": "fold"}))
    result = read_external(tmp_path / "ntuple.h5", mapping=tmp_path / "map.yaml")
    a = result["arrays"]
    assert result["class_names"] == ["light", "b"] and result["feature_names"] == names
    assert [result["class_names"][k] for k in a["labels"]] == [t.decode() for t in truth]
    np.testing.assert_allclose(a["features"], hlf, rtol=1e-6)
    np.testing.assert_allclose(a["weights"], w, rtol=1e-6)
    assert np.array_equal(a["split"], fold) and result["attrs"]["split_source"] == "files"
    jet = np.stack(jet_sum(px, py, pz, e), axis=1)
    np.testing.assert_allclose(a["jet"], jet, rtol=1e-5, atol=1e-5)
    assert_sorted_relative(a, counts, px, py, pz, e, jet[:, 1], jet[:, 2])


def test_mapping_parquet_jagged_computes_features(tmp_path):
    rng = np.random.default_rng(9)
    counts, px, py, pz, e = physics_jets(rng, 25, 30)
    pt, eta, phi = pt_eta_phi(px, py, pz)
    e = np.where(pt > 0, pt * np.cosh(eta), 0)  # massless, as the mapping without energy or mass assumes
    valid = np.arange(30) < counts[:, None]
    jet = np.stack(jet_sum(px, py, pz, e), axis=1)
    sig = rng.integers(0, 2, 25)
    table = ak.zip({"pf_pt": ak.unflatten(pt[valid], counts), "pf_eta": ak.unflatten(eta[valid], counts),
                    "pf_phi": ak.unflatten(phi[valid], counts), "is_sig": sig, "is_bkg": 1 - sig,
                    "kind": ak.Array(["bkg", "sig"])[sig],
                    **{k: jet[:, i].copy() for i, k in enumerate(("jpt", "jeta", "jphi", "jm"))}}, depth_limit=1)
    ak.to_parquet(table, tmp_path / "jets.parquet", row_group_size=10)
    mapping = {"constituents": {"pt": "pf_pt", "eta": "pf_eta", "phi": "pf_phi"},
               "jet": {"pt": "jpt", "eta": "jeta", "phi": "jphi", "mass": "jm"},
               "labels": {"one_hot": ["is_bkg", "is_sig"]}, "classes": ["bkg", "sig"]}
    result = read_external(tmp_path / "jets.parquet", mapping=mapping, chunk_jets=10, seed=2)
    a = result["arrays"]
    assert np.array_equal(a["labels"], sig) and result["feature_names"] == list(FEATURE_NAMES)
    assert_sorted_relative(a, counts, px, py, pz, e, jet[:, 1], jet[:, 2])
    np.testing.assert_allclose(a["features"], expected_features(counts, px, py, pz, e, *jet[:, 1:].T), rtol=1e-5,
                               atol=1e-6)
    by_name = dict(mapping, labels={"index": "kind"}, classes=["sig", "bkg"], features=["jpt"] * 16)
    assert np.array_equal(read_external(tmp_path / "jets.parquet", mapping=by_name)["arrays"]["labels"], 1 - sig)


def test_mapping_root_relative_coordinates(tmp_path):
    rng = np.random.default_rng(10)
    n, counts = 12, rng.integers(3, 15, 12)
    deta, dphi = (ak.unflatten(rng.normal(0, 0.2, counts.sum()).astype(np.float32), counts) for _ in range(2))
    pt = ak.unflatten(rng.exponential(10, counts.sum()).astype(np.float32) + 1, counts)
    data = {"c_pt": pt, "c_deta": deta, "c_dphi": dphi, "jet_pt": np.full(n, 500.0), "jet_eta": rng.uniform(-2, 2, n),
            "jet_phi": rng.uniform(-3, 3, n), "jet_m": np.full(n, 80.0), "cls": rng.integers(0, 3, n).astype(np.int32)}
    with uproot.recreate(tmp_path / "nt.root") as f:
        types = {k: "var * float32" if isinstance(v, ak.Array) else v.dtype for k, v in data.items()}
        f.mktree("Events", types, counter_name=lambda name: "n_" + name).extend(data)
    mapping = {"constituents": {"pt": "c_pt", "deta": "c_deta", "dphi": "c_dphi"},
               "jet": {"pt": "jet_pt", "eta": "jet_eta", "phi": "jet_phi", "mass": "jet_m"},
               "features": [f"jet_{v}" for v in ("pt", "eta", "phi", "m")] * 4,
               "labels": {"index": "cls"}, "classes": ["a", "b", "c"]}
    a = read_external(tmp_path / "nt.root", mapping=mapping)["arrays"]
    assert np.array_equal(a["labels"], data["cls"])
    for j in range(n):
        order = np.argsort(-ak.to_numpy(pt[j]), kind="stable")
        np.testing.assert_allclose(a["constituents"][j, :counts[j], 1], ak.to_numpy(deta[j])[order], atol=2e-5)
        np.testing.assert_allclose(a["constituents"][j, :counts[j], 2], ak.to_numpy(dphi[j])[order], atol=2e-5)


# -------------------------------------------------------------------------------------------------------- split

def test_seeded_split_is_stratified_and_reproducible():
    labels = np.repeat(np.arange(3), [100, 50, 10])
    one, same, other = (stratified_split(labels, 3, seed) for seed in (1, 1, 2))
    assert np.array_equal(one, same) and not np.array_equal(one, other)
    for c, n in enumerate((100, 50, 10)):
        assert np.bincount(one[labels == c], minlength=3).tolist() == [round(0.6 * n), round(0.2 * n),
                                                                       n - round(0.6 * n) - round(0.2 * n)]


def test_split_falls_back_to_seeded_without_all_three_files(tmp_path):
    write_toptagging(tmp_path / "train.h5", np.random.default_rng(11), 20)
    result = read_external(tmp_path / "train.h5", seed=4)
    assert result["attrs"]["split_source"] == "seeded" and set(result["arrays"]["split"]) == {0, 1, 2}
    with pytest.raises(DataError, match="train.h5: split='files'"):
        read_external(tmp_path / "train.h5", split="files")


# ---------------------------------------------------------------------------------------------------- bad input

def _one_line(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


def _edit_h5(path, key, value):
    with h5py.File(path, "a") as f:
        del f[key]
        if value is not None:
            f[key] = value


@pytest.fixture
def hls4ml_file(tmp_path):
    path = tmp_path / "jetImage_0_30p_0_10000.h5"
    write_hls4ml(path, np.random.default_rng(12), n=12)
    return path


def test_bad_missing_key(hls4ml_file):
    _edit_h5(hls4ml_file, "jets", None)
    with pytest.raises(DataError) as excinfo:
        read_external(hls4ml_file)
    _one_line(excinfo, str(hls4ml_file), "'jets'", "missing")


def test_bad_missing_branch(tmp_path):
    with uproot.recreate(tmp_path / "x.root") as f:
        f.mktree("tree", {"part_px": "var * float32"}, counter_name=lambda name: "n_" + name).extend(
            {"part_px": ak.Array([[1.0], [2.0, 3.0]])})
    with pytest.raises(DataError) as excinfo:
        read_external(tmp_path / "x.root")
    _one_line(excinfo, "x.root", "branch 'part_py'", "tree 'tree'")


def test_bad_shape(hls4ml_file):
    _edit_h5(hls4ml_file, "jetConstituentList", np.zeros((12, 30, 15), np.float32))
    with pytest.raises(DataError) as excinfo:
        read_external(hls4ml_file)
    _one_line(excinfo, str(hls4ml_file), "'jetConstituentList'", "(12, 30, 15)", "(N, P, 16)")


def test_bad_dtype(tmp_path):
    write_toptagging(tmp_path / "t.h5", np.random.default_rng(14), 6)
    frame = pd.read_hdf(tmp_path / "t.h5", "table")
    frame["is_signal_new"] = "top"
    frame.to_hdf(tmp_path / "t.h5", key="table", mode="w")
    with pytest.raises(DataError) as excinfo:
        read_external(tmp_path / "t.h5")
    _one_line(excinfo, "t.h5", "is_signal_new", "dtype")


def test_bad_nan_in_constituents(tmp_path):
    write_toptagging(tmp_path / "t.h5", np.random.default_rng(15), 12)
    frame = pd.read_hdf(tmp_path / "t.h5", "table")
    frame.loc[7, "PX_2"] = np.nan
    frame.to_hdf(tmp_path / "t.h5", key="table", mode="w")
    with pytest.raises(DataError) as excinfo:
        read_external(tmp_path / "t.h5", chunk_jets=5)
    _one_line(excinfo, "t.h5", "column 'PX_2'", "NaN/Inf", "row 7")


def test_bad_inf_in_features(hls4ml_file):
    with h5py.File(hls4ml_file, "a") as f:
        f["jets"][5, 12] = np.inf
    with pytest.raises(DataError) as excinfo:
        read_external(hls4ml_file)
    _one_line(excinfo, "column 'j_zlogz' of 'jets'", "row 5")


def test_bad_labels(hls4ml_file, tmp_path):
    with h5py.File(hls4ml_file, "a") as f:
        f["jets"][3, 53:58] = [np.nan, 0, 0, 0, 0]
    with pytest.raises(DataError) as excinfo:
        read_external(hls4ml_file)
    _one_line(excinfo, "jets[j_g..j_t]", "row 3")

    def two_labels(data):
        data["label_QCD"][4], data["label_Hbb"][4] = 1, True
    write_jetclass(tmp_path / "j.root", np.random.default_rng(16), 6, edit=two_labels)
    with pytest.raises(DataError) as excinfo:
        read_external(tmp_path / "j.root")
    _one_line(excinfo, "j.root", "'label_*' row 4 is not one-hot")


def test_bad_input_writes_nothing_and_keeps_the_old_file(hls4ml_file, tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"previous run")
    _edit_h5(hls4ml_file, "jetFeatureNames", np.array([b"j_pt"] * 59))
    with pytest.raises(DataError, match="lacks column 'j_zlogz'"):
        convert_external(hls4ml_file, out)
    assert out.read_bytes() == b"previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([hls4ml_file.name, "out.h5"])


def test_bad_files_and_mappings(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_external(str(tmp_path / "*.h5"))
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DataError, match="other.h5: not a published layout.*give a mapping"):
        read_external(tmp_path / "other.h5")
    (tmp_path / "m.yaml").write_text("constituents: {px: a}\nlabels: {index: y}\nclasses: [a]\ncolour: red\n")
    with pytest.raises(DataError, match="m.yaml: mapping key 'colour' is unknown"):
        read_external(tmp_path / "other.h5", mapping=tmp_path / "m.yaml")
    mapping = {"features": "x", "labels": {"index": "y"}, "classes": ["a"]}
    with pytest.raises(DataError, match="other.h5: dataset 'x' has shape \\(3,\\): no column|dataset 'y'"):
        read_external(tmp_path / "other.h5", mapping=mapping)
