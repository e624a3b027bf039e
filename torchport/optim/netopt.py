"""Quantized-network optimizers: ``AskewSGD`` (A1)-(A4), ``BinaryConnect`` (B1), ``ProxQuant`` (B2).

Torch counterparts of :mod:`refimpl.netopt` (same level sets -- ``refimpl.netopt.levels.Levels`` --
same base-optimizer arithmetic, same tie rules), so that fed the same gradients
the float64 CPU iterates equal refimpl's bit for bit (tests/torchport/test_crosscheck.py).

The base step is the restated torch.optim SGD / Adam of ``refimpl.netopt.base``
(written out as separate operations, not delegated to ``torch.optim.SGD``, whose
``alpha=`` fused kernels round differently):

* SGD: g ← g + wd·w; m ← μ·m + g (m = g at the first step); w ← w − lr·m.
* Adam: m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²; w ← w − lr·(m/(1−β1^t))/(√(v/(1−β2^t)) + ε).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Callable, Literal, Optional, Union

import torch

from refimpl.netopt.base import BaseOptimizer, validate_base
from refimpl.netopt.levels import Levels, binary_levels, check_levels
from torchport.quantize import exact_sqrt
from torchport.optim._base import NoisyOptimizer, _integer, _positive

__all__ = ["AskewSGD", "BinaryConnect", "ProxQuant", "askew_direction", "quantize_nearest",
           "stochastic_levels", "prox_w_shaped", "sawb_scale"]


# ------------------------------------------------------------------ level helpers
# The public helpers check their arguments once and call the unchecked ``_`` kernels, which the
# optimizers' steps use directly (their arguments were checked at construction).
def _check_tensor(name, t):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def _check_same_shape(name, t, like):
    _check_tensor(name, t)
    if t.shape != like.shape:
        raise ValueError(f"{name} must have w's shape {tuple(like.shape)}, got {tuple(t.shape)}")
    return t


def quantize_nearest(w: torch.Tensor, levels: Levels, scale: float = 1.0) -> torch.Tensor:
    """s·argmin_q |w/s − q| with ties to the upper level (refimpl.netopt.levels.quantize_nearest; §4.1)."""
    _check_tensor("w", w)
    check_levels(levels)
    return _quantize_nearest(w, levels, _positive("scale", scale))


def _quantize_nearest(w, levels, scale=1.0):
    z = torch.clamp(w / scale, levels.lo, levels.hi)
    k = torch.floor((z - levels.lo) / levels.spacing + 0.5)
    k = torch.clamp(k, 0, levels.values.size - 1)
    return (k * levels.spacing + levels.lo) * scale


def stochastic_levels(w: torch.Tensor, levels: Levels, scale: float, u: torch.Tensor) -> torch.Tensor:
    """Stochastic rounding of clip(w/s) between bracketing levels (B1): upper iff u < P(upper)."""
    _check_tensor("w", w)
    check_levels(levels)
    _check_same_shape("u", u, w)
    return _stochastic_levels(w, levels, _positive("scale", scale), u)


def _stochastic_levels(w, levels, scale, u):
    z = (torch.clamp(w / scale, levels.lo, levels.hi) - levels.lo) / levels.spacing
    k = torch.clamp(torch.floor(z), 0, levels.values.size - 2)
    p_up = z - k
    k = k + (u < p_up).to(k.dtype)
    return (k * levels.spacing + levels.lo) * scale


def prox_w_shaped(theta: torch.Tensor, levels: Levels, scale: float, lam: float) -> torch.Tensor:
    """prox_{λR}, R = distance to the nearest grid point (B2): q + sign(θ−q)·max(|θ−q| − λ, 0)."""
    _check_tensor("theta", theta)
    check_levels(levels)
    return _prox_w_shaped(theta, levels, _positive("scale", scale), _positive("lam", lam, allow_zero=True))


def _prox_w_shaped(theta, levels, scale, lam):
    q = _quantize_nearest(theta, levels, scale)
    r = theta - q
    return q + torch.sign(r) * torch.clamp(r.abs() - lam, min=0.0)


def sawb_scale(w: torch.Tensor, bits: int = 4) -> float:
    """SAWB scale (A3): clip = 12.1·√mean(w²) − 12.2·mean|w|; s = 2·clip/(2^{b−1}+2^{b−1})."""
    _check_tensor("w", w)
    _integer("bits", bits, 2)
    if w.device.type == "cpu":  # NumPy's pairwise-summed means, so the scale equals refimpl's bit for bit
        from refimpl.netopt.levels import sawb_scale as _ref_sawb
        return _ref_sawb(w.detach().to(torch.float64).numpy(), bits)
    w64 = w.detach().to(torch.float64)
    clip_val = 12.1 * float(torch.sqrt(torch.mean(w64 * w64))) - 12.2 * float(torch.mean(w64.abs()))
    if not clip_val > 0 or clip_val != clip_val:
        raise ValueError(f"SAWB clip value must be positive and finite, got {clip_val!r}")
    return float(2.0 * clip_val / (2 ** (bits - 1) + 2 ** (bits - 1)))


def askew_direction(w: torch.Tensor, g: torch.Tensor, levels: Levels, eps: float, alpha: float, *,
                    scale: float = 1.0,
                    nu_clamp: Optional[float] = None, midpoint_guard: float = 1e-6
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """AskewSGD direction d and the skew mask -- (A1)/(A2), AISTATS 2023 (aistats2023/537 ``Trainer._step``).

    ψ = ε − ((w−a)(w−b))², ν = s·α·ψ / (2(w−a)(w−b)(guard + (w−a) + (w−b)));
    d = −g where (w−a)(w−b) = 0, ψ ≥ 0 or (−g)·ν > ν² (unclamped ν), else
    clip(ν, ±nu_clamp).  w is evaluated at clip(w/s, q_1, q_m).  Vectorised
    (masks over the tensor); same operation order as refimpl's kernel.
    """
    _check_tensor("w", w)
    _check_same_shape("g", g, w)
    check_levels(levels)
    eps = _positive("eps", eps)
    alpha = _positive("alpha", alpha)
    scale = _positive("scale", scale)
    if nu_clamp is not None:
        nu_clamp = _positive("nu_clamp", nu_clamp)
    midpoint_guard = _positive("midpoint_guard", midpoint_guard, allow_zero=True)
    return _askew_direction(w, g, levels, eps, alpha, scale, nu_clamp, midpoint_guard)


def _askew_direction(w, g, levels, eps, alpha, scale, nu_clamp, midpoint_guard):
    x = torch.clamp(w / scale, levels.lo, levels.hi)
    n = levels.values.size
    z = (x - levels.lo) / levels.spacing
    k = torch.clamp(torch.floor(z), 0, n - 2)
    lower = k * levels.spacing + levels.lo
    upper = lower + levels.spacing
    near_lower = (x - lower) <= (upper - x)
    a = torch.where(near_lower, lower, upper)
    b = torch.where(near_lower, upper, lower)
    wa = x - a
    wb = x - b
    prod = wa * wb
    ps = eps - prod * prod
    nu = scale * alpha * ps / (2.0 * prod * (midpoint_guard + wa + wb))
    direct = (prod == 0) | (ps >= 0) | ((-g) * nu > nu * nu)
    if nu_clamp is not None:
        nu = torch.clamp(nu, -nu_clamp, nu_clamp)
    return torch.where(direct, -g, nu), ~direct


# ------------------------------------------------------------------ base optimizer
class _NetOptimizer(NoisyOptimizer):
    """Common base-optimizer step (refimpl.netopt.base restated in torch)."""

    group_rules = {"lr": "positive", "foreach": "bool_or_none"}

    def __init__(self, params, lr, base, levels, defaults, seed, generator):
        _positive("lr", lr)
        self.base = validate_base(base)
        self.levels = check_levels(levels)
        super().__init__(params, dict(lr=float(lr), **defaults),
                         seed=0 if (seed is None and generator is None) else seed, generator=generator)
        self.base_steps = 0

    def _base_update(self, p, w, g, lr, t):
        """Return the base optimizer's new w (refimpl.netopt.base.BaseOptimizer.update)."""
        st = self.state[p]
        b = self.base
        if b.kind == "sgd":
            if b.weight_decay:
                g = g + w * b.weight_decay
            if b.momentum:
                m = g.clone() if t == 1 else st["m"] * b.momentum + g
                st["m"] = m
                step = m
            else:
                step = g
            return w - step * lr
        m = st.get("m", torch.zeros_like(w)) * b.beta1 + g * (1.0 - b.beta1)
        v = st.get("v", torch.zeros_like(w)) * b.beta2 + g * (1.0 - b.beta2) * g
        st["m"], st["v"] = m, v
        mhat = m / (1.0 - b.beta1 ** t)
        vhat = v / (1.0 - b.beta2 ** t)
        return w - mhat * lr / (exact_sqrt(vhat) + b.eps)

    def _before_step(self, active, loss):
        self.base_steps += 1  # t of refimpl's BaseState: steps taken, 1 at the first step

    def _extra_state(self):
        return {"base_steps": self.base_steps}

    def _check_extra_state(self, extra):
        if not isinstance(extra, dict) or "base_steps" not in extra:
            raise ValueError(f"state_dict['extra_state'] must be a dict with 'base_steps', got {extra!r}")
        _integer("base_steps", extra["base_steps"], 0, "state_dict['extra_state']: ")

    def _load_extra_state(self, extra):
        self.base_steps = int(extra["base_steps"])


