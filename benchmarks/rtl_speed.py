"""The open RTL path on the jet-tagging student: RTL write, Verilator build, simulation events/s, Yosys time.

    python benchmarks/rtl_speed.py [--events 100000] [--clock 240] [--no-synthesis] [--run DIR | --layer 16x64]
                                   [--out DIR] [--json FILE] [--warm]

Yosys runs with an empty cache of mapped leaf modules (a fresh ``L1FORGE_CACHE``): the time of a first synthesis
(``yosys_seconds_cold``); ``--warm`` runs it a second time on the filled cache, as a rerun or a scan point whose
cells were mapped before (``yosys_seconds_warm``). Per-layer cycles, logic levels and slack of the writer's delay
model are printed (``layers``).

The student is the flow's 16-64-32-32-5 network with 6-bit weights and activations (l1forge.students.model
.build_student): with ``--run DIR`` the trained student of that run directory (its firmware graph), otherwise one
with random weights and biases converted by hls4ml as the flow converts it. Every simulated event is compared
with the emulator bit for bit; the benchmark fails on any mismatch. The hls4ml-path estimate (firmware/estimate.py)
is printed beside the open-synthesis numbers. ``--layer 16x64`` measures one dense layer + ReLU instead (16-bit
inputs, 6-bit weights: the reference point of da4ml's own Verilog). Yosys's wall time, the CPU time of its
processes and the highest load average seen are recorded (``yosys_cpu_s``, ``load_average_max``).

Measured with the timing-driven pipeline (rtl/datapath.py, rtl/delay.py; 2026-12-07, 2-core AMD EPYC 24 GB, shared
with other sessions, load average 5-10; random weights as below; ``--warm``; commit 417e9eb): 12 cycles = 50.0 ns
(29 before), 0 mismatches in 100 000 events; Yosys 45 988 LUT, 14 379 FF (52 208 before), 14 780 CARRY4, 0 DSP,
15 logic levels, 3.68 ns, 254 MHz achievable (>= 240); 813 distinct leaf modules (1 598 before); at 4fe7765 (same
leaf modules): Yosys with an empty cache 453 s
wall / 180 s CPU (847 s CPU before), 75 s wall on the filled cache; with the leaf batches by synth_xilinx's script
less its flip-flop passes (rtl/yosys.py LEAF_SCRIPT, the same netlist): 118 s CPU with an empty cache, 43 s CPU on a
filled one (rtl.yosys.synthesize on the same RTL, same machine and day); at 417e9eb with the machine quiet (load
about 1): 58.7 s wall / 94.5 s CPU with an empty cache, 32.4 s on a filled one. The anomaly student's shape (``--inputs 57
--outputs 1 --hidden 32,16``): 9 cycles, 0 mismatches in 100 000 events. docs/hardware.md has the table.

Measured with da4ml's CMVM adder graph (rtl/cmvm.py; 2026-11-30, 2 cores shared with another engineer's
jobs; random weights as below): 4 167 adders (4 036 from the CMVM solution), 256 casts, 0 mismatches in 100 000
events; Yosys 46 219 LUT (44 747 LUT2), 52 208 FF, 14 780 CARRY4, 0 DSP, 0 BRAM, 10 logic levels, 2.94 ns (about
313 MHz), 29 cycles. Open synthesis took 521 s wall / 847 s CPU (load average 1.1-2.6; 472 s of it the distinct leaf
modules), 910 s wall / 877 s CPU under load 4-6. The writer takes about 15 s (da4ml's solver, after its one-time
numba compilation). One 16x64 layer + ReLU (``--layer 16x64``): 874 adders (813 CMVM), 16 654 LUT, 16 403 FF, 4 534
CARRY4, 12 logic levels, 9 cycles, Yosys 147 s wall / 138 s CPU (load <= 3.4); before, 1 683 adders, 29 058 LUT,
18 223 FF, 8 446 CARRY4, 11 levels, 7 cycles, 60 s wall / 95 s CPU (load <= 2.7). da4ml's own Verilog of a 16x64
layer (other random weights, combinational): about 22k LUT + 5.4k CARRY4 (../shared/README.md). The Yosys time grows
with the distinct leaf modules (one synthesis each): 1 598 against 465 for the tagger, 342 against 129 for the
layer.

Before (the per-column canonical-signed-digit trees), the same student on a quieter machine (load average 1.4-3.0):
Yosys 205 s wall / 343 s CPU, same counts as below. Measured (2026-11-30, 2 cores shared with other engineers' jobs,
load average 6-8; random weights, 8 139 adders, 259 casts): 0 mismatches in 100 000 events (27k events/s); Yosys
77 519 LUT (76 024 LUT2), 55 272 FF, 25 208 CARRY4, 0 DSP, 0 BRAM, 10 logic levels, 2.94 ns (about 313 MHz), 25
cycles. Open synthesis took 887 s wall / 331 s CPU with the distinct leaf modules in parallel (rtl/yosys.py:
two batches of 66 s CPU each beside the top module's registers, 151 s CPU, then the link, count and flatten, 48 s
CPU), against 1 203 s wall / 314 s CPU for the single Yosys run before (same counts, cell for cell). The chain top +
link (about 200 s CPU) bounds the wall time on a quiet 2-core machine; on this loaded one the 10-minute target was
not met.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clock", type=float, default=240.0, help="pipeline clock, MHz")
    parser.add_argument("--hidden", default="64,32,32")
    parser.add_argument("--inputs", type=int, default=16, help="inputs of the student (57, hidden 32,16, outputs 1: "
                        "the anomaly score student's shape)")
    parser.add_argument("--outputs", type=int, default=5)
    parser.add_argument("--no-synthesis", action="store_true")
    parser.add_argument("--run", type=pathlib.Path, help="a run directory whose trained student to measure")
    parser.add_argument("--layer", help="instead of the student: one dense layer N_INxN_OUT + ReLU (e.g. 16x64), "
                        "inputs fixed<16,6>, random 6-bit weights, exact accumulator and ReLU")
    parser.add_argument("--out", type=pathlib.Path, help="keep the RTL, simulator and Yosys files here")
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--warm", action="store_true", help="synthesize a second time on the filled Yosys cache")
    args = parser.parse_args(argv)

    from l1forge.graph.ir import read_graph
    from l1forge.rtl import yosys
    from l1forge.firmware.estimate import estimate
    from l1forge.rtl.check import check_rtl

    rng = np.random.default_rng(0)
    n_in = int(args.layer.split("x")[0]) if args.layer else args.inputs
    x = rng.normal(scale=2.0, size=(min(args.events, 100_000), n_in))
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or pathlib.Path(tmp)
        t0 = time.perf_counter()
        if args.layer:
            graph_json = single_layer(args.layer, rng, out / "fw")
            model = f"one dense layer {args.layer} + ReLU, random 6-bit weights"
        elif args.run:
            graph_json = args.run / "firmware" / "graph.json"
            model = str(args.run / "students" / "student" / "model.h5")
        else:
            from l1forge.firmware.describe import write_graph
            from l1forge.firmware.hls import FirmwareSettings, convert
            from l1forge.quantize.precision import Precision
            from l1forge.students.model import build_student

            student = build_student(n_in, args.outputs, tuple(int(h) for h in args.hidden.split(",")))
            student.set_weights([rng.normal(scale=0.5, size=w.shape) for w in student.get_weights()])
            hls_model = convert(student, Precision().input, FirmwareSettings(), out / "hls", compile=False)
            graph_json = write_graph(hls_model, out / "fw")
            model = f"random weights, {n_in}-{args.hidden.replace(',', '-')}-{args.outputs}"
        convert_s = time.perf_counter() - t0
        result = check_rtl(graph_json, x, out / "rtl", args.events, args.clock, synthesis=False)
        rtl, synth, yosys_cpu, load = result["rtl"], None, None, os.getloadavg()
        info = json.loads((out / "rtl" / "rtl.json").read_text())
        warm_s = None
        if not args.no_synthesis:  # Yosys's wall and CPU time (its processes, all cores together), cache empty
            with tempfile.TemporaryDirectory() as cache:
                os.environ["L1FORGE_CACHE"] = cache
                cpu0, t0 = _children_cpu(), time.perf_counter()
                synth = yosys.synthesize(out / "rtl", info, out / "rtl" / "yosys", args.clock)
                rtl["seconds"]["yosys"] = round(time.perf_counter() - t0, 2)
                yosys_cpu = round(_children_cpu() - cpu0, 1)
                if args.warm:
                    t0 = time.perf_counter()
                    yosys.synthesize(out / "rtl", info, out / "rtl" / "yosys_warm", args.clock)
                    warm_s = round(time.perf_counter() - t0, 2)
        load = [round(max(a, b), 2) for a, b in zip(load, os.getloadavg())]
        est = estimate(read_graph(graph_json), clock_mhz=args.clock)
    if rtl["mismatches"]:
        raise SystemExit(f"RTL differs from the emulator on {rtl['mismatches']} events: {rtl['first_mismatch']}")
    keep = ("source", "LUT", "LUT_by_inputs", "FF", "CARRY4", "CARRY8", "INV", "MUXF", "DSP", "BRAM", "logic_levels",
            "critical_path_ns", "achievable_clock_mhz", "meets_clock", "latency_cycles", "latency_ns", "ii_cycles")
    summary = {
        "model": model, "events": rtl["events_checked"], "mismatches": rtl["mismatches"],
        "sim_events_per_s": rtl["sim_events_per_s"], "clock_mhz": args.clock,
        "rtl": {**{k: rtl[k] for k in ("latency_cycles", "ii_cycles", "adders", "casts")},
                "cmvm_adders": info.get("cmvm_adders", 0), "registers_bits": info["registers_bits"]},
        "seconds": {"hls4ml_convert": round(convert_s, 2), **rtl["seconds"]},
        "open_synthesis": {k: synth[k] for k in keep} if synth else None,
        "estimate": {"source": "estimate (firmware/estimate.py, hls4ml path)", **{k: est[k] for k in
                     ("latency_cycles", "latency_ns", "ii_cycles", "resources")}},
        "cores": os.cpu_count(),
        "load_average_max": load,
        "yosys_cpu_s": yosys_cpu,
        "yosys_seconds_cold": rtl["seconds"].get("yosys"),
        "yosys_seconds_warm": warm_s,
        "yosys_cell_modules": info["cell_modules"],
        "layers": info.get("layers"),
        "yosys_jobs": synth.get("jobs") if synth else None,
        "yosys_cells_seconds": synth.get("seconds_cells") if synth else None,
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def single_layer(shape: str, rng, where: pathlib.Path) -> pathlib.Path:
    """The firmware graph of one dense layer ``N_INxN_OUT`` + ReLU: inputs fixed<16,6> (da4ml's reference:
    ``FixedVariableArrayInput((16,)).quantize(1, 5, 10)``), weights and biases fixed<6,1> (random), an accumulator
    wide enough to be exact (WRAP, as hls4ml writes it) and the ReLU exact on it."""
    n_in, n_out = (int(v) for v in shape.split("x"))
    wt = "fixed<6,1,TRN,WRAP,0>"
    acc = "fixed<%d,%d,TRN,WRAP,0>" % (16 + 6 + (n_in - 1).bit_length(), 6 + 1 + (n_in - 1).bit_length())
    relu_t = "ufixed<%d,%d,TRN,WRAP,0>" % (15 + 6 + (n_in - 1).bit_length(), 6 + (n_in - 1).bit_length())
    layers = [{"name": "x", "op": "input", "class_name": "InputLayer", "inputs": [], "shape": [n_in],
               "result_t": "fixed<16,6,RND_CONV,SAT,0>"},
              {"name": "dense", "op": "dense", "class_name": "Dense", "inputs": ["x"], "shape": [n_out],
               "result_t": acc, "accum_t": acc, "weight_t": wt, "bias_t": wt, "product": "mult",
               "strategy": "latency", "reuse_factor": 1, "n_in": n_in, "n_out": n_out},
              {"name": "relu", "op": "relu", "class_name": "Activation", "inputs": ["dense"], "shape": [n_out],
               "result_t": relu_t}]
    graph = {"schema": "l1forge.firmware-graph/1", "project_name": f"layer{n_in}x{n_out}", "io_type": "io_parallel",
             "inputs": ["x"], "outputs": ["relu"], "layers": layers}
    codes = lambda size: np.clip(np.round(rng.normal(scale=0.5, size=size) * 16), -32, 31) / 16  # noqa: E731
    where.mkdir(parents=True, exist_ok=True)
    (where / "graph.json").write_text(json.dumps(graph))
    np.savez(where / "graph_weights.npz", **{"dense/weight": codes((n_in, n_out)), "dense/bias": codes(n_out)})
    return where / "graph.json"


if __name__ == "__main__":
    main()
