"""Synthesizable Verilog of the firmware graph (``firmware/graph.json``), bit-exact to the emulator.

``write_rtl(graph, weights, out_dir, clock_mhz)`` writes ``out_dir/<top>.v`` (the top module: input registers,
pipeline registers, output registers and one instance per adder or cast), ``out_dir/<top>_cells.v`` (the leaf
modules, rtl/cells.py) and ``out_dir/rtl.json`` (ports, latency, counts, delay model). Each op's lowering registers
on the op table (``l1forge.graph.ops``, backend ``"rtl"``; ``l1forge ops`` lists them) and builds its part of the
datapath (rtl/datapath.py: the arithmetic, the CMVM adder graph and the pipeline placement); an op without one, or
one it refuses (the legacy softmax, products other than ``mult``), raises ``RtlError`` naming the layer and its op
before a file is written. The ROM contents are the tables the emulator builds as hls4ml's ``init_*_table`` does;
the index arithmetic around them is the writer's own. Several outputs are concatenated on the ports in the order
of ``graph.outputs``.

Pipelining: each adder or cast is placed as soon as its inputs are ready (ASAP); when its delay (rtl/delay.py)
would push the stage past the budget of one clock period it starts the next stage, behind registers. Inputs and
outputs are registered. Latency (cycles from the input register to the output register, inclusive) and II = 1.

Port ``in_<k>``: the input type's code of flat input element k; ``out_<k>``: the output type's code of output k.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import pathlib
import re

import numpy as np

from l1forge.graph import ops
from l1forge.graph.gather import GATHER_OPS, source_index
from l1forge.graph.ir import Graph, Layer, as_graph
from l1forge.quantize.fixed import FixedType
from l1forge.quantize.hls_tables import (SELU_LAMBDA, activation_table, ceillog2, centred_offset, floorlog2,
                                         index_divisor, negative_table, softmax_tables)
from l1forge.rtl import delay
from l1forge.rtl.cells import ext
from l1forge.rtl.datapath import Datapath, RtlError, Sig, Term, csd_terms, each

lowering = functools.partial(ops.implements, "rtl")


def check_supported(graph: Graph | dict):
    """Raise RtlError for the first layer the writer cannot build (before anything is written)."""
    graph = as_graph(graph)
    if len(graph.inputs) != 1:
        raise RtlError(f"the RTL writer takes one model input, the firmware has {graph.inputs}")
    if graph.io_type != "io_parallel":
        raise RtlError(f"the RTL writer builds io_parallel designs, this firmware is {graph.io_type}")
    for layer in graph.layers:
        if why := ops.refusal(layer, "rtl"):
            raise RtlError(why)


def _product(layer: Layer) -> str | None:
    return None if layer.get("product") == "mult" else f"product {layer.get('product')!r}"


def _softmax_kind(layer: Layer) -> str | None:
    impl = layer.get("implementation")
    return None if impl in ("latency", "stable") else f"softmax implementation {impl!r}"


@lowering("dense", refuse=_product)
def _dense_layer(wr, spec, srcs, weights):
    (x, x_t), = srcs
    flat = list(x.ravel())
    return wr.dense(flat, x_t, wr.dense_params(spec, weights, len(flat)))


@lowering("conv1d", refuse=_product)
def _conv1d_layer(wr, spec, srcs, weights):
    """``conv_1d_latency_cl``: the dense accumulation on each output position's zero-padded window (taps, channels)."""
    (x, x_t), = srcs
    s = spec
    x = x.reshape(s["in_width"], s["n_chan"])
    zero = wr.const(0, 0)
    p = wr.dense_params(spec, weights, s["filt_width"] * s["n_chan"])
    outs = []
    for o in range(s["out_width"]):
        window = []
        for f in range(s["filt_width"]):
            i = o * s["stride_width"] + f - s["pad_left"]
            window += list(x[i]) if 0 <= i < s["in_width"] else [zero] * s["n_chan"]
        outs.append(wr.dense(window, x_t, p))
    return outs