class AskewSGD(_NetOptimizer):
    """AskewSGD -- spec (A1)-(A4); Leconte, Schechtman & Moulines, AISTATS 2023 (code aistats2023/537).

    Per tensor: d = askew_direction(w, ∇, levels, ε, α, scale=s) (A2) at the
    projection clip(w/s); the base optimizer (SGD/Adam, ``base``) steps the
    projected weights with gradient −d; then (``clamp_after_step``) clamp to
    the hull s·[q_1, q_m].  ``eps`` is a float or a callable epoch → ε (e.g.
    ``refimpl.netopt.askewsgd.epsilon_schedule("imagenet")``, (A4)); set the
    epoch with :meth:`set_epoch`.  ``scale`` is a float or ``"sawb"`` (A3,
    recomputed per step, frozen from ``scale_freeze_epoch``).  ``clamp_nu``
    clips ν to ±s/(4 lr) after the switching test (ImageNet code).  No
    randomness.  Departure from the published code: the 1e-6 midpoint guard is
    used for binary levels too (as refimpl).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, *,
                 eps: Union[float, Callable] = 1.0, alpha: float = 1.0,
                 levels: Levels = None, base: Literal["sgd", "adam"] | BaseOptimizer = "sgd",
                 scale: Literal["fixed", "sawb"] = "fixed", fixed_scale: float = 1.0,
                 sawb_bits: int = 4, scale_freeze_epoch: Optional[int] = None, clamp_nu: bool = False,
                 midpoint_guard: float = 1e-6, clamp_after_step: bool = True,
                 seed: Optional[int] | torch.Generator = None, generator: Optional[torch.Generator] = None):
        _positive("alpha", alpha)
        if not callable(eps):
            _positive("eps", eps)
        if scale not in ("fixed", "sawb"):
            raise ValueError(f"scale must be 'fixed' or 'sawb', got {scale!r}")
        _positive("fixed_scale", fixed_scale)
        _integer("sawb_bits", sawb_bits, 2)
        if scale_freeze_epoch is not None:
            _integer("scale_freeze_epoch", scale_freeze_epoch, 0)
        for name, flag in (("clamp_nu", clamp_nu), ("clamp_after_step", clamp_after_step)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        _positive("midpoint_guard", midpoint_guard, allow_zero=True)
        super().__init__(params, lr, base, binary_levels() if levels is None else levels, {}, seed, generator)
        self.eps, self.alpha, self.scale_mode, self.fixed_scale = eps, float(alpha), scale, float(fixed_scale)
        self.sawb_bits, self.scale_freeze_epoch = sawb_bits, scale_freeze_epoch
        self.clamp_nu, self.midpoint_guard, self.clamp_after_step = clamp_nu, midpoint_guard, clamp_after_step
        self.epoch = 0
        self.n_skewed = 0

    noise_layout = ()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = _integer("epoch", epoch, 0)

    def _scale(self, p, name):
        """(scale for this step, whether to freeze it now); changes nothing (the step commits the freeze)."""
        if self.scale_mode == "fixed":
            return self.fixed_scale, False
        st = self.state.get(p, {})  # .get: looking must not create an entry
        fe = self.scale_freeze_epoch
        if fe is not None and self.epoch > fe and "frozen_scale" in st:
            return st["frozen_scale"], False
        try:
            s = sawb_scale(p, self.sawb_bits)
        except ValueError as exc:
            raise ValueError(f"SAWB scale of parameter {name}: {exc}") from None
        return s, fe is not None and self.epoch >= fe and "frozen_scale" not in st

    def current_eps(self) -> float:
        """ε for the current epoch: the constant, or ``eps(epoch)`` checked to be > 0 and finite."""
        if not callable(self.eps):
            return float(self.eps)
        value = self.eps(self.epoch)
        return _positive(f"eps(epoch={self.epoch}) (the eps schedule's value)", value)

    def _prepare_step(self, active, loss):
        """ε and every parameter's scale, computed before anything is written (SAWB can fail per tensor)."""
        eps = self.current_eps()
        scales = {}
        for _, ps, _, names in active:
            for p, name in zip(ps, names):
                scales[p] = self._scale(p, name)
        self._pending = (eps, scales)

    def _update_group(self, group, params, grads, noise):
        lr = group["lr"]
        eps, scales = self._pending
        t = self.base_steps
        n_sk = 0
        for p, g in zip(params, grads):
            s, freeze = scales[p]
            if freeze:
                self.state[p]["frozen_scale"] = s
            self.state[p]["scale"] = s
            clamp = s / (4.0 * lr) if self.clamp_nu else None
            d, sk = _askew_direction(p, g, self.levels, eps, self.alpha, s, clamp, self.midpoint_guard)
            n_sk += int(sk.sum())
            proj = torch.clamp(p, s * self.levels.lo, s * self.levels.hi)
            new = self._base_update(p, proj, -d, lr, t)
            if self.clamp_after_step:
                new = torch.clamp(new, s * self.levels.lo, s * self.levels.hi)
            p.copy_(new)
        self.n_skewed = n_sk

    @torch.no_grad()
    def quantized(self) -> list[torch.Tensor]:
        """Hard-quantized copies s·round(clip(w/s)) of every parameter, exactly on the grid."""
        out = []
        for group in self.param_groups:
            for p in group["params"]:
                s = self.state[p].get("scale", self.fixed_scale if self.scale_mode == "fixed" else sawb_scale(p))
                out.append(_quantize_nearest(p, self.levels, s))
        return out


