"""Microscaling kernels: OCP MX v1.0 (MXFP8/6/4, MXINT8) and NVFP4 (kind 5; docs/mx.md).

A 1-D array handed to these kernels is one *row* along the block axis: consecutive
blocks of ``code[MX_BLOCK]`` elements (the last one possibly shorter) each share one
scale s.  Per block (OCP MX v1.0 §6.3 for the E8M0 scale; NVIDIA's NVFP4 recipe for E4M3):

* E8M0:  s = 2^X,  X = clip(floor(log2 max|V_i|) - emax_elem, -127, 127)
* E4M3:  s = s_B·s_T,  s_B = E4M3_RNE_sat((max|V_i| / max_elem) / s_T)

then every element is rounded onto the element grid, ``P_i = Q(V_i / s)`` (nearest:
ties to even; stochastic: floor(z/ULP + u)·ULP), saturated at ±max_elem (INT8: k·2^-6
with k in [-128, 127]), and the value is ``P_i·s`` (exact: few significant bits).
A NaN in a block makes the block NaN; an all-zero block (or one whose E4M3 scale
underflows to 0) keeps the signs of its zeros.

Functions (the same four as every format module): ``nearest_into(x, out, code)``,
``stochastic_into(x, u, out, code)``, ``vc_into(mu, var, xi, u_round, u_cat, out, code)``,
``gap_into(mu, out, code)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from refimpl.kernels.common import _JIT, _cat_unit, _ldexp, _round_int
from refimpl.kernels.fixed import _fixed_nearest, _fixed_stochastic
from refimpl.kernels.float import _float_nearest, _float_stochastic, _vc_float_se
from refimpl.slots import (
    FLOAT_EXP,
    FLOAT_MAN,
    FLOAT_MAX,
    MX_BLOCK,
    MX_EMAX,
    MX_INT,
    MX_LO,
    MX_SCALE,
    MX_TENSOR_SCALE,
    SCALE_E8M0,
    TIES,
    VC_FLAGS,
    VC_SPEC_CLIP_BIT,
)

__all__ = ["nearest_into", "stochastic_into", "vc_into", "gap_into", "block_scale", "holding_scale"]

#: E4M3 (the NVFP4 scale type): e_min, mantissa bits, largest value
_E4M3_EMIN, _E4M3_MAN, _E4M3_MAX = -6, 3, 448.0


@njit(**_JIT)
def block_scale(x: np.ndarray, j0: int, j1: int, code: np.ndarray) -> tuple[int, float]:
    """(status, s) of the block x[j0:j1]: status 0 zero block, 1 scale s > 0, 2 NaN in the block."""
    m = 0.0
    for i in range(j0, j1):
        a = abs(np.float64(x[i]))
        if a != a:
            return 2, np.nan
        if a > m:
            m = a
    if m == 0.0:
        return 0, 0.0
    if int(code[MX_SCALE]) == SCALE_E8M0:
        e = 127 if m == np.inf else math.frexp(m)[1] - 1 - int(code[MX_EMAX])
        e = min(max(e, -127), 127)
        return 1, _ldexp(1.0, e)
    t = code[MX_TENSOR_SCALE]
    sb = _float_nearest((m / code[FLOAT_MAX]) / t, _E4M3_EMIN, _E4M3_MAN, _E4M3_MAX, False, True, 2)
    if sb == 0.0:
        return 0, 0.0
    return 1, sb * t


@njit(inline="always", **_JIT)
def _elem_params(code):
    exp = int(code[FLOAT_EXP])
    man = int(code[FLOAT_MAN])
    emin = 2 - (1 << (exp - 1)) if exp > 0 else 0
    return code[MX_INT] != 0.0, emin, man, code[FLOAT_MAX], code[MX_LO], int(code[TIES])


@njit(**_JIT)
def _round_row(x, u, out, code, stochastic):
    is_int, emin, man, maxv, lo, ties = _elem_params(code)
    delta = _ldexp(1.0, -man)
    inv = 1.0 / delta
    b = int(code[MX_BLOCK])
    n = x.size
    for j0 in range(0, n, b):
        j1 = min(j0 + b, n)
        if stochastic:  # the smallest scale holding the block: unbiased for every element
            status, s = _vc_block_scale(x, j0, j1, code)
        else:  # the spec's scale (OCP MX §6.3), which may saturate the block maximum
            status, s = block_scale(x, j0, j1, code)
        for i in range(j0, j1):
            xv = np.float64(x[i])
            if status == 2:
                out[i] = np.nan
            elif status == 0:
                out[i] = xv * 0.0  # zeros keep their sign
            else:
                z = xv / s
                if is_int:
                    q = _fixed_stochastic(z, u[i], delta, inv, lo, maxv) if stochastic else \
                        _fixed_nearest(z, delta, inv, lo, maxv, ties)
                else:
                    q = _float_stochastic(z, u[i], emin, man, maxv, False, True) if stochastic else \
                        _float_nearest(z, emin, man, maxv, False, True, ties)
                out[i] = q * s


@njit(**_JIT)
def nearest_into(x: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^d(x) (Q1) on the MX/NVFP4 grid: per-block scale, elements ties-to-even, saturating."""
    _round_row(x, x, out, code, False)


