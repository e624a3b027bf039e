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

from typing import Callable, Optional, Union

import torch

from refimpl.netopt.base import BaseOptimizer, validate_base
from refimpl.netopt.levels import Levels, binary_levels
from torchport.quantize import exact_sqrt
from torchport.optim._base import NoisyOptimizer, _positive

__all__ = ["AskewSGD", "BinaryConnect", "ProxQuant", "askew_direction", "quantize_nearest",
           "stochastic_levels", "prox_w_shaped", "sawb_scale"]


# ------------------------------------------------------------------ level helpers
def quantize_nearest(w: torch.Tensor, levels: Levels, scale: float = 1.0) -> torch.Tensor:
    """s·argmin_q |w/s − q| with ties to the upper level (refimpl.netopt.levels.quantize_nearest; §4.1)."""
    z = torch.clamp(w / scale, levels.lo, levels.hi)
    k = torch.floor((z - levels.lo) / levels.spacing + 0.5)
    k = torch.clamp(k, 0, levels.values.size - 1)
    return (k * levels.spacing + levels.lo) * scale


def stochastic_levels(w: torch.Tensor, levels: Levels, scale: float, u: torch.Tensor) -> torch.Tensor:
    """Stochastic rounding of clip(w/s) between bracketing levels (B1): upper iff u < P(upper)."""
    z = (torch.clamp(w / scale, levels.lo, levels.hi) - levels.lo) / levels.spacing
    k = torch.clamp(torch.floor(z), 0, levels.values.size - 2)
    p_up = z - k
    k = k + (u < p_up).to(k.dtype)
    return (k * levels.spacing + levels.lo) * scale


def prox_w_shaped(theta: torch.Tensor, levels: Levels, scale: float, lam: float) -> torch.Tensor:
    """prox_{λR}, R = distance to the nearest grid point (B2): q + sign(θ−q)·max(|θ−q| − λ, 0)."""
    q = quantize_nearest(theta, levels, scale)
    r = theta - q
    return q + torch.sign(r) * torch.clamp(r.abs() - lam, min=0.0)


def sawb_scale(w: torch.Tensor, bits: int = 4) -> float:
    """SAWB scale (A3): clip = 12.1·√mean(w²) − 12.2·mean|w|; s = 2·clip/(2^{b−1}+2^{b−1})."""
    if w.device.type == "cpu":  # NumPy's pairwise-summed means, so the scale equals refimpl's bit for bit
        from refimpl.netopt.levels import sawb_scale as _ref_sawb
        return _ref_sawb(w.detach().to(torch.float64).numpy(), bits)
    w64 = w.detach().to(torch.float64)
    clip_val = 12.1 * float(torch.sqrt(torch.mean(w64 * w64))) - 12.2 * float(torch.mean(w64.abs()))
    if not clip_val > 0 or clip_val != clip_val:
        raise ValueError(f"SAWB clip value must be positive and finite, got {clip_val!r}")
    return float(2.0 * clip_val / (2 ** (bits - 1) + 2 ** (bits - 1)))


