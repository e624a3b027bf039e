"""torchport.fast: the fast path against refimpl's replay of the same counter stream.

Parity in float64 (eager) is bit for bit, or within the documented ulp bound with zero
grid flips where a Box–Muller normal enters (docs/fast_path.md); float32 within its
documented bound.  Statistical properties of the k-bit rounding are tested in
tests/refimpl/test_counter_rng.py.
"""

from __future__ import annotations

import copy
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from refimpl import counter_rng as C
from refimpl.formats import parse_format
from torchport import counter_rng as cr
from torchport import fast as F

rq = importlib.import_module("refimpl.quantize")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _gloo import assert_one_and_two_ranks_agree  # noqa: E402  (tests/_gloo.py)

FORMATS = ["fixed:8:6", "fixed:4:2", "bfp:8", "bfp:8:0", "bfp:6:1", "float:5:2", "float:4:3", "ieee:bfloat16",
           "ieee:float8_e4m3fn", "ieee:float8_e5m2", "mxfp8_e4m3", "mxfp4", "mxint8", "nvfp4", "mxfp6_e2m3:0"]
#: MX / NVFP4 on wide rows (several blocks, a partial last one); NVFP4 with a tensor scale that is not
#: a power of two (x/s inexact: the fast path computes MX blocks in float64)
MX_FORMATS = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8", "nvfp4",
              "nvfp4:-1:0.30000001192092896", "mxfp4:0"]


def _x(shape=(24, 7), scale=0.6, seed=0):
    x = np.random.default_rng(seed).normal(0.0, scale, size=shape)
    x[0, 0], x[1, 1] = 0.0, 3.0  # a zero and a value that saturates most formats
    return x


@pytest.mark.parametrize("fmt_text", FORMATS)
def test_nearest_equals_refimpl(fmt_text):
    fmt = parse_format(fmt_text)
    x = _x()
    assert np.array_equal(F.quantize_fast(torch.tensor(x), fmt).numpy(), rq.quantize(x, fmt))
    x32 = x.astype(np.float32)
    got = F.quantize_fast(torch.tensor(x32), fmt)
    assert got.dtype == torch.float32
    assert np.array_equal(got.double().numpy(), rq.quantize(x32.astype(np.float64), fmt).astype(np.float32))


@pytest.mark.parametrize("fmt_text", FORMATS)
def test_stochastic_rounding_equals_refimpl_replay(fmt_text):
    fmt = parse_format(fmt_text)
    x = _x()
    key = C.stream_key(5, 3, 2, "u_weight")
    want = C.sr_round(x, fmt, C.uniforms(key, x.size).reshape(x.shape))
    got = F.stochastic_round_fast(torch.tensor(x), fmt, seed=5, step=3, param_index=2)
    assert np.array_equal(got.numpy(), want)
    x32 = x.astype(np.float32).astype(np.float64)
    want32 = C.sr_round(x32, fmt, C.uniforms(key, x.size, bits=24).reshape(x.shape))
    got32 = F.stochastic_round_fast(torch.tensor(x32, dtype=torch.float32), fmt, seed=5, step=3, param_index=2)
    assert np.array_equal(got32.double().numpy(), want32.astype(np.float32))


def _vc_noise(seed, step, index, shape, bits=53):
    n = int(np.prod(shape))
    return [(C.normals if s == "xi" else C.uniforms)(C.stream_key(seed, step, index, s), n, bits=bits).reshape(shape)
            for s in ("xi", "u_round", "u_cat")]


@pytest.mark.parametrize("fmt_text", FORMATS)
@pytest.mark.parametrize("var", [0.0, 1e-7, 1e-4, 1e-2, 0.5])
def test_vc_equals_refimpl_vc_into_on_the_counter_noise(fmt_text, var):
    """Both branches, the BFP/float escape re-rounding and (var large) saturation: zero flips in float64."""
    fmt = parse_format(fmt_text)
    x = _x(seed=1)
    want = C._vc(x, var, fmt, *_vc_noise(7, 0, 0, x.shape))
    got = F.vc_quantize_fast(torch.tensor(x), var, fmt, seed=7).numpy()
    assert np.sum(got != want) == 0
    got32 = F.vc_quantize_fast(torch.tensor(x, dtype=torch.float32), var, fmt, seed=7).double().numpy()
    assert np.mean(got32 != want.astype(np.float32)) <= 1e-2  # float32 arithmetic + 24-bit noise: documented bound