@lowering("conv2d", refuse=_product)
def _conv2d_layer(wr, spec, srcs, weights):
    """``conv_2d_latency_cl``: the dense accumulation on each output pixel's zero-padded window (rows, columns,
    channels), pixels row-major."""
    (x, x_t), = srcs
    s = spec
    x = x.reshape(s["in_height"], s["in_width"], s["n_chan"])
    zero = wr.const(0, 0)
    p = wr.dense_params(spec, weights, s["filt_height"] * s["filt_width"] * s["n_chan"])
    outs = []
    for oi in range(s["out_height"]):
        for oj in range(s["out_width"]):
            window = []
            for fi in range(s["filt_height"]):
                for fj in range(s["filt_width"]):
                    i, j = oi * s["stride_height"] + fi - s["pad_top"], oj * s["stride_width"] + fj - s["pad_left"]
                    inside = 0 <= i < s["in_height"] and 0 <= j < s["in_width"]
                    window += list(x[i, j]) if inside else [zero] * s["n_chan"]
            outs.append(wr.dense(window, x_t, p))
    return outs


@lowering("pool2d")
def _pool2d_layer(wr, spec, srcs, weights):
    """``pooling2d_cl``: max in the input type (padding: the MSB-only bit pattern), or the sum in accum_t (one cast
    per addition) divided towards zero by the unpadded area (or the window with count_pad); then (res_t)."""
    (x, x_t), = srcs
    s = spec
    acc_t, res_t = s.type("accum_t"), s.result_t
    x = x.reshape(s["in_height"], s["in_width"], s["n_filt"])
    pad = wr.const(x_t.min_code if x_t.signed else 1 << (x_t.width - 1), -x_t.frac)
    outs = []
    for oi in range(s["out_height"]):
        for oj in range(s["out_width"]):
            for c in range(s["n_filt"]):
                win, inside = [], 0
                for fi in range(s["pool_height"]):
                    for fj in range(s["pool_width"]):
                        i, j = oi * s["stride_height"] + fi - s["pad_top"], oj * s["stride_width"] + fj - s["pad_left"]
                        ok = 0 <= i < s["in_height"] and 0 <= j < s["in_width"]
                        inside += ok
                        win.append(x[i, j, c] if ok else None)
                if s["pool_op"] == "max":
                    acc = wr.cast(wr.reduce_max([v if v is not None else pad for v in win]), acc_t)
                else:
                    acc = wr.chain_sum([v for v in win if v is not None], acc_t)
                    size = s["pool_height"] * s["pool_width"] if s["count_pad"] else inside
                    acc = wr.cast(wr.trunc_div(acc, size, -acc_t.frac), acc_t)
                outs.append(wr.cast(acc, res_t))
    return outs


@lowering("global_max", "global_average")
def _global_layer(wr, spec, srcs, weights):
    """GlobalPooling1D over the first axis: ``(res_t)(accum_t)max``, or ``acc = (accum_t)(acc + x)`` in order,
    ``acc /= n`` (truncating), ``(res_t)acc``."""
    (x, x_t), = srcs
    acc_t, res_t = spec.type("accum_t"), spec.result_t
    x = x.reshape(-1, spec.shape[-1])  # GlobalPooling2D: the pixels as positions
    outs = []
    for f in range(x.shape[1]):
        col = list(x[:, f])
        if spec["op"] == "global_max":
            acc = wr.cast(wr.reduce_max(col), acc_t)
        else:
            acc = wr.cast(wr.trunc_div(wr.chain_sum(col, acc_t), len(col), -acc_t.frac), acc_t)
        outs.append(wr.cast(acc, res_t))
    return outs


