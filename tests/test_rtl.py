"""The open RTL path: Verilog from the firmware graph, Verilator against the emulator bit for bit, Yosys counts."""

import json
import pathlib
import re

import numpy as np
import pytest

from l1forge.emulation.emulator import Emulator
from l1forge.rtl import verilator, yosys
from l1forge.rtl.datapath import csd
from l1forge.rtl.lower import RtlError, write_rtl
from l1forge.rtl.cells import round_code
from l1forge.rtl.check import check_rtl, first_mismatch
from l1forge.quantize.fixed import ROUNDING_MODES, OVERFLOW_MODES, FixedType

# Two small networks whose layers use every ap_fixed rounding and overflow mode between them: rounded products
# (accum_t with fewer fractional bits than x*w), saturating accumulators whose partial sums overflow (the C++
# order matters: a chain), wrapping accumulators (a tree), and relu / linear casts.
BLOCKS = {
    "narrow": [
        dict(n=6, acc="fixed<9,3,RND,SAT>", res="fixed<8,3,RND_CONV,SAT_SYM>",
             acts=[("linear", "fixed<7,2,TRN_ZERO,SAT_ZERO>"), ("relu", "ufixed<5,1,RND_INF,SAT>")]),
        dict(n=5, acc="fixed<10,2,RND_MIN_INF,SAT_SYM>", res="fixed<8,2,RND_ZERO,WRAP>",
             acts=[("relu", "ufixed<4,1,TRN,WRAP>")]),
        dict(n=4, acc="fixed<8,2,TRN_ZERO,WRAP>", res="fixed<6,1,RND,SAT_ZERO>",
             acts=[("linear", "fixed<5,2,RND_CONV,WRAP>")]),
    ],
    "wide": [
        dict(n=7, acc="fixed<20,8,TRN,WRAP>", res="fixed<9,4,RND_INF,SAT>", acts=[("relu", "ufixed<6,0,RND_CONV,SAT>")]),
        dict(n=6, acc="fixed<7,2,RND_ZERO,SAT_ZERO>", res="fixed<7,2,TRN,SAT>",
             acts=[("linear", "fixed<6,2,RND_MIN_INF,SAT_SYM>"), ("relu", "ufixed<4,2,TRN_ZERO,SAT_ZERO>")]),
        dict(n=3, acc="fixed<12,4,RND_CONV,SAT>", res="fixed<12,4,RND_CONV,SAT>", acts=[]),
    ],
}


def random_graph(blocks, seed, n_in=8, input_t="fixed<10,3,RND_CONV,SAT>", weight_t="fixed<6,1>"):
    """A firmware graph (schema l1forge.firmware-graph/1) of dense layers with random weights (a fifth zero)."""
    rng = np.random.default_rng(seed)
    layers = [{"name": "x", "op": "input", "class_name": "InputLayer", "inputs": [], "shape": [n_in], "result_t": input_t}]
    weights, prev, n, wt = {}, "x", n_in, FixedType.parse(weight_t)
    for k, b in enumerate(blocks):
        name, m = f"dense{k}", b["n"]
        layers.append({"name": name, "op": "dense", "class_name": "Dense", "inputs": [prev], "shape": [m],
                       "result_t": b["res"], "accum_t": b["acc"], "weight_t": weight_t, "bias_t": weight_t,
                       "product": "mult", "strategy": "latency", "reuse_factor": 1, "n_in": n, "n_out": m})
        weights[f"{name}/weight"] = wt.quantize(rng.normal(scale=0.8, size=(n, m)) * (rng.random((n, m)) > 0.2))
        weights[f"{name}/bias"] = wt.quantize(rng.normal(scale=0.8, size=m))
        prev = name
        for j, (op, t) in enumerate(b["acts"]):
            layers.append({"name": f"act{k}_{j}", "op": op, "class_name": "Activation", "inputs": [prev], "shape": [m],
                           "result_t": t})
            prev = f"act{k}_{j}"
        n = m
    graph = {"schema": "l1forge.firmware-graph/1", "project_name": f"rand{seed}", "io_type": "io_parallel",
             "inputs": ["x"], "outputs": [prev], "layers": layers}
    return graph, weights


def save_graph(graph, weights, where):
    where.mkdir(parents=True, exist_ok=True)
    (where / "graph.json").write_text(json.dumps(graph))
    np.savez(where / "graph_weights.npz", **weights)
    return where / "graph.json"