@njit(**_JIT)
def stochastic_into(x: np.ndarray, u: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^s(x) (Q2'): elements Δ·floor(z/Δ + u[i]) with the block scale s = ``holding_scale(max|x|)``.

    The spec's scale 2^X can leave the block maximum above max_elem·2^X (up to
    2^(emax+1)·2^X), where rounding would clip it and bias every sampler step toward 0;
    the holding scale (the spec's, or one step larger when it would clip) keeps
    E[Q^s(x)] = x for every finite element (the same reason Tseng et al., "Training LLMs
    with MXFP4", 2025, rescale before stochastic rounding).  The scale is a
    deterministic function of the block; only the elements are random.
    """
    _round_row(x, u, out, code, True)


@njit(**_JIT)
def gap_into(mu: np.ndarray, out: np.ndarray, code: np.ndarray) -> None:
    """out[i] = the gap Δ Q^vc uses for mu[i]: s·(element ULP at min(|mu_i|/s, max)); 0 for zero/NaN blocks.

    s is Q^vc's block scale (``holding_scale``: the smallest scale whose range holds the block).
    """
    is_int, emin, man, maxv, _, _ = _elem_params(code)
    b = int(code[MX_BLOCK])
    n = mu.size
    for j0 in range(0, n, b):
        j1 = min(j0 + b, n)
        status, s = _vc_block_scale(mu, j0, j1, code)
        for i in range(j0, j1):
            if status != 1:
                out[i] = 0.0
            elif is_int:
                out[i] = _ldexp(s, -man)
            else:
                out[i] = s * _ldexp(1.0, _vc_float_se(abs(np.float64(mu[i])) / s, emin, man, maxv))


# --------------------------------------------------------------------------------------
# Q^vc
# --------------------------------------------------------------------------------------
@njit(**_JIT)
def holding_scale(m: float, code: np.ndarray) -> float:
    """The smallest block scale s whose range holds m > 0: max_elem·s >= m (saturating at the top).

    E8M0: s = 2^X, X = floor(log2 m) - emax_elem, plus one when m > max_elem·2^X (the spec's
    choice can leave m up to 2^(emax+1)·2^X, above max_elem·2^X), clipped to [-127, 127].
    E4M3: s = s_B·s_T with s_B the E4M3 value nearest to (m/max_elem)/s_T, moved one E4M3
    step up when it falls short (at most 448).
    """
    maxv = code[FLOAT_MAX]
    if int(code[MX_SCALE]) == SCALE_E8M0:
        if m == np.inf:
            return _ldexp(1.0, 127)
        e = math.frexp(m)[1] - 1 - int(code[MX_EMAX])
        if m > maxv * _ldexp(1.0, e):
            e += 1
        return _ldexp(1.0, min(max(e, -127), 127))
    t = code[MX_TENSOR_SCALE]
    r = (m / maxv) / t
    sb = _float_nearest(r, _E4M3_EMIN, _E4M3_MAN, _E4M3_MAX, False, True, 2)
    if sb < r:
        up = _E4M3_EMIN - _E4M3_MAN if sb == 0.0 else max(math.frexp(sb)[1] - 1, _E4M3_EMIN) - _E4M3_MAN
        sb = min(sb + _ldexp(1.0, up), _E4M3_MAX)
    return sb * t


@njit(**_JIT)
def _vc_block_scale(mu, j0, j1, code):
    """(status, s) of Q^vc for the block mu[j0:j1]: as ``block_scale`` with s = ``holding_scale(max|mu|)``."""
    m = 0.0
    for i in range(j0, j1):
        a = abs(np.float64(mu[i]))
        if a != a:
            return 2, np.nan
        if a > m:
            m = a
    if m == 0.0:
        return 0, 0.0
    return 1, holding_scale(m, code)


@njit(inline="always", **_JIT)
def _recycled_uniform(zz, ur, k0):
    """A uniform independent of the stochastic-rounding decision k0 = floor(zz + ur) it was used for.

    With f = floor(zz), p = zz - f: k0 = f + 1 iff ur >= 1 - p, so ur given "up" is uniform on
    [1 - p, 1) and given "down" uniform on [0, 1 - p); rescaling each interval to [0, 1)
    gives a U[0, 1) independent of the decision (exact in real arithmetic; in float64 the
    resolution is ~2^-53 divided by the probability of the event, which bounds its effect
    on any mean by ~2^-52 of the grid step).
    """
    f = np.floor(zz)
    p = zz - f
    if p == 0.0:
        return ur
    if k0 > f:
        w = (ur - (1.0 - p)) / p
    else:
        w = ur / (1.0 - p)
    return min(max(w, 0.0), 0.9999999999999999)


@njit(inline="always", **_JIT)
def _vc_elem_unclipped(z, vn, xi, ur, uc, se, ties, ktop):
    """(t, u): Q^vc ((Q5)/(Q6)) of one normalised element on the grid Δ = 2^se, **unclipped**, and
    the uniform left for re-rounding t onto a coarser grid.

    Branch 1 (vn > Δ²/4): x = z + sqrt(vn - Δ²/4)·ξ, t = Q^d(x) + sign(r)·Cat(|r|, Δ²/4); u = u_round
    (unused otherwise).  Branch 2: t = Q^s(z) + Cat(0, vn - V_s) with Q^s from u_round, top-up
    from u_cat; at the binade boundary |Q^s(z)| = ktop·Δ the top-up is drawn on
    {-Δ, 0, +2Δ} (outward +2Δ; P(+2Δ) = w/6, P(-Δ) = w/3, mean 0, variance wΔ², the rule of
    refimpl's float Q^vc), so it never lands between two points of the coarser binade;
    u = u_round recycled (``_recycled_uniform``).
    """
    delta = _ldexp(1.0, se)
    vr = (vn / delta) / delta
    if vr > 0.25:
        x = z + math.sqrt(vn - 0.25 * delta * delta) * xi
        zz = _ldexp(x, -se)
        k = _round_int(zz, ties)
        r = zz - k
        c = _cat_unit(abs(r), 0.25, uc)
        if r > 0.0:
            k += c
        elif r < 0.0:
            k -= c
        return _ldexp(k, se) + 0.0, ur
    zz = _ldexp(z, -se)
    k = np.floor(zz + ur)
    u = _recycled_uniform(zz, ur, k)
    a = abs(zz)
    p = a - np.floor(a)
    vs = p * (1.0 - p)
    if vr > vs:
        w = vr - vs
        if abs(k) == ktop:
            a6 = w / 6.0
            if uc < a6:
                k += math.copysign(2.0, k)
            elif uc < a6 + w / 3.0:
                k -= math.copysign(1.0, k)
        else:
            k += _cat_unit(0.0, w, uc)
    return _ldexp(k, se) + 0.0, u


@njit(inline="always", **_JIT)
def _elem_se(z, is_int, emin, man, maxv):
    """Exponent of the element grid step Q^vc uses at the normalised value z."""
    if is_int:
        return -man
    return _vc_float_se(abs(z), emin, man, maxv)


@njit(inline="always", **_JIT)
def _sr_onto_grid(zf, u, is_int, emin, man, maxv, lo):
    """Stochastic rounding of the normalised zf onto the element grid at |zf| (its own binade), saturated."""
    if zf == 0.0:
        return zf
    if is_int:
        ue = -man
    else:
        ue = max(math.frexp(abs(zf))[1] - 1, emin) - man
    q = _ldexp(np.floor(_ldexp(zf, -ue) + u), ue) + 0.0
    if is_int:
        return min(max(q, lo), maxv)
    return min(max(q, -maxv), maxv)


@njit(**_JIT)
def _vc_block(mu, var, xi, u_round, u_cat, out, code, j0, j1, spec_clip):
    is_int, emin, man, maxv, lo, ties = _elem_params(code)
    status, s = _vc_block_scale(mu, j0, j1, code)
    if status == 2:
        for i in range(j0, j1):
            out[i] = np.nan
        return
    if status == 0:  # Δ = 0: the Δ -> 0 limit of branch 1, θ = sqrt(V)·ξ, then onto its own block
        sd = math.sqrt(var)
        m = 0.0
        for i in range(j0, j1):
            m = max(m, abs(sd * xi[i]))
        if m == 0.0 or spec_clip:
            for i in range(j0, j1):
                out[i] = np.float64(mu[i]) * 0.0
            return
        s2 = holding_scale(m, code)
        for i in range(j0, j1):
            out[i] = _sr_onto_grid((sd * xi[i]) / s2, u_round[i], is_int, emin, man, maxv, lo) * s2
        return
    vn = (var / s) / s
    ktop = _ldexp(1.0, int(code[MX_EMAX]) + 1 + man) if is_int else _ldexp(1.0, man + 1)
    # pass 1: the largest unclipped result decides the result's block scale
    m = 0.0
    for i in range(j0, j1):
        z = min(max(np.float64(mu[i]) / s, -maxv), maxv)  # ±inf (only in a saturated block) -> ±max
        t, u = _vc_elem_unclipped(z, vn, xi[i], u_round[i], u_cat[i], _elem_se(z, is_int, emin, man, maxv),
                                  ties, ktop)
        m = max(m, abs(t))
    s2 = s if (m <= maxv or spec_clip) else holding_scale(m * s, code)
    for i in range(j0, j1):
        z = min(max(np.float64(mu[i]) / s, -maxv), maxv)
        se = _elem_se(z, is_int, emin, man, maxv)
        t, u = _vc_elem_unclipped(z, vn, xi[i], u_round[i], u_cat[i], se, ties, ktop)
        if spec_clip:  # test hook: the withdrawn clip to mu's binade (and block) range
            hi = maxv if is_int else min(_ldexp(_ldexp(1.0, man + 1) - 1.0, se), maxv)
            out[i] = min(max(t, lo if is_int else -hi), hi) * s
        else:
            out[i] = _sr_onto_grid((t * s) / s2, u, is_int, emin, man, maxv, lo) * s2


@njit(**_JIT)
def vc_into(mu: np.ndarray, var: float, xi: np.ndarray, u_round: np.ndarray, u_cat: np.ndarray,
            out: np.ndarray, code: np.ndarray) -> None:
    """out = Q^vc(mu, var) ((Q5)/(Q6)) on the MX/NVFP4 format, block by block (docs/mx.md).

    Per block: s = ``holding_scale(max|mu|)`` (the spec's scale, one step up if the
    block maximum would saturate), z_i = mu_i/s, and each element takes (Q5)/(Q6) on its
    own element grid Δ_i (the binade ULP of z_i; INT8: 2^-6), unclipped
    (``_vc_elem_unclipped``).  The results are then rounded **stochastically** onto the
    grid they actually reach: if max|t_i| exceeds max_elem the block gets the scale
    s' = ``holding_scale(max|t_i|·s)``, else s' = s, and every t_i·s/s' is rounded onto the
    element grid at its own magnitude, Δ'·floor(·/Δ' + u_i), with u_i = u_round (branch 1)
    or u_round recycled (branch 2).  A result already on that grid is unchanged, so
    elements that stay in their binade and block keep mean μ and variance V exactly;
    a crossing adds E[p(1-p)Δ'²] of variance and no bias (saturation at ±max_elem·s' aside).
    An all-zero block with V > 0 gives sqrt(V)·ξ rounded onto its own block.  NaN in a
    block: the block is NaN.  Noise: xi, u_round, u_cat per element, whatever the branch.
    ``code[VC_FLAGS]`` bit 2 (test hook) clips every result to mu's binade and block range.
    """
    spec_clip = (int(code[VC_FLAGS]) & VC_SPEC_CLIP_BIT) != 0
    b = int(code[MX_BLOCK])
    n = mu.size
    for j0 in range(0, n, b):
        _vc_block(mu, var, xi, u_round, u_cat, out, code, j0, min(j0 + b, n), spec_clip)
