"""Table-driven bad-input battery for torchport.optim (issue 13, item 2).

Every public optimizer's constructor, per-group values (in the constructor, in
``add_param_group`` and in ``load_state_dict``), ``step`` and ``load_state_dict``,
and every public function of :mod:`torchport.optim`, is fed bad input.  Each case
states the exception type it expects and strings the message must contain (the
argument's name and the value it got), and checks that nothing changed: the
parameters and their gradients, the optimizer's ``state_dict()`` (state, groups,
generator state, step counters) and the tensors passed in.

An outcome is

* ``clear``: the expected exception, a message naming the argument and the value,
  nothing changed;
* ``unclear``: another exception type (KeyError, ZeroDivisionError, "math domain
  error" ...), a message that does not name the argument/value, or a raising call
  that left the object half-changed;
* ``silent``: no exception at all.

``python tests/torchport/test_bad_inputs.py`` prints the counts (the numbers in
the commit message and the report came from it).
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch

from refimpl.netopt.levels import binary_levels, uniform_levels
from torchport import optim as O
from torchport.optim import ctld as tctld
from torchport.optim import netopt as tnet
from torchport.optim import qsgld as tqsgld

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _bad_inputs import classify  # noqa: E402

F64 = torch.float64
NAN, INF = float("nan"), float("inf")
VALUE_ERRORS = (ValueError, TypeError)


# ------------------------------------------------------------------ harness
@dataclass
class Case:
    id: str
    make: Callable          # () -> (optimizer or None, [tensors that must not change])
    act: Callable           # (optimizer, tensors) -> anything; must raise
    needles: tuple          # substrings the message must contain
    exc: tuple = VALUE_ERRORS
    extra: dict = field(default_factory=dict)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        return a.shape == b.shape and a.dtype == b.dtype and (
            torch.equal(a, b) or bool(torch.all((a == b) | (a.isnan() & b.isnan()))))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _snapshot(opt, tensors):
    snap = {"tensors": [t.detach().clone() for t in tensors],
            "grads": [None if getattr(t, "grad", None) is None else t.grad.clone() for t in tensors]}
    if opt is not None:
        snap["state_dict"] = copy.deepcopy(opt.state_dict())
        snap["attrs"] = {k: copy.deepcopy(getattr(opt, k)) for k in ("ct", "base_steps", "epoch", "num_steps")
                         if hasattr(opt, k)}
    return snap


def _changed(before, after):
    if _same(before, after):
        return None
    return f"half-changed {[k for k in before if not _same(before[k], after[k])]}"


def outcome(case: Case):
    """('clear' | 'unclear' | 'silent', detail): tests/_bad_inputs.py's classifier."""
    opt, tensors = case.make()
    return classify(lambda: case.act(opt, tensors), case.needles, case.exc, lambda: _snapshot(opt, tensors), _changed)


