"""Table-driven bad-input battery for refimpl.netopt (issue 13, item 2).

Every public optimizer (configuration, ``init``, ``forward_params``, ``step``),
the level and scale helpers, the base optimizers, the (A1)-(A4) functions and the
toy problems and training loop are fed bad input.  A case names the exception
type, the strings the message must contain (argument and value), and checks that
nothing changed: the arrays passed in (state parameters, gradients) and the
numpy Generator's state.  Outcomes: ``clear`` / ``unclear`` (wrong type, a
message that does not name the argument and value, or something changed) /
``silent`` (no exception).  ``python tests/refimpl/netopt/test_netopt_bad_inputs.py``
prints the counts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from refimpl import netopt as N
from refimpl.netopt import askewsgd as A
from refimpl.netopt import base as B
from refimpl.netopt import binaryconnect as BC
from refimpl.netopt import levels as L
from refimpl.netopt import problems as P
from refimpl.netopt import proxquant as PQ

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from _bad_inputs import classify, numpy_changed, numpy_state  # noqa: E402

NAN, INF = float("nan"), float("inf")
VALUE_ERRORS = (ValueError, TypeError)


@dataclass
class Case:
    id: str
    make: Callable     # () -> dict of things the act uses; every ndarray / Generator in it must not change
    act: Callable      # (things) -> anything; must raise
    needles: tuple
    exc: tuple = VALUE_ERRORS


def outcome(case: Case):
    """('clear' | 'unclear' | 'silent', detail): tests/_bad_inputs.py's classifier."""
    things = case.make()
    return classify(lambda: case.act(things), case.needles, case.exc, lambda: numpy_state(things), numpy_changed)


# ------------------------------------------------------------------ optimizers
def _params():
    rng = np.random.default_rng(0)
    return [rng.uniform(-0.9, 0.9, size=(3, 2)), rng.uniform(-0.9, 0.9, size=4)]


def _grads():
    rng = np.random.default_rng(1)
    return [rng.standard_normal((3, 2)), rng.standard_normal(4)]


OPTIMIZERS = {
    "AskewSGD": lambda: N.AskewSGD(),
    "AskewSGD-sawb-adam": lambda: N.AskewSGD(levels=L.uniform_levels(17), scale="sawb", base="adam"),
    "BinaryConnect": lambda: N.BinaryConnect(),
    "BinaryConnect-stochastic": lambda: N.BinaryConnect(stochastic=True),
    "ProxQuant": lambda: N.ProxQuant(),
}


def _ready(name):
    def make():
        opt = OPTIMIZERS[name]()
        state = opt.init(_params())
        state = opt.step(state, _grads(), 0.05, 0.5, 0)
        return {"opt": opt, "state": state, "grads": _grads(), "rng": np.random.default_rng(2)}
    return make


def _step(t, grads=None, lr=0.05, eps=0.5, epoch=0, state=None):
    return t["opt"].step(t["state"] if state is None else state, t["grads"] if grads is None else grads, lr, eps,
                         epoch)


def _optimizer_cases():
    out = []
    for name in OPTIMIZERS:
        mk = _ready(name)

        def mk_nan(mk=mk):
            t = mk()
            t["bad"] = [x.copy() for x in t["grads"]]
            t["bad"][1][2] = NAN
            ps = _params()
            ps[0][1, 1] = NAN
            t["ps"] = ps
            return t
        out.append(Case(f"{name}.step(grads with NaN)", mk_nan, lambda t: _step(t, grads=t["bad"]),
                        ("grads[1]", "non-finite"), exc=(FloatingPointError,)))
        out.append(Case(f"{name}.step(one gradient missing)", mk, lambda t: _step(t, grads=t["grads"][:1]),
                        ("grads", "1", "2")))
        out.append(Case(f"{name}.step(gradient of the wrong shape)", mk,
                        lambda t: _step(t, grads=[t["grads"][0], t["grads"][1][:3]]), ("grads[1]", "(3,)", "(4,)")))
        out.append(Case(f"{name}.step(grads=None)", mk, lambda t: _step(t, grads=0), ("grads",)))
        for lr in (NAN, INF, -1.0, 0.0, "x"):
            out.append(Case(f"{name}.step(lr={lr!r})", mk, lambda t, lr=lr: _step(t, lr=lr), ("lr", repr(lr))))
        if name.startswith("AskewSGD"):
            for eps in (NAN, -1.0, 0.0, "x", None):
                out.append(Case(f"{name}.step(eps={eps!r})", mk, lambda t, eps=eps: _step(t, eps=eps),
                                ("eps", repr(eps))))
        for epoch in (-1, 1.5, "x"):
            out.append(Case(f"{name}.step(epoch={epoch!r})", mk, lambda t, epoch=epoch: _step(t, epoch=epoch),
                            ("epoch", repr(epoch))))
        out.append(Case(f"{name}.step(state=a dict)", mk, lambda t: _step(t, state={"params": t["grads"]}),
                        ("state", "dict")))

        out.append(Case(f"{name}.init(params with NaN)", mk_nan, lambda t: t["opt"].init(t["ps"]),
                        ("params[0]", "non-finite")))
        out.append(Case(f"{name}.init([])", mk, lambda t: t["opt"].init([]), ("params", "[]")))
        out.append(Case(f"{name}.init(a single array)", mk, lambda t: t["opt"].init(np.zeros(3)),
                        ("params", "ndarray")))
        out.append(Case(f"{name}.final_params(state=None)", mk, lambda t: t["opt"].final_params(None),
                        ("state", "None")))
    out.append(Case("BinaryConnect(stochastic).forward_params(rng=None)", _ready("BinaryConnect-stochastic"),
                    lambda t: t["opt"].forward_params(t["state"], None), ("rng", "NoneType")))
    out.append(Case("BinaryConnect(stochastic).forward_params(rng=3)", _ready("BinaryConnect-stochastic"),
                    lambda t: t["opt"].forward_params(t["state"], 3), ("rng", "int")))
    return out