class BinaryConnect(_NetOptimizer):
    """BinaryConnect with the identity STE -- spec (B1); Courbariaux et al., NeurIPS 2015.

    The latent weights live in ``state[p]["latent"]``; the parameter holds the
    binarized (level-quantized) weights the model is evaluated at.  A step:
    latent ← clamp(base(latent, ∇_{w_b} L)), then p ← w_b(latent): nearest level
    (sign, ties to +1) or, with ``stochastic=True``, +1 with probability
    clip((w+1)/2, 0, 1) (stream ``"u_binarize"``, one uniform per weight; this is
    the draw refimpl's ``forward_params`` makes before the *next* step).
    Departure: sign(0) := +1 (on the grid), as refimpl.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, *,
                 stochastic: bool = False, levels: Levels = None,
                 scale: float = 1.0, base: Literal["sgd", "adam"] | BaseOptimizer = "sgd", seed: Optional[int] | torch.Generator = None,
                 generator: Optional[torch.Generator] = None):
        _positive("scale", scale)
        if not isinstance(stochastic, bool):
            raise TypeError(f"stochastic must be a bool, got {stochastic!r}")
        if stochastic and seed is None and generator is None:
            raise ValueError("stochastic=True needs seed= or generator=, got neither")
        super().__init__(params, lr, base, binary_levels() if levels is None else levels, {}, seed, generator)
        self.stochastic, self.scale = bool(stochastic), float(scale)
        lo, hi = self.scale * self.levels.lo, self.scale * self.levels.hi
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["latent"] = torch.clamp(p.detach().clone(), lo, hi)
        self.binarize_()

    @property
    def noise_layout(self) -> tuple[tuple[str, str], ...]:
        return (("u_binarize", "uniform"),) if self.stochastic else ()

    def _init_group(self, group):
        """A group added after construction: latent = clamp(θ), then θ ← w_b(latent) for its parameters only."""
        params = list(group["params"])
        lo, hi = self.scale * self.levels.lo, self.scale * self.levels.hi
        for p in params:
            self.state[p]["latent"] = torch.clamp(p.detach().clone(), lo, hi)
        self.binarize_(params=params)

    @torch.no_grad()
    def binarize_(self, noise: Mapping[str, torch.Tensor] | None = None,
                  params: list[torch.nn.Parameter] | None = None) -> None:
        """p ← w_b(latent) for every parameter (or ``params``) (stream ``"u_binarize"`` when stochastic)."""
        if params is None:
            params = [p for g in self.param_groups for p in g["params"]]
        if self.stochastic:
            parts = self._split(self._step_noise(noise, params), params)["u_binarize"]
        for i, p in enumerate(params):
            lat = self.state[p]["latent"]
            if self.stochastic:
                p.copy_(_stochastic_levels(lat, self.levels, self.scale, parts[i]))
            else:
                p.copy_(_quantize_nearest(lat, self.levels, self.scale))

    def _update_group(self, group, params, grads, noise):
        t = self.base_steps
        lo, hi = self.scale * self.levels.lo, self.scale * self.levels.hi
        for i, (p, g) in enumerate(zip(params, grads)):
            lat = self.state[p]["latent"]
            lat.copy_(torch.clamp(self._base_update(p, lat, g, group["lr"], t), lo, hi))
            if self.stochastic:
                p.copy_(_stochastic_levels(lat, self.levels, self.scale, noise["u_binarize"][i]))
            else:
                p.copy_(_quantize_nearest(lat, self.levels, self.scale))


class ProxQuant(_NetOptimizer):
    """ProxQuant -- spec (B2); Bai, Wang & Liberty, ICLR 2019.

    θ ← prox_{λ_t R}(base step of θ), λ_t = ``lambda_rate``·t (t = 1, 2, …,
    linear homotopy), R = distance to the nearest grid point s·Q.  Final hard
    quantization: :meth:`quantized`.  No randomness.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, *,
                 lambda_rate: float = 1e-4, levels: Levels = None,
                 scale: float = 1.0, base: Literal["sgd", "adam"] | BaseOptimizer = "sgd", seed: Optional[int] | torch.Generator = None,
                 generator: Optional[torch.Generator] = None):
        _positive("lambda_rate", lambda_rate, allow_zero=True)
        _positive("scale", scale)
        super().__init__(params, lr, base, binary_levels() if levels is None else levels, {}, seed, generator)
        self.lambda_rate, self.scale = float(lambda_rate), float(scale)

    noise_layout = ()

    def _update_group(self, group, params, grads, noise):
        t = self.base_steps
        lam = self.lambda_rate * t
        for p, g in zip(params, grads):
            p.copy_(_prox_w_shaped(self._base_update(p, p, g, group["lr"], t), self.levels, self.scale, lam))

    @torch.no_grad()
    def quantized(self) -> list[torch.Tensor]:
        return [_quantize_nearest(p, self.levels, self.scale) for g in self.param_groups for p in g["params"]]
