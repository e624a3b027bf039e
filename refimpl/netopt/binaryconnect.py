"""BinaryConnect with a straight-through gradient (Courbariaux et al., NeurIPS 2015).

ALGORITHMS §4.2, (B1).  Stochastic BinaryConnect is **[code]** (aistats2023/537
notebooks: ``BinarizeF2``, ``BinaryLinear2``, ``sto_binaryconnect_net``);
deterministic BinaryConnect uses the standard w_b = sign(w); which one the
AskewSGD paper compared against is [unconfirmed].

    (B1)  forward:  w_b = +1 with probability clip((w+1)/2, 0, 1), else -1   (stochastic)
                    w_b = sign(w)                                             (deterministic)
          backward: dL/dw := dL/dw_b   (identity STE)
          step the latent w with the base optimizer, then clamp w to [-1, 1].

Generalisation (a pure extension, binary is the default): for a uniform level
set ``s*Q`` the deterministic forward is nearest-level rounding and the
stochastic forward is stochastic rounding between the two bracketing levels,
which for Q = {-1, +1}, s = 1 is exactly (B1)'s probability.

Departure: sign(0) := +1 (ties to the upper level) so that forward and final
weights are always on the grid; torch's sign(0) = 0 is off-grid.
Randomness: the stochastic forward consumes one U[0,1) per weight per step from
the Generator passed to ``forward_params``, in C order tensor by tensor.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import numpy.typing as npt

from .base import BaseState, check_params, check_step_args, validate_base
from .levels import Levels, _quantize_nearest, binary_levels, check_levels, check_scale

__all__ = ["BinaryConnect", "BinaryConnectState", "stochastic_levels"]


def stochastic_levels(w: npt.ArrayLike, levels: Levels, scale: float, u: npt.ArrayLike) -> np.ndarray:
    """Stochastic rounding of clip(w/s) between its bracketing levels, times s.

    P(upper) = (w/s - lower)/spacing; with u ~ U[0,1) of w's shape, the upper
    level is taken iff u < P(upper).  For binary levels: P(+1) = clip((w+1)/2, 0, 1) (B1).
    """
    check_levels(levels)
    scale = check_scale(scale)
    w = np.asarray(w, dtype=np.float64)
    if np.shape(u) != w.shape:
        raise ValueError(f"u must have w's shape {w.shape}, got {np.shape(u)}")
    return _stochastic_levels(w, levels, scale, u)


def _stochastic_levels(w, levels, scale, u):
    z = (np.clip(np.asarray(w, dtype=np.float64) / scale, levels.lo, levels.hi) - levels.lo) / levels.spacing
    k = np.clip(np.floor(z), 0, levels.values.size - 2)
    p_up = z - k
    k = k + (u < p_up)
    return scale * (levels.lo + k * levels.spacing)


class BinaryConnectState(NamedTuple):
    params: tuple        # latent (real) weights, clamped to the hull
    base_state: BaseState


class BinaryConnect(NamedTuple):
    """BinaryConnect configuration.

    stochastic : False -> w_b = nearest level (sign for binary); True -> (B1) sampling.
    levels, scale : level set and fixed per-tensor scale (binary ±1, s = 1 default).
    base : "sgd" (notebooks), "adam" or a BaseOptimizer.
    """

    stochastic: bool = False
    levels: Levels = binary_levels()
    scale: float = 1.0
    base: object = "sgd"

    def validated(self) -> BinaryConnect:
        """This configuration with ``base`` resolved; TypeError/ValueError naming the first bad field."""
        check_levels(self.levels)
        check_scale(self.scale)
        if not isinstance(self.stochastic, (bool, np.bool_)):
            raise ValueError(f"stochastic must be a bool, got {self.stochastic!r}")
        return self._replace(base=validate_base(self.base))

    def init(self, params: Sequence[np.ndarray]) -> BinaryConnectState:
        cfg = self.validated()
        s = float(cfg.scale)
        params = tuple(np.clip(p, s * cfg.levels.lo, s * cfg.levels.hi) for p in check_params(params))
        return BinaryConnectState(params, cfg.base.init(params))

    def forward_params(self, state: BinaryConnectState,
                       rng: np.random.Generator | None = None) -> list[np.ndarray]:
        """The quantized weights w_b the loss is evaluated at (B1 forward)."""
        cfg = self.validated()
        _check_state(state)
        if not cfg.stochastic:
            return [_quantize_nearest(w, cfg.levels, cfg.scale) for w in state.params]
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator for stochastic BinaryConnect, got {type(rng).__name__}")
        return [_stochastic_levels(w, cfg.levels, cfg.scale, rng.random(w.shape)) for w in state.params]

    def step(self, state: BinaryConnectState, grads: Sequence[npt.ArrayLike], lr: float, eps: float | None = None,
             epoch: int = 0) -> BinaryConnectState:
        """STE step: latent <- clamp(base_update(latent, dL/dw_b)); eps is ignored.

        Checks first: ``state`` a BinaryConnectState, ``grads`` one finite array per
        tensor of its shape, lr > 0, epoch >= 0.
        """
        cfg = self.validated()
        _check_state(state)
        grads = check_step_args(state.params, grads, lr, epoch)
        s = float(cfg.scale)
        new, bstate = cfg.base._update(list(state.params), grads, state.base_state, lr)
        new = [np.clip(p, s * cfg.levels.lo, s * cfg.levels.hi) for p in new]
        return BinaryConnectState(tuple(new), bstate)

    def final_params(self, state: BinaryConnectState) -> list[np.ndarray]:
        """Deterministic quantization of the latent weights (sign for binary)."""
        cfg = self.validated()
        _check_state(state)
        return [_quantize_nearest(w, cfg.levels, cfg.scale) for w in state.params]


def _check_state(state):
    if not isinstance(state, BinaryConnectState):
        raise TypeError(f"state must be the BinaryConnectState returned by init/step, got {type(state).__name__}")
