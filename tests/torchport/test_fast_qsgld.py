"""QSGLD's default (fast) path (``exact=False``): parity with refimpl's counter replay, resume, seeds, checks.

The default path is :func:`torchport.optim.qsgld.qsgld_step` per parameter, every random number
from the counter stream; :func:`refimpl.qsgld.replay_qsgld_step` replays it in float64 NumPy.
Bounds (docs/qsgld.md, "Two paths"):

* float64, eager: bit for bit wherever no Box–Muller normal enters (nearest, stochastic, and
  uniform rounding without ``langevin_noise``); grid values (nearest, stochastic) bit for bit
  also with ``langevin_noise``.  Where a normal enters a continuous result (uniform rounding
  with ``langevin_noise``, surrogate), |θ_torch − θ_replay| ≤ 8·ulp(M), M = |θ| + |θ' − θ| +
  Σ scale·|ξ| (+ 1/(2q) for uniform rounding), because torch's log/cos differ from libm by ≤ 4 ulp of the normal
  (docs/fast_path.md).
* float32 against the float64 replay fed the same 24-bit uniforms (``bits=24``): zero grid flips
  on this problem; |Δ| ≤ 4·ulp32(M) + Σ scale·2⁻¹⁸(1 + |ξ|) (float32 arithmetic; float32 normals
  are within 2⁻¹⁸(1 + |ξ|) of the float64 ones, docs/fast_path.md).
"""

from __future__ import annotations

import copy
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import torchport.optim as O
import torchport.optim.qsgld as TQ
from refimpl import counter_rng as C
from refimpl.qsgld import XI_Q_STREAM, replay_qsgld_step
from torchport import fast as F

SEED = 11
STEPS = 50
# a schedule whose resolution changes every step (an off-by-one in the step is visible)
SCHEDULE = dict(schedule="linear", rate=0.3, steps_per_epoch=7)
COMBOS = list(itertools.product(("sgd", "adam"), (False, True)))  # optimizer × langevin_noise
_RESOLUTION = TQ.qsgld_resolution  # Q_p as the spec defines it (kept from mutations of the optimizer's copy)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _gloo import assert_one_and_two_ranks_agree  # noqa: E402  (tests/_gloo.py)


def _params(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter((torch.randn(7, 5, generator=g, dtype=torch.float64) * 0.5).to(dtype)),
            torch.nn.Parameter((torch.randn(5, generator=g, dtype=torch.float64) * 0.5).to(dtype))]


def _grads(ps, k):
    g = torch.Generator().manual_seed(100 + k)
    return [torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) for p in ps]


def _kw(rounding, quantize, optimizer, langevin):
    # q0 = 1/√(24·lr·T) ≈ 20 (nearest), 29 (stochastic), 200 (surrogate), growing 2^(0.3/7) per step
    return dict(lr=0.02, temperature=0.005, rounding=rounding, quantize=quantize, optimizer=optimizer,
                langevin_noise=langevin, **SCHEDULE)


def _normal_terms(kw, k, i, shape, q, bits):
    """Σ scale·|ξ| over the normals that enter step k of parameter i (0 where none does)."""
    out = np.zeros(shape)
    n = int(np.prod(shape))
    if kw["langevin_noise"]:
        z = C.normals(C.stream_key(SEED, k, i, "xi"), n, bits=bits).reshape(shape)
        out += math.sqrt(2.0 * kw["lr"] * kw["temperature"]) * np.abs(z)
    if kw["rounding"] == "surrogate":
        z = C.normals(C.stream_key(SEED, k, i, XI_Q_STREAM), n, bits=bits).reshape(shape)
        out += math.sqrt(2.0 * kw["lr"] / q) * np.abs(z)
    return out


def _normal_allowance32(kw, k, i, shape, q):
    """Σ scale·2⁻¹⁸(1 + |ξ|): the float32 normals' documented distance from the float64 ones."""
    out = np.zeros(shape)
    n = int(np.prod(shape))
    for on, stream, scale in ((kw["langevin_noise"], "xi", math.sqrt(2.0 * kw["lr"] * kw["temperature"])),
                              (kw["rounding"] == "surrogate", XI_Q_STREAM, math.sqrt(2.0 * kw["lr"] / q))):
        if on:
            z = C.normals(C.stream_key(SEED, k, i, stream), n, bits=24).reshape(shape)
            out += scale * 2.0 ** -18 * (1.0 + np.abs(z))
    return out


