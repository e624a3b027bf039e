"""refimpl's replay of the default (fast) torchport path of AskewSGD, BinaryConnect and ProxQuant.

torchport's ``AskewSGD``, ``BinaryConnect`` and ``ProxQuant`` run by default (``exact=False``)
one fused update per parameter in the parameter's dtype (``torchport.optim.netopt``,
docs/askewsgd.md, binaryconnect.md, proxquant.md, "Two paths").  The functions here compute
one such update of one parameter in float64 NumPy from the same inputs, with refimpl's own
kernels: the base step is :meth:`refimpl.netopt.base.BaseOptimizer._update` (SGD with
momentum / weight decay, Adam), AskewSGD's direction the Numba kernel of
:func:`refimpl.netopt.askewsgd.askew_direction` (A2), ProxQuant's prox
:func:`refimpl.netopt.proxquant.prox_w_shaped` (B2), BinaryConnect's binarization
:func:`refimpl.netopt.binaryconnect.stochastic_levels` (B1) fed the counter stream's
uniforms (:mod:`refimpl.counter_rng`, stream ``"u_weight"``, key(seed, step, parameter index)).

AskewSGD and ProxQuant draw no random numbers: their replay is deterministic.  The SAWB
scale (A3) is an input here (the torch path computes it on the device with torch's summation
order, a few ulp from :func:`refimpl.netopt.levels.sawb_scale`; a trajectory test passes the
scale torchport used, ``optimizer.state[p]["scale"]``, and checks that scale separately).

Driving a trajectory (tests/torchport/test_fast_netopt.py): keep (θ or latent, m, v) per
parameter in float64, t = the step count (1 at the first step in which the parameter stepped,
``optimizer.base_steps`` after the step), ``step`` = ``optimizer.num_steps`` before the step
(the counter stream's step), ``param_index`` = the parameter's position over all groups;
feed each step the gradient the torch optimizer saw.  BinaryConnect's initial binarization is
:func:`replay_binarize` at ``step = torchport.fast.INIT_STEP`` (2^63).

Two dtypes (``dtype=``).  ``"float64"`` (default): float64 NumPy with refimpl's kernels, as above.
``"float32"``: the float32 fast path's step -- every operation of the fused update
(``torchport.optim.netopt._askewsgd_update`` / ``_binaryconnect_update`` / ``_proxquant_update``)
in NumPy float32 in torch's operation order, the Python constants (levels, α, the midpoint
guard, β1, 1 − β1, weight decay, ...) rounded to float32 as torch rounds a Python scalar
against a float32 tensor, the per-step values (lr, ε_t, λ_t, 1 − β^t, the fixed scale) rounded
to float32 as the 0-d tensors of the parameter's dtype are made; Adam's √ computed in float64
and rounded to float32 (as ``_sqrt_rounded``); BinaryConnect's 24-bit uniforms.  Inputs are
cast to float32 and float32 arrays returned.

Parity: float64 torch eager equals the float64 replays bit for bit, and float32 torch eager the
float32 replays (the same IEEE operations in the same order; √ correctly rounded on both sides;
no transcendental function): ``qlangevin crosscheck --path fast`` requires bit-identity in both
dtypes (docs/fast_path.md, "Parity with refimpl").
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from refimpl.counter_rng import stream_key, uniforms

from .askewsgd import _direction
from .base import BaseOptimizer, BaseState, check_real, validate_base
from .binaryconnect import _stochastic_levels
from .levels import Levels, _quantize_nearest, check_levels, check_scale
from .proxquant import _prox

__all__ = ["BINARIZE_STREAM", "replay_askewsgd_step", "replay_binarize", "replay_binaryconnect_step",
           "replay_proxquant_step"]

#: the counter stream of the default path's stochastic binarization (refimpl.counter_rng.STREAMS)
BINARIZE_STREAM = "u_weight"


def _moments(w: np.ndarray, m, v) -> tuple[np.ndarray, np.ndarray]:
    z = np.zeros_like(w)
    return (z if m is None else np.asarray(m, dtype=np.float64)), (z.copy() if v is None
                                                                  else np.asarray(v, dtype=np.float64))


def _array(name: str, x, like: np.ndarray | None = None) -> np.ndarray:
    """A float64 copy of a real array (TypeError naming ``name``), of ``like``'s shape if given (ValueError)."""
    try:
        a = np.array(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real array, got {type(x).__name__}") from None
    if like is not None and a.shape != like.shape:
        raise ValueError(f"{name} must have the parameter's shape {like.shape}, got {a.shape}")
    return a


def _base(base, w, g, m, v, t: int, lr: float):
    """refimpl's base step of one tensor at step t (t >= 1): (w', m', v')."""
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
        raise ValueError(f"t must be an int >= 1 (the base optimizer's step count), got {t!r}")
    check_real("lr", lr, lo=0.0, lo_open=True)
    b = validate_base(base)
    g = _array("grad", g, w)
    m = None if m is None else _array("m", m, w)
    v = None if v is None else _array("v", v, w)
    m0, v0 = _moments(w, m, v)
    new, st = b._update([w], [g], BaseState((m0,), (v0,), int(t) - 1), float(lr))
    return new[0], st.m[0], st.v[0]


# ------------------------------------------------------------------ float32: the fast path's float32 operations
_F32 = np.float32
_DTYPES = ("float64", "float32")


def _check_dtype(dtype) -> bool:
    """True for "float32", False for "float64"; ValueError naming ``dtype`` otherwise."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return dtype == "float32"


def _array32(name: str, x, like: np.ndarray | None = None) -> np.ndarray:
    """:func:`_array` rounded to float32 (the float32 run's values are float32: exact)."""
    return _array(name, x, like).astype(_F32)


def _base32(base, w, g, m, v, t: int, lr: float):
    """``torchport.optim.netopt._base_step`` on float32 arrays: (w', m', v') in float32.

    SGD: g + w·f32(wd); m = g at t = 1, else m·f32(μ) + g; w − m·f32(lr).
    Adam: m·f32(β1) + g·f32(1 − β1); v·f32(β2) + (g·f32(1 − β2))·g;
    w − ((m/f32(c1))·f32(lr)) / (fl32(√(v/f32(c2))) + f32(eps)), c = 1 − β^t (Python floats, then
    float32, as the 0-d tensors); the √ in float64 rounded to float32 (``_sqrt_rounded``)."""
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
        raise ValueError(f"t must be an int >= 1 (the base optimizer's step count), got {t!r}")
    check_real("lr", lr, lo=0.0, lo_open=True)
    b = validate_base(base)
    g = _array32("grad", g, w)
    lr32 = _F32(lr)
    m = np.zeros_like(w) if m is None else _array32("m", m, w)
    v = np.zeros_like(w) if v is None else _array32("v", v, w)
    if b.kind == "sgd":
        if b.weight_decay:
            g = g + w * _F32(b.weight_decay)
        if b.momentum:
            m = g.copy() if t == 1 else m * _F32(b.momentum) + g
            return w - m * lr32, m, v
        return w - g * lr32, m, v
    c1, c2 = _F32(1.0 - b.beta1 ** t), _F32(1.0 - b.beta2 ** t)
    m = m * _F32(b.beta1) + g * _F32(1.0 - b.beta1)
    v = v * _F32(b.beta2) + (g * _F32(1.0 - b.beta2)) * g
    root = np.sqrt((v / c2).astype(np.float64)).astype(_F32)
    return w - ((m / c1) * lr32) / (root + _F32(b.eps)), m, v


def _quantize_nearest32(w, levels: Levels, scale) -> np.ndarray:
    """``torchport.optim.netopt._quantize_nearest`` in float32: (k·f32(spacing) + f32(lo))·f32(s)."""
    lo, hi, sp, s = _F32(levels.lo), _F32(levels.hi), _F32(levels.spacing), _F32(scale)
    z = np.clip(w / s, lo, hi)
    k = np.clip(np.floor((z - lo) / sp + _F32(0.5)), _F32(0), _F32(levels.values.size - 1))
    return (k * sp + lo) * s


def _stochastic_levels32(w, levels: Levels, scale, u) -> np.ndarray:
    """``torchport.optim.netopt._stochastic_levels`` in float32 (``u`` float32 uniforms)."""
    lo, hi, sp, s = _F32(levels.lo), _F32(levels.hi), _F32(levels.spacing), _F32(scale)
    z = (np.clip(w / s, lo, hi) - lo) / sp
    k = np.clip(np.floor(z), _F32(0), _F32(levels.values.size - 2))
    k = k + (u < z - k).astype(_F32)
    return (k * sp + lo) * s


def _prox32(theta, levels: Levels, scale, lam) -> np.ndarray:
    """``torchport.optim.netopt._prox_w_shaped`` in float32: q + sign(r)·max(|r| − f32(λ), 0), r = θ − q."""
    q = _quantize_nearest32(theta, levels, scale)
    r = theta - q
    return q + np.sign(r) * np.maximum(np.abs(r) - _F32(lam), _F32(0.0))


def _direction32(w, g, levels: Levels, eps, alpha, scale, nu_clamp_lr, guard):
    """``torchport.optim.netopt._askew_direction`` (A2) in float32, in its operation order; returns (d, skewed).

    ``scale`` is the float32 scale s (a 0-d tensor in torch): x = clip(w/s), the bracketing levels a
    (nearer) and b, prod = (x−a)(x−b), ψ = f32(ε) − prod², ν = ((s·f32(α))·ψ)/((2·prod)·((f32(guard) +
    (x−a)) + (x−b))); d = −g where prod = 0, ψ >= 0 or (−g)·ν > ν², else ν (clamped to ±s/(4·lr) when
    ``nu_clamp_lr`` is the float32 lr)."""
    lo, hi, sp = _F32(levels.lo), _F32(levels.hi), _F32(levels.spacing)
    x = np.clip(w / scale, lo, hi)
    z = (x - lo) / sp
    k = np.clip(np.floor(z), _F32(0), _F32(levels.values.size - 2))
    lower = k * sp + lo
    upper = lower + sp
    near_lower = (x - lower) <= (upper - x)
    a = np.where(near_lower, lower, upper)
    b = np.where(near_lower, upper, lower)
    wa = x - a
    wb = x - b
    prod = wa * wb
    ps = _F32(eps) - prod * prod
    with np.errstate(divide="ignore", invalid="ignore"):  # prod = 0: ν is inf/NaN there and not used
        nu = ((scale * _F32(alpha)) * ps) / ((_F32(2.0) * prod) * ((_F32(guard) + wa) + wb))
        direct = (prod == 0) | (ps >= 0) | ((-g) * nu > nu * nu)
    if nu_clamp_lr is not None:
        c = scale / (_F32(4.0) * nu_clamp_lr)
        nu = np.clip(nu, -c, c)
    return np.where(direct, -g, nu).astype(_F32), ~direct


def replay_binarize(latent: npt.ArrayLike, *, levels: Levels, scale: float, stochastic: bool, seed: int,
                    step: int, param_index: int, bits: Literal[24, 53] | None = None,
                    dtype: Literal["float64", "float32"] = "float64") -> np.ndarray:
    """w_b(latent) (B1) as the default path computes it: nearest level, or stochastic rounding
    between the bracketing levels with the counter uniforms u_k(i) of
    key(seed, step, param_index, ``BINARIZE_STREAM``) (k = ``bits``; default 53 for float64
    parameters, 24 for ``dtype="float32"``; the other value is a test mutation).
    P(upper) = ⌈p·2^k⌉/2^k for p = (clip(w/s) − lower)/spacing.  ``dtype="float32"``: the float32
    fast path's operations (:func:`_stochastic_levels32`, :func:`_quantize_nearest32`), float32 result.
    """
    f32 = _check_dtype(dtype)
    check_levels(levels)
    scale = check_scale(scale)
    w = _array("latent", latent)
    if not isinstance(stochastic, (bool, np.bool_)):
        raise TypeError(f"stochastic must be a bool, got {stochastic!r}")
    if bits is None:
        bits = 24 if f32 else 53
    if bits not in (24, 53):
        raise ValueError(f"bits must be 24 or 53, got {bits!r}")
    if f32:
        w = w.astype(_F32)
        if not stochastic:
            return _quantize_nearest32(w, levels, scale)
    elif not stochastic:
        return _quantize_nearest(w, levels, scale)
    u = uniforms(stream_key(seed, step, param_index, BINARIZE_STREAM), w.size, bits=bits).reshape(w.shape)
    if f32:
        return _stochastic_levels32(w, levels, scale, u.astype(_F32))
    return _stochastic_levels(w, levels, scale, u)


def replay_binaryconnect_step(latent: npt.ArrayLike, grad: npt.ArrayLike, m: npt.ArrayLike | None = None,
                              v: npt.ArrayLike | None = None, *, t: int, lr: float, levels: Levels, scale: float,
                              base: str | BaseOptimizer, stochastic: bool, seed: int, step: int, param_index: int,
                              bits: Literal[24, 53] | None = None, dtype: Literal["float64", "float32"] = "float64"
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One BinaryConnect step of one parameter (B1) as ``torchport.optim.BinaryConnect`` computes it by
    default: latent' = clip(base step of latent with gradient ``grad``, s·q_1, s·q_m), then
    w_b' = :func:`replay_binarize` (latent') at (seed, step, param_index).

    ``m``, ``v``: the base optimizer's buffers (None: zeros).  ``dtype``: "float64" (refimpl's kernels) or
    "float32" (the float32 fast path's operations, module docstring); ``bits`` the uniforms' width (default
    53 / 24 by dtype).  Returns (w_b', latent', m', v').
    """
    f32 = _check_dtype(dtype)
    check_levels(levels)
    scale = check_scale(scale)
    w = _array("latent", latent)
    if f32:
        w = w.astype(_F32)
        new, m2, v2 = _base32(base, w, grad, m, v, t, lr)
        new = np.clip(new, _F32(scale * levels.lo), _F32(scale * levels.hi))
    else:
        new, m2, v2 = _base(base, w, grad, m, v, t, lr)
        new = np.clip(new, scale * levels.lo, scale * levels.hi)
    wb = replay_binarize(new, levels=levels, scale=scale, stochastic=stochastic, seed=seed, step=step,
                         param_index=param_index, bits=bits, dtype=dtype)
    return wb, new, m2, v2


def replay_askewsgd_step(theta: npt.ArrayLike, grad: npt.ArrayLike, m: npt.ArrayLike | None = None,
                         v: npt.ArrayLike | None = None, *, t: int, lr: float, eps: float, alpha: float,
                         levels: Levels, scale: float, base: str | BaseOptimizer, clamp_nu: bool = False,
                         midpoint_guard: float = 1e-6, clamp_after_step: bool = True,
                         dtype: Literal["float64", "float32"] = "float64"
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One AskewSGD step of one parameter ((A1)/(A2)) as ``torchport.optim.AskewSGD`` computes it by default.

    d = askew_direction(θ, g, levels, ε, α, scale=s, nu_clamp=s/(4 lr) if ``clamp_nu``);
    the base step takes clip(θ, s·q_1, s·q_m) with gradient −d; then (``clamp_after_step``)
    clip to the hull.  ``scale``: the scale of this step (fixed, frozen or SAWB; for float32 the
    float32 value torch used).  ``dtype``: "float64" (refimpl's kernels) or "float32" (the float32
    fast path's operations, :func:`_direction32`, :func:`_base32`).  Returns (θ', m', v', number of
    skewed coordinates).  No randomness.
    """
    f32 = _check_dtype(dtype)
    check_levels(levels)
    s = check_scale(scale)
    check_real("lr", lr, lo=0.0, lo_open=True)
    check_real("eps", eps, lo=0.0, lo_open=True)
    check_real("alpha", alpha, lo=0.0, lo_open=True)
    check_real("midpoint_guard", midpoint_guard, lo=0.0)
    for name, flag in (("clamp_nu", clamp_nu), ("clamp_after_step", clamp_after_step)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    w = _array("theta", theta)
    g = _array("grad", grad, w)
    if f32:
        w, g, s32 = w.astype(_F32), g.astype(_F32), _F32(s)
        d, skewed = _direction32(w, g, levels, eps, alpha, s32, _F32(lr) if clamp_nu else None,
                                 float(midpoint_guard))
        lo, hi = s32 * _F32(levels.lo), s32 * _F32(levels.hi)
        new, m2, v2 = _base32(base, np.clip(w, lo, hi), -d, m, v, t, lr)
        if clamp_after_step:
            new = np.clip(new, lo, hi)
        return new, m2, v2, int(skewed.sum())
    d, skewed = _direction(w, g, levels, float(eps), float(alpha), s, s / (4.0 * lr) if clamp_nu else None,
                           float(midpoint_guard))
    new, m2, v2 = _base(base, np.clip(w, s * levels.lo, s * levels.hi), -d, m, v, t, lr)
    if clamp_after_step:
        new = np.clip(new, s * levels.lo, s * levels.hi)
    return new, m2, v2, int(skewed.sum())


def replay_proxquant_step(theta: npt.ArrayLike, grad: npt.ArrayLike, m: npt.ArrayLike | None = None,
                          v: npt.ArrayLike | None = None, *, t: int, lr: float, lambda_rate: float, levels: Levels,
                          scale: float, base: str | BaseOptimizer,
                          dtype: Literal["float64", "float32"] = "float64"
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ProxQuant step of one parameter (B2) as ``torchport.optim.ProxQuant`` computes it by default:
    θ' = prox_{λ_t R}(base step of θ), λ_t = ``lambda_rate``·t.  ``dtype``: "float64" (refimpl's kernels)
    or "float32" (the float32 fast path's operations; λ_t = f32(lambda_rate·t)).  Returns (θ', m', v').
    No randomness."""
    f32 = _check_dtype(dtype)
    check_levels(levels)
    s = check_scale(scale)
    check_real("lambda_rate", lambda_rate, lo=0.0)
    w = _array("theta", theta)
    if f32:
        new, m2, v2 = _base32(base, w.astype(_F32), grad, m, v, t, lr)
        return _prox32(new, levels, s, float(lambda_rate) * t), m2, v2
    new, m2, v2 = _base(base, w, grad, m, v, t, lr)
    return _prox(new, levels, s, float(lambda_rate) * t), m2, v2
