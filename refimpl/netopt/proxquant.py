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

from .base import BaseState, validate_base
from .levels import Levels, binary_levels, quantize_nearest

__all__ = ["ProxQuant", "ProxQuantState", "prox_w_shaped"]


def prox_w_shaped(theta, levels: Levels, scale: float, lam: float):
    """prox_{lam R} for R = distance to the nearest grid point s*q (B2); shape-preserving."""
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam!r}")
    theta = np.asarray(theta, dtype=np.float64)
    q = quantize_nearest(theta, levels, scale)
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

    def validated(self):
        if not isinstance(self.levels, Levels):
            raise TypeError(f"levels must be a Levels, got {type(self.levels).__name__}")
        if not (isinstance(self.scale, (int, float)) and self.scale > 0):
            raise ValueError(f"scale must be a positive float, got {self.scale!r}")
        if not (np.isfinite(self.lambda_rate) and self.lambda_rate >= 0):
            raise ValueError(f"lambda_rate must be >= 0, got {self.lambda_rate!r}")
        return self._replace(base=validate_base(self.base))

    def init(self, params: Sequence[np.ndarray]) -> ProxQuantState:
        cfg = self.validated()
        params = tuple(np.array(p, dtype=np.float64) for p in params)
        return ProxQuantState(params, cfg.base.init(params), 0)

    def forward_params(self, state, rng=None):
        return list(state.params)

    def step(self, state: ProxQuantState, grads, lr: float, eps: float | None = None, epoch: int = 0):
        cfg = self.validated()
        t = state.t + 1
        lam = cfg.lambda_rate * t
        new, bstate = cfg.base.update(list(state.params), grads, state.base_state, lr)
        new = [prox_w_shaped(p, cfg.levels, cfg.scale, lam) for p in new]
        return ProxQuantState(tuple(new), bstate, t)

    def final_params(self, state):
        return [quantize_nearest(w, self.levels, self.scale) for w in state.params]