# ------------------------------------------------------------------ building blocks
def _params(n=2, shape=(4,), grad=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    ps = []
    for _ in range(n):
        p = torch.nn.Parameter((torch.rand(shape, generator=g, dtype=F64) - 0.5) * 1.7)
        if grad:
            p.grad = torch.rand(shape, generator=g, dtype=F64) - 0.5
        ps.append(p)
    return ps


def _ctld_step(opt):
    opt.step(potential=1.25)


# name -> (constructor, required kwargs, {hyperparameter: rule}, per-group keys, step)
# rules: "pos" (> 0 finite), "nonneg" (>= 0 finite), "unit" ([0, 1)), "int1" (int >= 1), "int0" (int >= 0)
OPTIMIZERS = {
    "SGLD": (O.SGLD, dict(lr=0.05, seed=0, exact=True),
             dict(lr="pos", temperature="nonneg", num_data="pos", weight_decay="nonneg"),
             ("lr", "temperature", "num_data", "weight_decay"), None),
    "LowPrecisionSGLD": (O.LowPrecisionSGLD, dict(lr=0.05, weight_format="fixed:8:6", seed=0, exact=True),
                         dict(lr="pos", temperature="nonneg", num_data="pos", weight_decay="nonneg"),
                         ("lr", "temperature", "num_data", "weight_decay"), None),
    "LowPrecisionSGLD-low-vc": (O.LowPrecisionSGLD, dict(lr=0.05, weight_format="fixed:8:6", accumulator="low",
                                                         variance_corrected=True, seed=0, exact=True),
                                dict(lr="pos", temperature="nonneg", num_data="pos"),
                                ("lr", "temperature", "num_data"), None),
    "SGHMC": (O.SGHMC, dict(lr=0.05, seed=0, exact=True),
              dict(lr="pos", friction="pos", inverse_mass="pos", temperature="nonneg", num_data="pos",
                   weight_decay="nonneg"),
              ("lr", "friction", "inverse_mass", "temperature", "num_data", "weight_decay"), None),
    "LowPrecisionSGHMC": (O.LowPrecisionSGHMC, dict(lr=0.05, weight_format="fixed:8:6", seed=0, exact=True),
                          dict(lr="pos", friction="pos", inverse_mass="pos", temperature="nonneg", num_data="pos",
                               weight_decay="nonneg", velocity_rescaling_constant="pos"),
                          ("lr", "friction", "inverse_mass", "temperature", "num_data", "weight_decay"), None),
    "QSGLD": (O.QSGLD, dict(lr=0.05, rounding="stochastic", seed=0, exact=True),
              dict(lr="pos", temperature="pos", base="gt1", rate="nonneg", c_q="pos", q0="pos",
                   steps_per_epoch="int1", adam_eps="pos"),
              ("lr", "temperature"), None),
    "CTLD": (O.CTLD, dict(lr=0.02, seed=0, exact=True),
             dict(lr="pos", temperature="nonneg", c_theta="open01", c_alpha="open01", eta_alpha="pos",
                  alpha_max="pos", k_c="pos", meta_height="pos", omega_const="pos", g_min="pos",
                  n_bins="int2", momentum="unit", eta2="pos", alpha0="finite", switch_after="int0",
                  meta_width="pos"),
             ("lr",), _ctld_step),
    "AskewSGD": (O.AskewSGD, dict(lr=0.05, exact=True),
                 dict(lr="pos", alpha="pos", eps="pos", fixed_scale="pos", sawb_bits="int2",
                      scale_freeze_epoch="int0", midpoint_guard="nonneg"),
                 ("lr",), None),
    "BinaryConnect": (O.BinaryConnect, dict(lr=0.05, exact=True), dict(lr="pos", scale="pos"), ("lr",), None),
    "ProxQuant": (O.ProxQuant, dict(lr=0.05, exact=True), dict(lr="pos", lambda_rate="nonneg", scale="pos"), ("lr",),
                  None),
}

# the default (fast) path of every entry above with exact=True: the same battery, with the same rules, minus
# exact=True
FAST = {f"{name}[fast]": (cls, {k: v for k, v in kw.items() if k != "exact"}, rules, gkeys, stepper)
        for name, (cls, kw, rules, gkeys, stepper) in OPTIMIZERS.items() if kw.get("exact") is True}
OPTIMIZERS.update(FAST)

BAD = {
    "pos": (NAN, INF, -1.0, 0.0, "x"),
    "nonneg": (NAN, INF, -1.0, "x"),
    "gt1": (NAN, 1.0, 0.5, "x"),
    "unit": (NAN, -0.5, 1.0, "x"),
    "open01": (NAN, 0.0, 1.0, "x"),
    "int0": (-1, 1.5, "x"),
    "int1": (0, -1, 1.5, "x"),
    "int2": (1, 2.5, "x"),
    "finite": (NAN, INF, "x"),
}
GROUP_BAD = {"pos": (NAN, -1.0, 0.0, "x"), "nonneg": (NAN, -1.0, "x")}


def _needle(v):
    return repr(v)


def _build(name, n=2, **over):
    cls, kw, _, _, _ = OPTIMIZERS[name]
    ps = _params(n)
    return cls(ps, **dict(kw, **over)), ps


def _stepped(name, seed=0, n=2):
    """An optimizer that has taken two steps (so its state is not empty)."""
    cls, kw, _, _, stepper = OPTIMIZERS[name]
    ps = _params(n, seed=seed)
    opt = cls(ps, **kw)
    for _ in range(2):
        (stepper or (lambda o: o.step()))(opt)
        for p in ps:
            p.grad = torch.sin(p.detach() * 3.0 + seed)
    return opt, ps


def _constructor_cases():
    out = []
    for name, (cls, kw, rules, _, _) in OPTIMIZERS.items():
        for arg, rule in rules.items():
            for bad in BAD[rule]:
                def act(_, ps, cls=cls, kw=kw, arg=arg, bad=bad):
                    cls(ps, **dict(kw, **{arg: bad}))
                out.append(Case(f"{name}(…{arg}={bad!r})", lambda: (None, _params()), act, (arg, _needle(bad))))
    # options that are not numbers
    extra = [
        ("SGLD", dict(seed="3"), ("seed", "'3'")),
        ("SGLD", dict(seed=None), ("seed",)),
        ("SGLD", dict(generator="g"), ("generator",)),
        ("SGLD", dict(foreach="yes"), ("foreach", "'yes'")),
        ("LowPrecisionSGLD", dict(accumulator="half"), ("accumulator", "'half'")),
        ("LowPrecisionSGLD", dict(weight_format="fixed:8"), ("weight_format", "'fixed:8'")),
        ("LowPrecisionSGLD", dict(grad_format=3), ("grad_format", "3")),
        ("LowPrecisionSGLD", dict(ties="odd"), ("ties", "'odd'")),
        ("LowPrecisionSGHMC", dict(position_sign="plus"), ("position_sign", "'plus'")),
        ("LowPrecisionSGHMC", dict(velocity_rescaling="both"), ("velocity_rescaling", "'both'")),
        ("LowPrecisionSGHMC", dict(velocity_format="fixed:1"), ("velocity_format", "'fixed:1'")),
        ("QSGLD", dict(rounding="up"), ("rounding", "'up'")),
        ("QSGLD", dict(adam_betas=(0.9, NAN)), ("adam_betas", "nan")),
        ("QSGLD", dict(adam_betas=0.9), ("adam_betas", "0.9")),
        ("QSGLD", dict(resolutions=[1.0, NAN]), ("resolutions", "nan")),
        ("QSGLD", dict(resolutions=[]), ("resolutions", "[]")),
        ("CTLD", dict(phi="cubic"), ("phi", "'cubic'")),
        ("CTLD", dict(bias="x"), ("bias", "'x'")),
        ("CTLD", dict(delta1=0.9), ("delta1", "0.9")),
        ("CTLD", dict(n_bin=3), ("n_bin",)),
        ("AskewSGD", dict(scale="live"), ("scale", "'live'")),
        ("AskewSGD", dict(levels=[-1, 1]), ("levels",)),
        ("AskewSGD", dict(base="rmsprop"), ("base", "'rmsprop'")),
        ("AskewSGD", dict(eps="x"), ("eps", "'x'")),
        ("BinaryConnect", dict(stochastic=True), ("seed",)),
        ("ProxQuant", dict(base=dict(kind="sgd")), ("base",)),
        ("SGLD", dict(exact="yes"), ("exact", "'yes'")),
        ("SGLD", dict(generator=torch.Generator()), ("seed=", "generator=", "not both")),
        ("SGLD[fast]", dict(generator=torch.Generator()), ("seed=", "generator=", "not both")),
        ("QSGLD", dict(generator=torch.Generator()), ("seed=", "generator=", "not both")),
        ("SGLD", dict(compile=True), ("compile", "exact=True")),
        ("SGLD", dict(check_every=5), ("check_every", "exact=True")),
        ("SGLD[fast]", dict(seed=-1), ("seed", "-1")),
        ("SGLD[fast]", dict(seed=2**64), ("seed", str(2**64))),
        ("SGLD[fast]", dict(seed=1.5), ("seed", "1.5")),
        ("SGLD[fast]", dict(seed=None), ("seed",)),
        ("SGLD[fast]", dict(generator="g"), ("generator",)),
        ("SGLD[fast]", dict(foreach=True), ("foreach", "exact=True")),
        ("SGLD[fast]", dict(compile="yes"), ("compile", "'yes'")),
        ("SGLD[fast]", dict(check_every=-1), ("check_every", "-1")),
        ("LowPrecisionSGHMC[fast]", dict(velocity_rescaling="paper", accumulator="low"),
         ("velocity_rescaling", "exact=True")),
        ("LowPrecisionSGHMC[fast]", dict(resample_momentum_every=2), ("resample_momentum_every", "exact=True")),
        ("SGHMC[fast]", dict(resample_momentum_every=2), ("resample_momentum_every", "exact=True")),
    ]
    for name, over, needles in extra:
        cls, kw, _, _, _ = OPTIMIZERS[name]

        def act(_, ps, cls=cls, kw=kw, over=over):
            cls(ps, **dict(kw, **over))
        shown = {k: ("<torch.Generator>" if isinstance(v, torch.Generator) else v) for k, v in over.items()}
        # the id must not hold an object address: pytest-xdist workers must collect the same ids
        out.append(Case(f"{name}(…{shown!r})", lambda: (None, _params()), act, needles))
    return out


def _group_cases():
    out = []
    for name, (cls, kw, rules, gkeys, stepper) in OPTIMIZERS.items():
        for key in gkeys:
            for bad in GROUP_BAD.get(rules[key], GROUP_BAD["pos"]):
                needles = (key, _needle(bad))

                def in_ctor(_, ps, cls=cls, kw=kw, key=key, bad=bad):
                    cls([{"params": ps[:1]}, {"params": ps[1:], key: bad}], **kw)
                out.append(Case(f"{name} group {{{key}: {bad!r}}} in constructor", lambda: (None, _params()),
                                in_ctor, needles))

                def add(opt, ps, key=key, bad=bad):
                    opt.add_param_group({"params": _params(1, seed=5), key: bad})
                out.append(Case(f"{name}.add_param_group({{{key}: {bad!r}}})", lambda name=name: _stepped(name),
                                add, needles))

                def load(opt, ps, name=name, key=key, bad=bad):
                    sd = _stepped(name, seed=1)[0].state_dict()
                    sd["param_groups"][0][key] = bad
                    opt.load_state_dict(sd)
                out.append(Case(f"{name}.load_state_dict(group {key}={bad!r})", lambda name=name: _stepped(name),
                                load, needles))

                def mutate_then_step(opt, ps, key=key, bad=bad, stepper=stepper):
                    old = opt.param_groups[0][key]
                    opt.param_groups[0][key] = bad
                    try:
                        (stepper or (lambda o: o.step()))(opt)
                    finally:
                        opt.param_groups[0][key] = old
                out.append(Case(f"{name}: param_groups[0][{key!r}]={bad!r} then step()",
                                lambda name=name: _stepped(name), mutate_then_step, needles))
    return out


GLOBAL_OPTIONS = {  # optimizer-wide options: a per-group value must be rejected by name (or honoured)
    "LowPrecisionSGLD": ("weight_format", "fixed:4:2"),
    "LowPrecisionSGHMC": ("weight_format", "fixed:4:2"),
    "QSGLD": ("rounding", "nearest"),
    "CTLD": ("c_theta", 0.5),
    "AskewSGD": ("alpha", 0.5),
    "BinaryConnect": ("scale", 0.5),
    "ProxQuant": ("lambda_rate", 0.5),
}


def _global_option_cases():
    out = []
    for name, (key, val) in GLOBAL_OPTIONS.items():
        def add(opt, ps, key=key, val=val):
            opt.add_param_group({"params": _params(1, seed=5), key: val})
        out.append(Case(f"{name}.add_param_group({{{key}: {val!r}}}) (optimizer-wide option)",
                        lambda name=name: _stepped(name), add, (key, _needle(val))))
    return out


def _load_cases():
    out = []

    def corrupters():
        def gen_zero(sd):
            sd["generator_state"] = torch.zeros(3, dtype=torch.uint8)

        def gen_str(sd):
            sd["generator_state"] = "x"

        def gen_missing(sd):
            del sd["generator_state"]

        def steps_neg(sd):
            sd["num_steps"] = -1

        def steps_str(sd):
            sd["num_steps"] = "x"

        def no_groups(sd):
            del sd["param_groups"]

        def extra_group(sd):
            sd["param_groups"].append(copy.deepcopy(sd["param_groups"][0]))

        def not_a_dict(sd):
            return [1, 2]

        def state_shape(sd):
            for st in sd["state"].values():
                for k, v in st.items():
                    if isinstance(v, torch.Tensor) and v.dim() > 0:
                        st[k] = torch.zeros(7, dtype=v.dtype)
                        return
            sd["state"][0] = {"velocity": torch.zeros(7, dtype=F64)}

        def state_nan(sd):
            for st in sd["state"].values():
                for k, v in st.items():
                    if isinstance(v, torch.Tensor) and v.dim() > 0:
                        st[k] = torch.full_like(v, NAN)
                        return
            sd["state"][0] = {"velocity": torch.full((4,), NAN, dtype=F64)}

        return [(gen_zero, ("generator_state",)), (gen_str, ("generator_state", "'x'")),
                (gen_missing, ("generator_state",)), (steps_neg, ("num_steps", "-1")),
                (steps_str, ("num_steps", "'x'")), (no_groups, ("param_groups",)),
                (extra_group, ("param_groups", "2")), (not_a_dict, ("state_dict", "list")),
                (state_shape, ("shape", "(7,)")), (state_nan, ("state", "non-finite"))]

    def fast_corrupters():
        def seed_neg(sd):
            sd["counter_seed"] = -1

        def seed_str(sd):
            sd["counter_seed"] = "x"

        def seed_missing(sd):
            del sd["counter_seed"]

        def exact_dict(sd):
            del sd["counter_seed"]
            sd["generator_state"] = torch.Generator().get_state()

        rest = [(fn, needles) for fn, needles in corrupters() if "generator_state" not in needles]
        return [(seed_neg, ("counter_seed", "-1")), (seed_str, ("counter_seed", "'x'")),
                (seed_missing, ("counter_seed",)), (exact_dict, ("exact path", "exact=True"))] + rest

    for name in OPTIMIZERS:
        for fn, needles in (fast_corrupters() if name in FAST else corrupters()):
            def load(opt, ps, name=name, fn=fn):
                sd = _stepped(name, seed=1)[0].state_dict()
                r = fn(sd)
                opt.load_state_dict(sd if r is None else r)
            out.append(Case(f"{name}.load_state_dict({fn.__name__})", lambda name=name: _stepped(name), load,
                            needles))
    # optimizer-specific extra state
    specific = [
        ("CTLD", lambda sd: sd["extra_state"].__setitem__("alpha", NAN), ("alpha", "nan")),
        ("CTLD", lambda sd: sd["extra_state"].__setitem__("counts", [0.0]), ("counts",)),
        ("CTLD", lambda sd: sd["extra_state"].pop("ubar"), ("ubar",)),
        ("AskewSGD", lambda sd: sd["extra_state"].__setitem__("base_steps", -3), ("base_steps", "-3")),
        ("ProxQuant", lambda sd: sd.pop("extra_state"), ("extra_state",)),
    ]
    for name, fn, needles in specific:
        def load(opt, ps, name=name, fn=fn):
            sd = _stepped(name, seed=1)[0].state_dict()
            fn(sd)
            opt.load_state_dict(sd)
        out.append(Case(f"{name}.load_state_dict(extra_state {needles[0]})", lambda name=name: _stepped(name),
                        load, needles))
    return out


def _step_cases():
    out = []
    for name, (_, _, _, _, stepper) in OPTIMIZERS.items():
        def nan_grad_opt(name=name):
            opt, ps = _stepped(name)
            ps[1].grad[2] = NAN
            return opt, ps

        def nan_grad(opt, ps, stepper=stepper):
            (stepper or (lambda o: o.step()))(opt)
        if name in FAST:  # the fast path checks gradients lazily (tests/torchport/test_default_path.py)
            def noise_given(opt, ps):
                opt.step(noise={n: torch.zeros(8, dtype=F64) for n, _ in opt.noise_layout})
            out.append(Case(f"{name}.step(noise=...)", lambda name=name: _stepped(name), noise_given,
                            ("noise=", "exact=True")))
            continue
        out.append(Case(f"{name}.step() with a NaN gradient", nan_grad_opt, nan_grad,
                        ("non-finite gradient", "param_groups[0]['params'][1]"), exc=(FloatingPointError,)))
        if name in ("CTLD", "AskewSGD", "BinaryConnect", "ProxQuant"):
            continue

        def noise_short(opt, ps):
            opt.step(noise={n: torch.zeros(3, dtype=F64) for n, _ in opt.noise_layout})
        out.append(Case(f"{name}.step(noise=too short)", lambda name=name: _stepped(name), noise_short,
                        ("noise[", "(3,)")))

        def noise_unknown(opt, ps):
            opt.step(noise={"zeta": torch.zeros(8, dtype=F64)})
        out.append(Case(f"{name}.step(noise={{'zeta': ...}})", lambda name=name: _stepped(name), noise_unknown,
                        ("zeta",)))

        def noise_list(opt, ps):
            opt.step(noise=[1.0])
        out.append(Case(f"{name}.step(noise=[1.0])", lambda name=name: _stepped(name), noise_list,
                        ("noise", "list")))

    for bad, needles in ((NAN, ("potential", "nan")), (INF, ("potential", "inf")), ("x", ("potential", "'x'")),
                         (None, ("potential",)), (torch.ones(2), ("potential", "shape"))):
        def ctld(opt, ps, bad=bad):
            if bad is None:
                opt.step()
            else:
                opt.step(potential=bad)
        out.append(Case(f"CTLD.step(potential={bad!r})", lambda: _stepped("CTLD"), ctld, needles))

    def ctld_noise(opt, ps):
        opt.step(potential=1.0, noise={"xi": torch.zeros(8, dtype=F64)})
    out.append(Case("CTLD.step(noise without xi_alpha)", lambda: _stepped("CTLD"), ctld_noise, ("xi_alpha",)))

    def ctld_noise_short(opt, ps):
        opt.step(potential=1.0, noise={"xi": torch.zeros(3, dtype=F64), "xi_alpha": torch.zeros(1)})
    out.append(Case("CTLD.step(noise xi too short)", lambda: _stepped("CTLD"), ctld_noise_short, ("xi", "(3,)")))

    def ctld_temps(opt, ps):
        opt.param_groups[0]["temperature"] = 2.0
        try:
            opt.step(potential=1.0)
        finally:
            opt.param_groups[0]["temperature"] = opt.defaults["temperature"]
    out.append(Case("CTLD: one group's temperature changed, then step()",
                    lambda: (lambda o, ps: (o.add_param_group({"params": _params(1, seed=5)}), (o, ps))[1])(
                        *_stepped("CTLD")), ctld_temps, ("temperature", "2.0")))

    def askew_sawb():
        ps = _params(2)
        with torch.no_grad():
            ps[1].copy_(torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=F64))  # two-valued: SAWB clip <= 0
        return O.AskewSGD(ps, lr=0.05, scale="sawb", levels=uniform_levels(17), exact=True), ps

    def askew_step(opt, ps):
        opt.step()
    out.append(Case("AskewSGD(scale='sawb').step() where the second tensor's SAWB clip <= 0", askew_sawb,
                    askew_step, ("SAWB", "param_groups[0]['params'][1]")))

    def set_epoch(opt, ps):
        opt.set_epoch("x")
    out.append(Case("AskewSGD.set_epoch('x')", lambda: _stepped("AskewSGD"), set_epoch, ("epoch", "'x'")))

    def set_epoch_neg(opt, ps):
        opt.set_epoch(-2)
    out.append(Case("AskewSGD.set_epoch(-2)", lambda: _stepped("AskewSGD"), set_epoch_neg, ("epoch", "-2")))

    def eps_fn_nan(opt, ps):
        opt.eps = lambda e: NAN
        opt.step()
    out.append(Case("AskewSGD(eps=callable returning nan).step()", lambda: _stepped("AskewSGD"), eps_fn_nan,
                    ("eps", "nan")))

    def bc_binarize_noise(opt, ps):
        opt.binarize_(noise={"u_binarize": torch.zeros(3)})
    out.append(Case("BinaryConnect(stochastic).binarize_(noise too short)",
                    lambda: _stepped_stochastic_bc(), bc_binarize_noise, ("u_binarize", "(3,)")))

    def lp_qw_noise(opt, ps):
        opt.quantize_weights_(noise={"u_weight": torch.zeros(3)})
    out.append(Case("LowPrecisionSGLD.quantize_weights_(noise too short)", lambda: _stepped("LowPrecisionSGLD"),
                    lp_qw_noise, ("u_weight", "(3,)")))
    out.append(Case("LowPrecisionSGLD[fast].quantize_weights_(noise=...)", lambda: _stepped("LowPrecisionSGLD[fast]"),
                    lp_qw_noise, ("noise=", "exact=True")))

    def reseed_exact(opt, ps):
        opt.reseed(3)
    out.append(Case("SGLD.reseed(3) on the exact path", lambda: _stepped("SGLD"), reseed_exact, ("reseed", "exact")))

    def reseed_bad(opt, ps):
        opt.reseed(-2)
    out.append(Case("SGLD[fast].reseed(-2)", lambda: _stepped("SGLD[fast]"), reseed_bad, ("seed", "-2")))

    def half_group(opt, ps):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))]})
    out.append(Case("SGLD[fast].add_param_group(float16 parameter)", lambda: _stepped("SGLD[fast]"), half_group,
                    ("float16", "exact=True"), exc=(TypeError,)))
    return out


