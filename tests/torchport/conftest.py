"""torchport test fixtures: the ``backend`` fixture (POT-style) running one test body on refimpl and torchport (both paths).

A backend exposes NumPy-in / NumPy-out wrappers of the quantizers with a
generator made from an integer seed, so statistical tests can be written once
and run against both packages (each with its own RNG stream).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import importlib

# `import refimpl.quantize as rq` would bind the function refimpl.quantize (re-exported by refimpl)
rq = importlib.import_module("refimpl.quantize")
import torchport.quantize as tq  # noqa: E402


class RefimplBackend:
    name = "refimpl"

    @staticmethod
    def generator(seed):
        return np.random.default_rng(seed)

    @staticmethod
    def stochastic_round(x, fmt, gen):
        return rq.stochastic_round(np.asarray(x, dtype=np.float64), fmt, gen)

    @staticmethod
    def vc_quantize(mu, var, fmt, gen):
        return rq.vc_quantize(np.asarray(mu, dtype=np.float64), var, fmt, gen)

    @staticmethod
    def categorical_offset(mu, var, delta, gen):
        return rq.categorical_offset(mu, var, delta, gen)


class TorchportBackend:
    """torchport's quantizers on the default path (``exact = False``) or, subclassed, the exact path."""

    name = "torchport"
    exact = False

    @staticmethod
    def generator(seed):
        return torch.Generator().manual_seed(seed)

    @classmethod
    def stochastic_round(cls, x, fmt, gen):
        return tq.stochastic_round(torch.as_tensor(np.asarray(x, dtype=np.float64)), fmt, gen,
                                   exact=cls.exact).numpy()

    @classmethod
    def vc_quantize(cls, mu, var, fmt, gen):
        return tq.vc_quantize(torch.as_tensor(np.asarray(mu, dtype=np.float64)), var, fmt, gen,
                              exact=cls.exact).numpy()

    @staticmethod
    def categorical_offset(mu, var, delta, gen):
        return tq.categorical_offset(torch.as_tensor(np.asarray(mu, dtype=np.float64)), var, delta, gen).numpy()


class TorchportExactBackend(TorchportBackend):
    name = "torchport-exact"
    exact = True


BACKENDS = {"refimpl": RefimplBackend, "torchport": TorchportBackend, "torchport-exact": TorchportExactBackend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    """Runs the test once per backend (refimpl, torchport's default path, torchport's exact path)."""
    return BACKENDS[request.param]
