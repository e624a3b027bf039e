"""Dispatch of the jitted quantization kernels on the format code (ALGORITHMS.md §2).

The arithmetic lives in one module per format kind, :mod:`refimpl.kernels` (``fixed``,
``bfp``, ``float``, ``ieee``, ``mx``), each with the same four functions; this module
picks one by ``code[KIND]`` (:mod:`refimpl.slots`) and **raises** ``ValueError`` on an
unknown kind (kind 0, ``None``, is the identity).  It also holds the parallel and
row-block variants and re-exports the shared scalar kernels other modules import.

Contract (docs/architecture.md): every kernel is ``@njit(cache=True)``, takes
contiguous 1-D float32 or float64 arrays, writes into ``out`` (which may alias
the input) and treats the **whole 1-D array as one block** for block floating
point (one row along the block axis for MX: consecutive blocks of code[MX_BLOCK]).
All arithmetic is done in float64 (exact for float32 inputs); the result is cast to
``out``'s dtype on store.

Serial kernels (callable from other ``@njit`` code, e.g. inside a loop over chains):

``nearest_into(x, out, code)``
    Q^d (Q1); ties away from zero (BFP: toward +inf; IEEE, MX: to even), or the rule in ``code[TIES]``.
``stochastic_into(x, u, out, code)``
    Q^s (Q2'): Δ·floor(x/Δ + u) then saturation, with u[i] ~ U[0, 1) given.
``vc_into(mu, var, xi, u_round, u_cat, out, code)``
    Q^vc (Q5)/(Q6); ``var`` a float scalar >= 0.  Consumes xi[i], u_round[i], u_cat[i]
    for every element whichever branch it takes.
``vc_gap_into(mu, out, code)``
    the gap Δ Q^vc uses per element.
``keyed_uniform(key, i)`` / ``keyed_uniforms_into(key, start, out)``
    the counter-based uniforms of the fast seeded path (:mod:`refimpl.kernels.common`).

Parallel variants for large arrays (not for use inside another parallel loop):
``nearest_into_par``, ``stochastic_into_par``, ``stochastic_keyed_into_par`` for the
element-wise formats (fixed, qtorch float, IEEE), ``fixed_nearest_f32_par`` (fixed-point
nearest in float32 arithmetic, bit-identical where ``f32_fast_path_ok``), and ``*_rows``
variants that treat each row of a C-contiguous 2-D array as one block (BFP) or one
row of blocks (MX).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refimpl.kernels import bfp as _bfp
from refimpl.kernels import fixed as _fixed
from refimpl.kernels import float as _float
from refimpl.kernels import ieee as _ieee
from refimpl.kernels import mx as _mx
from refimpl.kernels.bfp import (  # noqa: F401
    _bfp_block_exp,
    _bfp_round_block,
    _vc_bfp_escape_exp,
    _vc_bfp_zero_block,
)
from refimpl.kernels.common import (  # noqa: F401  (re-exported: the shared scalar kernels)
    _INF,
    _JIT,
    _cat,
    _cat_unit,
    _ldexp,
    _round_away,
    _round_int,
    _vc_elem,
    _vc_escape_uniform,
    _vc_flags,
    keyed_uniform,
    keyed_uniforms_into,
)
from refimpl.kernels.fixed import (
    _fixed_nearest,
    _fixed_stochastic,
    f32_fast_path_ok,
    fixed_nearest_f32_par,
)
from refimpl.kernels.float import (  # noqa: F401
    _float_nearest,
    _float_overflow,
    _float_params,
    _float_stochastic,
    _float_ulp_exp,
    _vc_float_se,
)
from refimpl.slots import (  # noqa: F401  (VC_* re-exported for the test hooks)
    FIXED_DELTA,
    FIXED_HI,
    FIXED_LO,
    KIND,
    KIND_BFP,
    KIND_FIXED,
    KIND_FLOAT,
    KIND_IEEE,
    KIND_MX,
    KIND_NONE,
    TIES,
    VC_PUBLISHED_BIT,
    VC_SPEC_CLIP_BIT,
)

__all__ = [
    "nearest_into",
    "stochastic_into",
    "vc_into",
    "vc_gap_into",
    "nearest_into_par",
    "stochastic_into_par",
    "stochastic_keyed_into_par",
    "fixed_nearest_f32_par",
    "f32_fast_path_ok",
    "nearest_rows",
    "stochastic_rows",
    "vc_rows",
    "keyed_uniform",
    "keyed_uniforms_into",
    "categorical_into",
    "is_blockwise",
    "PAR_MIN",
]

#: arrays at least this long go through the parallel kernels in the public API
PAR_MIN = 1 << 15


@njit(inline="always", **_JIT)
def is_blockwise(code):
    """Whether the format shares a scale across elements (BFP, MX): a sampler quantizes each chain's row on its own."""
    kind = int(code[KIND])
    return kind == KIND_BFP or kind == KIND_MX


