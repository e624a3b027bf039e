"""Block floating point on torch tensors (kind 2), mirroring refimpl/kernels/bfp.py.

Blocks are the rows of ``_blocks`` (``fmt.dim``: one block per index along that axis;
None: the whole tensor).  The same four functions as every format module: ``nearest``,
``stochastic``, ``vc``, ``gap``; float64 tensors in and out, bit-identical to refimpl.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from refimpl.formats import BlockFloatingPoint
from refimpl.slots import BFP_WL, KIND_BFP, TIES
from torchport.kernels.common import (
    _frexp_exp,
    _ldexp,
    _pow2,
    _round_int,
    _vc_flags,
    _check_call,
    _vc_branches,
)

__all__ = ["nearest", "stochastic", "vc", "gap"]

_KINDS, _FMTS = (KIND_BFP,), (BlockFloatingPoint,)


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


def _bfp_round(x, u, fmt, code, ties):
    """BFP rounding with one block per row of ``_blocks`` (Q3), refimpl ``_bfp_round_block``."""
    rows, back = _blocks(x, fmt.dim)
    urows = None if u is None else _blocks(u, fmt.dim)[0]
    wl = code[BFP_WL]
    found, eb = _bfp_block_exp(rows)
    se = eb + (2.0 - wl)
    top = _pow2(eb + 1.0)
    sat = _ldexp(torch.full_like(se, 2.0 ** (wl - 1) - 1.0), se)  # from k (refimpl): finite in the top binade
    finite = torch.isfinite(rows)
    z = _ldexp(torch.where(finite, rows, torch.zeros_like(rows)), -se)
    k = _round_int(z, ties) if urows is None else torch.floor(z + urows)
    q = _ldexp(k, se) + 0.0
    q = torch.where(q.abs() >= top, torch.copysign(sat.expand_as(q), q), q)
    q = torch.where(torch.isinf(rows), torch.copysign(sat.expand_as(q), rows), q)
    q = torch.where(found, q, torch.zeros_like(q))
    q = torch.where(torch.isnan(rows), rows, q)
    return back(q)



def nearest(x: torch.Tensor, code: Sequence[float], fmt: BlockFloatingPoint) -> torch.Tensor:
    """Q^d (Q1) with each block's Δ_B, ties per code[TIES] (refimpl ``_bfp_round_block``)."""
    _check_call("kernels.bfp.nearest", code, _KINDS, fmt, _FMTS, x=x)
    return _bfp_round(x, None, fmt, code, int(code[TIES]))


def stochastic(x: torch.Tensor, u: torch.Tensor, code: Sequence[float], fmt: BlockFloatingPoint) -> torch.Tensor:
    """Q^s (Q2') with each block's Δ_B."""
    _check_call("kernels.bfp.stochastic", code, _KINDS, fmt, _FMTS, x=x, u=u)
    return _bfp_round(x, u, fmt, code, int(code[TIES]))


def vc(mu: torch.Tensor, var: float, code: Sequence[float], fmt: BlockFloatingPoint, xi: torch.Tensor,
       ur: torch.Tensor, uc: torch.Tensor) -> torch.Tensor:
    """Q^vc with Δ_B of μ's block and the block escape rule (refimpl ``kernels.bfp.vc_into``)."""
    _check_call("kernels.bfp.vc", code, _KINDS, fmt, _FMTS, var, mu=mu, xi=xi, u_round=ur, u_cat=uc)
    ties = int(code[TIES])
    published, spec_clip = _vc_flags(code)
    rows, back = _blocks(mu, fmt.dim)
    found_r, eb = _bfp_block_exp(rows)
    wl = code[BFP_WL]
    se_r = eb + (2.0 - wl)
    hi_r = _pow2(eb + 1.0) - _pow2(se_r)
    se = back(se_r.expand_as(rows).contiguous())
    hi = back(hi_r.expand_as(rows).contiguous())
    lo = -hi
    found = back(found_r.expand_as(rows).contiguous())
    th1, th1c, th2, th2c, b1, nan = _vc_branches(mu, var, se, lo, hi, ties, published, spec_clip, 2.0 ** (wl - 1),
                                                xi, ur, uc)
    if spec_clip:
        th = torch.where(b1, th1c, th2c)
    else:
        # escape re-rounding of refimpl ``vc_into``: branch 1 rounds with u_round, branch 2
        # with the fair coin 3/4·[ξ > 0] + 1/4·[ξ <= 0] (refimpl ``_vc_escape_uniform``)
        tu = torch.where(b1, th1, th2)
        ue_ = torch.where(b1, ur, torch.where(xi > 0.0, 0.75, 0.25).to(ur.dtype))
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
        th = torch.where(esc, th_esc, torch.where(b1, th1c, th2c))
    th = torch.where(nan, mu, th)
    zero = torch.where(nan, mu, torch.zeros_like(mu))
    if var > 0.0 and not spec_clip:
        zero = _vc_bfp_zero_blocks(mu, var, fmt, code, xi, ur, nan)
    return torch.where(found, th, zero)


def _vc_bfp_zero_blocks(mu, var, fmt, code, xi, ur, nan):
    """refimpl ``_vc_bfp_zero_block`` for every block (used where the block is all zero):
    θ = √V·ξ stochastically rounded onto the grid of its own block exponent, saturated."""
    wl = code[BFP_WL]
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



def gap(mu: torch.Tensor, code: Sequence[float], fmt: BlockFloatingPoint) -> torch.Tensor:
    """The Q^vc gap: Δ_B of μ's block (0 for an all-zero block)."""
    _check_call("kernels.bfp.gap", code, _KINDS, fmt, _FMTS, mu=mu)
    rows, back = _blocks(mu, fmt.dim)
    found, eb = _bfp_block_exp(rows)
    d = torch.where(found, _pow2(eb + (2.0 - code[BFP_WL])), torch.zeros_like(eb))
    return back(d.expand_as(rows).contiguous())
