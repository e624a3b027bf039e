"""Statistical tests of Q^s, Cat and Q^vc (ALGORITHMS.md (Q2'), (Q4), (Q5)/(Q6), §5.8 P10).

Every tolerance is a 5-sigma Monte Carlo bound (derivations next to each check), with
fixed seeds (checked offline for seeds 0..19), and every check is shown to FAIL on a
deliberately broken implementation (the ``*_mutants`` tests):

* SR with biased uniforms, nearest rounding in place of SR, an unbiased SR with extra noise;
* Q^vc falling back to Q^s (as the published BFP/float code does, §7.2 item 1), Q^vc with
  the wrong branch-1 variance (no -V₀), naive rounding Q^d(μ + sqrt(V) ξ) (P4 vs P3), and
  Q^vc without the Cat step in branch 1;
* Q^d with ties to even (checked directly at ties, since it changes Q^vc only on ties).
"""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import (
    BlockFloatingPoint,
    FixedPoint,
    FloatingPoint,
    IEEEFloat,
    categorical_offset,
    draw_vc_noise,
    quantize,
    vc_gap,
    vc_quantize,
)

N_SR = 40_000
N_VC = 40_000
Z = 5.0  # sigma multiplier of every bound


# -------------------------------------------------------------------------------------------
# the checks (shared by the real implementation and the mutants)
# -------------------------------------------------------------------------------------------
def sr_check(q, x, delta):
    """(mean_ok, var_ok) for samples q of Q^s(x) on a grid of spacing delta (x inside the range).

    q takes the two values Δ·floor(x/Δ) and that + Δ, the upper with probability p = frac(x/Δ):
    mean x, variance s Δ² with s = p(1 - p).  Mean: SE = Δ sqrt(s/n).  Variance: the sample
    variance is Δ² p̂(1 - p̂), and |p̂(1-p̂) - s| <= |1-2p| |p̂-p| + (p̂-p)²; with
    |p̂ - p| <= Z sqrt(s/n) this gives the bound below (exact, no normal approximation of
    the fourth moment needed, and still valid at p = 1/2 where the linear term vanishes).
    """
    n = q.size
    p = x / delta - np.floor(x / delta)
    s = p * (1 - p)
    dev_p = Z * np.sqrt(s / n)
    mean_ok = abs(q.mean() - x) <= delta * dev_p + 1e-12 * delta
    var_ok = abs(q.var() - s * delta**2) <= delta**2 * (abs(1 - 2 * p) * dev_p + dev_p**2) + 1e-12 * delta**2
    return bool(mean_ok), bool(var_ok)


def moment_check(t, mean, var):
    """(mean_ok, var_ok): sample mean within Z sqrt(var/n) of mean; sample variance within
    Z·SE of var with SE = sqrt((m4 - s²)/n) from the sample's own fourth central moment
    (delta method for the variance of the sample variance)."""
    n = t.size
    mean_ok = abs(t.mean() - mean) <= Z * np.sqrt(var / n) + 1e-12 * (abs(mean) + 1)
    c = t - t.mean()
    s2 = np.mean(c**2)
    m4 = np.mean(c**4)
    se = np.sqrt(max(m4 - s2**2, 0.0) / n)
    var_ok = abs(s2 - var) <= Z * se + 1e-12 * (var + 1e-300)
    return bool(mean_ok), bool(var_ok)


def vc_expected_var(mu, var, delta):
    """P10: Var = V if V > Δ²/4 or V >= σ²_SR(μ; Δ), else σ²_SR(μ; Δ)."""
    p = mu / delta - np.floor(mu / delta)
    vs = p * (1 - p) * delta**2
    return var if (var > delta**2 / 4 or var >= vs) else vs


