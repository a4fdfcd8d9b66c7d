"""The firmware graph: a tool-independent description of the datapath hls4ml generated.

``graph.json`` lists the layers in execution order with their operation, input names, shapes and the exact
fixed-point types of the C++ (result, accumulator, weight, bias); ``graph_weights.npz`` holds each weight array
with the values the C++ is initialised with (the text literals hls4ml writes, parsed back). The emulator reads only
these two files, so it needs neither hls4ml nor TensorFlow, and it reproduces the firmware and not the Keras model.

Schema ``l1forge.firmware-graph/1``::

    {"schema", "project_name", "inputs": [layer names], "outputs": [layer names],
     "layers": [{"name", "op", "class_name", "inputs": [names], "shape": [...], "result_t": "fixed<...>",
                 ...op-specific keys...}]}

op ``input``: ``result_t`` is the input type (floats are converted into it as ap_fixed(double) does).
op ``dense``: ``n_in``, ``n_out``, ``accum_t``, ``weight_t``, ``bias_t``, ``product`` (hls4ml product kind),
``strategy``, ``reuse_factor``, ``n_nonzero``; weights ``<name>/weight`` (n_in, n_out) and ``<name>/bias``.
op ``relu`` / ``linear``: elementwise, ``result_t``.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from l1forge.io import atomic_path, write_json_atomic

SCHEMA = "l1forge.firmware-graph/1"


class UnsupportedLayerError(ValueError):
    """A layer l1forge cannot describe (and so cannot emulate); the message names the layer and its type."""


def _type(var_type) -> str:
    return str(var_type.precision)


def _weight_values(var) -> np.ndarray:
    """The values the C++ is initialised with: hls4ml's text literals, parsed back to float64."""
    return np.array([float(text) for text in var], dtype=np.float64).reshape(var.data.shape)


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
    elif cls == "Dense":
        w, b = layer.weights["weight"], layer.weights["bias"]
        in_type = layer.get_input_variable().type.precision
        entry.update(
            op="dense",
            n_in=int(layer.get_attr("n_in")),
            n_out=int(layer.get_attr("n_out")),
            accum_t=_type(layer.types["accum_t"]),
            weight_t=_type(w.type),
            bias_t=_type(b.type),
            product=backend.product_type(in_type, w.type.precision),
            strategy=str(layer.get_attr("strategy", "latency")).lower(),
            reuse_factor=int(layer.get_attr("reuse_factor", 1)),
            n_nonzero=int(np.count_nonzero(w.data)),
        )
        weights[f"{layer.name}/weight"] = _weight_values(w)
        weights[f"{layer.name}/bias"] = _weight_values(b)
    elif cls in ("Activation", "ReLU") and layer.get_attr("activation", "relu").lower() in ("relu", "linear"):
        entry["op"] = layer.get_attr("activation", "relu").lower()
    else:
        detail = f" ({layer.get_attr('activation')})" if layer.get_attr("activation") else ""
        raise UnsupportedLayerError(f"layer '{layer.name}' of type {cls}{detail} is not supported by the l1forge emulator")
    return entry, weights


def describe_model(hls_model) -> tuple[dict, dict]:
    """(graph dict, weight arrays) for a converted hls4ml ModelGraph."""
    from hls4ml.backends import get_backend

    backend = get_backend("vivado")
    layers, weights = [], {}
    for layer in hls_model.get_layers():
        entry, w = _describe(layer, backend)
        layers.append(entry)
        weights.update(w)
    graph = {
        "schema": SCHEMA,
        "project_name": hls_model.config.get_project_name(),
        "inputs": list(hls_model.inputs),
        "outputs": [_producer(hls_model, name) for name in hls_model.outputs],
        "layers": layers,
    }
    return graph, weights


def _producer(hls_model, output_name: str) -> str:
    for layer in hls_model.get_layers():
        if output_name in layer.outputs:
            return layer.name
    raise UnsupportedLayerError(f"model output '{output_name}' has no producing layer")


def write_graph(hls_model, out_dir: pathlib.Path) -> pathlib.Path:
    """Write ``graph.json`` and ``graph_weights.npz`` into ``out_dir``; return the json path."""
    graph, weights = describe_model(hls_model)
    out_dir = pathlib.Path(out_dir)
    with atomic_path(out_dir / "graph_weights.npz", ".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **weights)
    return write_json_atomic(out_dir / "graph.json", graph)


def read_graph(path) -> tuple[dict, dict]:
    """(graph dict, weight arrays) from a ``graph.json`` written by ``write_graph``."""
    path = pathlib.Path(path)
    graph = json.loads(path.read_text())
    if graph.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {graph.get('schema')!r} is not {SCHEMA!r}")
    with np.load(path.with_name("graph_weights.npz")) as npz:
        weights = {key: npz[key] for key in npz.files}
    return graph, weights
