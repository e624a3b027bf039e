"""Quantized-network optimizers: ``AskewSGD`` (A1)-(A4), ``BinaryConnect`` (B1), ``ProxQuant`` (B2).

Torch counterparts of :mod:`refimpl.netopt` (same level sets -- ``refimpl.netopt.levels.Levels`` --
same base-optimizer arithmetic, same tie rules), so that fed the same gradients
the float64 CPU iterates equal refimpl's bit for bit (tests/torchport/test_crosscheck.py).

The base step is the restated torch.optim SGD / Adam of ``refimpl.netopt.base``
(written out as separate operations, not delegated to ``torch.optim.SGD``, whose
``alpha=`` fused kernels round differently):

* SGD: g ← g + wd·w; m ← μ·m + g (m = g at the first step); w ← w − lr·m.
* Adam: m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²; w ← w − lr·(m/(1−β1^t))/(√(v/(1−β2^t)) + ε).

Two paths (docs/torchport.md, "Two paths"; docs/askewsgd.md, binaryconnect.md, proxquant.md).
By default (``exact=False``) each parameter's whole update -- the base step above, AskewSGD's
direction (A2), BinaryConnect's binarization (B1), ProxQuant's prox (B2) -- is one pure function
(``_askewsgd_update``, ``_binaryconnect_update``, ``_proxquant_update``) computed in the
parameter's dtype and compiled with :func:`torchport.fast.maybe_compile`; the values that change
from step to step (lr, ε_t, λ_t, the Adam bias corrections 1−β^t, the SAWB scale) enter as 0-d
tensors, so the compiled code is not specialised on them; BinaryConnect's stochastic uniforms come
from the counter stream ``"u_weight"`` (:mod:`refimpl.counter_rng`); there is no host
synchronisation in ``step()``.  refimpl replays it: :mod:`refimpl.netopt.replay`.
Parameters are float32 or float64 (float16/bfloat16 are a TypeError); ``compile=None`` means
compiled unless ``$QLANGEVIN_COMPILE=0``, ``compile=False`` eager; non-finite gradients are
flagged on the device and reported by ``check_finite()`` (or every ``check_every`` steps)
naming the parameter.  State: the base optimizer's ``m``/``v``, ``base_steps``,
``counter_seed`` and ``num_steps`` (resume bit for bit).
``exact=True`` is the float64 path op by op (a ``torch.Generator`` for BinaryConnect's
uniforms, stream ``"u_binarize"``), bit for bit refimpl's ``refimpl.netopt`` optimizers (their
numbers before the default path existed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Callable, Literal, NamedTuple, Optional, Union

import torch

from refimpl.netopt.base import BaseOptimizer, validate_base
from refimpl.netopt.levels import Levels, binary_levels, check_levels
from torchport import fast as F
from torchport.quantize import exact_sqrt
from torchport.optim._base import NoisyOptimizer, _integer, _positive

__all__ = ["AskewSGD", "BinaryConnect", "ProxQuant", "askew_direction", "quantize_nearest",
           "stochastic_levels", "prox_w_shaped", "sawb_scale"]


# ------------------------------------------------------------------ level helpers
# The public helpers check their arguments once and call the unchecked ``_`` kernels, which the
# optimizers' steps use directly (their arguments were checked at construction).  The kernels read
# the level set as a ``_Grid`` of Python numbers (lo, hi, spacing, number of levels), so that the
# compiled default path is specialised on those constants and never sees a NumPy array.
class _Grid(NamedTuple):
    """A uniform level set as the kernels read it (refimpl.netopt.levels.Levels: lo, hi, spacing, m)."""

    lo: float
    hi: float
    spacing: float
    n: int


def _grid(levels: Levels) -> _Grid:
    return _Grid(levels.lo, levels.hi, levels.spacing, int(levels.values.size))


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
    return _quantize_nearest(w, _grid(levels), _positive("scale", scale))


def _quantize_nearest(w, grid, scale=1.0):
    z = torch.clamp(w / scale, grid.lo, grid.hi)
    k = torch.floor((z - grid.lo) / grid.spacing + 0.5)
    k = torch.clamp(k, 0, grid.n - 1)
    return (k * grid.spacing + grid.lo) * scale


def stochastic_levels(w: torch.Tensor, levels: Levels, scale: float, u: torch.Tensor) -> torch.Tensor:
    """Stochastic rounding of clip(w/s) between bracketing levels (B1): upper iff u < P(upper)."""
    _check_tensor("w", w)
    check_levels(levels)
    _check_same_shape("u", u, w)
    return _stochastic_levels(w, _grid(levels), _positive("scale", scale), u)


def _stochastic_levels(w, grid, scale, u):
    z = (torch.clamp(w / scale, grid.lo, grid.hi) - grid.lo) / grid.spacing
    k = torch.clamp(torch.floor(z), 0, grid.n - 2)
    p_up = z - k
    k = k + (u < p_up).to(k.dtype)
    return (k * grid.spacing + grid.lo) * scale


def prox_w_shaped(theta: torch.Tensor, levels: Levels, scale: float, lam: float) -> torch.Tensor:
    """prox_{λR}, R = distance to the nearest grid point (B2): q + sign(θ−q)·max(|θ−q| − λ, 0)."""
    _check_tensor("theta", theta)
    check_levels(levels)
    return _prox_w_shaped(theta, _grid(levels), _positive("scale", scale),
                          _positive("lam", lam, allow_zero=True))


def _prox_w_shaped(theta, grid, scale, lam):
    q = _quantize_nearest(theta, grid, scale)
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


def _sawb_on_device(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A3) in w's dtype on w's device: (s, ok) as 0-d tensors, ok = the clip value is > 0 and finite.

    torch's reductions sum in another order than NumPy's pairwise sums, so s differs from
    :func:`refimpl.netopt.levels.sawb_scale` by a few ulp (tests/torchport/test_fast_netopt.py).
    """
    clip_val = 12.1 * torch.sqrt(torch.mean(w * w)) - 12.2 * torch.mean(w.abs())
    ok = torch.isfinite(clip_val) & (clip_val > 0)
    return 2.0 * clip_val / (2 ** (bits - 1) + 2 ** (bits - 1)), ok


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
    return _askew_direction(w, g, _grid(levels), eps, alpha, scale, nu_clamp, midpoint_guard)


