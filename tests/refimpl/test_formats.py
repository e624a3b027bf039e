"""Number formats: fields, validation, kernel codes, parse_format (ALGORITHMS.md §2.1-§2.3)."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest

from refimpl import slots as S
from refimpl.formats import (
    CODE_LEN,
    FORMAT_TYPES,
    IEEE_FORMATS,
    NVFP4,
    BlockFloatingPoint,
    FixedPoint,
    FloatingPoint,
    IEEEFloat,
    MXFormat,
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
    assert [f.code[k] for k in (S.KIND, S.FIXED_DELTA, S.FIXED_LO, S.FIXED_HI, S.FIXED_WL)] == [1, delta, lo, hi, wl]
    s = FixedPoint(wl, fl, symmetric=True)
    assert (s.lo, s.hi) == (-hi, hi)


def test_formats_are_frozen_and_codes_read_only():
    for f in (FixedPoint(8, 3), BlockFloatingPoint(8), FloatingPoint(4, 3), IEEEFloat("float16"), MXFormat("mxfp4"),
              NVFP4()):
        with pytest.raises(dataclasses.FrozenInstanceError):
            f.wl = 3  # type: ignore[misc]
        assert f.code.dtype == np.float64 and f.code.shape == (CODE_LEN,)
        assert not f.code.flags.writeable
        assert f == type(f)(*[getattr(f, fld.name) for fld in dataclasses.fields(f) if fld.init])


def test_kind_ids_and_identity():
    assert format_code(None)[S.KIND] == S.KIND_NONE
    fmts = (FixedPoint(8, 3), BlockFloatingPoint(8), FloatingPoint(4, 3), IEEEFloat("bfloat16"), MXFormat("mxint8"), NVFP4())
    assert [format_code(f)[S.KIND] for f in fmts] == [1, 2, 3, 4, 5, 5]
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
    for name, (_exp, man, mx, _has_inf) in IEEE_FORMATS.items():
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
        ("mxfp8_e4m3", MXFormat("mxfp8_e4m3")),
        ("mxfp8_e5m2", MXFormat("mxfp8_e5m2")),
        ("mxfp6_e3m2", MXFormat("mxfp6_e3m2")),
        ("mxfp6_e2m3:0", MXFormat("mxfp6_e2m3", axis=0)),
        ("mxfp4", MXFormat("mxfp4")),
        ("mxint8", MXFormat("mxint8")),
        ("nvfp4", NVFP4()),
        ("nvfp4:1:0.25", NVFP4(axis=1, tensor_scale=0.25)),
    ],
)
def test_parse_format(text, expected):
    assert parse_format(text) == expected


@pytest.mark.parametrize("text", ["", "fixed:8", "fixed:a:b", "bfp", "float:4", "ieee:float32", "int8", "fixed:0:3", "mxfp4:a",
                                  "mxfp4:0:1", "mxfp5", "nvfp4:0:x", "nvfp4:0:0.1", "nvfp4:0:1:2"])
def test_parse_format_rejects(text):
    with pytest.raises(ValueError):
        parse_format(text)


def test_with_options():
    c = with_options(FixedPoint(8, 3).code, ties="even", vc_published=True)
    assert c[S.TIES] == S.TIES_EVEN and c[S.VC_FLAGS] == S.VC_PUBLISHED_BIT and not c.flags.writeable
    assert FixedPoint(8, 3).code[S.TIES] == S.TIES_AWAY  # original untouched
    with pytest.raises(ValueError, match="ties"):
        with_options(FixedPoint(8, 3).code, ties="banker")


# ------------------------------------------------------------------------------------------
# layout: one kernel module per format kind on each side (issue 10, item 2)
# ------------------------------------------------------------------------------------------
#: one instance per format class; a new class without an entry here fails by name below
EXAMPLES = {
    FixedPoint: FixedPoint(8, 3),
    BlockFloatingPoint: BlockFloatingPoint(8),
    FloatingPoint: FloatingPoint(4, 3),
    IEEEFloat: IEEEFloat("bfloat16"),
    MXFormat: MXFormat("mxfp4"),
    NVFP4: NVFP4(),
}
KERNEL_FUNCTIONS = {
    "refimpl.kernels": ("nearest_into", "stochastic_into", "vc_into", "gap_into"),
    "torchport.kernels": ("nearest", "stochastic", "vc", "gap"),
}


@pytest.mark.parametrize("cls", FORMAT_TYPES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("package", sorted(KERNEL_FUNCTIONS))
def test_every_format_has_its_kernels_in_both_packages(cls, package):
    """Each format class has a module named after its kind in refimpl.kernels and torchport.kernels,
    with the same four functions (nearest, stochastic, Q^vc, gap)."""
    if package.startswith("torchport"):
        pytest.importorskip("torch")
    assert cls in EXAMPLES, f"{cls.__name__} has no example instance in EXAMPLES"
    kind = int(EXAMPLES[cls].code[S.KIND])
    assert kind in S.KIND_MODULES, f"{cls.__name__}: kind {kind} has no module name in refimpl.slots.KIND_MODULES"
    name = f"{package}.{S.KIND_MODULES[kind]}"
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        pytest.fail(f"{cls.__name__}: no kernel module {name} ({err})")
    missing = [f for f in KERNEL_FUNCTIONS[package] if not callable(getattr(module, f, None))]
    assert not missing, f"{cls.__name__}: {name} lacks {missing}"


def _bogus_code(kind=9.0):
    code = np.array(FixedPoint(8, 3).code)
    code[S.KIND] = kind
    return code


def test_unknown_kind_raises_in_every_refimpl_dispatcher():
    from refimpl import _qkernels as K

    x = np.linspace(-1, 1, 8)
    out = np.empty_like(x)
    code = _bogus_code()
    calls = {
        "nearest_into": lambda: K.nearest_into(x, out, code),
        "stochastic_into": lambda: K.stochastic_into(x, x * 0, out, code),
        "vc_into": lambda: K.vc_into(x, 0.1, x, x * 0, x * 0, out, code),
        "vc_gap_into": lambda: K.vc_gap_into(x, out, code),
        "nearest_into_par": lambda: K.nearest_into_par(x, out, code),
        "stochastic_into_par": lambda: K.stochastic_into_par(x, x * 0, out, code),
        "stochastic_keyed_into_par": lambda: K.stochastic_keyed_into_par(x, np.uint64(1), out, code),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="kind"):
            call()
        assert name  # (named in the failure traceback)


def test_unknown_kind_raises_in_every_torch_dispatcher():
    torch = pytest.importorskip("torch")
    import torchport.quantize as tq

    x = torch.linspace(-1, 1, 8, dtype=torch.float64)
    code = tuple(float(c) for c in _bogus_code())
    for call in (lambda: tq._round(x, None, code, None), lambda: tq._round(x, None, code, x * 0),
                 lambda: tq._vc(x, 0.1, code, None, x, x * 0, x * 0), lambda: tq._kernels(code)):
        with pytest.raises(ValueError, match="unknown format kind 9"):
            call()
