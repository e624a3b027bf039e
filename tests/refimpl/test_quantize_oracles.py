"""Oracles written by others: qtorch 0.3.0 on the CPU and ml_dtypes (ALGORITHMS.md §2.1-§2.3, §7.1).

qtorch: fixed point, block and float **nearest** rounding must match exactly, except at
the documented places (docs/quantizers.md), each identified and asserted here:

* exact ties in fixed point: qtorch CPU rounds half to even (nearbyint); we round half
  away from zero (the paper's Q^d) -- ``ties="even"`` reproduces qtorch everywhere;
* near-ties in block floating point: qtorch adds 1.5·2^(e_B+2) in float32, so x is first
  rounded to a multiple of 2^(e_B-21) and then to Δ_B (double rounding) for x within
  2^(e_B-22) of a tie (2^(W-24) Δ_B); we round exactly;
* near-ties of subnormals in qtorch float: qtorch adds 2^e_min in float32 first, which
  double-rounds x within 2^(e_min-24) of a tie (2^(M-24) of the subnormal spacing);
* special values: qtorch float maps NaN to +max for exp < 8 and keeps ±inf/NaN for exp = 8;
  we pass NaN through and saturate ±inf for every exp.

ml_dtypes: IEEE float16/bfloat16/float8 nearest rounding agrees bit for bit for float32
inputs, including subnormals, ties, signed zeros, overflow to inf/NaN.  For float64 inputs
ml_dtypes' bfloat16 cast goes through float32 (double rounding); we round float64 directly.
"""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import BlockFloatingPoint, FixedPoint, FloatingPoint, IEEEFloat, quantize

RNG = np.random.default_rng(20261121)


def wide_float32(n, lo=-30, hi=30):
    x = RNG.standard_normal(n) * np.exp(RNG.uniform(lo, hi, n))
    return x.astype(np.float32)


# -------------------------------------------------------------------------------------------
# qtorch
# -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qt():
    pytest.importorskip("torch")
    try:
        from qtorch import quant
    except Exception as exc:  # the extension builds at first import; needs ninja and a compiler
        pytest.skip(f"qtorch unavailable: {exc}")
    return quant


