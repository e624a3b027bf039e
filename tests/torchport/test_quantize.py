"""torchport.quantize: bit-for-bit parity with refimpl.quantize (noise-in), dtypes, generators,
validation, torch.compile, and statistical properties run on both backends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import importlib

# `import refimpl.quantize as rq` would bind the function refimpl.quantize (re-exported by refimpl)
rq = importlib.import_module("refimpl.quantize")
import torchport.quantize as tq  # noqa: E402
from refimpl.formats import BlockFloatingPoint, FixedPoint, FloatingPoint, IEEEFloat  # noqa: E402

FORMATS = [
    FixedPoint(8, 6),
    FixedPoint(8, 3, symmetric=True),
    FixedPoint(4, 0),
    BlockFloatingPoint(8),
    BlockFloatingPoint(5),
    FloatingPoint(4, 3),
    FloatingPoint(5, 2),
    FloatingPoint(8, 23),
    IEEEFloat("float16"),
    IEEEFloat("bfloat16"),
    IEEEFloat("float8_e4m3fn"),
    IEEEFloat("float8_e5m2"),
    IEEEFloat("float8_e4m3fn", saturate=True),
]
IDS = [repr(f) for f in FORMATS]


def _inputs(fmt, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.standard_normal(n // 3) * s for s in (1e-3, 1.0, 300.0)])
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300, -1e300, 0.5, -0.5, 2.5]
    x[: len(specials)] = specials
    if isinstance(fmt, FixedPoint):  # exact ties
        x[len(specials): len(specials) + 40] = (rng.integers(-300, 300, 40) + 0.5) * fmt.delta
    return x, rng


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True) and \
        np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
def test_float64_noise_in_parity(fmt):
    """Fed the same noise, torchport equals refimpl bit for bit (incl. signs of zeros, NaN, inf)."""
    x, rng = _inputs(fmt)
    t = torch.from_numpy(x)
    for ties in (None, "away", "even", "up"):
        assert _same(tq.quantize(t, fmt, "nearest", ties=ties).numpy(), rq.quantize(x, fmt, "nearest", ties=ties))
    u = rng.random(x.shape)
    assert _same(tq.stochastic_round(t, fmt, noise=torch.from_numpy(u), exact=True).numpy(), rq.stochastic_round(x, fmt, noise=u))
    noise = (rng.standard_normal(x.shape), rng.random(x.shape), rng.random(x.shape))
    tnoise = tuple(torch.from_numpy(a) for a in noise)
    for pub in (False, True):
        for var in (0.0, 1e-8, 1e-3, 0.3, 10.0):
            ref = rq.vc_quantize(x, var, fmt, noise=noise, vc_bfp_published=pub)
            assert _same(tq.vc_quantize(t, var, fmt, noise=tnoise, vc_bfp_published=pub, exact=True).numpy(), ref), (var, pub)
    assert _same(tq.vc_gap(t, fmt).numpy(), rq.vc_gap(x, fmt))


@pytest.mark.parametrize("dim", [None, 0, 1])
def test_bfp_blocks_parity(dim):
    """BFP blocks along an axis (qtorch dim semantics) agree with refimpl, incl. an all-zero block."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 7)) * np.array([1e-3, 1.0, 10.0, 0.0, 1e4])[:, None]
    fmt = BlockFloatingPoint(6, dim)
    u = rng.random(x.shape)
    t = torch.from_numpy(x)
    assert _same(tq.quantize(t, fmt).numpy(), rq.quantize(x, fmt))
    assert _same(tq.stochastic_round(t, fmt, noise=torch.from_numpy(u), exact=True).numpy(), rq.stochastic_round(x, fmt, noise=u))
    noise = (rng.standard_normal(x.shape), rng.random(x.shape), rng.random(x.shape))
    got = tq.vc_quantize(t, 1e-2, fmt, noise=tuple(map(torch.from_numpy, noise)), exact=True).numpy()
    assert _same(got, rq.vc_quantize(x, 1e-2, fmt, noise=noise))


@pytest.mark.parametrize("fmt", [BlockFloatingPoint(8), BlockFloatingPoint(6, 0), BlockFloatingPoint(5, 1),
                                 FloatingPoint(5, 4), FloatingPoint(4, 3), IEEEFloat("bfloat16"),
                                 IEEEFloat("float16"), IEEEFloat("float8_e4m3fn"), IEEEFloat("float8_e5m2", saturate=True)],
                         ids=lambda f: repr(f))
