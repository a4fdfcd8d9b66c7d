"""Arbitrary-precision fixed-point types with the exact semantics of Xilinx ``ap_fixed``.

A value of a ``FixedType`` is held as an integer *code*: ``value = code * 2**-frac``. Every conversion
(float -> fixed, fixed -> fixed) applies the type's quantization (rounding) mode to the dropped low bits first
and then its overflow mode to the high bits, as ``ap_fixed`` does. Codes are numpy ``int64``; widths up to
62 bits are supported, which covers every type hls4ml emits for the models l1forge builds.

Integer types (``ap_int<W>`` / ``ap_uint<W>``, hls4ml ``int<W>`` / ``uint<W>``) are ``FixedType(W, W, signed,
"TRN_ZERO", "WRAP", is_int=True)``: every conversion into them follows C, truncating toward zero (-166.5 -> -166)
and wrapping modulo 2**W, as ``ap_int_base(const ap_fixed_base&)`` (``to_ap_int_base``) does. ``ap_int_base(double)``
has one quirk of its own that is reproduced: a negative double above -0.5 (e.g. -0.3) becomes +1, not 0.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

ROUNDING_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
MAX_WIDTH = 62

_TYPE_RE = re.compile(r"^\s*(?:ap_|ac_)?(u?)(fixed|int)\s*<\s*([^>]*)>\s*$")


class FixedTypeError(ValueError):
    """A fixed-point type string or value that l1forge cannot represent exactly."""


class TooWideError(FixedTypeError):
    """A type outside 1..MAX_WIDTH bits: one an hls4ml config can narrow (the emulator holds codes in int64)."""


@dataclasses.dataclass(frozen=True)
class FixedType:
    """``ap_fixed<width, integer, rounding, overflow>`` (``signed=False`` for ``ap_ufixed``).

    ``is_int=True``: ``ap_int<width>`` / ``ap_uint<width>``; then ``integer == width``, rounding ``TRN_ZERO`` and
    overflow ``WRAP`` are required (``FixedType.int_type(width, signed)`` builds one).
    """

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"
    is_int: bool = False

    def __post_init__(self):
        if not 1 <= self.width <= MAX_WIDTH:
            raise TooWideError(f"{self}: width must be in 1..{MAX_WIDTH}")
        if self.rounding not in ROUNDING_MODES:
            raise FixedTypeError(f"{self}: unknown rounding mode {self.rounding!r}")
        if self.overflow not in OVERFLOW_MODES:
            raise FixedTypeError(f"{self}: unknown overflow mode {self.overflow!r}")
        if self.is_int and (self.integer != self.width or self.rounding != "TRN_ZERO" or self.overflow != "WRAP"):
            raise FixedTypeError(
                f"integer type of width {self.width}: needs integer={self.width}, TRN_ZERO, WRAP "
                f"(got {self.integer}, {self.rounding}, {self.overflow})"
            )

    @classmethod
    def int_type(cls, width: int, signed: bool = True) -> "FixedType":
        """``ap_int<width>`` (``ap_uint<width>`` when ``signed`` is False)."""
        return cls(width, width, signed, "TRN_ZERO", "WRAP", is_int=True)

    # ---- descriptions -------------------------------------------------------------------------------
    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def min_code(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def lsb(self) -> float:
        return 2.0**-self.frac

    @property
    def min_value(self) -> float:
        return self.min_code * self.lsb

    @property
    def max_value(self) -> float:
        return self.max_code * self.lsb

    def hls(self) -> str:
        """hls4ml config syntax, e.g. ``fixed<16,6,RND_CONV,SAT>`` or ``int<8>``."""
        if self.is_int:
            return f"{'' if self.signed else 'u'}int<{self.width}>"
        name = "fixed" if self.signed else "ufixed"
        return f"{name}<{self.width},{self.integer},{self.rounding},{self.overflow}>"

    def cpp(self) -> str:
        """C++ type, e.g. ``ap_fixed<16,6,AP_RND_CONV,AP_SAT>`` or ``ap_int<8>``."""
        if self.is_int:
            return f"ap_{'' if self.signed else 'u'}int<{self.width}>"
        name = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{name}<{self.width},{self.integer},AP_{self.rounding},AP_{self.overflow}>"

    def __str__(self) -> str:
        return self.hls()

    @classmethod
    def parse(cls, text: str) -> "FixedType":
        """Parse hls4ml (``fixed<16,6,RND,SAT,0>``, ``uint<1>``) or C++ (``ap_fixed<16,6,AP_RND>``) syntax."""
        match = _TYPE_RE.match(str(text))
        if not match:
            raise FixedTypeError(f"not a fixed-point or integer type: {text!r}")
        unsigned, kind, args = match.groups()
        parts = [p.strip() for p in args.split(",") if p.strip()]
        try:
            if kind == "int":
                (width,) = map(int, parts)
                return cls.int_type(width, not unsigned)
            width, integer = int(parts[0]), int(parts[1])
        except ValueError as err:
            raise FixedTypeError(f"malformed type {text!r}") from err
        rounding = parts[2].replace("AP_", "").upper() if len(parts) > 2 else "TRN"
        overflow = parts[3].replace("AP_", "").upper() if len(parts) > 3 else "WRAP"
        if len(parts) > 4 and int(parts[4]) != 0:
            raise FixedTypeError(f"{text}: saturation bits other than 0 are not supported")
        return cls(width, integer, not unsigned, rounding, overflow)

    # ---- conversions --------------------------------------------------------------------------------
    def from_float(self, values) -> np.ndarray:
        """Codes of ``values`` (float64, exact) converted into this type, as ``ap_fixed(double)`` does
        (``ap_int(double)`` for integer types: toward zero, wrapping, and -0.5 < x < 0 gives +1 as the header does).

        Raises FixedTypeError for NaN or Inf.
        """
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise FixedTypeError(f"{self}: NaN or Inf cannot be converted to fixed point")
        if self.is_int:
            # ap_int_base(double): |x| < 0.5 shifts the whole mantissa out; a negative one is set to -1 and negated.
            quirk = (x < 0) & (x > -0.5)
            return self._overflow(np.where(quirk, 1, self._trunc_zero_codes(x)))
        scaled = np.ldexp(x, self.frac)  # exact: a power-of-two scaling
        floor = np.floor(scaled)
        # Large magnitudes: everything beyond the type's range overflows the same way, keep int64 safe.
        bound = float(1 << MAX_WIDTH)
        if self.overflow == "WRAP":
            floor = np.fmod(floor, 2.0 * bound)  # exact; preserves the residue modulo 2**width
        else:
            floor = np.clip(floor, -bound, bound)
        rem = scaled - np.floor(scaled)  # exact in [0, 1)
        q = floor.astype(np.int64)
        half = rem == 0.5
        above = rem > 0.5
        return self._overflow(self._round(q, rem > 0, above, half, x < 0))

    def _trunc_zero_codes(self, x: np.ndarray) -> np.ndarray:
        """int64 codes of trunc(x) (x float64, finite) reduced modulo 2**MAX_WIDTH, residues mod 2**width kept."""
        t = np.trunc(x)
        return np.fmod(t, float(1 << MAX_WIDTH)).astype(np.int64)

    def from_codes(self, codes, frac: int) -> np.ndarray:
        """Codes of fixed-point values ``codes * 2**-frac`` converted into this type (into an integer type: toward
        zero, wrapping; exact as the C++ for sources with at least 0 integer bits, which is all hls4ml emits)."""
        c = np.asarray(codes, dtype=np.int64)
        shift = frac - self.frac
        if shift <= 0:
            return self._overflow(np.left_shift(c, -shift))
        q = np.right_shift(c, shift)  # floor division by 2**shift
        rem = c - np.left_shift(q, shift)
        half_code = 1 << (shift - 1)
        return self._overflow(self._round(q, rem != 0, rem > half_code, rem == half_code, c < 0))

    def to_float(self, codes) -> np.ndarray:
        return np.ldexp(np.asarray(codes, dtype=np.float64), -self.frac)

    def quantize(self, values) -> np.ndarray:
        """Float values rounded into this type and back to float64 (what the hardware sees)."""
        return self.to_float(self.from_float(values))

    # ---- the two steps of every conversion --------------------------------------------------------
    def _round(self, q, inexact, above_half, exactly_half, negative):
        """Apply the rounding mode to floor ``q`` given facts about the dropped remainder."""
        mode = self.rounding
        if mode == "TRN":
            return q
        if mode == "TRN_ZERO":
            return q + (inexact & negative)
        if mode == "RND":
            return q + (above_half | exactly_half)
        if mode == "RND_ZERO":
            return q + (above_half | (exactly_half & negative))
        if mode == "RND_MIN_INF":
            return q + above_half
        if mode == "RND_INF":
            return q + (above_half | (exactly_half & ~negative))
        # RND_CONV: ties to even
        return q + (above_half | (exactly_half & (q & 1).astype(bool)))

    def _overflow(self, q):
        lo, hi = self.min_code, self.max_code
        mode = self.overflow
        if mode == "WRAP":
            span = 1 << self.width
            wrapped = np.bitwise_and(q, span - 1)
            return wrapped - span * (wrapped > hi) if self.signed else wrapped
        outside = (q < lo) | (q > hi)
        if mode == "SAT_ZERO":
            return np.where(outside, 0, q)
        if mode == "SAT_SYM" and self.signed:
            lo = -hi
        return np.clip(q, lo, hi)