@lowering("batchnorm")
def _batchnorm_layer(wr, spec, srcs, weights):
    """``res = (res_t)(x * scale + bias)``, exact inside: the constant product in canonical signed digits."""
    (x, x_t), = srcs
    scale_t, bias_t, res_t = (spec.type(k) for k in ("scale_t", "bias_t", "result_t"))
    flat = x.ravel()
    pick = np.arange(len(flat)) % len(weights[f"{spec['name']}/scale"])
    scale = scale_t.from_float(weights[f"{spec['name']}/scale"])[pick]
    bias = bias_t.from_float(weights[f"{spec['name']}/bias"])[pick]
    return [wr.cast(wr.tree(csd_terms(v, int(scale[k]), scale_t.frac), wr.const(int(bias[k]), -bias_t.frac)), res_t)
            for k, v in enumerate(flat)]


@lowering("leaky_relu")
def _leaky_relu_layer(wr, spec, srcs, weights):
    """``x > 0 ? (res_t)x : (res_t)(alpha * x)``, alpha in param_t, the product exact."""
    (x, x_t), = srcs
    res_t, param_t = spec.result_t, spec.type("param_t")
    alpha = int(param_t.from_float(spec["alpha"]))

    def one(v):
        neg = wr.cast(wr.tree(csd_terms(v, alpha, param_t.frac), wr.const(0, 0)), res_t)
        return wr.select_pos(v, wr.cast(v, res_t), neg)

    return each(one, x)


@lowering("hard_sigmoid", "hard_tanh")
def _hard_layer(wr, spec, srcs, weights):
    """hard_sigmoid / hard_tanh: ``y = slope * x + shift`` exact, clipped to [0, 1] (``2y - 1`` for tanh), (res_t)y."""
    (x, x_t), = srcs
    slope_t, shift_t, res_t = (spec.type(k) for k in ("slope_t", "shift_t", "result_t"))
    slope, shift = int(slope_t.from_float(spec["slope"])), int(shift_t.from_float(spec["shift"]))

    def one(v):
        y = wr.tree(csd_terms(v, slope, slope_t.frac), wr.const(shift, -shift_t.frac))
        y = wr.maxmin(wr.maxmin(y, wr.const(0, 0), "max"), wr.const(1, 0), "min")
        if spec["op"] == "hard_tanh":
            y = wr.tree([Term(y, y.lsb + 1, 1)], wr.const(-1, 0))
        return wr.cast(y, res_t)

    return each(one, x)


@lowering("table")
def _table_layer(wr, spec, srcs, weights):
    """sigmoid / tanh tables: ``index = clamp((int)(x * N / R) + R/2 * N / R)`` in C ints (the division truncating
    towards zero), then a ROM of the table converted to res_t (its contents as ``init_*_table`` builds them)."""
    (x, x_t), = srcs
    res_t, table_t = spec.result_t, spec.type("table_t")
    codes, span = activation_table(spec["function"], spec["table_size"], table_t)
    table = res_t.from_codes(codes, table_t.frac)
    size = len(table)
    mult, den = index_divisor(x_t.frac, size, span)
    offset = centred_offset(size, span)
    rom = {k: int(v) for k, v in enumerate(table)}

    def one(v):
        code = dataclasses.replace(v, lsb=v.lsb + x_t.frac)  # the code of x_t, as an integer
        prod = wr.tree(csd_terms(code, int(mult), 0), wr.const(0, 0))
        q = wr.trunc_div(prod, int(den), 0)
        q = dataclasses.replace(q, lsb=q.lsb + max(-x_t.frac, 0))
        if q.const is None and max(-q.lo, q.hi) << max(q.lsb, 0) >= 2**31 - offset:
            raise RtlError(f"layer '{spec['name']}' (table): the index leaves 32-bit ints; not supported by the RTL writer")
        index = wr.tree([Term(q, q.lsb, 1)], wr.const(offset, 0))
        index = wr.maxmin(wr.maxmin(index, wr.const(0, 0), "max"), wr.const(size - 1, 0), "min")
        out = wr.rom(index, rom)
        return dataclasses.replace(out, lsb=out.lsb - res_t_frac)

    res_t_frac = res_t.frac
    return each(one, x)


