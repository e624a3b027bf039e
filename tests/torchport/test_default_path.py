"""The default (fast) path of SGLD, LowPrecisionSGLD, SGHMC and LowPrecisionSGHMC (``exact=False``).

The optimizers users construct run torchport.fast's fused counter-stream update: bit for bit
the standalone FastLowPrecisionSGLD/SGHMC, refimpl's counter replay step by step (grid values
exactly; continuous values within the Box–Muller bound), resume bit for bit, the seed rule,
lazy finite-gradient flags (no host synchronisation in step()), and what the path refuses.
``exact=True`` is the float64 path (golden numbers; tests/torchport/test_optim.py).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import torchport.optim as O
from refimpl import counter_rng as C
from refimpl.formats import parse_format
from torchport import fast as F

FORMATS = ["fixed:8:6", "bfp:8:0", "float:5:2", "ieee:bfloat16"]
MODES = {"full": dict(accumulator="full"), "low": dict(accumulator="low"),
         "vc": dict(accumulator="low", variance_corrected=True)}

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _gloo import assert_one_and_two_ranks_agree  # noqa: E402  (tests/_gloo.py)


def _params(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(9, 6, generator=g, dtype=torch.float64).to(dtype) * 0.3)
    b = torch.nn.Parameter(torch.randn(6, generator=g, dtype=torch.float64).to(dtype) * 0.3)
    return [w, b]


def _grads(ps, k, dtype=None):
    g = torch.Generator().manual_seed(100 + k)
    return [torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype or p.dtype) for p in ps]


def _run(make, steps=4, dtype=torch.float64):
    ps = _params(dtype)
    opt = make(ps)
    for k in range(steps):
        for p, g in zip(ps, _grads(ps, k)):
            p.grad = g
        opt.step()
    return [p.detach().clone() for p in ps], opt


def _sgld_kw(fmt_text, mode):
    return dict(lr=0.05, temperature=1.0, num_data=50, weight_format=parse_format(fmt_text), weight_decay=0.01,
                seed=3, **MODES[mode])


def _sghmc_kw(fmt_text, mode):
    return dict(lr=0.05, friction=2.0, temperature=1.0, num_data=20, weight_format=parse_format(fmt_text), seed=4,
                **MODES[mode])


# ------------------------------------------------------------------ the same bits as torchport.fast
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fmt_text", FORMATS)
@pytest.mark.parametrize("mode", sorted(MODES))
def test_default_path_equals_fast_optimizers_bit_for_bit(fmt_text, mode, dtype):
    for ours, theirs, kw in ((O.LowPrecisionSGLD, F.FastLowPrecisionSGLD, _sgld_kw(fmt_text, mode)),
                             (O.LowPrecisionSGHMC, F.FastLowPrecisionSGHMC, _sghmc_kw(fmt_text, mode))):
        a, opt_a = _run(lambda ps, cls=ours, kw=kw: cls(ps, **kw), dtype=dtype)
        b, opt_b = _run(lambda ps, cls=theirs, kw=kw: cls(ps, **kw), dtype=dtype)
        assert all(torch.equal(x, y) for x, y in zip(a, b)), (ours.__name__, fmt_text, mode)
        for p_a, p_b in zip(opt_a.param_groups[0]["params"], opt_b.param_groups[0]["params"]):
            for key in ("accumulator", "velocity"):
                if key in opt_b.state[p_b]:
                    assert torch.equal(opt_a.state[p_a][key], opt_b.state[p_b][key]), key


def test_full_precision_sgld_and_sghmc_equal_the_fast_update_without_formats():
    a, _ = _run(lambda ps: O.SGLD(ps, lr=0.05, num_data=50, weight_decay=0.01, seed=3))
    b, _ = _run(lambda ps: F.FastLowPrecisionSGLD(ps, lr=0.05, num_data=50, weight_decay=0.01, accumulator="low",
                                                  seed=3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    a, _ = _run(lambda ps: O.SGHMC(ps, lr=0.05, friction=2.0, num_data=20, weight_decay=0.01, seed=4))
    b, _ = _run(lambda ps: F.FastLowPrecisionSGHMC(ps, lr=0.05, friction=2.0, num_data=20, weight_decay=0.01,
                                                   accumulator="low", seed=4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("mode", sorted(MODES))
def test_each_parameter_replays_in_refimpl_with_its_own_index(mode):
    """Two parameters, per-step replay with param_index 0 and 1: zero grid flips; the LP-F accumulator (a normal
    enters) within the documented 4 ulp."""
    fmt = parse_format("bfp:8:0")
    ps = _params()
    opt = O.LowPrecisionSGLD(ps, **_sgld_kw("bfp:8:0", mode))
    full = mode == "full"
    for k in range(3):
        grads = _grads(ps, k)
        before = [(p.detach().numpy().copy(), opt.state[p]["accumulator"].numpy().copy() if full else None)
                  for p in ps]
        for p, g in zip(ps, grads):
            p.grad = g
        opt.step()
        for i, p in enumerate(ps):
            th, ac = C.replay_sgld_step(before[i][0], before[i][1], grads[i].numpy(), seed=3, step=k, param_index=i,
                                        lr=0.05, temperature=1.0, num_data=50, weight_format=fmt, grad_format=fmt,
                                        variance_corrected=mode == "vc", weight_decay=0.01,
                                        accumulator=MODES[mode]["accumulator"])
            assert np.sum(th != p.detach().numpy()) == 0
            if full:
                got = opt.state[p]["accumulator"].numpy()
                assert np.all(np.abs(ac - got) <= 4 * np.spacing(np.abs(ac)))


def test_default_differs_from_exact_and_exact_is_the_generator_path():
    """The behaviour change: the same seed gives other numbers on the default path; exact=True keeps the
    torch.Generator stream (its state is in state_dict, there is no counter seed)."""
    a, opt_a = _run(lambda ps: O.LowPrecisionSGLD(ps, **_sgld_kw("fixed:8:6", "vc")))
    b, opt_b = _run(lambda ps: O.LowPrecisionSGLD(ps, **_sgld_kw("fixed:8:6", "vc"), exact=True))
    assert not torch.equal(a[0], b[0])
    assert "counter_seed" in opt_a.state_dict() and "generator_state" not in opt_a.state_dict()
    assert "generator_state" in opt_b.state_dict() and "counter_seed" not in opt_b.state_dict()
    assert opt_a.generator is None and opt_b.generator is not None


# ------------------------------------------------------------------ one call for all parameters
def _grouped_vs_per_parameter(make, dtype, monkeypatch, grouped_max=F.GROUP_MAX):
    """Three parameters in two groups (lr 0.05 and 0.02), four steps, the middle parameter without a gradient
    at step 2; the run with grouped calls and the run with per-parameter calls (GROUP_MAX = 0)."""
    def run(limit):
        monkeypatch.setattr(F, "GROUP_MAX", limit)
        g = torch.Generator().manual_seed(7)
        ps = [torch.nn.Parameter((torch.randn(shape, generator=g, dtype=torch.float64) * 0.3).to(dtype))
              for shape in ((9, 6), (6,), (4, 3))]
        opt = make([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.02}])
        calls = {"grouped": 0}
        inner = opt._fast_update_group

        def counted(todo, keys):
            out = inner(todo, keys)
            calls["grouped"] += out is not None
            return out
        opt._fast_update_group = counted
        for k in range(4):
            for j, (p, gr) in enumerate(zip(ps, _grads(ps, k))):
                p.grad = None if (k == 2 and j == 1) else gr
            opt.step()
        state = [t.clone() for p in ps for t in opt.state[p].values() if isinstance(t, torch.Tensor)]
        return [p.detach().clone() for p in ps] + state, calls["grouped"]

    grouped, n_grouped = run(grouped_max)
    per_param, n_per = run(0)
    return grouped, per_param, n_grouped, n_per


ALL_VARIANTS = (
    [("SGLD", lambda gs: O.SGLD(gs, lr=0.05, num_data=50, weight_decay=0.01, seed=3)),
     ("SGHMC", lambda gs: O.SGHMC(gs, lr=0.05, friction=2.0, num_data=20, weight_decay=0.01, seed=4))]
    + [(f"LowPrecisionSGLD {mode} {fmt}", lambda gs, fmt=fmt, mode=mode: O.LowPrecisionSGLD(gs, **_sgld_kw(fmt, mode)))
       for mode in sorted(MODES) for fmt in FORMATS + ["mxfp8_e4m3"]]
    + [(f"LowPrecisionSGHMC {mode} {fmt}",
        lambda gs, fmt=fmt, mode=mode: O.LowPrecisionSGHMC(gs, weight_decay=0.01, **_sghmc_kw(fmt, mode)))
       for mode in sorted(MODES) for fmt in FORMATS + ["mxint8"]])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name,make", ALL_VARIANTS, ids=[n for n, _ in ALL_VARIANTS])
def test_one_grouped_call_equals_one_call_per_parameter(name, make, dtype, monkeypatch):
    """SGLD/SGHMC variants (eager): one call of fast.sgld_step_group / sghmc_step_group per step gives the
    parameters and state of one sgld_step / sghmc_step call per parameter bit for bit, with two groups (their own
    lr) and a parameter without a gradient at one step (it keeps its index)."""
    grouped, per_param, n_grouped, n_per = _grouped_vs_per_parameter(make, dtype, monkeypatch)
    assert (n_grouped, n_per) == (0 if "bfp" in name else 4, 0)  # BFP: one call per parameter (fast._group_members)
    assert all(torch.equal(a, b) for a, b in zip(grouped, per_param)), name


def test_grouped_call_mutations_are_caught(monkeypatch):
    """The comparison above catches a grouped call that takes the j-th key instead of the parameter's index (the
    parameter without a gradient shifts them) and one that uses the first group's lr for every parameter."""
    make = ALL_VARIANTS[2][1]  # LowPrecisionSGLD full fixed:8:6
    real = F.sgld_step_group

    def wrong_key(ps, gs, accs, keys, indices, **kw):
        return real(ps, gs, accs, keys, list(range(len(ps))), **kw)

    def one_lr(ps, gs, accs, keys, indices, *, lrs, **kw):
        return real(ps, gs, accs, keys, indices, lrs=[lrs[0]] * len(lrs), **kw)

    for mutant in (wrong_key, one_lr):
        def patched(gs, mutant=mutant):
            opt = make(gs)
            opt._fast_group_fn = mutant
            return opt
        grouped, per_param, _, _ = _grouped_vs_per_parameter(patched, torch.float64, monkeypatch)
        assert not all(torch.equal(a, b) for a, b in zip(grouped, per_param)), mutant.__name__


