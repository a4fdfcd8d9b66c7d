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


@pytest.fixture(autouse=True)
def _zoo_rtl_events(request):
    """`pytest --zoo-rtl-events N` (tests/conftest.py): also simulate each zoo model's RTL on N events."""
    global RTL_EVENTS
    RTL_EVENTS = request.config.getoption("--zoo-rtl-events")


RTL_EVENTS = 0


def _run(tmp_path, name, model, x, output=None, **kw) -> dict:
    """Save the model and inputs, emulate with the C-sim check; the stats (0 C-sim mismatches asserted). With
    ``--zoo-rtl-events N`` also the Verilog of its firmware graph in Verilator against the emulator on N events."""
    model.save(tmp_path / f"{name}.h5")
    np.save(tmp_path / f"{name}_x.npy", x)
    start = time.perf_counter()
    project = tmp_path / f"{name}_project"
    stats = emulate_model(tmp_path / f"{name}.h5", tmp_path / f"{name}_x.npy", check_csim=True, output=output,
                          project_dir=project, **kw)
    TIMES[name] = time.perf_counter() - start
    assert stats["events_checked"] == N
    assert stats["mismatches"] == 0, stats["first_mismatch"]
    print(f"zoo {name}: {N} events, C-sim mismatches {stats['mismatches']}, Keras: {stats['keras_mismatches']} events "
          f"(max {stats['keras_max_abs_diff']:.3g}, flips {stats['argmax_flips']}), {TIMES[name]:.0f} s, "
          f"first {json.dumps(stats['first_keras_divergence'])}", file=sys.stderr)
    if RTL_EVENTS:
        _check_rtl(name, project / "graph.json", x, tmp_path / f"{name}_rtl")
    return stats


def _check_rtl(name, graph_json, x, out):
    """0 mismatches between the RTL (Verilator) and the emulator on RTL_EVENTS inputs: the zoo inputs resampled with
    a random factor of 0.8-1.25 each (distinct values, the same far tail)."""
    from l1forge.rtl.lower import RtlError
    from l1forge.rtl.check import check_rtl

    rng = np.random.default_rng(len(name))
    xs = x[rng.integers(len(x), size=RTL_EVENTS)] * rng.uniform(0.8, 1.25, size=(RTL_EVENTS, *x.shape[1:]))
    try:
        rtl = check_rtl(graph_json, xs, out, RTL_EVENTS, synthesis=False)["rtl"]
    except RtlError as err:  # a layer the RTL writer lacks: named, and nothing simulated
        print(f"zoo {name}: no RTL: {err}", file=sys.stderr)
        return
    print(f"zoo {name}: RTL {rtl['events_checked']} events, {rtl['mismatches']} mismatches, "
          f"{rtl['adders']} adders", file=sys.stderr)
    assert rtl["events_checked"] == RTL_EVENTS and rtl["mismatches"] == 0, rtl["first_mismatch"]


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


def test_input_feeding_two_branches_with_batchnorm_average_and_an_input_type(tmp_path):
    inp = L.Input((8,), name="x")
    a = QDense(6, name="da", **_q())(inp)
    a = L.BatchNormalization(name="bn")(a)
    a = QActivation(quantized_relu(8, 3), name="aa")(a)
    b = QDense(6, name="db", **_q(8, 1))(inp)
    b = QActivation(quantized_bits(8, 3, alpha=1), name="ab")(b)
    out = L.Average(name="avg")([a, b])  # hls4ml PR #1317: an Average merge whose constant 1/2 wrapped
    model = _randomize(tf.keras.Model(inp, out), 2)
    stats = _run(tmp_path, "two_branches", model, _inputs((8,), 2), input_type="fixed<12,5,RND_CONV,SAT>")
    assert stats["input_type"] == "fixed<12,5,RND_CONV,SAT>" and stats["input_type_note"] is None
    # Beyond the input range and the input's quantization the average agrees with Keras (no wrap, PR #1317).
    assert stats["first_keras_divergence"]["layer"] in ("da", "db", "da_linear", "db_linear")


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
    # QKeras saturates and rounds to nearest where int<8> wraps and the C++ conversion truncates: hls4ml deviates.
    div = stats["first_keras_divergence"]
    assert stats["keras_mismatches"] > N // 2 and "int<8>" in div["cause"], div
    assert "wraps" in div["cause"] or "toward zero" in div["cause"], div


