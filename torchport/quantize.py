"""Quantizers on torch tensors: the same formats and functions as :mod:`refimpl.quantize`.

Every function here mirrors the function of the same name in ``refimpl.quantize``
(spec ALGORITHMS.md §2): nearest rounding Q^d (Q1), stochastic rounding Q^s
(Q2'), the categorical offset Cat(μ, V) (Q4) and the variance-corrected
quantizer Q^vc (Q5)/(Q6).  The formats are **the refimpl dataclasses**
(``refimpl.formats.FixedPoint``, ``BlockFloatingPoint``, ``FloatingPoint``,
``IEEEFloat``); nothing is redefined here, and the kernels dispatch on the
same ``fmt.code`` array as the Numba kernels (docs/architecture.md).

Randomness.  Each random function takes either a ``torch.Generator`` (the
positional argument where refimpl takes ``rng``) or ``noise=`` -- pre-drawn
uniforms (Q^s, Cat) or the tuple ``(xi, u_round, u_cat)`` (Q^vc), exactly the
noise-in forms of refimpl: fed identical noise, outputs equal refimpl's bit for
bit (tests/torchport/test_quantize.py).  ``draw_*_noise(generator, shape)``
return the noise the generator forms consume (float64 ``torch.rand``/``randn``;
refimpl's Generator forms draw theirs differently, e.g. keyed splitmix64
uniforms, so only the noise-in forms are comparable).  No global-RNG fallback:
neither generator nor noise is a ``ValueError``.

Dtypes and devices.  Inputs may be float64, float32, bfloat16 or float16 on any
device.  As in refimpl, all arithmetic is float64 (exact for every narrower
input) and the result is cast to the input dtype; bfloat16/float16 outputs round
to nearest even in that dtype when the format's grid is finer than the dtype
(unavoidable when storing in a coarser dtype).  The code is vectorised torch
elementwise/reduction ops (no Python loop over elements) and runs under
``torch.compile``.

Departure from qtorch: probabilities of rounding up are resolved to the full
uniform (float64/float32), not to 2^{-(23-W)} as qtorch's BFP/float kernels do
(§2.6, §7.1.5); CPU block/float stochastic rounding is seedable here.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from refimpl.formats import (  # noqa: F401  (re-exported: the one set of format classes)
    with_options,
    TIES_NAMES,
    BlockFloatingPoint,
    FixedPoint,
    FloatingPoint,
    IEEEFloat,
    format_code,
    parse_format,
)

__all__ = [
    "FixedPoint",
    "BlockFloatingPoint",
    "FloatingPoint",
    "IEEEFloat",
    "format_code",
    "parse_format",
    "quantize",
    "stochastic_round",
    "categorical_probabilities",
    "categorical_offset",
    "vc_quantize",
    "vc_gap",
    "draw_quantize_noise",
    "draw_vc_noise",
    "draw_categorical_noise",
    "ROUNDINGS",
    "exact_sqrt",
]

_FLOAT_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


# ----------------------------------------------------------------------------- helpers
def _check_tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float64/float32/bfloat16/float16, got {x.dtype}")
    return x


def _code_tuple(fmt, ties=None, vc_published=False) -> tuple:
    """The format code (refimpl.formats.format_code, with options) as Python floats."""
    code = with_options(format_code(fmt), ties=ties, vc_published=vc_published)
    return tuple(float(c) for c in code)


def _pow2(e: torch.Tensor) -> torch.Tensor:
    """2**e for an integer-valued float64 tensor, exactly (|e| <= 1022)."""
    return torch.pow(2.0, e)


def _ldexp(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """x·2^e, exact when 2^e is a normal float64 (all formats of refimpl.formats)."""
    return x * _pow2(e)


def _frexp_exp(a: torch.Tensor) -> torch.Tensor:
    """frexp(a)[1] − 1 = ⌊log2 a⌋ for finite a > 0 (float64 result); exact."""
    return torch.frexp(a)[1].to(torch.float64) - 1.0


def exact_sqrt(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded elementwise √x (IEEE), for any float dtype.

    torch's vectorised CPU ``sqrt`` is not correctly rounded (about 1% of float64
    results and many float32 results are one ulp off, SLEEF-style u05 kernels),
    while NumPy/Numba's is; bit-for-bit parity with refimpl needs the IEEE
    result.  float64: the torch result is corrected by at most one ulp using the
    exact residual x − y² (Dekker's error-free product, no FMA needed).  Other
    dtypes: computed in float64 and rounded once (exact: 53 ≥ 2·24 + 2).
    """
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