def _parity(kw, dtype=torch.float64, steps=STEPS):
    """Run QSGLD (default path, eager) and replay each step from the optimizer's state before it.

    Returns (bitwise differences, worst |Δ|/bound, grid flips, elements compared).
    """
    ps = _params(dtype)
    opt = O.QSGLD(ps, seed=SEED, **kw)
    adam = kw["optimizer"] == "adam"
    bits = 53 if dtype == torch.float64 else 24
    grid = kw["rounding"] in ("nearest", "stochastic")
    n_diff = flips = n = 0
    worst = 0.0
    for k in range(steps):
        grads = _grads(ps, k)
        before = []
        for p in ps:
            st = opt.state[p]
            before.append([t.detach().double().numpy().copy() if t is not None else None
                           for t in (p, st.get("exp_avg"), st.get("exp_avg_sq"))])
        for p, g in zip(ps, grads):
            p.grad = g
        q = _RESOLUTION(k, kw["lr"], kw["temperature"], **opt.cfg)
        opt.step()
        for i, p in enumerate(ps):
            th0, m0, v0 = before[i]
            want, m, v = replay_qsgld_step(th0, grads[i].double().numpy(), seed=SEED, step=k, param_index=i,
                                           exp_avg=m0, exp_avg_sq=v0, bits=bits, **kw)
            got = p.detach().double().numpy()
            if adam and dtype == torch.float64:
                assert np.array_equal(m, opt.state[p]["exp_avg"].numpy())
                assert np.array_equal(v, opt.state[p]["exp_avg_sq"].numpy())
            n_diff += int(np.sum(want != got))
            n += want.size
            if grid:
                base = th0 if kw["quantize"] == "update" else 0.0
                flips += int(np.sum(np.round((want - base) * q) != np.round((got - base) * q)))
            mag = np.abs(th0) + np.abs(want - th0) + _normal_terms(kw, k, i, th0.shape, q, bits)
            if kw["rounding"] == "uniform":
                mag = mag + 0.5 / q
            if dtype == torch.float64:
                bound = 8 * np.spacing(mag)
            else:
                bound = 4 * np.spacing(mag.astype(np.float32)).astype(np.float64) + _normal_allowance32(
                    kw, k, i, th0.shape, q)
            with np.errstate(over="ignore"):  # a mutated run's differences where M = 0
                worst = max(worst, float(np.max(np.abs(want - got) / bound)))
    return n_diff, worst, flips, n


def _replay_trajectory(kw, steps=STEPS):
    """The replay alone (its own state) over ``steps`` steps, and the optimizer run from the same gradients."""
    ps = _params()
    opt = O.QSGLD(ps, seed=SEED, **kw)
    state = [(p.detach().numpy().copy(), None, None) for p in ps]
    for k in range(steps):
        grads = _grads(ps, k)
        for p, g in zip(ps, grads):
            p.grad = g
        opt.step()
        state = [replay_qsgld_step(th, grads[i].numpy(), seed=SEED, step=k, param_index=i, exp_avg=m,
                                   exp_avg_sq=v, **kw) for i, (th, m, v) in enumerate(state)]
    return [p.detach().numpy() for p in ps], [s[0] for s in state]


# ------------------------------------------------------------------ parity, float64
@pytest.mark.parametrize("quantize", ["params", "update"])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "uniform", "surrogate"])
def test_float64_replays_bit_for_bit_where_no_normal_enters(rounding, quantize):
    """Every rounding × quantize × sgd/adam × langevin_noise over 50 steps, two parameters (indices 0, 1).

    Bit for bit (and the Adam moments bit for bit) unless a normal enters a continuous result;
    then within 8 ulp(M) (measured: at most 1 ulp(M), in 2 to 16 of 2000 elements per run)."""
    for optimizer, langevin in COMBOS:
        kw = _kw(rounding, quantize, optimizer, langevin)
        n_diff, worst, flips, _ = _parity(kw)
        normal_continuous = rounding == "surrogate" or (rounding == "uniform" and langevin)
        assert worst <= 1.0, (kw, worst)
        assert flips == 0, kw
        if not normal_continuous:
            assert n_diff == 0, kw