def _stepped_stochastic_bc():
    ps = _params(2)
    opt = O.BinaryConnect(ps, lr=0.05, stochastic=True, seed=0, exact=True)
    opt.step()
    return opt, ps


def _add_group_cases():
    out = []
    for name in OPTIMIZERS:
        def dup(opt, ps):
            opt.add_param_group({"params": [ps[0]]})
        out.append(Case(f"{name}.add_param_group(a parameter already in a group)", lambda name=name: _stepped(name),
                        dup, ("params",)))

        def not_dict(opt, ps):
            opt.add_param_group([ps[0]])
        out.append(Case(f"{name}.add_param_group(a list)", lambda name=name: _stepped(name), not_dict,
                        ("param_group", "list")))
    return out


def _function_cases():
    lv = binary_levels()
    w = torch.linspace(-1, 1, 5, dtype=F64)
    cases = [
        ("sghmc_coefficients(friction=0)", lambda: O.sghmc_coefficients(0.1, 0.0, 1.0), ("friction", "0.0")),
        ("sghmc_coefficients(step_size=-1)", lambda: O.sghmc_coefficients(-1.0, 1.0, 1.0), ("step_size", "-1.0")),
        ("sghmc_coefficients(inverse_mass=nan)", lambda: O.sghmc_coefficients(0.1, 1.0, NAN), ("inverse_mass", "nan")),
        ("sghmc_coefficients(temperature=-1)", lambda: O.sghmc_coefficients(0.1, 1.0, 1.0, -1.0),
         ("temperature", "-1.0")),
        ("decay_schedule_factor(epochs=nan)", lambda: O.decay_schedule_factor(1, NAN), ("epochs", "nan")),
        ("decay_schedule_factor(epoch=-1)", lambda: O.decay_schedule_factor(-1, 10), ("epoch", "-1")),
        ("decay_schedule_factor(epoch='x')", lambda: O.decay_schedule_factor("x", 10), ("epoch", "'x'")),
        ("CyclicalSchedule(lr0=nan)", lambda: O.CyclicalSchedule(NAN, 100, 2), ("lr0", "nan")),
        ("CyclicalSchedule(lr0='x')", lambda: O.CyclicalSchedule("x", 100, 2), ("lr0", "'x'")),
        ("CyclicalSchedule(num_cycles=0)", lambda: O.CyclicalSchedule(0.1, 100, 0), ("num_cycles", "0")),
        ("CyclicalSchedule(exploration_fraction=nan)",
         lambda: O.CyclicalSchedule(0.1, 100, 2, exploration_fraction=NAN), ("exploration_fraction", "nan")),
        ("CyclicalSchedule(samples_per_cycle=-1)", lambda: O.CyclicalSchedule(0.1, 100, 2, samples_per_cycle=-1),
         ("samples_per_cycle", "-1")),
        ("CyclicalSchedule.lr(k=-1)", lambda: O.CyclicalSchedule(0.1, 100, 2).lr(-1), ("k", "-1")),
        ("qsgld_resolution(lr=-1)", lambda: tqsgld.qsgld_resolution(0, -1.0, 1.0), ("lr", "-1.0")),
        ("qsgld_resolution(temperature=0)", lambda: tqsgld.qsgld_resolution(0, 0.1, 0.0), ("temperature", "0.0")),
        ("qsgld_resolution(step=-1)", lambda: tqsgld.qsgld_resolution(-1, 0.1, 1.0), ("step", "-1")),
        ("coupling(d1 > d2)", lambda: tctld.coupling(0.5, 0.8, 0.2, 0.1), ("d1", "0.8")),
        ("coupling(a=nan)", lambda: tctld.coupling(NAN, 0.2, 0.8, 0.1), ("a", "nan")),
        ("coupling_derivative(d1 == d2)", lambda: tctld.coupling_derivative(0.5, 0.5, 0.5, 0.1), ("d2", "0.5")),
        ("coupling(gmin=0)", lambda: tctld.coupling(0.5, 0.2, 0.8, 0.0), ("gmin", "0.0")),
        ("quantize_nearest(scale=0)", lambda: tnet.quantize_nearest(w, lv, 0.0), ("scale", "0.0")),
        ("quantize_nearest(levels=list)", lambda: tnet.quantize_nearest(w, [-1, 1]), ("levels", "list")),
        ("stochastic_levels(u wrong shape)", lambda: tnet.stochastic_levels(w, lv, 1.0, torch.zeros(3, dtype=F64)),
         ("u", "(3,)")),
        ("stochastic_levels(scale=nan)", lambda: tnet.stochastic_levels(w, lv, NAN, torch.zeros(5, dtype=F64)),
         ("scale", "nan")),
        ("prox_w_shaped(lam=-1)", lambda: tnet.prox_w_shaped(w, lv, 1.0, -1.0), ("lam", "-1.0")),
        ("prox_w_shaped(lam=nan)", lambda: tnet.prox_w_shaped(w, lv, 1.0, NAN), ("lam", "nan")),
        ("prox_w_shaped(scale=-1)", lambda: tnet.prox_w_shaped(w, lv, -1.0, 0.1), ("scale", "-1.0")),
        ("sawb_scale(bits=1)", lambda: tnet.sawb_scale(torch.randn(10, dtype=F64, generator=torch.Generator().manual_seed(0)), 1),
         ("bits", "1")),
        ("sawb_scale(two-valued w)", lambda: tnet.sawb_scale(torch.tensor([1.0, -1.0], dtype=F64)), ("SAWB",)),
        ("askew_direction(eps=-1)", lambda: tnet.askew_direction(w, w, lv, -1.0, 1.0), ("eps", "-1.0")),
        ("askew_direction(alpha=nan)", lambda: tnet.askew_direction(w, w, lv, 0.1, NAN), ("alpha", "nan")),
        ("askew_direction(g wrong shape)", lambda: tnet.askew_direction(w, w[:3], lv, 0.1, 1.0), ("g", "(3,)")),
        ("askew_direction(scale=0)", lambda: tnet.askew_direction(w, w, lv, 0.1, 1.0, scale=0.0), ("scale", "0.0")),
        ("askew_direction(nu_clamp=-1)", lambda: tnet.askew_direction(w, w, lv, 0.1, 1.0, nu_clamp=-1.0),
         ("nu_clamp", "-1.0")),
    ]
    out = []
    for desc, fn, needles in cases:
        out.append(Case(desc, lambda: (None, [w]), lambda _o, _t, fn=fn: fn(), needles))
    return out


