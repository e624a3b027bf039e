"""SGHMC family as torch optimizers: ``SGHMC`` (H0)/(H1) and ``LowPrecisionSGHMC`` (H2)-(H4).

The integrator is the exponential (Cheng et al. 2018) one of the LP-SGHMC
paper (Wang, Chen, Song & Zhang, TMLR 2024, eqs. 3-8), with per-step
coefficients (H0) for step η = ``lr``, friction γ, inverse mass u and the
noise covariances multiplied by τ = T/N (spec §3.1 "SGHMC code units": the
published deep-learning code feeds the per-example-mean gradient and multiplies
all covariances by T/N; with N = 1 and L = U this is exactly (H1) at
temperature T).

The position sign s_x defaults to the correct −1 (§3.8); ``position_sign=
"paper"`` reproduces the published "+" (§7.3.1).

Momentum resampling (``resample_momentum_every=K``, as refimpl's option of the same name; 0 = never,
the default): before step k (``num_steps`` = k, 0-based), when k ≡ 0 (mod K), every velocity is
replaced by √(u·T/N)·z, z the step's ``v_refresh`` stream (drawn every step when K > 0), the velocity
marginal of the stationary law (docs/sghmc.md, "Momentum resampling"); BlackJAX's ``sghmc`` draws a
fresh momentum before each run of ``num_integration_steps`` steps.  The fresh velocity enters the
step's full-precision arithmetic and is not rounded on its own.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Literal, Optional

import torch

from torchport import fast as F
from torchport import quantize as tq
from torchport.quantize import Format
from refimpl import formulas
from refimpl.formats import FixedPoint
from torchport.optim._base import LowPrecisionWeightsMixin, NoisyOptimizer, _positive, as_format
from torchport.optim._fastpath import check_fast_format

__all__ = ["SGHMC", "LowPrecisionSGHMC", "sghmc_coefficients"]


def sghmc_coefficients(step_size: float, friction: float, inverse_mass: float, temperature: float = 1.0
                       ) -> tuple[float, float, float, float, float, float, float]:
    """Per-step coefficients of (H0): a, c_v, c_xv, c_xg, TΣ_v, TΣ_x, TΣ_xv.

    a = e^{−γη}; c_v = u(1−a)/γ; c_xv = (1−a)/γ; c_xg = u(γη+a−1)/γ²;
    Σ_v = u(1−a²); Σ_x = u(2γη+4a−a²−3)/γ²; Σ_xv = u(1−a)²/γ, all covariances
    times the temperature.  Source: LP-SGHMC (TMLR 2024) eq. (3) / Cheng et al.
    2018.  The one definition is :func:`refimpl.formulas.sghmc_coefficients`,
    which refimpl's kernels jit, so that both packages use the same floats.
    Pure Python floats (float64); no randomness.
    """
    gamma, eta = _positive("friction", friction), _positive("step_size", step_size)
    u, temp = _positive("inverse_mass", inverse_mass), _positive("temperature", temperature, allow_zero=True)
    return formulas.sghmc_coefficients(eta, gamma, u, temp)


def _resample_every(value):
    """``resample_momentum_every``: an int >= 0 (bool and non-integral refused), ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"resample_momentum_every must be an integer >= 0 (0 = never), got {value!r}")
    return int(value)


def _friction(name, value, where=""):
    """friction > 0, finite and >= refimpl.formulas.SGHMC_MIN_FRICTION (2**-511: the (H0) coefficients
    divide by friction², which is subnormal or 0 below it); ValueError naming it and the value."""
    v = _positive(name, value, where=where)
    if v < formulas.SGHMC_MIN_FRICTION:
        raise ValueError(f"{where}{name} must be >= {formulas.SGHMC_MIN_FRICTION:.3g} (2**-511: below it "
                         "friction**2 is not a normal float64 and the (H0) coefficients c_xg, Sigma_x, which divide "
                         f"by it, are NaN or lose all precision), got {name}={value!r}")
    return v


def _sign(position_sign):
    if position_sign in ("correct", -1):
        return -1.0
    if position_sign in ("paper", 1):
        return 1.0
    raise ValueError(f"position_sign must be 'correct' or 'paper', got {position_sign!r}")


