"""The emulator against the real hls4ml C-simulation, bit for bit."""

import pathlib

import hls4ml
import numpy as np
import pytest

from l1forge.emulation.compare import compare_with_csim, first_differing_layer
from l1forge.emulation.emulator import EmulationError, Emulator
from l1forge.graph.ir import read_graph
from l1forge.firmware.describe import write_graph
from l1forge.firmware.hls import FirmwareSettings, convert, quiet_call
from l1forge.quantize.precision import Precision, hls_config
from l1forge.students.model import build_student


def _random_student(hidden, seed):
    model = build_student(16, 5, hidden=hidden)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    return model


def _inputs(n, seed):
    """Normal inputs plus a block far outside the input range (saturation) and exact ties of the input type."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(n, 16))
    x[: n // 10] *= 40.0
    x[n // 10 : n // 5] = np.round(x[n // 10 : n // 5] * 2**10) / 2**10 + 2**-11
    return x


@pytest.fixture(scope="module")
def student_firmware(tmp_path_factory):
    """The flow's student (random weights and biases), converted as the flow converts it."""
    model = _random_student((64, 32, 32), seed=0)
    project = tmp_path_factory.mktemp("fw") / "hls"
    hls_model = convert(model, Precision().input, FirmwareSettings(), project)
    return model, hls_model, Emulator.from_file(write_graph(hls_model, project))


def test_emulator_is_bit_exact_with_csim(student_firmware):
    model, hls_model, emulator = student_firmware
    x = _inputs(6000, seed=1)
    stats, emu, csim = compare_with_csim(emulator, hls_model.predict, x)
    assert stats["events_checked"] == 6000
    assert stats["mismatches"] == 0, stats["first_mismatch"]
    assert np.array_equal(emu, csim)
    # The firmware really computes something: outputs vary and track the QKeras model.
    assert np.std(emu) > 0.1
    assert np.corrcoef(emu.ravel(), model.predict(x, verbose=0).ravel())[0, 1] > 0.99


def test_fast_and_stepwise_dense_agree(student_firmware):
    _, _, emulator = student_firmware
    x = _inputs(500, seed=2)
    fast = emulator.predict(x)
    for layer in emulator.layers:
        if layer.op == "dense":
            assert layer.params["fast"]
            layer.params["fast"] = False
    try:
        assert np.array_equal(emulator.predict(x), fast)
    finally:
        for layer in emulator.layers:
            if layer.op == "dense":
                layer.params["fast"] = True


def test_narrow_saturating_accumulators(tmp_path):
    """User-chosen types (no bit-exact inference): rounded products, SAT/SAT_SYM and extra linear layers."""
    model = _random_student((8,), seed=3)
    config = hls_config(model, Precision().input)
    config["LayerName"]["dense1"]["Precision"].update(accum="fixed<12,3,RND,SAT>", result="fixed<10,3,RND_CONV,SAT>")
    config["LayerName"]["logits"]["Precision"].update(accum="fixed<8,2,TRN,WRAP>", result="fixed<8,2,RND,SAT_SYM>")
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, output_dir=str(tmp_path / "hls"), backend="Vitis", io_type="io_parallel"
    )
    quiet_call(hls_model.compile)
    emulator = Emulator.from_file(write_graph(hls_model, tmp_path / "hls"))
    assert not any(layer.params["fast"] for layer in emulator.layers if layer.op == "dense")
    stats, _, _ = compare_with_csim(emulator, hls_model.predict, _inputs(3000, seed=4))
    assert stats["mismatches"] == 0


def test_first_differing_layer_is_named(student_firmware):
    _, hls_model, emulator = student_firmware
    x = _inputs(3, seed=5)
    _, trace = quiet_call(hls_model.trace, x[:1])
    trace = {name: out[0] for name, out in trace.items()}
    assert first_differing_layer(emulator, trace, x[0]) is None
    trace["dense2"] = trace["dense2"] + 2.0**-8  # a corrupted layer output is found and named
    found = first_differing_layer(emulator, trace, x[0])
    assert found["layer"] == "dense2" and found["index"] == 0


