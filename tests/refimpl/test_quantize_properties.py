"""Property tests (hypothesis) and API behaviour of refimpl.quantize (ALGORITHMS.md §2).

Invariants that hold for every input: outputs on the grid and in range, idempotence
on grid points, monotone nearest rounding with |Q(x) - x| <= Δ/2 inside the range,
stochastic rounding returns one of the two neighbours, Cat probabilities in [0, 1].
The grid checks are written independently of the kernels (from the format's fields).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refimpl
from refimpl.formats import with_options
from refimpl import (
    BlockFloatingPoint,
    FixedPoint,
    FloatingPoint,
    IEEEFloat,
    categorical_offset,
    categorical_probabilities,
    draw_quantize_noise,
    draw_vc_noise,
    quantize,
    vc_gap,
    vc_quantize,
)

SETTINGS = settings(max_examples=int(os.environ.get("QLANGEVIN_HYPOTHESIS_EXAMPLES", 60)), deadline=None, derandomize="QLANGEVIN_HYPOTHESIS_EXAMPLES" not in os.environ)

FIXED = [FixedPoint(8, 3), FixedPoint(8, 8), FixedPoint(6, 2, symmetric=True), FixedPoint(4, -1)]
FLOATS = [FloatingPoint(4, 3), FloatingPoint(5, 2), FloatingPoint(3, 1), FloatingPoint(8, 7)]
IEEES = [IEEEFloat(n) for n in ("float16", "bfloat16", "float8_e4m3fn", "float8_e5m2")]
IEEES_SAT = [IEEEFloat(n, saturate=True) for n in ("float16", "float8_e4m3fn")]
BFPS = [BlockFloatingPoint(8), BlockFloatingPoint(4), BlockFloatingPoint(12)]
ELEMENTWISE = FIXED + FLOATS + IEEES + IEEES_SAT
ALL = ELEMENTWISE + BFPS

finite64 = st.floats(allow_nan=False, allow_infinity=False, width=64)


def fin_arrays(dtype=np.float64, min_size=1, max_size=40, scale=None):
    return hnp.arrays(
        dtype,
        st.integers(min_size, max_size),
        elements=st.floats(allow_nan=False, allow_infinity=False, width=32 if dtype == np.float32 else 64),
    )


# -------------------------------------------------------------------------------------------
# independent grid descriptions
# -------------------------------------------------------------------------------------------
def float_ulp(x, fmt):
    """ULP of the binade of |x| (subnormal spacing below e_min), from the format's fields."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    e = np.where(ax > 0, np.frexp(np.where(ax > 0, ax, 1.0))[1] - 1, fmt.emin)
    return np.ldexp(1.0, np.maximum(e, fmt.emin) - fmt.man)


def bfp_delta(x, fmt):
    fin = np.abs(x[np.isfinite(x)])
    m = fin.max() if fin.size else 0.0
    if m == 0:
        return 0.0, 0  # zero block (a non-zero block with Δ_B = 0 after underflow has eb != 0)
    eb = int(np.frexp(m)[1]) - 1
    return float(np.ldexp(1.0, eb + 2 - fmt.wl)), eb


def assert_on_grid(q, fmt, x):
    q = np.asarray(q, dtype=np.float64)
    if isinstance(fmt, FixedPoint):
        k = q / fmt.delta
        assert np.all(k == np.round(k))
        assert np.all((q >= fmt.lo) & (q <= fmt.hi))
    elif isinstance(fmt, BlockFloatingPoint):
        d, eb = bfp_delta(np.asarray(x, dtype=np.float64), fmt)
        if d == 0 and eb == 0:  # zero block
            assert np.all(q == 0)
            return
        k = np.ldexp(q, -(eb + 2 - fmt.wl))  # (Δ_B itself may underflow float64 for tiny blocks)
        assert np.all(k == np.round(k))
        assert np.all(np.abs(k) <= 2 ** (fmt.wl - 1) - 1)
    elif isinstance(fmt, FloatingPoint):
        assert np.all(np.abs(q) <= fmt.max)
        k = np.abs(q) / float_ulp(q, fmt)
        assert np.all(k == np.round(k)) and np.all(k < 2.0 ** (fmt.man + 1))
    else:  # IEEE: round trip through ml_dtypes is exact for representable values
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dt = np.float16 if fmt.name == "float16" else getattr(ml_dtypes, fmt.name)
        fin = np.isfinite(q)
        assert np.array_equal(q[fin].astype(dt).astype(np.float64), q[fin])
        if fmt.saturate:
            assert np.all(fin)


