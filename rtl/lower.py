"""Synthesizable Verilog of the datapath in the firmware graph (``firmware/graph.json``), bit-exact to the emulator.

``write_rtl(graph, weights, out_dir, clock_mhz)`` writes ``out_dir/<top>.v`` (the top module: input registers,
pipeline registers, output registers and one instance per adder or cast), ``out_dir/<top>_cells.v`` (the leaf
modules, rtl/cells.py) and ``out_dir/rtl.json`` (ports, latency, counts, delay model).

Supported ops (everything the emulator runs except the legacy softmax and non-``mult`` products): ``input``,
``dense`` / ``conv1d`` / ``conv2d`` (product ``mult``; a convolution is the dense below on each output pixel's
zero-padded window, taps then channels, so a pointwise conv1d is a dense per constituent), ``pool2d`` (max over the
window with the MSB-only padding code; average: ``acc = (accum_t)(acc + x)`` then the truncating division),
``global_average`` / ``global_max``, ``batchnorm`` (constant scale in canonical signed digits plus the bias, exact,
then ``(res_t)``), ``relu``, ``linear``, ``leaky_relu`` (``x > 0 ? (res_t)x : (res_t)(alpha * x)``, a multiplexer),
``hard_sigmoid`` / ``hard_tanh`` (constant product, clip by comparators), ``table`` (sigmoid / tanh: the C index
arithmetic ``(int)(x * N / R) + offset`` with its truncating division and clamp, then a case-statement ROM of the
table converted to ``res_t``), ``softmax`` latency / stable (exp ROM on the top bits of x, or of
``inp_norm_t(max - x)`` after a comparator tree; the C++ balanced sum with a cast per addition; ``(inv_inp_t)sum``;
inverse ROM on its top bits; a variable product ``exp * inv``, the only multiplier the writer emits), ``add`` /
``subtract`` / ``average`` / ``maximum`` / ``minimum``, ``concatenate``, ``transpose`` (wiring plus the cast),
``reshape`` (wiring). The ROM contents are the tables the emulator builds as hls4ml's ``init_*_table`` does; the
index arithmetic around them is the writer's own. Anything else raises ``RtlError`` naming the layer and its op
before a file is written. Several outputs are concatenated on the ports in ``graph["outputs"]`` order.

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

Pipelining: each adder or cast is placed as soon as its inputs are ready (ASAP); when its delay (rtl/delay.py)
would push the stage past the budget of one clock period it starts the next stage, behind registers. Inputs and
outputs are registered. Latency (cycles from the input register to the output register, inclusive) and II = 1.

Port ``in_<k>``: the input type's code of flat input element k; ``out_<k>``: the output type's code of output k.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import re
from fractions import Fraction

import numpy as np

from l1forge.graph import ops
from l1forge.graph.ir import Graph, Layer, as_graph
from l1forge.rtl import cells, cmvm, delay
from l1forge.rtl.cells import add_const, adder, cast, ext, plan_cast, width_of
from l1forge.quantize.fixed import MAX_WIDTH, FixedType
from l1forge.quantize.hls_tables import activation_table, ceillog2, centred_offset, floorlog2, index_divisor, softmax_tables

lowering = functools.partial(ops.implements, "rtl")


class RtlError(ValueError):
    """A graph the RTL writer cannot turn into Verilog; one line naming the layer and its op."""


@dataclasses.dataclass
class Sig:
    """A wire: ``value = code * 2**lsb``, code in [lo, hi]; placed at pipeline ``stage``, ready ``t`` ns into it."""

    name: str
    lsb: int
    lo: int
    hi: int
    stage: int = 0
    t: float = 0.0
    const: int | None = None

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


def check_supported(graph: Graph | dict):
    """Raise RtlError for the first layer the writer cannot build (before anything is written)."""
    graph = as_graph(graph)
    if len(graph.inputs) != 1:
        raise RtlError(f"the RTL writer takes one model input, the firmware has {graph.inputs}")
    if graph.io_type != "io_parallel":
        raise RtlError(f"the RTL writer builds io_parallel designs, this firmware is {graph.io_type}")
    for layer in graph.layers:
        if why := ops.refusal(layer, "rtl"):
            raise RtlError(why)


def _product(layer: Layer) -> str | None:
    return None if layer.get("product") == "mult" else f"product {layer.get('product')!r}"


def _softmax_kind(layer: Layer) -> str | None:
    impl = layer.get("implementation")
    return None if impl in ("latency", "stable") else f"softmax implementation {impl!r}"


class _Writer:
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

    def _place(self, inputs: list[Sig], ns: float) -> tuple[int, float]:
        """ASAP placement of a cell of delay ``ns`` fed by ``inputs``: (stage, ready time in the stage)."""
        live = [s for s in inputs if s.const is None]
        stage = max([1] + [s.stage for s in live])
        start = max([0.0] + [s.t for s in live if s.stage == stage])
        if start + ns > self.budget and start > 0:
            stage, start = stage + 1, 0.0
        return stage, start + ns

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

    def _wire(self, lsb: int, lo: int, hi: int, stage: int, t: float) -> Sig:
        sig = Sig(self._name(), lsb, lo, hi, stage, t)
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
        stage, t = self._place([a.sig, b.sig], delay.adder_ns(wo, a.sign * sign < 0 or b.sign * sign < 0))
        spec = lambda term: (term.sig.width, term.sig.signed, term.lsb - at, term.sign * sign)  # noqa: E731
        module = self._cell(lambda n: adder(n, spec(a), spec(b), wo), "add")
        out = self._wire(at, lo, hi, stage, t)
        self.insts.append(f"  {module} u_{out.name}(.a({self.at(a.sig, stage)}), .b({self.at(b.sig, stage)}), .y({out.name}));")
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
        stage, t = self._place([x.sig], delay.adder_ns(wo, x.sign < 0))
        module = self._cell(lambda n: add_const(n, (x.sig.width, x.sig.signed, x.lsb - at, x.sign), c, wo), "addc")
        out = self._wire(at, lo, hi, stage, t)
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
            wide = FixedType(MAX_WIDTH, MAX_WIDTH - t.frac, True, t.rounding, "WRAP")
            if width_of(*plan["q"]) + 2 < MAX_WIDTH:
                return self.cast(self.cast(x, wide), t, relu)
        text, wy = cast("CELL", x.width, x.signed, plan, t)
        ns = 0.0
        if plan["drop"] > 0 and t.rounding != "TRN":
            ns += delay.lut_levels_ns(1) + delay.adder_ns(width_of(*plan["q"]))
        if plan["overflow"] and t.overflow != "WRAP":
            ns += delay.lut_levels_ns(delay.compare_levels(width_of(*plan["q"]) + 1) + 1)
        if plan["relu"]:
            ns += delay.lut_levels_ns(1)
        stage, ready = self._place([x], ns)
        module = self._cell(lambda n: text.replace("module CELL(", f"module {n}("), "cast")
        out = self._wire(plan["lsb"], *plan["out"], stage, ready)
        assert out.width == wy, (out, wy)
        self.insts.append(f"  {module} u_{out.name}(.a({self.at(x, stage)}), .y({out.name}));")
        self.counts["casts"] += 1
        return out

    # ---- more cells ------------------------------------------------------------------------------------
    def _inst(self, make, kind: str, ns: float, inputs: list, lsb: int, lo: int, hi: int, ports: list) -> Sig:
        """One instance of the cell ``make(name)``; ``ports`` = [(port, Sig)] (constants become literals)."""
        stage, t = self._place(inputs, ns)
        module = self._cell(make, kind)
        out = self._wire(lsb, lo, hi, stage, t)
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
        sig = Sig(self._name(), 0, 0, 1, x.stage, x.t)
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
            q = self.cast(x, FixedType(MAX_WIDTH, MAX_WIDTH + at + s, True, "TRN_ZERO", "WRAP"))
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
        q = self.cast(prod, FixedType(MAX_WIDTH, MAX_WIDTH + at + k, True, "TRN", "WRAP"))
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


def _unchanged(t: FixedType) -> tuple[int, int]:
    """The codes ``t``'s overflow mode leaves as they are (SAT_SYM saturates the most negative code too)."""
    if t.overflow == "SAT_SYM" and t.signed:
        return -t.max_code, t.max_code
    return t.min_code, t.max_code


