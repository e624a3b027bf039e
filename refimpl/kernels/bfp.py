"""Block floating point ``BlockFloatingPoint(wl, dim)`` kernels (kind 2; ALGORITHMS.md §2.2, (Q3)).

The whole 1-D array is **one block**: e_B = floor(log2 max|x_j|) over the finite
entries, Δ_B = 2^(e_B + 2 - W), values k·Δ_B with |k| <= 2^(W-1) - 1 (the public
functions reshape blocks into rows).  The same four functions as every format module:
``nearest_into``, ``stochastic_into``, ``vc_into``, ``gap_into``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from refimpl.kernels.common import (
    _INF,
    _JIT,
    _ldexp,
    _round_int,
    _vc_elem,
    _vc_escape_uniform,
    _vc_flags,
)
from refimpl.slots import BFP_WL, TIES

__all__ = ["nearest_into", "stochastic_into", "vc_into", "gap_into"]


@njit(**_JIT)
def _bfp_block_exp(x):
    """(found, e_B) with e_B = floor(log2 max|x_j|) over the finite entries of x."""
    m = 0.0
    for i in range(x.size):
        a = abs(x[i])
        if a > m and a != _INF:  # NaN fails a > m
            m = a
    if m == 0.0:
        return False, 0
    return True, math.frexp(m)[1] - 1


@njit(**_JIT)
def _bfp_round_block(x, u, out, wl, ties, stochastic):
    found, eb = _bfp_block_exp(x)
    if not found:  # zero block (finite entries all 0): stays zero; NaN passes; ±inf -> 0
        for i in range(x.size):
            xi = x[i]
            out[i] = xi if xi != xi else 0.0
        return
    se = eb + 2 - wl
    kmax = _ldexp(1.0, wl - 1) - 1.0  # |k| <= 2^(W-1) - 1: saturation at ±(2^(e_B+1) - Δ_B)
    sat = _ldexp(kmax, se)  # computed from k, so a block in float64's top binade stays finite
    for i in range(x.size):
        xi = np.float64(x[i])
        if xi != xi:
            out[i] = xi
            continue
        if abs(xi) == _INF:
            out[i] = math.copysign(sat, xi)
            continue
        z = _ldexp(xi, -se)
        if stochastic:
            k = np.floor(z + u[i])
        else:
            k = _round_int(z, ties)
        if abs(k) > kmax:
            k = math.copysign(kmax, k)
        out[i] = _ldexp(k, se) + 0.0



@njit(**_JIT)
def nearest_into(x: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^d(x) (Q1) with the block's Δ_B, ties per code[TIES] (toward +inf by default), saturating."""
    _bfp_round_block(x, x, out, int(code[BFP_WL]), int(code[TIES]), False)