def in_range_mask(x, fmt):
    """Inputs for which |Q^d(x) - x| <= Δ/2 must hold (inside the representable range)."""
    x = np.asarray(x, dtype=np.float64)
    if isinstance(fmt, FixedPoint):
        return (x >= fmt.lo) & (x <= fmt.hi), np.full(x.shape, fmt.delta)
    if isinstance(fmt, BlockFloatingPoint):
        d, eb = bfp_delta(x, fmt)
        if eb + 2 - fmt.wl < -1022:  # Δ_B below float64's normal range: results sit on float64's subnormal grid
            return np.zeros(x.shape, dtype=bool), np.full(x.shape, d)
        return np.abs(x) <= (2.0 ** (fmt.wl - 1) - 1) * d, np.full(x.shape, d)
    return np.abs(x) <= fmt.max, float_ulp(x, fmt)


# -------------------------------------------------------------------------------------------
# hypothesis properties
# -------------------------------------------------------------------------------------------
@SETTINGS
@given(fmt=st.sampled_from(ALL), x=fin_arrays())
def test_nearest_on_grid_in_range_and_within_half_gap(fmt, x):
    q = quantize(x, fmt)
    if isinstance(fmt, IEEEFloat) and not fmt.saturate:
        keep = np.abs(x) <= fmt.max  # beyond: IEEE overflow to inf/NaN (tested with ml_dtypes)
        x, q = x[keep], q[keep]
        if isinstance(fmt, IEEEFloat):
            assert_on_grid(q, fmt, x)
    else:
        assert_on_grid(q, fmt, x)
    mask, gap = in_range_mask(x, fmt)
    assert np.all(np.abs(q - x)[mask] <= gap[mask] / 2)


@SETTINGS
@given(fmt=st.sampled_from(ALL), x=fin_arrays(), dtype=st.sampled_from([np.float32, np.float64]))
def test_nearest_idempotent(fmt, x, dtype):
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    x = x[np.isfinite(x)]
    q = quantize(x, fmt)
    assert np.array_equal(quantize(q, fmt), q, equal_nan=True)
    # stochastic rounding leaves grid points alone, whatever the noise
    if isinstance(fmt, BlockFloatingPoint) or not np.all(np.isfinite(q)):
        return
    u = np.random.default_rng(0).random(q.shape)
    assert np.array_equal(quantize(q, fmt, "stochastic", noise=u), q)


@SETTINGS
@given(fmt=st.sampled_from(ALL), x=fin_arrays(min_size=2))
def test_nearest_monotone(fmt, x):
    xs = np.sort(x)
    q = quantize(xs, fmt)  # one BFP block: monotone within a block too
    if isinstance(fmt, IEEEFloat) and not fmt.saturate and fmt.name == "float8_e4m3fn":
        q = q[np.abs(xs) <= fmt.max]  # NaN on overflow
    assert np.all(q[:-1] <= q[1:])  # (also holds with ±inf results of IEEE overflow)


@SETTINGS
@given(fmt=st.sampled_from(ALL), x=fin_arrays(), seed=st.integers(0, 2**32 - 1))
def test_stochastic_returns_a_neighbour(fmt, x, seed):
    u = draw_quantize_noise(np.random.default_rng(seed), x.shape)
    q = quantize(x, fmt, "stochastic", noise=u)
    mask, gap = in_range_mask(x, fmt)
    xm, gm, qm = x[mask], gap[mask], q[mask]
    if gm.size and np.all(gm > 0):
        # the two grid neighbours of x, computed independently from the gap at x
        lower, upper = gm * np.floor(xm / gm), gm * np.ceil(xm / gm)
        assert np.all((qm == lower) | (qm == upper))
    if not (isinstance(fmt, IEEEFloat) and not fmt.saturate):
        assert_on_grid(q, fmt, x)