def _x_mx(seed=0):
    """Rows of 70 (blocks of 32/16 and a partial one), an all-zero block, a NaN block, ±inf, a spike."""
    x = np.random.default_rng(seed).normal(0.0, 0.6, size=(6, 70))
    x[0, :40] = 0.0
    x[1, 5] = np.nan
    x[2, 3], x[3, 66] = np.inf, -np.inf
    x[4, 10] = 1e6
    x[5, :32] *= 1e-30
    return x


@pytest.mark.parametrize("fmt_text", MX_FORMATS)
def test_mx_nearest_sr_and_vc_equal_refimpl_bit_for_bit(fmt_text):
    """MX on the fast path: Q^d = refimpl.quantize, Q^s = the replay's k-bit rule, Q^vc = refimpl's vc_into on the
    counter noise (zero flips), in float64 and -- since MX blocks are computed in float64 -- float32 as well."""
    fmt = parse_format(fmt_text)
    x = _x_mx()
    assert np.array_equal(F.quantize_fast(torch.tensor(x), fmt).numpy(), rq.quantize(x, fmt), equal_nan=True)
    key = C.stream_key(5, 3, 2, "u_weight")
    for bits, dtype in ((53, torch.float64), (24, torch.float32)):
        xin = x.astype(np.float32).astype(np.float64) if bits == 24 else x
        want = C.sr_round(xin, fmt, C.uniforms(key, x.size, bits=bits).reshape(x.shape))
        got = F.stochastic_round_fast(torch.tensor(xin, dtype=dtype), fmt, seed=5, step=3, param_index=2)
        assert got.dtype == dtype
        with np.errstate(over="ignore"):  # ±inf saturates to ±max·2^127, which is inf in float32 (as refimpl)
            assert np.array_equal(got.double().numpy(), want.astype(got.numpy().dtype), equal_nan=True)
    for var in (0.0, 1e-4, 0.5):
        want = C._vc(x, var, fmt, *_vc_noise(7, 0, 0, x.shape))
        got = F.vc_quantize_fast(torch.tensor(x), var, fmt, seed=7).numpy()
        assert np.array_equal(got, want, equal_nan=True), var
        # float32: the same float64 kernel fed the float32 counter noise (24-bit uniforms, float32 normals)
        x32 = torch.tensor(x, dtype=torch.float32)
        keys = [cr.key_tensor(C.stream_key(7, 0, 0, s)) for s in ("xi", "u_round", "u_cat")]
        noise = [F._noise_like(k, x32, kind).double().numpy() for k, kind in zip(keys, ("normal", "uniform", "uniform"))]
        want32 = C._vc(x32.double().numpy(), var, fmt, *noise)
        got32 = F.vc_quantize_fast(x32, var, fmt, seed=7)
        with np.errstate(over="ignore"):
            assert np.array_equal(got32.double().numpy(), want32.astype(np.float32), equal_nan=True), var


def test_mx_sr_keeps_zero_signs_nan_blocks_and_saturates_inf():
    fmt = parse_format("mxfp8_e4m3")
    x = torch.zeros(2, 40, dtype=torch.float64)
    x[0, 1] = -0.0
    x[1, 0], x[1, 33] = float("nan"), float("inf")
    q = F.stochastic_round_fast(x, fmt, seed=1)
    assert torch.signbit(q[0, 1]) and not torch.signbit(q[0, 0]) and torch.all(q[0] == 0)
    assert torch.all(torch.isnan(q[1, :32])) and q[1, 33] == 448.0 * 2.0**127


@pytest.mark.parametrize("fmt_text", ["bfp:8:0", "bfp:6"])
def test_float32_bfp_blocks_near_the_bottom_of_the_range_equal_refimpl(fmt_text):
    """Block maxima below 2^-121 (2^-se overflows float32) and subnormal blocks: scaled in two exact steps
    (``_ldexp``), so Q^d and Q^s equal refimpl's float64 result cast to float32 (before: NaN / saturated)."""
    fmt = parse_format(fmt_text)
    x = np.array([[1e-37, 0.0, 3e-38, -5e-39], [1e-45, 0.0, -1e-45, 3e-45], [3e38, -1e38, 1.0, 0.0]], dtype=np.float32)
    assert np.array_equal(F.quantize_fast(torch.tensor(x), fmt).numpy(),
                          rq.quantize(x.astype(np.float64), fmt).astype(np.float32))
    u = C.uniforms(C.stream_key(1, 0, 0, "u_weight"), x.size, bits=24).reshape(x.shape)
    assert np.array_equal(F.stochastic_round_fast(torch.tensor(x), fmt, seed=1).numpy(),
                          C.sr_round(x.astype(np.float64), fmt, u).astype(np.float32))


