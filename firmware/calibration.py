"""Calibration of firmware/estimate.py against published hls4ml synthesis reports.

``calibration_points.json`` holds each point: the model (Keras layers, initialiser, precision, reuse factor,
strategy, io_type), part, clock, the published totals and per-layer rows, the source and a verbatim excerpt.
``build_graph`` rebuilds the firmware graph of a point with hls4ml (weights: the point's initialiser, seed 0,
since the published weights are not available); ``calibration_error`` compares the estimate with the published
numbers; ``fit`` refits the interpretable constants of ``CONSTANTS`` from the per-layer rows.
"""

from __future__ import annotations

import json
import math
import pathlib
import tempfile

import numpy as np

from l1forge.firmware.estimate import CONSTANTS, estimate
from l1forge.graph.ir import Graph

POINTS_PATH = pathlib.Path(__file__).with_name("calibration_points.json")
RESOURCES = ("LUT", "FF", "DSP", "BRAM")


def load_points() -> list[dict]:
    return json.loads(POINTS_PATH.read_text())


def build_graph(point: dict) -> Graph:
    """The firmware graph of the point's model, converted by hls4ml as the source did (``compile=False``)."""
    import hls4ml
    import tensorflow as tf

    from l1forge.firmware.describe import describe_model
    from l1forge.firmware.hls import FirmwareSettings, convert

    spec = point["model"]
    tf.keras.utils.set_random_seed(0)
    layers = [tf.keras.Input((spec["inputs"],))]
    for name, units, act_name, act in spec["layers"]:
        init = spec["kernel_initializer"]
        if act_name is None:
            layers.append(tf.keras.layers.Dense(units, name=name, activation=act, kernel_initializer=init))
        else:
            layers += [tf.keras.layers.Dense(units, name=name, kernel_initializer=init),
                       tf.keras.layers.Activation(act, name=act_name)]
    model = tf.keras.Sequential(layers)
    config = hls4ml.utils.config_from_keras_model(model, granularity="model")
    config["Model"].update(Precision=spec["precision"], ReuseFactor=spec["reuse_factor"], Strategy=spec["strategy"])
    settings = FirmwareSettings(backend="Vivado", part=point["part"], clock_mhz=point["clock_mhz"],
                                io_type=spec["io_type"], project_name="myproject")
    with tempfile.TemporaryDirectory() as tmp:
        graph = describe_model(convert(model, None, settings, pathlib.Path(tmp) / "prj", False, config))
    graph.io_type = spec["io_type"]
    for layer in graph.layers:  # the source's hls4ml version used the latency softmax
        if layer.op == "softmax" and "softmax" in spec:
            layer.attrs["implementation"] = spec["softmax"]
    return graph


def calibration_error(constants: dict | None = None, graphs: dict | None = None) -> list[dict]:
    """One dict per point: {"id", "source", "estimate", "published", "relative_error"} over the totals
    (latency_cycles, ii_cycles, LUT, FF, DSP, BRAM); relative error = (estimate - published) / published, and
    where the published number is 0, the estimate itself (0 when both agree)."""
    out = []
    for point in load_points():
        graph = (graphs or {}).get(point["id"]) or build_graph(point)
        est = estimate(graph, clock_mhz=point["clock_mhz"], constants=constants)
        got = {"latency_cycles": est["latency_cycles"], "ii_cycles": est["ii_cycles"], **est["resources"]}
        pub = point["published"]
        err = {key: (got[key] - pub[key]) / pub[key] if pub[key] else float(got[key]) for key in pub}
        out.append({"id": point["id"], "source": point["source"], "estimate": got, "published": pub,
                    "relative_error": err})
    return out


def fit(graphs: dict | None = None) -> dict:
    """Least-squares refit of the per-bit constants on the published per-layer rows of every point, and a grid
    over ``dsp_min_weight_bits`` minimising the DSP error. Returns the constants (CONSTANTS updated)."""
    points = load_points()
    graphs = graphs or {p["id"]: build_graph(p) for p in points}

    def layer_rows(k):
        rows = []
        for p in points:
            est = estimate(graphs[p["id"]], clock_mhz=p["clock_mhz"], constants=k)
            by_name = {r["name"]: r for r in est["layers"]}
            rows += [(by_name[name], pub) for name, pub in p["published_layers"].items()]
        return rows

    def dsp_cost(bits):
        rows = layer_rows({**CONSTANTS, "dsp_min_weight_bits": bits})
        return sum(abs(math.log((r["DSP"] + 1) / (pub["DSP"] + 1))) for r, pub in rows if r["op"] == "dense")

    k = {**CONSTANTS, "dsp_min_weight_bits": min(range(1, 12), key=dsp_cost)}
    unit = layer_rows({**k, "lut_per_bit": 1.0, "ff_per_acc_bit": 1.0, "relu_lut_per_bit": 1.0})

    def ratio(op, key):
        est = np.array([r[key] for r, pub in unit if r["op"] == op], dtype=float)
        pub = np.array([pub[key] for r, pub in unit if r["op"] == op], dtype=float)
        return float(est @ pub / (est @ est))  # least squares through the origin

    k.update(lut_per_bit=ratio("dense", "LUT"), ff_per_acc_bit=ratio("dense", "FF"),
             relu_lut_per_bit=ratio("relu", "LUT"))
    return k