@SETTINGS
@given(
    delta_exp=st.integers(-20, 20),
    mu_frac=st.floats(0, 0.5),
    t=st.floats(0, 1),
)
def test_categorical_probabilities_in_unit_interval(delta_exp, mu_frac, t):
    delta = 2.0**delta_exp
    h = delta / 2
    mu = mu_frac * delta
    # admissible set: 0 <= mu <= Δ/2, mu(Δ - mu) <= V <= Δ²/4; V = Δ²/4 - t (Δ/2 - mu)²
    var = h * h - t * (h - mu) ** 2
    p = np.array(categorical_probabilities(mu, var, delta))
    tol = 4 * np.finfo(float).eps  # general admissible point: a few ulps
    assert np.all(p >= -tol) and np.all(p <= 1 + tol)
    # the two uses inside Q^vc: exactly in [0, 1]
    for mu_, v_ in ((mu, h * h), (0.0, var)):
        p = np.array(categorical_probabilities(mu_, v_, delta))
        assert np.all(p >= 0) and np.all(p <= 1), (mu_, v_, p)
        assert abs(delta * (p[0] - p[1]) - mu_) <= 1e-15 * delta  # mean mu


@SETTINGS
@given(fmt=st.sampled_from(ALL), mu=fin_arrays(max_size=20), var_scale=st.floats(0, 4), seed=st.integers(0, 2**32 - 1))
def test_vc_on_grid_and_finite(fmt, mu, var_scale, seed):
    mu = np.clip(mu, -1e30, 1e30)
    gap = vc_gap(mu, fmt)
    var = float(var_scale * np.max(gap) ** 2)
    out = vc_quantize(mu, var, fmt, np.random.default_rng(seed))
    assert np.all(np.isfinite(out))  # no NaN path
    assert np.array_equal(quantize(out, fmt), out)  # representable: Q^d is the identity on it
    if isinstance(fmt, FixedPoint):
        assert_on_grid(out, fmt, mu)
    elif isinstance(fmt, BlockFloatingPoint):
        assert_on_grid(out, fmt, out)  # on the grid of its own block
        d, eb = bfp_delta(mu, fmt)
        if d > 0 and np.max(np.abs(out)) <= 2.0 ** (eb + 1) - d:  # no escape: on μ's block grid
            assert_on_grid(out, fmt, mu)
        elif d > 0:  # escape re-rounding: a coarser block, e' > e_B
            assert bfp_delta(out, fmt)[1] > eb
    else:  # representable; on μ's ULP grid unless it escaped μ's binade (then a coarser binade)
        if isinstance(fmt, FloatingPoint):
            assert_on_grid(out, fmt, mu)
        else:
            assert_on_grid(out, IEEEFloat(fmt.name, saturate=True), mu)
        inside = np.abs(out) < 2.0 * gap * 2.0 ** fmt.man
        assert np.all(out[inside] / gap[inside] == np.round(out[inside] / gap[inside]))
        assert np.all(float_ulp(out[~inside], fmt) > gap[~inside]) if isinstance(fmt, FloatingPoint) else True


# -------------------------------------------------------------------------------------------
# specific values
# -------------------------------------------------------------------------------------------
def test_fixed_point_examples_ties_away_from_zero():
    f = FixedPoint(8, 3)  # Δ = 1/8
    x = np.array([0.0625, -0.0625, 0.1875, -0.1875, 0.3, 100.0, -100.0, 15.9, -16.0, -16.05])
    expect = np.array([0.125, -0.125, 0.25, -0.25, 0.25, 15.875, -16.0, 15.875, -16.0, -16.0])
    assert np.array_equal(quantize(x, f), expect)
    # ties="even" (qtorch CPU): 0.5Δ -> 0, 1.5Δ -> 2Δ
    assert np.array_equal(quantize(x[:4], f, ties="even"), [0.0, -0.0, 0.25, -0.25])
    # round first, then clip (Q1): negative inputs saturate at L, not at -U
    assert quantize(-100.0, FixedPoint(8, 8)) == -0.5


def test_bfp_examples():
    f = BlockFloatingPoint(4)  # block max 1.5 -> e_B = 0, Δ_B = 2^(0+2-4) = 1/4; saturation 2 - 1/4
    x = np.array([1.5, -0.125, -0.375, 0.125, 0.3])
    # ties toward +inf: -0.5Δ -> 0, -1.5Δ -> -Δ, 0.5Δ -> Δ
    assert np.array_equal(quantize(x, f), [1.5, 0.0, -0.25, 0.25, 0.25])
    y = np.array([1.99, -1.95, 0.1])
    assert np.array_equal(quantize(y, f), [1.75, -1.75, 0.0])  # symmetric saturation ±(2^(e+1) - Δ_B)
    assert np.array_equal(quantize(np.zeros(5), f), np.zeros(5))  # zero block stays zero
    assert np.array_equal(quantize(x, f, ties="away"), [1.5, -0.25, -0.5, 0.25, 0.25])