CASES = (_constructor_cases() + _group_cases() + _global_option_cases() + _load_cases() + _step_cases()
         + _add_group_cases() + _function_cases())


# Known gaps outside this change's files (torchport/optim/schedules.py): kept in the battery, marked
# xfail (not strict, so that whoever fixes schedules.py is not blocked; then remove the marks).
#: cases known to fail (none since torchport/optim/schedules.py validates its arguments)
KNOWN_GAPS: set[str] = set()
_PARAMS = [pytest.param(c, id=c.id, marks=pytest.mark.xfail(strict=True, reason="known gap"))
           if c.id in KNOWN_GAPS else pytest.param(c, id=c.id) for c in CASES]


@pytest.mark.parametrize("case", _PARAMS)
def test_bad_input_is_a_clear_error_and_changes_nothing(case):
    result, detail = outcome(case)
    assert result == "clear", detail


def test_battery_detects_each_outcome():
    """The classifier itself: a silent, an unclear and a half-changing call are each recognised."""
    def make():
        ps = _params(1)
        return O.SGLD(ps, lr=0.1, seed=0, exact=True), ps
    assert outcome(Case("silent", make, lambda o, ps: None, ("lr",)))[0] == "silent"
    assert outcome(Case("keyerror", make, lambda o, ps: {}["lr"], ("lr",)))[0] == "unclear"
    assert outcome(Case("unnamed", make, lambda o, ps: (_ for _ in ()).throw(ValueError("bad")), ("lr",)))[0] \
        == "unclear"

    def half(o, ps):
        o.step()
        raise ValueError("lr=nan")
    assert outcome(Case("half", make, half, ("lr", "nan")))[0] == "unclear"

    def gen_only(o, ps):
        torch.rand(1, generator=o.generator)
        raise ValueError("lr=nan")
    assert outcome(Case("generator", make, gen_only, ("lr", "nan")))[0] == "unclear"


