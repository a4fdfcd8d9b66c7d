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
    inputs = tf.keras.Input((4, 3), name="x")
    outputs = L.LayerNormalization(name="ln")(L.Dense(3, name="fc")(inputs))  # hls4ml converts it; l1forge does not
    hls_model = hls4ml.converters.convert_from_keras_model(
        tf.keras.Model(inputs, outputs), output_dir=str(tmp_path / "hls"), backend="Vitis"
    )
    with pytest.raises(UnsupportedLayerError, match=r"'ln' of type LayerNormalization"):
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


def _layers_model():
    """Every layer kind issue 31 added, in one model (one C-sim compile, one Verilator build): ZeroPadding2D,
    Cropping2D, UpSampling2D, GlobalMax/AveragePooling2D, Max/AveragePooling1D ('same' and 'valid'), Cropping1D,
    UpSampling1D, ELU (alpha 0.7 and 1), SELU, PReLU, ThresholdedReLU, softplus, softsign, Multiply and Dot."""
    inp = tf.keras.Input((5, 4, 2), name="x")
    h = QActivation(quantized_bits(8, 2, alpha=1), name="qin")(inp)
    u = L.UpSampling2D((2, 1), name="up2")(L.Cropping2D(((1, 2), (0, 1)), name="cr2")(
        L.ZeroPadding2D(((1, 0), (2, 1)), name="zp2")(h)))
    r = L.Reshape((10, 4), name="rs")(h)
    parts = [L.GlobalMaxPooling2D(name="gmp2")(u), L.GlobalAveragePooling2D(name="gap2")(u),
             L.Flatten(name="f1")(L.MaxPooling1D(3, strides=2, padding="same", name="mp1")(r)),
             L.Flatten(name="f2")(L.AveragePooling1D(2, name="ap1")(r)),
             L.Flatten(name="f3")(L.UpSampling1D(3, name="up1")(L.Cropping1D((1, 2), name="cr1")(r)))]
    v = QDense(4, name="d", **_q())(L.Flatten(name="flat")(h))
    pos = L.Activation("relu", name="r")(v)
    parts += [L.ELU(0.7, name="elu")(v), L.Activation("elu", name="elu1")(v), L.Activation("selu", name="selu")(v),
              L.PReLU(name="prelu")(v), L.ThresholdedReLU(0.6, name="trelu")(v), L.Activation("softplus", name="sp")(v),
              L.Activation("softsign", name="ss")(v), L.Multiply(name="mul")([v, pos]), L.Dot(axes=1, name="dot")([v, pos])]
    out = parts[0]
    for k, part in enumerate(parts[1:]):  # hls4ml merges two tensors at a time
        out = L.Concatenate(name=f"cat{k}")([out, part])
    return _randomize(tf.keras.Model(inp, out), 5)


@pytest.fixture(scope="module")
def new_layers(tmp_path_factory):
    """_layers_model converted with user precisions (rounding, saturating accumulators, small tables), compiled, and
    checked bit for bit against the C-sim: (project dir, inputs, emulator)."""
    project = tmp_path_factory.mktemp("new_layers") / "hls"
    model = _layers_model()
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    layers = config["LayerName"]
    layers["x"]["Precision"] = {"result": INPUT.hls()}
    layers["d"]["Precision"].update(accum="fixed<14,5,RND,SAT>", result="fixed<10,4,RND_CONV,SAT>")
    for name in ("gap2", "ap1"):
        layers[name]["Precision"] = {"accum": "fixed<14,6,RND,SAT>", "result": "fixed<10,3,RND_CONV,SAT>"}
    for name, size in (("elu", 256), ("elu1", 128), ("selu", 128), ("sp", 256), ("ss", 64)):
        layers[name].update(table_size=size, Precision={"result": "fixed<12,4,RND,SAT>", "table": "fixed<14,3,RND>"})
    layers["dot"]["Precision"] = {"accum": "fixed<12,5,RND,SAT>", "result": "auto"}  # hls4ml infers no dot accum
    hls_model = convert(model, project, config, bit_exact=False)
    x = inputs_for((5, 4, 2), 2000, seed=6)
    return project, x, assert_bit_exact(hls_model, project, x)


def test_new_layer_kinds_emulator_equals_csim(new_layers):
    """The layers of _layers_model: the emulator equals the C-sim bit for bit (in the fixture), each op present."""
    _, _, emulator = new_layers
    new = {"zeropad2d", "cropping2d", "resize", "global_max", "global_average", "pool2d", "cropping1d", "elu", "prelu",
           "thresholded_relu", "table", "multiply", "dot"}
    assert new <= {layer.op for layer in emulator.layers}
    functions = {layer.spec["function"] for layer in emulator.layers if layer.op in ("table", "elu")}
    assert functions == {"softplus", "softsign", "elu", "selu"}


@pytest.mark.slow
def test_new_layer_kinds_rtl_equals_emulator(new_layers, tmp_path):
    """Their Verilog equals the emulator in Verilator (about 45 s: make test-slow). A variable multiplier is one
    cell: 200 MHz leaves it room in one clock period."""
    from l1forge.rtl.check import check_rtl

    project, x, _ = new_layers
    rtl = check_rtl(project / "graph.json", x, tmp_path / "rtl", events=500, clock_mhz=200, synthesis=False)["rtl"]
    assert rtl["events_checked"] == 500 and rtl["mismatches"] == 0
