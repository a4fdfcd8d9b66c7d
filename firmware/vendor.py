"""Vendor synthesis of an hls4ml project (when Vivado/Vitis is installed) and parsers for its reports.

Reports read (the layout hls4ml's build_prj.tcl and vivado_synth.tcl produce, and that
hls4ml/report/vivado_report.py:parse_vivado_report reads):

* C synthesis, ``<project>_prj/solution1/syn/report/<project>_csynth.xml`` (Vivado HLS and Vitis HLS):
  ``UserAssignments/TargetClockPeriod``, ``PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod``,
  ``SummaryOfOverallLatency/{Best,Worst}-caseLatency`` and ``Interval-{min,max}`` in cycles, and
  ``AreaEstimates/{Resources,AvailableResources}/{LUT,FF,DSP,BRAM_18K,URAM}``; Vivado HLS names the DSP tag
  ``DSP48E``, Vitis HLS ``DSP`` (UG902 and UG1399, "Synthesis Report").
* Vivado logic synthesis, ``vivado_synth.rpt`` (``report_utilization``, UG906): the ``Used`` column of the
  "CLB LUTs"/"Slice LUTs", "CLB Registers"/"Slice Registers", "Block RAM Tile", "URAM" and "DSPs" rows. A Block
  RAM Tile is 36 Kb (a RAMB18 counts 0.5), so it is doubled into the 18 Kb unit of ``BRAM_18K``; hls4ml's own
  parser stores the tile count under ``BRAM_18K`` unconverted.

hls4ml's parser needs the whole project (project.tcl, the .app solution file), prints instead of raising and
returns partial dicts, so the two reports are parsed here, each from its path, with one-line errors.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import xml.etree.ElementTree as ET

# The executable each hls4ml 1.3.0 backend runs (VitisBackend.build, VivadoBackend.build); vsynth runs vivado.
_BACKEND_TOOL = {"vitis": "vitis-run", "vivado": "vivado_hls"}
_TOOLS = ("vitis-run", "vitis_hls", "vivado_hls", "vivado")
_RPT_ROWS = {
    "CLB LUTs": "LUT",
    "Slice LUTs": "LUT",
    "CLB Registers": "FF",
    "Slice Registers": "FF",
    "DSPs": "DSP",
    "Block RAM Tile": "BRAM_18K",
    "URAM": "URAM",
}


class ReportError(ValueError):
    """A missing or malformed vendor report; the one-line message names the file."""


def find_vendor_tool() -> str | None:
    """The first of vitis-run (Vitis 2024+, what hls4ml 1.3.0's Vitis backend runs), vitis_hls, vivado_hls and
    vivado found on PATH (``shutil.which``), or None."""
    return next((tool for tool in _TOOLS if shutil.which(tool)), None)


def require_vendor_tools(backend: str, logic: bool = False) -> None:
    """Raise a one-line RuntimeError unless the tools an hls4ml ``backend`` build needs are on PATH."""
    if backend.lower() not in _BACKEND_TOOL:
        raise ValueError(f"vendor synthesis supports the hls4ml Vitis and Vivado backends, not {backend}")
    needed = [_BACKEND_TOOL[backend.lower()]] + (["vivado"] if logic else [])
    if missing := [tool for tool in needed if shutil.which(tool) is None]:
        raise RuntimeError(
            f"no Vivado/Vitis HLS on PATH: the hls4ml {backend} build needs "
            f"{' and '.join(missing)}; use the estimate (firmware/estimate.py) or install the AMD tools"
        )


def run_vendor_synthesis(hls_model, logic: bool = False) -> dict:
    """C synthesis (and Vivado logic synthesis if ``logic``) of a written hls4ml project; its parsed reports."""
    require_vendor_tools(hls_model.config.backend.name, logic)
    hls_model.build(csim=False, synth=True, vsynth=logic)
    return parse_reports(hls_model.config.get_output_dir())


def parse_reports(project_dir) -> dict:
    """The flow's firmware block from an hls4ml project's C synthesis and, if present, logic synthesis reports.

    {"latency_cycles" (worst case), "latency_ns" (at the target clock), "ii_cycles" (maximum interval),
    "resources": {"LUT", "FF", "DSP", "BRAM" (18 Kb)}, "source": "vitis"|"vivado", "method", plus
    "latency_best_cycles", "ii_min_cycles", "target_clock_ns", "estimated_clock_ns", "uram", "part", "tool",
    "available": {"LUT", "FF", "DSP", "BRAM"}}. Resources come from vivado_synth.rpt when it exists (source
    "vivado"), else from the C synthesis estimate (source "vitis" for Vitis HLS, "vivado" for Vivado HLS).
    """
    project_dir = pathlib.Path(project_dir)
    name = _project_name(project_dir / "project.tcl")
    xml_path = project_dir / f"{name}_prj" / "solution1" / "syn" / "report" / f"{name}_csynth.xml"
    hls = read_csynth(xml_path)
    rpt_path = project_dir / "vivado_synth.rpt"
    if rpt_path.exists():
        used, source = read_utilisation(rpt_path), "vivado"
        method = f"logic synthesis report {rpt_path}; latency from C synthesis report {xml_path}"
    else:
        used, source = hls["resources"], "vitis" if hls["tool"].startswith("Vitis") else "vivado"
        method = f"C synthesis report {xml_path}"
    return {
        "latency_cycles": hls["latency_worst_cycles"],
        "latency_ns": hls["latency_worst_cycles"] * hls["target_clock_ns"],
        "ii_cycles": hls["ii_max_cycles"],
        "resources": _flow_names(used),
        "source": source,
        "method": method,
        "latency_best_cycles": hls["latency_best_cycles"],
        "ii_min_cycles": hls["ii_min_cycles"],
        "target_clock_ns": hls["target_clock_ns"],
        "estimated_clock_ns": hls["estimated_clock_ns"],
        "uram": used["URAM"],
        "part": hls["part"],
        "tool": hls["tool"],
        "available": _flow_names(hls["available"]),
    }


def _flow_names(resources: dict) -> dict:
    return {"LUT": resources["LUT"], "FF": resources["FF"], "DSP": resources["DSP"], "BRAM": resources["BRAM_18K"]}


def _project_name(tcl: pathlib.Path) -> str:
    try:
        match = re.search(r'set project_name "([^"]+)"', tcl.read_text())
    except OSError as exc:
        raise ReportError(f"{tcl}: cannot read the hls4ml project script ({exc.strerror})") from None
    if match is None:
        raise ReportError(f"{tcl}: no 'set project_name' line")
    return match[1]


def read_csynth(path) -> dict:
    """Vivado/Vitis HLS ``<top>_csynth.xml``: {"tool", "part", "target_clock_ns", "estimated_clock_ns",
    "latency_best_cycles", "latency_worst_cycles", "ii_min_cycles", "ii_max_cycles",
    "resources" and "available": {"LUT", "FF", "DSP", "BRAM_18K", "URAM"}}."""
    path = pathlib.Path(path)
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the C synthesis report ({exc.strerror})") from None
    except ET.ParseError as exc:
        raise ReportError(f"{path}: malformed XML ({exc})") from None
    if root.tag != "profile":
        raise ReportError(f"{path}: root element <{root.tag}> is not the csynth <profile>")

    def text(xpath: str, default: str | None = None) -> str:
        node = root.find(xpath)
        if node is None or not (node.text or "").strip():
            if default is not None:
                return default
            raise ReportError(f"{path}: no <{xpath}> in the C synthesis report")
        return node.text.strip()

    def number(xpath: str, kind=int, default: str | None = None):
        value = text(xpath, default)
        try:
            return kind(value)
        except ValueError:
            raise ReportError(f"{path}: <{xpath}> is {value!r}, not a number") from None

    vivado_hls = root.find("AreaEstimates/Resources/DSP48E") is not None
    tags = {"LUT": "LUT", "FF": "FF", "DSP": "DSP48E" if vivado_hls else "DSP", "BRAM_18K": "BRAM_18K", "URAM": "URAM"}

    def area(section: str) -> dict:  # 7-series parts have no URAM tag
        return {
            key: number(f"AreaEstimates/{section}/{tag}", default="0" if key == "URAM" else None)
            for key, tag in tags.items()
        }

    latency, timing = "PerformanceEstimates/SummaryOfOverallLatency/", "PerformanceEstimates/SummaryOfTimingAnalysis/"
    return {
        "tool": f"{'Vivado' if vivado_hls else 'Vitis'} HLS {text('ReportVersion/Version', '?')}",
        "part": text("UserAssignments/Part", "?"),
        "target_clock_ns": number("UserAssignments/TargetClockPeriod", float),
        "estimated_clock_ns": number(timing + "EstimatedClockPeriod", float),
        "latency_best_cycles": number(latency + "Best-caseLatency"),
        "latency_worst_cycles": number(latency + "Worst-caseLatency"),
        "ii_min_cycles": number(latency + "Interval-min"),
        "ii_max_cycles": number(latency + "Interval-max"),
        "resources": area("Resources"),
        "available": area("AvailableResources"),
    }


def read_utilisation(path) -> dict:
    """Vivado ``report_utilization`` text (``vivado_synth.rpt``): used {"LUT", "FF", "DSP", "BRAM_18K", "URAM"}."""
    path = pathlib.Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the utilisation report ({exc.strerror})") from None
    used = {}
    for line in lines:
        cells = [cell.strip() for cell in line.split("|")]
        key = _RPT_ROWS.get(cells[1].rstrip("*").strip()) if len(cells) > 3 else None
        if key is None or key in used:  # the first tables are the device totals; later ones split them by SLR
            continue
        try:
            value = float(cells[2])
        except ValueError:
            raise ReportError(f"{path}: '{cells[1]}' row has Used {cells[2]!r}, not a number") from None
        used[key] = round(2 * value) if key == "BRAM_18K" else int(value)
    used.setdefault("URAM", 0)  # 7-series devices have no UltraRAM row
    if missing := [key for key in ("LUT", "FF", "DSP", "BRAM_18K") if key not in used]:
        raise ReportError(f"{path}: no {', '.join(missing)} row in the utilisation tables")
    return used