def _blocks(x: torch.Tensor, dim):
    """Rows, one per BFP block (Q3), and the inverse map; ``dim=None``: one block."""
    if dim is None or x.dim() == 0:
        shape = x.shape
        return x.reshape(1, -1), lambda r: r.reshape(shape)
    if dim >= x.dim():
        raise ValueError(f"BlockFloatingPoint dim={dim} is out of range for a tensor of {x.dim()} dims")
    moved = x.movedim(dim, 0)
    mshape = moved.shape
    return moved.reshape(mshape[0], -1), lambda r: r.reshape(mshape).movedim(0, dim)


def _bfp_block_exp(rows: torch.Tensor):
    """(found, e_B) per row: e_B = ⌊log2 max|x_j|⌋ over finite entries (refimpl ``_bfp_block_exp``)."""
    a = rows.abs()
    a = torch.where(torch.isfinite(a), a, torch.zeros_like(a))
    m = a.amax(dim=1, keepdim=True)
    found = m > 0.0
    eb = _frexp_exp(torch.where(found, m, torch.ones_like(m)))
    return found, eb


# ------------------------------------------------------------------- per-kind kernels
def _fixed_nearest(x, delta, lo, hi, ties):
    inv = 1.0 / delta
    xc = torch.clamp(x, lo - delta, hi + delta)
    q = _round_int(xc * inv, ties) * delta + 0.0
    return torch.where(torch.isnan(x), x, torch.clamp(q, lo, hi))


def _fixed_stochastic(x, u, delta, lo, hi):
    inv = 1.0 / delta
    xc = torch.clamp(x, lo - delta, hi + delta)
    q = torch.floor(xc * inv + u) * delta + 0.0
    return torch.where(torch.isnan(x), x, torch.clamp(q, lo, hi))


def _float_ulp_exp(ax, emin, man):
    """Exponent of the ULP at |x| (ax > 0 finite): max(⌊log2 ax⌋, e_min) − man."""
    return torch.clamp(_frexp_exp(ax), min=float(emin)) - float(man)


def _vc_float_se(mu, emin, man, maxv):
    """ULP exponent Q^vc uses for μ: the binade of min(|μ|, max), at least e_min (0, NaN: e_min − man)."""
    am = mu.abs()
    small = (am == 0.0) | torch.isnan(am)
    safe = torch.where(small, torch.ones_like(am), torch.clamp(am, max=maxv))
    return torch.where(small, torch.full_like(am, float(emin - man)), _float_ulp_exp(safe, emin, man))


def _float_params(code):
    exp, man = int(code[1]), int(code[2])
    emin = 2 - (1 << (exp - 1))
    return emin, man, code[3], code[4] != 0.0, int(code[0]) == 3 or code[6] != 0.0


def _float_round(x, u, code, ties):
    """qtorch float (kind 3) / IEEE (kind 4) rounding, refimpl ``_float_nearest``/``_float_stochastic``."""
    emin, man, maxv, has_inf, saturate = _float_params(code)
    ax = x.abs()
    ok = torch.isfinite(x) & (x != 0.0)
    safe = torch.where(ok, ax, torch.ones_like(ax))
    ue = _float_ulp_exp(safe, emin, man)
    z = _ldexp(torch.where(ok, x, torch.ones_like(x)), -ue)
    k = _round_int(z, ties) if u is None else torch.floor(z + u)
    q = torch.copysign(_ldexp(k, ue), x)  # a zero result keeps x's sign (refimpl)
    if saturate:
        over = torch.copysign(torch.full_like(x, maxv), x)
    elif has_inf:
        over = torch.copysign(torch.full_like(x, math.inf), x)
    else:
        over = torch.full_like(x, math.nan)
    q = torch.where(q.abs() > maxv, over, q)
    q = torch.where(torch.isinf(x), over, q)
    return torch.where(torch.isnan(x) | (x == 0.0), x, q)


