"""Leaf modules of the RTL writer (rtl/lower.py): two-operand adders and fixed-point casts, as Verilog text.

Every value is an integer *code* on a wire with a known exact range ``[lo, hi]`` (signed two's complement when
``lo < 0``, unsigned otherwise) and a known weight ``2**lsb``; wires are exactly as wide as their range needs.
Each leaf is its own module marked ``(* keep_hierarchy *)``: Yosys then maps every two-operand adder to LUT2 +
carry cells instead of merging the sums of a layer into one multi-operand adder ($macc), which it maps badly
(../shared/README.md, "Yosys and RTL style"). Vectors are unsigned in the Verilog text, with sign or zero
extension written out, so that no Verilog signedness rule can change an expression.

The cast repeats ``l1forge.quantize.fixed.FixedType.from_codes`` exactly: drop the low bits with the rounding
mode (TRN, TRN_ZERO, RND, RND_ZERO, RND_INF, RND_MIN_INF, RND_CONV), then apply the overflow mode (WRAP, SAT,
SAT_ZERO, SAT_SYM); the ReLU variant outputs 0 unless the input code is > 0, as the emulator's ``_relu`` (written
as a test of the sign bit alone: the cast of a zero code is zero in every mode).
"""

from __future__ import annotations

from l1forge.quantize.fixed import FixedType


def width_of(lo: int, hi: int) -> int:
    """Bits of the narrowest two's complement (lo < 0) or unsigned (lo >= 0) vector holding every code in [lo, hi]."""
    if lo >= 0:
        return max(1, hi.bit_length())
    return max(max(hi, 0).bit_length(), (-lo - 1).bit_length()) + 1


def swidth_of(lo: int, hi: int) -> int:
    """Bits of the narrowest two's complement vector holding [lo, hi]."""
    return max(max(hi, 0).bit_length(), (-min(lo, 0) - 1).bit_length() if lo < 0 else 0) + 1


def ext(name: str, width: int, signed: bool, to: int) -> str:
    """``name`` (``width`` bits) sign- or zero-extended (or cut) to ``to`` bits."""
    if to <= width:
        return name if to == width else f"{name}[{to - 1}:0]"
    fill = f"{name}[{width - 1}]" if signed else "1'b0"
    return f"{{{{{to - width}{{{fill}}}}}, {name}}}"


def lit(value: int, width: int) -> str:
    """``value`` as a ``width``-bit two's complement literal."""
    return f"{width}'d{value % (1 << width)}"


def round_code(code: int, drop: int, mode: str) -> int:
    """``code`` with ``drop`` low bits removed by rounding ``mode`` (python ints; mirrors FixedType._round)."""
    if drop <= 0:
        return code << -drop
    q = code >> drop
    rem = code - (q << drop)
    half = 1 << (drop - 1)
    above, tie, neg, inexact = rem > half, rem == half, code < 0, rem != 0
    inc = {"TRN": False, "TRN_ZERO": inexact and neg, "RND": above or tie, "RND_ZERO": above or (tie and neg),
           "RND_MIN_INF": above, "RND_INF": above or (tie and not neg), "RND_CONV": above or (tie and bool(q & 1))}[mode]
    return q + int(inc)


def overflow_range(t: FixedType, lo: int, hi: int) -> tuple[int, int, bool]:
    """(lo, hi, logic needed) of codes in [lo, hi] after ``t``'s overflow mode."""
    tmin, tmax = t.min_code, t.max_code
    if t.overflow == "SAT_SYM" and t.signed:
        tmin = -tmax
    if tmin <= lo and hi <= tmax and not (t.overflow == "SAT_SYM" and lo < tmin):
        return lo, hi, False
    if t.overflow == "WRAP":
        return t.min_code, t.max_code, True
    inside = (max(lo, tmin), min(hi, tmax)) if max(lo, tmin) <= min(hi, tmax) else None
    if t.overflow == "SAT_ZERO":
        return (min(inside[0], 0), max(inside[1], 0), True) if inside else (0, 0, True)
    return max(min(lo, tmax), tmin), min(max(hi, tmin), tmax), True


