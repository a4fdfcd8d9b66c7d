"""Describe the datapath of a converted hls4ml ModelGraph as the firmware graph (``l1forge.graph.ir.Graph``) and
write it (graph.json + graph_weights.npz). Needs hls4ml; reading the graph does not.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np

from l1forge.graph import ops
from l1forge.graph.ir import SCHEMA, Graph
from l1forge.quantize.fixed import FixedType, TooWideError



class UnsupportedLayerError(ValueError):
    """A layer l1forge cannot describe (and so cannot emulate); the message names the layer and its type."""


def _type(var_type) -> str:
    return str(var_type.precision)


def _is_exponent(var) -> bool:
    """hls4ml's power-of-two weights, written as {sign, exponent} pairs (QKeras alpha='auto_po2', po2 quantizers)."""
    return next(iter(var), "").startswith("{")


def _power_of_two_scale(var, layer) -> tuple[np.ndarray, str]:
    """Exponent scales of a batchnorm/ApplyAlpha as values +-2**e and an exact fixed type for them.

    The C++ (``product::weight_exponential``) casts x into ap_fixed<2(W + Wx), W + Wx> (W: exponent width) and
    shifts it by e: exact, and so equal to x * (+-2**e), while the shifted value keeps inside that type; checked
    here, refused otherwise.
    """
    pairs = np.array([[float(v) for v in text.strip("{}").split(",")] for text in var])
    sign, exponent = np.where(pairs[:, 0] == 1, 1.0, -1.0), pairs[:, 1].astype(int)
    x_t = FixedType.parse(str(layer.get_input_variable().type.precision))
    room = var.type.precision.width + x_t.width  # integer and fractional bits of the shift's type
    if x_t.integer + max(exponent.max(), 0) + 1 > room or x_t.frac + max(-exponent.min(), 0) > room:
        raise UnsupportedLayerError(
            f"layer '{layer.name}' of type {layer.class_name}: power-of-two scales shift beyond the C++ product type"
        )
    integer, frac = max(exponent.max(), 0) + 2, max(-exponent.min(), 0)
    return sign * np.ldexp(1.0, exponent), FixedType(integer + frac, integer).hls()


def _weight_values(var, layer) -> np.ndarray:
    """The values the C++ is initialised with: hls4ml's text literals, parsed back to float64."""
    texts = list(var)
    if texts and texts[0].startswith("{"):  # power-of-two weights outside batchnorm/ApplyAlpha
        raise UnsupportedLayerError(
            f"layer '{layer.name}' of type {layer.class_name}: power-of-two weights (e.g. QKeras alpha='auto_po2') "
            "are not supported by the emulator"
        )
    return np.array([float(text) for text in texts], dtype=np.float64).reshape(var.data.shape)


_MERGE_OPS = ("add", "subtract", "average", "maximum", "minimum", "multiply")
_MAX_TABLE = 1 << 24
_CONV_KEYS = ("in_width", "n_chan", "filt_width", "n_filt", "stride_width", "out_width", "pad_left", "pad_right")
_CONV2D_KEYS = ("in_height", "in_width", "n_chan", "filt_height", "filt_width", "n_filt", "stride_height",
                "stride_width", "out_height", "out_width", "pad_top", "pad_bottom", "pad_left", "pad_right")
_PAD1D_KEYS = ("in_width", "n_chan", "out_width", "pad_left", "pad_right")
_IMAGE_KEYS = ("in_height", "in_width", "n_chan", "out_height", "out_width")
_GATHER_KEYS = {
    "ZeroPadding2D": ("zeropad2d", _IMAGE_KEYS + ("pad_top", "pad_bottom", "pad_left", "pad_right")),
    "Cropping1D": ("cropping1d", ("in_width", "n_chan", "out_width", "crop_left", "crop_right")),
    "Cropping2D": ("cropping2d", _IMAGE_KEYS + ("crop_top", "crop_bottom", "crop_left", "crop_right")),
    "Resize": ("resize", _IMAGE_KEYS),
}
_POOL2D_KEYS = ("in_height", "in_width", "n_filt", "pool_height", "pool_width", "stride_height", "stride_width",
                "out_height", "out_width", "pad_top", "pad_bottom", "pad_left", "pad_right")


