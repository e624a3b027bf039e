"""Shared scalar kernels of every format module (refimpl.kernels): rounding to an integer,
exact power-of-two scaling, the categorical offset Cat (Q4), one Q^vc element (Q5)/(Q6),
and the counter-based uniforms of the keyed stochastic path.

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
from numba import njit

from refimpl.slots import VC_FLAGS, VC_PUBLISHED_BIT, VC_SPEC_CLIP_BIT

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

    def keyed_uniform(key: int | np.uint64, i: int) -> float:
        """Uniform in [0, 1) for counter ``i`` of stream ``key`` (splitmix64, 53 bits)."""
        z = (int(key) + (int(i) + 1) * 0x9E3779B97F4A7C15) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        z = z ^ (z >> 31)
        return float(z >> 11) * _TWO_M53

else:

    @njit(inline="always", **_JIT)
    def keyed_uniform(key: int | np.uint64, i: int) -> float:
        """Uniform in [0, 1) for counter ``i`` of stream ``key`` (splitmix64, 53 bits)."""
        z = np.uint64(key) + (np.uint64(i) + _ONE) * _PHI
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        z = z ^ (z >> _S31)
        return float(z >> _S11) * _TWO_M53


@njit(**_JIT)
def keyed_uniforms_into(key: int | np.uint64, start: int, out: np.ndarray) -> None:
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



@njit(inline="always", **_JIT)
def _vc_flags(code):
    """(published, spec_clip) from the bit field ``code[VC_FLAGS]`` (1: published fallback; 2: spec clip)."""
    f = int(code[VC_FLAGS])
    return (f & VC_PUBLISHED_BIT) != 0, (f & VC_SPEC_CLIP_BIT) != 0
