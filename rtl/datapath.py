"""The datapath the RTL writer builds: wires (``Sig``) placed in pipeline stages, two-operand adders, casts,
comparators, ROMs and the one variable multiplier, each a leaf cell (rtl/cells.py) instantiated in the top module.

Division by a constant n (average pooling), as C integer division of the accumulator codes: a power of two is a
TRN_ZERO cast (wiring plus one increment for negative codes); any other n adds ``n - 1`` to negative codes and a
bias ``b * n`` making the code non-negative, multiplies by ``m = ceil(2**k / n)`` (shift-and-add) and keeps the
bits above ``k``, then subtracts ``b``: exact because k is the smallest with ``(m * n - 2**k) * max < 2**k``.

Arithmetic, as ``nnet::dense_latency`` and the emulator (emulation/emulator.py) do it:

* no multipliers: each product ``x_i * w_ij`` is a sum of shifted copies of ``x_i`` (the weight code's canonical
  signed digits), and sums of such copies are shared between outputs where the order allows it (below); if a
  product has more fractional bits than ``accum_t`` it is cast into ``accum_t`` (rounding mode; overflow too unless
  ``accum_t`` wraps) before it is added;
* a column whose sum is order-free: no product has bits below ``accum_t``'s lsb, and ``accum_t`` wraps (modular
  sums are order-free) or no product and no partial sum of the C++ order (bias, then inputs 0..n-1) can leave its
  range (exact ranges). Such columns of a layer share one adder graph, the constant-matrix-vector product
  (CMVM) solution of da4ml 0.5.2 (rtl/cmvm.py) for the integer weight codes of the non-constant inputs:
  each of its nodes, ``a +/- b * 2**s``, is one of the writer's two-operand adders, trimmed to the node's exact
  range over the box of input ranges; the column's output node (with its shift and sign), the products of the
  constant inputs and the bias (folded into one constant addition) then give ``accum_t`` with one cast. da4ml's
  solution is checked exact (each output's coefficients are its column) before anything is emitted; rtl.json's
  ``cmvm_adders`` counts its adders. Its Verilog generator is not used: cells, pipelining and names stay the
  writer's. A convolution solves once per set of live window inputs (interior pixels share one solution);
* every other column is summed on its own: each product from its canonical-signed-digit terms, cast to
  ``accum_t`` when it has bits below its lsb or ``accum_t`` saturates; then, when ``accum_t`` wraps or no partial
  sum can leave its range, a balanced tree of two-operand adders, each trimmed to the exact range of its result,
  and one cast; otherwise each addition followed by the cast, in the C++ order (a saturating chain);
* ``result_t = (result_t) acc``; relu: ``x > 0 ? (result_t) x : 0``; linear: ``(result_t) x``.

Pipelining by timing: each cell is placed as soon as its inputs are ready (ASAP), in the stage of its latest
input, with the arrival times of rtl/delay.py (calibrated on Yosys's mapping of these cells, rtl/calibration.py):
a wire's low and high bits arrive apart (``Sig.t``, ``Sig.tm``), so chained adders overlap their carries as they do
in the carry chains. Only when a cell's most significant bit would arrive after the stage budget (one clock period
less clock-to-Q, setup, uncertainty and the net into the register) does it start the next stage, its inputs behind
registers of their exact width (``at``); a wire used several stages later passes through one register per stage.
Inputs and outputs are registered. Latency (cycles from the input register to the output register, inclusive) and
II = 1. A cell that does not fit one period even alone (the clock cannot be met at any depth) is recorded, and
``check_clock`` refuses the design in one line naming the best clock it can reach. ``layer_report`` gives, per
layer, the stages it spans, its cycles, its logic levels and its slack in the model.
"""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction

import numpy as np

from l1forge.quantize.fixed import MAX_WIDTH, FixedType
from l1forge.rtl import cells, cmvm, delay
from l1forge.rtl.cells import add_const, adder, cast, ext, plan_cast, width_of


class RtlError(ValueError):
    """A graph the RTL writer cannot turn into Verilog; one line naming the layer and its op."""


@dataclasses.dataclass
class Sig:
    """A wire: ``value = code * 2**lsb``, code in [lo, hi]; placed at pipeline ``stage``, its least significant bits
    ready ``t`` ns into it and its most significant ``tm`` ns (a carry chain's sum ripples, rtl/delay.py); ``lv``:
    logic levels (LUTs and carry segments) from the stage's registers to its most significant bit (model)."""

    name: str
    lsb: int
    lo: int
    hi: int
    stage: int = 0
    t: float = 0.0
    const: int | None = None
    tm: float = 0.0
    lv: int = 0

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def width(self) -> int:
        return width_of(self.lo, self.hi)


