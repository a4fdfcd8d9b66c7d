"""Anomaly students on synthetic ADC2021-layout events: regression of a known score, AE baseline, metrics, firmware."""

import json

import h5py
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from emulation.compare import compare_with_csim
from emulation.emulator import Emulator
from emulation.lhc import zero_bias_rate_khz
from emulation.trigger import check_timing
from firmware.estimate import estimate
from firmware.graph import read_graph, write_graph
from firmware.hls import FirmwareSettings, convert
from l1forge.metrics import anomaly_metrics
from quantize.precision import Precision
from students.anomaly import (
    N_INPUTS,
    PT_SCALE,
    build_ae_baseline,
    flatten_objects,
    reconstruction_loss,
    saturated_fraction,
    train_ae_baseline,
    train_score_student,
)
from students.model import load_qkeras_model

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
    assert m["thresholds"]["10kHz"] == {"threshold": 2.0, "rate_khz": pytest.approx(0.0001 * zb)}
    assert m["thresholds"]["1kHz"]["threshold"] == 3.0 and m["thresholds"]["1kHz"]["rate_khz"] == 0.0
    a, b = m["signals"]["a"], m["signals"]["b"]
    assert a["efficiency"] == {"1kHz": 0.25, "10kHz": 0.5} and b["efficiency"] == {"1kHz": 1.0, "10kHz": 1.0}
    # AUC = sum over signal events of P_w(bkg < s) + P_w(bkg == s) / 2, averaged over signal events
    below = [0.5 + 0.3 + 0.1999, 1.0, 0.5, 0.5 + 0.3 / 2]
    assert a["auc"] == pytest.approx(np.mean(below)) and b["auc"] == pytest.approx(1.0)
    json.dumps(m)


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
    report = estimate(*read_graph(graph_json), settings.clock_mhz)
    timing = check_timing(report["latency_ns"], report["ii_cycles"], settings.clock_mhz)
    assert timing["latency_ok"] and timing["ii_ok"], timing


def test_real_events(tmp_path):
    """A tiny generated sample: inputs in range, training runs, metrics on the weighted background (structure only)."""
    anomaly = pytest.importorskip("events.anomaly")
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
