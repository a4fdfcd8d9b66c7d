"""Published designs of the same class as the flow's students, and l1forge's own RTL before issue 28, as reference
rows beside a run's firmware: each labelled with the stage its numbers come from (an HLS estimate is not a
synthesis result, a synthesis result is not post-route), and with its source.

``side_by_side(firmware)`` gives the rows for a summary ``firmware`` block: the hls4ml-path estimate of this run,
its open synthesis (Yosys, this run's RTL), then the anchors below. Numbers of other designs are quoted, not
measured here; the l1forge row "before" is the measurement of the previous RTL writer recorded in docs/hardware.md.
"""

from __future__ import annotations

ANCHORS = [
    {"name": "JEDI-linear, 16 constituents (jet tagging)", "stage": "post-route (Vivado)",
     "latency_ns": 52.4, "latency_cycles": None, "clock_mhz": None, "LUT": 37_700, "FF": 20_100, "DSP": 0,
     "source": "JEDI-linear: da4ml-generated Verilog placed and routed with Vivado, as quoted in issue 28"},
    {"name": "hls4ml jet MLP 16-64-32-32-5, ap_fixed<16,6>", "stage": "HLS estimate (Vivado HLS 2019.2 csynth)",
     "latency_ns": 60.0, "latency_cycles": 12, "clock_mhz": 200.0, "LUT": 109_753, "FF": 12_562, "DSP": 2_118,
     "source": "Liu-Zhiheng/hls4ml-pynqz2-vivado2019-2-results results/RESULTS_VIVADO2019_2.md @92b582b "
               "(../shared/synthesis_points.md row C1: xcu250, Latency, RF=1, io_parallel)"},
    {"name": "AXOL1TL anomaly detection budget", "stage": "trigger budget (CMS Global Trigger)",
     "latency_ns": 50.0, "latency_cycles": None, "clock_mhz": None, "LUT": None, "FF": None, "DSP": None,
     "source": "the CMS Global Trigger's latency allowance for the AXOL1TL algorithm, as quoted in issue 28"},
    {"name": "l1forge RTL before issue 28 (demo tagging student 16-64-32-32-5, 6-bit)",
     "stage": "open synthesis (Yosys 0.23 synth_xilinx xcup)", "latency_ns": 116.7, "latency_cycles": 28,
     "clock_mhz": 240.0, "LUT": 38_400, "FF": 41_000, "DSP": 0,
     "source": "the rtl stage of a fresh make run before the timing-driven pipeline (issue 28; docs/hardware.md)"},
]


def side_by_side(firmware: dict) -> list[dict]:
    """Rows {name, stage, latency_ns, latency_cycles, clock_mhz, LUT, FF, DSP, source} for a summary ``firmware``
    block (the estimate's fields and its ``open_synthesis``), then the ANCHORS."""
    rows = []
    res = firmware.get("resources") or {}
    if "latency_ns" in firmware:
        rows.append({"name": "this student, hls4ml path", "stage": firmware.get("source", "estimate"),
                     "latency_ns": firmware.get("latency_ns"), "latency_cycles": firmware.get("latency_cycles"),
                     "clock_mhz": firmware.get("clock_mhz"), "LUT": res.get("LUT"), "FF": res.get("FF"),
                     "DSP": res.get("DSP"), "source": "firmware/estimate.py on this run's firmware graph"})
    if synth := firmware.get("open_synthesis"):
        rows.append({"name": "this student, l1forge RTL", "stage": f"open synthesis ({synth.get('source')})",
                     "latency_ns": synth.get("latency_ns"), "latency_cycles": synth.get("latency_cycles"),
                     "clock_mhz": synth.get("clock_mhz"), "LUT": synth.get("LUT"), "FF": synth.get("FF"),
                     "DSP": synth.get("DSP"), "achievable_clock_mhz": synth.get("achievable_clock_mhz"),
                     "source": "this run's rtl stage (rtl/check.py)"})
    return rows + [dict(a) for a in ANCHORS]