@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "uniform"])
def test_the_replay_alone_reproduces_the_whole_trajectory(rounding):
    """No per-step resynchronisation: 50 replay steps from the replay's own state equal the optimizer's
    trajectory bit for bit (Adam + schedule; langevin noise on for the grid roundings)."""
    kw = _kw(rounding, "params", "adam", rounding != "uniform")
    got, want = _replay_trajectory(kw)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_parity_catches_an_off_by_one_resolution_step(monkeypatch):
    """Mutation: the optimizer evaluates Q_p at step k + 1 -- the parity check fails (many elements)."""
    kw = _kw("nearest", "params", "sgd", False)
    assert _parity(kw, steps=10)[0] == 0
    orig = TQ.qsgld_resolution
    monkeypatch.setattr(TQ, "qsgld_resolution", lambda step, *a, **k: orig(step + 1, *a, **k))
    n_diff, _, flips, n = _parity(kw, steps=10)
    assert n_diff > n // 4 and flips > n // 4


def test_parity_catches_a_swapped_stream(monkeypatch):
    """Mutation: stochastic rounding reads the "u_weight" stream instead of "u_round" -- caught."""
    kw = _kw("stochastic", "params", "sgd", False)
    real = TQ._stream_keys
    monkeypatch.setattr(TQ, "_stream_keys", lambda key, names: real(key, ["u_weight" if n == "u_round" else n
                                                                          for n in names]))
    assert _parity(kw, steps=5)[2] > 5


# ------------------------------------------------------------------ parity, float32
@pytest.mark.parametrize("quantize", ["params", "update"])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "uniform", "surrogate"])
def test_float32_within_the_documented_bound_and_zero_grid_flips(rounding, quantize):
    """float32 parameters against the float64 replay of the same 24-bit uniforms: zero grid flips on this
    problem, |Δ| ≤ 4 ulp32(M) + Σ scale·2⁻¹⁸(1 + |ξ|) (measured: at most 0.31 of that bound)."""
    for optimizer, langevin in COMBOS:
        kw = _kw(rounding, quantize, optimizer, langevin)
        _, worst, flips, _ = _parity(kw, dtype=torch.float32)
        assert flips == 0, kw
        assert worst <= 1.0, (kw, worst)


# ------------------------------------------------------------------ stochastic rounding is unbiased
def _rounded_means(dtype, fractions, n=40_000, q=7.3):
    """One step with zero gradient and the fixed resolution q: θ' = SR(x) for n copies of each x."""
    xs = torch.tensor([(3.0 + f) / q for f in fractions], dtype=torch.float64)
    p = torch.nn.Parameter(xs.repeat_interleave(n).to(dtype))
    opt = O.QSGLD([p], lr=1e-3, rounding="stochastic", resolutions=[q], seed=5)
    p.grad = torch.zeros_like(p)
    opt.step()
    means = p.detach().double().reshape(len(fractions), n).mean(dim=1)
    return xs.to(dtype).double(), means, q, n


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_stochastic_rounding_is_unbiased_within_mcse(dtype):
    """E[θ'] = x within 4 Monte Carlo standard errors + the k-bit resolution 2⁻ᵏ/q (plus the rounding of
    s = q·x and of the grid values, a few ulp), at fixed seed, for five fractional parts."""
    fractions = [0.1, 0.3, 0.5, 0.77, 0.95]
    x, means, q, n = _rounded_means(dtype, fractions)
    k = 53 if dtype == torch.float64 else 24
    for xi, mi, f in zip(x.tolist(), means.tolist(), fractions):
        se = math.sqrt(f * (1 - f) / n) / q
        assert abs(mi - xi) <= 4 * se + 2.0 ** -k / q + 8 * abs(xi) * 2.0 ** -k, (dtype, f, mi, xi, se)