def _unsupported(layer, why: str = "") -> UnsupportedLayerError:
    """One line naming the layer, its type, why and what to do (``l1forge.graph.ops.REFUSED`` where it is listed)."""
    detail = f" ({layer.get_attr('activation')})" if layer.get_attr("activation") else ""
    why = f": {why}" if why else ""
    todo = ops.hint(layer.class_name) or ops.hint(str(layer.get_attr("class_name") or layer.class_name)) or (
        "replace it with a layer `l1forge ops` lists, or build this model with hls4ml alone (no bit-exact check)")
    return UnsupportedLayerError(
        f"layer '{layer.name}' of type {layer.class_name}{detail} is not supported by the l1forge emulator{why}; {todo}"
    )


def _config(layer) -> dict:
    """``static const`` values and typedefs of the layer's C++ config struct (the last one, as hls4ml writes it)."""
    text = str(layer.get_attr("config_cpp", "")).split("struct ")[-1]
    types = {t.name: _type(t) for t in layer.types.values()}
    values = {m[1]: m[2].strip() for m in re.finditer(r"static (?:const|constexpr) [\w:]+ (\w+) = ([^;]+);", text)}
    values.update({m[2]: types.get(m[1], m[1]) for m in re.finditer(r"typedef (.+?) (\w+);", text)})
    return values


def _table_size(layer, size) -> int:
    size = int(size)
    if not 1 <= size <= _MAX_TABLE:
        raise _unsupported(layer, f"table size {size} is outside 1..{_MAX_TABLE}")
    return size


def _binary_weights(entry: dict, values: np.ndarray) -> np.ndarray:
    """nnet_mult.h ``weight_binary`` (ap_uint<1> weights: w == 0 ? -x : x) and ``weight_ternary`` (ap_int<2>
    weights: 0, -x or x) return the exact product of x and the weight value -1, 0 or +1, which is then cast to
    accum_t as any product is: described as ``mult`` by those values in an int<2> type (the same codes)."""
    if entry["product"] == "weight_binary":
        values = np.where(values == 0, -1.0, 1.0)
    if entry["product"] in ("weight_binary", "weight_ternary"):
        entry.update(product="mult", weight_t="fixed<2,2,TRN,WRAP,0>")
    return values


def _block_diagonal(layer, entry: dict, values: np.ndarray) -> np.ndarray:
    """A depthwise conv (nnet_sepconv1d_latency.h / nnet_sepconv2d_latency.h, depth multiplier 1, Latency) adds
    x[tap, c] * w[tap, c] into acc[c], taps outer: the conv accumulation with a block-diagonal weight, rows (tap,
    channel), whose zero products add nothing to the accumulator."""
    if entry["strategy"] != "latency" or int(layer.get_attr("n_filt")) != int(layer.get_attr("n_chan")):
        raise _unsupported(layer, "depthwise conv with the Resource strategy or a depth multiplier other than 1")
    taps = values.reshape(-1, int(layer.get_attr("n_chan")))
    return np.einsum("tc,cd->tcd", taps, np.eye(taps.shape[1])).reshape(-1, taps.shape[1])


def _dense_types(layer, backend, w, b) -> dict:
    in_type = layer.get_input_variable().type.precision
    return dict(
        accum_t=_type(layer.types["accum_t"]),
        weight_t=_type(w.type),
        bias_t=_type(b.type),
        product=backend.product_type(in_type, w.type.precision),
        strategy=str(layer.get_attr("strategy", "latency")).lower(),
        reuse_factor=int(layer.get_attr("reuse_factor", 1)),
        n_nonzero=int(np.count_nonzero(w.data)),
    )


