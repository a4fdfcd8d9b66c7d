"""firmware/estimate.py: a row for every op, reuse-factor scaling, monotonicity, and the calibration points."""

import math

import numpy as np
import pytest

from l1forge.firmware import calibration
from l1forge.firmware.estimate import estimate

FX = "fixed<16,6,TRN,WRAP,0>"
OPS = ("input", "dense", "conv1d", "relu", "linear", "reshape", "table", "hard_sigmoid", "hard_tanh", "softmax",
       "batchnorm", "global_max", "global_average", "add", "subtract", "average", "maximum", "minimum",
       "concatenate")


def _dense(name, src, n_in, n_out, reuse=1, strategy="latency", w_t=FX, **extra):
    return {"name": name, "op": "dense", "inputs": [src], "shape": [n_out], "result_t": FX, "accum_t": FX,
            "weight_t": w_t, "bias_t": FX, "strategy": strategy, "reuse_factor": reuse, "n_in": n_in,
            "n_out": n_out, **extra}


def _graph(*layers):
    inp = {"name": "x", "op": "input", "inputs": [], "shape": [16], "result_t": FX}
    return {"layers": [inp, *layers], "outputs": [layers[-1]["name"]]}


def _weights(n_in, n_out, name="d", seed=0):
    return {f"{name}/weight": np.random.default_rng(seed).uniform(-1, 1, (n_in, n_out))}


def test_every_op_gets_a_row():
    rng = np.random.default_rng(0)
    ew = {"inputs": ["d"], "shape": [8], "result_t": FX}
    layers = [
        _dense("d", "x", 16, 8),
        {**_dense("c", "x", 4, 8), "op": "conv1d", "out_width": 3, "shape": [3, 8]},
        {"name": "relu", "op": "relu", **ew}, {"name": "linear", "op": "linear", **ew},
        {"name": "reshape", "op": "reshape", **ew},
        {"name": "table", "op": "table", "function": "sigmoid", "table_size": 1024, "table_t": "ap_fixed<18,8>", **ew},
        {"name": "hard_sigmoid", "op": "hard_sigmoid", **ew}, {"name": "hard_tanh", "op": "hard_tanh", **ew},
        {"name": "softmax", "op": "softmax", "implementation": "stable", "exp_table_size": 1024,
         "inv_table_size": 1024, "exp_table_t": "fixed<18,8,RND,SAT,0>", "inv_table_t": "fixed<18,8,RND,SAT,0>",
         "accum_t": FX, **ew},
        {"name": "batchnorm", "op": "batchnorm", "scale_t": FX, "bias_t": FX, **ew},
        {"name": "global_max", "op": "global_max", "accum_t": FX, **{**ew, "shape": [1]}},
        {"name": "global_average", "op": "global_average", "accum_t": FX, **{**ew, "shape": [1]}},
        *({"name": op, "op": op, **{**ew, "inputs": ["d", "relu"]}} for op in
          ("add", "subtract", "average", "maximum", "minimum", "concatenate")),
        {"name": "mystery", "op": "mystery", **ew},
    ]
    weights = {**_weights(16, 8), "c/weight": rng.uniform(-1, 1, (4, 8)), "batchnorm/scale": rng.uniform(0, 2, 8)}
    rows = estimate(_graph(*layers), weights, 200.0)["layers"]
    assert {r["op"] for r in rows} >= set(OPS) | {"mystery"}
    assert next(r for r in rows if r["op"] == "mystery")["note"] == "not modelled"
    for r in rows:
        assert all(math.isfinite(r[k]) and r[k] >= 0 for k in ("cycles", "ii", "LUT", "FF", "DSP", "BRAM"))


@pytest.mark.parametrize("strategy", ["latency", "resource"])
def test_reuse_factor_divides_multipliers_and_sets_ii(strategy):
    def row(reuse):
        return estimate(_graph(_dense("d", "x", 16, 8, reuse, strategy)), _weights(16, 8), 200.0)["layers"][1]

    r1, r4 = row(1), row(4)
    assert r4["DSP"] == math.ceil(r1["DSP"] / 4) and r1["DSP"] > 0
    assert r1["ii"] == 1 and r4["ii"] == 4
    assert r4["cycles"] == r1["cycles"] + 3  # documented: R - 1 more cycles
    assert (r4["BRAM"] > 0) == (strategy == "resource")  # Resource strategy: weights in a BRAM ROM when R > 1


def test_wider_weights_never_cost_fewer_luts():
    luts = []
    for width in (4, 6, 8, 10, 12, 16):
        w_t = f"fixed<{width},2,TRN,WRAP,0>"
        g = _graph(_dense("d", "x", 16, 8, w_t=w_t))
        g["layers"][0]["result_t"] = "fixed<8,3,TRN,WRAP,0>"  # narrow input: every product in LUTs
        luts.append(estimate(g, _weights(16, 8), 200.0)["resources"]["LUT"])
    assert luts == sorted(luts)


def test_labelled_estimate_with_method():
    out = estimate(_graph(_dense("d", "x", 16, 8)), _weights(16, 8), 200.0)
    assert out["source"] == "estimate" and "model" in out["method"]
    assert out["latency_ns"] == pytest.approx(out["latency_cycles"] * 5.0)


def test_calibration_points_have_sources_and_finite_errors():
    points = calibration.load_points()
    assert len(points) >= 2
    assert all(p["source"] and p["quote"] and p["published"] for p in points)
    errors = calibration.calibration_error()
    assert [e["id"] for e in errors] == [p["id"] for p in points]
    for e in errors:
        assert all(math.isfinite(v) for v in e["relative_error"].values())
    tagger = next(e for e in errors if e["id"] == "hls4ml-tutorial-part1-jet-tagger")
    assert all(abs(tagger["relative_error"][k]) <= 0.35 for k in ("latency_cycles", "LUT", "FF", "DSP"))