@pytest.mark.parametrize("variant", ["3-bit uniform", "reversed comparison"])
def test_a_biased_stochastic_rounding_fails_the_mcse_check(monkeypatch, variant):
    """Mutations: a 3-bit uniform (P(up) = ⌈8f⌉/8) and [u > frac] (P(up) = 1 − f) are rejected."""
    if variant == "3-bit uniform":
        def biased(z, u):
            f0 = torch.floor(z)
            return f0 + (torch.floor(u * 8.0) / 8.0 < z - f0).to(z.dtype)
    else:
        def biased(z, u):
            f0 = torch.floor(z)
            return f0 + (u > z - f0).to(z.dtype)
    monkeypatch.setattr(TQ, "_sr_int", biased)
    fractions = [0.1, 0.3, 0.77]
    x, means, q, n = _rounded_means(torch.float64, fractions)
    z = [abs(mi - xi) / (math.sqrt(f * (1 - f) / n) / q) for xi, mi, f in zip(x.tolist(), means.tolist(), fractions)]
    assert max(z) > 4, z


# ------------------------------------------------------------------ resume, groups, seeds
def _steps(ps, opt, ks):
    for k in ks:
        for p, g in zip(ps, _grads(ps, k)):
            p.grad = g
        opt.step()


def test_resume_from_state_dict_is_bit_for_bit():
    """12 steps straight == 5 steps, state_dict (counter_seed, num_steps, Adam moments), a new optimizer with
    another seed, load, 7 steps.  Mutation: a saved step count off by one does not reproduce the run."""
    kw = _kw("stochastic", "params", "adam", True)
    ps = _params()
    _steps(ps, O.QSGLD(ps, seed=5, **kw), range(12))
    straight = [p.detach().clone() for p in ps]
    results = []
    for shift in (0, 1):
        ps = _params()
        opt = O.QSGLD(ps, seed=5, **kw)
        _steps(ps, opt, range(5))
        sd = copy.deepcopy(opt.state_dict())
        assert sd["counter_seed"] == 5 and "generator_state" not in sd
        assert all("exp_avg" in s and "exp_avg_sq" in s for s in sd["state"].values())
        sd["num_steps"] += shift
        ps2 = [torch.nn.Parameter(p.detach().clone()) for p in ps]
        opt2 = O.QSGLD(ps2, seed=77, **kw)
        opt2.load_state_dict(sd)
        assert opt2.seed == 5 and opt2.num_steps == 5 + shift
        _steps(ps2, opt2, range(5, 12))
        results.append(all(torch.equal(a, b.detach()) for a, b in zip(straight, ps2)))
    assert results == [True, False]


def test_added_group_equals_a_constructor_group():
    """add_param_group with its own lr: the same bits as both groups given to the constructor (parameter
    indices over the groups, per-group resolution)."""
    def run(split):
        ps = _params(seed=2)
        kw = dict(temperature=0.5, rounding="stochastic", optimizer="adam", seed=3, **SCHEDULE)
        if split:
            opt = O.QSGLD([ps[0]], lr=0.02, **kw)
            opt.add_param_group({"params": [ps[1]], "lr": 0.05})
        else:
            opt = O.QSGLD([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.05}], lr=0.02, **kw)
        _steps(ps, opt, range(4))
        return [p.detach().clone() for p in ps] + [opt.state[p]["exp_avg"].clone() for p in ps]

    assert all(torch.equal(a, b) for a, b in zip(run(True), run(False)))


def test_parameter_without_gradient_keeps_its_index():
    kw = _kw("stochastic", "params", "sgd", True)
    ps = _params()
    opt = O.QSGLD(ps, seed=SEED, **kw)
    _steps(ps, opt, range(1))
    both = [p.detach().clone() for p in ps]
    ps = _params()
    opt = O.QSGLD(ps, seed=SEED, **kw)
    ps[1].grad = _grads(ps, 0)[1]
    first = ps[0].detach().clone()
    opt.step()
    assert torch.equal(ps[1].detach(), both[1]) and torch.equal(ps[0].detach(), first)


def test_seed_from_a_generator_is_one_drawn_integer():
    want = int(torch.randint(0, (1 << 63) - 1, (1,), generator=torch.Generator().manual_seed(123),
                             dtype=torch.int64)[0])
    kw = _kw("stochastic", "params", "sgd", False)
    for how in ("seed", "generator"):
        ps = _params()
        opt = O.QSGLD(ps, **{how: torch.Generator().manual_seed(123)}, **kw)
        assert opt.seed == want
        _steps(ps, opt, range(3))
        ref = _params()
        _steps(ref, O.QSGLD(ref, seed=want, **kw), range(3))
        assert all(torch.equal(a, b) for a, b in zip(ps, ref))


