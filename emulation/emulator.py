"""Bit-accurate numpy emulator of an hls4ml io_parallel design: the firmware graph's reference interpreter.

Its kernels register on the op table (``l1forge.graph.ops``, backend ``"emulate"``); an op without one is refused
in one line generated there.

Every tensor is carried as int64 codes of its C++ ap_fixed type, shaped (events, *layer shape). Each operation
repeats what the nnet_utils C++ does, in the same order of quantization steps:

* dense (``nnet::dense_latency``): ``mult = (accum_t)(x * w)``, ``acc = (accum_t)bias``, ``acc += mult`` for each
  input in order, ``res = (res_t)acc``. When no product is rounded and no partial sum can leave the accumulator
  range (checked from the types, not the data), or the accumulator wraps (modular addition is order-free), the
  whole layer is one exact matrix product; float64 BLAS is used while every partial sum stays below 2**53.
* conv1d (``conv_1d_latency_cl`` / ``pointwise_conv_1d_latency_cl``, io_parallel "linebuffer"): the same dense
  accumulation on each output pixel's zero-padded window, inputs ordered (tap, channel); kernel size 1 is a dense
  applied per particle and takes the same fast path.
* conv2d (``conv_2d_latency_cl``, io_parallel "linebuffer"): the same dense accumulation on each output pixel's
  zero-padded window (row, column, channel), pixels row-major.
* pool2d (``pooling2d_cl``): max in the input type (padding: the bit pattern with only the MSB set, ``pad_val``),
  or the sum in ``accum_t`` (one cast per addition) divided towards zero by the unpadded area (or the window with
  ``count_pad``), then ``(res_t)``.
* leaky_relu: ``res = x > 0 ? (res_t)x : (res_t)(alpha * x)``, alpha in ``param_t``.
* relu: ``res = x > 0 ? (res_t)x : 0``; linear: ``res = (res_t)x``.
* table (sigmoid, tanh): ``index = clamp((int)(x * N / R) + R/2 * N / R)`` with R = 16 (sigmoid) or 8 (tanh), C
  truncations and 32-bit ints as written; the table is built as ``init_*_table`` builds it, in float with the
  host libm (as the compiled C-simulation does) and then converted to ``table_t``.
* hard_sigmoid / hard_tanh: ``y = slope * x + shift`` exact, clipped to [0, 1] (``2y - 1`` for tanh), ``(res_t)y``.
* softmax (latency, stable, legacy): the exp and inverse tables of ``init_exp_table`` / ``init_invert_table``
  (``*_legacy``), indexed by the top bits of the input (stable: of ``inp_norm_t(max - x)``), summed in ``accum_t``
  with the C++ balanced adder tree, ``res = (res_t)(exp * inv_table[top bits of (inv_inp_t)sum])``.
* batchnorm: ``res = (res_t)(x * scale + bias)``, exact inside; global_max: ``(res_t)(accum_t)max``;
  global_average: ``acc = (accum_t)(acc + x)`` in order, ``acc /= n`` (truncating), ``(res_t)acc``.
* add / subtract / average / maximum / minimum: exact two-input result, then ``(res_t)``; concatenate: each input
  cast to ``res_t``; reshape (Flatten/Reshape): the same codes in the new shape.
* zeropad1d (ZeroPadding1D, ``zeropad1d_cl``): zero positions around the input's, each value cast to ``res_t``.
* transpose (Permute, ``nnet_transpose.h``): the codes with their axes permuted (``perm``), cast to ``res_t``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from l1forge.graph import ops
from l1forge.graph.ir import Graph, Layer, as_graph, read_graph
from l1forge.emulation.fastpath import FastPath
from l1forge.quantize.fixed import MAX_WIDTH, FixedType, FixedTypeError, TooWideError
from l1forge.quantize.hls_tables import (activation_table, ceillog2, centred_offset, floorlog2, index_divisor,
                                         softmax_tables)

EXACT_FLOAT = 2.0**53


class EmulationError(ValueError):
    """A graph the emulator cannot reproduce bit for bit, or input it cannot take; one line naming the culprit."""


@dataclasses.dataclass
class _Layer:
    """A graph layer ready to run: its result type, the kernel registered for its op and what ``prepare`` computed."""

    name: str
    op: str
    inputs: list
    result: FixedType
    spec: Layer
    kernel: object = None
    params: dict = dataclasses.field(default_factory=dict)


def kernel(*names: str, prepare=None, refuse=None):
    """Register the decorated function as the emulator's kernel of ops ``names``: ``fn(emulator, layer, *srcs)``
    -> result codes, each src (codes, FixedType); ``prepare(emulator, layer, input types)`` runs once at load time."""
    def register(fn):
        fn.prepare = prepare
        return ops.implements("emulate", *names, refuse=refuse)(fn)

    return register


# ---- C++ arithmetic helpers -----------------------------------------------------------------------------
def _int32(v: np.ndarray) -> np.ndarray:
    return (v + 2**31) % 2**32 - 2**31


def _trunc_div(num: np.ndarray, den: int) -> np.ndarray:
    """C integer division (towards zero) by a positive ``den``."""
    return np.sign(num) * (np.abs(num) // den)


def _table_index(codes: np.ndarray, frac: int, size: int, span: int, offset: int) -> np.ndarray:
    """``index = (int)(x * size / span) + offset`` clamped to [0, size), in C ints, as nnet_activation.h does it.

    ``x * size / span`` is an ap_fixed division that keeps x's fractional bits (truncating towards zero); the
    conversion to int truncates again and keeps the low 32 bits.
    """
    mult, den = index_divisor(frac, size, span)
    rounded = _trunc_div(codes * mult, den) << max(-frac, 0)
    return np.clip(_int32(_int32(rounded) + offset), 0, size - 1)


def _top_bits(codes: np.ndarray, t: FixedType, size: int) -> np.ndarray:
    """``softmax_idx_from_real_val``: the top ceillog2(size) bits of the raw bit pattern."""
    return (codes & ((1 << t.width) - 1)) >> (t.width - ceillog2(size))


def _tree_sum(cols: list, t: FixedType) -> np.ndarray:
    """``nnet::reduce`` with ``Op_add<t>``: a balanced tree, each addition cast to ``t``."""
    n = len(cols)
    if n == 1:
        return cols[0]
    left = 1 << floorlog2(n - 1)
    return t.from_codes(_tree_sum(cols[:left], t) + _tree_sum(cols[left:], t), t.frac)


def _aligned(a: np.ndarray, fa: int, b: np.ndarray, fb: int) -> tuple[np.ndarray, np.ndarray, int]:
    frac = max(fa, fb)
    return a << (frac - fa), b << (frac - fb), frac


def _product(layer: Layer) -> str | None:
    return None if layer["product"] == "mult" else f"product {layer['product']!r}"


class Emulator:
    """Runs the firmware graph on float inputs; ``run`` returns the output codes (and per-layer codes)."""

    def __init__(self, graph: Graph | dict, weights: dict | None = None):
        self.graph = graph = as_graph(graph, weights)
        self.input_names = list(graph.inputs)
        self.output_names = list(graph.outputs)
        if len(self.input_names) != 1:
            raise EmulationError(f"the emulator takes one model input, the firmware has {self.input_names}")
        if graph.io_type != "io_parallel":
            raise EmulationError(f"the emulator reproduces io_parallel designs, this firmware is {graph.io_type}")
        self.layers, self._types = [], {}
        for spec in graph.layers:
            layer = self._prepare(spec, graph.weights)
            self.layers.append(layer)
            self._types[layer.name] = layer.result
        self.input_type = self._types[self.input_names[0]]
        self.output_types = [self._types[name] for name in self.output_names]
        self.fast = FastPath.build(self)

    @classmethod
    def from_file(cls, graph_json) -> "Emulator":
        return cls(read_graph(pathlib.Path(graph_json)))

    # ---- load time: everything that depends only on the graph --------------------------------------
    def _prepare(self, spec: Layer, weights: dict) -> _Layer:
        if why := ops.refusal(spec, "emulate"):
            raise EmulationError(why)
        try:
            kernel_fn = ops.implementation(spec, "emulate")
            layer = _Layer(spec.name, spec.op, list(spec.inputs), spec.result_t, spec, kernel_fn)
            if layer.kernel.prepare is not None:
                layer.kernel.prepare(self, layer, [self._types[i] for i in layer.inputs], weights)
        except FixedTypeError as err:
            hint = " (set a narrower type for this layer in an hls4ml config)" if isinstance(err, TooWideError) else ""
            raise EmulationError(f"layer '{spec.name}' ({spec.class_name}): {err}{hint}") from None
        return layer

    @staticmethod
    def _types_of(layer: _Layer, *keys) -> list:
        return [layer.spec.type(k) for k in keys]

    @staticmethod
    def _need_bits(layer: _Layer, bits: int, what: str):
        if bits > MAX_WIDTH:
            raise EmulationError(f"layer '{layer.name}': {what} needs {bits} bits, beyond the {MAX_WIDTH} emulated")

    def _check_index(self, layer: _Layer, x_t: FixedType, size: int, span: int):
        mult, _ = index_divisor(x_t.frac, size, span)
        self._need_bits(layer, x_t.width + int(mult).bit_length() + max(-x_t.frac, 0), "the table index")

    def _prepare_dense(self, layer: _Layer, in_types: list, weights: dict):
        spec = layer.spec
        wt, bt, at = self._types_of(layer, "weight_t", "bias_t", "accum_t")
        w = wt.from_float(weights[f"{layer.name}/weight"])
        b = bt.from_float(weights[f"{layer.name}/bias"])
        self._need_bits(layer, in_types[0].width + wt.width, "a product")
        layer.params = {"w": w, "w_t": wt, "b_acc": at.from_codes(b, bt.frac), "acc_t": at}
        self._plan_dense(layer, in_types[0])

    def _prepare_pool2d(self, layer: _Layer, in_types: list, weights: dict):
        x_t = in_types[0]
        # pad_val<data_T, Max>: the raw bit pattern with only the MSB set (the minimum of a signed type, 2**(W-1)
        # codes of an unsigned one: 'same' max pooling after an unsigned type picks it up, as the C++ does).
        pad = x_t.min_code if x_t.signed else 1 << (x_t.width - 1)
        layer.params = {"acc_t": layer.spec.type("accum_t"), "pad": pad}

    def _prepare_leaky_relu(self, layer: _Layer, in_types: list, weights: dict):
        (param_t,) = self._types_of(layer, "param_t")
        self._need_bits(layer, in_types[0].width + param_t.width, "alpha * x")
        layer.params = {"alpha": int(param_t.from_float(layer.spec["alpha"])), "alpha_frac": param_t.frac}

    @staticmethod
    def _plan_dense(layer: _Layer, x_type: FixedType):
        """Decide, from the types alone, whether the layer is one exact matrix product (and in which arithmetic)."""
        p = layer.params
        w, acc_t = p["w"], p["acc_t"]
        shift = acc_t.frac - (x_type.frac + p["w_t"].frac)
        x_max = max(-x_type.min_code, x_type.max_code)
        col_sum = int(np.abs(w).sum(axis=0).max(initial=0)) * x_max
        worst = int(np.abs(p["b_acc"]).max(initial=0)) + (col_sum << max(shift, 0))
        products_exact = shift >= 0 and (int(np.abs(w).max(initial=0)) * x_max << shift) <= acc_t.max_code
        p["shift"] = max(shift, 0)
        p["fast"] = products_exact and (acc_t.overflow == "WRAP" or worst <= acc_t.max_code) and worst < 2**62
        p["float_ok"] = col_sum < EXACT_FLOAT
        p["partial_max"] = worst  # largest |partial sum| of the accumulation, in accumulator codes
        p["w_float"] = w.astype(np.float64)

    def _prepare_table(self, layer: _Layer, in_types: list, weights: dict):
        (table_t,) = self._types_of(layer, "table_t")
        codes, span = activation_table(layer.spec["function"], layer.spec["table_size"], table_t)
        self._check_index(layer, in_types[0], layer.spec["table_size"], span)
        layer.params = {"table": codes, "table_t": table_t, "span": span}

    def _prepare_hard_sigmoid(self, layer: _Layer, in_types: list, weights: dict):
        slope_t, shift_t = self._types_of(layer, "slope_t", "shift_t")
        x_t = in_types[0]
        frac = max(x_t.frac + slope_t.frac, shift_t.frac)
        self._need_bits(layer, max(x_t.integer + slope_t.integer, shift_t.integer) + frac + 2, "slope * x + shift")
        layer.params = {
            "slope": int(slope_t.from_float(layer.spec["slope"])),
            "slope_frac": slope_t.frac,
            "shift": int(shift_t.from_float(layer.spec["shift"])) << (frac - shift_t.frac),
            "frac": frac,
        }

    def _prepare_softmax(self, layer: _Layer, in_types: list, weights: dict):
        spec = layer.spec
        layer.params = softmax_tables(spec, in_types[0])
        if spec["implementation"] == "legacy":
            self._check_index(layer, FixedType(in_types[0].width + 1, in_types[0].integer + 1), spec["exp_table_size"], 16)
            self._check_index(layer, layer.params["table_t"], spec["inv_table_size"], 64)
        else:
            self._need_bits(layer, layer.params["acc_t"].width + layer.params["inv_t"].width, "exp * inv")

    def _prepare_batchnorm(self, layer: _Layer, in_types: list, weights: dict):
        scale_t, bias_t = self._types_of(layer, "scale_t", "bias_t")
        n = int(np.prod(layer.spec["shape"]))
        pick = np.arange(n) % len(weights[f"{layer.name}/scale"])  # n_filt: per channel, channels innermost
        frac = max(in_types[0].frac + scale_t.frac, bias_t.frac)
        self._need_bits(layer, max(in_types[0].integer + scale_t.integer, bias_t.integer) + frac + 2, "x * scale + bias")
        layer.params = {
            "scale": scale_t.from_float(weights[f"{layer.name}/scale"])[pick],
            "bias": bias_t.from_float(weights[f"{layer.name}/bias"])[pick] << (frac - bias_t.frac),
            "shift": frac - in_types[0].frac - scale_t.frac,
            "frac": frac,
        }

    def _prepare_global(self, layer: _Layer, in_types: list, weights: dict):
        layer.params = {"acc_t": layer.spec.type("accum_t")}

    def _prepare_merge(self, layer: _Layer, in_types: list, weights: dict):
        a, b = in_types
        self._need_bits(layer, max(a.integer, b.integer) + max(a.frac, b.frac) + 2, "the exact sum")

    # ---- run time --------------------------------------------------------------------------------
    def _checked(self, x) -> np.ndarray:
        x = np.asarray(x)
        expected = tuple(self.layers[0].spec["shape"])
        if x.shape[1:] != expected:
            raise EmulationError(f"input has shape {x.shape[1:]} per event, the firmware expects {expected}")
        if not np.all(np.isfinite(x)):
            bad = np.argwhere(~np.isfinite(x))[0]
            raise EmulationError(f"input contains NaN/Inf (first at event {bad[0]})")
        return x

    def run(self, x, keep_layers: bool = False):
        """Output codes for float inputs ``x`` (n, ...); with ``keep_layers`` also {layer: codes}.

        This is the reference path, layer by layer in int64; ``predict`` takes the fast path where there is one.
        """
        x = self._checked(x).astype(np.float64)
        values = {}
        for layer in self.layers:
            srcs = [(x, None)] if layer.op == "input" else [(values[i], self._types[i]) for i in layer.inputs]
            out = layer.kernel(self, layer, *srcs)
            values[layer.name] = out.reshape((len(x), *layer.spec["shape"]))
            if not keep_layers:
                self._release(values, layer)
        outputs = [values[name] for name in self.output_names]
        out = outputs[0] if len(outputs) == 1 else outputs
        return (out, values) if keep_layers else out

    def predict(self, x) -> np.ndarray:
        """Float outputs (the values of the output codes), as ``hls_model.predict`` returns them: one array
        (n, *output shape), or a list of them, one per output in ``output_names`` order, each in its own type."""
        if len(self.output_names) > 1:
            return [t.to_float(c) for t, c in zip(self.output_types, self.run(x))]
        codes = self.fast.run(self._checked(x)) if self.fast else self.run(x)
        return self.output_types[0].to_float(codes)

    def _release(self, values: dict, done: _Layer):
        needed = {i for layer in self.layers for i in layer.inputs if layer is not done} | set(self.output_names)
        for key in [k for k in values if k not in needed and k != done.name]:
            del values[key]

    # ---- ops: (layer, (codes, type) per input) -> result codes -----------------------------------------
    @kernel("input")
    def _input(self, layer: _Layer, src) -> np.ndarray:
        """Float inputs converted into the input type, as ``ap_fixed(double)`` does."""
        return layer.result.from_float(src[0])

    @kernel("linear")
    def _linear(self, layer: _Layer, src) -> np.ndarray:
        return layer.result.from_codes(src[0], src[1].frac)

    @kernel("relu")
    def _relu(self, layer: _Layer, src) -> np.ndarray:
        return np.where(src[0] > 0, layer.result.from_codes(src[0], src[1].frac), 0)

    @kernel("reshape")
    def _reshape(self, layer: _Layer, src) -> np.ndarray:
        return src[0]

    @kernel("transpose")
    def _transpose(self, layer: _Layer, src) -> np.ndarray:
        """Permute the axes of one event (``perm`` without the batch axis), each value cast to the result type."""
        return layer.result.from_codes(np.transpose(src[0], [0, *(p + 1 for p in layer.spec["perm"])]), src[1].frac)

    @kernel("zeropad1d")
    def _zeropad1d(self, layer: _Layer, src) -> np.ndarray:
        """``zeropad1d_cl``: zero positions left and right of the (positions, channels) input, values cast to res_t."""
        s = layer.spec
        x = layer.result.from_codes(src[0], src[1].frac).reshape(len(src[0]), s["in_width"], s["n_chan"])
        return np.pad(x, ((0, 0), (s["pad_left"], s["pad_right"]), (0, 0)))

    @kernel("dense", prepare=_prepare_dense, refuse=_product)
    def _dense(self, layer: _Layer, src) -> np.ndarray:
        x, x_type = src
        x = x.reshape(len(x), -1)
        p = layer.params
        acc_t = p["acc_t"]
        if p["fast"]:
            prod = np.rint(x.astype(np.float64) @ p["w_float"]).astype(np.int64) if p["float_ok"] else x @ p["w"]
            acc = acc_t.from_codes(p["b_acc"] + (prod << p["shift"]), acc_t.frac)  # applies WRAP if it can occur
        else:
            acc = self._dense_stepwise(x, x_type, layer)
        return layer.result.from_codes(acc, acc_t.frac)

    @staticmethod
    def _dense_stepwise(x: np.ndarray, x_type: FixedType, layer: _Layer) -> np.ndarray:
        """The C++ loop as written: each product rounded into accum_t, then added one input at a time."""
        p = layer.params
        w, acc_t = p["w"], p["acc_t"]
        prod_frac = x_type.frac + p["w_t"].frac
        acc = np.broadcast_to(p["b_acc"], (x.shape[0], w.shape[1])).copy()
        for i in range(w.shape[0]):
            mult = acc_t.from_codes(x[:, i : i + 1] * w[i], prod_frac)
            acc = acc_t.from_codes(acc + mult, acc_t.frac)
        return acc

    @kernel("conv1d", prepare=_prepare_dense, refuse=_product)
    def _conv1d(self, layer: _Layer, src) -> np.ndarray:
        """The dense accumulation on each output pixel's window (taps outer, channels inner), zeros as padding."""
        s = layer.spec
        x = src[0].reshape(len(src[0]), s["in_width"], s["n_chan"])
        x = np.pad(x, ((0, 0), (s["pad_left"], s["pad_right"]), (0, 0)))
        taps = np.arange(s["out_width"])[:, None] * s["stride_width"] + np.arange(s["filt_width"])
        windows = x[:, taps, :].reshape(len(x) * s["out_width"], -1)
        return self._dense(layer, (windows, src[1]))

    @kernel("conv2d", prepare=_prepare_dense, refuse=_product)
    def _conv2d(self, layer: _Layer, src) -> np.ndarray:
        """The dense accumulation on each output pixel's window (rows, columns, channels; pixels row-major), zeros
        as padding (``conv_2d_latency_cl``)."""
        s = layer.spec
        x = src[0].reshape(len(src[0]), s["in_height"], s["in_width"], s["n_chan"])
        x = np.pad(x, ((0, 0), (s["pad_top"], s["pad_bottom"]), (s["pad_left"], s["pad_right"]), (0, 0)))
        rows = (np.arange(s["out_height"])[:, None] * s["stride_height"] + np.arange(s["filt_height"]))
        cols = (np.arange(s["out_width"])[:, None] * s["stride_width"] + np.arange(s["filt_width"]))
        # (n, out_h, filt_h, out_w, filt_w, c) -> (n, out_h, out_w, filt_h, filt_w, c)
        windows = x[:, rows][:, :, :, cols].transpose(0, 1, 3, 2, 4, 5)
        return self._dense(layer, (windows.reshape(len(x) * s["out_height"] * s["out_width"], -1), src[1]))

    @kernel("pool2d", prepare=_prepare_pool2d)
    def _pool2d(self, layer: _Layer, src) -> np.ndarray:
        """``pooling2d_cl``: each window of the padded image, padding as ``pad_val``; max in the input type, or the
        average summed in ``accum_t`` (one cast per addition) and divided (towards zero) by the patch size."""
        s, p = layer.spec, layer.params
        x, x_t = src
        acc_t = p["acc_t"]
        n = len(x)
        x = x.reshape(n, s["in_height"], s["in_width"], s["n_filt"])
        pad_value = p["pad"] if s["pool_op"] == "max" else 0
        padded = np.pad(x, ((0, 0), (s["pad_top"], s["pad_bottom"]), (s["pad_left"], s["pad_right"]), (0, 0)),
                        constant_values=pad_value)
        inside = np.pad(np.ones((s["in_height"], s["in_width"]), dtype=np.int64),
                        ((s["pad_top"], s["pad_bottom"]), (s["pad_left"], s["pad_right"])))
        out = np.empty((n, s["out_height"], s["out_width"], s["n_filt"]), dtype=np.int64)
        for oi in range(s["out_height"]):
            for oj in range(s["out_width"]):
                i, j = oi * s["stride_height"], oj * s["stride_width"]
                win = padded[:, i : i + s["pool_height"], j : j + s["pool_width"], :].reshape(n, -1, s["n_filt"])
                if s["pool_op"] == "max":
                    out[:, oi, oj] = acc_t.from_codes(win.max(axis=1), x_t.frac)
                    continue
                acc = np.zeros((n, s["n_filt"]), dtype=np.int64)
                for k in range(win.shape[1]):
                    a, b, frac = _aligned(acc, acc_t.frac, win[:, k], x_t.frac)
                    acc = acc_t.from_codes(a + b, frac)
                size = s["pool_height"] * s["pool_width"] if s["count_pad"] else int(
                    inside[i : i + s["pool_height"], j : j + s["pool_width"]].sum())
                out[:, oi, oj] = acc_t.from_codes(_trunc_div(acc, size), acc_t.frac)
        return layer.result.from_codes(out, acc_t.frac)

    @kernel("leaky_relu", prepare=_prepare_leaky_relu)
    def _leaky_relu(self, layer: _Layer, src) -> np.ndarray:
        """``res = x > 0 ? (res_t)x : (res_t)(alpha * x)``, alpha in ``param_t``, the product exact."""
        x, x_t = src
        p = layer.params
        positive = layer.result.from_codes(x, x_t.frac)
        negative = layer.result.from_codes(x * p["alpha"], x_t.frac + p["alpha_frac"])
        return np.where(x > 0, positive, negative)

    @kernel("table", prepare=_prepare_table)
    def _table(self, layer: _Layer, src) -> np.ndarray:
        p = layer.params
        size = len(p["table"])
        index = _table_index(src[0], src[1].frac, size, p["span"], centred_offset(size, p["span"]))
        return layer.result.from_codes(p["table"][index], p["table_t"].frac)

    @kernel("hard_sigmoid", prepare=_prepare_hard_sigmoid)
    def _hard_sigmoid(self, layer: _Layer, src, tanh: bool = False) -> np.ndarray:
        p = layer.params
        frac = p["frac"]
        y = (src[0] * p["slope"] << (frac - src[1].frac - p["slope_frac"])) + p["shift"]
        y = np.clip(y, 0, 1 << frac)
        if tanh:
            y = 2 * y - (1 << frac)
        return layer.result.from_codes(y, frac)

    @kernel("hard_tanh", prepare=_prepare_hard_sigmoid)
    def _hard_tanh(self, layer: _Layer, src) -> np.ndarray:
        return self._hard_sigmoid(layer, src, tanh=True)

    @kernel("softmax", prepare=_prepare_softmax)
    def _softmax(self, layer: _Layer, src) -> np.ndarray:
        x, x_t = src
        if layer.spec["implementation"] == "legacy":
            return self._softmax_legacy(layer, x, x_t)
        p = layer.params
        if layer.spec["implementation"] == "stable":  # d = (inp_norm_t)(max - x)
            x = p["address_t"].from_codes(x.max(axis=-1, keepdims=True) - x, x_t.frac)
        exp_res = p["acc_t"].from_codes(p["exp"][_top_bits(x, p["address_t"], len(p["exp"]))], p["exp_t"].frac)
        total = _tree_sum([exp_res[..., i] for i in range(exp_res.shape[-1])], p["acc_t"])
        total = p["inv_inp_t"].from_codes(total, p["acc_t"].frac)
        inv = p["inv"][_top_bits(total, p["inv_inp_t"], len(p["inv"]))]
        return layer.result.from_codes(exp_res * inv[..., None], p["acc_t"].frac + p["inv_t"].frac)

    @staticmethod
    def _softmax_legacy(layer: _Layer, x: np.ndarray, x_t: FixedType) -> np.ndarray:
        p = layer.params
        table_t, n, n_exp = p["table_t"], x.shape[-1], len(p["exp"])
        one = table_t.from_float(1.0)
        exp_res = np.zeros_like(x)
        for i in range(n):
            for j in range(n):
                index = _table_index(x[..., j] - x[..., i], x_t.frac, n_exp, 16, centred_offset(n_exp, 16))
                diff = one if i == j else p["exp"][index]
                exp_res[..., i] = table_t.from_codes(exp_res[..., i] + diff, table_t.frac)
        inv = p["inv"][_table_index(exp_res, table_t.frac, len(p["inv"]), 64, 0)]
        return layer.result.from_codes(inv, table_t.frac)

    @kernel("batchnorm", prepare=_prepare_batchnorm)
    def _batchnorm(self, layer: _Layer, src) -> np.ndarray:
        p = layer.params
        x = src[0].reshape(len(src[0]), -1)
        return layer.result.from_codes(((x * p["scale"]) << p["shift"]) + p["bias"], p["frac"])

    @kernel("global_max", prepare=_prepare_global)
    def _global_max(self, layer: _Layer, src) -> np.ndarray:
        acc_t = layer.params["acc_t"]
        return layer.result.from_codes(acc_t.from_codes(src[0].max(axis=1), src[1].frac), acc_t.frac)

    @kernel("global_average", prepare=_prepare_global)
    def _global_average(self, layer: _Layer, src) -> np.ndarray:
        x, x_t = src
        acc_t = layer.params["acc_t"]
        acc = np.zeros((len(x), x.shape[-1]), dtype=np.int64)
        for i in range(x.shape[1]):
            a, b, frac = _aligned(acc, acc_t.frac, x[:, i], x_t.frac)
            acc = acc_t.from_codes(a + b, frac)
        acc = acc_t.from_codes(_trunc_div(acc, x.shape[1]), acc_t.frac)
        return layer.result.from_codes(acc, acc_t.frac)

    @kernel("add", "subtract", "average", "maximum", "minimum", prepare=_prepare_merge)
    def _merge(self, layer: _Layer, a_src, b_src) -> np.ndarray:
        a, b, frac = _aligned(a_src[0], a_src[1].frac, b_src[0], b_src[1].frac)
        op = layer.op
        if op == "add":
            out = a + b
        elif op == "subtract":
            out = a - b
        elif op == "average":  # (a + b) * ap_ufixed<1,0>(0.5)
            out, frac = a + b, frac + 1
        else:
            out = np.maximum(a, b) if op == "maximum" else np.minimum(a, b)
        return layer.result.from_codes(out, frac)

    @kernel("concatenate")
    def _concatenate(self, layer: _Layer, *srcs) -> np.ndarray:
        parts = [layer.result.from_codes(codes, t.frac) for codes, t in srcs]
        return np.concatenate(parts, axis=layer.spec["axis"])
