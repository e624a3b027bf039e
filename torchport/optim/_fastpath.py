"""The default (fast) path of the SGLD/SGHMC optimizers: counter keys, lazy finite flags, seed rule.

``SGLD``, ``LowPrecisionSGLD``, ``SGHMC`` and ``LowPrecisionSGHMC`` run, by default
(``exact=False``), the fused per-parameter updates of :mod:`torchport.fast`
(:func:`torchport.fast.sgld_step`, :func:`torchport.fast.sghmc_step`) with every random
number from the counter stream (docs/fast_path.md): a pure function of (seed, step,
parameter index, stream, element index).  This module holds what the optimizers need
around those functions and nothing of their maths:

* :func:`counter_seed` -- the seed rule: an int in [0, 2^64), or a ``torch.Generator``
  from which one integer in [0, 2^63 - 1) is drawn with ``torch.randint`` (the generator
  advances by that one draw and is not used again);
* :func:`check_fast_format` -- asks :mod:`torchport.fast` whether a format is on the fast
  path (so that formats added there are picked up here without a change);
* :class:`CounterStream` -- the stream's position on the device (seed and step tensors:
  the keys of a step are computed there, no host round trip), and the per-parameter
  finite-gradient flags, OR-ed on the device and read only by :meth:`CounterStream.check`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Optional

import torch

from torchport import counter_rng as cr
from torchport import fast as F

__all__ = ["COMPILE_ENV", "CounterStream", "check_fast_format", "counter_seed", "default_compile"]

_SEED_LIMIT = 1 << 64

#: Environment variable that sets what ``compile=None`` (the default) means: "1" (compile, the
#: default when unset) or "0" (eager).  The test suite sets it to "0" (tests/conftest.py) so that
#: hundreds of short-lived optimizers do not each pay a compile; the compiled update is tested
#: against the eager one explicitly (tests/torchport/test_default_path.py, test_fast.py).
COMPILE_ENV = "QLANGEVIN_COMPILE"


def default_compile() -> bool:
    """What ``compile=None`` means for the default (fast) path: ``$QLANGEVIN_COMPILE`` ("1"/"0"), else True.

    The fast path is only fast compiled: eager, each counter-stream uniform is about a dozen
    separate int64 tensor operations, and a step costs about as much as the exact path's
    (measured on a 3-layer MLP, 2 threads: VC fixed:8:6 1.55 s eager, 0.16 s compiled, 1.38 s
    exact; ResNet-50 CPU: 28 s eager, 0.77 s compiled, 4.6 s exact per step).  Compiling
    happens at the first ``step()`` (seconds to a minute or two) and falls back to eager with a
    warning where ``torch.compile`` cannot run (:func:`torchport.fast.maybe_compile`).
    """
    import os

    value = os.environ.get(COMPILE_ENV, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"environment variable {COMPILE_ENV} must be '0' or '1', got {value!r}")
    return value == "1"


def counter_seed(seed: int | torch.Generator | None, generator: Optional[torch.Generator] = None) -> int:
    """The fast path's integer seed from ``seed=`` (int or ``torch.Generator``) or ``generator=``.

    An int must lie in [0, 2^64) (TypeError/ValueError naming ``seed``).  A generator
    (``generator=``, or ``seed=`` given a generator) gives ``torch.randint(0, 2**63 - 1)``
    drawn from it once.  Neither: ValueError (torchport never uses the global RNG).
    """
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        source = generator
    elif isinstance(seed, torch.Generator):
        source = seed
    elif seed is None:
        raise ValueError("pass seed= (an int or a torch.Generator) or generator= (a torch.Generator); got "
                         "neither (torchport never uses the global RNG)")
    else:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int or a torch.Generator, got {seed!r}")
        if not 0 <= seed < _SEED_LIMIT:
            raise ValueError(f"seed must be an int in [0, 2**64) on the default (fast) path, got {seed!r}")
        return int(seed)
    drawn = torch.randint(0, (1 << 63) - 1, (1,), generator=source, dtype=torch.int64, device=source.device)
    return int(drawn[0])


def check_fast_format(fmt: Any, name: str) -> Any:
    """``fmt`` if :mod:`torchport.fast` supports it, else ValueError naming ``name`` and pointing to exact=True."""
    if fmt is None:
        return None
    try:
        F._check_format(fmt, name)
    except ValueError as exc:
        raise ValueError(f"{name}={fmt!r} is not on the default (fast) path ({exc}); exact=True runs it") from None
    return fmt


class CounterStream:
    """Seed and step of the counter stream on the device, and the lazy finite-gradient flags.

    ``keys(n, device)`` gives key(seed, step, i) for parameter indices i = 0..n-1 (int64,
    on ``device``, computed there from the device step counter); ``advance(flags, indices)``
    ORs the negated finite flags of the parameters that stepped into the device flag
    vector and increments the step counter, all on the device; ``check(names, step)``
    reads the flags once (the only host synchronisation) and raises
    :class:`torchport.fast.NonFiniteGradientError` naming the first bad parameter.
    """

    def __init__(self, seed: int, device: torch.device):
        self.device = torch.device(device)
        self.seed = int(seed)
        self._seed_t = cr.key_tensor(self.seed, self.device)
        self._step_t = torch.zeros((), dtype=torch.int64, device=self.device)
        self._index_t = torch.zeros(0, dtype=torch.int64, device=self.device)
        self._bad = torch.zeros(0, dtype=torch.bool, device=self.device)

    def reset(self, seed: int, steps: int) -> None:
        """Move the stream to (``seed``, ``steps`` completed steps); the flags are cleared."""
        self.seed = int(seed)
        self._seed_t = cr.key_tensor(self.seed, self.device)
        self._step_t.fill_(int(steps))
        self._bad.zero_()

    def _grow(self, n: int) -> None:
        if self._index_t.numel() != n:
            self._index_t = torch.arange(n, dtype=torch.int64, device=self.device)
        if self._bad.numel() < n:
            self._bad = torch.cat([self._bad, torch.zeros(n - self._bad.numel(), dtype=torch.bool,
                                                          device=self.device)])

    def keys(self, n: int) -> torch.Tensor:
        """key(seed, step, i), i = 0..n-1: ``bits(bits(seed, step), i)`` (refimpl.counter_rng), on the device."""
        self._grow(n)
        return cr.counter_bits(cr.counter_bits(self._seed_t, self._step_t), self._index_t)

    def advance(self, flags: Sequence[torch.Tensor], indices: Sequence[int], n: int) -> None:
        """Record the finite flags of the parameters ``indices`` (of n) and count the step."""
        self._grow(n)
        if flags:
            bad = ~torch.stack([f.to(self.device) for f in flags])
            if len(indices) == n:
                self._bad |= bad
            else:
                idx = torch.tensor(list(indices), dtype=torch.int64, device=self.device)
                self._bad[idx] = self._bad[idx] | bad
        self._step_t += 1

    def check(self, names: Sequence[str], step: int) -> None:
        """Raise NonFiniteGradientError for the first flagged parameter (flags cleared); else nothing."""
        bad = self._bad.nonzero()
        if bad.numel():
            i = int(bad[0, 0])
            self._bad.zero_()
            raise F.NonFiniteGradientError(f"non-finite gradient (NaN or inf) in parameter {names[i]} at or "
                                           f"before step {step}")