def _t(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


@pytest.mark.parametrize("wl, fl", [(8, 8), (8, 3), (8, 6), (4, 2), (12, 10), (16, 4)])
def test_qtorch_fixed_point_nearest(qt, wl, fl):
    f = FixedPoint(wl, fl)
    d = f.delta
    ties = (np.arange(-2 ** (wl - 1), 2 ** (wl - 1)) + 0.5) * d  # every tie inside the range
    x = np.concatenate([wide_float32(20000, -8, 8) * np.float32(d * 8), ties.astype(np.float32), [np.nan, np.inf, -np.inf, 0.0, -0.0]]).astype(np.float32)
    theirs = qt.fixed_point_quantize(_t(x), wl, fl, rounding="nearest").numpy()
    ours = quantize(x, f)
    ours_even = quantize(x, f, ties="even")
    assert np.array_equal(ours_even, theirs, equal_nan=True)  # ties="even" emulates qtorch CPU
    fin = np.isfinite(x)
    z = np.where(fin, x.astype(np.float64), 0.0) / d
    is_tie = fin & (z - np.floor(z) == 0.5) & (x >= f.lo) & (x <= f.hi)
    differ = ~((ours == theirs) | (np.isnan(ours) & np.isnan(theirs)))
    # exactly the ties where half-to-even and half-away differ: k = floor(z) even for z > 0, odd for z < 0
    assert np.array_equal(differ, is_tie & ((np.floor(z) % 2 == 0) == (z > 0)))
    assert differ.sum() >= 2 ** (wl - 2)  # the test does exercise them
    # at those ties: ours is half away from zero, theirs half to even
    k = np.floor(np.abs(z[differ]))
    assert np.array_equal(np.abs(ours[differ]) / d, k + 1)
    assert np.all(np.abs(theirs[differ]) / d % 2 == 0)


def _exact_bfp_nearest(x, wl):
    """Exact BFP nearest (ties toward +inf, symmetric saturation), float64, one block."""
    m = np.max(np.abs(x[np.isfinite(x)]))
    e = int(np.frexp(m)[1]) - 1
    d = np.ldexp(1.0, e + 2 - wl)
    k = np.floor(x.astype(np.float64) / d + 0.5)  # exact for float32 x
    kmax = 2.0 ** (wl - 1) - 1
    return np.clip(k, -kmax, kmax) * d, d, e


@pytest.mark.parametrize("wl", [4, 8, 12, 16])
def test_qtorch_block_nearest(qt, wl):
    x2 = wide_float32(400 * 250, -6, 6).reshape(400, 250)
    theirs = qt.block_quantize(_t(x2), wl, dim=0, rounding="nearest").numpy()
    ours = quantize(x2, BlockFloatingPoint(wl, 0))
    n_near = 0
    for r in range(x2.shape[0]):
        exact, d, e = _exact_bfp_nearest(x2[r], wl)
        assert np.array_equal(ours[r], exact)
        differ = ours[r] != theirs[r]
        z = x2[r][differ].astype(np.float64) / d
        # every disagreement is a near-tie: within 2^(W-24) Δ_B of a tie (and not a tie)
        dist = np.abs(z - np.floor(z) - 0.5)
        assert np.all((dist > 0) & (dist <= 2.0 ** (wl - 24))), (r, z)
        n_near += differ.sum()
    # whole-tensor block (qtorch dim=-1) as well
    x1 = wide_float32(3000, -6, 6)
    t1 = qt.block_quantize(_t(x1), wl, dim=-1, rounding="nearest").numpy()
    o1 = quantize(x1, BlockFloatingPoint(wl))
    exact, d, _ = _exact_bfp_nearest(x1, wl)
    assert np.array_equal(o1, exact)
    z = x1[o1 != t1].astype(np.float64) / d
    assert np.all(np.abs(z - np.floor(z) - 0.5) <= 2.0 ** (wl - 24))


def test_qtorch_block_exact_ties_and_constructed_near_ties(qt):
    wl = 8
    d = 2.0**-6  # block max 1.5 -> e_B = 0, Δ_B = 2^(2-8)
    k = np.arange(-20, 20)
    ties = np.concatenate([[1.5], (k + 0.5) * d]).astype(np.float32)
    # exact ties: both round toward +inf
    assert np.array_equal(quantize(ties, BlockFloatingPoint(wl)), qt.block_quantize(_t(ties), wl, dim=-1, rounding="nearest").numpy())
    # near-ties: 2^-23 below the tie (representable in float32 near 2^-5..2^-1); qtorch's first
    # float32 rounding (to multiples of 2^(e_B-21) = 2^-21) lands on the tie and then goes up
    near = np.concatenate([[1.5], (np.arange(2, 20) + 0.5) * d - 2.0**-23]).astype(np.float32)
    assert np.all(near.astype(np.float64)[1:] == (np.arange(2, 20) + 0.5) * d - 2.0**-23)
    ours = quantize(near, BlockFloatingPoint(wl))
    theirs = qt.block_quantize(_t(near), wl, dim=-1, rounding="nearest").numpy()
    assert np.array_equal(ours[1:], np.arange(2, 20) * d)  # exact: just below the tie -> down
    assert np.array_equal(theirs[1:], np.arange(3, 21) * d)  # qtorch: double-rounded up


@pytest.mark.parametrize("exp, man", [(4, 3), (5, 2), (5, 10), (8, 7), (3, 1), (2, 2), (6, 5)])
def test_qtorch_float_nearest(qt, exp, man):
    f = FloatingPoint(exp, man)
    x = np.concatenate([
        wide_float32(30000, -30, 30),
        wide_float32(10000, -1, 1) * np.float32(2.0 ** f.emin),  # subnormal range
        np.array([0.0, -0.0, min(f.max, 3e38), -min(f.max, 3e38), min(f.max * 1.01, 3e38), 1e30, -1e30], dtype=np.float32),
    ]).astype(np.float32)
    x = x[np.isfinite(x)]
    theirs = qt.float_quantize(_t(x), exp, man, rounding="nearest").numpy()
    ours = quantize(x, f)
    differ = ours != theirs
    # disagreements only at subnormal near-ties: |x| < 2^e_min, within 2^(M-24) spacings of a tie
    s = 2.0 ** (f.emin - man)
    xd = x[differ].astype(np.float64)
    z = np.abs(xd) / s
    dist = np.abs(z - np.floor(z) - 0.5)
    assert np.all(np.abs(xd) < 2.0**f.emin), xd[:5]
    assert np.all((dist > 0) & (dist <= 2.0 ** (man - 24))), xd[:5]
    # and there ours is the exact rounding
    assert np.array_equal(np.abs(ours[differ]), np.floor(z + 0.5) * s)


def test_qtorch_float_subnormal_near_tie_constructed(qt):
    f = FloatingPoint(4, 3)  # e_min = -6, subnormal spacing 2^-9
    x = np.array([2.0**-10 - 2.0**-32, -(2.0**-10 - 2.0**-32), 3 * 2.0**-10 - 2.0**-31], dtype=np.float32)
    assert np.all(x.astype(np.float64) == [2.0**-10 - 2.0**-32, -(2.0**-10 - 2.0**-32), 3 * 2.0**-10 - 2.0**-31])
    ours = quantize(x, f)
    theirs = qt.float_quantize(_t(x), 4, 3, rounding="nearest").numpy()
    assert np.array_equal(ours, [0.0, -0.0, 2.0**-9])  # exact: just below the ties
    assert np.array_equal(theirs, [2.0**-9, -(2.0**-9), 2.0**-8])  # qtorch: tie reached, away from zero
    # exact ties agree (away from zero), normal range agrees
    t = np.array([2.0**-10, 3 * 2.0**-10, 1.0625, -1.0625, 1.1875], dtype=np.float32)
    assert np.array_equal(quantize(t, f), qt.float_quantize(_t(t), 4, 3, rounding="nearest").numpy())


def test_qtorch_special_values_differences(qt):
    x = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    q_small = qt.float_quantize(_t(x), 4, 3, rounding="nearest").numpy()
    assert np.array_equal(q_small, [480.0, 480.0, -480.0])  # qtorch: NaN -> +max for exp < 8
    ours = quantize(x, FloatingPoint(4, 3))
    assert np.isnan(ours[0]) and np.array_equal(ours[1:], [480.0, -480.0])
    q8 = qt.float_quantize(_t(x), 8, 7, rounding="nearest").numpy()
    assert np.isnan(q8[0]) and np.array_equal(q8[1:], [np.inf, -np.inf])  # qtorch exp = 8: unchanged
    o8 = quantize(x.astype(np.float64), FloatingPoint(8, 7))  # ours: saturate to ±max = ±2^128 (2 - 2^-7)
    assert np.isnan(o8[0]) and np.array_equal(o8[1:], [FloatingPoint(8, 7).max, -FloatingPoint(8, 7).max])
    # (that max exceeds float32's range, so a float32 result shows it as ±inf)
    # fixed point: identical (NaN passes, ±inf saturates)
    qf = qt.fixed_point_quantize(_t(x), 8, 3, rounding="nearest").numpy()
    assert np.array_equal(qf, quantize(x, FixedPoint(8, 3)), equal_nan=True)


def test_qtorch_fixed_stochastic_statistical_oracle(qt):
    """qtorch's fixed-point SR (torch RNG) and ours have the same distribution: compare the
    frequency of rounding up at p = 0.3 (difference of two binomial proportions, 5 sigma)."""
    import torch

    n = 40_000
    x = np.full(n, 1.0 + 0.3 * 2.0**-4, dtype=np.float32)
    torch.manual_seed(0)
    theirs = qt.fixed_point_quantize(_t(x), 8, 4, rounding="stochastic").numpy()
    ours = quantize(x, FixedPoint(8, 4), "stochastic", np.random.default_rng(0))
    p1, p2 = np.mean(theirs > 1.0), np.mean(ours > 1.0)
    assert abs(p1 - p2) <= 5 * np.sqrt(2 * 0.3 * 0.7 / n)
    assert set(np.unique(theirs)) == set(np.unique(ours)) == {1.0, 1.0625}


# -------------------------------------------------------------------------------------------
# ml_dtypes (IEEE)
# -------------------------------------------------------------------------------------------
def _ml_dtype(name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return np.float16 if name == "float16" else getattr(ml_dtypes, name)


def _cast(x, name):
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(_ml_dtype(name)).astype(x.dtype)


def _bitwise_equal(a, b):
    return np.array_equal(a.view(np.uint32), b.view(np.uint32)) or np.array_equal(
        np.where(np.isnan(a), np.float32(np.nan), a).view(np.uint32), np.where(np.isnan(b), np.float32(np.nan), b).view(np.uint32)
    )


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_ieee_bitwise_vs_ml_dtypes(name):
    f = IEEEFloat(name)
    s = 2.0 ** (f.emin - f.man)  # smallest subnormal
    k = np.arange(-300, 300)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, f.max, -f.max, min(f.max * (1 + 2.0**-f.man / 2), 3.4e38), min(f.max * 1.5, 3.4e38), 3e38])
    x = np.concatenate([
        wide_float32(100_000, -40, 40),
        (k * s).astype(np.float32),  # subnormal grid
        ((k + 0.5) * s).astype(np.float32),  # subnormal ties
        ((1 + (k[:64] + 0.5) * 2.0**-f.man) * 2.0**3).astype(np.float32),  # normal ties
        special.astype(np.float32),
    ]).astype(np.float32)
    ref = _cast(x, name)
    ours = quantize(x, f)
    assert ours.dtype == np.float32
    nan_ref, nan_ours = np.isnan(ref), np.isnan(ours)
    assert np.array_equal(nan_ref, nan_ours)
    assert np.array_equal(ref[~nan_ref].view(np.uint32), ours[~nan_ours].view(np.uint32))  # incl. signed zeros


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_ieee_float64_inputs(name):
    f = IEEEFloat(name)
    x = RNG.standard_normal(50_000) * np.exp(RNG.uniform(-20, 20, 50_000))
    ours = quantize(x, f)
    ref = _cast(x, name)
    differ = ~((ours == ref) | (np.isnan(ours) & np.isnan(ref)))
    if name in ("float16",):
        assert not differ.any()  # numpy rounds float64 -> float16 directly
    # any disagreement: ml_dtypes rounded through float32 (double rounding); ours is closer
    assert np.all(np.abs(ours[differ] - x[differ]) < np.abs(ref[differ] - x[differ]))
    # where the value is a float32, the two agree exactly
    is32 = x.astype(np.float32).astype(np.float64) == x
    assert not differ[is32].any()


def test_ieee_saturating_variant():
    f = IEEEFloat("float8_e4m3fn", saturate=True)
    x = np.array([448.0, 464.0, 465.0, 1e9, np.inf, -np.inf, np.nan])
    q = quantize(x, f)
    assert np.array_equal(q[:6], [448.0, 448.0, 448.0, 448.0, 448.0, -448.0]) and np.isnan(q[6])
    assert np.array_equal(quantize(x[:4], IEEEFloat("float8_e4m3fn"))[:2], [448.0, 448.0])  # RNE at the top
    assert np.isnan(quantize(x[:4], IEEEFloat("float8_e4m3fn"))[2])  # overflow -> NaN (no inf), as ml_dtypes