# ---- several outputs ---------------------------------------------------------------------------------------
def test_several_outputs_one_dataset_per_head(tmp_path):
    inp = L.Input((8,), name="x")
    h = QActivation(quantized_bits(10, 4, alpha=1), name="qin")(inp)
    o1 = QDense(3, name="h1", **_q())(h)
    o2 = L.Reshape((2, 2), name="h2r")(QDense(4, name="h2", **_q())(h))
    o3 = L.Activation("softmax", name="h3")(QDense(5, name="h3d", **_q(16, 2))(h))  # a wide 'auto' type
    model = _randomize(tf.keras.Model(inp, [o1, o2, o3]), 4)
    stats = _run(tmp_path, "three_heads", model, _inputs((8,), 4), output=tmp_path / "heads.h5")
    with h5py.File(tmp_path / "heads.h5") as f:
        shapes = {k: f[k].shape for k in f}
    assert sorted(shapes.values()) == sorted([(N, 3), (N, 2, 2), (N, 5)])  # Keras shapes, one dataset per head
    # The table-based softmax differs from Keras' exact one (hls4ml #1512, #1443), here addressed by the top bits
    # of a wide 'auto' type: argmax flips.
    div = stats["first_keras_divergence"]
    assert stats["keras_mismatches"] > N // 2 and div["layer"] == "h3" and "wide type" in div["cause"], div
    assert stats["argmax_flips"] > 0


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


def test_unsupported_layers_are_refused_before_compiling(tmp_path):
    """LayerNormalization and SimpleRNN (hls4ml converts both; its bit-exact inference knows neither, so l1forge
    converts them with the name configuration): one line naming the layer and its type, and no C-sim compiled."""
    from l1forge.firmware.describe import UnsupportedLayerError

    inp = L.Input((5, 5, 2), name="x")
    h = L.Reshape((25, 2), name="seq")(QActivation(quantized_bits(8, 3, alpha=1), name="qin")(inp))
    np.save(tmp_path / "x.npy", _inputs((5, 5, 2), 12)[:10])
    cases = [(L.LayerNormalization(name="ln"), "layer 'ln' of type LayerNormalization"),
             (L.SimpleRNN(3, name="rnn"), "layer 'rnn' of type SimpleRNN")]
    for layer, message in cases:
        model = tf.keras.Model(inp, L.Flatten(name="flat")(layer(h)))
        model.save(tmp_path / "m.h5")
        start = time.perf_counter()
        with pytest.raises(UnsupportedLayerError, match=message):
            emulate_model(tmp_path / "m.h5", tmp_path / "x.npy", check_csim=True, project_dir=tmp_path / "p")
        assert time.perf_counter() - start < 30 and not list(tmp_path.glob("p/firmware/*.so"))


def test_a_model_that_only_quantizes_is_refused_in_one_line(tmp_path):
    inp = L.Input((8,), name="x")
    model = tf.keras.Model(inp, QActivation(quantized_bits(8, 3, alpha=1), name="q")(inp))
    model.save(tmp_path / "q.h5")
    np.save(tmp_path / "x.npy", _inputs((8,), 5)[:10])
    from l1forge.firmware.hls import ConversionError

    with pytest.raises(ConversionError, match="only quantizes its input 'x'"):
        emulate_model(tmp_path / "q.h5", tmp_path / "x.npy", check_csim=True)


# ---- the flow's student gets the same fidelity block -----------------------------------------------------------
def test_flow_student_compare_reports_fidelity(tmp_path):
    """Task.compare (the emulate stage of every task) adds the fidelity block that summary.json carries."""
    from l1forge.config import load_config
    from l1forge.firmware.build import build_firmware
    from l1forge.quantize.fixed import FixedType
    from l1forge.runner import Runner
    from l1forge.students.model import build_student

    cfg = load_config("smoke", None, "tagging")
    runner = Runner(cfg, tmp_path / "run", progress=False)
    run = runner.task.run
    run.student.mkdir(parents=True, exist_ok=True)
    model = _randomize(build_student(16, 5, hidden=(8,)), 6)
    model.save(run.student / "model.h5")
    build_firmware(model, FixedType.parse(cfg.student.input_type), cfg.firmware, run.firmware)
    x = _inputs((16,), 6)
    stats, emu, _ = runner.task.compare(x, np.arange(N))
    assert stats["mismatches"] == 0
    block = stats["fidelity"]
    assert block["keras_events"] == N and block["argmax_flips"] is not None
    # The student quantizes its input in Keras as the firmware does: only the table-free logits remain, and
    # they equal QKeras up to float rounding except where float32 rounding crosses a step.
    assert block["keras_mismatches"] <= N // 100, block


# ---- user configs, rounding/saturation, reuse, Resource ----------------------------------------------------------
def _write_config(tmp_path, name, config) -> str:
    import yaml

    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(config))))
    return path


