"""The delay model of the open RTL path: where the RTL writer puts pipeline registers, and the timing estimate
that ``rtl/yosys.py`` computes on the synthesized netlist.

All numbers are in nanoseconds for an UltraScale+ part, -2 speed grade. The primitive delays are rough typical
values of the order given in Xilinx DS923 (Virtex UltraScale+ switching characteristics) and shown by Vivado timing
reports of placed-and-routed hls4ml designs; the routed-net delay ``T_NET`` dominates and is not calibrated here
(no placer, no vendor tool): treat every clock derived from them as an estimate good to about +-30%.

Two facts of the UltraScale+ CLB shape the model (Xilinx UG574, UltraScale Architecture CLB User Guide, "Carry
Logic"): the ``S`` inputs of a slice's carry chain are the ``O6`` outputs of the same slice's LUTs and its ``DI``
inputs their ``O5`` outputs or the slice's bypass inputs, so a LUT feeding its carry chain costs no routed net
(``T_LUT_CARRY`` = 0); and the carry runs between the chain's segments on dedicated wires (``T_CARRY4`` per 4 bits,
no net). Hence a ripple-carry adder's low bits are ready one net + LUT + carry entry after its operands' low bits,
and each further 4 bits ``T_CARRY4`` later: in a chain of adders the carries ripple concurrently, and the chain
costs one entry per adder plus one ripple, not one full adder delay per adder. The writer tracks each wire's
arrival at its least and most significant bits (``Sig.t``, ``Sig.tm`` in rtl/datapath.py).

How each leaf cell maps (LUT levels, carry segments) was measured by synthesizing the writer's own cells with Yosys
0.23 ``synth_xilinx -family xcup`` (``benchmarks/delay_calibration.py``, the table in ``rtl/calibration.py`` with
its command and date); the functions below are written so that they never predict less than that netlist path
(``tests/test_rtl.py`` checks it on the stored table). One model serves both the writer and the netlist timing so
that the two agree with each other.
"""

from __future__ import annotations

import math

T_LUT = 0.10  # LUT logic delay, any input to O (DS923 order of magnitude)
T_NET = 0.40  # one routed net between two cells (typical of Vivado reports; dominant term; not calibrated)
T_LUT_CARRY = 0.0  # LUT O6/O5 into the S/DI input of its own slice's carry chain (UG574: intra-slice, no net)
T_CARRY_IN = 0.25  # into a carry chain: S/DI input to CO/O of its CARRY4/CARRY8 segment
T_CARRY4 = 0.04  # along the chain: CI to CO of one 4-bit segment (dedicated route, no net delay)
T_CLK_Q = 0.10  # flip-flop clock to Q
T_SETUP = 0.05  # flip-flop setup
T_UNCERTAINTY = 0.10  # clock uncertainty / jitter reserved from every period

LUT_LEVEL = T_NET + T_LUT  # one LUT level with the net that feeds it
ADDER_ENTRY = T_NET + T_LUT + T_LUT_CARRY + T_CARRY_IN  # operand bit -> sum bit of the same carry segment


def stage_budget_ns(clock_mhz: float) -> float:
    """Combinational time available between two registers at ``clock_mhz`` (ns)."""
    return 1000.0 / clock_mhz - T_CLK_Q - T_SETUP - T_UNCERTAINTY - T_NET  # the last net: into the register


def ripple_ns(width: int) -> float:
    """The carry's way from a chain's first 4-bit segment to its last (``width`` output bits)."""
    return T_CARRY4 * max(math.ceil(width / 4) - 1, 0)


def adder_ns(width: int, subtract: bool = False) -> float:
    """A two-operand ripple-carry adder of ``width`` output bits, operands arriving together: net, LUT (the bit's
    sum or difference: Yosys folds the subtrahend's inversion into the same LUT2), carry entry, then the ripple."""
    return ADDER_ENTRY + ripple_ns(width)


def adder_times(inputs: list[tuple[float, float]], width: int) -> tuple[float, float]:
    """(least, most significant bit) arrival of an adder's sum whose operands arrive at ``inputs`` [(t, tm)]: the low
    segment waits for the operands' low bits; every segment k for the operands' bits there, or the carry."""
    t = max([0.0] + [a for a, _ in inputs]) + ADDER_ENTRY
    tm = max([t + ripple_ns(width)] + [m + ADDER_ENTRY for _, m in inputs])
    return t, tm


def lut_levels_ns(levels: int) -> float:
    """``levels`` LUT levels, each with the net that feeds it."""
    return levels * LUT_LEVEL


def reduce_levels(bits: int) -> int:
    """LUT6 levels of a reduction (or, and, a comparison's equality) of ``bits`` inputs."""
    return max(1, math.ceil(math.log(max(bits, 2), 6)))


def compare_levels(width: int) -> int:
    """LUT6 levels of a comparison of ``width`` bits against a constant (a 6-input reduction tree and one more)."""
    return reduce_levels(width) + 1