# -------------------------------------------------------------------------------------------
# an independent NumPy Q^vc for fixed point, written from (Q5)/(Q6), with mutations
# -------------------------------------------------------------------------------------------
def vc_reference(mu, var, fmt, xi, ur, uc, mutation=None):
    d, lo, hi = fmt.delta, fmt.lo, fmt.hi
    v0 = d * d / 4
    mu = np.asarray(mu, dtype=np.float64)

    def qd(x):  # unclipped nearest, ties away from zero
        return np.sign(x) * d * np.floor(np.abs(x) / d + 0.5)

    def cat(m, v, u):
        h = d / 2
        pp = ((v - h * h) + (h + m) ** 2) / (2 * d * d)
        pm = ((v - h * h) + (h - m) ** 2) / (2 * d * d)
        return np.where(u < pp, d, np.where(u < pp + pm, -d, 0.0))

    if mutation == "naive":
        return np.clip(qd(mu + np.sqrt(var) * xi), lo, hi)
    if var > v0:
        x = mu + np.sqrt(var if mutation == "branch1_var" else var - v0) * xi
        q = qd(x)
        r = x - q
        theta = q if mutation == "no_cat" else q + np.sign(r) * cat(np.abs(r), v0, uc)
    else:
        q = d * np.floor(mu / d + ur)
        theta = q
        if mutation != "qs_fallback":
            a = np.abs(mu / d)
            p = a - np.floor(a)
            vs = p * (1 - p) * d * d
            theta = np.where(var > vs, q + cat(0.0, np.maximum(var - vs, 0.0), uc), q)
    return np.clip(theta + 0.0, lo, hi)


FX = FixedPoint(12, 4)  # Δ = 1/16, range [-128, 128): no clipping near the test points
D = FX.delta
V0 = D * D / 4
MUS = [0.5, 0.5 + D / 2, 0.5 + 0.3 * D, -1.37, -0.5 - D / 2]  # grid, half grid, generic, negative
# V just above V₀ at a half-grid μ puts the excess variance V - V₀ into rare values
# (P ~ (V - V₀)/(2Δ²)); the normal approximation behind moment_check needs n times that
# probability >> 1, hence 1.05 V₀ (~250 such values in N_VC draws), not 1.0001 V₀.
VARS = [3 * D * D, 1.05 * V0, V0, 0.9 * V0, 0.6 * V0, 0.1 * V0, 0.0]


def test_numpy_reference_matches_kernel_bitwise():
    """The independent NumPy Q^vc (from the spec text) equals the kernel bit for bit."""
    rng = np.random.default_rng(0)
    mu = np.concatenate([rng.standard_normal(2000) * 3, np.array(MUS), np.arange(-40, 40) * D / 2])
    for var in VARS + [1e-9, 0.37]:
        noise = draw_vc_noise(rng, mu.shape)
        a = vc_quantize(mu, var, FX, noise=noise)
        b = vc_reference(mu, var, FX, *noise)
        assert np.array_equal(a, b), var


# -------------------------------------------------------------------------------------------
# stochastic rounding: unbiased, variance p(1-p)Δ²
# -------------------------------------------------------------------------------------------
SR_CASES = [
    (FixedPoint(8, 4), [0.3, -0.3, 1 / 32, 0.5 + 0.1 / 16, -2.77, 1.25, 7.9]),
    (FloatingPoint(5, 2), [1.3, -3.1, 0.2, 1000.3, 2.0**-15 * 1.7]),  # incl. a subnormal
    (IEEEFloat("bfloat16"), [1.3, -3.1e-3]),
]


def _gap(x, fmt):
    return float(vc_gap(np.array([x]), fmt)[0]) if not isinstance(fmt, FixedPoint) else fmt.delta


@pytest.mark.parametrize("fmt, xs", SR_CASES, ids=lambda v: str(v)[:20])
def test_stochastic_rounding_unbiased_with_binomial_variance(fmt, xs):
    for j, x in enumerate(xs):
        q = quantize(np.full(N_SR, x), fmt, "stochastic", np.random.default_rng(100 + j))
        assert sr_check(q, x, _gap(x, fmt)) == (True, True), x


def test_stochastic_rounding_bfp_block():
    # one block [x, 1.9]: e_B = 0, Δ_B = 2^(2-8) for W = 8; x well inside the block range
    f = BlockFloatingPoint(8, 0)
    for j, x in enumerate([0.3, -1.234, 0.0071]):
        arr = np.empty((N_SR, 2))
        arr[:, 0], arr[:, 1] = x, 1.9
        q = quantize(arr, f, "stochastic", np.random.default_rng(j))[:, 0]
        assert sr_check(q, x, 2.0**-6) == (True, True), x


