"""Every emulated op family against the compiled hls4ml C-simulation, bit for bit, saturating inputs included."""

import hls4ml
import numpy as np
import pytest
import tensorflow as tf
from qkeras import QActivation, QConv1D, QDense, quantized_bits, quantized_relu, quantized_sigmoid, quantized_tanh

from l1forge.emulation.compare import compare_with_csim, first_differing_layer
from l1forge.emulation.emulator import Emulator
from l1forge.firmware.describe import UnsupportedLayerError, write_graph
from l1forge.firmware.hls import quiet_call
from l1forge.quantize.fixed import FixedType
from l1forge.quantize.precision import hls_config

L = tf.keras.layers
INPUT = FixedType(12, 4, True, "RND_CONV", "SAT")


def _q(bits=6, integer=0):
    return dict(kernel_quantizer=quantized_bits(bits, integer, alpha=1), bias_quantizer=quantized_bits(bits, integer, alpha=1))


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    weights = []
    for var, w in zip(model.weights, model.get_weights()):
        w = rng.normal(size=w.shape)
        weights.append(np.abs(w) + 0.2 if "variance" in var.name else w)
    model.set_weights(weights)
    return model


def inputs_for(shape, n, seed):
    """Normal inputs, a block far outside the input range, ties of the input type and a sweep of every table index."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=2.0, size=(n, *shape))
    x[: n // 10] *= 30.0
    x[n // 10 : n // 5] = np.round(x[n // 10 : n // 5] * 2**7) / 2**7 + 2**-9
    sweep = np.linspace(-9, 9, n // 5 * int(np.prod(shape)))
    x[n // 5 : 2 * (n // 5)] = sweep.reshape(n // 5, *shape)
    return x


def assert_bit_exact(hls_model, project, x):
    """0 differing events between emulator and C-sim, or a message naming the event and the first differing layer."""
    emulator = Emulator.from_file(write_graph(hls_model, project))
    stats, _, _ = compare_with_csim(emulator, hls_model.predict, x)
    if stats["mismatches"]:
        event = stats["first_mismatch"]["event"]
        _, trace = quiet_call(hls_model.trace, x[event : event + 1])
        layer = first_differing_layer(emulator, {k: v[0] for k, v in trace.items()}, x[event])
        pytest.fail(f"{stats['mismatches']} of {len(x)} events differ; first: event {event}, layer {layer}")
    return emulator


def convert(model, project, config, bit_exact):
    for layer in config["LayerName"].values():
        layer["Trace"] = True
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, output_dir=str(project), backend="Vitis", io_type="io_parallel", bit_exact=bit_exact
    )
    quiet_call(hls_model.compile)
    return hls_model


def _particle_model():
    """conv1d k=1 and k=3 (same padding), relu, batchnorm, tables, global pooling, concatenate, add, softmax."""
    inp = tf.keras.Input((8, 4), name="x")
    c = QConv1D(6, 1, name="conv", **_q())(inp)
    c = QActivation(quantized_relu(6, 2), name="crelu")(c)
    c3 = QConv1D(5, 3, padding="same", name="conv3", **_q())(c)
    c3 = L.BatchNormalization(name="bn")(c3)
    c3 = L.Activation("tanh", name="tanh")(c3)
    cat = L.Concatenate(name="cat")([L.GlobalAveragePooling1D(name="gap")(c3), L.GlobalMaxPooling1D(name="gmp")(c)])
    d1 = L.Activation("sigmoid", name="sig")(QDense(6, name="d1", **_q())(cat))
    d2 = L.ReLU(name="relu")(QDense(6, name="d2", **_q())(cat))
    s = L.Add(name="add")([d1, d2])
    out = L.Activation("softmax", name="sm")(QDense(4, name="d3", **_q())(s))
    return _randomize(tf.keras.Model(inp, out), 0)


def _user_config(model, softmax="stable"):
    """bit_exact=False: hls4ml defaults plus narrow rounding/saturating accumulators and small tables."""
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    layers = config["LayerName"]
    layers["x"]["Precision"] = {"result": INPUT.hls()}
    layers["conv"]["Precision"].update(accum="fixed<12,4,RND,SAT>", result="fixed<10,4,RND_CONV,SAT>")
    layers["conv3"]["Precision"].update(accum="fixed<10,3,TRN,WRAP>", result="fixed<10,3,RND,SAT_SYM>")
    for name, size in (("tanh", 256), ("sig", 1024)):
        layers[name].update(table_size=size, Precision={"result": "fixed<10,2,RND,SAT>", "table": "fixed<12,2,RND>"})
    layers["sm"].update(Implementation=softmax, table_size=512)
    return config


@pytest.mark.parametrize("softmax", ["stable", "latency", "legacy"])
def test_particle_ops_user_precisions(tmp_path, softmax):
    model = _particle_model()
    hls_model = convert(model, tmp_path / "hls", _user_config(model, softmax), bit_exact=False)
    emulator = assert_bit_exact(hls_model, tmp_path / "hls", inputs_for((8, 4), 3000, seed=1))
    ops = {layer.op for layer in emulator.layers}
    assert {"conv1d", "relu", "batchnorm", "table", "global_average", "global_max", "concatenate", "add"} <= ops
    assert "softmax" in ops


def _quantized_model():
    """The flow's kind of model: QKeras quantizers everywhere, hard sigmoid/tanh, merges, flatten."""
    inp = tf.keras.Input((6, 3), name="x")
    q = QActivation(quantized_bits(10, 3, alpha=1), name="qin")(inp)
    c = QActivation(quantized_relu(8, 3), name="crelu")(QConv1D(4, 1, name="conv", **_q(8, 1))(q))
    flat = L.Flatten(name="flat")(c)
    a = QActivation(quantized_tanh(8, 0), name="qtanh")(QDense(5, name="d1", **_q())(flat))
    b = QActivation(quantized_sigmoid(8), name="qsig")(QDense(5, name="d2", **_q())(flat))
    m = L.Subtract(name="sub")([a, b])
    m = L.Concatenate(name="cat")([m, L.Concatenate(name="cat2")([L.Maximum(name="max")([a, b]), L.Average(name="avg")([a, b])])])
    out = QActivation(quantized_bits(8, 2, alpha=1), name="qout")(QDense(3, name="d3", **_q(8, 2))(m))
    return _randomize(tf.keras.Model(inp, out), 1)