def test_each_compiled_function_gets_its_own_code_object():
    """dynamo keeps at most 8 graphs per code object; optimizers with different formats must not share them
    (past the limit the step silently ran eager: measured 41x SGD in the MLP benchmark)."""
    copy_ = F._private_copy(F.sgld_step)
    assert copy_.__code__ is not F.sgld_step.__code__ and copy_.__name__ == "sgld_step"
    p, g = torch.linspace(-1, 1, 7, dtype=torch.float64).reshape(1, 7), torch.full((1, 7), 0.1, dtype=torch.float64)
    fmt = parse_format("fixed:8:6")
    kw = dict(lr=0.1, var=1e-3, weight_fmt=fmt, weight_code=F._code(fmt), grad_fmt=fmt, grad_code=F._code(fmt),
              accumulator="low", variance_corrected=True, weight_decay=0.0, add_noise=True)
    key = F._param_key(1, 0, 0)
    assert all(torch.equal(a, b) for a, b in zip(copy_(p, g, None, key, **kw)[::2], F.sgld_step(p, g, None, key, **kw)[::2]))


def test_vc_all_zero_bfp_block_and_nan_and_published_flag():
    fmt = parse_format("bfp:8:0")
    x = np.zeros((3, 5))
    x[1] = np.linspace(-1, 1, 5)
    x[2, 2] = np.nan
    for kw in ({}, {"vc_published": True}):
        want = C._vc(x, 1e-3, fmt, *_vc_noise(2, 0, 0, x.shape), **kw)
        got = F.vc_quantize_fast(torch.tensor(x), 1e-3, fmt, seed=2, **kw).numpy()
        assert np.array_equal(got, want, equal_nan=True)


def _run_sgld(fmt_text, mode, dtype=torch.float64, steps=4, compile=False):
    fmt = parse_format(fmt_text)
    gen = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter((torch.randn(9, 6, generator=gen, dtype=torch.float64) * 0.3).to(dtype))
    b = torch.nn.Parameter((torch.randn(6, generator=gen, dtype=torch.float64) * 0.3).to(dtype))
    acc = "full" if mode == "full" else "low"
    opt = F.FastLowPrecisionSGLD([w, b], lr=0.05, temperature=1.0, num_data=50, weight_format=fmt,
                                 accumulator=acc, variance_corrected=mode == "vc", weight_decay=0.01, seed=3,
                                 compile=compile)
    states = []
    for k in range(steps):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) for p in (w, b)]
        before = [(p.detach().double().numpy().copy(),
                   opt.state[p]["accumulator"].double().numpy().copy() if acc == "full" else None) for p in (w, b)]
        w.grad, b.grad = grads[0].clone(), grads[1].clone()
        opt.step()
        after = [(p.detach().double().numpy().copy(),
                  opt.state[p]["accumulator"].double().numpy().copy() if acc == "full" else None) for p in (w, b)]
        states.append((k, before, [g.double().numpy() for g in grads], after))
    return fmt, acc, states


@pytest.mark.parametrize("fmt_text", ["fixed:8:6", "bfp:8:0", "float:5:2", "ieee:bfloat16", "mxfp8_e4m3", "nvfp4"])
@pytest.mark.parametrize("mode", ["full", "low", "vc"])
def test_sgld_step_replays_in_refimpl(fmt_text, mode):
    fmt, acc, states = _run_sgld(fmt_text, mode)
    for k, before, grads, after in states:
        for i in range(2):
            th, ac = C.replay_sgld_step(before[i][0], before[i][1], grads[i], seed=3, step=k, param_index=i,
                                        lr=0.05, temperature=1.0, num_data=50, weight_format=fmt, grad_format=fmt,
                                        accumulator=acc, variance_corrected=mode == "vc", weight_decay=0.01)
            assert np.sum(th != after[i][0]) == 0  # zero grid flips
            if acc == "full":  # the normal enters the accumulator: documented 4-ulp bound
                assert np.all(np.abs(ac - after[i][1]) <= 4 * np.spacing(np.abs(ac)))