# --------------------------------------------------------------------------------------
# serial dispatchers
# --------------------------------------------------------------------------------------
@njit(**_JIT)
def nearest_into(x, out, code):
    """out = Q^d(x) (Q1) for the format ``code``; whole array one block for BFP."""
    kind = int(code[KIND])
    if kind == KIND_FIXED:
        _fixed.nearest_into(x, out, code)
    elif kind == KIND_BFP:
        _bfp.nearest_into(x, out, code)
    elif kind == KIND_FLOAT:
        _float.nearest_into(x, out, code)
    elif kind == KIND_IEEE:
        _ieee.nearest_into(x, out, code)
    elif kind == KIND_MX:
        _mx.nearest_into(x, out, code)
    elif kind == KIND_NONE:
        for i in range(x.size):
            out[i] = x[i]
    else:
        raise ValueError("nearest_into: unknown format kind in code[KIND]")


@njit(**_JIT)
def stochastic_into(x, u, out, code):
    """out = Q^s(x) (Q2'): Δ·floor(x/Δ + u[i]) then saturation; whole array one block for BFP."""
    kind = int(code[KIND])
    if kind == KIND_FIXED:
        _fixed.stochastic_into(x, u, out, code)
    elif kind == KIND_BFP:
        _bfp.stochastic_into(x, u, out, code)
    elif kind == KIND_FLOAT:
        _float.stochastic_into(x, u, out, code)
    elif kind == KIND_IEEE:
        _ieee.stochastic_into(x, u, out, code)
    elif kind == KIND_MX:
        _mx.stochastic_into(x, u, out, code)
    elif kind == KIND_NONE:
        for i in range(x.size):
            out[i] = x[i]
    else:
        raise ValueError("stochastic_into: unknown format kind in code[KIND]")


