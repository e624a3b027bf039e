"""The default (fast) path of CTLD (``exact=False``) against refimpl's counter replay.

``refimpl.ctld.replay_ctld_step`` recomputes one step in float64 NumPy from the counter
stream (ξ per parameter at (seed, step, index, "xi"), ξ_α at (seed, step,
ALPHA_PARAM_INDEX, "xi")).  Parity (docs/ctld.md, "Two paths"):

* at T = 0 no normal enters: 50-step trajectories (θ, v, α, v_α, histogram) equal the
  replay's bit for bit (ABF, wall and quadratic φ, mirror on/off, constant ω, no bias,
  the phase switch with and without waiting for the band);
* at T > 0 torch's Box–Muller normals (log, cos) may differ from libm's by
  ≤ 4 ulp(|z|) + 4·2⁻⁵³ (docs/fast_path.md), so each of 50 steps is replayed from the
  optimizer's own state before it, and every continuous value is within the bound that
  follows from that (``_v_bound``); the histogram counts are exact, ABF means exact,
  metadynamics biases within 4 ulp (torch.exp vs libm exp);
* float32 parameters: the θ block within the float32 rounding bound of the float64 replay; the
  float32 replay (``dtype="float32"``) fed torch's own normals equals the step bit for bit, and
  with its own normals is within 8 float32 ulp of the step's magnitude.

Mutations (a wrong sign of the α drift; ξ_α from parameter 0's stream; float64 arithmetic or 53-bit
uniforms in the float32 replay) fail the parity checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from refimpl import counter_rng as C
from refimpl.ctld import ALPHA_PARAM_INDEX, ALPHA_STREAM, replay_ctld_step
from torchport import fast as F
from torchport.optim import CTLD
from torchport.optim import ctld as tctld

F64 = torch.float64
EPS = 2.0 ** -52
LR = 0.05

OPTION_SETS = {
    "abf-wall-mirror": dict(eta_alpha=0.05, alpha0=0.5, n_bins=10),
    "quadratic-nomirror-constant": dict(eta_alpha=0.05, alpha0=-0.55, n_bins=12, phi="quadratic", k_c=5.0,
                                        mirror=False, omega="constant", omega_const=0.3),
    "no-bias": dict(eta_alpha=0.05, alpha0=0.45, bias="none"),
    "switch-momentum": dict(eta_alpha=0.05, alpha0=0.5, n_bins=10, switch_after=20, momentum=0.7, eta2=0.02),
    "switch-wait-band": dict(eta_alpha=0.05, alpha0=0.1, n_bins=10, switch_after=15, switch_wait_band=True,
                             reset_velocity=False),
}
META = dict(eta_alpha=0.05, alpha0=0.5, n_bins=10, bias="metadynamics", meta_height=0.05)


def _params(dtype=F64):
    return [torch.nn.Parameter(torch.linspace(-2, 2, 7, dtype=F64).to(dtype)),
            torch.nn.Parameter(torch.linspace(-1, 1.5, 6, dtype=F64).reshape(2, 3).to(dtype))]


def _potential_and_grads(ps):
    """Ũ(θ) = Σ (¼θ⁴ − θ²/2 + 0.3θ) (a double well per coordinate) and its gradient."""
    U = sum(float((0.25 * x.detach().double() ** 4 - 0.5 * x.detach().double() ** 2 + 0.3 * x.detach().double()).sum())
            for x in ps)
    return U, [(x.detach() ** 3 - x.detach() + 0.3).clone() for x in ps]


def _snapshot(opt, ps):
    vel = [opt.state[p]["velocity"].numpy().copy() if "velocity" in opt.state[p] else None for p in ps]
    return [p.detach().numpy().copy() for p in ps], vel, opt.state_dict()["extra_state"]


def _trajectory_vs_free_replay(options, temperature, steps=50, make=None):
    """Run the optimizer and, from the same start, the replay on its own outputs; yield both after each step."""
    ps = _params()
    opt = (make or CTLD)(ps, lr=LR, temperature=temperature, seed=11, **options)
    th, vel, st = _snapshot(opt, ps)
    for k in range(steps):
        U, grads = _potential_and_grads(ps)
        Ur, rgrads = _potential_and_grads([torch.from_numpy(t) for t in th])
        for p, g in zip(ps, grads):
            p.grad = g
        opt.step(potential=U)
        th, vel, st = replay_ctld_step(th, vel, [g.numpy() for g in rgrads], Ur, st, seed=opt.seed, step=k, lr=LR,
                                       temperature=temperature, **options)
        yield k, opt, ps, th, vel, st


def _equal_state(a, b):
    return all(a[k] == b[k] for k in ("alpha", "alpha_velocity", "phase", "steps", "counts", "ubar"))


# ------------------------------------------------------------------ T = 0: bit for bit over 50 steps
@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_zero_temperature_trajectory_equals_the_replay_bit_for_bit(name):
    moved = set()
    for k, opt, ps, th, vel, st in _trajectory_vs_free_replay(OPTION_SETS[name], 0.0):
        got = opt.state_dict()["extra_state"]
        assert _equal_state(got, st), (name, k, got, st)
        for p, t, v in zip(ps, th, vel):
            assert np.array_equal(p.detach().numpy(), t), (name, k)
            assert np.array_equal(opt.state[p]["velocity"].numpy(), v), (name, k)
        moved.add(round(got["alpha"], 12))
        last = got
    # the check has teeth: α moved (g'(α) ≠ 0 outside the band) and the phase switch happened where configured
    assert len(moved) > 10 or name == "switch-wait-band"
    assert last["phase"] == (2 if "switch_after" in OPTION_SETS[name] else 1)


# ------------------------------------------------------------------ T > 0: each step within the normal bound
def _ratio(diff, bound):
    """max diff/bound, 0 where diff is 0 (a zero bound then is not a violation)."""
    diff, bound = np.asarray(diff, dtype=np.float64), np.asarray(bound, dtype=np.float64)
    return float(np.max(np.where(diff == 0, 0.0, diff / np.maximum(bound, np.finfo(np.float64).tiny)), initial=0.0))


def _v_bound(terms_abs, noise_std, z):
    """Bound on |Δv'| for v' = A − B + σz when only z differs: σ(4 ulp(|z|) + 4·2⁻⁵³) + 4 ulp(|A| + |B| + |σz|)."""
    return noise_std * (4 * np.spacing(np.abs(z)) + 4 * 2.0 ** -53) + 4 * np.spacing(terms_abs)


def _step_violation(opt, ps, before, grads, U, k, options, temperature):
    """max |torch − replay| / bound over everything one step writes (> 1: outside the bound)."""
    th0, vel0, st0 = before
    th, vel, st = replay_ctld_step(th0, vel0, [g.numpy() for g in grads], U, st0, seed=opt.seed, step=k, lr=LR,
                                   temperature=temperature, **options)
    got = opt.state_dict()["extra_state"]
    o = dict(tctld.DEFAULTS, **options)
    worst = 0.0
    if got["counts"] != st["counts"] or got["phase"] != st["phase"] or got["steps"] != st["steps"]:
        return math.inf
    phase1 = st0["phase"] == 1
    ga = tctld.coupling(st0["alpha"], o["delta1"], o["delta2"], o["g_min"])
    sd = math.sqrt(2 * o["c_theta"] * LR * temperature) if phase1 else 0.0
    for i, (p, t, v, t0, v0, g) in enumerate(zip(ps, th, vel, th0, vel0, grads)):
        z = C.normals(C.stream_key(opt.seed, k, i, "xi"), t.size).reshape(t.shape)
        v0 = np.zeros_like(t) if v0 is None else v0
        terms = np.abs(v0) + np.abs(g.numpy()) * LR * ga + np.abs(z * sd)
        bv = _v_bound(terms, sd, z)
        bt = bv + 2 * np.spacing(np.abs(t0) + np.abs(v))
        dv = np.abs(opt.state[p]["velocity"].numpy() - v)
        dt = np.abs(p.detach().numpy() - t)
        worst = max(worst, _ratio(dv, bv), _ratio(dt, bt))
    if phase1:
        xa = C.normals(C.stream_key(opt.seed, k, ALPHA_PARAM_INDEX, ALPHA_STREAM), 1)[0]
        sa = math.sqrt(2 * o["c_alpha"] * o["eta_alpha"] * temperature)
        # v_α' = (1−c_α)v_α − η_α·force + σ_α ξ_α, and |η_α·force| <= |v_α| + |v_α'| + |σ_α ξ_α|
        terms = 2 * (abs(st0["alpha_velocity"]) + abs(st["alpha_velocity"]) + abs(sa * xa))
        bva = float(_v_bound(terms, sa, xa))
        # α' = α + v_α' (and 2α_max − α' at the wall): two more roundings
        ba = bva + 4 * float(np.spacing(2 * o["alpha_max"] + abs(st0["alpha"]) + abs(st["alpha_velocity"])))
        worst = max(worst, _ratio(abs(got["alpha_velocity"] - st["alpha_velocity"]), bva),
                    _ratio(abs(got["alpha"] - st["alpha"]), ba))
    du = np.abs(np.array(got["ubar"]) - np.array(st["ubar"]))
    if o["bias"] == "metadynamics":
        worst = max(worst, _ratio(du, 4 * np.spacing(np.abs(st["ubar"]))))
    elif np.any(du != 0):
        return math.inf
    return worst


def _replayed_steps(options, temperature, steps=50, dtype=F64, tamper=None):
    """Run 50 steps; replay each from the optimizer's state before it; return the worst violation ratio."""
    ps = _params(dtype)
    opt = CTLD(ps, lr=LR, temperature=temperature, seed=7, **options)
    if tamper is not None:
        tamper(opt)
    worst = 0.0
    for k in range(steps):
        U, grads = _potential_and_grads(ps)
        before = _snapshot(opt, ps)
        for p, g in zip(ps, grads):
            p.grad = g
        opt.step(potential=U)
        worst = max(worst, _step_violation(opt, ps, before, grads, U, k, options, temperature))
    return worst, opt


