"""torchport.quantize's default (fast) path: ``exact=False`` (default) vs ``exact=True`` (issue 11, item 1).

* nearest rounding: the default path equals the exact path bit for bit, for every format, on float64
  and float32 inputs (a dense sweep: ties on many grids, subnormals of both dtypes, ±0, ±inf, NaN,
  saturation, values far outside the range; plus a hypothesis property), and on float16/bfloat16
  inputs (computed in float32 and cast back);
* stochastic rounding and Q^vc: the counter stream of torchport.fast keyed by (seed, step, index), the
  same bits as ``stochastic_round_fast`` / ``vc_quantize_fast``; a generator gives one 63-bit integer per
  call (torchport.optim._fastpath.counter_seed), so repeated calls differ and are reproducible;
* unbiasedness of the default path's Q^s (4 Monte Carlo standard errors + the k-bit bias bound), and a
  biased variant failing the same check;
* the argument rules: ``noise=`` needs exact=True, ``step``/``index`` belong to the default path, a
  format the fast path lacks names ``fmt`` and exact=True, a raising call draws nothing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torchport.fast as F
import torchport.quantize as tq
from refimpl.formats import NVFP4, BlockFloatingPoint, FixedPoint, FloatingPoint, IEEEFloat, MXFormat
from torchport.optim._fastpath import counter_seed

FORMATS = [
    FixedPoint(8, 6), FixedPoint(8, 3, symmetric=True), FixedPoint(4, 0), FixedPoint(4, -2), FixedPoint(24, 10),
    FixedPoint(30, 10), FixedPoint(53, 20), FixedPoint(16, 30),
    BlockFloatingPoint(8), BlockFloatingPoint(5), BlockFloatingPoint(8, 0), BlockFloatingPoint(6, 1),
    BlockFloatingPoint(24), BlockFloatingPoint(30, 0),
    FloatingPoint(4, 3), FloatingPoint(5, 2), FloatingPoint(2, 1), FloatingPoint(8, 7), FloatingPoint(8, 23),
    FloatingPoint(6, 25), FloatingPoint(10, 50),
    IEEEFloat("float16"), IEEEFloat("bfloat16"), IEEEFloat("float8_e4m3fn"), IEEEFloat("float8_e5m2"),
    IEEEFloat("float8_e4m3fn", saturate=True), IEEEFloat("float16", saturate=True),
    MXFormat("mxfp8_e4m3"), MXFormat("mxfp8_e5m2"), MXFormat("mxfp6_e3m2"), MXFormat("mxfp6_e2m3"),
    MXFormat("mxfp4"), MXFormat("mxint8"), MXFormat("mxfp4", axis=0), NVFP4(),
    NVFP4(tensor_scale=float(np.float32(0.3))),
]
IDS = [repr(f) for f in FORMATS]


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bits (NaN payloads aside: NaN == NaN; the sign of zero counts)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a64, b64 = a.double(), b.double()
    same = (a64 == b64) | (torch.isnan(a64) & torch.isnan(b64))
    return bool((same & (torch.signbit(a64) == torch.signbit(b64))).all())


def _sweep(fmt, dtype, seed=0) -> torch.Tensor:
    """Dense inputs: normals over 48 decades, ties k/2·2^e on 12 grids, subnormals of float64 and float32,
    ±0, ±inf, NaN, the extremes of float64 (saturation everywhere); shaped for the format's blocks."""
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal(1024) * s for s in (1e-40, 1e-6, 1e-3, 1.0, 30.0, 300.0, 1e5, 1e30)]
    ks = rng.integers(-1000, 1000, 512) + 0.5
    parts += [ks * 2.0**e for e in (-30, -20, -12, -8, -6, -4, -3, -2, 0, 2, 4, 8)]
    parts += [rng.standard_normal(256) * 1e-42, rng.standard_normal(256) * 1e-39]
    parts.append(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2e-308, 1e-310, 1e308, -1e308,
                           0.5, -0.5, 1.5, 2.5, -2.5]))
    x = np.concatenate(parts)
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    x = rng.permutation(x)  # mixes specials into many blocks
    x = x[: len(x) // 64 * 64].reshape(-1, 32)
    return torch.from_numpy(np.ascontiguousarray(x))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
def test_nearest_default_path_equals_exact_path_bit_for_bit(fmt, dtype):
    x = _sweep(fmt, dtype)
    for ties in (None, "away", "even", "up"):
        fast = tq.quantize(x, fmt, ties=ties)
        exact = tq.quantize(x, fmt, ties=ties, exact=True)
        assert _bits_equal(fast, exact), (fmt, dtype, ties)
    assert fast.dtype == x.dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fmt", [f for f in FORMATS if not isinstance(f, FixedPoint) or f.wl <= 24], ids=repr)
def test_nearest_on_half_dtypes_computes_in_float32_and_equals_exact(fmt, dtype):
    """float16/bfloat16 inputs: the default path computes in float32 and casts back; the exact path
    computes in float64 and casts back; every half value is exact in float32, so the two agree."""
    x = _sweep(fmt, np.float32, seed=1).to(dtype)
    assert _bits_equal(tq.quantize(x, fmt), tq.quantize(x, fmt, exact=True))


_FLOATS = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True, width=64)


