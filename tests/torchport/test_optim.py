"""torchport.optim: scaling contract, checkpoints, groups/closures/foreach, bad input, statistics."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from refimpl.formats import FixedPoint
from torchport.optim import (CTLD, QSGLD, SGHMC, SGLD, AskewSGD, BinaryConnect, CyclicalSchedule,
                             LowPrecisionSGHMC, LowPrecisionSGLD, ProxQuant, decay_schedule_factor,
                             sghmc_coefficients)

F64 = torch.float64

# every optimizer, as a factory (params) -> optimizer, with stochastic parts switched on
FACTORIES = {
    "SGLD": lambda p: SGLD(p, lr=0.01, temperature=0.5, num_data=3, weight_decay=0.1, seed=1, exact=True),
    "SGHMC": lambda p: SGHMC(p, lr=0.05, friction=2.0, inverse_mass=2.0, seed=1, exact=True),
    "LP-SGLD-full": lambda p: LowPrecisionSGLD(p, lr=0.01, weight_format="fixed:8:5", grad_format="fixed:8:5",
                                               seed=1, exact=True),
    "LP-SGLD-low": lambda p: LowPrecisionSGLD(p, lr=0.01, weight_format="fixed:8:5", accumulator="low", seed=1, exact=True),
    "LP-SGLD-vc": lambda p: LowPrecisionSGLD(p, lr=0.01, weight_format="bfp:8:0", grad_format="bfp:8:0",
                                             accumulator="low", variance_corrected=True, seed=1, exact=True),
    "LP-SGHMC-full": lambda p: LowPrecisionSGHMC(p, lr=0.05, weight_format="fixed:8:5", grad_format="fixed:8:5",
                                                 seed=1, exact=True),
    "LP-SGHMC-low": lambda p: LowPrecisionSGHMC(p, lr=0.05, weight_format="fixed:8:5", accumulator="low", seed=1, exact=True),
    "LP-SGHMC-vc": lambda p: LowPrecisionSGHMC(p, lr=0.05, weight_format="float:5:4", accumulator="low",
                                               variance_corrected=True, seed=1, exact=True),
    "QSGLD": lambda p: QSGLD(p, lr=0.01, rounding="stochastic", optimizer="adam", langevin_noise=True, seed=1,
                             exact=True),
    "AskewSGD": lambda p: AskewSGD(p, lr=0.05, eps=0.05, base="adam", exact=True),
    "BinaryConnect": lambda p: BinaryConnect(p, lr=0.05, stochastic=True, seed=1, exact=True),
    "ProxQuant": lambda p: ProxQuant(p, lr=0.05, lambda_rate=1e-3, base="adam", exact=True),
    "CTLD": lambda p: CTLD(p, lr=0.01, seed=1, eta_alpha=0.05, switch_after=7),
}


def _model(seed=0, dtype=F64):
    torch.manual_seed(seed)  # only the model initialisation; the optimizers never touch the global RNG
    m = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).to(dtype)
    return m


def _data(dtype=F64):
    g = torch.Generator().manual_seed(3)
    return torch.randn(16, 4, generator=g, dtype=dtype), torch.randn(16, 2, generator=g, dtype=dtype)


def _train(model, opt, steps, x, y):
    for _ in range(steps):
        def closure():
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            return loss
        opt.step(closure)


# ------------------------------------------------------------------------- scaling contract
def test_sgld_scaling_contract_exact():
    """θ' = θ − lr·∇L + √(2·lr·T/N)·ξ, with ξ fed in, evaluated exactly as documented."""
    lr, T, N = 0.3, 0.7, 11.0
    theta = torch.tensor([0.5, -1.25, 2.0], dtype=F64, requires_grad=True)
    theta.grad = torch.tensor([0.1, 0.2, -0.3], dtype=F64)
    xi = torch.tensor([1.0, -0.5, 0.25], dtype=F64)
    expected = theta.detach() - lr * theta.grad + math.sqrt(2 * lr * T / N) * xi
    SGLD([theta], lr=lr, temperature=T, num_data=N, seed=0, exact=True).step(noise={"xi": xi})
    assert torch.equal(theta.detach(), expected)


