"""Any width (issue 31, item 1): fixed-point types wider than int64, exact everywhere.

* ``FixedType`` conversions on int64 codes, Python ints and ``Limbs`` agree with a plain-Python-int reference (and
  the int64 path with the wide path) on random types and values, and wide conversions with the ap_fixed headers;
* the emulator's int64 path and its wide path (``Emulator(..., wide=True)``; the loop-free dense sum and the C++
  loop) give the same codes as a plain-Python-int reference on random dense graphs up to 120-bit types;
* hls4ml's own configurations that were refused (``ap_fixed<32,16>``, ``<32,9>``, ``<32,1>``, ``<64,32>`` model
  precision with its inferred 65- to 140-bit accumulators, a batch normalisation at ``<32,1>``, an average pooling
  with an ``auto`` accumulator) equal the compiled C-simulation bit for bit, a tenth of the events far outside the
  natural range;
* what is still refused (wider than ap_fixed compiles) says what to set instead.

``python tests/test_wide.py`` prints the emulator's speed on the 16-64-32-32-5 jet tagger at 32-bit types.
"""

import dataclasses
import fractions
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l1forge.emulation.emulator import EmulationError, Emulator
from l1forge.quantize.fixed import (OVERFLOW_MODES, ROUNDING_MODES, FixedType, FixedTypeError, Limbs, TooWideError,
                                    as_exact)

sys.path.insert(0, str(pathlib.Path(__file__).parent))

# ---- a plain-Python-int reference of ap_fixed's conversions ---------------------------------------------------


def ref_cast(value: fractions.Fraction, t: FixedType) -> int:
    """The code of the exact rational ``value`` converted into ``t``: rounding of the dropped bits, then overflow."""
    scaled = value * (fractions.Fraction(2) ** t.frac)
    q = scaled.numerator // scaled.denominator  # floor
    r = scaled - q  # in [0, 1)
    half, negative = fractions.Fraction(1, 2), value < 0
    q += {"TRN": 0, "TRN_ZERO": r != 0 and negative, "RND": r >= half, "RND_MIN_INF": r > half,
          "RND_ZERO": r > half or (r == half and negative), "RND_INF": r > half or (r == half and not negative),
          "RND_CONV": r > half or (r == half and q % 2 == 1)}[t.rounding]
    lo, hi = t.min_code, t.max_code
    if t.overflow == "WRAP":
        return (q - lo) % (1 << t.width) + lo
    if t.overflow == "SAT_ZERO":
        return q if lo <= q <= hi else 0
    lo = -hi if t.overflow == "SAT_SYM" and t.signed else lo
    return min(max(q, lo), hi)


def ref_from_float(x: float, t: FixedType) -> int:
    if t.is_int and -0.5 < x < 0:  # ap_int_base(double)'s quirk
        return ref_cast(fractions.Fraction(1), t)
    return ref_cast(fractions.Fraction(x), t)


def ref_from_code(code: int, frac: int, t: FixedType) -> int:
    return ref_cast(fractions.Fraction(code) / fractions.Fraction(2) ** frac, t)


def _codes(values) -> list:
    """Codes of any carrier as a list of Python ints."""
    return [int(v) for v in np.asarray(as_exact(values)).ravel()]


@st.composite
def fixed_types(draw, max_width=200):
    width = draw(st.one_of(st.integers(1, 62), st.integers(63, max_width)))
    if draw(st.integers(0, 9)) == 0:
        return FixedType.int_type(width, draw(st.booleans()))
    return FixedType(width, draw(st.integers(-8, width + 8)), draw(st.booleans()),
                     draw(st.sampled_from(ROUNDING_MODES)), draw(st.sampled_from(OVERFLOW_MODES)))


FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FAST
@given(t=fixed_types(), src_bits=st.integers(1, 140), frac=st.integers(-20, 160), data=st.data())
def test_from_codes_int64_wide_and_limbs_equal_the_reference(t, src_bits, frac, data):
    bound = 1 << (src_bits - 1)
    codes = data.draw(st.lists(st.integers(-bound, bound), min_size=1, max_size=24))
    expected = [ref_from_code(c, frac, t) for c in codes]
    exact = np.array(codes, dtype=object)
    assert _codes(t.from_codes(exact, frac)) == expected
    if src_bits <= 63:  # also on the int64 path: the same codes
        out = t.from_codes(np.array(codes, dtype=np.int64), frac)
        assert _codes(out) == expected and (out.dtype == np.int64 or not t.fits_int64)
    if src_bits <= 88:
        assert _codes(t.from_codes(Limbs.of(exact), frac)) == expected


@FAST
@given(t=fixed_types(), data=st.data())
def test_from_float_and_to_float_equal_the_reference(t, data):
    x = data.draw(st.lists(st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(-1e6, 1e6),
        st.integers(-(1 << 40), 1 << 40).map(lambda k: (k + 0.5) * 2.0 ** -t.frac),  # ties of the type
    ), min_size=1, max_size=24))
    codes = t.from_float(np.array(x))
    assert _codes(codes) == [ref_from_float(v, t) for v in x]
    assert t.fits_int64 <= (codes.dtype == np.int64)  # types of at most 62 bits stay on the int64 path
    if t.frac >= -100:  # to_float: correctly rounded, as ap_fixed's to_double
        expected = [float(fractions.Fraction(c) / fractions.Fraction(2) ** t.frac) for c in _codes(codes)]
        assert t.to_float(codes).tolist() == expected


def test_wide_types_are_built_and_the_widest_refused():
    assert FixedType.parse("ap_fixed<128,64,AP_RND,AP_SAT>").code_bound == (1 << 127)
    assert not FixedType(63, 1).fits_int64 and FixedType(62, 1).fits_int64
    assert FixedType.parse("fixed<32768,1>").width == 32768
    with pytest.raises(TooWideError, match="at most 32768, the widest ap_fixed"):
        FixedType.parse("fixed<32769,1>")


@pytest.fixture(scope="module")
def wide_cases(tmp_path_factory):
    """Random wide (source, target) pairs and doubles converted by the ap_fixed headers hls4ml compiles with."""
    from test_quantize_fixed import AP_TYPES

    rng = np.random.default_rng(31)
    pairs = []
    for _ in range(16):
        types = []
        for _ in range(2):
            width = int(rng.integers(40, 160))
            signed = bool(rng.integers(2))
            integer = int(rng.integers(1 if signed else 0, width + 1))
            overflow = str(rng.choice([m for m in OVERFLOW_MODES if m != "SAT_ZERO"]))
            types.append(FixedType(width, integer, signed, str(rng.choice(ROUNDING_MODES)), overflow))
        src, dst = types
        if src.signed and not dst.signed:  # as in test_quantize_fixed: hls4ml only does this after a ReLU
            dst = dataclasses.replace(dst, overflow="SAT")
        scale = 2.0 ** rng.integers(-10, min(src.integer, 60) + 4)
        values = np.concatenate([rng.normal(scale=scale, size=20), np.round(rng.normal(size=4) * 8) / 8 + 1 / 16])
        values = np.abs(values) if src.signed and not dst.signed else values
        pairs.append((src, dst, values))
    lines = ["#include <cstdio>", '#include "ap_fixed.h"',
             "template <int W> void raw(const ap_uint<W>& r) { for (int lo = 0; lo < W; lo += 60) {"
             " int hi = lo + 59 < W - 1 ? lo + 59 : W - 1;"
             ' std::printf("%llx ", (unsigned long long)r.range(hi, lo).to_uint64()); } std::printf("\\n"); }',
             "int main() {"]
    for src, dst, values in pairs:
        lines.append(f"{{ double v[] = {{{', '.join(repr(float(v)) for v in values)}}};")
        lines.append(f"for (double x : v) {{ {src.cpp()} s = x; {dst.cpp()} d = s; ap_uint<{src.width}> rs = s.range();"
                     f" ap_uint<{dst.width}> rd = d.range(); raw<{src.width}>(rs); raw<{dst.width}>(rd); }} }}")
    lines.append("return 0; }")
    tmp = tmp_path_factory.mktemp("wide_apfixed")
    (tmp / "conv.cpp").write_text("\n".join(lines))
    subprocess.run(["g++", "-O0", "-std=c++14", f"-I{AP_TYPES}", "conv.cpp", "-o", "conv"], cwd=tmp, check=True)
    out = subprocess.run([str(tmp / "conv")], capture_output=True, text=True, check=True).stdout.splitlines()
    return pairs, out