@lowering("softmax", refuse=_softmax_kind)
def _softmax_layer(wr, spec, srcs, weights):
    """Softmax, latency and stable: exp ROM on the top bits of x (stable: of ``inp_norm_t(max - x)``) giving
    accum_t codes, their sum as the C++ balanced tree (each addition cast to accum_t), ``(inv_inp_t)sum``, the
    inverse ROM on its top bits, ``res = (res_t)(exp * inv)`` (a variable product)."""
    (x, x_t), = srcs
    p = softmax_tables(spec, x_t)
    acc_t, exp_t, inv_t, inv_inp_t, address_t = (p[k] for k in ("acc_t", "exp_t", "inv_t", "inv_inp_t", "address_t"))
    res_t = spec.result_t
    exp_codes = acc_t.from_codes(p["exp"], exp_t.frac)
    exp_rom = {k: int(v) for k, v in enumerate(exp_codes)}
    inv_rom = {k: int(v) for k, v in enumerate(p["inv"])}
    rows = x.reshape(-1, x.shape[-1])
    outs = []
    for row in rows:
        row = list(row)
        if spec["implementation"] == "stable":
            top = wr.reduce_max(row)
            row = [wr.cast(wr.tree([Term(top, top.lsb, 1), Term(v, v.lsb, -1)], wr.const(0, 0)), address_t) for v in row]
        exps = []
        for v in row:
            e = wr.rom(wr.top_bits(v, address_t, ceillog2(len(exp_codes))), exp_rom)
            exps.append(dataclasses.replace(e, lsb=e.lsb - acc_t.frac))

        def tree_sum(cols):
            if len(cols) == 1:
                return cols[0]
            left = 1 << floorlog2(len(cols) - 1)
            a, b = tree_sum(cols[:left]), tree_sum(cols[left:])
            return wr.cast(wr.tree([Term(a, a.lsb, 1), Term(b, b.lsb, 1)], wr.const(0, 0)), acc_t)

        total = wr.cast(tree_sum(exps), inv_inp_t)
        inv = wr.rom(wr.top_bits(total, inv_inp_t, ceillog2(len(inv_rom))), inv_rom)
        inv = dataclasses.replace(inv, lsb=inv.lsb - inv_t.frac)
        outs += [wr.cast(wr.multiply(e, inv), res_t) for e in exps]
    return outs


@lowering("add", "subtract", "average", "maximum", "minimum", "multiply")
def _merge_layer(wr, spec, srcs, weights):
    """add / subtract / average / maximum / minimum / multiply: the exact two-input result, then (res_t)."""
    (a, _), (b, _) = srcs
    res_t, op = spec.result_t, spec["op"]

    def one(u, v):
        if op == "multiply":
            y = wr.multiply(u, v)
        elif op in ("maximum", "minimum"):
            y = wr.maxmin(u, v, op[:3])
        else:
            half = -1 if op == "average" else 0  # (a + b) * ap_ufixed<1,0>(0.5)
            y = wr.tree([Term(u, u.lsb + half, 1), Term(v, v.lsb + half, -1 if op == "subtract" else 1)], wr.const(0, 0))
        return wr.cast(y, res_t)

    return [one(u, v) for u, v in zip(a.ravel(), b.ravel())]


@lowering("concatenate")
def _concatenate_layer(wr, spec, srcs, weights):
    res_t, axis = spec.result_t, spec["axis"]
    parts = [each(lambda v: wr.cast(v, res_t), x) for x, _ in srcs]
    return np.concatenate(parts, axis=axis - 1 if axis > 0 else axis)


