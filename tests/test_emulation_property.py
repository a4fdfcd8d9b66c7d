"""Property: for random QKeras models and random hls4ml precisions, the emulator equals the C-simulation bit for bit.

Each example compiles a C-simulation (~5 s): the default run checks a few models; set L1FORGE_PROPERTY_EXAMPLES
for a deep run (e.g. 40).
"""

import os
import tempfile

import hls4ml
import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qkeras import QActivation, QConv1D, QDense, quantized_bits, quantized_relu, quantized_sigmoid, quantized_tanh
from test_emulation_ops import INPUT, assert_bit_exact, convert, inputs_for

from l1forge.quantize.precision import hls_config

L = tf.keras.layers
EXAMPLES = int(os.environ.get("L1FORGE_PROPERTY_EXAMPLES", "6"))
ROUNDING = ("TRN", "RND", "RND_CONV", "RND_ZERO", "RND_INF", "RND_MIN_INF", "TRN_ZERO")
OVERFLOW = ("WRAP", "SAT", "SAT_SYM")


def _activation(rng, name, floats: bool):
    """A QKeras quantizer; with ``floats`` also unquantized relu/linear and table sigmoid/tanh (these make bit-exact
    inference widen types past what ap_fixed tables and the emulator's 62 bits can take, so only without it)."""
    bits, integer = int(rng.integers(3, 11)), int(rng.integers(0, 4))
    kinds = ["quantized_relu", "quantized_bits", "quantized_tanh", "quantized_sigmoid"]
    kind = rng.choice(kinds + (["relu", "linear", "tanh", "sigmoid"] if floats else []))
    if kind in ("relu", "linear", "tanh", "sigmoid"):
        return L.Activation(str(kind), name=name)
    quantizer = {
        "quantized_relu": lambda: quantized_relu(bits, integer),
        "quantized_bits": lambda: quantized_bits(bits, integer, alpha=1),
        "quantized_tanh": lambda: quantized_tanh(bits, 0),
        "quantized_sigmoid": lambda: quantized_sigmoid(bits),
    }[kind]()
    return QActivation(quantizer, name=name)


def _quantizers(rng):
    bits = int(rng.integers(3, 11))
    q = quantized_bits(bits, int(rng.integers(0, min(bits - 1, 3) + 1)), alpha=1)
    return dict(kernel_quantizer=q, bias_quantizer=q)


def random_model(rng, floats: bool):
    """Random depth, widths, quantizers and activations; optionally conv1d k=1 per particle and global pooling."""
    if rng.random() < 0.5:
        inp = tf.keras.Input((int(rng.integers(2, 9)), int(rng.integers(2, 6))), name="x")
        h = QActivation(quantized_bits(int(rng.integers(6, 13)), 3, alpha=1), name="qin")(inp)
        for i in range(int(rng.integers(1, 3))):
            h = QConv1D(int(rng.integers(2, 9)), 1, name=f"conv{i}", **_quantizers(rng))(h)
            h = _activation(rng, f"cact{i}", floats)(h)
        pool = L.GlobalAveragePooling1D if rng.random() < 0.5 else L.GlobalMaxPooling1D
        h = pool(name="pool")(h)
    else:
        inp = tf.keras.Input((int(rng.integers(2, 17)),), name="x")
        h = QActivation(quantized_bits(int(rng.integers(6, 13)), 3, alpha=1), name="qin")(inp)
    for i in range(int(rng.integers(1, 4))):
        h = QDense(int(rng.integers(2, 17)), name=f"dense{i}", **_quantizers(rng))(h)
        h = _activation(rng, f"act{i}", floats)(h)
    h = QDense(int(rng.integers(2, 6)), name="out", **_quantizers(rng))(h)
    if floats and rng.random() < 0.3:
        h = L.Activation("softmax", name="softmax")(h)
    model = tf.keras.Model(inp, h)
    model.set_weights([rng.normal(scale=0.7, size=w.shape) for w in model.get_weights()])
    return model


def _fixed(rng, min_int=1):
    width = int(rng.integers(4, 20))
    integer = int(rng.integers(min_int, min(width, 8) + 1))
    return f"fixed<{width},{integer},{rng.choice(ROUNDING)},{rng.choice(OVERFLOW)}>"


def user_config(model, rng):
    """bit_exact=False: random user precisions, narrow SAT/WRAP accumulators and random rounding modes included."""
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    for name, layer in config["LayerName"].items():
        precision = layer.setdefault("Precision", {})
        if name == "x":
            layer["Precision"] = {"result": INPUT.hls()}
        elif isinstance(precision, dict) and "accum" in precision:
            precision.update(accum=_fixed(rng), result=_fixed(rng))
        elif name.startswith(("act", "cact", "softmax")) and rng.random() < 0.5:
            layer["table_size"] = int(2 ** rng.integers(6, 12))
        if name == "softmax":
            layer["Implementation"] = str(rng.choice(["stable", "latency", "legacy"]))
    return config


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
@given(seed=st.integers(0, 2**32 - 1), bit_exact=st.booleans())
def test_random_models_are_bit_exact(seed, bit_exact):
    rng = np.random.default_rng(seed)
    model = random_model(rng, floats=not bit_exact)
    config = hls_config(model, INPUT) if bit_exact else user_config(model, rng)
    with tempfile.TemporaryDirectory() as tmp:
        hls_model = convert(model, f"{tmp}/hls", config, bit_exact=bit_exact)
        x = inputs_for(model.input_shape[1:], 2000, seed=seed % 1000)
        assert_bit_exact(hls_model, f"{tmp}/hls", x)