def _each(fn, arr: np.ndarray) -> np.ndarray:
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        out[idx] = fn(arr[idx])
    return out


def _csd_terms(x: Sig, code: int, frac: int) -> list:
    """The terms of ``x * code * 2**-frac`` (canonical signed digits of the constant)."""
    if x.const is not None:
        return [Term(c, c.lsb, 1) for c in [_Writer.const(x.const * code, x.lsb - frac)]]
    return [Term(x, x.lsb + k - frac, d) for k, d in csd(code)]


@lowering("dense", refuse=_product)
def _dense_layer(wr, spec, srcs, weights):
    (x, x_t), = srcs
    flat = list(x.ravel())
    return wr.dense(flat, x_t, wr.dense_params(spec, weights, len(flat)))


@lowering("conv1d", refuse=_product)
def _conv1d_layer(wr, spec, srcs, weights):
    """``conv_1d_latency_cl``: the dense accumulation on each output position's zero-padded window (taps, channels)."""
    (x, x_t), = srcs
    s = spec
    x = x.reshape(s["in_width"], s["n_chan"])
    zero = wr.const(0, 0)
    p = wr.dense_params(spec, weights, s["filt_width"] * s["n_chan"])
    outs = []
    for o in range(s["out_width"]):
        window = []
        for f in range(s["filt_width"]):
            i = o * s["stride_width"] + f - s["pad_left"]
            window += list(x[i]) if 0 <= i < s["in_width"] else [zero] * s["n_chan"]
        outs.append(wr.dense(window, x_t, p))
    return outs


