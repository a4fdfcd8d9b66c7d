"""The op table: every operation of the firmware graph, declared once with its attributes and weights.

Each interpreter of the graph registers its implementation of an op here with ``implements(backend, *ops)``:
``"emulate"`` (the emulator's kernel, ``l1forge.emulation.emulator``), ``"estimate"`` (the latency/resource cost,
``l1forge.firmware.estimate``) and ``"rtl"`` (the Verilog lowering, ``l1forge.rtl.lower``). What a backend supports
is derived from the table (``supported``; ``l1forge ops`` prints the whole table), and a layer whose op has no
implementation, or whose implementation refuses its attributes, gets a one-line refusal generated here
(``refusal``). A new op is one ``declare`` here, then one registered function per backend, each beside its peers.

Attribute kinds: ``type`` (a fixed-point type string, parsed by ``Layer.type``), ``int``, ``float``, ``str``,
``bool``, ``ints`` (a list of ints). Every layer also has ``result_t`` (type), and ``name``, ``class_name``,
``inputs`` and ``shape`` (``l1forge.graph.ir.Layer``). The arithmetic of each op is that of hls4ml 1.3.0's
nnet_utils kernel named in its ``doc``; the emulator's docstring gives the exact sequence of casts.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable

BACKENDS = {"emulate": "the emulator", "estimate": "the estimate", "rtl": "the RTL writer"}


@dataclasses.dataclass
class Op:
    """One operation: ``attrs`` {name: kind}, ``weights`` (arrays ``<layer>/<key>`` in graph_weights.npz), the hls4ml
    layer classes described as it, what it computes (``doc``), and the implementations registered per backend."""

    name: str
    doc: str
    layers: tuple[str, ...]
    attrs: dict[str, str]
    weights: tuple[str, ...] = ()
    impl: dict[str, Callable] = dataclasses.field(default_factory=dict)
    refuse: dict[str, Callable] = dataclasses.field(default_factory=dict)


OPS: dict[str, Op] = {}


def declare(name: str, doc: str, layers: tuple = (), weights: tuple = (), **attrs: str) -> Op:
    OPS[name] = Op(name, doc, tuple(layers), attrs, tuple(weights))
    return OPS[name]


def implements(backend: str, *ops: str, refuse: Callable | None = None) -> Callable:
    """Decorator: register ``fn`` as ``backend``'s implementation of ``ops``. ``refuse(layer)`` returns why a layer
    of these ops cannot be built by this backend (a short phrase), or None."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (backends: {', '.join(BACKENDS)})")

    def register(fn: Callable) -> Callable:
        for op in ops:
            OPS[op].impl[backend] = fn
            if refuse is not None:
                OPS[op].refuse[backend] = refuse
        return fn

    return register


def supported(backend: str) -> tuple[str, ...]:
    """The ops ``backend`` implements (its module must be imported: registration happens at import)."""
    return tuple(name for name, op in OPS.items() if backend in op.impl)


def refusal(layer, backend: str) -> str | None:
    """Why ``backend`` cannot build ``layer`` (an ``l1forge.graph.ir.Layer``), one line; None if it can."""
    op = OPS.get(layer.op)
    tool = BACKENDS[backend]
    if op is None or backend not in op.impl:
        return f"{layer.where} is not supported by {tool}"
    why = op.refuse.get(backend, lambda _: None)(layer)
    return f"{layer.where}: {why} is not supported by {tool}" if why else None


def implementation(layer, backend: str) -> Callable:
    """``backend``'s function for ``layer``'s op; KeyError if none is registered (``refusal`` says why first)."""
    return OPS[layer.op].impl[backend]


@dataclasses.dataclass
class Refused:
    """A kind of layer or model hls4ml 1.3.0 converts (io_parallel, Vivado/Vitis) that l1forge refuses: why, and
    what the user can do instead. Declared once here (``refuse_layer``); describe's refusals read it, and the
    README's table of refused kinds is generated from it (``refused_table``)."""

    kind: str
    why: str
    todo: str


REFUSED: dict[str, Refused] = {}


def refuse_layer(kind: str, why: str, todo: str) -> Refused:
    REFUSED[kind] = Refused(kind, why, todo)
    return REFUSED[kind]


def hint(class_name: str) -> str | None:
    """'why; what to do' of the refused kind that names hls4ml layer class ``class_name``, or None."""
    r = next((r for r in REFUSED.values() if class_name and re.search(rf"\b{re.escape(class_name)}\b", r.kind)), None)
    return f"{r.why}; {r.todo}" if r else None