def _bfp_round(x, u, fmt, code, ties):
    """BFP rounding with one block per row of ``_blocks`` (Q3), refimpl ``_bfp_round_block``."""
    rows, back = _blocks(x, fmt.dim)
    urows = None if u is None else _blocks(u, fmt.dim)[0]
    wl = code[1]
    found, eb = _bfp_block_exp(rows)
    se = eb + (2.0 - wl)
    top = _pow2(eb + 1.0)
    sat = top - _pow2(se)
    finite = torch.isfinite(rows)
    z = _ldexp(torch.where(finite, rows, torch.zeros_like(rows)), -se)
    k = _round_int(z, ties) if urows is None else torch.floor(z + urows)
    q = _ldexp(k, se) + 0.0
    q = torch.where(q.abs() >= top, torch.copysign(sat.expand_as(q), q), q)
    q = torch.where(torch.isinf(rows), torch.copysign(sat.expand_as(q), rows), q)
    q = torch.where(found, q, torch.zeros_like(q))
    q = torch.where(torch.isnan(rows), rows, q)
    return back(q)


def _round(x: torch.Tensor, fmt, code: tuple, u: Optional[torch.Tensor]) -> torch.Tensor:
    """Dispatch on the format kind; ``u`` None means nearest rounding (float64 in and out)."""
    kind = int(code[0])
    ties = int(code[5])
    if kind == 0:
        return x.clone()
    if kind == 1:
        delta, lo, hi = code[1], code[2], code[3]
        return _fixed_nearest(x, delta, lo, hi, ties) if u is None else _fixed_stochastic(x, u, delta, lo, hi)
    if kind == 2:
        return _bfp_round(x, u, fmt, code, ties)
    if kind in (3, 4):
        return _float_round(x, u, code, ties)
    raise ValueError(f"unknown format kind {kind} in code {code}")


def _prepare(name, x):
    """Validate and upcast to float64 (refimpl computes in float64 for every input dtype)."""
    x = _check_tensor(name, x)
    return x.to(torch.float64), x.dtype


def _noise(name, given, like, generator, kind="uniform"):
    """Return pre-drawn noise (validated, as float64) or draw it from ``generator``; never global state."""
    if given is not None:
        if not isinstance(given, torch.Tensor):
            given = torch.as_tensor(given)
        if given.shape != like.shape:
            raise ValueError(f"{name} must have shape {tuple(like.shape)}, got {tuple(given.shape)}")
        return given.to(device=like.device, dtype=torch.float64)
    if generator is None:
        raise ValueError(f"pass either generator= (a torch.Generator) or pre-drawn {name}=; got neither")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    draw = torch.rand if kind == "uniform" else torch.randn
    return draw(like.shape, generator=generator, dtype=torch.float64, device=generator.device).to(like.device)


def _vc_fixed(mu, var, code, xi, ur, uc, ties):
    """Q^vc for fixed point: one global Δ, so the branch is a Python-level choice (same floats as ``_vc``)."""
    delta, lo, hi = code[1], code[2], code[3]
    se = math.frexp(delta)[1] - 1
    inv = 2.0 ** (-se)
    v0 = 0.25 * delta * delta
    big = 2.0 ** (se + 60)
    mc = torch.clamp(mu, lo - big, hi + big)
    mc = torch.where(torch.isfinite(mu), mc, torch.zeros_like(mc))
    if var > v0:  # branch 1 (Q5)
        x = mc + xi * math.sqrt(var - v0)
        qd = _round_int(x * inv, ties) * delta
        r = x - qd
        c = _cat(r.abs(), v0, delta, uc)
        th = torch.where(r > 0.0, qd + c, torch.where(r < 0.0, qd - c, qd))
    else:  # branch 2 (Q6)
        z = mc * inv
        th = torch.floor(z + ur) * delta
        a = z.abs()
        p = a - torch.floor(a)
        vs = p * (1.0 - p) * delta * delta
        th = torch.where(var > vs, th + _cat(torch.zeros_like(mu), var - vs, delta, uc), th)
    th = torch.clamp(th + 0.0, lo, hi)
    th = torch.where(torch.isinf(mu), torch.where(mu < 0, lo, hi), th)
    return torch.where(torch.isnan(mu), mu, th)


