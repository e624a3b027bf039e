"""AskewSGD (Leconte, Schechtman & Moulines, AISTATS 2023; arXiv 2211.03741).

ALGORITHMS §4.1, equations (A1)-(A4).  Everything here is **[code]**-confirmed
against aistats2023/537 at cc4dddd (``askewsgd_Imagenet/vision/trainer_askewsgd.py``,
``Trainer._step``; the notebooks' ``ours_net``), except the convergence theorem,
which is [unconfirmed] and not implemented (§5.6).  In this module ``alpha`` is
the skew/restoring rate (the code's ``alpha``), not a step size.

Per coordinate, in scaled units w~ = clip(w/s, q_1, q_m) with nearest level a and
the other bracketing level b:

    (A1)  psi_eps(w)  = eps - (w-a)^2 (w-b)^2            feasible  <=>  psi_eps >= 0
          psi'_eps(w) = -2 (w-a)(w-b)(2w-a-b)
    (A2)  nu = s * alpha * psi / (2 (w-a)(w-b)(2w-a-b + 1e-6))      [weight units]
          d  = -g   if (w-a)(w-b) = 0  or  psi >= 0  or  (-g)*nu > nu^2   (unclamped nu)
          d  = clip(nu, -s/(4 lr), s/(4 lr))   otherwise (clip optional)
          the base optimizer receives the gradient -d.

A skewed step with plain SGD moves w~ by lr*nu/s, so psi(w~ + lr*nu/s) ~=
(1 - alpha*lr) psi(w~): the violation contracts by (1 - alpha*gamma) per step
(gamma = lr), the property tested in tests/refimpl/netopt.

Departures from the published code, each behind a parameter:
* ``midpoint_guard`` (default 1e-6, the ImageNet constant) is also applied to the
  binary case, where the notebooks divide by 4w(w^2-1) without a guard (they
  instead send w == 0 to the plain gradient); with levels ±1 and w != 0 the two
  agree up to the 1e-6 shift.
* Final weights use the training scale (frozen after ``scale_freeze_epoch``); the
  published evaluation recomputes a *live* SAWB scale (pitfall §7.4.5);
  ``final_scale="live"`` reproduces that.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import numpy.typing as npt
from numba import njit

from .base import BaseState, check_int, check_params, check_real, check_step_args, validate_base
from .levels import Levels, _quantize_nearest, binary_levels, check_levels, check_scale, sawb_scale

__all__ = [
    "psi",
    "psi_prime",
    "askew_direction",
    "askew_direction_numpy",
    "epsilon_imagenet",
    "epsilon_logistic_notebook",
    "epsilon_moons_notebook",
    "epsilon_schedule",
    "feasible_halfwidth",
    "AskewSGD",
    "AskewState",
]


# ---------------------------------------------------------------------------
# (A1) the interval constraint


def psi(w: npt.ArrayLike, a: npt.ArrayLike, b: npt.ArrayLike, eps: float) -> np.ndarray:
    """psi_eps(w) = eps - (w-a)^2 (w-b)^2  -- (A1), ALGORITHMS §4.1 [code].

    w, a, b: arrays in scaled units (broadcastable), eps > 0 scalar.  No randomness.
    """
    check_real("eps", eps, lo=0.0, lo_open=True)
    _check_array("a", a)
    _check_array("b", b)
    p = (np.asarray(w) - a) * (np.asarray(w) - b)
    return eps - p * p


def psi_prime(w: npt.ArrayLike, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    """psi'_eps(w) = -2 (w-a)(w-b)(2w-a-b)  -- (A1) [derived from the code's psi]."""
    _check_array("a", a)
    _check_array("b", b)
    w = np.asarray(w)
    return -2.0 * (w - a) * (w - b) * (2.0 * w - a - b)


def feasible_halfwidth(eps: float, spacing: float = 1.0) -> float:
    """Half-width delta of the feasible band around each level [derived, §4.1].

    delta(spacing - delta) = sqrt(eps)  =>  delta = (spacing - sqrt(spacing^2 - 4 sqrt(eps)))/2,
    and delta = spacing/2 (whole hull feasible) once eps >= (spacing/2)^4.
    """
    eps = check_real("eps", eps, lo=0.0, lo_open=True)
    spacing = check_real("spacing", spacing, lo=0.0, lo_open=True)
    r = math.sqrt(eps)
    disc = spacing * spacing - 4.0 * r
    if disc <= 0:
        return spacing / 2.0
    return (spacing - math.sqrt(disc)) / 2.0


# ---------------------------------------------------------------------------
# (A2) the skewed direction


@njit(cache=True, error_model="numpy")
def _askew_kernel(w, g, lo, spacing, n_levels, eps, alpha, scale, nu_clamp, guard, d_out, skew_out):
    hi = lo + (n_levels - 1) * spacing
    for i in range(w.size):
        x = w[i]
        if x < lo:
            x = lo
        elif x > hi:
            x = hi
        z = (x - lo) / spacing
        k = int(np.floor(z))
        if k > n_levels - 2:
            k = n_levels - 2
        if k < 0:
            k = 0
        lower = lo + k * spacing
        upper = lower + spacing
        if x - lower <= upper - x:
            a = lower
            b = upper
        else:
            a = upper
            b = lower
        wa = x - a
        wb = x - b
        prod = wa * wb
        ps = eps - prod * prod
        gi = g[i]
        if prod == 0.0 or ps >= 0.0:
            d_out[i] = -gi
            skew_out[i] = False
            continue
        nu = scale * alpha * ps / (2.0 * prod * (guard + wa + wb))
        if (-gi) * nu > nu * nu:
            d_out[i] = -gi
            skew_out[i] = False
        else:
            if nu_clamp > 0.0:
                if nu > nu_clamp:
                    nu = nu_clamp
                elif nu < -nu_clamp:
                    nu = -nu_clamp
            d_out[i] = nu
            skew_out[i] = True


def _check_array(name, x):
    """A real scalar or array (TypeError naming ``name`` otherwise)."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real number or array, got {x!r}")
    return a


