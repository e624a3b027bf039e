"""Microscaling on torch tensors: OCP MX v1.0 and NVFP4 (kind 5), mirroring refimpl/kernels/mx.py.

Same per-block scale, element rounding and special values as the Numba kernels
(docs/mx.md), written as vectorised torch ops on a (rows, blocks, block size) view:
the rows run along the format's ``axis``, the last block of a row is zero-padded
(zeros change neither the block maximum nor the scale).  Every operation is the
float64 operation refimpl performs, so fed the same noise both agree bit for bit.

Functions (the same four as every format module): ``nearest(x, code, fmt)``,
``stochastic(x, u, code, fmt)``, ``vc(mu, var, code, fmt, xi, u_round, u_cat)``,
``gap(mu, code, fmt)``; all take and return float64 tensors of x's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from refimpl.formats import NVFP4, MXFormat
from refimpl.slots import (
    FLOAT_EXP,
    FLOAT_MAN,
    FLOAT_MAX,
    KIND_MX,
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
from torchport.kernels.common import _check_call, _frexp_exp, _ldexp, _pow2, _round_int, exact_sqrt
from torchport.kernels.fixed import _fixed_nearest, _fixed_stochastic
from torchport.kernels.float import _vc_float_se

__all__ = ["nearest", "stochastic", "vc", "gap", "block_view", "block_scale", "holding_scale"]

_KINDS, _FMTS = (KIND_MX,), (MXFormat, NVFP4)

_E4M3_EMIN, _E4M3_MAN, _E4M3_MAX = -6, 3, 448.0


def _round_binade(x: torch.Tensor, u: torch.Tensor | None, emin: int, man: int, maxv: float,
                 ties: int) -> torch.Tensor:
    """Saturating binade rounding of finite-or-inf x (refimpl ``_float_nearest``/``_float_stochastic``
    with saturate=True); ``u`` None: nearest with tie rule ``ties``; zeros and NaN pass."""
    ax = x.abs()
    ok = torch.isfinite(x) & (x != 0.0)
    safe = torch.where(ok, ax, torch.ones_like(ax))
    ue = torch.clamp(_frexp_exp(safe), min=float(emin)) - float(man)
    z = _ldexp(torch.where(ok, x, torch.ones_like(x)), -ue)
    k = _round_int(z, ties) if u is None else torch.floor(z + u)
    q = torch.copysign(_ldexp(k, ue), x)
    over = torch.copysign(torch.full_like(x, maxv), x)
    q = torch.where((q.abs() > maxv) | torch.isinf(x), over, q)
    return torch.where(torch.isnan(x) | (x == 0.0), x, q)


def _block_view(x: torch.Tensor, fmt: MXFormat | NVFP4, block: int
               ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """(blocks, back): x as (rows, n_blocks, block) along ``fmt.axis`` (zero-padded) and the inverse map."""
    if x.dim() == 0:
        moved = x.reshape(1)
        axis = None
    else:
        axis = fmt.axis
        moved = x.movedim(axis, -1)
    mshape = moved.shape
    length = mshape[-1]
    rows = moved.reshape(-1, length)
    nb = -(-length // block)
    pad = nb * block - length
    if pad:
        rows = torch.cat([rows, torch.zeros(rows.shape[0], pad, dtype=rows.dtype, device=rows.device)], dim=1)
    blocks = rows.reshape(rows.shape[0], nb, block)

    def back(b):
        r = b.reshape(b.shape[0], nb * block)[:, :length].reshape(mshape)
        return r.reshape(x.shape) if axis is None else r.movedim(-1, axis)

    return blocks, back


def _block_scale(blocks: torch.Tensor, code: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(status, s) per block (last dim kept, size 1): status 0 zero, 1 scale s, 2 NaN (refimpl ``block_scale``)."""
    a = blocks.abs()
    nan = torch.isnan(a)
    m = torch.where(nan, torch.zeros_like(a), a).amax(dim=-1, keepdim=True)
    has_nan = nan.any(dim=-1, keepdim=True)
    if int(code[MX_SCALE]) == SCALE_E8M0:
        finite = torch.isfinite(m) & (m > 0.0)
        e = _frexp_exp(torch.where(finite, m, torch.ones_like(m))) - float(code[MX_EMAX])
        e = torch.where(torch.isinf(m), torch.full_like(m, 127.0), e)
        s = _pow2(torch.clamp(e, -127.0, 127.0))
        zero = m == 0.0
    else:
        t = code[MX_TENSOR_SCALE]
        sb = _round_binade((m / code[FLOAT_MAX]) / t, None, _E4M3_EMIN, _E4M3_MAN, _E4M3_MAX, 2)
        s = sb * t
        zero = sb == 0.0
    status = torch.where(has_nan, 2, torch.where(zero, 0, 1))
    return status, torch.where(status == 1, s, torch.ones_like(s))