@njit(**_JIT)
def vc_into(mu, var, xi, u_round, u_cat, out, code):
    """out = Q^vc(mu, var) ((Q5)/(Q6)), branch per element (per block for BFP).

    Δ: fixed point -> the format's Δ, clip to [L, U]; BFP -> Δ_B of **mu's** block;
    qtorch/IEEE float -> the ULP of mu_i's binade (e = max(floor(log2 min(|mu_i|, max)), e_min));
    MX/NVFP4 -> the element ULP under the block's scale (:func:`refimpl.kernels.mx.vc_into`).

    For BFP/floats neither branch is clipped to mu's block/binade range (the spec's
    original "Project choice" clip, withdrawn in §2.5, forbade every move up out of the
    block; docs/quantizers.md).  Both branches compute θ on mu's grid Δ, unclipped:
    branch 1 (V > Δ²/4) θ = Q^d(x) + sign(r)·Cat(|r|, V₀); branch 2 θ = Q^s(mu) + Cat(0,
    V - V_s).  If max|θ| over the block (BFP) / |θ_i| (floats) exceeds mu's range, the
    result lies in a coarser block: with e' = floor(log2 of it), θ is rounded
    **stochastically** onto the grid Δ' of exponent e', θ <- Δ'·floor(θ/Δ' + u), with u the
    element's ``u_round`` in branch 1 (unused there otherwise) and the fair coin
    u = 3/4·[ξ > 0] + 1/4·[ξ <= 0] in branch 2 (``_vc_escape_uniform``; branch 2 escapes by
    one binade, Δ' = 2Δ, so θ/Δ' is an integer or a half-integer); Δ' = 2^(e'+2-W) (BFP)
    or 2^(e'-M) (floats).  Then BFP saturates at ±(2^(e'+1) - Δ') (a value rounding up to
    2^(e'+1) saturates) and floats at ±max (the format's largest finite value, never ±inf).
    Mean stays μ (except at saturation); variance V + E[p(1-p)Δ'²; escape], p the
    fractional part of θ/Δ' (branch 2: + Δ² for each element at an odd multiple of Δ in an
    escaping block).  ±inf μ saturates to the range end.  An all-zero BFP block
    (Δ_B = 0) with V > 0 takes the Δ_B -> 0 limit of this rule (``_vc_bfp_zero_block``):
    θ = sqrt(V)·ξ stochastically rounded onto the grid of its own block exponent (the
    spec's zeros would be an absorbing state of every sampler).

    ``code[VC_FLAGS]`` is a bit field: bit 1 (published flag, BFP/float only): branch 2 is plain
    Q^s(mu), clipped to mu's range as before; bit 2 (test hook): both branches clipped to
    mu's range, the spec's withdrawn original choice.
    """
    kind = int(code[KIND])
    if kind == KIND_FIXED:
        _fixed.vc_into(mu, var, xi, u_round, u_cat, out, code)
    elif kind == KIND_BFP:
        _bfp.vc_into(mu, var, xi, u_round, u_cat, out, code)
    elif kind == KIND_FLOAT:
        _float.vc_into(mu, var, xi, u_round, u_cat, out, code)
    elif kind == KIND_IEEE:
        _ieee.vc_into(mu, var, xi, u_round, u_cat, out, code)
    elif kind == KIND_MX:
        _mx.vc_into(mu, var, xi, u_round, u_cat, out, code)
    elif kind == KIND_NONE:
        for i in range(mu.size):
            out[i] = mu[i]
    else:
        raise ValueError("vc_into: unknown format kind in code[KIND]")


@njit(**_JIT)
def vc_gap_into(mu, out, code):
    """out[i] = the gap Δ that ``vc_into`` uses for mu[i] (0 for a zero block / the identity)."""
    kind = int(code[KIND])
    if kind == KIND_FIXED:
        _fixed.gap_into(mu, out, code)
    elif kind == KIND_BFP:
        _bfp.gap_into(mu, out, code)
    elif kind == KIND_FLOAT:
        _float.gap_into(mu, out, code)
    elif kind == KIND_IEEE:
        _ieee.gap_into(mu, out, code)
    elif kind == KIND_MX:
        _mx.gap_into(mu, out, code)
    elif kind == KIND_NONE:
        for i in range(mu.size):
            out[i] = 0.0
    else:
        raise ValueError("vc_gap_into: unknown format kind in code[KIND]")


# --------------------------------------------------------------------------------------
# parallel variants (element-wise formats) and row variants (block formats)
# --------------------------------------------------------------------------------------
@njit(parallel=True, **_JIT)
def nearest_into_par(x, out, code):
    """Parallel ``nearest_into`` for element-wise formats (fixed, float, IEEE; not BFP/MX)."""
    kind = int(code[KIND])
    ties = int(code[TIES])
    n = x.size
    if kind == KIND_FIXED:
        delta, lo, hi = code[FIXED_DELTA], code[FIXED_LO], code[FIXED_HI]
        inv = 1.0 / delta
        if ties == 1:  # the common case: branch-free loop that vectorises
            for i in prange(n):
                xv = x[i]
                xc = min(max(np.float64(xv), lo - delta), hi + delta)
                q = min(max(_round_away(xc * inv) * delta + 0.0, lo), hi)
                out[i] = xv if xv != xv else q
        else:
            for i in prange(n):
                out[i] = _fixed_nearest(x[i], delta, inv, lo, hi, ties)
    elif kind == KIND_FLOAT or kind == KIND_IEEE:
        emin, man, maxv, has_inf, saturate = _float_params(code)
        for i in prange(n):
            out[i] = _float_nearest(x[i], emin, man, maxv, has_inf, saturate, ties)
    elif kind == KIND_NONE:
        for i in prange(n):
            out[i] = x[i]
    else:
        raise ValueError("nearest_into_par: element-wise format kinds only (fixed, float, IEEE, none)")