@pytest.mark.parametrize("mode", ["full", "low", "vc"])
def test_sgld_float32_within_bound_of_float64(mode):
    _, _, s64 = _run_sgld("fixed:8:6", mode, torch.float64, steps=1)
    _, _, s32 = _run_sgld("fixed:8:6", mode, torch.float32, steps=1)
    # one step from (almost) the same state: the grid values agree except for rare flips
    th64, th32 = s64[0][3][0][0], s32[0][3][0][0]
    assert np.mean(th64 != th32) <= 0.05
    assert np.max(np.abs(th64 - th32)) <= 2 * 2.0**-6 + 1e-6


@pytest.mark.parametrize("fmt_text", ["fixed:8:6", "bfp:8:0", "mxint8"])
@pytest.mark.parametrize("mode", ["full", "low", "vc"])
def test_sghmc_step_replays_in_refimpl(fmt_text, mode):
    fmt = parse_format(fmt_text)
    gen = torch.Generator().manual_seed(1)
    w = torch.nn.Parameter(torch.randn(7, 5, generator=gen, dtype=torch.float64) * 0.3)
    acc = "full" if mode == "full" else "low"
    opt = F.FastLowPrecisionSGHMC([w], lr=0.05, friction=2.0, temperature=1.0, num_data=20, weight_format=fmt,
                                  accumulator=acc, variance_corrected=mode == "vc", seed=4)
    for k in range(3):
        g = torch.randn(w.shape, generator=gen, dtype=torch.float64)
        th0, v0 = w.detach().numpy().copy(), opt.state[w]["velocity"].numpy().copy()
        a0 = opt.state[w]["accumulator"].numpy().copy() if acc == "full" else None
        w.grad = g.clone()
        opt.step()
        th, ac, v = C.replay_sghmc_step(th0, a0, v0, g.numpy(), seed=4, step=k, param_index=0, coeffs=opt.coeffs,
                                        weight_format=fmt, grad_format=fmt, velocity_format=fmt, accumulator=acc,
                                        variance_corrected=mode == "vc")
        assert np.sum(th != w.detach().numpy()) == 0
        vv = opt.state[w]["velocity"].numpy()
        assert np.all(np.abs(v - vv) <= 4 * np.spacing(np.abs(v)) + 4 * 2.0**-53 * np.abs(v).max())


def test_finite_check_is_lazy_and_names_the_parameter():
    w = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(2))
    opt = F.FastLowPrecisionSGLD([w, b], lr=0.1, weight_format=parse_format("fixed:8:6"), seed=0,
                                 param_names=["layer.weight", "layer.bias"])
    w.grad = torch.ones(3)
    b.grad = torch.tensor([1.0, float("nan")])
    opt.step()  # no host synchronisation: nothing raised here
    with pytest.raises(F.NonFiniteGradientError, match="layer.bias"):
        opt.check_finite()
    opt.check_finite()  # flags cleared
    eager = F.FastLowPrecisionSGLD([w], lr=0.1, weight_format=parse_format("fixed:8:6"), seed=0, check_every=1)
    w.grad = torch.tensor([0.0, float("inf"), 0.0])
    with pytest.raises(F.NonFiniteGradientError, match=r"param 0 \(shape \(3,\)\)"):
        eager.step()


def test_parameters_without_gradient_are_skipped_and_flags_still_name_the_right_one():
    a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    opt = F.FastLowPrecisionSGLD([a, b, c], lr=0.1, weight_format=parse_format("fixed:8:6"), seed=0,
                                 param_names=["a", "b", "c"])
    c.grad = torch.tensor([float("nan"), 0.0])
    opt.step()
    assert torch.equal(a.detach(), torch.zeros(2)) and torch.equal(b.detach(), torch.zeros(2))
    with pytest.raises(F.NonFiniteGradientError, match="for c "):
        opt.check_finite()


def test_resume_from_state_dict_gives_the_same_bits():
    def make(w):
        return F.FastLowPrecisionSGLD([w], lr=0.01, num_data=10, weight_format=parse_format("fixed:8:6"), seed=5)

    w = torch.nn.Parameter(torch.linspace(-1, 1, 20))
    opt = make(w)
    for k in range(4):
        w.grad = torch.full_like(w, 0.1 * k)
        opt.step()
        if k == 1:
            saved_w, saved = w.detach().clone(), copy.deepcopy(opt.state_dict())
    w2 = torch.nn.Parameter(saved_w)
    opt2 = make(w2)
    opt2.load_state_dict(saved)
    for k in (2, 3):
        w2.grad = torch.full_like(w2, 0.1 * k)
        opt2.step()
    assert torch.equal(w2.detach(), w.detach())
    other = F.FastLowPrecisionSGLD([w2], lr=0.01, seed=6)
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(saved)


