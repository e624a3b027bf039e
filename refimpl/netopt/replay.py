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

Parity: float64 torch eager equals these replays bit for bit (the same IEEE operations in the
same order; √ correctly rounded on both sides).  float32 torch: per step within a few float32
ulp of the float64 replay of the same inputs, and the same grid values (docs/binaryconnect.md).
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


def replay_binarize(latent: npt.ArrayLike, *, levels: Levels, scale: float, stochastic: bool, seed: int,
                    step: int, param_index: int, bits: Literal[24, 53] = 53) -> np.ndarray:
    """w_b(latent) (B1) as the default path computes it: nearest level, or stochastic rounding
    between the bracketing levels with the counter uniforms u_k(i) of
    key(seed, step, param_index, ``BINARIZE_STREAM``) (k = ``bits``: 53 for float64
    parameters, 24 for float32).  P(upper) = ⌈p·2^k⌉/2^k for p = (clip(w/s) − lower)/spacing.
    """
    check_levels(levels)
    scale = check_scale(scale)
    w = _array("latent", latent)
    if not isinstance(stochastic, (bool, np.bool_)):
        raise TypeError(f"stochastic must be a bool, got {stochastic!r}")
    if not stochastic:
        return _quantize_nearest(w, levels, scale)
    u = uniforms(stream_key(seed, step, param_index, BINARIZE_STREAM), w.size, bits=bits).reshape(w.shape)
    return _stochastic_levels(w, levels, scale, u)


def replay_binaryconnect_step(latent: npt.ArrayLike, grad: npt.ArrayLike, m: npt.ArrayLike | None = None,
                              v: npt.ArrayLike | None = None, *, t: int, lr: float, levels: Levels, scale: float,
                              base: str | BaseOptimizer, stochastic: bool, seed: int, step: int, param_index: int,
                              bits: Literal[24, 53] = 53
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One BinaryConnect step of one parameter (B1) as ``torchport.optim.BinaryConnect`` computes it by
    default: latent' = clip(base step of latent with gradient ``grad``, s·q_1, s·q_m), then
    w_b' = :func:`replay_binarize` (latent') at (seed, step, param_index).

    ``m``, ``v``: the base optimizer's buffers (None: zeros).  Returns (w_b', latent', m', v').
    """
    check_levels(levels)
    scale = check_scale(scale)
    w = _array("latent", latent)
    new, m2, v2 = _base(base, w, grad, m, v, t, lr)
    new = np.clip(new, scale * levels.lo, scale * levels.hi)
    wb = replay_binarize(new, levels=levels, scale=scale, stochastic=stochastic, seed=seed, step=step,
                         param_index=param_index, bits=bits)
    return wb, new, m2, v2


def replay_askewsgd_step(theta: npt.ArrayLike, grad: npt.ArrayLike, m: npt.ArrayLike | None = None,
                         v: npt.ArrayLike | None = None, *, t: int, lr: float, eps: float, alpha: float,
                         levels: Levels, scale: float, base: str | BaseOptimizer, clamp_nu: bool = False,
                         midpoint_guard: float = 1e-6, clamp_after_step: bool = True
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One AskewSGD step of one parameter ((A1)/(A2)) as ``torchport.optim.AskewSGD`` computes it by default.

    d = askew_direction(θ, g, levels, ε, α, scale=s, nu_clamp=s/(4 lr) if ``clamp_nu``);
    the base step takes clip(θ, s·q_1, s·q_m) with gradient −d; then (``clamp_after_step``)
    clip to the hull.  ``scale``: the scale of this step (fixed, frozen or SAWB).  Returns
    (θ', m', v', number of skewed coordinates).  No randomness.
    """
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
    d, skewed = _direction(w, g, levels, float(eps), float(alpha), s, s / (4.0 * lr) if clamp_nu else None,
                           float(midpoint_guard))
    new, m2, v2 = _base(base, np.clip(w, s * levels.lo, s * levels.hi), -d, m, v, t, lr)
    if clamp_after_step:
        new = np.clip(new, s * levels.lo, s * levels.hi)
    return new, m2, v2, int(skewed.sum())


def replay_proxquant_step(theta: npt.ArrayLike, grad: npt.ArrayLike, m: npt.ArrayLike | None = None,
                          v: npt.ArrayLike | None = None, *, t: int, lr: float, lambda_rate: float, levels: Levels,
                          scale: float, base: str | BaseOptimizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ProxQuant step of one parameter (B2) as ``torchport.optim.ProxQuant`` computes it by default:
    θ' = prox_{λ_t R}(base step of θ), λ_t = ``lambda_rate``·t.  Returns (θ', m', v').  No randomness."""
    check_levels(levels)
    s = check_scale(scale)
    check_real("lambda_rate", lambda_rate, lo=0.0)
    w = _array("theta", theta)
    new, m2, v2 = _base(base, w, grad, m, v, t, lr)
    return _prox(new, levels, s, float(lambda_rate) * t), m2, v2
