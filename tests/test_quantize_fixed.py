"""quantize.FixedType against the real ap_fixed headers that hls4ml compiles its C-simulation with."""

import dataclasses
import pathlib
import subprocess

import hls4ml
import numpy as np
import pytest

from l1forge.quantize.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedType, FixedTypeError, TooWideError

AP_TYPES = pathlib.Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"


def _random_types(rng, n):
    types = []
    for _ in range(n):
        width = int(rng.integers(2, 20))
        signed = bool(rng.integers(2))
        # ap_fixed asserts ("read bit beyond MSB") on some types with integer bits < 0 or > width: not drawn here.
        integer = int(rng.integers(1 if signed else 0, width + 1))
        # SAT_ZERO (never emitted by hls4ml) trips an ap_fixed assertion when a double overflows: targets only.
        overflow = str(rng.choice([m for m in OVERFLOW_MODES if m != "SAT_ZERO"]))
        types.append(FixedType(width, integer, signed, str(rng.choice(ROUNDING_MODES)), overflow))
    return types


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Random (source, target) type pairs and values, converted by a compiled C++ program."""
    rng = np.random.default_rng(42)
    sources = _random_types(rng, 60)
    targets = _random_types(rng, 60)
    # Every mode appears as a target at least once.
    targets[: len(ROUNDING_MODES)] = [FixedType(6, 2, True, m, "SAT") for m in ROUNDING_MODES]
    targets[10 : 10 + len(OVERFLOW_MODES)] = [FixedType(5, 3, s, "RND", m) for m in OVERFLOW_MODES for s in (True,)]
    values = rng.normal(scale=8.0, size=(60, 64))
    values[:, :8] = np.round(values[:, :8] * 4) / 4 + 0.125  # exact ties for the rounding modes
    # ap_fixed itself asserts ("read bit beyond MSB") on some signed -> unsigned WRAP conversions; hls4ml only
    # converts signed -> unsigned after a ReLU into a saturating type, so those pairs are tested that way.
    for i, (src, dst) in enumerate(zip(sources, targets)):
        if src.signed and not dst.signed:
            values[i] = np.abs(values[i])
            targets[i] = dataclasses.replace(dst, overflow="SAT")
    lines = ["#include <cstdio>", '#include "ap_fixed.h"', "int main() { std::setvbuf(stdout, NULL, _IONBF, 0);"]
    for i, (src, dst) in enumerate(zip(sources, targets)):
        for v in values[i]:
            lines.append(
                f"{{ {src.cpp()} s = {v!r}; {dst.cpp()} d = s;"
                f' std::printf("%lld %lld\\n", (long long)s.range().to_int64(), (long long)d.range().to_int64()); }}'
            )
    lines.append("return 0; }")
    tmp = tmp_path_factory.mktemp("apfixed")
    (tmp / "conv.cpp").write_text("\n".join(lines))
    subprocess.run(["g++", "-O0", "-std=c++14", f"-I{AP_TYPES}", "conv.cpp", "-o", "conv"], cwd=tmp, check=True)
    out = np.loadtxt(subprocess.run([str(tmp / "conv")], capture_output=True, text=True, check=True).stdout.splitlines(), dtype=np.int64)
    return sources, targets, values, out.reshape(60, 64, 2)


def _signed_raw(raw, t):
    """Interpret ap_fixed's raw bit pattern (range().to_int64()) as a signed code for signed types."""
    raw = raw & ((1 << t.width) - 1)
    return np.where(t.signed & (raw >= (1 << (t.width - 1))), raw - (1 << t.width), raw)


def test_float_to_fixed_matches_ap_fixed(cases):
    sources, _, values, out = cases
    for i, src in enumerate(sources):
        np.testing.assert_array_equal(src.from_float(values[i]), _signed_raw(out[i, :, 0], src), err_msg=str(src))


def test_fixed_to_fixed_matches_ap_fixed(cases):
    sources, targets, _, out = cases
    for i, (src, dst) in enumerate(zip(sources, targets)):
        src_codes = _signed_raw(out[i, :, 0], src)
        np.testing.assert_array_equal(
            dst.from_codes(src_codes, src.frac), _signed_raw(out[i, :, 1], dst), err_msg=f"{src} -> {dst}"
        )


def test_parse_round_trip():
    for text, expected in [
        ("ap_fixed<16,6,AP_RND_CONV,AP_SAT>", FixedType(16, 6, True, "RND_CONV", "SAT")),
        ("fixed<16,6,RND,SAT,0>", FixedType(16, 6, True, "RND", "SAT")),
        ("ufixed<2,32,TRN,WRAP,0>", FixedType(2, 32, False)),
        ("uint<1>", FixedType.int_type(1, False)),
        ("ap_int<8>", FixedType.int_type(8, True)),
    ]:
        parsed = FixedType.parse(text)
        assert parsed == expected
        assert FixedType.parse(parsed.hls()) == parsed
        assert FixedType.parse(parsed.cpp()) == parsed