def layers_table() -> str:
    """Markdown: each hls4ml layer class the firmware graph describes, the ops it becomes and which backend
    implements them (the backends' modules must be imported)."""
    rows = ["| hls4ml layer | op | emulator | estimate | RTL |", "|---|---|---|---|---|"]
    by_layer: dict[str, list[Op]] = {}
    for op in OPS.values():
        for layer in op.layers:
            by_layer.setdefault(layer, []).append(op)
    for layer in sorted(by_layer, key=str.lower):
        for op in by_layer[layer]:
            marks = ["yes" if b in op.impl else "no" for b in BACKENDS]
            rows.append(f"| {layer} | {op.name} | " + " | ".join(marks) + " |")
    return "\n".join(rows)


def refused_table() -> str:
    """Markdown: each refused kind with why and what to do."""
    rows = ["| refused | why | what you can do |", "|---|---|---|"]
    rows += [f"| {r.kind} | {r.why} | {r.todo} |" for r in REFUSED.values()]
    return "\n".join(rows)


def table(backends=tuple(BACKENDS)) -> str:
    """The op table as Markdown: op, hls4ml layers, attributes and which backend implements it."""
    rows = ["| op | hls4ml layers | attributes | " + " | ".join(backends) + " |",
            "|---|---|---|" + "---|" * len(backends)]
    for op in OPS.values():
        marks = ["yes" if b in op.impl else "no" for b in backends]
        attrs = ", ".join(op.attrs) + (f"; weights {', '.join(op.weights)}" if op.weights else "") or "-"
        rows.append(f"| {op.name} | {', '.join(op.layers) or '-'} | {attrs} | " + " | ".join(marks) + " |")
    return "\n".join(rows)


_DENSE = dict(accum_t="type", weight_t="type", bias_t="type", product="str", strategy="str", reuse_factor="int",
              n_nonzero="int")
_CONV1D = dict(implementation="str", in_width="int", n_chan="int", filt_width="int", n_filt="int",
               stride_width="int", out_width="int", pad_left="int", pad_right="int", n_partitions="int")
_CONV2D = dict(implementation="str", in_height="int", in_width="int", n_chan="int", filt_height="int",
               filt_width="int", n_filt="int", stride_height="int", stride_width="int", out_height="int",
               out_width="int", pad_top="int", pad_bottom="int", pad_left="int", pad_right="int")
_POOL2D = dict(pool_op="str", accum_t="type", count_pad="bool", in_height="int", in_width="int", n_filt="int",
               pool_height="int", pool_width="int", stride_height="int", stride_width="int", out_height="int",
               out_width="int", pad_top="int", pad_bottom="int", pad_left="int", pad_right="int")
_MERGE = {"add": "a + b", "subtract": "a - b", "average": "(a + b) / 2 (times ap_ufixed<1,0>(0.5))",
          "maximum": "max(a, b)", "minimum": "min(a, b)", "multiply": "a * b"}
_IMAGE = dict(in_height="int", in_width="int", n_chan="int", out_height="int", out_width="int")

declare("input", "the model input; floats are converted into result_t as ap_fixed(double) does", ("Input",))
declare("dense", "nnet_dense_latency.h / nnet_dense_resource.h: each product cast to accum_t, added in input order "
        "to the bias, then cast to result_t", ("Dense",), ("weight", "bias"), n_in="int", n_out="int", **_DENSE)
declare("conv1d", "nnet_conv1d_latency.h (io_parallel linebuffer): the dense accumulation on each output "
        "position's zero-padded window, rows ordered (tap, channel); n_partitions = out_width / "
        "ParallelizationFactor; DepthwiseConv1D as a block-diagonal weight",
        ("Conv1D", "PointwiseConv1D", "DepthwiseConv1D"), ("weight", "bias"), **_DENSE, **_CONV1D)
declare("conv2d", "nnet_conv2d_latency.h (io_parallel linebuffer, channels last): the dense accumulation on each "
        "pixel's zero-padded window, rows ordered (row, column, channel); DepthwiseConv2D as a block-diagonal "
        "weight", ("Conv2D", "PointwiseConv2D", "Conv2DBatchnorm", "DepthwiseConv2D"), ("weight", "bias"),
        **_DENSE, **_CONV2D)
