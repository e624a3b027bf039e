"""qtorch-semantics float on torch tensors (kind 3), mirroring refimpl/kernels/float.py.

torchport.kernels.ieee reuses these functions (IEEE entries of the code: ties to even,
IEEE overflow).  The same four functions as every format module: ``nearest``,
``stochastic``, ``vc``, ``gap``; float64 tensors in and out, bit-identical to refimpl.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from refimpl.formats import FloatingPoint, IEEEFloat
from refimpl.slots import (
    FLOAT_EXP,
    FLOAT_HAS_INF,
    FLOAT_MAN,
    FLOAT_MAX,
    KIND,
    KIND_FLOAT,
    KIND_IEEE,
    SATURATE,
    TIES,
)
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

_KINDS, _FMTS = (KIND_FLOAT, KIND_IEEE), (FloatingPoint, IEEEFloat)


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
    exp, man = int(code[FLOAT_EXP]), int(code[FLOAT_MAN])
    emin = 2 - (1 << (exp - 1))
    saturate = int(code[KIND]) == KIND_FLOAT or code[SATURATE] != 0.0
    return emin, man, code[FLOAT_MAX], code[FLOAT_HAS_INF] != 0.0, saturate


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



def nearest(x: torch.Tensor, code: Sequence[float], fmt: FloatingPoint | IEEEFloat) -> torch.Tensor:
    """Q^d (Q1) on the binade grid, ties per code[TIES] (refimpl ``_float_nearest``)."""
    _check_call("kernels.float.nearest", code, _KINDS, fmt, _FMTS, x=x)
    return _float_round(x, None, code, int(code[TIES]))


def stochastic(x: torch.Tensor, u: torch.Tensor, code: Sequence[float], fmt: FloatingPoint | IEEEFloat) -> torch.Tensor:
    """Q^s (Q2') in x's binade (refimpl ``_float_stochastic``)."""
    _check_call("kernels.float.stochastic", code, _KINDS, fmt, _FMTS, x=x, u=u)
    return _float_round(x, u, code, int(code[TIES]))


def vc(mu: torch.Tensor, var: float, code: Sequence[float], fmt: FloatingPoint | IEEEFloat, xi: torch.Tensor,
       ur: torch.Tensor, uc: torch.Tensor) -> torch.Tensor:
    """Q^vc on μ's binade grid with the escape re-rounding (refimpl ``kernels.float.vc_into``)."""
    _check_call("kernels.float.vc", code, _KINDS, fmt, _FMTS, var, mu=mu, xi=xi, u_round=ur, u_cat=uc)
    ties = int(code[TIES])
    published, spec_clip = _vc_flags(code)
    emin, man, maxv, _, _ = _float_params(code)
    se = _vc_float_se(mu, emin, man, maxv)
    hi = torch.clamp(_ldexp(torch.full_like(mu, 2.0 ** (man + 1) - 1.0), se), max=maxv)
    lo = -hi
    th1, th1c, th2, th2c, b1, nan = _vc_branches(mu, var, se, lo, hi, ties, published, spec_clip, 2.0 ** (man + 1),
                                                xi, ur, uc)
    if spec_clip:
        th = torch.where(b1, th1c, th2c)
    else:
        # escape re-rounding of refimpl ``vc_into``: branch 1 rounds with u_round, branch 2
        # with the fair coin 3/4·[ξ > 0] + 1/4·[ξ <= 0] (refimpl ``_vc_escape_uniform``)
        tu = torch.where(b1, th1, th2)
        ue_ = torch.where(b1, ur, torch.where(xi > 0.0, 0.75, 0.25).to(ur.dtype))
        esc = tu.abs() > hi
        at = torch.where(esc & torch.isfinite(tu), tu.abs(), torch.ones_like(tu))
        ue = torch.clamp(_frexp_exp(at), min=float(emin)) - float(man)
        t = _ldexp(torch.floor(_ldexp(torch.where(esc, tu, torch.zeros_like(tu)), -ue) + ue_), ue)
        th_esc = torch.where(torch.isinf(tu) | (t.abs() > maxv), torch.copysign(torch.full_like(t, maxv), tu), t)
        th = torch.where(esc, th_esc, torch.where(b1, th1c, th2c))
    return torch.where(nan, mu, th)


def gap(mu: torch.Tensor, code: Sequence[float], fmt: FloatingPoint | IEEEFloat) -> torch.Tensor:
    """The Q^vc gap: 2^(max(⌊log2 min(|μ_i|, max)⌋, e_min) − M)."""
    _check_call("kernels.float.gap", code, _KINDS, fmt, _FMTS, mu=mu)
    emin, man, maxv, _, _ = _float_params(code)
    return _pow2(_vc_float_se(mu, emin, man, maxv))