def test_stochastic_rounding_mutants_are_rejected():
    f = FixedPoint(8, 4)
    x = 0.3  # p = frac(4.8) = 0.8
    u = np.random.default_rng(1).random(N_SR)
    assert sr_check(quantize(np.full(N_SR, x), f, "stochastic", noise=u), x, f.delta) == (True, True)
    # biased uniforms: u**1.3 makes P(up) = 1 - 0.2**(1/1.3) ~ 0.71 instead of 0.8
    assert not sr_check(quantize(np.full(N_SR, x), f, "stochastic", noise=u**1.3), x, f.delta)[0]
    # nearest rounding in place of SR: biased and variance 0
    assert sr_check(quantize(np.full(N_SR, x), f), x, f.delta) == (False, False)
    # unbiased but extra noise ±Δ w.p. 1/4 each: the variance check must catch it
    extra = np.where(u < 0.25, f.delta, np.where(u > 0.75, -f.delta, 0.0))
    rng = np.random.default_rng(2)
    q = quantize(np.full(N_SR, x), f, "stochastic", rng) + extra
    assert sr_check(q, x, f.delta)[1] is False


# -------------------------------------------------------------------------------------------
# Cat(mu, V): mean mu, variance V
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mu, var", [(0.0, 0.05), (0.1, 0.0625), (0.25, 0.0625), (0.2, 0.2 * 0.3)])
def test_categorical_mean_and_variance(mu, var):
    delta = 0.5
    c = categorical_offset(np.full(N_VC, mu), var, delta, np.random.default_rng(7))
    assert set(np.unique(c)) <= {-delta, 0.0, delta}
    assert moment_check(c, mu, var) == (True, True)


def test_categorical_mutant_is_rejected():
    u = np.random.default_rng(7).random(N_VC)
    c = categorical_offset(np.full(N_VC, 0.1), 0.0625, 0.5, noise=u**1.3)
    assert moment_check(c, 0.1, 0.0625) != (True, True)


# -------------------------------------------------------------------------------------------
# Q^vc: mean μ exactly, variance V wherever matchable (P10)
# -------------------------------------------------------------------------------------------
def _vc_samples(mu, var, fmt, seed, **kw):
    return vc_quantize(np.full(N_VC, mu), var, fmt, np.random.default_rng(seed), **kw)


@pytest.mark.parametrize("mu", MUS)
def test_vc_fixed_point_mean_and_variance(mu):
    for j, var in enumerate(VARS):
        t = _vc_samples(mu, var, FX, 1000 + j)
        assert moment_check(t, mu, vc_expected_var(mu, var, D)) == (True, True), (mu, var)
        assert np.all(t / D == np.round(t / D))  # on the grid


def test_vc_branch1_variance_exact_for_grid_and_half_grid_points():
    """P10: in branch 1, Q^vc(μ) - μ has variance exactly V, including μ on the grid and at half-grid points."""
    var = 1.5 * V0
    for j, mu in enumerate([0.0, D, -3 * D, D / 2, -D / 2, 7.5 * D]):
        t = _vc_samples(mu, var, FX, 2000 + j)
        assert moment_check(t - mu, 0.0, var) == (True, True), mu


@pytest.mark.parametrize(
    "fmt, mu",
    [
        (BlockFloatingPoint(8), 1.3),
        (BlockFloatingPoint(8), -0.0123),
        (FloatingPoint(5, 4), 1.1),
        (FloatingPoint(5, 4), -0.37),
        (IEEEFloat("float16"), 3.3),
    ],
)
def test_vc_bfp_and_float_mean_and_variance(fmt, mu):
    d = float(vc_gap(np.array([mu]), fmt)[0])
    for j, var in enumerate([3 * d * d, d * d / 4, 0.5 * d * d / 4, 0.0]):
        t = _vc_samples(mu, var, fmt, 3000 + j)
        assert moment_check(t, mu, vc_expected_var(mu, var, d)) == (True, True), (fmt, mu, var)