def test_user_config_by_name_with_modes_reuse_resource_and_an_input_type(tmp_path):
    """A name-granularity config as config_from_keras_model writes it, edited: rounding/saturation on one result,
    reuse factor 2 and the Resource strategy; --input-type applied to it. hls4ml drops the trailing QActivation
    (passes/linear.py): the firmware differs from the model on most events, and the dropped quantizer is named."""
    import hls4ml

    inp = L.Input((12,), name="x")
    h = QActivation(quantized_bits(14, 5, alpha=1), name="qin")(inp)
    h = QDense(10, name="d1", **_q())(h)
    h = QActivation(quantized_relu(6, 2), name="a1")(h)
    h = QDense(5, name="d2", **_q())(h)
    out = QActivation(quantized_bits(6, 2, alpha=1), name="a2")(h)
    model = _randomize(tf.keras.Model(inp, out), 7)
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    config["Model"].update(ReuseFactor=2, Strategy="Resource")
    config["LayerName"]["d1"]["Precision"]["result"] = "fixed<20,11,RND,SAT>"
    config["LayerName"]["d1_linear"]["Precision"]["result"] = "fixed<20,11,RND,SAT>"  # 'auto' here would wrap
    stats = _run(tmp_path, "user_name_config", model, _inputs((12,), 7),
                 hls_config_path=_write_config(tmp_path, "name", config), input_type="fixed<14,6,RND_CONV,SAT>")
    assert stats["input_type"] == "fixed<14,6,RND_CONV,SAT>"  # applied to the user's config, not ignored
    div = stats["first_keras_divergence"]
    assert stats["keras_mismatches"] == N and stats["dropped_quantizers"] == ["a2"], div


def test_user_config_by_type_with_batchnorm_and_softmax(tmp_path):
    """A type-granularity config (model-wide precision, no input quantizer: the user's input type is used)."""
    import hls4ml

    inp = L.Input((10,), name="x")
    h = QDense(8, name="d1", **_q())(inp)
    h = L.BatchNormalization(name="bn")(h)
    h = QActivation(quantized_relu(8, 3), name="a1")(h)
    out = L.Activation("softmax", name="sm")(QDense(5, name="d2", **_q())(h))
    model = _randomize(tf.keras.Model(inp, out), 8)
    config = hls4ml.utils.config_from_keras_model(model, granularity="type", backend="Vitis",
                                                  default_precision="fixed<18,8,RND_CONV,SAT>")
    config["Model"]["ReuseFactor"] = 4
    stats = _run(tmp_path, "user_type_config", model, _inputs((10,), 8),
                 hls_config_path=_write_config(tmp_path, "type", config))
    assert stats["input_type"] == "fixed<18,8,RND_CONV,SAT>" and stats["input_type_note"] is None
    assert stats["argmax_flips"] is not None and stats["keras_mismatches"] > 0


# ---- quantizer settings hls4ml implements differently -----------------------------------------------------------
@pytest.mark.parametrize("setting", ["keep_negative", "symmetric"])
def test_quantizer_settings_hls4ml_implements_differently(tmp_path, setting):
    kw = {"keep_negative": False} if setting == "keep_negative" else {"symmetric": 1}
    inp = L.Input((8,), name="x")
    h = QActivation(quantized_bits(10, 4, alpha=1), name="qin")(inp)
    h = QDense(6, name="d1", **_q())(h)
    out = QActivation(quantized_bits(5, 2, alpha=1, **kw), name="qs")(h)
    model = _randomize(tf.keras.Model(inp, out), 9)
    stats = _run(tmp_path, setting, model, _inputs((8,), 9))
    div = stats["first_keras_divergence"]
    assert stats["keras_mismatches"] > N // 10 and div["layer"] == "qs" and setting in div["cause"], div


# ---- CNN layers (CICADA-class students on calorimeter regions) ---------------------------------------------------
def test_cnn_conv2d_pooling_leaky_relu(tmp_path):
    """QConv2D ('same' and strided 'valid'), QDepthwiseConv2D, quantized_relu(negative_slope) and LeakyReLU,
    Max/AveragePooling2D with 3-wide windows, strides other than the window, 'same' and 'valid', Flatten, QDense."""
    from qkeras import QConv2D, QDepthwiseConv2D

    inp = L.Input((9, 8, 2), name="x")
    h = QActivation(quantized_bits(10, 4, alpha=1), name="qin")(inp)
    h = QConv2D(3, (3, 3), padding="same", name="c1", **_q())(h)
    h = QActivation(quantized_relu(8, 3, negative_slope=0.25), name="lr1")(h)
    h = L.MaxPooling2D((3, 3), strides=(2, 2), padding="same", name="mp")(h)
    h = QDepthwiseConv2D((2, 2), padding="same", name="dw", depthwise_quantizer=quantized_bits(6, 0, alpha=1),
                         bias_quantizer=quantized_bits(6, 0, alpha=1))(h)
    h = QConv2D(4, (2, 2), strides=(1, 2), padding="valid", name="c2", **_q())(h)
    h = L.LeakyReLU(alpha=0.125, name="lr2")(h)
    # (3, 1) here would make hls4ml's bit-exact 'auto' accumulator 64 bits wide (a division by 3): refused, see below
    h = L.AveragePooling2D((2, 1), strides=(1, 1), padding="valid", name="ap")(h)
    h = L.Flatten(name="flat")(h)
    out = QDense(3, name="d", **_q())(h)
    model = _randomize(tf.keras.Model(inp, out), 10)
    stats = _run(tmp_path, "cnn", model, _inputs((9, 8, 2), 10, scale=4.0), output=tmp_path / "cnn.npy")
    assert np.load(tmp_path / "cnn.npy").shape == (N, 3)
    assert stats["keras_events"] == N


