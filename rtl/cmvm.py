"""The shared adder graph of a constant matrix-vector product, from da4ml's CMVM solver (``da4ml==0.5.2``).

``solve(w, inputs)`` hands the integer matrix ``w`` (rows: inputs, columns: outputs) and the inputs' value
intervals to ``da4ml.cmvm.solve`` (distributed arithmetic: canonical signed digits, then the two-term
subexpressions common to the whole matrix extracted greedily, each once) and returns its solution as a flat
``Plan``: a list of nodes in topological order, each an input or the sum of two shifted, signed references to
earlier nodes, and one reference per output column (or None for a zero column). The RTL writer
(rtl/lower.py) emits one of its own two-operand adders per node; da4ml's Verilog generator is not used.

How da4ml 0.5.2 states a solution (read from ``da4ml/cmvm/types.py``, ``core/__init__.py``, ``api.py``): a
``Pipeline`` of one or two ``CombLogic`` stages (the kernel split as ``m0 @ m1``, the second stage's inputs being
the first stage's outputs). In a stage, input k is scaled by ``2**inp_shifts[k]``; the buffer is filled by ops
in order: opcode -1 copies input ``id0``, opcode 0 / 1 is ``buf[id0] + / - buf[id1] * 2**data``; output j is
``buf[out_idxs[j]] * 2**out_shifts[j]``, negated when ``out_negs[j]``, and zero when ``out_idxs[j] < 0``. A
CMVM solution uses no other opcode (relu, quantize, constants, muxes, products and tables belong to da4ml's
tracer); any other opcode raises.

Exactness does not rest on that reading: every node's coefficients on the inputs are carried as exact rationals
and each output's must equal its column of ``w`` (``AssertionError`` otherwise). The same coefficients give each
node's exact value range over the box of input intervals (the sum of ``min``/``max`` of ``c_i * [lo_i, hi_i]``),
to which the writer trims its adders: a shared subexpression such as ``x0 - x1`` used twice in one output would
otherwise be counted with independent interval bounds.

Solver settings are those of da4ml's own converter (``da4ml convert``): cost = adder bits (``adder_size=1``),
one unit of delay per adder (``carry_size=-1``), at most 2 adder levels beyond the minimal depth
(``hard_dc=2``), method ``wmc``, searching all decomposition depths. The first call in a fresh environment
compiles da4ml's numba code (about 140 s; cached in the environment afterwards).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

SOLVER = {"method0": "wmc", "hard_dc": 2, "adder_size": 1, "carry_size": -1}
MAX_CODE = 1 << 24  # the solver takes the matrix as float32: codes beyond 2**24 are not exact there


@dataclasses.dataclass(frozen=True)
class Ref:
    """``sign * node * 2**shift``."""

    node: int
    shift: int
    sign: int

    def then(self, shift: int, sign: int) -> Ref:
        return Ref(self.node, self.shift + shift, self.sign * sign)


@dataclasses.dataclass
class Plan:
    """``nodes[k]``: ``("in", i)`` (input i) or ``("add", Ref, Ref)``; ``outs[j]``: column j's Ref or None (zero);
    ``coef[k]``: node k's exact coefficients ``{input: Fraction}``."""

    nodes: list
    outs: list
    coef: list

    @property
    def adders(self) -> int:
        """Adders the outputs need (nodes reachable from an output)."""
        return sum(1 for k in self.needed() if self.nodes[k][0] == "add")

    def needed(self) -> list[int]:
        """The nodes reachable from the outputs, in topological order."""
        seen, stack = set(), [r.node for r in self.outs if r is not None]
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            if self.nodes[k][0] == "add":
                stack += [self.nodes[k][1].node, self.nodes[k][2].node]
        return sorted(seen)

    def value_range(self, k: int, intervals: list) -> tuple[Fraction, Fraction]:
        """Exact (min, max) of node k over the box of input value intervals [(lo, hi)] (Fractions)."""
        lo = hi = Fraction(0)
        for i, c in self.coef[k].items():
            a, b = c * intervals[i][0], c * intervals[i][1]
            lo, hi = lo + min(a, b), hi + max(a, b)
        return lo, hi