@lowering("transpose")
def _transpose_layer(wr, spec, srcs, weights):
    (x, _), = srcs
    res_t = spec.result_t
    return each(lambda v: wr.cast(v, res_t), np.transpose(x, spec["perm"]))


@lowering("relu", "linear")
def _activation_layer(wr, spec, srcs, weights):
    return each(lambda v: wr.cast(v, spec.result_t, relu=spec.op == "relu"), srcs[0][0])


@lowering("zeropad1d")
def _zeropad1d_layer(wr, spec, srcs, weights):
    """``zeropad1d_cl``: constant zeros around the input positions (channels last), each value cast to res_t."""
    x = each(lambda v: wr.cast(v, spec.result_t), srcs[0][0]).reshape(spec["in_width"], spec["n_chan"])
    out = np.empty((spec["out_width"], spec["n_chan"]), dtype=object)
    out[:] = wr.const(0, 0)
    out[spec["pad_left"] : spec["pad_left"] + spec["in_width"]] = x
    return out


@lowering(*GATHER_OPS)
def _gather_layer(wr, spec, srcs, weights):
    """zeropad2d / cropping1d / cropping2d / resize: each output the cast to res_t of the input element that
    ``l1forge.graph.gather.source_index`` names (one cast per input element, however often it is read), or zero."""
    x, zero = srcs[0][0].ravel(), wr.const(0, 0)
    cast = functools.lru_cache(maxsize=None)(lambda i: wr.cast(x[i], spec.result_t))
    return [cast(int(i)) if i >= 0 else zero for i in source_index(spec)]


@lowering("thresholded_relu")
def _thresholded_relu_layer(wr, spec, srcs, weights):
    """``x > theta ? (res_t)x : 0``: the sign of the exact x - theta selects."""
    param_t, res_t = spec.type("param_t"), spec.result_t
    theta = int(param_t.from_float(spec["theta"]))
    return each(lambda v: wr.select_pos(wr.tree([Term(v, v.lsb, 1)], wr.const(-theta, -param_t.frac)),
                                        wr.cast(v, res_t), wr.const(0, 0)), srcs[0][0])


@lowering("prelu")
def _prelu_layer(wr, spec, srcs, weights):
    """``x > 0 ? (res_t)x : (res_t)(alpha[i] * x)``, alpha[i] in param_t, the product exact."""
    (x, _), = srcs
    param_t, res_t = spec.type("param_t"), spec.result_t
    alpha = param_t.from_float(weights[f"{spec.name}/alpha"])
    return [wr.select_pos(v, wr.cast(v, res_t), wr.cast(wr.tree(csd_terms(v, int(a), param_t.frac), wr.const(0, 0)),
                                                          res_t)) for v, a in zip(x.ravel(), alpha)]


@lowering("elu")
def _elu_layer(wr, spec, srcs, weights):
    """elu / selu: ``index = min((int)(x * N / -8), N - 1)`` in C ints (as the table op's index, on -x), a ROM of
    the table, ``x >= 0`` (x + 1 lsb > 0) selects (res_t)x (selu: (res_t)(lambda * x)), else (res_t)(alpha *
    table) (selu: the table alone)."""
    (x, x_t), = srcs
    param_t, table_t, res_t = spec.type("param_t"), spec.type("table_t"), spec.result_t
    selu = spec["function"] == "selu"
    alpha = int(param_t.from_float(SELU_LAMBDA if selu else spec["alpha"]))
    codes = negative_table(spec["function"], spec["table_size"], table_t)
    rom, size = {k: int(v) for k, v in enumerate(codes)}, len(codes)
    mult, den = index_divisor(x_t.frac, size, 8)

    def one(v):
        code = dataclasses.replace(v, lsb=v.lsb + x_t.frac)
        q = wr.trunc_div(wr.tree(csd_terms(code, -int(mult), 0), wr.const(0, 0)), int(den), 0)
        q = dataclasses.replace(q, lsb=q.lsb + max(-x_t.frac, 0))
        if q.const is None and max(-q.lo, q.hi) << max(q.lsb, 0) >= 2**31:
            raise RtlError(f"layer '{spec.name}' (elu): the index leaves 32-bit ints; not supported by the RTL writer")
        index = wr.maxmin(wr.maxmin(q, wr.const(0, 0), "max"), wr.const(size - 1, 0), "min")
        t = wr.rom(index, rom)
        t = dataclasses.replace(t, lsb=t.lsb - table_t.frac)
        if selu:
            pos, neg = wr.cast(wr.tree(csd_terms(v, alpha, param_t.frac), wr.const(0, 0)), res_t), wr.cast(t, res_t)
        else:
            pos, neg = wr.cast(v, res_t), wr.cast(wr.tree(csd_terms(t, alpha, param_t.frac), wr.const(0, 0)), res_t)
        return wr.select_pos(wr.tree([Term(v, v.lsb, 1)], wr.const(1, v.lsb)), pos, neg)

    return each(one, x)