def test_vc_clipping_documented():
    # near the end of the range the clip biases the mean (§2.5 "Final step")
    t = _vc_samples(FX.hi, 4 * D * D, FX, 5)
    assert t.max() == FX.hi and t.mean() < FX.hi


def test_vc_zero_bfp_block():
    """All-zero BFP block (Δ_B = 0): V = 0 gives zeros; V > 0 the Δ_B -> 0 limit of the escape rule,
    θ = SR(sqrt(V) ξ) onto its own block grid: mean 0, variance V + E p(1-p)Δ'², representable."""
    f = BlockFloatingPoint(8, dim=0)
    assert np.array_equal(vc_quantize(np.zeros((5, 3)), 0.0, f, np.random.default_rng(0)), np.zeros((5, 3)))
    var = 0.3
    noise = draw_vc_noise(np.random.default_rng(4), (N_VC, 2))
    t = vc_quantize(np.zeros((N_VC, 2)), var, f, noise=noise)
    assert np.array_equal(quantize(t, f), t)
    ref, s, _ = vc_escape_reference(np.zeros((N_VC, 2)), var, 8, *noise, kind="bfp")
    assert np.array_equal(t, ref)
    for j in range(2):
        assert escape_moment_check(t[:, j], 0.0, var, s[:, j]) == (True, True)
    # the spec's zeros (test hook) are rejected by the same check
    bad = vc_kernel(np.zeros((N_VC, 2)), var, f, noise, spec_clip=True)
    assert np.array_equal(bad, np.zeros((N_VC, 2)))
    assert escape_moment_check(bad[:, 0], 0.0, var, s[:, 0]) != (True, True)


# -------------------------------------------------------------------------------------------
# Q^vc escape re-rounding (BFP / floats, branch 1; docs/quantizers.md, a derived design choice
# departing from the spec's clip to μ's block range)
# -------------------------------------------------------------------------------------------
def vc_kernel(mu, var, fmt, noise, spec_clip=False):
    """vc_quantize, optionally with the kernel's test hook (code[7] bit 2: the spec's original
    clip of branch-1 results to μ's block/binade range) -- the mutation of the escape rule."""
    from refimpl import _qkernels as K
    from refimpl.quantize import _bfp_rows

    if not spec_clip:
        return vc_quantize(mu, var, fmt, noise=noise)
    code = np.array(fmt.code)
    code[7] = float(int(code[7]) | K.VC_SPEC_CLIP_BIT)
    mu = np.asarray(mu, dtype=np.float64)
    if isinstance(fmt, BlockFloatingPoint):
        rows, back = _bfp_rows(mu, fmt)
        nz = [np.ascontiguousarray(_bfp_rows(np.asarray(a, dtype=np.float64), fmt)[0]) for a in noise]
        out = np.empty_like(rows)
        K.vc_rows(rows, var, nz[0], nz[1], nz[2], out, code)
        return back(out)
    out = np.empty(mu.size)
    K.vc_into(mu.reshape(-1), var, *(np.ascontiguousarray(a, dtype=np.float64).reshape(-1) for a in noise), out, code)
    return out.reshape(mu.shape)