def _activation(layer, entry: dict):
    act = str(layer.get_attr("activation", "relu")).lower()
    cfg = _config(layer)
    if act in ("relu", "linear"):
        entry["op"] = act
    elif act in ("binary_tanh", "ternary_tanh"):
        entry["op"] = act
    elif act in ("sigmoid", "tanh", "softplus", "softsign"):
        entry.update(op="table", function=act, table_size=_table_size(layer, cfg["table_size"]), table_t=cfg["table_t"])
    elif act == "selu":  # selu: lambda * x above zero, the table below
        entry.update(op="elu", function="selu", alpha=1.0, param_t="ufixed<16,1>",
                     table_size=_table_size(layer, cfg["table_size"]), table_t=cfg["table_t"])
    elif act in ("hard_sigmoid", "hard_tanh"):
        entry.update(
            op=act,
            slope=float(layer.get_attr("slope")),
            shift=float(layer.get_attr("shift")),
            slope_t=_type(layer.types["slope_t"]),
            shift_t=_type(layer.types["shift_t"]),
        )
    elif act == "softmax" and int(cfg.get("n_inner", 1)) == 1:
        impl = cfg["implementation"].rsplit("::", 1)[-1]
        if impl not in ("latency", "stable", "legacy", "argmax"):
            raise _unsupported(layer, f"softmax implementation '{impl}'")
        entry.update(
            op="softmax",
            implementation=impl,
            exp_table_size=_table_size(layer, cfg["exp_table_size"]),
            inv_table_size=_table_size(layer, cfg["inv_table_size"]),
            exp_scale=float(cfg["exp_scale"]),
            # legacy reads CONFIG_T::table_t, which the softmax config never sets: nnet::activ_config's ap_fixed<18,8>
            table_t=cfg.get("table_t", "ap_fixed<18,8>"),
            **{k: cfg[k] for k in ("exp_table_t", "inv_table_t", "accum_t", "inv_inp_t", "inp_norm_t")},
        )
    else:
        raise _unsupported(layer)


