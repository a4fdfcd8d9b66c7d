"""Constituent students: the L1 words of the constituents (quantize/l1words.py) and the deep-sets network."""

import math

import numpy as np
import pytest

from l1forge.events.schema import DataError, read_jets
from l1forge.quantize.fixed import FixedType
from l1forge.quantize.l1words import DETA, L1_CONSTITUENT, PT, VALID, constituent_inputs


def test_words_have_the_l1_lsbs_rounding_and_saturation():
    assert PT.lsb == 0.25 and (PT.width, PT.signed) == (14, False) and PT.max_code == 2**14 - 1
    assert DETA.lsb == math.pi / 720 and (DETA.width, DETA.signed) == (10, True) and DETA.min_code == -512
    # pT truncates (ap_ufixed AP_TRN) and saturates; angles round to nearest and saturate
    assert PT.encode(np.array([0.0, 0.24, 0.25, 10.37, 5000.0])).tolist() == [0, 0, 1, 41, 16383]
    lsb = math.pi / 720
    assert DETA.encode(np.array([0.4 * lsb, 0.6 * lsb, -0.6 * lsb, 3.0, -3.0])).tolist() == [0, 1, -1, 511, -512]
    # the valid flag is the OR of the pT code's bits: 0 below one pT LSB, 1 from it on
    assert VALID.encode(np.array([0.0, 0.24, 0.25, 10.37, 5000.0])).tolist() == [0, 0, 1, 1, 1]
    assert L1_CONSTITUENT.bits == 34 and L1_CONSTITUENT.n_features == 4 and L1_CONSTITUENT.n_columns == 3


def test_network_values_are_exact_in_the_default_input_type():
    rng = np.random.default_rng(1)
    cons = np.stack([rng.uniform(0, 1020, 1000), rng.uniform(-1, 1, 1000), rng.uniform(-1, 1, 1000)], axis=1)
    cons[:4, 0] = [0.0, 0.1, 0.24, 0.25]  # below and at one pT LSB
    x = L1_CONSTITUENT.to_network(L1_CONSTITUENT.encode(cons))
    t = FixedType.parse("fixed<16,6,RND_CONV,SAT>")
    L1_CONSTITUENT.check_input_type(t)
    np.testing.assert_array_equal(t.quantize(x), x)  # the input quantizer changes nothing
    np.testing.assert_allclose(x[:, 0] * 32, cons[:, 0], atol=0.25)  # pT / 32 GeV, within one LSB
    np.testing.assert_allclose(x[:, 1] * 0.1396, cons[:, 1], atol=0.0025)  # deta / (32 pi / 720)
    assert set(x[:, 3]) == {0.0, 1.0} and (x[:, 3] == (cons[:, 0] >= 0.25)).all()
    hard = L1_CONSTITUENT.to_network(L1_CONSTITUENT.encode(np.array([[1500.0, 0.0, 0.0]])))
    assert t.quantize(hard)[0, 0] == t.max_value  # pT saturates at 1024 GeV in the input type, as documented
    with pytest.raises(ValueError, match="fractional bits"):
        L1_CONSTITUENT.check_input_type(FixedType.parse("fixed<6,0,RND_CONV,SAT>"))


def test_inputs_are_leading_constituents_zero_padded():
    cons = np.zeros((2, 5, 4))
    cons[0, :3, 0] = [300.0, 200.0, 100.0]
    cons[0, :3, 1] = [0.1, -0.2, 0.3]
    cons[1, :5, 0] = [50.0, 40.0, 30.0, 20.0, 10.0]
    cons[1, 4, 2] = 0.5  # past n_constituents = 4 below: must be zeroed
    x = constituent_inputs(cons, np.array([3, 4]), 4)
    assert x.shape == (2, 4, 4)
    assert x[0, 3].tolist() == [0, 0, 0, 0] and x[0, 0, 0] == 300 / 32 and x[1, 3, 0] == 20 / 32
    assert x[:, :, 3].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]  # valid flag: 0 on the padded slot
    with pytest.raises(ValueError, match="n_constituents=6 but 5"):
        constituent_inputs(cons, np.array([3, 4]), 6)
    with pytest.raises(ValueError, match="word needs 3"):
        constituent_inputs(cons[..., :2], np.array([3, 4]), 4)