def test_default_path_differs_from_exact_and_exact_keeps_its_generator():
    kw = _kw("stochastic", "params", "sgd", True)
    a, b = _params(), _params()
    opt_a, opt_b = O.QSGLD(a, seed=SEED, **kw), O.QSGLD(b, seed=SEED, exact=True, **kw)
    _steps(a, opt_a, range(2))
    _steps(b, opt_b, range(2))
    assert not torch.equal(a[0], b[0])
    assert opt_a.generator is None and "counter_seed" in opt_a.state_dict()
    assert opt_b.generator is not None and "generator_state" in opt_b.state_dict()
    with pytest.raises(ValueError, match="exact=True"):
        opt_a.load_state_dict(opt_b.state_dict())
    with pytest.raises(ValueError, match="exact=True"):
        opt_a.step(noise={"xi": torch.zeros(40, dtype=torch.float64)})


def test_nearest_rounding_needs_no_seed_on_either_path():
    """As on the exact path, deterministic QSGLD (nearest, no Langevin noise) takes no seed (counter seed 0)."""
    assert O.QSGLD(_params(), lr=0.1).seed == 0
    with pytest.raises(ValueError, match="seed"):
        O.QSGLD(_params(), lr=0.1, rounding="stochastic")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_parameters_are_refused(dtype):
    with pytest.raises(TypeError, match=rf"{str(dtype)[6:]}.*exact=True"):
        O.QSGLD([torch.nn.Parameter(torch.zeros(4, dtype=dtype))], lr=0.1, seed=0)
    O.QSGLD([torch.nn.Parameter(torch.zeros(4, dtype=dtype))], lr=0.1, seed=0, exact=True)


def test_surrogate_stream_id_is_its_own():
    """ξ_q has the id refimpl.qsgld.XI_Q_STREAM, not one of the SGLD/SGHMC streams (no shared numbers)."""
    assert XI_Q_STREAM not in C.STREAMS.values()
    assert C.STREAMS.get("xi_q", XI_Q_STREAM) == XI_Q_STREAM


# ------------------------------------------------------------------ no host synchronisation; lazy finite check
def test_step_does_not_synchronise(monkeypatch):
    for kw in (_kw("stochastic", "update", "adam", True), _kw("surrogate", "params", "sgd", False)):
        ps = _params()
        opt = O.QSGLD(ps, seed=1, **kw)
        _steps(ps, opt, range(1))

        def refuse(*a, **k):
            raise AssertionError("host synchronisation in step()")
        with monkeypatch.context() as m:
            for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
                m.setattr(torch.Tensor, name, refuse)
            opt.step()
            opt.step()
        opt.check_finite()


def test_non_finite_gradient_is_flagged_lazily_and_named():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)).double()
    opt = O.QSGLD(model.named_parameters(), lr=0.05, rounding="stochastic", optimizer="adam", seed=0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    model[1].weight.grad[0, 1] = float("nan")
    opt.step()
    with pytest.raises(F.NonFiniteGradientError, match=r"1\.weight.*step 1"):
        opt.check_finite()
    opt.check_finite()
    every = O.QSGLD([torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))], lr=0.1, seed=0, check_every=2)
    p = every.param_groups[0]["params"][0]
    p.grad = torch.tensor([0.0, float("inf"), 0.0], dtype=torch.float64)
    every.step()
    with pytest.raises(FloatingPointError, match=r"param_groups\[0\]\['params'\]\[0\]"):
        every.step()


# ------------------------------------------------------------------ distributed: 1 vs 2 gloo ranks
def _gloo_body(rank, world):
    """One rank's run (tests/_gloo.py): the tensors every rank of 1 and of 2 must agree on."""
    import torch.distributed as dist

    w = torch.nn.Parameter(torch.linspace(-1, 1, 120, dtype=torch.float64).reshape(40, 3))
    opt = O.QSGLD([w], lr=0.01, temperature=0.5, rounding="stochastic", optimizer="adam", langevin_noise=True,
                  seed=9, **SCHEDULE)
    for _ in range(3):
        # data items c = 1..4 split over the ranks, local gradient sums all-reduced as DDP does; each item's
        # gradient is on the 2^-10 grid with |g| <= 1, so every partial sum is exact whatever the split
        g = sum(torch.round(torch.sin(w.detach() * float(c)) * 1024.0) / 1024.0
                for c in range(1, 5) if (c - 1) % world == rank)
        dist.all_reduce(g)
        w.grad = g / 4.0
        opt.step()
    return {"w": w.detach()}


