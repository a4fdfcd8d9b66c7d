"""Arbitrary-precision fixed-point types with the exact semantics of Xilinx ``ap_fixed``.

A value of a ``FixedType`` is held as an integer *code*: ``value = code * 2**-frac``. Every conversion
(float -> fixed, fixed -> fixed) applies the type's quantization (rounding) mode to the dropped low bits first
and then its overflow mode to the high bits, as ``ap_fixed`` does. Any width ap_fixed allows (1..32768 bits) is
exact. Codes are numpy ``int64`` arrays while they fit there, else numpy object arrays of Python ints:

* a type of at most ``MAX_WIDTH`` (62) bits (``FixedType.fits_int64``) always returns int64 codes, whatever the
  dtype of its input, computed in int64 (the fast path, as before) or, for inputs that are Python ints, exactly
  on those and converted at the end;
* a wider type returns int64 codes when its input is int64 and every result fits there (rounding a code to fewer
  fractional bits, an overflow step that provably leaves the values alone), else object arrays of Python ints.
  Floats are converted exactly (a float64 is a dyadic rational: mantissa and exponent, ``np.frexp``);
* ``from_codes`` also reads ``Limbs`` (two int64 arrays, magnitudes below 2**90, what the emulator's wide dense
  sums produce) without a Python int per element, and returns ``Limbs`` for a wider type they stay inside.

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
MAX_WIDTH = 62  # the int64 path: codes of such types, and the sum or difference of two, fit int64
AP_MAX_WIDTH = 1 << 15  # the widest ap_fixed / ap_int there is (ap_common.h BIT_WIDTH_UPPER_LIMIT)
INT64_SAFE = 1 << 62  # a magnitude below which codes (and the sum of two) are carried in int64
LIMBS_SAFE = 1 << 90  # a magnitude below which codes may be carried as two int64 limbs (``Limbs``)
_LIMB = 32
_LOW = (1 << _LIMB) - 1

_TYPE_RE = re.compile(r"^\s*(?:ap_|ac_)?(u?)(fixed|int)\s*<\s*([^>]*)>\s*$")


class FixedTypeError(ValueError):
    """A fixed-point type string or value that l1forge cannot represent exactly."""


class TooWideError(FixedTypeError):
    """A type wider than any ap_fixed (``AP_MAX_WIDTH`` bits): one an hls4ml config can narrow."""


class Limbs:
    """Integers beyond int64, vectorised: ``v = hi * 2**32 + lo`` with two int64 arrays, ``lo`` in [0, 2**32). For
    magnitudes below ``LIMBS_SAFE`` (2**90), so that sums of a few stay far inside int64 in ``hi``. The emulator's
    wide dense sums produce them and ``FixedType.from_codes`` reads them (rounding, overflow) without a Python int
    per element; ``exact()`` gives the object array of Python ints every other operation takes."""

    __slots__ = ("hi", "lo")
    __array_ufunc__ = None  # numpy operators defer to these methods (``int64 array + Limbs`` is ``Limbs.__radd__``)

    def __init__(self, hi: np.ndarray, lo: np.ndarray, normalized: bool = False):
        if not normalized:  # carry: lo may be any int64 (sums, differences), hi takes its multiples of 2**32
            hi, lo = hi + (lo >> _LIMB), lo & _LOW
        self.hi, self.lo = hi, lo

    @classmethod
    def of(cls, codes) -> "Limbs":
        """int64 codes or Python ints (magnitudes below 2**94) as limbs."""
        if isinstance(codes, Limbs):
            return codes
        c = np.asarray(codes)
        if c.dtype == object:
            return cls((c >> _LIMB).astype(np.int64), (c & _LOW).astype(np.int64), True)
        c = c.astype(np.int64, copy=False)
        return cls(c >> _LIMB, c & _LOW, True)

    def exact(self) -> np.ndarray:
        """The values as an object array of Python ints."""
        return (self.hi.astype(object) << _LIMB) + self.lo.astype(object)

    def to_int64(self) -> np.ndarray:
        """The values modulo 2**64 as int64: the values themselves where they fit int64."""
        return (self.hi << _LIMB) + self.lo  # int64 arithmetic wraps modulo 2**64

    @property
    def shape(self) -> tuple:
        return self.hi.shape

    def __len__(self) -> int:
        return len(self.hi)

    def reshape(self, *shape) -> "Limbs":
        return Limbs(self.hi.reshape(*shape), self.lo.reshape(*shape), True)

    def where(self, keep: np.ndarray) -> "Limbs":
        """These values where ``keep``, 0 elsewhere."""
        return Limbs(np.where(keep, self.hi, 0), np.where(keep, self.lo, 0), True)

    def __add__(self, other) -> "Limbs":
        if isinstance(other, Limbs):
            return Limbs(self.hi + other.hi, self.lo + other.lo)
        other = np.asarray(other)
        if other.dtype == object:
            return Limbs.of(other) + self
        return Limbs(self.hi, self.lo + other)  # |other| < 2**62: the carry absorbs it

    __radd__ = __add__

    def __sub__(self, other) -> "Limbs":
        if isinstance(other, Limbs):
            return Limbs(self.hi - other.hi, self.lo - other.lo)
        other = np.asarray(other)
        if other.dtype == object:
            return self - Limbs.of(other)
        return Limbs(self.hi, self.lo - other)

    def floor_shift(self, s: int) -> tuple["Limbs", np.ndarray]:
        """(floor(v / 2**s), v mod 2**s as int64), for 0 <= s <= 62."""
        if s == 0:
            return self, np.zeros_like(self.lo)
        if s < _LIMB:
            rem = self.lo & ((1 << s) - 1)
            return Limbs(self.hi >> s, (self.lo >> s) | ((self.hi & ((1 << s) - 1)) << (_LIMB - s)), True), rem
        up = s - _LIMB
        rem = ((self.hi & ((1 << up) - 1)) << _LIMB) | self.lo
        return Limbs.of(self.hi >> up), rem

    def _compare(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(v > k, v < k) for a Python int k."""
        kh, kl = k >> _LIMB, k & _LOW
        if kh >= 1 << 63:
            return np.zeros(self.shape, bool), np.ones(self.shape, bool)
        if kh < -(1 << 63):
            return np.ones(self.shape, bool), np.zeros(self.shape, bool)
        same = self.hi == kh
        return (self.hi > kh) | (same & (self.lo > kl)), (self.hi < kh) | (same & (self.lo < kl))

    def _inside(self, lo: int, hi: int) -> bool:
        """Whether every value is within [lo, hi]: decided from the high limb alone when it can be (no temporaries)."""
        if self.hi.size == 0 or (int(self.hi.min()) > lo >> _LIMB and int(self.hi.max()) < hi >> _LIMB):
            return True
        above, below = self._compare(hi)[0], self._compare(lo)[1]
        return not (above.any() or below.any())

    def __gt__(self, k: int) -> np.ndarray:
        return self._compare(int(k))[0]

    def __lt__(self, k: int) -> np.ndarray:
        return self._compare(int(k))[1]