def test_cnn_same_average_pooling_and_pointwise(tmp_path):
    """AveragePooling2D 'same' (the divisor is the unpadded area) on signed data, a 1x1 QConv2DBatchnorm (hls4ml
    folds the batchnorm into the weights), Resource strategy through a user config with reuse factor 2."""
    import hls4ml
    from qkeras import QConv2DBatchnorm

    inp = L.Input((6, 5, 3), name="x")
    h = QActivation(quantized_bits(8, 3, alpha=1), name="qin")(inp)
    h = QConv2DBatchnorm(4, (1, 1), name="pw", **_q())(h)
    h = QActivation(quantized_bits(8, 3, alpha=1), name="qa")(h)
    h = L.AveragePooling2D((3, 3), strides=(2, 2), padding="same", name="ap")(h)
    h = L.MaxPooling2D((2, 2), padding="same", name="mp")(h)
    out = L.Flatten(name="flat")(h)
    model = _randomize(tf.keras.Model(inp, out), 11)
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    config["Model"].update(ReuseFactor=2, Strategy="Resource")
    _run(tmp_path, "cnn_same_avg", model, _inputs((6, 5, 3), 11), hls_config_path=_write_config(tmp_path, "cnn", config))


def test_synthesize_a_plain_input_model_with_a_user_config_and_an_input_type(tmp_path, capsys):
    """`l1forge synthesize --model` converts a QDense on a plain Input; --input-type is applied to the user config."""
    import hls4ml

    inp = L.Input((6,), name="x")
    model = _randomize(tf.keras.Model(inp, QDense(3, name="d", **_q())(QDense(5, name="d0", **_q())(inp))), 13)
    model.save(tmp_path / "m.h5")
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    code, err = _cli(["synthesize", "--model", tmp_path / "m.h5", "--out", tmp_path / "fw", "--hls-config",
                      _write_config(tmp_path, "c", config), "--input-type", "fixed<10,4,RND_CONV,SAT>"], capsys)
    assert code == 0, err
    block = json.loads((tmp_path / "fw" / "summary.json").read_text())["tasks"]["user"]["firmware"]
    assert block["input_type"].startswith("fixed<10,4,RND_CONV,SAT") and block["input_type_note"] is None
    np.save(tmp_path / "x.npy", _inputs((6,), 13))
    code, err = _cli(["emulate", "--model", tmp_path / "m.h5", "--data", tmp_path / "x.npy"], capsys)  # no C-sim
    assert code == 0 and "note: input type fixed<16,6,RND_CONV,SAT> (the l1forge default" in err, err
    assert "warning: the firmware differs from the Keras model" in err  # inputs beyond +-32 saturate


def test_a_plain_keras_model_converts_without_a_config(tmp_path, capsys):
    """Dense-BatchNorm-ReLU-Dense with float weights, no quantizer and no hls4ml config (a fresh user's first try):
    converted as hls4ml converts plain Keras by default (weights fixed<16,6>, BatchNorm folded into the Dense), the
    emulator bit-exact against the C-sim, the firmware within its fixed-point error of the float model on inputs in
    range; `synthesize --model` writes the project. (Bit-exact inference from float weights gave a 70-bit sum.)"""
    inp = L.Input((10,), name="x")
    h = L.BatchNormalization(name="bn")(L.Dense(8, name="dense")(inp))
    model = _randomize(tf.keras.Model(inp, L.Dense(3, name="out")(L.ReLU(name="relu")(h))), 21)
    x = _inputs((10,), 21, scale=1.0)
    stats = _run(tmp_path, "plain_keras", model, x)
    graph = json.loads((tmp_path / "plain_keras_project" / "graph.json").read_text())
    dense = next(layer for layer in graph["layers"] if layer["name"] == "dense")
    assert dense["weight_t"].startswith("fixed<16,6,") and "bn" not in [layer["name"] for layer in graph["layers"]]
    in_range = np.abs(x).max(axis=1) < 30  # inside fixed<16,6>: only the weights' and sums' rounding remains
    from l1forge.emulation.emulator import Emulator

    emulated = Emulator.from_file(tmp_path / "plain_keras_project" / "graph.json").predict(x)
    assert np.abs(emulated[in_range] - model.predict(x, verbose=0)[in_range]).max() < 0.05
    assert stats["keras_mismatches"] > 0  # outside the input range the firmware saturates, as it should
    code, err = _cli(["synthesize", "--model", tmp_path / "plain_keras.h5", "--out", tmp_path / "fw"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "fw" / "summary.json").read_text())["tasks"]["user"]["firmware"]["ii_cycles"] == 1