@lowering("conv2d", refuse=_product)
def _conv2d_layer(wr, spec, srcs, weights):
    """``conv_2d_latency_cl``: the dense accumulation on each output pixel's zero-padded window (rows, columns,
    channels), pixels row-major."""
    (x, x_t), = srcs
    s = spec
    x = x.reshape(s["in_height"], s["in_width"], s["n_chan"])
    zero = wr.const(0, 0)
    p = wr.dense_params(spec, weights, s["filt_height"] * s["filt_width"] * s["n_chan"])
    outs = []
    for oi in range(s["out_height"]):
        for oj in range(s["out_width"]):
            window = []
            for fi in range(s["filt_height"]):
                for fj in range(s["filt_width"]):
                    i, j = oi * s["stride_height"] + fi - s["pad_top"], oj * s["stride_width"] + fj - s["pad_left"]
                    inside = 0 <= i < s["in_height"] and 0 <= j < s["in_width"]
                    window += list(x[i, j]) if inside else [zero] * s["n_chan"]
            outs.append(wr.dense(window, x_t, p))
    return outs


@lowering("pool2d")
def _pool2d_layer(wr, spec, srcs, weights):
    """``pooling2d_cl``: max in the input type (padding: the MSB-only bit pattern), or the sum in accum_t (one cast
    per addition) divided towards zero by the unpadded area (or the window with count_pad); then (res_t)."""
    (x, x_t), = srcs
    s = spec
    acc_t, res_t = s.type("accum_t"), s.result_t
    x = x.reshape(s["in_height"], s["in_width"], s["n_filt"])
    pad = wr.const(x_t.min_code if x_t.signed else 1 << (x_t.width - 1), -x_t.frac)
    outs = []
    for oi in range(s["out_height"]):
        for oj in range(s["out_width"]):
            for c in range(s["n_filt"]):
                win, inside = [], 0
                for fi in range(s["pool_height"]):
                    for fj in range(s["pool_width"]):
                        i, j = oi * s["stride_height"] + fi - s["pad_top"], oj * s["stride_width"] + fj - s["pad_left"]
                        ok = 0 <= i < s["in_height"] and 0 <= j < s["in_width"]
                        inside += ok
                        win.append(x[i, j, c] if ok else None)
                if s["pool_op"] == "max":
                    acc = wr.cast(wr.reduce_max([v if v is not None else pad for v in win]), acc_t)
                else:
                    acc = wr.chain_sum([v for v in win if v is not None], acc_t)
                    size = s["pool_height"] * s["pool_width"] if s["count_pad"] else inside
                    acc = wr.cast(wr.trunc_div(acc, size, -acc_t.frac), acc_t)
                outs.append(wr.cast(acc, res_t))
    return outs