def test_more_parameters_than_group_max_or_non_contiguous_take_the_per_parameter_path(monkeypatch):
    """Above GROUP_MAX parameters, or with a non-contiguous parameter (written back through views), the step
    calls the per-parameter update (the same bits)."""
    make = ALL_VARIANTS[2][1]
    grouped, per_param, n_grouped, _ = _grouped_vs_per_parameter(make, torch.float64, monkeypatch, grouped_max=2)
    assert n_grouped == 1  # only step 2, where two parameters have a gradient
    assert all(torch.equal(a, b) for a, b in zip(grouped, per_param))
    monkeypatch.setattr(F, "GROUP_MAX", 16)
    w = torch.nn.Parameter(torch.randn(6, 4, dtype=torch.float64).t())  # a transposed (non-contiguous) view
    opt = O.LowPrecisionSGLD([w], lr=0.05, weight_format="fixed:8:6", seed=1)
    w.grad = torch.ones_like(w)
    assert opt._fast_update_group([(opt._fast_group_args(opt.param_groups[0]), [(0, w)])],
                                  opt.counter.keys(1)) is None


# ------------------------------------------------------------------ resume, groups
@pytest.mark.parametrize("make", [
    lambda ps, s: O.SGLD(ps, lr=0.05, num_data=50, seed=s),
    lambda ps, s: O.LowPrecisionSGLD(ps, lr=0.05, num_data=50, weight_format="bfp:8:0", seed=s),
    lambda ps, s: O.LowPrecisionSGLD(ps, lr=0.05, num_data=50, weight_format="fixed:8:6", accumulator="low",
                                     variance_corrected=True, seed=s),
    lambda ps, s: O.SGHMC(ps, lr=0.05, friction=2.0, num_data=20, seed=s),
    lambda ps, s: O.LowPrecisionSGHMC(ps, lr=0.05, friction=2.0, num_data=20, weight_format="fixed:8:6", seed=s),
], ids=["SGLD", "LPSGLD-full", "LPSGLD-vc", "SGHMC", "LPSGHMC-full"])
def test_resume_from_state_dict_is_bit_for_bit(make):
    """6 steps straight == 3 steps, state_dict, a new optimizer (another seed: the saved one is restored), load,
    3 steps.  Mutation: a saved step count off by one does not reproduce the run."""
    def steps(ps, opt, ks):
        for k in ks:
            for p, g in zip(ps, _grads(ps, k)):
                p.grad = g
            opt.step()

    ps = _params()
    opt = make(ps, 5)
    steps(ps, opt, range(6))
    straight = [p.detach().clone() for p in ps]

    results = []
    for shift in (0, 1):
        ps = _params()
        opt = make(ps, 5)
        steps(ps, opt, range(3))
        sd = copy.deepcopy(opt.state_dict())
        saved = [p.detach().clone() for p in ps]
        sd["num_steps"] += shift
        ps2 = [torch.nn.Parameter(t.clone()) for t in saved]
        opt2 = make(ps2, 77)
        with torch.no_grad():
            for p, t in zip(ps2, saved):  # the constructor's initial rounding changed them: restore the weights
                p.copy_(t)
        opt2.load_state_dict(sd)
        assert opt2.seed == 5 and opt2.num_steps == 3 + shift
        steps(ps2, opt2, range(3, 6))
        results.append(all(torch.equal(a, b.detach()) for a, b in zip(straight, ps2)))
    assert results == [True, False]