def test_bad_inputs_name_the_argument():
    w = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="seed"):
        F.FastLowPrecisionSGLD([w], lr=0.1, seed=-1)
    with pytest.raises(ValueError, match="lr"):
        F.FastLowPrecisionSGLD([w], lr=0.0)
    with pytest.raises(ValueError, match="accumulator"):
        F.FastLowPrecisionSGLD([w], lr=0.1, accumulator="mid")
    with pytest.raises(ValueError, match="variance_corrected"):
        F.FastLowPrecisionSGLD([w], lr=0.1, weight_format=parse_format("fixed:8:6"), variance_corrected=True)
    with pytest.raises(TypeError, match="float16"):
        F.FastLowPrecisionSGLD([torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))], lr=0.1)
    with pytest.raises(ValueError, match="var"):
        F.vc_quantize_fast(torch.zeros(3), -1.0, parse_format("fixed:8:6"), seed=0)
    with pytest.raises(ValueError, match="fmt"):
        F.quantize_fast(torch.zeros(3), None)
    with pytest.raises(ValueError, match=r"weight_format=.*axis 1 is out of range for parameter 0 of shape \(3,\)"):
        F.FastLowPrecisionSGLD([w], lr=0.1, weight_format=parse_format("mxfp4:1"))


def test_optimizer_views_keep_the_mx_blocks_of_each_parameter():
    """A (5, 40) weight with blocks of 32 along its last axis: the fused step's view is (rows, 40), so the
    step equals the replay on the original shape; axis 0 keeps the shapes (mode None)."""
    assert F._layout([parse_format("mxfp4"), parse_format("fixed:8:6")])[0] == "last"
    assert F._layout([parse_format("mxfp4:0")])[0] is None
    assert F._layout([parse_format("mxfp4"), parse_format("bfp:8:0")])[0] is None
    for fmt_text in ("mxfp4", "mxfp4:0"):
        fmt = parse_format(fmt_text)
        gen = torch.Generator().manual_seed(3)
        w = torch.nn.Parameter(torch.randn(5, 40, generator=gen, dtype=torch.float64) * 0.5)
        opt = F.FastLowPrecisionSGLD([w], lr=0.01, num_data=10, weight_format=fmt, accumulator="low", seed=2)
        th0, g = w.detach().numpy().copy(), torch.randn(5, 40, generator=gen, dtype=torch.float64)
        w.grad = g.clone()
        opt.step()
        th, _ = C.replay_sgld_step(th0, None, g.numpy(), seed=2, step=0, param_index=0, lr=0.01, temperature=1.0,
                                   num_data=10, weight_format=fmt, grad_format=fmt, accumulator="low",
                                   variance_corrected=False)
        assert np.array_equal(th, w.detach().numpy())


def test_same_seed_same_bits_and_different_seed_differs():
    def run(seed):
        w = torch.nn.Parameter(torch.linspace(-1, 1, 50))
        opt = F.FastLowPrecisionSGLD([w], lr=0.01, num_data=10, weight_format=parse_format("bfp:8"),
                                     accumulator="low", variance_corrected=True, seed=seed)
        for _ in range(3):
            w.grad = w.detach() * 2
            opt.step()
        return w.detach().clone()

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def _gloo_body(rank, world):
    """One rank's run (tests/_gloo.py): the tensors every rank of 1 and of 2 must agree on."""
    import torch.distributed as dist

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(40, 3, dtype=torch.float64))
    opt = F.FastLowPrecisionSGLD([w], lr=0.01, num_data=10, weight_format=parse_format("fixed:8:6"),
                                 accumulator="low", variance_corrected=True, seed=9)
    for _ in range(2):
        # data items c = 1..4 split over the ranks; local gradient sums all-reduced as DDP does
        # (w is on the 2^-6 grid, so every partial sum is exact whatever the split)
        g = sum(w.detach() * float(c) for c in range(1, 5) if (c - 1) % world == rank)
        dist.all_reduce(g)
        w.grad = g / 4.0
        opt.step()
    # an FSDP-style shard of a flat tensor: rank r rounds elements [r·n/world, (r+1)·n/world)
    flat = torch.linspace(-1, 1, 120, dtype=torch.float64)
    n = flat.numel() // world
    piece = F.stochastic_round_fast(flat[rank * n:(rank + 1) * n], parse_format("fixed:8:6"), seed=9,
                                    step=5, start=rank * n)
    pieces = [torch.empty_like(piece) for _ in range(world)]
    dist.all_gather(pieces, piece)
    return {"w": w.detach(), "flat": torch.cat(pieces)}


