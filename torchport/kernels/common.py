"""Shared torch helpers of the format modules (torchport.kernels), mirroring refimpl.kernels.common:
exact power-of-two scaling, correctly rounded square root, rounding to an integer, the
categorical offset Cat (Q4), and the two Q^vc branches (Q5)/(Q6) on a given grid.
"""

from __future__ import annotations

import math

import torch

import numbers

from refimpl.slots import CODE_LEN, KIND, VC_FLAGS, VC_PUBLISHED_BIT, VC_SPEC_CLIP_BIT

__all__ = ["exact_sqrt"]

_NO_VAR = object()  # _check_call's ``var`` when the kernel has none


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r:.60}"


def _check_call(where: str, code, kinds: tuple[int, ...], fmt, fmt_types: tuple[type, ...],
                      var: object = _NO_VAR, **tensors: torch.Tensor) -> None:
    """Structural checks of a kernel call (O(1): no reduction over the data, no device sync).

    ``code``: a ``CODE_LEN``-entry sequence (``refimpl.formats.format_code`` of ``fmt``) whose
    kind is one of ``kinds``; ``fmt``: an instance of ``fmt_types``; ``var`` (Q^vc): a finite
    real >= 0 (``fmt_types`` empty: ``fmt`` not checked); ``tensors``: float64 tensors, all of the first one's shape.  Raises
    ``TypeError``/``ValueError`` starting with ``where`` and naming the argument and value.
    The values inside the noise tensors are not checked here (that needs a pass over the
    data); :mod:`torchport.quantize` checks them at its public entry points.
    """
    if not isinstance(code, (tuple, list)) or len(code) != CODE_LEN:
        raise ValueError(f"{where}: code={code!r:.80} must be the {CODE_LEN}-entry format code "
                         "(refimpl.formats.format_code)")
    if int(code[KIND]) not in kinds:
        raise ValueError(f"{where}: code kind {int(code[KIND])} is not handled by this module (kinds {kinds})")
    if fmt_types and not isinstance(fmt, fmt_types):
        raise TypeError(f"{where}: fmt={fmt!r:.80} must be a {' or '.join(t.__name__ for t in fmt_types)}")
    if var is not _NO_VAR:
        if isinstance(var, bool) or not isinstance(var, numbers.Real) or not (math.isfinite(var) and var >= 0):
            raise ValueError(f"{where}: var={var!r} must be a finite real >= 0")
    first = None
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float64:
            raise TypeError(f"{where}: {name} must be a float64 torch.Tensor, got {_describe(t)}")
        if first is None:
            first = (name, t.shape)
        elif t.shape != first[1]:
            raise ValueError(f"{where}: {name} must have the shape of {first[0]} {tuple(first[1])}, got "
                             f"shape {tuple(t.shape)}")


def _pow2(e: torch.Tensor) -> torch.Tensor:
    """2**e for an integer-valued float64 tensor, exactly (|e| <= 1022)."""
    return torch.pow(2.0, e)