def test_bad_inputs_raise_one_line_errors(student_firmware):
    _, _, emulator = student_firmware
    x = _inputs(4, seed=6)
    x[2, 3] = np.nan
    with pytest.raises(EmulationError, match="NaN/Inf .*event 2"):
        emulator.predict(x)
    with pytest.raises(EmulationError, match=r"shape \(15,\)"):
        emulator.predict(np.zeros((3, 15)))


def test_graph_file_round_trip(student_firmware, tmp_path):
    _, hls_model, emulator = student_firmware
    graph = read_graph(write_graph(hls_model, tmp_path))
    assert [layer.op for layer in graph.layers] == ["input"] + ["dense", "relu"] * 3 + ["dense"]
    assert graph.weights["dense1/weight"].shape == (16, 64)
    assert graph.outputs == ["logits"]
    assert pathlib.Path(tmp_path / "graph_weights.npz").exists()


def test_fast_path_equals_reference_path(student_firmware):
    """The streaming float plan and the layer-by-layer int64 path give the same codes, saturation included."""
    _, _, emulator = student_firmware
    assert emulator.fast is not None
    x = _inputs(40000, seed=7)  # several chunks, run on threads
    np.testing.assert_array_equal(emulator.fast.run(x), emulator.run(x))


def test_fast_path_handles_wrapping_inputs(tmp_path):
    """hls4ml's default input type wraps: huge inputs keep their residues exactly on the fast path."""
    model = _random_student((8,), seed=8)
    config = hls_config(model, None)  # the default fixed<16,6> (TRN, WRAP) input
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, output_dir=str(tmp_path / "hls"), backend="Vitis", io_type="io_parallel"
    )
    quiet_call(hls_model.compile)
    emulator = Emulator.from_file(write_graph(hls_model, tmp_path / "hls"))
    assert emulator.fast is not None and emulator.input_type.overflow == "WRAP"
    x = _inputs(3000, seed=9)
    x[:50] *= 1e12
    stats, _, _ = compare_with_csim(emulator, hls_model.predict, x)
    assert stats["mismatches"] == 0
    np.testing.assert_array_equal(emulator.fast.run(x), emulator.run(x))


@pytest.mark.parametrize("alpha", ["auto", "auto_po2"])
def test_qkeras_alpha_scales(tmp_path, alpha):
    """Per-channel alpha scales become an ApplyAlpha layer (float scales, or power-of-two exponent weights that the
    C++ applies as shifts): both bit for bit against the C-sim."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu


    inputs = tf.keras.Input((16,), name="x")
    h = QDense(16, kernel_quantizer=quantized_bits(6, 0, alpha=alpha), bias_quantizer=quantized_bits(6, 0, alpha=1), name="d1")(inputs)
    h = QActivation(quantized_relu(6, 2), name="r1")(h)
    outputs = QDense(5, kernel_quantizer=quantized_bits(4, 0, alpha=alpha), bias_quantizer=quantized_bits(6, 0, alpha=1), name="d2")(h)
    model = tf.keras.Model(inputs, outputs)
    rng = np.random.default_rng(10)
    model.set_weights([rng.normal(scale=0.7, size=w.shape) for w in model.get_weights()])
    model.predict(rng.normal(size=(8, 16)), verbose=0)  # QKeras fixes the alpha scales on a call
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=hls_config(model, Precision().input), output_dir=str(tmp_path / "hls"), backend="Vitis",
        io_type="io_parallel",
    )
    quiet_call(hls_model.compile)
    emulator = Emulator.from_file(write_graph(hls_model, tmp_path / "hls"))
    assert "batchnorm" in [layer.op for layer in emulator.layers]
    stats, _, _ = compare_with_csim(emulator, hls_model.predict, _inputs(3000, seed=11))
    assert stats["mismatches"] == 0


def test_an_unknown_io_type_is_refused():
    """io_parallel and io_stream are emulated (test_user_models.py has an io_stream model); anything else is one line."""
    graph = {"inputs": ["x"], "outputs": ["x"], "io_type": "io_serial",
             "layers": [{"name": "x", "op": "input", "shape": [4], "result_t": "fixed<8,3>"}]}
    with pytest.raises(EmulationError, match="io_parallel and io_stream designs, this firmware is io_serial"):
        Emulator(graph, {})
