"""Quantized-network optimizers (ALGORITHMS §4): AskewSGD, BinaryConnect, ProxQuant.

Each optimizer is an immutable configuration (NamedTuple) with pure methods
``init(params) -> state``, ``forward_params(state, rng)`` (the weights the loss is
evaluated at), ``step(state, grads, lr, eps, epoch) -> state`` and
``final_params(state)`` (hard-quantized, exactly on the level grid).
:func:`refimpl.netopt.problems.train` runs any of them on the toy problems and
on an MNIST MLP.  See docs/askewsgd.md.
"""

from .askewsgd import AskewSGD, askew_direction, epsilon_schedule, psi, psi_prime  # noqa: F401
from .base import BaseOptimizer  # noqa: F401
from .binaryconnect import BinaryConnect  # noqa: F401
from .levels import Levels, binary_levels, kbit_levels, on_grid, quantize_nearest, sawb_scale, uniform_levels  # noqa: F401
from .problems import NaNGradientError, train  # noqa: F401
from .proxquant import ProxQuant  # noqa: F401