def _code_of(t: FixedType, value: int) -> int:
    return int(t.from_codes(np.array([value]), 0)[0])


@lowering("binary_tanh", "ternary_tanh")
def _binary_tanh_layer(wr, spec, srcs, weights):
    """``binary_tanh``: x >= 0 (x + 1 lsb > 0) selects 1, else -1 (ap_uint<1>: 0), as res_t; ``ternary_tanh``:
    d = (x_t)(2 x), then d > 1, d > -1 select 1, 0, -1 (each as res_t)."""
    (x, x_t), = srcs
    res_t = spec.result_t
    at = -res_t.frac
    binary01 = res_t.width == 1 and not res_t.signed and res_t.integer == 1

    def const(v):
        return wr.const(_code_of(res_t, v), at)

    def one(v):
        if spec["op"] == "binary_tanh":
            return wr.select_pos(wr.tree([Term(v, v.lsb, 1)], wr.const(1, v.lsb)), const(1), const(0 if binary01 else -1))
        d = wr.cast(wr.tree([Term(v, v.lsb + 1, 1)], wr.const(0, 0)), x_t)
        return wr.select_pos(wr.tree([Term(d, d.lsb, 1)], wr.const(-1, 0)), const(1),
                             wr.select_pos(wr.tree([Term(d, d.lsb, 1)], wr.const(1, 0)), const(0), const(-1)))

    return each(one, x)


@lowering("bn_quantized_tanh")
def _bn_quantized_tanh_layer(wr, spec, srcs, weights):
    """``normalize_binary_tanh``: x >= t (x - t + 1 lsb > 0) selects 1, else 0; ``normalize_ternary_tanh``: x > hi
    selects 1, x > lo 0, else -1; the thresholds in threshold_t, per channel or element."""
    (x, x_t), = srcs
    th_t, flat = spec.type("threshold_t"), x.ravel()
    lsb = -max(th_t.frac, x_t.frac)
    keys = ("threshold",) if spec["quantize"] == 2 else ("threshold_hi", "threshold_lo")
    th = {k: th_t.from_float(weights[f"{spec.name}/{k}"]) for k in keys}

    def above(v, key, i, strict=True):
        """x - t (strict) or x - t + 1 lsb, exactly: > 0 means x > t (x >= t)."""
        t = int(th[key][i % len(th[key])])
        return wr.tree([Term(v, v.lsb, 1)], wr.const(-(t << (-lsb - th_t.frac)) + (0 if strict else 1), lsb))

    out = []
    for i, v in enumerate(flat):
        if spec["quantize"] == 2:
            out.append(wr.select_pos(above(v, "threshold", i, strict=False), wr.const(1, 0), wr.const(0, 0)))
        else:
            out.append(wr.select_pos(above(v, "threshold_hi", i), wr.const(1, 0),
                                     wr.select_pos(above(v, "threshold_lo", i), wr.const(0, 0), wr.const(-1, 0))))
    return out


