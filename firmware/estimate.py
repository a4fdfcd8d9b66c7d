"""First-order latency and resource estimate of an hls4ml io_parallel design, from the firmware graph.

This is an *estimate*, not a synthesis result, and is labelled so everywhere it is reported. Method (per layer):

* dense, Latency strategy, reuse factor R: weights are constants, so HLS removes zero weights and builds each
  product by a constant as shifts and adds: ``d - 1`` adders of the product width, where ``d`` is the number of
  non-zero digits of the weight in canonical signed-digit form (a power of two costs nothing). A product goes to a
  DSP48 instead when both operands are wider than ``DSP_MIN_BITS`` bits (DSP48E2 is 27x18). Each output adds its
  non-zero products and the bias in an adder tree of ``ceil(log2(n_in + 1))`` levels: ``acc_bits`` LUTs per adder.
  With R > 1, one multiplier (and adder) serves R weights.
  Latency: multiplier stage (1 cycle in LUTs, ``DSP_CYCLES`` in a DSP), adder tree at ``ADDERS_PER_CYCLE`` levels per
  cycle, one output register, all times R. FFs: every stage registers its n_out accumulators.
* relu / linear: one register stage of the layer width, 1 LUT per output bit for relu.
* Initiation interval: the largest reuse factor (Latency strategy pipelines the whole design at II = R).

The constants are rules of thumb for UltraScale+ at 200-240 MHz; a calibrated model is tracked separately.
"""

from __future__ import annotations

import math

from quantize.fixed import FixedType

import numpy as np

DSP_MIN_BITS = 10
DSP_CYCLES = 3
ADDERS_PER_CYCLE = 3
METHOD = (
    "first-order model: constant multiplications as shift-and-add (canonical signed digits) or DSP48 when both "
    "operands exceed 10 bits, adder trees of log2(n_in) levels at 3 levels per cycle, one register per layer"
)


def csd_digits(codes: np.ndarray) -> np.ndarray:
    """Non-zero digits of each integer in canonical signed-digit (non-adjacent) form."""
    x = np.abs(np.asarray(codes, dtype=np.int64))
    c = (x >> 1) ^ (x + (x >> 1))
    return np.array([int(v).bit_count() for v in c.ravel()]).reshape(x.shape)


def estimate(graph: dict, weights: dict, clock_mhz: float) -> dict:
    """{"latency_cycles", "latency_ns", "ii_cycles", "resources": {...}, "layers": [...], "source", "method"}."""
    types = {layer["name"]: FixedType.parse(layer["result_t"]) for layer in graph["layers"]}
    rows = []
    for layer in graph["layers"]:
        if layer["op"] == "dense":
            rows.append(_dense(layer, types[layer["inputs"][0]], weights[f"{layer['name']}/weight"]))
        elif layer["op"] in ("relu", "linear"):
            bits = types[layer["name"]].width * math.prod(layer["shape"])
            lut = bits if layer["op"] == "relu" else 0
            rows.append({"name": layer["name"], "cycles": 1, "ii": 1, "LUT": lut, "FF": bits, "DSP": 0, "BRAM": 0})
    cycles = sum(r["cycles"] for r in rows)
    totals = {k: int(round(sum(r[k] for r in rows))) for k in ("LUT", "FF", "DSP", "BRAM")}
    return {
        "latency_cycles": cycles,
        "latency_ns": cycles * 1000.0 / clock_mhz,
        "ii_cycles": max((r["ii"] for r in rows), default=1),
        "resources": totals,
        "layers": rows,
        "source": "estimate",
        "method": METHOD,
    }


def _dense(layer: dict, x_type: FixedType, weight_values: np.ndarray) -> dict:
    w_type, acc_type = FixedType.parse(layer["weight_t"]), FixedType.parse(layer["accum_t"])
    reuse = layer["reuse_factor"]
    n_in, n_out = layer["n_in"], layer["n_out"]
    multipliers = math.ceil(layer["n_nonzero"] / reuse)
    in_dsp = x_type.width > DSP_MIN_BITS and w_type.width > DSP_MIN_BITS
    levels = math.ceil(math.log2(n_in + 1))
    mult_cycles = DSP_CYCLES if in_dsp else 1
    cycles = (mult_cycles + math.ceil(levels / ADDERS_PER_CYCLE) + 1) * reuse
    digits = csd_digits(w_type.from_float(weight_values))
    shift_adds = np.clip(digits - 1, 0, None).sum()
    lut_mult = 0 if in_dsp else shift_adds * (x_type.width + w_type.width) / reuse
    lut_add = multipliers * acc_type.width
    ff = (math.ceil(levels / ADDERS_PER_CYCLE) + 1) * n_out * acc_type.width
    return {
        "name": layer["name"],
        "cycles": cycles,
        "ii": reuse,
        "LUT": lut_mult + lut_add,
        "FF": ff,
        "DSP": multipliers if in_dsp else 0,
        "BRAM": 0,
    }
