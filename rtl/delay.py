"""The delay model of the open RTL path: where the RTL writer puts pipeline registers, and the timing estimate
that ``rtl/yosys.py`` computes on the synthesized netlist.

All numbers are in nanoseconds for an UltraScale+ part, -2 speed grade. They are rough typical values of the
order given in Xilinx DS923 (Virtex UltraScale+ switching characteristics: LUT, carry and flip-flop delays) with a
routing delay per net of the size Vivado timing reports show for placed-and-routed hls4ml designs. They are not
fitted to any measurement made here (no vendor tools): treat every clock derived from them as an estimate good to
about +-30%. One model serves both the writer and the netlist timing so that the two agree with each other.
"""

from __future__ import annotations

import math

T_LUT = 0.10  # LUT logic delay, any input to O (DS923 order of magnitude)
T_NET = 0.40  # one routed net between two cells (typical of Vivado reports; dominant term)
T_CARRY_IN = 0.25  # into a carry chain: S/DI input to CO/O of its CARRY4/CARRY8 segment
T_CARRY4 = 0.04  # along the chain: CI to CO of one 4-bit segment (dedicated route, no net delay)
T_CLK_Q = 0.10  # flip-flop clock to Q
T_SETUP = 0.05  # flip-flop setup
T_UNCERTAINTY = 0.10  # clock uncertainty / jitter reserved from every period


def stage_budget_ns(clock_mhz: float) -> float:
    """Combinational time available between two registers at ``clock_mhz`` (ns)."""
    return 1000.0 / clock_mhz - T_CLK_Q - T_SETUP - T_UNCERTAINTY - T_NET  # the last net: into the register


def adder_ns(width: int, subtract: bool = False) -> float:
    """A two-operand ripple-carry adder of ``width`` output bits: net + LUT (the bit's sum), net into the carry
    chain, then the chain; a subtraction adds the inverter level Yosys maps it to (INV before the LUT)."""
    return 2 * T_NET + T_LUT + T_CARRY_IN + T_CARRY4 * max(math.ceil(width / 4) - 1, 0) + (T_NET + T_LUT) * subtract


def lut_levels_ns(levels: int) -> float:
    """``levels`` LUT levels, each with the net that feeds it."""
    return levels * (T_LUT + T_NET)


def compare_levels(width: int) -> int:
    """LUT6 levels of a comparison of ``width`` bits against a constant (a 6-input reduction tree)."""
    return max(1, math.ceil(math.log(max(width, 2), 6)) + 1)


def path_clock_mhz(path_ns: float) -> float:
    """The highest clock at which a register-to-register path of ``path_ns`` (logic + routing) meets timing."""
    return 1000.0 / (path_ns + T_CLK_Q + T_SETUP + T_UNCERTAINTY)


CONSTANTS = {"T_LUT": T_LUT, "T_NET": T_NET, "T_CARRY_IN": T_CARRY_IN, "T_CARRY4": T_CARRY4, "T_CLK_Q": T_CLK_Q,
             "T_SETUP": T_SETUP, "T_UNCERTAINTY": T_UNCERTAINTY,
             "source": "typical UltraScale+ -2 delays of the order of Xilinx DS923 and Vivado timing reports; not "
                       "fitted here (estimate, about +-30%)"}


def compare_ns(width: int) -> float:
    """A comparison of two ``width``-bit values (a carry chain) and the 2:1 multiplexer it drives."""
    return adder_ns(width) + lut_levels_ns(1)


def select_ns(cond_width: int) -> float:
    """``c > 0 ? a : b``: the sign and or-reduction of ``c`` (a reduction tree), then the multiplexer."""
    return lut_levels_ns(compare_levels(cond_width) + 1)


def rom_ns(address_bits: int) -> float:
    """A case-statement ROM: LUT6 for 6 address bits, MUXF7/F8 beside them for 8, a mux tree beyond."""
    return lut_levels_ns(1 + max(0, math.ceil((address_bits - 8) / 2)))


def multiplier_ns(wa: int, wb: int) -> float:
    """A variable product mapped to LUTs and carry chains: a tree of ceil(log2(min width)) adders of the full width
    (a DSP48E2 is of the same order at these widths)."""
    return adder_ns(wa + wb) * max(1, math.ceil(math.log2(max(min(wa, wb), 2))))