def _raw_code(line: str, t: FixedType) -> int:
    raw = sum(int(chunk, 16) << (60 * k) for k, chunk in enumerate(line.split()))
    return raw - (1 << t.width) if t.signed and raw >> (t.width - 1) else raw


def test_wide_conversions_match_ap_fixed(wide_cases):
    pairs, out = wide_cases
    lines = iter(out)
    for src, dst, values in pairs:
        expected = [(_raw_code(next(lines), src), _raw_code(next(lines), dst)) for _ in values]
        src_codes = src.from_float(values)
        assert _codes(src_codes) == [s for s, _ in expected], str(src)
        assert _codes(dst.from_codes(src_codes, src.frac)) == [d for _, d in expected], f"{src} -> {dst}"


# ---- the emulator: int64 path, wide path and a plain-Python-int reference --------------------------------------


def _ref_dense_graph(graph: dict, weights: dict, x: np.ndarray) -> list:
    """The C++ of the graph (input, dense, relu, linear layers), event by event, on Python ints."""
    outputs = []
    for event in x:
        values = {}
        for layer in graph["layers"]:
            t = FixedType.parse(layer["result_t"])
            if layer["op"] == "input":
                values[layer["name"]] = ([ref_from_float(float(v), t) for v in event], t)
                continue
            src, src_t = values[layer["inputs"][0]]
            if layer["op"] == "dense":
                wt, bt, at = (FixedType.parse(layer[k]) for k in ("weight_t", "bias_t", "accum_t"))
                w = [[ref_from_float(float(v), wt) for v in row] for row in weights[f"{layer['name']}/weight"]]
                bias = weights[f"{layer['name']}/bias"]
                acc = [ref_from_code(ref_from_float(float(b), bt), bt.frac, at) for b in bias]
                for i, xi in enumerate(src):
                    for j in range(len(acc)):
                        mult = ref_from_code(xi * w[i][j], src_t.frac + wt.frac, at)
                        acc[j] = ref_from_code(acc[j] + mult, at.frac, at)
                out = [ref_from_code(a, at.frac, t) for a in acc]
            elif layer["op"] == "relu":
                out = [ref_from_code(v, src_t.frac, t) if v > 0 else 0 for v in src]
            else:
                out = [ref_from_code(v, src_t.frac, t) for v in src]
            values[layer["name"]] = (out, t)
        outputs.append(values[graph["outputs"][0]][0])
    return outputs