def test_added_group_gets_the_state_and_bits_of_a_constructor_group():
    """add_param_group: accumulator and initial rounding of the new parameters with their own indices, so the
    run equals one with both groups given to the constructor."""
    def run(split):
        ps = _params(seed=2)
        kw = dict(lr=0.05, num_data=50, weight_format="bfp:8:0", seed=11)
        if split:
            opt = O.LowPrecisionSGLD([ps[0]], **kw)
            opt.add_param_group({"params": [ps[1]], "lr": 0.02})
        else:
            opt = O.LowPrecisionSGLD([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.02}], **kw)
        for k in range(3):
            for p, g in zip(ps, _grads(ps, k)):
                p.grad = g
            opt.step()
        return [p.detach().clone() for p in ps] + [opt.state[p]["accumulator"].clone() for p in ps]

    assert all(torch.equal(a, b) for a, b in zip(run(True), run(False)))


def test_parameters_without_gradient_keep_their_index():
    """A parameter without .grad takes no step but keeps its index: the other parameter's bits are those of a run
    in which both stepped."""
    both, _ = _run(lambda ps: O.LowPrecisionSGLD(ps, **_sgld_kw("fixed:8:6", "low")), steps=1)
    ps = _params()
    opt = O.LowPrecisionSGLD(ps, **_sgld_kw("fixed:8:6", "low"))
    ps[1].grad = _grads(ps, 0)[1]
    before = ps[0].detach().clone()
    opt.step()
    assert torch.equal(ps[1].detach(), both[1]) and torch.equal(ps[0].detach(), before)