def test_a_type_wider_than_the_emulator_is_refused_before_compiling(tmp_path):
    """A user config asking for a 2000-bit accumulator (more than ap_fixed compiles; any narrower width is exact):
    one line naming the layer and the type and saying what to set, no C-sim compiled."""
    import hls4ml

    from l1forge.firmware.describe import UnsupportedLayerError

    inp = L.Input((6,), name="x")
    model = _randomize(tf.keras.Model(inp, QDense(3, name="d", **_q())(inp)), 5)
    model.save(tmp_path / "m.h5")
    np.save(tmp_path / "x.npy", _inputs((6,), 5)[:10])
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    config["LayerName"]["d"]["Precision"]["accum"] = "fixed<2000,20>"
    with pytest.raises(UnsupportedLayerError, match=r"layer 'd' \(Dense\): accum_t fixed<2000,20.*wider than the 1024 "
                       r"bits ap_fixed compiles.*set a narrower type .*\"accum\": \"fixed<64,32>\""):
        emulate_model(tmp_path / "m.h5", tmp_path / "x.npy", hls_config_path=_write_config(tmp_path, "c", config),
                      check_csim=True, project_dir=tmp_path / "p")
    assert not list(tmp_path.glob("p/**/*.so"))


# ---- hls4ml's broken designs (issue 31 item 3) ------------------------------------------------------------------
def test_auto_po2_without_an_input_quantizer_falls_back_to_the_name_configuration(tmp_path, capsys):
    """A 57-24-12-1 QKeras model with quantized_bits(8, 1, alpha='auto_po2') kernels and no input quantizer: hls4ml's
    bit-exact inference gives the ApplyAlpha scales a fixed type its C++ cannot read the power-of-two weights into
    ("ap_ufixed<2,1> has no member named sign"). l1forge converts it with the name configuration instead, says so in
    a note line, and is bit-exact against what it compiled. The compile error of the broken design names a log
    that outlives its project."""
    import shutil

    from l1forge.byom import UserModel
    from l1forge.firmware.hls import (ConversionError, FirmwareSettings, _convert, compile_project,
                                      conversion_config, unreadable_weights)
    from l1forge.quantize.precision import DEFAULT_INPUT

    q = dict(kernel_quantizer=quantized_bits(8, 1, alpha="auto_po2"), bias_quantizer=quantized_bits(8, 1, alpha=1))
    inp = L.Input((57,), name="x")
    h = QActivation(quantized_relu(8, 3), name="a1")(QDense(24, name="d1", **q)(inp))
    h = QActivation(quantized_relu(8, 3), name="a2")(QDense(12, name="d2", **q)(h))
    model = _randomize(tf.keras.Model(inp, QDense(1, name="d3", **q)(h)), 31)
    stats = _run(tmp_path, "auto_po2", model, _inputs((57,), 31))
    assert "bit_exact off" in stats["conversion_note"] and "layer 'd1_alpha' weight 'scale'" in stats["conversion_note"]
    code, err = _cli(["emulate", "--model", tmp_path / "auto_po2.h5", "--data", tmp_path / "auto_po2_x.npy"], capsys)
    assert code == 0 and "note: hls4ml's bit-exact type inference made layer 'd1_alpha'" in err, err
    # the design hls4ml's bit-exact inference gives does not compile; the log named stays after the project goes
    user = UserModel.load(tmp_path / "auto_po2.h5")
    settings = FirmwareSettings()
    broken = _convert(user.model, conversion_config(user.model, DEFAULT_INPUT, settings, None), tmp_path / "broken",
                      settings, True)
    assert unreadable_weights(broken).startswith("layer 'd1_alpha' weight 'scale' (ufixed<2,1")
    with pytest.raises(ConversionError, match=r"has no member named .sign.*full log: .*kept\.log") as err:
        compile_project(broken, keep_log=tmp_path / "logs" / "kept.log")
    shutil.rmtree(tmp_path / "broken")
    assert "sign" in (tmp_path / "logs" / "kept.log").read_text() and str(tmp_path / "logs") in str(err.value)


