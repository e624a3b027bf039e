"""torchport.counter_rng: bit-identical to refimpl.counter_rng, shard-invariant, usable under torch.compile."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from refimpl import counter_rng as C
from torchport import counter_rng as T

KEYS = [C.stream_key(0, 0, 0, "xi"), C.stream_key(20240601, 123456, 77, "u_cat"), (1 << 64) - 1, 1 << 63, 0]


@pytest.mark.parametrize("key", KEYS)
def test_bits_and_uniforms_bit_identical_to_refimpl(key):
    kt = T.key_tensor(key)
    idx = torch.arange(0, 5000, dtype=torch.int64)
    bits = T.counter_bits(kt, idx).numpy().view(np.uint64)
    assert [int(b) for b in bits[:50]] == [C._bits_py(key, i) for i in range(50)]
    assert np.array_equal(T.uniforms(kt, 5000).numpy(), C.uniforms(key, 5000))
    u32 = T.uniforms(kt, 5000, dtype=torch.float32)
    assert u32.dtype == torch.float32
    assert np.array_equal(u32.double().numpy(), C.uniforms(key, 5000, bits=24))


def test_large_element_indices_agree():
    key = C.stream_key(1, 2, 3, "u_weight")
    start = (1 << 40) + 12345
    assert np.array_equal(T.uniforms(T.key_tensor(key), 100, start=start).numpy(), C.uniforms(key, 100, start=start))


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_generation_equals_whole(shards):
    kt = T.key_tensor(C.stream_key(5, 9, 1, "xi"))
    n = 1000
    edges = np.linspace(0, n, shards + 1).astype(int)
    for draw in (T.uniforms, T.normals):
        for dtype in (torch.float64, torch.float32):
            whole = draw(kt, n, dtype=dtype)
            parts = [draw(kt, int(b - a), start=int(a), dtype=dtype) for a, b in zip(edges[:-1], edges[1:])]
            assert torch.equal(torch.cat(parts), whole)


def test_normals_within_the_documented_ulp_bound_of_refimpl():
    """float64: |Δz| <= 4 ulp(|z|) + 4·2^-53 (torch log/cos vs libm); float32: |Δz| <= 2^-18 (1 + |z|)."""
    for seed in range(3):
        key = C.stream_key(seed, 1, 2, "xi")
        kt = T.key_tensor(key)
        z = C.normals(key, 100_000)
        zt = T.normals(kt, 100_000).numpy()
        assert np.all(np.abs(zt - z) <= 4 * np.spacing(np.abs(z)) + 4 * 2.0**-53)
        z24 = C.normals(key, 100_000, bits=24)
        z32 = T.normals(kt, 100_000, dtype=torch.float32).double().numpy()
        assert np.all(np.abs(z32 - z24) <= 2.0**-18 * (1 + np.abs(z24)))


def test_compiled_counter_stream_equals_eager():
    """Under torch.compile (inductor C++ here) the integer ops give the same bits as eager."""
    def draw(key, x):
        return T.uniforms(key, x.numel(), dtype=x.dtype), T.normals(key, x.numel(), dtype=x.dtype)

    try:
        compiled = torch.compile(draw, dynamic=True)
        kt = T.key_tensor(C.stream_key(3, 4, 5, "xi"))
        x = torch.zeros(257, dtype=torch.float64)
        u_c, z_c = compiled(kt, x)
    except Exception as exc:  # pragma: no cover - no compiler on this machine
        pytest.skip(f"torch.compile unavailable: {type(exc).__name__}")
    u_e, z_e = draw(kt, x)
    assert torch.equal(u_c, u_e)
    assert torch.all((z_c - z_e).abs() <= 4 * torch.finfo(torch.float64).eps * (1 + z_e.abs()))


# ------------------------------------------------------------------ the float32 replay (refimpl.counter_rng, dtype="float32")
def _ulps32(got, want):
    want = np.asarray(want, dtype=np.float32)
    return np.abs(np.asarray(got, dtype=np.float64) - want) / np.spacing(np.abs(want)).astype(np.float64)


def test_float32_normals_within_3_ulp_of_the_float32_replay():
    """torch's float32 Box–Muller against the replay's (the same float32 operations, log/sqrt/cos correctly
    rounded): <= 3 ulp(|z|) -- the measured maximum over 5·10^5 draws here (torch's float32 log, sqrt and cos
    are each within 1 ulp of the correctly rounded value, not equal to it; the worst case is about 5 ulp).
    Mutation: the replay's normals from 53-bit uniforms (rounded to float32) exceed the bound."""
    worst, worst53, same = 0.0, 0.0, 0
    for key in KEYS:
        zt = T.normals(T.key_tensor(key), 100_000, dtype=torch.float32).numpy()
        worst = max(worst, float(_ulps32(zt, C._normals_f32(key, 100_000)).max()))
        same += int(np.sum(zt == C._normals_f32(key, 100_000)))
        with np.errstate(divide="ignore", invalid="ignore"):
            worst53 = max(worst53, float(np.nanmax(_ulps32(zt, C._normals_f32(key, 100_000, bits=53)))))
    assert worst <= 3.0
    assert same >= 0.7 * 500_000  # most draws are bit-identical (measured 80 %)
    assert worst53 > 3.0


