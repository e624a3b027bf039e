"""Parity of torchport with refimpl: identical-noise trajectories and a distributional comparison.

Two checks per algorithm (docs/torchport.md, "Crosscheck"):

1. **Trajectory parity (noise-in).**  refimpl's own noise for a short run is drawn
   once with NumPy (``refimpl.draw_noise``; the netopt toys draw their uniforms
   directly) and fed to both packages: refimpl runs ``refimpl.sample(...,
   noise=...)`` (or the netopt ``step`` functions), torchport runs its optimizer
   with ``step(noise=...)``, the gradient of the same target evaluated at the
   parameter the optimizer exposes (``refimpl.targets.grad``, + s·ζ with refimpl's
   ζ).  Both packages name the streams alike (the method table,
   :mod:`refimpl.methods`), so each refimpl stream goes to the torch stream of the
   same name; ``u_weight`` of LP-F methods is shifted by one step (torchport rounds
   the accumulator at the end of step k with the uniforms refimpl uses at the start
   of step k+1; see docs/torchport.md).  Every method of the table has at least one
   case, and the gradient-format setting is covered both ways: the default
   (``"same"``: Q_G onto the weight format, in both packages) and ``None``
   (full-precision gradients).

   * float64: every step must agree **bit for bit**.
   * float32: per step, the torchport optimizer state of the (bit-exact) float64
     run at step k is cast to float32, advanced one float32 step with the same
     noise and compared with step k+1: each element must be within
     ``FLOAT32_ULPS`` float32 ulps (of the larger magnitude involved) -- or be a
     *flip*, a quantized value one grid gap away because the float32 pre-rounding
     value fell on the other side of a rounding boundary; flips are counted and
     reported and may not exceed ``FLOAT32_MAX_FLIP_RATE`` of the elements.

2. **Distribution (independent generators).**  Each sampler is run from its own
   generator in both packages (refimpl: NumPy/Numba; torchport: torch.Generator)
   on the standard Gaussian with gradient noise, many independent chains; the
   final states are compared with a two-sample Kolmogorov-Smirnov test and a
   z-test of the variances (SE from both samples' fourth moments).  A method
   fails if either p-value is below ``alpha / n_tests`` (Bonferroni).  CTLD (one
   tempering variable per optimizer), SGHMC velocity rescaling (one S_v per
   parameter group, while refimpl's chains each have their own) and the
   deterministic netopt methods are covered by the trajectory check only.

3. **The default (fast) path against refimpl's counter replay.**  The optimizers users
   construct (``SGLD``, ``LowPrecisionSGLD``, ``SGHMC``, ``LowPrecisionSGHMC`` with the
   default ``exact=False``) run the fused counter-stream update of :mod:`torchport.fast`.
   For every SGLD/SGHMC method of the table and every format the fast path supports
   (fixed point, BFP, qtorch float, IEEE; MX when :mod:`torchport.fast` takes it), each
   step k of a torch run is replayed from the torch state before the step by
   :func:`refimpl.counter_rng.replay_sgld_step` / ``replay_sghmc_step`` in the run's dtype
   (float64: NumPy float64 and refimpl's own ``vc_into``; float32: ``dtype="float32"``,
   the fast path's 24-bit uniforms and float32 arithmetic in its operation order), and the
   torch state after the step is compared with the replay.  Grid values (θ of a quantized
   method, the quantized velocity) must be equal: a *flip* is a grid value that differs.
   Continuous values (accumulator, unquantized velocity, θ of SGLD/SGHMC) may differ where
   a Box–Muller normal enters: torch's log/cos (float32: log/sqrt/cos) against correctly
   rounded / libm ones (docs/fast_path.md, "Parity with refimpl").

   * rows where no normal enters a stored continuous value (:func:`bitwise_expected`: every
     quantized method except sgld_lp_f / sghmc_lp_f) must be bit-identical, in both dtypes;
   * others: "bit-identical", or "within N ulp, 0 grid flips" with N <= ``FAST_ULPS``
     (float64; ulps of the largest of the values before and after the step) or
     N <= ``FAST32_ULPS`` (float32; ulps of the largest magnitude in the step's sum, the
     noise term sd·``Z_MAX_24`` included) and no flip;
   * a grid flip that vanishes when the replay is fed torch's own normals, at an element where
     those are within the documented bound of the replay's, is a *threshold tie* (the
     pre-rounding value, off by the normals' last bits, straddled a rounding threshold): counted
     and shown separately, not a failure (``_tie_elements``).

4. **The default path of CTLD and the netopt methods** (where their torch class has it):
   ``run_ctld_fast_trajectory`` against :func:`refimpl.ctld.replay_ctld_step` and
   ``run_netopt_fast_trajectory`` against :mod:`refimpl.netopt.replay`, each step from the torch
   state before it, the replay in the run's dtype (``dtype="float32"``: the float32 fast path's
   operations in torch's order, Python constants rounded to float32, 24-bit uniforms, the float32
   Box–Muller normals; the CTLD α block and Adam's √ in float64 as the fast path computes them).
   netopt (AskewSGD, BinaryConnect, ProxQuant): bit for bit in both dtypes.  CTLD: fed torch's own
   normals the replay is bit for bit (θ, v, α, v_α, histogram, phase, steps); with its own normals θ,
   v, α, v_α are within ``FAST_ULPS`` (float64) or ``FAST32_ULPS`` float32 ulp of the step's largest
   magnitude.  QSGLD: ``run_qsgld_fast_trajectory`` against :func:`refimpl.qsgld.replay_qsgld_step`
   (no grid flip; where a normal enters, within 8 ulp of the step's magnitude in float64, 4 float32
   ulp plus the float32 normals' distance in float32; float64 Adam moments bit for bit).

``run_crosscheck(...)`` returns the rows; ``format_table(rows)`` prints them;
the command ``qlangevin crosscheck`` exits non-zero on any mismatch.
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

import refimpl
from refimpl.formats import BlockFloatingPoint, FixedPoint, FloatingPoint
from refimpl.methods import METHODS
from refimpl.targets import Target, resolve_target
from refimpl.targets import grad as target_grad

__all__ = ["Case", "CASES", "NETOPT_CASES", "FastCase", "fast_cases", "run_trajectory", "run_netopt_trajectory",
           "run_fast_trajectory", "bitwise_expected", "run_ctld_fast_trajectory", "ctld_fast_available",
           "netopt_fast_cases", "run_netopt_fast_trajectory", "qsgld_fast_cases", "run_qsgld_fast_trajectory",
           "run_distribution", "run_crosscheck", "format_table",
           "FLOAT32_ULPS", "FLOAT32_MAX_FLIP_RATE", "FAST_ULPS", "FAST32_ULPS", "Z_MAX_24"]

#: float32 per-step tolerance in ulps (float32 spacing of the larger magnitude of the two values):
#: one step is a handful of float32 roundings (products and sums), each ≤ ½ ulp of its result.
FLOAT32_ULPS = 8
#: largest admissible fraction of elements that flip to a neighbouring grid value in float32
FLOAT32_MAX_FLIP_RATE = 1e-2
#: float64 fast path: bound on continuous values in ulps -- the Box–Muller normal's documented
#: 4 ulp (torch log/cos vs libm, docs/fast_path.md) times its coefficient, plus the rounding of the sum
FAST_ULPS = 4
#: float32 fast path against the float32 replay: bound on continuous values in float32 ulps of the largest
#: magnitude in the step's sum (``_compare``): the normals' <= 3 ulp(|z|) (torch's float32 log/sqrt/cos vs
#: correctly rounded, docs/fast_path.md), scaled by sd <= the magnitude, plus the products' and sums' roundings
FAST32_ULPS = 8

GRADIENT_STREAMS = ("batch_u", "grad_noise")


def _optim():
    return importlib.import_module("torchport.optim")


def _exact(cls) -> dict:
    """``{"exact": True}`` for an optimizer class that has both paths (the exact rows run the exact path),
    ``{}`` for one that has only the exact path."""
    import inspect

    return {"exact": True} if "exact" in inspect.signature(cls.__init__).parameters else {}


@dataclass
class Case:
    """One algorithm configuration run in both packages."""

    name: str
    method: str                       # refimpl method name
    make: Callable                    # (params, eta, temperature, fmt, gfmt, dtype_is_trial) -> optimizer
    fmt: object = None
    grad_fmt: object = None
    options: dict = field(default_factory=dict)
    momentum: Optional[bool] = None   # None: from the method table (refimpl.methods)
    lp_f: Optional[bool] = None       # accumulator in state["accumulator"]; u_weight shifted
    lp_l: Optional[bool] = None       # x0 rounded with Q^d by refimpl at init
    ctld: bool = False
    distribution: bool = True

    def __post_init__(self):
        row = METHODS[self.method]
        if self.momentum is None:
            self.momentum = row.momentum
        if self.lp_l is None:
            self.lp_l = row.lp_storage
        if self.lp_f is None:
            self.lp_f = row.low_precision and not row.lp_storage


def _sgld_cases():
    optim_mod = _optim()
    fx = FixedPoint(8, 5)
    cases = [Case("sgld", "sgld", lambda p, e, T, f, g: optim_mod.SGLD(p, lr=e, temperature=T, seed=0, exact=True))]

    def lp(acc, vc=False, noise=True, **vc_opts):
        return lambda p, e, T, f, g: optim_mod.LowPrecisionSGLD(p, lr=e, temperature=T, weight_format=f, grad_format=g,
                                                        accumulator=acc, variance_corrected=vc, add_noise=noise,
                                                        quantize_initial=False, seed=0, **vc_opts, exact=True)
    for f, tag in ((fx, "fixed"), (BlockFloatingPoint(8), "bfp"), (FloatingPoint(5, 4), "float")):
        g = fx if tag == "fixed" else f
        sfx = "" if tag == "fixed" else f"[{tag}]"
        if tag == "fixed":
            cases += [Case("sgd_lp_f", "sgd_lp_f", lp("full", noise=False), f, g, lp_f=True, distribution=False),
                      Case("sgd_lp_l", "sgd_lp_l", lp("low", noise=False), f, g, lp_l=True, distribution=False)]
        cases += [Case("sgld_lp_f" + sfx, "sgld_lp_f", lp("full"), f, g, lp_f=True),
                  Case("sgld_lp_l" + sfx, "sgld_lp_l", lp("low"), f, g, lp_l=True),
                  Case("sgld_vc" + sfx, "sgld_vc", lp("low", vc=True), f, g, lp_l=True)]
    # the gradient format both ways: the default "same" (Q_G onto the weight format) and None (full precision)
    cases += [Case("sgld_lp_f[grad=same]", "sgld_lp_f", lp("full"), fx, "same"),
              Case("sgld_lp_l[grad=none]", "sgld_lp_l", lp("low"), fx, None),
              Case("sgld_vc[grad=none]", "sgld_vc", lp("low", vc=True), fx, None)]
    bfp = BlockFloatingPoint(8)
    cases += [Case("sgld_vc[bfp,published]", "sgld_vc", lp("low", vc=True, vc_bfp_published=True), bfp, bfp,
                   options={"vc_bfp_published": True}, lp_l=True),
              Case("sgld_vc[ties=even]", "sgld_vc", lp("low", vc=True, ties="even"), fx, fx,
                   options={"ties": "even"}, lp_l=True, distribution=False)]
    return cases


def _sghmc_cases():
    optim_mod = _optim()
    fx = FixedPoint(8, 5)

    def full(sign, **kw):
        return lambda p, e, T, f, g: optim_mod.SGHMC(p, lr=e, friction=2.0, inverse_mass=2.0, temperature=T,
                                             position_sign=sign, seed=0, **kw, exact=True)

    def lp(acc, vc=False, **kw):
        return lambda p, e, T, f, g: optim_mod.LowPrecisionSGHMC(p, lr=e, friction=2.0, inverse_mass=2.0, temperature=T,
                                                         weight_format=f, grad_format=g, accumulator=acc,
                                                         variance_corrected=vc, quantize_initial=False, seed=0,
                                                         **kw, exact=True)
    return [Case("sghmc", "sghmc", full("correct"), momentum=True),
            Case("sghmc[paper sign]", "sghmc", full("paper"), options={"position_sign": "paper"}, momentum=True),
            Case("sghmc_lp_f", "sghmc_lp_f", lp("full"), fx, fx, momentum=True, lp_f=True),
            Case("sghmc_lp_l", "sghmc_lp_l", lp("low"), fx, fx, momentum=True, lp_l=True),
            Case("sghmc_vc", "sghmc_vc", lp("low", True), fx, fx, momentum=True, lp_l=True),
            Case("sghmc_vc[bfp]", "sghmc_vc", lp("low", True), BlockFloatingPoint(8), BlockFloatingPoint(8),
                 momentum=True, lp_l=True),
            Case("sghmc_lp_l[grad=none]", "sghmc_lp_l", lp("low"), fx, None),
            Case("sghmc_vc[grad=same]", "sghmc_vc", lp("low", True), fx, "same"),
            Case("sghmc_lp_l[rescale=paper]", "sghmc_lp_l", lp("low", velocity_rescaling="paper"), fx, fx,
                 options={"velocity_rescaling": "paper"}, momentum=True, lp_l=True, distribution=False),
            Case("sghmc_vc[rescale=code]", "sghmc_vc", lp("low", True, velocity_rescaling="code",
                                                          velocity_rescaling_constant=0.5), fx, fx,
                 options={"velocity_rescaling": "code", "velocity_rescaling_constant": 0.5}, momentum=True,
                 lp_l=True, distribution=False)] + _sghmc_resample_cases(full, lp, fx)


def _sghmc_resample_cases(full, lp, fx):
    """Momentum resampling (``resample_momentum_every``, stream ``v_refresh``) in every SGHMC method."""
    def opt(k, **more):
        return {"resample_momentum_every": k, **more}
    bfp = BlockFloatingPoint(8)
    return [Case("sghmc[resample=3]", "sghmc", full("correct", resample_momentum_every=3), options=opt(3)),
            Case("sghmc_lp_f[resample=2]", "sghmc_lp_f", lp("full", resample_momentum_every=2), fx, fx,
                 options=opt(2)),
            Case("sghmc_lp_l[resample=4]", "sghmc_lp_l", lp("low", resample_momentum_every=4), fx, fx,
                 options=opt(4)),
            Case("sghmc_vc[resample=1]", "sghmc_vc", lp("low", True, resample_momentum_every=1), fx, fx,
                 options=opt(1)),
            Case("sghmc_vc[bfp,resample=5]", "sghmc_vc", lp("low", True, resample_momentum_every=5), bfp, bfp,
                 options=opt(5)),
            Case("sghmc_lp_l[rescale=paper,resample=3]", "sghmc_lp_l",
                 lp("low", velocity_rescaling="paper", resample_momentum_every=3), fx, fx,
                 options=opt(3, velocity_rescaling="paper"), distribution=False)]


def _qsgld_ctld_cases():
    optim_mod = _optim()
    cases = []
    for opts in ({"rounding": "nearest"}, {"rounding": "stochastic"}, {"rounding": "uniform"},
                 {"rounding": "surrogate"},
                 {"rounding": "stochastic", "optimizer": "adam", "langevin_noise": True, "schedule": "linear",
                  "rate": 0.5, "steps_per_epoch": 10}):
        short = {"optimizer": lambda v: v, "langevin_noise": lambda v: "langevin", "schedule": lambda v: v,
                 "rate": lambda v: f"rate={v}", "steps_per_epoch": lambda v: f"B={v}"}
        tag = ",".join(short[k](v) for k, v in opts.items() if k != "rounding")
        name = f"qsgld[{opts['rounding']}{',' + tag if tag else ''}]"
        cases.append(Case(name, "qsgld", (lambda o: lambda p, e, T, f, g: optim_mod.QSGLD(p, lr=e, temperature=T, seed=0,
                                                                               **o, **_exact(optim_mod.QSGLD)))(dict(opts)),
                          options=dict(opts), distribution=opts["rounding"] != "nearest"))
    cases.append(Case("ctld", "ctld", lambda p, e, T, f, g: optim_mod.CTLD(p, lr=e, temperature=T, seed=0,
                                                                   eta_alpha=4e-2, switch_after=150,
                                                                   **_exact(optim_mod.CTLD)),
                      options={"eta_alpha": 4e-2, "switch_after": 150}, ctld=True, distribution=False))
    return cases


def all_cases() -> list[Case]:
    """Every sampler case (SGLD, SGHMC, QSGLD, CTLD families)."""
    return _sgld_cases() + _sghmc_cases() + _qsgld_ctld_cases()


CASES = None  # built lazily by all_cases() (needs torchport.optim)


def _ulp32(a: np.ndarray) -> np.ndarray:
    a = np.abs(a).astype(np.float32)
    return np.spacing(np.maximum(a, np.float32(np.finfo(np.float32).tiny))).astype(np.float64)


def _streams(method, dim, grad_noise, target, options):
    spec = refimpl.noise_spec(method, dim, grad_noise=grad_noise, target=target, **options)
    cols, off = {}, 0
    for name, _, shape in spec:
        n = int(np.prod(shape))
        cols[name] = slice(off, off + n)
        off += n
    return cols


def _torch_noise(cols, row, next_row, lp_f, device, dtype):
    out = {}
    for name, sl in cols.items():
        if name in GRADIENT_STREAMS:
            continue
        if lp_f and name == "u_weight":
            out["u_weight"] = next_row[sl]
            continue
        out[name] = row[sl]
    return {k: torch.as_tensor(v, device=device, dtype=torch.float64 if dtype == torch.float64 else dtype)
            for k, v in out.items()}


def _drop_unused(opt, noise):
    names = {n for n, _ in opt.noise_layout} | ({"xi_alpha"} if hasattr(opt, "ct") else set())
    return {k: v for k, v in noise.items() if k in names}


def _state_of(opt, p, case):
    if case.lp_f:
        return opt.state[p]["accumulator"]
    return p


def run_trajectory(case: Case, *, n_steps: int = 100, dim: int = 3, seed: int = 0, eta: float = 0.01,
                   temperature: float = 1.0, grad_noise: float = 0.1, target: str | Target = "mixture",
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
                   mutate: Optional[Callable] = None) -> dict:
    """Run ``case`` in both packages from refimpl's noise; return a result row (dict).

    ``mutate(opt)``, if given, is called on the torch optimizer before the run (the
    mutation tests use it to perturb the torch step deliberately).
    """
    tgt = resolve_target(target, dim)
    rng = np.random.default_rng(seed + 1)
    x0 = rng.standard_normal(dim) * 0.5
    if case.lp_l:
        x0 = refimpl.quantize(x0, case.fmt, "nearest")
    kw = dict(friction=2.0, inverse_mass=2.0) if case.momentum else {}
    noise = refimpl.draw_noise(case.method, n_steps + 1, 1, seed, dim=dim, grad_noise=grad_noise, target=tgt,
                               **case.options)
    ref = refimpl.sample(case.method, tgt, dim=dim, n_chains=1, n_steps=n_steps, step_size=eta, seed=seed,
                         fmt=case.fmt, grad_fmt=case.grad_fmt, temperature=temperature, grad_noise=grad_noise,
                         x0=x0, noise=noise[:n_steps], keep="all", **kw, **case.options)[:, 0, :]
    cols = _streams(case.method, dim, grad_noise, tgt, case.options)
    f64 = torch.float64
    p = torch.tensor(x0, dtype=f64, device=device, requires_grad=True)
    opt = case.make([p], eta, temperature, case.fmt, case.grad_fmt)
    if case.lp_f:
        opt.quantize_weights_(noise={"u_weight": torch.as_tensor(noise[0, 0, cols["u_weight"]], device=device)})
    if mutate is not None:
        mutate(opt)
    got = np.empty_like(ref)
    bad_steps = []
    ulps, flips, n_el = 0.0, 0, 0
    for k in range(n_steps):
        row, nxt = noise[k, 0], noise[k + 1, 0]
        tnoise = _drop_unused(opt, _torch_noise(cols, row, nxt, case.lp_f, device, f64))
        trial = None
        if dtype != f64:
            trial = (copy.deepcopy(opt.state_dict()), p.detach().clone())
        _set_grad(p, tgt, row, cols, grad_noise)
        if case.ctld:
            pot = refimpl.ctld.potential(tgt, p.detach().cpu().numpy())
            opt.step(noise=tnoise, potential=pot)
        else:
            opt.step(noise=tnoise)
        got[k] = _state_of(opt, p, case).detach().cpu().numpy()
        if dtype != f64:
            u, fl, n = _float32_step(case, trial, got[k], tgt, row, nxt, cols, grad_noise, eta, temperature,
                                     device, dtype, p.shape)
            ulps, flips, n_el = max(ulps, u), flips + fl, n_el + n
    equal = np.array_equal(got, ref)
    if not equal:
        bad_steps = np.flatnonzero(~np.all(got == ref, axis=1)).tolist()
    res = dict(name=case.name, check="trajectory", steps=n_steps, dim=dim, bitwise=bool(equal),
               first_bad_step=(bad_steps[0] if bad_steps else None),
               max_abs_diff=float(np.max(np.abs(got - ref))) if got.size else 0.0)
    if dtype == f64:
        res["ok"] = bool(equal)
        res["detail"] = "bit-identical" if equal else f"differs from step {bad_steps[0]}"
    else:
        rate = flips / max(n_el, 1)
        res.update(max_ulps=ulps, flips=flips, ok=bool(ulps <= FLOAT32_ULPS and rate <= FLOAT32_MAX_FLIP_RATE),
                   detail=f"max {ulps:.1f} ulp/step, {flips} flips / {n_el}")
        if not equal:  # the float64 reference run must still be exact
            res["ok"] = False
            res["detail"] += f"; float64 run differs from step {bad_steps[0]}"
    return res


def _set_grad(p, tgt, row, cols, grad_noise):
    x = p.detach().cpu().to(torch.float64).numpy()
    bu = row[cols["batch_u"]] if "batch_u" in cols else None
    g = target_grad(tgt, x, bu) if bu is not None else target_grad(tgt, x)
    if grad_noise > 0:
        g = g + grad_noise * row[cols["grad_noise"]]
    p.grad = torch.as_tensor(g, dtype=p.dtype, device=p.device)


def _float32_step(case, trial, ref_next, tgt, row, nxt, cols, grad_noise, eta, temperature, device, dtype, shape):
    """One float32 step from the float64 state ``trial``; returns (max ulps, flips, n elements)."""
    sd, p64 = trial
    p = p64.to(dtype).clone().requires_grad_(True)
    opt = case.make([p], eta, temperature, case.fmt, case.grad_fmt)
    opt.load_state_dict(sd)
    if hasattr(opt, "ct"):
        opt.ct = copy.deepcopy(sd["extra_state"])
    tnoise = _drop_unused(opt, _torch_noise(cols, row, nxt, case.lp_f, device, dtype))
    _set_grad(p, tgt, row, cols, grad_noise)
    if case.ctld:
        opt.step(noise=tnoise, potential=refimpl.ctld.potential(tgt, p64.cpu().numpy()))
    else:
        opt.step(noise=tnoise)
    got = _state_of(opt, p, case).detach().cpu().to(torch.float64).numpy()
    err = np.abs(got - ref_next)
    prev = p64.cpu().numpy()
    scale = _ulp32(np.maximum(np.abs(ref_next), np.abs(prev)))
    within = err <= FLOAT32_ULPS * scale
    flips = 0
    if not within.all() and case.fmt is not None:
        gap = refimpl.vc_gap(ref_next, case.fmt)
        flip = ~within & np.isclose(err, gap, rtol=1e-6, atol=0)
        flips = int(flip.sum())
        within = within | flip
    ulps = float(np.max(np.where(within & (err <= FLOAT32_ULPS * scale), err / scale, 0.0)))
    if not within.all():
        ulps = float("inf")
    return ulps, flips, err.size


# ------------------------------------------------------------------------------------- netopt
def _netopt_cases():
    from refimpl.netopt.askewsgd import AskewSGD as RA
    from refimpl.netopt.base import BaseOptimizer
    from refimpl.netopt.binaryconnect import BinaryConnect as RB
    from refimpl.netopt.levels import binary_levels, uniform_levels
    from refimpl.netopt.proxquant import ProxQuant as RP
    optim_mod = _optim()
    ex = _exact
    mom = BaseOptimizer(kind="sgd", momentum=0.9, weight_decay=1e-4)
    return [
        ("askewsgd[binary]", RA(levels=binary_levels(), alpha=1.0), dict(eps=0.05),
         lambda p, lr: optim_mod.AskewSGD(p, lr, eps=0.05, alpha=1.0, **ex(optim_mod.AskewSGD))),
        ("askewsgd[17 levels,sawb,momentum]",
         RA(levels=uniform_levels(17), alpha=1.0, base=mom, scale="sawb", clamp_nu=True), dict(eps=0.01),
         lambda p, lr: optim_mod.AskewSGD(p, lr, eps=0.01, alpha=1.0, levels=uniform_levels(17), base=mom,
                                  scale="sawb", clamp_nu=True, **ex(optim_mod.AskewSGD))),
        ("binaryconnect", RB(), {}, lambda p, lr: optim_mod.BinaryConnect(p, lr, **ex(optim_mod.BinaryConnect))),
        ("binaryconnect[stochastic,adam]", RB(stochastic=True, base="adam"), {},
         lambda p, lr: optim_mod.BinaryConnect(p, lr, stochastic=True, base="adam", seed=0,
                                               **ex(optim_mod.BinaryConnect))),
        ("proxquant", RP(lambda_rate=1e-3), {},
         lambda p, lr: optim_mod.ProxQuant(p, lr, lambda_rate=1e-3, **ex(optim_mod.ProxQuant))),
        ("proxquant[adam]", RP(lambda_rate=1e-3, base="adam"), {},
         lambda p, lr: optim_mod.ProxQuant(p, lr, lambda_rate=1e-3, base="adam", **ex(optim_mod.ProxQuant))),
    ]


NETOPT_CASES = None


def run_netopt_trajectory(case: tuple[str, Any, dict, Callable[[list[torch.Tensor], float], torch.optim.Optimizer]],
                          *, n_steps: int = 100, dim: int = 64, seed: int = 0, lr: float = 0.05,
                          device: torch.device | str = "cpu", mutate: Optional[Callable] = None) -> dict:
    """AskewSGD / BinaryConnect / ProxQuant on L(w) = ½‖w − c‖² from identical noise; float64 bit parity."""
    from refimpl.netopt.binaryconnect import stochastic_levels
    name, ref_cfg, step_kw, make = case
    rng = np.random.default_rng(seed + 2)
    c = rng.standard_normal(dim) * 0.6
    w0 = rng.standard_normal(dim) * 0.3
    u = rng.random((n_steps + 1, dim))
    stochastic = getattr(ref_cfg, "stochastic", False)
    st = ref_cfg.init([w0])
    p = torch.tensor(w0, dtype=torch.float64, device=device, requires_grad=True)
    opt = make([p], lr)
    if stochastic:
        opt.binarize_(noise={"u_binarize": torch.as_tensor(u[0], device=device)})
    if mutate is not None:
        mutate(opt)
    ok, first_bad, maxdiff = True, None, 0.0
    for k in range(n_steps):
        if stochastic:
            fwd = [stochastic_levels(st.params[0], ref_cfg.levels, ref_cfg.scale, u[k])]
        else:
            fwd = ref_cfg.forward_params(st)
        st = ref_cfg.step(st, [fwd[0] - c], lr, **step_kw)
        p.grad = p.detach() - torch.as_tensor(c, device=device)
        opt.step(noise={"u_binarize": torch.as_tensor(u[k + 1], device=device)} if stochastic else None)
        mine = (opt.state[p]["latent"] if "latent" in opt.state[p] else p).detach().cpu().numpy()
        if not np.array_equal(mine, st.params[0]):
            ok = False
            first_bad = k if first_bad is None else first_bad
            maxdiff = max(maxdiff, float(np.max(np.abs(mine - st.params[0]))))
    return dict(name=name, check="trajectory", steps=n_steps, dim=dim, bitwise=ok, ok=ok, first_bad_step=first_bad,
                max_abs_diff=maxdiff, detail="bit-identical" if ok else f"differs from step {first_bad}")


# ------------------------------------------------------------------------- the default (fast) path
@dataclass
class FastCase:
    """One method and format on the default path: ``method`` of the table, ``fmt`` (None: full precision)."""

    name: str
    method: str
    fmt: object = None


def _fast_formats() -> list:
    """(tag, format) of every format kind the fast path supports: fixed, BFP, float, IEEE, and MX if it is on it."""
    from refimpl.formats import parse_format
    from torchport.optim._fastpath import check_fast_format

    out = [("fixed", FixedPoint(8, 5)), ("bfp", BlockFloatingPoint(8)), ("float", FloatingPoint(5, 4)),
           ("ieee", parse_format("ieee:bfloat16"))]
    for text in ("mxfp8_e4m3", "mxint8"):
        try:
            out.append((text, check_fast_format(parse_format(text), "weight_format")))
        except ValueError:  # not on the fast path (yet)
            pass
    return out


def fast_cases() -> list[FastCase]:
    """Every SGLD/SGHMC method of the table, at every format the fast path supports (named as the exact
    path's cases: no suffix for fixed point, ``[bfp]``, ``[float]``, ``[ieee]``, ``[mxfp8_e4m3]``, ...)."""
    cases = [FastCase("sgld", "sgld"), FastCase("sghmc", "sghmc")]
    for tag, fmt in _fast_formats():
        for method in ("sgd_lp_f", "sgd_lp_l", "sgld_lp_f", "sgld_lp_l", "sgld_vc", "sghmc_lp_f", "sghmc_lp_l",
                       "sghmc_vc"):
            cases.append(FastCase(method if tag == "fixed" else f"{method}[{tag}]", method, fmt))
    return cases


def _fast_optimizer(case: FastCase, p, eta, temperature, seed):
    """The optimizer users construct for ``case.method`` (default path), from the method table.

    Eager (``compile=False``): the replay comparison is of the update's arithmetic; the compiled
    update is compared with the eager one in tests/torchport/test_default_path.py."""
    cls_name, kwargs = METHODS[case.method].torch_class, dict(METHODS[case.method].torch_kwargs)
    cls = getattr(_optim(), cls_name)
    if case.fmt is not None:
        kwargs.update(weight_format=case.fmt, grad_format=case.fmt)
    if METHODS[case.method].momentum:
        kwargs.update(friction=2.0, inverse_mass=2.0)
    return cls([p], lr=eta, temperature=temperature, seed=seed, compile=False, **kwargs)


def _np(t):
    return None if t is None else t.detach().cpu().to(torch.float64).numpy().copy()


def _fast_state(opt, p):
    st = opt.state[p]
    vel = st.get("velocity")
    if vel is None and hasattr(opt, "velocity_format"):  # SGHMC creates its zero velocity at the first step
        vel = torch.zeros_like(p)
    return _np(p), _np(st.get("accumulator")), _np(vel)


def _replay(case: FastCase, before, grad, seed, step, eta, temperature, options):
    """refimpl's counter replay of step ``step`` from ``before``, with the case's own settings (the method table,
    ``eta``, ``temperature``, N = 1, no weight decay; SGHMC γ = u = 2, s_x = -1) -- not read from the optimizer.
    ``options``: the replay's ``dtype`` (the run's) and, in mutation tests, ``bits``.  Returns float64 arrays."""
    from refimpl import counter_rng as rc
    from torchport.optim import sghmc_coefficients

    theta, acc, vel = before
    kw = dict(METHODS[case.method].torch_kwargs)
    common = dict(seed=seed, step=step, param_index=0, weight_format=case.fmt, grad_format=case.fmt,
                  accumulator=kw.get("accumulator", "low"), variance_corrected=kw.get("variance_corrected", False),
                  **options)
    if not METHODS[case.method].momentum:
        th, ac = rc.replay_sgld_step(theta, acc, grad, lr=eta, temperature=temperature, num_data=1.0,
                                     add_noise=kw.get("add_noise", True), **common)
        out = (th, ac, None)
    else:
        out = rc.replay_sghmc_step(theta, acc, vel, grad, coeffs=sghmc_coefficients(eta, 2.0, 2.0, temperature),
                                   velocity_format=case.fmt, position_sign=-1.0, **common)
    return tuple(None if a is None else np.asarray(a, dtype=np.float64) for a in out)


def _noise_sds(case: FastCase, eta, temperature) -> tuple[float, float]:
    """(s_x, s_v): the coefficients of the standard normals in one step's noise term of the position
    (θ / accumulator) and of the velocity, so that |noise| <= s·Z_MAX_24.  SGLD: sqrt(2·lr·T); SGHMC:
    ξ^x = (Σ_xv/Σ_v)·sqrt(Σ_v)·z1 + sqrt(Σ_x − Σ_xv²/Σ_v)·z2 and ξ^v = sqrt(Σ_v)·z1 (sghmc_step)."""
    from torchport.optim import sghmc_coefficients

    if METHODS[case.method].momentum:
        *_, s_v, s_x, s_xv = sghmc_coefficients(eta, 2.0, 2.0, temperature)
        corr = s_xv / s_v if s_v > 0.0 else 0.0
        return abs(corr) * math.sqrt(s_v) + math.sqrt(max(s_x - s_xv * corr, 0.0)), math.sqrt(s_v)
    sd = math.sqrt(2.0 * eta * temperature) if METHODS[case.method].torch_kwargs.get("add_noise", True) else 0.0
    return sd, 0.0


#: the largest |z| of a Box–Muller normal from 24-bit uniforms: sqrt(-2·log(2^-24)) = 5.77
Z_MAX_24 = math.sqrt(-2.0 * math.log(2.0 ** -24))


def _compare(got, want, prev, fmt, dtype, sd):
    """(max ulps of the continuous values, flips, grid values, equal) for one array; fmt None: continuous.

    float64: ulps of the largest of |got|, |want| and |prev| (the value before the step).
    float32: the float32 replay (``dtype="float32"``) differs only in the normals (torch's
    float32 log/sqrt/cos against correctly rounded ones, <= 3 ulp(|z|)), so the ulps are those
    of the largest magnitude in the step's sum μ + sd·z: |got|, |want|, |prev| and the largest
    noise term sd·Z_MAX_24 -- a cancellation in the sum must not inflate the count."""
    if got is None:
        return 0.0, 0, 0, True
    equal = bool(np.array_equal(got, want))
    if fmt is not None:  # grid values: equal or a flip
        flips = int(np.sum(got != want))
        return 0.0, flips, got.size, equal
    big = np.maximum(np.maximum(np.abs(got), np.abs(want)), np.abs(prev))
    err = np.abs(got - want)
    if dtype == torch.float64:
        scale = np.spacing(np.maximum(big, np.finfo(np.float64).tiny))
    else:
        scale = _ulp32(np.maximum(big, sd * Z_MAX_24))
    return float(np.max(err / scale)) if got.size else 0.0, 0, 0, equal


def run_fast_trajectory(case: FastCase, *, n_steps: int = 100, dim: int = 3, seed: int = 0, eta: float = 0.01,
                        temperature: float = 1.0, grad_noise: float = 0.1, target: str | Target = "mixture",
                        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
                        mutate: Optional[Callable] = None, replay_options: Optional[dict] = None) -> dict:
    """The default-path optimizer of ``case``, each step replayed by refimpl's counter replay; a result row.

    The replay runs in the run's dtype (``replay_sgld_step(..., dtype="float32")`` for float32:
    24-bit uniforms, float32 arithmetic in the fast path's order).  ``mutate(opt)``, if given,
    is called on the torch optimizer before the run (the mutation tests perturb the torch step
    with it); ``replay_options`` (e.g. ``{"bits": 53}``) override the replay's ``dtype``/``bits``
    (mutations of the replay).
    """
    tgt = resolve_target(target, dim)
    rng = np.random.default_rng(seed + 3)
    x0 = rng.standard_normal(dim) * 0.5
    p = torch.tensor(x0, dtype=dtype, device=device, requires_grad=True)
    opt = _fast_optimizer(case, p, eta, temperature, seed)
    if mutate is not None:
        mutate(opt)
    options = {"dtype": "float64" if dtype == torch.float64 else "float32", **(replay_options or {})}
    grid = (case.fmt, opt.accumulator == "low" and getattr(opt, "velocity_format", None) is not None and case.fmt)
    ulps, flips, ties, n_grid, equal, equal_but_ties = 0.0, 0, 0, 0, True, True
    fmts = (grid[0], None, grid[1] or None)
    s_x, s_v = _noise_sds(case, eta, temperature)
    for k in range(n_steps):
        before = _fast_state(opt, p)
        g = target_grad(tgt, before[0]) + grad_noise * rng.standard_normal(dim)
        p.grad = torch.as_tensor(g, dtype=dtype, device=device)
        grad_used = p.grad.detach().cpu().to(torch.float64).numpy()  # the float32 run's gradient, exactly
        opt.step()
        after = _fast_state(opt, p)
        want = _replay(case, before, grad_used, seed, k, eta, temperature, options)
        tie_ok = None
        if any(f is not None and a is not None and not np.array_equal(a, w) for a, w, f in zip(after, want, fmts)):
            tie_ok = _tie_elements(case, before, after, want, grad_used, seed, k, eta, temperature, options, dtype,
                                   device)
        for i, (got, w, prev, f, sd) in enumerate(zip(after, want, before, fmts, (s_x, s_x, s_v))):
            u, fl, n, eq = _compare(got, w, prev, f, dtype, sd)
            nt = int(np.sum(tie_ok[i])) if (fl and tie_ok is not None) else 0
            ulps, flips, ties, n_grid = max(ulps, u), flips + fl - nt, ties + nt, n_grid + n
            # a grid array may differ by ties only; a continuous one (fl = 0) that differs is not "equal but ties"
            equal, equal_but_ties = equal and eq, equal_but_ties and (eq or 0 < fl == nt)
    opt.check_finite()
    res = dict(name=f"{case.name} [fast]", check="fast-replay", steps=n_steps, dim=dim, bitwise=equal,
               max_ulps=ulps, flips=flips, ties=ties)
    bound, unit = (FAST_ULPS, "ulp") if dtype == torch.float64 else (FAST32_ULPS, "float32 ulp")
    tie_note = f", {ties} threshold ties (the normals' last bits) / {n_grid}" if ties else ""
    if bitwise_expected(case):
        res["ok"] = bool(equal_but_ties and flips == 0)
        res["detail"] = ("bit-identical" if equal else "bit-identical but" + tie_note[1:] if res["ok"] else
                         f"differs ({ulps:.1f} {unit}, {flips} grid flips / {n_grid}{tie_note}) where no normal "
                         "enters: bit-identical expected")
    else:
        res["ok"] = bool(equal or (ulps <= bound and flips == 0))
        res["detail"] = ("bit-identical" if equal else
                         f"within {ulps:.1f} {unit}, {flips} grid flips / {n_grid}{tie_note}")
    return res


#: the normal streams a step of the SGLD/SGHMC fast path may draw
_NORMAL_STREAMS = ("xi", "z1", "z2", "xi_v", "xi_x")


def _torch_normals(dtype, device):
    """(key, n) -> torch's own normals of that stream key in ``dtype`` (the fast path's), as NumPy."""
    from torchport import counter_rng as tc

    return lambda key, n: tc.normals(tc.key_tensor(key, device), n, dtype=dtype).cpu().numpy()


def _tie_elements(case, before, after, want, grad, seed, step, eta, temperature, options, dtype, device):
    """Per stored array, the elements whose grid flip is a **threshold tie**: the replay fed torch's own normals
    gives torch's value there, and torch's normals at that element are within the documented bound of the
    replay's (float64: 4 ulp(|z|) + 4·2^-53; float32: 3 ulp(|z|); docs/fast_path.md) -- the pre-rounding value,
    off by the normals' last bits, straddled a rounding threshold.  Anything else is a real flip."""
    from refimpl import counter_rng as rc

    with_torch = _replay(case, before, grad, seed, step, eta, temperature,
                         dict(options, normal_source=_torch_normals(dtype, device)))
    n = before[0].size
    close = np.ones(n, dtype=bool)
    for name in _NORMAL_STREAMS:
        key = rc.stream_key(seed, step, 0, name)
        zt = _torch_normals(dtype, device)(key, n).astype(np.float64)
        if dtype == torch.float64:
            zr = rc.normals(key, n)
            close &= np.abs(zt - zr) <= 4 * np.spacing(np.abs(zr)) + 4 * 2.0 ** -53
        else:
            zr = rc._normals_f32(key, n)
            close &= np.abs(zt - zr) <= 3 * np.spacing(np.abs(zr)).astype(np.float64)
    return [None if a is None else ((a != w) & (a == wt) & close.reshape(a.shape))
            for a, w, wt in zip(after, want, with_torch)]


def bitwise_expected(case: FastCase) -> bool:
    """Whether a fast row must be bit-identical to the replay (either dtype) up to threshold ties: every stored
    value is a grid value or a continuous one that no Box–Muller normal enters (a quantized method other than
    sgld_lp_f/sghmc_lp_f, whose accumulator / velocity carry the noise)."""
    return case.fmt is not None and case.method not in ("sgld_lp_f", "sghmc_lp_f")


# ------------------------------------------------------- the default path of CTLD and the netopt methods
def _has_fast_path(cls) -> bool:
    return "exact" in __import__("inspect").signature(cls.__init__).parameters


def _netopt_fast_specs() -> list[tuple[str, str, dict]]:
    """(name, class, constructor options) of the netopt exact rows, for their default-path rows."""
    from refimpl.netopt.base import BaseOptimizer
    from refimpl.netopt.levels import uniform_levels

    mom = BaseOptimizer(kind="sgd", momentum=0.9, weight_decay=1e-4)
    return [("askewsgd[binary]", "AskewSGD", dict(eps=0.05, alpha=1.0)),
            ("askewsgd[17 levels,sawb,momentum]", "AskewSGD",
             dict(eps=0.01, alpha=1.0, levels=uniform_levels(17), base=mom, scale="sawb", clamp_nu=True)),
            ("binaryconnect", "BinaryConnect", {}),
            ("binaryconnect[stochastic,adam]", "BinaryConnect", dict(stochastic=True, base="adam")),
            ("proxquant", "ProxQuant", dict(lambda_rate=1e-3)),
            ("proxquant[adam]", "ProxQuant", dict(lambda_rate=1e-3, base="adam"))]


def netopt_fast_cases() -> list[tuple[str, str, dict]]:
    """The netopt specs whose torch class has the default (fast) path (``exact=`` in its signature)."""
    return [c for c in _netopt_fast_specs() if _has_fast_path(getattr(_optim(), c[1]))]


def _ulps_f32(got, want, prev, floor) -> float:
    big = np.maximum(np.maximum(np.abs(got), np.abs(want)), np.maximum(np.abs(prev), floor)).astype(np.float32)
    return float(np.max(np.abs(got - want) / np.spacing(np.maximum(big, np.finfo(np.float32).tiny))
                        .astype(np.float64), initial=0.0))


def run_netopt_fast_trajectory(case: tuple[str, str, dict], *, n_steps: int = 100, dim: int = 64, seed: int = 0,
                               lr: float = 0.05, device: torch.device | str = "cpu",
                               dtype: torch.dtype = torch.float64, mutate: Optional[Callable] = None,
                               replay_options: Optional[dict] = None) -> dict:
    """AskewSGD / BinaryConnect / ProxQuant on their default path, each step replayed by
    :mod:`refimpl.netopt.replay` from the torch state before it (L(w) = ½‖w − c‖², the exact rows' problem).

    The replay runs in the run's dtype (``dtype="float32"``: the float32 fast path's operations in torch's
    order, 24-bit uniforms for BinaryConnect), so both dtypes must be **bit for bit** (w, BinaryConnect's
    latent, the base optimizer's m and v): no transcendental function enters (Adam's √ is correctly
    rounded on both sides).  The row also reports, for a failing run, the largest difference in float32
    ulp (of the largest of |values| and the levels' hull) and the grid flips (BinaryConnect's level index of
    w_b; for AskewSGD/ProxQuant whether a value sits on a level).  ``replay_options`` (``dtype``, ``bits``)
    override the replay's settings (mutation tests).
    """
    from refimpl.netopt import replay as NR
    from refimpl.netopt.levels import binary_levels

    name, cls_name, kw = case
    f64 = dtype == torch.float64
    ropts = {"dtype": "float64" if f64 else "float32", **(replay_options or {})}
    bits = ropts.pop("bits", None)
    rng = np.random.default_rng(seed + 2)
    c = rng.standard_normal(dim) * 0.6
    w0 = rng.standard_normal(dim) * 0.3
    p = torch.tensor(w0, dtype=dtype, device=device, requires_grad=True)
    opt = getattr(_optim(), cls_name)([p], lr, seed=seed, compile=False, **kw)
    if mutate is not None:
        mutate(opt)
    levels, base = kw.get("levels", binary_levels()), kw.get("base", "sgd")
    bc = cls_name == "BinaryConnect"
    equal, ulps, flips = True, 0.0, 0
    for k in range(n_steps):
        st = opt.state[p]
        prev = _np(st["latent"] if bc else p)
        m0, v0 = _np(st.get("m")), _np(st.get("v"))
        g = p.detach() - torch.as_tensor(c, dtype=dtype, device=device)
        p.grad = g
        opt.step()
        st = opt.state[p]
        t = opt.base_steps
        gn = _np(g)
        if cls_name == "AskewSGD":
            scale = float(st["scale"]) if kw.get("scale") == "sawb" else kw.get("fixed_scale", 1.0)
            w, m, v, _ = NR.replay_askewsgd_step(prev, gn, m0, v0, t=t, lr=lr, eps=kw["eps"], alpha=kw["alpha"],
                                                 levels=levels, scale=scale, base=base,
                                                 clamp_nu=kw.get("clamp_nu", False), **ropts)
            want = [(_np(p), w, False)]
        elif cls_name == "ProxQuant":
            scale = kw.get("scale", 1.0)
            w, m, v = NR.replay_proxquant_step(prev, gn, m0, v0, t=t, lr=lr, lambda_rate=kw["lambda_rate"],
                                               levels=levels, scale=scale, base=base, **ropts)
            want = [(_np(p), w, False)]
        else:
            scale = kw.get("scale", 1.0)
            wb, lat, m, v = NR.replay_binaryconnect_step(prev, gn, m0, v0, t=t, lr=lr, levels=levels, scale=scale,
                                                         base=base, stochastic=kw.get("stochastic", False),
                                                         seed=opt.seed, step=k, param_index=0,
                                                         bits=bits if bits is not None else (53 if f64 else 24),
                                                         **ropts)
            want = [(_np(st["latent"]), lat, False), (_np(p), wb, True)]
        for key, mine in (("m", m), ("v", v)):
            if key in st:
                want.append((_np(st[key]), mine, False))
        hull = scale * float(np.max(np.abs(levels.values)))
        lv = np.asarray(levels.values) * scale
        for got, ref, grid in want:
            ref = np.asarray(ref, dtype=np.float64)
            same = bool(np.array_equal(got, ref))
            equal = equal and same
            if same:
                continue
            if grid:  # BinaryConnect's w_b: the level index
                idx = [np.rint((a / scale - levels.lo) / levels.spacing) for a in (got, ref)]
                flips += int(np.sum(idx[0] != idx[1]))
            else:
                ulps = max(ulps, _ulps_f32(got, ref, prev, hull))
                if got is want[0][0]:
                    on = [np.isin(a.astype(np.float32), lv.astype(np.float32)) for a in (got, ref)]
                    flips += int(np.sum(on[0] != on[1]))
    res = dict(name=f"{name} [fast]", check="fast-replay", steps=n_steps, dim=dim, bitwise=equal, max_ulps=ulps,
               flips=flips, ok=equal)
    res["detail"] = ("bit-identical" if equal else
                     f"differs from the replay ({ulps:.1f} float32 ulp, {flips} grid flips): bit-identical expected")
    return res


def ctld_fast_available() -> bool:
    """Whether torchport.optim.CTLD has the default (fast) path."""
    return _has_fast_path(_optim().CTLD)


#: the CTLD crosscheck options (the exact row's)
CTLD_FAST_OPTIONS = {"eta_alpha": 4e-2, "switch_after": 150}
#: the largest |z| of a Box–Muller normal from 53-bit uniforms: sqrt(-2·log(2^-53)) = 8.57
Z_MAX_53 = math.sqrt(-2.0 * math.log(2.0 ** -53))


def run_ctld_fast_trajectory(*, n_steps: int = 100, dim: int = 3, seed: int = 0, eta: float = 0.01,
                             temperature: float = 1.0, grad_noise: float = 0.1, target: str | Target = "mixture",
                             device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
                             mutate: Optional[Callable] = None, replay_options: Optional[dict] = None) -> dict:
    """CTLD's default path, each step replayed by :func:`refimpl.ctld.replay_ctld_step` from the torch state
    before it (the exact row's target, step size and options: phase 1 with α, then phase 2 after step 150).

    The replay runs in the run's dtype (float32: ``dtype="float32"``, the float32 θ step in torch's order with
    the float32 Box–Muller normals of 24-bit uniforms; the α block float64 in both, as the fast path).  Two
    checks per step:

    * fed torch's own normals (``normal_source``: θ's in the run's dtype, ξ_α float64), the replay must equal
      the torch step **bit for bit** -- θ, v, α, v_α and the histogram (counts, means), phase and step count:
      everything but the normals is the same arithmetic;
    * with the replay's own normals (libm log/cos in float64; correctly rounded log/sqrt/cos in float32), θ, v,
      α and v_α differ only through the normals: within ``FAST_ULPS`` ulp (float64) or ``FAST32_ULPS`` float32
      ulp (θ and v of a float32 run) of the largest magnitude in the step's sum -- the values before and after
      and the noise term sd·``Z_MAX_53`` / sd·``Z_MAX_24`` -- and counts, phase and steps equal.

    ``replay_options`` (``dtype``, ``bits``) override the replay's settings (mutation tests).
    """
    from refimpl.ctld import potential as ctld_potential
    from refimpl.ctld import replay_ctld_step
    from torchport import counter_rng as tc
    from torchport.optim import ctld as tctld

    f64 = dtype == torch.float64
    ropts = {"dtype": "float64" if f64 else "float32", **(replay_options or {})}
    o = dict(tctld.DEFAULTS, **CTLD_FAST_OPTIONS)
    sd = math.sqrt(2.0 * o["c_theta"] * eta * temperature)
    sda = math.sqrt(2.0 * o["c_alpha"] * o["eta_alpha"] * temperature)
    tgt = resolve_target(target, dim)
    rng = np.random.default_rng(seed + 3)
    p = torch.tensor(rng.standard_normal(dim) * 0.5, dtype=dtype, device=device, requires_grad=True)
    opt = _optim().CTLD([p], lr=eta, temperature=temperature, seed=seed, compile=False, **CTLD_FAST_OPTIONS)
    if mutate is not None:
        mutate(opt)

    def torch_normals(key, n, np_dtype):
        tdt = torch.float32 if np_dtype == np.float32 else torch.float64
        return tc.normals(tc.key_tensor(key, device), n, dtype=tdt).cpu().numpy()

    equal, ulps, same_state, same_given_normals = True, 0.0, True, True
    for k in range(n_steps):
        th0, v0 = _np(p), _np(opt.state[p].get("velocity"))
        st0 = opt.state_dict()["extra_state"]
        x = th0.astype(np.float64)
        g = target_grad(tgt, x) + grad_noise * rng.standard_normal(dim)
        u = float(ctld_potential(tgt, x))
        p.grad = torch.as_tensor(g, dtype=dtype, device=device)
        grad_used = _np(p.grad)
        opt.step(potential=u)
        args = ([th0.astype(p.detach().cpu().numpy().dtype)], [v0], [grad_used], u, st0)
        kw = dict(seed=opt.seed, step=k, lr=eta, temperature=temperature, **CTLD_FAST_OPTIONS, **ropts)
        th, vel, st = replay_ctld_step(*args, **kw)
        tth, tvel, tst = replay_ctld_step(*args, normal_source=torch_normals, **kw)
        got = opt.state_dict()["extra_state"]
        same_state = same_state and all(got[key] == st[key] for key in ("counts", "phase", "steps"))
        mine = [_np(p), _np(opt.state[p]["velocity"]), np.array([got["alpha"]]), np.array([got["alpha_velocity"]])]
        same_given_normals = same_given_normals and got == tst and all(
            np.array_equal(a, np.asarray(b, dtype=np.float64))
            for a, b in zip(mine, [tth[0], tvel[0], np.array([tst["alpha"]]), np.array([tst["alpha_velocity"]])]))
        noisy = st0["phase"] == 1
        pairs = [(mine[0], th[0], th0, sd if noisy else 0.0, not f64),
                 (mine[1], vel[0], np.zeros(dim) if v0 is None else v0, sd if noisy else 0.0, not f64),
                 (mine[2], np.array([st["alpha"]]), np.array([st0["alpha"]]), sda if noisy else 0.0, False),
                 (mine[3], np.array([st["alpha_velocity"]]), np.array([st0["alpha_velocity"]]),
                  sda if noisy else 0.0, False)]
        for a, b, prev, s, in32 in pairs:
            b = np.asarray(b, dtype=np.float64)
            equal = equal and bool(np.array_equal(a, b))
            big = np.maximum(np.maximum(np.abs(a), np.abs(b)), np.abs(prev))
            err = np.abs(a - b)
            if in32:
                ulps = max(ulps, float(np.max(err / _ulp32(np.maximum(big, s * Z_MAX_24)))))
            else:
                ulps = max(ulps, float(np.max(err / np.spacing(np.maximum(np.maximum(big, s * Z_MAX_53),
                                                                          np.finfo(np.float64).tiny)))))
    opt.check_finite()
    res = dict(name="ctld [fast]", check="fast-replay", steps=n_steps, dim=dim, bitwise=equal, max_ulps=ulps,
               flips=0, same_given_normals=same_given_normals)
    bound, unit = (FAST_ULPS, "ulp") if f64 else (FAST32_ULPS, "float32 ulp")
    res["ok"] = bool(same_state and same_given_normals and (equal or ulps <= bound))
    res["detail"] = ("bit-identical" if equal and same_state else f"within {ulps:.1f} {unit}") + (
        "" if equal else "; bit-identical given torch's normals" if same_given_normals else
        "; differs from the replay fed torch's normals") + ("" if same_state else "; histogram/phase/steps differ")
    return res


def qsgld_fast_cases() -> list[tuple[str, dict]]:
    """(name, options) of the QSGLD exact rows, for their default-path rows (empty while QSGLD has no fast path)."""
    if not _has_fast_path(_optim().QSGLD):
        return []
    return [(c.name, dict(c.options)) for c in _qsgld_ctld_cases() if c.method == "qsgld"]


def run_qsgld_fast_trajectory(case: tuple[str, dict], *, n_steps: int = 100, dim: int = 3, seed: int = 0,
                              eta: float = 0.01, temperature: float = 1.0, grad_noise: float = 0.1,
                              target: str | Target = "mixture", device: torch.device | str = "cpu",
                              dtype: torch.dtype = torch.float64, mutate: Optional[Callable] = None) -> dict:
    """QSGLD's default path, each step replayed by :func:`refimpl.qsgld.replay_qsgld_step` from the torch state
    before it (the exact row's target and options).

    Grid values (nearest / stochastic rounding) must not flip (the grid index q·(θ' − base) equal).  The
    values may differ only where a normal enters (Langevin noise, the surrogate's ξ_q), within the bound of
    tests/torchport/test_fast_qsgld.py: float64 8 ulp(M), M = |θ| + |θ' − θ| + Σ scale·|ξ| (+ 1/(2q) for
    uniform rounding), and the Adam moments bit for bit; float32 (the replay is float64 with 24-bit
    uniforms) 4 float32 ulp(M) + Σ scale·2^-18(1 + |ξ|), the float32 normals' distance from the float64 ones.
    """
    from refimpl import counter_rng as rc
    from refimpl.qsgld import XI_Q_STREAM, replay_qsgld_step
    from torchport.optim import qsgld as tq

    name, opts = case
    f64 = dtype == torch.float64
    bits = 53 if f64 else 24
    tgt = resolve_target(target, dim)
    rng = np.random.default_rng(seed + 3)
    p = torch.tensor(rng.standard_normal(dim) * 0.5, dtype=dtype, device=device, requires_grad=True)
    opt = _optim().QSGLD([p], lr=eta, temperature=temperature, seed=seed, compile=False, **opts)
    if mutate is not None:
        mutate(opt)
    rounding = opts.get("rounding", "nearest")
    equal, worst, flips, moments_ok = True, 0.0, 0, True
    for k in range(n_steps):
        st = opt.state[p]
        th0, m0, v0 = _np(p), _np(st.get("exp_avg")), _np(st.get("exp_avg_sq"))
        g = target_grad(tgt, th0) + grad_noise * rng.standard_normal(dim)
        p.grad = torch.as_tensor(g, dtype=dtype, device=device)
        grad_used = _np(p.grad)
        q = tq.qsgld_resolution(k, eta, temperature, **opt.cfg)
        opt.step()
        want, m, v = replay_qsgld_step(th0, grad_used, seed=opt.seed, step=k, param_index=0, lr=eta,
                                       temperature=temperature, exp_avg=m0, exp_avg_sq=v0, bits=bits, **opts)
        got = _np(p)
        if f64 and m is not None:  # the Adam moments: no normal enters them
            moments_ok = moments_ok and _moments_equal(opt, p, m, v)
        equal = equal and moments_ok and bool(np.array_equal(want, got))
        if rounding in ("nearest", "stochastic"):
            base = th0 if opts.get("quantize", "params") == "update" else 0.0
            flips += int(np.sum(np.round((want - base) * q) != np.round((got - base) * q)))
        mag = np.abs(th0) + np.abs(want - th0) + (0.5 / q if rounding == "uniform" else 0.0)
        allow = np.zeros(dim)
        for on, stream, scale in ((opts.get("langevin_noise", False), "xi", math.sqrt(2.0 * eta * temperature)),
                                  (rounding == "surrogate", XI_Q_STREAM, math.sqrt(2.0 * eta / q))):
            if on:
                z = np.abs(rc.normals(rc.stream_key(opt.seed, k, 0, stream), dim, bits=bits))
                mag = mag + scale * z
                allow = allow + scale * 2.0 ** -18 * (1.0 + z)
        bound = 8 * np.spacing(mag) if f64 else 4 * _ulp32(mag) + allow
        diff = np.abs(want - got)
        worst = max(worst, float(np.max(np.where(diff == 0, 0.0, diff / np.maximum(bound, 1e-300)))))
    opt.check_finite()
    res = dict(name=f"{name} [fast]", check="fast-replay", steps=n_steps, dim=dim, bitwise=equal,
               max_ratio=worst, flips=flips)
    res["ok"] = bool(moments_ok and (equal or (worst <= 1.0 and flips == 0)))
    res["detail"] = ("bit-identical" if equal else
                     f"within {worst:.2f} of the bound ({'8 ulp' if f64 else '4 float32 ulp + normals'}), "
                     f"{flips} grid flips" + ("" if moments_ok else "; Adam moments differ"))
    return res


def _moments_equal(opt, p, m, v) -> bool:
    return bool(np.array_equal(m, _np(opt.state[p]["exp_avg"])) and np.array_equal(v, _np(opt.state[p]["exp_avg_sq"])))


# -------------------------------------------------------------------------------- distribution
def run_distribution(case: Case, *, n_chains: int = 2000, n_steps: int = 300, seed: int = 0, eta: float = 0.05,
                     temperature: float = 1.0, grad_noise: float = 0.1, device: torch.device | str = "cpu",
                     mutate: Optional[Callable] = None) -> dict:
    """Final states of independent chains, refimpl vs torchport, on the 1-D standard Gaussian.

    Returns a row with the KS two-sample p-value and the variance z-test p-value.
    """
    from scipy import stats
    kw = dict(friction=2.0, inverse_mass=2.0) if case.momentum else {}
    fmt_r = case.fmt
    ref = refimpl.sample(case.method, "gaussian", dim=1, n_chains=n_chains, n_steps=n_steps, step_size=eta,
                         seed=seed, fmt=fmt_r, grad_fmt=case.grad_fmt, temperature=temperature,
                         grad_noise=grad_noise, keep="last", **kw, **case.options)
    a = np.asarray(ref).reshape(-1)
    # torch: one parameter (n_chains, 1); BFP blocks per chain (dim=0), as refimpl's per-chain vector
    fmt_t = BlockFloatingPoint(fmt_r.wl, 0) if isinstance(fmt_r, BlockFloatingPoint) else fmt_r
    gfmt_t = BlockFloatingPoint(case.grad_fmt.wl, 0) if isinstance(case.grad_fmt, BlockFloatingPoint) \
        else case.grad_fmt
    gen = torch.Generator(device=device).manual_seed(seed + 12345)
    x0 = torch.zeros(n_chains, 1, dtype=torch.float64, device=device)
    p = x0.clone().requires_grad_(True)
    opt = case.make([p], eta, temperature, fmt_t, gfmt_t)
    opt.generator.manual_seed(seed + 777)
    if case.lp_f:
        opt.quantize_weights_()
    if mutate is not None:
        mutate(opt)
    for _ in range(n_steps):
        z = torch.randn(p.shape, generator=gen, dtype=torch.float64, device=device)
        p.grad = p.detach() + grad_noise * z
        opt.step()
    b = _state_of(opt, p, case).detach().cpu().numpy().reshape(-1)
    ks_p = float(stats.ks_2samp(a, b).pvalue)
    va, vb = a.var(ddof=1), b.var(ddof=1)
    se = math.sqrt(_var_se2(a) + _var_se2(b))
    z = (va - vb) / se if se > 0 else (0.0 if va == vb else math.inf)
    var_p = float(2 * stats.norm.sf(abs(z)))
    return dict(name=case.name, check="distribution", chains=n_chains, steps=n_steps, var_refimpl=float(va),
                var_torchport=float(vb), ks_p=ks_p, var_p=var_p)


def _var_se2(x):
    """Squared SE of the sample variance: (m4 − σ⁴)/n."""
    m = x.mean()
    m4 = np.mean((x - m) ** 4)
    v = x.var()
    return max(m4 - v * v, 0.0) / x.size


# ------------------------------------------------------------------------------------ driver
def run_crosscheck(*, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64, n_steps: int = 100,
                   dim: int = 3, n_chains: int = 2000, dist_steps: int = 300, alpha: float = 1e-3, seed: int = 0,
                   distribution: bool = True, names: Collection[str] | None = None,
                   progress: Callable[[dict], object] | None = None, path: str = "both") -> list[dict]:
    """All cases; returns the list of rows (each with ``ok``).

    ``path``: "exact" (the exact path's trajectory and distribution rows), "fast" (the
    default path against refimpl's counter replay, rows named "<case> [fast]") or "both".
    ``names`` selects cases by name (a fast case by its name without " [fast]").
    """
    if path not in ("exact", "fast", "both"):
        raise ValueError(f"path must be 'exact', 'fast' or 'both', got {path!r}")
    rows = []
    if path in ("fast", "both"):
        for c in fast_cases():
            if names is None or c.name in names:
                rows.append(run_fast_trajectory(c, n_steps=n_steps, dim=dim, seed=seed, device=device, dtype=dtype))
                if progress:
                    progress(rows[-1])
        for c in qsgld_fast_cases():
            if names is None or c[0] in names:
                rows.append(run_qsgld_fast_trajectory(c, n_steps=n_steps, dim=dim, seed=seed, device=device,
                                                      dtype=dtype))
                if progress:
                    progress(rows[-1])
        if ctld_fast_available() and (names is None or "ctld" in names):
            rows.append(run_ctld_fast_trajectory(n_steps=n_steps, dim=dim, seed=seed, device=device, dtype=dtype))
            if progress:
                progress(rows[-1])
        for c in netopt_fast_cases():
            if names is None or c[0] in names:
                rows.append(run_netopt_fast_trajectory(c, n_steps=n_steps, seed=seed, device=device, dtype=dtype))
                if progress:
                    progress(rows[-1])
    if path == "fast":
        return rows
    cases = [c for c in all_cases() if names is None or c.name in names]
    for c in cases:
        rows.append(run_trajectory(c, n_steps=n_steps, dim=dim, seed=seed, device=device, dtype=dtype))
        if progress:
            progress(rows[-1])
    if dtype == torch.float64:
        for c in _netopt_cases():
            if names is None or c[0] in names:
                rows.append(run_netopt_trajectory(c, n_steps=n_steps, seed=seed, device=device))
                if progress:
                    progress(rows[-1])
    if distribution:
        dcases = [c for c in cases if c.distribution]
        n_tests = max(2 * len(dcases), 1)
        for c in dcases:
            r = run_distribution(c, n_chains=n_chains, n_steps=dist_steps, seed=seed, device=device)
            r["threshold"] = alpha / n_tests
            r["ok"] = bool(r["ks_p"] >= r["threshold"] and r["var_p"] >= r["threshold"])
            r["detail"] = (f"KS p={r['ks_p']:.3g}, var p={r['var_p']:.3g} "
                           f"(var {r['var_refimpl']:.4f} vs {r['var_torchport']:.4f})")
            rows.append(r)
            if progress:
                progress(r)
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the rows."""
    width = max([42] + [len(r["name"]) for r in rows])
    head = f"{'algorithm':{width}s} {'check':12s} {'result':6s}  detail"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name']:{width}s} {r['check']:12s} {'ok' if r['ok'] else 'FAIL':6s}  {r.get('detail', '')}")
    n_bad = sum(not r["ok"] for r in rows)
    lines.append("-" * len(head))
    lines.append(f"{len(rows) - n_bad} ok, {n_bad} failed")
    return "\n".join(lines)