def test_jet_word_mass_multiplicity_and_slot(smoke_jets):
    """The jet word (quantize/l1words.py L1_JET): the small-angle mass of massless candidates against the exact
    invariant mass, rotation invariance, the multiplicity, and its slot in place of the last constituent."""
    from l1forge.quantize.l1words import L1_JET, jet_summary
    from l1forge.students.augment import rotate_about_axis

    # two candidates, 100 and 50 GeV, 0.1 apart: m^2 = pt1 pt2 dR^2 = 50 GeV^2; exact 2 pt1 pt2 (cosh deta - cos dphi)
    pair = np.array([[[100.0, 0.03, 0.04, 0], [50.0, -0.03, -0.04, 0], [7.0, 0.5, 0.5, 0]]])
    mass, count = jet_summary(pair, np.array([2]))[0]  # the third candidate is past n_constituents: ignored
    assert count == 2 and mass == pytest.approx(math.sqrt(50.0), rel=1e-12)
    assert mass == pytest.approx(math.sqrt(2 * 100 * 50 * (math.cosh(0.06) - math.cos(0.08))), rel=2e-3)
    jets = read_jets(smoke_jets)
    summary = jet_summary(jets.constituents, jets.n_constituents)
    np.testing.assert_array_equal(summary[:, 1], jets.n_constituents)
    # against the exact invariant mass of the same candidates taken massless (eta = jet eta + deta, ...)
    c = jets.constituents.astype(np.float64)
    pt, eta, phi = c[..., 0], jets.jet[:, 1:2] + c[..., 1], jets.jet[:, 2:3] + c[..., 2]
    p4 = [(pt * f).sum(1) for f in (np.cosh(eta), np.cos(phi), np.sin(phi), np.sinh(eta))]
    exact = np.sqrt(p4[0] ** 2 - p4[1] ** 2 - p4[2] ** 2 - p4[3] ** 2)
    deviation = np.abs(summary[:, 0] / exact - 1)
    assert np.median(deviation) < 0.005 and np.quantile(deviation, 0.99) < 0.03
    turned = jet_summary(rotate_about_axis(jets.constituents, np.random.default_rng(0)), jets.n_constituents)
    np.testing.assert_allclose(turned, summary, rtol=1e-6)
    x = constituent_inputs(jets.constituents[:5], jets.n_constituents[:5], 8, jet=L1_JET)
    assert x.shape == (5, 8, 5)  # 7 constituents and the jet in the last slot: 8 slots, a power of two
    np.testing.assert_array_equal(x[:, :7, :4], constituent_inputs(jets.constituents[:5], jets.n_constituents[:5], 7))
    assert not x[:, :7, 4].any() and not x[:, 7, 2:4].any()  # flag 0 on constituents; no dphi, valid on the jet
    np.testing.assert_allclose(x[:, 7, 0] * 32, summary[:5, 0], atol=0.25)  # mass / 32 GeV (pT column), LSB 0.25 GeV
    np.testing.assert_array_equal(x[:, 7, 1] * 16, jets.n_constituents[:5])  # multiplicity / 16 (deta column)
    assert (x[:, 7, 4] == 1).all()  # the jet flag
    with pytest.raises(ValueError, match="n_constituents=1: the jet word takes the last"):
        constituent_inputs(jets.constituents[:5], jets.n_constituents[:5], 1, jet=L1_JET)
    L1_JET.check_input_type(FixedType.parse("fixed<16,6,RND_CONV,SAT>"))  # every value exact in the default type


def test_bad_input_is_one_line_naming_file_and_setting(smoke_jets):
    import dataclasses

    from l1forge.students.deepsets import checked_inputs

    jets = read_jets(smoke_jets)
    with pytest.raises(DataError, match=r"jets\.h5: student\.n_constituents=65 but the file stores 64"):
        checked_inputs(jets, 65)
    narrow = dataclasses.replace(jets, constituents=jets.constituents[..., :2])
    with pytest.raises(DataError, match=r"jets\.h5: constituents have 2 features.*needs 3 \(pt, deta, dphi\)"):
        checked_inputs(narrow, 16)
    with pytest.raises(ValueError, match="student.input_type"):
        checked_inputs(jets, 16, FixedType.parse("fixed<8,6,RND_CONV,SAT>"))
    from l1forge.quantize.l1words import L1_JET

    with pytest.raises(ValueError, match=r"student.n_constituents=1: the jet word \(student.jet_word\) takes"):
        checked_inputs(jets, 1, jet=L1_JET)