def is_exact(codes) -> bool:
    """Whether ``codes`` is an object array of Python ints (the wide carrier) rather than int64."""
    return getattr(codes, "dtype", None) == object


def as_exact(codes) -> np.ndarray:
    """``codes`` (int64, Python ints or ``Limbs``) as an object array of Python ints (exact under every operation)."""
    if isinstance(codes, Limbs):
        return codes.exact()
    codes = np.asarray(codes)
    return codes if codes.dtype == object else codes.astype(np.int64).astype(object)


def magnitude(codes) -> int:
    """max |code| of an integer array (0 when empty), as a Python int."""
    if isinstance(codes, Limbs):
        codes = codes.exact()
    codes = np.asarray(codes)
    return max(-int(codes.min()), int(codes.max()), 0) if codes.size else 0


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
        if self.width < 1:
            raise FixedTypeError(f"{self}: width must be at least 1")
        if self.width > AP_MAX_WIDTH:
            raise TooWideError(f"{self}: width must be at most {AP_MAX_WIDTH}, the widest ap_fixed")
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
    def code_bound(self) -> int:
        """The largest magnitude of a code, max(-min_code, max_code)."""
        return max(-self.min_code, self.max_code)

    @property
    def fits_int64(self) -> bool:
        """Whether this type's codes take the int64 path: at most ``MAX_WIDTH`` (62) bits, so that the codes and the
        sum or difference of two of them fit int64. Wider types are exact too, on Python ints where needed."""
        return self.width <= MAX_WIDTH

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

        int64 codes for a type of at most 62 bits; for a wider type int64 while every code fits there, else an
        object array of Python ints. Raises FixedTypeError for NaN or Inf.
        """
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise FixedTypeError(f"{self}: NaN or Inf cannot be converted to fixed point")
        if self.fits_int64:
            return self._from_float_int64(x)
        with np.errstate(over="ignore"):
            scaled = np.ldexp(x, self.frac)  # exact unless it leaves the normal float range (checked next)
        size = np.abs(scaled)
        if x.size == 0 or (size.max() < 2.0**62 and not np.any((size < 2.0**-1000) & (x != 0))):
            floor = np.floor(scaled)
            rem = scaled - floor  # exact in [0, 1)
            codes = self._round(floor.astype(np.int64), rem > 0, rem > 0.5, rem == 0.5, x < 0)
        else:
            codes = self._from_float_exact(x)
        if self.is_int:  # ap_int_base(double): a negative |x| < 0.5 is set to -1 and negated
            codes = np.where((x < 0) & (x > -0.5), 1, codes)
        return self._overflow(codes)

    def _from_float_int64(self, x: np.ndarray) -> np.ndarray:
        """``from_float`` into a type of at most 62 bits, in float64 and int64 (exact)."""
        if self.is_int:
            # ap_int_base(double): |x| < 0.5 shifts the whole mantissa out; a negative one is set to -1 and negated.
            quirk = (x < 0) & (x > -0.5)
            return self._overflow(np.where(quirk, 1, self._trunc_zero_codes(x)))
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = np.ldexp(x, self.frac)  # exact: a power-of-two scaling (or +-inf beyond 2**1024)
            floor = np.floor(scaled)
            # Large magnitudes: everything beyond the type's range overflows the same way, keep int64 safe.
            bound = float(1 << MAX_WIDTH)
            if self.overflow == "WRAP":
                floor = np.fmod(floor, 2.0 * bound)  # exact; preserves the residue modulo 2**width
                floor = np.where(np.isnan(floor), 0.0, floor)  # past 2**1024: a multiple of 2**971, residue 0
            else:
                floor = np.clip(floor, -bound, bound)
            rem = scaled - np.floor(scaled)  # exact in [0, 1) (nan past 2**1024: no rounding)
        q = floor.astype(np.int64)
        half = rem == 0.5
        above = rem > 0.5
        return self._overflow(self._round(q, rem > 0, above, half, x < 0))

    def _from_float_exact(self, x: np.ndarray) -> np.ndarray:
        """Floor of ``x * 2**frac`` with its rounding applied, on Python ints: x = mant * 2**(e - 53) exactly."""
        m, e = np.frexp(x)
        mant = np.ldexp(m, 53).astype(np.int64).astype(object)  # |mant| < 2**53, exact
        k = e.astype(np.int64) - 53 + self.frac  # x * 2**frac = mant * 2**k
        up, down = np.maximum(k, 0).astype(object), np.maximum(-k, 0).astype(object)
        q = (mant << up) >> down  # floor
        rem = (mant << up) - (q << down)  # in [0, 2**down)
        half = (np.ones_like(down) << down) >> 1
        inexact = rem != 0
        return self._round(q, inexact, rem > half, inexact & (rem == half), x < 0)

    def _trunc_zero_codes(self, x: np.ndarray) -> np.ndarray:
        """int64 codes of trunc(x) (x float64, finite) reduced modulo 2**MAX_WIDTH, residues mod 2**width kept."""
        t = np.trunc(x)
        return np.fmod(t, float(1 << MAX_WIDTH)).astype(np.int64)

    def from_codes(self, codes, frac: int) -> np.ndarray:
        """Codes of fixed-point values ``codes * 2**-frac`` converted into this type (into an integer type: toward
        zero, wrapping; exact as the C++ for sources with at least 0 integer bits, which is all hls4ml emits).

        ``codes``: int64 or an object array of Python ints; the result as ``from_float`` says. An int64 left shift
        that could leave int64 is done on Python ints (but for WRAP into <= 62 bits, where the low bits suffice).
        """
        if isinstance(codes, Limbs):
            return self._from_limbs(codes, frac)
        c = np.asarray(codes)
        if c.dtype != object:
            c = c.astype(np.int64, copy=False)
        shift = frac - self.frac
        if shift <= 0:
            if shift and c.dtype != object and not (self.fits_int64 and self.overflow == "WRAP"):
                room = MAX_WIDTH + shift  # the magnitude a code may have for the shifted code to stay below 2**62
                if (magnitude(c) >> room if room >= 0 else magnitude(c)) != 0:
                    c = c.astype(object)
            return self._overflow(np.left_shift(c, -shift))
        if shift > MAX_WIDTH and c.dtype != object:
            c = c.astype(object)
        q = np.right_shift(c, shift)  # floor division by 2**shift
        if self.rounding == "TRN":
            return self._overflow(q)
        rem = c - np.left_shift(q, shift)
        half_code = 1 << (shift - 1)
        return self._overflow(self._round(q, rem != 0, rem > half_code, rem == half_code, c < 0))

    def _from_limbs(self, c: Limbs, frac: int):
        """``from_codes`` of ``Limbs``: int64 into a type of at most 62 bits, ``Limbs`` into a wider one while they
        stay inside its range (Python ints otherwise, and for shifts outside 0..62)."""
        shift = frac - self.frac
        if not 0 <= shift <= MAX_WIDTH:
            return self.from_codes(c.exact(), frac)
        if (self.fits_int64 and self.overflow == "WRAP" and self.width + shift <= 64
                and self.rounding in ("TRN", "RND", "RND_MIN_INF", "RND_CONV")):
            # the result's bits are bits shift..shift+width of the value, and its rounding the bits below: all in
            # the low 64 bits (no rounding mode here reads the sign)
            return self.from_codes(c.to_int64(), frac)
        q, rem = c.floor_shift(shift)
        if shift and self.rounding != "TRN":
            half = 1 << (shift - 1)
            q = q + (self._round(q.lo, rem != 0, rem > half, rem == half, c.hi < 0) - q.lo)  # the increment
        lo, hi = self.min_code, self.max_code
        if not self.fits_int64:
            return q if q._inside(lo, hi) else self._overflow(q.exact())
        if self.overflow == "WRAP":
            return self._overflow(q.to_int64())  # the low 64 bits decide a wrap into <= 62 bits
        above, below = q._compare(hi)[0], q._compare(lo)[1]
        inside = q.to_int64()  # exact where inside the range
        if self.overflow == "SAT_ZERO":
            return np.where(above | below, 0, inside)
        if self.overflow == "SAT_SYM" and self.signed:
            lo, below = -hi, q._compare(-hi)[1]
        return np.where(above, hi, np.where(below, lo, inside))

    def to_float(self, codes) -> np.ndarray:
        """The values of ``codes`` as float64, rounded to nearest (ties to even) as ap_fixed's ``to_double``."""
        if isinstance(codes, Limbs):
            codes = codes.exact()
        c = np.asarray(codes)
        if c.dtype == object:
            try:
                c = c.astype(np.float64)  # Python's int -> float rounds to nearest, ties to even
            except OverflowError:
                scale = 1 << max(self.frac, 0)
                values = [float(int(v) << max(-self.frac, 0)) / scale if abs(int(v)) < (1 << 1100) else
                          float("inf") * (1 if v > 0 else -1) for v in c.ravel()]
                return np.array(values, dtype=np.float64).reshape(c.shape)
        return np.ldexp(np.asarray(c, dtype=np.float64), -self.frac)

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
        """Apply the overflow mode to integer codes ``q`` (int64 or Python ints); int64 out for a type of at most
        62 bits, and for a wider one while int64 ``q`` is already inside its range."""
        q = np.asarray(q)
        lo, hi = self.min_code, self.max_code
        exact = q.dtype == object
        if not exact and not self.fits_int64:
            if q.size == 0 or (lo <= int(q.min()) and int(q.max()) <= hi):
                return q
            q, exact = q.astype(object), True
        mode = self.overflow
        if mode == "WRAP":
            span = 1 << self.width
            wrapped = np.bitwise_and(q, span - 1)
            if not self.signed:
                out = wrapped
            elif exact:
                out = np.where(wrapped > hi, wrapped - span, wrapped)
            else:
                out = wrapped - span * (wrapped > hi)
        else:
            outside = (q < lo) | (q > hi)
            if mode == "SAT_ZERO":
                out = np.where(outside, 0, q)
            else:
                if mode == "SAT_SYM" and self.signed:
                    lo = -hi
                out = np.clip(q, lo, hi)
        return out.astype(np.int64) if exact and self.fits_int64 else out
