"""hls4ml's lookup tables and their addressing, as its C++ builds them (``nnet_activation.h``, ``nnet_common.h``):
the table contents (``init_*_table``: evaluated in float with the host libm, as the compiled C-simulation does,
then converted to the table type) and the integer index arithmetic. Shared by the emulator and the RTL writer, so
both read the same ROM contents.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from l1forge.quantize.fixed import FixedType, FixedTypeError

HUGE = 2.0**1000  # what ap_fixed(double) makes of +-inf: a power of two beyond every range (WRAP -> 0, SAT -> max)


def libm(name: str, c_type=ctypes.c_float):
    """The host libm's single-precision ``name`` (expf, tanhf) as a numpy ufunc on float32 arrays (``c_type``
    ``ctypes.c_double``: the double-precision one, e.g. log, on float64 arrays)."""
    fn = getattr(ctypes.CDLL(ctypes.util.find_library("m")), name)
    fn.restype, fn.argtypes = c_type, [c_type]
    ufunc = np.frompyfunc(fn, 1, 1)
    dtype = np.float32 if c_type is ctypes.c_float else np.float64
    return lambda x: ufunc(np.asarray(x, dtype=dtype)).astype(dtype)


def to_fixed(t: FixedType, values) -> np.ndarray:
    """``(t)value`` for a float or double value, infinities included."""
    v = np.asarray(values, dtype=np.float64)
    return t.from_float(np.where(np.isinf(v), np.copysign(HUGE, v), v))


def ceillog2(x: int) -> int:
    return 1 if x <= 2 else 1 + ceillog2((x + 1) // 2)


def floorlog2(x: int) -> int:
    return 0 if x < 2 else 1 + floorlog2(x // 2)


def index_divisor(frac: int, size: int, span: int) -> tuple[int, int]:
    """(m, d) with ``(int)(x * size / span) == trunc(code * m / d) << max(-frac, 0)``, m / d reduced."""
    den = span << max(frac, 0)
    g = np.gcd(size, den)
    return size // g, den // g


def centred_offset(size: int, span: int) -> int:
    """``span / 2 * size / span`` in unsigned 32-bit arithmetic."""
    return ((span // 2) * size % 2**32) // span


def table_input(t: FixedType, size: int) -> np.ndarray:
    """``softmax_real_val_from_idx``: the value of ``t`` whose top ceillog2(size) bits are the index, as float."""
    n = ceillog2(size)
    if n > t.width:
        raise FixedTypeError(f"a table of {size} entries is addressed by more bits than {t} has")
    raw = np.arange(size, dtype=np.int64) << (t.width - n)
    if t.signed:
        raw = np.where(raw > t.max_code, raw - (1 << t.width), raw)
    return t.to_float(raw).astype(np.float32)


def init_x(size: int, half_range: float) -> np.ndarray:
    """``float in_val = 2 * R * (ii - float(N) / 2.0) / float(N)`` of the init_*_table functions."""
    ii = np.arange(size, dtype=np.float64)
    return (2 * half_range * (ii - size / 2.0) / size).astype(np.float32)


def activation_table(function: str, size: int, table_t: FixedType) -> tuple[np.ndarray, int]:
    """(codes of the sigmoid, tanh, softplus or softsign table in ``table_t``, the input span R it covers: 8 for
    tanh, 16 for the others), as ``init_<function>_table`` of nnet_activation.h builds it."""
    x = init_x(size, 4.0 if function == "tanh" else 8.0)
    if function == "sigmoid":  # sigmoid_fcn_float: 1.0 / (1 + std::exp(-x)) in float, returned as float
        e = libm("expf")(-x)
        values = (1.0 / (np.float32(1) + e).astype(np.float64)).astype(np.float32)
    elif function == "softplus":  # std::log(std::exp(x) + 1.): expf, then the double log, returned as float
        values = libm("log", ctypes.c_double)(libm("expf")(x).astype(np.float64) + 1.0).astype(np.float32)
    elif function == "softsign":  # x / (std::abs(x) + 1.) in double, returned as float
        values = (x.astype(np.float64) / (np.abs(x).astype(np.float64) + 1.0)).astype(np.float32)
    elif function == "tanh":  # tanh(float) of in_val in [-4, 4)
        values = libm("tanhf")(x)
    else:
        raise FixedTypeError(f"no table for activation '{function}'")
    return to_fixed(table_t, values), 8 if function == "tanh" else 16


SELU_LAMBDA = 1.0507009873554805  # nnet_activation.h selu: ap_ufixed<16, 1> lambda of the positive branch


def negative_table(function: str, size: int, table_t: FixedType) -> np.ndarray:
    """Codes in ``table_t`` of ``init_elu_table`` / ``init_selu_table``: in_val = (float)(-8.0 * ii / float(N)),
    elu ``std::exp(x) - 1.`` (expf, then double), selu ``1.0507... * (1.6732... * (std::exp(x) - 1.))`` in double,
    both returned as float."""
    ii = np.arange(size, dtype=np.float64)
    x = (-8.0 * ii / np.float64(np.float32(size))).astype(np.float32)
    em1 = libm("expf")(x).astype(np.float64) - 1.0
    values = em1 if function == "elu" else SELU_LAMBDA * (1.6732632423543772848170429916717 * em1)
    return to_fixed(table_t, values.astype(np.float32))


def softmax_tables(spec: dict, in_type: FixedType) -> dict:
    """The exp and inverse tables of a softmax layer of the firmware graph and the types they live in: legacy
    {"exp", "inv", "table_t"}; latency and stable {"exp", "inv", "exp_t", "inv_t", "acc_t", "inv_inp_t",
    "address_t"} (``address_t``: the type whose top bits address the exp table)."""
    impl, n_exp, n_inv = spec["implementation"], spec["exp_table_size"], spec["inv_table_size"]
    expf = libm("expf")
    if impl == "legacy":
        table_t = FixedType.parse(spec["table_t"])
        in_val = 64.0 * np.arange(n_inv, dtype=np.float64) / np.float32(n_inv)
        inv = np.divide(1.0, in_val.astype(np.float32), out=np.zeros(n_inv), where=in_val > 0)
        return {"exp": to_fixed(table_t, expf(init_x(n_exp, 8.0))), "inv": to_fixed(table_t, inv), "table_t": table_t}
    exp_t, inv_t, acc_t, inv_inp_t = (FixedType.parse(spec[k]) for k in ("exp_table_t", "inv_table_t", "accum_t", "inv_inp_t"))
    address_t = FixedType.parse(spec["inp_norm_t"]) if impl == "stable" else in_type
    x = table_input(address_t, n_exp) * np.float32(spec["exp_scale"])
    with np.errstate(divide="ignore"):
        inv = np.float32(1) / table_input(inv_inp_t, n_inv)
    return {"exp": to_fixed(exp_t, expf(-x if impl == "stable" else x)), "inv": to_fixed(inv_t, inv), "exp_t": exp_t,
            "inv_t": inv_t, "acc_t": acc_t, "inv_inp_t": inv_inp_t, "address_t": address_t}