class _SGHMCBase(NoisyOptimizer):
    """Shared SGHMC machinery; the default (fast) path runs :func:`torchport.fast.sghmc_step` per parameter.

    The fast path needs ``weight_format``, ``grad_format``, ``velocity_format``,
    ``accumulator``, ``variance_corrected`` and ``vc_options`` (SGHMC: no formats,
    accumulator "low").
    """

    group_rules = {**NoisyOptimizer.group_rules, "friction": _friction}
    fast_path_available = True

    def __init__(self, params, lr, friction, inverse_mass, temperature, num_data, position_sign,
                 weight_decay, defaults_extra, seed, generator, foreach, resample_momentum_every=0,
                 exact=True, compile=None, check_every=0):
        _positive("lr", lr)
        _friction("friction", friction)
        self.resample_momentum_every = _resample_every(resample_momentum_every)
        if exact is False and self.resample_momentum_every:
            raise ValueError(f"resample_momentum_every={resample_momentum_every!r} is not on the default (fast) "
                             "path (no v_refresh stream there); exact=True runs it")
        _positive("inverse_mass", inverse_mass)
        _positive("temperature", temperature, allow_zero=True)
        _positive("num_data", num_data)
        _positive("weight_decay", weight_decay, allow_zero=True)
        self.position_sign = position_sign
        self._sx = _sign(position_sign)
        defaults = dict(lr=float(lr), friction=float(friction), inverse_mass=float(inverse_mass),
                        temperature=float(temperature), num_data=float(num_data),
                        weight_decay=float(weight_decay), **defaults_extra)
        super().__init__(params, defaults, seed=seed, generator=generator, foreach=foreach, exact=exact,
                         compile=compile, check_every=check_every)
        if not exact:
            wf, gf, vf = self.weight_format, self.grad_format, self.velocity_format
            ties, pub = self.vc_options["ties"], self.vc_options["vc_published"]
            self._fast_codes = (None if wf is None else F._code(wf, ties, pub), None if gf is None else F._code(gf),
                                None if vf is None else F._code(vf, ties, pub))
            self._fast_mode, self._fast_views = F._layout([wf, gf, vf])
            self._fast_fn = F.maybe_compile(F.sghmc_step, self.compile)
            self._fast_group_fn = F.maybe_compile(F.sghmc_step_group, self.compile)

    def _fast_group_args(self, group) -> dict:
        return dict(coeffs=self._coeffs(group), weight_decay=group["weight_decay"])

    def _fast_update(self, p, key, args) -> torch.Tensor:
        m = self._fast_mode
        acc = self.state[p]["accumulator"] if self.accumulator == "full" else None
        v = self._velocity(p, p)
        q, acc2, v2, finite = self._fast_fn(
            F._view(p, m), F._view(p.grad, m), F._view(acc, m), F._view(v, m), key, coeffs=args["coeffs"],
            position_sign=self._sx, weight_fmt=self._fast_views[0], weight_code=self._fast_codes[0],
            grad_fmt=self._fast_views[1], grad_code=self._fast_codes[1], velocity_fmt=self._fast_views[2],
            velocity_code=self._fast_codes[2], accumulator=self.accumulator,
            variance_corrected=self.variance_corrected, weight_decay=args["weight_decay"])
        p.copy_(q.reshape(p.shape))
        v.copy_(v2.reshape(p.shape))
        if acc is not None:
            acc.copy_(acc2.reshape(acc.shape))
        return finite

    def _fast_update_group(self, todo, keys) -> list | None:
        """All parameters of the step in one call of :func:`torchport.fast.sghmc_step_group` (the same bits as
        :meth:`_fast_update` per parameter); None (per-parameter calls) where ``fast._group_members`` says so."""
        members = F._group_members(todo, keys, (self.weight_format, self.grad_format, self.velocity_format))
        if members is None:
            return None
        m = self._fast_mode
        full = self.accumulator == "full"
        ps = [F._view(p, m) for _, _, p in members]
        accs = F._group_views([self.state[p]["accumulator"] if full else None for _, _, p in members], m)
        vs = F._group_views([self._velocity(p, p) for _, _, p in members], m)
        if accs is None or vs is None:
            return None
        qs, acc2s, v2s, flags = self._fast_group_fn(
            ps, [F._view(p.grad, m) for _, _, p in members], accs, vs, keys, [i for _, i, _ in members],
            coeffs=[a["coeffs"] for a, _, _ in members], weight_decays=[a["weight_decay"] for a, _, _ in members],
            position_sign=self._sx, weight_fmt=self._fast_views[0], weight_code=self._fast_codes[0],
            grad_fmt=self._fast_views[1], grad_code=self._fast_codes[1], velocity_fmt=self._fast_views[2],
            velocity_code=self._fast_codes[2], accumulator=self.accumulator,
            variance_corrected=self.variance_corrected)
        torch._foreach_copy_(ps + vs, qs + v2s)
        if full:
            torch._foreach_copy_(accs, acc2s)
        return flags

    def _coeffs(self, group):
        return sghmc_coefficients(group["lr"], group["friction"], group["inverse_mass"],
                                  group["temperature"] / group["num_data"])

    def _refresh_now(self) -> bool:
        """Momentum resampling before this step: K > 0 and k = ``num_steps`` ≡ 0 (mod K)."""
        every = self.resample_momentum_every
        return every > 0 and self.num_steps % every == 0

    def _fresh_velocity(self, group, z):
        """√(u·T/N)·z (refimpl.formulas.sghmc_velocity_sd), z a standard normal tensor."""
        return z * formulas.sghmc_velocity_sd(group["inverse_mass"], group["temperature"] / group["num_data"])

    def _velocity(self, p, like):
        st = self.state[p]
        if "velocity" not in st:
            st["velocity"] = torch.zeros_like(like)
        return st["velocity"]