def test_one_and_two_gloo_ranks_give_the_same_bits(tmp_path):
    assert_one_and_two_ranks_agree(_gloo_body, tmp_path)


# ------------------------------------------------------------------ compiled
@pytest.mark.slow
def test_compiled_update_compiles_once_and_agrees_with_eager():
    """compile=True: the per-step values (Q_p, Adam bias corrections) are 0-d tensors, so 8 steps of a schedule
    whose resolution changes every step compile one graph per parameter rank (2 here) and no more; the result is
    on the same grid values as the eager path (at most 1 % of the elements differ, in the last bits)."""
    from torch._dynamo.utils import counters

    kw = _kw("stochastic", "params", "adam", True)
    comp, eager = _params(torch.float32), _params(torch.float32)
    opt_c = O.QSGLD(comp, seed=SEED, compile=True, **kw)
    opt_e = O.QSGLD(eager, seed=SEED, compile=False, **kw)
    graphs0 = counters["stats"]["unique_graphs"]
    for k in range(8):
        for pc, pe, g in zip(comp, eager, _grads(comp, k)):
            pc.grad, pe.grad = g, g.clone()
        opt_c.step()
        opt_e.step()
        if k == 1:
            after_two = counters["stats"]["unique_graphs"] - graphs0
    assert counters["stats"]["unique_graphs"] - graphs0 == after_two and 1 <= after_two <= 2
    q = opt_e.resolution(7)
    for a, b in zip(comp, eager):
        assert float((a != b).double().mean()) <= 1e-2
        assert torch.equal(torch.round(a.double() * q), torch.round(b.double() * q))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_deterministic_qsgld_is_the_same_on_both_paths(dtype):
    """Nearest rounding without Langevin noise draws nothing: the default path's update is the exact path's
    arithmetic (correctly rounded √ in both), so 30 steps of SGD and Adam, params and update, are bit for bit
    equal (the CHANGELOG's "deterministic QSGLD unchanged")."""
    for optimizer, quantize in itertools.product(("sgd", "adam"), ("params", "update")):
        kw = dict(lr=0.02, temperature=0.005, optimizer=optimizer, quantize=quantize, **SCHEDULE)
        a, b = _params(dtype), _params(dtype)
        opt_a, opt_b = O.QSGLD(a, **kw), O.QSGLD(b, exact=True, **kw)
        for k in range(30):
            for pa, pb, g in zip(a, b, _grads(a, k)):
                pa.grad, pb.grad = g, g.clone()
            opt_a.step()
            opt_b.step()
        assert all(torch.equal(x, y) for x, y in zip(a, b)), (optimizer, quantize)


@pytest.mark.parametrize("over, needles", [
    (dict(rounding="up"), ("rounding", "'up'")),
    (dict(quantize="all"), ("quantize", "'all'")),
    (dict(optimizer="rmsprop"), ("optimizer", "'rmsprop'")),
    (dict(bits=32), ("bits", "32")),
    (dict(step=-1), ("step", "-1")),
    (dict(param_index=1.5), ("param_index", "1.5")),
    (dict(lr=0.0), ("lr",)),
    (dict(temperature=0.0), ("temperature", "0.0")),
    (dict(resolutions=[1.0, -2.0]), ("resolutions",)),
    (dict(grad=np.zeros(3)), ("grad", "(3,)")),
])
def test_replay_rejects_bad_input_by_name(over, needles):
    args = dict(theta=np.zeros(2), grad=np.zeros(2), seed=0, step=0, param_index=0, lr=0.1, temperature=1.0)
    args.update(over)
    with pytest.raises((ValueError, TypeError)) as info:
        replay_qsgld_step(**args)
    assert all(n in str(info.value) for n in needles), str(info.value)