@njit(**_JIT)
def stochastic_into(x: np.ndarray, u: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^s(x) (Q2'): Δ_B·floor(x/Δ_B + u[i]), saturating at ±(2^(e_B+1) - Δ_B)."""
    _bfp_round_block(x, u, out, int(code[BFP_WL]), 0, True)


@njit(**_JIT)
def _vc_bfp_escape_exp(mu, var, xi, u_round, u_cat, se, hi, ties, published, ktop):
    """Pass 1 of BFP Q^vc: m = max |θ_i| of the unclipped results; (escaped, e').

    Branch 2 results are unclipped too, except with the published fallback (which clips).
    e' = floor(log2 m) is the block exponent the result has (1023 if m overflowed to inf).
    Nothing is written (``out`` may alias ``mu``); pass 2 recomputes θ_i from the same noise.
    """
    m = 0.0
    for i in range(mu.size):
        t = _vc_elem(mu[i], var, xi[i], u_round[i], u_cat[i], se, -hi, hi, ties, published, False, published,
                     ktop)
        a = abs(t)
        if a > m:  # NaN (μ_i NaN) fails
            m = a
    if not (m > hi):
        return False, 0
    if m == _INF:
        return True, 1023
    return True, math.frexp(m)[1] - 1


@njit(**_JIT)
def _vc_bfp_zero_block(mu, var, xi, u_round, out, wl):
    """Q^vc of an all-zero BFP block with V > 0: the Δ_B -> 0 limit of branch 1 + escape.

    With Δ = 0, V₀ = 0 and (Q5) gives θ = x = sqrt(V)·ξ exactly; the escape rule then
    rounds the block stochastically onto the grid of e' = floor(log2 max|x_i|):
    θ_i = Δ'·floor(x_i/Δ' + u_round_i), saturated at ±(2^(e'+1) - Δ').  Mean 0, variance
    V + E p(1-p)Δ'².  (The spec's choice returns zeros, an absorbing state for samplers.)
    NaN passes; ±inf saturates to ±(2^(e'+1) - Δ').
    """
    sd = math.sqrt(var)
    m = 0.0
    for i in range(mu.size):
        if mu[i] == mu[i]:
            a = abs(sd * xi[i])
            if a > m:
                m = a
    if m == 0.0:  # every ξ_i = 0 (measure zero): the block stays zero
        for i in range(mu.size):
            v = mu[i]
            out[i] = v if v != v else 0.0
        return
    e2 = 1023 if m == _INF else math.frexp(m)[1] - 1
    se2 = e2 + 2 - wl
    kmax = _ldexp(1.0, wl - 1) - 1.0
    for i in range(mu.size):
        v = np.float64(mu[i])
        if v != v:
            out[i] = v
            continue
        if abs(v) == _INF:
            out[i] = math.copysign(_ldexp(kmax, se2), v)
            continue
        k = np.floor(_ldexp(sd * xi[i], -se2) + u_round[i])
        if abs(k) > kmax:
            k = math.copysign(kmax, k)
        out[i] = _ldexp(k, se2) + 0.0



@njit(**_JIT)
def vc_into(mu: np.ndarray, var: float, xi: np.ndarray, u_round: np.ndarray, u_cat: np.ndarray,
            out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^vc(mu, var) ((Q5)/(Q6)) with Δ_B of **mu's** block, branch per block; escapes
    re-rounded onto the result's own block (docs/quantizers.md; the rule is spelled out in
    :func:`refimpl._qkernels.vc_into`).  Flags: code[VC_FLAGS]."""
    ties = int(code[TIES])
    published, spec_clip = _vc_flags(code)
    n = mu.size
    wl = int(code[BFP_WL])
    found, eb = _bfp_block_exp(mu)
    if not found:  # zero block (finite entries all 0): Δ_B = 0
        if var > 0.0 and not spec_clip:
            _vc_bfp_zero_block(mu, var, xi, u_round, out, wl)
            return
        for i in range(n):  # V = 0 (or the spec's clip): zeros, mean and variance exact
            m = mu[i]
            out[i] = m if m != m else 0.0
        return
    se = eb + 2 - wl
    kmax = _ldexp(1.0, wl - 1) - 1.0
    hi = _ldexp(kmax, se)
    delta = _ldexp(1.0, se)
    escaped = False
    e2 = 0
    branch1 = (var / delta) / delta > 0.25  # the branch of the whole block
    if not spec_clip and (branch1 or not published):
        escaped, e2 = _vc_bfp_escape_exp(mu, var, xi, u_round, u_cat, se, hi, ties, published, kmax + 1.0)
    if not escaped:
        for i in range(n):
            out[i] = _vc_elem(mu[i], var, xi[i], u_round[i], u_cat[i], se, -hi, hi, ties, published,
                              spec_clip, spec_clip or published, kmax + 1.0)
        return
    se2 = e2 + 2 - wl
    sat2 = _ldexp(kmax, se2)
    for i in range(n):
        m = np.float64(mu[i])
        if m != m:
            out[i] = m
            continue
        if abs(m) == _INF:
            out[i] = math.copysign(sat2, m)
            continue
        t = _vc_elem(m, var, xi[i], u_round[i], u_cat[i], se, -hi, hi, ties, published, False, published,
                     kmax + 1.0)
        # unbiased stochastic rounding onto Δ'
        k = np.floor(_ldexp(t, -se2) + _vc_escape_uniform(branch1, xi[i], u_round[i]))
        if abs(k) > kmax:
            k = math.copysign(kmax, k)
        out[i] = _ldexp(k, se2) + 0.0


@njit(**_JIT)
def gap_into(mu: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out[i] = Δ_B of mu's block (0 for an all-zero block)."""
    found, eb = _bfp_block_exp(mu)
    d = _ldexp(1.0, eb + 2 - int(code[BFP_WL])) if found else 0.0
    for i in range(mu.size):
        out[i] = d