def _vc_flags(code):
    """(published, spec_clip) from the bit field code[7] (refimpl ``_qkernels._vc_flags``)."""
    f = int(code[7])
    return (f & 1) != 0, (f & 2) != 0


def _vc(mu, var, code, fmt, xi, ur, uc):
    """Q^vc elementwise (refimpl ``vc_into``/``_vc_elem``), float64 in and out.

    Both branches for BFP/floats use the escape re-rounding of refimpl ``vc_into`` (results
    leaving μ's block/binade are stochastically rounded onto the grid of their own
    exponent e' -- with ``u_round`` in branch 1, with the fair coin from the sign of ξ in
    branch 2 -- then saturated); an all-zero BFP block with V > 0 takes its
    Δ_B -> 0 limit.  Same floating-point operations as refimpl, so bit-identical.
    """
    kind = int(code[0])
    ties = int(code[5])
    published, spec_clip = _vc_flags(code)
    published = published and kind != 1
    if kind == 1:
        return _vc_fixed(mu, var, code, xi, ur, uc, ties)
    if kind == 2:
        rows, back = _blocks(mu, fmt.dim)
        found_r, eb = _bfp_block_exp(rows)
        wl = code[1]
        se_r = eb + (2.0 - wl)
        hi_r = _pow2(eb + 1.0) - _pow2(se_r)
        se = back(se_r.expand_as(rows).contiguous())
        hi = back(hi_r.expand_as(rows).contiguous())
        lo = -hi
        found = back(found_r.expand_as(rows).contiguous())
    elif kind in (3, 4):
        emin, man, maxv, has_inf, saturate = _float_params(code)
        se = _vc_float_se(mu, emin, man, maxv)
        hi = torch.clamp(_ldexp(torch.full_like(mu, 2.0 ** (man + 1) - 1.0), se), max=maxv)
        lo = -hi
        found = None
    else:
        raise ValueError(f"vc_quantize needs a low-precision format, got code {code}")
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
            ktop = 2.0 ** (wl - 1) if kind == 2 else 2.0 ** (man + 1)
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
    if spec_clip:
        th = torch.where(b1, th1c, th2c)
    else:
        # escape re-rounding of refimpl ``vc_into``: branch 1 rounds with u_round, branch 2
        # with the fair coin 3/4·[ξ > 0] + 1/4·[ξ <= 0] (refimpl ``_vc_escape_uniform``)
        tu = torch.where(b1, th1, th2)
        ue_ = torch.where(b1, ur, torch.where(xi > 0.0, 0.75, 0.25).to(ur.dtype))
        if kind == 2:
            kmax = 2.0 ** (wl - 1) - 1.0
            a1 = torch.where(nan, torch.zeros_like(tu), tu.abs())
            m_r = _blocks(a1, fmt.dim)[0].amax(dim=1, keepdim=True)
            esc_r = m_r > hi_r
            e2_r = torch.where(torch.isinf(m_r), torch.full_like(m_r, 1023.0),
                               _frexp_exp(torch.where(esc_r & torch.isfinite(m_r), m_r, torch.ones_like(m_r))))
            se2 = back((e2_r + (2.0 - wl)).expand_as(rows).contiguous())
            esc = back(esc_r.expand_as(rows).contiguous())
            k = torch.clamp(torch.floor(_ldexp(tu, -se2) + ue_), -kmax, kmax)
            sat2 = _ldexp(torch.full_like(mu, kmax), se2)
            th_esc = torch.where(torch.isinf(mu), torch.copysign(sat2, mu), _ldexp(k, se2) + 0.0)
        else:
            esc = tu.abs() > hi
            at = torch.where(esc & torch.isfinite(tu), tu.abs(), torch.ones_like(tu))
            ue = torch.clamp(_frexp_exp(at), min=float(emin)) - float(man)
            t = _ldexp(torch.floor(_ldexp(torch.where(esc, tu, torch.zeros_like(tu)), -ue) + ue_), ue)
            th_esc = torch.where(torch.isinf(tu) | (t.abs() > maxv), torch.copysign(torch.full_like(t, maxv), tu), t)
        th = torch.where(esc, th_esc, torch.where(b1, th1c, th2c))
    th = torch.where(nan, mu, th)
    if found is not None:
        zero = torch.where(nan, mu, torch.zeros_like(mu))
        if var > 0.0 and not spec_clip:
            zero = _vc_bfp_zero_blocks(mu, var, fmt, code, xi, ur, nan)
        th = torch.where(found, th, zero)
    return th