declare("pool2d", "nnet_pooling.h pooling2d_cl (channels last): max in the input type, or the sum in accum_t "
        "divided towards zero by the window's unpadded area (the window with count_pad); pooling1d_cl is the same "
        "on one row (height 1)", ("Pooling2D", "Pooling1D"), **_POOL2D)
declare("leaky_relu", "nnet_activation.h leaky_relu: x > 0 ? x : alpha * x, alpha in param_t",
        ("LeakyReLU", "ParametrizedActivation"), alpha="float", param_t="type")
declare("relu", "nnet_activation.h relu: x > 0 ? (res_t)x : 0", ("Activation", "ReLU"))
declare("linear", "nnet_activation.h linear: (res_t)x; io_stream's repack_stream (Repack) assigns the same way",
        ("Activation", "Repack"))
declare("reshape", "Flatten / Reshape: the same values in a new shape", ("Reshape",))
declare("transpose", "nnet_transpose.h (Keras Permute): the axes of one event permuted by perm, cast to result_t",
        ("Transpose",), perm="ints")
declare("zeropad1d", "nnet_padding.h zeropad1d_cl: pad_left and pad_right positions of zeros around the input "
        "positions (channels last), each input value cast to result_t", ("ZeroPadding1D",), in_width="int",
        n_chan="int", out_width="int", pad_left="int", pad_right="int")
declare("zeropad2d", "nnet_padding.h zeropad2d_cl: rows and columns of zeros around the input (channels last), each "
        "input value cast to result_t", ("ZeroPadding2D",), **_IMAGE, pad_top="int", pad_bottom="int",
        pad_left="int", pad_right="int")
declare("cropping1d", "nnet_cropping.h cropping1d_cl: the positions crop_left .. in_width - crop_right, each cast to "
        "result_t", ("Cropping1D",), in_width="int", n_chan="int", out_width="int", crop_left="int", crop_right="int")
declare("cropping2d", "nnet_cropping.h cropping2d_cl: the rows and columns inside the crop, each cast to result_t",
        ("Cropping2D",), **_IMAGE, crop_top="int", crop_bottom="int", crop_left="int", crop_right="int")
declare("resize", "nnet_image.h resize_nearest (UpSampling1D/2D, nearest): output pixel (i, j) is input pixel "
        "((i * ry) >> 16, (j * rx) >> 16), r = ((in << 16) / out) + 1", ("Resize",), **_IMAGE)
declare("table", "nnet_activation.h sigmoid / tanh / softplus / softsign: a table of table_size entries in table_t "
        "indexed by the input", ("Activation",), function="str", table_size="int", table_t="type")
declare("elu", "nnet_activation.h elu / selu: x >= 0 ? (res_t)x (selu: lambda * x, lambda in ap_ufixed<16,1>) : "
        "(res_t)(alpha * table[min((int)(x * N / -8), N - 1)]) (selu: the table alone)",
        ("ParametrizedActivation", "Activation"), function="str", alpha="float", param_t="type", table_size="int",
        table_t="type")
declare("prelu", "nnet_activation.h prelu: x > 0 ? (res_t)x : (res_t)(alpha[i] * x), alpha in param_t",
        ("PReLU",), ("alpha",), param_t="type")
declare("thresholded_relu", "nnet_activation.h thresholded_relu: x > theta ? (res_t)x : 0, theta in param_t",
        ("ParametrizedActivation",), theta="float", param_t="type")
declare("hard_sigmoid", "nnet_activation.h hard_sigmoid: clip(slope * x + shift, 0, 1)", ("HardActivation",),
        slope="float", shift="float", slope_t="type", shift_t="type")
declare("hard_tanh", "nnet_activation.h hard_tanh: 2 * clip(slope * x + shift, 0, 1) - 1", ("HardActivation",),
        slope="float", shift="float", slope_t="type", shift_t="type")
declare("softmax", "nnet_activation.h softmax (latency, stable, legacy) on the last axis: exp and inverse tables, "
        "the sum in accum_t by a balanced tree; argmax: (res_t)1 at the first maximum, no tables", ("Softmax", "Activation"), implementation="str",
        exp_table_size="int", inv_table_size="int", exp_scale="float", exp_table_t="type", inv_table_t="type",
        accum_t="type", inv_inp_t="type", inp_norm_t="type", table_t="type")
declare("binary_tanh", "nnet_activation.h binary_tanh: x >= 0 ? 1 : -1 (ap_int<2>), cast to result_t (ap_uint<1>: "
        "1 or 0)", ("Activation",))