@st.composite
def dense_graphs(draw):
    """input -> dense -> (relu | linear) -> dense: random widths up to 120 bits, modes, weights and inputs."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def fixed(lo, hi, modes=True):
        width = int(rng.integers(lo, hi + 1))
        integer = int(rng.integers(1, width + 1))
        rounding = str(rng.choice(ROUNDING_MODES)) if modes else "TRN"
        overflow = str(rng.choice(["WRAP", "SAT", "SAT_SYM", "SAT_ZERO"])) if modes else "WRAP"
        return FixedType(width, integer, True, rounding, overflow).hls()

    wide = draw(st.sampled_from([16, 40, 70, 120]))  # the widest types of this graph
    sizes = [int(rng.integers(1, 7)) for _ in range(3)]
    layers = [{"name": "x", "op": "input", "class_name": "InputLayer", "inputs": [], "shape": [sizes[0]],
               "result_t": fixed(4, min(wide, 40))}]
    weights = {}
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        name = f"d{k}"
        layers.append({"name": name, "op": "dense", "class_name": "Dense", "inputs": [layers[-1]["name"]],
                       "shape": [n_out], "n_in": n_in, "n_out": n_out, "weight_t": fixed(3, wide),
                       "bias_t": fixed(3, wide), "accum_t": fixed(4, wide), "result_t": fixed(4, wide),
                       "product": "mult", "strategy": "latency", "reuse_factor": 1, "n_nonzero": n_in * n_out})
        scale = 2.0 ** rng.integers(-4, 12)
        weights[f"{name}/weight"] = rng.normal(scale=scale, size=(n_in, n_out))
        weights[f"{name}/bias"] = rng.normal(scale=scale, size=n_out)
        if k == 0:
            layers.append({"name": "act", "op": str(rng.choice(["relu", "linear"])), "class_name": "Activation",
                           "inputs": [name], "shape": [n_out], "result_t": fixed(4, wide)})
    graph = {"inputs": ["x"], "outputs": [layers[-1]["name"]], "layers": layers}
    x = rng.normal(scale=2.0 ** rng.integers(0, 10), size=(12, sizes[0]))
    x[:2] *= 1e6  # far outside the input range
    return graph, weights, x


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=dense_graphs())
def test_int64_and_wide_paths_equal_the_reference(case):
    graph, weights, x = case
    expected = _ref_dense_graph(graph, weights, x)
    auto = Emulator(graph, weights)
    assert [_codes(e) for e in auto.run(x)] == expected, [layer.wide for layer in auto.layers]
    wide = Emulator(graph, weights, wide=True)
    assert [_codes(e) for e in wide.run(x)] == expected
    for layer in wide.layers:  # the C++ loop instead of the loop-free sum: the same codes
        if layer.op == "dense":
            layer.params["path"] = "stepwise"
    assert [_codes(e) for e in wide.run(x)] == expected


def test_dense_paths_by_width():
    """A 32-bit layer with small weights stays on int64 whatever its types say; full-range weights need 63+
    bits and run on limbs (no Python int per element), beyond 2**90 on Python ints: the same codes."""
    t = "fixed<32,16,TRN,WRAP>"
    rng = np.random.default_rng(5)

    def graph(acc):
        layers = [{"name": "x", "op": "input", "inputs": [], "shape": [8], "result_t": t},
                  {"name": "d", "op": "dense", "class_name": "Dense", "inputs": ["x"], "shape": [4], "n_in": 8,
                   "n_out": 4, "weight_t": t, "bias_t": t, "accum_t": acc, "result_t": acc, "product": "mult",
                   "strategy": "latency", "reuse_factor": 1, "n_nonzero": 32},
                  {"name": "r", "op": "relu", "inputs": ["d"], "shape": [4], "result_t": t}]
        return {"inputs": ["x"], "outputs": ["r"], "layers": layers}

    x = rng.normal(scale=300.0, size=(3000, 8))
    results = {}
    for scale, acc in ((0.5, "fixed<67,35>"), (20000.0, "fixed<67,35>"), (20000.0, "fixed<150,118>"),
                       (20000.0, "fixed<150,80>")):
        weights = {"d/weight": rng.normal(scale=scale, size=(8, 4)), "d/bias": rng.normal(size=4)}
        emulator = Emulator(graph(acc), weights)
        dense = emulator.layers[1]
        results[(scale, acc)] = dense.params["fast"], dense.params["sum"]["mode"], dense.wide
        np.testing.assert_array_equal(emulator.run(x), Emulator(graph(acc), weights, wide=True).run(x))
        np.testing.assert_array_equal(emulator.run(x[:5]), np.array(_ref_dense_graph(graph(acc), weights, x[:5])))
    assert results[(0.5, "fixed<67,35>")][0] and results[(0.5, "fixed<67,35>")][2] is None
    fast, mode, why = results[(20000.0, "fixed<67,35>")]
    assert not fast and mode == "limbs" and why == "the accumulation needs 65 bits"
    assert results[(20000.0, "fixed<150,118>")][1] == "limbs"  # values below 2**90: limbs whatever the type
    assert results[(20000.0, "fixed<150,80>")][1] == "object"  # products shifted up 38 bits: Python ints


@st.composite
def many_op_graphs(draw):
    """Dense, batchnorm, leaky relu, hard sigmoid, tanh table, merges, softmax, concatenate, reshape and global
    pooling on random types up to 100 bits, random weights and inputs."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    wide = draw(st.sampled_from([20, 48, 70, 100]))

    def fixed(lo=6, hi=wide):
        width = int(rng.integers(lo, max(lo, hi) + 1))
        return FixedType(width, int(rng.integers(2, max(3, width // 2))), True, str(rng.choice(ROUNDING_MODES)),
                         str(rng.choice(["WRAP", "SAT", "SAT_SYM"]))).hls()

    def layer(name, op, inputs, shape, **attrs):
        return {"name": name, "op": op, "class_name": op, "inputs": inputs, "shape": shape, "result_t": fixed(),
                **attrs}

    layers = [layer("x", "input", [], [6]),
              layer("d", "dense", ["x"], [4], n_in=6, n_out=4, weight_t=fixed(), bias_t=fixed(), accum_t=fixed(),
                    product="mult", strategy="latency", reuse_factor=1, n_nonzero=24),
              layer("bn", "batchnorm", ["d"], [4], scale_t=fixed(), bias_t=fixed()),
              layer("lr", "leaky_relu", ["bn"], [4], alpha=float(rng.uniform(0.01, 0.5)), param_t=fixed(8, 24)),
              layer("hs", "hard_sigmoid", ["bn"], [4], slope=0.2, shift=0.5, slope_t=fixed(8, 24),
                    shift_t=fixed(8, 24)),
              layer("tb", "table", ["bn"], [4], function="tanh", table_size=256, table_t="fixed<12,2,RND,SAT>"),
              layer("add", "add", ["lr", "hs"], [4]),
              layer("avg", "average", ["add", "tb"], [4]),
              layer("mx", "maximum", ["avg", "lr"], [4]),
              layer("sm", "softmax", ["mx"], [4], implementation="stable", exp_table_size=256, inv_table_size=256,
                    exp_scale=1.0, exp_table_t="fixed<18,8,RND,SAT>", inv_table_t="fixed<18,8,RND,SAT>",
                    accum_t="fixed<18,8>", inv_inp_t="fixed<18,8>", inp_norm_t="fixed<14,6>", table_t="fixed<18,8>"),
              layer("cat", "concatenate", ["sm", "mx"], [8], axis=-1),
              layer("rs", "reshape", ["cat"], [2, 4]),
              layer("ga", "global_average", ["rs"], [4], accum_t=fixed()),
              layer("gm", "global_max", ["rs"], [4], accum_t=fixed()),
              layer("out", "subtract", ["ga", "gm"], [4])]
    scale = 2.0 ** rng.integers(-2, 8)
    weights = {"d/weight": rng.normal(scale=scale, size=(6, 4)), "d/bias": rng.normal(scale=scale, size=4),
               "bn/scale": rng.normal(scale=scale, size=4), "bn/bias": rng.normal(scale=scale, size=4)}
    x = rng.normal(scale=2.0 ** rng.integers(0, 8), size=(40, 6))
    x[:4] *= 1e5
    return {"inputs": ["x"], "outputs": ["out"], "layers": layers}, weights, x


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=many_op_graphs())
def test_every_op_int64_and_wide_give_the_same_codes(case):
    """Each layer's codes on the automatic plan (int64 where the bounds allow) equal those of every layer run wide."""
    graph, weights, x = case
    _, auto = Emulator(graph, weights).run(x, keep_layers=True)
    _, wide = Emulator(graph, weights, wide=True).run(x, keep_layers=True)
    for name, codes in auto.items():
        assert _codes(codes) == _codes(wide[name]), name


# ---- hls4ml's own configurations against the compiled C-simulation ---------------------------------------------


def _keras_mlp(softmax: bool):
    import tensorflow as tf

    layers = tf.keras.layers
    inp = tf.keras.Input((10,), name="x")
    h = layers.Activation("relu", name="r1")(layers.Dense(12, name="d1")(inp))
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.Activation("relu", name="r2")(layers.Dense(8, name="d2")(h))
    out = layers.Dense(5, name="d3")(h)
    if softmax:
        out = layers.Activation("softmax", name="sm")(out)
    model = tf.keras.Model(inp, out)
    rng = np.random.default_rng(31)
    model.set_weights([np.abs(rng.normal(size=w.shape)) + 0.2 if "variance" in v.name else
                       rng.normal(scale=0.5, size=w.shape) for v, w in zip(model.weights, model.get_weights())])
    return model


def _convert_at(model, precision: str, project):
    import hls4ml
    from test_emulation_ops import convert

    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis",
                                                  default_precision=precision)
    return convert(model, project, config, bit_exact=False)


@pytest.mark.parametrize("precision", ["ap_fixed<32,16>", "ap_fixed<32,9>", "ap_fixed<32,1>", "ap_fixed<64,32>"])
def test_hls4ml_wide_configurations_bit_exact(tmp_path, precision):
    """A Keras MLP (dense, relu, batch normalisation, softmax at <32,16>) at hls4ml's model precisions: its
    inferred accumulators are 65 to 140 bits; the emulator equals the C-sim on 2000 events, a tenth far outside."""
    from test_emulation_ops import assert_bit_exact, inputs_for

    model = _keras_mlp(softmax=precision == "ap_fixed<32,16>")
    hls_model = _convert_at(model, precision, tmp_path / "hls")
    emulator = assert_bit_exact(hls_model, tmp_path / "hls", inputs_for((10,), 2000, seed=7))
    widths = {layer.name: layer.result.width for layer in emulator.layers}
    assert max(widths.values()) > 64 and any(layer.wide for layer in emulator.layers)
    if precision == "ap_fixed<32,1>":
        assert widths["bn"] == 65  # x * scale + bias of two <32,1>
        assert emulator.layers[[layer.name for layer in emulator.layers].index("bn")].wide


def test_average_pooling_with_auto_accumulator_bit_exact(tmp_path):
    """Conv2D then AveragePooling2D at <32,16>: the conv result and the pooling's inferred accumulator are
    beyond 64 bits."""
    import tensorflow as tf
    from test_emulation_ops import assert_bit_exact, inputs_for

    layers = tf.keras.layers
    inp = tf.keras.Input((6, 6, 2), name="x")
    h = layers.Conv2D(3, 3, padding="same", name="conv")(inp)
    h = layers.AveragePooling2D(2, name="pool")(h)
    out = layers.Dense(4, name="d")(layers.Flatten(name="flat")(h))
    model = tf.keras.Model(inp, out)
    rng = np.random.default_rng(32)
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    hls_model = _convert_at(model, "ap_fixed<32,16>", tmp_path / "hls")
    emulator = assert_bit_exact(hls_model, tmp_path / "hls", inputs_for((6, 6, 2), 2000, seed=8))
    pool = next(layer for layer in emulator.layers if layer.op == "pool2d")
    assert pool.spec["pool_op"] == "average" and pool.params["acc_t"].width > 64 and pool.wide


# ---- what is still refused says what to do ----------------------------------------------------------------------


def test_refusals_say_what_to_set():
    from l1forge.firmware.describe import UnsupportedLayerError, _check_widths

    with pytest.raises(UnsupportedLayerError, match=r"^layer 'd' \(Dense\): accum_t fixed<1100,20> is wider than the "
                       r"1024 bits ap_fixed compiles \(AP_INT_MAX_W\); set a narrower type for this layer in the "
                       r"hls4ml config, e\.g\. \{\"LayerName\": \{\"d\": \{\"Precision\": \{\"accum\": "):
        _check_widths({"name": "d", "class_name": "Dense", "accum_t": "fixed<1100,20>"})
    _check_widths({"name": "d", "class_name": "Dense", "accum_t": "fixed<1024,20>"})  # compiles: emulated exactly
    graph = {"inputs": ["x"], "outputs": ["y"], "layers": [
        {"name": "x", "op": "input", "inputs": [], "shape": [2], "result_t": "fixed<8,3>"},
        {"name": "y", "op": "linear", "class_name": "Activation", "inputs": ["x"], "shape": [2],
         "result_t": "fixed<40000,3>"}]}
    with pytest.raises(EmulationError, match=r"layer 'y' \(Activation\): .*at most 32768.*set a narrower type"):
        Emulator(graph, {})
    with pytest.raises(FixedTypeError, match="at least 1"):
        FixedType(0, 0)


# ---- speed of both paths ----------------------------------------------------------------------------------------


def _tagger_speed(precision: str, weight_scale: float, events: int) -> dict:
    """The 16-64-32-32-5 jet tagger (Keras Dense/ReLU, logits) converted at ``precision`` model precision."""
    import tensorflow as tf

    from l1forge.firmware.describe import write_graph

    layers = tf.keras.layers
    inp = tf.keras.Input((16,), name="x")
    h = inp
    for i, n in enumerate((64, 32, 32), start=1):
        h = layers.Activation("relu", name=f"relu{i}")(layers.Dense(n, name=f"dense{i}")(h))
    model = tf.keras.Model(inp, layers.Dense(5, name="logits")(h))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(scale=weight_scale, size=w.shape) for w in model.get_weights()])
    x = rng.normal(scale=2.0, size=(events, 16))
    with tempfile.TemporaryDirectory() as tmp:
        hls_model = _convert_at(model, precision, pathlib.Path(tmp) / "hls")
        emulator = Emulator.from_file(write_graph(hls_model, pathlib.Path(tmp) / "hls"))
        from l1forge.emulation.compare import compare_with_csim

        check, _, _ = compare_with_csim(emulator, hls_model.predict, x[:5000])

    def rate(emu, n):
        emu.predict(x[:1000])
        return round(n / min((lambda start: (emu.predict(x[:n]), time.perf_counter() - start)[1])(time.perf_counter())
                             for _ in range(3)))

    dense = [layer for layer in emulator.layers if layer.op == "dense"]
    return {"precision": precision, "weight_scale": weight_scale, "events_per_s": rate(emulator, events),
            "path": "fast (float streaming)" if emulator.fast else "reference",
            "dense": [(layer.result.hls(), "fast" if layer.params["fast"] else layer.params["sum"]["mode"])
                      for layer in dense], "csim_mismatches": check["mismatches"],
            "all_python_ints_events_per_s": rate(Emulator(emulator.graph, wide=True), 20_000)}


if __name__ == "__main__":
    import json

    for precision, scale in (("ap_fixed<32,16>", 0.5), ("ap_fixed<32,16>", 8000.0), ("ap_fixed<32,1>", 0.5),
                             ("ap_fixed<64,32>", 0.5)):
        print(json.dumps(_tagger_speed(precision, scale, 300_000)))