def _correlated_noise(z1, z2, s_v, s_x, s_xv):
    """(ξ^x, ξ^v) from two standard normals, the code's ``brown`` (§3.8): ξ^v = √Σ_v z1, ξ^x = (Σ_xv/Σ_v)ξ^v + √(Σ_x − Σ_xv²/Σ_v) z2."""
    corr = s_xv / s_v if s_v > 0.0 else 0.0
    xi_v = z1 * math.sqrt(s_v)
    xi_x = xi_v * corr + z2 * math.sqrt(max(s_x - s_xv * corr, 0.0))
    return xi_x, xi_v


class SGHMC(_SGHMCBase):
    """Full-precision SGHMC with the exponential integrator -- spec (H0)/(H1); LP-SGHMC (TMLR 2024) eq. (3).

    v_{k+1} = a·v_k − c_v·g_k + ξ^v_k;   x_{k+1} = x_k + c_xv·v_k + s_x·c_xg·g_k + ξ^x_k
    with g_k = ``p.grad`` (+ wd·x), coefficients (H0) at η = lr, covariances ×
    T/N, (ξ^x, ξ^v) correlated as in §3.8, the x-update using the **old** v_k.
    The velocity lives in ``state[p]["velocity"]`` (zeros at start).
    Randomness: two standard normals per element per step, streams ``"z1"``
    (velocity) then ``"z2"`` (position), and ``"v_refresh"`` with ``resample_momentum_every`` > 0.  Departure from the published code:
    s_x = −1 by default (the code and paper use +1; ``position_sign="paper"``).

    Path: by default (``exact=False``) the update is :func:`torchport.fast.sghmc_step`
    without formats, with z1, z2 from the counter stream (``resample_momentum_every``
    and ``foreach=True`` need ``exact=True``); ``exact=True`` is the float64-parity path.
    docs/torchport.md, "Two paths".
    """

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, friction: float = 1.0,
                 inverse_mass: float = 1.0, temperature: float = 1.0, num_data: float = 1, *,
                 position_sign: str = "correct",
                 resample_momentum_every: int = 0, weight_decay: float = 0.0,
                 seed: Optional[int] | torch.Generator = None, generator: Optional[torch.Generator] = None,
                 foreach: Optional[bool] = None, exact: bool = False, compile: Optional[bool] = None, check_every: int = 0):
        self.weight_format = self.grad_format = self.velocity_format = None
        self.accumulator, self.variance_corrected = "low", False
        self.vc_options = dict(ties=None, vc_published=False)
        super().__init__(params, lr, friction, inverse_mass, temperature, num_data, position_sign,
                         weight_decay, {}, seed, generator, foreach, resample_momentum_every, exact, compile,
                         check_every)

    @property
    def noise_layout(self) -> tuple[tuple[str, str], ...]:
        refresh = (("v_refresh", "normal"),) if self.resample_momentum_every > 0 else ()
        return (("z1", "normal"), ("z2", "normal")) + refresh

    def _update_group(self, group, params, grads, noise):
        a, c_v, c_xv, c_xg, s_v, s_x, s_xv = self._coeffs(group)
        wd = group["weight_decay"]
        refresh = self._refresh_now()
        for i, (p, g) in enumerate(zip(params, grads)):
            if wd != 0:
                g = g + p * wd
            stored = self._velocity(p, p)
            v = self._fresh_velocity(group, noise["v_refresh"][i].to(p.dtype)) if refresh else stored
            xi_x, xi_v = _correlated_noise(noise["z1"][i].to(p.dtype), noise["z2"][i].to(p.dtype),
                                           s_v, s_x, s_xv)
            v_new = v * a - g * c_v + xi_v
            p.copy_(p + v * c_xv + g * (self._sx * c_xg) + xi_x)
            stored.copy_(v_new)