def adder(name: str, a: tuple, b: tuple, wo: int) -> str:
    """``y = sa * (a << shift_a) + sb * (b << shift_b)`` modulo 2**wo, one of the shifts 0, not both signs -1.

    ``a``/``b``: (width, signed, shift, sign). When the unshifted operand is added, its low bits pass through and
    only the overlapping bits go through the carry chain (the adder is trimmed to its exact range).
    """
    (wa, sa, ha, ga), (wb, sb, hb, gb) = a, b
    if ga < 0 and gb < 0:
        raise ValueError("adder: at most one negative operand")
    body = [f"(* keep_hierarchy *)\nmodule {name}(input [{wa - 1}:0] a, input [{wb - 1}:0] b, output [{wo - 1}:0] y);"]
    # operand u unshifted (shift 0), v shifted by s
    (u, wu, su, gu), (v, wv, sv, gv), s = (("a", wa, sa, ga), ("b", wb, sb, gb), hb) if ha == 0 else \
        (("b", wb, sb, gb), ("a", wa, sa, ga), ha)
    if s > 0 and gu > 0 and wo > s:
        op = "+" if gv > 0 else "-"
        body.append(f"  wire [{wo - 1}:0] ue = {ext(u, wu, su, wo)};")
        body.append(f"  assign y[{s - 1}:0] = ue[{s - 1}:0];")
        body.append(f"  assign y[{wo - 1}:{s}] = ue[{wo - 1}:{s}] {op} {ext(v, wv, sv, wo - s)};")
    else:
        terms = []
        for n, w, sg, h, g in (("a", wa, sa, ha, ga), ("b", wb, sb, hb, gb)):
            e = ext(n, w, sg, wo)
            e = f"({e} << {h})" if h else e
            terms.append(("- " if g < 0 else "+ ") + e)
        expr = " ".join(terms)
        body.append(f"  assign y = {expr[2:] if expr.startswith('+ ') else lit(0, wo) + ' ' + expr};")
    body.append("endmodule\n")
    return "\n".join(body)


def add_const(name: str, a: tuple, const: int, wo: int) -> str:
    """``y = sign * (a << shift) + const`` modulo 2**wo; ``a`` = (width, signed, shift, sign)."""
    wa, sa, ha, ga = a
    e = ext("a", wa, sa, wo)
    e = f"({e} << {ha})" if ha else e
    expr = f"{lit(const, wo)} - {e}" if ga < 0 else f"{e} + {lit(const, wo)}"
    return (f"(* keep_hierarchy *)\nmodule {name}(input [{wa - 1}:0] a, output [{wo - 1}:0] y);\n"
            f"  assign y = {expr};\nendmodule\n")


def plan_cast(lo: int, hi: int, lsb: int, t: FixedType, relu: bool = False) -> dict | None:
    """What casting codes in [lo, hi] of weight 2**lsb into ``t`` needs; None when it is the identity.

    Returns {"drop", "round", "shift", "q": (lo, hi), "overflow", "out": (lo, hi), "lsb"}: ``drop`` low bits removed
    with rounding, ``shift`` zeros appended, then the overflow logic (or none) and the output range and weight.
    """
    drop = -lsb - t.frac
    if relu and lo > 0:
        relu = False  # never zero or negative: a plain cast
    lo_in = max(lo, 1) if relu else lo
    if lo_in > hi:
        return {"const": 0}
    rounds = drop > 0
    qlo, qhi = round_code(lo_in, drop, t.rounding), round_code(hi, drop, t.rounding)
    olo, ohi, ovf = overflow_range(t, qlo, qhi)
    if not rounds and not ovf:
        if not relu:
            return None
        olo, ohi, out_lsb = lo_in, hi, lsb  # relu only: keep the input's weight
    else:
        out_lsb = -t.frac
    if relu:
        olo, ohi = min(olo, 0), max(ohi, 0)
    return {"drop": drop, "q": (qlo, qhi), "overflow": ovf, "out": (olo, ohi), "lsb": out_lsb, "relu": relu}


