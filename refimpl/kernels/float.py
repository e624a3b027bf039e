"""qtorch-semantics float ``FloatingPoint(exp, man)`` kernels (kind 3; ALGORITHMS.md §2.3).

Binade arithmetic: the ULP at |x| is 2^(max(floor(log2|x|), e_min) - M) with
e_min = 2 - 2^(E-1); saturation at code[FLOAT_MAX].  :mod:`refimpl.kernels.ieee`
reuses these kernels with IEEE parameters (ties to even, IEEE overflow).
The same four functions as every format module: ``nearest_into``,
``stochastic_into``, ``vc_into``, ``gap_into``.
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
from refimpl.slots import (
    FLOAT_EXP,
    FLOAT_HAS_INF,
    FLOAT_MAN,
    FLOAT_MAX,
    KIND,
    KIND_FLOAT,
    SATURATE,
    TIES,
)

__all__ = ["nearest_into", "stochastic_into", "vc_into", "gap_into"]


@njit(inline="always", **_JIT)
def _float_ulp_exp(ax, emin, man):
    """Exponent of the ULP at |x| = ax > 0: max(floor(log2 ax), emin) - man."""
    e = math.frexp(ax)[1] - 1
    if e < emin:
        e = emin
    return e - man


@njit(inline="always", **_JIT)
def _vc_float_se(am, emin, man, maxv):
    """ULP exponent Q^vc uses for |mu| = am: the binade of min(am, max), at least e_min (0, NaN: e_min)."""
    if am == 0.0 or am != am:
        return emin - man
    return _float_ulp_exp(min(am, maxv), emin, man)


@njit(inline="always", **_JIT)
def _float_overflow(x, maxv, has_inf, saturate):
    if saturate:
        return math.copysign(maxv, x)
    if has_inf:
        return math.copysign(_INF, x)
    return np.nan


@njit(inline="always", **_JIT)
def _float_nearest(x0, emin, man, maxv, has_inf, saturate, ties):
    x = np.float64(x0)
    if x != x or x == 0.0:
        return x
    ax = abs(x)
    if ax == _INF:
        return _float_overflow(x, maxv, has_inf, saturate)
    ue = _float_ulp_exp(ax, emin, man)
    q = _ldexp(_round_int(_ldexp(x, -ue), ties), ue)
    if abs(q) > maxv:
        return _float_overflow(x, maxv, has_inf, saturate)
    return q


@njit(inline="always", **_JIT)
def _float_stochastic(x0, u, emin, man, maxv, has_inf, saturate):
    x = np.float64(x0)
    if x != x or x == 0.0:
        return x
    ax = abs(x)
    if ax == _INF:
        return _float_overflow(x, maxv, has_inf, saturate)
    ue = _float_ulp_exp(ax, emin, man)
    q = math.copysign(_ldexp(np.floor(_ldexp(x, -ue) + u), ue), x)  # a zero result keeps x's sign
    if abs(q) > maxv:
        return _float_overflow(x, maxv, has_inf, saturate)
    return q



@njit(inline="always", **_JIT)
def _float_params(code):
    exp = int(code[FLOAT_EXP])
    man = int(code[FLOAT_MAN])
    emin = 2 - (1 << (exp - 1))
    maxv = code[FLOAT_MAX]
    has_inf = code[FLOAT_HAS_INF] != 0.0
    saturate = int(code[KIND]) == KIND_FLOAT or code[SATURATE] != 0.0
    return emin, man, maxv, has_inf, saturate


@njit(**_JIT)
def nearest_into(x: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^d(x) (Q1) on the binade grid, ties per code[TIES]; overflow per ``_float_overflow``."""
    ties = int(code[TIES])
    emin, man, maxv, has_inf, saturate = _float_params(code)
    for i in range(x.size):
        out[i] = _float_nearest(x[i], emin, man, maxv, has_inf, saturate, ties)


@njit(**_JIT)
def stochastic_into(x: np.ndarray, u: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^s(x) (Q2'): ULP·floor(x/ULP + u[i]) in x's binade, then overflow handling."""
    emin, man, maxv, has_inf, saturate = _float_params(code)
    for i in range(x.size):
        out[i] = _float_stochastic(x[i], u[i], emin, man, maxv, has_inf, saturate)


@njit(**_JIT)
def vc_into(mu: np.ndarray, var: float, xi: np.ndarray, u_round: np.ndarray, u_cat: np.ndarray,
            out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^vc(mu, var) ((Q5)/(Q6)), Δ_i = the ULP of mu_i's binade; escapes re-rounded (docs/quantizers.md).

    e_i = max(floor(log2 min(|mu_i|, max)), e_min); both branches computed on that grid
    unclipped; a result beyond the binade is rounded stochastically onto its own binade
    (u_round in branch 1, the fair coin of ``_vc_escape_uniform`` in branch 2) and
    saturated at ±max.  Flags: code[VC_FLAGS] (published fallback / spec-clip test hook).
    """
    ties = int(code[TIES])
    published, spec_clip = _vc_flags(code)
    n = mu.size
    emin, man, maxv, _, _ = _float_params(code)
    ktop = _ldexp(1.0, man + 1)  # 2^(e+1) in units of the binade's ULP 2^(e-M)
    for i in range(n):
        m = mu[i]
        se = _vc_float_se(abs(m), emin, man, maxv)
        hi = min(_ldexp(_ldexp(1.0, man + 1) - 1.0, se), maxv)
        t = _vc_elem(m, var, xi[i], u_round[i], u_cat[i], se, -hi, hi, ties, published, spec_clip,
                     spec_clip or published, ktop)
        if abs(t) > hi:  # only an unclipped result: escape re-rounding
            if abs(t) == _INF:
                t = math.copysign(maxv, t)
            else:
                d = _ldexp(1.0, se)
                u = _vc_escape_uniform((var / d) / d > 0.25, xi[i], u_round[i])
                ue = max(math.frexp(abs(t))[1] - 1, emin) - man
                t = _ldexp(np.floor(_ldexp(t, -ue) + u), ue)
                if abs(t) > maxv:
                    t = math.copysign(maxv, t)
        out[i] = t


@njit(**_JIT)
def gap_into(mu: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out[i] = 2^(e_i - M), the ULP of mu_i's binade Q^vc uses (e_i = max(floor(log2 min(|mu_i|, max)), e_min))."""
    emin, man, maxv, _, _ = _float_params(code)
    for i in range(mu.size):
        out[i] = _ldexp(1.0, _vc_float_se(abs(mu[i]), emin, man, maxv))