@pytest.mark.parametrize("name", sorted(OPTION_SETS) + ["metadynamics"])
def test_each_step_replays_within_the_box_muller_bound(name):
    options = META if name == "metadynamics" else OPTION_SETS[name]
    worst, opt = _replayed_steps(options, 1.0)
    assert worst <= 1.0, (name, worst)
    assert opt.num_steps == 50


# ------------------------------------------------------------------ mutations the parity checks catch
def test_mutation_wrong_sign_of_the_alpha_drift_is_caught(monkeypatch):
    orig = tctld.ctld_alpha_step

    def flipped(*args, **kw):
        return orig(*args, **dict(kw, eta_alpha=-kw["eta_alpha"]))
    monkeypatch.setattr(tctld, "ctld_alpha_step", flipped)
    opts = OPTION_SETS["abf-wall-mirror"]
    first = next(_trajectory_vs_free_replay(opts, 0.0))
    _, opt, _, _, _, st = first
    assert opt.state_dict()["extra_state"]["alpha"] != st["alpha"]
    worst, _ = _replayed_steps(opts, 1.0, steps=5)
    assert worst > 1.0


def test_mutation_alpha_noise_from_parameter_0s_stream_is_caught():
    def tamper(opt):
        opt._alpha_index = torch.tensor(0, dtype=torch.int64)  # ξ_α = parameter 0's first normal
    worst, _ = _replayed_steps(OPTION_SETS["abf-wall-mirror"], 1.0, steps=5, tamper=tamper)
    assert worst > 1.0