def _config_cases():
    nonuniform = L.Levels(np.array([0.0, 1.0, 3.0]))
    single = L.Levels(np.array([1.0]))
    descending = L.Levels(np.array([1.0, -1.0]))
    with_nan = L.Levels(np.array([-1.0, NAN]))
    table = [
        ("AskewSGD", N.AskewSGD, dict(alpha=NAN), ("alpha", "nan")),
        ("AskewSGD", N.AskewSGD, dict(alpha=-1.0), ("alpha", "-1.0")),
        ("AskewSGD", N.AskewSGD, dict(alpha="x"), ("alpha", "'x'")),
        ("AskewSGD", N.AskewSGD, dict(scale=NAN), ("scale", "nan")),
        ("AskewSGD", N.AskewSGD, dict(scale=INF), ("scale", "inf")),
        ("AskewSGD", N.AskewSGD, dict(scale="live"), ("scale", "'live'")),
        ("AskewSGD", N.AskewSGD, dict(sawb_bits=1), ("sawb_bits", "1")),
        ("AskewSGD", N.AskewSGD, dict(sawb_bits=2.5), ("sawb_bits", "2.5")),
        ("AskewSGD", N.AskewSGD, dict(scale_freeze_epoch=-1), ("scale_freeze_epoch", "-1")),
        ("AskewSGD", N.AskewSGD, dict(scale_freeze_epoch="x"), ("scale_freeze_epoch", "'x'")),
        ("AskewSGD", N.AskewSGD, dict(clamp_nu="yes"), ("clamp_nu", "'yes'")),
        ("AskewSGD", N.AskewSGD, dict(clamp_after_step=None), ("clamp_after_step", "None")),
        ("AskewSGD", N.AskewSGD, dict(midpoint_guard=NAN), ("midpoint_guard", "nan")),
        ("AskewSGD", N.AskewSGD, dict(midpoint_guard=INF), ("midpoint_guard", "inf")),
        ("AskewSGD", N.AskewSGD, dict(final_scale="x"), ("final_scale", "'x'")),
        ("AskewSGD", N.AskewSGD, dict(levels=[-1.0, 1.0]), ("levels", "list")),
        ("AskewSGD", N.AskewSGD, dict(levels=nonuniform), ("levels", "spacing")),
        ("AskewSGD", N.AskewSGD, dict(levels=single), ("levels", "2")),
        ("AskewSGD", N.AskewSGD, dict(levels=descending), ("levels", "increasing")),
        ("AskewSGD", N.AskewSGD, dict(levels=with_nan), ("levels", "nan")),
        ("AskewSGD", N.AskewSGD, dict(base="rmsprop"), ("base", "'rmsprop'")),
        ("AskewSGD", N.AskewSGD, dict(base=B.BaseOptimizer(weight_decay=NAN)), ("weight_decay", "nan")),
        ("AskewSGD", N.AskewSGD, dict(base=B.BaseOptimizer(momentum=NAN)), ("momentum", "nan")),
        ("AskewSGD", N.AskewSGD, dict(base=B.BaseOptimizer(kind="adam", eps=-1.0)), ("eps", "-1.0")),
        ("AskewSGD", N.AskewSGD, dict(base=B.BaseOptimizer(kind="adam", eps=NAN)), ("eps", "nan")),
        ("AskewSGD", N.AskewSGD, dict(base=B.BaseOptimizer(kind="adam", beta1="x")), ("beta", "'x'")),
        ("BinaryConnect", N.BinaryConnect, dict(scale=NAN), ("scale", "nan")),
        ("BinaryConnect", N.BinaryConnect, dict(scale=INF), ("scale", "inf")),
        ("BinaryConnect", N.BinaryConnect, dict(stochastic="yes"), ("stochastic", "'yes'")),
        ("BinaryConnect", N.BinaryConnect, dict(levels=nonuniform), ("levels", "spacing")),
        ("BinaryConnect", N.BinaryConnect, dict(base=B.BaseOptimizer(weight_decay=-1.0)), ("weight_decay", "-1.0")),
        ("ProxQuant", N.ProxQuant, dict(scale=INF), ("scale", "inf")),
        ("ProxQuant", N.ProxQuant, dict(scale=-1.0), ("scale", "-1.0")),
        ("ProxQuant", N.ProxQuant, dict(lambda_rate=-1.0), ("lambda_rate", "-1.0")),
        ("ProxQuant", N.ProxQuant, dict(lambda_rate=INF), ("lambda_rate", "inf")),
        ("ProxQuant", N.ProxQuant, dict(lambda_rate="x"), ("lambda_rate", "'x'")),
        ("ProxQuant", N.ProxQuant, dict(levels=descending), ("levels", "increasing")),
    ]
    out = []
    for name, cls, kw, needles in table:
        def act(t, cls=cls, kw=kw):
            cls(**kw).init(t["ps"])
        out.append(Case(f"{name}({kw!r}).init", lambda: {"ps": _params()}, act, needles))
    return out


