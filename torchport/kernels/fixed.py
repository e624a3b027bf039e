"""Fixed point on torch tensors (kind 1), mirroring refimpl/kernels/fixed.py.

The same four functions as every format module: ``nearest(x, code, fmt)``,
``stochastic(x, u, code, fmt)``, ``vc(mu, var, code, fmt, xi, u_round, u_cat)``,
``gap(mu, code, fmt)``; float64 tensors in and out, bit-identical to refimpl.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from refimpl.formats import FixedPoint
from refimpl.slots import FIXED_DELTA, FIXED_HI, FIXED_LO, KIND_FIXED, TIES
from torchport.kernels.common import _cat, _check_call, _round_int

__all__ = ["nearest", "stochastic", "vc", "gap"]

_KINDS, _FMTS = (KIND_FIXED,), (FixedPoint,)


def _fixed_nearest(x, delta, lo, hi, ties):
    inv = 1.0 / delta
    xc = torch.clamp(x, lo - delta, hi + delta)
    q = _round_int(xc * inv, ties) * delta + 0.0
    return torch.where(torch.isnan(x), x, torch.clamp(q, lo, hi))


def _fixed_stochastic(x, u, delta, lo, hi):
    inv = 1.0 / delta
    xc = torch.clamp(x, lo - delta, hi + delta)
    q = torch.floor(xc * inv + u) * delta + 0.0
    return torch.where(torch.isnan(x), x, torch.clamp(q, lo, hi))



def nearest(x: torch.Tensor, code: Sequence[float], fmt: FixedPoint) -> torch.Tensor:
    """Q^d (Q1): clip(round(x/Δ)·Δ, L, U), ties per code[TIES]."""
    _check_call("kernels.fixed.nearest", code, _KINDS, fmt, _FMTS, x=x)
    return _fixed_nearest(x, code[FIXED_DELTA], code[FIXED_LO], code[FIXED_HI], int(code[TIES]))


def stochastic(x: torch.Tensor, u: torch.Tensor, code: Sequence[float], fmt: FixedPoint) -> torch.Tensor:
    """Q^s (Q2'): clip(Δ·floor(x/Δ + u), L, U)."""
    _check_call("kernels.fixed.stochastic", code, _KINDS, fmt, _FMTS, x=x, u=u)
    return _fixed_stochastic(x, u, code[FIXED_DELTA], code[FIXED_LO], code[FIXED_HI])


def vc(mu: torch.Tensor, var: float, code: Sequence[float], fmt: FixedPoint, xi: torch.Tensor, ur: torch.Tensor,
       uc: torch.Tensor) -> torch.Tensor:
    """Q^vc for fixed point: one global Δ, so the branch is a Python-level choice (same floats as ``_vc``)."""
    _check_call("kernels.fixed.vc", code, _KINDS, fmt, _FMTS, var, mu=mu, xi=xi, u_round=ur, u_cat=uc)
    ties = int(code[TIES])
    delta, lo, hi = code[FIXED_DELTA], code[FIXED_LO], code[FIXED_HI]
    se = math.frexp(delta)[1] - 1
    inv = 2.0 ** (-se)
    v0 = 0.25 * delta * delta
    big = 2.0 ** (se + 60)
    mc = torch.clamp(mu, lo - big, hi + big)
    mc = torch.where(torch.isfinite(mu), mc, torch.zeros_like(mc))
    if var > v0:  # branch 1 (Q5)
        x = mc + xi * math.sqrt(var - v0)
        qd = _round_int(x * inv, ties) * delta
        r = x - qd
        c = _cat(r.abs(), v0, delta, uc)
        th = torch.where(r > 0.0, qd + c, torch.where(r < 0.0, qd - c, qd))
    else:  # branch 2 (Q6)
        z = mc * inv
        th = torch.floor(z + ur) * delta
        a = z.abs()
        p = a - torch.floor(a)
        vs = p * (1.0 - p) * delta * delta
        th = torch.where(var > vs, th + _cat(torch.zeros_like(mu), var - vs, delta, uc), th)
    th = torch.clamp(th + 0.0, lo, hi)
    th = torch.where(torch.isinf(mu), torch.where(mu < 0, lo, hi), th)
    return torch.where(torch.isnan(mu), mu, th)


def gap(mu: torch.Tensor, code: Sequence[float], fmt: FixedPoint) -> torch.Tensor:
    """The Q^vc gap: Δ for every element."""
    _check_call("kernels.fixed.gap", code, _KINDS, fmt, _FMTS, mu=mu)
    return torch.full_like(mu, code[FIXED_DELTA])