declare("ternary_tanh", "nnet_activation.h ternary_tanh: d = (data_t)(2 * x); d > 1 ? 1 : d > -1 ? 0 : -1, each "
        "in result_t", ("Activation",))
declare("bn_quantized_tanh", "nnet_batchnorm.h normalize_binary_tanh (quantize 2): x >= threshold ? 1 : 0; "
        "normalize_ternary_tanh (quantize 3): x > hi ? 1 : x <= lo ? -1 : 0; thresholds per channel or element, "
        "compared exactly", ("BatchNormalizationQuantizedTanh",), ("threshold", "threshold_hi", "threshold_lo"),
        quantize="int", threshold_t="type")
declare("batchnorm", "nnet_batchnorm.h normalize: (res_t)(x * scale + bias), per channel or element",
        ("BatchNormalization", "ApplyAlpha"), ("scale", "bias"), scale_t="type", bias_t="type")
declare("global_max", "nnet_pooling.h global_pooling1d_cl / global_pooling2d_cl (Max): (res_t)(accum_t)max over "
        "the positions (pixels)", ("GlobalPooling1D", "GlobalPooling2D"), accum_t="type")
declare("global_average", "nnet_pooling.h global_pooling1d_cl / global_pooling2d_cl (Average): the sum in accum_t, "
        "divided towards zero", ("GlobalPooling1D", "GlobalPooling2D"), accum_t="type")
for _name, _what in _MERGE.items():
    declare(_name, f"nnet_merge.h {_name}: {_what}, exact, then cast to result_t", ("Merge",))
declare("concatenate", "nnet_merge.h concatenate: each input cast to result_t, joined on axis (Keras counting: "
        "the batch axis is 0)", ("Concatenate",), axis="int")
declare("dot", "nnet_merge.h dot1d (Keras Dot of two vectors): each product cast to accum_t, added in order to 0 in "
        "accum_t, then cast to result_t", ("Dot",), accum_t="type", product="str")

_RECURRENT = "unroll the time steps into Dense layers, or build the model with hls4ml alone (no bit-exact check)"
refuse_layer("SimpleRNN, LSTM, GRU (QSimpleRNN, QLSTM, QGRU)", "nnet_recurrent.h is not reproduced", _RECURRENT)
refuse_layer("LayerNormalization", "nnet_layernorm.h is not reproduced", "use BatchNormalization")
refuse_layer("Embedding", "nnet_embed.h is not reproduced", "look the vectors up before the model and feed them")
refuse_layer("DepthwiseConv1D/2D (and SeparableConv1D/2D) with the Resource strategy or a depth multiplier other "
             "than 1", "the depthwise resource kernels are not reproduced",
             "use the Latency strategy and depth multiplier 1")
refuse_layer("XNOR dense (product both_binary) and binary data into other weights (data_binary) in the RTL "
             "writer and the estimate's products (the emulator reproduces them)", "these products of nnet_mult.h "
             "have no Verilog lowering", "put a quantized_bits(2) or wider activation between binary layers")
refuse_layer("power-of-two kernels (quantized_po2)", "the exponent product (nnet_mult.h weight_exponential) is not "
             "reproduced outside batchnorm/ApplyAlpha", "use quantized_bits kernels (alpha='auto_po2' is fine)")
refuse_layer("conv dilation, channels_first data", "not reproduced", "use dilation 1 and channels_last")
refuse_layer("Resource-strategy convs (and dense layers at a reuse factor above n_in, not a multiple of it) whose "
             "accumulator can overflow", "their order of additions is not reproduced (Resource dense layers follow "
             "nnet_dense_resource.h's order)", "use hls4ml's 'auto' accum type or a wider one")
refuse_layer("softmax on an axis other than the last, bilinear UpSampling", "not reproduced",
             "softmax on the last axis; nearest UpSampling")
refuse_layer("types wider than 1024 bits", "ap_fixed compiles up to AP_INT_MAX_W = 1024 bits",
             "set a narrower type for the layer in the hls4ml config")
refuse_layer("several model inputs in the RTL writer (the emulator takes them: a tuple of arrays)",
             "the Verilog top has one input port group", "concatenate the inputs into one tensor in the model")
refuse_layer("io_stream in the RTL writer (the emulator reproduces io_stream designs: the same arithmetic, Clone "
             "and Repack included)", "the Verilog is written for io_parallel designs", "convert with io_parallel")
refuse_layer("custom layers, Garnet, einsum, multi-head attention", "not reproduced",
             "build the model with hls4ml alone (no bit-exact check)")
