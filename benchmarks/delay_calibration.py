"""Calibrate the writer's delay model (rtl/delay.py) against Yosys's mapping of the writer's own cells.

    python benchmarks/delay_calibration.py [--write]     # --write: regenerate rtl/calibration.py

Every leaf cell the RTL writer emits (rtl/cells.py: two-operand adders by width, plain, subtracting and shifted;
constant additions; fixed-point casts with each kind of rounding, saturation and ReLU; the select, max/min and
ROM cells) is synthesized here by Yosys 0.23 ``synth_xilinx -family xcup`` exactly as rtl/yosys.py synthesizes it
(one keep_hierarchy module), and the longest input-to-output path of its mapped netlist is measured with
``rtl.yosys.critical_path`` (its input net included, as the writer counts a cell): LUT levels, CARRY4 segments, and the delay in the primitive delays of rtl/delay.py
(which come from the sources written there; the routed-net delay is not calibrated: no placer here). Beside each
measurement the script prints what the writer's delay function predicts for the same cell (``model_ns``, the
cell's own input net included, as the netlist path counts it). The writer must never predict less than the netlist
measures (otherwise the synthesized design misses the clock the writer planned for); ``tests/test_rtl.py`` checks
that on the stored table.

The table is stored, with the command, date, machine and Yosys version, in ``rtl/calibration.py`` (data only).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import pprint
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from l1forge.quantize.fixed import FixedType  # noqa: E402
from l1forge.rtl import cells, delay  # noqa: E402
from l1forge.rtl.yosys import critical_path, find_yosys  # noqa: E402

ADDER_WIDTHS = (4, 8, 12, 16, 20, 24, 32, 40)
CAST_WIDTHS = (10, 16, 24)


def cases() -> list[dict]:
    """Each calibration cell: {"kind", "width", "text" (module CELL), "model_ns" (the writer's prediction)}."""
    out = []
    for w in ADDER_WIDTHS:
        out.append({"kind": "add", "width": w, "model_ns": delay.adder_ns(w),
                    "text": cells.adder("CELL", (w - 1, True, 0, 1), (w - 1, True, 0, 1), w)})
        out.append({"kind": "sub", "width": w, "model_ns": delay.adder_ns(w, True),
                    "text": cells.adder("CELL", (w - 1, True, 0, 1), (w - 1, True, 0, -1), w)})
        out.append({"kind": "add_shifted", "width": w, "model_ns": delay.adder_ns(w),
                    "text": cells.adder("CELL", (w - 3, True, 0, 1), (w - 3, True, 2, 1), w)})
        out.append({"kind": "add_const", "width": w, "model_ns": delay.adder_ns(w),
                    "text": cells.add_const("CELL", (w - 1, True, 0, 1), 37, w)})
    for wa in CAST_WIDTHS:
        frac_in = wa - 6
        lo, hi = -(1 << (wa - 1)), (1 << (wa - 1)) - 1
        for rounding in ("TRN", "RND", "RND_CONV"):
            for overflow in ("WRAP", "SAT"):
                for relu in (False, True):
                    t = FixedType(6, 1, not relu, rounding, overflow)
                    plan = cells.plan_cast(lo, hi, -frac_in, t, relu)
                    if plan is None or "const" in plan:
                        continue
                    text, _ = cells.cast("CELL", wa, True, plan, t)
                    out.append({"kind": f"cast_{rounding}_{overflow}" + ("_relu" if relu else ""), "width": wa,
                                "model_ns": delay.cast_ns(plan, t, wa), "text": text})
    for wa in (8, 12, 13, 14, 16, 20):  # saturation without rounding: LUTs up to 12 bits, a carry chain beyond
        lo, hi = -(1 << (wa - 1)), (1 << (wa - 1)) - 1
        for relu in (False, True):
            t = FixedType(6, 1, not relu, "TRN", "SAT")
            plan = cells.plan_cast(lo, hi, -5, t, relu)
            text, _ = cells.cast("CELL", wa, True, plan, t)
            out.append({"kind": "sat_nodrop" + ("_relu" if relu else ""), "width": wa,
                        "model_ns": delay.cast_ns(plan, t, wa), "text": text})
    for wc in (8, 16, 24):
        out.append({"kind": "select", "width": wc, "model_ns": delay.select_ns(wc),
                    "text": cells.select("CELL", (wc, True), (8, False, 0), (8, False, 0), 8)})
        out.append({"kind": "max", "width": wc, "model_ns": delay.compare_ns(wc + 1),
                    "text": cells.maxmin("CELL", (wc, True, 0), (wc, True, 0), wc, "max")})
    for wa in (6, 8, 10):
        table = {c: (c * 37 + 11) % 251 - 100 for c in range(1 << wa)}
        out.append({"kind": "rom", "width": wa, "model_ns": delay.rom_ns(wa),
                    "text": cells.rom("CELL", wa, False, table, 8)})
    return out


def measure(items: list[dict], work: pathlib.Path) -> list[dict]:
    """Synthesize every cell in one Yosys run (each its own keep_hierarchy module) and measure each module's path."""
    exe, version = find_yosys()
    texts, insts, ports = [], [], []
    for k, item in enumerate(items):
        name = f"cal{k}"
        item["module"] = name
        texts.append(item["text"].replace("module CELL(", f"module {name}("))
    import re

    for k, text in enumerate(texts):
        name = f"cal{k}"
        pl = re.findall(r"(input|output)(?: reg)? \[(\d+):0\] (\w+)", text.split(");")[0])
        ports += [f"{d} [{w}:0] {name}_{n}" for d, w, n in pl]
        insts.append(f"  {name} u_{name}(" + ", ".join(f".{n}({name}_{n})" for _, _, n in pl) + ");")
    src = work / "cal.v"
    src.write_text("\n".join(texts) + "\nmodule cal_top(\n  " + ",\n  ".join(ports) + "\n);\n" + "\n".join(insts) +
                   "\nendmodule\n")
    script = work / "cal.ys"
    script.write_text(f"read_verilog {src}\nsynth_xilinx -family xcup -top cal_top\n"
                      f"write_json {work / 'cal.json'}\n")
    subprocess.run([exe, "-q", "-l", str(work / "cal.log"), "-s", str(script)], check=True)
    netlist = json.loads((work / "cal.json").read_text())
    rows = []
    for item in items:
        path = critical_path(netlist, item["module"], port_net=True)
        luts = sum(1 for c in netlist["modules"][item["module"]]["cells"].values() if c["type"].startswith("LUT"))
        rows.append({"kind": item["kind"], "width": item["width"], "netlist_ns": path["critical_path_ns"],
                     "lut_levels": path["lut_levels"], "carry_segments": path["carry_segments"], "luts": luts,
                     "model_ns": round(item["model_ns"], 3)})
    return rows, version


def _cpu() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="regenerate rtl/calibration.py")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows, version = measure(cases(), pathlib.Path(tmp))
    seconds = time.perf_counter() - t0
    for r in rows:
        flag = "" if r["model_ns"] >= r["netlist_ns"] - 1e-9 else "   <-- model below netlist"
        print(f"{r['kind']:<24} w={r['width']:<3} netlist {r['netlist_ns']:.3f} ns ({r['lut_levels']} LUT, "
              f"{r['carry_segments']} CARRY4)  model {r['model_ns']:.3f} ns{flag}")
    print(f"{len(rows)} cells in {seconds:.0f} s")
    if args.write:
        data = {"command": "python benchmarks/delay_calibration.py --write",
                "date": datetime.date.today().isoformat(),
                "machine": f"{_cpu()}, {os.cpu_count()} cores",
                "tool": f"yosys {version} synth_xilinx -family xcup, one keep_hierarchy module per cell",
                "primitive_delays": {k: v for k, v in delay.CONSTANTS.items()},
                "cells": rows}
        target = pathlib.Path(__file__).resolve().parents[1] / "rtl" / "calibration.py"
        head = {k: v for k, v in data.items() if k != "cells"}
        rows = ",\n".join("  " + json.dumps(r) for r in rows)
        target.write_text('"""The delay model\'s calibration table (generated by benchmarks/delay_calibration.py '
                          '--write; data only).\n\nEach row: a leaf cell of the RTL writer synthesized by Yosys, the '
                          'longest input-to-output path of its mapped netlist\n(``netlist_ns``, its input net '
                          'included; LUT levels, CARRY4 segments; in the primitive delays of rtl/delay.py) and\nthe '
                          'writer\'s prediction (``model_ns``), which must not be below it.\n"""\n\nCALIBRATION = ' +
                          pprint.pformat(head, width=118, sort_dicts=False) + "\n\nCELLS = [\n" + rows + "\n]\n")
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