def compare_ns(width: int) -> float:
    """A comparison of two ``width``-bit values (Yosys: a subtraction's carry chain) and the 2:1 multiplexer it
    drives (one LUT level per output bit)."""
    return adder_ns(width) + lut_levels_ns(1)


def cast_times(plan: dict, t, wa: int, t_in: float, tm_in: float) -> tuple[float, float]:
    """(lsb, msb) arrival of a cast (rtl/cells.py ``cast``) of a ``wa``-bit input arriving at (t_in, tm_in), for the
    ``plan`` of ``cells.plan_cast`` into type ``t``.

    Rounding other than TRN is an increment (a LUT level or two on the dropped bits, the last of them also the
    low sum bit's LUT, then the carry chain of the kept bits); saturation compares the bits of the (rounded) code above the type's range against its limits, a LUT
    reduction whose last level also multiplexes (as Yosys maps it, rtl/calibration.py); ReLU or-reduces the input
    and drives the same multiplexer."""
    t_lo, t_hi = t_in, tm_in
    drop = plan["drop"]
    nq = max(1, _width(*plan["q"]))
    if drop > 0 and t.rounding != "TRN":  # the increment's last LUT also forms the low sum bit (Yosys merges them)
        inc = t_in + lut_levels_ns(reduce_levels(drop + 2)) + T_LUT + T_LUT_CARRY + T_CARRY_IN
        t_lo = max(inc, t_in + ADDER_ENTRY)
        t_hi = max(t_lo + ripple_ns(nq + 1), tm_in + ADDER_ENTRY)
    muxed = False
    if plan["overflow"] and t.overflow != "WRAP":  # the bits above the type's range against its limits: a LUT
        above = nq - t.width + 3                     # reduction with the multiplexer in its last level, or (Yosys
        lut = lut_levels_ns(reduce_levels(max(above, 2)))  # maps comparisons of more than 12 bits so) a carry
        chain = ADDER_ENTRY + ripple_ns(nq + 2) + LUT_LEVEL  # chain, then the multiplexer (rtl/calibration.py)
        t_hi = t_hi + (max(lut, chain) if wa - max(drop, 0) > 12 else lut)
        muxed = True
    if plan["relu"]:  # the input's sign bit into the multiplexer (or a LUT level of its own)
        t_hi = max(t_hi if muxed else t_hi + lut_levels_ns(1), tm_in + lut_levels_ns(1))
        muxed = True
    if muxed:  # a multiplexer's outputs all arrive together
        t_lo = t_hi
    return t_lo, max(t_lo, t_hi)


def cast_ns(plan: dict, t, wa: int | None = None) -> float:
    """A cast's delay with all input bits arriving together (its input net included)."""
    wa = wa or max(1, _width(*plan["q"]))
    lo, hi = cast_times(plan, t, wa, 0.0, 0.0)
    return max(hi, 0.0)


def select_ns(cond_width: int) -> float:
    """``c > 0 ? a : b``: the sign and or-reduction of ``c`` (a reduction tree), then the multiplexer."""
    return lut_levels_ns(compare_levels(cond_width) + 1)


def rom_ns(address_bits: int) -> float:
    """A case-statement ROM: LUT6 for 6 address bits, then a multiplexer level per 2 more (Yosys: MUXF7/F8 beside
    the LUTs for 8, LUT levels beyond; rtl/calibration.py)."""
    return lut_levels_ns(1 + math.ceil(max(0, address_bits - 6) / 2))


def multiplier_ns(wa: int, wb: int) -> float:
    """A variable product mapped to LUTs and carry chains: a tree of ceil(log2(min width)) adders of the full width
    (a DSP48E2 is of the same order at these widths)."""
    return adder_ns(wa + wb) * max(1, math.ceil(math.log2(max(min(wa, wb), 2))))


def path_clock_mhz(path_ns: float) -> float:
    """The highest clock at which a register-to-register path of ``path_ns`` (logic + routing, the net into the
    register included) meets timing."""
    return 1000.0 / (path_ns + T_CLK_Q + T_SETUP + T_UNCERTAINTY)


def _width(lo: int, hi: int) -> int:
    if lo >= 0:
        return max(1, hi.bit_length())
    return max(max(hi, 0).bit_length(), (-lo - 1).bit_length()) + 1


CONSTANTS = {"T_LUT": T_LUT, "T_NET": T_NET, "T_LUT_CARRY": T_LUT_CARRY, "T_CARRY_IN": T_CARRY_IN,
             "T_CARRY4": T_CARRY4, "T_CLK_Q": T_CLK_Q, "T_SETUP": T_SETUP, "T_UNCERTAINTY": T_UNCERTAINTY,
             "source": "typical UltraScale+ -2 delays of the order of Xilinx DS923 and Vivado timing reports (not "
                       "fitted: estimate, about +-30%); LUT-to-carry and carry-to-carry without a routed net (UG574); "
                       "cell structure measured with Yosys (rtl/calibration.py)"}
