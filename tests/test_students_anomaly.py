"""Anomaly students on synthetic ADC2021-layout events: regression of a known score, AE baseline, metrics, firmware."""

import json

import h5py
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from l1forge.emulation.compare import compare_with_csim
from l1forge.emulation.emulator import Emulator
from l1forge.emulation.lhc import zero_bias_rate_khz
from l1forge.emulation.trigger import check_timing
from l1forge.firmware.estimate import estimate
from l1forge.graph.ir import read_graph
from l1forge.firmware.describe import write_graph
from l1forge.firmware.hls import FirmwareSettings, convert
from l1forge.metrics import anomaly_metrics
from l1forge.quantize.precision import Precision
from l1forge.students.anomaly import (
    N_INPUTS,
    PT_SCALE,
    build_ae_baseline,
    flatten_objects,
    reconstruction_loss,
    saturated_fraction,
    tail_weights,
    train_ae_baseline,
    train_score_student,
)
from l1forge.students.model import load_qkeras_model

N_BKG, N_SIG = 3000, 400


def _events(n, signal, rng):
    """(n, 19, 4): background = 0-5 falling jets, rare leptons, MET; signal = the same plus 2 e/gamma + 2 muons."""
    ev = np.zeros((n, 19, 4), np.float32)
    counts = {2: np.full(n, 2) if signal else rng.binomial(4, 0.04, n),
              3: np.full(n, 2) if signal else rng.binomial(4, 0.04, n), 4: rng.binomial(5, 0.5, n)}
    for code, first, pt0 in ((2, 1, 30 if signal else 5), (3, 5, 30 if signal else 5), (4, 9, 20)):
        for j in range(5 if code == 4 else 4):
            real = j < counts[code]
            pt = pt0 + rng.exponential(20, n) / (j + 1)
            ev[real, first + j] = np.stack([pt, rng.uniform(-2.4, 2.4, n), rng.uniform(-np.pi, np.pi, n),
                                            np.full(n, code)], 1)[real]
    ev[:, 0] = np.stack([rng.exponential(30, n), np.zeros(n), rng.uniform(-np.pi, np.pi, n), np.ones(n)], 1)
    return ev


def _teacher(objects):
    """A known 'teacher score': lepton count + MET / 100 GeV."""
    return (objects[:, 1:9, 0] > 0).sum(1) + objects[:, 0, 0] / 100.0


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    objects = np.concatenate([_events(N_BKG, False, rng), _events(N_SIG, True, rng)])
    split = np.concatenate([rng.choice(3, N_BKG, p=[0.6, 0.2, 0.2]), np.full(N_SIG, 2)]).astype(np.int8)
    return objects, split, np.arange(len(objects)) < N_BKG


@pytest.fixture(scope="module")
def student(data, tmp_path_factory):
    objects, split, background = data
    out = tmp_path_factory.mktemp("score_student")
    return out, train_score_student(objects, _teacher(objects), split, out, background, epochs=40, batch_size=128,
                                    lr=1e-2, progress=False)


@pytest.fixture(scope="module")
def ae(data, tmp_path_factory):
    objects, split, background = data
    out = tmp_path_factory.mktemp("ae_baseline")
    return out, train_ae_baseline(objects, split, out, background, epochs=15, batch_size=128, lr=1e-2, progress=False)


def _test_auc(data, score):
    _, split, background = data
    test = split == 2
    return roc_auc_score(~background[test], score[test])


def test_flatten_objects_layout_and_range(data):
    objects = data[0]
    x = flatten_objects(objects)
    assert x.shape == (len(objects), N_INPUTS) and x.dtype == np.float32
    assert np.allclose(x[:, 0::3], objects[..., 0] * PT_SCALE) and np.allclose(x[:, 2::3], objects[..., 2])
    padded = objects.copy()
    padded[:, 5:9, 1:3] = 7.0  # junk in padded slots (pT = 0) must not reach the inputs
    padded[:, 5:9, 0] = 0.0
    assert not flatten_objects(padded)[:, 15:27].any()
    assert saturated_fraction(x) == 0.0  # pT < 512 GeV, |eta|, |phi| < 32: inside fixed<16,6>
    objects = objects.copy()
    objects[0, 9, 0] = 600.0
    assert saturated_fraction(flatten_objects(objects)) == pytest.approx(1 / len(objects))