@lowering("global_max", "global_average")
def _global_layer(wr, spec, srcs, weights):
    """GlobalPooling1D over the first axis: ``(res_t)(accum_t)max``, or ``acc = (accum_t)(acc + x)`` in order,
    ``acc /= n`` (truncating), ``(res_t)acc``."""
    (x, x_t), = srcs
    acc_t, res_t = spec.type("accum_t"), spec.result_t
    x = x.reshape(x.shape[0], -1)
    outs = []
    for f in range(x.shape[1]):
        col = list(x[:, f])
        if spec["op"] == "global_max":
            acc = wr.cast(wr.reduce_max(col), acc_t)
        else:
            acc = wr.cast(wr.trunc_div(wr.chain_sum(col, acc_t), len(col), -acc_t.frac), acc_t)
        outs.append(wr.cast(acc, res_t))
    return outs


@lowering("batchnorm")
def _batchnorm_layer(wr, spec, srcs, weights):
    """``res = (res_t)(x * scale + bias)``, exact inside: the constant product in canonical signed digits."""
    (x, x_t), = srcs
    scale_t, bias_t, res_t = (spec.type(k) for k in ("scale_t", "bias_t", "result_t"))
    flat = x.ravel()
    pick = np.arange(len(flat)) % len(weights[f"{spec['name']}/scale"])
    scale = scale_t.from_float(weights[f"{spec['name']}/scale"])[pick]
    bias = bias_t.from_float(weights[f"{spec['name']}/bias"])[pick]
    return [wr.cast(wr.tree(_csd_terms(v, int(scale[k]), scale_t.frac), wr.const(int(bias[k]), -bias_t.frac)), res_t)
            for k, v in enumerate(flat)]


@lowering("leaky_relu")
def _leaky_relu_layer(wr, spec, srcs, weights):
    """``x > 0 ? (res_t)x : (res_t)(alpha * x)``, alpha in param_t, the product exact."""
    (x, x_t), = srcs
    res_t, param_t = spec.result_t, spec.type("param_t")
    alpha = int(param_t.from_float(spec["alpha"]))

    def one(v):
        neg = wr.cast(wr.tree(_csd_terms(v, alpha, param_t.frac), wr.const(0, 0)), res_t)
        return wr.select_pos(v, wr.cast(v, res_t), neg)

    return _each(one, x)