def cast(name: str, wa: int, sa: bool, plan: dict, t: FixedType) -> tuple[str, int]:
    """Verilog of the cast ``plan`` (from ``plan_cast``) of an input of ``wa`` bits; returns (text, output width)."""
    drop, (qlo, qhi), ovf, (olo, ohi) = plan["drop"], plan["q"], plan["overflow"], plan["out"]
    wy = width_of(olo, ohi)
    lines = [f"(* keep_hierarchy *)\nmodule {name}(input [{wa - 1}:0] a, output [{wy - 1}:0] y);"]
    neg = f"a[{wa - 1}]" if sa else "1'b0"
    if drop > 0:
        n = max(wa, drop) + 1
        lines.append(f"  wire [{n - 1}:0] ae = {ext('a', wa, sa, n)};")
        nq = max(swidth_of(qlo, qhi), n - drop)
        lines.append(f"  wire [{n - drop - 1}:0] fh = ae[{n - 1}:{drop}];")
        lines.append(f"  wire [{nq - 1}:0] fl = {ext('fh', n - drop, True, nq)};")
        top = f"ae[{drop - 1}]"
        low = f"(|ae[{drop - 2}:0])" if drop > 1 else "1'b0"
        above, tie = f"({top} & {low})", f"({top} & ~{low})"
        inc = {"TRN": None, "TRN_ZERO": f"((|ae[{drop - 1}:0]) & {neg})", "RND": top,
               "RND_ZERO": f"({above} | ({tie} & {neg}))", "RND_MIN_INF": above,
               "RND_INF": f"({above} | ({tie} & ~{neg}))", "RND_CONV": f"({above} | ({tie} & fl[0]))"}[t.rounding]
        lines.append(f"  wire [{nq - 1}:0] q = " + (f"fl + {{{{{nq - 1}{{1'b0}}}}, {inc}}};" if inc else "fl;"))
        nc, code = nq, "q"
    elif ovf:
        shift = -drop
        nc = max(swidth_of(qlo, qhi), wa + shift + (0 if sa else 1))
        base = ext("a", wa, sa, nc - shift)
        lines.append(f"  wire [{nc - 1}:0] c0 = " + (f"{{{base}, {shift}'d0}};" if shift else f"{base};"))
        code = "c0"
    else:  # relu only, same weight
        nc, code = wa, "a"
    if ovf:
        nc2 = max(nc, swidth_of(t.min_code, t.max_code)) + 1
        lines.append(f"  wire signed [{nc2 - 1}:0] c = {ext(code, nc, True, nc2)};")
        tmin, tmax = (-t.max_code if t.overflow == "SAT_SYM" and t.signed else t.min_code), t.max_code
        if t.overflow == "WRAP":
            res = f"c[{t.width - 1}:0]"
            wr = t.width
        else:
            hi_c, lo_c = f"(c > $signed({lit(tmax, nc2)}))", f"(c < $signed({lit(tmin, nc2)}))"
            conds = ([hi_c] if qhi > tmax else []) + ([lo_c] if qlo < tmin else [])
            if t.overflow == "SAT_ZERO":
                over = " | ".join(conds)
                res = f"(({over}) ? {lit(0, nc2)} : c)"
            else:
                res = "c"
                if qlo < tmin:
                    res = f"({lo_c} ? {lit(tmin, nc2)} : {res})"
                if qhi > tmax:
                    res = f"({hi_c} ? {lit(tmax, nc2)} : {res})"
            wr = nc2
        lines.append(f"  wire [{wr - 1}:0] r = {res};")
        val, wval = "r", wr
    else:
        val, wval = code, nc
    if plan["relu"]:  # x > 0 ? (t) x : 0, as x >= 0 ? (t) x : 0 (the cast of 0 is 0): the sign bit alone selects
        lines.append(f"  wire [{wval - 1}:0] v = {neg} ? {lit(0, wval)} : {val};")
        val = "v"
    lines.append(f"  assign y = {val}[{wy - 1}:0];" if wval >= wy else f"  assign y = {ext(val, wval, olo < 0, wy)};")
    lines.append("endmodule\n")
    return "\n".join(lines), wy