def _round(x, u, code, fmt):
    blocks, back = _block_view(x, fmt, int(code[MX_BLOCK]))
    # stochastic: the smallest scale holding the block (unbiased); nearest: the spec's scale
    status, s = _block_scale(blocks, code) if u is None else _vc_block_scale(blocks, code)
    z = blocks / s
    ub = None if u is None else _block_view(u, fmt, int(code[MX_BLOCK]))[0]
    ties = int(code[TIES])
    man = int(code[FLOAT_MAN])
    maxv = code[FLOAT_MAX]
    if code[MX_INT] != 0.0:
        delta = 2.0 ** (-man)
        q = _fixed_nearest(z, delta, code[MX_LO], maxv, ties) if ub is None else \
            _fixed_stochastic(z, ub, delta, code[MX_LO], maxv)
    else:
        emin = 2 - (1 << (int(code[FLOAT_EXP]) - 1))
        q = _round_binade(z, ub, emin, man, maxv, ties)
    out = q * s
    out = torch.where(status == 0, blocks * 0.0, out)
    out = torch.where(status == 2, torch.full_like(out, float("nan")), out)
    return back(out)


def nearest(x: torch.Tensor, code: Sequence[float], fmt: MXFormat | NVFP4) -> torch.Tensor:
    """Q^d (Q1) on the MX/NVFP4 grid (refimpl.kernels.mx.nearest_into)."""
    _check_call("kernels.mx.nearest", code, _KINDS, fmt, _FMTS, x=x)
    return _round(x, None, code, fmt)


def stochastic(x: torch.Tensor, u: torch.Tensor, code: Sequence[float], fmt: MXFormat | NVFP4) -> torch.Tensor:
    """Q^s (Q2') of the elements with the holding block scale (refimpl.kernels.mx.stochastic_into)."""
    _check_call("kernels.mx.stochastic", code, _KINDS, fmt, _FMTS, x=x, u=u)
    return _round(x, u, code, fmt)


def gap(mu: torch.Tensor, code: Sequence[float], fmt: MXFormat | NVFP4) -> torch.Tensor:
    """Per-element Q^vc gap: s·(element ULP at min(|μ_i|/s, max)); 0 for zero/NaN blocks (refimpl ``gap_into``)."""
    _check_call("kernels.mx.gap", code, _KINDS, fmt, _FMTS, mu=mu)
    blocks, back = _block_view(mu, fmt, int(code[MX_BLOCK]))
    status, s = _vc_block_scale(blocks, code)
    man = int(code[FLOAT_MAN])
    if code[MX_INT] != 0.0:
        g = _ldexp(s, torch.full_like(s, -float(man))).expand_as(blocks)
    else:
        emin = 2 - (1 << (int(code[FLOAT_EXP]) - 1))
        g = s * _pow2(_vc_float_se(blocks / s, emin, man, code[FLOAT_MAX]))
    return back(torch.where(status == 1, g, torch.zeros_like(g)).contiguous())


# ----------------------------------------------------------------------------------- Q^vc
def _holding_scale(m: torch.Tensor, code: Sequence[float]) -> torch.Tensor:
    """Smallest block scale whose range holds m > 0 (refimpl.kernels.mx.holding_scale), elementwise."""
    maxv = code[FLOAT_MAX]
    if int(code[MX_SCALE]) == SCALE_E8M0:
        ok = torch.isfinite(m) & (m > 0.0)
        e = _frexp_exp(torch.where(ok, m, torch.ones_like(m))) - float(code[MX_EMAX])
        e = torch.where(m > maxv * _pow2(e), e + 1.0, e)
        e = torch.where(torch.isinf(m), torch.full_like(m, 127.0), torch.clamp(e, -127.0, 127.0))
        return _pow2(e)
    t = code[MX_TENSOR_SCALE]
    r = (m / maxv) / t
    sb = _round_binade(r, None, _E4M3_EMIN, _E4M3_MAN, _E4M3_MAX, 2)
    pos = sb > 0.0
    up = torch.where(pos, torch.clamp(_frexp_exp(torch.where(pos, sb, torch.ones_like(sb))), min=float(_E4M3_EMIN))
                     - float(_E4M3_MAN), torch.full_like(sb, float(_E4M3_EMIN - _E4M3_MAN)))
    sb = torch.where(sb < r, torch.clamp(sb + _pow2(up), max=_E4M3_MAX), sb)
    return sb * t