def _vc_bfp_zero_blocks(mu, var, fmt, code, xi, ur, nan):
    """refimpl ``_vc_bfp_zero_block`` for every block (used where the block is all zero):
    θ = √V·ξ stochastically rounded onto the grid of its own block exponent, saturated."""
    wl = code[1]
    kmax = 2.0 ** (wl - 1) - 1.0
    xs = math.sqrt(var) * xi  # refimpl: sd = math.sqrt(var) (correctly rounded scalar), then sd·ξ
    a = torch.where(nan, torch.zeros_like(xs), xs.abs())
    rows, back = _blocks(a, fmt.dim)
    m_r = rows.amax(dim=1, keepdim=True)
    e2_r = torch.where(torch.isinf(m_r), torch.full_like(m_r, 1023.0),
                       _frexp_exp(torch.where((m_r > 0) & torch.isfinite(m_r), m_r, torch.ones_like(m_r))))
    se2 = back((e2_r + (2.0 - wl)).expand_as(rows).contiguous())
    pos = back((m_r > 0).expand_as(rows).contiguous())
    k = torch.clamp(torch.floor(_ldexp(xs, -se2) + ur), -kmax, kmax)
    th = _ldexp(k, se2) + 0.0
    th = torch.where(torch.isinf(mu), torch.copysign(_ldexp(torch.full_like(mu, kmax), se2), mu), th)
    th = torch.where(pos, th, torch.zeros_like(th))
    return torch.where(nan, mu, th)


# ------------------------------------------------------------------------ public API
ROUNDINGS = ("nearest", "stochastic")


def _check_generator(generator):
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {generator!r}")
    return generator


def _check_uniform(noise, like, name):
    u = _noise(name, noise, like, None)
    if u.numel() and not bool(((u >= 0.0) & (u < 1.0)).all()):
        raise ValueError(f"{name} must hold uniforms in [0, 1), got values in [{float(u.min())}, {float(u.max())}]")
    return u


def _resolve(fmt, ties, vc_published=False):
    if ties is not None and ties not in TIES_NAMES:
        raise ValueError(f"ties must be one of {sorted(TIES_NAMES)} or None, got {ties!r}")
    if fmt is not None and not isinstance(fmt, (FixedPoint, BlockFloatingPoint, FloatingPoint, IEEEFloat)):
        raise ValueError(f"fmt must be None or a refimpl.formats format, got {fmt!r}")
    if isinstance(fmt, BlockFloatingPoint) and fmt.dim is not None:
        pass
    return _code_tuple(fmt, ties, vc_published)


def _check_bfp_dim(x, fmt):
    if isinstance(fmt, BlockFloatingPoint) and fmt.dim is not None and (x.dim() == 0 or fmt.dim >= x.dim()):
        raise ValueError(f"fmt.dim={fmt.dim} is out of range for a tensor of shape {tuple(x.shape)} "
                         "(use dim=None for one block)")


def draw_quantize_noise(generator: torch.Generator, shape, *, device=None) -> torch.Tensor:
    """The uniforms ``quantize(..., "stochastic", generator)`` consumes: ``torch.rand(shape, float64)``.

    Differs from refimpl's keyed (splitmix64) uniforms in *how* they are drawn,
    not in what they mean: fed the same array via ``noise=``, both packages agree
    bit for bit.
    """
    g = _check_generator(generator)
    out = torch.rand(tuple(shape), generator=g, dtype=torch.float64, device=g.device)
    return out if device is None else out.to(device)