@lowering("hard_sigmoid", "hard_tanh")
def _hard_layer(wr, spec, srcs, weights):
    """hard_sigmoid / hard_tanh: ``y = slope * x + shift`` exact, clipped to [0, 1] (``2y - 1`` for tanh), (res_t)y."""
    (x, x_t), = srcs
    slope_t, shift_t, res_t = (spec.type(k) for k in ("slope_t", "shift_t", "result_t"))
    slope, shift = int(slope_t.from_float(spec["slope"])), int(shift_t.from_float(spec["shift"]))

    def one(v):
        y = wr.tree(_csd_terms(v, slope, slope_t.frac), wr.const(shift, -shift_t.frac))
        y = wr.maxmin(wr.maxmin(y, wr.const(0, 0), "max"), wr.const(1, 0), "min")
        if spec["op"] == "hard_tanh":
            y = wr.tree([Term(y, y.lsb + 1, 1)], wr.const(-1, 0))
        return wr.cast(y, res_t)

    return _each(one, x)


@lowering("table")
def _table_layer(wr, spec, srcs, weights):
    """sigmoid / tanh tables: ``index = clamp((int)(x * N / R) + R/2 * N / R)`` in C ints (the division truncating
    towards zero), then a ROM of the table converted to res_t (its contents as ``init_*_table`` builds them)."""
    (x, x_t), = srcs
    res_t, table_t = spec.result_t, spec.type("table_t")
    codes, span = activation_table(spec["function"], spec["table_size"], table_t)
    table = res_t.from_codes(codes, table_t.frac)
    size = len(table)
    mult, den = index_divisor(x_t.frac, size, span)
    offset = centred_offset(size, span)
    rom = {k: int(v) for k, v in enumerate(table)}

    def one(v):
        code = dataclasses.replace(v, lsb=v.lsb + x_t.frac)  # the code of x_t, as an integer
        prod = wr.tree(_csd_terms(code, int(mult), 0), wr.const(0, 0))
        q = wr.trunc_div(prod, int(den), 0)
        q = dataclasses.replace(q, lsb=q.lsb + max(-x_t.frac, 0))
        if q.const is None and max(-q.lo, q.hi) << max(q.lsb, 0) >= 2**31 - offset:
            raise RtlError(f"layer '{spec['name']}' (table): the index leaves 32-bit ints; not supported by the RTL writer")
        index = wr.tree([Term(q, q.lsb, 1)], wr.const(offset, 0))
        index = wr.maxmin(wr.maxmin(index, wr.const(0, 0), "max"), wr.const(size - 1, 0), "min")
        out = wr.rom(index, rom)
        return dataclasses.replace(out, lsb=out.lsb - res_t_frac)

    res_t_frac = res_t.frac
    return _each(one, x)


@lowering("softmax", refuse=_softmax_kind)
def _softmax_layer(wr, spec, srcs, weights):
    """Softmax, latency and stable: exp ROM on the top bits of x (stable: of ``inp_norm_t(max - x)``) giving
    accum_t codes, their sum as the C++ balanced tree (each addition cast to accum_t), ``(inv_inp_t)sum``, the
    inverse ROM on its top bits, ``res = (res_t)(exp * inv)`` (a variable product)."""
    (x, x_t), = srcs
    p = softmax_tables(spec, x_t)
    acc_t, exp_t, inv_t, inv_inp_t, address_t = (p[k] for k in ("acc_t", "exp_t", "inv_t", "inv_inp_t", "address_t"))
    res_t = spec.result_t
    exp_codes = acc_t.from_codes(p["exp"], exp_t.frac)
    exp_rom = {k: int(v) for k, v in enumerate(exp_codes)}
    inv_rom = {k: int(v) for k, v in enumerate(p["inv"])}
    rows = x.reshape(-1, x.shape[-1])
    outs = []
    for row in rows:
        row = list(row)
        if spec["implementation"] == "stable":
            top = wr.reduce_max(row)
            row = [wr.cast(wr.tree([Term(top, top.lsb, 1), Term(v, v.lsb, -1)], wr.const(0, 0)), address_t) for v in row]
        exps = []
        for v in row:
            e = wr.rom(wr.top_bits(v, address_t, ceillog2(len(exp_codes))), exp_rom)
            exps.append(dataclasses.replace(e, lsb=e.lsb - acc_t.frac))

        def tree_sum(cols):
            if len(cols) == 1:
                return cols[0]
            left = 1 << floorlog2(len(cols) - 1)
            a, b = tree_sum(cols[:left]), tree_sum(cols[left:])
            return wr.cast(wr.tree([Term(a, a.lsb, 1), Term(b, b.lsb, 1)], wr.const(0, 0)), acc_t)

        total = wr.cast(tree_sum(exps), inv_inp_t)
        inv = wr.rom(wr.top_bits(total, inv_inp_t, ceillog2(len(inv_rom))), inv_rom)
        inv = dataclasses.replace(inv, lsb=inv.lsb - inv_t.frac)
        outs += [wr.cast(wr.multiply(e, inv), res_t) for e in exps]
    return outs