def select(name: str, c: tuple, a: tuple, b: tuple, wo: int) -> str:
    """``y = (c > 0) ? (a << shift_a) : (b << shift_b)``, both sign- or zero-extended to ``wo`` bits.

    ``c`` = (width, signed): the condition's source; ``a``/``b`` = (width, signed, shift).
    """
    (wc, sc), (wa, sa, ha), (wb, sb, hb) = c, a, b
    pos = f"(~c[{wc - 1}] & (|c))" if sc else "(|c)"

    def val(n, w, s, h):
        e = ext(n, w, s, wo - h)
        return f"{{{e}, {h}'d0}}" if h else e

    return (f"(* keep_hierarchy *)\nmodule {name}(input [{wc - 1}:0] c, input [{wa - 1}:0] a, input [{wb - 1}:0] b, "
            f"output [{wo - 1}:0] y);\n  assign y = {pos} ? {val('a', wa, sa, ha)} : {val('b', wb, sb, hb)};\nendmodule\n")


def maxmin(name: str, a: tuple, b: tuple, wo: int, op: str) -> str:
    """``y = max(a << shift_a, b << shift_b)`` (``op`` "max") or the min, as ``wo``-bit codes; a/b = (width, signed, shift)."""
    (wa, sa, ha), (wb, sb, hb) = a, b
    w = max(wa + ha, wb + hb, wo) + 1
    lines = [f"(* keep_hierarchy *)\nmodule {name}(input [{wa - 1}:0] a, input [{wb - 1}:0] b, output [{wo - 1}:0] y);"]
    for n, wn, sn, hn in (("a", wa, sa, ha), ("b", wb, sb, hb)):
        e = ext(n, wn, sn, w - hn)
        lines.append(f"  wire signed [{w - 1}:0] {n}e = " + (f"{{{e}, {hn}'d0}};" if hn else f"{e};"))
    cmp = ">=" if op == "max" else "<="
    lines.append(f"  wire [{w - 1}:0] r = (ae {cmp} be) ? ae : be;")
    lines.append(f"  assign y = r[{wo - 1}:0];\nendmodule\n")
    return "\n".join(lines)


def multiply(name: str, a: tuple, b: tuple, wo: int) -> str:
    """``y = a * b`` modulo 2**wo (exact when the product's range fits ``wo`` bits); a/b = (width, signed)."""
    (wa, sa), (wb, sb) = a, b
    return (f"(* keep_hierarchy *)\nmodule {name}(input [{wa - 1}:0] a, input [{wb - 1}:0] b, output [{wo - 1}:0] y);\n"
            f"  assign y = {ext('a', wa, sa, wo)} * {ext('b', wb, sb, wo)};\nendmodule\n")


def bits(name: str, a: tuple, width: int, hi: int, lo: int) -> str:
    """Wiring: bits [hi:lo] of ``a << shift`` extended to ``width`` bits (the raw pattern of a type); a = (width, signed, shift)."""
    wa, sa, ha = a
    e = ext("a", wa, sa, width - ha) if width > ha else None
    pattern = (f"{{{e}, {ha}'d0}}" if ha else e) if e else f"{width}'d0"
    return (f"(* keep_hierarchy *)\nmodule {name}(input [{wa - 1}:0] a, output [{hi - lo}:0] y);\n"
            f"  wire [{width - 1}:0] p = {pattern};\n  assign y = p[{hi}:{lo}];\nendmodule\n")


def rom(name: str, wa: int, sa: bool, table: dict, wo: int) -> str:
    """A case statement: ``y = table[code of a]`` (codes as ``wo``-bit two's complement), 0 for codes not listed."""
    lines = [f"(* keep_hierarchy *)\nmodule {name}(input [{wa - 1}:0] a, output reg [{wo - 1}:0] y);",
             "  always @(*) begin", "    case (a)"]
    for code, value in sorted(table.items()):
        lines.append(f"      {lit(code, wa)}: y = {lit(value, wo)};")
    lines += [f"      default: y = {lit(0, wo)};", "    endcase", "  end", "endmodule\n"]
    return "\n".join(lines)