def test_sgld_scaling_worked_example():
    """Mean-loss form (L = U/N, num_data=N, lr) equals textbook SGLD (L = U, num_data=1, η = lr/N)."""
    N, lr = 50_000, 0.5
    theta_a = torch.tensor([0.3, -0.2], dtype=F64, requires_grad=True)
    theta_b = theta_a.detach().clone().requires_grad_(True)
    grad_U = torch.tensor([2500.0, -1200.0], dtype=F64)  # ∇U; the mean loss has ∇U/N
    xi = torch.tensor([0.7, -1.1], dtype=F64)
    theta_a.grad = grad_U / N
    SGLD([theta_a], lr=lr, temperature=1e-3, num_data=N, seed=0, exact=True).step(noise={"xi": xi})
    theta_b.grad = grad_U
    SGLD([theta_b], lr=lr / N, temperature=1e-3, num_data=1, seed=0, exact=True).step(noise={"xi": xi})
    assert torch.allclose(theta_a, theta_b, rtol=1e-14, atol=1e-16)
    # injected variance 2·lr·T/N = 2e-8 (the CIFAR worked example of spec §3.1)
    assert math.isclose(2 * lr * 1e-3 / N, 2e-8)


# ---------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_save_resume_is_bit_for_bit(name):
    x, y = _data()
    ref_model = _model()
    ref_opt = FACTORIES[name](ref_model.parameters())
    _train(ref_model, ref_opt, 12, x, y)

    model = _model()
    opt = FACTORIES[name](model.parameters())
    _train(model, opt, 5, x, y)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    model2 = _model(seed=99)  # different init, overwritten by the checkpoint
    opt2 = FACTORIES[name](model2.parameters())
    model2.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["opt"])
    _train(model2, opt2, 7, x, y)
    for a, b in zip(ref_model.parameters(), model2.parameters()):
        assert torch.equal(a, b), name


def test_state_dict_without_generator_is_rejected():
    p = torch.zeros(2, dtype=F64, requires_grad=True)
    opt = SGLD([p], lr=0.1, seed=0, exact=True)
    sd = opt.state_dict()
    del sd["generator_state"]
    with pytest.raises(ValueError, match="generator_state"):
        opt.load_state_dict(sd)


# ------------------------------------------------------------- groups, closures, foreach
@pytest.mark.parametrize("cls", [SGLD, SGHMC])
def test_foreach_equals_per_tensor(cls):
    x, y = _data()
    outs = []
    for fe in (True, False):
        model = _model()
        opt = cls(model.parameters(), lr=0.02, seed=4, foreach=fe, exact=True)
        _train(model, opt, 6, x, y)
        outs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_param_groups_closure_frozen_and_gradless_params():
    model = _model()
    x, y = _data()
    frozen = model[0].bias
    frozen.requires_grad_(False)
    spare = torch.nn.Parameter(torch.ones(3, dtype=F64))  # never receives a gradient
    opt = SGLD([{"params": [model[0].weight, frozen], "lr": 1e-3},
                {"params": list(model[2].parameters()) + [spare], "lr": 1e-2, "temperature": 0.0}], lr=0.5, seed=0, exact=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor)
    assert torch.equal(frozen, before["0.bias"])
    assert torch.equal(spare, torch.ones(3, dtype=F64))
    assert not torch.equal(model[0].weight, before["0.weight"])
    # group 2 has T = 0: a plain SGD step of lr 1e-2
    g = model[2].weight.grad
    assert torch.equal(model[2].weight, before["2.weight"] - g * 1e-2)


def test_noise_layout_skips_gradless_parameters():
    """Noise is drawn only for parameters that step, so a grad-less parameter does not shift the stream."""
    a = torch.zeros(3, dtype=F64, requires_grad=True)
    b = torch.zeros(4, dtype=F64, requires_grad=True)
    a.grad = torch.zeros(3, dtype=F64)
    SGLD([b, a], lr=0.5, seed=7, exact=True).step()
    a2 = torch.zeros(3, dtype=F64, requires_grad=True)
    a2.grad = torch.zeros(3, dtype=F64)
    SGLD([a2], lr=0.5, seed=7, exact=True).step()
    assert torch.equal(a, a2)


