"""OCP MX (MXFP8/6/4, MXINT8) and NVFP4 in refimpl (docs/mx.md).

Oracles: gfloat 0.5's ``quantize_block`` (the OCP scale rule and saturating RNE
elements) and ml_dtypes' element types (float8_e8m0fnu for the scale, float8_e4m3fn,
float8_e5m2, float6_e3m2fn, float6_e2m3fn, float4_e2m1fn for the elements; INT8 by
``np.round``).  Statistical checks use 5-sigma Monte Carlo bounds with fixed seeds and
each is shown to fail on a deliberately broken variant.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from gfloat import compute_scale_amax, quantize_block
from gfloat import formats as gf

from refimpl.formats import NVFP4, MXFormat, parse_format
from refimpl.quantize import draw_vc_noise, quantize, vc_gap, vc_quantize

MX_NAMES = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8"]
GFLOAT = {
    "mxfp8_e4m3": gf.format_info_mxfp8_e4m3,
    "mxfp8_e5m2": gf.format_info_mxfp8_e5m2,
    "mxfp6_e3m2": gf.format_info_mxfp6_e3m2,
    "mxfp6_e2m3": gf.format_info_mxfp6_e2m3,
    "mxfp4": gf.format_info_mxfp4_e2m1,
    "mxint8": gf.format_info_mxint8,
}
ML_DTYPES = {
    "mxfp8_e4m3": ml_dtypes.float8_e4m3fn,
    "mxfp8_e5m2": ml_dtypes.float8_e5m2,
    "mxfp6_e3m2": ml_dtypes.float6_e3m2fn,
    "mxfp6_e2m3": ml_dtypes.float6_e2m3fn,
    "mxfp4": ml_dtypes.float4_e2m1fn,
}
Z = 5.0


def _blocks(rng, n_rows, length, spread=40.0):
    """Rows of random data at scales 10^U(-spread, spread), with spikes and exact ties."""
    x = rng.standard_normal((n_rows, length)) * 10.0 ** rng.uniform(-spread, spread, size=(n_rows, 1))
    x[::3, 0] *= 1e3
    x[1::5] = np.round(x[1::5] * 8) / 8  # many ties in the element grids
    return x


# ----------------------------------------------------------------------------- nearest
@pytest.mark.parametrize("name", MX_NAMES)
def test_nearest_equals_gfloat_quantize_block(name):
    """Q^d of every block of 32 equals gfloat's quantize_block (OCP scale, RNE, saturation)."""
    rng = np.random.default_rng(1)
    x = _blocks(rng, 300, 64)
    got = quantize(x, MXFormat(name))
    want = np.stack([np.concatenate([quantize_block(GFLOAT[name], r[j:j + 32], compute_scale_amax)
                                     for j in (0, 32)]) for r in x])
    assert np.array_equal(got, want)


@pytest.mark.parametrize("name", MX_NAMES)
def test_nearest_equals_ml_dtypes_elements_and_e8m0_scale(name):
    """Independent oracle: X = clip(floor(log2 amax) - emax, -127, 127), 2^X an E8M0 value, and
    elements = ml_dtypes cast (RNE) of x/2^X clipped to ±max (INT8: round-half-even k/64, k in [-128, 127])."""
    rng = np.random.default_rng(2)
    x = _blocks(rng, 200, 32, spread=30.0)
    fmt = MXFormat(name)
    amax = np.abs(x).max(axis=1, keepdims=True)
    X = np.clip(np.frexp(amax)[1] - 1 - fmt.emax, -127, 127)
    s = np.ldexp(1.0, X)
    assert np.array_equal(s.astype(ml_dtypes.float8_e8m0fnu).astype(np.float64), s)
    z = np.clip(x / s, -fmt.max, fmt.max)
    if name == "mxint8":
        elem = np.clip(np.round(x / s * 64), -128, 127) / 64
    else:
        elem = z.astype(ML_DTYPES[name]).astype(np.float64)
    assert np.array_equal(quantize(x, fmt), elem * s)


def test_nvfp4_nearest_equals_ml_dtypes_oracle():
    """NVFP4: s_B = E4M3((amax/6)/s_T) (ml_dtypes float8_e4m3fn, clipped to 448), elements float4_e2m1fn."""
    rng = np.random.default_rng(3)
    t = float(np.float32(0.0173))
    x = _blocks(rng, 300, 16, spread=3.0)
    amax = np.abs(x).max(axis=1, keepdims=True)
    sb = np.clip((amax / 6.0) / t, 0, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float64)
    s = sb * t
    with np.errstate(divide="ignore", invalid="ignore"):
        elem = np.clip(x / s, -6, 6).astype(ml_dtypes.float4_e2m1fn).astype(np.float64)
    want = np.where(sb == 0, x * 0.0, elem * s)
    assert np.array_equal(quantize(x, NVFP4(tensor_scale=t)), want)