def draw_vc_noise(generator: torch.Generator, shape, *, device=None):
    """(xi, u_round, u_cat) consumed by ``vc_quantize(..., generator)``: N(0,1), U[0,1), U[0,1), in this order."""
    g = _check_generator(generator)
    shape = tuple(shape)
    xi = torch.randn(shape, generator=g, dtype=torch.float64, device=g.device)
    ur = torch.rand(shape, generator=g, dtype=torch.float64, device=g.device)
    uc = torch.rand(shape, generator=g, dtype=torch.float64, device=g.device)
    if device is not None:
        xi, ur, uc = xi.to(device), ur.to(device), uc.to(device)
    return xi, ur, uc


def draw_categorical_noise(generator: torch.Generator, shape, *, device=None) -> torch.Tensor:
    """The uniforms ``categorical_offset(..., generator)`` consumes: ``torch.rand(shape, float64)``."""
    return draw_quantize_noise(generator, shape, device=device)


def quantize(x: torch.Tensor, fmt, rounding: str = "nearest", generator: Optional[torch.Generator] = None, *,
             ties: Optional[str] = None, noise=None) -> torch.Tensor:
    """Quantize ``x`` onto ``fmt``'s grid by nearest (Q1) or stochastic (Q2') rounding (refimpl.quantize.quantize).

    Nearest, (Q1) = the paper's Q^d (LP-SGLD, Zhang et al. 2022, §3)::

        Q^d(x) = clip(sign(x) Δ floor(|x|/Δ + 1/2), L, U)        (round, then clip)

    ties away from zero for fixed point and qtorch float, toward +inf for BFP (as
    qtorch), to even for IEEE formats; ``ties="away"|"even"|"up"`` overrides.
    BFP: Δ_B = 2^(e_B+2−W) per block (Q3), saturating at ±(2^(e_B+1) − Δ_B);
    floats: Δ is the ULP of x's binade.

    Stochastic, (Q2') (LP-SGLD Q^s; LP-SGHMC eq. (2))::

        Q^s(x) = clip(Δ floor(x/Δ + u), L, U),   u ~ U[0, 1)

    Parameters: ``x`` a tensor (float64/float32/bfloat16/float16, any device and
    shape); ``fmt`` a refimpl format or None (identity); ``generator`` a
    ``torch.Generator`` (stochastic: one float64 uniform per element, C order,
    :func:`draw_quantize_noise`); ``noise`` pre-drawn uniforms of x's shape
    instead (noise-in form, identical semantics to refimpl's ``noise=``).
    Returns a tensor of x's shape, dtype and device.  Arithmetic is float64 for
    every input dtype (as refimpl), so fed the same noise the result equals
    refimpl's bit for bit; bfloat16/float16 outputs are the float64 result cast
    (round to nearest even in that dtype when the grid is finer than the dtype).
    Departure from qtorch: exact rounding (qtorch CPU fixed point ties to even and
    its block/float paths resolve P(up) to 2^-(23-W)); seedable on every device.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    xw, dt = _prepare("x", x)
    code = _resolve(fmt, ties)
    _check_bfp_dim(xw, fmt)
    if rounding == "nearest":
        if noise is not None:
            raise ValueError("noise is only used by rounding='stochastic', got noise for 'nearest'")
        return _round(xw, fmt, code, None).to(dt)
    if ties is not None:
        raise ValueError(f"ties applies to nearest rounding only, got ties={ties!r} with 'stochastic'")
    if (generator is None) == (noise is None):
        raise ValueError("stochastic rounding needs exactly one of generator= or noise=")
    u = _check_uniform(noise, xw, "noise") if noise is not None else \
        draw_quantize_noise(generator, xw.shape, device=xw.device)
    return _round(xw, fmt, code, u).to(dt)


def stochastic_round(x: torch.Tensor, fmt, generator: Optional[torch.Generator] = None, *,
                     noise=None) -> torch.Tensor:
    """Q^s (Q2'): ``quantize(x, fmt, "stochastic", generator, noise=noise)``; see :func:`quantize`."""
    return quantize(x, fmt, "stochastic", generator, noise=noise)


def _sr_fast(x: torch.Tensor, fmt, u: torch.Tensor) -> torch.Tensor:
    """Unvalidated Q^s with given uniforms (optimizer hot path); same arithmetic as :func:`quantize`."""
    if fmt is None:
        return x.clone()
    return _round(x.to(torch.float64), fmt, _code_tuple(fmt), u.to(torch.float64)).to(x.dtype)


def categorical_probabilities(mu, var, delta):
    """(P(+Δ), P(−Δ), P(0)) of Cat(μ, V) (Q4) (LP-SGHMC eq. (20)); tensors broadcast; float64."""
    mu, var, delta = (torch.as_tensor(t, dtype=torch.float64) for t in (mu, var, delta))
    h = 0.5 * delta
    d2 = 2.0 * delta * delta
    w = var - h * h
    p_plus = (w + (h + mu) * (h + mu)) / d2
    p_minus = (w + (h - mu) * (h - mu)) / d2
    return p_plus, p_minus, 1.0 - p_plus - p_minus


def categorical_offset(mu, var, delta, generator: Optional[torch.Generator] = None, *, noise=None) -> torch.Tensor:
    """Draw c ~ Cat(μ, V) on {+Δ, −Δ, 0} (Q4), elementwise; mean μ, variance V (refimpl.quantize.categorical_offset).

    Sampling as the official code (ruqizhang/low-precision-sgld bnn/optim.py): +Δ
    if u < P(+Δ), −Δ if u < P(+Δ) + P(−Δ), else 0.  ``mu``, ``var``, ``delta``
    broadcast; (μ, V) must be admissible (0 ≤ μ ≤ Δ/2, μ(Δ−μ) ≤ V ≤ Δ²/4, up to
    1e-12 relative), else ValueError.  Randomness: one float64 uniform per element
    of the broadcast shape (``generator``) or ``noise``.  Returns float64.
    """
    mu_t = torch.as_tensor(mu, dtype=torch.float64)
    dev = mu_t.device
    var_t = torch.as_tensor(var, dtype=torch.float64, device=dev)
    d_t = torch.as_tensor(delta, dtype=torch.float64, device=dev)
    if d_t.numel() and not bool((torch.isfinite(d_t) & (d_t > 0)).all()):
        raise ValueError(f"delta must be finite and > 0, got {delta!r}")
    mu_b, var_b, d_b = torch.broadcast_tensors(mu_t, var_t, d_t)
    tol = 1e-12 * d_b * d_b
    bad = ~((mu_b >= 0) & (mu_b <= 0.5 * d_b) & (var_b <= 0.25 * d_b * d_b + tol)
            & (var_b >= mu_b * (d_b - mu_b) - tol))
    if bool(bad.any()):
        i = int(bad.reshape(-1).nonzero()[0, 0])
        raise ValueError(f"(mu, var) = ({float(mu_b.reshape(-1)[i])!r}, {float(var_b.reshape(-1)[i])!r}) is not "
                         f"admissible for delta={float(d_b.reshape(-1)[i])!r}: need 0 <= mu <= delta/2 and "
                         "mu*(delta-mu) <= var <= delta**2/4")
    if (generator is None) == (noise is None):
        raise ValueError("categorical_offset needs exactly one of generator= or noise=")
    u = _check_uniform(noise, mu_b, "noise") if noise is not None else \
        draw_categorical_noise(generator, mu_b.shape, device=dev)
    return _cat(mu_b, var_b, d_b, u)


def vc_gap(mu: torch.Tensor, fmt) -> torch.Tensor:
    """Per-element gap Δ that :func:`vc_quantize` uses (float64, mu's shape; refimpl.quantize.vc_gap).

    Fixed point: Δ.  BFP: Δ_B of mu's block (0 for an all-zero block).  Float:
    2^(max(⌊log2|μ_i|⌋, e_min) − M).
    """
    mw, _ = _prepare("mu", mu)
    code = _code_tuple(fmt)
    kind = int(code[0])
    if kind == 0 or mw.numel() == 0:
        return torch.zeros_like(mw)
    _check_bfp_dim(mw, fmt)
    if kind == 1:
        return torch.full_like(mw, code[1])
    if kind == 2:
        rows, back = _blocks(mw, fmt.dim)
        found, eb = _bfp_block_exp(rows)
        d = torch.where(found, _pow2(eb + (2.0 - code[1])), torch.zeros_like(eb))
        return back(d.expand_as(rows).contiguous())
    emin, man, maxv, _, _ = _float_params(code)
    return _pow2(_vc_float_se(mw, emin, man, maxv))


def vc_quantize(mu: torch.Tensor, var, fmt, generator: Optional[torch.Generator] = None, *, noise=None,
                ties: Optional[str] = None, vc_bfp_published: bool = False) -> torch.Tensor:
    """Variance-corrected quantizer Q^vc(μ, V, Δ) ((Q5)/(Q6); LP-SGLD Alg. "Q^vc", LP-SGHMC Alg. 2).

    Elementwise with V₀ = Δ²/4 and the branch chosen per element by its own Δ
    (:func:`vc_gap`; per block for BFP), exactly as refimpl.quantize.vc_quantize:

    * (Q5) V > V₀: x = μ + √(V − V₀)·ξ; r = x − Q^d(x); θ = Q^d(x) + sign(r)·Cat(|r|, V₀).
    * (Q6) V ≤ V₀: q = Q^s(μ); V_s = p(1−p)Δ², p = frac(|μ|/Δ); θ = q + Cat(0, V − V_s) if V > V_s, else q.
    * Range: fixed point clipped to [L, U]; BFP/float branch 2 clipped to μ's block
      (binade) range; BFP/float branch 1 results leaving μ's block (binade) are
      re-rounded stochastically with ``u_round`` onto the grid of their own exponent and
      saturated (the escape rule of refimpl.quantize.vc_quantize, a departure from the
      spec's clip, which made samplers collapse); an all-zero BFP block with V > 0 gives
      √V·ξ rounded onto its own block grid.

    Parameters: ``mu`` a tensor (any float dtype/device/shape; output has its
    dtype); ``var`` a float scalar ≥ 0; ``fmt`` a format or None (identity);
    ``generator`` (draws :func:`draw_vc_noise`: ξ, u_round, u_cat, one of each per
    element whichever branch is taken) or ``noise=(xi, u_round, u_cat)``;
    ``ties`` of Q^d inside (Q5); ``vc_bfp_published`` reproduces the published
    BFP/float ``fp_Q_vc`` fallback to plain Q^s (§7.2.1).
    Departure from the published code: per-element branch with μ's Δ kept for the
    call, so there is no NaN path (§2.5 "Project choice").
    """
    mw, dt = _prepare("mu", mu)
    if isinstance(var, bool) or not isinstance(var, (int, float)) and not (
            isinstance(var, torch.Tensor) and var.dim() == 0):
        raise ValueError(f"var must be a real scalar >= 0, got {var!r}")
    v = float(var)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"var must be a finite real scalar >= 0, got {var!r}")
    code = _resolve(fmt, ties, vc_published=bool(vc_bfp_published))
    _check_bfp_dim(mw, fmt)
    if (generator is None) == (noise is None):
        raise ValueError("vc_quantize needs exactly one of generator= or noise=")
    if noise is None:
        xi, ur, uc = draw_vc_noise(generator, mw.shape, device=mw.device)
    else:
        if not (isinstance(noise, (tuple, list)) and len(noise) == 3):
            raise ValueError(f"noise must be a tuple (xi, u_round, u_cat), got {type(noise).__name__}")
        xi = _noise("noise[0] (xi)", noise[0], mw, None)
        ur = _check_uniform(noise[1], mw, "noise[1] (u_round)")
        uc = _check_uniform(noise[2], mw, "noise[2] (u_cat)")
    if mw.numel() == 0 or int(code[0]) == 0:
        return mw.clone().to(dt)
    return _vc(mw, v, code, fmt, xi, ur, uc).to(dt)


def _vc_fast(mu: torch.Tensor, var: float, fmt, xi, ur, uc, *, ties=None, vc_published=False) -> torch.Tensor:
    """Unvalidated Q^vc with given noise (optimizer hot path); same arithmetic as :func:`vc_quantize`."""
    f64 = torch.float64
    code = _code_tuple(fmt, ties, vc_published)
    return _vc(mu.to(f64), float(var), code, fmt, xi.to(f64), ur.to(f64), uc.to(f64)).to(mu.dtype)