def test_generator_reproducibility_and_independence_from_global_rng():
    def run(seed):
        p = torch.zeros(5, dtype=F64, requires_grad=True)
        p.grad = torch.zeros(5, dtype=F64)
        torch.manual_seed(seed * 13)  # must not matter
        SGLD([p], lr=0.1, seed=seed, exact=True).step()
        return p.detach()

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_nonfinite_gradient_names_the_parameter():
    model = _model()
    opt = SGLD(model.named_parameters(), lr=0.1, seed=0, exact=True)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    model[2].bias.grad[1] = float("nan")
    with pytest.raises(FloatingPointError, match=r"2\.bias"):
        opt.step()
    opt2 = LowPrecisionSGLD(list(model.parameters()), lr=0.1, weight_format="fixed:8:4", seed=0, exact=True)
    model[2].bias.grad[1] = float("inf")
    with pytest.raises(FloatingPointError, match=r"param_groups\[0\]\['params'\]\[3\]"):
        opt2.step()


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-1.0), "lr"), (dict(lr=0.1, temperature=-1.0), "temperature"), (dict(lr=0.1, num_data=0), "num_data"),
    (dict(lr=float("nan")), "lr"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGLD([torch.zeros(1, requires_grad=True)], seed=0, **kwargs, exact=True)


def test_bad_options():
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="seed"):
        SGLD(p, lr=0.1, exact=True)
    with pytest.raises(ValueError, match="accumulator"):
        LowPrecisionSGLD(p, lr=0.1, accumulator="half", seed=0, exact=True)
    with pytest.raises(ValueError, match="variance_corrected"):
        LowPrecisionSGLD(p, lr=0.1, weight_format="fixed:8:4", variance_corrected=True, seed=0, exact=True)
    with pytest.raises(ValueError, match="weight_format"):
        LowPrecisionSGLD(p, lr=0.1, weight_format="fixed:8", seed=0, exact=True)
    with pytest.raises(ValueError, match="position_sign"):
        SGHMC(p, lr=0.1, position_sign="plus", seed=0, exact=True)
    with pytest.raises(ValueError, match="rounding"):
        QSGLD(p, lr=0.1, rounding="up")
    with pytest.raises(ValueError, match="velocity_rescaling"):
        LowPrecisionSGHMC(p, lr=0.1, weight_format="fixed:8:4", velocity_rescaling="paper", seed=0, exact=True)
    with pytest.raises(ValueError, match="velocity_rescaling"):
        LowPrecisionSGHMC(p, lr=0.1, weight_format="bfp:8", accumulator="low", velocity_rescaling="code", seed=0, exact=True)
    with pytest.raises(ValueError, match="ties"):
        LowPrecisionSGLD(p, lr=0.1, weight_format="fixed:8:4", accumulator="low", variance_corrected=True,
                         ties="odd", seed=0, exact=True)
    with pytest.raises(ValueError, match="unknown CTLD options"):
        CTLD(p, lr=0.1, seed=0, n_bin=3)


def test_noise_in_validation():
    p = torch.zeros(3, dtype=F64, requires_grad=True)
    p.grad = torch.zeros(3, dtype=F64)
    opt = SGLD([p], lr=0.1, seed=0, exact=True)
    with pytest.raises(ValueError, match="missing stream 'xi'"):
        opt.step(noise={})
    with pytest.raises(ValueError, match="unknown streams"):
        opt.step(noise={"xi": torch.zeros(3), "u": torch.zeros(3)})
    with pytest.raises(ValueError, match="3 elements"):
        opt.step(noise={"xi": torch.zeros(4)})


def test_noise_in_does_not_advance_generator():
    p = torch.zeros(3, dtype=F64, requires_grad=True)
    p.grad = torch.zeros(3, dtype=F64)
    opt = SGLD([p], lr=0.1, seed=0, exact=True)
    state = opt.generator.get_state()
    opt.step(noise={"xi": torch.ones(3)})
    assert torch.equal(state, opt.generator.get_state())


def test_low_precision_weights_stay_on_grid():
    fmt = FixedPoint(8, 5)
    p = torch.linspace(-1, 1, 50, dtype=F64).requires_grad_(True)
    for opt in (LowPrecisionSGLD([p], lr=0.01, weight_format=fmt, accumulator="low", seed=0, exact=True),
                LowPrecisionSGLD([p], lr=0.01, weight_format=fmt, accumulator="low", variance_corrected=True, seed=0, exact=True),
                LowPrecisionSGLD([p], lr=0.01, weight_format=fmt, seed=0, exact=True)):
        for _ in range(5):
            p.grad = p.detach().clone()
            opt.step()
            k = p.detach() / fmt.delta
            assert torch.equal(k, torch.round(k))


