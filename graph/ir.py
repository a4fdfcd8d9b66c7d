"""The firmware graph in memory and on disk: a typed ``Graph`` of ``Layer`` s, read and written in its versioned format.

``l1forge.firmware.describe`` builds it from an hls4ml ModelGraph; the emulator, the estimate and the RTL writer
read it and never need hls4ml or TensorFlow, so they reproduce the firmware and not the Keras model. On disk
``graph.json`` lists the layers in execution order with their op, inputs, shape and the exact fixed-point types of
the C++; ``graph_weights.npz`` holds each weight array with the values the C++ is initialised with (the text
literals hls4ml writes, parsed back)::

    {"schema": "l1forge.firmware-graph/1", "project_name", "io_type", "inputs": [layer names],
     "outputs": [layer names],
     "layers": [{"name", "op", "class_name", "inputs": [names], "shape": [...], "result_t": "fixed<...>",
                 ...the op's attributes (l1forge.graph.ops)...}]}

Every op, its attributes and their meaning are declared in ``l1forge.graph.ops`` (``l1forge ops``
prints the table). Type attributes (keys ending in ``_t``) are parsed into ``FixedType`` once, when first asked for.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np

from l1forge.core.artifacts import atomic_path, write_json_atomic
from l1forge.quantize.fixed import FixedType

SCHEMA = "l1forge.firmware-graph/1"
_LAYER_KEYS = ("name", "op", "class_name", "inputs", "shape")


class GraphError(ValueError):
    """A graph file or description that cannot be read; one line naming the file or layer."""


@dataclasses.dataclass(eq=False)
class Layer:
    """One layer: its op (``l1forge.graph.ops``), inputs (layer names), output shape (one event, no batch axis) and
    attributes (``attrs``, the JSON keys of its op). ``layer["key"]`` reads an attribute as written; ``layer.type(key)``
    the parsed ``FixedType`` of a type attribute, parsed once."""

    name: str
    op: str
    class_name: str | None
    inputs: list[str]
    shape: list[int]
    attrs: dict
    _types: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, entry: dict) -> "Layer":
        attrs = {k: v for k, v in entry.items() if k not in _LAYER_KEYS}
        return cls(entry["name"], entry.get("op"), entry.get("class_name"), list(entry.get("inputs", [])),
                   [int(s) for s in entry.get("shape", [])], attrs)

    def to_dict(self) -> dict:
        head = {"name": self.name, "class_name": self.class_name, "inputs": self.inputs, "shape": self.shape}
        return {**head, **self.attrs, "op": self.op}

    def __getitem__(self, key: str):
        if key in _LAYER_KEYS:
            return getattr(self, key)
        return self.attrs[key]

    def get(self, key: str, default=None):
        return self[key] if key in _LAYER_KEYS or key in self.attrs else default

    def __contains__(self, key: str) -> bool:
        return key in _LAYER_KEYS or key in self.attrs

    def type(self, key: str = "result_t") -> FixedType:
        """The ``FixedType`` of attribute ``key`` (FixedTypeError, naming the type, if it is malformed or too wide)."""
        if key not in self._types:
            self._types[key] = FixedType.parse(self.attrs[key])
        return self._types[key]

    @property
    def result_t(self) -> FixedType:
        return self.type("result_t")

    @property
    def size(self) -> int:
        """Elements of one event's output."""
        return math.prod(self.shape)

    @property
    def where(self) -> str:
        """How one-line messages name this layer: ``layer 'fc1' (Dense, op 'dense')``."""
        return f"layer '{self.name}' ({self.class_name}, op {self.op!r})"


@dataclasses.dataclass(eq=False)
class Graph:
    """The layers in execution order, the names of the model's input and output layers, and the weight arrays
    (``"<layer>/<weight>"``: float64, the values the C++ holds)."""

    layers: list[Layer]
    inputs: list[str]
    outputs: list[str]
    weights: dict
    project_name: str = "top"
    io_type: str = "io_parallel"

    @classmethod
    def from_dict(cls, graph: dict, weights: dict | None = None) -> "Graph":
        """From the JSON form (as in ``graph.json``; in memory ``schema``, ``project_name``, ``io_type`` and
        ``inputs`` (default: the layers of op ``input``) may be left out)."""
        layers = [Layer.from_dict(entry) for entry in graph["layers"]]
        inputs = graph.get("inputs", [layer.name for layer in layers if layer.op == "input"])
        return cls(layers, list(inputs), list(graph["outputs"]), dict(weights or {}),
                   graph.get("project_name", "top"), graph.get("io_type", "io_parallel"))

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "project_name": self.project_name, "io_type": self.io_type,
                "inputs": self.inputs, "outputs": self.outputs, "layers": [layer.to_dict() for layer in self.layers]}

    def layer(self, name: str) -> Layer:
        return self._by_name()[name]

    def _by_name(self) -> dict:
        return {layer.name: layer for layer in self.layers}

    def weight(self, layer: Layer, key: str) -> np.ndarray:
        return self.weights[f"{layer.name}/{key}"]

    def write(self, out_dir) -> pathlib.Path:
        """``graph.json`` and ``graph_weights.npz`` into ``out_dir`` (atomically); returns the json path."""
        out_dir = pathlib.Path(out_dir)
        with atomic_path(out_dir / "graph_weights.npz", ".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **self.weights)
        return write_json_atomic(out_dir / "graph.json", self.to_dict())


def as_graph(graph, weights: dict | None = None) -> Graph:
    """A ``Graph`` as it is, or one built from the JSON form and its weights."""
    return graph if isinstance(graph, Graph) else Graph.from_dict(graph, weights)


def read_graph(path) -> Graph:
    """The graph of a ``graph.json`` (and the ``graph_weights.npz`` beside it). GraphError (one line) for a file of
    another schema."""
    path = pathlib.Path(path)
    data = json.loads(path.read_text())
    if data.get("schema") != SCHEMA:
        raise GraphError(f"{path}: schema {data.get('schema')!r} is not {SCHEMA!r}")
    with np.load(path.with_name("graph_weights.npz")) as npz:
        weights = {key: npz[key] for key in npz.files}
    return Graph.from_dict(data, weights)