def test_deepsets_is_permutation_invariant_and_ignores_padding(smoke_jets):
    """Shuffling the real constituents of a jet leaves the logits bit-identical; a padded slot contributes zero."""
    from l1forge.students.deepsets import build_deepsets, checked_inputs

    jets = read_jets(smoke_jets)
    x = checked_inputs(jets, 16)(jets.constituents[:64], jets.n_constituents[:64])
    model = build_deepsets(16, 4, 5, phi=(8, 8), head=(8,))
    rng = np.random.default_rng(0)
    shuffled = x.copy()
    for i, n in enumerate(np.minimum(jets.n_constituents[:64], 16)):
        shuffled[i, :n] = x[i, rng.permutation(n)]
    assert (shuffled != x).any()
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(shuffled, verbose=0))
    phi = __import__("tensorflow").keras.Model(model.input, model.get_layer("phi_relu2").output)
    short = checked_inputs(jets, 16)(jets.constituents[:64], np.full(64, 10))  # as if 10 constituents: 6 padded
    assert short[:, 10:].sum() == 0 and short[:, :10].any()
    out = phi.predict(short, verbose=0)
    assert out[:, :10].any() and not out[:, 10:].any()  # padded slots stay exactly zero through the phi layers


@pytest.mark.parametrize("family,jet_word", [("deepsets", False), ("mixer", True)])
def test_constituent_firmware_is_bit_exact(smoke_jets, tmp_path, family, jet_word):
    """hls4ml C-sim of each constituent family (pointwise convolutions, the mixer's transposes, average pooling;
    the mixer with the jet word in its last slot) against the emulator on 300 jets' L1 words: every output bit
    equal, and equal to QKeras too."""
    import hls4ml
    import tensorflow as tf

    from l1forge.emulation.compare import compare_with_csim
    from l1forge.emulation.emulator import Emulator
    from l1forge.firmware.build import build_firmware
    from l1forge.firmware.hls import FirmwareSettings
    from l1forge.quantize.precision import Precision
    from l1forge.students.deepsets import build_constituent_student, checked_inputs

    jets = read_jets(smoke_jets)
    from l1forge.quantize.l1words import L1_JET

    words = checked_inputs(jets, 8, jet=L1_JET if jet_word else None)
    x = words(jets.constituents[:300], jets.n_constituents[:300]).astype(np.float64)
    assert x.shape[1:] == ((8, 5) if jet_word else (8, 4))
    tf.keras.utils.set_random_seed(2)
    model = build_constituent_student(family, *words.shape, 5, phi=(6, 6), head=(8,),
                                      precision=Precision.for_family(family))
    block = build_firmware(model, Precision().input, FirmwareSettings(), tmp_path / "fw")
    assert block["ii_cycles"] == 1 and block["latency_ns"] < 100
    graph = __import__("json").loads((tmp_path / "fw" / "graph.json").read_text())
    ops = [layer["op"] for layer in graph["layers"]]
    assert ops.count("transpose") == (2 if family == "mixer" else 0) and "global_average" in ops
    project = hls4ml.converters.link_existing_project(str(tmp_path / "fw" / "hls_project"))
    project.compile()
    stats, emu, csim = compare_with_csim(Emulator.from_file(tmp_path / "fw" / "graph.json"), project.predict, x)
    assert stats["events_checked"] == 300 and stats["mismatches"] == 0
    assert np.ptp(emu, axis=0).max() > 0  # outputs differ between jets: the check is not on constants
    np.testing.assert_array_equal(model.predict(x, verbose=0), emu)


