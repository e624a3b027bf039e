"""Base optimizers (SGD with momentum / weight decay, Adam) for the netopt methods.

The quantized-network optimizers of ALGORITHMS §4 transform a gradient and then
delegate the step to a standard optimizer: AskewSGD hands ``-d`` to SGD
(ImageNet code, momentum 0.9 and weight decay) or Adam (two-moons notebook),
BinaryConnect steps the latent weights with SGD, ProxQuant takes a prox step
after the base step.  These are the PyTorch update rules, restated so that the
reference implementation has no torch dependency:

* SGD (torch.optim.SGD, dampening 0, no Nesterov)::

      g <- g + wd * w;   m <- mu * m + g   (m = g on the first step);   w <- w - lr * m

* Adam (torch.optim.Adam, no amsgrad)::

      m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
      w <- w - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)

State is a NamedTuple of per-tensor lists; ``*_update`` functions are pure
(they return new arrays and a new state).  No randomness is consumed.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

__all__ = ["BaseOptimizer", "BaseState", "validate_base"]


class BaseState(NamedTuple):
    """Per-tensor moment buffers and the step counter (t = steps taken)."""

    m: tuple
    v: tuple
    t: int


class BaseOptimizer(NamedTuple):
    """Configuration of the base optimizer.

    kind: ``"sgd"`` or ``"adam"``; momentum (SGD), weight_decay (SGD: added to the
    gradient before momentum, as in the AskewSGD ImageNet pre-step), betas and
    eps (Adam).
    """

    kind: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def init(self, params: Sequence[np.ndarray]) -> BaseState:
        z = tuple(np.zeros_like(p, dtype=np.float64) for p in params)
        z2 = tuple(np.zeros_like(p, dtype=np.float64) for p in params)
        return BaseState(z, z2, 0)

    def update(self, params, grads, state: BaseState, lr: float):
        """One step; returns (new_params, new_state)."""
        t = state.t + 1
        new_p, new_m, new_v = [], [], []
        for w, g, m, v in zip(params, grads, state.m, state.v):
            if self.kind == "sgd":
                g = g + self.weight_decay * w if self.weight_decay else g
                if self.momentum:
                    m = g.copy() if t == 1 else self.momentum * m + g
                    step = m
                else:
                    step = g
                new_p.append(w - lr * step)
                new_m.append(m)
                new_v.append(v)
            else:  # adam
                m = self.beta1 * m + (1.0 - self.beta1) * g
                v = self.beta2 * v + (1.0 - self.beta2) * g * g
                mhat = m / (1.0 - self.beta1**t)
                vhat = v / (1.0 - self.beta2**t)
                new_p.append(w - lr * mhat / (np.sqrt(vhat) + self.eps))
                new_m.append(m)
                new_v.append(v)
        return new_p, BaseState(tuple(new_m), tuple(new_v), t)


def validate_base(base) -> BaseOptimizer:
    """Accept ``"sgd"``, ``"adam"`` or a BaseOptimizer; ValueError otherwise."""
    if isinstance(base, str):
        base = BaseOptimizer(kind=base)
    if not isinstance(base, BaseOptimizer):
        raise TypeError(f"base must be 'sgd', 'adam' or a BaseOptimizer, got {base!r}")
    if base.kind not in ("sgd", "adam"):
        raise ValueError(f"base.kind must be 'sgd' or 'adam', got {base.kind!r}")
    if not (0.0 <= base.momentum < 1.0):
        raise ValueError(f"base.momentum must be in [0, 1), got {base.momentum!r}")
    if base.weight_decay < 0:
        raise ValueError(f"base.weight_decay must be >= 0, got {base.weight_decay!r}")
    if not (0.0 <= base.beta1 < 1.0 and 0.0 <= base.beta2 < 1.0):
        raise ValueError(f"base betas must be in [0, 1), got {(base.beta1, base.beta2)!r}")
    return base
