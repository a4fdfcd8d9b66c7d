"""Synthesizable Verilog of the datapath in the firmware graph (``firmware/graph.json``), bit-exact to the emulator.

``write_rtl(graph, weights, out_dir, clock_mhz)`` writes ``out_dir/<top>.v`` (the top module: input registers,
pipeline registers, output registers and one instance per adder or cast), ``out_dir/<top>_cells.v`` (the leaf
modules, firmware/rtl_cells.py) and ``out_dir/rtl.json`` (ports, latency, counts, delay model).

Supported ops: ``input``, ``dense`` (product ``mult``), ``relu``, ``linear``, ``reshape``. Anything else raises
``RtlError`` naming the layer and its op before a file is written.

Arithmetic, as ``nnet::dense_latency`` and the emulator (emulation/emulator.py) do it:

* each product ``x_i * w_ij`` is a sum of shifted copies of ``x_i``, one per non-zero digit of the weight code
  in canonical signed digits (no multipliers); if the product has more fractional bits than ``accum_t`` it is cast
  into ``accum_t`` (rounding mode; overflow too unless ``accum_t`` wraps) before it is added;
* when ``accum_t`` wraps, or no partial sum of the C++ order (bias, then inputs 0..n-1) can leave its range
  (checked on exact ranges), the products and the bias are summed in a balanced tree of two-operand adders, each
  trimmed to the exact range of its result, and cast to ``accum_t`` once (modular sums are order-free);
  otherwise each addition is followed by the cast, in the C++ order (a saturating chain);
* ``result_t = (result_t) acc``; relu: ``x > 0 ? (result_t) x : 0``; linear: ``(result_t) x``.

Pipelining: each adder or cast is placed as soon as its inputs are ready (ASAP); when its delay (firmware/delay.py)
would push the stage past the budget of one clock period it starts the next stage, behind registers. Inputs and
outputs are registered. Latency (cycles from the input register to the output register, inclusive) and II = 1.

Port ``in_<k>``: the input type's code of flat input element k; ``out_<k>``: the output type's code of output k.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

import numpy as np

from l1forge.firmware import delay
from l1forge.firmware.rtl_cells import add_const, adder, cast, ext, plan_cast, width_of
from l1forge.quantize.fixed import MAX_WIDTH, FixedType

SUPPORTED = ("input", "dense", "relu", "linear", "reshape")


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


def check_supported(graph: dict):
    """Raise RtlError for the first layer the writer cannot build (before anything is written)."""
    if len(graph["inputs"]) != 1:
        raise RtlError(f"the RTL writer takes one model input, the firmware has {graph['inputs']}")
    if graph.get("io_type", "io_parallel") != "io_parallel":
        raise RtlError(f"the RTL writer builds io_parallel designs, this firmware is {graph['io_type']}")
    for spec in graph["layers"]:
        op = spec.get("op")
        if op not in SUPPORTED:
            raise RtlError(f"layer '{spec['name']}' ({spec.get('class_name')}, op {op!r}) is not supported by the RTL writer")
        if op == "dense" and spec.get("product") != "mult":
            raise RtlError(f"layer '{spec['name']}' (Dense, op 'dense'): product {spec.get('product')!r} is not supported by the RTL writer")


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
        self.counts = {"adders": 0, "casts": 0}

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
    def add(self, x: Term, y: Term) -> Term:
        """One two-operand adder: returns the sum as a term (its sign chosen so the adder's low bits pass through)."""
        if x.sign == y.sign:
            sign, a, b = x.sign, x, y
        else:
            pos, neg = (x, y) if x.sign > 0 else (y, x)
            # result = +(pos - neg) or -(neg - pos): subtract the operand with the higher weight
            sign, a, b = (1, pos, neg) if neg.lsb >= pos.lsb else (-1, neg, pos)
        at = min(a.lsb, b.lsb)
        (alo, ahi), (blo, bhi) = Term(a.sig, a.lsb, a.sign * sign).value_range(at), Term(b.sig, b.lsb, b.sign * sign).value_range(at)
        lo, hi = alo + blo, ahi + bhi
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

    # ---- layers ------------------------------------------------------------------------------------------
    def dense(self, xs: list[Sig], x_t: FixedType, spec: dict, weights: dict) -> list[Sig]:
        name = spec["name"]
        wt, bt, acc_t, res_t = (FixedType.parse(spec[k]) for k in ("weight_t", "bias_t", "accum_t", "result_t"))
        w = wt.from_float(weights[f"{name}/weight"]).reshape(len(xs), -1)
        b_acc = acc_t.from_codes(bt.from_float(weights[f"{name}/bias"]).reshape(-1), bt.frac)
        wraps = acc_t.overflow == "WRAP"
        per_product_cast = x_t.frac + wt.frac > acc_t.frac or not wraps
        outs = []
        for j in range(w.shape[1]):
            products = []  # the terms of each non-zero product, in input order
            for i, x in enumerate(xs):
                code = int(w[i, j])
                if code == 0:
                    continue
                if x.const is not None:
                    c = self.const(x.const * code, x.lsb - wt.frac)
                    terms = [Term(c, c.lsb, 1)]
                else:
                    terms = [Term(x, x.lsb + k - wt.frac, d) for k, d in csd(code)]
                if per_product_cast:  # (accum_t)(x * w): rounding, and overflow unless the sum wraps anyway
                    p = self.cast(self.tree(terms, self.const(0, 0)), acc_t)
                    terms = [Term(p, p.lsb, 1)]
                products.append(terms)
            bias = self.const(int(b_acc[j]), -acc_t.frac)
            outs.append(self.cast(self._accumulate(products, bias, acc_t, wraps), res_t))
        return outs

    def _accumulate(self, products: list, bias: Sig, acc_t: FixedType, wraps: bool) -> Sig:
        """accum_t sum of bias + products in the C++ order (one tree when the order cannot matter)."""
        at = -acc_t.frac
        lo = hi = bias.const << (bias.lsb - at)
        in_range = True
        for terms in products:
            for term in terms:
                a, b = term.value_range(at)
                lo, hi = lo + a, hi + b
            in_range &= acc_t.min_code <= lo and hi <= acc_t.max_code
        if wraps or in_range:
            return self.cast(self.tree([t for terms in products for t in terms], bias), acc_t)
        acc = bias
        for terms in products:  # saturating chain, as the C++ loop: acc = (accum_t)(acc + mult)
            acc = self.cast(self.tree(terms + [Term(acc, acc.lsb, 1)], self.const(0, 0)), acc_t)
        return acc


def write_rtl(graph: dict, weights: dict, out_dir, clock_mhz: float = 240.0, top: str | None = None) -> dict:
    """Write the Verilog of ``graph`` to ``out_dir``; returns the ``rtl.json`` description (also written).

    ``graph``/``weights`` as ``l1forge.core.graph.read_graph`` returns them; ``clock_mhz`` sets the stage budget.
    Raises RtlError (one line) for a layer it does not support, before writing anything.
    """
    check_supported(graph)
    top = top or "m_" + re.sub(r"\W", "_", graph.get("project_name", "top")) + "_rtl"  # a valid Verilog name
    wr = _Writer(top, clock_mhz)
    values: dict[str, list[Sig]] = {}
    types: dict[str, FixedType] = {}
    ports_in = []
    for spec in graph["layers"]:
        name, op = spec["name"], spec["op"]
        res_t = FixedType.parse(spec["result_t"])
        types[name] = res_t
        if op == "input":
            n = int(np.prod(spec["shape"]))
            sigs = []
            for k in range(n):
                sigs.append(Sig(f"in_{k}", -res_t.frac, res_t.min_code, res_t.max_code, stage=0, t=0.0))
                ports_in.append({"name": f"in_{k}", "width": res_t.width, "signed": res_t.signed})
            values[name] = sigs
            continue
        src = values[spec["inputs"][0]]
        src_t = types[spec["inputs"][0]]
        if op == "dense":
            values[name] = wr.dense(src, src_t, spec, weights)
        elif op == "relu":
            values[name] = [wr.cast(x, res_t, relu=True) for x in src]
        elif op == "linear":
            values[name] = [wr.cast(x, res_t) for x in src]
        else:  # reshape
            values[name] = list(src)
    outs = [s for name in graph["outputs"] for s in values[name]]
    out_types = [types[name] for name in graph["outputs"] for _ in values[name]]
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
    ports = ["input clk"] + [f"input [{p['width'] - 1}:0] {p['name']}" for p in ports_in] + \
        [f"output [{p['width'] - 1}:0] {p['name']}" for p in ports_out]
    regs = [f"  reg [{w - 1}:0] {r};" for r, (_, w) in wr.regs.items()]
    always = ["  always @(posedge clk) begin"] + [f"    {r} <= {s};" for r, (s, _) in wr.regs.items()] + ["  end"]
    text = "\n".join([f"// generated by l1forge.firmware.rtl from the firmware graph: {graph.get('project_name')}",
                      f"// clock {clock_mhz} MHz, latency {latency} cycles, II 1", "",
                      f"module {top}(\n  " + ",\n  ".join(ports) + "\n);", *regs, *wr.decls, *wr.insts, *assigns,
                      *always, "endmodule", ""])
    (out_dir / f"{top}.v").write_text(text)
    (out_dir / f"{top}_cells.v").write_text("\n".join(wr.cell_text))
    info = {"top": top, "files": [f"{top}.v", f"{top}_cells.v"], "clock_mhz": clock_mhz, "latency_cycles": latency,
            "ii_cycles": 1, "latency_ns": round(latency * 1000.0 / clock_mhz, 3),
            "stage_budget_ns": round(wr.budget, 3), "inputs": ports_in, "outputs": ports_out,
            "input_type": str(types[graph["inputs"][0]]), "adders": wr.counts["adders"], "casts": wr.counts["casts"],
            "registers_bits": int(sum(w for _, w in wr.regs.values())), "cell_modules": len(wr.cells),
            "delay_model": delay.CONSTANTS}
    (out_dir / "rtl.json").write_text(json.dumps(info, indent=1))
    return info


def write_rtl_from_file(graph_json, out_dir, clock_mhz: float = 240.0) -> dict:
    """``write_rtl`` on a ``graph.json`` (read with l1forge.core.graph.read_graph)."""
    from l1forge.core.graph import read_graph

    return write_rtl(*read_graph(graph_json), out_dir, clock_mhz)