@lowering("dot", refuse=_product)
def _dot_layer(wr, spec, srcs, weights):
    """``dot1d``: each product cast to accum_t, added in order (one cast per addition), then (res_t)."""
    (a, _), (b, _) = srcs
    acc_t = spec.type("accum_t")
    products = [wr.cast(wr.multiply(u, v), acc_t) for u, v in zip(a.ravel(), b.ravel())]
    return [wr.cast(wr.chain_sum(products, acc_t), spec.result_t)]


@lowering("reshape")
def _reshape_layer(wr, spec, srcs, weights):
    return srcs[0][0]


@lowering("input")
def _input_layer(wr, spec, srcs, weights):
    """One input port per element, each the width of the input type."""
    res_t = spec.result_t
    sigs = np.empty(spec.size, dtype=object)
    for k in range(spec.size):
        sigs[k] = Sig(f"in_{k}", -res_t.frac, res_t.min_code, res_t.max_code, stage=0, t=0.0)
        wr.ports_in.append({"name": f"in_{k}", "width": res_t.width, "signed": res_t.signed, "frac": res_t.frac})
    return sigs


INTERFACE = {
    "clk": "clock; every register updates on its rising edge",
    "rst": "synchronous reset, active high: clears the valid pipeline (the data registers are not reset)",
    "ce": "clock enable: 1 = the pipeline advances one stage; 0 = every register holds (tie to 1 for a "
          "free-running trigger datapath; the AXI4-Stream wrapper drives it from m_axis_tready)",
    "in_valid": "in_* hold an event this cycle (sampled when ce = 1)",
    "out_valid": "out_* hold the result of the event given latency_cycles enabled cycles earlier",
    "in_k": "the input type's code of flat input element k (two's complement when signed)",
    "out_k": "the output type's code of flat output element k (several outputs: concatenated in graph order)",
}


def _header(top, project, clock_mhz, latency, in_type, ports_in, ports_out, out_types) -> list[str]:
    """The module's header comment: where it comes from, its interface, latency and II."""
    outs = sorted({str(t) for t in out_types})
    version = importlib.metadata.version("l1forge")
    lines = [f"{top}: generated by l1forge {version} (l1forge.rtl.lower) from the firmware graph of {project}",
             f"target clock {clock_mhz:g} MHz ({1000.0 / clock_mhz:.3f} ns); latency {latency} cycles "
             f"({latency * 1000.0 / clock_mhz:.2f} ns); II 1: a new event every enabled cycle",
             "", "Interface (synchronous to clk):"]
    lines += [f"  {name:<10} {text}" for name, text in INTERFACE.items()]
    lines += ["", f"in_0..in_{len(ports_in) - 1}: {in_type}; out_0..out_{len(ports_out) - 1}: {', '.join(outs)}"]
    return [f"// {line}".rstrip() for line in lines] + [""]