def test_bad_types_and_values_raise():
    with pytest.raises(FixedTypeError, match="float<8>"):
        FixedType.parse("float<8>")
    with pytest.raises(FixedTypeError, match="NaN"):
        FixedType(8, 3).from_float([1.0, np.nan])
    wide = FixedType.parse("fixed<70,20>")  # any width ap_fixed has is exact now (tests/test_wide.py)
    assert wide.width == 70 and not wide.fits_int64 and FixedType(62, 20).fits_int64
    with pytest.raises(TooWideError, match="at most 32768"):  # beyond every ap_fixed: a config can narrow it
        FixedType.parse("fixed<40000,20>")
    with pytest.raises(FixedTypeError, match="at least 1"):
        FixedType(0, 0)
    with pytest.raises(FixedTypeError) as err:
        FixedType.parse("fixed<8,3,RND_SOMETIMES>")
    assert not isinstance(err.value, TooWideError)


@pytest.fixture(scope="module")
def int_cases(tmp_path_factory):
    """ap_int/ap_uint conversions (from double, from fixed, to fixed, to int) run by a compiled C++ program.

    Returns a list of (kind, source type, target type, inputs, C++ codes of the target)."""
    rng = np.random.default_rng(11)
    ints = [FixedType.int_type(w, s) for w in (1, 3, 8, 13, 24) for s in (True, False)]
    values = np.concatenate([
        rng.normal(scale=200.0, size=40),
        np.round(rng.normal(scale=50.0, size=16)) + 0.5,  # ties: toward zero, not to even or down
        [-166.5, 166.5, -0.3, -0.49, -0.5, -0.7, 0.3, -1e-300, -0.0, 0.0, -1.0, -1.5, 1e30, -1e30, 2.0**40 + 3],
    ])
    fixed_sources = [t for t in _random_types(rng, 40) if t.integer >= 1]
    fixed_targets = _random_types(rng, 10)
    cases, lines = [], ["#include <cstdio>", '#include "ap_fixed.h"', '#include "ap_int.h"',
                        "int main() { std::setvbuf(stdout, NULL, _IONBF, 0);"]

    def emit(kind, src, dst, inputs, expr):
        cases.append((kind, src, dst, np.asarray(inputs)))
        for v in inputs:
            lines.append(f'{{ {expr(v)} std::printf("%lld\\n", (long long)d.range().to_int64()); }}')

    for dst in ints:
        emit("double", None, dst, values, lambda v, dst=dst: f"{dst.cpp()} d = (double){float(v)!r};")
    for i, src in enumerate(fixed_sources):
        dst = ints[i % len(ints)]
        codes = src.from_float(rng.normal(scale=2.0 ** (src.integer - 1), size=24))
        emit("fixed", src, dst, codes,
             lambda c, src=src, dst=dst: f"{src.cpp()} s; s.range() = {int(c)}LL; {dst.cpp()} d = s;")
    for i, src in enumerate(ints):
        codes = src.from_float(values)
        for dst in (fixed_targets[i], ints[(i + 3) % len(ints)]):
            if src.signed and not dst.signed and not dst.is_int:
                dst = dataclasses.replace(dst, overflow="SAT")  # see `cases`: ap_fixed asserts on signed -> ufixed WRAP
            emit("int", src, dst, codes,
                 lambda c, src=src, dst=dst: f"{src.cpp()} s = {int(c)}LL; {dst.cpp()} d = s;")
    lines.append("return 0; }")
    tmp = tmp_path_factory.mktemp("apint")
    (tmp / "conv.cpp").write_text("\n".join(lines))
    subprocess.run(["g++", "-O0", "-std=c++14", f"-I{AP_TYPES}", "conv.cpp", "-o", "conv"], cwd=tmp, check=True)
    out = subprocess.run([str(tmp / "conv")], capture_output=True, text=True, check=True).stdout.split()
    codes, start = np.array(out, dtype=np.int64), 0
    result = []
    for kind, src, dst, inputs in cases:
        result.append((kind, src, dst, inputs, _signed_raw(codes[start : start + len(inputs)], dst)))
        start += len(inputs)
    return result


def test_int_types_parse_and_print():
    t = FixedType.parse("int<8>")
    assert t == FixedType.int_type(8) and t.is_int and t.rounding == "TRN_ZERO" and t.overflow == "WRAP"
    assert (t.hls(), t.cpp()) == ("int<8>", "ap_int<8>")
    assert FixedType.parse("ap_uint<5>").hls() == "uint<5>" and not FixedType.parse("uint<5>").signed
    with pytest.raises(FixedTypeError, match="TRN_ZERO"):
        FixedType(8, 8, True, "TRN", "WRAP", is_int=True)


@pytest.mark.parametrize("kind", ["double", "fixed", "int"])
def test_int_conversions_match_ap_int(int_cases, kind):
    """double -> ap_int (toward zero, wrap, and the header's -0.3 -> +1), ap_fixed -> ap_int, ap_int -> fixed/int."""
    checked = 0
    for case_kind, src, dst, inputs, expected in int_cases:
        if case_kind != kind:
            continue
        got = dst.from_float(inputs) if src is None else dst.from_codes(inputs, src.frac)
        np.testing.assert_array_equal(got, expected, err_msg=f"{kind}: {src} -> {dst}")
        checked += len(inputs)
    assert checked > 200
    # The case: -166.5 into int<W> is -166 (a floor would give -167).
    assert FixedType.int_type(16).from_float([-166.5])[0] == -166
