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
    BLOCK_KINDS,
    FIXED_DELTA,
    FIXED_HI,
    FIXED_LO,
    KIND,
    KIND_BFP,
    KIND_FIXED,
    KIND_FLOAT,
    KIND_IEEE,
    KIND_MODULES,
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
    for k in BLOCK_KINDS:
        if kind == k:
            return True
    return False


# --------------------------------------------------------------------------------------
# serial dispatchers: a chain of links built from refimpl.slots.KIND_MODULES
# --------------------------------------------------------------------------------------
# A new format adds its kernel modules and its KIND_MODULES entry; nothing here changes.
# Each operation (nearest_into, stochastic_into, vc_into, gap_into) is dispatched by a
# chain of small jitted links, one per kind: a link calls its kind's kernel when
# ``code[KIND]`` matches and passes the call on otherwise; the chain ends in the identity
# (kind 0) or ``ValueError`` (unknown kind).  The links are the code of one template per
# signature with the kernel and the next link bound as globals (as refimpl._loop builds
# its chunk loop), so Numba can cache them: a link taking the kernel as an argument would
# not be cacheable.

# The link templates (one per signature).  THIS_KIND, this_kernel and next_link are the
# globals that _build_dispatcher binds for each link.
def _nearest_link(x, out, code):
    if int(code[KIND]) == THIS_KIND:  # noqa: F821
        this_kernel(x, out, code)  # noqa: F821
    else:
        next_link(x, out, code)  # noqa: F821


def _stochastic_link(x, u, out, code):
    if int(code[KIND]) == THIS_KIND:  # noqa: F821
        this_kernel(x, u, out, code)  # noqa: F821
    else:
        next_link(x, u, out, code)  # noqa: F821


def _vc_link(mu, var, xi, u_round, u_cat, out, code):
    if int(code[KIND]) == THIS_KIND:  # noqa: F821
        this_kernel(mu, var, xi, u_round, u_cat, out, code)  # noqa: F821
    else:
        next_link(mu, var, xi, u_round, u_cat, out, code)  # noqa: F821


def _gap_link(mu, out, code):
    if int(code[KIND]) == THIS_KIND:  # noqa: F821
        this_kernel(mu, out, code)  # noqa: F821
    else:
        next_link(mu, out, code)  # noqa: F821


@njit(inline="always", **_JIT)
def _nearest_end(x, out, code):
    if int(code[KIND]) != KIND_NONE:
        raise ValueError("nearest_into: unknown format kind in code[KIND]")
    for i in range(x.size):
        out[i] = x[i]


@njit(inline="always", **_JIT)
def _stochastic_end(x, u, out, code):
    if int(code[KIND]) != KIND_NONE:
        raise ValueError("stochastic_into: unknown format kind in code[KIND]")
    for i in range(x.size):
        out[i] = x[i]


@njit(inline="always", **_JIT)
def _vc_end(mu, var, xi, u_round, u_cat, out, code):
    if int(code[KIND]) != KIND_NONE:
        raise ValueError("vc_into: unknown format kind in code[KIND]")
    for i in range(mu.size):
        out[i] = mu[i]


@njit(inline="always", **_JIT)
def _gap_end(mu, out, code):
    if int(code[KIND]) != KIND_NONE:
        raise ValueError("vc_gap_into: unknown format kind in code[KIND]")
    for i in range(mu.size):
        out[i] = 0.0  # the identity has gap 0


#: operation -> (its link template, the kernel's name in refimpl.kernels.<module>, the chain's end)
_OPERATIONS = {
    "nearest_into": (_nearest_link, "nearest_into", _nearest_end),
    "stochastic_into": (_stochastic_link, "stochastic_into", _stochastic_end),
    "vc_into": (_vc_link, "vc_into", _vc_end),
    "vc_gap_into": (_gap_link, "gap_into", _gap_end),
}