# ---- the kinds of hls4ml's own test suite (test_pooling, test_globalpooling, test_zeropadding, test_cropping,
# test_upsampling, test_activations, test_softsign, test_merge): issue 31 item 5 -------------------------------------
def test_qkeras_1d_and_2d_reshaping_and_pooling_layers(tmp_path):
    """One QKeras model with hls4ml's reshaping and pooling kinds, 1-D and 2-D: ZeroPadding1D/2D, DepthwiseConv1D and
    SeparableConv1D (test_depthconv1d, test_sepconv1d), Max/AveragePooling1D ('same' and 'valid'), Cropping1D/2D,
    UpSampling1D/2D, MaxPooling2D, GlobalMax/AveragePooling1D/2D. hls4ml's
    bit-exact inference does not know Cropping and Resize: l1forge converts with the name configuration (a note)."""
    from qkeras import QConv1D, QConv2D

    inp = L.Input((12, 4), name="x")
    h = QActivation(quantized_bits(8, 3, alpha=1), name="qin")(inp)
    a = L.SeparableConv1D(4, 3, name="sep1")(L.DepthwiseConv1D(3, padding="same", name="dw1")(
        L.ZeroPadding1D((1, 2), name="zp1")(h)))
    a = QConv1D(3, 3, name="c1", **_q())(a)
    a = QActivation(quantized_relu(8, 3), name="r1")(a)
    a = L.AveragePooling1D(2, name="ap1")(L.MaxPooling1D(3, strides=2, padding="same", name="mp1")(a))
    a = L.UpSampling1D(2, name="up1")(L.Cropping1D((1, 0), name="cr1")(a))
    a = L.Concatenate(name="cat1")([L.GlobalAveragePooling1D(name="gap1")(a), L.GlobalMaxPooling1D(name="gmp1")(a)])
    b = L.ZeroPadding2D(((1, 0), (0, 1)), name="zp2")(L.Reshape((6, 4, 2), name="img")(h))
    b = QActivation(quantized_relu(8, 3), name="r2")(QConv2D(2, (3, 3), name="c2", **_q())(b))
    b = L.UpSampling2D((1, 2), name="up2")(L.Cropping2D(((1, 1), (0, 1)), name="cr2")(b))
    b = L.MaxPooling2D((2, 2), padding="same", name="mp2")(b)
    b = L.Concatenate(name="cat2")([L.GlobalMaxPooling2D(name="gmp2")(b), L.GlobalAveragePooling2D(name="gap2")(b)])
    out = QDense(3, name="d", **_q())(L.Concatenate(name="cat")([a, b]))
    model = _randomize(tf.keras.Model(inp, out), 41)
    stats = _run(tmp_path, "reshaping_pooling", model, _inputs((12, 4), 41, scale=2.0))
    assert "bit-exact type inference does not know ZeroPadding1D" in stats["conversion_note"], stats["conversion_note"]


def test_plain_keras_activations_and_merges(tmp_path):
    """A plain Keras model (no quantizer, no config: hls4ml's default fixed<16,6> and 1024-entry tables) with the
    activations of hls4ml's test_activations/test_softsign (ELU, SELU, PReLU, ThresholdedReLU, LeakyReLU,
    softplus, softsign, sigmoid, tanh) and the merges of test_merge (Multiply, Dot, Add, Subtract, Average,
    Maximum, Minimum, Concatenate), on two branches of one input."""
    inp = L.Input((8,), name="x")
    a = L.Dense(5, name="da")(inp)
    b = L.Dense(5, name="db")(inp)
    acts = [L.ELU(0.5, name="elu")(a), L.Activation("selu", name="selu")(b), L.PReLU(name="prelu")(a),
            L.ThresholdedReLU(0.3, name="trelu")(b), L.LeakyReLU(0.2, name="lrelu")(a),
            L.Activation("softplus", name="splus")(b), L.Activation("softsign", name="ssign")(a),
            L.Activation("sigmoid", name="sig")(b), L.Activation("tanh", name="tanh")(a)]
    merges = [L.Multiply(name="mul")([a, b]), L.Dot(axes=1, name="dot")([a, b]), L.Add(name="add")([a, b]),
              L.Subtract(name="sub")([a, b]), L.Average(name="avg")([a, b]), L.Maximum(name="max")([a, b]),
              L.Minimum(name="min")([a, b])]
    out = acts[0]
    for k, part in enumerate(acts[1:] + merges):  # hls4ml merges two tensors at a time
        out = L.Concatenate(name=f"cat{k}")([out, part])
    model = _randomize(tf.keras.Model(inp, out), 42)
    stats = _run(tmp_path, "activations_merges", model, _inputs((8,), 42, scale=1.0))
    # hls4ml's precision inference stops on an assertion for a Dot with an 'auto' accumulator: repaired, and said
    assert "Dot layer dot" in stats["conversion_note"] and "fixed<16,6>" in stats["conversion_note"]