# ------------------------------------------------------------------ seeds
def test_seed_from_a_generator_is_one_drawn_integer():
    g = torch.Generator().manual_seed(123)
    want = int(torch.randint(0, (1 << 63) - 1, (1,), generator=torch.Generator().manual_seed(123),
                             dtype=torch.int64)[0])
    state = g.get_state()
    for kw in (dict(seed=g), dict(generator=g)):
        g.set_state(state)
        opt = O.SGLD(_params(), lr=0.1, **kw)
        assert opt.seed == want
        assert not torch.equal(g.get_state(), state)  # advanced by the one draw
    a, _ = _run(lambda ps: O.LowPrecisionSGLD(ps, lr=0.05, weight_format="fixed:8:6",
                                              generator=torch.Generator().manual_seed(123)))
    b, _ = _run(lambda ps: O.LowPrecisionSGLD(ps, lr=0.05, weight_format="fixed:8:6", seed=want))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_same_seed_same_bits_and_another_seed_differs():
    def run(seed):
        return _run(lambda ps: O.LowPrecisionSGHMC(ps, **dict(_sghmc_kw("bfp:8:0", "vc"), seed=seed)))[0]
    assert all(torch.equal(x, y) for x, y in zip(run(1), run(1)))
    assert not torch.equal(run(1)[0], run(2)[0])