_VC_FORMATS = ["fixed:8:6", "fixed:4:2", "bfp:8:0", "bfp:6:1", "bfp:8", "float:5:2", "float:4:3", "ieee:bfloat16",
               "ieee:float16", "ieee:float8_e4m3fn", "ieee:float8_e5m2"]


def _vc_inputs():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((24, 60)) * np.exp(rng.uniform(-8, 3, (24, 1)))).astype(np.float32)
    x[5, 7], x[6, 1], x[9, 3] = np.nan, np.inf, -np.inf
    x[3, :] = x[3, :] * np.float32(2.0 ** -20)
    return x


def _vc_noise32(shape):
    n = int(np.prod(shape))
    keys = [T.key_tensor(C.stream_key(1, 2, 3, s)) for s in ("xi", "u_round", "u_cat")]
    return (T.normals(keys[0], n, dtype=torch.float32).reshape(shape),
            T.uniforms(keys[1], n, dtype=torch.float32).reshape(shape),
            T.uniforms(keys[2], n, dtype=torch.float32).reshape(shape))


@pytest.mark.parametrize("fmt_text", _VC_FORMATS)
def test_float32_vc_replay_equals_the_fast_path_fed_the_same_noise(fmt_text):
    """The replay's float32 Q^vc (``_vc32``) and the fast path's (``torchport.fast._vc_tensor``, float32), fed the
    same float32 noise, agree bit for bit -- both branches, escapes, NaN/±inf, both flags, ties=even, and V at
    the branch threshold: V = Δ²/4·(1 + 2^-30) (Δ of x[0, 0]) is Δ²/4 in float32 (branch 2) but above it in
    float64 (branch 1).
    Mutation: refimpl's float64 Q^vc on the same values and noise differs there (the float32 arithmetic is
    what the replay must follow)."""
    from refimpl.formats import parse_format
    from torchport import fast as F

    import refimpl

    fmt = parse_format(fmt_text)
    x = _vc_inputs()
    xi, ur, uc = _vc_noise32(x.shape)
    gap = float(np.asarray(refimpl.vc_gap(x.astype(np.float64), fmt)).reshape(-1)[0])  # Δ of x[0, 0] in its block
    differs64 = 0
    for var in (0.0, 1e-7, 1e-4, 1e-2, 0.5, gap * gap / 4 * (1 + 2.0 ** -30)):
        for kw in ({}, {"vc_published": True}, {"ties": "even"}):
            got = F._vc_tensor(torch.from_numpy(x), var, fmt, F._code(fmt, kw.get("ties"), kw.get("vc_published", False)),
                               xi, ur, uc).numpy()
            want = C._vc32(x, var, fmt, xi.numpy(), ur.numpy(), uc.numpy(), **kw)
            assert want.dtype == np.float32
            assert np.array_equal(got, want, equal_nan=True), (var, kw)
            w64 = C._vc(x.astype(np.float64), var, fmt, *(t.double().numpy() for t in (xi, ur, uc)), **kw)
            differs64 += int(np.sum(~((w64.astype(np.float32) == got) | np.isnan(got))))
    assert differs64 > 0