def test_mutation_alpha_noise_from_another_stream_is_caught(monkeypatch):
    monkeypatch.setattr(tctld, "ALPHA_STREAM", "z1")
    worst, _ = _replayed_steps(OPTION_SETS["no-bias"], 1.0, steps=5)
    assert worst > 1.0


# ------------------------------------------------------------------ float32
def test_float32_parameters_are_within_the_float32_bound_of_the_replay():
    """θ block in float32 vs the float64 replay of the same float32 state (24-bit normals): float32 normals are
    within 2⁻¹⁸(1 + |z|) of the float64 ones (docs/fast_path.md); five roundings of 2⁻²⁴ on the terms' magnitudes
    (v·(1−c), float32(η g(α)), its product with ∇Ũ, σz, the two sums) stay below 2⁻²¹·Σ|terms|; θ + v' adds
    2⁻²⁴|θ'|.  α stays float64: within the float64 bound."""
    opts = OPTION_SETS["abf-wall-mirror"]
    ps = _params(torch.float32)
    opt = CTLD(ps, lr=LR, temperature=1.0, seed=3, **opts)
    o = dict(tctld.DEFAULTS, **opts)
    sd = math.sqrt(2 * o["c_theta"] * LR)
    worst = 0.0
    for k in range(30):
        U, grads = _potential_and_grads(ps)
        th0, vel0, st0 = _snapshot(opt, ps)
        for p, g in zip(ps, grads):
            p.grad = g
        opt.step(potential=U)
        th, vel, st = replay_ctld_step(th0, vel0, [g.numpy() for g in grads], U, st0, seed=opt.seed, step=k, lr=LR,
                                       **opts)
        ga = tctld.coupling(st0["alpha"], o["delta1"], o["delta2"], o["g_min"])
        for i, (p, t, v, v0, g) in enumerate(zip(ps, th, vel, vel0, grads)):
            assert p.dtype == torch.float32 and opt.state[p]["velocity"].dtype == torch.float32
            z = C.normals(C.stream_key(opt.seed, k, i, "xi"), t.size, bits=24).reshape(t.shape)
            v0 = np.zeros_like(t) if v0 is None else v0.astype(np.float64)
            terms = np.abs(v0) + np.abs(g.numpy().astype(np.float64)) * LR * ga + np.abs(z) * sd
            bv = sd * 2.0 ** -18 * (1 + np.abs(z)) + 2.0 ** -21 * terms
            bt = bv + 2.0 ** -24 * np.abs(t) * 2
            worst = max(worst, _ratio(np.abs(opt.state[p]["velocity"].numpy() - v), bv),
                        _ratio(np.abs(p.detach().numpy() - t), bt))
        got = opt.state_dict()["extra_state"]
        assert got["counts"] == st["counts"]
        assert abs(got["alpha"] - st["alpha"]) <= 1e-14
    assert worst <= 1.0