@dataclasses.dataclass
class Term:
    """``sign * sig * 2**lsb`` (lsb is absolute: sig.lsb plus the digit's shift)."""

    sig: Sig
    lsb: int
    sign: int

    @property
    def msb(self) -> int:
        return self.lsb + self.sig.width

    def value_range(self, at: int) -> tuple[int, int]:
        s = self.lsb - at
        lo, hi = self.sig.lo << s, self.sig.hi << s
        return (lo, hi) if self.sign > 0 else (-hi, -lo)


def csd(value: int) -> list[tuple[int, int]]:
    """Canonical signed digits of an integer: [(shift, +-1)], fewest non-zero digits, none adjacent."""
    digits, k = [], 0
    while value:
        if value & 1:
            d = 2 - (value & 3)  # +1 if value = 1 mod 4, -1 if 3 mod 4
            digits.append((k, d))
            value -= d
        value >>= 1
        k += 1
    return digits


class Datapath:
    """The wires, registers, cell instances and cell modules of one top module, built op by op."""

    def __init__(self, top: str, clock_mhz: float):
        self.top, self.clock_mhz = top, clock_mhz
        self.budget = delay.stage_budget_ns(clock_mhz)
        self.cells: dict[str, str] = {}  # module body (name placeholder) -> module name
        self.cell_text: list[str] = []
        self.decls: list[str] = []
        self.insts: list[str] = []
        self.regs: dict[str, tuple[str, int]] = {}  # register name -> (source, width)
        self.n = 0
        self.counts = {"adders": 0, "casts": 0, "cmvm_adders": 0}
        self.plans: dict = {}  # CMVM solutions by (matrix, input intervals)
        self.ports_in: list[dict] = []  # {"name", "width", "signed"} of each input port, in order
        self.layer = ""  # the layer whose cells are being placed (set by the writer, rtl/lower.py)
        self.layers: dict[str, dict] = {}  # layer -> {"first", "last", "ns", "levels"} of its placed cells
        self.too_slow: tuple[float, str] | None = None  # the slowest cell that exceeds a whole period alone

    # ---- bookkeeping -----------------------------------------------------------------------------------
    def _name(self, prefix: str = "n") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def _cell(self, make, kind: str) -> str:
        """Module name for the text ``make(name)`` builds, one module per distinct text."""
        body = make("CELL")
        if body not in self.cells:
            name = f"{self.top}_{kind}{len(self.cells)}"
            self.cells[body] = name
            self.cell_text.append(re.sub(r"\bCELL\b", name, body, count=1))
        return self.cells[body]

    def _place(self, inputs: list[Sig], times, levels: int, what: str = "cell", ripple: int = 0) -> tuple[int, float, float, int]:
        """ASAP placement of a cell fed by ``inputs``: ``times([(t, tm), ...])`` gives its output's (t, tm) for its
        live inputs' arrival times in its stage (0 for an input behind a register). Returns (stage, t, tm, levels);
        the next stage when the output would arrive after the budget. ``levels``: the cell's logic levels on the
        way to its output's low bits; ``ripple``: the carry segments more to its most significant bit."""
        live = [s for s in inputs if s.const is None]
        stage = max([1] + [s.stage for s in live])
        here = [s for s in live if s.stage == stage]
        t, tm = times([(s.t, s.tm) if s.stage == stage else (0.0, 0.0) for s in live])
        lv = max([0] + [s.lv for s in here]) + levels
        if tm > self.budget and any(s.tm > 0 or s.t > 0 for s in here):
            stage, lv = stage + 1, levels
            t, tm = times([(0.0, 0.0) for _ in live])
        if tm > self.budget and what != "mul cell" and (self.too_slow is None or tm > self.too_slow[0]):
            # (a variable product, a DSP48E2 or LUTs as the tool maps it, keeps a stage of its own even so: its
            # delay is the coarsest of the model, and a design with one should not be refused on it)
            self.too_slow = (tm, f"{what} in layer {self.layer}")
        stats = self.layers.setdefault(self.layer, {"first": stage, "last": stage, "ns": 0.0, "levels": 0})
        stats.update(first=min(stats["first"], stage), last=max(stats["last"], stage), ns=max(stats["ns"], tm),
                     levels=max(stats["levels"], lv + ripple))
        return stage, t, tm, lv

    def check_clock(self) -> None:
        """RtlError (one line) when some cell does not fit one clock period even alone: no pipeline depth meets
        the clock; the line names the best clock the design can reach."""
        if self.too_slow is not None:
            ns, what = self.too_slow
            best = delay.path_clock_mhz(ns + delay.T_NET)
            raise RtlError(f"the clock of {self.clock_mhz:g} MHz cannot be met at any pipeline depth: the {what} "
                           f"needs {ns + delay.T_NET:.2f} ns between registers ({1000.0 / self.clock_mhz:.2f} ns "
                           f"period); the best achievable clock is {best:.0f} MHz (rtl/delay.py model)")

    def layer_report(self, latency: int) -> list[dict]:
        """Per layer, in the order its cells were placed: the stages it spans, its cycles (stages past the previous
        layer's last), its logic levels and slack in the delay model (the tightest stage of the layer)."""
        out, last = [], 0
        for name, st in self.layers.items():
            out.append({"layer": name, "stage_first": st["first"], "stage_last": st["last"],
                        "cycles": max(0, st["last"] - last), "logic_levels": st["levels"],
                        "path_ns": round(st["ns"], 3), "slack_ns": round(self.budget - st["ns"], 3)})
            last = max(last, st["last"])
        if out:
            out.append({"layer": "(output register)", "stage_first": latency, "stage_last": latency,
                        "cycles": latency - last, "logic_levels": 0, "path_ns": 0.0, "slack_ns": round(self.budget, 3)})
        return out

    def at(self, sig: Sig, stage: int) -> str:
        """The wire carrying ``sig`` at pipeline ``stage`` (registers added as needed)."""
        if sig.const is not None:
            return f"{sig.width}'d{sig.const % (1 << sig.width)}"
        k = stage - sig.stage
        if k < 0:
            raise AssertionError(f"{sig.name} used before its stage")
        name = sig.name
        for i in range(1, k + 1):
            reg = f"{sig.name}_d{i}"
            if reg not in self.regs:
                self.regs[reg] = (name, sig.width)
            name = reg
        return name

    def _wire(self, lsb: int, lo: int, hi: int, stage: int, t: float, tm: float | None = None, lv: int = 0) -> Sig:
        sig = Sig(self._name(), lsb, lo, hi, stage, t, tm=t if tm is None else tm, lv=lv)
        self.decls.append(f"  wire [{sig.width - 1}:0] {sig.name};")
        return sig

    @staticmethod
    def const(value: int, lsb: int) -> Sig:
        if value:
            tz = (value & -value).bit_length() - 1
            value, lsb = value >> tz, lsb + tz
        return Sig(f"c{value}", lsb, value, value, const=value)

    # ---- arithmetic ------------------------------------------------------------------------------------
    def add(self, x: Term, y: Term, exact: tuple | None = None) -> Term:
        """One two-operand adder: returns the sum as a term (its sign chosen so the adder's low bits pass through).

        ``exact``: the value range of ``x + y`` (Fractions) when it is known tighter than the operands' intervals
        (a CMVM node, rtl/cmvm.py); the adder is trimmed to it (its sum is modulo 2**width)."""
        if x.sign == y.sign:
            sign, a, b = x.sign, x, y
        else:
            pos, neg = (x, y) if x.sign > 0 else (y, x)
            # result = +(pos - neg) or -(neg - pos): subtract the operand with the higher weight
            sign, a, b = (1, pos, neg) if neg.lsb >= pos.lsb else (-1, neg, pos)
        at = min(a.lsb, b.lsb)
        (alo, ahi), (blo, bhi) = Term(a.sig, a.lsb, a.sign * sign).value_range(at), Term(b.sig, b.lsb, b.sign * sign).value_range(at)
        lo, hi = alo + blo, ahi + bhi
        if exact is not None:
            elo, ehi = (v / Fraction(2) ** at for v in exact)
            assert elo.denominator == 1 and ehi.denominator == 1, (exact, at)
            elo, ehi = (int(elo), int(ehi)) if sign > 0 else (-int(ehi), -int(elo))
            assert lo <= elo <= ehi <= hi, (lo, hi, elo, ehi)
            lo, hi = elo, ehi
        wo = width_of(lo, hi)
        spec = lambda term: (term.sig.width, term.sig.signed, term.lsb - at, term.sign * sign)  # noqa: E731
        (u, su), (v, sv) = ((a, spec(a)), (b, spec(b))) if spec(a)[2] == 0 else ((b, spec(b)), (a, spec(a)))
        shift = sv[2]
        passes = shift > 0 and su[3] > 0 and wo > shift
        # with u's low bits passed through, the carry chain starts at u's bit ``shift``, which arrives that many
        # carry segments after u's low bits; the sum's bits are timed from its bit 0 (``t``) on the same slope
        skew = delay.T_CARRY4 * (shift // 4) if passes else 0.0

        def times(ins):
            if len(ins) == 2 and skew:
                k = 0 if u is a else 1
                ins = [(ti + skew, mi) if j == k else (ti, mi) for j, (ti, mi) in enumerate(ins)]
            t_, tm_ = delay.adder_times(ins, wo - shift if passes else wo)
            return t_ - skew, tm_

        stage, t, tm, lv = self._place([a.sig, b.sig], times, 2, f"{wo}-bit adder", -(-wo // 4) - 1)
        out = self._wire(at, lo, hi, stage, t, tm, lv)
        if passes:
            # u + (+-v << shift): u's low bits pass through as wiring here; the cell adds the overlapping bits
            # only, so adders that differ in the shift alone share one module (fewer distinct cells for Yosys)
            wu, uname = su[0], self.at(u.sig, stage)
            high = (f"{uname}[{wu - 1}:{shift}]", wu - shift, su[1]) if wu > shift else \
                (f"{uname}[{wu - 1}]", 1, True) if su[1] else ("1'b0", 1, False)
            module = self._cell(lambda n: adder(n, (high[1], high[2], 0, 1), (sv[0], sv[1], 0, sv[3]), wo - shift),
                                "add")
            low = f"{uname}[{shift - 1}:0]" if wu >= shift else ext(uname, wu, su[1], shift)
            self.insts.append(f"  {module} u_{out.name}(.a({high[0]}), .b({self.at(v.sig, stage)}), "
                              f".y({out.name}[{wo - 1}:{shift}]));")
            self.insts.append(f"  assign {out.name}[{shift - 1}:0] = {low};")
        else:
            module = self._cell(lambda n: adder(n, spec(a), spec(b), wo), "add")
            self.insts.append(f"  {module} u_{out.name}(.a({self.at(a.sig, stage)}), .b({self.at(b.sig, stage)}), "
                              f".y({out.name}));")
        self.counts["adders"] += 1
        return Term(out, at, sign)

    def add_const(self, x: Term, const: Sig) -> Sig:
        """``x + const`` as a positive wire."""
        if const.const == 0 and x.sign > 0:
            return self.rebase(x)
        at = min(x.lsb, const.lsb)
        lo, hi = x.value_range(at)
        c = const.const << (const.lsb - at)
        lo, hi = lo + c, hi + c
        wo = width_of(lo, hi)
        stage, t, tm, lv = self._place([x.sig], lambda ins: delay.adder_times(ins, wo), 2, f"{wo}-bit adder",
                                       -(-wo // 4) - 1)
        module = self._cell(lambda n: add_const(n, (x.sig.width, x.sig.signed, x.lsb - at, x.sign), c, wo), "addc")
        out = self._wire(at, lo, hi, stage, t, tm, lv)
        self.insts.append(f"  {module} u_{out.name}(.a({self.at(x.sig, stage)}), .y({out.name}));")
        self.counts["adders"] += 1
        return out

    @staticmethod
    def rebase(x: Term) -> Sig:
        """A positive term as a wire of its own weight (wiring only)."""
        return dataclasses.replace(x.sig, lsb=x.lsb)

    def tree(self, terms: list[Term], const: Sig) -> Sig:
        """Balanced tree of two-operand adders over ``terms`` (paired by magnitude), constants folded into one
        addition at the root; returns a positive wire."""
        consts = [t for t in terms if t.sig.const is not None]
        live = [t for t in terms if t.sig.const is None]
        at = min([const.lsb] + [t.lsb for t in consts])
        total = (const.const << (const.lsb - at)) + sum(t.sign * t.sig.const << (t.lsb - at) for t in consts)
        c = self.const(total, at)
        if not live:
            return c
        level = sorted(live, key=lambda term: (term.msb, term.lsb))
        while len(level) > 1:
            nxt = [self.add(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            level = sorted(nxt + level[len(level) - len(level) % 2:], key=lambda term: (term.msb, term.lsb))
        return self.add_const(level[0], c)

    def cast(self, x: Sig, t: FixedType, relu: bool = False) -> Sig:
        """``(t) x`` (``x > 0 ? (t) x : 0`` with relu), exactly as FixedType.from_codes."""
        if x.const is not None:
            if relu and x.const <= 0:
                return self.const(0, -t.frac)
            code = int(t.from_codes(np.array([x.const], dtype=np.int64), -x.lsb)[0])
            return self.const(code, -t.frac)
        plan = plan_cast(x.lo, x.hi, x.lsb, t, relu)
        if plan is None:
            return x
        if "const" in plan:
            return self.const(plan["const"], -t.frac)
        if plan["drop"] > 0 and t.rounding != "TRN" and (plan["relu"] or (plan["overflow"] and t.overflow != "WRAP")):
            # two cells, each its own pipeline step: the rounding (an increment), then overflow / relu on the
            # rounded code (the same result: rounding is monotone and keeps the sign of x <= 0)
            wide = roomy(x, t.frac, t.rounding)
            if width_of(*plan["q"]) + 2 < wide.width:
                return self.cast(self.cast(x, wide), t, relu)
        text, wy = cast("CELL", x.width, x.signed, plan, t)
        levels = max(0, round(delay.cast_ns(plan, t, x.width) / delay.LUT_LEVEL))
        stage, ready, tm, lv = self._place([x], lambda ins: delay.cast_times(plan, t, x.width, *ins[0]), levels,
                                           f"cast of {x.width} bits to {t}")
        module = self._cell(lambda n: text.replace("module CELL(", f"module {n}("), "cast")
        out = self._wire(plan["lsb"], *plan["out"], stage, ready, tm, lv)
        assert out.width == wy, (out, wy)
        self.insts.append(f"  {module} u_{out.name}(.a({self.at(x, stage)}), .y({out.name}));")
        self.counts["casts"] += 1
        return out

    # ---- more cells ------------------------------------------------------------------------------------
    def _inst(self, make, kind: str, ns: float, inputs: list, lsb: int, lo: int, hi: int, ports: list) -> Sig:
        """One instance of the cell ``make(name)``; ``ports`` = [(port, Sig)] (constants become literals). ``ns``:
        from its latest input bit to all its output bits (0: wiring, the inputs' arrival times kept)."""

        def times(ins):
            if ns == 0:
                return max([0.0] + [a for a, _ in ins]), max([0.0] + [m for _, m in ins])
            done = max([0.0] + [m for _, m in ins]) + ns
            return done, done

        stage, t, tm, lv = self._place(inputs, times, round(ns / delay.LUT_LEVEL), f"{kind} cell")
        module = self._cell(make, kind)
        out = self._wire(lsb, lo, hi, stage, t, tm, lv)
        conns = ", ".join(f".{p}({self.at(s, stage)})" for p, s in ports)
        self.insts.append(f"  {module} u_{out.name}({conns}, .y({out.name}));")
        return out

    def select_pos(self, c: Sig, a: Sig, b: Sig) -> Sig:
        """``c > 0 ? a : b``."""
        if c.const is not None or c.lo > 0 or c.hi <= 0:
            return a if (c.lo > 0 if c.const is None else c.const > 0) else b
        at = min(a.lsb, b.lsb)
        lo, hi = min(a.lo << (a.lsb - at), b.lo << (b.lsb - at)), max(a.hi << (a.lsb - at), b.hi << (b.lsb - at))
        wo = width_of(lo, hi)
        spec = lambda s: (s.width, s.signed, s.lsb - at)  # noqa: E731
        return self._inst(lambda n: cells.select(n, (c.width, c.signed), spec(a), spec(b), wo), "sel",
                          delay.select_ns(c.width), [c, a, b], at, lo, hi, [("c", c), ("a", a), ("b", b)])

    def maxmin(self, a: Sig, b: Sig, op: str) -> Sig:
        """``max(a, b)`` or ``min(a, b)`` (values)."""
        at = min(a.lsb, b.lsb)
        (alo, ahi), (blo, bhi) = ((s.lo << (s.lsb - at), s.hi << (s.lsb - at)) for s in (a, b))
        pick = max if op == "max" else min
        if a.const is not None and b.const is not None:
            return self.const(pick(alo, blo), at)
        if (op == "max" and alo >= bhi) or (op == "min" and ahi <= blo):
            return a
        if (op == "max" and blo >= ahi) or (op == "min" and bhi <= alo):
            return b
        lo, hi = pick(alo, blo), pick(ahi, bhi)
        wo = width_of(lo, hi)
        spec = lambda s: (s.width, s.signed, s.lsb - at)  # noqa: E731
        return self._inst(lambda n: cells.maxmin(n, spec(a), spec(b), wo, op), op,
                          delay.compare_ns(max(a.width + a.lsb, b.width + b.lsb) - at + 1), [a, b], at, lo, hi,
                          [("a", a), ("b", b)])

    def reduce_max(self, xs: list, op: str = "max") -> Sig:
        level = list(xs)
        while len(level) > 1:
            level = [self.maxmin(level[i], level[i + 1], op) for i in range(0, len(level) - 1, 2)] + \
                level[len(level) - len(level) % 2:]
        return level[0]

    def multiply(self, a: Sig, b: Sig) -> Sig:
        """``a * b`` exact (a variable product: LUTs or a DSP, as the synthesis tool maps it)."""
        if a.const is not None or b.const is not None:
            c, x = (a, b) if a.const is not None else (b, a)
            return self.tree([Term(x, x.lsb + c.lsb + k, d) for k, d in csd(c.const)], self.const(0, 0))
        ends = [p * q for p in (a.lo, a.hi) for q in (b.lo, b.hi)]
        lo, hi = min(ends), max(ends)
        wo = width_of(lo, hi)
        return self._inst(lambda n: cells.multiply(n, (a.width, a.signed), (b.width, b.signed), wo), "mul",
                          delay.multiplier_ns(a.width, b.width), [a, b], a.lsb + b.lsb, lo, hi, [("a", a), ("b", b)])

    def rom(self, x: Sig, table: dict) -> Sig:
        """``table[value of x]`` (x an integer, lsb >= 0) for every value x can take, as a case statement over x's
        code; the table's values are codes at lsb 0."""
        if x.lsb < 0:
            raise AssertionError(f"{x.name}: a ROM address must be an integer")
        if x.const is not None:
            return self.const(table[x.const << x.lsb], 0)
        entries = {c: table[c << x.lsb] for c in range(x.lo, x.hi + 1)}
        lo, hi = min(entries.values()), max(entries.values())
        if lo == hi:
            return self.const(lo, 0)
        wo = width_of(lo, hi)
        return self._inst(lambda n: cells.rom(n, x.width, x.signed, entries, wo), "rom",
                          delay.rom_ns(x.width), [x], 0, lo, hi, [("a", x)])

    def top_bits(self, x: Sig, t: FixedType, n: int) -> Sig:
        """The top ``n`` bits of x's raw bit pattern in type ``t`` (x already a value of t): an unsigned index."""
        shift = x.lsb + t.frac
        if x.const is not None:
            return self.const(((x.const << shift) & ((1 << t.width) - 1)) >> (t.width - n), 0)
        return self._inst(lambda m: cells.bits(m, (x.width, x.signed, shift), t.width, t.width - 1, t.width - n),
                          "bits", 0.0, [x], 0, 0, (1 << n) - 1, [("a", x)])

    def msb_bit(self, x: Sig) -> Sig:
        """The sign bit of a signed wire (1 when negative), wiring only."""
        sig = Sig(self._name(), 0, 0, 1, x.stage, x.tm, tm=x.tm, lv=x.lv)
        self.decls.append(f"  wire [0:0] {sig.name} = {x.name}[{x.width - 1}];")
        return sig

    # ---- sums and divisions ------------------------------------------------------------------------------
    def chain_sum(self, xs: list, acc_t: FixedType) -> Sig:
        """``acc = 0; acc = (acc_t)(acc + x)`` for each x in order; one tree and one cast when the order cannot matter
        (nothing below the accumulator's lsb, and the accumulator wraps or no partial sum leaves its range)."""
        at = -acc_t.frac
        xs = [x for x in xs if x.const != 0]
        if not xs:
            return self.const(0, at)
        exact = all(x.lsb >= at for x in xs)
        lo = hi = 0
        tmin, tmax = _unchanged(acc_t)
        in_range = True
        for x in xs:
            lo, hi = lo + (x.lo << max(x.lsb - at, 0)), hi + (x.hi << max(x.lsb - at, 0))
            in_range &= tmin <= lo and hi <= tmax
        if exact and (acc_t.overflow == "WRAP" or in_range):
            return self.cast(self.tree([Term(x, x.lsb, 1) for x in xs], self.const(0, 0)), acc_t)
        acc = self.const(0, at)
        for x in xs:
            acc = self.cast(self.tree([Term(acc, acc.lsb, 1), Term(x, x.lsb, 1)], self.const(0, 0)), acc_t)
        return acc

    def trunc_div(self, x: Sig, n: int, at: int) -> Sig:
        """The value of x divided by the integer n, truncated towards zero to a multiple of 2**at (C integer division
        of the codes at lsb ``at``; x's lsb >= at). A power of two is a TRN_ZERO cast; any other n a multiplication
        by m = ceil(2**k / n) and a shift by k (exact: k is chosen so that the error stays below one code)."""
        if n == 1:
            return x
        if x.const is not None:
            code = x.const << (x.lsb - at)
            return self.const(int(np.sign(code)) * (abs(code) // n), at)
        s = n.bit_length() - 1
        if n == 1 << s:
            q = self.cast(x, roomy(x, -(at + s), "TRN_ZERO"))
            return dataclasses.replace(q, lsb=q.lsb - s)
        # y = code + (code < 0 ? n - 1 : 0) + b * n >= 0, so that trunc(code / n) = floor(y / n) - b
        terms = [Term(x, x.lsb, 1)]
        b = 0
        if x.lo < 0:
            sign = self.msb_bit(x)
            terms += [Term(sign, at + k, d) for k, d in csd(n - 1)]
            b = -((x.lo << (x.lsb - at)) // n)  # ceil(-lo / n)
        y = self.tree(terms, self.const(b * n, at))
        y_max = y.hi << (y.lsb - at)
        k = 1
        while True:
            m = -(-(1 << k) // n)
            if (m * n - (1 << k)) * y_max < (1 << k):
                break
            k += 1
        prod = self.tree([Term(y, y.lsb + j, d) for j, d in csd(m)], self.const(0, 0))
        q = self.cast(prod, roomy(prod, -(at + k), "TRN"))
        q = dataclasses.replace(q, lsb=q.lsb - k)
        if b:
            q = self.add_const(Term(q, q.lsb, 1), self.const(-b, at))
        return q

    # ---- layers ------------------------------------------------------------------------------------------
    def dense_params(self, spec: dict, weights: dict, n_in: int) -> dict:
        name = spec["name"]
        wt, bt, acc_t, res_t = (spec.type(k) for k in ("weight_t", "bias_t", "accum_t", "result_t"))
        w = wt.from_float(weights[f"{name}/weight"]).reshape(n_in, -1)
        b_acc = acc_t.from_codes(bt.from_float(weights[f"{name}/bias"]).reshape(-1), bt.frac)
        return {"w": w, "wt": wt, "b_acc": b_acc, "acc_t": acc_t, "res_t": res_t}

    def dense(self, xs: list[Sig], x_t: FixedType, p: dict) -> list[Sig]:
        """``nnet::dense_latency`` on the inputs ``xs`` (flat, in the C++ order) with the parameters of dense_params.

        The columns whose sum is order-free (``_order_free``) share one adder graph, da4ml's CMVM solution
        (``cmvm``); each of the others is summed on its own from canonical signed digits (``_accumulate``)."""
        w, wt, b_acc, acc_t, res_t = p["w"], p["wt"], p["b_acc"], p["acc_t"], p["res_t"]
        wraps = acc_t.overflow == "WRAP"
        per_product_cast = x_t.frac + wt.frac > acc_t.frac or not wraps
        biases = [self.const(int(b_acc[j]), -acc_t.frac) for j in range(w.shape[1])]
        free = [j for j in range(w.shape[1]) if self._order_free(xs, w[:, j], wt, biases[j], x_t, acc_t)]
        if np.abs(w).max(initial=0) >= cmvm.MAX_CODE:  # beyond the solver's float32 codes: each column alone
            free = []
        live = [i for i, x in enumerate(xs) if x.const is None and (x.lo, x.hi) != (0, 0)]
        shared = dict(zip(free, self.cmvm([xs[i] for i in live], w[np.ix_(live, free)]))) if live and free else {}
        outs = []
        for j in range(w.shape[1]):
            if j in free:  # the shared column, the constant inputs' products folded, the bias: one cast
                terms = [Term(t.sig, t.lsb - wt.frac, t.sign) for t in [shared.get(j)] if t is not None]
                terms += [Term(c, c.lsb, 1) for x, code in zip(xs, w[:, j]) if x.const and code
                          for c in [self.const(x.const * int(code), x.lsb - wt.frac)]]
                outs.append(self.cast(self.cast(self.tree(terms, biases[j]), acc_t), res_t))
                continue
            products = []  # the terms of each non-zero product, in input order
            for i, x in enumerate(xs):
                code = int(w[i, j])
                if code == 0 or x.const == 0:
                    continue
                if x.const is not None:
                    c = self.const(x.const * code, x.lsb - wt.frac)
                    terms = [Term(c, c.lsb, 1)]
                else:
                    terms = [Term(x, x.lsb + k - wt.frac, d) for k, d in csd(code)]
                if per_product_cast:  # (accum_t)(x * w): rounding, and overflow unless the sum wraps anyway
                    p_ = self.cast(self.tree(terms, self.const(0, 0)), acc_t)
                    terms = [Term(p_, p_.lsb, 1)]
                products.append(terms)
            outs.append(self.cast(self._accumulate(products, biases[j], acc_t, wraps), res_t))
        return outs

    @staticmethod
    def _order_free(xs: list[Sig], col: np.ndarray, wt: FixedType, bias: Sig, x_t: FixedType, acc_t: FixedType) -> bool:
        """Whether ``(accum_t)(bias + sum x_i * w_i)``, in the C++ order with each product cast to accum_t (rounding,
        and overflow unless accum_t wraps), equals the exact sum cast once: no product has bits below accum_t's
        lsb, and accum_t wraps (modular sums are order-free) or no product and no partial sum (bias, then inputs
        0..n-1) leaves its range (exact ranges)."""
        if x_t.frac + wt.frac > acc_t.frac:
            return False
        if acc_t.overflow == "WRAP":
            return True
        at = -acc_t.frac
        tmin, tmax = _unchanged(acc_t)
        lo = hi = bias.const << (bias.lsb - at)
        for x, code in zip(xs, col):
            code = int(code)
            if code == 0 or x.const == 0:
                continue
            shift = x.lsb - wt.frac - at
            if shift < 0:
                return False
            ends = (x.lo * code << shift, x.hi * code << shift)
            plo, phi = min(ends), max(ends)
            lo, hi = lo + plo, hi + phi
            if not (tmin <= plo and phi <= tmax and tmin <= lo and hi <= tmax):
                return False
        return True

    def cmvm(self, xs: list[Sig], w: np.ndarray) -> list[Term | None]:
        """``sum_i xs[i] * w[i, j]`` for each column j of the integer matrix ``w`` (inputs not constant), as the
        adder graph of da4ml's CMVM solution (rtl/cmvm.py), shared by all columns: one two-operand adder
        per node, trimmed to the node's exact range. None for a zero column."""
        key = (w.shape, w.astype(np.int64).tobytes(), tuple((x.lo, x.hi, x.lsb) for x in xs))
        if key not in self.plans:  # a convolution's pixels share one solution (and its ranges)
            self.plans[key] = (cmvm.solve(w, [(x.lo, x.hi, x.lsb) for x in xs]), {})
        plan, ranges = self.plans[key]
        box = [(Fraction(x.lo) * Fraction(2) ** x.lsb, Fraction(x.hi) * Fraction(2) ** x.lsb) for x in xs]
        terms: dict[int, Term] = {}

        def ref(r):
            t = terms[r.node]
            return Term(t.sig, t.lsb + r.shift, t.sign * r.sign)

        for k in plan.needed():
            node = plan.nodes[k]
            if node[0] == "in":
                terms[k] = Term(xs[node[1]], xs[node[1]].lsb, 1)
            else:
                if k not in ranges:
                    ranges[k] = plan.value_range(k, box)
                terms[k] = self.add(ref(node[1]), ref(node[2]), exact=ranges[k])
                self.counts["cmvm_adders"] += 1
        return [None if r is None else ref(r) for r in plan.outs]

    def _accumulate(self, products: list, bias: Sig, acc_t: FixedType, wraps: bool) -> Sig:
        """accum_t sum of bias + products in the C++ order (one tree when the order cannot matter)."""
        at = -acc_t.frac
        tmin, tmax = _unchanged(acc_t)
        lo = hi = bias.const << (bias.lsb - at)
        in_range = True
        for terms in products:
            for term in terms:
                a, b = term.value_range(at)
                lo, hi = lo + a, hi + b
            in_range &= tmin <= lo and hi <= tmax
        if wraps or in_range:
            return self.cast(self.tree([t for terms in products for t in terms], bias), acc_t)
        acc = bias
        for terms in products:  # saturating chain, as the C++ loop: acc = (accum_t)(acc + mult)
            acc = self.cast(self.tree(terms + [Term(acc, acc.lsb, 1)], self.const(0, 0)), acc_t)
        return acc


def roomy(x: Sig, frac: int, rounding: str) -> FixedType:
    """A wrapping type with ``frac`` fractional bits that holds every value of ``x`` (at least MAX_WIDTH bits wide,
    wider for wide signals: the RTL has no width limit), so that a cast to it only rounds."""
    width = max(MAX_WIDTH, x.lsb + x.width + frac + 2)
    return FixedType(width, width - frac, True, rounding, "WRAP")


def _unchanged(t: FixedType) -> tuple[int, int]:
    """The codes ``t``'s overflow mode leaves as they are (SAT_SYM saturates the most negative code too)."""
    if t.overflow == "SAT_SYM" and t.signed:
        return -t.max_code, t.max_code
    return t.min_code, t.max_code


def each(fn, arr: np.ndarray) -> np.ndarray:
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        out[idx] = fn(arr[idx])
    return out


def csd_terms(x: Sig, code: int, frac: int) -> list:
    """The terms of ``x * code * 2**-frac`` (canonical signed digits of the constant)."""
    if x.const is not None:
        return [Term(c, c.lsb, 1) for c in [Datapath.const(x.const * code, x.lsb - frac)]]
    return [Term(x, x.lsb + k - frac, d) for k, d in csd(code)]