def test_quantized_ops_bit_exact_flow(tmp_path):
    model = _quantized_model()
    hls_model = convert(model, tmp_path / "hls", hls_config(model, INPUT), bit_exact=True)
    emulator = assert_bit_exact(hls_model, tmp_path / "hls", inputs_for((6, 3), 3000, seed=2))
    assert {"conv1d", "hard_tanh", "hard_sigmoid", "subtract", "maximum", "average", "reshape"} <= {
        layer.op for layer in emulator.layers
    }
    conv = next(layer for layer in emulator.layers if layer.op == "conv1d")
    assert conv.params["fast"]  # k=1 conv on quantizer types: one exact matrix product, as a dense


def test_unsupported_layer_fails_at_description(tmp_path):
    inputs = tf.keras.Input((4,), name="x")
    outputs = L.ELU(name="elu")(L.Dense(3, name="fc")(inputs))  # LeakyReLU is emulated now; ELU is not
    hls_model = hls4ml.converters.convert_from_keras_model(
        tf.keras.Model(inputs, outputs), output_dir=str(tmp_path / "hls"), backend="Vitis"
    )
    with pytest.raises(UnsupportedLayerError, match=r"'elu' of type ParametrizedActivation \(ELU\)"):
        write_graph(hls_model, tmp_path)


def test_zero_padding_1d_emulator_csim_and_rtl(tmp_path):
    """ZeroPadding1D (declared once in the op table): the emulator equals the C-sim and the Verilog equals the
    emulator, bit for bit, with asymmetric padding in front of a 'valid' conv."""
    from l1forge.rtl.check import check_rtl

    inp = tf.keras.Input((6, 3), name="x")
    q = QActivation(quantized_bits(8, 2, alpha=1), name="qin")(inp)
    p = L.ZeroPadding1D((2, 1), name="pad")(q)
    c = QActivation(quantized_relu(6, 2), name="crelu")(QConv1D(4, 3, name="conv", **_q())(p))
    out = QDense(3, name="d", **_q())(L.Flatten(name="flat")(c))
    model = _randomize(tf.keras.Model(inp, out), 3)
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    config["LayerName"]["x"]["Precision"] = {"result": INPUT.hls()}  # hls4ml's bit-exact pass has no ZeroPadding1D
    hls_model = convert(model, tmp_path / "hls", config, bit_exact=False)
    x = inputs_for((6, 3), 2000, seed=4)
    emulator = assert_bit_exact(hls_model, tmp_path / "hls", x)
    pad = next(layer for layer in emulator.layers if layer.op == "zeropad1d")
    assert pad.spec.shape == [9, 3] and (pad.spec["pad_left"], pad.spec["pad_right"]) == (2, 1)
    _, values = emulator.run(x[:50], keep_layers=True)
    assert not values["pad"][:, :2].any() and not values["pad"][:, -1].any() and values["pad"][:, 2:-1].any()
    rtl = check_rtl(tmp_path / "hls" / "graph.json", x, tmp_path / "rtl", events=2000, synthesis=False)["rtl"]
    assert rtl["events_checked"] == 2000 and rtl["mismatches"] == 0