def _describe(layer, backend) -> tuple[dict, dict]:
    cls = layer.class_name
    out = layer.get_output_variable()
    entry = {
        "name": layer.name,
        "class_name": cls,
        "inputs": list(layer.inputs),
        "shape": [int(s) for s in out.shape],
        "result_t": _type(out.type),
    }
    weights = {}
    if cls == "Input":
        entry["op"] = "input"
    elif cls in ("Dense", "Conv1D", "PointwiseConv1D", "DepthwiseConv1D"):
        w, b = layer.weights["weight"], layer.weights["bias"]
        entry.update(_dense_types(layer, backend, w, b))
        if cls == "Dense":
            entry.update(op="dense", n_in=int(layer.get_attr("n_in")), n_out=int(layer.get_attr("n_out")))
        else:
            entry.update(
                op="conv1d",
                implementation=str(layer.get_attr("implementation", "linebuffer")).lower(),
                **{k: int(layer.get_attr(k)) for k in _CONV_KEYS},
            )
            entry["n_partitions"] = int(layer.get_attr("n_partitions", entry["out_width"]))  # positions in sequence
            if entry["implementation"] != "linebuffer" or int(layer.get_attr("dilation", 1)) != 1:
                raise _unsupported(layer, f"conv implementation '{entry['implementation']}' or dilation")
        values = _binary_weights(entry, _weight_values(w, layer))
        if layer.get_attr("_weights_transposed", False):  # Resource strategy: hls4ml stored them transposed
            values = values.T if cls == "Dense" else np.transpose(values, (1, 2, 0))  # (F, W, C) -> (W, C, F)
        if cls == "DepthwiseConv1D":  # depthwise_conv_1d_latency_cl: acc[c] += x[tap, c] * w[tap, c], taps outer
            values = _block_diagonal(layer, entry, values)
        weights[f"{layer.name}/weight"] = values.reshape(-1, values.shape[-1])
        weights[f"{layer.name}/bias"] = _weight_values(b, layer)
    elif cls in ("Conv2D", "PointwiseConv2D", "Conv2DBatchnorm", "DepthwiseConv2D"):
        w, b = layer.weights["weight"], layer.weights["bias"]
        entry.update(_dense_types(layer, backend, w, b))
        entry.update(op="conv2d", implementation=str(layer.get_attr("implementation", "linebuffer")).lower(),
                     **{k: int(layer.get_attr(k)) for k in _CONV2D_KEYS})
        if entry["implementation"] != "linebuffer" or int(layer.get_attr("dilation", 1)) != 1:
            raise _unsupported(layer, f"conv implementation '{entry['implementation']}' or dilation")
        if layer.get_attr("data_format", "channels_last") != "channels_last":
            raise _unsupported(layer, "channels_first data")
        values = _binary_weights(entry, _weight_values(w, layer))
        if layer.get_attr("_weights_transposed", False):  # Resource strategy: (F, H, W, C) -> (H, W, C, F)
            values = np.transpose(values, (1, 2, 3, 0))
        if cls == "DepthwiseConv2D":  # depthwise_conv_2d_latency_cl: acc[c] += x[tap, c] * w[tap, c], taps outer
            values = _block_diagonal(layer, entry, values)
        weights[f"{layer.name}/weight"] = values.reshape(-1, values.shape[-1])
        weights[f"{layer.name}/bias"] = _weight_values(b, layer)
    elif cls == "Pooling2D" and layer.get_attr("pool_op") in ("Max", "Average"):
        if layer.get_attr("data_format", "channels_last") != "channels_last":
            raise _unsupported(layer, "channels_first data")
        entry.update(op="pool2d", pool_op=layer.get_attr("pool_op").lower(), accum_t=_type(layer.types["accum_t"]),
                     count_pad=bool(layer.get_attr("count_pad", False)),
                     **{k: int(layer.get_attr(k)) for k in _POOL2D_KEYS})
    elif cls in ("LeakyReLU", "ParametrizedActivation") and str(layer.get_attr("activation")).lower() in (
        "leakyrelu", "leaky_relu"
    ):
        entry.update(op="leaky_relu", alpha=float(layer.get_attr("activ_param")), param_t=_type(layer.get_attr("param_t")))
    elif cls == "ParametrizedActivation" and str(layer.get_attr("activation")).lower() == "thresholdedrelu":
        entry.update(op="thresholded_relu", theta=float(layer.get_attr("activ_param")),
                     param_t=_type(layer.get_attr("param_t")))
    elif cls == "ParametrizedActivation" and str(layer.get_attr("activation")).lower() == "elu":
        cfg = _config(layer)
        entry.update(op="elu", function="elu", alpha=float(layer.get_attr("activ_param", 1.0)),
                     param_t=_type(layer.get_attr("param_t")), table_size=_table_size(layer, cfg["table_size"]),
                     table_t=cfg["table_t"])
    elif cls == "PReLU":
        a = layer.weights["param"]
        entry.update(op="prelu", param_t=_type(a.type))
        weights[f"{layer.name}/alpha"] = _weight_values(a, layer).ravel()
    elif cls in ("Activation", "ReLU", "HardActivation", "Softmax"):
        _activation(layer, entry)
    elif cls == "BatchNormalizationQuantizedTanh":
        keys = ("threshold",) if int(layer.get_attr("quantize")) == 2 else ("threshold_hi", "threshold_lo")
        entry.update(op="bn_quantized_tanh", quantize=int(layer.get_attr("quantize")),
                     threshold_t=_type(layer.weights[keys[0]].type))
        for key in keys:
            values = _weight_values(layer.weights[key], layer).ravel()
            if not np.all(np.isfinite(values)):
                raise _unsupported(layer, "hls4ml wrote NaN thresholds (a batch normalization with zero or negative "
                                          "variance)")
            weights[f"{layer.name}/{key}"] = values
    elif cls in ("BatchNormalization", "ApplyAlpha"):  # ApplyAlpha: the scale of QKeras alpha quantizers
        s, b = layer.weights["scale"], layer.weights["bias"]
        scale, scale_t = _power_of_two_scale(s, layer) if _is_exponent(s) else (_weight_values(s, layer), _type(s.type))
        entry.update(op="batchnorm", scale_t=scale_t, bias_t=_type(b.type))
        weights[f"{layer.name}/scale"] = scale.ravel()
        weights[f"{layer.name}/bias"] = _weight_values(b, layer).ravel()
    elif cls == "Pooling1D" and layer.get_attr("pool_op") in ("Max", "Average"):  # pooling1d_cl: pooling2d_cl on one row
        entry.update(op="pool2d", pool_op=layer.get_attr("pool_op").lower(), accum_t=_type(layer.types["accum_t"]),
                     count_pad=bool(layer.get_attr("count_pad", False)), in_height=1, in_width=int(layer.get_attr("n_in")),
                     n_filt=int(layer.get_attr("n_filt")), pool_height=1, pool_width=int(layer.get_attr("pool_width")),
                     stride_height=1, stride_width=int(layer.get_attr("stride_width")), out_height=1,
                     out_width=int(layer.get_attr("n_out")), pad_top=0, pad_bottom=0,
                     pad_left=int(layer.get_attr("pad_left")), pad_right=int(layer.get_attr("pad_right")))
    elif cls in _GATHER_KEYS:
        if layer.get_attr("data_format", "channels_last") != "channels_last":
            raise _unsupported(layer, "channels_first data")
        if cls == "Resize" and layer.get_attr("algorithm", "nearest") != "nearest":
            raise _unsupported(layer, f"interpolation '{layer.get_attr('algorithm')}'")
        op, keys = _GATHER_KEYS[cls]
        entry.update(op=op, **{k: int(layer.get_attr(k, 1)) for k in keys})
    elif cls in ("GlobalPooling1D", "GlobalPooling2D") and layer.get_attr("pool_op") in ("Max", "Average"):
        entry.update(op="global_" + layer.get_attr("pool_op").lower(), accum_t=_type(layer.types["accum_t"]))
    elif cls == "Merge" and layer.get_attr("op") in _MERGE_OPS:
        entry["op"] = layer.get_attr("op")
    elif cls == "Dot":
        a, b = (layer.get_input_variable(name).type.precision for name in layer.inputs)
        entry.update(op="dot", accum_t=_type(layer.types["accum_t"]), product=backend.product_type(a, b))
    elif cls == "Concatenate":
        entry.update(op="concatenate", axis=int(layer.get_attr("axis", -1)))
    elif cls == "ZeroPadding1D":
        entry.update(op="zeropad1d", **{k: int(layer.get_attr(k)) for k in _PAD1D_KEYS})
    elif cls == "Reshape":
        entry["op"] = "reshape"
    elif cls == "Repack":  # io_stream reshape (nnet_stream.h repack_stream): each value assigned to result_t
        entry["op"] = "linear"
    elif cls == "Transpose":  # Keras Permute: nnet_transpose.h, res[i] = data[from(i)] (a cast to result_t)
        entry.update(op="transpose", perm=[int(p) for p in layer.get_attr("perm")])
    else:
        raise _unsupported(layer)
    return entry, weights