def vc_escape_reference(mu, var, param, xi, ur, uc, kind, emin=None, maxv=None, ties="away"):
    """Independent NumPy Q^vc branch 1 with the escape rule, written from docs/quantizers.md.

    kind="bfp": each row of the 2-D ``mu`` is one block of word length ``param`` (= W);
    kind="float": element-wise with ``param`` = M mantissa bits, e_min, max.
    Returns (θ, s, esc) with s = p(1-p)Δ'² the conditional variance the escape rounding
    adds (0 where nothing escaped): E[θ | θ₁] = θ₁ and Var[θ | θ₁] = s; esc: escaped.
    """
    mu = np.asarray(mu, dtype=np.float64)

    def qd(z):
        if ties == "up":
            return np.floor(z + 0.5)
        if ties == "even":
            return np.rint(z)
        return np.sign(z) * np.floor(np.abs(z) + 0.5)

    def exp2floor(a):
        return np.frexp(a)[1] - 1.0

    if kind == "bfp":
        w = param
        m0 = np.abs(mu).max(axis=1, keepdims=True)
        zero = m0 == 0
        eb = exp2floor(np.where(zero, 1.0, m0))
        delta = np.where(zero, 0.0, 2.0 ** (eb + 2 - w))
        hi = 2.0 ** (eb + 1) - delta
    else:
        am = np.abs(mu)
        e = np.maximum(exp2floor(np.where(am == 0, 2.0**emin, np.minimum(am, maxv))), emin)
        delta = 2.0 ** (e - param)
        hi = np.minimum(2.0 ** (e + 1) - delta, maxv)
    assert np.all((delta == 0) | (var > delta**2 / 4)), "branch 1 only"
    v0 = delta**2 / 4
    x = mu + np.sqrt(var - v0) * xi
    dsafe = np.where(delta == 0, 1.0, delta)
    z = x / dsafe
    k = qd(z)
    r = z - k
    a = np.abs(r)
    pp = (0.0 + (0.5 + a) ** 2) / 2  # Cat(|r|, V₀) in units of Δ (V/Δ² - 1/4 = 0)
    pm = (0.0 + (0.5 - a) ** 2) / 2
    c = np.where(uc < pp, 1.0, np.where(uc < pp + pm, -1.0, 0.0))
    th1 = np.where(delta == 0, x, (k + np.sign(r) * c) * dsafe)
    if kind == "bfp":
        m = np.abs(th1).max(axis=1, keepdims=True)
        esc = (m > hi) | (zero & (m > 0))
        e2 = exp2floor(np.where(m > 0, m, 1.0))
        d2 = 2.0 ** (e2 + 2 - w)
        kmax = 2.0 ** (w - 1) - 1
        esc = np.broadcast_to(esc, th1.shape)
    else:
        esc = np.abs(th1) > hi
        e2 = np.maximum(exp2floor(np.where(esc, np.abs(th1), 1.0)), emin)
        d2 = 2.0 ** (e2 - param)
    p = th1 / d2 - np.floor(th1 / d2)
    kk = np.floor(th1 / d2 + ur)
    if kind == "bfp":
        kk = np.clip(kk, -kmax, kmax)
        th = np.where(esc, kk * d2, th1)
    else:
        th = np.where(esc, np.clip(kk * d2, -maxv, maxv), th1)
    s = np.where(esc, p * (1 - p) * d2**2, 0.0)
    return th + 0.0, np.broadcast_to(s, th.shape), np.broadcast_to(esc, th.shape)


def escape_moment_check(t, mean, var, s):
    """(mean_ok, var_ok) for Q^vc with escapes.  Mean: |t̄ - μ| <= Z·sd(t)/sqrt(n).
    Variance: θ - μ = (θ₁ - μ) + (θ - θ₁) with E[θ - θ₁ | θ₁] = 0, so E(θ - μ)² = V + E s
    exactly; the per-sample W = (θ - μ)² - s has mean V and the check is
    |W̄ - V| <= Z·sd(W)/sqrt(n) (the samples are independent)."""
    n = t.size
    mean_ok = abs(t.mean() - mean) <= Z * t.std() / np.sqrt(n) + 1e-12 * (abs(mean) + 1)
    w = (t - mean) ** 2 - s
    var_ok = abs(w.mean() - var) <= Z * w.std() / np.sqrt(n) + 1e-12 * var
    return bool(mean_ok), bool(var_ok)


# (fmt, μ row, V, reference parameters): μ near the top of its block/binade, V large enough
# that P(escape) is 10-40 % (asserted); no saturation is possible at these (μ, V).
ESCAPE_CASES = [
    ("bfp_dim0", BlockFloatingPoint(8, dim=0), [1.9, -0.7], 0.01, dict(kind="bfp", param=8, ties="up")),
    ("bfp_dim0_neg", BlockFloatingPoint(6, dim=0), [-0.47, 0.05, -0.2], 0.003, dict(kind="bfp", param=6, ties="up")),
    ("qtorch_e5m4", FloatingPoint(5, 4), [1.9, -0.95], 0.01, dict(kind="float", param=4, emin=-14, maxv=FloatingPoint(5, 4).max, ties="away")),
    ("bfloat16", IEEEFloat("bfloat16"), [1.99, -3.97], 0.0004, dict(kind="float", param=7, emin=-126, maxv=float(IEEEFloat("bfloat16").max), ties="even")),
]