@njit(parallel=True, **_JIT)
def stochastic_into_par(x, u, out, code):
    """Parallel ``stochastic_into`` for element-wise formats (not BFP/MX)."""
    kind = int(code[KIND])
    n = x.size
    if kind == KIND_FIXED:
        delta, lo, hi = code[FIXED_DELTA], code[FIXED_LO], code[FIXED_HI]
        inv = 1.0 / delta
        for i in prange(n):
            out[i] = _fixed_stochastic(x[i], u[i], delta, inv, lo, hi)
    elif kind == KIND_FLOAT or kind == KIND_IEEE:
        emin, man, maxv, has_inf, saturate = _float_params(code)
        for i in prange(n):
            out[i] = _float_stochastic(x[i], u[i], emin, man, maxv, has_inf, saturate)
    elif kind == KIND_NONE:
        for i in prange(n):
            out[i] = x[i]
    else:
        raise ValueError("stochastic_into_par: element-wise format kinds only (fixed, float, IEEE, none)")


@njit(parallel=True, **_JIT)
def stochastic_keyed_into_par(x, key, out, code):
    """``stochastic_into`` with u[i] = keyed_uniform(key, i), element-wise formats (not BFP/MX)."""
    kind = int(code[KIND])
    n = x.size
    if kind == KIND_FIXED:
        delta, lo, hi = code[FIXED_DELTA], code[FIXED_LO], code[FIXED_HI]
        inv = 1.0 / delta
        for i in prange(n):
            out[i] = _fixed_stochastic(x[i], keyed_uniform(key, i), delta, inv, lo, hi)
    elif kind == KIND_FLOAT or kind == KIND_IEEE:
        emin, man, maxv, has_inf, saturate = _float_params(code)
        for i in prange(n):
            out[i] = _float_stochastic(x[i], keyed_uniform(key, i), emin, man, maxv, has_inf, saturate)
    elif kind == KIND_NONE:
        for i in prange(n):
            out[i] = x[i]
    else:
        raise ValueError("stochastic_keyed_into_par: element-wise format kinds only (fixed, float, IEEE, none)")


@njit(parallel=True, **_JIT)
def nearest_rows(x, out, code):
    """Q^d with each row of the C-contiguous 2-D ``x`` one BFP block / one row of MX blocks (any format)."""
    for r in prange(x.shape[0]):
        nearest_into(x[r], out[r], code)


@njit(parallel=True, **_JIT)
def stochastic_rows(x, u, out, code):
    """Q^s with each row of the C-contiguous 2-D ``x`` one BFP block / one row of MX blocks (any format)."""
    for r in prange(x.shape[0]):
        stochastic_into(x[r], u[r], out[r], code)


@njit(parallel=True, **_JIT)
def vc_rows(mu, var, xi, u_round, u_cat, out, code):
    """Q^vc with each row of the C-contiguous 2-D ``mu`` one BFP block / one row of MX blocks (any format)."""
    for r in prange(mu.shape[0]):
        vc_into(mu[r], var, xi[r], u_round[r], u_cat[r], out[r], code)


@njit(**_JIT)
def categorical_into(mu, var, delta, u, out):
    """out[i] = Cat(mu[i], var[i]) on {+delta[i], -delta[i], 0} (Q4) from the uniform u[i]."""
    for i in range(mu.size):
        out[i] = _cat(mu[i], var[i], delta[i], u[i])