def _askew_direction(w, g, grid, eps, alpha, scale, nu_clamp, midpoint_guard):
    """(A2) without checks; ``eps``, ``scale`` and ``nu_clamp`` may be Python floats or 0-d tensors."""
    x = torch.clamp(w / scale, grid.lo, grid.hi)
    z = (x - grid.lo) / grid.spacing
    k = torch.clamp(torch.floor(z), 0, grid.n - 2)
    lower = k * grid.spacing + grid.lo
    upper = lower + grid.spacing
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


# ------------------------------------------------------------------ the fused updates of the default path
# Pure functions of one parameter (no in-place writes), compiled per optimizer by torchport.fast.maybe_compile.
# Tensors that change from step to step (lr, ε_t, λ_t, c1 = 1−β1^t, c2 = 1−β2^t, the first-step flag, a
# scale) are 0-d tensors; options (grid, base, flags) are Python constants.

#: the counter stream of BinaryConnect's stochastic binarization on the default path (refimpl.counter_rng.STREAMS:
#: the weight-rounding stream, id 2); the exact path names its generator draw "u_binarize"
BINARIZE_STREAM = "u_weight"


def _sqrt_rounded(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded √x in x's dtype: ``exact_sqrt`` for float64 (torch's vectorised float64 sqrt may be
    one ulp off); for float32, torch's float64 sqrt rounded to float32 -- correctly rounded without
    ``exact_sqrt``'s correction step, since a float32's square root lies at least 2^-51 (relative) from a
    float32 rounding boundary and the float64 result is within 2^-52 of it (the same bits, measured on
    float32 tests and on 2·10⁶ float32 values over all binades; compiled, 8× faster on 200 000 values)."""
    if x.dtype == torch.float64:
        return exact_sqrt(x)
    return torch.sqrt(x.to(torch.float64)).to(x.dtype)


def _base_step(w, g, m, v, lr, c1, c2, first, base: BaseOptimizer):
    """refimpl.netopt.base.BaseOptimizer._update for one tensor, pure: (w', m', v') (m, v None when unused).

    SGD: g ← g + wd·w; m ← g at the first step (``first``), μ·m + g after; w ← w − lr·m.
    Adam: m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²; w ← w − lr·(m/c1)/(√(v/c2) + ε), c = 1−β^t;
    √ correctly rounded (``_sqrt_rounded``), as the exact path and NumPy.
    """
    if base.kind == "sgd":
        if base.weight_decay:
            g = g + w * base.weight_decay
        if base.momentum:
            m = torch.where(first, g, m * base.momentum + g)
            return w - m * lr, m, v
        return w - g * lr, m, v
    m = m * base.beta1 + g * (1.0 - base.beta1)
    v = v * base.beta2 + g * (1.0 - base.beta2) * g
    return w - (m / c1) * lr / (_sqrt_rounded(v / c2) + base.eps), m, v


def _askewsgd_update(p, g, m, v, scale, eps, lr, c1, c2, first, *, grid: _Grid, alpha: float, guard: float,
                     clamp_nu: bool, clamp_after_step: bool, base: BaseOptimizer, sawb_bits: int):
    """One AskewSGD update of one parameter ((A2), (A3)); returns (θ', m', v', s, skewed count, finite, ok).

    ``scale`` None: SAWB from θ here (A3), ``ok`` = its clip value is > 0 and finite, and where
    it is not, θ, m and v keep their values; otherwise ``scale`` is a 0-d tensor and ``ok`` None.
    d = (A2) at clip(θ/s) with ν clamped to ±s/(4 lr) (``clamp_nu``); the base step takes
    the projection clip(θ, s·q_1, s·q_m) with gradient −d, then (``clamp_after_step``) clamps.
    """
    finite = torch.isfinite(g).all()
    ok = None
    if scale is None:
        scale, ok = _sawb_on_device(p, sawb_bits)
    nu_clamp = scale / (4.0 * lr) if clamp_nu else None
    d, skewed = _askew_direction(p, g, grid, eps, alpha, scale, nu_clamp, guard)
    lo, hi = scale * grid.lo, scale * grid.hi
    new, m2, v2 = _base_step(torch.clamp(p, lo, hi), -d, m, v, lr, c1, c2, first, base)
    if clamp_after_step:
        new = torch.clamp(new, lo, hi)
    if ok is not None:
        new = torch.where(ok, new, p)
        m2 = None if m2 is None else torch.where(ok, m2, m)
        v2 = None if v2 is None else torch.where(ok, v2, v)
    return new, m2, v2, scale, skewed.sum(), finite, ok


def _binarize(latent, pkey, grid: _Grid, scale: float, stochastic: bool):
    """w_b(latent) (B1): nearest level, or stochastic rounding with k-bit counter uniforms (stream u_weight)."""
    if not stochastic:
        return _quantize_nearest(latent, grid, scale)
    (key,) = F._stream_keys(pkey, [BINARIZE_STREAM])
    return _stochastic_levels(latent, grid, scale, F._noise_like(key, latent, "uniform"))


def _binaryconnect_update(g, latent, m, v, pkey, lr, c1, c2, first, *, grid: _Grid, scale: float,
                          stochastic: bool, base: BaseOptimizer):
    """One BinaryConnect update (B1); returns (w_b', latent', m', v', finite).

    latent' = clamp(base step of latent with ∇_{w_b}, s·q_1, s·q_m); w_b' = ``_binarize(latent')``
    with the uniforms of key(seed, step, parameter, ``BINARIZE_STREAM``).
    """
    finite = torch.isfinite(g).all()
    new, m2, v2 = _base_step(latent, g, m, v, lr, c1, c2, first, base)
    new = torch.clamp(new, scale * grid.lo, scale * grid.hi)
    return _binarize(new, pkey, grid, scale, stochastic), new, m2, v2, finite


def _proxquant_update(p, g, m, v, lr, c1, c2, first, lam, *, grid: _Grid, scale: float, base: BaseOptimizer):
    """One ProxQuant update (B2): θ' = prox_{λ_t R}(base step of θ); returns (θ', m', v', finite)."""
    finite = torch.isfinite(g).all()
    new, m2, v2 = _base_step(p, g, m, v, lr, c1, c2, first, base)
    return _prox_w_shaped(new, grid, scale, lam), m2, v2, finite


# ------------------------------------------------------------------ base optimizer
class _NetOptimizer(NoisyOptimizer):
    """Common base-optimizer step (refimpl.netopt.base restated in torch), on both paths.

    Default path: :meth:`_fast_step` computes what a step needs on the host before anything is
    written (the step count t, ε, λ, which scale each parameter uses -- host values, no device
    reads) and then runs :meth:`NoisyOptimizer._fast_step`, which calls the subclass's
    ``_fast_update`` per parameter with its counter key.
    """

    group_rules = {"lr": "positive", "foreach": "bool_or_none"}
    fast_path_available = True

    def __init__(self, params, lr, base, levels, defaults, seed, generator, exact, compile, check_every):
        _positive("lr", lr)
        self.base = validate_base(base)
        self.levels = check_levels(levels)
        self._grid = _grid(self.levels)
        self._fast_pending = None
        super().__init__(params, dict(lr=float(lr), **defaults),
                         seed=0 if (seed is None and generator is None) else seed, generator=generator,
                         exact=exact, compile=compile, check_every=check_every)
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

    # -------------------------------------------------------------- default path
    def _fast_prepare(self, t: int) -> dict:
        """Host values of this step (may raise; must change nothing): ``floats`` become 0-d tensors."""
        return {"floats": {}}

    def _fast_step(self, closure):
        """Default path: the checks and host values first (a raising call changes nothing), then the
        base class's per-parameter loop; t (``base_steps``) counts steps in which a parameter stepped."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._check_groups()
        params = self._all_params()
        active = False
        for p in params:
            if p.grad is not None and p.requires_grad:
                if p.grad.is_sparse:
                    raise TypeError("torchport optimizers do not support sparse gradients")
                active = True
        t = self.base_steps + 1 if active else self.base_steps
        pending = self._fast_prepare(t)
        b = self.base
        pending["floats"].update(c1=1.0 - b.beta1 ** t, c2=1.0 - b.beta2 ** t)
        pending.update(t=t, index={id(p): i for i, p in enumerate(params)})
        self._fast_pending = pending
        self.base_steps = t
        try:
            super()._fast_step(None)
        finally:
            self._fast_pending = None
        return loss

    def _fast_group_args(self, group) -> dict:
        return {"lr": group["lr"], "tensors": {}}

    def _scalars(self, args: dict, p: torch.Tensor) -> dict:
        """This step's per-step values as 0-d tensors of p's dtype on p's device (made once per group).

        Off the CPU they travel in one pinned host tensor copied with ``non_blocking=True``: a blocking
        host-to-device copy would wait for the device's queued work (a host synchronisation per step).
        """
        key = (p.dtype, p.device)
        out = args["tensors"].get(key)
        if out is None:
            pend = self._fast_pending
            floats = dict(pend["floats"], lr=args["lr"], first=1.0 if pend["t"] == 1 else 0.0)
            names = list(floats)
            if p.device.type == "cpu":
                values = torch.tensor([floats[k] for k in names], dtype=p.dtype)
            else:
                pin = p.device.type == "cuda" and torch.cuda.is_available()
                host = torch.tensor([floats[k] for k in names], dtype=p.dtype, pin_memory=pin)
                values = host.to(p.device, non_blocking=True)
            out = {k: values[i] for i, k in enumerate(names)}
            out["first"] = out["first"] != 0
            args["tensors"][key] = out
        return out

    def _moments(self, p) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """The base optimizer's state of p (created as zeros at its first step): (m, v), None where unused."""
        st, b = self.state[p], self.base
        if (b.kind == "adam" or b.momentum) and "m" not in st:
            st["m"] = torch.zeros_like(p)
        if b.kind == "adam" and "v" not in st:
            st["v"] = torch.zeros_like(p)
        return st.get("m"), st.get("v")

    def _store_moments(self, p, m, v) -> None:
        st = self.state[p]
        if m is not None:
            st["m"].copy_(m)
        if v is not None:
            st["v"].copy_(v)

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

    Default path: ε_t and the fixed or frozen scale enter as 0-d tensors; a live SAWB scale is
    computed on the device from the weights (in their dtype; torch's summation order, so a few
    ulp from refimpl's NumPy ``sawb_scale``) and stored as a 0-d tensor in ``state[p]["scale"]``.
    A SAWB clip value ≤ 0 cannot raise inside ``step()`` without a host read: that parameter
    keeps its value and optimizer state in that step, and :meth:`check_finite` raises
    ``ValueError`` naming it.  :attr:`n_skewed` is counted on the device (reading it synchronises).

    Path: ``exact`` (default False), ``compile``, ``check_every``: the module docstring's "Two
    paths" (docs/torchport.md, "Two paths").
    """

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, *,
                 eps: Union[float, Callable] = 1.0, alpha: float = 1.0,
                 levels: Levels = None, base: Literal["sgd", "adam"] | BaseOptimizer = "sgd",
                 scale: Literal["fixed", "sawb"] = "fixed", fixed_scale: float = 1.0,
                 sawb_bits: int = 4, scale_freeze_epoch: Optional[int] = None, clamp_nu: bool = False,
                 midpoint_guard: float = 1e-6, clamp_after_step: bool = True,
                 seed: Optional[int] | torch.Generator = None, generator: Optional[torch.Generator] = None,
                 exact: bool = False, compile: Optional[bool] = None, check_every: int = 0):
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
        super().__init__(params, lr, base, binary_levels() if levels is None else levels, {}, seed, generator,
                         exact, compile, check_every)
        self.eps, self.alpha, self.scale_mode, self.fixed_scale = eps, float(alpha), scale, float(fixed_scale)
        self.sawb_bits, self.scale_freeze_epoch = sawb_bits, scale_freeze_epoch
        self.clamp_nu, self.midpoint_guard, self.clamp_after_step = clamp_nu, midpoint_guard, clamp_after_step
        self.epoch = 0
        self.n_skewed = 0
        self._sawb_bad = {}  # default path: parameter index -> device flag (a SAWB clip value <= 0 was seen)
        if not exact:
            self._fast_fn = F.maybe_compile(_askewsgd_update, self.compile)

    noise_layout = ()

    @property
    def n_skewed(self) -> int:
        """Skewed coordinates (d = ν) in the last step, all parameters (a diagnostic)."""
        return int(self._n_skewed)

    @n_skewed.setter
    def n_skewed(self, value) -> None:
        self._n_skewed = value

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

    def _scale_plan(self, p) -> tuple[str, bool]:
        """Default path, host only: ("fixed" | "frozen" | "live", freeze now) -- the exact path's rule."""
        if self.scale_mode == "fixed":
            return "fixed", False
        st = self.state.get(p, {})
        fe = self.scale_freeze_epoch
        if fe is not None and self.epoch > fe and "frozen_scale" in st:
            return "frozen", False
        return "live", fe is not None and self.epoch >= fe and "frozen_scale" not in st

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
            d, sk = _askew_direction(p, g, self._grid, eps, self.alpha, s, clamp, self.midpoint_guard)
            n_sk += int(sk.sum())
            proj = torch.clamp(p, s * self.levels.lo, s * self.levels.hi)
            new = self._base_update(p, proj, -d, lr, t)
            if self.clamp_after_step:
                new = torch.clamp(new, s * self.levels.lo, s * self.levels.hi)
            p.copy_(new)
        self.n_skewed = n_sk

    # -------------------------------------------------------------- default path
    def _fast_prepare(self, t: int) -> dict:
        plan = {id(p): self._scale_plan(p) for p in self._all_params()}
        return {"floats": {"eps": self.current_eps(), "fixed_scale": self.fixed_scale}, "plan": plan}

    def _fast_step(self, closure):
        params = self._all_params()
        self._fast_skewed = torch.zeros((), dtype=torch.int64, device=params[0].device if params else "cpu")
        loss = super()._fast_step(closure)
        self.n_skewed = self._fast_skewed
        return loss

    def _fast_update(self, p, key, args) -> torch.Tensor:
        sc = self._scalars(args, p)
        st = self.state[p]
        mode, freeze = self._fast_pending["plan"][id(p)]
        s_in = sc["fixed_scale"] if mode == "fixed" else (st["frozen_scale"] if mode == "frozen" else None)
        m, v = self._moments(p)
        new, m2, v2, s, n_sk, finite, ok = self._fast_fn(
            p, p.grad, m, v, s_in, sc["eps"], sc["lr"], sc["c1"], sc["c2"], sc["first"], grid=self._grid,
            alpha=self.alpha, guard=self.midpoint_guard, clamp_nu=self.clamp_nu,
            clamp_after_step=self.clamp_after_step, base=self.base, sawb_bits=self.sawb_bits)
        p.copy_(new)
        self._store_moments(p, m2, v2)
        if ok is not None:
            i = self._fast_pending["index"][id(p)]
            self._sawb_bad[i] = self._sawb_bad[i] | ~ok if i in self._sawb_bad else ~ok
            if "scale" in st:
                s = torch.where(ok, s, st["scale"])
        if freeze:
            st["frozen_scale"] = s
        st["scale"] = s.clone() if mode == "fixed" else s  # fixed: a view of this step's scalars
        self._fast_skewed = self._fast_skewed + n_sk.to(self._fast_skewed.device)
        return finite

    def check_finite(self) -> None:
        """Default path: raise ``ValueError`` naming the first parameter whose live SAWB clip value was not
        positive and finite since the last check (it kept its value in those steps), then the
        finite-gradient check of :meth:`NoisyOptimizer.check_finite`.  Exact path: a no-op."""
        if not self.exact and self._sawb_bad:
            indices = sorted(self._sawb_bad)
            hit = torch.stack([self._sawb_bad[i].to(self.counter.device) for i in indices]).nonzero()
            self._sawb_bad = {}
            if hit.numel():
                i = indices[int(hit[0, 0])]
                raise ValueError(f"SAWB scale of parameter {self._all_names()[i]}: the clip value "
                                 "12.1·√mean(w²) − 12.2·mean|w| was not positive and finite at or before step "
                                 f"{self.num_steps} (the parameter kept its value and optimizer state in those "
                                 "steps); freeze the scale (scale_freeze_epoch) or use scale='fixed'")
        super().check_finite()

    @torch.no_grad()
    def quantized(self) -> list[torch.Tensor]:
        """Hard-quantized copies s·round(clip(w/s)) of every parameter, exactly on the grid."""
        out = []
        for group in self.param_groups:
            for p in group["params"]:
                s = self.state[p].get("scale", self.fixed_scale if self.scale_mode == "fixed" else sawb_scale(p))
                out.append(_quantize_nearest(p, self._grid, s))
        return out


class BinaryConnect(_NetOptimizer):
    """BinaryConnect with the identity STE -- spec (B1); Courbariaux et al., NeurIPS 2015.

    The latent weights live in ``state[p]["latent"]``; the parameter holds the
    binarized (level-quantized) weights the model is evaluated at.  A step:
    latent ← clamp(base(latent, ∇_{w_b} L)), then p ← w_b(latent): nearest level
    (sign, ties to +1) or, with ``stochastic=True``, +1 with probability
    clip((w+1)/2, 0, 1) (exact path: stream ``"u_binarize"`` of the generator, one
    uniform per weight; this is the draw refimpl's ``forward_params`` makes before the
    *next* step).  Departure: sign(0) := +1 (on the grid), as refimpl.

    Default path: the uniforms are the counter stream ``"u_weight"`` (``BINARIZE_STREAM``;
    key(seed, step, parameter index), k-bit: 53 bits for float64, 24 for float32, so
    P(upper) = ⌈p·2^k⌉/2^k, a bias in [0, 2^-k·s·spacing) per weight); the construction's
    (and :meth:`binarize_`'s) binarization uses step ``torchport.fast.INIT_STEP``.

    Path: ``exact`` (default False), ``compile``, ``check_every``: the module docstring's "Two
    paths" (docs/torchport.md, "Two paths").
    """

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, *,
                 stochastic: bool = False, levels: Levels = None,
                 scale: float = 1.0, base: Literal["sgd", "adam"] | BaseOptimizer = "sgd",
                 seed: Optional[int] | torch.Generator = None, generator: Optional[torch.Generator] = None,
                 exact: bool = False, compile: Optional[bool] = None, check_every: int = 0):
        _positive("scale", scale)
        if not isinstance(stochastic, bool):
            raise TypeError(f"stochastic must be a bool, got {stochastic!r}")
        if stochastic and seed is None and generator is None:
            raise ValueError("stochastic=True needs seed= or generator=, got neither")
        super().__init__(params, lr, base, binary_levels() if levels is None else levels, {}, seed, generator,
                         exact, compile, check_every)
        self.stochastic, self.scale = bool(stochastic), float(scale)
        if not exact:
            self._fast_fn = F.maybe_compile(_binaryconnect_update, self.compile)
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
        """p ← w_b(latent) for every parameter (or ``params``) (stream ``"u_binarize"`` when stochastic).

        Default path: the counter stream ``BINARIZE_STREAM`` at step ``torchport.fast.INIT_STEP``
        (each parameter with its own index; the same bits at every call); ``noise=`` is refused.
        """
        if params is None:
            params = [p for g in self.param_groups for p in g["params"]]
        if not self.exact:
            if noise is not None:
                raise ValueError("noise= feeds the exact path's streams; on the default (fast) path the "
                                 "binarization uses the counter stream (construct with exact=True to pass noise)")
            index = {id(p): i for i, p in enumerate(self._all_params())}
            for p in params:
                pkey = F._param_key(self.seed, F.INIT_STEP, index[id(p)], p.device)
                p.copy_(_binarize(self.state[p]["latent"], pkey, self._grid, self.scale, self.stochastic))
            return
        if self.stochastic:
            parts = self._split(self._step_noise(noise, params), params)["u_binarize"]
        for i, p in enumerate(params):
            lat = self.state[p]["latent"]
            if self.stochastic:
                p.copy_(_stochastic_levels(lat, self._grid, self.scale, parts[i]))
            else:
                p.copy_(_quantize_nearest(lat, self._grid, self.scale))

    def _update_group(self, group, params, grads, noise):
        t = self.base_steps
        lo, hi = self.scale * self.levels.lo, self.scale * self.levels.hi
        for i, (p, g) in enumerate(zip(params, grads)):
            lat = self.state[p]["latent"]
            lat.copy_(torch.clamp(self._base_update(p, lat, g, group["lr"], t), lo, hi))
            if self.stochastic:
                p.copy_(_stochastic_levels(lat, self._grid, self.scale, noise["u_binarize"][i]))
            else:
                p.copy_(_quantize_nearest(lat, self._grid, self.scale))

    def _fast_update(self, p, key, args) -> torch.Tensor:
        sc = self._scalars(args, p)
        lat = self.state[p]["latent"]
        m, v = self._moments(p)
        wb, lat2, m2, v2, finite = self._fast_fn(
            p.grad, lat, m, v, key, sc["lr"], sc["c1"], sc["c2"], sc["first"], grid=self._grid, scale=self.scale,
            stochastic=self.stochastic, base=self.base)
        lat.copy_(lat2)
        p.copy_(wb)
        self._store_moments(p, m2, v2)
        return finite


class ProxQuant(_NetOptimizer):
    """ProxQuant -- spec (B2); Bai, Wang & Liberty, ICLR 2019.

    θ ← prox_{λ_t R}(base step of θ), λ_t = ``lambda_rate``·t (t = 1, 2, …,
    linear homotopy), R = distance to the nearest grid point s·Q.  Final hard
    quantization: :meth:`quantized`.  No randomness.  Default path: λ_t enters as a 0-d tensor.

    Path: ``exact`` (default False), ``compile``, ``check_every``: the module docstring's "Two
    paths" (docs/torchport.md, "Two paths").
    """

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, *,
                 lambda_rate: float = 1e-4, levels: Levels = None,
                 scale: float = 1.0, base: Literal["sgd", "adam"] | BaseOptimizer = "sgd",
                 seed: Optional[int] | torch.Generator = None, generator: Optional[torch.Generator] = None,
                 exact: bool = False, compile: Optional[bool] = None, check_every: int = 0):
        _positive("lambda_rate", lambda_rate, allow_zero=True)
        _positive("scale", scale)
        super().__init__(params, lr, base, binary_levels() if levels is None else levels, {}, seed, generator,
                         exact, compile, check_every)
        self.lambda_rate, self.scale = float(lambda_rate), float(scale)
        if not exact:
            self._fast_fn = F.maybe_compile(_proxquant_update, self.compile)

    noise_layout = ()

    def _update_group(self, group, params, grads, noise):
        t = self.base_steps
        lam = self.lambda_rate * t
        for p, g in zip(params, grads):
            p.copy_(_prox_w_shaped(self._base_update(p, p, g, group["lr"], t), self._grid, self.scale, lam))

    def _fast_prepare(self, t: int) -> dict:
        return {"floats": {"lam": self.lambda_rate * t}}

    def _fast_update(self, p, key, args) -> torch.Tensor:
        sc = self._scalars(args, p)
        m, v = self._moments(p)
        new, m2, v2, finite = self._fast_fn(p, p.grad, m, v, sc["lr"], sc["c1"], sc["c2"], sc["first"], sc["lam"],
                                            grid=self._grid, scale=self.scale, base=self.base)
        p.copy_(new)
        self._store_moments(p, m2, v2)
        return finite

    @torch.no_grad()
    def quantized(self) -> list[torch.Tensor]:
        return [_quantize_nearest(p, self._grid, self.scale) for g in self.param_groups for p in g["params"]]
