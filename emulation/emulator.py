"""Bit-accurate numpy emulator of an hls4ml io_parallel design, built from the firmware graph (firmware/graph.py).

Every tensor is carried as int64 codes of its C++ ap_fixed type. Each operation repeats what the nnet_utils C++
does, in the same order of quantization steps:

* dense (``nnet::dense_latency``): ``mult = (accum_t)(x * w)``, ``acc = (accum_t)bias``, ``acc += mult`` for each
  input in order, ``res = (res_t)acc``. When no product is rounded and no partial sum can leave the accumulator
  range (checked from the types, not the data), or the accumulator wraps (modular addition is order-free), the
  whole layer is one exact matrix product; float64 BLAS is used while every partial sum stays below 2**53.
* relu: ``res = x > 0 ? (res_t)x : 0``; linear: ``res = (res_t)x``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from quantize.fixed import FixedType

EXACT_FLOAT = 2.0**53


class EmulationError(ValueError):
    """A graph the emulator cannot reproduce bit for bit, or input it cannot take; one line naming the culprit."""


@dataclasses.dataclass
class _Layer:
    name: str
    op: str
    inputs: list
    result: FixedType
    spec: dict
    params: dict = dataclasses.field(default_factory=dict)


class Emulator:
    """Runs the firmware graph on float inputs; ``run`` returns the output codes (and per-layer codes)."""

    def __init__(self, graph: dict, weights: dict):
        self.graph = graph
        self.layers = [self._prepare(spec, weights) for spec in graph["layers"]]
        self._types = {layer.name: layer.result for layer in self.layers}
        for layer in self.layers:
            if layer.op == "dense":
                self._plan_dense(layer, self._types[layer.inputs[0]])
        self.input_names = list(graph["inputs"])
        self.output_names = list(graph["outputs"])
        self.input_type = self._types[self.input_names[0]]
        self.output_types = [self._types[name] for name in self.output_names]

    @classmethod
    def from_file(cls, graph_json) -> "Emulator":
        from firmware.graph import read_graph

        return cls(*read_graph(pathlib.Path(graph_json)))

    # ---- load time: everything that depends only on the graph --------------------------------------
    def _prepare(self, spec: dict, weights: dict) -> _Layer:
        name, op = spec["name"], spec.get("op")
        try:
            result = FixedType.parse(spec["result_t"])
        except ValueError as err:
            raise EmulationError(f"layer '{name}': {err}") from None
        layer = _Layer(name, op, list(spec.get("inputs", [])), result, spec)
        if op == "dense":
            self._prepare_dense(layer, weights)
        elif op not in ("input", "relu", "linear"):
            raise EmulationError(f"layer '{name}' ({spec.get('class_name')}, op {op!r}) is not supported by the emulator")
        return layer

    def _prepare_dense(self, layer: _Layer, weights: dict):
        spec = layer.spec
        if spec["product"] != "mult":
            raise EmulationError(f"layer '{layer.name}': product '{spec['product']}' is not supported by the emulator")
        wt, bt, at = (FixedType.parse(spec[k]) for k in ("weight_t", "bias_t", "accum_t"))
        w = wt.from_float(weights[f"{layer.name}/weight"])
        b = bt.from_float(weights[f"{layer.name}/bias"])
        layer.params = {"w": w, "w_t": wt, "b_acc": at.from_codes(b, bt.frac), "acc_t": at}

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
        p["w_float"] = w.astype(np.float64)

    # ---- run time --------------------------------------------------------------------------------
    def run(self, x, keep_layers: bool = False):
        """Output codes for float inputs ``x`` (n, ...); with ``keep_layers`` also {layer: codes}."""
        x = np.asarray(x, dtype=np.float64)
        expected = tuple(self.layers[0].spec["shape"])
        if x.shape[1:] != expected:
            raise EmulationError(f"input has shape {x.shape[1:]} per event, the firmware expects {expected}")
        if not np.all(np.isfinite(x)):
            bad = np.argwhere(~np.isfinite(x))[0]
            raise EmulationError(f"input contains NaN/Inf (first at event {bad[0]})")
        values = {}
        for layer in self.layers:
            if layer.op == "input":
                values[layer.name] = layer.result.from_float(x)
                continue
            (src,) = layer.inputs
            codes, src_type = values[src], self._types[src]
            if layer.op == "dense":
                out = self._dense(layer, codes, src_type)
            elif layer.op == "relu":
                out = np.where(codes > 0, layer.result.from_codes(codes, src_type.frac), 0)
            else:
                out = layer.result.from_codes(codes, src_type.frac)
            values[layer.name] = out
            if not keep_layers:
                self._release(values, layer)
        outputs = [values[name] for name in self.output_names]
        out = outputs[0] if len(outputs) == 1 else outputs
        return (out, values) if keep_layers else out

    def predict(self, x) -> np.ndarray:
        """Float outputs (the values of the output codes), as ``hls_model.predict`` returns them."""
        return self.output_types[0].to_float(self.run(x))

    def _release(self, values: dict, done: _Layer):
        needed = {i for layer in self.layers for i in layer.inputs if layer is not done} | set(self.output_names)
        for key in [k for k in values if k not in needed and k != done.name]:
            del values[key]

    def _dense(self, layer: _Layer, x: np.ndarray, x_type: FixedType) -> np.ndarray:
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