def _summary():
    counts = {"clear": 0, "unclear": 0, "silent": 0}
    bad = []
    for case in CASES:
        r, d = outcome(case)
        counts[r] += 1
        if r != "clear":
            bad.append(f"  {r:8s} {case.id}: {d[:160]}")
    return counts, bad


if __name__ == "__main__":
    counts, bad = _summary()
    print(f"{len(CASES)} cases: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if "-v" in sys.argv:
        print("\n".join(bad))


# ------------------------------------------------------------------ per-group values and added groups
GROUP_VALUES = {"lr": 0.013, "temperature": 0.37, "num_data": 7.0, "weight_decay": 0.1, "friction": 2.5,
                "inverse_mass": 0.6}


def _noise_for(opt, params, seed):
    """Noise-in for one step over ``params`` (CTLD: plus its one α normal)."""
    g = torch.Generator().manual_seed(seed)
    n = sum(p.numel() for p in params)
    noise = {name: (torch.randn(n, generator=g, dtype=F64) if kind == "normal" else torch.rand(n, generator=g,
                                                                                                dtype=F64))
             for name, kind in opt.noise_layout}
    if isinstance(opt, O.CTLD):
        noise["xi_alpha"] = torch.zeros(1, dtype=F64)
    return noise


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_per_group_value_is_honoured(name):
    """Group 1's value gives group 1's parameter exactly the update of an optimizer built with that value."""
    cls, kw, _, gkeys, stepper = OPTIMIZERS[name]
    kw = dict(kw, **({"quantize_initial": False} if "quantize_initial" in cls.__init__.__code__.co_varnames else {}))
    for key in gkeys:
        a, b = _params(2, seed=3)
        b_alone = torch.nn.Parameter(b.detach().clone())
        b_alone.grad = b.grad.clone()
        two = cls([{"params": [a]}, {"params": [b], key: GROUP_VALUES[key]}], **kw)
        if name in FAST:  # the counter stream is keyed by the parameter index: keep b at index 1 (a gradient-free
            # parameter at index 0 takes no step)
            idle = torch.nn.Parameter(a.detach().clone())
            one = cls([{"params": [idle]}, {"params": [b_alone]}], **dict(kw, **{key: GROUP_VALUES[key]}))
            (stepper or (lambda o: o.step()))(two)
            (stepper or (lambda o: o.step()))(one)
            assert torch.equal(b.detach(), b_alone.detach()), f"{name}: per-group {key} not honoured"
            continue
        one = cls([b_alone], **dict(kw, **{key: GROUP_VALUES[key]}))
        if two.noise_layout:
            na, nb = _noise_for(two, [a], 1), _noise_for(two, [b], 2)
            both = {k: torch.cat([na[k], nb[k]]) if k != "xi_alpha" else na[k] for k in na}
            extra = {"potential": 1.5} if name == "CTLD" else {}
            two.step(noise=both, **extra)
            one.step(noise=nb, **extra)
        else:
            two.step()
            one.step()
        assert torch.equal(b.detach(), b_alone.detach()), f"{name}: per-group {key} not honoured"


def test_ctld_rejects_differing_group_temperatures():
    a, b = _params(2)
    with pytest.raises(ValueError, match=r"param group 1: temperature=0.5 differs from the first group's 1.0"):
        O.CTLD([{"params": [a]}, {"params": [b], "temperature": 0.5}], lr=0.02, seed=0)
    opt = O.CTLD([{"params": [a]}, {"params": [b]}], lr=0.02, seed=0, exact=True)
    opt.param_groups[1]["temperature"] = 0.5  # written directly, as a scheduler would
    state = opt.generator.get_state()
    with pytest.raises(ValueError, match=r"same temperature, got \[1.0, 0.5\]"):
        opt.step(potential=1.0)
    assert torch.equal(state, opt.generator.get_state())


@pytest.mark.parametrize("make", [
    lambda ps: O.LowPrecisionSGLD(ps, lr=0.05, weight_format="fixed:8:6", accumulator="full", seed=0, exact=True),
    lambda ps: O.LowPrecisionSGLD(ps, lr=0.05, weight_format="fixed:8:6", accumulator="low", seed=0, exact=True),
    lambda ps: O.LowPrecisionSGHMC(ps, lr=0.05, weight_format="fixed:8:6", accumulator="full", seed=0, exact=True),
    lambda ps: O.LowPrecisionSGHMC(ps, lr=0.05, weight_format="fixed:8:6", accumulator="low", seed=0, exact=True),
], ids=["LPSGLD-full", "LPSGLD-low", "LPSGHMC-full", "LPSGHMC-low"])
def test_added_group_is_initialised_and_steps(make):
    """add_param_group then step(): no KeyError, and the new group is quantized at once, as the first ones."""
    ps = _params(1)
    opt = make(ps)
    new = _params(1, seed=9)[0]
    raw = new.detach().clone()
    opt.add_param_group({"params": [new]})
    on_grid = lambda t: torch.equal(t * 64, torch.round(t * 64))  # fixed:8:6 grid  # noqa: E731
    assert on_grid(new.detach()) and not torch.equal(new.detach(), raw)
    if opt.accumulator == "full":
        assert torch.equal(opt.state[new]["accumulator"], raw)
    opt.step()
    assert on_grid(new.detach()) and on_grid(ps[0].detach())


def test_added_group_respects_quantize_initial_false():
    ps = _params(1)
    opt = O.LowPrecisionSGLD(ps, lr=0.05, weight_format="fixed:8:6", quantize_initial=False, seed=0, exact=True)
    new = _params(1, seed=9)[0]
    raw = new.detach().clone()
    opt.add_param_group({"params": [new]})
    assert torch.equal(new.detach(), raw)
    opt.step()


@pytest.mark.parametrize("stochastic", [False, True])
def test_binaryconnect_added_group_is_binarized_and_steps(stochastic):
    ps = _params(1)
    opt = O.BinaryConnect(ps, lr=0.05, stochastic=stochastic, seed=0)
    new = _params(1, seed=9)[0]
    raw = new.detach().clone()
    opt.add_param_group({"params": [new]})
    assert torch.equal(opt.state[new]["latent"], raw.clamp(-1, 1))
    assert set(new.detach().tolist()) <= {-1.0, 1.0}
    opt.step()
    assert set(new.detach().tolist()) <= {-1.0, 1.0}


def test_nan_lr_group_would_have_poisoned_every_parameter():
    """The issue's case: a group with lr=nan is refused before any parameter becomes NaN."""
    a, b = _params(2)
    with pytest.raises(ValueError, match=r"param group 1: lr must be > 0 and finite, got nan"):
        O.SGLD([{"params": [a]}, {"params": [b], "lr": NAN}], lr=0.1, seed=0, exact=True)
    opt = O.SGHMC([a, b], lr=0.1, seed=0, exact=True)
    with pytest.raises(ValueError, match=r"friction must be > 0 and finite, got 0.0"):
        opt.add_param_group({"params": _params(1, seed=4), "friction": 0.0})
    assert len(opt.param_groups) == 1