def test_several_model_inputs_as_hls4ml_test_merge_builds_them(tmp_path):
    """Two model inputs (hls4ml's test_merge: each merge of two Input layers), each with its own input quantizer,
    merged by Add, Multiply, Maximum and Concatenate: the emulator takes one array per input (an .npz named by
    input, or an HDF5 dataset per input), bit-exact against the C-sim."""
    a_in, b_in = L.Input((6,), name="in1"), L.Input((6,), name="in2")
    a = QActivation(quantized_bits(8, 3, alpha=1), name="qa")(a_in)
    b = QActivation(quantized_bits(6, 2, alpha=1), name="qb")(b_in)
    m = L.Concatenate(name="cat")([L.Add(name="add")([a, b]), L.Multiply(name="mul")([a, b])])
    out = QDense(3, name="d", **_q())(L.Concatenate(name="cat2")([m, L.Maximum(name="max")([a, b])]))
    model = _randomize(tf.keras.Model([a_in, b_in], out), 43)
    model.save(tmp_path / "two.h5")
    x = [_inputs((6,), 43), _inputs((6,), 44)]
    np.savez(tmp_path / "two.npz", in1=x[0], in2=x[1])
    stats = emulate_model(tmp_path / "two.h5", tmp_path / "two.npz", check_csim=True, project_dir=tmp_path / "p")
    assert stats["events_checked"] == N and stats["mismatches"] == 0, stats["first_mismatch"]
    assert stats["input_types"] == ["fixed<8,4,RND_CONV,SAT>", "fixed<6,3,RND_CONV,SAT>"], stats["input_types"]
    with h5py.File(tmp_path / "two.h5in", "w") as f:
        f["first"], f["second"] = x
    again = emulate_model(tmp_path / "two.h5", tmp_path / "two.h5in", dataset="first,second")
    assert again["events"] == N and again["keras_events"] == N


def test_binary_and_ternary_networks_as_hls4ml_test_qkeras_builds_them(tmp_path):
    """hls4ml's test_btnn kinds in one model, four heads: ternary(alpha=1) weights into binary_tanh; binary weights,
    BatchNormalization and a binary() activation (hls4ml: BatchNormalizationQuantizedTanh, normalize_binary_tanh);
    ternary(alpha='auto') weights, BatchNormalization and 'ternary' (normalize_ternary_tanh); the binary outputs into
    binary weights (XNOR: both_binary, and nnet_mult.h's cast (ap_int)(2 acc - n_in)) and into 6-bit weights
    (data_binary). hls4ml's bit-exact inference breaks on the alpha scale of binary weights: converted with the name
    configuration (a note). Bit-exact against the C-sim."""
    from qkeras import binary, ternary

    inp = L.Input((10,), name="x")
    h = QActivation(quantized_bits(8, 3, alpha=1), name="qin")(inp)
    b5 = quantized_bits(5, 2)
    o1 = QActivation("binary_tanh", name="bt")(QDense(6, kernel_quantizer=ternary(alpha=1), bias_quantizer=b5,
                                                      name="d1")(h))
    o2 = QActivation(binary(), name="bb")(L.BatchNormalization(name="bn2")(QDense(
        6, kernel_quantizer=binary(), bias_quantizer=b5, name="d2")(h)))
    o3 = QActivation("ternary", name="tt")(L.BatchNormalization(name="bn3")(QDense(
        6, kernel_quantizer=ternary(alpha="auto"), bias_quantizer=b5, name="d3")(h)))
    xnor = QDense(4, kernel_quantizer=binary(), bias_quantizer=b5, name="xnor")(o2)  # binary data, binary weights
    dbin = QDense(4, kernel_quantizer=quantized_bits(6, 1, alpha=1), bias_quantizer=b5, name="dbin")(o2)
    model = _randomize(tf.keras.Model(inp, [o1, o3, xnor, dbin]), 44)
    stats = _run(tmp_path, "btnn", model, _inputs((10,), 44), output=tmp_path / "btnn.h5")
    graph = json.loads((tmp_path / "btnn_project" / "graph.json").read_text())
    assert {"binary_tanh", "bn_quantized_tanh"} <= {layer["op"] for layer in graph["layers"]}
    products = {layer["name"]: layer.get("product") for layer in graph["layers"]}
    assert products["xnor"] == "both_binary" and products["dbin"] == "data_binary", products
    assert stats["events_checked"] == N


