"""Resources available on the FPGAs of Level-1 trigger boards, and the utilisation of a design on them.

Counts are the device totals of the AMD/Xilinx product tables: "UltraScale+ FPGAs Product Selection Guide"
(XMP103) and "UltraScale Architecture and Product Data Sheet: Overview" (DS890, Virtex and Kintex UltraScale+
and Kintex UltraScale device-feature tables), and "7 Series FPGAs Data Sheet: Overview" (DS180) for the Virtex-7.
They match the ``<AvailableResources>`` that Vivado/Vitis HLS writes into its csynth report for these parts.

Units: ``LUT`` are CLB LUTs, ``FF`` CLB flip-flops, ``DSP`` DSP slices (DSP48E2 on UltraScale(+), DSP48E1 on
7-series), ``URAM`` 288 Kb UltraRAM blocks and ``BRAM_18K`` 18 Kb block RAMs: the product tables count 36 Kb
blocks, each of which is two RAMB18, and HLS reports count in RAMB18 (``BRAM_18K``), so the table holds twice the
36 Kb count. The flow's ``resources["BRAM"]`` is in the same 18 Kb unit (see firmware/vendor.py).
"""

from __future__ import annotations

import re

# family prefix: (LUT, FF, DSP, 36 Kb block RAMs, URAM)
_PARTS = {
    "xcvu13p": (1_728_000, 3_456_000, 12_288, 2_688, 1_280),  # Virtex UltraScale+ VU13P (hls4ml default part)
    "xcvu11p": (1_296_000, 2_592_000, 9_216, 2_016, 960),  # Virtex UltraScale+ VU11P
    "xcvu9p": (1_182_240, 2_364_480, 6_840, 2_160, 960),  # Virtex UltraScale+ VU9P
    "xcvu7p": (788_160, 1_576_320, 4_560, 1_440, 640),  # Virtex UltraScale+ VU7P
    "xcku15p": (522_720, 1_045_440, 1_968, 984, 128),  # Kintex UltraScale+ KU15P
    "xcku115": (663_360, 1_326_720, 5_520, 2_160, 0),  # Kintex UltraScale KU115
    "xc7vx690t": (433_200, 866_400, 3_600, 1_470, 0),  # Virtex-7 690T (Phase-1 trigger boards)
}


def part_family(part: str) -> str:
    """Device prefix of a full part name: 'xcvu13p-flga2577-2-e' -> 'xcvu13p'."""
    return re.split(r"[-_]", part.strip().lower(), maxsplit=1)[0]


def part_resources(part: str) -> dict:
    """{"LUT", "FF", "DSP", "BRAM_18K", "URAM"} available on ``part`` (any package and speed grade)."""
    family = part_family(part)
    if family not in _PARTS:
        raise ValueError(f"unknown FPGA part '{part}': known families are {', '.join(sorted(_PARTS))}")
    lut, ff, dsp, bram36, uram = _PARTS[family]
    return {"LUT": lut, "FF": ff, "DSP": dsp, "BRAM_18K": 2 * bram36, "URAM": uram}


def utilisation(resources: dict, part: str) -> dict:
    """Percent of ``part`` used by ``resources`` (keys LUT, FF, DSP, BRAM in 18 Kb units, optional URAM)."""
    available = part_resources(part)
    available["BRAM"] = available.pop("BRAM_18K")
    out = {}
    for key, used in resources.items():
        if key not in available:
            raise ValueError(f"unknown resource '{key}': expected one of {', '.join(available)}")
        out[key] = 100.0 * used / available[key] if available[key] else float("inf") if used else 0.0
    return out