def test_exact_path_accepts_a_generator_as_seed():
    g = torch.Generator().manual_seed(5)
    a, _ = _run(lambda ps: O.SGLD(ps, lr=0.05, seed=g, exact=True))
    b, _ = _run(lambda ps: O.SGLD(ps, lr=0.05, seed=5, exact=True))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------ no host synchronisation; lazy finite check
def test_step_does_not_synchronise(monkeypatch):
    """No .item(), bool(), float(), int() or tolist() of a tensor during step() on the default path."""
    makers = [lambda ps: O.SGLD(ps, lr=0.05, seed=1),
              lambda ps: O.LowPrecisionSGLD(ps, lr=0.05, weight_format="bfp:8:0", accumulator="low",
                                            variance_corrected=True, seed=1),
              lambda ps: O.SGHMC(ps, lr=0.05, seed=1),
              lambda ps: O.LowPrecisionSGHMC(ps, lr=0.05, weight_format="fixed:8:6", seed=1)]
    for make in makers:
        ps = _params()
        opt = make(ps)
        for p, g in zip(ps, _grads(ps, 0)):
            p.grad = g
        opt.step()  # any lazy first-call work outside the patched region

        def refuse(*a, **k):
            raise AssertionError("host synchronisation in step()")
        with monkeypatch.context() as m:
            for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
                m.setattr(torch.Tensor, name, refuse)
            opt.step()
            opt.step()
        opt.check_finite()


def test_sync_guard_catches_the_exact_path(monkeypatch):
    """Mutation for the guard above: the exact path's eager finite check reads a flag back and is caught."""
    ps = _params()
    opt = O.SGLD(ps, lr=0.05, seed=1, exact=True)
    for p, g in zip(ps, _grads(ps, 0)):
        p.grad = g

    def refuse(*a, **k):
        raise AssertionError("host synchronisation in step()")
    monkeypatch.setattr(torch.Tensor, "__bool__", refuse)
    with pytest.raises(AssertionError, match="synchronisation"):
        opt.step()


def test_non_finite_gradient_is_flagged_lazily_and_named():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)).double()
    opt = O.LowPrecisionSGLD(model.named_parameters(), lr=0.05, weight_format="fixed:8:6", seed=0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    model[1].weight.grad[0, 1] = float("nan")
    opt.step()  # no error here: the flag stays on the device
    with pytest.raises(F.NonFiniteGradientError, match=r"1\.weight.*step 1"):
        opt.check_finite()
    opt.check_finite()  # the flags were cleared
    assert issubclass(F.NonFiniteGradientError, FloatingPointError)
    every = O.SGLD([torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))], lr=0.1, seed=0, check_every=2)
    p = every.param_groups[0]["params"][0]
    p.grad = torch.tensor([0.0, float("inf"), 0.0], dtype=torch.float64)
    every.step()
    with pytest.raises(FloatingPointError, match=r"param_groups\[0\]\['params'\]\[0\]"):
        every.step()


