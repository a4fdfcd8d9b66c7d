"""A streaming fast path for the common firmware shape: input -> (dense -> relu | linear)* in io_parallel.

Codes are carried as floats holding exact integers, layer by layer: float32 while every value the layer can produce
(bounded from the types and the weights at load time, ``_Layer.bound``: a wide type whose values stay small
qualifies) stays below 2**24, float64 below 2**53. A dense layer on the fast path is exact by construction
(``Emulator._plan_dense``: no product rounded, no partial sum overflowing), so its accumulator is one BLAS
product plus the bias; every cast to a result type is done on those exact integers with the type's rounding mode
(floor / rint = ties-to-even / ...) and overflow mode (clip / wrap). The result is the same integer codes as the
int64 emulator, bit for bit (tests compare both, and both against the C-sim).

Events are processed in chunks small enough to stay in cache, on a pool of threads (BLAS and ufuncs release
the GIL), so memory stays flat for any stream length.
"""

from __future__ import annotations

import concurrent.futures
import os

import numpy as np
from threadpoolctl import threadpool_limits

from l1forge.quantize.fixed import FixedType

CHUNK = 16384
FLOAT32_EXACT = 2**24
FLOAT64_EXACT = 2**53


def _round(y: np.ndarray, mode: str) -> np.ndarray:
    """In place: round the float ``y`` to an integer with an ap_fixed rounding mode (exact for |y| < 2**52)."""
    if mode == "TRN":
        np.floor(y, out=y)
    elif mode == "RND_CONV":
        np.rint(y, out=y)  # ties to even
    elif mode == "RND":
        y += 0.5
        np.floor(y, out=y)
    elif mode == "TRN_ZERO":
        np.trunc(y, out=y)
    elif mode == "RND_MIN_INF":
        y -= 0.5
        np.ceil(y, out=y)
    else:  # RND_INF (ties away from zero), RND_ZERO (ties towards zero): symmetric in |y|
        sign = np.sign(y)
        np.abs(y, out=y)
        if mode == "RND_INF":
            y += 0.5
            np.floor(y, out=y)
        else:
            y -= 0.5
            np.ceil(y, out=y)
        y *= sign
    return y


def _overflow(y: np.ndarray, t: FixedType) -> np.ndarray:
    """In place: integer codes ``y`` -> the overflow mode of ``t``."""
    lo, hi = t.min_code, t.max_code
    if t.overflow == "WRAP":
        span = 2.0**t.width
        y -= span * np.floor((y - lo) / span)
    elif t.overflow == "SAT_ZERO":
        y[(y < lo) | (y > hi)] = 0
    else:
        np.clip(y, -hi if t.overflow == "SAT_SYM" and t.signed else lo, hi, out=y)
    return y


def _cast(y: np.ndarray, t: FixedType, shift: int, lo_bound: int, hi_bound: int, prescaled: bool = False) -> np.ndarray:
    """In place: codes ``y`` with ``shift`` more fractional bits than ``t`` -> codes of ``t``.

    ``lo_bound``/``hi_bound`` bound the input codes; overflow handling is skipped when they prove it idle.
    ``prescaled``: the 2**-shift scaling was already folded into the weights of the dense layer before.
    """
    if shift > 0:
        if not prescaled:
            y *= 2.0**-shift  # exact
        _round(y, t.rounding)
        lo_bound, hi_bound = lo_bound >> shift, -((-hi_bound) >> shift)
    elif shift < 0:
        y *= 2.0**-shift
        lo_bound, hi_bound = lo_bound << -shift, hi_bound << -shift
    if lo_bound >= t.min_code and hi_bound <= t.max_code:
        return y
    return _overflow(y, t)


def dense_interval(w: np.ndarray, b_acc: np.ndarray, x_bound: tuple, shift: int) -> tuple[int, int]:
    """Exact range of ``b + (x @ w) << shift`` over inputs x in [lo, hi] (interval arithmetic, Python ints)."""
    w = w.astype(object)
    at_lo, at_hi = w * x_bound[0], w * x_bound[1]
    lo = np.minimum(at_lo, at_hi).sum(axis=0) * 2**shift + b_acc.astype(object)
    hi = np.maximum(at_lo, at_hi).sum(axis=0) * 2**shift + b_acc.astype(object)
    return int(min(lo, default=0)), int(max(hi, default=0))


def _fold_scalings(steps: list) -> None:
    """Fold an elementwise step's 2**-shift scaling into the dense layer before it when that layer's own cast is
    the identity (no shift, no possible overflow): one pass less over the data, still exact (powers of two)."""
    for prev, step in zip(steps, steps[1:]):
        if prev[0] == "dense" and step[0] == "elementwise" and step[2] > 0 and not step[1]:
            _, w, b, shift, res_t, lo, hi, _ = prev
            if shift == 0 and lo >= res_t.min_code and hi <= res_t.max_code:
                prev[1], prev[2] = w * 2.0 ** -step[2], b * 2.0 ** -step[2]
                step[6] = True