def test_reconstruction_loss_masks_and_wraps_phi():
    x = np.zeros((3, N_INPUTS), np.float32)
    x[:, 0:3] = [1.0, 0.0, 3.0]  # MET
    x[:, 3:6] = [2.0, 0.5, -3.0]  # one e/gamma; other slots padded
    recon = x.copy()
    recon[0, 1] = 5.0  # MET eta: not measured, ignored
    recon[0, 30:33] = 9.0  # a padded slot: ignored
    recon[1, 5] = 3.0  # phi -3 vs 3: wrapped difference 6 - 2 pi
    recon[2, 3:5] += [0.5, 0.25]
    loss = reconstruction_loss(x, recon).numpy()
    assert loss == pytest.approx([0.0, (6 - 2 * np.pi) ** 2, 0.3125], abs=1e-6)


def test_score_student_regresses_teacher(data, student):
    out, result = student
    assert result["best_val_loss"] < 0.3 * result["target_val_variance"]
    assert _test_auc(data, result["score"]) > 0.6
    for name in ("model.h5", "predictions.h5", "preprocess.json", "history.json"):
        assert (out / name).is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # atomic writes: no temp files left
    with h5py.File(out / "predictions.h5") as f:
        assert np.array_equal(f["score"][()], result["score"]) and f["score"].shape == (len(data[0]),)
    history = json.loads((out / "history.json").read_text())
    assert history["best_val_loss"] == result["best_val_loss"] and history["params"] == result["params"]
    model = load_qkeras_model(out / "model.h5")
    x = flatten_objects(data[0][:50])
    assert np.allclose(model.predict(x, verbose=0)[:, 0], result["score"][:50], atol=1e-5)


def test_ae_baseline_flags_signal(data, ae):
    out, result = ae
    assert result["params"] == build_ae_baseline().count_params()
    assert result["history"]["val_loss"][result["best_epoch"]] < result["history"]["val_loss"][0]
    assert _test_auc(data, result["score"]) > 0.6
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "model.h5", "predictions.h5",
                                                          "preprocess.json"]


def test_anomaly_metrics_hand_computed():
    bkg = np.array([0.0, 1.0, 2.0, 3.0])
    w = np.array([0.5, 0.3, 0.1999, 0.0001])  # per-crossing fractions
    zb = zero_bias_rate_khz(2760)
    # rate(score > 2) = 0.0001 zb = 3.1 kHz; rate(score > 1) = 0.2 zb. 10 kHz -> threshold 2; 1 kHz -> 3.
    m = anomaly_metrics(bkg, w, {"a": np.array([2.5, 3.5, 0.5, 1.0]), "b": np.array([4.0, 5.0])}, rates_khz=(1, 10))
    t10, t1 = m["thresholds"]["10kHz"], m["thresholds"]["1kHz"]
    assert t10["threshold"] == 2.0 and t10["rate_khz"] == pytest.approx(0.0001 * zb)
    assert t1["threshold"] == 3.0 and t1["rate_khz"] == 0.0
    # resolution: the heaviest crossing carries 0.5 of all crossings; one crossing above 2, none above 3
    assert m["crossing_rate_khz"] == t10["crossing_rate_khz"] == pytest.approx(0.5 * zb) and m["n_background"] == 4
    assert (t10["n_background_above"], t1["n_background_above"]) == (1, 0) and not t10["resolved"]
    assert (t10["n_effective_above"], t1["n_effective_above"]) == (1.0, 0.0)
    m2 = anomaly_metrics(bkg, w, {"a": np.array([2.5])}, rates_khz=(30000,))  # 30 MHz: all but the score-0 crossing
    assert m2["thresholds"]["30000kHz"]["threshold"] == 0.0 and m2["thresholds"]["30000kHz"]["resolved"] is False
    assert m2["thresholds"]["30000kHz"]["n_effective_above"] == pytest.approx(0.5**2 / (w[1:] ** 2).sum())
    # weighted rate error: sqrt(sum w^2) of the crossings above (0.0001) on both sides, clipped at zero
    assert t10["rate_khz_err"] == pytest.approx([0.0001 * zb, 0.0001 * zb])
    # Clopper-Pearson 68%: 2 of 4 and 0 of 2 (upper 1 - 0.16^(1/2))
    assert m["signals"]["a"]["efficiency_err"]["10kHz"][0] > 0 and m["signals"]["a"]["n"] == 4
    assert m["signals"]["b"]["efficiency_err"]["1kHz"] == pytest.approx([1 - 0.1587 ** 0.5, 0.0], abs=2e-3)
    a, b = m["signals"]["a"], m["signals"]["b"]
    assert a["efficiency"] == {"1kHz": 0.25, "10kHz": 0.5} and b["efficiency"] == {"1kHz": 1.0, "10kHz": 1.0}
    # AUC = sum over signal events of P_w(bkg < s) + P_w(bkg == s) / 2, averaged over signal events
    below = [0.5 + 0.3 + 0.1999, 1.0, 0.5, 0.5 + 0.3 / 2]
    assert a["auc"] == pytest.approx(np.mean(below)) and b["auc"] == pytest.approx(1.0)
    json.dumps(m)


