"""Edge cases of the default path's quantizers (torchport.fast), issue 11.

1. float32 Q^vc on grids below float32's scaling range (Δ = 2^se, se < -127): refimpl's float64
   value cast to float32, which is the float32 replay ``refimpl.counter_rng._vc32``;
2. qtorch ``FloatingPoint(8, M)`` (largest value above float32's) on float32: no crash, refimpl's
   float64 value cast (saturation to ±max becomes ±inf);
3. empty tensors for every format, quantizers and optimizers;
4. ``stochastic_round_fast``'s ``start`` on a shard of rows.
"""

import math

import numpy as np
import pytest
import torch

import refimpl
from refimpl import counter_rng as C
from refimpl.formats import NVFP4, BlockFloatingPoint, FixedPoint, FloatingPoint, IEEEFloat, MXFormat
from torchport import counter_rng as T
from torchport import fast as F
from torchport import quantize as TQ

F32 = np.float32


def _noise32(shape, seed=1):
    """(ξ, u_round, u_cat) of the float32 fast path, stream keys (seed, 2, 3, name)."""
    n = int(np.prod(shape))
    keys = [T.key_tensor(C.stream_key(seed, 2, 3, s)) for s in ("xi", "u_round", "u_cat")]
    return (T.normals(keys[0], n, dtype=torch.float32).reshape(shape),
            T.uniforms(keys[1], n, dtype=torch.float32).reshape(shape),
            T.uniforms(keys[2], n, dtype=torch.float32).reshape(shape))


def _same(a, b):
    """Bitwise equality of two float arrays (NaN equal to NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def _tiny_mix():
    """float32 rows (blocks of 8): tiny blocks (max below 2^-121), zeros, a tiny element next to normal ones,
    subnormals, and ordinary values."""
    rng = np.random.default_rng(7)
    rows = [rng.standard_normal(8) * 2.0 ** -130, np.zeros(8), rng.standard_normal(8) * 2.0 ** -140,
            rng.standard_normal(8) * 2.0 ** -124, rng.standard_normal(8) * 2.0 ** -118,
            np.r_[rng.standard_normal(7) * 2.0 ** -135, 1.5], rng.standard_normal(8),
            np.r_[1e-45, -1e-45, 0.0, 2.0 ** -126, -(2.0 ** -127), 1e-39, -1e-39, 3e-40]]
    return np.array(rows).astype(F32)


TINY_FORMATS = [BlockFloatingPoint(8, dim=0), BlockFloatingPoint(4, dim=0), BlockFloatingPoint(16, dim=0),
                BlockFloatingPoint(8), IEEEFloat("bfloat16"), FloatingPoint(8, 3), FloatingPoint(8, 7),
                FixedPoint(16, 130)]


# ----------------------------------------------------------------------------- 1. tiny grids
@pytest.mark.parametrize("fmt", TINY_FORMATS, ids=repr)
@pytest.mark.parametrize("var", [0.0, 1e-60, 1e-4])
@pytest.mark.parametrize("published", [False, True])
def test_float32_vc_on_tiny_grids_is_refimpls_float64_value_cast(fmt, var, published):
    x = _tiny_mix()
    if isinstance(fmt, BlockFloatingPoint) and fmt.dim is None:
        x = x[:3]  # one block: the tiny rows alone
    xi, ur, uc = _noise32(x.shape)
    code = F._code(fmt, None, published)
    got = F._vc_tensor(torch.from_numpy(x), var, fmt, code, xi, ur, uc).numpy()
    with np.errstate(all="ignore"):
        want = C._vc32(x, var, fmt, xi.numpy(), ur.numpy(), uc.numpy(), vc_published=published)
        tiny = np.broadcast_to(C._vc32_arith(x, var, fmt, code, xi.numpy(), ur.numpy(), uc.numpy())[1], x.shape)
    w64 = C._vc(x.astype(np.float64), var, fmt, *(t.double().numpy() for t in (xi, ur, uc)),
                vc_published=published).astype(F32)
    assert tiny.any()  # the case of the bug is present
    assert _same(got, want)
    assert _same(got[tiny], w64[tiny])  # on those elements: refimpl's float64 value, rounded once
    # was ±max of the format (or NaN): now |μ| (< 2^-100) plus a draw of sd sqrt(V) (8 sd: P < 1e-14)
    assert np.isfinite(got[tiny]).all() and np.all(np.abs(got[tiny]) < 2.0 ** -100 + 8 * math.sqrt(var))


def test_tiny_grid_fallback_is_needed_and_changes_nothing_else(monkeypatch):
    """Mutation: without the float64 fallback (threshold moved off), tiny grids give ±max/NaN again; the
    other elements keep their bits."""
    x = _tiny_mix()
    xi, ur, uc = _noise32(x.shape)
    for fmt in (IEEEFloat("bfloat16"), BlockFloatingPoint(8, dim=0)):
        args = (torch.from_numpy(x), 1e-4, fmt, F._code(fmt), xi, ur, uc)
        fixed = F._vc_tensor(*args).numpy()
        with np.errstate(all="ignore"):
            tiny = np.broadcast_to(C._vc32_arith(x, 1e-4, fmt, F._code(fmt), xi.numpy(), ur.numpy(),
                                                 uc.numpy())[1], x.shape)
        monkeypatch.setattr(F, "_SE_MIN_F32", -(10 ** 6))
        broken = F._vc_tensor(*args).numpy()
        monkeypatch.undo()
        assert _same(fixed[~tiny], broken[~tiny])
        assert not np.any(fixed[tiny] == broken[tiny])


def test_public_float32_vc_quantize_on_bfloat16_zero_is_a_small_draw():
    """vc_quantize(0, V, bfloat16) in float32 (the default path): ~ N(0, V) rounded onto bfloat16's grid, not ±3.4e38."""
    mu = torch.zeros(4096)
    out = TQ.vc_quantize(mu, 1e-4, IEEEFloat("bfloat16"), seed=3)
    assert torch.isfinite(out).all() and float(out.abs().max()) < 0.1
    assert torch.equal(out, out.to(torch.bfloat16).float())  # on the grid
    # sample variance of V = 1e-4 draws: 4096 samples, standard error of the variance ~ V·sqrt(2/4096)
    v = float(out.double().var())
    assert abs(v - 1e-4) < 5 * 1e-4 * math.sqrt(2 / 4096)