def test_vc_escape_parity(fmt):
    """Q^vc branch-1 escape re-rounding (values leaving μ's block/binade, re-rounded with u_round
    onto their own grid and saturated), all-zero BFP blocks with V > 0, ±inf/NaN inside
    escaping blocks, float32 inputs: torchport equals refimpl bit for bit.  Escapes are
    asserted to occur (so the parity covers the new path)."""
    rng = np.random.default_rng(11)
    mu = rng.uniform(-1, 1, (40, 6)) * np.exp2(rng.integers(-4, 5, (40, 1)))
    top = np.abs(mu).max(axis=1, keepdims=True)
    mu[::2] *= (2.0 - 2.0**-9) * np.exp2(np.floor(np.log2(top[::2]))) / top[::2]  # block max near 2^(e+1)
    mu[5] = 0.0
    mu[7, 2], mu[9, 1], mu[11, 3] = np.inf, -np.inf, np.nan
    if isinstance(fmt, BlockFloatingPoint) and fmt.dim == 1:
        mu = np.ascontiguousarray(mu.T)
    escaped = 0
    for var in (1e-4, 1e-2, 0.3, 5.0):
        for dt in (np.float64, np.float32):
            x = mu.astype(dt)
            noise = (rng.standard_normal(x.shape), rng.random(x.shape), rng.random(x.shape))
            ref = rq.vc_quantize(x, var, fmt, noise=noise)
            got = tq.vc_quantize(torch.from_numpy(x), var, fmt, noise=tuple(map(torch.from_numpy, noise)), exact=True).numpy()
            assert _same(got, ref), (var, dt)
            fin = np.isfinite(ref)
            assert _same(rq.quantize(ref, fmt), ref)  # representable: Q^d is the identity on the result
            gap = rq.vc_gap(x.astype(np.float64), fmt)
            with np.errstate(invalid="ignore"):
                escaped += int(np.sum(fin & (gap > 0) & (np.abs(ref) >= 2.0 * np.abs(gap) * 2.0 ** (
                    (fmt.wl - 2) if isinstance(fmt, BlockFloatingPoint) else fmt.man))))
    assert escaped >= 10


def test_categorical_parity():
    rng = np.random.default_rng(4)
    delta = 0.25
    mu = rng.random(500) * delta / 2
    var = mu * (delta - mu) + rng.random(500) * (delta**2 / 4 - mu * (delta - mu))
    u = rng.random(500)
    got = tq.categorical_offset(torch.from_numpy(mu), torch.from_numpy(var), delta, noise=torch.from_numpy(u))
    assert _same(got.numpy(), rq.categorical_offset(mu, var, delta, noise=u))
    for a, b in zip(tq.categorical_probabilities(torch.from_numpy(mu), torch.from_numpy(var), delta),
                    rq.categorical_probabilities(mu, var, delta)):
        assert _same(a.numpy(), b)


def test_float32_matches_refimpl_float32():
    """float32 inputs: both packages compute in float64 and cast, so they agree exactly."""
    fmt = FixedPoint(8, 4)
    x, rng = _inputs(fmt)
    u = rng.random(x.shape)
    x32 = x[np.abs(x) < 1e30].astype(np.float32)
    u = u[np.abs(x) < 1e30]
    got = tq.stochastic_round(torch.from_numpy(x32), fmt, noise=torch.from_numpy(u), exact=True)
    assert got.dtype == torch.float32
    assert _same(got.numpy(), rq.stochastic_round(x32, fmt, noise=u))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_dtypes_are_cast_of_float64_result(dtype):
    fmt = FixedPoint(8, 4)
    x = torch.linspace(-9, 9, 301, dtype=torch.float64).to(dtype)
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = tq.stochastic_round(x, fmt, noise=u, exact=True)
    ref = tq.stochastic_round(x.to(torch.float64), fmt, noise=u, exact=True).to(dtype)
    assert got.dtype == dtype and torch.equal(got, ref)


