"""The fast torchport path: quantizers and fused LP-SGLD / LP-SGHMC steps in the parameter's dtype.

Two paths, one set of formats.  :mod:`torchport.quantize` and the optimizers of
:mod:`torchport.optim` compute every quantizer in float64, op by op, from noise drawn
by a ``torch.Generator`` -- the **exact path**, bit-identical to refimpl on float64 CPU
(``qlangevin crosscheck``).  This module is the **fast path** (docs/fast_path.md):

* arithmetic in the tensor's own dtype (float32 for float32 weights); all grid
  scalings are exact powers of two built from the exponent bits;
* every random number from the counter stream of :mod:`torchport.counter_rng` (a pure
  function of seed, step, parameter index, stream and element index), generated
  inside the same elementwise kernel that uses it -- nothing is materialised in
  float64 and there is no generator state, so CPU, CUDA and any sharding of a
  tensor give the same bits;
* each parameter's whole update (gradient SR, drift, noise, VC branch logic, weight
  rounding, accumulator) is one function, compiled with ``torch.compile`` when
  ``compile=True`` (inductor: C++/OpenMP on CPU, Triton on CUDA; eager otherwise);
* no host synchronisation per step: the finite-gradient check accumulates a device
  flag per parameter and is read only by :meth:`FastLowPrecisionSGLD.check_finite`
  (or every ``check_every`` steps), raising an error that names the parameter.

Stochastic rounding here is Δ·(⌊x/Δ⌋ + [u_k < frac]) with a k-bit uniform (k = 53 for
float64, 24 otherwise): bias in [0, 2^-k·Δ) (refimpl.counter_rng).  Q^vc is refimpl's
``vc_into`` algorithm ((Q5)/(Q6), with the BFP/float escape re-rounding and the
all-zero BFP block rule) written as vectorised tensor ops; its inner Q^s is
⌊z + u⌋ as in refimpl.

Parity (tests/torchport/test_fast.py): in float64 and eager mode the fast path equals
:func:`refimpl.counter_rng.replay_sgld_step` / ``replay_sghmc_step`` bit for bit for
fixed point, BFP, qtorch float, IEEE and MX/NVFP4 formats, except where a normal deviate enters
(Box–Muller: torch's log/cos may differ from libm by a few ulp, so the pre-rounding
value differs by <= 4 ulp and the grid value may flip only if it lands within that
distance of a rounding threshold -- counted and asserted zero on the test problems).
Float32 is within a documented bound of the float64 result (docs/fast_path.md).

MX / NVFP4 (docs/mx.md): Q^d with the specification's block scale, the k-bit Q^s above on
the element grid under refimpl's holding scale, and refimpl's MX Q^vc; the blocks are
computed in float64 whatever the parameter's dtype (the NVFP4 scale s_B·s_T is not a
power of two, and Q^vc's recycled uniform divides), so float32 MX equals the replay of
the float32 values bit for bit.  The optimizers view each parameter as (rows, last axis)
for MX formats with ``axis=-1`` (the blocks of the original shape).  Q^d and Q^s compile
(block scales from the exponent bits); Q^vc is ``torchport.kernels.mx.vc``, which compiles too
since its exponents are read from the bits (``kernels.common._frexp_exp``; torch.frexp made
inductor's C++ fail, and the step ran eagerly).
"""

from __future__ import annotations

import math
import numbers
import types
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from refimpl import slots as S
from refimpl.formats import (
    NVFP4,
    BlockFloatingPoint,
    FixedPoint,
    FloatingPoint,
    IEEEFloat,
    MXFormat,
    format_code,
    with_options,
)
from torchport import counter_rng as cr
from torchport.kernels import mx as mxk
from torchport.kernels.bfp import _blocks  # BFP blocks as rows and the map back

__all__ = [
    "FastLowPrecisionSGHMC",  # noqa: F822 (module __getattr__)
    "FastLowPrecisionSGLD",  # noqa: F822 (module __getattr__)
    "NonFiniteGradientError",
    "maybe_compile",
    "quantize_fast",
    "sghmc_step",
    "sgld_step",
    "stochastic_round_fast",
    "vc_quantize_fast",
]

_SUPPORTED = (FixedPoint, BlockFloatingPoint, FloatingPoint, IEEEFloat, MXFormat, NVFP4)
#: the formats of the fast path (type hints)
FastFormat = FixedPoint | BlockFloatingPoint | FloatingPoint | IEEEFloat | MXFormat | NVFP4


class NonFiniteGradientError(FloatingPointError):
    """A parameter's gradient had a NaN or ±inf entry (raised lazily, naming the parameter)."""


# ----------------------------------------------------------------------------- classification
# The same booleans as torch.isnan / isinf / isfinite, written as comparisons: inductor (torch 2.13, CPU)
# emits torch.isnan as a scalar std::isnan loop over a stored copy of each vector, which made fixed-point
# Q^d (no RNG) run at ~1.1 ns per float32 element; comparisons stay in the vector registers.
def _isnan(x: torch.Tensor) -> torch.Tensor:
    """x is NaN (the only value unequal to itself)."""
    return x != x


def _isinf(x: torch.Tensor) -> torch.Tensor:
    """x is ±inf."""
    return x.abs() == math.inf


def _isfinite(x: torch.Tensor) -> torch.Tensor:
    """x is neither NaN nor ±inf (NaN compares false)."""
    return x.abs() < math.inf


# ----------------------------------------------------------------------------- exact scalings
def _int_info(dtype):
    if dtype == torch.float64:
        return torch.int64, 52, 1023, 0x7FF
    if dtype == torch.float32:
        return torch.int32, 23, 127, 0xFF
    raise TypeError(f"the fast path computes in float32 or float64, got dtype {dtype}")


def _pow2(e: torch.Tensor, dtype) -> torch.Tensor:
    """2^e exactly for an integer tensor e (|e| <= 2·(bias - 1)); built from the exponent bits.

    2^e = 2^a·2^b with a = ⌊e/2⌋ (an arithmetic shift), b = e - a, each a normal number of
    ``dtype``; their product is a power of two, exact whenever it is representable (also
    subnormal).  Integer work in ``dtype``'s own width (int32 for float32): inductor's CPU
    code for int64 scalars next to the vectorised counter RNG ran ~10× slower (measured).
    """
    itype, mbits, bias, _ = _int_info(dtype)
    e = e.to(itype)
    a = e >> 1
    b = e - a
    pa = ((a + bias).to(itype) << mbits).view(dtype)
    pb = ((b + bias).to(itype) << mbits).view(dtype)
    return pa * pb


def _ldexp(x: torch.Tensor, e: torch.Tensor, dtype) -> torch.Tensor:
    """x·2^e for an integer tensor e, rounded once: (x·2^a)·2^(e-a) with 2^a, 2^(e-a) normal.

    a = clamp(e, 1 - bias, bias): for e in that range this is x·2^e in one exact product
    (the same bits as ``x * _pow2(e)``); beyond it (float32 BFP blocks whose maximum is
    below 2^-121, where 2^-se overflows) the first product is exact whenever the result
    is representable and the second rounds once, as refimpl's float64 ldexp cast to float32.
    """
    _, _, bias, _ = _int_info(dtype)
    a = torch.clamp(e, 1 - bias, bias)
    return (x * _pow2(a, dtype)) * _pow2(e - a, dtype)


def _exponent(a: torch.Tensor) -> torch.Tensor:
    """⌊log2 a⌋ for finite a > 0 of a float32/float64 tensor, subnormals included; int32 for
    float32, int64 for float64 (``_pow2``'s integer width)."""
    itype, mbits, bias, emask = _int_info(a.dtype)
    tiny = a < torch.finfo(a.dtype).tiny
    a2 = torch.where(tiny, a * 2.0 ** 64, a)
    e = ((a2.view(itype) >> mbits) & emask) - bias
    return e - torch.where(tiny, 64, 0).to(itype)