class LowPrecisionSGHMC(LowPrecisionWeightsMixin, _SGHMCBase):
    """Low-precision SGHMC -- spec (H2)-(H4); LP-SGHMC (TMLR 2024) eqs. 5, 6, 8 and Alg. 1.

    With g = Q_G(∇) (stochastic rounding; weight decay added after, unquantized):

    * ``accumulator="full"`` (SGHMCLP-F, (H2)): x (``state["accumulator"]``) and
      v full precision; v' = a v − c_v g + ξ^v; x' = x + c_xv v + s_x c_xg g + ξ^x;
      θ ← Q_W(x')  (the model sees Q_W(x); stream ``"u_weight"``).
    * ``"low"``, naive (SGHMCLP-L, (H3)): v' = Q_V(a v − c_v g + ξ^v);
      x' = Q_W(x + c_xv v + s_x c_xg g + ξ^x)  (streams ``"u_velocity"``, ``"u_weight"``).
    * ``"low"``, ``variance_corrected=True`` (VC SGHMCLP-L, (H4)):
      v' = Q^vc(a v − c_v g, Σ_v); x' = Q^vc(x + c_xv v + s_x c_xg g, Σ_x) -- two
      independent Q^vc draws, so Σ_xv is dropped, as published (§3.9, §7.3.3).
      Streams ``"xi_v", "u_round_v", "u_cat_v", "xi_x", "u_round_x", "u_cat_x"``.

    Q_G is ``grad_format``: ``"same"`` (the default, as refimpl's ``grad_fmt``: the
    weight format), ``None`` (full-precision gradient) or a format.
    Q_V is ``velocity_format`` (default: ``weight_format``, as the synthetic
    code).  ``ties`` and ``vc_bfp_published`` are passed to Q^vc (as refimpl's
    ``sghmc_vc`` options).  ``velocity_rescaling`` (LP-L/VC, fixed point, (H5) §3.10):
    None (default, as refimpl), ``"paper"`` (S_v = ‖μ_v‖_∞/Ū) or ``"code"``
    (S_v = min(1, ‖μ_v‖_∞/(c·Ū)), c = ``velocity_rescaling_constant``), one S_v per
    parameter group (refimpl: per chain); the stored velocity is Q((μ_v + ξ^v)/S_v)
    (naive) or Q^vc(μ_v/S_v, Σ_v/S_v²) (VC), and the velocity used is stored·S_v.  Streams
    otherwise: ``"u_grad"`` (if ``grad_format``), ``"z1"``, ``"z2"`` (not VC).
    ``resample_momentum_every``: momentum resampling (module docstring; stream ``"v_refresh"``).
    Departure from the published code: s_x = −1 by default; consistent (H0)
    covariances in the VC branch (the code's η/N-inside-exp quirk, §7.3.4, is
    not reproduced).

    Path: by default (``exact=False``) each parameter's update is one call of
    :func:`torchport.fast.sghmc_step` ((H2)-(H4) in the parameter's dtype, counter
    stream), bit for bit ``torchport.fast.FastLowPrecisionSGHMC``; ``velocity_rescaling``
    (H5), ``resample_momentum_every``, ``foreach=True``, a VC run without a velocity
    format and formats ``torchport.fast`` does not take raise a ValueError naming the
    argument (``exact=True`` runs them); seed, ``compile``, ``check_every`` and dtypes as
    :class:`LowPrecisionSGLD`.  ``exact=True``: the float64 path above.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, friction: float = 1.0,
                 inverse_mass: float = 1.0, temperature: float = 1.0, num_data: float = 1, *,
                 weight_format: Format | str | None = None, grad_format: Format | str | None = "same",
                 velocity_format: Format | str | None = "same", accumulator: Literal["full", "low"] = "full",
                 variance_corrected: bool = False, ties: Literal["away", "even", "up"] | None = None,
                 vc_bfp_published: bool = False, position_sign: str = "correct",
                 resample_momentum_every: int = 0,
                 velocity_rescaling: Optional[str] = None, velocity_rescaling_constant: float = 1.0,
                 weight_decay: float = 0.0, quantize_initial: bool = True,
                 seed: Optional[int] | torch.Generator = None, generator: Optional[torch.Generator] = None,
                 foreach: Optional[bool] = None, exact: bool = False, compile: Optional[bool] = None, check_every: int = 0):
        if accumulator not in ("full", "low"):
            raise ValueError(f"accumulator must be 'full' or 'low', got {accumulator!r}")
        self.weight_format = as_format(weight_format, "weight_format")
        self.grad_format = self.weight_format if grad_format == "same" else as_format(grad_format, "grad_format")
        self.velocity_format = (self.weight_format if velocity_format == "same"
                                else as_format(velocity_format, "velocity_format"))
        if variance_corrected and (accumulator != "low" or self.weight_format is None):
            raise ValueError("variance_corrected=True needs accumulator='low' and a weight_format, got "
                             f"accumulator={accumulator!r}, weight_format={weight_format!r}")
        self.accumulator = accumulator
        self.variance_corrected = bool(variance_corrected)
        if ties not in (None, "away", "even", "up"):
            raise ValueError(f"ties must be None, 'away', 'even' or 'up', got {ties!r}")
        self.vc_options = dict(ties=ties, vc_published=bool(vc_bfp_published))
        if velocity_rescaling not in (None, "paper", "code"):
            raise ValueError(f"velocity_rescaling must be None, 'paper' or 'code', got {velocity_rescaling!r}")
        if velocity_rescaling is not None and (accumulator != "low" or not isinstance(self.weight_format, FixedPoint)
                                               or self.velocity_format != self.weight_format):
            raise ValueError("velocity_rescaling needs accumulator='low' and a FixedPoint weight_format (also used "
                             f"for the velocity), got accumulator={accumulator!r}, weight_format={weight_format!r}")
        _positive("velocity_rescaling_constant", velocity_rescaling_constant)
        self.velocity_rescaling = velocity_rescaling
        self.velocity_rescaling_constant = float(velocity_rescaling_constant)
        if exact is False:
            if velocity_rescaling is not None:
                raise ValueError(f"velocity_rescaling={velocity_rescaling!r} ((H5)) is not on the default (fast) "
                                 "path; exact=True runs it")
            for name, f in (("weight_format", self.weight_format), ("grad_format", self.grad_format),
                            ("velocity_format", self.velocity_format)):
                check_fast_format(f, name)
            if variance_corrected and self.velocity_format is None:
                raise ValueError("variance_corrected=True on the default (fast) path needs a velocity_format "
                                 f"(Q^vc of the velocity), got velocity_format={velocity_format!r}")
        super().__init__(params, lr, friction, inverse_mass, temperature, num_data, position_sign,
                         weight_decay, {}, seed, generator, foreach, resample_momentum_every, exact, compile,
                         check_every)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["velocity"] = torch.zeros_like(p)
                if accumulator == "full":
                    self.state[p]["accumulator"] = p.detach().clone()
        self.quantize_initial = bool(quantize_initial)  # also for groups added later (_init_group)
        if quantize_initial:
            self.quantize_weights_()

    @property
    def noise_layout(self) -> tuple[tuple[str, str], ...]:
        lay = [("u_grad", "uniform")] if self.grad_format is not None else []
        if self.variance_corrected:
            lay += [("xi_v", "normal"), ("u_round_v", "uniform"), ("u_cat_v", "uniform"),
                    ("xi_x", "normal"), ("u_round_x", "uniform"), ("u_cat_x", "uniform")]
        else:
            lay += [("z1", "normal"), ("z2", "normal")]
            if self.accumulator == "low" and self.velocity_format is not None:
                lay.append(("u_velocity", "uniform"))
            if self.weight_format is not None:
                lay.append(("u_weight", "uniform"))
        if self.resample_momentum_every > 0:
            lay.append(("v_refresh", "normal"))
        return tuple(lay)

    def _velocity_scale(self, vmax: float) -> float:
        """S_v of (H5): ‖μ_v‖_∞/Ū ("paper") or min(1, ‖μ_v‖_∞/(c·Ū)) ("code"); 1 when off or when μ_v = 0."""
        ubar = self.weight_format.hi
        if self.velocity_rescaling == "paper":
            sv = vmax / ubar
        elif self.velocity_rescaling == "code":
            sv = min(1.0, vmax / (self.velocity_rescaling_constant * ubar))
        else:
            return 1.0
        return sv if sv > 0.0 else 1.0

    def _update_group(self, group, params, grads, noise):
        a, c_v, c_xv, c_xg, s_v, s_x, s_xv = self._coeffs(group)
        wd = group["weight_decay"]
        full = self.accumulator == "full"
        refresh = self._refresh_now()
        parts = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.grad_format is not None:
                g = tq._sr_fast(g, self.grad_format, noise["u_grad"][i])
            x = self.state[p]["accumulator"] if full else p
            if wd != 0:
                g = g + x * wd
            v = self._velocity(p, p)
            if refresh:  # the fresh velocity replaces the stored one (scale included) for this step
                v = self._fresh_velocity(group, noise["v_refresh"][i].to(p.dtype))
            parts.append((v * a - g * c_v, x + v * c_xv + g * (self._sx * c_xg)))
        S = 1.0
        if self.velocity_rescaling is not None:  # (H5): one S_v per group (refimpl: per chain)
            S = self._velocity_scale(float(max(float(mu_v.abs().max()) for mu_v, _ in parts)))
            self.state["velocity_scale"] = S
        for i, (p, (mu_v, mu_x)) in enumerate(zip(params, parts)):
            v = self.state[p]["velocity"]
            x = self.state[p]["accumulator"] if full else p
            if self.variance_corrected:
                stored = tq._vc_fast(mu_v / S, s_v / (S * S), self.velocity_format, noise["xi_v"][i],
                                     noise["u_round_v"][i], noise["u_cat_v"][i], **self.vc_options)
                x_new = tq._vc_fast(mu_x, s_x, self.weight_format, noise["xi_x"][i], noise["u_round_x"][i],
                                    noise["u_cat_x"][i], **self.vc_options)
                v.copy_(stored * S)
                p.copy_(x_new)
                continue
            xi_x, xi_v = _correlated_noise(noise["z1"][i].to(p.dtype), noise["z2"][i].to(p.dtype),
                                           s_v, s_x, s_xv)
            v_new = mu_v + xi_v
            x_new = mu_x + xi_x
            if full:
                v.copy_(v_new)
                x.copy_(x_new)
                p.copy_(x if self.weight_format is None else
                        tq._sr_fast(x, self.weight_format, noise["u_weight"][i]))
            else:
                if self.velocity_format is not None:
                    v_new = tq._sr_fast(v_new / S, self.velocity_format, noise["u_velocity"][i]) * S
                if self.weight_format is not None:
                    x_new = tq._sr_fast(x_new, self.weight_format, noise["u_weight"][i])
                v.copy_(v_new)
                p.copy_(x_new)