@pytest.mark.slow  # the stream C-sim compiles for 20-30 s on 2 shared cores: make test-slow
def test_io_stream_cnn_with_branches(tmp_path):
    """io_stream (hls4ml's stream kernels: the same arithmetic as io_parallel, with Clone layers where a tensor
    feeds two layers and Repack for reshapes): QConv2D 'same' (hls4ml pads in a layer of its own), pooling, a
    branch added back, Flatten, QDense, softmax; bit-exact against the C-sim."""
    from qkeras import QConv2D

    from l1forge.firmware.hls import FirmwareSettings

    inp = L.Input((6, 6, 2), name="x")
    h = QActivation(quantized_bits(8, 3, alpha=1), name="qin")(inp)
    h = L.MaxPooling2D((2, 2), name="mp")(QActivation(quantized_relu(8, 3), name="r1")(
        QConv2D(2, (3, 3), padding="same", name="c1", **_q())(h)))
    a = QActivation(quantized_relu(8, 3), name="ra")(QConv2D(2, (1, 1), name="ca", **_q())(h))
    h = L.Flatten(name="flat")(L.Add(name="add")([a, h]))
    out = L.Activation("softmax", name="sm")(QDense(3, name="d", **_q())(h))
    model = _randomize(tf.keras.Model(inp, out), 45)
    _run(tmp_path, "io_stream", model, _inputs((6, 6, 2), 45), settings=FirmwareSettings(io_type="io_stream"))
    graph = json.loads((tmp_path / "io_stream_project" / "graph.json").read_text())
    assert graph["io_type"] == "io_stream" and "Clone" not in {layer["class_name"] for layer in graph["layers"]}


def test_binary_cnn_as_hls4ml_test_binary_cnn_builds_it(tmp_path):
    """hls4ml's test_binary_cnn kind: binary QConv2D kernels (weight_binary), BatchNormalization + binary()
    (normalize_binary_tanh), a binary conv on binary data (XNOR: both_binary and the (ap_int)(2 acc - n_in) cast),
    MaxPooling2D on 1-bit data, Flatten and an XNOR QDense; bit-exact against the C-sim."""
    from qkeras import QConv2D, binary

    b5 = quantized_bits(5, 2)
    inp = L.Input((6, 6, 1), name="x")
    h = QActivation(quantized_bits(8, 3, alpha=1), name="qin")(inp)
    h = QActivation(binary(), name="a1")(L.BatchNormalization(name="bn1")(
        QConv2D(3, (3, 3), kernel_quantizer=binary(), bias_quantizer=b5, name="c1")(h)))
    h = QActivation(binary(), name="a2")(L.BatchNormalization(name="bn2")(
        QConv2D(2, (2, 2), kernel_quantizer=binary(), bias_quantizer=b5, name="c2")(h)))
    h = L.Flatten(name="f")(L.MaxPooling2D((2, 2), name="mp")(h))
    model = _randomize(tf.keras.Model(inp, QDense(3, kernel_quantizer=binary(), bias_quantizer=b5, name="d")(h)), 7)
    stats = _run(tmp_path, "binary_cnn", model, _inputs((6, 6, 1), 7))
    assert "bit_exact off" in stats["conversion_note"]


def test_resource_strategy_with_saturating_accumulators_follows_its_order(tmp_path):
    """hls4ml's Resource strategy adds the products in the order of nnet_dense_resource.h's loops, not input order:
    with narrow saturating accumulators that order decides the result. Reuse factor 2 (dense_resource_rf_leq_nin)
    and 12 on 6 inputs (dense_resource_rf_gt_nin_rem0), each accumulator fixed<7,3,RND,SAT>: bit-exact."""
    import hls4ml

    from l1forge.emulation.emulator import Emulator

    inp = L.Input((8,), name="x")
    h = QActivation(quantized_bits(8, 3, alpha=1), name="qin")(inp)
    h = QActivation(quantized_relu(8, 3), name="r")(QDense(6, name="d1", **_q(8, 2))(h))
    model = _randomize(tf.keras.Model(inp, QDense(4, name="d2", **_q(8, 2))(h)), 46)
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    config["Model"].update(Strategy="Resource", ReuseFactor=2)
    for name, reuse in (("d1", 2), ("d2", 12)):
        config["LayerName"][name].update(Strategy="Resource", ReuseFactor=reuse)
        config["LayerName"][name]["Precision"]["accum"] = "fixed<7,3,RND,SAT>"
    _run(tmp_path, "resource_order", model, _inputs((8,), 46), hls_config_path=_write_config(tmp_path, "r", config))
    emulator = Emulator.from_file(tmp_path / "resource_order_project" / "graph.json")
    dense = {layer.name: layer for layer in emulator.layers if layer.op == "dense"}
    assert [dense[k].spec["reuse_factor"] for k in ("d1", "d2")] == [2, 12]
    assert all("schedule" in layer.params for layer in dense.values())  # the accumulators can saturate