@settings(max_examples=150, deadline=None)
@given(st.lists(_FLOATS, min_size=1, max_size=40), st.sampled_from([f for f in FORMATS
                                                                   if not isinstance(f, (MXFormat, NVFP4))]),
       st.sampled_from([torch.float64, torch.float32]), st.sampled_from([None, "away", "even", "up"]))
def test_nearest_paths_agree_on_any_values(values, fmt, dtype, ties):
    if isinstance(fmt, BlockFloatingPoint) and fmt.dim is not None:
        fmt = BlockFloatingPoint(fmt.wl)
    with np.errstate(over="ignore"):
        x = torch.from_numpy(np.asarray(values, dtype=np.float64).astype(dtype.__repr__().split(".")[1]))
    assert _bits_equal(tq.quantize(x, fmt, ties=ties), tq.quantize(x, fmt, ties=ties, exact=True))


@pytest.mark.parametrize("fmt", [FixedPoint(8, 3), BlockFloatingPoint(8, 0), FloatingPoint(5, 2),
                                 IEEEFloat("bfloat16"), MXFormat("mxfp8_e4m3"), NVFP4()], ids=repr)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_stochastic_and_vc_are_the_fast_functions_keyed_by_seed_step_index(fmt, dtype):
    x = (torch.randn(8, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2).to(dtype)
    a = tq.stochastic_round(x, fmt, seed=5, step=3, index=2)
    assert a.dtype == dtype
    assert _bits_equal(a, F.stochastic_round_fast(x, fmt, seed=5, step=3, param_index=2))
    assert _bits_equal(a, tq.quantize(x, fmt, "stochastic", seed=5, step=3, index=2))
    assert not _bits_equal(a, tq.stochastic_round(x, fmt, seed=5, step=4, index=2))
    assert not _bits_equal(a, tq.stochastic_round(x, fmt, seed=5, step=3, index=1))
    v = tq.vc_quantize(x, 1e-2, fmt, seed=5, step=3, index=2)
    assert _bits_equal(v, F.vc_quantize_fast(x, 1e-2, fmt, seed=5, step=3, param_index=2))
    if not isinstance(fmt, (MXFormat, NVFP4)):  # (MX Q^vc may use the holding scale's grid: docs/mx.md)
        assert _bits_equal(tq.quantize(v, fmt), v)  # on the grid


def test_a_generator_gives_one_63_bit_integer_per_call():
    """The optimizers' seed rule: one torch.randint(0, 2**63 - 1) per call, used as the key; so repeated
    calls with one generator give fresh noise, and the same generator seed the same sequence."""
    fmt = FixedPoint(8, 3)
    x = torch.linspace(-1, 1, 257, dtype=torch.float32)
    for call in (lambda **k: tq.stochastic_round(x, fmt, **k), lambda **k: tq.vc_quantize(x, 1e-3, fmt, **k)):
        g = torch.Generator().manual_seed(9)
        first, second = call(generator=g), call(seed=g)
        assert not _bits_equal(first, second)
        ref = torch.Generator().manual_seed(9)
        k1, k2 = counter_seed(ref), counter_seed(ref)
        assert _bits_equal(first, call(seed=k1)) and _bits_equal(second, call(seed=k2))
        assert torch.equal(g.get_state(), ref.get_state())  # advanced by exactly those draws
    assert _bits_equal(tq.stochastic_round(x, fmt, seed=3), tq.stochastic_round(x, fmt, seed=3))  # int: pure


def test_nearest_draws_nothing_and_exact_true_is_the_generator_path():
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    x = torch.linspace(-1, 1, 33, dtype=torch.float64)
    tq.quantize(x, FixedPoint(8, 3), "nearest", g)
    assert torch.equal(g.get_state(), state)
    u = tq.draw_quantize_noise(torch.Generator().manual_seed(4), x.shape)
    assert torch.equal(tq.stochastic_round(x, FixedPoint(8, 3), torch.Generator().manual_seed(4), exact=True),
                       tq.stochastic_round(x, FixedPoint(8, 3), noise=u, exact=True))


def test_empty_zero_dim_and_identity():
    g = torch.Generator().manual_seed(0)
    for fmt in (FixedPoint(8, 3), BlockFloatingPoint(8), BlockFloatingPoint(8, 0), MXFormat("mxfp4"), None):
        for shape in ((0,), (0, 32), (3, 0)):
            x = torch.zeros(shape, dtype=torch.float32)
            for out in (tq.quantize(x, fmt), tq.stochastic_round(x, fmt, g), tq.vc_quantize(x, 0.1, fmt, g)):
                assert out.shape == x.shape and out.dtype == x.dtype
    x0 = torch.tensor(0.3, dtype=torch.float64)
    assert float(tq.quantize(x0, FixedPoint(8, 3))) == 0.25
    assert float(tq.stochastic_round(x0, FixedPoint(8, 3), seed=0)) in (0.25, 0.375)
    x = torch.randn(5, dtype=torch.float64)
    assert torch.equal(tq.quantize(x, None), x) and torch.equal(tq.stochastic_round(x, None, seed=0), x)


def test_float_formats_beyond_float32_range_on_float32_inputs():
    """qtorch FloatingPoint(8, M) saturates at 2^128 (2 - 2^-M) > float32's max: on float32 inputs the
    default path's saturation gives ±inf (refimpl's ±max cast to float32) -- nearest equals exact, and SR
    stays within one grid gap."""
    x = torch.tensor([1.0, 3e38, -3.4e38, float("inf"), 1e-45, 0.1], dtype=torch.float32)
    for fmt in (FloatingPoint(8, 7), FloatingPoint(8, 23)):
        assert _bits_equal(tq.quantize(x, fmt), tq.quantize(x, fmt, exact=True))
        s = tq.stochastic_round(x, fmt, seed=0)
        lo = tq.stochastic_round(x, fmt, noise=torch.zeros(6, dtype=torch.float64), exact=True)
        hi = tq.stochastic_round(x, fmt, noise=torch.full((6,), 1 - 2**-53, dtype=torch.float64), exact=True)
        assert bool(((s == lo) | (s == hi)).all())
        assert tq.vc_quantize(x[:3], 1e-3, fmt, seed=0).dtype == torch.float32


# ---------------------------------------------------------------------- unbiasedness (MCSE) and a mutation
def _sr_unbiased(sr, dtype, n=400_000) -> bool:
    """E Q^s(x) = x at x = 0.3 on FixedPoint(8, 3) (p = 0.4): |mean − x| <= 4 MCSE + 2^-k Δ (the k-bit
    rule's bias bound; MCSE = sqrt(p(1−p)/n)·Δ), for one call on n equal values."""
    fmt = FixedPoint(8, 3)
    k = 53 if dtype == torch.float64 else 24
    q = sr(torch.full((n,), 0.3, dtype=dtype), fmt)
    tol = 4 * math.sqrt(0.4 * 0.6 / n) * fmt.delta + 2.0**-k * fmt.delta
    return abs(float(q.double().mean()) - 0.3) <= tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_stochastic_rounding_is_unbiased(dtype, seed):
    assert _sr_unbiased(lambda x, fmt: tq.stochastic_round(x, fmt, seed=seed), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_biased_rounding_fails_the_unbiasedness_check(dtype):
    """Mutation: the same counter uniforms compared with frac − 0.01 (P(up) too small by 0.01)."""
    from torchport import counter_rng as cr

    def biased(x, fmt):
        key = cr.key_tensor(cr.stream_key(0, 0, 0, tq.SR_STREAM))
        u = cr.uniforms(key, x.numel(), dtype=x.dtype).reshape(x.shape)
        z = x / fmt.delta
        return (torch.floor(z) + (u < z - torch.floor(z) - 0.01).to(x.dtype)) * fmt.delta

    assert not _sr_unbiased(biased, dtype)


# ---------------------------------------------------------------------- argument rules
def test_noise_belongs_to_the_exact_path_and_step_index_to_the_default_path():
    x = torch.zeros(3, dtype=torch.float64)
    fmt = FixedPoint(8, 3)
    for call in (lambda **k: tq.quantize(x, fmt, "stochastic", **k), lambda **k: tq.stochastic_round(x, fmt, **k)):
        with pytest.raises(ValueError, match=r"noise.*exact=True"):
            call(noise=torch.zeros(3))
        with pytest.raises(ValueError, match=r"step=2.*exact=True"):
            call(seed=0, step=2, exact=True)
        with pytest.raises(ValueError, match=r"index=1.*exact=True"):
            call(seed=0, index=1, exact=True)
        with pytest.raises(TypeError, match="exact"):
            call(seed=0, exact="yes")
    with pytest.raises(ValueError, match=r"noise.*exact=True"):
        tq.vc_quantize(x, 0.1, fmt, noise=(x, x, x))
    with pytest.raises(ValueError, match="step=-1"):
        tq.vc_quantize(x, 0.1, fmt, seed=0, step=-1)
    with pytest.raises(TypeError, match="index=1.5"):
        tq.quantize(x, fmt, index=1.5)


def test_a_format_the_fast_path_lacks_names_fmt_and_exact(monkeypatch):
    """Formats are asked of torchport.fast (check_fast_format): one it does not support is a ValueError
    naming fmt and exact=True, raised before the generator is drawn from; exact=True runs it."""
    monkeypatch.setattr(F, "_SUPPORTED", tuple(t for t in F._SUPPORTED if t is not MXFormat))
    x = torch.linspace(-1, 1, 64, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    for call in (lambda: tq.quantize(x, MXFormat("mxfp8_e4m3")),
                 lambda: tq.stochastic_round(x, MXFormat("mxfp8_e4m3"), g),
                 lambda: tq.vc_quantize(x, 0.1, MXFormat("mxfp8_e4m3"), g)):
        with pytest.raises(ValueError, match=r"fmt=MXFormat.*exact=True"):
            call()
    assert torch.equal(g.get_state(), state)
    tq.stochastic_round(x, MXFormat("mxfp8_e4m3"), g, exact=True)


def test_a_raising_call_draws_nothing():
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    x = torch.zeros(2, 3, dtype=torch.float64)
    bad = [lambda: tq.stochastic_round(x, BlockFloatingPoint(8, 2), g),
           lambda: tq.stochastic_round(x, FixedPoint(8, 3), g, step=-1),
           lambda: tq.quantize(x, FixedPoint(8, 3), "stochastic", g, ties="even"),
           lambda: tq.vc_quantize(x, -1.0, FixedPoint(8, 3), g),
           lambda: tq.vc_quantize(x, 0.1, FixedPoint(8, 3), g, ties="bogus"),
           lambda: tq.stochastic_round(x, FixedPoint(8, 3), g, seed=1)]
    for call in bad:
        with pytest.raises((ValueError, TypeError)):
            call()
    assert torch.equal(g.get_state(), state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_default_path_equals_cpu_bit_for_bit():
    """The counter stream is a function of (seed, step, index, element) only: CUDA gives the CPU's bits."""
    from torchport.nn import Quantizer

    for fmt in (FixedPoint(8, 3), BlockFloatingPoint(8, 0), FloatingPoint(5, 2), MXFormat("mxfp8_e4m3")):
        for dtype in (torch.float64, torch.float32):
            x = (torch.randn(16, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2).to(dtype)
            for call in (lambda t, f=fmt: tq.quantize(t, f), lambda t, f=fmt: tq.stochastic_round(t, f, seed=3, step=1),
                         lambda t, f=fmt: tq.vc_quantize(t, 1e-2, f, seed=3, index=2)):
                assert _bits_equal(call(x.cuda()).cpu(), call(x))
            q_cpu, q_gpu = Quantizer(fmt, fmt, seed=5, index=1), Quantizer(fmt, fmt, seed=5, index=1).cuda()
            assert _bits_equal(q_gpu(x.cuda()).cpu(), q_cpu(x)) and int(q_gpu.calls) == 1