@pytest.mark.parametrize("fmt_text, mu", [("ieee:bfloat16", 0.0), ("ieee:bfloat16", 1e-39), ("bfp:8:0", 1e-39)])
def test_float32_fast_vc_on_grids_below_float32_range_is_refimpls(fmt_text, mu):
    from refimpl.formats import parse_format
    from torchport import fast as F

    fmt = parse_format(fmt_text)
    x = np.full((1, 4), mu, dtype=np.float32)
    xi, ur, uc = _vc_noise32(x.shape)
    got = F._vc_tensor(torch.from_numpy(x), 1e-4, fmt, F._code(fmt), xi, ur, uc).numpy()
    want = C._vc(x.astype(np.float64), 1e-4, fmt, *(t.double().numpy() for t in (xi, ur, uc))).astype(np.float32)
    assert np.array_equal(C._vc32(x, 1e-4, fmt, xi.numpy(), ur.numpy(), uc.numpy()), want)  # the replay's value
    assert np.array_equal(got, want)


def _float32_steps(fmt_text, family, mode, steps=8, shape=(32, 40)):
    """(flips of the grid values, max float32 ulps of the continuous values, elements) of a float32 fast run
    against the float32 replay, each step from the torch state before it."""
    from refimpl.formats import parse_format
    from torchport import fast as F

    fmt = parse_format(fmt_text)
    gen = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter((torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.5).to(torch.float32))
    acc = "full" if mode == "full" else "low"
    kw = dict(lr=0.01, temperature=1.0, num_data=1, weight_format=fmt, accumulator=acc,
              variance_corrected=mode == "vc", seed=3)
    if family == "sgld":
        opt = F.FastLowPrecisionSGLD([w], **kw)
        sd = math.sqrt(0.02)
    else:
        opt = F.FastLowPrecisionSGHMC([w], friction=2.0, inverse_mass=2.0, **kw)
        sd = math.sqrt(max(opt.coeffs[4], opt.coeffs[5]))
    flips, worst, n = 0, 0.0, 0
    for k in range(steps):
        g = torch.randn(*shape, generator=gen, dtype=torch.float64).to(torch.float32)
        st = opt.state[w]
        th0, a0 = w.detach().numpy().copy(), (st["accumulator"].numpy().copy() if acc == "full" else None)
        v0 = st["velocity"].numpy().copy() if family == "sghmc" else None
        w.grad = g.clone()
        opt.step()
        common = dict(seed=3, step=k, param_index=0, weight_format=fmt, grad_format=fmt, accumulator=acc,
                      variance_corrected=mode == "vc", dtype="float32")
        if family == "sgld":
            th, ac = C.replay_sgld_step(th0, a0, g.numpy(), lr=0.01, temperature=1.0, num_data=1, **common)
            pairs = [(w.detach().numpy(), th, None, None)]
        else:
            th, ac, v = C.replay_sghmc_step(th0, a0, v0, g.numpy(), coeffs=opt.coeffs, velocity_format=fmt, **common)
            pairs = [(w.detach().numpy(), th, None, None),
                     (st["velocity"].numpy(), v, v0 if acc == "full" else None, acc == "full")]
        if acc == "full":
            pairs.append((st["accumulator"].numpy(), ac, a0, True))
        for got, want, prev, continuous in pairs:
            assert want.dtype == np.float32
            n += got.size
            if continuous:
                big = np.maximum(np.maximum(np.abs(got), np.abs(want)), np.maximum(np.abs(prev), sd * 5.77))
                worst = max(worst, float((np.abs(got.astype(np.float64) - want) / np.spacing(big.astype(np.float32))).max()))
            else:
                flips += int(np.sum(got != want))
    return flips, worst, n


@pytest.mark.parametrize("fmt_text", ["fixed:8:5", "bfp:8:0", "float:5:4", "mxfp8_e4m3"])
@pytest.mark.parametrize("family", ["sgld", "sghmc"])
@pytest.mark.parametrize("mode", ["full", "low", "vc"])
def test_float32_steps_replay_with_zero_flips(fmt_text, family, mode):
    """Float32 LP-SGLD / LP-SGHMC steps (10^4 elements per case) against ``replay_*_step(..., dtype="float32")``:
    zero grid flips; the continuous values (accumulator, LP-F velocity) within 2 float32 ulp of the largest
    magnitude in the step's sum (|values|, sd·5.77) -- the measured maximum, under crosscheck's FAST32_ULPS = 8."""
    flips, worst, n = _float32_steps(fmt_text, family, mode)
    assert n > 0 and flips == 0 and worst <= 2.0, (flips, worst)