def _torch_normals(key, n, np_dtype):
    """torch's own counter normals of a stream key (the fast path's), as NumPy in ``np_dtype``."""
    from torchport import counter_rng as tc

    dt = torch.float32 if np_dtype == np.float32 else torch.float64
    return tc.normals(tc.key_tensor(key), n, dtype=dt).numpy()


def _float32_steps(options, steps=30, **replay_kw):
    """float32 CTLD, each step replayed with ``dtype="float32"`` from the optimizer's state before it, fed torch's own
    normals and with the replay's own; yields (k, opt, ps, (θ, v, state) given torch's normals, (θ, v, state) own,
    (θ₀, v₀, state₀))."""
    ps = _params(torch.float32)
    opt = CTLD(ps, lr=LR, temperature=1.0, seed=3, **options)
    for k in range(steps):
        U, grads = _potential_and_grads(ps)
        before = _snapshot(opt, ps)
        for p, g in zip(ps, grads):
            p.grad = g
        opt.step(potential=U)
        args = (before[0], before[1], [g.numpy() for g in grads], U, before[2])
        kw = dict(dict(seed=opt.seed, step=k, lr=LR, dtype="float32", **options), **replay_kw)
        yield (k, opt, ps, replay_ctld_step(*args, normal_source=_torch_normals, **kw), replay_ctld_step(*args, **kw),
               before)


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_float32_replay_fed_torchs_normals_is_bit_for_bit(name):
    """``replay_ctld_step(dtype="float32")`` is the float32 fast path's θ block op by op (v·f32(1−c_θ) −
    g·f32(η g(α)) + z·f32(σ), θ + v; phase 2 v·f32(μ) − g·f32(η₂)) and the float64 α block: fed torch's own
    normals it equals the torch step bit for bit -- θ, v (float32), α, v_α, histogram, phase -- in both phases."""
    for k, opt, ps, (th, vel, st), _own, _before in _float32_steps(OPTION_SETS[name]):
        for p, t, v in zip(ps, th, vel):
            assert t.dtype == np.float32 and np.array_equal(p.detach().numpy(), t), (name, k)
            assert np.array_equal(opt.state[p]["velocity"].numpy(), v), (name, k)
        assert _equal_state(opt.state_dict()["extra_state"], st), (name, k)


