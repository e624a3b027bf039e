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

Because every number is a function of the element index, a tensor computed in
shards (any split of the index range, any number of DDP ranks) has the same bits as
computed whole.  Everything here is ``@njit`` (also correct under
``NUMBA_DISABLE_JIT=1``: pure-Python integer arithmetic gives the same bits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


def _draw(seed, step, index, name, shape, bits):
    n = int(np.prod(shape))
    key = stream_key(seed, step, index, name)
    draw = normals if name.startswith(("xi", "z")) else uniforms
    return draw(key, n, bits=bits).reshape(shape)


def replay_sgld_step(theta: npt.ArrayLike, acc: np.ndarray | None, grad: npt.ArrayLike, *, seed: int, step: int,
                     param_index: int, lr: float, temperature: float, num_data: float,
                     weight_format: Format | None, grad_format: Format | None,
                     accumulator: Literal["full", "low"], variance_corrected: bool, weight_decay: float = 0.0,
                     add_noise: bool = True, ties: str | None = None,
                     vc_published: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """One LP-SGLD step of :func:`torchport.fast.sgld_step` in float64 NumPy, from the counter stream.

    The same update as ``torchport.optim.LowPrecisionSGLD`` ((S2)-(S6)): g_q = SR(g) (stream
    ``u_grad``), d = g_q + wd·x, μ = x - lr·d with x the accumulator ("full") or θ ("low");
    VC: θ = Q^vc(μ, 2·lr·T/N) (streams xi, u_round, u_cat; refimpl's ``vc_into``); else
    μ += sqrt(2·lr·T/N)·ξ (stream xi) and θ = SR(μ) (stream u_weight).  Returns (θ, acc).
    """
    theta = np.asarray(theta, dtype=np.float64)
    grad = np.asarray(grad, dtype=np.float64)
    shape = theta.shape

    def draw(name):
        return _draw(seed, step, param_index, name, shape, 53)

    if grad_format is not None:
        grad = sr_round(grad, grad_format, draw("u_grad"))
    full = accumulator == "full"
    x = np.asarray(acc, dtype=np.float64) if full else theta
    d = grad if weight_decay == 0 else grad + x * weight_decay
    mu = x - d * lr
    var = 2.0 * lr * temperature / num_data
    if variance_corrected:
        return _vc(mu, var, weight_format, draw("xi"), draw("u_round"), draw("u_cat"), ties, vc_published), acc
    if add_noise:
        mu = mu + draw("xi") * math.sqrt(var)
    q = mu if weight_format is None else sr_round(mu, weight_format, draw("u_weight"))
    return q, (mu if full else acc)


def replay_sghmc_step(theta: npt.ArrayLike, acc: np.ndarray | None, velocity: npt.ArrayLike, grad: npt.ArrayLike,
                      *, seed: int, step: int, param_index: int, coeffs: Sequence[float],
                      weight_format: Format | None, grad_format: Format | None, velocity_format: Format | None,
                      accumulator: Literal["full", "low"], variance_corrected: bool, position_sign: float = -1.0,
                      weight_decay: float = 0.0, ties: str | None = None,
                      vc_published: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One LP-SGHMC step of :func:`torchport.fast.sghmc_step` in float64 NumPy ((H2)-(H4)).

    ``coeffs`` = (a, c_v, c_xv, c_xg, Σ_v, Σ_x, Σ_xv) of (H0).  Correlated noise from two
    standard normals z1, z2 (streams z1, z2): ξ^v = sqrt(Σ_v)·z1, ξ^x = (Σ_xv/Σ_v)·ξ^v +
    sqrt(Σ_x - Σ_xv²/Σ_v)·z2 (torchport's ``_correlated_noise``, the same float operations).  Returns (θ, acc, v).
    """
    a, c_v, c_xv, c_xg, s_v, s_x, s_xv = coeffs
    theta = np.asarray(theta, dtype=np.float64)
    grad = np.asarray(grad, dtype=np.float64)
    v = np.asarray(velocity, dtype=np.float64)
    shape = theta.shape

    def draw(name):
        return _draw(seed, step, param_index, name, shape, 53)

    if grad_format is not None:
        grad = sr_round(grad, grad_format, draw("u_grad"))
    full = accumulator == "full"
    x = np.asarray(acc, dtype=np.float64) if full else theta
    if weight_decay != 0:
        grad = grad + x * weight_decay
    mu_v = v * a - grad * c_v
    mu_x = x + v * c_xv + grad * (position_sign * c_xg)
    if variance_corrected:
        v_new = _vc(mu_v, s_v, velocity_format, draw("xi_v"), draw("u_round_v"), draw("u_cat_v"), ties,
                    vc_published)
        x_new = _vc(mu_x, s_x, weight_format, draw("xi_x"), draw("u_round_x"), draw("u_cat_x"), ties,
                    vc_published)
        return x_new, acc, v_new
    corr = s_xv / s_v if s_v > 0.0 else 0.0
    z1, z2 = draw("z1"), draw("z2")
    xi_v = z1 * math.sqrt(s_v)
    xi_x = xi_v * corr + z2 * math.sqrt(max(s_x - s_xv * corr, 0.0))
    v_new = mu_v + xi_v
    x_new = mu_x + xi_x
    if full:
        q = x_new if weight_format is None else sr_round(x_new, weight_format, draw("u_weight"))
        return q, x_new, v_new
    if velocity_format is not None:
        v_new = sr_round(v_new, velocity_format, draw("u_velocity"))
    if weight_format is not None:
        x_new = sr_round(x_new, weight_format, draw("u_weight"))
    return x_new, acc, v_new