@pytest.mark.parametrize("fmt", [FixedPoint(8, 6), BlockFloatingPoint(8, dim=0), BlockFloatingPoint(8),
                                 FloatingPoint(5, 2), IEEEFloat("bfloat16"), IEEEFloat("float16"), FixedPoint(16, 130)],
                         ids=repr)
@pytest.mark.parametrize("var", [0.0, 1e-4, 10.0])
def test_vc_of_infinite_mu_is_refimpls(fmt, var):
    """±inf μ: refimpl's ±hi / saturation (it was NaN: 0·inf in the broadcast of lo/hi), float64 and float32."""
    x = np.array([[1.0, np.inf, -np.inf, 0.5, np.nan, 3.0, -2.0, 1e-3]])
    for dt in (torch.float64, torch.float32):
        xx = torch.from_numpy(x).to(dt)
        xi, ur, uc = (t.to(dt) for t in _noise32(x.shape))
        got = F._vc_tensor(xx, var, fmt, F._code(fmt), xi, ur, uc).numpy()
        want = C._vc(xx.double().numpy(), var, fmt, *(t.double().numpy() for t in (xi, ur, uc)))
        if dt == torch.float64:
            assert _same(got, want)
        else:
            with np.errstate(all="ignore"):
                assert _same(got, C._vc32(xx.numpy(), var, fmt, xi.numpy(), ur.numpy(), uc.numpy()))
        assert not np.isnan(got[0, 1:3]).any()
        assert _same(got[0, 1:3], want[0, 1:3].astype(got.dtype))


# ----------------------------------------------------------------------------- 2. FloatingPoint(8, M) on float32
BIG = np.array([1.0, -3e38, 3.4028235e38, -3.4028235e38, 3.3e38, 2e38, np.inf, -np.inf, np.nan, 1e-39, 0.0,
                -0.0, 1e-45, 6.5, -1e30], dtype=F32)


@pytest.mark.parametrize("fmt", [FloatingPoint(8, 3), FloatingPoint(8, 7), FloatingPoint(8, 1)], ids=repr)
def test_float32_exp8_float_format_nearest_and_sr_are_refimpls_cast(fmt):
    assert fmt.max > np.finfo(F32).max
    x = torch.from_numpy(BIG.copy())
    with np.errstate(over="ignore"):
        want = refimpl.quantize(BIG.astype(np.float64), fmt).astype(F32)
    assert _same(F.quantize_fast(x, fmt).numpy(), want)
    assert np.isinf(want[2]) and np.isinf(want[6])  # saturation to max beyond float32: ±inf
    got = F.stochastic_round_fast(x, fmt, seed=4).numpy()
    key = T.key_tensor(T.stream_key(4, 0, 0, "u_weight"))
    u = T.uniforms(key, x.numel(), dtype=torch.float32).numpy()
    with np.errstate(over="ignore"):
        assert _same(got, C._sr32(BIG, fmt, u))
    assert _same(TQ.quantize(x, fmt).numpy(), want)
    # the public default path computes float32 in float32 now: the same bits as stochastic_round_fast
    assert _same(TQ.quantize(x, fmt, "stochastic", seed=4).numpy(), got)