def test_family_precision_rule():
    """Constituent students get 8-bit activations with 2 integer bits, the HLF MLP 6 and 0; set values win."""
    from l1forge.quantize.precision import Precision

    hlf, ds = Precision.for_family("hlf"), Precision.for_family("deepsets", weight_bits=4)
    assert (hlf.activation_bits, hlf.activation_integer) == (6, 0)
    assert (ds.weight_bits, ds.activation_bits, ds.activation_integer) == (4, 8, 2)
    mixer = Precision.for_family("mixer", activation_bits=5, activation_integer=1)
    assert (mixer.activation_bits, mixer.activation_integer) == (5, 1)
    with pytest.raises(ValueError, match="'gnn' has no precision rule"):
        Precision.for_family("gnn")


def test_rotations_about_the_axis_keep_every_pairwise_distance(smoke_jets):
    from l1forge.students.augment import rotate_about_axis

    jets = read_jets(smoke_jets)
    cons = jets.constituents[:200]
    turned = rotate_about_axis(cons, np.random.default_rng(3))
    assert turned.shape == cons.shape and not np.shares_memory(turned, cons)
    np.testing.assert_array_equal(turned[..., 0], cons[..., 0])  # pT and the padding untouched
    np.testing.assert_array_equal(turned[..., 3:], cons[..., 3:])
    real = cons[..., 0] > 0
    assert (turned[~real][..., 1:3] == 0).all()

    def distances(c):  # (jets, M, M) distance in (deta, dphi) between every pair of constituents
        return np.linalg.norm(c[:, :, None, 1:3] - c[:, None, :, 1:3], axis=-1)

    np.testing.assert_allclose(distances(turned), distances(cons), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(turned[..., 1:3], axis=-1), np.linalg.norm(cons[..., 1:3], axis=-1),
                               atol=1e-6)  # distance to the axis
    # a real transformation per jet: the hardest constituent moves (unless it sits on the axis), each jet by its own
    # angle, and about half the jets are mirrored (the sign of the cross product of two constituents flips)
    moved = np.linalg.norm(turned[:, 0, 1:3] - cons[:, 0, 1:3], axis=-1) > 1e-3
    assert moved.mean() > 0.8
    cross = lambda c: c[:, 0, 1] * c[:, 1, 2] - c[:, 0, 2] * c[:, 1, 1]  # noqa: E731
    big = np.abs(cross(cons)) > 1e-6
    mirrored = np.sign(cross(turned)[big]) != np.sign(cross(cons)[big])
    assert 0.3 < mirrored.mean() < 0.7
    np.testing.assert_array_equal(rotate_about_axis(cons, np.random.default_rng(3)), turned)  # seeded


def test_augmented_batches_draw_every_jet_once_per_epoch_transformed_afresh(smoke_jets):
    from l1forge.students.augment import rotate_about_axis
    from l1forge.students.deepsets import ConstituentInputs
    from l1forge.students.training import AugmentedBatches

    jets = read_jets(smoke_jets)
    words = ConstituentInputs(8)
    ids = np.arange(len(jets.labels), dtype=np.float32)[:, None]  # target = the jet's row, to follow each jet
    batches = AugmentedBatches(jets.constituents, ids, words, rotate_about_axis, 64, seed=0)
    assert len(batches) == -(-len(ids) // 64)

    def epoch():
        xs, ys = zip(*(batches[i] for i in range(len(batches))))
        batches.on_epoch_end()
        return np.concatenate(xs), np.concatenate(ys)[:, 0].astype(int)

    (x1, rows1), (x2, rows2) = epoch(), epoch()
    assert sorted(rows1) == sorted(rows2) == list(range(len(ids)))  # every jet once per epoch
    assert (rows1 != rows2).any()  # reshuffled
    first, second = x1[np.argsort(rows1)], x2[np.argsort(rows2)]
    plain = words(jets.constituents)
    np.testing.assert_array_equal(first[..., [0, 3]], plain[..., [0, 3]])  # same pT words and valid flags per jet
    assert (first[..., 1:3] != plain[..., 1:3]).any(axis=(1, 2)).mean() > 0.8  # angles: rotated words
    assert (first[..., 1:3] != second[..., 1:3]).any(axis=(1, 2)).mean() > 0.8  # a new draw each epoch