def _escape_samples(fmt, row, var, seed, n=N_VC):
    mu = np.tile(np.asarray(row, dtype=np.float64), (n, 1))
    noise = draw_vc_noise(np.random.default_rng(seed), mu.shape)
    return mu, noise


@pytest.mark.parametrize("name, fmt, row, var, ref", ESCAPE_CASES, ids=[c[0] for c in ESCAPE_CASES])
def test_vc_escape_mean_exact_variance_and_representable(name, fmt, row, var, ref):
    """Branch 1 leaving μ's block/binade: E θ = μ (5 SE), Var = V + E p(1-p)Δ'² (5 SE, via W),
    results representable (quantize is the identity on them), and equal to the independent
    NumPy reference bit for bit.  The spec's clip (test hook) is rejected by the same check."""
    mu, noise = _escape_samples(fmt, row, var, 41)
    t = vc_quantize(mu, var, fmt, noise=noise)
    assert np.array_equal(quantize(t, fmt), t)
    th, s, esc = vc_escape_reference(mu, var, xi=noise[0], ur=noise[1], uc=noise[2], **ref)
    assert np.array_equal(t, th)
    assert 0.1 < esc.any(axis=1).mean() < 0.9, "escapes must be frequent"
    for j, m in enumerate(row):
        assert escape_moment_check(t[:, j], m, var, s[:, j]) == (True, True), (name, j)
    bad = vc_kernel(mu, var, fmt, noise, spec_clip=True)
    assert any(escape_moment_check(bad[:, j], m, var, s[:, j]) != (True, True) for j, m in enumerate(row))


def test_vc_escape_bfp_one_block_dim_none():
    """dim=None: the whole array is one block.  Independent blocks [1.9, -0.7] one call each;
    both elements re-round onto Δ' when the first escapes; mean/variance as above."""
    f = BlockFloatingPoint(8)
    n = 8000
    mu, noise = _escape_samples(f, [1.9, -0.7], 0.01, 43, n)
    t = np.array([vc_quantize(mu[i], 0.01, f, noise=(noise[0][i], noise[1][i], noise[2][i])) for i in range(n)])
    th, s, esc = vc_escape_reference(mu, 0.01, 8, *noise, kind="bfp", ties="up")
    assert np.array_equal(t, th)
    assert all(np.array_equal(quantize(t[i], f), t[i]) for i in range(0, n, 97))
    esc = esc[:, 0]
    assert esc.mean() > 0.1 and np.all(t[esc, 1] % 2.0**-5 == 0)  # the small element is on Δ' too
    for j, m in enumerate([1.9, -0.7]):
        assert escape_moment_check(t[:, j], m, 0.01, s[:, j]) == (True, True)


def test_vc_escape_saturation_documented():
    """BFP: a value that rounds up to 2^(e'+1) saturates at 2^(e'+1) - Δ' (a bounded bias,
    as fixed point's clip); floats saturate at the format's max, never inf."""
    f = BlockFloatingPoint(4, dim=0)  # Δ' = 2^(e'-2): coarse, saturation frequent
    mu, noise = _escape_samples(f, [1.7], 1.0, 45, 4000)
    t = vc_quantize(mu, 1.0, f, noise=noise)
    e = np.floor(np.log2(np.abs(t[t != 0])))
    assert np.all(np.abs(t[t != 0]) <= 2.0 ** (e + 1) - 2.0 ** (e - 2))
    assert np.array_equal(quantize(t, f), t)
    g = IEEEFloat("float16")
    top = float(g.max)
    out = vc_quantize(np.full(1000, top), (0.1 * top) ** 2, g, np.random.default_rng(3))
    assert np.all(np.isfinite(out)) and out.max() == top