def _round_int(z: torch.Tensor, ties: int) -> torch.Tensor:
    """Nearest integer, ties 1 away from zero, 2 to even, 3 toward +inf (refimpl ``_round_int``)."""
    a = z.abs()
    f = torch.floor(a)
    d = a - f
    if ties == S.TIES_AWAY:
        tie_up = d == 0.5
    elif ties == S.TIES_EVEN:
        tie_up = (d == 0.5) & ((f - 2.0 * torch.floor(0.5 * f)) == 1.0)
    else:
        tie_up = (d == 0.5) & (z > 0.0)
    f = f + ((d > 0.5) | tie_up).to(f.dtype)
    return torch.copysign(f, z)


def _sr_int(z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """⌊z⌋ + [u < z - ⌊z⌋]: the k-bit stochastic rounding (exact comparisons)."""
    f0 = torch.floor(z)
    return f0 + (u < z - f0).to(z.dtype)


def _check_format(fmt, name="fmt"):
    if fmt is None or not isinstance(fmt, _SUPPORTED):
        raise ValueError(f"{name} must be a FixedPoint, BlockFloatingPoint, FloatingPoint, IEEEFloat, MXFormat "
                         f"or NVFP4, got {fmt!r}")
    return fmt


def _float_params(code):
    emin = 2 - (1 << (int(code[S.FLOAT_EXP]) - 1))
    man = int(code[S.FLOAT_MAN])
    return (emin, man, float(code[S.FLOAT_MAX]), code[S.FLOAT_HAS_INF] != 0.0,
            int(code[S.KIND]) == S.KIND_FLOAT or code[S.SATURATE] != 0.0)


def _saturation(maxv: float, dtype) -> float:
    """The format's largest value ``maxv`` as a fill value of ``dtype``: itself, or +inf where it exceeds
    ``dtype``'s range (qtorch ``FloatingPoint(8, M)`` on float32: up to 2^128·(1 - 2^-(M+1)) > 3.4e38),
    which is refimpl's float64 saturation cast to float32 (torch.full_like refuses the overflow)."""
    return maxv if maxv <= torch.finfo(dtype).max else math.inf


def _float_overflow(x, maxv, has_inf, saturate):
    if saturate:
        return torch.copysign(torch.full_like(x, _saturation(maxv, x.dtype)), x)
    if has_inf:
        return torch.copysign(torch.full_like(x, math.inf), x)
    return torch.full_like(x, math.nan)


# ----------------------------------------------------------------------------- MX / NVFP4
# Q^d and Q^s compute the block scale from the exponent bits (``_exponent``), not torch.frexp: inductor
# (torch 2.13, CPU) failed on torchport.kernels.mx with a C++ error converting frexp's int32 exponent to
# float64.  Q^vc uses torchport.kernels.mx.vc, whose exponents now come from the bits as well
# (kernels.common._frexp_exp), so it compiles (MLP step, 1 thread: 68.5 ms eager fallback -> 16.2 ms).
_F64 = torch.float64
_E4M3 = (-6, 3, 448.0)  # NVFP4's block-scale type: e_min, mantissa bits, largest value


def _mx_binade(x: torch.Tensor, emin: int, man: int, maxv: float, ties: int) -> torch.Tensor:
    """Saturating nearest rounding on a binade grid (``torchport.kernels.mx.round_binade``, u None), float64."""
    ok = _isfinite(x) & (x != 0.0)
    ue = torch.clamp(_exponent(torch.where(ok, x.abs(), torch.ones_like(x))), min=emin) - man
    z = _ldexp(torch.where(ok, x, torch.ones_like(x)), -ue, _F64)
    q = torch.copysign(_ldexp(_round_int(z, ties), ue, _F64), x)
    q = torch.where((q.abs() > maxv) | _isinf(x), torch.copysign(torch.full_like(x, maxv), x), q)
    return torch.where(_isnan(x) | (x == 0.0), x, q)


def _mx_scale(blocks: torch.Tensor, code, holding: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(status, s) per block: 0 zero, 1 scale s, 2 NaN; the spec's scale (Q^d) or the holding scale (Q^s)
    (refimpl ``block_scale`` / ``_vc_block_scale`` with ``holding_scale``; docs/mx.md)."""
    a = blocks.abs()
    nan = _isnan(a)
    m = torch.where(nan, torch.zeros_like(a), a).amax(dim=-1, keepdim=True)
    maxv = float(code[S.FLOAT_MAX])
    pos = torch.where(_isfinite(m) & (m > 0.0), m, torch.ones_like(m))
    if int(code[S.MX_SCALE]) == S.SCALE_E8M0:
        e = _exponent(pos) - int(code[S.MX_EMAX])
        if holding:
            e = torch.where(m > maxv * _pow2(e, _F64), e + 1, e)
        e = torch.where(_isinf(m), 127, torch.clamp(e, -127, 127))
        s = _pow2(e, _F64)
        zero = m == 0.0
    else:
        t = float(code[S.MX_TENSOR_SCALE])
        r = torch.where(_isinf(m), m, (pos / maxv) / t)
        sb = _mx_binade(r, *_E4M3, S.TIES_EVEN)
        if holding:
            nz = sb > 0.0
            up = torch.where(nz, torch.clamp(_exponent(torch.where(nz, sb, torch.ones_like(sb))), min=_E4M3[0])
                             - _E4M3[1], _E4M3[0] - _E4M3[1])
            sb = torch.where(sb < r, torch.clamp(sb + _pow2(up, _F64), max=_E4M3[2]), sb)
        s = sb * t
        zero = (m == 0.0) | (sb == 0.0)
    status = torch.where(nan.any(dim=-1, keepdim=True), 2, torch.where(zero, 0, 1))
    return status, torch.where(status == 1, s, torch.ones_like(s))


def _mx_round(x: torch.Tensor, fmt, code, u: torch.Tensor | None) -> torch.Tensor:
    """MX/NVFP4 Q^d (u None: the spec's scale, as ``torchport.kernels.mx.nearest``) or the k-bit Q^s.

    Q^s: per block the holding scale s of refimpl's Q^s (docs/mx.md), z = x/s, and on the
    element grid at z (ULP Δ of z's binade; INT8: 2^-6) Δ·(⌊z/Δ⌋ + [u_k < frac]),
    saturated at the element range, times s (replay: ``refimpl.counter_rng._sr_mx_row``).
    Computed in float64 whatever x's dtype: the NVFP4 scale s_B·s_T is not a power of two,
    so x/s is not exact in float32; the result is cast back (exact: few significant bits).
    """
    bsz = int(code[S.MX_BLOCK])
    blocks, back = mxk.block_view(x.to(_F64), fmt, bsz)
    status, s = _mx_scale(blocks, code, holding=u is not None)
    z = blocks / s
    man = int(code[S.FLOAT_MAN])
    maxv = float(code[S.FLOAT_MAX])
    exp = int(code[S.FLOAT_EXP])
    emin = 2 - (1 << (exp - 1)) if exp > 0 else 0  # MXINT8 has no exponent field
    if u is None:
        if code[S.MX_INT] != 0.0:
            delta, lo = 2.0 ** -man, float(code[S.MX_LO])
            zz = torch.clamp(z, lo - delta, maxv + delta) * (1.0 / delta)
            q = torch.clamp(_round_int(zz, int(code[S.TIES])) * delta + 0.0, lo, maxv)
        else:
            q = _mx_binade(z, emin, man, maxv, int(code[S.TIES]))
    else:
        ub = mxk.block_view(u.to(_F64), fmt, bsz)[0]
        if code[S.MX_INT] != 0.0:
            delta, lo = 2.0 ** -man, float(code[S.MX_LO])
            zz = torch.clamp(z, lo - delta, maxv + delta) * (1.0 / delta)
            q = torch.clamp(_sr_int(zz, ub) * delta + 0.0, lo, maxv)
        else:
            ok = _isfinite(z) & (z != 0.0)
            zs = torch.where(ok, z, torch.ones_like(z))
            ue = torch.clamp(_exponent(zs.abs()), min=emin) - man
            q = torch.copysign(_sr_int(zs * _pow2(-ue, _F64), ub) * _pow2(ue, _F64), zs)
            q = torch.where((q.abs() > maxv) | _isinf(z), torch.copysign(torch.full_like(z, maxv), z), q)
            q = torch.where(z == 0.0, z, q)
    out = q * s
    out = torch.where(status == 0, blocks * 0.0, out)
    out = torch.where(status == 2, torch.full_like(out, math.nan), out)
    return back(out).to(x.dtype)


def _mx_vc(mu: torch.Tensor, var: float, fmt, code, xi, ur, uc) -> torch.Tensor:
    """Q^vc on MX/NVFP4: ``torchport.kernels.mx.vc`` (refimpl's ``vc_into``, bit for bit) in float64; compiles."""
    f64 = torch.float64
    return mxk.vc(mu.to(f64), var, code, fmt, xi.to(f64), ur.to(f64), uc.to(f64)).to(mu.dtype)


# ----------------------------------------------------------------------------- rounding kernels
def _round_tensor(x: torch.Tensor, fmt, code, u: torch.Tensor | None) -> torch.Tensor:
    """Q^d (u None) or the k-bit Q^s of x, computed in x's dtype; u has x's shape."""
    kind = int(code[S.KIND])
    ties = int(code[S.TIES])
    dt = x.dtype
    if x.numel() == 0:  # nothing to round (BFP/MX blocks of an empty tensor have no maximum)
        return x.clone()
    if kind == S.KIND_MX:
        return _mx_round(x, fmt, code, u)
    if kind == S.KIND_FIXED:
        delta, lo, hi = float(code[S.FIXED_DELTA]), float(code[S.FIXED_LO]), float(code[S.FIXED_HI])
        z = torch.clamp(x, lo - delta, hi + delta) * (1.0 / delta)
        k = _round_int(z, ties) if u is None else _sr_int(z, u)
        q = torch.clamp(k * delta + 0.0, lo, hi)
        return torch.where(_isnan(x), x, q)
    if kind == S.KIND_BFP:
        wl = int(code[S.BFP_WL])
        rows, back = _blocks(x, fmt.dim)
        urows = None if u is None else _blocks(u, fmt.dim)[0]
        a = rows.abs()
        a = torch.where(_isfinite(a), a, torch.zeros_like(a))
        m = a.amax(dim=1, keepdim=True)
        found = m > 0.0
        se = _exponent(torch.where(found, m, torch.ones_like(m))) + (2 - wl)
        kmax = float(2 ** (wl - 1) - 1)
        finite = _isfinite(rows)
        z = _ldexp(torch.where(finite, rows, torch.zeros_like(rows)), -se, dt)
        k = _round_int(z, ties) if urows is None else _sr_int(z, urows)
        k = torch.where(_isinf(rows), torch.copysign(torch.full_like(k, kmax), rows), k)
        k = torch.clamp(k, -kmax, kmax)
        q = _ldexp(k, se, dt) + 0.0
        q = torch.where(found, q, torch.zeros_like(q))
        q = torch.where(_isnan(rows), rows, q)
        return back(q)
    if kind in (S.KIND_FLOAT, S.KIND_IEEE):
        emin, man, maxv, has_inf, saturate = _float_params(code)
        ok = _isfinite(x) & (x != 0.0)
        xs = torch.where(ok, x, torch.ones_like(x))
        e = torch.clamp(_exponent(xs.abs()), min=emin)
        if emin < 1 - _int_info(dt)[2]:  # exponent range wider than dt's (FloatingPoint(10, M) on float32):
            # 2^-e of a subnormal x overflows, so scale in two exact steps and round q once (_ldexp)
            z = _ldexp(xs, -e, dt) * float(2 ** man)
            k = _round_int(z, ties) if u is None else _sr_int(z, u)
            q = torch.copysign(_ldexp(k * float(2.0 ** -man), e, dt), x)
        else:
            z = (xs * _pow2(-e, dt)) * float(2 ** man)  # both scalings exact
            k = _round_int(z, ties) if u is None else _sr_int(z, u)
            q = torch.copysign((k * float(2.0 ** -man)) * _pow2(e, dt), x)
        over = _float_overflow(x, maxv, has_inf, saturate)
        q = torch.where((q.abs() > maxv) | _isinf(x), over, q)
        return torch.where(_isnan(x) | (x == 0.0), x, q)
    raise ValueError(f"unsupported format kind {kind}")


# ----------------------------------------------------------------------------- Q^vc
def _cat_unit(m, v, u):
    """Cat(m, v) on {+1, -1, 0} with Δ = 1 from the uniform u (refimpl ``_cat_unit``)."""
    w = v - 0.25
    p_plus = (w + (0.5 + m) * (0.5 + m)) * 0.5
    p_minus = (w + (0.5 - m) * (0.5 - m)) * 0.5
    one = torch.ones_like(p_plus)
    return torch.where(u < p_plus, one, torch.where(u < p_plus + p_minus, -one, torch.zeros_like(one)))


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded sqrt in float64 (refimpl's math.sqrt), torch.sqrt otherwise."""
    if x.dtype == torch.float64:
        from torchport.quantize import exact_sqrt

        return exact_sqrt(x)
    return torch.sqrt(x)


def _vc_units(mu, var, xi, ur, uc, se, lo, hi, ties, published, clip, ktop):
    """refimpl ``_vc_elem`` vectorised: θ on the grid 2^se (clipped to [lo, hi] if ``clip``).

    ``se`` an int64 tensor broadcastable to mu; lo/hi tensors or floats; ``clip`` False
    gives the unclipped result of both branches (clip2 = ``published``), as the escape
    rule of BFP/float needs.  Returns (θ, branch1).
    """
    dt = mu.dtype
    delta = _pow2(se, dt)
    inv = _pow2(-se, dt)
    big = _pow2(torch.clamp(se + 60, max=(1000 if dt == torch.float64 else 126)), dt)
    mc = torch.clamp(mu, min=lo - big, max=hi + big)
    mc = torch.where(_isfinite(mu), mc, torch.zeros_like(mc))
    vr = (var * inv) * inv
    branch1 = vr > 0.25
    # branch 1 (Q5): x = μ + sqrt(V - Δ²/4)·ξ; θ = Q^d(x) + sign(r)·Cat(|r|, 1/4)
    s1 = _sqrt(torch.clamp(var - 0.25 * delta * delta, min=0.0))
    z1 = (mc + s1 * xi) * inv
    k1 = _round_int(z1, ties)
    r = z1 - k1
    c = _cat_unit(r.abs(), 0.25, uc)
    k1 = k1 + torch.sign(r) * c
    # branch 2 (Q6): Q^s(μ) + Cat(0, V - V_s)
    z2 = mc * inv
    k2 = torch.floor(z2 + ur)
    if not published:
        a = z2.abs()
        p = a - torch.floor(a)
        w = vr - p * (1.0 - p)
        top = _cat_unit(torch.zeros_like(w), w, uc)
        if ktop is not None and not clip:  # top-up across the block/binade boundary: {-Δ, 0, +2Δ}
            at_top = k2.abs() == ktop
            a6 = w / 6.0
            sgn = torch.sign(k2)
            alt = torch.where(uc < a6, 2.0 * sgn, torch.where(uc < a6 + w / 3.0, -sgn, torch.zeros_like(sgn)))
            top = torch.where(at_top, alt, top)
        k2 = torch.where(vr > p * (1.0 - p), k2 + top, k2)
    theta1 = k1 * delta + 0.0
    theta2 = k2 * delta + 0.0
    if clip:
        theta1 = torch.clamp(theta1, min=lo, max=hi)
    if clip or published:
        theta2 = torch.clamp(theta2, min=lo, max=hi)
    theta = torch.where(branch1, theta1, theta2)
    theta = torch.where(_isinf(mu), torch.where(mu < 0, lo + 0.0 * mc, hi + 0.0 * mc), theta)
    return torch.where(_isnan(mu), mu, theta), branch1


def _escape_uniform(branch1, xi, ur):
    """refimpl ``_vc_escape_uniform``: u_round in branch 1, the fair coin 3/4·[ξ>0] + 1/4·[ξ<=0] in branch 2."""
    coin = torch.where(xi > 0.0, torch.full_like(xi, 0.75), torch.full_like(xi, 0.25))
    return torch.where(branch1, ur, coin)


#: float32 grids 2^se with se below this have 2^-se beyond float32's range (``_pow2(-se)`` is inf): Q^vc
#: computes those elements in float64 (refimpl.counter_rng._SE_MIN_F32, the float32 replay's threshold)
_SE_MIN_F32 = -127


def _vc_tensor(mu, var: float, fmt, code, xi, ur, uc) -> torch.Tensor:
    """Q^vc (Q5)/(Q6) of refimpl's ``vc_into`` in mu's dtype, noise tensors of mu's shape.

    Float32 elements whose grid Δ = 2^se lies below float32's scaling range (se < -127:
    bfloat16/``FloatingPoint(8, M)`` values below 2^(M-127), zero included; BFP blocks whose
    maximum is below about 2^(wl-129); fixed point with fl > 127) are computed in float64
    from the same (float32) μ and noise, and the result rounded once to float32: refimpl's
    value cast, as the float32 replay ``refimpl.counter_rng._vc32`` defines it.  Such a grid
    cannot be scaled to units in float32 (2^-se overflows), so float32 arithmetic there gave
    ± the format's largest value.  For BFP and those float formats on CPU the float64 values
    are computed only when some element needs them (one host read of the mask: a graph break
    under torch.compile; Q^vc of bfp:8:0 on 100×784 float32 without such elements, compiled,
    1 thread: 1.35× the kernel without the check, against 3.5× for computing float64 always);
    on other devices they are always computed and selected (no host synchronisation).
    """
    kind = int(code[S.KIND])
    flags = int(code[S.VC_FLAGS])
    if flags & S.VC_SPEC_CLIP_BIT:
        raise ValueError("the spec-clip test hook (VC_SPEC_CLIP_BIT) is not supported on the fast path")
    if mu.numel() == 0:  # nothing to round (BFP/MX blocks of an empty tensor have no maximum)
        return mu.clone()
    if kind == S.KIND_MX:
        return _mx_vc(mu, var, fmt, code, xi, ur, uc)
    if mu.dtype != torch.float32:
        return _vc_grid(mu, var, fmt, code, xi, ur, uc)[0]

    def in_float64(theta, tiny, mu, xi, ur, uc):
        f64 = torch.float64
        wide = _vc_grid(mu.to(f64), var, fmt, code, xi.to(f64), ur.to(f64), uc.to(f64))[0].to(torch.float32)
        return wide if tiny is None else torch.where(tiny, wide, theta)

    if kind == S.KIND_FIXED and math.frexp(float(code[S.FIXED_DELTA]))[1] - 1 < _SE_MIN_F32:
        return in_float64(None, None, mu, xi, ur, uc)
    theta, tiny = _vc_grid(mu, var, fmt, code, xi, ur, uc)
    if tiny is None:
        return theta
    operands = (theta, tiny, mu, xi, ur, uc)
    if mu.device.type != "cpu":  # no host read on an asynchronous device: compute and select
        return in_float64(*operands)
    return in_float64(*operands) if _any_on_host(tiny) else theta


@torch.compiler.disable
def _any_on_host(mask: torch.Tensor) -> bool:
    """bool(mask.any()) read on the host; a graph break under torch.compile (outside the traced graph, so no
    data-dependent-branch warning).  CPU only: nothing to synchronise with."""
    return bool(mask.any())


def _vc_grid(mu, var: float, fmt, code, xi, ur, uc) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`_vc_tensor` for fixed point, BFP and floats in mu's dtype: (θ, mask of the elements whose
    grid has se < ``_SE_MIN_F32``, or None where there can be none: float64, or a float format whose
    finest grid is coarser)."""
    kind = int(code[S.KIND])
    ties = int(code[S.TIES])
    published = bool(int(code[S.VC_FLAGS]) & S.VC_PUBLISHED_BIT) and kind != S.KIND_FIXED
    dt = mu.dtype
    f32 = dt == torch.float32
    if kind == S.KIND_FIXED:
        delta, lo, hi = float(code[S.FIXED_DELTA]), float(code[S.FIXED_LO]), float(code[S.FIXED_HI])
        se = torch.tensor(math.frexp(delta)[1] - 1, dtype=_int_info(dt)[0], device=mu.device)
        return _vc_units(mu, var, xi, ur, uc, se, lo, hi, ties, False, True, None)[0], None
    if kind == S.KIND_BFP:
        wl = int(code[S.BFP_WL])
        rows, back = _blocks(mu, fmt.dim)
        xr, urr, ucr = (_blocks(t, fmt.dim)[0] for t in (xi, ur, uc))
        a = rows.abs()
        a = torch.where(_isfinite(a), a, torch.zeros_like(a))
        m = a.amax(dim=1, keepdim=True)
        found = m > 0.0
        se = _exponent(torch.where(found, m, torch.ones_like(m))) + (2 - wl)
        kmax = float(2 ** (wl - 1) - 1)
        hi = kmax * _pow2(se, dt)
        t, branch1 = _vc_units(rows, var, xr, urr, ucr, se, -hi, hi, ties, published, False, kmax + 1.0)
        tm = torch.where(_isnan(t), torch.zeros_like(t), t.abs()).amax(dim=1, keepdim=True)
        escaped = tm > hi
        if published:
            escaped = escaped & branch1.any(dim=1, keepdim=True)
        e2 = _exponent(torch.where(escaped & _isfinite(tm), tm, torch.ones_like(tm)))
        e2 = torch.where(_isinf(tm), 1023 if dt == torch.float64 else 127, e2)
        se2 = e2 + (2 - wl)
        u = _escape_uniform(branch1, xr, urr)
        k = torch.clamp(torch.floor(t * _pow2(-se2, dt) + u), -kmax, kmax)
        sat2 = kmax * _pow2(se2, dt)
        esc = torch.where(_isinf(rows), torch.copysign(sat2.expand_as(rows), rows), k * _pow2(se2, dt) + 0.0)
        esc = torch.where(_isnan(rows), rows, esc)
        q = torch.where(escaped, esc, torch.minimum(torch.maximum(t, -hi), hi))
        # all-zero block with V > 0: θ = sqrt(V)·ξ rounded stochastically on its own block grid
        if var > 0.0:
            sd = math.sqrt(var)
            y = sd * xr
            ym = torch.where(_isnan(rows), torch.zeros_like(y), y.abs()).amax(dim=1, keepdim=True)
            ez = _exponent(torch.where(ym > 0, ym, torch.ones_like(ym))) + (2 - wl)
            kz = torch.clamp(torch.floor(y * _pow2(-ez, dt) + urr), -kmax, kmax)
            zq = torch.where(_isinf(rows), torch.copysign((kmax * _pow2(ez, dt)).expand_as(rows), rows),
                             kz * _pow2(ez, dt) + 0.0)
            zq = torch.where(ym > 0, zq, torch.zeros_like(zq))
            zq = torch.where(_isnan(rows), rows, zq)
            q = torch.where(found, q, zq)
            tiny = torch.where(found, se < _SE_MIN_F32, (ym > 0) & (ez < _SE_MIN_F32)) if f32 else None
        else:
            q = torch.where(found, q, torch.where(_isnan(rows), rows, torch.zeros_like(rows)))
            tiny = found & (se < _SE_MIN_F32) if f32 else None
        return back(q), (None if tiny is None else back(tiny.expand_as(rows)))
    if kind in (S.KIND_FLOAT, S.KIND_IEEE):
        emin, man, maxv, has_inf, saturate = _float_params(code)
        maxv = _saturation(maxv, dt)  # float32 and qtorch FloatingPoint(8, M): +inf (the replay's float32 max)
        am = mu.abs()
        small = (am == 0.0) | _isnan(am)
        se = torch.where(small, emin - man,
                         torch.clamp(_exponent(torch.where(small, torch.ones_like(am), torch.clamp(am, max=maxv))),
                                     min=emin) - man)
        hi = torch.clamp(float(2 ** (man + 1) - 1) * _pow2(se, dt), max=maxv)
        t, branch1 = _vc_units(mu, var, xi, ur, uc, se, -hi, hi, ties, published, False, float(2 ** (man + 1)))
        out_ = t.abs() > hi
        u = _escape_uniform(branch1, xi, ur)
        ts = torch.where(out_ & _isfinite(t), t, torch.ones_like(t))
        ue = torch.clamp(_exponent(ts.abs()), min=emin) - man
        t2 = torch.floor(ts * _pow2(-ue, dt) + u) * _pow2(ue, dt)
        t2 = torch.where(_isinf(t), t, t2)
        t2 = torch.where(t2.abs() > maxv, torch.copysign(torch.full_like(t2, maxv), t2), t2)
        tiny = se < _SE_MIN_F32 if f32 and emin - man < _SE_MIN_F32 else None
        return torch.where(out_, t2, t), tiny
    raise ValueError(f"unsupported format kind {kind}")


# ----------------------------------------------------------------------------- noise
def _stream_keys(pkey: torch.Tensor, names: Sequence[str]):
    return [cr._counter_bits(pkey, torch.tensor(cr.STREAMS[n], dtype=torch.int64, device=pkey.device))
            for n in names]


def _noise_like(key: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    n = x.numel()
    draw = cr._normals if kind == "normal" else cr._uniforms  # unchecked: traced inside the fused steps
    return draw(key, n, dtype=x.dtype, device=x.device).reshape(x.shape)


def _param_key(seed: int, step: int, param_index: int, device=None) -> torch.Tensor:
    """key(seed, step, param) as a 0-d int64 tensor; stream keys are bits(this, stream id)."""
    from refimpl.counter_rng import _bits_py

    k = _bits_py(_bits_py(int(seed) & ((1 << 64) - 1), int(step)), int(param_index))
    return cr.key_tensor(k, device)


def _compute_dtype(x: torch.Tensor):
    if x.dtype in (torch.float64, torch.float32):
        return x
    return x.to(torch.float32)


# ----------------------------------------------------------------------------- public quantizers
def _check_float_tensor(x, name: str) -> None:
    """TypeError naming ``name`` unless x is a floating-point torch.Tensor (public entry points only)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {x!r} ({type(x).__name__})")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got a Tensor of dtype {x.dtype}")


def _check_streams(streams) -> tuple[str, str, str]:
    """The three streams (ξ, u_round, u_cat) of ``vc_quantize_fast``: names of STREAMS or integer ids >= 0."""
    def ok(s):
        if isinstance(s, str):
            return s in cr.STREAMS
        return not isinstance(s, bool) and isinstance(s, numbers.Integral) and s >= 0

    if (isinstance(streams, (str, bytes)) or not isinstance(streams, Sequence) or len(streams) != 3
            or not all(ok(s) for s in streams)):
        raise ValueError(f"streams must be a sequence of three streams (names from {sorted(cr.STREAMS)} or "
                         f"integer ids >= 0) for xi, u_round, u_cat, got {streams!r}")
    return tuple(streams)


def _code(fmt, ties=None, vc_published=False):
    return tuple(float(c) for c in with_options(format_code(fmt), ties=ties, vc_published=vc_published))


def quantize_fast(x: torch.Tensor, fmt: FastFormat, *, ties: str | None = None) -> torch.Tensor:
    """Q^d(x) (Q1) in x's dtype (float32 for half types); equals refimpl's ``quantize`` for float32/64 input."""
    _check_float_tensor(x, "x")
    _check_format(fmt)
    xc = _compute_dtype(x)
    return _round_tensor(xc, fmt, _code(fmt, ties), None).to(x.dtype)


def stochastic_round_fast(x: torch.Tensor, fmt: FastFormat, *, seed: int, step: int = 0, param_index: int = 0,
                          stream: str = "u_weight", start: int = 0) -> torch.Tensor:
    """Q^s(x) = Δ·(⌊x/Δ⌋ + [u_k < frac]) with counter uniforms (key(seed, step, param, stream), element start+i).

    Bias in [0, 2^-k·Δ), k = 53 (float64) or 24 (float32): refimpl.counter_rng.  ``start``
    offsets the element index: element i (C order) uses uniform start + i.  The blocks of BFP
    and MX/NVFP4 are those of ``x`` itself, so for a shard of a larger tensor (x = the
    tensor's rows r0.., ``start`` = r0·row length) the result is the tensor's result on those
    rows when every block lies within rows -- BFP ``dim=0``, MX/NVFP4 ``axis=-1`` -- and
    not for BFP ``dim=None`` (one block over the whole tensor) or ``dim > 0``.
    """
    _check_float_tensor(x, "x")
    _check_format(fmt)
    xc = _compute_dtype(x)
    key = cr.key_tensor(cr.stream_key(seed, step, param_index, stream), x.device)
    u = cr.uniforms(key, xc.numel(), start=start, dtype=xc.dtype, device=x.device).reshape(xc.shape)
    return _round_tensor(xc, fmt, _code(fmt), u).to(x.dtype)


def vc_quantize_fast(mu: torch.Tensor, var: float, fmt: FastFormat, *, seed: int, step: int = 0, param_index: int = 0,
                     streams: Sequence[str] = ("xi", "u_round", "u_cat"), ties: str | None = None,
                     vc_published: bool = False) -> torch.Tensor:
    """Q^vc(μ, V) ((Q5)/(Q6); refimpl ``vc_into``) in μ's dtype with counter noise (ξ, u_round, u_cat)."""
    _check_float_tensor(mu, "mu")
    _check_format(fmt)
    if isinstance(var, bool) or not isinstance(var, numbers.Real):
        raise TypeError(f"var must be a finite float >= 0, got {var!r} ({type(var).__name__})")
    var = float(var)
    if not var >= 0.0 or math.isinf(var):
        raise ValueError(f"var must be a finite float >= 0, got {var!r}")
    streams = _check_streams(streams)
    mc = _compute_dtype(mu)
    keys = [cr.key_tensor(cr.stream_key(seed, step, param_index, s), mu.device) for s in streams]
    xi = _noise_like(keys[0], mc, "normal")
    ur = _noise_like(keys[1], mc, "uniform")
    uc = _noise_like(keys[2], mc, "uniform")
    return _vc_tensor(mc, var, fmt, _code(fmt, ties, vc_published), xi, ur, uc).to(mu.dtype)


# ----------------------------------------------------------------------------- fused steps
def sgld_step(p: torch.Tensor, g: torch.Tensor, acc: torch.Tensor | None, pkey: torch.Tensor, *,
              lr: float, var: float, weight_fmt: FastFormat | None, weight_code: tuple[float, ...] | None,
              grad_fmt: FastFormat | None, grad_code: tuple[float, ...] | None, accumulator: str,
              variance_corrected: bool, weight_decay: float, add_noise: bool
              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """One LP-SGLD update of one parameter ((S2)-(S6)); returns (θ', acc', finite flag).

    Pure function (no in-place writes): g_q = SR(g) (stream u_grad), d = g_q + wd·x,
    μ = x - lr·d with x = acc ("full") or θ ("low"); VC: θ' = Q^vc(μ, V) (streams xi,
    u_round, u_cat); else μ += sqrt(V)·ξ and θ' = SR(μ) (stream u_weight); "full" keeps
    acc' = μ.  V = 2·lr·T/N.  The flag is all(isfinite(g)) as a 0-d bool tensor.
    """
    finite = _isfinite(g).all()
    names = ["u_grad", "xi", "u_weight", "u_round", "u_cat"]
    k = dict(zip(names, _stream_keys(pkey, names)))
    if grad_fmt is not None:
        g = _round_tensor(g, grad_fmt, grad_code, _noise_like(k["u_grad"], g, "uniform"))
    full = accumulator == "full"
    x = acc if full else p
    d = g if weight_decay == 0 else g + x * weight_decay
    mu = x - d * lr
    if variance_corrected:
        q = _vc_tensor(mu, var, weight_fmt, weight_code, _noise_like(k["xi"], mu, "normal"),
                       _noise_like(k["u_round"], mu, "uniform"), _noise_like(k["u_cat"], mu, "uniform"))
        return q, acc, finite
    if add_noise:
        mu = mu + _noise_like(k["xi"], mu, "normal") * math.sqrt(var)
    q = mu if weight_fmt is None else _round_tensor(mu, weight_fmt, weight_code,
                                                    _noise_like(k["u_weight"], mu, "uniform"))
    return q, (mu if full else acc), finite


def sghmc_step(p: torch.Tensor, g: torch.Tensor, acc: torch.Tensor | None, v: torch.Tensor, pkey: torch.Tensor, *,
               coeffs: Sequence[float], position_sign: float, weight_fmt: FastFormat | None,
               weight_code: tuple[float, ...] | None, grad_fmt: FastFormat | None, grad_code: tuple[float, ...] | None,
               velocity_fmt: FastFormat | None, velocity_code: tuple[float, ...] | None,
               accumulator: str, variance_corrected: bool, weight_decay: float
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """One LP-SGHMC update of one parameter ((H2)-(H4)); returns (θ', acc', v', finite flag).

    μ_v = a·v - c_v·g, μ_x = x + c_xv·v + s_x·c_xg·g (g = SR(∇) + wd·x); VC: two Q^vc
    draws (streams xi_v/u_round_v/u_cat_v and xi_x/u_round_x/u_cat_x); otherwise the
    correlated noise of torchport's ``_correlated_noise`` from streams z1, z2, then SR of
    x (u_weight) and, for "low", of v (u_velocity).  No velocity rescaling (H5) here.
    """
    a, c_v, c_xv, c_xg, s_v, s_x, s_xv = coeffs
    finite = _isfinite(g).all()
    names = ["u_grad", "z1", "z2", "u_weight", "u_velocity", "xi_v", "u_round_v", "u_cat_v", "xi_x",
             "u_round_x", "u_cat_x"]
    k = dict(zip(names, _stream_keys(pkey, names)))
    if grad_fmt is not None:
        g = _round_tensor(g, grad_fmt, grad_code, _noise_like(k["u_grad"], g, "uniform"))
    full = accumulator == "full"
    x = acc if full else p
    if weight_decay != 0:
        g = g + x * weight_decay
    mu_v = v * a - g * c_v
    mu_x = x + v * c_xv + g * (position_sign * c_xg)
    if variance_corrected:
        v2 = _vc_tensor(mu_v, s_v, velocity_fmt, velocity_code, _noise_like(k["xi_v"], p, "normal"),
                        _noise_like(k["u_round_v"], p, "uniform"), _noise_like(k["u_cat_v"], p, "uniform"))
        x2 = _vc_tensor(mu_x, s_x, weight_fmt, weight_code, _noise_like(k["xi_x"], p, "normal"),
                        _noise_like(k["u_round_x"], p, "uniform"), _noise_like(k["u_cat_x"], p, "uniform"))
        return x2, acc, v2, finite
    corr = s_xv / s_v if s_v > 0.0 else 0.0
    xi_v = _noise_like(k["z1"], p, "normal") * math.sqrt(s_v)
    xi_x = xi_v * corr + _noise_like(k["z2"], p, "normal") * math.sqrt(max(s_x - s_xv * corr, 0.0))
    v2 = mu_v + xi_v
    x2 = mu_x + xi_x
    if full:
        q = x2 if weight_fmt is None else _round_tensor(x2, weight_fmt, weight_code,
                                                        _noise_like(k["u_weight"], p, "uniform"))
        return q, x2, v2, finite
    if velocity_fmt is not None:
        v2 = _round_tensor(v2, velocity_fmt, velocity_code, _noise_like(k["u_velocity"], p, "uniform"))
    if weight_fmt is not None:
        x2 = _round_tensor(x2, weight_fmt, weight_code, _noise_like(k["u_weight"], p, "uniform"))
    return x2, acc, v2, finite


#: the most parameters one grouped call (``sgld_step_group`` / ``sghmc_step_group``) takes: dynamo unrolls
#: the loop over the parameters, so the traced graph, and its compile time, grow with their number; above
#: this the optimizers call the per-parameter update (whose call overhead matters less on a model with many
#: large parameters: ResNet-50's 161 parameters cost ~11 ms of ~0.8 s per compiled step).
GROUP_MAX = 16


def sgld_step_group(ps: Sequence[torch.Tensor], gs: Sequence[torch.Tensor], accs: Sequence[torch.Tensor | None],
                    keys: torch.Tensor, indices: Sequence[int], *, lrs: Sequence[float], variances: Sequence[float],
                    weight_decays: Sequence[float], **options: Any
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None], list[torch.Tensor]]:
    """:func:`sgld_step` for several parameters in one call (one compiled graph instead of one call each).

    Parameter j is ``ps[j]`` with gradient ``gs[j]``, accumulator ``accs[j]`` (or None), key
    ``keys[indices[j]]`` and its group's ``lrs[j]``, ``variances[j]``, ``weight_decays[j]``;
    ``options`` are :func:`sgld_step`'s other keywords.  Each parameter's update is exactly
    ``sgld_step``'s (the same ops in the same order), so the results are its results bit for bit
    (tests/torchport/test_default_path.py); returns the lists (θ', acc', finite flag).
    """
    qs, acc2s, flags = [], [], []
    for p, g, acc, i, lr, var, wd in zip(ps, gs, accs, indices, lrs, variances, weight_decays):
        q, acc2, fin = sgld_step(p, g, acc, keys[i], lr=lr, var=var, weight_decay=wd, **options)
        qs.append(q)
        acc2s.append(acc2)
        flags.append(fin)
    return qs, acc2s, flags


def sghmc_step_group(ps: Sequence[torch.Tensor], gs: Sequence[torch.Tensor], accs: Sequence[torch.Tensor | None],
                     vs: Sequence[torch.Tensor], keys: torch.Tensor, indices: Sequence[int], *,
                     coeffs: Sequence[Sequence[float]], weight_decays: Sequence[float], **options: Any
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor | None], list[torch.Tensor], list[torch.Tensor]]:
    """:func:`sghmc_step` for several parameters in one call; parameter j as in :func:`sgld_step_group`
    (velocity ``vs[j]``, its group's ``coeffs[j]`` and ``weight_decays[j]``).  Returns the lists
    (θ', acc', v', finite flag), each entry ``sghmc_step``'s result bit for bit."""
    qs, acc2s, v2s, flags = [], [], [], []
    for p, g, acc, v, i, c, wd in zip(ps, gs, accs, vs, indices, coeffs, weight_decays):
        q, acc2, v2, fin = sghmc_step(p, g, acc, v, keys[i], coeffs=c, weight_decay=wd, **options)
        qs.append(q)
        acc2s.append(acc2)
        v2s.append(v2)
        flags.append(fin)
    return qs, acc2s, v2s, flags


def _group_members(todo, keys: torch.Tensor, formats: Sequence[Any] = ()) -> list | None:
    """[(group args, index, p), ...] of a step's ``todo`` for one grouped call, or None: a BFP format
    among ``formats``, more than ``GROUP_MAX`` parameters, a parameter off the keys' device, or a
    non-contiguous one (its 2-D view would be a copy, and the results are written back through the views).

    BFP keeps one call per parameter: in one graph over all parameters inductor's code for its per-row
    block exponents was slower than the separate graphs (MLP step alone, 1 thread, compiled, side by side:
    LP-F bfp:8:0 2152 us grouped, 807 us per parameter; fixed:8:6 445 / 547 us; mxfp8_e4m3 3919 / 4346 us).
    """
    if any(isinstance(f, BlockFloatingPoint) for f in formats):
        return None
    members = [(args, i, p) for args, ms in todo for i, p in ms]
    if len(members) > GROUP_MAX or any(p.device != keys.device or not p.is_contiguous() for _, _, p in members):
        return None
    return members


def _group_views(tensors: Sequence[torch.Tensor | None], mode) -> list | None:
    """The ``mode`` views of a grouped call's state tensors (None entries stay None), or None when one is
    not contiguous: the results are written back through the views, so a view must not be a copy."""
    if any(t is not None and not t.is_contiguous() for t in tensors):
        return None
    return [_view(t, mode) for t in tensors]


def _private_copy(fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn with its own code object: dynamo keeps its compiled graphs per code object, at most
    ``recompile_limit`` (8) of them, so optimizers sharing ``sgld_step``'s code would share those
    eight entries (one per format/flag set and view shape) and, past them, silently run eager."""
    import functools

    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    return functools.update_wrapper(copy, fn)


#: inductor options of the fast path.  ``realize_reads_threshold=1`` stores a per-block value (block
#: scale, exponent) that several loops read instead of recomputing it inside each vectorised loop: with
#: the default (4), inductor's CPU code for BFP Q^s of a 100×784 float32 tensor ran at 9.7 ns per element,
#: with 1 at 2.3 ns (fixed-point Q^s: 1.0 ns either way; torch 2.13, one thread, measured).
_INDUCTOR_OPTIONS = {"realize_reads_threshold": 1}


def maybe_compile(fn: Callable[..., Any], enabled: bool = True) -> Callable[..., Any]:
    """``torch.compile`` of a private copy of ``fn`` (dynamic shapes, ``_INDUCTOR_OPTIONS``) when enabled
    and available, else ``fn``.

    The copy keeps one optimizer's graphs apart from another's (``_private_copy``).
    Compilation happens lazily at the first call (keep that call out of timed regions).
    If compiling fails at that first call, the eager function is used from then on, with a
    ``RuntimeWarning`` that says so (eager is several times slower).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r} ({type(fn).__name__})")
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    if not enabled or not hasattr(torch, "compile"):
        return fn
    target = _private_copy(fn) if isinstance(fn, types.FunctionType) else fn
    try:
        compiled = torch.compile(target, dynamic=True, options=_INDUCTOR_OPTIONS)
    except Exception:  # pragma: no cover - an older inductor without the option, or no compile at all
        try:
            compiled = torch.compile(target, dynamic=True)
        except Exception:
            return fn
    state = {"fn": compiled, "tried": False}

    def call(*args, **kwargs):
        if state["tried"]:
            return state["fn"](*args, **kwargs)
        try:
            out = state["fn"](*args, **kwargs)
        except Exception as exc:  # pragma: no cover - e.g. no C++ compiler: fall back to eager
            warnings.warn(f"torch.compile of {getattr(fn, '__name__', fn)} failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); running it eagerly, which is "
                          "several times slower (pass compile=False to silence this)", RuntimeWarning, stacklevel=2)
            state["fn"] = fn
            out = fn(*args, **kwargs)
        state["tried"] = True
        return out

    return call


def _layout(formats):
    """(view mode, formats for the views): the optimizers' one-graph layout.

    Every parameter is passed to the fused step as a 2-D view: (shape[0], rest) when a
    BFP format has ``dim=0`` (mode "first"), (rest, shape[-1]) when an MX/NVFP4 format
    has ``axis=-1`` (mode "last": its rows of blocks), (1, numel) otherwise (mode "one":
    element-wise formats, and BFP ``dim=None`` as ``dim=0`` of that single row -- one
    block).  Views keep the blocks and the C-order element indices, so the bits are those
    of the original shapes, and one compiled graph serves all parameters.  BFP with
    ``dim > 0``, BFP ``dim=0`` mixed with ``dim=None``, MX with another axis, or BFP mixed
    with MX keeps the parameters' shapes (mode None).
    """
    dims = {f.dim for f in formats if isinstance(f, BlockFloatingPoint)}
    axes = {f.axis for f in formats if isinstance(f, (MXFormat, NVFP4))}
    if axes:
        if dims or axes != {-1}:
            return None, list(formats)
        return "last", list(formats)
    if any(d not in (None, 0) for d in dims) or dims == {None, 0}:
        return None, list(formats)
    if dims == {0}:
        return "first", list(formats)
    return "one", [BlockFloatingPoint(f.wl, dim=0) if isinstance(f, BlockFloatingPoint) else f for f in formats]


def _view(t, mode):
    if t is None or mode is None:
        return t
    # explicit sizes, not -1: a (0, 4) parameter has no size to infer
    if mode == "first" and t.dim() > 0:
        return t.reshape(t.shape[0], math.prod(t.shape[1:]))
    if mode == "last" and t.dim() > 0:
        return t.reshape(math.prod(t.shape[:-1]), t.shape[-1])
    return t.reshape(1, t.numel())


def _check_axes(params, formats) -> None:
    """ValueError naming the format and the parameter when an MX format's axis does not fit a parameter."""
    for name, f in formats:
        if isinstance(f, (MXFormat, NVFP4)):
            for i, p in enumerate(params):
                if p.dim() > 0 and not -p.dim() <= f.axis < p.dim():
                    raise ValueError(f"{name}={f!r}: axis {f.axis} is out of range for parameter {i} of shape "
                                     f"{tuple(p.shape)}")


# ----------------------------------------------------------------------------- optimizers
#: the step index of the initial weight rounding (θ_0 = SR(acc_0), "full" accumulator)
INIT_STEP = 1 << 63


def _check_common(params, seed, compile, check_every, param_names):
    """The standalone classes' own checks (their messages), before the optimizer of torchport.optim runs."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 0:
        raise ValueError(f"check_every must be an integer >= 0, got {check_every!r}")
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be True or False, got {compile!r}")
    params = list(params)
    flat = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    for i, p in enumerate(flat):
        if p.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"the fast path needs float32 or float64 parameters, got parameter {i} "
                            f"of dtype {p.dtype}")
    names = list(param_names) if param_names is not None else [f"param {i} (shape {tuple(p.shape)})"
                                                               for i, p in enumerate(flat)]
    if len(names) != len(flat):
        raise ValueError(f"param_names must name every parameter ({len(flat)}), got {len(names)}")
    return params, flat, names


class _FastAlias:
    """What the standalone classes keep of their own: argument checks and defaults (seed 0, compile False),
    parameter names in the finite-gradient error ("... for NAME at or before step k"), ``steps``, and
    ``fast_steps`` / ``seed`` in the state dict (a seed mismatch on load is a ValueError)."""

    @property
    def steps(self) -> int:
        """Completed steps (the counter stream's step of the next one)."""
        return self.num_steps

    def _all_names(self) -> list:
        return self._fast_names

    def check_finite(self) -> None:
        """Raise NonFiniteGradientError naming the first parameter that had a non-finite gradient.

        The only host synchronisation of the fast path; called every ``check_every`` steps
        (0: only when you call it).  The flags are sticky until this raises.
        """
        try:
            super().check_finite()
        except NonFiniteGradientError as exc:
            raise NonFiniteGradientError(str(exc).replace(" in parameter ", " for ", 1)) from None

    def state_dict(self):
        """The optimizer's state dict plus ``fast_steps`` and ``seed`` (the counter stream's position)."""
        sd = super().state_dict()
        sd["fast_steps"] = self.num_steps
        sd["seed"] = self.seed
        return sd

    def load_state_dict(self, state_dict):
        """Restore, including the stream position, so a resumed run draws the same bits; a state dict saved
        with another seed is a ValueError."""
        sd = dict(state_dict)
        steps = sd.pop("fast_steps", sd.get("num_steps", 0))
        seed = sd.pop("seed", sd.get("counter_seed", self.seed))
        if seed != self.seed:
            raise ValueError(f"state_dict was saved with seed={seed}, this optimizer has seed={self.seed}")
        sd.setdefault("counter_seed", seed)  # saved by the earlier standalone implementation, whose groups
        sd.setdefault("num_steps", steps)    # lacked some keys (SGHMC: friction, ...): this optimizer's values
        if isinstance(sd.get("param_groups"), (list, tuple)) and len(sd["param_groups"]) == len(self.param_groups):
            sd["param_groups"] = [dict({k: v for k, v in mine.items() if k != "params"}, **saved)
                                  if isinstance(saved, dict) else saved
                                  for saved, mine in zip(sd["param_groups"], self.param_groups)]
        super().load_state_dict(sd)


_ALIASES: dict[str, type] = {}


def _alias_classes() -> dict[str, type]:
    """FastLowPrecisionSGLD / FastLowPrecisionSGHMC, built on first use (torchport.optim imports this module)."""
    if _ALIASES:
        return _ALIASES
    from torchport.optim import LowPrecisionSGHMC, LowPrecisionSGLD
    from torchport.optim._base import NoisyOptimizer

    class FastLowPrecisionSGLD(_FastAlias, LowPrecisionSGLD):
        """LP-SGLD / LP-SGD on the fast path: ``torchport.optim.LowPrecisionSGLD(..., exact=False)`` -- spec (S2)-(S6).

        Same parameters and scaling contract (S0) as ``LowPrecisionSGLD`` (lr, temperature T,
        num_data N, weight_format, grad_format "same"/None/format, accumulator "full"/"low",
        variance_corrected, ties, vc_bfp_published, weight_decay, add_noise, quantize_initial),
        with ``seed`` an int >= 0 (default 0, the counter stream's key), ``compile`` (default
        False), ``check_every`` (finite-gradient check period; 0: call :meth:`check_finite`
        yourself) and ``param_names`` (names used in that error).  The update is that
        optimizer's (one implementation): counter stream at (seed, step, parameter index),
        streams u_grad, xi, u_weight / xi, u_round, u_cat; the initial rounding of "full" uses
        step ``INIT_STEP`` and stream u_weight; computed in the parameter's dtype.
        """

        _not_options = NoisyOptimizer._not_options | {"param_names"}

        def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float,
                     temperature: float = 1.0, num_data: float = 1, *, weight_format: FastFormat | str | None = None,
                     grad_format: FastFormat | str | None = "same", accumulator: str = "full",
                     variance_corrected: bool = False, ties: str | None = None, vc_bfp_published: bool = False,
                     weight_decay: float = 0.0, add_noise: bool = True, quantize_initial: bool = True,
                     seed: int = 0, compile: bool = False, check_every: int = 0,
                     param_names: Sequence[str] | None = None):
            from torchport.optim._base import as_format

            for name, v in (("lr", lr), ("temperature", temperature), ("num_data", num_data),
                            ("weight_decay", weight_decay)):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (
                        v == 0 and name in ("lr", "num_data")):
                    raise ValueError(f"{name} must be a finite number "
                                     f"{'> 0' if name in ('lr', 'num_data') else '>= 0'}, got {v!r}")
            if accumulator not in ("full", "low"):
                raise ValueError(f"accumulator must be 'full' or 'low', got {accumulator!r}")
            wf = as_format(weight_format, "weight_format")
            gf = wf if grad_format == "same" else as_format(grad_format, "grad_format")
            for name, f in (("weight_format", wf), ("grad_format", gf)):
                if f is not None:
                    _check_format(f, name)
            if variance_corrected and (accumulator != "low" or wf is None or not add_noise):
                raise ValueError("variance_corrected=True needs accumulator='low', a weight_format and "
                                 f"add_noise=True, got accumulator={accumulator!r}, "
                                 f"weight_format={weight_format!r}, add_noise={add_noise!r}")
            params, flat, self._fast_names = _check_common(params, seed, compile, check_every, param_names)
            _check_axes(flat, [("weight_format", wf), ("grad_format", gf)])
            super().__init__(params, lr, temperature, num_data, weight_format=wf,
                             grad_format=gf if grad_format != "same" else "same", accumulator=accumulator,
                             variance_corrected=variance_corrected, ties=ties, vc_bfp_published=vc_bfp_published,
                             weight_decay=weight_decay, add_noise=add_noise, quantize_initial=quantize_initial,
                             seed=seed, exact=False, compile=compile, check_every=check_every)

    class FastLowPrecisionSGHMC(_FastAlias, LowPrecisionSGHMC):
        """LP-SGHMC on the fast path: ``torchport.optim.LowPrecisionSGHMC(..., exact=False)`` -- spec (H2)-(H4).

        Coefficients (H0) from ``torchport.optim.sghmc_coefficients(lr, friction, inverse_mass,
        temperature/num_data)`` (``coeffs``, of the first parameter group); ``position_sign`` -1
        (correct, default) or +1 (paper).  No velocity rescaling (H5).  Streams: u_grad, z1, z2,
        u_weight, u_velocity; VC: xi_v, u_round_v, u_cat_v, xi_x, u_round_x, u_cat_x.  Other
        arguments as :class:`FastLowPrecisionSGLD`.
        """

        _not_options = NoisyOptimizer._not_options | {"param_names"}

        def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, friction: float = 1.0,
                     inverse_mass: float = 1.0, temperature: float = 1.0, num_data: float = 1, *,
                     weight_format: FastFormat | str | None = None, grad_format: FastFormat | str | None = "same",
                     velocity_format: FastFormat | str | None = "same", accumulator: str = "full",
                     variance_corrected: bool = False, ties: str | None = None, vc_bfp_published: bool = False,
                     position_sign: str = "correct", weight_decay: float = 0.0, quantize_initial: bool = True,
                     seed: int = 0, compile: bool = False, check_every: int = 0,
                     param_names: Sequence[str] | None = None):
            from torchport.optim._base import as_format
            from torchport.optim.sghmc import _sign, sghmc_coefficients

            if accumulator not in ("full", "low"):
                raise ValueError(f"accumulator must be 'full' or 'low', got {accumulator!r}")
            if isinstance(num_data, bool) or not isinstance(num_data, (int, float)) or not num_data > 0:
                raise ValueError(f"num_data must be a number > 0, got {num_data!r}")
            for name, v in (("lr", lr), ("temperature", temperature)):
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0 or (
                        v == 0 and name == "lr"):
                    raise ValueError(f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}, "
                                     f"got {v!r}")
            sghmc_coefficients(lr, friction, inverse_mass, temperature / num_data)  # its checks
            _sign(position_sign)
            wf = as_format(weight_format, "weight_format")
            gf = wf if grad_format == "same" else as_format(grad_format, "grad_format")
            vf = wf if velocity_format == "same" else as_format(velocity_format, "velocity_format")
            for name, f in (("weight_format", wf), ("grad_format", gf), ("velocity_format", vf)):
                if f is not None:
                    _check_format(f, name)
            if variance_corrected and (accumulator != "low" or wf is None or vf is None):
                raise ValueError("variance_corrected=True needs accumulator='low', a weight_format and a "
                                 f"velocity_format, got accumulator={accumulator!r}, weight_format={weight_format!r}")
            if weight_decay < 0:
                raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
            params, flat, self._fast_names = _check_common(params, seed, compile, check_every, param_names)
            _check_axes(flat, [("weight_format", wf), ("grad_format", gf), ("velocity_format", vf)])
            super().__init__(params, lr, friction, inverse_mass, temperature, num_data, weight_format=wf,
                             grad_format=gf if grad_format != "same" else "same",
                             velocity_format=vf if velocity_format != "same" else "same", accumulator=accumulator,
                             variance_corrected=variance_corrected, ties=ties, vc_bfp_published=vc_bfp_published,
                             position_sign=position_sign, weight_decay=weight_decay,
                             quantize_initial=quantize_initial, seed=seed, exact=False, compile=compile,
                             check_every=check_every)

        @property
        def coeffs(self) -> tuple[float, ...]:
            """(H0) coefficients a, c_v, c_xv, c_xg, TΣ_v, TΣ_x, TΣ_xv of the first parameter group."""
            return self._coeffs(self.param_groups[0])

    for cls in (FastLowPrecisionSGLD, FastLowPrecisionSGHMC):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
        _ALIASES[cls.__name__] = cls
    return _ALIASES


def __getattr__(name: str) -> Any:
    """``FastLowPrecisionSGLD`` / ``FastLowPrecisionSGHMC``: thin subclasses of ``torchport.optim``'s
    ``LowPrecisionSGLD`` / ``LowPrecisionSGHMC`` with ``exact=False`` (one implementation), created when
    first asked for (``torchport.optim`` imports this module, so they cannot be defined at import)."""
    if name in ("FastLowPrecisionSGLD", "FastLowPrecisionSGHMC"):
        cls = _alias_classes()[name]
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