def test_float32_replay_with_its_own_normals_is_within_the_normals_bound():
    """With its own float32 normals (log/sqrt/cos correctly rounded; torch's within 3 ulp(|z|), docs/fast_path.md)
    θ and v are within crosscheck.FAST32_ULPS = 8 float32 ulp of the step's largest magnitude (|θ|, |v| before and
    after, σ·Z_MAX_24): the normal's 3 ulp scaled by σ <= that magnitude, plus the two sums' roundings.
    Measured: <= 1.0 float32 ulp, about 80 % of the elements bit-identical."""
    from torchport.crosscheck import FAST32_ULPS, Z_MAX_24

    opts = OPTION_SETS["abf-wall-mirror"]
    o = dict(tctld.DEFAULTS, **opts)
    sd = math.sqrt(2 * o["c_theta"] * LR)
    worst, same, total = 0.0, 0, 0
    for _k, opt, ps, _given, (th, vel, st), (th0, vel0, _) in _float32_steps(opts):
        for p, t, v, a0, b0 in zip(ps, th, vel, th0, vel0):
            b0 = np.zeros_like(a0) if b0 is None else b0
            for got, want in ((p.detach().numpy(), t), (opt.state[p]["velocity"].numpy(), v)):
                big = np.maximum.reduce([np.abs(got), np.abs(want), np.abs(a0), np.abs(b0),
                                         np.full(got.shape, sd * Z_MAX_24, dtype=np.float32)])
                err = np.abs(got.astype(np.float64) - want.astype(np.float64))
                worst = max(worst, float(np.max(err / np.spacing(big.astype(np.float32)))))
                same, total = same + int(np.sum(got == want)), total + got.size
        assert opt.state_dict()["extra_state"]["counts"] == st["counts"]
    assert worst <= FAST32_ULPS, worst
    assert same > 0.5 * total, (same, total)


@pytest.mark.parametrize("replay_kw", [dict(dtype="float64"), dict(bits=53)], ids=["float64 arithmetic", "53-bit"])
def test_float32_replay_mutations_are_caught(replay_kw):
    """Mutations of the float32 replay: float64 arithmetic (fed torch's normals, no longer bit for bit), or the
    normals from 53-bit uniforms (beyond the 8-ulp bound where 1 − u is small)."""
    from torchport.crosscheck import FAST32_ULPS

    opts = OPTION_SETS["no-bias"]
    bitwise, worst = True, 0.0
    for _k, _opt, ps, (th, _vel, _), (oth, _ovel, _), (th0, _, _) in _float32_steps(opts, steps=40, **replay_kw):
        for p, t, ot, a0 in zip(ps, th, oth, th0):
            got = p.detach().numpy().astype(np.float64)
            bitwise = bitwise and np.array_equal(got, t.astype(np.float64))
            big = np.maximum(np.maximum(np.abs(got), np.abs(a0)), 0.3)
            worst = max(worst, float(np.max(np.abs(got - ot) / np.spacing(big.astype(np.float32)))))
    assert not bitwise if replay_kw.get("dtype") == "float64" else worst > FAST32_ULPS, (bitwise, worst)