def inputs(n, n_in, seed):
    """Normal inputs, a tenth far beyond the input range (saturation), a tenth on exact ties of the input type."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(n, n_in))
    x[: n // 10] *= 30.0
    x[n // 10: n // 5] = np.round(x[n // 10: n // 5] * 2**7) / 2**7 + 2**-8
    return x


def test_modes_are_all_covered():
    types = [FixedType.parse(t) for blocks in BLOCKS.values() for b in blocks
             for t in [b["acc"], b["res"], *[a[1] for a in b["acts"]]]]
    assert {t.rounding for t in types} == set(ROUNDING_MODES)
    assert {t.overflow for t in types} == set(OVERFLOW_MODES)


def test_csd_and_rounding_helpers():
    for v in range(-300, 300):
        digits = csd(v)
        assert sum(d << k for k, d in digits) == v
        assert all(b[0] - a[0] >= 2 for a, b in zip(digits, digits[1:]))  # no two adjacent non-zero digits
    codes = np.arange(-200, 200)
    for mode in ROUNDING_MODES:
        t = FixedType(30, 20, True, mode, "WRAP")
        ref = t.from_codes(codes, t.frac + 3)
        assert [round_code(int(c), 3, mode) for c in codes] == ref.tolist(), mode


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_rtl_is_bit_exact_with_the_emulator(name, tmp_path):
    graph, weights = random_graph(BLOCKS[name], seed=len(name))
    x = inputs(4000, 8, seed=1)
    result = check_rtl(save_graph(graph, weights, tmp_path / "fw"), x, tmp_path / "rtl", events=5000, synthesis=False,
                       package_dir=tmp_path / "run" / "rtl")
    rtl = result["rtl"]
    assert rtl["events_checked"] == 5000 and rtl["mismatches"] == 0, rtl["first_mismatch"]
    assert rtl["sim_events_per_s"] > 0 and rtl["latency_cycles"] >= 2
    # the deliverable alone, self-contained, where the run directory keeps it: sources, wrapper, testbench and its
    # vectors, Vivado files, README, rtl.json; no simulator build, no synthesis work files
    package = tmp_path / "run" / "rtl"
    info = json.loads((package / "rtl.json").read_text())
    names = sorted(p.name for p in package.iterdir())
    assert names == rtl["package"]["files"] == sorted(set(info["files"] + info["package"] + ["rtl.json"]))
    assert {f"{info['top']}.v", f"{info['top']}_cells.v", f"{info['top']}_tb.sv", "tb_in.mem", "README.md",
            "files.f", "vivado.tcl"} <= set(names) and all((package / n).is_file() for n in names)
    assert rtl["layers"] == info["layers"]
    # the design really computes: its outputs vary
    emu = Emulator(graph, weights).run(x)
    assert len(np.unique(emu)) > 5


def test_pipeline_meets_a_faster_clock(tmp_path):
    """At 360 MHz the writer cuts the same datapath into more stages; still bit-exact, and the synthesized netlist's
    longest register-to-register path fits the shorter period."""
    graph, weights = random_graph(BLOCKS["wide"], seed=7)
    fw, x = save_graph(graph, weights, tmp_path / "fw"), inputs(2000, 8, seed=3)
    slow = write_rtl(graph, weights, tmp_path / "rtl240", clock_mhz=240.0)
    fast = check_rtl(fw, x, tmp_path / "rtl360", events=2000, clock_mhz=360.0, synthesis=True)
    assert fast["rtl"]["mismatches"] == 0 and fast["rtl"]["latency_cycles"] > slow["latency_cycles"]
    synth = fast["open_synthesis"]
    assert synth["clock_mhz"] == 360.0 and synth["critical_path_ns"] <= 1000.0 / 360 and synth["meets_clock"]
    assert synth["latency_cycles"] == fast["rtl"]["latency_cycles"]


def test_a_wrong_circuit_is_caught(tmp_path):
    """Flip one adder of the written Verilog: the comparison names the first differing event and output."""
    graph, weights = random_graph(BLOCKS["wide"][:1], seed=3, n_in=4)
    info = write_rtl(graph, weights, tmp_path / "rtl")
    cells = tmp_path / "rtl" / info["files"][1]
    text = cells.read_text()
    assert " + " in text
    cells.write_text(text.replace(" + ", " - ", 1))
    sim = verilator.build(tmp_path / "rtl", info, tmp_path / "sim")
    emulator = Emulator(graph, weights)
    x = inputs(2000, 4, seed=2)
    out, _ = verilator.simulate(sim, emulator.input_type.from_float(x), len(info["outputs"]))
    where = first_mismatch(out, emulator.run(x))
    assert where is not None and set(where) == {"event", "output", "rtl", "emulator"}
    assert where["rtl"] != where["emulator"]


def test_unsupported_layer_is_one_line_before_writing(tmp_path):
    graph, weights = random_graph(BLOCKS["wide"][:1], seed=4, n_in=4)
    graph["layers"].append({"name": "probs", "op": "softmax", "class_name": "Softmax", "inputs": ["act0_0"],
                            "shape": [7], "result_t": "fixed<16,6>", "implementation": "legacy"})
    graph["outputs"] = ["probs"]
    with pytest.raises(RtlError) as err:
        write_rtl(graph, weights, tmp_path / "rtl")
    assert "'probs'" in str(err.value) and "Softmax" in str(err.value) and "legacy" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "rtl").exists()


def test_missing_yosys_says_how_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(verilator.ToolError, match="apt-get install -y yosys"):
        yosys.find_yosys()


def test_yosys_counts_from_a_real_run(tmp_path, monkeypatch):
    """Open synthesis of a tiny network: counts parsed from Yosys's own stat output, depth from its netlist."""
    monkeypatch.setenv("L1FORGE_CACHE", str(tmp_path / "cache"))  # every leaf mapped here, none from the cache
    graph, weights = random_graph([dict(n=3, acc="fixed<14,5,TRN,WRAP>", res="fixed<8,3,RND,SAT>",
                                        acts=[("relu", "ufixed<5,1,RND_CONV,SAT>")]),
                                   dict(n=2, acc="fixed<12,4,TRN,WRAP>", res="fixed<12,4,TRN,WRAP>", acts=[])],
                                  seed=5, n_in=4)
    info = write_rtl(graph, weights, tmp_path / "rtl")
    synth = yosys.synthesize(tmp_path / "rtl", info, tmp_path / "yosys")
    assert synth["source"].startswith("yosys 0.") and synth["source"].endswith("synth_xilinx xcup")
    stat = yosys.parse_stat((tmp_path / "yosys" / "stat.txt").read_text())
    assert synth["LUT"] == sum(stat.get(f"LUT{k}", 0) for k in range(1, 7)) > 0
    assert synth["CARRY4"] == stat["CARRY4"] > 0  # adders map to carry chains
    assert 0 < synth["FF"] <= info["registers_bits"]  # every FF is one of the pipeline's register bits
    assert synth["DSP"] == 0 and synth["BRAM"] == 0  # shift-and-add, no multipliers, no memories
    assert not any(name.startswith(info["top"]) for name in stat)  # flattened: no sub-module left in the counts
    assert synth["logic_levels"] >= 2 and 0 < synth["critical_path_ns"] < 1000.0 / 240
    assert synth["achievable_clock_mhz"] > 240 and synth["meets_clock"]
    assert synth["latency_cycles"] == info["latency_cycles"] and synth["ii_cycles"] == 1
    # the leaf batches ran synth_xilinx's script less its flip-flop passes: the same mapped netlist, byte for byte
    import subprocess

    cells = tmp_path / "yosys" / "cells"
    assert "synth_xilinx" not in (cells / "batch0.ys").read_text()
    (cells / "full.ys").write_text(f"read_verilog {cells / 'batch0.v'}\nsynth_xilinx -family xcup -top batch0_top\n"
                                   f"delete batch0_top\nwrite_verilog -noexpr {cells / 'full_mapped.v'}\n")
    subprocess.run([yosys.find_yosys()[0], "-q", "-s", str(cells / "full.ys")], check=True, capture_output=True)
    assert (cells / "full_mapped.v").read_text() == (cells / "batch0_mapped.v").read_text()
    # the report's side-by-side rows: the hls4ml-path figure beside open synthesis, with % of the part
    from l1forge.report import _side_by_side

    fw = {"part": "xcvu13p-flga2577-2-e", "source": "estimate", "resources": {"LUT": 100, "FF": 50, "DSP": 2, "BRAM": 0},
          "utilisation_percent": {"LUT": 0.01}, "latency_cycles": 3, "latency_ns": 12.5, "ii_cycles": 1,
          "clock_mhz": 240.0, "open_synthesis": synth}
    rows = {name: (a, b) for name, a, b in _side_by_side(fw)}
    assert rows["LUT"][1] == f"{synth['LUT']:,} ({100 * synth['LUT'] / 1_728_000:.2g}%)"
    assert rows["Source"][1].startswith("yosys 0.") and rows["Latency"][0].startswith("3 cycles")
    # the 40 MHz verdict and the chain budget read the best-measured source: vendor > open synthesis > estimate
    from l1forge.tasks.base import best_firmware

    best = best_firmware(fw)
    assert best["source"] == synth["source"] and best["latency_ns"] == synth["latency_ns"]
    assert best["resources"]["LUT"] == synth["LUT"] and best["clock_mhz"] == 240.0
    vendor = best_firmware({**fw, "source": "vivado csynth report"})
    assert vendor["latency_ns"] == 12.5 and vendor["resources"]["LUT"] == 100