def test_generator_form_is_noise_in_form_with_drawn_noise():
    fmt = FloatingPoint(4, 3)
    x = torch.randn(257, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = tq.stochastic_round(x, fmt, torch.Generator().manual_seed(7), exact=True)
    b = tq.stochastic_round(x, fmt, noise=tq.draw_quantize_noise(torch.Generator().manual_seed(7), x.shape), exact=True)
    assert torch.equal(a, b)
    c = tq.vc_quantize(x, 0.01, fmt, torch.Generator().manual_seed(7), exact=True)
    d = tq.vc_quantize(x, 0.01, fmt, noise=tq.draw_vc_noise(torch.Generator().manual_seed(7), x.shape), exact=True)
    assert torch.equal(c, d)
    assert not torch.equal(a, tq.stochastic_round(x, fmt, torch.Generator().manual_seed(8), exact=True))


def test_no_global_rng_and_bad_input():
    x = torch.zeros(3, dtype=torch.float64)
    fmt = FixedPoint(8, 4)
    with pytest.raises(ValueError, match="exactly one of generator"):
        tq.stochastic_round(x, fmt, exact=True)
    with pytest.raises(ValueError, match="needs seed="):
        tq.stochastic_round(x, fmt)
    with pytest.raises(ValueError, match="noise.*exact=True"):
        tq.stochastic_round(x, fmt, noise=torch.zeros(3))
    with pytest.raises(ValueError, match="exactly one of generator"):
        tq.stochastic_round(x, fmt, torch.Generator(), noise=torch.zeros(3), exact=True)
    with pytest.raises(ValueError, match=r"uniforms in \[0, 1\)"):
        tq.stochastic_round(x, fmt, noise=torch.ones(3), exact=True)
    with pytest.raises(ValueError, match="shape"):
        tq.stochastic_round(x, fmt, noise=torch.zeros(4), exact=True)
    with pytest.raises(ValueError, match="rounding"):
        tq.quantize(x, fmt, "up")
    with pytest.raises(ValueError, match="var"):
        tq.vc_quantize(x, -1.0, fmt, torch.Generator())
    with pytest.raises(ValueError, match="var"):
        tq.vc_quantize(x, -1.0, fmt, torch.Generator(), exact=True)
    with pytest.raises(ValueError, match="fmt"):
        tq.quantize(x, "fixed:8:4")
    with pytest.raises(ValueError, match="dim=1"):
        tq.quantize(x, BlockFloatingPoint(8, 1))
    with pytest.raises(ValueError, match="admissible"):
        tq.categorical_offset(torch.tensor([0.3]), 0.0, 0.25, torch.Generator())
    with pytest.raises(TypeError, match="dtype"):
        tq.quantize(torch.zeros(3, dtype=torch.int64), fmt)


def test_torch_compile_matches_eager():
    """A quantizer traces into one graph under torch.compile (CPU, fullgraph) and gives the eager bits.

    The default test uses the cheap "eager" backend (Dynamo tracing, no code generation); the
    inductor backend is exercised by the slow test below."""
    fmt = FloatingPoint(5, 2)
    code = tq._code_tuple(fmt)  # the format code as Python constants (what the optimizers pass)

    def f(x, u):
        return tq._round(x, fmt, code, u)

    x = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5
    u = torch.rand(1000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    compiled = torch.compile(f, backend="eager", fullgraph=True)
    assert torch.equal(compiled(x, u), f(x, u))


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager():
    fmt = BlockFloatingPoint(8, 0)
    code = tq._code_tuple(fmt)

    def f(x, u):
        return tq._round(x, fmt, code, u)

    x = torch.randn(64, 33, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u = torch.rand(64, 33, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(torch.compile(f)(x, u), f(x, u))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    fmt = FloatingPoint(5, 2)
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 100
    u = torch.rand(4096, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(tq.stochastic_round(x.cuda(), fmt, noise=u.cuda(), exact=True).cpu(), tq.stochastic_round(x, fmt, noise=u, exact=True))


# --------------------------------------------------------------------- property tests
@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-40, 40, allow_nan=False), min_size=1, max_size=20), st.integers(0, 6))
def test_nearest_is_on_grid_and_idempotent(values, fl):
    fmt = FixedPoint(8, fl)
    x = torch.tensor(values, dtype=torch.float64)
    q = tq.quantize(x, fmt)
    assert torch.equal(tq.quantize(q, fmt), q)
    k = q / fmt.delta
    assert torch.equal(k, torch.round(k)) and bool((q >= fmt.lo).all()) and bool((q <= fmt.hi).all())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False).filter(lambda v: v == 0 or abs(v) > 1e-9),
                min_size=2, max_size=20))
def test_stochastic_round_brackets_input(values):
    # (|x| > 1e-9: far below the format's smallest gap 2^-16 the float64 sum x/Δ + u cannot resolve P(up))
    fmt = FloatingPoint(5, 2)
    x = torch.tensor(values, dtype=torch.float64)
    lo = tq.stochastic_round(x, fmt, noise=torch.zeros_like(x), exact=True)
    hi = tq.stochastic_round(x, fmt, noise=torch.full_like(x, 1 - 2**-53), exact=True)
    assert bool((torch.minimum(lo, hi) <= x).all()) and bool((torch.maximum(lo, hi) >= x).all())


