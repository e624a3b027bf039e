"""Counter-based random numbers of the fast path, and refimpl's replay of it.

The stream (docs/fast_path.md, "The counter stream").  Every random number of the
fast torchport path (:mod:`torchport.fast`) is a pure function of
(seed, step, parameter index, stream id, element index):

    mix(z)        = splitmix64 finaliser: z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
                    z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31   (mod 2^64)
    bits(key, i)  = mix(key + (i + 1)·φ),  φ = 0x9E3779B97F4A7C15            (mod 2^64)
    key(seed, step, param, stream) = bits(bits(bits(seed, step), param), stream)

(Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014;
``bits(key, i) >> 11`` times 2^-53 is exactly :func:`refimpl._qkernels.keyed_uniform`.)
Element i of a parameter's stream then gets

* a k-bit uniform ``u_k(i) = (bits(key, i) >> (64 - k))·2^-k`` (k = 53 for float64,
  k = 24 for float32 and narrower dtypes; u_24 = ⌊u_53·2^24⌋·2^-24, the top bits);
* a standard normal by Box–Muller from the two counters 2i and 2i + 1:
  ``z(i) = sqrt(-2·log(1 - u_k(2i)))·cos(2π·u_k(2i + 1))``  (1 - u_k is exact and > 0).

Stochastic rounding of the fast path (``sr_*``), for a grid step Δ = 2^se:
z = x/Δ (exact), ⌊z⌋ and the fraction f = z - ⌊z⌋ (both exact), and
``Q(x) = Δ·(⌊z⌋ + [u_k < f])``.  P(up) = ⌈f·2^k⌉/2^k, so the bias is in [0, 2^-k·Δ):
the resolution of the k-bit random integer (tests/refimpl/test_counter_rng.py checks it
with MCSE tolerances and a too-few-bits mutation).  Then saturation as the format does.
MX / NVFP4 (docs/mx.md): the rule acts on the element grid, z = x/s with s the block's
holding scale (that of refimpl's MX Q^s, so the block maximum is not clipped).

The replay (``replay_sgld_step`` / ``replay_sghmc_step``) comes in two dtypes: float64 (53-bit
uniforms, float64 NumPy, refimpl's ``vc_into``) and float32 (``dtype="float32"``: the float32
fast path's 24-bit uniforms and float32 arithmetic in its operation order, with log/sqrt/cos
correctly rounded; docs/fast_path.md, "Parity with refimpl").

Because every number is a function of the element index, a tensor computed in
shards (any split of the index range, any number of DDP ranks) has the same bits as
computed whole.  Everything here is ``@njit`` (also correct under
``NUMBA_DISABLE_JIT=1``: pure-Python integer arithmetic gives the same bits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numba
import numpy as np
import numpy.typing as npt
from numba import njit

from refimpl import _qkernels as K
from refimpl import slots as S
from refimpl.formats import Format
from refimpl.kernels import mx as MX

__all__ = [
    "PHI",
    "STREAMS",
    "counter_bits",
    "normals",
    "replay_sghmc_step",
    "replay_sgld_step",
    "sr_round",
    "stream_key",
    "uniforms",
]

PHI = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK = (1 << 64) - 1

#: stream ids, one per noise name of the optimizers' ``noise_layout``
STREAMS = {
    "u_grad": 0, "xi": 1, "u_weight": 2, "u_round": 3, "u_cat": 4, "z1": 5, "z2": 6,
    "u_velocity": 7, "xi_v": 8, "u_round_v": 9, "u_cat_v": 10, "xi_x": 11, "u_round_x": 12,
    "u_cat_x": 13,
}

_JIT = dict(cache=True, error_model="numpy")


def _bits_py(key: int, i: int) -> int:
    """bits(key, i) with Python integers (mod 2^64)."""
    z = (int(key) + (int(i) + 1) * PHI) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def stream_key(seed: int, step: int, param_index: int, stream: str | int) -> int:
    """key(seed, step, param, stream) = bits(bits(bits(seed, step), param), stream), an int in [0, 2^64).

    ``stream`` is a name of :data:`STREAMS` or its integer id.  Negative or non-integer
    arguments are a ValueError naming the argument.
    """
    if isinstance(stream, str):
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {sorted(STREAMS)} or an int >= 0, got {stream!r}")
        stream = STREAMS[stream]
    for name, v in (("seed", seed), ("step", step), ("param_index", param_index), ("stream", stream)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    k = _bits_py(int(seed) & _MASK, int(step))
    k = _bits_py(k, int(param_index))
    return _bits_py(k, int(stream))


if numba.config.DISABLE_JIT:

    def counter_bits(key: int, i: int) -> int:
        """bits(key, i) as a Python int (pure-Python mode)."""
        return _bits_py(key, i)

    def _top(key, i, k):
        return float(_bits_py(key, i) >> (64 - k)) * 2.0 ** -k

else:
    _U1 = np.uint64(1)
    _UPHI = np.uint64(PHI)
    _UM1 = np.uint64(_M1)
    _UM2 = np.uint64(_M2)

    @njit(inline="always", **_JIT)
    def counter_bits(key: int | np.uint64, i: int) -> np.uint64:
        """bits(key, i) as uint64."""
        z = np.uint64(key) + (np.uint64(i) + _U1) * _UPHI
        z = (z ^ (z >> np.uint64(30))) * _UM1
        z = (z ^ (z >> np.uint64(27))) * _UM2
        return z ^ (z >> np.uint64(31))

    @njit(inline="always", **_JIT)
    def _top(key, i, k):
        return float(counter_bits(key, i) >> np.uint64(64 - k)) * math.ldexp(1.0, -k)


@njit(**_JIT)
def _uniforms_into(key, start, k, out):
    for j in range(out.size):
        out[j] = _top(key, start + j, k)


@njit(**_JIT)
def _normals_into(key, start, k, out):
    two_pi = 2.0 * math.pi
    for j in range(out.size):
        i = start + j
        u1 = 1.0 - _top(key, 2 * i, k)
        u2 = _top(key, 2 * i + 1, k)
        out[j] = math.sqrt(-2.0 * math.log(u1)) * math.cos(two_pi * u2)


def _check_bits(bits):
    if bits not in (24, 53):
        raise ValueError(f"bits must be 24 or 53, got {bits!r}")


def uniforms(key: int, n: int, *, start: int = 0, bits: int = 53) -> np.ndarray:
    """u_k(start), ..., u_k(start + n - 1) as float64 (multiples of 2^-bits in [0, 1))."""
    _check_bits(bits)
    out = np.empty(int(n), dtype=np.float64)
    _uniforms_into(np.uint64(key), np.int64(start), bits, out)
    return out


def normals(key: int, n: int, *, start: int = 0, bits: int = 53) -> np.ndarray:
    """Box–Muller normals z(start), ..., z(start + n - 1) in float64 (from ``bits``-bit uniforms)."""
    _check_bits(bits)
    out = np.empty(int(n), dtype=np.float64)
    _normals_into(np.uint64(key), np.int64(start), bits, out)
    return out


# --------------------------------------------------------------------------------------
# stochastic rounding of the fast path: Δ·(⌊z⌋ + [u < f])
# --------------------------------------------------------------------------------------
@njit(**_JIT)
def _sr_elementwise(x, u, out, code):
    """Fixed point and qtorch/IEEE floats, element by element."""
    kind = int(code[S.KIND])
    for i in range(x.size):
        v = np.float64(x[i])
        if kind == S.KIND_FIXED:
            delta, lo, hi = code[S.FIXED_DELTA], code[S.FIXED_LO], code[S.FIXED_HI]
            if v != v:
                out[i] = v
                continue
            z = min(max(v, lo - delta), hi + delta) / delta
            f0 = np.floor(z)
            q = (f0 + (1.0 if u[i] < z - f0 else 0.0)) * delta + 0.0
            out[i] = min(max(q, lo), hi)
        else:
            emin = 2 - (1 << (int(code[S.FLOAT_EXP]) - 1))
            man = int(code[S.FLOAT_MAN])
            maxv = code[S.FLOAT_MAX]
            has_inf = code[S.FLOAT_HAS_INF] != 0.0
            saturate = kind == S.KIND_FLOAT or code[S.SATURATE] != 0.0
            if v != v or v == 0.0:
                out[i] = v
                continue
            if abs(v) == np.inf:
                out[i] = math.copysign(maxv, v) if saturate else (v if has_inf else np.nan)
                continue
            e = math.frexp(abs(v))[1] - 1
            ue = max(e, emin) - man
            z = K._ldexp(v, -ue)
            f0 = np.floor(z)
            q = math.copysign(K._ldexp(f0 + (1.0 if u[i] < z - f0 else 0.0), ue), v)
            if abs(q) > maxv:
                q = math.copysign(maxv, v) if saturate else (math.copysign(np.inf, v) if has_inf else np.nan)
            out[i] = q


@njit(**_JIT)
def _sr_bfp_rows(x, u, out, wl):
    """BFP (kind 2), one block per row of the C-contiguous 2-D ``x``."""
    kmax = K._ldexp(1.0, wl - 1) - 1.0
    for r in range(x.shape[0]):
        found, eb = K._bfp_block_exp(x[r])
        se = eb + 2 - wl
        for j in range(x.shape[1]):
            v = np.float64(x[r, j])
            if v != v:
                out[r, j] = v
                continue
            if not found:
                out[r, j] = 0.0
                continue
            if abs(v) == np.inf:
                out[r, j] = math.copysign(K._ldexp(kmax, se), v)
                continue
            z = K._ldexp(v, -se)
            f0 = np.floor(z)
            k = f0 + (1.0 if u[r, j] < z - f0 else 0.0)
            if abs(k) > kmax:
                k = math.copysign(kmax, k)
            out[r, j] = K._ldexp(k, se) + 0.0


@njit(**_JIT)
def _sr_mx_row(x, u, out, code):
    """MX / NVFP4 (kind 5), one row of blocks (docs/mx.md): per block the holding scale s of
    refimpl's Q^s (``refimpl.kernels.mx._vc_block_scale``), z = x/s, then the k-bit rule on the
    element grid at z -- Δ·(⌊z/Δ⌋ + [u < frac]) -- saturated at the element range, times s.
    A NaN makes its block NaN; an all-zero block keeps the signs of its zeros."""
    is_int, emin, man, maxv, lo, _ = MX._elem_params(code)
    delta = K._ldexp(1.0, -man)
    inv = 1.0 / delta
    b = int(code[S.MX_BLOCK])
    n = x.size
    for j0 in range(0, n, b):
        j1 = min(j0 + b, n)
        status, s = MX._vc_block_scale(x, j0, j1, code)
        for i in range(j0, j1):
            v = np.float64(x[i])
            if status == 2:
                out[i] = np.nan
                continue
            if status == 0:
                out[i] = v * 0.0
                continue
            z = v / s
            if is_int:
                zz = min(max(z, lo - delta), maxv + delta) * inv
                f0 = np.floor(zz)
                q = min(max((f0 + (1.0 if u[i] < zz - f0 else 0.0)) * delta + 0.0, lo), maxv)
            elif z == 0.0:
                q = z
            elif abs(z) == np.inf:
                q = math.copysign(maxv, z)
            else:
                ue = max(math.frexp(abs(z))[1] - 1, emin) - man
                zz = K._ldexp(z, -ue)
                f0 = np.floor(zz)
                q = math.copysign(K._ldexp(f0 + (1.0 if u[i] < zz - f0 else 0.0), ue), z)
                if abs(q) > maxv:
                    q = math.copysign(maxv, z)
            out[i] = q * s


def _rows(x: np.ndarray, dim):
    """BFP blocks as rows (``dim=None``: one block), and the inverse map (as torchport's ``_blocks``)."""
    if dim is None or x.ndim == 0:
        shape = x.shape
        return np.ascontiguousarray(x.reshape(1, -1)), lambda r: r.reshape(shape)
    moved = np.moveaxis(x, dim, 0)
    mshape = moved.shape
    return np.ascontiguousarray(moved.reshape(mshape[0], -1)), lambda r: np.moveaxis(r.reshape(mshape), 0, dim)


def _mx_rows(x: np.ndarray, axis: int):
    """Rows along ``axis`` (MX: each row a line of blocks), and the inverse map (refimpl.quantize's)."""
    if x.ndim == 0:
        return np.ascontiguousarray(x.reshape(1, 1)), lambda r: r.reshape(())
    moved = np.moveaxis(x, axis, -1)
    mshape = moved.shape
    return np.ascontiguousarray(moved.reshape(-1, mshape[-1])), lambda r: np.moveaxis(r.reshape(mshape), -1, axis)


def sr_round(x: np.ndarray, fmt: Format | None, u: np.ndarray) -> np.ndarray:
    """The fast path's stochastic rounding Δ·(⌊x/Δ⌋ + [u < frac]) in float64, given uniforms ``u``.

    ``fmt``: a FixedPoint, BlockFloatingPoint, FloatingPoint, IEEEFloat, MXFormat or NVFP4
    (or None: the identity).  MX: the block scale is refimpl's Q^s holding scale and the
    rule acts on the element grid (``_sr_mx_row``).  ``u`` has ``x``'s shape (element
    order C).  Returns float64.
    """
    x = np.asarray(x, dtype=np.float64)
    if fmt is None:
        return x.copy()
    code = fmt.code
    kind = int(code[S.KIND])
    u = np.asarray(u, dtype=np.float64).reshape(x.shape)
    if kind == S.KIND_BFP:
        rows, back = _rows(x, fmt.dim)
        urows, _ = _rows(u, fmt.dim)
        out = np.empty_like(rows)
        _sr_bfp_rows(rows, urows, out, int(code[S.BFP_WL]))
        return np.ascontiguousarray(back(out))
    if kind == S.KIND_MX:
        rows, back = _mx_rows(x, fmt.axis)
        urows, _ = _mx_rows(u, fmt.axis)
        out = np.empty_like(rows)
        for r in range(rows.shape[0]):
            _sr_mx_row(rows[r], urows[r], out[r], code)
        return np.ascontiguousarray(back(out))
    if kind in (S.KIND_FIXED, S.KIND_FLOAT, S.KIND_IEEE):
        flat = np.ascontiguousarray(x.reshape(-1))
        out = np.empty_like(flat)
        _sr_elementwise(flat, np.ascontiguousarray(u.reshape(-1)), out, code)
        return out.reshape(x.shape)
    raise ValueError(f"fmt must be a fixed, BFP, qtorch float, IEEE or MX format, got {fmt!r}")


def _vc(mu: np.ndarray, var: float, fmt, xi, ur, uc, ties=None, vc_published=False) -> np.ndarray:
    """refimpl's Q^vc (vc_into, per BFP block, per row of MX blocks) fed the counter noise."""
    from refimpl.formats import with_options

    code = with_options(fmt.code, ties=ties, vc_published=vc_published)
    kind = int(code[S.KIND])
    if kind in (S.KIND_BFP, S.KIND_MX):
        split = (lambda a: _rows(a, fmt.dim)) if kind == S.KIND_BFP else (lambda a: _mx_rows(a, fmt.axis))
        rows, back = split(mu)
        r = [split(a.reshape(mu.shape))[0] for a in (xi, ur, uc)]
        out = np.empty_like(rows)
        for j in range(rows.shape[0]):
            K.vc_into(rows[j], float(var), r[0][j], r[1][j], r[2][j], out[j], code)
        return np.ascontiguousarray(back(out))
    flat = np.ascontiguousarray(mu.reshape(-1))
    out = np.empty_like(flat)
    K.vc_into(flat, float(var), xi.reshape(-1), ur.reshape(-1), uc.reshape(-1), out, code)
    return out.reshape(mu.shape)


# --------------------------------------------------------------------------------------
# the float32 replay: the float32 fast path's arithmetic, op by op
# --------------------------------------------------------------------------------------
_F32 = np.float32
_TWO_PI_F32 = np.float32(2.0 * math.pi)  # torch's float32 ``(2.0 * math.pi) * u``: the scalar rounded to float32


def _cr32(fn, x: np.ndarray) -> np.ndarray:
    """fn(x) for a float32 array, correctly rounded to float32: float64 libm, then one rounding.

    (A double rounding needs the float64 result within 2^-29 relative of a float32 midpoint;
    float64 libm is within 1 ulp of float64 -- so this is the correctly rounded float32 value
    except on a set of inputs of relative size about 2^-28.)"""
    return fn(np.asarray(x, dtype=np.float64)).astype(_F32)


def _normals_f32(key: int, n: int, *, start: int = 0, bits: int = 24) -> np.ndarray:
    """The float32 fast path's Box–Muller normals z(start..start+n-1) as float32.

    The operations of ``torchport.counter_rng``'s float32 normals, in their order:
    u1 = 1 - u_k(2i) (exact), l = log(u1), r = sqrt(-2·l) (-2·l exact), a = fl32(2π)·u_k(2i + 1)
    (one float32 rounding), c = cos(a), z = r·c (one float32 rounding) -- with log, sqrt and cos
    correctly rounded (:func:`_cr32`).  torch's float32 log/cos/sqrt (SLEEF-style vector code,
    AVX-512 here) are not: they differ from the correctly rounded value by up to 1 ulp in about
    7 % (log), 5 % (cos) and 15 % (sqrt) of the inputs (measured on 10^6 values), so about 20 %
    of the normals differ by 1-3 ulp(|z|) (docs/fast_path.md, "Parity with refimpl").
    ``bits`` != 24 (53: the float64 stream's uniforms, rounded to float32) is a test mutation.
    """
    u = uniforms(key, 2 * int(n), start=2 * int(start), bits=bits).astype(_F32)
    u1 = _F32(1.0) - u[0::2]
    r = _cr32(np.sqrt, _F32(-2.0) * _cr32(np.log, u1))
    return r * _cr32(np.cos, _TWO_PI_F32 * u[1::2])


def _sr32(x: np.ndarray, fmt, u: np.ndarray) -> np.ndarray:
    """The float32 fast path's k-bit Q^s of float32 ``x``: :func:`sr_round` in float64, cast to float32.

    Exact: on float32 inputs every operation of the fast path's float32 rounding (x·2^-se, ⌊z⌋,
    z - ⌊z⌋, u < f, k·2^se) is exact, and so is refimpl's float64 one, so both give the same
    value; a result below float32's normal range (BFP blocks near 2^-126) is rounded once by
    both (the fast path's ``_ldexp``).  MX blocks are float64 in the fast path anyway.
    """
    return sr_round(np.asarray(x, dtype=np.float64), fmt, np.asarray(u, dtype=np.float64)).astype(_F32)


def _pow2_32(e) -> np.ndarray:
    """2^e in float32 as the fast path builds it (``torchport.fast._pow2``): 2^⌊e/2⌋·2^(e-⌊e/2⌋)."""
    e = np.asarray(e, dtype=np.int64)
    a = e >> 1
    return np.ldexp(_F32(1.0), a).astype(_F32) * np.ldexp(_F32(1.0), e - a).astype(_F32)


def _exp32(a: np.ndarray) -> np.ndarray:
    """⌊log2 a⌋ for finite float32 a > 0 (subnormals included), int64."""
    return (np.frexp(np.asarray(a, dtype=_F32))[1] - 1).astype(np.int64)


def _round_int32(z: np.ndarray, ties: int) -> np.ndarray:
    """Nearest integer of float32 z (exact), ties as refimpl's ``_round_int``."""
    a = np.abs(z)
    f = np.floor(a)
    d = a - f
    if ties == S.TIES_AWAY:
        tie_up = d == 0.5
    elif ties == S.TIES_EVEN:
        tie_up = (d == 0.5) & ((f - _F32(2.0) * np.floor(_F32(0.5) * f)) == 1.0)
    else:
        tie_up = (d == 0.5) & (z > 0.0)
    return np.copysign(f + ((d > 0.5) | tie_up).astype(_F32), z)


def _cat_unit32(m: np.ndarray, w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """refimpl's ``_cat_unit`` in float32, with ``w`` = v - 1/4 given: P(±1) = (w + (1/2 ± m)²)/2."""
    half = _F32(0.5)
    p_plus = (w + (half + m) * (half + m)) * half
    p_minus = (w + (half - m) * (half - m)) * half
    return np.where(u < p_plus, _F32(1.0), np.where(u < p_plus + p_minus, _F32(-1.0), _F32(0.0)))


def _vc_elem32(mu, var32, xi, ur, uc, se, lo, hi, ties, published, clip, ktop):
    """refimpl's ``_vc_elem`` ((Q5)/(Q6), units of Δ = 2^se) on float32 arrays in the float32 fast
    path's operation order (``torchport.fast._vc_units``); returns (θ, branch 1).

    ``var32`` is V rounded to float32 (torch's float32 ``V·x`` and ``V - x`` round the Python
    scalar first).  ``clip`` False: unclipped results for the escape rule (branch 2 clipped if
    ``published``); ``ktop``: the boundary top-up {-Δ, 0, +2Δ} (not published)."""
    delta, inv = _pow2_32(se), _pow2_32(-se)
    big = _pow2_32(np.minimum(se + 60, 126))
    mc = np.minimum(np.maximum(mu, lo - big), hi + big)
    mc = np.where(np.isfinite(mu), mc, _F32(0.0))
    vr = (var32 * inv) * inv
    branch1 = vr > 0.25
    # branch 1 (Q5): x = μ + sqrt(V - Δ²/4)·ξ, θ = Q^d(x) + sign(r)·Cat(|r|, 1/4)
    s1 = _cr32(np.sqrt, np.maximum(var32 - (_F32(0.25) * delta) * delta, _F32(0.0)))
    z1 = (mc + s1 * xi) * inv
    k1 = _round_int32(z1, ties)
    r = z1 - k1
    k1 = k1 + np.sign(r) * _cat_unit32(np.abs(r), _F32(0.0), uc)
    # branch 2 (Q6): Q^s(μ) + Cat(0, V - V_s)
    z2 = mc * inv
    k2 = np.floor(z2 + ur)
    if not published:
        a = np.abs(z2)
        p = a - np.floor(a)
        vs = p * (_F32(1.0) - p)
        w = vr - vs
        top = _cat_unit32(np.zeros_like(w), w - _F32(0.25), uc)
        if ktop is not None and not clip:
            a6 = w / _F32(6.0)
            sgn = np.sign(k2)
            alt = np.where(uc < a6, _F32(2.0) * sgn, np.where(uc < a6 + w / _F32(3.0), -sgn, _F32(0.0)))
            top = np.where(np.abs(k2) == _F32(ktop), alt, top)
        k2 = np.where(vr > vs, k2 + top, k2)
    theta1 = k1 * delta + _F32(0.0)
    theta2 = k2 * delta + _F32(0.0)
    if clip:
        theta1 = np.minimum(np.maximum(theta1, lo), hi)
    if clip or published:
        theta2 = np.minimum(np.maximum(theta2, lo), hi)
    theta = np.where(branch1, theta1, theta2)
    theta = np.where(np.isinf(mu), np.where(mu < 0, lo + _F32(0.0) * mc, hi + _F32(0.0) * mc), theta)
    return np.where(np.isnan(mu), mu, theta).astype(_F32), branch1


def _escape_u32(branch1, xi, ur):
    """refimpl's ``_vc_escape_uniform``: u_round in branch 1, the fair coin 3/4·[ξ > 0] + 1/4·[ξ <= 0] in branch 2."""
    return np.where(branch1, ur, np.where(xi > 0.0, _F32(0.75), _F32(0.25)))


#: grid exponents below this have 2^-se beyond float32's range (the float32 fast path's ``_pow2(-se)`` is inf)
_SE_MIN_F32 = -127


def _vc32(mu: np.ndarray, var: float, fmt, xi, ur, uc, ties=None, vc_published=False) -> np.ndarray:
    """Q^vc of the float32 fast path (``torchport.fast._vc_tensor`` on float32): refimpl's ``vc_into``
    algorithm -- branches (Q5)/(Q6), BFP/float escape re-rounding, all-zero BFP blocks -- in float32
    arithmetic in the fast path's order.  MX: refimpl's float64 ``vc_into`` on the float32 values and
    noise, as the fast path computes MX blocks in float64.

    Elements whose grid Δ = 2^se has se < -127 (bfloat16 values below 2^-120, zero included; BFP
    blocks whose maximum is below about 2^-121), where 2^-se overflows float32, get refimpl's float64
    result rounded to float32 instead, as the float32 fast path does there (it cannot scale by 2^-se
    in float32 and computes those elements in float64; tests/torchport/test_fast_edge_cases.py)."""
    from refimpl.formats import with_options

    code = with_options(fmt.code, ties=ties, vc_published=vc_published)
    f64 = [np.asarray(a, dtype=np.float64).reshape(np.shape(mu)) for a in (mu, xi, ur, uc)]
    if int(code[S.KIND]) == S.KIND_MX:
        return _vc(f64[0], var, fmt, *f64[1:], ties, vc_published).astype(_F32)
    with np.errstate(all="ignore"):  # inf/NaN inputs and the overflowing scalings the fast path has too
        out, tiny = _vc32_arith(mu, var, fmt, code, xi, ur, uc)
    if np.any(tiny):
        out = np.where(tiny, _vc(f64[0], var, fmt, *f64[1:], ties, vc_published).astype(_F32), out)
    return out


def _vc32_arith(mu, var, fmt, code, xi, ur, uc):
    """:func:`_vc32`'s float32 arithmetic; returns (θ, mask of the elements whose grid has se < -127)."""
    kind = int(code[S.KIND])
    ties = int(code[S.TIES])
    published = bool(int(code[S.VC_FLAGS]) & S.VC_PUBLISHED_BIT) and kind != S.KIND_FIXED
    mu, xi, ur, uc = (np.asarray(a, dtype=_F32).reshape(np.shape(mu)) for a in (mu, xi, ur, uc))
    var32 = _F32(var)
    if kind == S.KIND_FIXED:
        delta, lo, hi = float(code[S.FIXED_DELTA]), _F32(code[S.FIXED_LO]), _F32(code[S.FIXED_HI])
        se = np.int64(math.frexp(delta)[1] - 1)
        return (_vc_elem32(mu, var32, xi, ur, uc, se, lo, hi, ties, False, True, None)[0],
                np.full(mu.shape, se < _SE_MIN_F32))
    if kind == S.KIND_BFP:
        wl = int(code[S.BFP_WL])
        rows, back = _rows(mu, fmt.dim)
        xr, urr, ucr = (_rows(a, fmt.dim)[0] for a in (xi, ur, uc))
        a = np.abs(rows)
        m = np.where(np.isfinite(a), a, _F32(0.0)).max(axis=1, keepdims=True)
        found = m > 0.0
        se = _exp32(np.where(found, m, _F32(1.0))) + (2 - wl)
        kmax = _F32(2 ** (wl - 1) - 1)
        hi = kmax * _pow2_32(se)
        t, branch1 = _vc_elem32(rows, var32, xr, urr, ucr, se, -hi, hi, ties, published, False, float(kmax) + 1.0)
        tm = np.where(np.isnan(t), _F32(0.0), np.abs(t)).max(axis=1, keepdims=True)
        escaped = tm > hi
        if published:
            escaped = escaped & branch1.any(axis=1, keepdims=True)
        e2 = _exp32(np.where(escaped & np.isfinite(tm), tm, _F32(1.0)))
        se2 = np.where(np.isinf(tm), 127, e2) + (2 - wl)
        k = np.clip(np.floor(t * _pow2_32(-se2) + _escape_u32(branch1, xr, urr)), -kmax, kmax)
        sat2 = kmax * _pow2_32(se2)
        esc = np.where(np.isinf(rows), np.copysign(np.broadcast_to(sat2, rows.shape), rows),
                       k * _pow2_32(se2) + _F32(0.0))
        esc = np.where(np.isnan(rows), rows, esc)
        q = np.where(escaped, esc, np.minimum(np.maximum(t, -hi), hi))
        if var > 0.0:  # all-zero block: sqrt(V)·ξ rounded stochastically on its own block grid
            y = _F32(math.sqrt(var)) * xr
            ym = np.where(np.isnan(rows), _F32(0.0), np.abs(y)).max(axis=1, keepdims=True)
            ez = _exp32(np.where(ym > 0, ym, _F32(1.0))) + (2 - wl)
            kz = np.clip(np.floor(y * _pow2_32(-ez) + urr), -kmax, kmax)
            zq = np.where(np.isinf(rows), np.copysign(np.broadcast_to(kmax * _pow2_32(ez), rows.shape), rows),
                          kz * _pow2_32(ez) + _F32(0.0))
            zq = np.where(ym > 0, zq, _F32(0.0))
            zq = np.where(np.isnan(rows), rows, zq)
            q = np.where(found, q, zq)
            tiny = np.where(found, se < _SE_MIN_F32, (ym > 0) & (ez < _SE_MIN_F32))
        else:
            q = np.where(found, q, np.where(np.isnan(rows), rows, _F32(0.0)))
            tiny = found & (se < _SE_MIN_F32)
        return (np.ascontiguousarray(back(q.astype(_F32))),
                np.ascontiguousarray(back(np.broadcast_to(tiny, rows.shape).copy())))
    if kind in (S.KIND_FLOAT, S.KIND_IEEE):
        emin = 2 - (1 << (int(code[S.FLOAT_EXP]) - 1))
        man = int(code[S.FLOAT_MAN])
        maxv = _F32(code[S.FLOAT_MAX])
        am = np.abs(mu)
        small = (am == 0.0) | np.isnan(am)
        se = np.where(small, emin - man,
                      np.maximum(_exp32(np.where(small, _F32(1.0), np.minimum(am, maxv))), emin) - man)
        hi = np.minimum(_F32(2 ** (man + 1) - 1) * _pow2_32(se), maxv)
        t, branch1 = _vc_elem32(mu, var32, xi, ur, uc, se, -hi, hi, ties, published, False, float(2 ** (man + 1)))
        out = np.abs(t) > hi
        ts = np.where(out & np.isfinite(t), t, _F32(1.0))
        ue = np.maximum(_exp32(np.abs(ts)), emin) - man
        t2 = np.floor(ts * _pow2_32(-ue) + _escape_u32(branch1, xi, ur)) * _pow2_32(ue)
        t2 = np.where(np.isinf(t), t, t2)
        t2 = np.where(np.abs(t2) > maxv, np.copysign(maxv, t2), t2)
        return np.where(out, t2, t).astype(_F32), se < _SE_MIN_F32
    raise ValueError(f"fmt must be a fixed, BFP, qtorch float, IEEE or MX format, got {fmt!r}")


_REPLAY_DTYPES = ("float64", "float32")


def _replay_args(dtype, bits):
    if dtype not in _REPLAY_DTYPES:
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    if bits is None:
        return dtype == "float32", (24 if dtype == "float32" else 53)
    _check_bits(bits)
    return dtype == "float32", bits


def _draw(seed, step, index, name, shape, bits, f32=False, normal_source=None):
    n = int(np.prod(shape))
    key = stream_key(seed, step, index, name)
    if name.startswith(("xi", "z")):
        if normal_source is not None:
            z = np.asarray(normal_source(key, n), dtype=_F32 if f32 else np.float64)
        else:
            z = _normals_f32(key, n, bits=bits) if f32 else normals(key, n, bits=bits)
        return z.reshape(shape)
    u = uniforms(key, n, bits=bits)
    return (u.astype(_F32) if f32 else u).reshape(shape)


def replay_sgld_step(theta: npt.ArrayLike, acc: np.ndarray | None, grad: npt.ArrayLike, *, seed: int, step: int,
                     param_index: int, lr: float, temperature: float, num_data: float,
                     weight_format: Format | None, grad_format: Format | None,
                     accumulator: Literal["full", "low"], variance_corrected: bool, weight_decay: float = 0.0,
                     add_noise: bool = True, ties: str | None = None, vc_published: bool = False,
                     dtype: Literal["float64", "float32"] = "float64",
                     bits: int | None = None,
                     normal_source: Callable[[int, int], np.ndarray] | None = None
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """One LP-SGLD step of :func:`torchport.fast.sgld_step`, from the counter stream.

    The same update as ``torchport.optim.LowPrecisionSGLD`` ((S2)-(S6)): g_q = SR(g) (stream
    ``u_grad``), d = g_q + wd·x, μ = x - lr·d with x the accumulator ("full") or θ ("low");
    VC: θ = Q^vc(μ, 2·lr·T/N) (streams xi, u_round, u_cat); else
    μ += sqrt(2·lr·T/N)·ξ (stream xi) and θ = SR(μ) (stream u_weight).  Returns (θ, acc).

    ``dtype="float64"`` (default): the float64 step -- 53-bit uniforms, float64 NumPy, refimpl's
    own ``vc_into`` for Q^vc.  ``dtype="float32"``: the float32 fast path's step -- 24-bit
    uniforms, the float32 normals of :func:`_normals_f32` (log/sqrt/cos correctly rounded), the
    drift, noise and accumulator in float32 in ``sgld_step``'s order (Python scalars rounded to
    float32 first, as torch does), SR exact (:func:`_sr32`) and Q^vc in float32 (:func:`_vc32`);
    float32 arrays are returned.  ``bits`` overrides the uniforms' resolution (default 53 for
    float64, 24 for float32; the other value is for mutation tests).  ``normal_source(key, n)``, if
    given, supplies the n normals of a stream key instead of the replay's own Box–Muller (the
    crosscheck passes torch's to tell a threshold tie, caused by the normals' last bits, from a
    real mismatch).
    """
    f32, bits = _replay_args(dtype, bits)
    ft = _F32 if f32 else np.float64
    theta = np.asarray(theta, dtype=ft)
    grad = np.asarray(grad, dtype=ft)
    shape = theta.shape

    def draw(name):
        return _draw(seed, step, param_index, name, shape, bits, f32, normal_source)

    if grad_format is not None:
        grad = (_sr32 if f32 else sr_round)(grad, grad_format, draw("u_grad"))
    full = accumulator == "full"
    x = np.asarray(acc, dtype=ft) if full else theta
    d = grad if weight_decay == 0 else grad + x * ft(weight_decay)
    mu = x - d * ft(lr)
    var = 2.0 * lr * temperature / num_data
    if variance_corrected:
        vc = _vc32 if f32 else _vc
        return vc(mu, var, weight_format, draw("xi"), draw("u_round"), draw("u_cat"), ties, vc_published), acc
    if add_noise:
        mu = mu + draw("xi") * ft(math.sqrt(var))
    q = mu if weight_format is None else (_sr32 if f32 else sr_round)(mu, weight_format, draw("u_weight"))
    return q, (mu if full else acc)


def replay_sghmc_step(theta: npt.ArrayLike, acc: np.ndarray | None, velocity: npt.ArrayLike, grad: npt.ArrayLike,
                      *, seed: int, step: int, param_index: int, coeffs: Sequence[float],
                      weight_format: Format | None, grad_format: Format | None, velocity_format: Format | None,
                      accumulator: Literal["full", "low"], variance_corrected: bool, position_sign: float = -1.0,
                      weight_decay: float = 0.0, ties: str | None = None, vc_published: bool = False,
                      dtype: Literal["float64", "float32"] = "float64",
                      bits: int | None = None,
                      normal_source: Callable[[int, int], np.ndarray] | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One LP-SGHMC step of :func:`torchport.fast.sghmc_step` ((H2)-(H4)).

    ``coeffs`` = (a, c_v, c_xv, c_xg, Σ_v, Σ_x, Σ_xv) of (H0).  Correlated noise from two
    standard normals z1, z2 (streams z1, z2): ξ^v = sqrt(Σ_v)·z1, ξ^x = (Σ_xv/Σ_v)·ξ^v +
    sqrt(Σ_x - Σ_xv²/Σ_v)·z2 (torchport's ``_correlated_noise``, the same float operations).
    ``dtype``/``bits``/``normal_source`` as in :func:`replay_sgld_step` (float32: every product and sum of
    ``sghmc_step`` in float32, its Python-float coefficients rounded to float32).  Returns (θ, acc, v).
    """
    f32, bits = _replay_args(dtype, bits)
    ft = _F32 if f32 else np.float64
    sr, vc = (_sr32, _vc32) if f32 else (sr_round, _vc)
    a, c_v, c_xv, c_xg, s_v, s_x, s_xv = coeffs
    theta = np.asarray(theta, dtype=ft)
    grad = np.asarray(grad, dtype=ft)
    v = np.asarray(velocity, dtype=ft)
    shape = theta.shape

    def draw(name):
        return _draw(seed, step, param_index, name, shape, bits, f32, normal_source)

    if grad_format is not None:
        grad = sr(grad, grad_format, draw("u_grad"))
    full = accumulator == "full"
    x = np.asarray(acc, dtype=ft) if full else theta
    if weight_decay != 0:
        grad = grad + x * ft(weight_decay)
    mu_v = v * ft(a) - grad * ft(c_v)
    mu_x = x + v * ft(c_xv) + grad * ft(position_sign * c_xg)
    if variance_corrected:
        v_new = vc(mu_v, s_v, velocity_format, draw("xi_v"), draw("u_round_v"), draw("u_cat_v"), ties,
                   vc_published)
        x_new = vc(mu_x, s_x, weight_format, draw("xi_x"), draw("u_round_x"), draw("u_cat_x"), ties,
                   vc_published)
        return x_new, acc, v_new
    corr = s_xv / s_v if s_v > 0.0 else 0.0
    z1, z2 = draw("z1"), draw("z2")
    xi_v = z1 * ft(math.sqrt(s_v))
    xi_x = xi_v * ft(corr) + z2 * ft(math.sqrt(max(s_x - s_xv * corr, 0.0)))
    v_new = mu_v + xi_v
    x_new = mu_x + xi_x
    if full:
        q = x_new if weight_format is None else sr(x_new, weight_format, draw("u_weight"))
        return q, x_new, v_new
    if velocity_format is not None:
        v_new = sr(v_new, velocity_format, draw("u_velocity"))
    if weight_format is not None:
        x_new = sr(x_new, weight_format, draw("u_weight"))
    return x_new, acc, v_new