def test_one_and_two_gloo_ranks_give_the_same_bits(tmp_path):
    assert_one_and_two_ranks_agree(_gloo_body, tmp_path)


@pytest.mark.slow
def test_compiled_bfp_quantizers_equal_eager():
    """Inductor (with the fast path's options) gives the eager bits for BFP Q^s and Q^vc in float32."""
    fmt = parse_format("bfp:8:0")
    code = F._code(fmt)
    x = torch.tensor(_x(shape=(12, 40)), dtype=torch.float32)
    key = cr.key_tensor(C.stream_key(3, 0, 0, "u_weight"))

    def sr(t, k):
        return F._round_tensor(t, fmt, code, F._noise_like(k, t, "uniform"))

    def vc(t, k):
        return F._vc_tensor(t, 1e-4, fmt, code, F._noise_like(k, t, "normal"), F._noise_like(k, t, "uniform"),
                            F._noise_like(k + 1, t, "uniform"))

    for fn in (sr, vc):  # torch.compile itself (maybe_compile would fall back to eager on an error)
        assert torch.equal(torch.compile(fn, dynamic=True, options=F._INDUCTOR_OPTIONS)(x, key), fn(x, key))


@pytest.mark.slow
def test_compiled_mx_quantizers_equal_eager():
    """MX Q^d / Q^s take the block scale from the exponent bits, so inductor compiles them (torch.frexp's
    int32 exponent in torchport.kernels.mx made inductor's C++ fail); same bits as eager."""
    x = torch.tensor(_x_mx(), dtype=torch.float32)
    key = cr.key_tensor(C.stream_key(3, 0, 0, "u_weight"))
    for fmt_text in ("mxfp4", "nvfp4"):
        fmt = parse_format(fmt_text)
        code = F._code(fmt)

        def q(t, k, fmt=fmt, code=code):
            return F._round_tensor(t, fmt, code, None), F._round_tensor(t, fmt, code, F._noise_like(k, t, "uniform"))

        got = torch.compile(q, dynamic=True, options=F._INDUCTOR_OPTIONS)(x, key)
        for a, b in zip(got, q(x, key)):  # bit for bit, NaN blocks included
            assert np.array_equal(a.numpy(), b.numpy(), equal_nan=True)


@pytest.mark.slow
def test_compiled_mx_vc_equals_eager():
    """MX Q^vc (torchport.kernels.mx.vc) reads exponents from the bits (kernels.common._frexp_exp), so inductor
    compiles it (torch.frexp made its C++ fail and the step ran eagerly); same bits as eager, float32 input,
    zero, NaN and inf blocks included."""
    x = torch.tensor(_x_mx(), dtype=torch.float32)
    key = cr.key_tensor(C.stream_key(3, 0, 0, "xi"))
    for fmt_text in ("mxfp4", "nvfp4"):
        fmt = parse_format(fmt_text)
        code = F._code(fmt)

        def vc(t, k, fmt=fmt, code=code):
            return F._vc_tensor(t, 1e-4, fmt, code, F._noise_like(k, t, "normal"), F._noise_like(k + 1, t, "uniform"),
                                F._noise_like(k + 2, t, "uniform"))

        got = torch.compile(vc, dynamic=True, options=F._INDUCTOR_OPTIONS)(x, key)
        assert np.array_equal(got.numpy(), vc(x, key).numpy(), equal_nan=True), fmt_text


@pytest.mark.slow
def test_compiled_step_equals_eager():
    """torch.compile of the fused step (inductor): grid values equal, accumulators within 4 ulp."""
    _, _, eager = _run_sgld("fixed:8:6", "full", torch.float32, steps=2)
    _, _, comp = _run_sgld("fixed:8:6", "full", torch.float32, steps=2, compile=True)
    for (_, _, _, a), (_, _, _, b) in zip(eager, comp):
        for (th_e, ac_e), (th_c, ac_c) in zip(a, b):
            assert np.mean(th_e != th_c) <= 1e-3
            assert np.all(np.abs(ac_e - ac_c) <= 4 * np.spacing(np.abs(ac_e).astype(np.float32)))
