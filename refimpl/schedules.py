"""Step-size schedules for the samplers (ALGORITHMS.md §3.7).

Pass a schedule as ``step_size=`` to :func:`refimpl.sample`.  Each schedule is a
frozen dataclass exposing ``code`` (a float64 vector read by the jitted loop,
:func:`refimpl._loop.schedule_at`) and pure-Python ``step_size(k)``,
``noise_scale(k)`` and ``sampling(k)`` giving the same values.

* :class:`Constant` -- η_k = η.
* :class:`Cyclical` -- cSGLD (S8), Zhang, Li, Zhang, Chen & Wilson, ICLR 2020 eq. (1),
  as in ruqizhang/low-precision-sgld bnn/train.py (per *iteration*):
  η_k = (η₀/2)(cos(π·(k mod P)/P) + 1), P = ⌊K/M⌋.  **Sampling-phase rule**: step k
  is in the sampling phase when (k mod P)/P ≥ β (``explore_fraction``); only
  sampling-phase steps are stored/accumulated by the driver.  The published CIFAR
  runs inject noise throughout (``noise_in_exploration=True``, the default) and
  keep the last 5 of 35 epochs of each cycle (β = 30/35); the cSGLD paper's
  noise-free exploration stage is ``noise_in_exploration=False`` -- not what the
  published LP-SGLD runs did.
* :class:`Decay` -- (S7), per *epoch* e of E: t = e/E, f(t) = 1 (t ≤ 0.5),
  1 − 0.99(t − 0.5)/0.4 (0.5 < t ≤ 0.9), 0.01 (t > 0.9); samples from epoch
  ``sample_from_epoch`` on (the published runs keep the last 50 epochs).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from refimpl import formulas
from refimpl.formulas import decay_factor

__all__ = ["Constant", "Cyclical", "Decay", "as_schedule"]


def _pos_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _pos_int(name, value, lo=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    if value > 2**53:  # the schedule's code array is float64: larger counts would not be exact
        raise ValueError(f"{name} must be an integer >= {lo} and at most 2**53, got {value!r}")
    return int(value)


def _ro(values):
    a = np.array(values, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class Constant:
    """Constant step size η."""

    step_size: float
    code: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "step_size", _pos_float("step_size", self.step_size))
        object.__setattr__(self, "code", _ro([0, self.step_size]))

    def eta(self, k: int) -> float:
        return self.step_size

    def noise_scale(self, k: int) -> float:
        return 1.0

    def sampling(self, k: int) -> bool:
        return True


@dataclass(frozen=True)
class Cyclical:
    """cSGLD cyclical schedule (S8) over ``n_steps`` iterations with ``n_cycles`` cycles."""

    step_size: float
    n_steps: int
    n_cycles: int
    explore_fraction: float = 0.0
    noise_in_exploration: bool = True
    code: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        eta0 = _pos_float("step_size", self.step_size)
        K = _pos_int("n_steps", self.n_steps)
        M = _pos_int("n_cycles", self.n_cycles)
        if M > K:
            raise ValueError(f"n_cycles must be <= n_steps ({K}), got {M!r}")
        b = self.explore_fraction
        if isinstance(b, bool) or not isinstance(b, numbers.Real) or not 0.0 <= b < 1.0:
            raise ValueError(f"explore_fraction must lie in [0, 1), got {b!r}")
        object.__setattr__(self, "code", _ro([1, eta0, K // M, float(b), 1.0 if self.noise_in_exploration else 0.0]))

    @property
    def period(self) -> int:
        """P = ⌊K/M⌋ iterations per cycle."""
        return int(self.code[2])

    def eta(self, k: int) -> float:
        return formulas.cyclical_step_size(k, self.period, float(self.code[1]))

    def sampling(self, k: int) -> bool:
        return (k % self.period) / self.period >= self.code[3]

    def noise_scale(self, k: int) -> float:
        return 1.0 if (self.sampling(k) or self.noise_in_exploration) else 0.0


@dataclass(frozen=True)
class Decay:
    """Decay schedule (S7) applied per epoch of ``steps_per_epoch`` iterations."""

    step_size: float
    n_epochs: int
    steps_per_epoch: int
    sample_from_epoch: int = 0
    code: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        eta0 = _pos_float("step_size", self.step_size)
        E = _pos_int("n_epochs", self.n_epochs)
        S = _pos_int("steps_per_epoch", self.steps_per_epoch)
        f = _pos_int("sample_from_epoch", self.sample_from_epoch, lo=0)
        object.__setattr__(self, "code", _ro([2, eta0, E, S, f]))

    def eta(self, k: int) -> float:
        return self.code[1] * decay_factor((k // self.steps_per_epoch) / self.n_epochs)

    def noise_scale(self, k: int) -> float:
        return 1.0

    def sampling(self, k: int) -> bool:
        return k // self.steps_per_epoch >= self.sample_from_epoch


#: any step-size schedule object
Schedule = Constant | Cyclical | Decay


def as_schedule(step_size: float | Schedule) -> Schedule:
    """A schedule from a positive number or a schedule object; ``ValueError`` naming ``step_size``."""
    if isinstance(step_size, (Constant, Cyclical, Decay)):
        return step_size
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real) or not math.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"step_size must be a finite number > 0 or a refimpl.schedules schedule, got {step_size!r}")
    return Constant(float(step_size))
