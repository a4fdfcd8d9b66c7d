"""First-order latency and resource estimate of an hls4ml io_parallel design, from the firmware graph.

This is an *estimate*, not a synthesis result, and is labelled so everywhere it is reported. Method (per layer):

* dense, Latency strategy, reuse factor R: ``ceil(n_nonzero / R)`` multipliers (constant zero weights are
  optimised away by HLS). A product goes to a DSP48 when both operands are wider than ``DSP_MIN_BITS`` bits (DSP48E2
  is 27x18), otherwise into LUTs at ``LUT_PER_PRODUCT_BIT`` LUTs per product bit (a x w). Each output adds its
  ``n_in`` products in an adder tree of ``ceil(log2(n_in + 1))`` levels (bias included): ``acc_bits`` LUTs per adder.
  Latency: multiplier stage (1 cycle in LUTs, ``DSP_CYCLES`` in a DSP), adder tree at ``ADDERS_PER_CYCLE`` levels per
  cycle, one output register, all times R. FFs: every stage registers its n_out accumulators.
* relu / linear: one register stage of the layer width, 1 LUT per output bit for relu.
* Initiation interval: the largest reuse factor (Latency strategy pipelines the whole design at II = R).

The constants are rules of thumb for UltraScale+ at 200-240 MHz; a calibrated model is tracked separately.
"""

from __future__ import annotations

import math

from quantize.fixed import FixedType

DSP_MIN_BITS = 10
DSP_CYCLES = 3
LUT_PER_PRODUCT_BIT = 0.6
ADDERS_PER_CYCLE = 3
METHOD = (
    "first-order model: multipliers = nonzero weights / reuse factor (DSP if both operands > 10 bits, else "
    "0.6 LUT per product bit), adder trees of log2(n_in) levels at 3 levels per cycle, one register per layer"
)


def estimate(graph: dict, clock_mhz: float) -> dict:
    """{"latency_cycles", "latency_ns", "ii_cycles", "resources": {...}, "layers": [...], "source", "method"}."""
    types = {layer["name"]: FixedType.parse(layer["result_t"]) for layer in graph["layers"]}
    rows = []
    for layer in graph["layers"]:
        if layer["op"] == "dense":
            rows.append(_dense(layer, types[layer["inputs"][0]]))
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


def _dense(layer: dict, x_type: FixedType) -> dict:
    w_type, acc_type = FixedType.parse(layer["weight_t"]), FixedType.parse(layer["accum_t"])
    reuse = layer["reuse_factor"]
    n_in, n_out = layer["n_in"], layer["n_out"]
    multipliers = math.ceil(layer["n_nonzero"] / reuse)
    in_dsp = x_type.width > DSP_MIN_BITS and w_type.width > DSP_MIN_BITS
    levels = math.ceil(math.log2(n_in + 1))
    mult_cycles = DSP_CYCLES if in_dsp else 1
    cycles = (mult_cycles + math.ceil(levels / ADDERS_PER_CYCLE) + 1) * reuse
    lut_mult = 0 if in_dsp else multipliers * x_type.width * w_type.width * LUT_PER_PRODUCT_BIT
    lut_add = math.ceil(n_in / reuse) * n_out * acc_type.width
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