def test_axis_and_partial_blocks():
    """Blocks run along ``axis``; a row of 75 has blocks 32, 32, 11; other axes are independent."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((75, 3, 5))
    fmt = MXFormat("mxfp6_e3m2", axis=0)
    got = quantize(x, fmt)
    for j in range(3):
        for k in range(5):
            col = x[:, j, k]
            want = np.concatenate([quantize_block(GFLOAT["mxfp6_e3m2"], col[a:a + 32], compute_scale_amax)
                                   for a in (0, 32, 64)])
            assert np.array_equal(got[:, j, k], want)
    assert np.array_equal(quantize(x, MXFormat("mxfp6_e3m2", axis=-1)),
                          np.moveaxis(quantize(np.moveaxis(x, -1, 0), fmt), 0, -1))
    with pytest.raises(ValueError, match="axis"):
        quantize(x, MXFormat("mxfp4", axis=3))


def test_special_values():
    """NaN: the whole block is NaN (E8M0 NaN scale); ±inf: X = 127, the inf saturates to ±max·2^127
    (gfloat's behaviour); an all-zero block stays zero with its signs; float32 in, float32 out."""
    x = np.array([[1.0, np.nan, 3.0, 0.5], [1.0, np.inf, -3.0, 0.5], [0.0, -0.0, 0.0, 0.0]])
    q = quantize(x, MXFormat("mxfp4"))
    assert np.isnan(q[0]).all()
    assert q[1, 1] == 6.0 * 2.0**127 and np.array_equal(q[1, [0, 2, 3]], [0.0, -0.0, 0.0])
    assert np.array_equal(q[2], x[2]) and np.signbit(q[2, 1])
    assert np.array_equal(q[1], quantize_block(GFLOAT["mxfp4"], x[1], compute_scale_amax))
    x32 = np.linspace(-3, 3, 64, dtype=np.float32)
    assert quantize(x32, MXFormat("mxfp8_e4m3")).dtype == np.float32
    assert np.array_equal(quantize(x32, MXFormat("mxfp8_e4m3")), quantize(x32.astype(np.float64), MXFormat("mxfp8_e4m3")))
    qn = quantize(np.array([1.0, np.nan]), NVFP4())
    assert np.isnan(qn).all()


# ----------------------------------------------------------------------------- stochastic
def _sr_samples(fmt, row, n, seed, transform=None):
    """n draws of Q^s(row) (rows of one block each), from the uniforms u (optionally transformed)."""
    rng = np.random.default_rng(seed)
    x = np.tile(row, (n, 1))
    u = rng.random(x.shape)
    if transform is not None:
        u = transform(u)
    return quantize(x, fmt, "stochastic", noise=u)


SR_ROW = np.array([1.5, 0.3, -0.77, 0.011, 1.13, -1.49])  # 1.5 fixes the E8M0 scale (on every grid)


@pytest.mark.parametrize("fmt", [MXFormat(n) for n in MX_NAMES] + [NVFP4()], ids=lambda f: f.name)
@pytest.mark.parametrize("row", [SR_ROW, SR_ROW * (1.9 / 1.5)], ids=["max-on-grid", "max-above-spec-range"])
def test_stochastic_unbiased_inside_range(fmt, row):
    """E[Q^s(x)] = x for every element (5-sigma, sample SE), also when the block maximum lies above
    the spec scale's range max_elem·2^X (1.9·2^k: Q^s then uses the next scale, docs/mx.md)."""
    SR_ROW = row  # noqa: N806  (the row under test)
    q = _sr_samples(fmt, SR_ROW, 40_000, 5)
    se = q.std(axis=0) / np.sqrt(q.shape[0])
    assert np.all(np.abs(q.mean(axis=0) - SR_ROW) <= Z * se + 1e-15)
    # every sample is one of the two grid neighbours of x: Q^s with u -> 0 and u -> 1
    down = quantize(SR_ROW, fmt, "stochastic", noise=np.zeros(SR_ROW.shape))
    up = quantize(SR_ROW, fmt, "stochastic", noise=np.full(SR_ROW.shape, 1 - 2.0**-53))
    assert np.array_equal(q, np.where(q == down, down, up))
    assert np.all((q == down) | (q == up))
    assert np.all(down <= SR_ROW) and np.all(SR_ROW <= up)


def test_stochastic_mutant_fails():
    """Biased uniforms (u²) fail the unbiasedness check."""
    fmt = MXFormat("mxfp4")
    q = _sr_samples(fmt, SR_ROW, 40_000, 5, transform=np.square)
    se = q.std(axis=0) / np.sqrt(q.shape[0])
    assert not np.all(np.abs(q.mean(axis=0) - SR_ROW) <= Z * se + 1e-15)


def test_stochastic_seeded_and_on_grid():
    fmt = MXFormat("mxfp6_e2m3")
    x = np.random.default_rng(0).standard_normal((8, 40))
    a = quantize(x, fmt, "stochastic", rng=np.random.default_rng(9))
    b = quantize(x, fmt, "stochastic", rng=np.random.default_rng(9))
    assert np.array_equal(a, b)
    assert _representable(a, fmt)  # Q^s lands on a valid block (its holding scale's grid)


# ----------------------------------------------------------------------------- Q^vc
def _vc_samples(fmt, row, var, n, seed, spec_clip=False):
    x = np.tile(np.asarray(row, dtype=np.float64), (n, 1))
    noise = draw_vc_noise(np.random.default_rng(seed), x.shape)
    if not spec_clip:
        return vc_quantize(x, var, fmt, noise=noise)
    from refimpl.kernels import mx as KM
    from refimpl.slots import VC_FLAGS, VC_SPEC_CLIP_BIT

    code = np.array(fmt.code)
    code[VC_FLAGS] = float(int(code[VC_FLAGS]) | VC_SPEC_CLIP_BIT)
    out = np.empty_like(x)
    for r in range(n):
        KM.vc_into(x[r], var, noise[0][r], noise[1][r], noise[2][r], out[r], code)
    return out


def _moments_ok(t, mean, var_lo, var_hi):
    """(mean_ok, var_ok): |mean - μ| <= Z·sd/√n; sample variance in [var_lo, var_hi] ± Z·SE (4th moment)."""
    n = t.shape[0]
    c = t - t.mean(axis=0)
    s2 = np.mean(c**2, axis=0)
    se = np.sqrt(np.maximum(np.mean(c**4, axis=0) - s2**2, 0.0) / n)
    mean_ok = np.abs(t.mean(axis=0) - mean) <= Z * np.sqrt(np.maximum(s2, var_lo) / n) + 1e-14
    var_ok = (s2 >= var_lo - Z * se - 1e-14) & (s2 <= var_hi + Z * se + 1e-14)
    return bool(np.all(mean_ok)), bool(np.all(var_ok))


def test_vc_int8_exact_variance():
    """MXINT8 has one grid per block (Δ = 2^-6 here): E θ = μ and Var θ = V exactly (branch 1, no crossing).

    Mutation: the naive Q^s(μ + sqrt(V)·ξ) has variance V + E[p(1-p)]Δ² (about +20 % at V = 2e-4)
    and fails the same check.
    """
    row, var = np.array([1.0, 0.3, -0.7]), 2e-4
    t = _vc_samples(MXFormat("mxint8"), row, var, 40_000, 11)
    assert _moments_ok(t, row, var, var) == (True, True)
    naive = quantize(np.tile(row, (40_000, 1)) + np.sqrt(var) * np.random.default_rng(1).standard_normal((40_000, 3)),
                     MXFormat("mxint8"), "stochastic", rng=np.random.default_rng(2))
    assert _moments_ok(naive, row, var, var)[1] is False


@pytest.mark.parametrize("name", ["mxfp8_e4m3", "mxfp4", "nvfp4"])
def test_vc_crosses_binade_and_block_without_bias(name):
    """μ just below a binade (and block) top: the result may land on a coarser grid.

    Mean exactly μ; variance between V and V + Δ'²/4 (Δ' the coarser step; the excess is
    E[p(1-p)Δ'²] on crossing events).  The withdrawn spec clip (test hook) fails the mean.
    """
    fmt = parse_format(name)
    if name == "mxfp8_e4m3":
        row, var = np.array([1.9]), 0.01  # grid 0.125 below 2, 0.25 above
        dprime = 0.25
    else:
        row, var = np.array([5.5, 1.0]), 2.0  # E2M1: 4, 6 | block escape to the scale 2x: step 4
        dprime = 4.0 if name == "mxfp4" else 4.6
    t = _vc_samples(fmt, row, var, 40_000, 12)
    assert _moments_ok(t, row, var, var + dprime**2 / 4) == (True, True)
    assert np.mean(t[:, 0] >= (2.0 if name == "mxfp8_e4m3" else 6.5)) > 0.05  # results really leave μ's binade/block
    clipped = _vc_samples(fmt, row, var, 40_000, 12, spec_clip=True)
    assert _moments_ok(clipped, row, var, var + dprime**2 / 4)[0] is False


@pytest.mark.parametrize("fmt", [MXFormat(n) for n in MX_NAMES] + [NVFP4()], ids=lambda f: f.name)
def test_vc_small_variance_is_sr_variance(fmt):
    """Branch 2 with V below σ²_SR: mean μ, variance σ²_SR = p(1-p)Δ² (cannot be matched, P10)."""
    row = np.array([1.5, 0.3, -0.77, 1.13])
    gap = vc_gap(row, fmt)
    var = 1e-9
    t = _vc_samples(fmt, row, var, 40_000, 13)
    z = row / gap
    p = z - np.floor(z)
    vs = p * (1 - p) * gap**2
    assert _moments_ok(t, row, vs, vs) == (True, True)


def test_vc_zero_block_and_specials():
    fmt = MXFormat("mxfp8_e4m3")
    z = np.zeros((2, 8))
    assert np.array_equal(vc_quantize(z, 0.0, fmt, rng=np.random.default_rng(0)), z)
    out = vc_quantize(z, 0.01, fmt, rng=np.random.default_rng(0))
    assert np.count_nonzero(out) > 8 and _representable(out, fmt)
    nanrow = vc_quantize(np.array([1.0, np.nan, 2.0]), 0.01, fmt, rng=np.random.default_rng(0))
    assert np.isnan(nanrow).all()
    assert np.array_equal(vc_gap(np.array([0.0, 0.0]), fmt), [0.0, 0.0])


def _on_e2m1(z) -> bool:
    return bool(np.all(np.abs(z) <= 6.0) and np.array_equal(z.astype(ml_dtypes.float4_e2m1fn).astype(np.float64), z))


def _representable(out, fmt) -> bool:
    """Whether every block of ``out`` (along the last axis) is a valid encoding: elements/s on the element
    grid (ml_dtypes cast / INT8 k/64) for the block scale s = holding_scale(max|block|), an E8M0 power of two
    (NVFP4: an E4M3 value times the tensor scale)."""
    from refimpl.kernels import mx as KM

    rows = out.reshape(-1, out.shape[-1])
    for row in rows:
        for j in range(0, row.size, fmt.block_size):
            blk = row[j:j + fmt.block_size]
            m = np.abs(blk).max()
            if m == 0:
                continue
            if isinstance(fmt, NVFP4):  # some E4M3 scale must make every element an E2M1 value
                e4m3 = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float64)
                e4m3 = e4m3[np.isfinite(e4m3) & (e4m3 > 0)]
                if not any(_on_e2m1(blk / (sb * fmt.tensor_scale)) for sb in e4m3):
                    return False
                continue
            s = KM.holding_scale(m, fmt.code)
            z = blk / s
            if fmt.name == "mxint8":
                ok = np.all(z * 64 == np.round(z * 64)) and np.all(z * 64 >= -128) and np.all(z * 64 <= 127)
            else:
                dtype = ML_DTYPES[fmt.name]
                ok = np.all(np.abs(z) <= fmt.max) and np.array_equal(z.astype(dtype).astype(np.float64), z)
            if not ok:
                return False
    return True


