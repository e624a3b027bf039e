"""Shared pieces of the Q^vc binade-crossing tests (issue: "Q^vc on block and float formats
must let a chain leave its binade"; ALGORITHMS.md §2.5 "Requirement instead").

The scenario: U(θ) = θ²/2, ∇Ũ = θ + 0.1ζ, θ₀ = 1.9, η = 2e-5, K = 1000 steps of VC
SGLDLP-L, N_CHAINS independent chains.  Every step of an unbiased low-precision sampler has
E[θ_{k+1} | θ_k] = (1 - η)θ_k, so from the nearest-rounded start q₀ = Q^d(1.9)

    E θ_K   = q₀ (1 - η)^K,
    Var θ_K = (2η + s²η²)(1 - (1 - η)^{2K}) / (1 - (1 - η)²)      (s = 0.1)

exactly when Q^vc matches the variance V = 2η at every step (branch 2 here: V < Δ²/4 for
both formats, and the top-up across a binade boundary matches V; docs/quantizers.md).  The
checks are z-scores against these values (MC standard errors from the sample itself), and
P(θ_K ≥ 2) against full-precision SGLD run from the same q₀: a lattice chain puts the mass
of the interval just below 2 on the grid point 2, so P_vc must lie between P_sgld(θ ≥ 2)
and P_sgld(θ ≥ 2 - Δ₋), Δ₋ the grid gap just below 2 (each side widened by Z_TOL standard
errors).  With the spec's withdrawn clip to μ's block/binade, P_vc = 0.

Smallest detectable effect (at Z_TOL = 4.5, 20 000 chains): a mean shift of 4.5·0.2/√20000
≈ 0.0064 (0.34 % of the mean), a variance error of about 4.5·√2/√20000 ≈ 4.5 % of the
variance, a drop of P(θ ≥ 2) by about 0.014.
"""

from __future__ import annotations

import math

import numpy as np

N_CHAINS = 20_000
N_STEPS = 1000
ETA = 2e-5
GRAD_NOISE = 0.1
X0 = 1.9
#: 8 formats x package checks of 3-4 statistics: two-sided family-wise error about 1e-4
Z_TOL = 4.5


def exact_moments(q0: float) -> tuple[float, float]:
    """(E θ_K, Var θ_K) of the linear recursion θ' = (1-η)θ - η s ζ + sqrt(2η) ξ from q0."""
    a = 1.0 - ETA
    mean = q0 * a**N_STEPS
    var = (2.0 * ETA + GRAD_NOISE**2 * ETA**2) * (1.0 - a ** (2 * N_STEPS)) / (1.0 - a * a)
    return mean, var


def scenario_z(theta: np.ndarray, q0: float) -> tuple[float, float]:
    """z-scores of the sample mean and variance of theta against exact_moments(q0)."""
    n = theta.size
    m, v = exact_moments(q0)
    c = theta - theta.mean()
    var = float(np.mean(c**2))
    m4 = float(np.mean(c**4))
    z_mean = (float(theta.mean()) - m) / math.sqrt(var / n)
    z_var = (var - v) / math.sqrt(max(m4 - var * var, 1e-300) / n)
    return z_mean, z_var


def crossing_bracket(p_vc: float, sgld: np.ndarray, gap_below: float, n_vc: int) -> tuple[float, float]:
    """Distances (in SE) of p_vc below the lower and above the upper end of the SGLD bracket.

    Both must be < Z_TOL.  Lower end P_sgld(θ ≥ 2), upper end P_sgld(θ ≥ 2 - gap_below)."""
    lo = float(np.mean(sgld >= 2.0))
    hi = float(np.mean(sgld >= 2.0 - gap_below))
    se_lo = math.sqrt(lo * (1 - lo) / sgld.size + max(p_vc * (1 - p_vc), 1e-12) / n_vc)
    se_hi = math.sqrt(hi * (1 - hi) / sgld.size + max(p_vc * (1 - p_vc), 1e-12) / n_vc)
    return (lo - p_vc) / se_lo, (p_vc - hi) / se_hi


def with_spec_clip(fmt):
    """Mutation: the same format with the kernel's test hook (code[7] bit 2) set, which
    restores the spec's withdrawn clip of Q^vc results to μ's block/binade range."""
    from refimpl._qkernels import VC_SPEC_CLIP_BIT

    base = type(fmt)

    class Clipped(base):  # type: ignore[misc, valid-type]
        def __post_init__(self):
            super().__post_init__()
            c = np.array(self.code)
            c[7] = float(int(c[7]) | VC_SPEC_CLIP_BIT)
            c.setflags(write=False)
            object.__setattr__(self, "code", c)

    Clipped.__name__ = "SpecClipped" + base.__name__
    return Clipped(**{k: getattr(fmt, k) for k in fmt.__dataclass_fields__ if fmt.__dataclass_fields__[k].init})