def _ldexp(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """x·2^e, rounded once: (x·2^a)·2^(e−a) with a = clamp(e, −1022, 1023), both factors normal.

    For |e| <= 1022 this is x·2^e in one exact product; beyond (BFP blocks whose maximum is
    below about 2^-1015, where 2^-se overflows) it equals refimpl's overflow-safe ldexp."""
    a = torch.clamp(e, -1022.0, 1023.0)
    return (x * _pow2(a)) * _pow2(e - a)


def _frexp_exp(a: torch.Tensor) -> torch.Tensor:
    """frexp(a)[1] − 1 = ⌊log2 a⌋ for finite a > 0 (float64 result); exact.

    Read from the exponent bits (subnormals scaled by 2^64 first), not ``torch.frexp``:
    inductor (torch 2.13, CPU) fails to compile frexp's int32 exponent converted to float64,
    which kept MX Q^vc out of the compiled fast path.  The same values as frexp for every
    finite a > 0 (tests/torchport/test_mx.py, test_fast.py).
    """
    if a.dtype == torch.float64:
        itype, mbits, bias, tiny = torch.int64, 52, 1023, 2.0 ** -1022
    else:
        itype, mbits, bias, tiny = torch.int32, 23, 127, 2.0 ** -126
        a = a.to(torch.float32)
    small = a < tiny
    a2 = torch.where(small, a * 2.0 ** 64, a)
    e = ((a2.view(itype) >> mbits) & (2 * bias + 1)) - bias
    return (e - torch.where(small, 64, 0).to(itype)).to(torch.float64)


def exact_sqrt(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded elementwise √x (IEEE), for any float dtype.

    torch's vectorised CPU ``sqrt`` is not correctly rounded (about 1% of float64
    results and many float32 results are one ulp off, SLEEF-style u05 kernels),
    while NumPy/Numba's is; bit-for-bit parity with refimpl needs the IEEE
    result.  float64: the torch result is corrected by at most one ulp using the
    exact residual x − y² (Dekker's error-free product, no FMA needed).  Other
    dtypes: computed in float64 and rounded once (exact: 53 ≥ 2·24 + 2).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a real floating-point torch.Tensor, got {_describe(x)}")
    if x.dtype != torch.float64:
        return exact_sqrt(x.to(torch.float64)).to(x.dtype)
    y = torch.sqrt(x)
    ok = (x > 0) & torch.isfinite(x)
    ys = torch.where(ok, y, torch.ones_like(y))
    xs = torch.where(ok, x, torch.ones_like(x))
    c = ys * 134217729.0  # Veltkamp split, 2^27 + 1
    hi = c - (c - ys)
    lo = ys - hi
    p = ys * ys
    err = ((hi * hi - p) + 2.0 * hi * lo) + lo * lo  # ys² = p + err exactly
    d = (xs - p) - err  # x − ys² (x − p exact by Sterbenz)
    uu = torch.nextafter(ys, torch.full_like(ys, math.inf)) - ys
    ud = ys - torch.nextafter(ys, torch.zeros_like(ys))
    y2 = torch.where(d > ys * uu + uu * uu * 0.25, ys + uu,
                     torch.where(d < -(ys * ud) + ud * ud * 0.25, ys - ud, ys))
    return torch.where(ok, y2, y)


def _round_int(z: torch.Tensor, ties: int) -> torch.Tensor:
    """Nearest integer to z, ties 1 away from zero, 2 to even, 3 toward +inf (refimpl ``_round_int``)."""
    a = z.abs()
    f = torch.floor(a)
    d = a - f
    if ties == 1:
        tie_up = d == 0.5
    elif ties == 2:
        tie_up = (d == 0.5) & ((f - 2.0 * torch.floor(0.5 * f)) == 1.0)
    else:
        tie_up = (d == 0.5) & (z > 0.0)
    f = f + ((d > 0.5) | tie_up).to(f.dtype)
    return torch.copysign(f, z)


def _cat(mu, v, delta, u):
    """One draw of Cat(μ, V) on {+Δ, −Δ, 0} (Q4) per element from uniforms u (refimpl ``_cat``)."""
    # P(±Δ) = ((V − Δ²/4) + (Δ/2 ± μ)²)/(2Δ²): algebraically (Q4), evaluated as refimpl does
    # (non-negative in floating point at both uses inside Q^vc)
    h = 0.5 * delta
    d2 = 2.0 * delta * delta
    w = v - h * h
    p_plus = (w + (h + mu) * (h + mu)) / d2
    p_minus = (w + (h - mu) * (h - mu)) / d2
    zero = torch.zeros_like(p_plus)
    return torch.where(u < p_plus, delta + zero, torch.where(u < p_plus + p_minus, -delta + zero, zero))



def _vc_flags(code):
    """(published, spec_clip) from the bit field code[VC_FLAGS] (refimpl ``kernels.common._vc_flags``)."""
    f = int(code[VC_FLAGS])
    return (f & VC_PUBLISHED_BIT) != 0, (f & VC_SPEC_CLIP_BIT) != 0


def _vc_branches(mu: torch.Tensor, var: float, se: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, ties: int,
                published: bool, spec_clip: bool, ktop: float, xi: torch.Tensor, ur: torch.Tensor,
                uc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                           torch.Tensor]:
    """Both Q^vc branches on the grid Δ = 2^se (refimpl ``_vc_elem``), float64 tensors.

    Returns (th1, th1c, th2, th2c, b1, nan): the branch-1 (Q5) result unclipped and clipped
    to [lo, hi], the branch-2 (Q6) result unclipped (clipped with the published fallback)
    and clipped, the branch-1 mask and the NaN mask.  ``ktop``: μ's block/binade top
    2^(e+1) in units of Δ, where the branch-2 top-up is drawn on {-Δ, 0, +2Δ}.
    """
    delta = _pow2(se)
    v0 = 0.25 * delta * delta
    big = _pow2(se + 60.0)
    mc = torch.minimum(torch.maximum(mu, lo - big), hi + big)
    mc = torch.where(torch.isfinite(mu), mc, torch.zeros_like(mc))
    nan = torch.isnan(mu)
    # branch 1 (Q5), unclipped
    x = mc + exact_sqrt(torch.clamp(var - v0, min=0.0)) * xi
    qd = _ldexp(_round_int(_ldexp(x, -se), ties), se)
    r = x - qd
    c = _cat(r.abs(), v0, delta, uc)
    th1 = torch.where(r > 0.0, qd + c, torch.where(r < 0.0, qd - c, qd)) + 0.0  # θ = Q^d(x) + sign(r)·c
    th1 = torch.where(torch.isinf(mu), torch.where(mu < 0, lo, hi), th1)
    b1 = (var / delta) / delta > 0.25  # refimpl's branch test, in units of Δ
    # branch 2 (Q6), unclipped (clipped with the published fallback)
    z = _ldexp(mc, -se)
    th2 = _ldexp(torch.floor(z + ur), se)
    if not published:
        a = z.abs()
        p = a - torch.floor(a)
        vs = p * (1.0 - p) * delta * delta
        th2s = torch.where(var > vs, th2 + _cat(torch.zeros_like(mu), var - vs, delta, uc), th2)
        if spec_clip:
            th2 = th2s
        else:
            # Q^s(μ) on the boundary 2^(e+1) (k = ±ktop): top-up on {-Δ, 0, +2Δ} with
            # P(+2Δ) = w/6, P(-Δ) = w/3 (refimpl ``_vc_elem``), w = (V - V_s)/Δ²
            k2 = torch.floor(z + ur)
            w = (var / delta) / delta - p * (1.0 - p)
            aw = w / 6.0
            one = torch.ones_like(k2)
            step = torch.where(uc < aw, torch.copysign(2.0 * one, k2),
                               torch.where(uc < aw + w / 3.0, -torch.copysign(one, k2), torch.zeros_like(k2)))
            top = (k2.abs() == ktop) & (var > vs)
            th2 = torch.where(top, _ldexp(k2 + step, se), th2s)
    th2 = th2 + 0.0
    th2 = torch.where(torch.isinf(mu), torch.where(mu < 0, lo, hi), th2)
    th2c = torch.minimum(torch.maximum(th2, lo), hi)
    if published:
        th2 = th2c
    th1c = torch.minimum(torch.maximum(th1, lo), hi)
    return th1, th1c, th2, th2c, b1, nan