def test_vc_results_representable():
    """Every Q^vc result is a valid block of the format.  (Not always a fixed point of Q^d: the
    spec's scale choice saturates a block whose maximum lies above max_elem·2^X, which Q^vc's
    one-step-larger scale represents; docs/mx.md.)"""
    rng = np.random.default_rng(7)
    for fmt in [MXFormat(n) for n in MX_NAMES] + [NVFP4(tensor_scale=0.5)]:
        x = rng.standard_normal((50, 40)) * 3
        for var in (1e-6, 1e-2, 1.0):
            out = vc_quantize(x, var, fmt, rng=rng)
            assert _representable(out, fmt), (fmt, var)
    bad = np.full((1, 32), 0.3)
    bad[0, 0] = 1.0
    assert not _representable(bad, MXFormat("mxfp4"))  # the checker rejects off-grid blocks
    bad[0, 1] = 0.7
    assert not _representable(bad[:, :16], NVFP4())


# ----------------------------------------------------------------------------- formats
def test_parse_format_and_validation():
    assert parse_format("mxfp8_e4m3") == MXFormat("mxfp8_e4m3")
    assert parse_format("mxfp4:0") == MXFormat("mxfp4", axis=0)
    assert parse_format("mxint8") == MXFormat("mxint8")
    assert parse_format("nvfp4") == NVFP4()
    assert parse_format("nvfp4:-1:0.5") == NVFP4(axis=-1, tensor_scale=0.5)
    with pytest.raises(ValueError, match="name"):
        MXFormat("mxfp5")
    with pytest.raises(ValueError, match="tensor_scale"):
        NVFP4(tensor_scale=0.1)  # not a float32 value
    with pytest.raises(ValueError, match="tensor_scale"):
        NVFP4(tensor_scale=-1.0)
    with pytest.raises(ValueError):
        parse_format("mxfp4:x")
    assert NVFP4.tensor_scale_for(6 * 448 * 2.0) == 2.0