def _scaled(coef: dict, shift: int, sign: int) -> dict:
    f = Fraction(sign) * Fraction(2) ** shift
    return {i: c * f for i, c in coef.items()}


def _sum(a: dict, b: dict) -> dict:
    out = dict(a)
    for i, c in b.items():
        out[i] = out.get(i, 0) + c
    return {i: c for i, c in out.items() if c != 0}


def solve(w: np.ndarray, inputs: list[tuple[int, int, int]]) -> Plan:
    """The CMVM adder graph of ``x @ w`` for inputs ``x_i = code * 2**lsb``, code in [lo, hi] (``inputs`` =
    [(lo, hi, lsb)], one per row of the integer matrix ``w``), checked exact."""
    from da4ml.cmvm import QInterval
    from da4ml.cmvm import solve as da4ml_solve
    from numba.typed import List

    w = np.asarray(w)
    n_in, n_out = w.shape
    if n_in != len(inputs) or not n_in or not n_out:
        raise ValueError(f"solve: a {w.shape} matrix for {len(inputs)} inputs")
    if np.any(w != np.round(w)) or np.abs(w).max() >= MAX_CODE:
        raise ValueError("solve: the matrix must hold integer codes below 2**24")
    qints = List([QInterval(float(lo) * 2.0**lsb, float(hi) * 2.0**lsb, 2.0**lsb) for lo, hi, lsb in inputs])
    lats = List([0.0] * n_in)
    pipeline = da4ml_solve(np.ascontiguousarray(w, dtype=np.float32), qintervals=qints, latencies=lats, **SOLVER)

    nodes: list = [("in", i) for i in range(n_in)]
    coef: list = [{i: Fraction(1)} for i in range(n_in)]
    stage_in: list = [Ref(i, 0, 1) for i in range(n_in)]
    for comb in pipeline.solutions:
        if comb.shape[0] != len(stage_in):
            raise AssertionError(f"da4ml stage of shape {comb.shape} after {len(stage_in)} values")
        buf: list = []
        for op in comb.ops:
            if op.opcode == -1:  # input id0, scaled by 2**inp_shifts[id0]
                src = stage_in[op.id0]
                buf.append(None if src is None else src.then(int(comb.inp_shifts[op.id0]), 1))
            elif op.opcode in (0, 1):  # buf[id0] +/- buf[id1] * 2**data
                a = buf[op.id0]
                b = buf[op.id1]
                b = None if b is None else b.then(int(op.data), -1 if op.opcode == 1 else 1)
                if a is None or b is None:
                    buf.append(a if b is None else b)
                    continue
                nodes.append(("add", a, b))
                coef.append(_sum(_scaled(coef[a.node], a.shift, a.sign), _scaled(coef[b.node], b.shift, b.sign)))
                buf.append(Ref(len(nodes) - 1, 0, 1))
            else:
                raise AssertionError(f"da4ml CMVM op with opcode {op.opcode} ({op}): not a shift-add")
        stage_in = []
        for idx, shift, neg in zip(comb.out_idxs, comb.out_shifts, comb.out_negs):
            ref = None if idx < 0 else buf[idx]
            stage_in.append(None if ref is None else ref.then(int(shift), -1 if neg else 1))
    if len(stage_in) != n_out:
        raise AssertionError(f"da4ml solution with {len(stage_in)} outputs for {n_out} columns")
    plan = Plan(nodes, stage_in, coef)
    for j, ref in enumerate(plan.outs):  # exact: each output's coefficients are its column of w
        got = {} if ref is None else _scaled(coef[ref.node], ref.shift, ref.sign)
        want = {i: Fraction(int(w[i, j])) for i in range(n_in) if w[i, j] != 0}
        if got != want:
            raise AssertionError(f"da4ml CMVM solution differs from column {j} of the matrix: {got} != {want}")
    return plan