def write_rtl(graph: Graph | dict, weights: dict | None, out_dir, clock_mhz: float = 240.0, top: str | None = None) -> dict:
    """Write the Verilog of ``graph`` to ``out_dir``; returns the ``rtl.json`` description (also written).

    ``graph``/``weights`` as ``l1forge.graph.ir.read_graph`` returns them; ``clock_mhz`` sets the stage budget.
    Raises RtlError (one line) for a layer it does not support, before writing anything.
    """
    graph = as_graph(graph, weights)
    check_supported(graph)
    top = top or "m_" + re.sub(r"\W", "_", graph.project_name) + "_rtl"  # a valid Verilog name
    wr = Datapath(top, clock_mhz)
    values: dict[str, np.ndarray] = {}  # layer -> object array of Sig, shaped as the layer's output
    types: dict[str, FixedType] = {}
    for spec in graph.layers:
        types[spec.name] = spec.result_t
        srcs = [(values[i], types[i]) for i in spec.inputs] if spec.op != "input" else []
        wr.layer = spec.name
        out = ops.implementation(spec, "rtl")(wr, spec, srcs, graph.weights)
        values[spec.name] = np.asarray(out, dtype=object).reshape(spec.shape)
    outs = [s for name in graph.outputs for s in values[name].ravel()]
    out_types = [types[name] for name in graph.outputs for _ in values[name].ravel()]
    wr.check_clock()  # one line with the best achievable clock when no pipeline depth meets it
    last = max([s.stage for s in outs if s.const is None] + [1])
    latency = last + 1  # stages 1..last, then the output register
    ports_out, assigns = [], []
    for k, (s, t) in enumerate(zip(outs, out_types)):
        ports_out.append({"name": f"out_{k}", "width": t.width, "signed": t.signed, "frac": t.frac})
        src = wr.at(s, last + 1) if s.const is None else wr.at(s, 0)
        shift = s.lsb + t.frac
        val = src if shift == 0 else f"{{{src}, {shift}'d0}}"
        w = s.width + shift
        wire = f"ow_{k}"
        wr.decls.append(f"  wire [{w - 1}:0] {wire} = {val};")
        assigns.append(f"  assign out_{k} = {ext(wire, w, s.signed, t.width)};")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ports = ["input clk", "input rst", "input ce", "input in_valid", "output out_valid"] + \
        [f"input [{p['width'] - 1}:0] {p['name']}" for p in wr.ports_in] + \
        [f"output [{p['width'] - 1}:0] {p['name']}" for p in ports_out]
    regs = [f"  reg [{w - 1}:0] {r};" for r, (_, w) in wr.regs.items()] + [f"  reg [{latency - 1}:0] valid_pipe;"]
    shift = "in_valid" if latency == 1 else f"{{valid_pipe[{latency - 2}:0], in_valid}}"
    always = ["  always @(posedge clk) begin", "    if (ce) begin"] + \
        [f"      {r} <= {s};" for r, (s, _) in wr.regs.items()] + [f"      valid_pipe <= {shift};", "    end",
                                                                    "    if (rst) valid_pipe <= 0;", "  end"]
    header = _header(top, graph.project_name, clock_mhz, latency, types[graph.inputs[0]], wr.ports_in, ports_out,
                     out_types)
    text = "\n".join([*header, f"module {top}(\n  " + ",\n  ".join(ports) + "\n);", *regs, *wr.decls, *wr.insts,
                      *assigns, f"  assign out_valid = valid_pipe[{latency - 1}];", *always, "endmodule", ""])
    (out_dir / f"{top}.v").write_text(text)
    (out_dir / f"{top}_cells.v").write_text("\n".join(wr.cell_text))
    info = {"top": top, "files": [f"{top}.v", f"{top}_cells.v"], "clock_mhz": clock_mhz, "latency_cycles": latency,
            "ii_cycles": 1, "latency_ns": round(latency * 1000.0 / clock_mhz, 3),
            "stage_budget_ns": round(wr.budget, 3), "inputs": wr.ports_in, "outputs": ports_out,
            "interface": INTERFACE, "input_type": str(types[graph.inputs[0]]), "adders": wr.counts["adders"],
            "cmvm_adders": wr.counts["cmvm_adders"], "casts": wr.counts["casts"],
            "registers_bits": int(sum(w for _, w in wr.regs.values())), "cell_modules": len(wr.cells),
            "delay_model": delay.CONSTANTS, "layers": wr.layer_report(latency)}
    (out_dir / "rtl.json").write_text(json.dumps(info, indent=1))
    return info


def write_rtl_from_file(graph_json, out_dir, clock_mhz: float = 240.0) -> dict:
    """``write_rtl`` on a ``graph.json`` (read with l1forge.graph.ir.read_graph)."""
    from l1forge.graph.ir import read_graph

    return write_rtl(read_graph(graph_json), None, out_dir, clock_mhz)