def test_tail_weights_hand_computed():
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    # fraction of the reference above each score: 1, 0.75, 0.25, 0, 0; plus 1/n = 0.25
    w = tail_weights(np.array([0.0, 1.0, 3.5, 4.0, 9.0]), ref, 1.0)
    assert w == pytest.approx([1 / 1.25, 1 / 1.0, 1 / 0.5, 1 / 0.25, 1 / 0.25])
    assert np.all(tail_weights(np.array([0.0, 9.0]), ref, 0.0) == 1.0)
    with pytest.raises(ValueError):
        tail_weights(ref, ref, -1.0)


def test_tail_weighted_student_regresses_teacher(data, tmp_path):
    """Tail-weighted MSE (p = 0.5): still a regression of the teacher (weighted loss well below the weighted variance
    of the target) that flags the signal; the weights reach the loss (its value differs from the unweighted MSE)."""
    objects, split, background = data
    teacher = _teacher(objects)
    r = train_score_student(objects, teacher, split, tmp_path, background, epochs=25, batch_size=128, lr=1e-2,
                            progress=False, tail_power=0.5)
    assert r["tail_power"] == 0.5 and r["loss"] == "mse weighted by (1 - quantile + 1/n)^-0.5"
    assert r["best_val_loss"] < 0.3 * r["target_val_variance"]
    assert _test_auc(data, r["score"]) > 0.6
    val = background & (split == 1)
    y = np.log1p(teacher[val])
    assert r["target_val_variance"] > 1.05 * y.var()  # the weights favour the (more spread) tail


@pytest.mark.parametrize("which", ["student", "ae"])
def test_firmware_bit_exact_and_in_budget(data, which, request, tmp_path):
    """Emulator == C-sim on the flattened inputs (and saturating ones); the firmware gives the trained score."""
    out, result = request.getfixturevalue(which)
    model = load_qkeras_model(out / "model.h5")
    settings = FirmwareSettings()
    hls_model = convert(model, Precision().input, settings, tmp_path / "hls")
    graph_json = write_graph(hls_model, tmp_path / "hls")
    n = len(data[0])
    wild = np.random.default_rng(1).normal(scale=40.0, size=(500, N_INPUTS))  # mostly beyond fixed<16,6>
    x = np.concatenate([flatten_objects(data[0]), wild, np.full((2, N_INPUTS), 1e6) * [[1], [-1]]])
    stats, emu, _ = compare_with_csim(Emulator.from_file(graph_json), hls_model.predict, x)
    assert stats["mismatches"] == 0, stats["first_mismatch"]
    score = emu[:n, 0] if which == "student" else reconstruction_loss(Precision().input.quantize(x[:n]), emu[:n])
    np.testing.assert_allclose(score, result["score"], rtol=1e-5, atol=1e-5)
    report = estimate(read_graph(graph_json), clock_mhz=settings.clock_mhz)
    timing = check_timing(report["latency_ns"], report["ii_cycles"], settings.clock_mhz)
    assert timing["latency_ok"] and timing["ii_ok"], timing


def test_real_events(tmp_path):
    """A tiny generated sample: inputs in range, training runs, metrics on the weighted background (structure only)."""
    anomaly = pytest.importorskip("l1forge.events.anomaly")
    anomaly.generate_anomaly(tmp_path / "anomaly.h5", n_background=150, n_signal=30, seed=3, pileup=10, workers=2,
                             signals=["a50_4l"], hard_mpi=False, library_events=200, progress=False)
    sample = anomaly.read_anomaly(tmp_path / "anomaly.h5")
    background = ~sample.is_signal
    assert saturated_fraction(flatten_objects(sample.objects[background])) < 0.05
    result = train_score_student(sample.objects, _teacher(sample.objects), sample.split, tmp_path / "student",
                                 background, epochs=2, batch_size=32, progress=False)
    test = sample.split == 2
    bkg, sig = test & background, test & sample.is_signal
    m = anomaly_metrics(result["score"][bkg], sample.weight[bkg], {"a50_4l": result["score"][sig]})
    assert 0.0 <= m["signals"]["a50_4l"]["auc"] <= 1.0 and set(m["thresholds"]) == {"1kHz", "10kHz"}