def _reference_samples(mu, var, seed, mutation):
    noise = draw_vc_noise(np.random.default_rng(seed), (N_VC,))
    return vc_reference(np.full(N_VC, mu), var, FX, *noise, mutation=mutation)


@pytest.mark.parametrize(
    "mutation, mu, var",
    [
        ("qs_fallback", 0.5, 0.6 * V0),  # μ on grid: Q^s has variance 0, not V
        ("qs_fallback", 0.5 + 0.3 * D, 0.9 * V0),  # V_s = 0.84 V₀ < V: top-up skipped
        ("branch1_var", 0.5 + 0.3 * D, 3 * D * D),  # variance V + V₀
        ("branch1_var", 0.5, 1.5 * V0),
        ("naive", 0.5, 0.6 * V0),  # P4 vs P3: naive rounding Q^d(μ + sqrt(V) ξ)
        ("no_cat", 0.5 + D / 2, 1.5 * V0),  # branch 1 without the Cat step
    ],
)
def test_vc_mutants_are_rejected(mutation, mu, var):
    good = _reference_samples(mu, var, 11, None)
    assert moment_check(good, mu, vc_expected_var(mu, var, D)) == (True, True)
    bad = _reference_samples(mu, var, 11, mutation)
    assert moment_check(bad, mu, vc_expected_var(mu, var, D)) != (True, True)


@pytest.mark.parametrize("fmt, mu", [(BlockFloatingPoint(8), 83 * 2.0**-6), (FloatingPoint(5, 4), 1.0)])  # μ on grid: V_s = 0
def test_vc_published_flag_falls_back_to_qs_and_is_rejected(fmt, mu):
    """``vc_bfp_published=True`` reproduces the published fallback to Q^s (§7.2 item 1); the
    variance check rejects it where the correct VC matches V."""
    d = float(vc_gap(np.array([mu]), fmt)[0])
    var = 0.5 * d * d / 4
    t = _vc_samples(mu, var, fmt, 21, vc_bfp_published=True)
    noise = draw_vc_noise(np.random.default_rng(21), (N_VC,))
    assert np.array_equal(t, quantize(np.full(N_VC, mu), fmt, "stochastic", noise=noise[1]))
    assert moment_check(t, mu, vc_expected_var(mu, var, d)) != (True, True)
    # branch 1 is unchanged by the flag
    big = 3 * d * d
    assert np.array_equal(_vc_samples(mu, big, fmt, 22, vc_bfp_published=True), _vc_samples(mu, big, fmt, 22))


# -------------------------------------------------------------------------------------------
# Q^d ties (the mutation "ties to even" changes Q^vc only on ties, so test Q^d directly)
# -------------------------------------------------------------------------------------------
def ties_away_check(qfun, delta):
    k = np.arange(-6, 6)
    x = (k + 0.5) * delta
    expect = np.sign(x) * (np.abs(k + 0.5) + 0.5) * delta
    return bool(np.array_equal(qfun(x), expect))


def test_nearest_ties_away_from_zero_and_mutant():
    f = FixedPoint(8, 3)
    assert ties_away_check(lambda x: quantize(x, f), f.delta)
    assert not ties_away_check(lambda x: quantize(x, f, ties="even"), f.delta)
    g = FloatingPoint(4, 3)  # ties away from zero in the binade [1, 2): ULP 1/8
    x = np.array([1.0625, 1.1875, -1.0625, -1.1875])
    assert np.array_equal(quantize(x, g), [1.125, 1.25, -1.125, -1.25])
    assert np.array_equal(quantize(x, g, ties="even"), [1.0, 1.25, -1.0, -1.25])


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_vc_random_mu_long(seed):
    """Long version: many random μ and V, 10^6 samples each (5-sigma bounds)."""
    rng = np.random.default_rng(seed)
    n = 1_000_000
    for _ in range(5):
        mu = float(rng.uniform(-4, 4))
        var = float(rng.choice([rng.uniform(0, V0), rng.uniform(V0, 20 * V0)]))
        t = vc_quantize(np.full(n, mu), var, FX, rng)
        assert moment_check(t, mu, vc_expected_var(mu, var, D)) == (True, True), (mu, var)
