"""Fixed point ``FixedPoint(wl, fl)`` kernels (kind 1; ALGORITHMS.md §2.1, (Q1), (Q2'), (Q5)/(Q6)).

Grid Δ = code[FIXED_DELTA], range [code[FIXED_LO], code[FIXED_HI]]; ties of Q^d from
code[TIES].  The same four functions as every format module: ``nearest_into``,
``stochastic_into``, ``vc_into``, ``gap_into``; plus the element kernels the parallel
dispatchers and the sampler fast paths inline, and the float32 fast path of Q^d.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from refimpl.kernels.common import _JIT, _round_away, _round_int, _vc_elem
from refimpl.slots import (
    FIXED_DELTA,
    FIXED_HI,
    FIXED_LO,
    FIXED_WL,
    KIND,
    KIND_FIXED,
    TIES,
    TIES_AWAY,
)

__all__ = ["nearest_into", "stochastic_into", "vc_into", "gap_into", "fixed_nearest_f32_par", "f32_fast_path_ok"]


@njit(inline="always", **_JIT)
def _fixed_nearest(x0, delta, inv, lo, hi, ties):
    x = np.float64(x0)  # float64 arithmetic also in pure Python (NUMBA_DISABLE_JIT=1)
    if x != x:
        return x
    # clamping to [lo - Δ, hi + Δ] first does not change the clipped result (rounding is
    # monotone) and keeps x/Δ finite for huge inputs and ±inf
    xc = min(max(x, lo - delta), hi + delta)
    q = _round_int(xc * inv, ties) * delta + 0.0  # + 0.0 turns -0.0 into +0.0
    return min(max(q, lo), hi)


@njit(inline="always", **_JIT)
def _fixed_stochastic(x0, u, delta, inv, lo, hi):
    x = np.float64(x0)
    if x != x:
        return x
    xc = min(max(x, lo - delta), hi + delta)
    q = np.floor(xc * inv + u) * delta + 0.0
    return min(max(q, lo), hi)



@njit(**_JIT)
def nearest_into(x: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^d(x) (Q1) = clip(round(x/Δ)·Δ, L, U), ties per code[TIES] (away from zero by default)."""
    ties = int(code[TIES])
    n = x.size
    delta, lo, hi = code[FIXED_DELTA], code[FIXED_LO], code[FIXED_HI]
    inv = 1.0 / delta
    if ties == 1:
        for i in range(n):
            xv = x[i]
            xc = min(max(np.float64(xv), lo - delta), hi + delta)
            q = min(max(_round_away(xc * inv) * delta + 0.0, lo), hi)
            out[i] = xv if xv != xv else q
    else:
        for i in range(n):
            out[i] = _fixed_nearest(x[i], delta, inv, lo, hi, ties)


@njit(**_JIT)
def stochastic_into(x: np.ndarray, u: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^s(x) (Q2') = clip(Δ·floor(x/Δ + u[i]), L, U)."""
    n = x.size
    delta, lo, hi = code[FIXED_DELTA], code[FIXED_LO], code[FIXED_HI]
    inv = 1.0 / delta
    for i in range(n):
        out[i] = _fixed_stochastic(x[i], u[i], delta, inv, lo, hi)


@njit(**_JIT)
def vc_into(mu: np.ndarray, var: float, xi: np.ndarray, u_round: np.ndarray, u_cat: np.ndarray,
            out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^vc(mu, var) ((Q5)/(Q6)) on the grid Δ, branch per element, clipped to [L, U] (§2.5)."""
    ties = int(code[TIES])
    delta, lo, hi = code[FIXED_DELTA], code[FIXED_LO], code[FIXED_HI]
    se = math.frexp(delta)[1] - 1
    for i in range(mu.size):
        out[i] = _vc_elem(mu[i], var, xi[i], u_round[i], u_cat[i], se, lo, hi, ties, False)


@njit(**_JIT)
def gap_into(mu: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out[i] = Δ, the gap Q^vc uses (the same for every element)."""
    for i in range(mu.size):
        out[i] = code[FIXED_DELTA]


@njit(parallel=True, **_JIT)
def fixed_nearest_f32_par(x: np.ndarray, out: np.ndarray, delta: float, lo: float, hi: float) -> None:
    """Fixed-point Q^d (Q1), ties away from zero, for float32 x/out in float32 arithmetic.

    Bit-identical to ``nearest_into`` (float64 arithmetic) whenever the format has
    wl <= 23 and Δ, L, U are normal float32 numbers (the caller checks; see
    ``f32_fast_path_ok``): x·2^fl is exact in float32, |z| + 1/2 is exact for
    |z| < 2^23, every in-range result kΔ is a float32, and larger |z| (or ±inf after
    overflow) lies beyond the range and is clipped to L or U either way.  Half as many
    bytes per SIMD lane as the float64 path.
    """
    d = np.float32(delta)
    inv = np.float32(1.0 / delta)
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    half = np.float32(0.5)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for i in prange(x.size):
        xv = x[i]
        z = xv * inv
        a = abs(z)
        f = np.floor(a + half)
        f -= one if f - half > a else zero
        q = np.float32(math.copysign(f, z)) * d + zero
        q = min(max(q, lo32), hi32)
        out[i] = xv if xv != xv else q



def f32_fast_path_ok(code: np.ndarray) -> bool:
    """Whether ``fixed_nearest_f32_par`` is exact (bit-identical) for this kernel code."""
    if int(code[KIND]) != KIND_FIXED or int(code[TIES]) != TIES_AWAY or code[FIXED_WL] > 23:
        return False
    tiny = np.finfo(np.float32).tiny
    big = float(np.finfo(np.float32).max)
    return bool(code[FIXED_DELTA] >= tiny and -code[FIXED_LO] >= tiny and abs(code[FIXED_LO]) <= big
                and abs(code[FIXED_HI]) <= big)