def _build_dispatcher(operation: str):
    """The jitted dispatcher of ``operation``: a chain of links over KIND_MODULES (see above).

    Inner links are inlined (``inline="always"``), so the chain compiles to the if/elif a
    hand-written dispatcher has.  The qualified name carries a hash of the refimpl sources,
    so a cached link is never reused after any kernel source changed.
    """
    import importlib
    import types

    from refimpl._cache import kernel_source_hash

    template, kernel_name, link = _OPERATIONS[operation]
    stamp = kernel_source_hash()[:12]
    first = next(iter(KIND_MODULES))
    for kind, module in reversed(list(KIND_MODULES.items())):
        kernel = getattr(importlib.import_module(f"refimpl.kernels.{module}"), kernel_name)
        env = {"__name__": __name__, "KIND": KIND, "THIS_KIND": kind, "this_kernel": kernel, "next_link": link}
        fn = types.FunctionType(template.__code__, env, operation)
        fn.__qualname__ = f"{operation}_{module}_{stamp}"  # one cache file per link and source state
        # the outermost link is the public dispatcher, compiled as a normal function
        link = njit(**_JIT)(fn) if kind == first else njit(inline="always", **_JIT)(fn)
    return link


nearest_into = _build_dispatcher("nearest_into")
nearest_into.__doc__ = "out = Q^d(x) (Q1) for the format ``code``; whole array one block for BFP."
stochastic_into = _build_dispatcher("stochastic_into")
stochastic_into.__doc__ = "out = Q^s(x) (Q2'): Δ·floor(x/Δ + u[i]) then saturation; whole array one block for BFP."
vc_into = _build_dispatcher("vc_into")
vc_into.__doc__ = """out = Q^vc(mu, var) ((Q5)/(Q6)), branch per element (per block for BFP).

    Δ: fixed point -> the format's Δ, clip to [L, U]; BFP -> Δ_B of **mu's** block;
    qtorch/IEEE float -> the ULP of mu_i's binade (e = max(floor(log2 min(|mu_i|, max)), e_min));
    MX/NVFP4 -> the element ULP under the block's scale (:func:`refimpl.kernels.mx.vc_into`).

    For BFP/floats neither branch is clipped to mu's block/binade range (the spec's
    original "Project choice" clip, withdrawn in §2.5, forbade every move up out of the
    block; docs/quantizers.md).  Both branches compute θ on mu's grid Δ, unclipped:
    branch 1 (V > Δ²/4) θ = Q^d(x) + sign(r)·Cat(|r|, V₀); branch 2 θ = Q^s(mu) + Cat(0,
    V - V_s), drawn on {-Δ, 0, +2Δ} when Q^s(mu) sits on the boundary 2^(e+1).  If max|θ|
    over the block (BFP) / |θ_i| (floats) exceeds mu's range, the result lies in a coarser
    block: with e' = floor(log2 of it), θ is rounded **stochastically** onto the grid Δ' of
    exponent e', θ <- Δ'·floor(θ/Δ' + u), with u the element's ``u_round`` in branch 1
    (unused there otherwise) and the fair coin u = 3/4·[ξ > 0] + 1/4·[ξ <= 0] in branch 2
    (``_vc_escape_uniform``); then BFP saturates at ±(2^(e'+1) - Δ') and floats at ±max.
    Mean stays μ (except at saturation); variance V + E[p(1-p)Δ'²; escape], p the
    fractional part of θ/Δ' (docs/quantizers.md derives and tests the excess).  An
    all-zero BFP block (Δ_B = 0) with V > 0 takes the Δ_B -> 0 limit of this rule.

    ``code[VC_FLAGS]`` is a bit field: bit 1 (published flag, BFP/float only): branch 2 is plain
    Q^s(mu), clipped to mu's range; bit 2 (test hook): both branches clipped to mu's range,
    the spec's withdrawn original choice.
    """
vc_gap_into = _build_dispatcher("vc_gap_into")
vc_gap_into.__doc__ = "out[i] = the gap Δ that ``vc_into`` uses for mu[i] (0 for a zero block / the identity)."


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