# -------------------------------------------- statistics, every backend (tests/torchport/conftest.py)
def _sr_moments_check(backend, sr, n=200_000, seed=11):
    """E Q^s(x) = x and Var = p(1-p)Δ² at fixed x (Q2'), tolerance 5 Monte Carlo SE."""
    fmt = FixedPoint(8, 3)
    x0 = 0.3  # p = frac(0.3/0.125) = 0.4
    q = sr(np.full(n, x0), fmt, backend.generator(seed))
    var_true = 0.4 * 0.6 * fmt.delta**2
    # SE of the mean: sqrt(var/n); SE of the variance of a two-point law: sqrt((m4 - var^2)/n) <= var*sqrt(2/n)+...
    mean_ok = abs(q.mean() - x0) <= 5 * math.sqrt(var_true / n)
    m4 = 0.4 * 0.6 * (0.6**3 + 0.4**3) * fmt.delta**4
    var_ok = abs(q.var() - var_true) <= 5 * math.sqrt((m4 - var_true**2) / n)
    return mean_ok and var_ok


def test_stochastic_round_moments(backend):
    assert _sr_moments_check(backend, backend.stochastic_round)


def test_stochastic_round_moments_rejects_biased_rounding(backend):
    """Mutation: rounding with P(up) shifted by 0.01 must fail the same check."""

    def broken(x, fmt, gen):
        u = np.clip(np.asarray(backend.stochastic_round(np.zeros(1), fmt, gen)) * 0 + 0.01, 0, 1)  # consume gen
        r = np.random.default_rng(0).random(x.shape)
        return fmt.delta * np.floor(x / fmt.delta + np.clip(r + u, 0, 1 - 1e-16))

    assert not _sr_moments_check(backend, broken)


def _vc_variance_check(backend, vc, var, n=200_000, seed=5):
    """Q^vc(μ, V): mean μ and variance V (Q5 branch / Q6 branch), 5 MC SE (variance SE via 4th moment)."""
    fmt = FixedPoint(8, 3)
    mu = 0.3
    q = np.asarray(vc(np.full(n, mu), var, fmt, backend.generator(seed)))
    m, v = q.mean(), q.var()
    m4 = np.mean((q - m) ** 4)
    return abs(m - mu) <= 5 * math.sqrt(var / n) and abs(v - var) <= 5 * math.sqrt((m4 - v * v) / n)


@pytest.mark.parametrize("var", [0.01, 0.05])  # V_0 = Δ²/4 = 0.0039: both (Q5); V_s = 0.00375 < V
def test_vc_matches_target_variance(backend, var):
    assert _vc_variance_check(backend, backend.vc_quantize, var)


def test_vc_variance_check_rejects_plain_rounding(backend):
    """Mutation: Q^s(μ + √V ξ) (naive, variance V + σ²_SR) must fail the VC variance check."""

    def naive(mu, var, fmt, gen):
        xi = np.random.default_rng(1).standard_normal(mu.shape)
        return backend.stochastic_round(mu + math.sqrt(var) * xi, fmt, gen)

    assert not _vc_variance_check(backend, naive, 0.01)


@pytest.mark.parametrize("call", [
    lambda x, **r: tq.quantize(x, FixedPoint(8, 3), "stochastic", exact=True, **r),
    lambda x, **r: tq.stochastic_round(x, BlockFloatingPoint(6, 0), exact=True, **r),
    lambda x, **r: tq.vc_quantize(x, 0.01, FloatingPoint(5, 2), exact=True, **r),
    lambda x, **r: tq.categorical_offset(torch.full(x.shape, 0.05, dtype=torch.float64), 0.012, 0.25, **r),
    lambda x, **r: tq.draw_quantize_noise(shape=x.shape, **r),
    lambda x, **r: tq.draw_vc_noise(shape=x.shape, **r)[0],
    lambda x, **r: tq.draw_categorical_noise(shape=x.shape, **r),
], ids=["quantize", "stochastic_round", "vc_quantize", "categorical_offset", "draw_quantize_noise", "draw_vc_noise",
        "draw_categorical_noise"])
def test_seed_is_an_int_or_a_generator(call):
    """One seed convention (issue 13), exact path: seed=int, seed=Generator and generator=Generator give the same bits;
    an int for generator= or both at once are refused, and a refused call draws nothing."""
    x = torch.linspace(-1.5, 1.5, 24, dtype=torch.float64).reshape(4, 6)
    by_int = call(x, seed=11)
    by_seed_gen = call(x, seed=torch.Generator().manual_seed(11))
    by_generator = call(x, generator=torch.Generator().manual_seed(11))
    assert torch.equal(by_int, by_seed_gen) and torch.equal(by_int, by_generator)
    assert not torch.equal(by_int, call(x, seed=12))  # mutation: another seed gives other bits
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    with pytest.raises(ValueError, match="not both"):
        call(x, generator=g, seed=3)
    with pytest.raises((TypeError, ValueError), match="generator.*3"):
        call(x, generator=3)
    with pytest.raises((TypeError, ValueError), match="seed=-1"):
        call(x, seed=-1)
    assert torch.equal(g.get_state(), state)