# ------------------------------------------------------------------ resume, seeds, no host synchronisation
def _run_with_resume(split, steps=30, options=None):
    options = options or dict(OPTION_SETS["switch-momentum"])
    ps = _params()
    opt = CTLD(ps, lr=LR, seed=5, **options)
    for k in range(steps):
        if k == split:
            sd = opt.state_dict()
            ps = [torch.nn.Parameter(p.detach().clone()) for p in ps]
            opt = CTLD(ps, lr=LR, seed=99, **options)  # the seed comes from the state dict
            opt.load_state_dict(sd)
        U, grads = _potential_and_grads(ps)
        for p, g in zip(ps, grads):
            p.grad = g
        opt.step(potential=U)
    return [p.detach().clone() for p in ps], opt


@pytest.mark.parametrize("split", [7, 20])
def test_resume_from_state_dict_is_bit_for_bit(split):
    a, opt_a = _run_with_resume(None)
    b, opt_b = _run_with_resume(split)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert opt_a.state_dict()["extra_state"] == opt_b.state_dict()["extra_state"]
    assert opt_a.state_dict()["extra_state"]["phase"] == 2  # the run crossed the switch at step 20


def test_seed_from_a_generator_is_one_drawn_integer_and_seeds_give_their_own_bits():
    g = torch.Generator().manual_seed(4)
    expected = int(torch.randint(0, (1 << 63) - 1, (1,), generator=torch.Generator().manual_seed(4))[0])
    assert CTLD(_params(), lr=LR, seed=g).seed == expected

    def run(seed):
        ps = _params()
        opt = CTLD(ps, lr=LR, seed=seed, eta_alpha=0.05)
        for _ in range(3):
            U, grads = _potential_and_grads(ps)
            for p, gr in zip(ps, grads):
                p.grad = gr
            opt.step(potential=U)
        return ps[0].detach().clone(), opt.alpha
    a, b = run(1), run(1)
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert not torch.equal(a[0], run(2)[0])