def askew_direction(w, g, levels: Levels, eps: float, alpha: float, *, scale: float = 1.0,
                    nu_clamp: Optional[float] = None, midpoint_guard: float = 1e-6):
    """AskewSGD direction d and the skew mask -- (A1)/(A2), AISTATS 2023 (aistats2023/537 ``Trainer._step``).

    ψ = ε − ((w−a)(w−b))², ν = s·α·ψ / (2(w−a)(w−b)(guard + (w−a) + (w−b)));
    d = −g where (w−a)(w−b) = 0, ψ ≥ 0 or (−g)·ν > ν² (unclamped ν), else
    clip(ν, ±nu_clamp).  w is evaluated at clip(w/s, q_1, q_m).  Vectorised
    (masks over the tensor); same operation order as refimpl's kernel.
    """
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

    def __init__(self, params, lr, base, levels, defaults, seed, generator):
        _positive("lr", lr)
        self.base = validate_base(base)
        if not isinstance(levels, Levels):
            raise TypeError(f"levels must be a refimpl.netopt.levels.Levels, got {type(levels).__name__}")
        self.levels = levels
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

    def __init__(self, params, lr: float, *, eps: Union[float, Callable] = 1.0, alpha: float = 1.0,
                 levels: Levels = None, base="sgd", scale="fixed", fixed_scale: float = 1.0,
                 sawb_bits: int = 4, scale_freeze_epoch: Optional[int] = None, clamp_nu: bool = False,
                 midpoint_guard: float = 1e-6, clamp_after_step: bool = True,
                 seed: Optional[int] = None, generator: Optional[torch.Generator] = None):
        _positive("alpha", alpha)
        if not callable(eps):
            _positive("eps", eps)
        if scale not in ("fixed", "sawb"):
            raise ValueError(f"scale must be 'fixed' or 'sawb', got {scale!r}")
        _positive("fixed_scale", fixed_scale)
        super().__init__(params, lr, base, binary_levels() if levels is None else levels, {}, seed, generator)
        self.eps, self.alpha, self.scale_mode, self.fixed_scale = eps, float(alpha), scale, float(fixed_scale)
        self.sawb_bits, self.scale_freeze_epoch = sawb_bits, scale_freeze_epoch
        self.clamp_nu, self.midpoint_guard, self.clamp_after_step = clamp_nu, midpoint_guard, clamp_after_step
        self.epoch = 0
        self.n_skewed = 0

    noise_layout = ()

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def _scale(self, p):
        if self.scale_mode == "fixed":
            return self.fixed_scale
        st = self.state[p]
        fe = self.scale_freeze_epoch
        if fe is not None and self.epoch > fe and "frozen_scale" in st:
            return st["frozen_scale"]
        s = sawb_scale(p, self.sawb_bits)
        if fe is not None and self.epoch >= fe and "frozen_scale" not in st:
            st["frozen_scale"] = s
        return s

    def current_eps(self) -> float:
        return float(self.eps(self.epoch)) if callable(self.eps) else float(self.eps)

    def _update_group(self, group, params, grads, noise):
        lr = group["lr"]
        eps = self.current_eps()
        t = self.base_steps
        n_sk = 0
        for p, g in zip(params, grads):
            s = self._scale(p)
            self.state[p]["scale"] = s
            clamp = s / (4.0 * lr) if self.clamp_nu else None
            d, sk = askew_direction(p, g, self.levels, eps, self.alpha, scale=s, nu_clamp=clamp,
                                    midpoint_guard=self.midpoint_guard)
            n_sk += int(sk.sum())
            proj = torch.clamp(p, s * self.levels.lo, s * self.levels.hi)
            new = self._base_update(p, proj, -d, lr, t)
            if self.clamp_after_step:
                new = torch.clamp(new, s * self.levels.lo, s * self.levels.hi)
            p.copy_(new)
        self.n_skewed = n_sk

    @torch.no_grad()
    def quantized(self):
        """Hard-quantized copies s·round(clip(w/s)) of every parameter, exactly on the grid."""
        out = []
        for group in self.param_groups:
            for p in group["params"]:
                s = self.state[p].get("scale", self.fixed_scale if self.scale_mode == "fixed" else sawb_scale(p))
                out.append(quantize_nearest(p, self.levels, s))
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

    def __init__(self, params, lr: float, *, stochastic: bool = False, levels: Levels = None,
                 scale: float = 1.0, base="sgd", seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None):
        _positive("scale", scale)
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
    def noise_layout(self):
        return (("u_binarize", "uniform"),) if self.stochastic else ()

    @torch.no_grad()
    def binarize_(self, noise=None):
        """p ← w_b(latent) for every parameter (stream ``"u_binarize"`` when stochastic)."""
        params = [p for g in self.param_groups for p in g["params"]]
        if self.stochastic:
            parts = self._split(self._step_noise(noise, params), params)["u_binarize"]
        for i, p in enumerate(params):
            lat = self.state[p]["latent"]
            if self.stochastic:
                p.copy_(stochastic_levels(lat, self.levels, self.scale, parts[i]))
            else:
                p.copy_(quantize_nearest(lat, self.levels, self.scale))

    def _update_group(self, group, params, grads, noise):
        t = self.base_steps
        lo, hi = self.scale * self.levels.lo, self.scale * self.levels.hi
        for i, (p, g) in enumerate(zip(params, grads)):
            lat = self.state[p]["latent"]
            lat.copy_(torch.clamp(self._base_update(p, lat, g, group["lr"], t), lo, hi))
            if self.stochastic:
                p.copy_(stochastic_levels(lat, self.levels, self.scale, noise["u_binarize"][i]))
            else:
                p.copy_(quantize_nearest(lat, self.levels, self.scale))


class ProxQuant(_NetOptimizer):
    """ProxQuant -- spec (B2); Bai, Wang & Liberty, ICLR 2019.

    θ ← prox_{λ_t R}(base step of θ), λ_t = ``lambda_rate``·t (t = 1, 2, …,
    linear homotopy), R = distance to the nearest grid point s·Q.  Final hard
    quantization: :meth:`quantized`.  No randomness.
    """

    def __init__(self, params, lr: float, *, lambda_rate: float = 1e-4, levels: Levels = None,
                 scale: float = 1.0, base="sgd", seed: Optional[int] = None,
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
            p.copy_(prox_w_shaped(self._base_update(p, p, g, group["lr"], t), self.levels, self.scale, lam))

    @torch.no_grad()
    def quantized(self):
        return [quantize_nearest(p, self.levels, self.scale) for g in self.param_groups for p in g["params"]]
