"""Measured hardware without a vendor: the RTL of the firmware graph, simulated against the emulator, synthesized.

``check_rtl(graph_json, x, out_dir, ...)`` writes the Verilog (rtl/lower.py) into ``out_dir``, compiles it with
Verilator (rtl/verilator.py), streams ``events`` events through it (the rows of ``x`` cycled, x: (n, *input
shape) float inputs as the emulator takes them), compares every output code with ``Emulator.run`` bit for bit,
writes the deliverable beside the Verilog (rtl/deliverable.py: AXI4-Stream wrapper, testbench on the first
``TESTBENCH_EVENTS`` of those events, Vivado files, README), runs that testbench in Verilator when ``testbench`` is
set, and runs Yosys (rtl/yosys.py) unless ``synthesis`` is false. With ``package_dir`` (the run directory's
``rtl/``) the deliverable alone, Verilog, wrapper, testbench and vectors, Vivado files, README and rtl.json, is
copied there: a self-contained folder without the simulator build and synthesis work files. Returns::

    {"rtl": {"events_checked", "mismatches", "first_mismatch" ({"event", "output", "rtl", "emulator"} or None),
             "sim_events_per_s", "latency_cycles", "ii_cycles", "adders", "casts", "dir", "seconds": {...},
             "testbench": {"events", "passed", "line", "seconds"} or None, "layers": [per layer: cycles,
             logic levels, slack], "package": {"dir", "files"} or None},
     "open_synthesis": {...} or None}

A layer the writer does not support raises RtlError (one line) before anything is written; a missing or failing
tool raises ToolError (one line: how to install it, or its last error line and the full log's path).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import time

import numpy as np

from l1forge.emulation.emulator import Emulator
from l1forge.graph.ir import Graph, read_graph
from l1forge.rtl import deliverable, verilator, yosys
from l1forge.rtl.lower import RtlError, write_rtl


TESTBENCH_EVENTS = 5000  # emulator vectors in the deliverable's testbench (tb_in.mem, tb_out.mem)


def cycled(x: np.ndarray, events: int) -> np.ndarray:
    """``events`` rows of ``x``, repeating it from the start as often as needed."""
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("no input events to simulate")
    return x[np.arange(events) % len(x)]


def first_mismatch(rtl: np.ndarray, emu: np.ndarray) -> dict | None:
    bad = np.argwhere(rtl != emu)
    if not len(bad):
        return None
    event, output = (int(v) for v in bad[0])
    return {"event": event, "output": output, "rtl": int(rtl[event, output]), "emulator": int(emu[event, output])}


def check_rtl(graph_json, x: np.ndarray, out_dir, events: int, clock_mhz: float = 240.0, synthesis: bool = True,
              jobs: int = 2, yosys_timeout_s: float | None = None, testbench: bool = False,
              part: str = deliverable.DEFAULT_PART, package_dir=None) -> dict:
    graph = read_graph(graph_json)
    out_dir = pathlib.Path(out_dir)
    seconds = {}
    t0 = time.perf_counter()
    info = write_rtl(graph, None, out_dir, clock_mhz)
    seconds["write"] = time.perf_counter() - t0
    if wide := [q for q in info["inputs"] + info["outputs"] if q["width"] > 64]:
        raise RtlError(f"port {wide[0]['name']} is {wide[0]['width']} bits: the Verilator check streams 64-bit codes "
                       f"(the Verilog is written in {out_dir}; an input and output type of at most 64 bits makes it "
                       "checkable)")
    t0 = time.perf_counter()
    sim = verilator.build(out_dir, info, out_dir / "verilator", jobs=jobs)
    seconds["verilator_build"] = time.perf_counter() - t0
    emulator = Emulator(graph)
    xs = cycled(x, events)
    t0 = time.perf_counter()
    emu = emulator.run(xs)  # several outputs: their codes side by side, in graph["outputs"] order, as the ports
    emu = np.concatenate([o.reshape(len(xs), -1) for o in (emu if isinstance(emu, list) else [emu])], axis=1)
    seconds["emulator"] = time.perf_counter() - t0
    codes = emulator.input_type.from_float(xs.reshape(len(xs), -1))
    t0 = time.perf_counter()
    rtl_out, rate = verilator.simulate(sim, codes, len(info["outputs"]))
    seconds["simulation"] = time.perf_counter() - t0
    mismatch = first_mismatch(rtl_out, emu)
    n_tb = min(len(xs), TESTBENCH_EVENTS)
    names = deliverable.write_package(out_dir, info, codes[:n_tb], emu[:n_tb], part)
    package = None
    if package_dir is not None:
        package = {"dir": str(package_dir), "files": copy_package(out_dir, package_dir, info["files"] + names)}
    bench = None
    if testbench:
        t0 = time.perf_counter()
        bench = {"events": n_tb, **verilator.run_testbench(out_dir, info, out_dir / "verilator", jobs=jobs)}
        seconds["testbench"] = time.perf_counter() - t0
    block = {"events_checked": int(len(xs)), "mismatches": int(np.any(rtl_out != emu, axis=1).sum()),
             "first_mismatch": mismatch, "sim_events_per_s": round(rate, 1),
             "latency_cycles": info["latency_cycles"], "ii_cycles": info["ii_cycles"], "clock_mhz": clock_mhz,
             "adders": info["adders"], "casts": info["casts"], "dir": str(out_dir), "testbench": bench,
             "layers": info["layers"], "package": package}
    synth = None
    if synthesis:
        t0 = time.perf_counter()
        synth = yosys.synthesize(out_dir, info, out_dir / "yosys", clock_mhz, timeout_s=yosys_timeout_s)
        synth.pop("cells", None)
        seconds["yosys"] = time.perf_counter() - t0
    block["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    (out_dir / "check.json").write_text(json.dumps({"rtl": block, "open_synthesis": synth}, indent=1))
    return {"rtl": block, "open_synthesis": synth}


def copy_package(src, dst, names: list[str]) -> list[str]:
    """Copy the deliverable's files (and rtl.json) from ``src`` into a fresh ``dst``; returns their names."""
    src, dst = pathlib.Path(src), pathlib.Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    names = sorted(set(names) | {"rtl.json"})
    for name in names:
        shutil.copy2(src / name, dst / name)
    return names


def open_synthesis(graph: Graph, clock_mhz: float, work_dir) -> dict:
    """Yosys on the RTL of ``graph`` (one process: callers such as the design scan parallelise over points); the
    dict of ``yosys.synthesize`` (LUT, FF, ... under "resources", latency, achievable clock, source)."""
    work_dir = pathlib.Path(work_dir)
    info = write_rtl(graph, None, work_dir / "rtl", clock_mhz)
    return yosys.synthesize(work_dir / "rtl", info, work_dir / "yosys", jobs=1)