def _vc_block_scale(blocks, code):
    """(status, s) per block with s = holding_scale(max|μ|) (refimpl ``_vc_block_scale``)."""
    a = blocks.abs()
    nan = torch.isnan(a)
    m = torch.where(nan, torch.zeros_like(a), a).amax(dim=-1, keepdim=True)
    status = torch.where(nan.any(dim=-1, keepdim=True), 2, torch.where(m == 0.0, 0, 1))
    s = _holding_scale(torch.where(status == 1, m, torch.ones_like(m)), code)
    return status, torch.where(status == 1, s, torch.ones_like(s))


def _cat_unit(m, v, u):
    """Cat(m, v) on {+1, -1, 0} in units of Δ (refimpl ``_cat_unit``), elementwise."""
    w = v - 0.25
    p_plus = (w + (0.5 + m) * (0.5 + m)) * 0.5
    p_minus = (w + (0.5 - m) * (0.5 - m)) * 0.5
    one = torch.ones_like(p_plus)
    return torch.where(u < p_plus, one, torch.where(u < p_plus + p_minus, -one, torch.zeros_like(one)))


def _recycled_uniform(zz, ur, k0):
    """refimpl ``_recycled_uniform``: a uniform independent of the decision k0 = floor(zz + ur)."""
    f = torch.floor(zz)
    p = zz - f
    safe = torch.where(p == 0.0, torch.ones_like(p), p)
    w = torch.where(k0 > f, (ur - (1.0 - safe)) / safe, ur / (1.0 - p))
    w = torch.clamp(w, 0.0, 0.9999999999999999)
    return torch.where(p == 0.0, ur, w)


def _vc_elem_unclipped(z, vn, xi, ur, uc, se, ties, ktop):
    """(t, u) of refimpl ``_vc_elem_unclipped``, elementwise (normalised units)."""
    delta = _pow2(se)
    vr = (vn / delta) / delta
    b1 = vr > 0.25
    # branch 1 (Q5)
    x = z + exact_sqrt(torch.clamp(vn - 0.25 * delta * delta, min=0.0)) * xi
    zz = _ldexp(x, -se)
    k = _round_int(zz, ties)
    r = zz - k
    c = _cat_unit(r.abs(), 0.25, uc)
    k1 = torch.where(r > 0.0, k + c, torch.where(r < 0.0, k - c, k))
    t1 = _ldexp(k1, se) + 0.0
    # branch 2 (Q6)
    zz2 = _ldexp(z, -se)
    k0 = torch.floor(zz2 + ur)
    u2 = _recycled_uniform(zz2, ur, k0)
    a = zz2.abs()
    p = a - torch.floor(a)
    vs = p * (1.0 - p)
    w = vr - vs
    a6 = w / 6.0
    one = torch.ones_like(k0)
    edge = torch.where(uc < a6, k0 + torch.copysign(2.0 * one, k0),
                       torch.where(uc < a6 + w / 3.0, k0 - torch.copysign(one, k0), k0))
    inner = k0 + _cat_unit(torch.zeros_like(k0), w, uc)
    k2 = torch.where(vr > vs, torch.where(k0.abs() == ktop, edge, inner), k0)
    t2 = _ldexp(k2, se) + 0.0
    return torch.where(b1, t1, t2), torch.where(b1, ur, u2)


def _elem_se(z, is_int, emin, man, maxv):
    if is_int:
        return torch.full_like(z, -float(man))
    return _vc_float_se(z, emin, man, maxv)


def _sr_onto_grid(zf, u, is_int, emin, man, maxv, lo):
    """refimpl ``_sr_onto_grid``: stochastic rounding onto the element grid at |zf|, saturated."""
    if is_int:
        ue = torch.full_like(zf, -float(man))
    else:
        nz = zf != 0.0
        ue = torch.clamp(_frexp_exp(torch.where(nz, zf.abs(), torch.ones_like(zf))), min=float(emin)) - float(man)
    q = _ldexp(torch.floor(_ldexp(zf, -ue) + u), ue) + 0.0
    q = torch.clamp(q, lo if is_int else -maxv, maxv)
    return torch.where(zf == 0.0, zf, q)


