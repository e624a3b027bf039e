"""Jitted quantization kernels on 1-D arrays, driven by a format code (ALGORITHMS.md §2).

Contract (docs/architecture.md): every kernel is ``@njit(cache=True)``, takes
contiguous 1-D float32 or float64 arrays, writes into ``out`` (which may alias
the input) and treats the **whole 1-D array as one block** for block floating
point.  All arithmetic is done in float64 (exact for float32 inputs); the result
is cast to ``out``'s dtype on store.

Serial kernels (callable from other ``@njit`` code, e.g. inside a loop over chains):

``nearest_into(x, out, code)``
    Q^d (Q1); ties away from zero (BFP: toward +inf; IEEE: to even), or the rule in ``code[5]``.
``stochastic_into(x, u, out, code)``
    Q^s (Q2'): Δ·floor(x/Δ + u) then saturation, with u[i] ~ U[0, 1) given.
``vc_into(mu, var, xi, u_round, u_cat, out, code)``
    Q^vc (Q5)/(Q6); ``var`` a float scalar >= 0.  Consumes xi[i], u_round[i], u_cat[i]
    for every element whichever branch it takes.
``keyed_uniform(key, i)`` / ``keyed_uniforms_into(key, start, out)``
    the counter-based uniforms of the fast seeded path (see below).

Parallel variants for large arrays (not for use inside another parallel loop):
``nearest_into_par``, ``stochastic_into_par``, ``stochastic_keyed_into_par`` for the
element-wise formats (fixed, qtorch float, IEEE), ``fixed_nearest_f32_par`` (fixed-point
nearest in float32 arithmetic, bit-identical where ``f32_fast_path_ok``), and ``*_rows``
variants that treat each row of a C-contiguous 2-D array as one BFP block.

Counter-based uniforms.  ``keyed_uniform(key, i)`` = (splitmix64(key + (i+1)·φ) >> 11)·2^-53
with φ = 0x9E3779B97F4A7C15 (Steele, Lea & Flood, "Fast splittable pseudorandom
number generators", OOPSLA 2014), a multiple of 2^-53 in [0, 1).  It is a pure
function of (key, i), so the parallel loop is reproducible whatever the thread
count, identical under ``NUMBA_DISABLE_JIT=1`` and can be materialised
(``keyed_uniforms_into``) for the noise-in form.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

__all__ = [
    "nearest_into",
    "stochastic_into",
    "vc_into",
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
    "vc_gap_into",
    "PAR_MIN",
]

#: arrays at least this long go through the parallel kernels in the public API
PAR_MIN = 1 << 15

_INF = np.inf
_JIT = dict(cache=True, error_model="numpy")

# --------------------------------------------------------------------------------------
# counter-based uniforms (splitmix64)
# --------------------------------------------------------------------------------------
_PHI = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO_M53 = 2.0**-53

if numba.config.DISABLE_JIT:  # pure-Python integers: same bits, no overflow warnings
    _MASK = (1 << 64) - 1

    def keyed_uniform(key, i):
        """Uniform in [0, 1) for counter ``i`` of stream ``key`` (splitmix64, 53 bits)."""
        z = (int(key) + (int(i) + 1) * 0x9E3779B97F4A7C15) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        z = z ^ (z >> 31)
        return float(z >> 11) * _TWO_M53

else:

    @njit(inline="always", **_JIT)
    def keyed_uniform(key, i):
        """Uniform in [0, 1) for counter ``i`` of stream ``key`` (splitmix64, 53 bits)."""
        z = np.uint64(key) + (np.uint64(i) + _ONE) * _PHI
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        z = z ^ (z >> _S31)
        return float(z >> _S11) * _TWO_M53


@njit(**_JIT)
def keyed_uniforms_into(key, start, out):
    """out[j] = keyed_uniform(key, start + j): the exact uniforms the keyed kernels use."""
    for j in range(out.size):
        out[j] = keyed_uniform(key, start + j)


# --------------------------------------------------------------------------------------
# scalar helpers
# --------------------------------------------------------------------------------------
if numba.config.DISABLE_JIT:

    def _ldexp(x, e):
        """x·2^e; ±inf on overflow as in compiled code (Python's math.ldexp raises instead)."""
        try:
            return math.ldexp(x, e)
        except OverflowError:
            return math.copysign(math.inf, x)

else:

    @njit(inline="always", **_JIT)
    def _ldexp(x, e):
        """x·2^e (IEEE: ±inf on overflow)."""
        return math.ldexp(x, e)


@njit(inline="always", **_JIT)
def _round_away(z):
    """Nearest integer to z, ties away from zero; exact for |z| <= 2^52 + 1.

    f = floor(|z| + 1/2) can only come out one too large (when |z| + 1/2 rounds up to an
    integer); f - 1/2 and the comparison are exact, so the correction is exact.
    """
    a = abs(z)
    f = np.floor(a + 0.5)
    f -= 1.0 if f - 0.5 > a else 0.0
    return math.copysign(f, z)


@njit(inline="always", **_JIT)
def _round_int(z, ties):
    """Nearest integer to z (exact), ties: 1 away from zero, 2 to even, 3 toward +inf."""
    if ties == 1 and abs(z) <= 4503599627370497.0:
        return _round_away(z)
    a = abs(z)
    f = np.floor(a)
    d = a - f  # exact: Sterbenz for f >= 1, d = a for f = 0
    if d > 0.5:
        f += 1.0
    elif d == 0.5:
        if ties == 1:
            f += 1.0
        elif ties == 2:
            if f - 2.0 * np.floor(0.5 * f) == 1.0:
                f += 1.0
        elif z > 0.0:
            f += 1.0
    return math.copysign(f, z)


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
    exp = int(code[1])
    man = int(code[2])
    emin = 2 - (1 << (exp - 1))
    maxv = code[3]
    has_inf = code[4] != 0.0
    saturate = int(code[0]) == 3 or code[6] != 0.0
    return emin, man, maxv, has_inf, saturate


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


@njit(inline="always", **_JIT)
def _cat_unit(m, v, u):
    """One draw of Cat(m, v) on {+1, -1, 0} (Q4) with Δ = 1, from the uniform u.

    P(±1) = (v + m² ± m)/2 is evaluated as ((v - 1/4) + (1/2 ± m)²)/2, algebraically the
    same; at the two uses in Q^vc (v = 1/4 with m <= 1/2, and m = 0 with v <= 1/4) both
    probabilities are >= 0 in floating point too.  Working in units of Δ (a power of
    two, so the scaling is exact) avoids underflow of Δ² for tiny gaps.
    """
    w = v - 0.25
    p_plus = (w + (0.5 + m) * (0.5 + m)) * 0.5
    p_minus = (w + (0.5 - m) * (0.5 - m)) * 0.5
    if u < p_plus:
        return 1.0
    if u < p_plus + p_minus:
        return -1.0
    return 0.0


@njit(inline="always", **_JIT)
def _cat(mu, v, delta, u):
    """One draw of Cat(mu, v) on {+Δ, -Δ, 0} (Q4): Δ·Cat(mu/Δ, v/Δ²) in units of Δ."""
    return delta * _cat_unit(mu / delta, (v / delta) / delta, u)


@njit(inline="always", **_JIT)
def _vc_elem(mu0, var, xi, ur, uc, se, lo, hi, ties, published, clip1=True, clip2=True, ktop=0.0):
    """Q^vc for one element on the grid Δ = 2^se, clipped to [lo, hi] ((Q5)/(Q6)).

    Computed in units of Δ (exact power-of-two scalings): z = value/Δ, integers k.
    ``clip1=False`` / ``clip2=False``: a branch-1 / branch-2 result is returned
    **unclipped** (on the grid Δ, possibly outside [lo, hi]); the caller applies the
    escape re-rounding of ``vc_into``.  ±inf inputs are always clipped.

    ``ktop`` (with ``clip2=False``): the boundary 2^(e+1) of μ's block/binade in units of
    Δ, above which the grid is Δ' = 2Δ.  When Q^s(μ) lands on it (|k| = ktop) the branch-2
    top-up Cat(0, w), w = (V - V_s)/Δ², would step to ±(ktop + 1)Δ, which is not
    representable; it is drawn instead on the nearest representable neighbours
    {-Δ, 0, +2Δ} (outward +2Δ): P(+2Δ) = w/6, P(-Δ) = w/3, so its mean is 0 and its
    variance exactly wΔ² (w <= 1/4, so the probabilities are valid).  Branch 2 thus keeps
    mean μ and variance V across the boundary, with no excess.
    """
    mu = np.float64(mu0)
    if mu != mu:
        return mu
    if abs(mu) == _INF:
        return lo if mu < 0.0 else hi
    delta = _ldexp(1.0, se)
    # keep mu/Δ finite for absurdly large |mu| (> 2^60 Δ beyond the range): such inputs
    # saturate anyway unless sqrt(var) is of the same absurd size
    big = _ldexp(1.0, min(se + 60, 1000))
    mc = min(max(mu, lo - big), hi + big)
    vr = (var / delta) / delta  # V in units of Δ² (inf if it overflows: branch 1)
    if vr > 0.25:  # branch 1 (Q5): V > V0 = Δ²/4
        x = mc + math.sqrt(var - 0.25 * delta * delta) * xi
        z = _ldexp(x, -se)
        k = _round_int(z, ties)  # Q^d(x) = kΔ, unclipped
        r = z - k  # (x - Q^d(x))/Δ, exact, |r| <= 1/2
        c = _cat_unit(abs(r), 0.25, uc)
        if r > 0.0:  # θ = Q^d(x) + sign(r)·c, sign(0) = 0
            k += c
        elif r < 0.0:
            k -= c
        if not clip1:
            return _ldexp(k, se) + 0.0
    else:  # branch 2 (Q6)
        z = _ldexp(mc, -se)
        k = np.floor(z + ur)  # Q^s(mu) = kΔ, unclipped
        if not published:
            a = abs(z)
            p = a - np.floor(a)
            vs = p * (1.0 - p)  # σ²_SR(mu)/Δ²
            if vr > vs:
                w = vr - vs
                if not clip2 and abs(k) == ktop:  # top-up across the boundary: {-Δ, 0, +2Δ}
                    a = w / 6.0
                    if uc < a:
                        k += math.copysign(2.0, k)
                    elif uc < a + w / 3.0:
                        k -= math.copysign(1.0, k)
                else:
                    k += _cat_unit(0.0, w, uc)
        if not clip2:
            return _ldexp(k, se) + 0.0
    theta = _ldexp(k, se) + 0.0
    return min(max(theta, lo), hi)


@njit(inline="always", **_JIT)
def _vc_escape_uniform(branch1, xi, ur):
    """The uniform that re-rounds an escaped Q^vc result onto the coarser grid Δ'.

    Branch 1 does not use ``u_round`` otherwise, so it is that uniform.  Branch 2 uses
    ``u_round`` (Q^s) and ``u_cat`` (the top-up) but not ``xi``; its unclipped results lie
    on μ's grid Δ and escape by at most one binade (|θ| <= 2^(e+1) + Δ), where Δ' = 2Δ, so
    θ/Δ' has fractional part 0 or 1/2 and a fair coin is exactly what unbiased rounding
    needs: u = 3/4 if ξ > 0 else 1/4 gives floor(θ/Δ' + u) = either neighbour with
    probability 1/2 (and leaves even multiples alone).  ξ is independent of u_round and
    u_cat, so the coin is independent of θ; the noise layout is unchanged.
    """
    if branch1:
        return ur
    return 0.75 if xi > 0.0 else 0.25


# --------------------------------------------------------------------------------------
# BFP on one block (the whole 1-D array)
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# public 1-D kernels (serial)
# --------------------------------------------------------------------------------------
@njit(**_JIT)
def nearest_into(x, out, code):
    """out = Q^d(x) (Q1) for the format ``code``; whole array one block for BFP."""
    kind = int(code[0])
    ties = int(code[5])
    n = x.size
    if kind == 1:
        delta, lo, hi = code[1], code[2], code[3]
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
    elif kind == 2:
        _bfp_round_block(x, x, out, int(code[1]), ties, False)
    elif kind == 3 or kind == 4:
        emin, man, maxv, has_inf, saturate = _float_params(code)
        for i in range(n):
            out[i] = _float_nearest(x[i], emin, man, maxv, has_inf, saturate, ties)
    else:
        for i in range(n):
            out[i] = x[i]


@njit(**_JIT)
def stochastic_into(x, u, out, code):
    """out = Q^s(x) (Q2'): Δ·floor(x/Δ + u[i]) then saturation; whole array one block for BFP."""
    kind = int(code[0])
    n = x.size
    if kind == 1:
        delta, lo, hi = code[1], code[2], code[3]
        inv = 1.0 / delta
        for i in range(n):
            out[i] = _fixed_stochastic(x[i], u[i], delta, inv, lo, hi)
    elif kind == 2:
        _bfp_round_block(x, u, out, int(code[1]), 0, True)
    elif kind == 3 or kind == 4:
        emin, man, maxv, has_inf, saturate = _float_params(code)
        for i in range(n):
            out[i] = _float_stochastic(x[i], u[i], emin, man, maxv, has_inf, saturate)
    else:
        for i in range(n):
            out[i] = x[i]


#: bit of ``code[7]`` selecting the published BFP/float ``fp_Q_vc`` fallback (``with_options``)
VC_PUBLISHED_BIT = 1
#: bit of ``code[7]`` (test hook, not public API) selecting the spec's *original*, withdrawn project
#: choice: results of both branches clipped to μ's block/binade range instead of the escape re-rounding
VC_SPEC_CLIP_BIT = 2


@njit(inline="always", **_JIT)
def _vc_flags(code):
    """(published, spec_clip) from the bit field ``code[7]`` (1: published fallback; 2: spec clip)."""
    f = int(code[7])
    return (f & VC_PUBLISHED_BIT) != 0, (f & VC_SPEC_CLIP_BIT) != 0


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
def vc_into(mu, var, xi, u_round, u_cat, out, code):
    """out = Q^vc(mu, var) ((Q5)/(Q6)), branch per element (per block for BFP).

    Δ: fixed point -> the format's Δ, clip to [L, U]; BFP -> Δ_B of **mu's** block;
    qtorch/IEEE float -> the ULP of mu_i's binade (e = max(floor(log2 min(|mu_i|, max)), e_min)).

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

    ``code[7]`` is a bit field: bit 1 (published flag, BFP/float only): branch 2 is plain
    Q^s(mu), clipped to mu's range as before; bit 2 (test hook): both branches clipped to
    mu's range, the spec's withdrawn original choice.
    """
    kind = int(code[0])
    ties = int(code[5])
    published, spec_clip = _vc_flags(code)
    published = published and kind != 1
    n = mu.size
    if kind == 1:
        delta, lo, hi = code[1], code[2], code[3]
        se = math.frexp(delta)[1] - 1
        for i in range(n):
            out[i] = _vc_elem(mu[i], var, xi[i], u_round[i], u_cat[i], se, lo, hi, ties, published)
    elif kind == 2:
        wl = int(code[1])
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
    elif kind == 3 or kind == 4:
        emin, man, maxv, has_inf, saturate = _float_params(code)
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
    else:
        for i in range(n):
            out[i] = mu[i]


# --------------------------------------------------------------------------------------
# parallel variants (element-wise formats) and row-block variants (BFP)
# --------------------------------------------------------------------------------------
@njit(parallel=True, **_JIT)
def nearest_into_par(x, out, code):
    """Parallel ``nearest_into`` for element-wise formats (not BFP)."""
    kind = int(code[0])
    ties = int(code[5])
    n = x.size
    if kind == 1:
        delta, lo, hi = code[1], code[2], code[3]
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
    elif kind == 3 or kind == 4:
        emin, man, maxv, has_inf, saturate = _float_params(code)
        for i in prange(n):
            out[i] = _float_nearest(x[i], emin, man, maxv, has_inf, saturate, ties)
    else:
        for i in prange(n):
            out[i] = x[i]


@njit(parallel=True, **_JIT)
def fixed_nearest_f32_par(x, out, delta, lo, hi):
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


def f32_fast_path_ok(code) -> bool:
    """Whether ``fixed_nearest_f32_par`` is exact (bit-identical) for this kernel code."""
    if int(code[0]) != 1 or int(code[5]) != 1 or code[4] > 23:
        return False
    tiny = np.finfo(np.float32).tiny
    big = float(np.finfo(np.float32).max)
    return bool(code[1] >= tiny and -code[2] >= tiny and abs(code[2]) <= big and abs(code[3]) <= big)


@njit(parallel=True, **_JIT)
def stochastic_into_par(x, u, out, code):
    """Parallel ``stochastic_into`` for element-wise formats (not BFP)."""
    kind = int(code[0])
    n = x.size
    if kind == 1:
        delta, lo, hi = code[1], code[2], code[3]
        inv = 1.0 / delta
        for i in prange(n):
            out[i] = _fixed_stochastic(x[i], u[i], delta, inv, lo, hi)
    elif kind == 3 or kind == 4:
        emin, man, maxv, has_inf, saturate = _float_params(code)
        for i in prange(n):
            out[i] = _float_stochastic(x[i], u[i], emin, man, maxv, has_inf, saturate)
    else:
        for i in prange(n):
            out[i] = x[i]


@njit(parallel=True, **_JIT)
def stochastic_keyed_into_par(x, key, out, code):
    """``stochastic_into`` with u[i] = keyed_uniform(key, i), element-wise formats (not BFP)."""
    kind = int(code[0])
    n = x.size
    if kind == 1:
        delta, lo, hi = code[1], code[2], code[3]
        inv = 1.0 / delta
        for i in prange(n):
            out[i] = _fixed_stochastic(x[i], keyed_uniform(key, i), delta, inv, lo, hi)
    elif kind == 3 or kind == 4:
        emin, man, maxv, has_inf, saturate = _float_params(code)
        for i in prange(n):
            out[i] = _float_stochastic(x[i], keyed_uniform(key, i), emin, man, maxv, has_inf, saturate)
    else:
        for i in prange(n):
            out[i] = x[i]


@njit(parallel=True, **_JIT)
def nearest_rows(x, out, code):
    """Q^d with each row of the C-contiguous 2-D ``x`` one BFP block (any format)."""
    for r in prange(x.shape[0]):
        nearest_into(x[r], out[r], code)


@njit(parallel=True, **_JIT)
def stochastic_rows(x, u, out, code):
    """Q^s with each row of the C-contiguous 2-D ``x`` one BFP block (any format)."""
    for r in prange(x.shape[0]):
        stochastic_into(x[r], u[r], out[r], code)


@njit(parallel=True, **_JIT)
def vc_rows(mu, var, xi, u_round, u_cat, out, code):
    """Q^vc with each row of the C-contiguous 2-D ``mu`` one BFP block (any format)."""
    for r in prange(mu.shape[0]):
        vc_into(mu[r], var, xi[r], u_round[r], u_cat[r], out[r], code)


@njit(**_JIT)
def categorical_into(mu, var, delta, u, out):
    """out[i] = Cat(mu[i], var[i]) on {+delta[i], -delta[i], 0} (Q4) from the uniform u[i]."""
    for i in range(mu.size):
        out[i] = _cat(mu[i], var[i], delta[i], u[i])


@njit(**_JIT)
def vc_gap_into(mu, out, code):
    """out[i] = the gap Δ that ``vc_into`` uses for mu[i] (0 for a BFP zero block / identity)."""
    kind = int(code[0])
    n = mu.size
    if kind == 1:
        for i in range(n):
            out[i] = code[1]
    elif kind == 2:
        found, eb = _bfp_block_exp(mu)
        d = _ldexp(1.0, eb + 2 - int(code[1])) if found else 0.0
        for i in range(n):
            out[i] = d
    elif kind == 3 or kind == 4:
        emin, man, maxv, has_inf, saturate = _float_params(code)
        for i in range(n):
            out[i] = _ldexp(1.0, _vc_float_se(abs(mu[i]), emin, man, maxv))
    else:
        for i in range(n):
            out[i] = 0.0
