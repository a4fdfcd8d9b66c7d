"""Model zoo: the models users bring, built here (seeded), each converted by ``l1forge.byom.emulate_model``, compared
with the compiled hls4ml C-simulation on >= 2000 events (values outside the input range included) and with the
Keras model itself (fidelity figures asserted where hls4ml is known to deviate). Bad input: one line, exit 1."""

import json
import sys
import time

import h5py
import numpy as np
import pytest
import tensorflow as tf
from qkeras import QActivation, QDense, quantized_bits, quantized_relu

from l1forge.byom import emulate_model

L = tf.keras.layers
N = 2000
TIMES = {}


def _q(bits=6, integer=0, **kw):
    return dict(kernel_quantizer=quantized_bits(bits, integer, alpha=1, **kw),
                bias_quantizer=quantized_bits(bits, integer, alpha=1))


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    weights = []
    for var, w in zip(model.weights, model.get_weights()):
        w = rng.normal(scale=0.6, size=w.shape)
        weights.append(np.abs(w) + 0.2 if "variance" in var.name else w)
    model.set_weights(weights)
    return model


def _inputs(shape, seed, scale=3.0):
    """N events: normal values, a tenth scaled far beyond any input type's range (|x| up to ~500)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=scale, size=(N, *shape))
    x[: N // 10] *= 60.0
    return x


def _run(tmp_path, name, model, x, output=None, **kw) -> dict:
    """Save the model and inputs, emulate with the C-sim check; the stats (0 C-sim mismatches asserted)."""
    model.save(tmp_path / f"{name}.h5")
    np.save(tmp_path / f"{name}_x.npy", x)
    start = time.perf_counter()
    stats = emulate_model(tmp_path / f"{name}.h5", tmp_path / f"{name}_x.npy", check_csim=True, output=output, **kw)
    TIMES[name] = time.perf_counter() - start
    assert stats["events_checked"] == N
    assert stats["mismatches"] == 0, stats["first_mismatch"]
    print(f"zoo {name}: {N} events, C-sim mismatches {stats['mismatches']}, Keras: {stats['keras_mismatches']} events "
          f"(max {stats['keras_max_abs_diff']:.3g}, flips {stats['argmax_flips']}), {TIMES[name]:.0f} s, "
          f"first {json.dumps(stats['first_keras_divergence'])}", file=sys.stderr)
    return stats


# ---- no input quantizer ------------------------------------------------------------------------------------
def test_qdense_on_a_plain_input_gets_the_default_input_type(tmp_path):
    inp = L.Input((10,), name="x")
    h = QDense(12, name="d1", **_q())(inp)
    h = QActivation(quantized_relu(6, 2), name="a1")(h)
    out = QDense(4, name="d2", **_q())(h)
    model = _randomize(tf.keras.Model(inp, out), 1)
    stats = _run(tmp_path, "plain_input", model, _inputs((10,), 1), output=tmp_path / "out.npy")
    assert stats["input_type"] == "fixed<16,6,RND_CONV,SAT>" and "l1forge default" in stats["input_type_note"]
    assert np.load(tmp_path / "out.npy").shape == (N, 4)
    # The inputs beyond +-32 saturate in the firmware, not in Keras: those events differ, and that is the cause.
    div = stats["first_keras_divergence"]
    assert stats["keras_mismatches"] >= 1 and div["layer"] == "d1" and "outside the input type's range" in div["cause"]


def test_input_feeding_two_branches_with_batchnorm_and_an_input_type(tmp_path):
    inp = L.Input((8,), name="x")
    a = QDense(6, name="da", **_q())(inp)
    a = L.BatchNormalization(name="bn")(a)
    a = QActivation(quantized_relu(8, 3), name="aa")(a)
    b = QDense(6, name="db", **_q(8, 1))(inp)
    b = QActivation(quantized_bits(8, 3, alpha=1), name="ab")(b)
    out = L.Add(name="add")([a, b])
    model = _randomize(tf.keras.Model(inp, out), 2)
    stats = _run(tmp_path, "two_branches", model, _inputs((8,), 2), input_type="fixed<12,5,RND_CONV,SAT>")
    assert stats["input_type"] == "fixed<12,5,RND_CONV,SAT>" and stats["input_type_note"] is None


# ---- integer types -------------------------------------------------------------------------------------------
def test_integer_quantizers_are_exact(tmp_path):
    """quantized_bits(8, 7) makes int<8> types: C++ converts into them toward zero (quantize/ models that)."""
    inp = L.Input((8,), name="x")
    h = QActivation(quantized_bits(8, 7, alpha=1), name="qi")(inp)
    h = QDense(6, name="d1", **_q())(h)
    h = QActivation(quantized_bits(8, 7, alpha=1), name="qm")(h)
    out = QDense(3, name="d2", **_q())(h)
    model = _randomize(tf.keras.Model(inp, out), 3)
    stats = _run(tmp_path, "integer", model, _inputs((8,), 3, scale=40.0))
    assert stats["input_type"] == "int<8>"
    # QKeras rounds to nearest where the C++ int conversion truncates: hls4ml deviates from the model.
    div = stats["first_keras_divergence"]
    assert stats["keras_mismatches"] > N // 2 and "became the input type int<8>" in div["cause"]


# ---- several outputs ---------------------------------------------------------------------------------------
def test_several_outputs_one_dataset_per_head(tmp_path):
    inp = L.Input((8,), name="x")
    h = QActivation(quantized_bits(10, 4, alpha=1), name="qin")(inp)
    o1 = QDense(3, name="h1", **_q())(h)
    o2 = L.Reshape((2, 2), name="h2r")(QDense(4, name="h2", **_q())(h))
    o3 = L.Activation("softmax", name="h3")(QDense(5, name="h3d", **_q())(h))
    model = _randomize(tf.keras.Model(inp, [o1, o2, o3]), 4)
    stats = _run(tmp_path, "three_heads", model, _inputs((8,), 4), output=tmp_path / "heads.h5")
    with h5py.File(tmp_path / "heads.h5") as f:
        shapes = {k: f[k].shape for k in f}
    assert sorted(shapes.values()) == sorted([(N, 3), (N, 2, 2), (N, 5)])  # Keras shapes, one dataset per head
    # The table-based softmax differs from Keras' exact one (hls4ml #1512, #1443).
    div = stats["first_keras_divergence"]
    assert stats["keras_mismatches"] > 0 and div["layer"] == "h3" and "softmax" in div["cause"]
    assert stats["argmax_flips"] is not None


# ---- refusals, before any compilation ------------------------------------------------------------------------
def _cli(argv, capsys) -> tuple[int, str]:
    from l1forge.cli import main

    old = sys.argv
    sys.argv = ["l1forge", *map(str, argv)]
    try:
        main()
        code = 0
    except SystemExit as err:
        code = err.code
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


def test_bad_inputs_are_one_line_each(tmp_path, capsys):
    inp = L.Input((6,), name="x")
    model = tf.keras.Model(inp, QDense(2, name="d", **_q())(inp))
    model.save(tmp_path / "m.h5")
    np.save(tmp_path / "wrong.npy", np.zeros((10, 7)))
    x = np.zeros((10, 6))
    x[3, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    (tmp_path / "notamodel.h5").write_text("hello")
    out = tmp_path / "o.npy"
    cases = [
        (["--model", tmp_path / "m.h5", "--data", tmp_path / "wrong.npy"], "shape (7,) per event, the model takes (6,)"),
        (["--model", tmp_path / "m.h5", "--data", tmp_path / "nan.npy"], "would see +Inf and NaN as 31.999"),
        (["--model", tmp_path / "notamodel.h5", "--data", tmp_path / "nan.npy"], "not a Keras/QKeras model"),
        (["--model", tmp_path / "m.h5", "--data", tmp_path / "nan.npy", "--input-type", "float<3>"], "--input-type"),
    ]
    for argv, expected in cases:
        code, err = _cli(["emulate", *argv, "--check-csim", "--output", out, "--json", tmp_path / "o.json"], capsys)
        assert code == 1 and expected in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not (tmp_path / "o.json").exists()  # nothing half-written


def test_a_model_that_only_quantizes_is_refused_in_one_line(tmp_path):
    inp = L.Input((8,), name="x")
    model = tf.keras.Model(inp, QActivation(quantized_bits(8, 3, alpha=1), name="q")(inp))
    model.save(tmp_path / "q.h5")
    np.save(tmp_path / "x.npy", _inputs((8,), 5)[:10])
    from l1forge.firmware.hls import ConversionError

    with pytest.raises(ConversionError, match="only quantizes its input 'x'"):
        emulate_model(tmp_path / "q.h5", tmp_path / "x.npy", check_csim=True)