@pytest.mark.parametrize("fmt", [FloatingPoint(8, 3), FloatingPoint(8, 7)], ids=repr)
def test_float32_exp8_float_format_vc_is_the_float32_replay(fmt):
    x = np.resize(BIG, (4, 15)).astype(F32)
    x[1:] *= np.float32(0.5)
    xi, ur, uc = _noise32(x.shape)
    inf = np.isinf(x)
    for var in (0.0, 1e-6, 1e30):
        got = F._vc_tensor(torch.from_numpy(x), var, fmt, F._code(fmt), xi, ur, uc).numpy()
        with np.errstate(all="ignore"):
            want = C._vc32(x, var, fmt, xi.numpy(), ur.numpy(), uc.numpy())
            w64 = C._vc(x.astype(np.float64), var, fmt, *(t.double().numpy() for t in (xi, ur, uc))).astype(F32)
        assert _same(got[~inf], want[~inf])
        # ±inf μ: refimpl saturates to ±max, which is ±inf in float32 (the replay's float32 exponent of inf
        # is frexp's 0, so it gives ±0.9375 there: noticed, refimpl/counter_rng.py left alone)
        assert _same(got[inf], w64[inf]) and np.isinf(got[inf]).all()
    out = TQ.vc_quantize(torch.from_numpy(x), 1e-6, fmt, seed=2)
    assert _same(out.numpy(), F.vc_quantize_fast(torch.from_numpy(x), 1e-6, fmt, seed=2).numpy())


@pytest.mark.parametrize("family", ["sgld", "sghmc"])
@pytest.mark.parametrize("vc", [False, True])
def test_float32_optimizers_with_exp8_float_format(family, vc):
    from torchport.optim import LowPrecisionSGHMC, LowPrecisionSGLD

    gen = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, 5, generator=gen))
    kw = dict(weight_format="float:8:3", accumulator="low" if vc else "full", variance_corrected=vc, seed=1)
    opt = LowPrecisionSGLD([w], lr=0.01, **kw) if family == "sgld" else LowPrecisionSGHMC([w], lr=0.01, **kw)
    for _ in range(3):
        w.grad = torch.randn(6, 5, generator=gen)
        opt.step()
    opt.check_finite()
    assert torch.isfinite(w).all()
    assert torch.equal(w.detach(), F.quantize_fast(w.detach(), FloatingPoint(8, 3)))  # on the grid