def _function_cases():
    lv = L.binary_levels()
    w = np.linspace(-1, 1, 5)

    def mk():
        return {"w": w.copy(), "rng": np.random.default_rng(3)}
    fns = [
        ("psi(eps=nan)", lambda t: A.psi(t["w"], -1.0, 1.0, NAN), ("eps", "nan")),
        ("psi(eps=-1)", lambda t: A.psi(t["w"], -1.0, 1.0, -1.0), ("eps", "-1.0")),
        ("psi_prime(a='x')", lambda t: A.psi_prime(t["w"], "x", 1.0), ("a", "'x'")),
        ("feasible_halfwidth(eps=-1)", lambda t: A.feasible_halfwidth(-1.0), ("eps", "-1.0")),
        ("feasible_halfwidth(eps=nan)", lambda t: A.feasible_halfwidth(NAN), ("eps", "nan")),
        ("feasible_halfwidth(spacing=0)", lambda t: A.feasible_halfwidth(0.1, 0.0), ("spacing", "0.0")),
        ("epsilon_imagenet(epoch='x')", lambda t: A.epsilon_imagenet("x"), ("epoch", "'x'")),
        ("epsilon_imagenet(epoch=-1)", lambda t: A.epsilon_imagenet(-1), ("epoch", "-1")),
        ("epsilon_logistic_notebook(epoch=nan)", lambda t: A.epsilon_logistic_notebook(NAN), ("epoch", "nan")),
        ("epsilon_moons_notebook(epoch='x')", lambda t: A.epsilon_moons_notebook("x"), ("epoch", "'x'")),
        ("epsilon_schedule('x')", lambda t: A.epsilon_schedule("x"), ("kind", "'x'")),
        ("epsilon_schedule('constant', eps0=nan)", lambda t: A.epsilon_schedule("constant", eps0=NAN), ("eps0", "nan")),
        ("epsilon_schedule('constant', eps0=inf)", lambda t: A.epsilon_schedule("constant", eps0=INF), ("eps0", "inf")),
        ("epsilon_schedule('exponential', rate=nan)", lambda t: A.epsilon_schedule("exponential", rate=NAN),
         ("rate", "nan")),
        ("epsilon_schedule('exponential', start='x')", lambda t: A.epsilon_schedule("exponential", start="x"),
         ("start", "'x'")),
        ("epsilon_schedule('constant', eps0='x')", lambda t: A.epsilon_schedule("constant", eps0="x"),
         ("eps0", "'x'")),
        ("askew_direction(eps=-1)", lambda t: A.askew_direction(t["w"], t["w"], lv, -1.0, 1.0), ("eps", "-1.0")),
        ("askew_direction(eps='x')", lambda t: A.askew_direction(t["w"], t["w"], lv, "x", 1.0), ("eps", "'x'")),
        ("askew_direction(g wrong shape)", lambda t: A.askew_direction(t["w"], t["w"][:3], lv, 0.1, 1.0),
         ("g", "(3,)")),
        ("askew_direction(nu_clamp=nan)", lambda t: A.askew_direction(t["w"], t["w"], lv, 0.1, 1.0, nu_clamp=NAN),
         ("nu_clamp", "nan")),
        ("askew_direction(w with NaN)", lambda t: A.askew_direction(np.array([NAN, 0.5]), np.zeros(2), lv, 0.1, 1.0),
         ("w", "non-finite")),
        ("askew_direction_numpy(eps=-1)", lambda t: A.askew_direction_numpy(t["w"], t["w"], lv, -1.0, 1.0),
         ("eps", "-1.0")),
        ("askew_direction_numpy(scale=0)", lambda t: A.askew_direction_numpy(t["w"], t["w"], lv, 0.1, 1.0, scale=0.0),
         ("scale", "0.0")),
        ("uniform_levels(1)", lambda t: L.uniform_levels(1), ("n_levels", "1")),
        ("kbit_levels(0)", lambda t: L.kbit_levels(0), ("bits", "0")),
        ("sawb_scale(bits=1)", lambda t: L.sawb_scale(t["w"], 1), ("bits", "1")),
        ("sawb_scale(w two-valued)", lambda t: L.sawb_scale(np.array([1.0, -1.0])), ("SAWB",)),
        ("bracket(levels='x')", lambda t: L.bracket(t["w"], "x"), ("levels", "'x'")),
        ("quantize_nearest(scale=0)", lambda t: L.quantize_nearest(t["w"], lv, 0.0), ("scale", "0.0")),
        ("quantize_nearest(scale=nan)", lambda t: L.quantize_nearest(t["w"], lv, NAN), ("scale", "nan")),
        ("quantize_nearest(levels=list)", lambda t: L.quantize_nearest(t["w"], [-1.0, 1.0]), ("levels", "list")),
        ("on_grid(scale=-1)", lambda t: L.on_grid(t["w"], lv, -1.0), ("scale", "-1.0")),
        ("stochastic_levels(u wrong shape)", lambda t: BC.stochastic_levels(t["w"], lv, 1.0, np.zeros(3)),
         ("u", "(3,)")),
        ("stochastic_levels(scale=0)", lambda t: BC.stochastic_levels(t["w"], lv, 0.0, np.zeros(5)), ("scale", "0.0")),
        ("prox_w_shaped(lam=-1)", lambda t: PQ.prox_w_shaped(t["w"], lv, 1.0, -1.0), ("lam", "-1.0")),
        ("prox_w_shaped(lam=inf)", lambda t: PQ.prox_w_shaped(t["w"], lv, 1.0, INF), ("lam", "inf")),
        ("prox_w_shaped(scale=0)", lambda t: PQ.prox_w_shaped(t["w"], lv, 0.0, 0.1), ("scale", "0.0")),
        ("validate_base(BaseOptimizer(weight_decay=nan))", lambda t: B.validate_base(B.BaseOptimizer(weight_decay=NAN)),
         ("weight_decay", "nan")),
        ("validate_base(3)", lambda t: B.validate_base(3), ("base", "3")),
        ("BaseOptimizer.update(lr=nan)",
         lambda t: B.BaseOptimizer().update([t["w"]], [t["w"]], B.BaseOptimizer().init([t["w"]]), NAN), ("lr", "nan")),
        ("BaseOptimizer.update(grads wrong length)",
         lambda t: B.BaseOptimizer().update([t["w"]], [], B.BaseOptimizer().init([t["w"]]), 0.1), ("grads", "0")),
        ("make_logistic_toy(rng=None)", lambda t: P.make_logistic_toy(None), ("rng", "NoneType")),
        ("make_logistic_toy(d=0)", lambda t: P.make_logistic_toy(t["rng"], d=0), ("d", "0")),
        ("make_logistic_toy(w_scale=inf)", lambda t: P.make_logistic_toy(t["rng"], w_scale=INF), ("w_scale", "inf")),
        ("make_logistic_toy(w_scale='x')", lambda t: P.make_logistic_toy(t["rng"], w_scale="x"), ("w_scale", "'x'")),
        ("make_two_moons(noise=inf)", lambda t: P.make_two_moons(t["rng"], noise=INF), ("noise", "inf")),
        ("make_two_moons(noise=nan)", lambda t: P.make_two_moons(t["rng"], noise=NAN), ("noise", "nan")),
        ("make_two_moons(n_train=1.5)", lambda t: P.make_two_moons(t["rng"], n_train=1.5), ("n_train", "1.5")),
        ("make_two_moons_notebook(noise=-1)", lambda t: P.make_two_moons_notebook(noise=-1.0), ("noise", "-1.0")),
        ("make_two_moons_notebook(random_state=-1)", lambda t: P.make_two_moons_notebook(random_state=-1),
         ("random_state", "-1")),
        ("load_mnist_subset(missing file)", lambda t: P.load_mnist_subset("/nonexistent/mnist.npz"),
         ("path", "/nonexistent/mnist.npz")),
        ("LogisticModel(d=0)", lambda t: P.LogisticModel(0), ("d", "0")),
        ("MoonsMLP(bn_momentum=nan)", lambda t: P.MoonsMLP(bn_momentum=NAN), ("bn_momentum", "nan")),
        ("MoonsMLP(bn_eps=-1)", lambda t: P.MoonsMLP(bn_eps=-1.0), ("bn_eps", "-1.0")),
        ("MnistMLP(hidden=0)", lambda t: P.MnistMLP(hidden=0), ("hidden", "0")),
        ("step_lr(lr0=nan)", lambda t: P.step_lr(NAN), ("lr0", "nan")),
        ("step_lr(factor=-1)", lambda t: P.step_lr(0.1, (2,), -1.0), ("factor", "-1.0")),
        ("step_lr(milestones='x')", lambda t: P.step_lr(0.1, "x", 0.5), ("milestones", "'x'")),
    ]
    out = [Case(d, mk, fn, nd) for d, fn, nd in fns]

    def train_mk():
        rng = np.random.default_rng(4)
        data, _ = P.make_logistic_toy(rng, d=3, n_train=20, n_test=10)
        return {"data": data, "rng": rng}

    def tr(t, **kw):
        args = dict(n_epochs=1, batch_size=10, lr=0.1, rng=t["rng"])
        args.update(kw)
        return P.train(P.LogisticModel(3), N.AskewSGD(), t["data"], **args)
    train_cases = [
        ("train(lr=nan)", dict(lr=NAN), ("lr", "nan")),
        ("train(lr='x')", dict(lr="x"), ("lr", "'x'")),
        ("train(lr=-1)", dict(lr=-1.0), ("lr", "-1.0")),
        ("train(n_epochs=0)", dict(n_epochs=0), ("n_epochs", "0")),
        ("train(batch_size=0)", dict(batch_size=0), ("batch_size", "0")),
        ("train(rng=1)", dict(rng=1), ("rng", "int")),
        ("train(eps_schedule=0.1)", dict(eps_schedule=0.1), ("eps_schedule", "0.1")),
        ("train(params0 wrong shape)", dict(params0=[np.zeros(4)]), ("params0", "(4,)")),
        ("train(lr=callable returning nan)", dict(lr=lambda e: NAN), ("lr", "nan")),
    ]
    for d, kw, nd in train_cases:
        out.append(Case(d, train_mk, lambda t, kw=kw: tr(t, **kw), nd))
    return out


CASES = _optimizer_cases() + _config_cases() + _function_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_clear_error_and_changes_nothing(case):
    result, detail = outcome(case)
    assert result == "clear", detail


def test_battery_detects_each_outcome():
    def mk():
        return {"w": np.zeros(3), "rng": np.random.default_rng(0)}
    assert outcome(Case("silent", mk, lambda t: None, ("x",)))[0] == "silent"
    assert outcome(Case("keyerror", mk, lambda t: {}["x"], ("x",)))[0] == "unclear"

    def half(t):
        t["w"][0] = 1.0
        raise ValueError("x=1")
    assert outcome(Case("half", mk, half, ("x",)))[0] == "unclear"

    def rng_used(t):
        t["rng"].random()
        raise ValueError("x=1")
    assert outcome(Case("rng", mk, rng_used, ("x",)))[0] == "unclear"


if __name__ == "__main__":
    counts = {"clear": 0, "unclear": 0, "silent": 0}
    lines = []
    for case in CASES:
        r, d = outcome(case)
        counts[r] += 1
        if r != "clear":
            lines.append(f"  {r:8s} {case.id}: {d[:160]}")
    print(f"{len(CASES)} cases: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if "-v" in sys.argv:
        print("\n".join(lines))
