"""Number formats: fields, validation, kernel codes, parse_format (ALGORITHMS.md §2.1-§2.3)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from refimpl.formats import (
    CODE_LEN,
    IEEE_FORMATS,
    BlockFloatingPoint,
    FixedPoint,
    FloatingPoint,
    IEEEFloat,
    format_code,
    parse_format,
    qtorch_float,
    with_options,
)


@pytest.mark.parametrize(
    "wl, fl, delta, lo, hi",
    [
        (8, 8, 2**-8, -0.5, 0.49609375),  # §2.1 examples
        (8, 3, 0.125, -16.0, 15.875),
        (8, 4, 1 / 16, -8.0, 7.9375),
        (8, 6, 2**-6, -2.0, 1.984375),
        (8, 5, 2**-5, -4.0, 4.0 - 2**-5),  # LP-SGHMC: 1 sign + 2 integer + 5 fractional bits
        (4, 0, 1.0, -8.0, 7.0),  # fl = 0 allowed here (qtorch asserts fl > 0)
        (4, -2, 4.0, -32.0, 28.0),
    ],
)
def test_fixed_point_grid(wl, fl, delta, lo, hi):
    f = FixedPoint(wl, fl)
    assert (f.delta, f.lo, f.hi) == (delta, lo, hi)
    assert np.array_equal(f.code[:5], [1, delta, lo, hi, wl])
    s = FixedPoint(wl, fl, symmetric=True)
    assert (s.lo, s.hi) == (-hi, hi)


def test_formats_are_frozen_and_codes_read_only():
    for f in (FixedPoint(8, 3), BlockFloatingPoint(8), FloatingPoint(4, 3), IEEEFloat("float16")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            f.wl = 3  # type: ignore[misc]
        assert f.code.dtype == np.float64 and f.code.shape == (CODE_LEN,)
        assert not f.code.flags.writeable
        assert f == type(f)(*[getattr(f, fld.name) for fld in dataclasses.fields(f) if fld.init])


def test_kind_ids_and_identity():
    assert format_code(None)[0] == 0
    assert [format_code(f)[0] for f in (FixedPoint(8, 3), BlockFloatingPoint(8), FloatingPoint(4, 3), IEEEFloat("bfloat16"))] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="fmt"):
        format_code("fixed:8:3")


def test_qtorch_float_ranges():
    # §2.3 table: E4M3 max 480, min positive 2^-9; E5M2 max 114688; E5M10 max 131008
    assert FloatingPoint(4, 3).max == 480.0 and FloatingPoint(4, 3).min_positive == 2.0**-9
    assert FloatingPoint(5, 2).max == 114688.0
    assert FloatingPoint(5, 10).max == 131008.0
    assert qtorch_float(4, 3) == FloatingPoint(4, 3)
    assert (FloatingPoint(4, 3).emin, FloatingPoint(4, 3).emax) == (-6, 8)


def test_ieee_ranges_match_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for name, (exp, man, mx, has_inf) in IEEE_FORMATS.items():
        dt = np.float16 if name == "float16" else getattr(ml_dtypes, name)
        info = ml_dtypes.finfo(dt)
        assert float(info.max) == mx, name
        assert info.nmant == man, name
        assert float(info.smallest_normal) == 2.0 ** IEEEFloat(name).emin, name


@pytest.mark.parametrize(
    "ctor, kwargs, argname",
    [
        (FixedPoint, dict(wl=0, fl=3), "wl"),
        (FixedPoint, dict(wl=54, fl=3), "wl"),
        (FixedPoint, dict(wl=8.0, fl=3), "wl"),
        (FixedPoint, dict(wl=True, fl=3), "wl"),
        (FixedPoint, dict(wl=8, fl=1.5), "fl"),
        (FixedPoint, dict(wl=8, fl=5000), "fl"),
        (FixedPoint, dict(wl=8, fl=3, symmetric="yes"), "symmetric"),
        (BlockFloatingPoint, dict(wl=1), "wl"),
        (BlockFloatingPoint, dict(wl=8, dim=-1), "dim"),
        (BlockFloatingPoint, dict(wl=8, dim=1.0), "dim"),
        (FloatingPoint, dict(exp=1, man=3), "exp"),
        (FloatingPoint, dict(exp=11, man=3), "exp"),
        (FloatingPoint, dict(exp=4, man=-1), "man"),
        (FloatingPoint, dict(exp=4, man=53), "man"),
        (IEEEFloat, dict(name="float8"), "name"),
        (IEEEFloat, dict(name="float16", saturate=1), "saturate"),
    ],
)
def test_invalid_fields_raise_naming_the_field(ctor, kwargs, argname):
    with pytest.raises(ValueError, match=argname):
        ctor(**kwargs)


def test_numpy_integers_accepted():
    assert FixedPoint(np.int64(8), np.int32(3)) == FixedPoint(8, 3)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("none", None),
        ("fixed:8:6", FixedPoint(8, 6)),
        ("fixed:8:6:sym", FixedPoint(8, 6, symmetric=True)),
        ("bfp:8", BlockFloatingPoint(8)),
        ("bfp:8:0", BlockFloatingPoint(8, 0)),
        ("float:4:3", FloatingPoint(4, 3)),
        ("qtorch_float:5:2", FloatingPoint(5, 2)),
        ("ieee:bfloat16", IEEEFloat("bfloat16")),
        ("ieee:float8_e4m3fn:sat", IEEEFloat("float8_e4m3fn", saturate=True)),
    ],
)
def test_parse_format(text, expected):
    assert parse_format(text) == expected


@pytest.mark.parametrize("text", ["", "fixed:8", "fixed:a:b", "bfp", "float:4", "ieee:float32", "int8", "fixed:0:3"])
def test_parse_format_rejects(text):
    with pytest.raises(ValueError):
        parse_format(text)


def test_with_options():
    c = with_options(FixedPoint(8, 3).code, ties="even", vc_published=True)
    assert c[5] == 2 and c[7] == 1 and not c.flags.writeable
    assert FixedPoint(8, 3).code[5] == 1  # original untouched
    with pytest.raises(ValueError, match="ties"):
        with_options(FixedPoint(8, 3).code, ties="banker")