@lowering("add", "subtract", "average", "maximum", "minimum")
def _merge_layer(wr, spec, srcs, weights):
    """add / subtract / average / maximum / minimum: the exact two-input result, then (res_t)."""
    (a, _), (b, _) = srcs
    res_t, op = spec.result_t, spec["op"]

    def one(u, v):
        if op in ("maximum", "minimum"):
            y = wr.maxmin(u, v, op[:3])
        else:
            half = -1 if op == "average" else 0  # (a + b) * ap_ufixed<1,0>(0.5)
            y = wr.tree([Term(u, u.lsb + half, 1), Term(v, v.lsb + half, -1 if op == "subtract" else 1)], wr.const(0, 0))
        return wr.cast(y, res_t)

    return [one(u, v) for u, v in zip(a.ravel(), b.ravel())]


@lowering("concatenate")
def _concatenate_layer(wr, spec, srcs, weights):
    res_t, axis = spec.result_t, spec["axis"]
    parts = [_each(lambda v: wr.cast(v, res_t), x) for x, _ in srcs]
    return np.concatenate(parts, axis=axis - 1 if axis > 0 else axis)


@lowering("transpose")
def _transpose_layer(wr, spec, srcs, weights):
    (x, _), = srcs
    res_t = spec.result_t
    return _each(lambda v: wr.cast(v, res_t), np.transpose(x, spec["perm"]))


@lowering("relu", "linear")
def _activation_layer(wr, spec, srcs, weights):
    return _each(lambda v: wr.cast(v, spec.result_t, relu=spec.op == "relu"), srcs[0][0])


@lowering("zeropad1d")
def _zeropad1d_layer(wr, spec, srcs, weights):
    """``zeropad1d_cl``: constant zeros around the input positions (channels last), each value cast to res_t."""
    x = _each(lambda v: wr.cast(v, spec.result_t), srcs[0][0]).reshape(spec["in_width"], spec["n_chan"])
    out = np.empty((spec["out_width"], spec["n_chan"]), dtype=object)
    out[:] = wr.const(0, 0)
    out[spec["pad_left"] : spec["pad_left"] + spec["in_width"]] = x
    return out


@lowering("reshape")
def _reshape_layer(wr, spec, srcs, weights):
    return srcs[0][0]


@lowering("input")
def _input_layer(wr, spec, srcs, weights):
    """One input port per element, each the width of the input type."""
    res_t = spec.result_t
    sigs = np.empty(spec.size, dtype=object)
    for k in range(spec.size):
        sigs[k] = Sig(f"in_{k}", -res_t.frac, res_t.min_code, res_t.max_code, stage=0, t=0.0)
        wr.ports_in.append({"name": f"in_{k}", "width": res_t.width, "signed": res_t.signed})
    return sigs


