"""quantize.FixedType against the real ap_fixed headers that hls4ml compiles its C-simulation with."""

import dataclasses
import pathlib
import subprocess

import hls4ml
import numpy as np
import pytest

from l1forge.quantize.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedType, FixedTypeError

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
        ("uint<1>", FixedType(1, 1, False)),
        ("ap_int<8>", FixedType(8, 8, True)),
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
