"""QSGLD as a torch optimizer -- spec (QS1)-(QS5) [reconstruction]; Seok & Cho, arXiv 2305.18864.

Mirrors :mod:`refimpl.qsgld` (same options, defaults, noise streams and
operation order; see that module for the status of each choice -- the paper's
update rule, quantizer and schedule were not available, so every choice is a
parameter and none is presented as the paper's algorithm).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal, Optional, Sequence

import torch

from refimpl.formulas import qsgld_resolution as _resolution
from refimpl.methods import QSGLD_CHOICES
from refimpl.qsgld import XI_Q_STREAM
from torchport import counter_rng as cr
from torchport.fast import _noise_like, _sqrt, _sr_int, _stream_keys, maybe_compile
from torchport.quantize import exact_sqrt
from torchport.optim._base import NoisyOptimizer, _integer, _positive, check_value

__all__ = ["QSGLD", "qsgld_resolution", "qsgld_step"]

ROUNDINGS = QSGLD_CHOICES["rounding"]


def qsgld_resolution(step: int, lr: float, temperature: float, *,
                     rounding: Literal["nearest", "stochastic", "uniform", "surrogate"] = "nearest",
                     q0: float | None = None, base: float = 2.0,
                     schedule: Literal["constant", "linear", "log"] = "constant", rate: float = 0.0,
                     steps_per_epoch: int = 100, time_index: Literal["fractional", "printed"] = "fractional",
                     c_q: float = 2.0,
                     resolutions: Optional[Sequence[float]] = None) -> float:
    """Q_p(t_k) of (QS2) for the 0-based step k: :func:`refimpl.formulas.qsgld_resolution`, which refimpl jits.

    q0 = None picks T_eff(Q_p(0)) = T: 1/√(24ηT) (nearest, uniform), 1/√(12ηT)
    (stochastic), c_q/(2T) (surrogate).  t = t_e + τ/B ("fractional") or t_e + τ
    ("printed"); h = 0, rate·t or rate·log(1+t); Q_p = q0·base^h.
    """
    _integer("step", step, 0)
    if resolutions is not None:
        return float(resolutions[min(step, len(resolutions) - 1)])
    if q0 is None:
        _positive("lr", lr)
        _positive("temperature", temperature)
    return _resolution(step, lr, temperature, ROUNDINGS.index(rounding), 0.0 if q0 is None else float(q0),
                       float(base), QSGLD_CHOICES["schedule"].index(schedule), float(rate), int(steps_per_epoch),
                       time_index == "printed", float(c_q))


def qsgld_step(p: torch.Tensor, g: torch.Tensor, exp_avg: torch.Tensor | None, exp_avg_sq: torch.Tensor | None,
               pkey: torch.Tensor, resolution: torch.Tensor, bias1: torch.Tensor, bias2: torch.Tensor, *,
               lr: float, noise_std: float, rounding: str, quantize_update: bool, adam: bool,
               betas: tuple[float, float], adam_eps: float, langevin_noise: bool, c_q: float
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """One QSGLD update of one parameter on the default (fast) path -- (QS1)-(QS5) [reconstruction].

    Pure function (no in-place writes), in ``p``'s dtype; returns (θ', m', v', finite flag).
    ``pkey`` = key(seed, step, parameter index) (0-d int64); ``resolution`` = Q_p(t_k) (QS2),
    ``bias1`` = 1 - b1^t, ``bias2`` = 1 - b2^t (t = k + 1): 0-d float64 tensors that change
    every step, so a compiled copy is not recompiled for each step:

        d   = g (SGD)  or  (m'/bias1)/(√(v'/bias2) + eps),  m' = b1·m + (1 - b1)·g,  v' = b2·v + (1 - b2)·g·g
        upd = -lr·d  (+ noise_std·ξ, stream "xi", if ``langevin_noise``; noise_std = √(2·lr·T), (QS4))
        z   = θ + upd (``quantize_update`` False, (QS3)) or upd;  q = resolution
        z_q = ⌊q·z + ½⌋/q (nearest)  |  (⌊s⌋ + [u_k < s - ⌊s⌋])/q, s = q·z (stochastic, stream
              "u_round": the k-bit comparison of torchport.fast's SR, k = 53 float64 / 24 float32)
              |  z + (u_k - ½)/q (uniform, "u_round")  |  z + √(C_q·lr/q)·ξ_q (surrogate, stream
              "xi_q" = id ``refimpl.qsgld.XI_Q_STREAM``, (QS5))
        θ'  = z_q, or θ + z_q for quantize="update"

    √ is correctly rounded in float64 (``torchport.fast._sqrt``), so float64 eager results
    equal :func:`refimpl.qsgld.replay_qsgld_step` bit for bit where no normal enters.
    The flag is all(isfinite(g)) as a 0-d bool tensor (read lazily, ``check_finite``).
    No argument checks: this is the function ``torch.compile`` traces (as ``torchport.fast.sgld_step``);
    :class:`QSGLD` checks everything before calling it.
    """
    finite = torch.isfinite(g).all()
    dt = p.dtype
    m2 = v2 = None
    if adam:
        b1, b2 = betas
        m2 = exp_avg * b1 + g * (1.0 - b1)
        v2 = exp_avg_sq * b2 + g * (1.0 - b2) * g
        d = (m2 / bias1.to(dt)) / (_sqrt(v2 / bias2.to(dt)) + adam_eps)
    else:
        d = g
    upd = d * (-lr)
    if langevin_noise:
        upd = upd + _noise_like(_stream_keys(pkey, ["xi"])[0], p, "normal") * noise_std
    z = upd if quantize_update else p + upd
    q = resolution.to(dt)
    if rounding == "nearest":
        zq = torch.floor(z * q + 0.5) / q
    elif rounding == "stochastic":
        zq = _sr_int(z * q, _noise_like(_stream_keys(pkey, ["u_round"])[0], p, "uniform")) / q
    elif rounding == "uniform":
        zq = z + (_noise_like(_stream_keys(pkey, ["u_round"])[0], p, "uniform") - 0.5) / q
    else:
        key = cr._counter_bits(pkey, torch.tensor(XI_Q_STREAM, dtype=torch.int64, device=pkey.device))
        zq = z + _noise_like(key, p, "normal") * _sqrt(c_q * lr / resolution).to(dt)
    return (p + zq if quantize_update else zq), m2, v2, finite


class QSGLD(NoisyOptimizer):
    """QSGLD -- (QS1)-(QS5) [reconstruction of Seok & Cho, arXiv 2305.18864; ICLR 2024 submission #4810].

    With d_k = ∇ (SGD) or the Adam direction, upd = −lr·d_k (+ √(2·lr·T)·ξ_k if
    ``langevin_noise``, (QS4)), z = θ + upd (``quantize="params"``, (QS3)) or z =
    upd (``"update"``), q = Q_p(t_k) (QS2):

    * "nearest": z_q = ⌊q z + ½⌋/q;  "stochastic": ⌊q z + u⌋/q  (QS1);
    * "uniform": z + (u − ½)/q (white-noise hypothesis made literal);
    * "surrogate": z + √(C_q·lr/q)·ξ_q  (QS5);

    θ ← z_q (or θ + z_q).  Streams: ``"xi"`` (if langevin_noise), then
    ``"u_round"`` (stochastic/uniform) or ``"xi_q"`` (surrogate).  The step
    counter k is ``num_steps`` (saved in ``state_dict``).  Adam moments live in
    ``state[p]["exp_avg"]``/``["exp_avg_sq"]``.  No published defaults exist for
    q0, base, the schedule or lr (documented in refimpl.qsgld).

    Path: by default (``exact=False``) each parameter's update is one call of
    :func:`qsgld_step` (the same equations in the parameter's dtype; stochastic rounding
    as the k-bit comparison (⌊s⌋ + [u_k < s − ⌊s⌋])/q, s = q·z; every random number from
    the counter stream at (seed, step, parameter index) with the stream names above, ξ_q
    under id ``refimpl.qsgld.XI_Q_STREAM``), compiled unless ``compile=False`` or
    ``$QLANGEVIN_COMPILE=0``; q(t_k) and the Adam bias corrections enter as 0-d tensors
    filled on the device each step.  ``seed``: an int, or a ``torch.Generator`` from which
    one integer is drawn; non-finite gradients are flagged lazily (:meth:`check_finite`,
    ``check_every``); float16/bfloat16 parameters are refused (TypeError).  Replayed by
    :func:`refimpl.qsgld.replay_qsgld_step`.  ``exact=True``: the float64 path op by op
    with a ``torch.Generator`` (bit-identical to refimpl's sampler fed the same noise; the
    numbers of runs before the fast path became QSGLD's default).  docs/qsgld.md, "Two paths".
    """

    fast_path_available = True

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, temperature: float = 1.0, *,
                 rounding: str = "nearest",
                 quantize: str = "params", q0: Optional[float] = None, base: float = 2.0,
                 schedule: str = "constant", rate: float = 0.0, steps_per_epoch: int = 100,
                 time_index: str = "fractional", optimizer: str = "sgd",
                 adam_betas: tuple[float, float] = (0.9, 0.999),
                 adam_eps: float = 1e-8, langevin_noise: bool = False, c_q: float = 2.0,
                 resolutions: Optional[Sequence[float]] = None, seed: Optional[int] | torch.Generator = None,
                 generator: Optional[torch.Generator] = None, exact: bool = False, compile: Optional[bool] = None,
                 check_every: int = 0):
        _positive("lr", lr)
        _positive("temperature", temperature, allow_zero=q0 is not None or resolutions is not None)
        checks = [(name, v, QSGLD_CHOICES[name]) for name, v in (
            ("rounding", rounding), ("quantize", quantize), ("schedule", schedule), ("time_index", time_index),
            ("optimizer", optimizer))]
        for name, v, allowed in checks:
            if v not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {v!r}")
        check_value("base", base, "greater_than_one")
        _positive("adam_eps", adam_eps)
        if resolutions is not None:
            if isinstance(resolutions, (str, bytes)) or len(resolutions) == 0:
                raise ValueError(f"resolutions must be a non-empty sequence of numbers > 0, got {resolutions!r}")
            for i, r in enumerate(resolutions):
                _positive(f"resolutions[{i}]", r, where=f"resolutions={list(resolutions)!r}: ")
        _positive("rate", rate, allow_zero=True)
        _positive("c_q", c_q)
        if q0 is not None:
            _positive("q0", q0)
        if not (isinstance(steps_per_epoch, int) and steps_per_epoch >= 1):
            raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
        if not (isinstance(adam_betas, (tuple, list)) and len(adam_betas) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in adam_betas)):
            raise TypeError(f"adam_betas must be a pair of numbers in [0, 1), got {adam_betas!r}")
        b1, b2 = adam_betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"adam_betas must lie in [0, 1), got {adam_betas!r}")
        self.cfg = dict(rounding=rounding, q0=q0, base=float(base), schedule=schedule, rate=float(rate),
                        steps_per_epoch=steps_per_epoch, time_index=time_index, c_q=float(c_q),
                        resolutions=None if resolutions is None else [float(r) for r in resolutions])
        self.quantize_update = quantize == "update"
        self.use_adam = optimizer == "adam"
        self.betas, self.adam_eps = (float(b1), float(b2)), float(adam_eps)
        self.langevin_noise = bool(langevin_noise)
        needs_gen = langevin_noise or rounding != "nearest"
        super().__init__(params, dict(lr=float(lr), temperature=float(temperature)),
                         seed=0 if (not needs_gen and seed is None and generator is None) else seed,
                         generator=generator, exact=exact, compile=compile, check_every=check_every)
        if not self.exact:
            self._fast_fn = maybe_compile(qsgld_step, self.compile)
            self._fast_scalars = {}  # (group index, device) -> 0-d float64 tensors (q, 1 - b1^t, 1 - b2^t)

    def _validate_group(self, group, where):
        """T > 0 unless q0 or resolutions is given (the default q0 divides by T), as the constructor checks."""
        out = super()._validate_group(group, where)
        if "temperature" in group and self.cfg["q0"] is None and self.cfg["resolutions"] is None:
            out["temperature"] = _positive("temperature", group["temperature"], where=where)
        return out

    @property
    def noise_layout(self) -> tuple[tuple[str, str], ...]:
        lay = [("xi", "normal")] if self.langevin_noise else []
        r = self.cfg["rounding"]
        if r in ("stochastic", "uniform"):
            lay.append(("u_round", "uniform"))
        elif r == "surrogate":
            lay.append(("xi_q", "normal"))
        return tuple(lay)

    def resolution(self, step: Optional[int] = None, group: Optional[dict] = None) -> float:
        """Q_p(t_k) at step k (default: the next step)."""
        group = self.param_groups[0] if group is None else group
        k = self.num_steps if step is None else step
        return qsgld_resolution(k, group["lr"], group["temperature"], **self.cfg)

    # ------------------------------------------------------------ the default (fast) path
    def _fast_group_args(self, group) -> dict:
        """Per-group values of step k = ``num_steps``: lr and √(2·lr·T) as floats; Q_p(t_k) and the Adam bias
        corrections 1 - b^(k+1) (host floats, as the exact path computes them) written into 0-d float64 tensors
        on each device of the group with ``fill_`` (a kernel argument, no host synchronisation)."""
        gi = next(i for i, g in enumerate(self.param_groups) if g is group)
        k = self.num_steps
        values = (self.resolution(k, group), 1.0 - self.betas[0] ** (k + 1), 1.0 - self.betas[1] ** (k + 1))
        scalars = {}
        for device in {p.device for p in group["params"]}:
            ts = self._fast_scalars.get((gi, device))
            if ts is None:
                ts = tuple(torch.zeros((), dtype=torch.float64, device=device) for _ in values)
                self._fast_scalars[(gi, device)] = ts
            for t, v in zip(ts, values):
                t.fill_(v)
            scalars[device] = ts
        eta, T = group["lr"], group["temperature"]
        return dict(lr=eta, noise_std=math.sqrt(2.0 * eta * T * 1.0), scalars=scalars)

    def _fast_update(self, p, key, args) -> torch.Tensor:
        st = self.state[p]
        m = v = None
        if self.use_adam:
            if "exp_avg" not in st:
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            m, v = st["exp_avg"], st["exp_avg_sq"]
        q, bias1, bias2 = args["scalars"][p.device]
        out, m2, v2, finite = self._fast_fn(
            p.detach(), p.grad, m, v, key, q, bias1, bias2, lr=args["lr"], noise_std=args["noise_std"],
            rounding=self.cfg["rounding"], quantize_update=self.quantize_update, adam=self.use_adam,
            betas=self.betas, adam_eps=self.adam_eps, langevin_noise=self.langevin_noise, c_q=self.cfg["c_q"])
        p.copy_(out)
        if self.use_adam:
            m.copy_(m2)
            v.copy_(v2)
        return finite

    # ------------------------------------------------------------ the exact path
    def _update_group(self, group, params, grads, noise):
        eta, T = group["lr"], group["temperature"]
        q = self.resolution(self.num_steps, group)
        t = self.num_steps + 1
        b1, b2 = self.betas
        r = self.cfg["rounding"]
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.use_adam:
                st = self.state[p]
                m = st.get("exp_avg", torch.zeros_like(p)) * b1 + g * (1.0 - b1)
                v = st.get("exp_avg_sq", torch.zeros_like(p)) * b2 + g * (1.0 - b2) * g
                st["exp_avg"], st["exp_avg_sq"] = m, v
                d = (m / (1.0 - b1 ** t)) / (exact_sqrt(v / (1.0 - b2 ** t)) + self.adam_eps)
            else:
                d = g
            upd = d * (-eta)
            if self.langevin_noise:
                upd = upd + noise["xi"][i].to(p.dtype) * math.sqrt(2.0 * eta * T * 1.0)
            z = upd if self.quantize_update else p + upd
            if r == "nearest":
                zq = torch.floor(z * q + 0.5) / q
            elif r == "stochastic":
                zq = torch.floor(z * q + noise["u_round"][i].to(p.dtype)) / q
            elif r == "uniform":
                zq = z + (noise["u_round"][i].to(p.dtype) - 0.5) / q
            else:
                zq = z + noise["xi_q"][i].to(p.dtype) * math.sqrt(self.cfg["c_q"] * eta / q)
            p.copy_(p + zq if self.quantize_update else zq)
