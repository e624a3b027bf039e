"""ProxQuant (Bai, Wang & Liberty, ICLR 2019), ALGORITHMS §4.3, (B2).

Standard definition; the AskewSGD paper's exact variant is [unconfirmed].

    (B2)  theta <- prox_{lambda_t R}( theta - eta * grad L(theta) ),   R(theta) = sum_i dist(theta_i, s*Q)
          prox (W-shaped regulariser): with q the nearest level,
              theta_i <- q + sign(theta_i - q) * max(|theta_i - q| - lambda_t, 0)
          lambda_t = lambda_rate * t  (linear homotopy, t = step count, 1-based),
          then a final hard quantization.

The inner step "theta - eta grad" is the base optimizer's step (SGD by default;
ProxQuant's own experiments use Adam, available with ``base="adam"``).
No randomness.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import numpy.typing as npt

from .base import BaseState, check_params, check_real, check_step_args, validate_base
from .levels import Levels, _quantize_nearest, binary_levels, check_levels, check_scale

__all__ = ["ProxQuant", "ProxQuantState", "prox_w_shaped"]


def prox_w_shaped(theta: npt.ArrayLike, levels: Levels, scale: float, lam: float) -> np.ndarray:
    """prox_{lam R} for R = distance to the nearest grid point s*q (B2); shape-preserving."""
    check_real("lam", lam, lo=0.0)
    check_levels(levels)
    return _prox(theta, levels, check_scale(scale), lam)


def _prox(theta, levels, scale, lam):
    theta = np.asarray(theta, dtype=np.float64)
    q = _quantize_nearest(theta, levels, scale)
    # Outside the hull the nearest level is the end level; the prox still shrinks toward it.
    r = theta - q
    return q + np.sign(r) * np.maximum(np.abs(r) - lam, 0.0)


class ProxQuantState(NamedTuple):
    params: tuple
    base_state: BaseState
    t: int


class ProxQuant(NamedTuple):
    """ProxQuant configuration: levels, fixed scale, lambda_rate (lambda_t = rate*t), base."""

    levels: Levels = binary_levels()
    scale: float = 1.0
    lambda_rate: float = 1e-4
    base: object = "sgd"

    def validated(self) -> ProxQuant:
        """This configuration with ``base`` resolved; TypeError/ValueError naming the first bad field."""
        check_levels(self.levels)
        check_scale(self.scale)
        check_real("lambda_rate", self.lambda_rate, lo=0.0)
        return self._replace(base=validate_base(self.base))

    def init(self, params: Sequence[np.ndarray]) -> ProxQuantState:
        cfg = self.validated()
        params = check_params(params)
        return ProxQuantState(params, cfg.base.init(params), 0)

    def forward_params(self, state: ProxQuantState, rng: np.random.Generator | None = None) -> list[np.ndarray]:
        _check_state(state)
        return list(state.params)

    def step(self, state: ProxQuantState, grads: Sequence[npt.ArrayLike], lr: float, eps: float | None = None,
             epoch: int = 0) -> ProxQuantState:
        """Base step then prox (B2).  Checks first: state, grads (count, shapes, finite), lr > 0, epoch >= 0."""
        cfg = self.validated()
        _check_state(state)
        grads = check_step_args(state.params, grads, lr, epoch)
        t = state.t + 1
        lam = cfg.lambda_rate * t
        new, bstate = cfg.base._update(list(state.params), grads, state.base_state, lr)
        new = [_prox(p, cfg.levels, float(cfg.scale), lam) for p in new]
        return ProxQuantState(tuple(new), bstate, t)

    def final_params(self, state: ProxQuantState) -> list[np.ndarray]:
        cfg = self.validated()
        _check_state(state)
        return [_quantize_nearest(w, cfg.levels, float(cfg.scale)) for w in state.params]


def _check_state(state):
    if not isinstance(state, ProxQuantState):
        raise TypeError(f"state must be the ProxQuantState returned by init/step, got {type(state).__name__}")