# ------------------------------------------------------------------ what the default path refuses
def test_unsupported_options_name_the_argument_and_exact_true():
    ps = _params()
    cases = [
        (lambda: O.LowPrecisionSGHMC(ps, lr=0.1, weight_format="fixed:8:6", accumulator="low",
                                     velocity_rescaling="paper", seed=0), "velocity_rescaling"),
        (lambda: O.SGHMC(ps, lr=0.1, resample_momentum_every=3, seed=0), "resample_momentum_every"),
        (lambda: O.SGLD(ps, lr=0.1, foreach=True, seed=0), "foreach"),
    ]
    for make, name in cases:
        with pytest.raises(ValueError, match=name) as info:
            make()
        assert "exact=True" in str(info.value)
    opt = O.SGLD(ps, lr=0.1, seed=0)
    with pytest.raises(ValueError, match="exact=True"):
        opt.step(noise={"xi": torch.zeros(60, dtype=torch.float64)})
    # the same options run on the exact path
    O.LowPrecisionSGHMC(_params(), lr=0.1, weight_format="fixed:8:6", accumulator="low", velocity_rescaling="paper",
                        seed=0, exact=True)


def test_a_format_the_fast_module_does_not_take_is_refused(monkeypatch):
    """The check asks torchport.fast (formats added there are accepted without a change here)."""
    def refuse_all(fmt, name="fmt"):
        raise ValueError(f"{name} not supported here, got {fmt!r}")
    monkeypatch.setattr(F, "_check_format", refuse_all)
    with pytest.raises(ValueError, match=r"weight_format=.*exact=True"):
        O.LowPrecisionSGLD(_params(), lr=0.1, weight_format="fixed:8:6", seed=0)
    O.LowPrecisionSGLD(_params(), lr=0.1, weight_format="fixed:8:6", seed=0, exact=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_parameters_are_refused_naming_the_dtype(dtype):
    p = torch.nn.Parameter(torch.zeros(4, dtype=dtype))
    with pytest.raises(TypeError, match=rf"{str(dtype)[6:]}.*exact=True"):
        O.SGLD([p], lr=0.1, seed=0)


def test_load_state_dict_of_the_other_path_is_refused():
    fast = O.SGLD(_params(), lr=0.1, seed=0)
    exact = O.SGLD(_params(), lr=0.1, seed=0, exact=True)
    with pytest.raises(ValueError, match="exact=True"):
        fast.load_state_dict(exact.state_dict())
    with pytest.raises(ValueError, match="exact=False"):
        exact.load_state_dict(fast.state_dict())


# ------------------------------------------------------------------ distributed: 1 vs 2 gloo ranks
def _gloo_body(rank, world):
    """One rank's run (tests/_gloo.py): the tensors every rank of 1 and of 2 must agree on."""
    import torch.distributed as dist

    w = torch.nn.Parameter(torch.linspace(-1, 1, 120, dtype=torch.float64).reshape(40, 3))
    opt = O.LowPrecisionSGHMC([w], lr=0.01, num_data=10, weight_format="fixed:8:6", accumulator="low",
                              variance_corrected=True, seed=9)
    for _ in range(3):
        # data items c = 1..4 split over the ranks, local gradient sums all-reduced as DDP does
        # (w is on the 2^-6 grid, so every partial sum is exact whatever the split)
        g = sum(w.detach() * float(c) for c in range(1, 5) if (c - 1) % world == rank)
        dist.all_reduce(g)
        w.grad = g / 4.0
        opt.step()
    return {"w": w.detach()}


def test_one_and_two_gloo_ranks_give_the_same_bits_with_the_default_path(tmp_path):
    assert_one_and_two_ranks_agree(_gloo_body, tmp_path)


@pytest.mark.slow
def test_compile_true_equals_the_compiled_fast_optimizer():
    """compile=True runs torchport.fast.maybe_compile(sgld_step): bit for bit FastLowPrecisionSGLD(compile=True), and
    within test_fast's compiled-vs-eager bounds of the eager default path (float32, LP-F fixed:8:6)."""
    kw = dict(lr=0.05, num_data=50, weight_format=parse_format("fixed:8:6"), seed=3)
    comp, opt_c = _run(lambda ps: O.LowPrecisionSGLD(ps, compile=True, **kw), steps=2, dtype=torch.float32)
    fast, _ = _run(lambda ps: F.FastLowPrecisionSGLD(ps, compile=True, **kw), steps=2, dtype=torch.float32)
    eager, opt_e = _run(lambda ps: O.LowPrecisionSGLD(ps, **kw), steps=2, dtype=torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(comp, fast))
    for a, b in zip(comp, eager):
        assert float((a != b).double().mean()) <= 1e-3
    for p_c, p_e in zip(opt_c.param_groups[0]["params"], opt_e.param_groups[0]["params"]):
        ac, ae = opt_c.state[p_c]["accumulator"].double(), opt_e.state[p_e]["accumulator"].double()
        # compiled kernels may contract/reassociate: 4 ulp of the largest term of acc - lr·g + sd·z, where
        # |lr·g| + sd·|z| < 0.5 here (lr = 0.05, |g| < 5, sd = 0.045, |z| < 6)
        terms = (ae.abs() + 0.5).float().numpy()
        assert torch.all((ac - ae).abs() <= 4 * torch.from_numpy(np.spacing(terms)).double())


COMPILED_GROUPED = {
    "LowPrecisionSGLD vc float:5:2": lambda gs: O.LowPrecisionSGLD(gs, compile=True, **_sgld_kw("float:5:2", "vc")),
    "LowPrecisionSGHMC full fixed:8:6": lambda gs: O.LowPrecisionSGHMC(gs, compile=True,
                                                                       **_sghmc_kw("fixed:8:6", "full")),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMPILED_GROUPED))