def _check_direction_args(w, g, levels, eps, alpha, scale, nu_clamp, midpoint_guard):
    check_levels(levels)
    check_real("eps", eps, lo=0.0, lo_open=True)
    check_real("alpha", alpha, lo=0.0, lo_open=True)
    check_scale(scale)
    if nu_clamp is not None:
        check_real("nu_clamp", nu_clamp, lo=0.0, lo_open=True)
    check_real("midpoint_guard", midpoint_guard, lo=0.0)
    w = np.asarray(_check_array("w", w), dtype=np.float64)
    g = np.asarray(_check_array("g", g), dtype=np.float64)
    if w.shape != g.shape:
        raise ValueError(f"g must have w's shape {w.shape}, got {g.shape}")
    for name, x in (("w", w), ("g", g)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} has non-finite entries (shape {x.shape})")
    return w, g


def askew_direction(w: npt.ArrayLike, g: npt.ArrayLike, levels: Levels, eps: float, alpha: float, *,
                    scale: float = 1.0, nu_clamp: float | None = None,
                    midpoint_guard: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """AskewSGD update direction d, per coordinate -- (A1)/(A2), ALGORITHMS §4.1 [code].

    Parameters
    ----------
    w : float array, weights in *weight units* (any shape).
    g : float array, same shape, stochastic gradient in weight units.
    levels : Levels in scaled units; the grid is ``scale * levels.values``.
    eps : annealing parameter eps > 0 of (A1).
    alpha : restoring rate alpha > 0 of (A2).
    scale : per-tensor scale s > 0 (1 for binary ±1 weights).
    nu_clamp : if given, |nu| is clipped to it *after* the switching test (the
        ImageNet code uses s/(4 lr)); the test uses the unclamped nu (§7.4.6).
    midpoint_guard : added to (2w - a - b) in nu's denominator (ImageNet: 1e-6).

    Returns
    -------
    d : float64 array, w's shape -- the step direction (w <- w + lr d under SGD).
    skewed : bool array -- where d = nu.

    The weights are evaluated at the projection clip(w/s, q_1, q_m) (the ImageNet
    code's per-step clamp).  No randomness.
    """
    w, g = _check_direction_args(w, g, levels, eps, alpha, scale, nu_clamp, midpoint_guard)
    return _direction(w, g, levels, eps, alpha, scale, nu_clamp, midpoint_guard)


def _direction(w, g, levels, eps, alpha, scale, nu_clamp, midpoint_guard):
    """askew_direction without the argument checks (float64 w and g of one shape)."""
    wf = np.ascontiguousarray(w).ravel() / scale
    gf = np.ascontiguousarray(g).ravel()
    d = np.empty_like(wf)
    sk = np.empty(wf.size, dtype=np.bool_)
    _askew_kernel(wf, gf, levels.lo, levels.spacing, levels.values.size, float(eps), float(alpha),
                  float(scale), 0.0 if nu_clamp is None else float(nu_clamp), float(midpoint_guard), d, sk)
    return d.reshape(w.shape), sk.reshape(w.shape)


def askew_direction_numpy(w: npt.ArrayLike, g: npt.ArrayLike, levels: Levels, eps: float, alpha: float, *,
                          scale: float = 1.0, nu_clamp: float | None = None,
                          midpoint_guard: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised NumPy restatement of :func:`askew_direction` (the benchmark's baseline).

    Written the way the published PyTorch code computes it (masks over the whole
    tensor); used to cross-check the Numba kernel in the tests.
    """
    w, g = _check_direction_args(w, g, levels, eps, alpha, scale, nu_clamp, midpoint_guard)
    x = np.clip(np.asarray(w, dtype=np.float64) / scale, levels.lo, levels.hi)
    g = np.asarray(g, dtype=np.float64)
    k = np.clip(np.floor((x - levels.lo) / levels.spacing), 0, levels.values.size - 2)
    lower = levels.lo + k * levels.spacing
    upper = lower + levels.spacing
    near_lower = (x - lower) <= (upper - x)
    a = np.where(near_lower, lower, upper)
    b = np.where(near_lower, upper, lower)
    prod = (x - a) * (x - b)
    ps = eps - prod * prod
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        nu = scale * alpha * ps / (2.0 * prod * (midpoint_guard + (x - a) + (x - b)))
        direct = (prod == 0) | (ps >= 0) | ((-g) * nu > nu * nu)
    if nu_clamp is not None:
        nu = np.clip(nu, -nu_clamp, nu_clamp)
    return np.where(direct, -g, nu), ~direct


# ---------------------------------------------------------------------------
# (A4) and the notebooks' eps schedules


def epsilon_imagenet(epoch: int) -> float:
    """(A4): eps = 1/16 + 1e-6 for e <= 100, (1/16) 0.95^(e-100) + 1e-6 after [code, ImageNet]."""
    check_int("epoch", epoch, 0)
    if epoch <= 100:
        return 1.0 / 16.0 + 1e-6
    return (1.0 / 16.0) * 0.95 ** (epoch - 100) + 1e-6


def epsilon_logistic_notebook(epoch: int) -> float:
    """Logistic toy: eps = 1 for e < 50, else 0.96^(e-50) [code, §4.1 notebook specifics]."""
    check_int("epoch", epoch, 0)
    return 1.0 if epoch < 50 else 0.96 ** (epoch - 50)


def epsilon_moons_notebook(epoch: int) -> float:
    """Two-moons toy: eps = 1 for e < 20, else 0.99^(e-20) [code, §4.1 notebook specifics]."""
    check_int("epoch", epoch, 0)
    return 1.0 if epoch < 20 else 0.99 ** (epoch - 20)


def epsilon_schedule(kind: str | Callable[[int], float] = "imagenet", *, eps0: float = 1.0, start: int = 0,
                     rate: float = 0.95, floor: float = 0.0) -> Callable[[int], float]:
    """Return a callable epoch -> eps.

    kind: "imagenet" (A4), "logistic" / "moons" (notebooks), "constant" (eps0),
    or "exponential": eps0 * rate^max(e-start, 0) + floor (a generic form of all three).
    """
    if callable(kind):
        return kind
    table = {"imagenet": epsilon_imagenet, "logistic": epsilon_logistic_notebook,
             "moons": epsilon_moons_notebook}
    if kind in table:
        return table[kind]
    if kind == "constant":
        check_real("eps0", eps0, lo=0.0, lo_open=True)
        return lambda e: float(eps0)
    if kind == "exponential":
        check_real("eps0", eps0, lo=0.0, lo_open=True)
        check_real("rate", rate, lo=0.0, lo_open=True, hi=1.0)
        check_real("floor", floor, lo=0.0)
        check_int("start", start, 0)
        return lambda e: float(eps0 * rate ** max(e - start, 0) + floor)
    raise ValueError(f"kind must be 'imagenet', 'logistic', 'moons', 'constant', 'exponential' or callable, got {kind!r}")


# ---------------------------------------------------------------------------
# The optimizer (init / forward_params / step / final_params)


class AskewState(NamedTuple):
    params: tuple          # latent weights, weight units
    base_state: BaseState
    scales: tuple          # per-tensor scale used for the last step
    frozen_scales: tuple | None
    n_skewed: int          # skewed coordinates in the last step (diagnostic)


class AskewSGD(NamedTuple):
    """AskewSGD configuration (ALGORITHMS §4.1).

    levels : Levels in scaled units (binary ±1 default; ``uniform_levels(17)``
        for the ImageNet "4-bit" grid).
    alpha : restoring rate (notebooks: 0.1 logistic, 1 two-moons; ImageNet: 1).
    base : "sgd", "adam" or a BaseOptimizer (ImageNet: SGD momentum 0.9, wd 1e-4).
    scale : a positive float (fixed per-tensor scale) or "sawb" (A3).
    sawb_bits : b in (A3).
    scale_freeze_epoch : SAWB only; the scale computed at the first step of this
        epoch is used for all later epochs (ImageNet: 100).  None: never frozen.
    clamp_nu : clip nu to ±s/(4 lr) after the switching test (ImageNet code).
    midpoint_guard : 1e-6 as in the ImageNet code.
    clamp_after_step : clamp the weights to the hull s*[q_1, q_m] after each
        step (notebooks do; the ImageNet code clamps before the next step).
    final_scale : "train" (default) or "live" (recompute SAWB for the final
        quantization, as the published evaluation does, §7.4.5).
    """

    levels: Levels = binary_levels()
    alpha: float = 1.0
    base: object = "sgd"
    scale: object = 1.0
    sawb_bits: int = 4
    scale_freeze_epoch: int | None = None
    clamp_nu: bool = False
    midpoint_guard: float = 1e-6
    clamp_after_step: bool = True
    final_scale: str = "train"

    def validated(self) -> "AskewSGD":
        """This configuration with ``base`` resolved; TypeError/ValueError naming the first bad field."""
        check_levels(self.levels)
        check_real("alpha", self.alpha, lo=0.0, lo_open=True)
        if isinstance(self.scale, str):
            if self.scale != "sawb":
                raise ValueError(f"scale must be a positive float or 'sawb', got {self.scale!r}")
        else:
            check_scale(self.scale)
        check_int("sawb_bits", self.sawb_bits, 2)
        if self.scale_freeze_epoch is not None:
            check_int("scale_freeze_epoch", self.scale_freeze_epoch, 0)
        for name in ("clamp_nu", "clamp_after_step"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.final_scale not in ("train", "live"):
            raise ValueError(f"final_scale must be 'train' or 'live', got {self.final_scale!r}")
        check_real("midpoint_guard", self.midpoint_guard, lo=0.0)
        return self._replace(base=validate_base(self.base))

    def init(self, params: Sequence[np.ndarray]) -> AskewState:
        cfg = self.validated()
        params = check_params(params)
        scales = tuple(_scale_of(p, cfg, i) for i, p in enumerate(params))
        return AskewState(params, cfg.base.init(params), scales, None, 0)

    def forward_params(self, state: AskewState, rng: np.random.Generator | None = None) -> list[np.ndarray]:
        """AskewSGD evaluates the loss at the (real-valued) latent weights."""
        return list(state.params)

    def step(self, state: AskewState, grads: Sequence[npt.ArrayLike], lr: float, eps: float,
             epoch: int = 0) -> AskewState:
        """One AskewSGD step: (A2) per tensor, then the base optimizer on -d.

        Checks first (nothing is computed on bad input): ``state`` an AskewState,
        ``grads`` one finite array per tensor of its shape, lr > 0, eps > 0, epoch >= 0.
        """
        cfg = self.validated()
        _check_state(state, AskewState)
        grads = check_step_args(state.params, grads, lr, epoch)
        check_real("eps", eps, lo=0.0, lo_open=True)
        scales, frozen = _scales_for_step(state, cfg, epoch)
        new_grads, projected, n_sk = [], [], 0
        for w, g, s in zip(state.params, grads, scales):
            clamp = s / (4.0 * lr) if cfg.clamp_nu else None
            d, sk = _direction(w, g, cfg.levels, eps, cfg.alpha, s, clamp, cfg.midpoint_guard)
            n_sk += int(sk.sum())
            new_grads.append(-d)
            projected.append(np.clip(w, s * cfg.levels.lo, s * cfg.levels.hi))
        new_params, bstate = cfg.base._update(projected, new_grads, state.base_state, lr)
        if cfg.clamp_after_step:
            new_params = [np.clip(p, s * cfg.levels.lo, s * cfg.levels.hi) for p, s in zip(new_params, scales)]
        return AskewState(tuple(new_params), bstate, tuple(scales), frozen, n_sk)

    def final_params(self, state: AskewState) -> list[np.ndarray]:
        """Hard quantization s*round(clip(w/s)) -- exactly on the grid."""
        cfg = self.validated()
        _check_state(state, AskewState)
        out = []
        for w, s in zip(state.params, state.scales):
            if cfg.final_scale == "live" and cfg.scale == "sawb":
                s = sawb_scale(w, cfg.sawb_bits)
            out.append(_quantize_nearest(w, cfg.levels, s))
        return out


def _check_state(state, cls):
    if not isinstance(state, cls):
        raise TypeError(f"state must be the {cls.__name__} returned by init/step, got {type(state).__name__}")


def _scale_of(p, cfg, i=0) -> float:
    if cfg.scale == "sawb":
        try:
            return sawb_scale(p, cfg.sawb_bits)
        except ValueError as exc:
            raise ValueError(f"SAWB scale of params[{i}]: {exc}") from None
    return float(cfg.scale)


def _scales_for_step(state, cfg, epoch):
    """Per-tensor scales for this step, with the ImageNet freeze rule (§4.1)."""
    if cfg.scale != "sawb":
        return tuple(float(cfg.scale) for _ in state.params), None
    fe = cfg.scale_freeze_epoch
    if fe is not None and epoch > fe and state.frozen_scales is not None:
        return state.frozen_scales, state.frozen_scales
    live = tuple(_scale_of(p, cfg, i) for i, p in enumerate(state.params))
    frozen = state.frozen_scales
    if fe is not None and epoch >= fe and frozen is None:
        frozen = live
    return live, frozen
