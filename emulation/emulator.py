"""Bit-accurate numpy emulator of an hls4ml io_parallel or io_stream design (the stream kernels compute the same
arithmetic; Clone layers are aliases in the graph, Repack a cast): the firmware graph's reference interpreter.

Its kernels register on the op table (``l1forge.graph.ops``, backend ``"emulate"``); an op without one is refused
in one line generated there.

Every tensor is carried as the integer codes of its C++ ap_fixed type, shaped (events, *layer shape): int64
while its bound allows, else Python ints (numpy object arrays), for any width ap_fixed has. The bound of each
tensor (``_Layer.bound``, the largest code magnitude it can hold) is computed at load time from the types and
the weights; a layer whose inputs, products, sums or result can exceed 62 bits runs *wide* (``_Layer.wide``
says why): on Python ints, or for dense-like layers on exact limb arithmetic (below). The rest stays int64, so a
graph pays for width only where it needs it, and both give the same codes (tests/test_wide.py).

Each operation repeats what the nnet_utils C++ does, in the same order of quantization steps:

* dense (``nnet::dense_latency``): ``mult = (accum_t)(x * w)``, ``acc = (accum_t)bias``, ``acc += mult`` for each
  input in order, ``res = (res_t)acc``. When no product is rounded and no partial sum can leave the accumulator
  range (checked from the types, not the data), or the accumulator wraps (modular addition is order-free), the
  whole layer is one exact matrix product; float64 BLAS is used while every partial sum stays below 2**53.
  Otherwise, when the accumulator wraps or provably never overflows, ``acc = b + sum(round(x * w))`` is computed
  exactly without a loop (``_dense_sum``): the product sum by float64 matrix products of limbs (each exact), the
  low bits each product drops by its rounding (and the rounding's increments) in small unsigned ints; in int64
  (modulo 2**64 where only the accumulator's low bits matter) or in Python ints. Else the C++ loop, step by step.
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
* softmax argmax (``softmax_argmax``): ``(res_t)1`` at the first maximum (strict ``>``), 0 elsewhere; no tables.
* softmax (latency, stable, legacy): the exp and inverse tables of ``init_exp_table`` / ``init_invert_table``
  (``*_legacy``), indexed by the top bits of the input (stable: of ``inp_norm_t(max - x)``), summed in ``accum_t``
  with the C++ balanced adder tree, ``res = (res_t)(exp * inv_table[top bits of (inv_inp_t)sum])``.
* batchnorm: ``res = (res_t)(x * scale + bias)``, exact inside; global_max: ``(res_t)(accum_t)max``;
  global_average: ``acc = (accum_t)(acc + x)`` in order, ``acc /= n`` (truncating), ``(res_t)acc``.
* add / subtract / average / maximum / minimum: exact two-input result, then ``(res_t)``; concatenate: each input
  cast to ``res_t``; reshape (Flatten/Reshape): the same codes in the new shape.
* zeropad1d (ZeroPadding1D, ``zeropad1d_cl``): zero positions around the input's, each value cast to ``res_t``.
* transpose (Permute, ``nnet_transpose.h``): the codes with their axes permuted (``perm``), cast to ``res_t``.
* zeropad2d, cropping1d/2d, resize (``zeropad2d_cl``, ``cropping*_cl``, ``resize_nearest``): each output a cast of
  one input element or zero, by the index map of ``l1forge.graph.gather``.
* pool2d also runs Pooling1D (``pooling1d_cl`` is ``pooling2d_cl`` on one row); global_max / global_average take
  GlobalPooling2D (``global_pooling2d_cl``) as the 1-D pooling over the pixels.
* table also holds softplus and softsign (span 16, centred); elu / selu (``nnet_activation.h``): ``x >= 0 ?
  (res_t)x : (res_t)(alpha * table[min((int)(x * N / -8), N - 1)])``, selu ``(res_t)(lambda * x)`` above zero with
  lambda in ``ap_ufixed<16,1>`` and the table alone below; prelu: leaky_relu with one alpha per element (param_t);
  thresholded_relu: ``x > theta ? (res_t)x : 0``, the comparison exact.
* multiply (``nnet_merge.h``): the exact product, then ``(res_t)``; dot (``dot1d``): each product cast to
  ``accum_t``, added in order to 0 (one cast per addition), then ``(res_t)``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from l1forge.graph import ops
from l1forge.graph.gather import GATHER_OPS, source_index
from l1forge.graph.ir import Graph, Layer, as_graph, read_graph
from l1forge.emulation.fastpath import FastPath
from l1forge.quantize.fixed import (INT64_SAFE, LIMBS_SAFE, MAX_WIDTH, FixedType, FixedTypeError, Limbs,
                                    TooWideError, as_exact, is_exact, magnitude)
from l1forge.quantize.hls_tables import (SELU_LAMBDA, activation_table, ceillog2, centred_offset, floorlog2,
                                         index_divisor, negative_table, softmax_tables)

EXACT_FLOAT = 2.0**53
SUM_CHUNK = 1 << 20  # products per block of the dropped-bits pass of ``_dense_sum``
REFERENCE_CHUNK = 1024  # events per block of the reference path (``run``)
_CASTS = ("linear", "relu", "transpose", "zeropad1d", "concatenate", "maximum", "minimum", "thresholded_relu",
          *GATHER_OPS)
_TAKE_LIMBS = ("linear", "relu")  # kernels that only cast (FixedType.from_codes): they read any carrier of codes
_DENSE_OPS = ("dense", "conv1d", "conv2d")


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
    bound: int | None = None  # the largest |code| the layer can output (types and weights): int64 below 2**62
    exact: bool = False  # its inputs and integer parameters are turned into Python ints before the kernel runs
    wide: str | None = None  # why the layer runs wide (e.g. "a product needs 64 bits"), None on the int64 path


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


def _cast_bound(bound: int, frac: int, t: FixedType) -> int:
    """The largest |code| of ``t`` that codes of magnitude <= ``bound`` with ``frac`` fractional bits cast to."""
    s = frac - t.frac
    return min(-((-bound) >> s) if s > 0 else bound << -s, t.code_bound)


def _bits(value: int) -> int:
    """Bits of a signed integer holding magnitudes up to ``value``."""
    return int(value).bit_length() + 1


def _split(v: np.ndarray, count: int, width: int) -> list:
    """``count`` limbs of the integers ``v`` (int64 or Python ints): ``v = sum(limb[k] << (k * width))``, the low
    limbs in [0, 2**width), the top one signed."""
    mask = (1 << width) - 1
    limbs = [(v >> (k * width)) & mask for k in range(count - 1)]
    return limbs + [v >> ((count - 1) * width)]


def _limb_plan(x_bound: int, w: np.ndarray) -> dict:
    """How to compute ``x @ w`` exactly with float64 matrix products: x split in ``kx`` limbs of ``lx`` bits, w in
    limbs of ``lw`` bits, so that each limb product summed over the inputs stays below 2**52 (fewest products)."""
    bx, bw = int(x_bound).bit_length(), magnitude(w).bit_length()
    budget = 52 - max(w.shape[0] - 1, 0).bit_length()
    best = None
    for kx in range(1, max(bx, 1) + 1):
        lx = -(-bx // kx)
        if lx >= budget:
            continue
        kw = max(-(-bw // (budget - lx)), 1)
        if best is None or kx * kw < best[0]:
            best = (kx * kw, kx, lx, kw, max(-(-bw // kw), 1))
        if lx <= 1:
            break
    _, kx, lx, kw, lw = best
    limbs = [(k * lw, limb.astype(np.float64)) for k, limb in enumerate(_split(w, kw, lw))]
    return {"kx": kx, "lx": max(lx, 1), "w": limbs}


def _exact_matmul(x: np.ndarray, plan: dict, mode: str):
    """``x @ w`` exactly, from the limb products of ``plan``, in ``mode``: "object" (Python ints), "limbs" (``Limbs``,
    magnitudes below 2**90), else "int64" modulo 2**64 (the true sum where it fits int64, else its low 64 bits)."""
    shape = (len(x), plan["w"][0][1].shape[1])
    total = np.zeros(shape, dtype=object if mode == "object" else np.int64)
    hi = np.zeros(shape, dtype=np.int64)  # mode "limbs": total is the low limb, hi the high one
    part, ipart, tmp = np.empty(shape), np.empty(shape, dtype=np.int64), np.empty(shape, dtype=np.int64)
    for xo, xl in zip(range(0, plan["kx"] * plan["lx"], plan["lx"]), _split(x, plan["kx"], plan["lx"])):
        xl = xl.astype(np.float64)
        for wo, wl in plan["w"]:
            np.matmul(xl, wl, out=part)  # integers, exact: every partial sum below 2**52
            np.copyto(ipart, part, casting="unsafe")
            off = xo + wo
            if mode == "object":
                total = total + (ipart.astype(object) << off)
            elif mode == "limbs":  # part * 2**off = (part >> (32 - off)) * 2**32 + (part mod 2**(32 - off)) << off
                if off < 32:
                    hi += np.right_shift(ipart, 32 - off, out=tmp)
                    total += np.left_shift(np.bitwise_and(ipart, (1 << (32 - off)) - 1, out=ipart), off, out=ipart)
                else:
                    hi += np.left_shift(ipart, off - 32, out=ipart)
            elif off < 64:  # int64 wraps: modulo 2**64
                total += np.left_shift(ipart.view(np.uint64), np.uint64(off), out=ipart.view(np.uint64)).view(np.int64)
    return Limbs(hi, total) if mode == "limbs" else total


def resource_schedule(n_in: int, n_out: int, rf: int) -> list:
    """The accumulation order of ``nnet_dense_resource.h`` (Resource strategy, reuse factor ``rf``): a list of
    (output, [input]) steps, each ``acc[output] += (accum_t)product``; the loops of dense_resource_rf_leq_nin and
    _rf_gt_nin_rem0 as written (weights transposed: w_index = output * n_in + input). Only an accumulator that
    can overflow needs it (otherwise the order does not matter)."""
    steps, nw = [], n_in * n_out
    block = -(-nw // rf)
    if rf <= n_in:
        multscale = -(-nw // min(n_in, rf)) // n_out
        for ir in range(rf):
            w, i, out, step = ir, ir, 0, 0
            for _ in range(block):
                steps.append((out, [i]))
                w, i = w + rf, i + rf
                i = ir if i >= n_in else i
                out, step = (out + 1, 0) if step + 1 >= multscale else (out, step + 1)
    elif rf % n_in == 0:
        outscale, i = rf // n_in, 0
        for ir in range(rf):
            w, out = ir, ir // n_in
            for _ in range(block):
                steps.append((out, [i]))
                w += rf
                if w >= nw:
                    break
                out += outscale
            i = (i + 1) % n_in
    else:  # dense_resource_rf_gt_nin (partial sums per reuse step): hls4ml's valid reuse factors avoid it in tests
        raise FixedTypeError(f"a Resource-strategy dense with reuse factor {rf} > n_in {n_in}, not a multiple of it, "
                             "whose accumulator can overflow (dense_resource_rf_gt_nin is not reproduced); use 'auto' "
                             "or a wider accum type")
    return steps


def _unsigned(bits: int):
    return next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if np.iinfo(t).bits >= bits)


def _table_index(codes: np.ndarray, frac: int, size: int, span: int, offset: int) -> np.ndarray:
    """``index = (int)(x * size / span) + offset`` clamped to [0, size), in C ints, as nnet_activation.h does it.

    ``x * size / span`` is an ap_fixed division that keeps x's fractional bits (truncating towards zero); the
    conversion to int truncates again and keeps the low 32 bits.
    """
    mult, den = index_divisor(frac, size, span)
    rounded = _trunc_div(codes * mult, den) << max(-frac, 0)
    return np.clip(_int32(_int32(rounded) + offset), 0, size - 1).astype(np.int64)


def _top_bits(codes: np.ndarray, t: FixedType, size: int) -> np.ndarray:
    """``softmax_idx_from_real_val``: the top ceillog2(size) bits of the raw bit pattern."""
    if t.width > MAX_WIDTH:
        codes = as_exact(codes)
    return ((codes & ((1 << t.width) - 1)) >> (t.width - ceillog2(size))).astype(np.int64)


def _tree_sum(cols: list, t: FixedType) -> np.ndarray:
    """``nnet::reduce`` with ``Op_add<t>``: a balanced tree, each addition cast to ``t``."""
    n = len(cols)
    if n == 1:
        return cols[0]
    left = 1 << floorlog2(n - 1)
    return t.from_codes(_tree_sum(cols[:left], t) + _tree_sum(cols[left:], t), t.frac)


def _aligned(a: np.ndarray, fa: int, b: np.ndarray, fb: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Both on the finer fraction: on Python ints if either is (an int64 accumulator meeting a wide input)."""
    frac = max(fa, fb)
    if is_exact(a) or is_exact(b):
        a, b = as_exact(a), as_exact(b)
    return a << (frac - fa), b << (frac - fb), frac