def test_compiled_grouped_call_compiles_once_and_equals_compiled_per_parameter(name, monkeypatch):
    """compile=True, float32: the grouped update is one graph, compiled at the first step and not again at the
    next two (dynamo's unique-graph count), and it gives the bits of the compiled per-parameter update (also
    with a parameter without a gradient at one step)."""
    from torch._dynamo.utils import counters

    make = COMPILED_GROUPED[name]
    ps = [torch.nn.Parameter(torch.randn(shape, dtype=torch.float32)) for shape in ((9, 6), (6,))]
    opt = make(ps)
    counters.clear()
    graphs = []
    for k in range(3):
        for p, g in zip(ps, _grads(ps, k)):
            p.grad = g
        opt.step()
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs == [1, 1, 1]
    grouped, per_param, n_grouped, n_per = _grouped_vs_per_parameter(make, torch.float32, monkeypatch)
    assert (n_grouped, n_per) == (4, 0)
    assert all(torch.equal(a, b) for a, b in zip(grouped, per_param)), name


def test_compile_defaults_to_on_unless_the_environment_says_0(monkeypatch):
    """compile=None (the default) compiles the fast path; $QLANGEVIN_COMPILE=0 (set by tests/conftest.py) makes it
    eager; any other value is an error naming the variable; exact=True never compiles."""
    p = [torch.nn.Parameter(torch.zeros(3))]
    monkeypatch.delenv("QLANGEVIN_COMPILE", raising=False)
    assert O.SGLD(p, lr=0.1, seed=0).compile is True
    assert O.SGLD(p, lr=0.1, seed=0, compile=False).compile is False
    assert O.SGLD(p, lr=0.1, seed=0, exact=True).compile is False
    monkeypatch.setenv("QLANGEVIN_COMPILE", "0")
    assert O.SGLD(p, lr=0.1, seed=0).compile is False
    assert O.SGLD(p, lr=0.1, seed=0, compile=True).compile is True
    monkeypatch.setenv("QLANGEVIN_COMPILE", "yes")
    with pytest.raises(ValueError, match="QLANGEVIN_COMPILE.*'yes'"):
        O.SGLD(p, lr=0.1, seed=0)