def test_bfp_dim_blocks_along_axis():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5)) * np.array([1.0, 100.0, 0.01])[:, None, None]
    for dim in (0, 1, 2):
        q = quantize(x, BlockFloatingPoint(6, dim))
        for i in range(x.shape[dim]):
            sl = [slice(None)] * 3
            sl[dim] = i
            assert np.array_equal(q[tuple(sl)], quantize(x[tuple(sl)], BlockFloatingPoint(6)))
    with pytest.raises(ValueError, match="dim"):
        quantize(np.ones(3), BlockFloatingPoint(6, 1))
    # noise follows the element: stochastic with dim equals per-slice stochastic with the same noise
    u = np.random.default_rng(4).random(x.shape)
    q = quantize(x, BlockFloatingPoint(6, 1), "stochastic", noise=u)
    for i in range(4):
        assert np.array_equal(q[:, i], quantize(x[:, i], BlockFloatingPoint(6), "stochastic", noise=u[:, i]))


def test_qtorch_float_examples():
    f = FloatingPoint(4, 3)  # §2.3: E4M3 ties away from zero, max 480, min 2^-9
    x = np.array([1.0625, -1.0625, 1000.0, -1e30, 2.0**-10, 2.0**-10 * 3, 2.0**-11, 0.0])
    assert np.array_equal(quantize(x, f), [1.125, -1.125, 480.0, -480.0, 2.0**-9, 2.0**-8, 0.0, 0.0])


