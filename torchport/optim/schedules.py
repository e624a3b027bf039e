"""Step-size schedules and sample collection: cyclical (S8) and the decay schedule (S7).

Source: ruqizhang/low-precision-sgld bnn/train.py (spec §3.7).  Pure functions
of the iteration counter, so a resumed run reproduces them exactly (the only
state is the counter, which the training loop owns and checkpoints).
"""

from __future__ import annotations

import math
import numbers

from refimpl import formulas
from refimpl.formulas import decay_factor

__all__ = ["CyclicalSchedule", "decay_schedule_factor"]


def _step_index(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def decay_schedule_factor(epoch: int, epochs: int) -> float:
    """f(t) of (S7) with t = epoch/epochs: 1 (t ≤ 0.5), 1 − 0.99(t − 0.5)/0.4 (≤ 0.9), 0.01 after."""
    _step_index("epoch", epoch)
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Real) or not (math.isfinite(epochs) and epochs > 0):
        raise ValueError(f"epochs must be a finite number > 0, got {epochs!r}")
    return decay_factor(epoch / epochs)  # the one definition, shared with refimpl's Decay schedule


class CyclicalSchedule:
    """Cyclical step size (cSGLD) -- spec (S8); Zhang et al. ICLR 2020 eq. (1), LP-SGLD CIFAR code.

    lr_k = (lr_0/2)·(cos(π·(k mod C)/C) + 1),  C = ⌊total_steps/num_cycles⌋, k = 0, 1, ….

    ``should_collect(k)`` says whether to save a sample **after** step k: the
    step ends an epoch (``(k+1) % steps_per_epoch == 0``) that is one of the last
    ``samples_per_cycle`` epochs of its cycle (published: 7 cycles of 35 epochs,
    5 samples per cycle).  ``exploration_fraction`` > 0 marks the first part of
    each cycle as noise-free exploration (``add_noise(k)`` False); **not** what
    the published runs did (they inject noise throughout), default 0.
    """

    def __init__(self, lr0: float, total_steps: int, num_cycles: int, *, steps_per_epoch: int = 1,
                 samples_per_cycle: int = 5, exploration_fraction: float = 0.0):
        if isinstance(lr0, bool) or not isinstance(lr0, numbers.Real) or not (math.isfinite(lr0) and lr0 > 0):
            raise ValueError(f"lr0 must be a finite number > 0, got {lr0!r}")
        for name, v in (("total_steps", total_steps), ("num_cycles", num_cycles),
                        ("steps_per_epoch", steps_per_epoch)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if total_steps // num_cycles < 1:
            raise ValueError(f"num_cycles={num_cycles} exceeds total_steps={total_steps}")
        if not isinstance(samples_per_cycle, int) or samples_per_cycle < 0:
            raise ValueError(f"samples_per_cycle must be an int >= 0, got {samples_per_cycle!r}")
        if not 0.0 <= exploration_fraction < 1.0:
            raise ValueError(f"exploration_fraction must be in [0, 1), got {exploration_fraction!r}")
        self.lr0, self.total_steps, self.num_cycles = float(lr0), total_steps, num_cycles
        self.steps_per_epoch, self.samples_per_cycle = steps_per_epoch, samples_per_cycle
        self.exploration_fraction = float(exploration_fraction)
        self.cycle_length = total_steps // num_cycles

    def lr(self, k: int) -> float:
        """lr_k of (S8)."""
        _step_index("k", k)
        c = self.cycle_length
        return formulas.cyclical_step_size(k, c, self.lr0)

    def position_in_cycle(self, k: int) -> float:
        """(k mod C)/C ∈ [0, 1)."""
        return (k % self.cycle_length) / self.cycle_length

    def add_noise(self, k: int) -> bool:
        """False during the optional exploration stage of each cycle, True otherwise."""
        return self.position_in_cycle(k) >= self.exploration_fraction

    def should_collect(self, k: int) -> bool:
        """True if a sample should be saved after step k (end of one of a cycle's last epochs)."""
        if k >= self.num_cycles * self.cycle_length or (k + 1) % self.steps_per_epoch:
            return False
        c = self.cycle_length
        steps_left_in_cycle = c - 1 - (k % c)  # 0 at the cycle's last step
        return steps_left_in_cycle < self.samples_per_cycle * self.steps_per_epoch
