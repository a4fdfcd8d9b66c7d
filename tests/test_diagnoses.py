"""Diagnoses of differences between the firmware and the Keras model (issue 31 item 4): one model per cause, the
cause named and the layer where it shows, whatever the first layer. Emulator-only (no C-sim compile) except the
argmax softmax, whose emulation is new and is checked against the C-sim."""

import json

import numpy as np
import tensorflow as tf
import yaml
from qkeras import QActivation, QDense, quantized_bits

from l1forge.byom import emulate_model

L = tf.keras.layers
N = 2000


def _q():
    return dict(kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1))


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.6, size=w.shape) for w in model.get_weights()])
    return model


def _divergence(tmp_path, name, model, x, **kw) -> dict:
    model.save(tmp_path / f"{name}.h5")
    np.save(tmp_path / f"{name}.npy", x)
    stats = emulate_model(tmp_path / f"{name}.h5", tmp_path / f"{name}.npy", **kw)
    assert stats["keras_mismatches"] > 0
    return stats


def test_inputs_saturating_before_a_softmax_first_layer(tmp_path):
    """No input quantizer, a softmax as the first layer, inputs mostly beyond fixed<16,6>: the input range is the
    cause (not the softmax tables), named at the softmax."""
    inp = L.Input((6,), name="x")
    model = _randomize(tf.keras.Model(inp, QDense(3, name="d", **_q())(L.Activation("softmax", name="sm")(inp))), 1)
    x = np.random.default_rng(1).normal(scale=120.0, size=(N, 6))
    div = _divergence(tmp_path, "sm_first", model, x)["first_keras_divergence"]
    assert div["layer"] == "sm" and "outside the input type's range" in div["cause"] and "saturate" in div["cause"], div


def test_inputs_wrapping_before_a_permute_first_layer(tmp_path):
    """A Permute first (hls4ml folds it into the next layer's weights: it has no firmware layer) and a wrapping input
    type given with --input-type: the wrap is the cause, named at the first firmware layer after the input."""
    inp = L.Input((4, 3), name="x")
    out = QDense(2, name="d", **_q())(L.Flatten(name="f")(L.Permute((2, 1), name="perm")(inp)))
    model = _randomize(tf.keras.Model(inp, out), 2)
    x = np.random.default_rng(2).normal(scale=40.0, size=(N, 4, 3))
    stats = _divergence(tmp_path, "perm_first", model, x, input_type="fixed<10,4,TRN,WRAP>")
    div = stats["first_keras_divergence"]
    assert div["layer"] in ("f", "d") and "outside the input type's range" in div["cause"], div
    assert "wrap around" in div["cause"], div


def test_an_argmax_softmax_is_not_blamed_on_tables(tmp_path):
    """Softmax with Implementation 'argmax' (hls4ml's softmax_argmax: 1 at the first maximum, no tables): bit-exact
    against the C-sim, and the divergence from Keras' probabilities is named as the argmax, not as tables."""
    import hls4ml

    inp = L.Input((6,), name="x")
    h = QDense(4, name="d", **_q())(QActivation(quantized_bits(8, 3, alpha=1), name="qin")(inp))
    model = _randomize(tf.keras.Model(inp, L.Activation("softmax", name="sm")(h)), 3)
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    config["LayerName"]["sm"]["Implementation"] = "argmax"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(config))))
    x = np.random.default_rng(3).normal(scale=2.0, size=(N, 6))
    stats = _divergence(tmp_path, "argmax", model, x, hls_config_path=tmp_path / "c.yaml", check_csim=True)
    assert stats["events_checked"] == N and stats["mismatches"] == 0, stats["first_mismatch"]
    div = stats["first_keras_divergence"]
    assert div["layer"] == "sm" and "argmax softmax (no tables)" in div["cause"] and "table-based" not in div["cause"]
    assert stats["argmax_flips"] <= N // 100  # the one-hot output keeps the argmax (ties of quantized logits aside)