def test_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 1.0])
    for fmt in FIXED + FLOATS + IEEES_SAT:
        q = quantize(x, fmt)
        lo, hi = (fmt.lo, fmt.hi) if isinstance(fmt, FixedPoint) else (-fmt.max, fmt.max)
        assert np.isnan(q[0]) and q[1] == hi and q[2] == lo, fmt
        qs = quantize(x, fmt, "stochastic", np.random.default_rng(0))
        assert np.isnan(qs[0]) and qs[1] == hi and qs[2] == lo, fmt
    # IEEE without saturation: as ml_dtypes (inf stays inf; float8_e4m3fn has no inf -> NaN)
    assert np.array_equal(quantize(x, IEEEFloat("float16"))[1:3], [np.inf, -np.inf])
    assert np.all(np.isnan(quantize(x, IEEEFloat("float8_e4m3fn"))[:3]))
    # BFP: exponent from the finite entries; ±inf saturates to the block's largest magnitude
    q = quantize(np.array([np.nan, np.inf, -np.inf, 1.5]), BlockFloatingPoint(4))
    assert np.isnan(q[0]) and q[1] == 1.75 and q[2] == -1.75 and q[3] == 1.5
    # VC: NaN passes, inf saturates
    v = vc_quantize(x, 0.01, FixedPoint(8, 3), np.random.default_rng(0))
    assert np.isnan(v[0]) and v[1] == 15.875 and v[2] == -16.0
    # zeros keep their sign for floats (IEEE), are +0 for fixed point
    assert np.signbit(quantize(np.array([-0.0]), IEEEFloat("float16")))[0]
    assert not np.signbit(quantize(np.array([-0.01]), FixedPoint(8, 3)))[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fmt", [FixedPoint(8, 3), BlockFloatingPoint(6, 1), FloatingPoint(5, 2), None])
def test_dtype_shape_strides_0d_empty(dtype, fmt):
    rng = np.random.default_rng(1)
    base = (rng.standard_normal((6, 8)) * 4).astype(dtype)
    view = base[::2, ::3].T  # non-contiguous
    assert not view.flags.c_contiguous
    for rounding, kw in (("nearest", {}), ("stochastic", {"rng": np.random.default_rng(2)})):
        q = quantize(view, fmt, rounding, **kw)
        assert q.dtype == dtype and q.shape == view.shape
        kw2 = {"rng": np.random.default_rng(2)} if kw else {}
        assert np.array_equal(q, quantize(np.ascontiguousarray(view), fmt, rounding, **kw2))
        if not isinstance(fmt, BlockFloatingPoint):
            z = quantize(np.array(1.3, dtype=dtype), fmt, rounding, **({"rng": np.random.default_rng(0)} if kw else {}))
            assert z.shape == () and z.dtype == dtype
        e = quantize(np.empty((0, 3), dtype=dtype), fmt, rounding, **kw)
        assert e.shape == (0, 3) and e.dtype == dtype
    v = vc_quantize(view, 0.5, fmt, np.random.default_rng(3))
    assert v.dtype == dtype and v.shape == view.shape
    xi, ur, uc = draw_vc_noise(np.random.default_rng(3), view.shape)
    assert np.array_equal(v, vc_quantize(np.ascontiguousarray(view), 0.5, fmt, noise=(xi, ur, uc)))


def test_float32_and_float64_agree_on_float32_inputs():
    x32 = (np.random.default_rng(5).standard_normal(500) * 10).astype(np.float32)
    for fmt in ELEMENTWISE + BFPS:
        a = quantize(x32, fmt)
        b = quantize(x32.astype(np.float64), fmt)
        assert np.array_equal(a.astype(np.float64), b, equal_nan=True), fmt


def test_out_argument():
    x = np.linspace(-3, 3, 101)
    out = np.empty_like(x)
    r = quantize(x, FixedPoint(8, 4), out=out)
    assert r is out and np.array_equal(out, quantize(x, FixedPoint(8, 4)))
    y = x.copy()
    quantize(y, FixedPoint(8, 4), out=y)  # in place
    assert np.array_equal(y, out)
    with pytest.raises(ValueError, match="out"):
        quantize(x, FixedPoint(8, 4), out=np.empty(100))
    with pytest.raises(ValueError, match="out"):
        quantize(x, FixedPoint(8, 4), out=np.empty_like(x, dtype=np.float32))


# -------------------------------------------------------------------------------------------
# randomness: Generator form == noise-in form; same seed -> same bits
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", [FixedPoint(8, 3), BlockFloatingPoint(6), BlockFloatingPoint(6, 0), FloatingPoint(4, 3), IEEEFloat("bfloat16")])
@pytest.mark.parametrize("n", [40, refimpl._qkernels.PAR_MIN + 3])  # serial and parallel paths
def test_generator_equals_noise_in(fmt, n):
    x = np.random.default_rng(0).standard_normal((n, 1)) * 3
    a = quantize(x, fmt, "stochastic", np.random.default_rng(42))
    b = quantize(x, fmt, "stochastic", noise=draw_quantize_noise(np.random.default_rng(42), x.shape))
    c = quantize(x, fmt, "stochastic", np.random.default_rng(42))
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert not np.array_equal(a, quantize(x, fmt, "stochastic", np.random.default_rng(43)))
    # the generator advances by exactly one key draw
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    quantize(x, fmt, "stochastic", g1)
    g2.integers(0, 2**64, dtype=np.uint64)
    assert g1.random() == g2.random()


def test_keyed_uniforms_are_uniform():
    u = draw_quantize_noise(np.random.default_rng(0), 200_000)
    assert u.min() >= 0 and u.max() < 1 and np.all(u * 2.0**53 == np.floor(u * 2.0**53))
    # mean 1/2 with standard error sqrt(1/12/n); 5 sigma
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    # counts in 10 bins: chi-square with 9 dof; P(chi2_9 > 33.7) = 1e-4
    counts = np.bincount((u * 10).astype(int), minlength=10)
    assert ((counts - u.size / 10) ** 2 / (u.size / 10)).sum() < 33.7
    # lag-1 correlation ~ N(0, 1/n); 5 sigma
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / np.sqrt(u.size)


@pytest.mark.parametrize("fmt", [FixedPoint(8, 3), BlockFloatingPoint(6, 0), FloatingPoint(4, 3)])
def test_vc_generator_equals_noise_in(fmt):
    mu = np.random.default_rng(0).standard_normal((5, 6))
    a = vc_quantize(mu, 0.02, fmt, np.random.default_rng(9))
    b = vc_quantize(mu, 0.02, fmt, noise=draw_vc_noise(np.random.default_rng(9), mu.shape))
    assert np.array_equal(a, b)
    c = categorical_offset(np.full(4, 0.1), 0.0625, 0.5, np.random.default_rng(1))
    d = categorical_offset(np.full(4, 0.1), 0.0625, 0.5, noise=np.random.default_rng(1).random(4))
    assert np.array_equal(c, d)


# -------------------------------------------------------------------------------------------
# bad input
# -------------------------------------------------------------------------------------------
def test_bad_input_raises_naming_the_argument():
    x = np.ones(4)
    f = FixedPoint(8, 3)
    cases = [
        (lambda: quantize(x, f, "round"), "rounding"),
        (lambda: quantize(x, f, ties="banker"), "ties"),
        (lambda: quantize(x, "fixed:8:3"), "fmt"),
        (lambda: quantize(np.ones(4, dtype=complex), f), "x"),
        (lambda: quantize(x, f, "stochastic"), "rng"),
        (lambda: quantize(x, f, "stochastic", rng=1), "rng"),
        (lambda: quantize(x, f, "stochastic", np.random.default_rng(0), noise=np.zeros(4)), "rng"),
        (lambda: quantize(x, f, "stochastic", noise=np.zeros(5)), "noise"),
        (lambda: quantize(x, f, "stochastic", noise=np.full(4, 1.0)), "noise"),
        (lambda: quantize(x, f, "stochastic", noise=np.full(4, -0.1)), "noise"),
        (lambda: quantize(x, f, noise=np.zeros(4)), "noise"),
        (lambda: vc_quantize(x, -1.0, f, np.random.default_rng(0)), "var"),
        (lambda: vc_quantize(x, np.nan, f, np.random.default_rng(0)), "var"),
        (lambda: vc_quantize(x, np.ones(4), f, np.random.default_rng(0)), "var"),
        (lambda: vc_quantize(x, 0.1, f, noise=(np.zeros(4), np.zeros(4))), "noise"),
        (lambda: vc_quantize(x, 0.1, f, noise=(np.zeros(3), np.zeros(4), np.zeros(4))), "xi"),
        (lambda: vc_quantize(x, 0.1, f, noise=(np.zeros(4), np.ones(4), np.zeros(4))), "u_round"),
        (lambda: categorical_offset(0.3, 0.01, 0.5, np.random.default_rng(0)), "mu"),
        (lambda: categorical_offset(0.1, 0.1, 0.5, np.random.default_rng(0)), "var"),
        (lambda: categorical_offset(0.1, 0.06, -0.5, np.random.default_rng(0)), "delta"),
        (lambda: draw_quantize_noise(np.random.default_rng(0), (-1,)), "shape"),
    ]
    for fn, name in cases:
        with pytest.raises(ValueError, match=name):
            fn()


@pytest.mark.parametrize(
    "fmt", [FixedPoint(8, 3), FixedPoint(8, 8), FixedPoint(23, 10), FixedPoint(4, -2), FixedPoint(16, 20), FixedPoint(6, 2, symmetric=True)]
)
def test_float32_fast_path_bit_identical(fmt):
    """The float32 parallel fixed-point kernel equals the float64 serial kernel bit for bit."""
    K = refimpl._qkernels
    assert K.f32_fast_path_ok(fmt.code)
    rng = np.random.default_rng(8)
    d = fmt.delta
    k = np.arange(-(2 ** min(fmt.wl, 12)), 2 ** min(fmt.wl, 12))
    x = np.concatenate([
        (rng.standard_normal(40_000) * np.exp(rng.uniform(-30, 30, 40_000))),
        (k + 0.5) * d, k * d, (k + 0.5) * d * (1 + 2.0**-20), (k + 0.5) * d * (1 - 2.0**-20),
        [0.0, -0.0, np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45, -1e-45, fmt.hi, fmt.lo],
    ])
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    a = np.empty_like(x)
    b = np.empty_like(x)
    K.fixed_nearest_f32_par(x, a, fmt.code[1], fmt.code[2], fmt.code[3])
    K.nearest_into(x, b, fmt.code)
    assert a.tobytes() == b.tobytes()
    assert np.array_equal(quantize(x, fmt), b, equal_nan=True)  # the public API takes the fast path here
    assert not K.f32_fast_path_ok(FixedPoint(24, 3).code) and not K.f32_fast_path_ok(with_options(fmt.code, ties="even"))