class FastPath:
    """Float plan of an ``Emulator`` whose graph is a chain of input, dense, relu and linear layers."""

    def __init__(self, steps, input_type: FixedType, dtype, threads: int):
        self.steps, self.input_type, self.dtype, self.threads = steps, input_type, dtype, threads

    @classmethod
    def build(cls, emulator, threads: int | None = None) -> "FastPath | None":
        """The plan, or None when the graph is not such a chain or a layer is not provably exact here."""
        layers = emulator.layers
        if layers[0].op != "input" or any(l.op not in ("dense", "relu", "linear") for l in layers[1:]):
            return None
        if any(len(l.inputs) != 1 or l.inputs[0] != prev.name for prev, l in zip(layers, layers[1:])):
            return None
        if emulator.output_names != [layers[-1].name]:
            return None
        t = layers[0].result
        bound = (t.min_code, t.max_code)
        steps, largest = [], max(abs(t.min_code), t.max_code)
        for layer in layers[1:]:
            if layer.op == "dense":
                p = layer.params
                if not p["fast"] or len(layer.spec["shape"]) != 1:
                    return None
                w, acc_t = p["w"], p["acc_t"]
                lo, hi = dense_interval(w, p["b_acc"], bound, p["shift"])  # what the sum can be: decides the cast
                if lo < acc_t.min_code or hi > acc_t.max_code:
                    return None  # the accumulator itself may wrap: the reference path does that step by step
                partial = p["partial_max"]  # what any partial sum can be: decides float32 or float64
                largest = max(largest, partial)
                steps.append(["dense", w.astype(np.float64) * 2.0 ** p["shift"], p["b_acc"].astype(np.float64),
                              acc_t.frac - layer.result.frac, layer.result, lo, hi, partial])
            else:
                src_t, res_t = emulator._types[layer.inputs[0]], layer.result
                # relu into an unsigned saturating type: the cast's clip at 0 is the relu (rounding keeps signs)
                by_clip = layer.op == "relu" and not res_t.signed and res_t.overflow in ("SAT", "SAT_SYM")
                zero_first = layer.op == "relu" and not by_clip
                lo = max(bound[0], 0) if zero_first else bound[0]
                steps.append(["elementwise", zero_first, src_t.frac - res_t.frac, res_t, lo, bound[1], False])
            res, most = layer.result, getattr(layer, "bound", None)  # the emulator's bound: types and weights
            most = res.code_bound if most is None else most
            bound = (max(res.min_code, -most), min(res.max_code, most))
            largest = max(largest, abs(bound[0]), bound[1])
        if largest >= FLOAT64_EXACT:
            return None
        _fold_scalings(steps)
        for step in steps:  # each dense layer in float32 if all it can produce is exact there, else float64
            if step[0] == "dense":
                dtype = np.float32 if step[7] < FLOAT32_EXACT else np.float64
                step[1], step[2] = step[1].astype(dtype), step[2].astype(dtype)
        input_dtype = np.float32 if max(-t.min_code, t.max_code) < FLOAT32_EXACT else np.float64
        return cls([tuple(step) for step in steps], t, input_dtype, threads or min(2, os.cpu_count() or 1))

    def _chunk(self, x: np.ndarray) -> np.ndarray:
        t = self.input_type
        if t.is_int:  # ap_int(double) has a quirk of its own (quantize/fixed.py): take it from there
            return self._steps(t.from_float(x).astype(self.dtype))
        y = _round(np.asarray(x, dtype=np.float64) * 2.0**t.frac, t.rounding)  # exact
        if t.overflow == "WRAP":
            np.fmod(y, 2.0**t.width, out=y)  # exact, keeps huge inputs' residues within float precision
        return self._steps(_overflow(y, t).astype(self.dtype))

    def _steps(self, y: np.ndarray) -> np.ndarray:
        for step in self.steps:
            if step[0] == "dense":
                _, w, b, shift, res_t, lo, hi, _ = step
                acc = y.astype(w.dtype, copy=False) @ w
                acc += b
                y = _cast(acc, res_t, shift, lo, hi)
            else:
                _, zero_first, shift, res_t, lo, hi, prescaled = step
                if zero_first:
                    np.maximum(y, 0, out=y)
                y = _cast(y, res_t, shift, lo, hi, prescaled)
        return y

    def run(self, x: np.ndarray) -> np.ndarray:
        """Output codes (as floats holding integers) for float inputs ``x`` (n, n_in)."""
        chunks = [x[i : i + CHUNK] for i in range(0, len(x), CHUNK)]
        with threadpool_limits(1, user_api="blas"):
            if self.threads == 1 or len(chunks) == 1:
                return np.concatenate([self._chunk(c) for c in chunks]) if chunks else np.zeros((0,))
            with concurrent.futures.ThreadPoolExecutor(self.threads) as pool:
                return np.concatenate(list(pool.map(self._chunk, chunks)))