def test_sghmc_coefficients_match_refimpl():
    from refimpl.sghmc import coefficients
    ref = coefficients(0.05, 2.0, 2.0, 0.3)
    mine = sghmc_coefficients(0.05, 2.0, 2.0, 0.3)
    assert list(mine) == [ref[k] for k in ("a", "c_v", "c_xv", "c_xg", "sigma_v", "sigma_x", "sigma_xv")]


def test_cyclical_schedule():
    s = CyclicalSchedule(0.5, total_steps=7 * 35 * 4, num_cycles=7, steps_per_epoch=4, samples_per_cycle=5)
    assert s.lr(0) == 0.5 and s.lr(s.cycle_length) == 0.5
    assert math.isclose(s.lr(s.cycle_length // 2), 0.25)
    collected = [k for k in range(7 * 35 * 4) if s.should_collect(k)]
    assert len(collected) == 35  # 5 per cycle, published cSGLD
    assert collected[:5] == [30 * 4 + 4 * i + 3 for i in range(5)]
    e = CyclicalSchedule(1.0, 100, 2, exploration_fraction=0.5)
    assert not e.add_noise(10) and e.add_noise(30) and not e.add_noise(60)
    with pytest.raises(ValueError, match="num_cycles"):
        CyclicalSchedule(1.0, 3, 5)
    assert decay_schedule_factor(40, 100) == 1.0 and decay_schedule_factor(95, 100) == 0.01
    assert math.isclose(decay_schedule_factor(70, 100), 1 - 0.99 * 0.5)


# ----------------------------------------------------------------------------- statistics
def _stationary_var(make, n=20_000, steps=150, eta=0.1, seed=0):
    """Var of θ under U = θ²/2 (exact gradient), n independent chains (one tensor), after ``steps``."""
    p = torch.zeros(n, dtype=F64, requires_grad=True)
    opt = make([p], eta)
    for _ in range(steps):
        p.grad = p.detach().clone()
        opt.step()
    st = opt.state[p]
    x = st["accumulator"] if "accumulator" in st else p
    return float(x.detach().var())


# tolerance: 5 Monte Carlo SE of a Gaussian sample variance, SE = var·√(2/n) (n = 20 000 chains, i.i.d.
# after 150 steps: the chain contracts like (1−η)^k = 1e-7, so the initial state is forgotten).
def _close(v, target, n=20_000):
    return abs(v - target) <= 5 * target * math.sqrt(2.0 / n)


SGLD_TARGET = 2.0 / (2.0 - 0.1)  # (P1) with s = 0: (2 + ηs²)/(2 − η)


def test_sgld_stationary_variance():
    assert _close(_stationary_var(lambda p, e: SGLD(p, lr=e, seed=3, exact=True)), SGLD_TARGET)


def test_sgld_variance_check_rejects_wrong_noise_scale():
    """Mutation: √(lr·T/N) instead of √(2·lr·T/N) (half the variance) must fail."""
    assert not _close(_stationary_var(lambda p, e: SGLD(p, lr=e, temperature=0.5, seed=3, exact=True)), SGLD_TARGET)


def test_vc_sgld_matches_sgld_variance_naive_does_not():
    """(P4): VC SGLDLP-L keeps Var = 2/(2−η) (Δ = 0.5, branch Q5); (P3): naive LP-L inflates it (≈1.27)."""
    vc = _stationary_var(lambda p, e: LowPrecisionSGLD(p, lr=e, weight_format=FixedPoint(8, 1), accumulator="low",
                                                       variance_corrected=True, seed=5, exact=True))
    naive = _stationary_var(lambda p, e: LowPrecisionSGLD(p, lr=e, weight_format=FixedPoint(8, 1),
                                                          accumulator="low", seed=5, exact=True))
    assert _close(vc, SGLD_TARGET)
    assert not _close(naive, SGLD_TARGET) and naive > SGLD_TARGET


def _sghmc_var_x(sign):
    """Stationary Var x of (H1) on U = x²/2 from the discrete Lyapunov equation (spec §5.8 P7)."""
    a, c_v, c_xv, c_xg, s_v, s_x, s_xv = sghmc_coefficients(0.1, 2.0, 1.0)
    A = np.array([[1 + sign * c_xg, c_xv], [-c_v, a]])
    Q = np.array([[s_x, s_xv], [s_xv, s_v]])
    S = np.zeros((2, 2))
    for _ in range(5000):
        S = A @ S @ A.T + Q
    return S[0, 0]


@pytest.mark.parametrize("sign", ["correct", "paper"])
def test_sghmc_stationary_variance_both_signs(sign):
    target = _sghmc_var_x(-1.0 if sign == "correct" else 1.0)
    v = _stationary_var(lambda p, e: SGHMC(p, lr=e, friction=2.0, position_sign=sign, seed=9, exact=True), steps=300)
    assert _close(v, target)


def test_sghmc_variance_check_rejects_wrong_sign():
    """Mutation: the published '+' sign against the correct-sign prediction must fail."""
    target = _sghmc_var_x(-1.0)
    v = _stationary_var(lambda p, e: SGHMC(p, lr=e, friction=2.0, position_sign="paper", seed=9, exact=True), steps=300)
    assert not _close(v, target)


def test_float32_parameters_work():
    p = torch.zeros(1000, dtype=torch.float32, requires_grad=True)
    opt = LowPrecisionSGHMC([p], lr=0.05, weight_format="fixed:8:5", accumulator="low", variance_corrected=True,
                            seed=0, exact=True)
    for _ in range(20):
        p.grad = p.detach().clone()
        opt.step()
    assert p.dtype == torch.float32 and bool(torch.isfinite(p).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_parameters(dtype):
    ps = [torch.zeros(5, dtype=dtype, requires_grad=True), torch.zeros(3, dtype=dtype, requires_grad=True)]
    for opt in (SGLD(ps, lr=0.1, seed=0, exact=True),
                LowPrecisionSGLD(ps, lr=0.1, weight_format="fixed:8:4", accumulator="low", variance_corrected=True,
                                 seed=0, exact=True)):
        for p in ps:
            p.grad = torch.ones_like(p)
        opt.step()
        assert all(p.dtype == dtype and bool(torch.isfinite(p).all()) for p in ps)
    k = ps[0].float() / 2**-4
    assert torch.equal(k, torch.round(k))


# --------------------------------------------------------------------------------------
# the method table (refimpl.methods): one method set, one set of names, one default
# --------------------------------------------------------------------------------------
def _table_optimizer(name, params):
    import torchport.optim as O
    from refimpl.methods import torch_optimizer

    cls_name, kwargs = torch_optimizer(name)
    row_kw = dict(lr=0.01, seed=0, **kwargs)
    cls = getattr(O, cls_name)
    if cls_name.startswith("LowPrecision"):
        row_kw["weight_format"] = "fixed:8:5"
    return cls(params, **row_kw)


def test_both_packages_expose_the_same_method_set():
    """Every method of the table has a refimpl sampler and a torchport optimizer configuration, and the torch
    optimizer draws exactly the table's streams (by name) that refimpl draws for it."""
    import inspect

    import refimpl
    import torchport.optim as O
    from refimpl.methods import GRADIENT, METHODS

    assert set(refimpl.driver.registered_methods()) == set(METHODS)
    for name, row in METHODS.items():
        cls = getattr(O, row.torch_class)
        accepted = inspect.signature(cls.__init__).parameters
        has_var_kw = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        for key in list(row.torch_kwargs) + [o for o in row.options if o not in row.refimpl_only]:
            assert key in accepted or has_var_kw, (name, key)
        p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        opt = _table_optimizer(name, [p])
        torch_streams = [n for n, _ in opt.noise_layout]
        kw = {"fmt": "fixed:8:5"} if row.low_precision else {}
        spec = refimpl.noise_spec(name, 3, **({"rounding": "stochastic"} if name == "qsgld" else {}))
        ref_streams = [n for n, _, _ in spec]
        table = [s for s in row.streams if s != GRADIENT]
        assert set(torch_streams) <= set(table), (name, torch_streams, table)
        assert set(ref_streams) <= set(table), (name, ref_streams, table)
        if name not in ("qsgld", "ctld"):  # option-dependent layouts, checked by the crosscheck
            assert set(torch_streams) == set(ref_streams), (name, torch_streams, ref_streams, kw)


def test_torch_option_defaults_equal_the_table():
    """The options shared by both packages have the same defaults (the table is the one definition)."""
    import inspect

    import torchport.optim as O
    from refimpl.methods import METHODS

    for name, row in METHODS.items():
        params = inspect.signature(getattr(O, row.torch_class).__init__).parameters
        for opt, default in row.options.items():
            if opt in row.refimpl_only:
                continue
            if opt in params:
                assert params[opt].default == default, (name, opt)
    from torchport.optim.ctld import DEFAULTS

    assert DEFAULTS == dict(METHODS["ctld"].options)


def test_gradient_format_default_is_the_weight_format():
    """grad_format="same" (default, as refimpl's grad_fmt) quantizes gradients onto weight_format; None keeps
    them in full precision; the noise layout says which (stream "u_grad")."""
    p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    for cls in (LowPrecisionSGLD, LowPrecisionSGHMC):
        default = cls([p], lr=0.01, weight_format="fixed:8:5", seed=0)
        assert default.grad_format == default.weight_format and ("u_grad", "uniform") in default.noise_layout
        full = cls([p], lr=0.01, weight_format="fixed:8:5", grad_format=None, seed=0)
        assert full.grad_format is None and ("u_grad", "uniform") not in full.noise_layout
        other = cls([p], lr=0.01, weight_format="fixed:8:5", grad_format="fixed:8:2", seed=0)
        assert other.grad_format.fl == 2


def test_shared_scalars_are_one_definition():
    """SGHMC coefficients, the decay schedule and the CTLD coupling: torchport calls refimpl.formulas."""
    import math

    from refimpl import formulas, sghmc
    from refimpl.schedules import Decay
    from torchport.optim import decay_schedule_factor, sghmc_coefficients
    from torchport.optim.ctld import coupling, coupling_derivative

    for eta in (1e-4, 0.05, 0.7):
        want = formulas.sghmc_coefficients(eta, 2.0, 1.5, 0.3)
        assert sghmc_coefficients(eta, 2.0, 1.5, 0.3) == want
        assert tuple(sghmc.coefficients(eta, 2.0, 1.5, 0.3).values()) == want
    d = Decay(0.1, 10, 3)
    for k in range(0, 30):
        assert d.eta(k) == 0.1 * decay_schedule_factor(k // 3, 10) == 0.1 * formulas.decay_factor((k // 3) / 10)
    for a in (-0.9, -0.5, 0.1, 0.3, 0.79, 0.95):
        assert coupling(a, 0.2, 0.8, 0.1) == formulas.ctld_coupling(a, 0.2, 0.8, 0.1)
        assert coupling_derivative(a, 0.2, 0.8, 0.1) == formulas.ctld_coupling_derivative(a, 0.2, 0.8, 0.1)
    assert not math.isnan(formulas.decay_factor(1.0))
    from torchport.optim.qsgld import qsgld_resolution

    for k in (0, 7, 123):
        for sched, ident in (("constant", 0), ("linear", 1), ("log", 2)):
            assert qsgld_resolution(k, 0.01, 0.5, rounding="stochastic", schedule=sched, rate=0.3,
                                    steps_per_epoch=10) == formulas.qsgld_resolution(k, 0.01, 0.5, 1, 0.0, 2.0, ident,
                                                                                     0.3, 10, False, 2.0)


# --------------------------------------------------------------------------------------
# SGHMC momentum resampling (resample_momentum_every) and the friction range
# --------------------------------------------------------------------------------------
def _sghmc_pair(every, **kw):
    p = torch.tensor([0.3, -1.2, 0.5], dtype=torch.float64, requires_grad=True)
    return p, LowPrecisionSGHMC([p], lr=0.05, friction=2.0, inverse_mass=1.5, temperature=0.8,
                                weight_format="fixed:8:5", accumulator="low", resample_momentum_every=every,
                                seed=3, **kw, exact=True)


@pytest.mark.parametrize("cls", ["SGHMC", "LowPrecisionSGHMC"])
@pytest.mark.parametrize("bad", [-1, 1.5, 2.0, True, "3", None])
def test_resample_momentum_every_validated(cls, bad):
    import torchport.optim as O

    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    kw = {"weight_format": "fixed:8:5"} if cls != "SGHMC" else {}
    with pytest.raises(ValueError, match="resample_momentum_every .*got " + repr(bad).replace(".", r"\.")):
        getattr(O, cls)([p], lr=0.1, resample_momentum_every=bad, seed=0, **kw, exact=True)


def test_resample_momentum_every_is_optimizer_wide():
    _, opt = _sghmc_pair(2)
    q = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="resample_momentum_every"):
        opt.add_param_group({"params": [q], "resample_momentum_every": 3})


def test_resampling_layout_and_refresh_steps():
    """v_refresh is drawn only with K > 0; at steps k ≡ 0 (mod K) the stored velocity is ignored: the step
    equals a step from velocity √(uT/N)·v_refresh (refimpl.formulas.sghmc_velocity_sd)."""
    from refimpl import formulas

    assert "v_refresh" not in dict(_sghmc_pair(0)[1].noise_layout)
    p, opt = _sghmc_pair(2)
    assert opt.noise_layout[-1] == ("v_refresh", "normal")
    names = dict(opt.noise_layout)
    gen = torch.Generator().manual_seed(9)
    noise = {n: (torch.randn(3, generator=gen, dtype=torch.float64) if k == "normal"
                 else torch.rand(3, generator=gen, dtype=torch.float64)) for n, k in names.items()}
    opt.state[p]["velocity"].fill_(5.0)          # ignored at k = 0
    p.grad = p.detach() * 1.0
    x0 = p.detach().clone()
    opt.step(noise=noise)
    q, ref = _sghmc_pair(0)
    q.data.copy_(x0)
    sd = formulas.sghmc_velocity_sd(1.5, 0.8)
    ref.state[q]["velocity"].copy_(noise["v_refresh"] * sd)
    q.grad = q.detach() * 1.0
    ref.step(noise={n: t for n, t in noise.items() if n != "v_refresh"})
    assert torch.equal(p, q) and torch.equal(opt.state[p]["velocity"], ref.state[q]["velocity"])
    # k = 1: no refresh, the stored velocity is used
    p.grad = p.detach() * 1.0
    q.grad = q.detach() * 1.0
    opt.step(noise=noise)
    ref.step(noise={n: t for n, t in noise.items() if n != "v_refresh"})
    assert torch.equal(p, q)


@pytest.mark.parametrize("make", ["SGHMC", "LowPrecisionSGHMC"])
def test_resampling_resume_is_bit_for_bit(make):
    """state_dict() after 7 steps (K = 3, mid-period), loaded into a fresh optimizer: the next 8 steps equal
    those of the uninterrupted run (the generator and num_steps, hence the refresh phase, are restored)."""
    import torchport.optim as O

    def build():
        p = torch.tensor([0.3, -1.2, 0.5], dtype=torch.float64, requires_grad=True)
        kw = {"weight_format": "fixed:8:5", "accumulator": "low"} if make != "SGHMC" else {}
        return p, getattr(O, make)([p], lr=0.05, friction=2.0, inverse_mass=1.5, resample_momentum_every=3,
                                   seed=5, **kw, exact=True)

    def run(p, opt, n):
        for _ in range(n):
            p.grad = p.detach() * 1.0
            opt.step()

    p, opt = build()
    run(p, opt, 15)
    a, oa = build()
    run(a, oa, 7)
    buf = io.BytesIO()
    torch.save({"opt": oa.state_dict(), "p": a.detach()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    b, ob = build()
    b.data.copy_(saved["p"])
    ob.load_state_dict(saved["opt"])
    run(b, ob, 8)
    assert torch.equal(b, p)


@pytest.mark.parametrize("cls", ["SGHMC", "LowPrecisionSGHMC"])
def test_friction_below_the_coefficient_range_is_refused(cls):
    """friction < 2**-511 (friction² not a normal float64; (H0) is NaN at 1e-300) is refused by name, in the
    constructor and per group; the bound itself is accepted and gives finite steps."""
    import torchport.optim as O
    from refimpl.formulas import SGHMC_MIN_FRICTION

    kw = {"weight_format": "fixed:8:5"} if cls != "SGHMC" else {}
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"friction must be >= .*got friction=1e-300"):
        getattr(O, cls)([p], lr=0.1, friction=1e-300, seed=0, **kw, exact=True)
    opt = getattr(O, cls)([p], lr=0.1, friction=SGHMC_MIN_FRICTION, seed=0, **kw, exact=True)
    p.grad = torch.ones(2, dtype=torch.float64)
    opt.step()
    assert torch.isfinite(p).all()
    q = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="param group 1: friction"):
        opt.add_param_group({"params": [q], "friction": 1e-200})