def describe_model(hls_model) -> Graph:
    """The firmware graph of a converted hls4ml ModelGraph. UnsupportedLayerError for a layer the emulator
    cannot reproduce, or one with a type wider than ap_fixed compiles (``AP_INT_MAX_W``, 1024 bits; naming layer,
    type and what to set instead). Any narrower width is emulated exactly."""
    from hls4ml.backends import get_backend

    backend = get_backend("vivado")
    layers, weights = [], {}
    alias = {}  # io_stream: the copies a Clone layer makes (nnet_stream.h clone_stream: values unchanged) -> its input
    for layer in hls_model.get_layers():
        if layer.class_name == "Clone":
            alias.update({out: alias.get(layer.inputs[0], layer.inputs[0]) for out in layer.outputs})
            continue
        entry, w = _describe(layer, backend)
        entry["inputs"] = [alias.get(name, name) for name in entry["inputs"]]
        _check_widths(entry)
        layers.append(entry)
        weights.update(w)
    graph = {
        "schema": SCHEMA,
        "project_name": hls_model.config.get_project_name(),
        "io_type": hls_model.config.get_config_value("IOType"),
        "inputs": list(hls_model.inputs),
        "outputs": [_producer(hls_model, name) for name in hls_model.outputs],
        "layers": layers,
    }
    return Graph.from_dict(graph, weights)


AP_INT_MAX_W = 1024  # ap_common.h: the widest ap_fixed the C++ compiles unless AP_INT_MAX_W is defined


def _check_widths(entry: dict) -> None:
    """Every width ap_fixed compiles is emulated exactly; a wider type (the C++ would not compile it either) is
    refused in one line naming the layer and the type, with the hls4ml config entry that narrows it."""
    for key, value in entry.items():
        if key.endswith("_t") and isinstance(value, str):
            try:
                width = FixedType.parse(value).width
            except TooWideError:
                width = None
            if width is None or width > AP_INT_MAX_W:
                name, precision = entry["name"], key[: -len("_t")]
                raise UnsupportedLayerError(
                    f"layer '{name}' ({entry.get('class_name')}): {key} {value} is wider than the {AP_INT_MAX_W} bits "
                    f"ap_fixed compiles (AP_INT_MAX_W); set a narrower type for this layer in the hls4ml config, e.g. "
                    f'{{"LayerName": {{"{name}": {{"Precision": {{"{precision}": "fixed<64,32>"}}}}}}}}'
                ) from None


def _producer(hls_model, output_name: str) -> str:
    for layer in hls_model.get_layers():
        if output_name in layer.outputs:
            return layer.name
    raise UnsupportedLayerError(f"model output '{output_name}' has no producing layer")


def write_graph(hls_model, out_dir: pathlib.Path) -> pathlib.Path:
    """Write ``graph.json`` and ``graph_weights.npz`` into ``out_dir`` (the graph ``convert`` described, if it did);
    return the json path."""
    return (getattr(hls_model, "l1forge_graph", None) or describe_model(hls_model)).write(out_dir)