def test_step_does_not_synchronise_with_a_tensor_potential(monkeypatch):
    """No .item(), bool(), float(), int() or tolist() of a tensor in step(): the closure's loss stays on the device,
    the bin index is a tensor, the phase switch (without waiting for the band) is counted on the host."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    x = torch.linspace(-1, 1, 15, dtype=F64).reshape(5, 3)
    opt = CTLD(model.parameters(), lr=LR, seed=0, eta_alpha=0.05, switch_after=3, bias="metadynamics")

    def closure():
        opt.zero_grad()
        loss = (model(x) ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)

    def refuse(*a, **k):
        raise AssertionError("host synchronisation in step()")
    with monkeypatch.context() as m:
        for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
            m.setattr(torch.Tensor, name, refuse)
        for _ in range(4):  # phase 1, the switch, phase 2
            opt.step(closure)
    assert opt.ct["phase"] == 2
    opt.check_finite()


def test_non_finite_potential_tensor_is_flagged_lazily_a_number_at_once():
    ps = _params()
    opt = CTLD(ps, lr=LR, seed=0)
    _, grads = _potential_and_grads(ps)
    for p, g in zip(ps, grads):
        p.grad = g
    opt.step(potential=torch.tensor(float("nan"), dtype=F64))  # stays on the device
    with pytest.raises(FloatingPointError, match="potential.*step 1"):
        opt.check_finite()
    opt.check_finite()  # cleared
    before = opt.state_dict()
    with pytest.raises(ValueError, match="potential must be finite, got inf"):
        opt.step(potential=float("inf"))
    assert opt.state_dict()["num_steps"] == before["num_steps"] == 1
    ps[1].grad[0, 1] = float("inf")
    opt.step(potential=1.0)
    with pytest.raises(F.NonFiniteGradientError, match=r"params'\]\[1\].*step 2"):
        opt.check_finite()


def test_what_the_default_path_refuses():
    ps = _params()
    opt = CTLD(ps, lr=LR, seed=0)
    with pytest.raises(ValueError, match="noise=.*exact=True"):
        opt.step(potential=1.0, noise={"xi": torch.zeros(13, dtype=F64), "xi_alpha": torch.zeros(1)})
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=rf"{str(dtype)[6:]}.*exact=True"):
            CTLD([torch.nn.Parameter(torch.zeros(3, dtype=dtype))], lr=LR, seed=0)
    with pytest.raises(ValueError, match="compile.*exact=True"):
        CTLD(_params(), lr=LR, seed=0, exact=True, compile=True)
    exact = CTLD(_params(), lr=LR, seed=0, exact=True)
    with pytest.raises(ValueError, match="exact=True"):
        opt.load_state_dict(exact.state_dict())
    with pytest.raises(ValueError, match="exact=False"):
        exact.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="potential"):
        opt.step()


def test_exact_true_is_the_generator_path_and_differs_from_the_default():
    def run(**kw):
        ps = _params()
        opt = CTLD(ps, lr=LR, eta_alpha=0.05, **kw)
        for _ in range(3):
            U, grads = _potential_and_grads(ps)
            for p, g in zip(ps, grads):
                p.grad = g
            opt.step(potential=U)
        return ps[0].detach().clone(), opt
    e1, opt_e = run(seed=0, exact=True)
    e2, _ = run(generator=torch.Generator().manual_seed(0), exact=True)
    f, opt_f = run(seed=0)
    assert torch.equal(e1, e2) and not torch.equal(e1, f)
    assert opt_e.generator is not None and opt_f.generator is None and opt_f.seed == 0


@pytest.mark.slow
def test_compiled_step_is_close_to_the_eager_one():
    """compile=True (inductor may contract or reorder): within 1e-12 relative of the eager step over 10 steps."""
    def run(compile):
        ps = _params()
        opt = CTLD(ps, lr=LR, seed=2, compile=compile, **OPTION_SETS["abf-wall-mirror"])
        for _ in range(10):
            U, grads = _potential_and_grads(ps)
            for p, g in zip(ps, grads):
                p.grad = g
            opt.step(potential=torch.tensor(U, dtype=F64))
        return [p.detach().clone() for p in ps], opt.state_dict()["extra_state"]
    (pc, sc), (pe, se) = run(True), run(False)
    assert sc["counts"] == se["counts"]
    assert abs(sc["alpha"] - se["alpha"]) <= 1e-12
    for a, b in zip(pc, pe):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


def test_replay_refuses_bad_input_by_name():
    ps = _params()
    opt = CTLD(ps, lr=LR, seed=0)
    th, vel, st = _snapshot(opt, ps)
    grads = [np.zeros_like(t) for t in th]
    cases = [
        (dict(n_bin=3), ValueError, "n_bin"),
        (dict(state={"alpha": 0.0}), ValueError, "state"),
        (dict(grads=grads[:1]), ValueError, "grads"),
        (dict(lr=[LR]), ValueError, "lr"),
        (dict(param_indices=[0]), ValueError, "param_indices"),
        (dict(potential=None), ValueError, "potential"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(dtype="float16"), ValueError, "dtype.*'float16'"),
        (dict(bits=32), ValueError, "bits.*32"),
    ]
    for over, exc, needle in cases:
        kw = dict(thetas=th, velocities=vel, grads=grads, potential=1.0, state=st, seed=0, step=0, lr=LR)
        kw.update(over)
        with pytest.raises(exc, match=needle):
            replay_ctld_step(**kw)