# ----------------------------------------------------------------------------- 3. empty tensors
ALL_FORMATS = [FixedPoint(8, 6), BlockFloatingPoint(8), BlockFloatingPoint(8, dim=0), BlockFloatingPoint(8, dim=1),
               FloatingPoint(5, 2), FloatingPoint(8, 3), IEEEFloat("bfloat16"), MXFormat("mxfp8_e4m3"),
               MXFormat("mxint8"), NVFP4()]


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=repr)
@pytest.mark.parametrize("shape", [(0,), (0, 4), (4, 0), (2, 0, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_empty_tensors(fmt, shape, dtype):
    if isinstance(fmt, BlockFloatingPoint) and fmt.dim is not None and fmt.dim >= len(shape):
        pytest.skip("no such block axis")
    x = torch.zeros(shape, dtype=dtype)
    for out in (F.quantize_fast(x, fmt), F.stochastic_round_fast(x, fmt, seed=1),
                F.vc_quantize_fast(x, 0.01, fmt, seed=1), F.vc_quantize_fast(x, 0.0, fmt, seed=1)):
        assert out.shape == x.shape and out.dtype == dtype and out.numel() == 0


@pytest.mark.parametrize("fmt", ["bfp:8:0", "bfp:8", "mxfp8_e4m3", "nvfp4", "fixed:8:6"])
@pytest.mark.parametrize("family", ["sgld", "sghmc"])
@pytest.mark.parametrize("vc", [False, True])
def test_optimizers_with_an_empty_parameter(fmt, family, vc):
    """(0, 4) and (4, 0) parameters step (nothing to update); the other parameter's bits are those of a run
    without them (they come last, so the parameter indices of the counter keys agree)."""
    from torchport.optim import LowPrecisionSGHMC, LowPrecisionSGLD

    cls = LowPrecisionSGLD if family == "sgld" else LowPrecisionSGHMC
    kw = dict(weight_format=fmt, accumulator="low" if vc else "full", variance_corrected=vc, seed=1)
    gen = torch.Generator().manual_seed(5)
    w0 = torch.randn(3, 64, generator=gen)
    grads = [torch.randn(3, 64, generator=gen) for _ in range(2)]
    runs = []
    for with_empty in (True, False):
        w = torch.nn.Parameter(w0.clone())
        empties = [torch.nn.Parameter(torch.zeros(0, 4)), torch.nn.Parameter(torch.zeros(4, 0))] if with_empty else []
        opt = cls([w, *empties], lr=0.01, **kw)
        for g in grads:
            w.grad = g.clone()
            for e in empties:
                e.grad = torch.zeros_like(e)
            opt.step()
        opt.check_finite()
        assert all(e.shape in ((0, 4), (4, 0)) for e in empties)
        runs.append(w.detach().clone())
    assert torch.equal(runs[0], runs[1])


# ----------------------------------------------------------------------------- 4. start on a shard of rows
@pytest.mark.parametrize("fmt", [BlockFloatingPoint(8, dim=0), MXFormat("mxfp8_e4m3"), NVFP4(), FixedPoint(8, 6)],
                         ids=repr)
def test_stochastic_round_fast_start_on_a_shard_of_rows(fmt):
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(2)) * torch.logspace(-3, 3, 6).reshape(6, 1)
    full = F.stochastic_round_fast(x, fmt, seed=9)
    shard = F.stochastic_round_fast(x[2:5], fmt, seed=9, start=2 * 64)
    assert torch.equal(shard, full[2:5])


def test_stochastic_round_fast_start_on_one_bfp_block_is_the_shards_own_block():
    """BFP dim=None is one block over the tensor: a shard has its own block (the docstring says so)."""
    x = torch.tensor([1e-3, 2e-3, 3e-3, 100.0])
    fmt = BlockFloatingPoint(8)
    shard = F.stochastic_round_fast(x[:3], fmt, seed=9, start=0)
    assert torch.equal(shard, F.stochastic_round_fast(x[:3].clone(), fmt, seed=9))
    assert not torch.equal(shard, F.stochastic_round_fast(x, fmt, seed=9)[:3])



@pytest.mark.parametrize("fmt", [FloatingPoint(10, 50), FloatingPoint(9, 4), FloatingPoint(9, 23)], ids=repr)
def test_float32_wide_exponent_formats_on_subnormals_are_refimpls_cast(fmt):
    """e_min below float32's (-126): 2^-e of a float32 subnormal overflows; two-step scaling (was ±inf)."""
    x = np.array([1.0153e-40, -2.4724e-40, 1e-45, 1e-39, 1.5e-38, 3.0, -0.1, 0.0, np.inf, np.nan], dtype=F32)
    with np.errstate(all="ignore"):
        want = refimpl.quantize(x.astype(np.float64), fmt).astype(F32)
    assert _same(F.quantize_fast(torch.from_numpy(x), fmt).numpy(), want)
    got = F.stochastic_round_fast(torch.from_numpy(x), fmt, seed=4).numpy()
    u = T.uniforms(T.key_tensor(T.stream_key(4, 0, 0, "u_weight")), x.size, dtype=torch.float32).numpy()
    with np.errstate(all="ignore"):
        assert _same(got, C._sr32(x, fmt, u))
    if fmt.man >= 23:  # every finite float32 value lies on this grid
        assert _same(got[:8], x[:8])


def test_tiny_grid_select_without_host_read_gives_the_same_bits(monkeypatch):
    """Off CPU the float64 values are always computed and selected: forced here, the bits are the same
    (with and without tiny-grid elements)."""
    for x in (_tiny_mix(), np.random.default_rng(3).standard_normal((8, 8)).astype(F32)):
        xi, ur, uc = _noise32(x.shape)
        for fmt in (IEEEFloat("bfloat16"), BlockFloatingPoint(8, dim=0), FloatingPoint(8, 3)):
            args = (torch.from_numpy(x), 1e-4, fmt, F._code(fmt), xi, ur, uc)
            plain = F._vc_tensor(*args).numpy()
            monkeypatch.setattr(F, "_any_on_host", lambda mask: True)
            forced = F._vc_tensor(*args).numpy()
            monkeypatch.undo()
            assert _same(plain, forced)