def _product(layer: Layer) -> str | None:
    return None if layer["product"] in ("mult", "data_binary", "both_binary") else f"product {layer['product']!r}"


class Emulator:
    """Runs the firmware graph on float inputs; ``run`` returns the output codes (and per-layer codes).

    A graph with several model inputs takes a tuple (or list) of arrays, one per input in ``input_names`` order,
    each (n, *that input's shape).

    ``wide=True`` runs every layer on the wide path (Python ints, no int64 shortcut): the same codes, slower; for
    checking one path against the other.
    """

    def __init__(self, graph: Graph | dict, weights: dict | None = None, *, wide: bool = False):
        self.graph = graph = as_graph(graph, weights)
        self.force_wide = wide
        self.input_names = list(graph.inputs)
        self.output_names = list(graph.outputs)
        if graph.io_type not in ("io_parallel", "io_stream"):
            raise EmulationError(f"the emulator reproduces io_parallel and io_stream designs, this firmware is "
                                 f"{graph.io_type}")
        self.layers, self._types, self._bounds = [], {}, {}
        for spec in graph.layers:
            layer = self._prepare(spec, graph.weights)
            self.layers.append(layer)
            self._types[layer.name] = layer.result
            self._bounds[layer.name] = layer.bound
        self.input_types = [self._types[name] for name in self.input_names]
        self.input_type = self.input_types[0]
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
            sources = [] if spec.op == "input" else layer.inputs
            in_types = [self._types[i] for i in sources]
            if self.force_wide:
                self._mark_wide(layer, "the emulator was asked to run every layer wide")
            wide_in = max((self._bounds[i] for i in sources), default=0)
            if wide_in >= INT64_SAFE:
                if spec.op in _TAKE_LIMBS:
                    layer.wide = f"an input needs {_bits(wide_in)} bits"
                else:
                    self._mark_wide(layer, f"an input needs {_bits(wide_in)} bits")
            if layer.kernel.prepare is not None:
                layer.kernel.prepare(self, layer, in_types, weights)
            if layer.bound is None:
                layer.bound = self._default_bound(layer, in_types)
            if layer.exact and layer.op not in _DENSE_OPS:  # the dense kernels choose their own arithmetic
                layer.params = {k: as_exact(v) if isinstance(v, np.ndarray) and v.dtype.kind in "iu" else v
                                for k, v in layer.params.items()}
        except FixedTypeError as err:
            hint = " (set a narrower type for this layer in an hls4ml config)" if isinstance(err, TooWideError) else ""
            raise EmulationError(f"layer '{spec.name}' ({spec.class_name}): {err}{hint}") from None
        return layer

    def _default_bound(self, layer: _Layer, in_types: list) -> int:
        """The output bound of a layer whose prepare set none: casts follow their inputs, the rest the type."""
        t = layer.result
        if layer.op == "input":
            return t.code_bound
        bounds = [self._bounds[i] for i in layer.inputs]
        if layer.op == "reshape":
            return bounds[0]
        if layer.op in _CASTS:
            return max(_cast_bound(b, it.frac, t) for b, it in zip(bounds, in_types))
        if layer.op == "global_max":
            acc_t = layer.params["acc_t"]
            return _cast_bound(_cast_bound(bounds[0], in_types[0].frac, acc_t), acc_t.frac, t)
        return t.code_bound

    def _in_bound(self, layer: _Layer, k: int = 0) -> int:
        return self._bounds[layer.inputs[k]]

    @staticmethod
    def _types_of(layer: _Layer, *keys) -> list:
        return [layer.spec.type(k) for k in keys]

    @staticmethod
    def _mark_wide(layer: _Layer, why: str):
        layer.exact = True
        layer.wide = layer.wide or why

    @classmethod
    def _need(cls, layer: _Layer, largest: int, what: str):
        """``what`` can reach magnitude ``largest``: beyond int64's safe range the layer runs on Python ints."""
        if largest >= INT64_SAFE:
            cls._mark_wide(layer, f"{what} needs {_bits(largest)} bits")

    def _check_index(self, layer: _Layer, x_t: FixedType, size: int, span: int, bound: int | None = None):
        mult, _ = index_divisor(x_t.frac, size, span)
        self._need(layer, (x_t.code_bound if bound is None else bound) * mult << max(-x_t.frac, 0), "the table index")

    def _prepare_dense(self, layer: _Layer, in_types: list, weights: dict):
        wt, bt, at = self._types_of(layer, "weight_t", "bias_t", "accum_t")
        w = wt.from_float(weights[f"{layer.name}/weight"])
        b = bt.from_float(weights[f"{layer.name}/bias"])
        x_t, x_bound, binary = in_types[0], self._in_bound(layer), layer.spec.get("product")
        if binary in ("data_binary", "both_binary"):
            # nnet_mult.h on 1-bit data a: data_binary a == 0 ? -w : w, the product of w by 2a - 1 (int<2>);
            # both_binary (XNOR) a == w: w ? a : 1 - a, a product of [a, 1 - a] by rows [w, 1 - w] interleaved (the
            # zero product of each pair adds nothing, so the partial sums are the C++ ones)
            if (x_t.width, x_t.signed, x_t.frac) != (1, False, 0):
                raise FixedTypeError(f"product {binary} on {x_t.hls()} data (expected ap_uint<1>)")
            if binary == "both_binary":
                w = np.stack([w, 1 - w], axis=1).reshape(-1, w.shape[1])
            else:
                x_t = FixedType(2, 2, True)
            x_bound = 1
        # nnet_mult.h cast: ap_uint<1> data and ap_uint<1> weights (XNOR) give (ap_int<ceillog2(n_in) + 2>)(2 acc - n_in)
        xnor = binary == "both_binary" and wt.is_int and (wt.width, wt.signed) == (1, False)
        n_in = len(weights[f"{layer.name}/weight"])
        layer.params = {"w": w, "w_t": wt, "b_acc": at.from_codes(b, bt.frac), "acc_t": at, "binary": binary,
                        "x_t": x_t, "xnor": FixedType.parse(f"int<{ceillog2(n_in) + 2}>") if xnor else None,
                        "n_in": n_in}
        layer.exact = False  # the plan decides where Python ints are needed
        self._plan_dense(layer, x_t, x_bound, self.force_wide)
        if xnor:
            layer.bound = layer.result.code_bound

    def _accumulate_bound(self, layer: _Layer, in_types: list, weights: dict):
        """pool2d (average) and global_average: the sum of the accumulator and the aligned input."""
        x_t, acc_t = in_types[0], layer.params["acc_t"]
        frac = max(x_t.frac, acc_t.frac)
        self._need(layer, (acc_t.code_bound << (frac - acc_t.frac)) + (self._in_bound(layer) << (frac - x_t.frac)),
                   "the accumulation")

    def _prepare_pool2d(self, layer: _Layer, in_types: list, weights: dict):
        x_t = in_types[0]
        # pad_val<data_T, Max>: the raw bit pattern with only the MSB set (the minimum of a signed type, 2**(W-1)
        # codes of an unsigned one: 'same' max pooling after an unsigned type picks it up, as the C++ does).
        pad = x_t.min_code if x_t.signed else 1 << (x_t.width - 1)
        layer.params = {"acc_t": layer.spec.type("accum_t"), "pad": pad}
        if layer.spec["pool_op"] == "max":
            self._need(layer, pad, "the padding")
        else:
            self._accumulate_bound(layer, in_types, weights)

    def _prepare_leaky_relu(self, layer: _Layer, in_types: list, weights: dict):
        (param_t,) = self._types_of(layer, "param_t")
        if layer.op == "prelu":  # one alpha per element (a weight)
            alpha = param_t.from_float(weights[f"{layer.name}/alpha"]).reshape(layer.spec["shape"])
        else:
            alpha = int(param_t.from_float(layer.spec["alpha"]))
        self._need(layer, self._in_bound(layer) * magnitude(alpha), "alpha * x")
        layer.params = {"alpha": alpha, "alpha_frac": param_t.frac}

    def _prepare_elu(self, layer: _Layer, in_types: list, weights: dict):
        spec, x_t = layer.spec, in_types[0]
        table_t, param_t = self._types_of(layer, "table_t", "param_t")
        alpha = int(param_t.from_float(SELU_LAMBDA if spec["function"] == "selu" else spec["alpha"]))
        table = negative_table(spec["function"], spec["table_size"], table_t)
        self._check_index(layer, x_t, spec["table_size"], 8, self._in_bound(layer))
        self._need(layer, max(self._in_bound(layer), magnitude(table)) * abs(alpha), "alpha * x")
        layer.params = {"alpha": alpha, "alpha_frac": param_t.frac, "table": table, "table_t": table_t}

    def _prepare_thresholded_relu(self, layer: _Layer, in_types: list, weights: dict):
        (param_t,) = self._types_of(layer, "param_t")
        frac = max(in_types[0].frac, param_t.frac)
        theta = int(param_t.from_float(layer.spec["theta"])) << (frac - param_t.frac)
        self._need(layer, max(self._in_bound(layer) << (frac - in_types[0].frac), abs(theta)), "the comparison")
        layer.params = {"theta": theta, "shift": frac - in_types[0].frac}

    def _prepare_thresholds(self, layer: _Layer, in_types: list, weights: dict):
        th_t, x_t = layer.spec.type("threshold_t"), in_types[0]
        frac = max(th_t.frac, x_t.frac)
        n = int(np.prod(layer.spec["shape"]))
        keys = ("threshold",) if layer.spec["quantize"] == 2 else ("threshold_hi", "threshold_lo")
        layer.params = {"shift": frac - x_t.frac}
        for key in keys:
            values = weights[f"{layer.name}/{key}"]
            layer.params[key] = th_t.from_float(values)[np.arange(n) % len(values)] << (frac - th_t.frac)
        self._need(layer, max(self._in_bound(layer) << (frac - x_t.frac), th_t.code_bound << (frac - th_t.frac)),
                   "the comparison")
        layer.bound = 1

    def _prepare_gather(self, layer: _Layer, in_types: list, weights: dict):
        index = source_index(layer.spec)
        layer.params = {"index": np.maximum(index, 0), "zero": index < 0}

    def _prepare_dot(self, layer: _Layer, in_types: list, weights: dict):
        a, b = in_types
        acc_t = layer.spec.type("accum_t")
        product = self._in_bound(layer, 0) * self._in_bound(layer, 1)
        frac = max(acc_t.frac, a.frac + b.frac)
        self._need(layer, max(product << (frac - a.frac - b.frac), 2 * acc_t.code_bound << (frac - acc_t.frac)),
                   "a product")
        layer.params = {"acc_t": acc_t}

    @staticmethod
    def _plan_dense(layer: _Layer, x_type: FixedType, x_bound: int | None = None, wide: bool = False):
        """Decide, from the types, the weights and the bound of the input (``x_bound``, default: the input type's),
        how the layer is computed: ``fast`` (one exact int64/float64 matrix product), else ``path`` "sum" (the
        accumulator wraps or provably never overflows: ``_dense_sum``) or "stepwise" (the C++ loop); and where
        Python ints are needed (``wide``: everywhere)."""
        p = layer.params
        w, acc_t = p["w"], p["acc_t"]
        x_max = x_type.code_bound if x_bound is None else x_bound
        shift = acc_t.frac - (x_type.frac + p["w_t"].frac)
        w_abs = np.abs(as_exact(w))
        col_sum = int(max(w_abs.sum(axis=0), default=0)) * x_max
        # each product cast to accum_t: at most ceil(|x w| / 2**-shift) (rounded), or |x w| << shift
        terms = w_abs * x_max << shift if shift >= 0 else -((-(w_abs * x_max)) >> -shift)
        worst = magnitude(p["b_acc"]) + int(max(terms.sum(axis=0), default=0))
        w_max = int(w_abs.max(initial=0))
        product_max = w_max * x_max
        # no product and no partial sum leaves the accumulator (an unsigned one: none can be negative either)
        in_range = worst <= acc_t.max_code and (acc_t.signed or (not x_type.signed and not (np.asarray(w) < 0).any()
                                                                   and not (np.asarray(p["b_acc"]) < 0).any()))
        int64 = not wide and not is_exact(w) and x_max < INT64_SAFE
        products_exact = shift >= 0 and (product_max << shift) <= acc_t.max_code
        p["shift"] = max(shift, 0)
        p["fast"] = int64 and products_exact and (acc_t.overflow == "WRAP" or in_range) and worst < 2**62
        p["float_ok"] = col_sum < EXACT_FLOAT
        p["partial_max"] = worst  # largest |partial sum| of the accumulation, in accumulator codes
        p["w_float"] = w.astype(np.float64)
        # not one matrix product: the sum path when the accumulator wraps or never overflows, else the C++ loop
        s = max(-shift, 0)  # fractional bits each product drops (rounded)
        residue = acc_t.overflow == "WRAP" and acc_t.fits_int64 and acc_t.width + s <= 64
        sum_int64 = max(col_sum, worst << s) < INT64_SAFE  # every value of the sum fits int64
        n_bits = max(w.shape[0] - 1, 0).bit_length()
        # Limbs: every limb product (at most 4 |x| |w| n) and the sum itself below 2**90
        limbs = (max(4 * product_max << n_bits, col_sum << p["shift"], worst << s) < LIMBS_SAFE and p["shift"] <= 30
                 and magnitude(p["b_acc"]) < INT64_SAFE)
        sum_ok = (acc_t.overflow == "WRAP" or in_range) and s + 1 <= 64 and s + n_bits <= 61
        p["path"] = "sum" if sum_ok else "stepwise"
        spec = layer.spec
        if p["path"] == "stepwise" and spec.get("strategy") == "resource" and spec.get("reuse_factor", 1) > 1:
            if spec.op != "dense":  # the conv resource kernels accumulate in their own order
                raise FixedTypeError("a Resource-strategy conv with reuse factor > 1 whose accumulator can overflow "
                                     "(its order of additions is not reproduced); use 'auto' or a wider accum type")
            p["schedule"] = resource_schedule(w.shape[0], w.shape[1], spec["reuse_factor"])
        mode = "int64" if int64 and (residue or sum_int64) else "limbs" if int64 and limbs else "object"
        p["sum"] = {"limbs": _limb_plan(x_max, w), "s": s, "mode": mode}
        if s and p["path"] == "sum":
            m = s + 1 if acc_t.rounding == "RND_CONV" else s  # the low bits each product keeps: its remainder
            dt = _unsigned(m)
            p["sum"].update(bits=m, dtype=dt, w_low=(as_exact(w) & ((1 << m) - 1)).astype(dt), w_neg=np.asarray(w) < 0,
                            w_nonzero=np.asarray(w) != 0)
        acc_max = acc_t.code_bound << 1  # a partial sum plus a product, both in accum_t
        p["stepwise_exact"] = not int64 or product_max >= INT64_SAFE or acc_max >= INT64_SAFE
        p["acc_bound"] = min(worst, acc_t.code_bound)
        if not p["fast"]:
            why = (f"a product needs {_bits(product_max)} bits" if product_max >= INT64_SAFE else
                   f"the accumulation needs {_bits(max(col_sum, worst))} bits" if max(col_sum, worst) >= INT64_SAFE
                   else f"the input needs {_bits(x_max)} bits" if x_max >= INT64_SAFE else None)
            if wide or why:
                layer.wide = why or "the emulator was asked to run every layer wide"
        layer.bound = _cast_bound(p["acc_bound"], acc_t.frac, layer.result)

    def _prepare_table(self, layer: _Layer, in_types: list, weights: dict):
        (table_t,) = self._types_of(layer, "table_t")
        codes, span = activation_table(layer.spec["function"], layer.spec["table_size"], table_t)
        self._check_index(layer, in_types[0], layer.spec["table_size"], span, self._in_bound(layer))
        layer.params = {"table": codes, "table_t": table_t, "span": span}

    def _prepare_hard_sigmoid(self, layer: _Layer, in_types: list, weights: dict):
        slope_t, shift_t = self._types_of(layer, "slope_t", "shift_t")
        x_t = in_types[0]
        frac = max(x_t.frac + slope_t.frac, shift_t.frac)
        slope = int(slope_t.from_float(layer.spec["slope"]))
        shift = int(shift_t.from_float(layer.spec["shift"])) << (frac - shift_t.frac)
        largest = (self._in_bound(layer) * abs(slope) << (frac - x_t.frac - slope_t.frac)) + abs(shift)
        self._need(layer, max(largest, 2 << frac), "slope * x + shift")
        layer.params = {"slope": slope, "slope_frac": slope_t.frac, "shift": shift, "frac": frac}

    def _prepare_softmax(self, layer: _Layer, in_types: list, weights: dict):
        spec = layer.spec
        if spec["implementation"] == "argmax":  # no tables: (res_t)1 at the first maximum
            layer.params = {"one": int(layer.result.from_codes(np.array([1]), 0)[0])}
            return
        p = layer.params = softmax_tables(spec, in_types[0])
        if spec["implementation"] == "legacy":
            table_t = p["table_t"]
            self._check_index(layer, in_types[0], spec["exp_table_size"], 16, 2 * self._in_bound(layer))
            self._check_index(layer, table_t, spec["inv_table_size"], 64, 2 * table_t.code_bound)
        else:
            acc_t = p["acc_t"]
            exp_max = _cast_bound(magnitude(p["exp"]), p["exp_t"].frac, acc_t)
            self._need(layer, max(exp_max * magnitude(p["inv"]), 2 * acc_t.code_bound, 2 * self._in_bound(layer)),
                       "exp * inv")

    def _prepare_batchnorm(self, layer: _Layer, in_types: list, weights: dict):
        scale_t, bias_t = self._types_of(layer, "scale_t", "bias_t")
        n = int(np.prod(layer.spec["shape"]))
        pick = np.arange(n) % len(weights[f"{layer.name}/scale"])  # n_filt: per channel, channels innermost
        frac = max(in_types[0].frac + scale_t.frac, bias_t.frac)
        scale = scale_t.from_float(weights[f"{layer.name}/scale"])[pick]
        bias = as_exact(bias_t.from_float(weights[f"{layer.name}/bias"])[pick]) << (frac - bias_t.frac)
        shift = frac - in_types[0].frac - scale_t.frac
        largest = (self._in_bound(layer) * magnitude(scale) << shift) + magnitude(bias)
        self._need(layer, largest, "x * scale + bias")
        layer.params = {"scale": scale, "bias": bias if largest >= INT64_SAFE else bias.astype(np.int64),
                        "shift": shift, "frac": frac}
        layer.bound = _cast_bound(largest, frac, layer.result)

    def _prepare_global(self, layer: _Layer, in_types: list, weights: dict):
        layer.params = {"acc_t": layer.spec.type("accum_t")}
        if layer.op == "global_average":
            self._accumulate_bound(layer, in_types, weights)

    def _prepare_merge(self, layer: _Layer, in_types: list, weights: dict):
        a, b = in_types
        if layer.op == "multiply":
            self._need(layer, self._in_bound(layer, 0) * self._in_bound(layer, 1), "the exact product")
            return
        frac = max(a.frac, b.frac)
        self._need(layer, (self._in_bound(layer, 0) << (frac - a.frac)) + (self._in_bound(layer, 1) << (frac - b.frac)),
                   "the exact sum")

    # ---- run time --------------------------------------------------------------------------------
    def _checked(self, x):
        """Float64 inputs checked against the input shapes: one array, or a list of them for several inputs."""
        several = len(self.input_names) > 1
        xs = list(x) if several and isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(self.input_names):
            raise EmulationError(f"the firmware has {len(self.input_names)} inputs ({', '.join(self.input_names)}): "
                                 "give a tuple of arrays, one per input")
        specs = {layer.name: layer.spec for layer in self.layers}
        out = []
        for name, v in zip(self.input_names, xs):
            v = np.asarray(v)
            expected = tuple(specs[name]["shape"])
            if v.shape[1:] != expected:
                raise EmulationError(f"input has shape {v.shape[1:]} per event, the firmware expects {expected}")
            if not np.all(np.isfinite(v)):
                bad = np.argwhere(~np.isfinite(v))[0]
                raise EmulationError(f"input contains NaN/Inf (first at event {bad[0]})")
            out.append(v)
        if len({len(v) for v in out}) > 1:
            raise EmulationError(f"the inputs hold different numbers of events: {[len(v) for v in out]}")
        return out if several else out[0]

    def run(self, x, keep_layers: bool = False):
        """Output codes for float inputs ``x`` (n, ...); with ``keep_layers`` also {layer: codes}.

        This is the reference path, layer by layer in int64 (Python ints where a layer runs wide: codes of a layer
        whose bound passes 2**62 may come as object arrays), on blocks of ``REFERENCE_CHUNK`` events (small
        temporaries stay in cache and are reused); ``predict`` takes the fast path where there is one.
        """
        x = self._checked(x)
        x = [v.astype(np.float64) for v in x] if isinstance(x, list) else x.astype(np.float64)
        n = len(x[0]) if isinstance(x, list) else len(x)
        if keep_layers or n <= REFERENCE_CHUNK:
            return self._forward(x, keep_layers)
        block = (lambda i: [v[i : i + REFERENCE_CHUNK] for v in x]) if isinstance(x, list) else (
            lambda i: x[i : i + REFERENCE_CHUNK])
        parts = [self._forward(block(i), False) for i in range(0, n, REFERENCE_CHUNK)]
        if len(self.output_names) == 1:
            return np.concatenate(parts)
        return [np.concatenate([part[k] for part in parts]) for k in range(len(self.output_names))]

    def _forward(self, x, keep_layers: bool):
        values = {}
        inputs = dict(zip(self.input_names, x if isinstance(x, list) else [x]))
        n = len(inputs[self.input_names[0]])
        for layer in self.layers:
            srcs = ([(inputs[layer.name], None)] if layer.op == "input"
                    else [(values[i], self._types[i]) for i in layer.inputs])
            if layer.op != "input":  # Python ints where the layer runs wide; Limbs only where read as they are
                srcs = [(as_exact(c) if layer.exact or (isinstance(c, Limbs) and layer.op not in _TAKE_LIMBS) else c,
                         t) for c, t in srcs]
            out = layer.kernel(self, layer, *srcs)
            if isinstance(out, Limbs):
                out = out.to_int64() if layer.bound < INT64_SAFE else out
            elif out.dtype == object and layer.bound < INT64_SAFE:
                out = out.astype(np.int64)
            values[layer.name] = out.reshape((n, *layer.spec["shape"]))
            if not keep_layers:
                self._release(values, layer)
        if keep_layers:
            values = {k: as_exact(v) if isinstance(v, Limbs) else v for k, v in values.items()}
        outputs = [as_exact(v) if isinstance(v, Limbs) else v for v in (values[name] for name in self.output_names)]
        out = outputs[0] if len(outputs) == 1 else outputs
        return (out, values) if keep_layers else out

    def predict(self, x) -> np.ndarray:
        """Float outputs (the values of the output codes), as ``hls_model.predict`` returns them: one array
        (n, *output shape), or a list of them, one per output in ``output_names`` order, each in its own type."""
        if len(self.output_names) > 1:
            return [t.to_float(c) for t, c in zip(self.output_types, self.run(x))]
        codes = self.fast.run(self._checked(x)) if self.fast else self.run(x)  # run: checked there
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
        cast, keep = layer.result.from_codes(src[0], src[1].frac), src[0] > 0
        if isinstance(cast, Limbs):
            return cast.where(keep)
        return cast * keep if cast.dtype == np.int64 else np.where(keep, cast, 0)

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
        if p["binary"] == "data_binary":  # 1-bit data: the sign 2a - 1 (see _prepare_dense)
            x, x_type = 2 * x - 1, p["x_t"]
        elif p["binary"] == "both_binary":  # XNOR: [a, 1 - a] per input
            x = np.stack([x, 1 - x], axis=-1).reshape(len(x), -1)
        acc_t = p["acc_t"]
        if p["fast"] and not is_exact(x):
            prod = np.rint(x.astype(np.float64) @ p["w_float"]).astype(np.int64) if p["float_ok"] else x @ p["w"]
            acc = acc_t.from_codes(p["b_acc"] + (prod << p["shift"]), acc_t.frac)  # applies WRAP if it can occur
        elif p["path"] == "sum":
            acc = self._dense_sum(x, layer)
        else:
            acc = self._dense_stepwise(x, x_type, layer)
        if p["xnor"] is not None:  # (ap_int<K>)(2 acc - n_in), then (res_t)
            return layer.result.from_codes(p["xnor"].from_codes(2 * acc - (p["n_in"] << acc_t.frac), acc_t.frac), 0)
        return layer.result.from_codes(acc, acc_t.frac)

    @staticmethod
    def _dense_sum(x: np.ndarray, layer: _Layer) -> np.ndarray:
        """``acc = (accum_t)(b + sum_i (accum_t)(x_i * w_i))`` without a loop, for an accumulator that wraps (its low
        bits are all that matter) or never overflows (the plain sum): with s the fractional bits each product drops,
        ``sum_i round(p_i / 2**s) = (sum_i p_i - sum_i (p_i mod 2**s)) / 2**s + sum_i increment_i``. The product sum
        is exact from float64 limb products (``_limb_plan``); the remainders, modulo 2**s, and the rounding's
        increments (from the remainder, the sign and the parity of each product) in small unsigned ints."""
        p = layer.params
        plan, acc_t = p["sum"], p["acc_t"]
        mode = plan["mode"] if not is_exact(x) else "object"
        total = _exact_matmul(x, plan["limbs"], mode)  # limbs of int64 x are split in int64
        s = plan["s"]
        if s:
            dropped, increments = Emulator._dropped_bits(x, plan, acc_t.rounding)
            if mode == "limbs":
                total = (total - dropped).floor_shift(s)[0] + increments
            else:
                total = ((total - dropped) >> s) + increments  # exact division: the dropped bits are gone
        elif mode == "limbs":
            total = Limbs(total.hi << p["shift"], total.lo << p["shift"])
        elif mode == "object":
            total = total << p["shift"]
        else:
            total = (total.view(np.uint64) << np.uint64(p["shift"])).view(np.int64)
        return acc_t.from_codes(total + (as_exact(p["b_acc"]) if mode == "object" else p["b_acc"]), acc_t.frac)

    @staticmethod
    def _dropped_bits(x: np.ndarray, plan: dict, rounding: str) -> tuple[np.ndarray, np.ndarray]:
        """Per output: the sum of ``p mod 2**s`` over the products p = x_i * w_i, and the sum of the increments the
        rounding mode adds to their floor (int64). Products modulo 2**bits are exact in unsigned ints of that size."""
        s, bits, dt = plan["s"], plan["bits"], plan["dtype"]
        w_low = plan["w_low"]
        n_in, n_out = w_low.shape
        x_low = (x & ((1 << bits) - 1)).astype(dt)
        signs = rounding in ("TRN_ZERO", "RND_ZERO", "RND_INF")
        if signs:
            x_neg, x_nonzero = np.asarray(x < 0, dtype=bool), np.asarray(x != 0, dtype=bool)
            w_neg, w_nonzero = plan["w_neg"], plan["w_nonzero"]
        dropped = np.empty((len(x), n_out), dtype=np.int64)
        increments = np.zeros((len(x), n_out), dtype=np.int64)
        r_mask, half = dt((1 << s) - 1), dt(1 << (s - 1))
        step = max(SUM_CHUNK // max(n_in * n_out, 1), 1)
        for a in range(0, len(x), step):
            prod = x_low[a : a + step, :, None] * w_low[None]  # wraps modulo 2**(bits of dt)
            rem = prod & r_mask
            dropped[a : a + step] = rem.sum(axis=1, dtype=np.int64)
            if rounding == "TRN":
                continue
            above, tie = rem > half, rem == half
            if rounding == "RND":
                inc = above | tie
            elif rounding == "RND_MIN_INF":
                inc = above
            elif rounding == "RND_CONV":
                inc = above | (tie & ((prod >> dt(s)) & dt(1)).astype(bool))
            else:
                neg = (x_neg[a : a + step, :, None] != w_neg[None]) & x_nonzero[a : a + step, :, None] & w_nonzero[None]
                if rounding == "TRN_ZERO":
                    inc = (rem != 0) & neg
                elif rounding == "RND_ZERO":
                    inc = above | (tie & neg)
                else:  # RND_INF
                    inc = above | (tie & ~neg)
            increments[a : a + step] = inc.sum(axis=1, dtype=np.int64)
        return dropped, increments

    @staticmethod
    def _dense_stepwise(x: np.ndarray, x_type: FixedType, layer: _Layer) -> np.ndarray:
        """The C++ loop as written: each product rounded into accum_t, then added one input at a time (on Python
        ints where a product or a partial sum can pass int64)."""
        p = layer.params
        w, acc_t = p["w"], p["acc_t"]
        b_acc = p["b_acc"]
        if p["stepwise_exact"]:
            x, w, b_acc = as_exact(x), as_exact(w), as_exact(b_acc)
        prod_frac = x_type.frac + p["w_t"].frac
        acc = np.broadcast_to(b_acc, (x.shape[0], w.shape[1])).copy()
        if "schedule" in p:  # Resource strategy: the order of its loops
            for j, (i,) in p["schedule"]:
                acc[:, j] = acc_t.from_codes(acc[:, j] + acc_t.from_codes(x[:, i] * w[i, j], prod_frac), acc_t.frac)
            return acc
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
        out = np.empty((n, s["out_height"], s["out_width"], s["n_filt"]), dtype=object if layer.exact else np.int64)
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

    @kernel(*GATHER_OPS, prepare=_prepare_gather)
    def _gather(self, layer: _Layer, src) -> np.ndarray:
        """Each output element a cast of the input element ``l1forge.graph.gather.source_index`` names, or zero."""
        x = layer.result.from_codes(src[0].reshape(len(src[0]), -1), src[1].frac)[:, layer.params["index"]]
        x[:, layer.params["zero"]] = 0
        return x

    @kernel("binary_tanh")
    def _binary_tanh(self, layer: _Layer, src) -> np.ndarray:
        """``binary_tanh``: ap_int<2> cache = x >= 0 ? 1 : -1; ``binary_cast`` to res_t (ap_uint<1>: cache > 0 ?
        1 : 0, else (res_t)cache)."""
        r = layer.result
        if r.width == 1 and not r.signed and r.integer == 1:  # ap_uint<1>
            return (src[0] >= 0).astype(np.int64)
        one, minus = (int(r.from_codes(np.array([v]), 0)[0]) for v in (1, -1))
        return np.where(src[0] >= 0, one, minus)

    @kernel("ternary_tanh")
    def _ternary_tanh(self, layer: _Layer, src) -> np.ndarray:
        """``ternary_tanh``: ``datareg = 2 * x`` assigned to data_t (a cast: it may saturate or wrap), then 1, 0 or
        -1 (each as res_t) for datareg > 1, -1 < datareg <= 1, else."""
        x, x_t = src
        d = x_t.from_codes(x * 2, x_t.frac) << max(-x_t.frac, 0)
        one = 1 << max(x_t.frac, 0)  # 1 on the same scale: d > 1 and d > -1 exactly
        hi, lo = d > one, d > -one
        codes = [int(layer.result.from_codes(np.array([v]), 0)[0]) for v in (1, 0, -1)]
        return np.where(hi, codes[0], np.where(lo, codes[1], codes[2]))

    @kernel("bn_quantized_tanh", prepare=_prepare_thresholds)
    def _bn_quantized_tanh(self, layer: _Layer, src) -> np.ndarray:
        """``normalize_binary_tanh`` / ``normalize_ternary_tanh``: x against the thresholds, exactly."""
        p = layer.params
        x = (src[0].reshape(len(src[0]), -1)) << p["shift"]
        if layer.spec["quantize"] == 2:
            return (x >= p["threshold"]).astype(np.int64)
        return np.where(x > p["threshold_hi"], 1, np.where(x <= p["threshold_lo"], -1, 0))

    @kernel("thresholded_relu", prepare=_prepare_thresholded_relu)
    def _thresholded_relu(self, layer: _Layer, src) -> np.ndarray:
        """``thresholded_relu``: ``x > theta ? (res_t)x : 0``, compared exactly on the finer fraction."""
        x, x_t = src
        cast = layer.result.from_codes(x, x_t.frac)
        return np.where((x << layer.params["shift"]) > layer.params["theta"], cast, 0)

    @kernel("elu", prepare=_prepare_elu)
    def _elu(self, layer: _Layer, src) -> np.ndarray:
        """``elu`` / ``selu``: the index ``(int)(x * N / -8)`` (x < 0: C's truncations on -x), clamped to N - 1."""
        x, x_t = src
        p = layer.params
        size = len(p["table"])
        index = _table_index(-x, x_t.frac, size, 8, 0)
        neg = p["table"][index]
        if layer.spec["function"] == "elu":
            positive = layer.result.from_codes(x, x_t.frac)
            negative = layer.result.from_codes(neg * p["alpha"], p["table_t"].frac + p["alpha_frac"])
        else:
            positive = layer.result.from_codes(x * p["alpha"], x_t.frac + p["alpha_frac"])
            negative = layer.result.from_codes(neg, p["table_t"].frac)
        return np.where(x >= 0, positive, negative)

    @kernel("dot", prepare=_prepare_dot, refuse=_product)
    def _dot(self, layer: _Layer, a_src, b_src) -> np.ndarray:
        """``dot1d``: ``mult[i] = (accum_t)(a[i] * b[i])``, ``acc = 0; acc += mult[i]`` in accum_t, ``(res_t)acc``."""
        acc_t = layer.params["acc_t"]
        (a, fa), (b, fb) = (a_src[0], a_src[1].frac), (b_src[0], b_src[1].frac)
        a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
        acc = np.zeros(len(a), dtype=object if layer.exact else np.int64)
        for i in range(a.shape[1]):
            acc = acc_t.from_codes(acc + acc_t.from_codes(a[:, i] * b[:, i], fa + fb), acc_t.frac)
        return layer.result.from_codes(acc, acc_t.frac)[:, None]

    @kernel("leaky_relu", "prelu", prepare=_prepare_leaky_relu)
    def _leaky_relu(self, layer: _Layer, src) -> np.ndarray:
        """``res = x > 0 ? (res_t)x : (res_t)(alpha * x)``, alpha in ``param_t`` (prelu: one per element), the
        product exact."""
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
        if layer.spec["implementation"] == "argmax":  # softmax_argmax: the first index of the maximum (strict >)
            out = np.zeros(x.shape, dtype=np.int64)
            np.put_along_axis(out, x.argmax(axis=-1)[..., None], layer.params["one"], axis=-1)
            return out
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
        x = src[0].reshape(len(src[0]), -1, layer.spec["shape"][-1])  # GlobalPooling2D: the pixels as positions
        return layer.result.from_codes(acc_t.from_codes(x.max(axis=1), src[1].frac), acc_t.frac)

    @kernel("global_average", prepare=_prepare_global)
    def _global_average(self, layer: _Layer, src) -> np.ndarray:
        x, x_t = src
        x = x.reshape(len(x), -1, layer.spec["shape"][-1])
        acc_t = layer.params["acc_t"]
        acc = np.zeros((len(x), x.shape[-1]), dtype=np.int64)
        for i in range(x.shape[1]):
            a, b, frac = _aligned(acc, acc_t.frac, x[:, i], x_t.frac)
            acc = acc_t.from_codes(a + b, frac)
        acc = acc_t.from_codes(_trunc_div(acc, x.shape[1]), acc_t.frac)
        return layer.result.from_codes(acc, acc_t.frac)

    @kernel("add", "subtract", "average", "maximum", "minimum", "multiply", prepare=_prepare_merge)
    def _merge(self, layer: _Layer, a_src, b_src) -> np.ndarray:
        op = layer.op
        if op == "multiply":
            return layer.result.from_codes(a_src[0] * b_src[0], a_src[1].frac + b_src[1].frac)
        a, b, frac = _aligned(a_src[0], a_src[1].frac, b_src[0], b_src[1].frac)
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