def vc(mu: torch.Tensor, var: float, code: Sequence[float], fmt: MXFormat | NVFP4, xi: torch.Tensor, ur: torch.Tensor,
       uc: torch.Tensor) -> torch.Tensor:
    """Q^vc on the MX/NVFP4 format (refimpl.kernels.mx.vc_into), float64 in and out."""
    _check_call("kernels.mx.vc", code, _KINDS, fmt, _FMTS, var, mu=mu, xi=xi, u_round=ur, u_cat=uc)
    bsz = int(code[MX_BLOCK])
    blocks, back = _block_view(mu, fmt, bsz)
    xb, urb, ucb = (_block_view(t, fmt, bsz)[0] for t in (xi, ur, uc))
    spec_clip = (int(code[VC_FLAGS]) & VC_SPEC_CLIP_BIT) != 0
    is_int = code[MX_INT] != 0.0
    man = int(code[FLOAT_MAN])
    maxv = code[FLOAT_MAX]
    lo = code[MX_LO]
    emin = 0 if is_int else 2 - (1 << (int(code[FLOAT_EXP]) - 1))
    ties = int(code[TIES])
    status, s = _vc_block_scale(blocks, code)
    # all-zero blocks: sqrt(V)·ξ rounded onto its own block
    sd = math.sqrt(var)
    xs = sd * xb
    m0 = xs.abs().amax(dim=-1, keepdim=True)
    s0 = _holding_scale(torch.where(m0 > 0.0, m0, torch.ones_like(m0)), code)
    zero_out = _sr_onto_grid(xs / s0, urb, is_int, emin, man, maxv, lo) * s0
    zero_out = torch.where((m0 == 0.0) | spec_clip, blocks * 0.0, zero_out)
    # other blocks
    vn = (var / s) / s
    ktop = 2.0 ** (int(code[MX_EMAX]) + 1 + man) if is_int else 2.0 ** (man + 1)
    z = torch.clamp(blocks / s, -maxv, maxv)
    se = _elem_se(z, is_int, emin, man, maxv)
    t, u = _vc_elem_unclipped(z, vn, xb, urb, ucb, se, ties, ktop)
    if spec_clip:
        hi = torch.full_like(t, maxv) if is_int else torch.clamp(_ldexp(torch.full_like(t, 2.0 ** (man + 1) - 1.0), se),
                                                                  max=maxv)
        out = torch.minimum(torch.maximum(t, torch.full_like(t, lo) if is_int else -hi), hi) * s
    else:
        m = t.abs().amax(dim=-1, keepdim=True)
        s2 = torch.where(m <= maxv, s, _holding_scale(m * s, code))
        out = _sr_onto_grid((t * s) / s2, u, is_int, emin, man, maxv, lo) * s2
    out = torch.where(status == 0, zero_out, out)
    out = torch.where(status == 2, torch.full_like(out, float("nan")), out)
    return back(out)


# ------------------------------------------------------------------------ checked entry points
def block_view(x: torch.Tensor, fmt: MXFormat | NVFP4, block: int
               ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """(blocks, back): x as (rows, n_blocks, block) along ``fmt.axis`` (zero-padded) and the inverse map.

    ``x`` a tensor, ``fmt`` an MXFormat/NVFP4 whose ``axis`` exists in x, ``block`` an int >= 1;
    ``TypeError``/``ValueError`` naming the argument otherwise.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"block_view: x must be a torch.Tensor, got {type(x).__name__}")
    if not isinstance(fmt, _FMTS):
        raise TypeError(f"block_view: fmt={fmt!r:.80} must be an MXFormat or NVFP4")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block_view: block={block!r} must be an int >= 1")
    if x.dim() > 0 and not -x.dim() <= fmt.axis < x.dim():
        raise ValueError(f"block_view: fmt.axis={fmt.axis} is out of range for x of shape {tuple(x.shape)}")
    return _block_view(x, fmt, block)


def block_scale(blocks: torch.Tensor, code: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(status, s) per block (last dim kept, size 1): status 0 zero, 1 scale s, 2 NaN (refimpl ``block_scale``).

    ``blocks``: a float64 tensor with the block as its last axis; ``code``: an MX/NVFP4 format code.
    """
    if isinstance(blocks, torch.Tensor) and blocks.dim() == 0:
        raise ValueError("block_scale: blocks must have at least one axis (the block), got a 0-d tensor")
    _check_call("kernels.mx.block_scale", code, _KINDS, None, (), blocks=blocks)
    return _block_scale(blocks, code)


def holding_scale(m: torch.Tensor, code: Sequence[float]) -> torch.Tensor:
    """Smallest block scale whose range holds m > 0 (refimpl.kernels.mx.holding_scale), elementwise.

    ``m``: a float64 tensor; ``code``: an MX/NVFP4 format code.
    """
    _check_call("kernels.mx.holding_scale", code, _KINDS, None, (), m=m)
    return _holding_scale(m, code)