def write_rtl(graph: Graph | dict, weights: dict | None, out_dir, clock_mhz: float = 240.0, top: str | None = None) -> dict:
    """Write the Verilog of ``graph`` to ``out_dir``; returns the ``rtl.json`` description (also written).

    ``graph``/``weights`` as ``l1forge.graph.ir.read_graph`` returns them; ``clock_mhz`` sets the stage budget.
    Raises RtlError (one line) for a layer it does not support, before writing anything.
    """
    graph = as_graph(graph, weights)
    check_supported(graph)
    top = top or "m_" + re.sub(r"\W", "_", graph.project_name) + "_rtl"  # a valid Verilog name
    wr = _Writer(top, clock_mhz)
    values: dict[str, np.ndarray] = {}  # layer -> object array of Sig, shaped as the layer's output
    types: dict[str, FixedType] = {}
    for spec in graph.layers:
        types[spec.name] = spec.result_t
        srcs = [(values[i], types[i]) for i in spec.inputs] if spec.op != "input" else []
        out = ops.implementation(spec, "rtl")(wr, spec, srcs, graph.weights)
        values[spec.name] = np.asarray(out, dtype=object).reshape(spec.shape)
    outs = [s for name in graph.outputs for s in values[name].ravel()]
    out_types = [types[name] for name in graph.outputs for _ in values[name].ravel()]
    last = max([s.stage for s in outs if s.const is None] + [1])
    latency = last + 1  # stages 1..last, then the output register
    ports_out, assigns = [], []
    for k, (s, t) in enumerate(zip(outs, out_types)):
        ports_out.append({"name": f"out_{k}", "width": t.width, "signed": t.signed, "frac": t.frac})
        src = wr.at(s, last + 1) if s.const is None else wr.at(s, 0)
        shift = s.lsb + t.frac
        val = src if shift == 0 else f"{{{src}, {shift}'d0}}"
        w = s.width + shift
        wire = f"ow_{k}"
        wr.decls.append(f"  wire [{w - 1}:0] {wire} = {val};")
        assigns.append(f"  assign out_{k} = {ext(wire, w, s.signed, t.width)};")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ports = ["input clk"] + [f"input [{p['width'] - 1}:0] {p['name']}" for p in wr.ports_in] + \
        [f"output [{p['width'] - 1}:0] {p['name']}" for p in ports_out]
    regs = [f"  reg [{w - 1}:0] {r};" for r, (_, w) in wr.regs.items()]
    always = ["  always @(posedge clk) begin"] + [f"    {r} <= {s};" for r, (s, _) in wr.regs.items()] + ["  end"]
    text = "\n".join([f"// generated by l1forge.rtl.lower from the firmware graph: {graph.project_name}",
                      f"// clock {clock_mhz} MHz, latency {latency} cycles, II 1", "",
                      f"module {top}(\n  " + ",\n  ".join(ports) + "\n);", *regs, *wr.decls, *wr.insts, *assigns,
                      *always, "endmodule", ""])
    (out_dir / f"{top}.v").write_text(text)
    (out_dir / f"{top}_cells.v").write_text("\n".join(wr.cell_text))
    info = {"top": top, "files": [f"{top}.v", f"{top}_cells.v"], "clock_mhz": clock_mhz, "latency_cycles": latency,
            "ii_cycles": 1, "latency_ns": round(latency * 1000.0 / clock_mhz, 3),
            "stage_budget_ns": round(wr.budget, 3), "inputs": wr.ports_in, "outputs": ports_out,
            "input_type": str(types[graph.inputs[0]]), "adders": wr.counts["adders"],
            "cmvm_adders": wr.counts["cmvm_adders"], "casts": wr.counts["casts"],
            "registers_bits": int(sum(w for _, w in wr.regs.values())), "cell_modules": len(wr.cells),
            "delay_model": delay.CONSTANTS}
    (out_dir / "rtl.json").write_text(json.dumps(info, indent=1))
    return info


def write_rtl_from_file(graph_json, out_dir, clock_mhz: float = 240.0) -> dict:
    """``write_rtl`` on a ``graph.json`` (read with l1forge.graph.ir.read_graph)."""
    from l1forge.graph.ir import read_graph

    return write_rtl(read_graph(graph_json), None, out_dir, clock_mhz)


