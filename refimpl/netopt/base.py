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
import numpy.typing as npt

__all__ = ["BaseOptimizer", "BaseState", "validate_base", "check_real", "check_int", "check_params",
           "check_step_args"]


# ---------------------------------------------------------------------------
# Argument checks shared by the netopt optimizers (validation once, at the public entry point).


def check_real(name: str, value: object, *, lo: float = -np.inf, lo_open: bool = False, hi: float = np.inf,
               hi_open: bool = False, finite: bool = True) -> float:
    """``float(value)`` for a real number in the interval; TypeError/ValueError naming ``name`` and the value."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if finite and not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if v != v or (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
        if hi == np.inf:
            where = f"{'>' if lo_open else '>='} {lo:g}"
        else:
            where = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be {where}{' and finite' if finite else ''}, got {value!r}")
    return v


def check_int(name: str, value: object, minimum: int = 0) -> int:
    """``int(value)`` for an integer >= minimum (bool refused); TypeError/ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_params(params: Sequence[npt.ArrayLike], name: str = "params") -> tuple[np.ndarray, ...]:
    """A non-empty list/tuple of finite float arrays, returned as float64 copies."""
    if isinstance(params, np.ndarray) or not isinstance(params, (list, tuple)):
        raise TypeError(f"{name} must be a list of arrays (one per weight tensor), got {type(params).__name__}")
    if len(params) == 0:
        raise ValueError(f"{name} must hold at least one array, got {list(params)!r}")
    out = []
    for i, p in enumerate(params):
        try:
            a = np.array(p, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name}[{i}] must be a float array, got {type(p).__name__}") from None
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}[{i}] has non-finite entries (shape {a.shape})")
        out.append(a)
    return tuple(out)


def check_step_args(params: Sequence[np.ndarray], grads: Sequence[npt.ArrayLike], lr: float,
                    epoch: int) -> list[np.ndarray]:
    """The checks every netopt ``step`` makes before it computes anything; returns the gradients as float64.

    ``grads``: one finite array per parameter tensor, of its shape (a non-finite
    gradient raises FloatingPointError naming it, as torchport does); ``lr`` > 0
    and finite; ``epoch`` an int >= 0.
    """
    if isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
        raise TypeError(f"grads must be a list of arrays (one per parameter tensor), got {type(grads).__name__}")
    if len(grads) != len(params):
        raise ValueError(f"grads has {len(grads)} arrays, the optimizer holds {len(params)} parameter tensors")
    out = []
    for i, (g, p) in enumerate(zip(grads, params)):
        try:
            g = np.asarray(g, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"grads[{i}] must be a float array, got {type(g).__name__}") from None
        if g.shape != p.shape:
            raise ValueError(f"grads[{i}] has shape {g.shape}, parameter {i} has shape {p.shape}")
        if not np.all(np.isfinite(g)):
            raise FloatingPointError(f"non-finite gradient in grads[{i}] (shape {g.shape})")
        out.append(g)
    check_real("lr", lr, lo=0.0, lo_open=True)
    check_int("epoch", epoch, 0)
    return out


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

    def update(self, params: Sequence[np.ndarray], grads: Sequence[npt.ArrayLike], state: BaseState,
               lr: float) -> tuple[list[np.ndarray], BaseState]:
        """One step; returns (new_params, new_state).  Checks grads (count, shapes, finite) and lr > 0."""
        if not isinstance(state, BaseState):
            raise TypeError(f"state must be a BaseState (from init), got {type(state).__name__}")
        grads = check_step_args(params, grads, lr, 0)
        return self._update(params, grads, state, lr)

    def _update(self, params, grads, state: BaseState, lr: float):
        """update without the argument checks (the optimizers' steps checked them once)."""
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


def validate_base(base: str | BaseOptimizer) -> BaseOptimizer:
    """Accept ``"sgd"``, ``"adam"`` or a BaseOptimizer; ValueError otherwise."""
    if isinstance(base, str):
        if base not in ("sgd", "adam"):
            raise ValueError(f"base must be 'sgd', 'adam' or a BaseOptimizer, got {base!r}")
        base = BaseOptimizer(kind=base)
    if not isinstance(base, BaseOptimizer):
        raise TypeError(f"base must be 'sgd', 'adam' or a BaseOptimizer, got {base!r}")
    if base.kind not in ("sgd", "adam"):
        raise ValueError(f"base.kind must be 'sgd' or 'adam', got {base.kind!r}")
    check_real("base.momentum", base.momentum, lo=0.0, hi=1.0, hi_open=True)
    check_real("base.weight_decay", base.weight_decay, lo=0.0)
    check_real("base.beta1", base.beta1, lo=0.0, hi=1.0, hi_open=True)
    check_real("base.beta2", base.beta2, lo=0.0, hi=1.0, hi_open=True)
    check_real("base.eps", base.eps, lo=0.0, lo_open=True)
    return base