def test_yosys_failure_is_named(tmp_path):
    graph, weights = random_graph(BLOCKS["wide"][:1], seed=6, n_in=4)
    info = write_rtl(graph, weights, tmp_path / "rtl")
    (tmp_path / "rtl" / info["files"][0]).write_text("module broken(;\n")
    with pytest.raises(verilator.ToolError, match=r"Yosys failed: .*\(full log: .*top\.log\)") as err:
        yosys.synthesize(tmp_path / "rtl", info, tmp_path / "yosys")
    assert pathlib.Path(str(err.value).rsplit("full log: ", 1)[1][:-1]).exists()  # the top's own Yosys log


def test_rtl_of_a_user_model_through_the_cli(tmp_path):
    """`l1forge rtl --model`: a QKeras model converted by hls4ml as `synthesize --model` converts it, its Verilog
    bit-exact with the emulator on inputs spanning the input type (saturation included)."""
    import subprocess
    import sys

    from l1forge.students.model import build_student

    model = build_student(6, 3, hidden=(5,))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    model.save(tmp_path / "m.h5")
    res = subprocess.run([sys.executable, "-c", "from l1forge.cli import main; main()", "rtl", "--model", tmp_path / "m.h5",
                          "--out", tmp_path / "out", "--events", "3000", "--no-synthesis"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    rtl = json.loads(res.stdout[res.stdout.index('{\n "rtl"'):])["rtl"]  # after whatever hls4ml prints
    assert rtl["events_checked"] == 3000 and rtl["mismatches"] == 0 and rtl["adders"] > 10
    assert (tmp_path / "out" / "graph.json").exists() and (tmp_path / "out" / "rtl" / "rtl.json").exists()
    # a clock no pipeline depth meets: one line with the best achievable clock, exit 1
    res = subprocess.run([sys.executable, "-c", "from l1forge.cli import main; main()", "rtl", "--model", tmp_path / "m.h5",
                          "--out", tmp_path / "fast", "--clock-mhz", "5000", "--no-synthesis"], capture_output=True, text=True)
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("error:")]
    assert res.returncode == 1 and len(lines) == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "cannot be met at any pipeline depth" in lines[0] and "best achievable clock is" in lines[0]


# ---- the layers beyond dense: random graphs of each, bit-exact through Verilator --------------------------------
def _layer(name, op, inputs, shape, result_t, **kw):
    return {"name": name, "op": op, "class_name": op, "inputs": inputs, "shape": list(shape), "result_t": result_t, **kw}


def _dense_spec(name, inp, shape, n_in, n_out, rng, weights, acc, res, op="dense", weight_t="fixed<6,1>", **kw):
    wt = FixedType.parse(weight_t)
    weights[f"{name}/weight"] = wt.quantize(rng.normal(scale=0.8, size=(n_in, n_out)) * (rng.random((n_in, n_out)) > 0.2))
    weights[f"{name}/bias"] = wt.quantize(rng.normal(scale=0.8, size=n_out))
    return _layer(name, op, [inp], shape, res, accum_t=acc, weight_t=weight_t, bias_t=weight_t, product="mult",
                  strategy="latency", reuse_factor=1, **kw)


def _pointwise(name, inp, width, n_chan, n_filt, rng, weights, acc, res):
    keys = dict(in_width=width, n_chan=n_chan, filt_width=1, n_filt=n_filt, stride_width=1, out_width=width,
                pad_left=0, pad_right=0, implementation="linebuffer")
    return _dense_spec(name, inp, (width, n_filt), n_chan, n_filt, rng, weights, acc, res, op="conv1d", **keys)


def constituent_graph(seed, n=6, pool="global_average", acc_pool="fixed<12,5,RND_ZERO,SAT>"):
    """The deep-sets / mixer shape: pointwise conv1d over (n, 3), relu, Permute, token mixing over the n slots,
    Permute back, a strided 'same' conv1d of width 3, pooling over the slots (a non-power-of-two average: the
    truncating division), dense head."""
    rng = np.random.default_rng(seed)
    w = {}
    L = [_layer("x", "input", [], (n, 3), "fixed<9,3,RND,SAT>"),
         _pointwise("phi1", "x", n, 3, 4, rng, w, "fixed<14,5,TRN,WRAP>", "fixed<8,3,RND_CONV,SAT>"),
         _layer("r1", "relu", ["phi1"], (n, 4), "ufixed<6,2,RND_INF,SAT>"),
         _layer("t1", "transpose", ["r1"], (4, n), "ufixed<6,2>", perm=[1, 0]),
         _pointwise("tok", "t1", 4, n, n, rng, w, "fixed<9,3,RND_MIN_INF,SAT_SYM>", "fixed<8,3,TRN_ZERO,SAT_ZERO>"),
         _layer("t2", "transpose", ["tok"], (n, 4), "fixed<7,2,RND,WRAP>", perm=[1, 0]),
         _dense_spec("cv", "t2", ((n + 1) // 2, 3), 3 * 4, 3, rng, w, "fixed<12,4,RND,SAT>", "fixed<9,3,TRN,SAT>",
                     op="conv1d", in_width=n, n_chan=4, filt_width=3, n_filt=3, stride_width=2, out_width=(n + 1) // 2,
                     pad_left=1, pad_right=1 - n % 2, implementation="linebuffer"),
         _layer("pool", pool, ["cv"], (3,), "fixed<8,2,RND_CONV,SAT>", accum_t=acc_pool),
         _dense_spec("head", "pool", (2,), 3, 2, rng, w, "fixed<16,6,TRN,WRAP>", "fixed<10,4,RND,SAT>")]
    return {"schema": "l1forge.firmware-graph/1", "project_name": f"cst{seed}", "io_type": "io_parallel",
            "inputs": ["x"], "outputs": ["head"], "layers": L}, w


def merge_graph(seed):
    """Two dense branches merged every way, batchnorm, leaky ReLU, hard sigmoid / tanh, sigmoid and tanh tables,
    a latency and a stable softmax; two outputs."""
    rng = np.random.default_rng(seed)
    w = {}
    s = (4,)
    L = [_layer("x", "input", [], (6,), "fixed<10,3,RND_CONV,SAT>"),
         _dense_spec("a", "x", s, 6, 4, rng, w, "fixed<14,5,TRN,WRAP>", "fixed<8,3,RND,SAT>"),
         _dense_spec("b", "x", s, 6, 4, rng, w, "fixed<14,5,TRN,WRAP>", "fixed<9,4,TRN,SAT_SYM>"),
         _layer("add", "add", ["a", "b"], s, "fixed<8,3,RND_ZERO,SAT>"),
         _layer("sub", "subtract", ["a", "b"], s, "fixed<7,2,RND_INF,WRAP>"),
         _layer("avg", "average", ["a", "b"], s, "fixed<7,3,TRN_ZERO,SAT_ZERO>"),
         _layer("mx", "maximum", ["add", "sub"], s, "fixed<7,3,RND_MIN_INF,SAT>"),
         _layer("mn", "minimum", ["avg", "b"], s, "fixed<6,2,RND_CONV,SAT_SYM>"),
         _layer("cat", "concatenate", ["mx", "mn"], (8,), "fixed<8,3,RND,SAT>", axis=-1),
         _layer("bn", "batchnorm", ["cat"], (8,), "fixed<9,4,RND,SAT>", scale_t="fixed<8,2>", bias_t="fixed<8,3>"),
         _layer("lr", "leaky_relu", ["bn"], (8,), "fixed<8,3,RND_CONV,SAT>", alpha=0.3, param_t="ufixed<6,0,RND>"),
         _layer("hs", "hard_sigmoid", ["lr"], (8,), "ufixed<7,1,RND,SAT>", slope=0.2, shift=0.5,
                slope_t="ufixed<8,0,RND>", shift_t="ufixed<8,0,RND>"),
         _layer("ht", "hard_tanh", ["bn"], (8,), "fixed<7,1,TRN,SAT>", slope=0.2, shift=0.5,
                slope_t="ufixed<8,0,RND>", shift_t="ufixed<8,0,RND>"),
         _layer("sg", "table", ["lr"], (8,), "ufixed<8,0,RND,SAT>", function="sigmoid", table_size=256,
                table_t="ufixed<10,0,RND,SAT>"),
         _layer("th", "table", ["ht"], (8,), "fixed<8,1,RND,SAT>", function="tanh", table_size=128,
                table_t="fixed<10,1,RND,SAT>"),
         _layer("cat2", "concatenate", ["sg", "th"], (16,), "fixed<10,2,RND,SAT>", axis=1),
         _dense_spec("logits", "cat2", (5,), 16, 5, rng, w, "fixed<16,6,TRN,WRAP>", "fixed<10,4,RND,SAT>"),
         _layer("sm", "softmax", ["logits"], (5,), "ufixed<10,0,RND,SAT>", implementation="latency", exp_table_size=1024,
                inv_table_size=1024, exp_scale=1.0, exp_table_t="ufixed<18,8,RND,SAT>", inv_table_t="ufixed<18,8,RND,SAT>",
                accum_t="ufixed<18,8,RND,SAT>", inv_inp_t="ufixed<18,8,RND,SAT>", inp_norm_t="ufixed<10,4>"),
         _layer("sms", "softmax", ["logits"], (5,), "ufixed<10,0,RND,SAT>", implementation="stable", exp_table_size=512,
                inv_table_size=256, exp_scale=1.0, exp_table_t="ufixed<16,1,RND,SAT>", inv_table_t="ufixed<16,6,RND,SAT>",
                accum_t="ufixed<16,4,RND,SAT>", inv_inp_t="ufixed<16,4,RND,SAT>", inp_norm_t="ufixed<9,4,RND,SAT>")]
    w["bn/scale"] = FixedType.parse("fixed<8,2>").quantize(rng.normal(scale=0.8, size=8))
    w["bn/bias"] = FixedType.parse("fixed<8,3>").quantize(rng.normal(scale=0.8, size=8))
    return {"schema": "l1forge.firmware-graph/1", "project_name": f"mrg{seed}", "io_type": "io_parallel",
            "inputs": ["x"], "outputs": ["sm", "sms"], "layers": L}, w


def cnn_graph(seed):
    """conv2d 'same', leaky ReLU, max pooling 'same' strided (MSB padding), average pooling 'same' (unpadded
    divisor, 3x3) and 'valid' with count_pad, flatten, dense."""
    rng = np.random.default_rng(seed)
    w = {}
    conv = dict(in_height=5, in_width=5, n_chan=2, filt_height=3, filt_width=3, n_filt=3, stride_height=1,
                stride_width=1, out_height=5, out_width=5, pad_top=1, pad_bottom=1, pad_left=1, pad_right=1,
                implementation="linebuffer")
    pool = lambda h, ph, st, pad, out: dict(in_height=h, in_width=h, n_filt=3, pool_height=ph, pool_width=ph,  # noqa: E731
                                            stride_height=st, stride_width=st, out_height=out, out_width=out,
                                            pad_top=pad, pad_bottom=pad, pad_left=pad, pad_right=pad)
    L = [_layer("x", "input", [], (5, 5, 2), "fixed<8,3,RND,SAT>"),
         _dense_spec("c1", "x", (5, 5, 3), 18, 3, rng, w, "fixed<10,4,RND_CONV,SAT>", "fixed<9,4,TRN,SAT>", op="conv2d", **conv),
         _layer("lr", "leaky_relu", ["c1"], (5, 5, 3), "fixed<8,3,RND_ZERO,SAT_SYM>", alpha=0.25, param_t="ufixed<4,0>"),
         _layer("mp", "pool2d", ["lr"], (3, 3, 3), "fixed<8,3,TRN,SAT>", pool_op="max", accum_t="fixed<8,3,TRN,SAT>",
                count_pad=False, **pool(5, 2, 2, 0, 3) | {"pad_bottom": 1, "pad_right": 1, "pad_top": 0, "pad_left": 0}),
         _layer("ap", "pool2d", ["mp"], (2, 2, 3), "fixed<7,2,RND_INF,SAT>", pool_op="average",
                accum_t="fixed<9,4,TRN_ZERO,SAT_ZERO>", count_pad=False, **pool(3, 3, 2, 1, 2)),
         _layer("ap2", "pool2d", ["ap"], (1, 1, 3), "fixed<8,3,RND,SAT>", pool_op="average",
                accum_t="fixed<10,4,RND,WRAP>", count_pad=True, **pool(2, 2, 1, 0, 1)),
         _layer("fl", "reshape", ["ap"], (12,), "fixed<7,2,RND_INF,SAT>"),
         _dense_spec("out", "fl", (3,), 12, 3, rng, w, "fixed<16,6,TRN,WRAP>", "fixed<10,4,RND,SAT>")]
    return {"schema": "l1forge.firmware-graph/1", "project_name": f"cnn{seed}", "io_type": "io_parallel",
            "inputs": ["x"], "outputs": ["out", "ap2"], "layers": L}, w


@pytest.mark.parametrize("which", ["constituents_avg6", "constituents_max", "merges_tables_softmax", "cnn"])
def test_more_layers_are_bit_exact_with_the_emulator(which, tmp_path):
    graph, weights = {"constituents_avg6": lambda: constituent_graph(1),
                      "constituents_max": lambda: constituent_graph(2, n=8, pool="global_max", acc_pool="fixed<9,3,TRN,SAT>"),
                      "merges_tables_softmax": lambda: merge_graph(3), "cnn": lambda: cnn_graph(4)}[which]()
    shape = graph["layers"][0]["shape"]
    x = inputs(3000, int(np.prod(shape)), seed=5).reshape(-1, *shape)
    result = check_rtl(save_graph(graph, weights, tmp_path / "fw"), x, tmp_path / "rtl", events=3000, synthesis=False)
    rtl = result["rtl"]
    assert rtl["events_checked"] == 3000 and rtl["mismatches"] == 0, rtl["first_mismatch"]
    emu = Emulator(graph, weights).run(x)
    for out in (emu if isinstance(emu, list) else [emu]):
        assert len(np.unique(out)) > 5  # every output varies: the check is not on constants


@pytest.mark.parametrize("family", ["deepsets", "mixer"])
def test_constituent_students_through_rtl(family, tmp_path):
    """The deep-sets and mixer students as hls4ml converts them (pointwise conv1d, Transpose, GlobalPooling1D
    average over 8 slots, dense head): their Verilog bit-exact with the emulator on inputs spanning the input type."""
    import tensorflow as tf

    from l1forge.firmware.build import build_firmware
    from l1forge.firmware.hls import FirmwareSettings
    from l1forge.quantize.precision import Precision
    from l1forge.students.deepsets import build_constituent_student

    tf.keras.utils.set_random_seed(3)
    model = build_constituent_student(family, 8, 4, 5, phi=(6, 6), head=(8,), precision=Precision.for_family(family))
    build_firmware(model, Precision().input, FirmwareSettings(), tmp_path / "fw")
    graph = json.loads((tmp_path / "fw" / "graph.json").read_text())
    ops = {layer["op"] for layer in graph["layers"]}
    assert {"conv1d", "global_average"} <= ops and ("transpose" in ops) == (family == "mixer")
    t = FixedType.parse(graph["layers"][0]["result_t"])
    rng = np.random.default_rng(0)
    x = rng.uniform(t.min_value, t.max_value, size=(3000, 8, 4))
    x[:300] *= 1.5
    rtl = check_rtl(tmp_path / "fw" / "graph.json", x, tmp_path / "rtl", events=3000, synthesis=False)["rtl"]
    assert rtl["events_checked"] == 3000 and rtl["mismatches"] == 0, rtl["first_mismatch"]
    assert len(np.unique(Emulator.from_file(tmp_path / "fw" / "graph.json").run(x))) > 20


# ---- the shared adder graph of da4ml's CMVM solution (rtl/cmvm.py) --------------------------------------
def _shared_codes(rng, n_in, n_out, lim):
    """Integer weight codes whose columns share subexpressions: random columns, their sums, differences, shifted
    and negated copies, a zero column and a zero row."""
    base = rng.integers(-lim // 3, lim // 3 + 1, size=(n_in, 3))
    cols = [base[:, 0], base[:, 1], base[:, 0] + base[:, 1], base[:, 0] - base[:, 2], -base[:, 1], 2 * base[:, 2],
            np.zeros(n_in, dtype=int), base[:, 1] - 2 * base[:, 0]]
    cols += [rng.integers(-lim, lim + 1, size=n_in) * (rng.random(n_in) > 0.3) for _ in range(n_out - len(cols))]
    w = np.clip(np.stack(cols[:n_out], axis=1), -lim, lim)
    w[n_in // 2] = 0
    return w


def _eval_plan(plan, x):
    vals = []
    for node in plan.nodes:
        if node[0] == "in":
            vals.append(x[node[1]])
        else:
            vals.append(sum(r.sign * vals[r.node] * 2**r.shift for r in node[1:]))
    return [0 if r is None else r.sign * vals[r.node] * 2**r.shift for r in plan.outs], vals


def test_cmvm_plan_is_the_matrix_with_exact_ranges():
    """da4ml's solution as a flat plan: on random integer inputs its outputs are ``x @ w`` (python ints), every
    node's value lies in its exact range and the range's ends are reached at corners of the input box; it needs
    fewer adders than the per-column canonical-signed-digit trees."""
    from fractions import Fraction

    from l1forge.rtl import cmvm

    rng = np.random.default_rng(11)
    w = _shared_codes(rng, 12, 10, 100)
    ranges = [(-(1 << 15), (1 << 15) - 1, -10)] * 6 + [(0, 63, -6)] * 6  # wide signed and narrow unsigned inputs
    plan = cmvm.solve(w, ranges)
    assert plan.outs[6] is None  # the zero column
    box = [(Fraction(lo) * Fraction(2) ** s, Fraction(hi) * Fraction(2) ** s) for lo, hi, s in ranges]
    codes = [rng.integers(lo, hi + 1, size=300) for lo, hi, _ in ranges]
    corners = [[(lo if rng.random() < 0.5 else hi) for lo, hi, _ in ranges] for _ in range(64)]
    need = plan.needed()
    seen = {k: set() for k in need}
    for e in range(300 + len(corners)):
        c = [int(v[e]) for v in codes] if e < 300 else corners[e - 300]
        x = [Fraction(ci) * Fraction(2) ** s for ci, (_, _, s) in zip(c, ranges)]
        outs, vals = _eval_plan(plan, x)
        assert outs == [sum(x[i] * int(w[i, j]) for i in range(12)) for j in range(10)]
        for k in need:
            lo, hi = plan.value_range(k, box)
            assert lo <= vals[k] <= hi
            seen[k].add(vals[k])
    # the ends of each range: reached by the corner that picks each input's end by its coefficient's sign
    for k in need:
        lo, hi = plan.value_range(k, box)
        assert hi == sum(c * box[i][int(c > 0)] for i, c in plan.coef[k].items())
        assert lo == sum(c * box[i][int(c < 0)] for i, c in plan.coef[k].items())
        assert max(seen[k]) <= hi and min(seen[k]) >= lo
    n_csd = sum(len(csd(int(v))) for v in w.ravel())
    per_column = n_csd - sum(1 for j in range(10) if w[:, j].any())  # a tree of n terms has n - 1 adders
    assert 0 < plan.adders < per_column


def _cmvm_graph(seed):
    """Wide inputs; a wrapping dense layer with shared columns, negative weights, a zero column (its output the
    constant bias, an input constant of the next layer); a saturating dense layer, some of its columns free of
    overflow (the shared graph), others not (the per-column chain); a 'same' conv1d (zero padding: the edge
    windows have fewer live inputs) with a wrapping accumulator; dense head."""
    rng = np.random.default_rng(seed)
    w = {}
    wt = FixedType.parse("fixed<8,3>")
    codes0 = _shared_codes(rng, 10, 12, 100)
    w["d0/weight"] = codes0 * 2.0**-wt.frac
    w["d0/bias"] = wt.quantize(rng.normal(scale=1.0, size=12))
    w["d0/bias"][6] = 1.25  # the zero column: a positive constant after the relu
    codes1 = _shared_codes(rng, 12, 8, 60)
    codes1[:, 0] = 127  # a column whose partial sums saturate the accumulator
    codes1[6] = np.where(codes1[6] == 0, 9, codes1[6])  # the constant input has weights
    w["d1/weight"] = codes1 * 2.0**-wt.frac
    w["d1/bias"] = wt.quantize(rng.normal(scale=0.5, size=8))
    conv = dict(in_width=4, n_chan=2, filt_width=3, n_filt=6, stride_width=1, out_width=4, pad_left=1, pad_right=1,
                implementation="linebuffer")
    w["cv/weight"] = _shared_codes(rng, 6, 6, 100) * 2.0**-wt.frac
    w["cv/bias"] = wt.quantize(rng.normal(scale=1.0, size=6))
    w["out/weight"] = _shared_codes(rng, 24, 4, 100) * 2.0**-wt.frac
    w["out/bias"] = wt.quantize(rng.normal(scale=1.0, size=4))
    dense = dict(weight_t="fixed<8,3>", bias_t="fixed<8,3>", product="mult", strategy="latency", reuse_factor=1)
    L = [_layer("x", "input", [], (10,), "fixed<16,6,RND_CONV,SAT>"),
         _layer("d0", "dense", ["x"], (12,), "fixed<12,5,RND,SAT>", accum_t="fixed<30,14,TRN,WRAP>", **dense),
         _layer("r0", "relu", ["d0"], (12,), "ufixed<8,3,RND_CONV,SAT>"),
         _layer("d1", "dense", ["r0"], (8,), "fixed<12,6,TRN,SAT>", accum_t="fixed<18,8,RND,SAT>", **dense),
         _layer("rs", "reshape", ["d1"], (4, 2), "fixed<12,6,TRN,SAT>"),
         _layer("cv", "conv1d", ["rs"], (4, 6), "fixed<10,4,RND_ZERO,SAT>", accum_t="fixed<26,10,TRN,WRAP>", **dense,
                **conv),
         _layer("fl", "reshape", ["cv"], (24,), "fixed<10,4,RND_ZERO,SAT>"),
         _layer("out", "dense", ["fl"], (4,), "fixed<12,5,RND,SAT>", accum_t="fixed<26,10,TRN,WRAP>", **dense)]
    return {"schema": "l1forge.firmware-graph/1", "project_name": f"cmvm{seed}", "io_type": "io_parallel",
            "inputs": ["x"], "outputs": ["out"], "layers": L}, w


def test_cmvm_dense_and_conv_are_bit_exact_and_smaller(tmp_path, monkeypatch):
    """The shared adder graph in place of the per-column trees: 0 mismatches over 6 000 events against the
    emulator (a wrong node, shift, sign or output of the translation changes outputs), fewer adders."""
    from l1forge.rtl import datapath

    graph, weights = _cmvm_graph(7)
    calls = []
    real = datapath.Datapath.cmvm

    def spy(self, xs, w):  # records which columns took the shared graph, then builds it
        calls.append(w.shape)
        return real(self, xs, w)

    monkeypatch.setattr(datapath.Datapath, "cmvm", spy)
    x = inputs(6000, 10, seed=8)
    result = check_rtl(save_graph(graph, weights, tmp_path / "fw"), x, tmp_path / "rtl", events=6000, synthesis=False)
    r = result["rtl"]
    assert r["events_checked"] == 6000 and r["mismatches"] == 0, r["first_mismatch"]
    info = json.loads((tmp_path / "rtl" / "rtl.json").read_text())
    assert calls[0] == (10, 12)  # d0: every column (wrapping accumulator), every input live
    assert calls[1][0] == 11 and 0 < calls[1][1] < 8  # d1: the constant input folded; some columns chained
    conv = calls[2:-1]  # one per output position; padding and d1's constant output leave fewer live inputs
    assert len(conv) == 4 and len(set(conv)) == 4 and {c[1] for c in conv} == {6}
    assert 0 < info["cmvm_adders"] < info["adders"]
    emu = Emulator(graph, weights).run(x)
    assert len(np.unique(emu)) > 50
    # the same design with every column summed on its own (the canonical-signed-digit trees): more adders
    monkeypatch.setattr(datapath.Datapath, "_order_free", staticmethod(lambda *a: False))
    csd_info = write_rtl(graph, weights, tmp_path / "rtl_csd")
    assert csd_info["cmvm_adders"] == 0 and info["adders"] < csd_info["adders"]


def test_sat_sym_accumulator_whose_partial_sum_reaches_the_most_negative_code(tmp_path):
    """SAT_SYM also saturates the most negative code: a partial sum that reaches it is changed by the C++ cast
    after that addition, so the column is no sum to reorder (neither the shared graph nor one tree): the chain."""
    dense = dict(weight_t="fixed<6,3>", bias_t="fixed<6,3>", product="mult", strategy="latency", reuse_factor=1)
    L = [_layer("x", "input", [], (2,), "fixed<4,4,TRN,SAT>"),
         _layer("r", "relu", ["x"], (2,), "ufixed<3,3,TRN,SAT>"),
         _layer("d", "dense", ["r"], (1,), "fixed<8,5,TRN,SAT_SYM>", accum_t="fixed<8,5,TRN,SAT_SYM>", **dense)]
    graph = {"schema": "l1forge.firmware-graph/1", "project_name": "satsym", "io_type": "io_parallel",
             "inputs": ["x"], "outputs": ["d"], "layers": L}
    weights = {"d/weight": np.array([[-2.25], [0.125]]), "d/bias": np.array([-0.25])}  # -0.25 - 2.25 * 7 = -16
    x = np.array([[a, b] for a in range(-8, 8) for b in range(-8, 8)], dtype=float)
    graph_json = save_graph(graph, weights, tmp_path / "fw")
    rtl = check_rtl(graph_json, x, tmp_path / "rtl", events=len(x), synthesis=False)["rtl"]
    assert rtl["mismatches"] == 0, rtl["first_mismatch"]
    emu = Emulator(graph, weights).run(np.array([[7.0, 1.0]]))
    assert emu.ravel()[0] == -126  # (acc_t)(-16) = -127/8 (SAT_SYM), + 1/8: not the -127 of the exact sum


def test_the_deliverable_testbench_passes_and_names_a_mismatch(tmp_path):
    """The package beside the Verilog: its self-checking testbench passes on the emulator's vectors through the core
    (ce stalls, valid gaps) and through the AXI4-Stream wrapper (back-pressure), and a wrong expected code is named
    by event, output and cycle; the Vivado files name the part and the target period."""
    graph, weights = random_graph(BLOCKS["wide"][:2], seed=5, n_in=6)
    out = tmp_path / "rtl"
    result = check_rtl(save_graph(graph, weights, tmp_path / "fw"), inputs(700, 6, seed=2), out, events=700,
                       synthesis=False, testbench=True, part="xcvu9p-flga2104-2L-e")
    bench, info = result["rtl"]["testbench"], json.loads((out / "rtl.json").read_text())
    assert bench["passed"] and bench["line"].startswith("PASS 700 events") and bench["events"] == 700
    assert set(info["interface"]) >= {"clk", "rst", "ce", "in_valid", "out_valid"} and info["testbench_events"] == 700
    top = info["top"]
    assert f"latency {info['latency_cycles']} cycles" in (out / f"{top}.v").read_text()
    assert "-part xcvu9p-flga2104-2L-e" in (out / "vivado.tcl").read_text()
    assert f"-period {1000 / 240:.3f}" in (out / f"{top}.xdc").read_text()
    assert verilator.run_testbench(out, info, tmp_path / "axis", axis=True)["passed"]
    lines = (out / "tb_out.mem").read_text().split("\n")
    lines[41] = format(int(lines[41], 16) ^ 1, f"0{len(lines[41])}x")  # output 0 of event 41, one bit off
    (out / "tb_out.mem").write_text("\n".join(lines))
    bad = verilator.run_testbench(out, info, tmp_path / "bad")
    assert not bad["passed"] and re.match(r"MISMATCH event 41 output 0 cycle \d+: rtl [0-9a-f]+ expected", bad["line"])


def test_yosys_maps_each_distinct_cell_once_across_runs(tmp_path, monkeypatch):
    """Mapped leaf modules are kept under the hash of their text: a second synthesis (even of a design with another
    top name) runs Yosys only on the top module and counts the same cells."""
    monkeypatch.setenv("L1FORGE_CACHE", str(tmp_path / "cache"))
    graph, weights = random_graph(BLOCKS["wide"][:1], seed=3, n_in=4)
    first_info = write_rtl(graph, weights, tmp_path / "a")
    first = yosys.synthesize(tmp_path / "a", first_info, tmp_path / "ya")
    assert len(list((tmp_path / "cache").glob("yosys-*/*.v"))) == first_info["cell_modules"]
    again_info = write_rtl(graph, weights, tmp_path / "b", top="renamed")
    again = yosys.synthesize(tmp_path / "b", again_info, tmp_path / "yb")
    assert sorted(p.name for p in (tmp_path / "yb" / "cells").glob("*.ys")) == ["top.ys"]
    for key in ("resources", "CARRY4", "critical_path_ns", "logic_levels"):
        assert again[key] == first[key], key


def test_wide_types_are_bit_exact_in_verilog(tmp_path):
    """Types beyond int64 (the emulator's wide path): 32-bit inputs, 40-bit weights, a 90-bit saturating
    accumulator with rounding and a 60-bit result; the Verilog has no width limit and equals the emulator."""
    blocks = [dict(n=5, acc="fixed<90,40,RND,SAT>", res="fixed<60,24,RND_CONV,SAT>", acts=[("relu", "ufixed<48,20>")]),
              dict(n=3, acc="fixed<96,44,TRN,WRAP>", res="fixed<64,30,RND,SAT_SYM>", acts=[])]
    graph, weights = random_graph(blocks, seed=9, n_in=6, input_t="fixed<32,12,RND_CONV,SAT>", weight_t="fixed<40,8>")
    x = inputs(3000, 6, seed=4) * 50
    rtl = check_rtl(save_graph(graph, weights, tmp_path / "fw"), x, tmp_path / "rtl", events=3000, synthesis=False)["rtl"]
    assert rtl["events_checked"] == 3000 and rtl["mismatches"] == 0, rtl["first_mismatch"]
    emu = Emulator(graph, weights).run(x)
    assert max(abs(int(v)) for v in np.ravel(emu)) > 2**40  # the outputs really use the width


def test_delay_model_never_below_the_calibrated_netlist():
    """rtl/calibration.py: every leaf cell the writer emits, synthesized by Yosys and timed on its mapped netlist;
    the writer's delay functions (recomputed here for the same cells) never predict less, so a design placed by the
    model meets the clock on the netlist. The table carries its command and date."""
    import importlib.util

    from l1forge.rtl.calibration import CALIBRATION, CELLS

    spec = importlib.util.spec_from_file_location(
        "delay_calibration", pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "delay_calibration.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert CALIBRATION["command"].startswith("python benchmarks/delay_calibration.py") and CALIBRATION["date"]
    measured = {(c["kind"], c["width"]): c for c in CELLS}
    cases = bench.cases()
    assert len(cases) == len(measured) > 50
    for case in cases:
        row = measured[(case["kind"], case["width"])]
        assert case["model_ns"] >= row["netlist_ns"] - 1e-9, (case["kind"], case["width"], case["model_ns"], row)
    adders = [c for c in CELLS if c["kind"] == "add"]
    assert all(c["lut_levels"] == 1 and c["carry_segments"] == -(-c["width"] // 4) for c in adders)


def test_registers_placed_by_timing_and_a_clock_out_of_reach(tmp_path):
    """Chained adders overlap their carries: a stage holds several adders; per-layer cycles, levels and slack are in
    rtl.json; and a clock no pipeline depth can meet is refused in one line with the best achievable clock."""
    graph, weights = random_graph(BLOCKS["wide"], seed=7)
    info = write_rtl(graph, weights, tmp_path / "rtl", clock_mhz=240.0)
    layers = info["layers"]
    assert layers[0]["layer"] == "dense0" and layers[-1]["layer"] == "(output register)"
    assert sum(row["cycles"] for row in layers) == info["latency_cycles"]
    assert all(row["slack_ns"] >= 0 and row["logic_levels"] >= 0 for row in layers)
    assert max(row["logic_levels"] for row in layers) >= 4  # more than one adder per stage
    with pytest.raises(RtlError) as err:
        write_rtl(graph, weights, tmp_path / "fast", clock_mhz=2000.0)
    line = str(err.value)
    assert "\n" not in line and "cannot be met at any pipeline depth" in line
    best = float(re.search(r"best achievable clock is (\d+) MHz", line).group(1))
    assert 240 < best < 2000
    ok = write_rtl(graph, weights, tmp_path / "best", clock_mhz=best - 1)  # just below it: a design
    assert ok["latency_cycles"] > info["latency_cycles"]


def test_side_by_side_rows_carry_stage_and_source():
    """summary.json's side-by-side: this run's estimate and open synthesis, then the published anchors (JEDI-linear
    post-route, the hls4ml jet MLP HLS estimate, the AXOL1TL budget) and l1forge before issue 28, each labelled."""
    from l1forge.rtl.anchors import side_by_side

    fw = {"source": "estimate", "latency_ns": 33.3, "latency_cycles": 8, "clock_mhz": 240.0,
          "resources": {"LUT": 9000, "FF": 3000, "DSP": 0},
          "open_synthesis": {"source": "yosys 0.23 synth_xilinx xcup", "latency_ns": 50.0, "latency_cycles": 12,
                             "clock_mhz": 240.0, "LUT": 30000, "FF": 15000, "DSP": 0, "achievable_clock_mhz": 250.0}}
    rows = side_by_side(fw)
    assert [r["name"] for r in rows[:2]] == ["this student, hls4ml path", "this student, l1forge RTL"]
    assert rows[1]["stage"].startswith("open synthesis (yosys") and rows[1]["latency_cycles"] == 12
    stages = {r["name"].split(",")[0]: r["stage"] for r in rows}
    assert stages["JEDI-linear"].startswith("post-route") and stages["AXOL1TL anomaly detection budget"].startswith("trigger")
    assert any(r["stage"].startswith("HLS estimate") and r["latency_cycles"] == 12 for r in rows)
    assert all(r["source"] for r in rows) and len(side_by_side({})) == len(rows) - 2
