"""Exact stationary-moment predictions on a 1-D standard Gaussian (spec §5.8, P0–P9).

All predictions are **[derived]** in ``shared/spec/ALGORITHMS.md`` §5.8; they are
not stated by the papers.  Setting (unless a function says otherwise):

* target U(θ) = θ²/2, temperature T (the theory uses T = 1);
* stochastic gradient ∇Ũ(θ) = θ + s·ζ with ζ ~ N(0, 1) fresh each step (the
  LP-SGLD toy, Zhang, Wilson & De Sa ICML 2022 Fig. 1, uses s = 0.1);
* fixed-point stochastic rounding with gaps Δ_W, Δ_G and no clipping;
* moments of the *stationary* chain (the mean is 0 by symmetry).

Every function here is deterministic (no randomness consumed) and accepts
scalars or NumPy arrays where it says "vectorised"; the Lyapunov solvers take
scalars.  Step size η is written ``eta`` (the LP-SGLD paper's α).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.linalg import solve_discrete_lyapunov
from scipy.stats import norm

from theory._checks import count, real_array, real_scalar

__all__ = [
    "stationary_second_moment",
    "sgld_variance",
    "sgld_variance_expansion",
    "sgld_lp_f_variance",
    "sgld_lp_f_variance_approx",
    "sgld_lp_f_variance_selfconsistent",
    "mean_sr_variance",
    "sgld_lp_l_variance_exact",
    "sgld_lp_l_variance_regime_a",
    "sgld_lp_l_variance_regime_b",
    "sgld_lp_l_variance",
    "sgld_lp_l_regime",
    "sgld_vc_variance",
    "sgd_lp_f_variance",
    "sgd_lp_l_second_moment",
    "sgd_lp_l_stationary_law",
    "sgd_lp_l_second_moment_at_step",
    "SGHMCCoefficients",
    "sghmc_coefficients",
    "sghmc_stationary_covariance",
    "sghmc_spectral_radius",
    "sghmc_variance",
    "sghmc_variance_expansion",
    "sghmc_vc_variance",
    "sghmc_vc_variance_expansion",
    "sghmc_lp_l_variance",
    "sghmc_lp_l_variance_sensitivity",
    "gaussian_w2_1d",
    "peak_density",
]


# --------------------------------------------------------------------------- helpers


def _pos(name: str, value, *, allow_zero: bool = False):
    arr = real_array(name, value)
    bad = ~np.isfinite(arr) | ((arr < 0) if allow_zero else (arr <= 0))
    if np.any(bad):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {kind}, got {value!r}")
    return arr


def _eta(eta, upper: float = 2.0):
    arr = _pos("eta", eta)
    if np.any(arr >= upper):
        raise ValueError(f"eta must be < {upper} for a stationary law, got {eta!r}")
    return arr


def _finite(name: str, value) -> np.ndarray:
    """A real number or array of them, all finite (any sign)."""
    arr = real_array(name, value)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def _spos(name: str, value, *, allow_zero: bool = False) -> float:
    """:func:`_pos` for a function that takes scalars only."""
    real_scalar(name, value)
    return float(_pos(name, value, allow_zero=allow_zero))


def _seta(eta, upper: float = 2.0) -> float:
    """:func:`_eta` for a function that takes scalars only."""
    real_scalar("eta", eta)
    return float(_eta(eta, upper))


def _out(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


# --------------------------------------------------------------------------- P0


def stationary_second_moment(mean_w: npt.ArrayLike, eta: npt.ArrayLike) -> float | np.ndarray:
    """(P0) Stationary second moment of θ' = (1 − η)θ + e with E[e|θ] = 0.

    ``E[θ²] = E[w] / (η(2 − η))`` where ``w(θ) = E[e²|θ]`` is the conditional
    variance of one step.  Source: spec §5.8 (P0) [derived]; the identity needs only
    conditional unbiasedness, which stochastic rounding and Q^vc (Q5) provide.

    Vectorised over ``mean_w`` and ``eta`` (numpy broadcasting); returns float or
    ndarray of float64.  No randomness.
    """
    w = _pos("mean_w", mean_w, allow_zero=True)
    e = _eta(eta)
    return _out(w / (e * (2.0 - e)))


# --------------------------------------------------------------------------- P1


def sgld_variance(eta: npt.ArrayLike, s: npt.ArrayLike = 0.0, temperature: npt.ArrayLike = 1.0) -> float | np.ndarray:
    """(P1) Stationary variance of full-precision SGLD (S1) on U = θ²/2.

    ``Var = (2T + η s²)/(2 − η)`` (T = 1 in the spec: ``(2 + ηs²)/(2 − η)``),
    from (P0) with ``w = 2ηT + η²s²``.  Source: spec §5.8 P1 [derived] for
    (S1) = LP-SGLD paper's SGLD (Zhang et al. 2022).  Vectorised; no randomness.
    """
    e = _eta(eta)
    s = _pos("s", s, allow_zero=True)
    t = _pos("temperature", temperature)
    return _out((2.0 * t + e * s**2) / (2.0 - e))


def sgld_variance_expansion(eta: npt.ArrayLike, s: npt.ArrayLike = 0.0) -> float | np.ndarray:
    """(P1) Leading-order expansion ``1 + η(1 + s²)/2`` of the SGLD variance (T = 1)."""
    e = _pos("eta", eta)
    s = _pos("s", s, allow_zero=True)
    return _out(1.0 + e * (1.0 + s**2) / 2.0)


# --------------------------------------------------------------------------- SR variance


def mean_sr_variance(delta: npt.ArrayLike, s: npt.ArrayLike, center: npt.ArrayLike = 0.0, *,
                     n_terms: int = 64) -> float | np.ndarray:
    """``E σ²_SR(c + sζ; Δ)`` for ζ ~ N(0, 1): mean stochastic-rounding variance of a Gaussian.

    σ²_SR(z; Δ) = p(1 − p)Δ² with p = frac(z/Δ) (spec §1).  Exact through the
    Fourier series p(1 − p) = 1/6 − Σ_{k≥1} cos(2πkp)/(π²k²):

    ``E σ²_SR = Δ²·[1/6 − Σ_k cos(2πkc/Δ)·exp(−2π²k²s²/Δ²)/(π²k²)]``.

    For s ≫ Δ it tends to Δ²/6 (the spec's "spread over many cells" value); for
    s = 0 it is σ²_SR(c; Δ).  The series is truncated after ``n_terms`` terms
    (error < Δ²/(π² n_terms) at s = 0, exponentially small for s > 0).
    Vectorised over ``delta``, ``s`` and ``center``.  [derived for this package]
    """
    d = _pos("delta", delta)
    s = _pos("s", s, allow_zero=True)
    c = _finite("center", center)
    k = np.arange(1, count("n_terms", n_terms, 1, 10**6) + 1, dtype=np.float64)
    shape = np.broadcast(d, s, c).shape
    d, s, c = (np.broadcast_to(v, shape)[..., None] for v in (d, s, c))
    terms = np.cos(2 * np.pi * k * c / d) * np.exp(-2 * np.pi**2 * k**2 * s**2 / d**2) / (np.pi**2 * k**2)
    return _out(d[..., 0] ** 2 * (1.0 / 6.0 - terms.sum(-1)))


# --------------------------------------------------------------------------- P2 / P4


def sgld_lp_f_variance(eta: npt.ArrayLike, s: npt.ArrayLike = 0.0, mean_sr_var_w: npt.ArrayLike = 0.0,
                       mean_sr_var_g: npt.ArrayLike = 0.0, temperature: npt.ArrayLike = 1.0) -> float | np.ndarray:
    """(P2) Stationary variance of SGLDLP-F (S4) on U = θ²/2.

    ``Var = (2T + η(s² + E σ²_SR(θ; Δ_W) + E σ²_SR(Q_W(θ) + sζ; Δ_G)))/(2 − η)``.
    ``mean_sr_var_w`` and ``mean_sr_var_g`` are the stationary means of the
    stochastic-rounding variances of the weight and gradient quantizers (use
    :func:`sgld_lp_f_variance_approx` for the Δ_W²/6 approximation).  Source:
    spec §5.8 P2 [derived], LP-SGLD paper eq. 14 / Theorem 1.  Vectorised.
    """
    e = _eta(eta)
    s = _pos("s", s, allow_zero=True)
    qw = _pos("mean_sr_var_w", mean_sr_var_w, allow_zero=True)
    qg = _pos("mean_sr_var_g", mean_sr_var_g, allow_zero=True)
    t = _pos("temperature", temperature)
    return _out((2.0 * t + e * (s**2 + qw + qg)) / (2.0 - e))


def sgld_lp_f_variance_approx(eta: npt.ArrayLike, delta_w: npt.ArrayLike, s: npt.ArrayLike = 0.0,
                              mean_sr_var_g: npt.ArrayLike = 0.0,
                              temperature: npt.ArrayLike = 1.0) -> float | np.ndarray:
    """(P2) SGLDLP-F variance with ``E σ²_SR(θ; Δ_W) ≈ Δ_W²/6`` (θ spread over many cells).

    → 1 as η → 0 (the LP-F bias vanishes on a quadratic target, Theorem 1 at Ψ = 0).
    """
    dw = _pos("delta_w", delta_w)
    return sgld_lp_f_variance(eta, s, dw**2 / 6.0, mean_sr_var_g, temperature)


def sgld_lp_f_variance_selfconsistent(eta: float, delta_w: float, delta_g: float, s: float = 0.0,
                                      temperature: float = 1.0, *, n_iter: int = 50) -> float:
    """(P2) SGLDLP-F variance with the SR variances computed, not approximated.

    Solves ``V = (2T + η(s² + q_W(V) + q_G))/(2 − η)`` by fixed-point iteration, with
    ``q_W(V) = E σ²_SR(θ; Δ_W)`` for θ ~ N(0, V) (the stationary law is close to
    Gaussian) and ``q_G = E σ²_SR(Q_W(θ) + sζ; Δ_G) = E σ²_SR(sζ; Δ_G)``, exact when
    Δ_W is an integer multiple of Δ_G (Q_W(θ) then lies on the gradient grid);
    otherwise ``ValueError``.  ``n_iter`` fixed-point iterations, 1 to 10^6 (the
    iteration is a contraction; the default 50 is converged).  Scalars.
    [derived from spec §5.8 P2]
    """
    e = _seta(eta)
    n_iter = count("n_iter", n_iter, 1, 10**6)
    dw, dg = _spos("delta_w", delta_w), _spos("delta_g", delta_g)
    ratio = dw / dg
    if abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"delta_w must be an integer multiple of delta_g, got delta_w={delta_w!r}, delta_g={delta_g!r}")
    s = _spos("s", s, allow_zero=True)
    t = _spos("temperature", temperature)
    qg = mean_sr_variance(dg, s)
    v = t * 2.0 / (2.0 - e)
    for _ in range(n_iter):
        v = (2.0 * t + e * (s**2 + mean_sr_variance(dw, math.sqrt(v)) + qg)) / (2.0 - e)
    return float(v)


def sgld_vc_variance(eta: npt.ArrayLike, s: npt.ArrayLike = 0.0, mean_sr_var_g: npt.ArrayLike = 0.0,
                     mean_excess: npt.ArrayLike = 0.0, temperature: npt.ArrayLike = 1.0) -> float | np.ndarray:
    """(P4) Stationary variance of VC SGLDLP-L (S6) on U = θ²/2.

    ``Var = (2T + η(s² + E σ²_G))/(2 − η) + E[(σ²_SR(μ) − 2ηT)_+]/(η(2 − η))``.
    The first term is identical to SGLD driven by the same quantized gradient; the
    second (``mean_excess``, the measured mean excess of Q^vc branch 2 over the
    target variance V = 2ηT) is zero whenever ``|g|·Δ_W ≤ 2T`` along the chain
    (spec §3.6).  Source: spec §5.8 P4 [derived]; LP-SGLD paper eq. 17,
    Theorem 3.  Vectorised.
    """
    e = _eta(eta)
    s = _pos("s", s, allow_zero=True)
    qg = _pos("mean_sr_var_g", mean_sr_var_g, allow_zero=True)
    ex = _pos("mean_excess", mean_excess, allow_zero=True)
    t = _pos("temperature", temperature)
    return _out((2.0 * t + e * (s**2 + qg)) / (2.0 - e) + ex / (e * (2.0 - e)))


# --------------------------------------------------------------------------- P3


def sgld_lp_l_variance_exact(eta: npt.ArrayLike, mean_sr_var_pre: npt.ArrayLike, s: npt.ArrayLike = 0.0,
                             mean_sr_var_g: npt.ArrayLike = 0.0,
                             temperature: npt.ArrayLike = 1.0) -> float | np.ndarray:
    """(P3) Exact identity for naive SGLDLP-L (S5) given the measured mean SR variance.

    ``Var = [2ηT + η²(s² + E σ²_G) + E σ²_SR(pre; Δ_W)] / (η(2 − η))`` where
    "pre" is the value before the weight rounding.  Source: spec §5.8 P3
    [derived]; LP-SGLD paper eq. 1 / Theorem 2.  Vectorised.
    """
    e = _eta(eta)
    s = _pos("s", s, allow_zero=True)
    qp = _pos("mean_sr_var_pre", mean_sr_var_pre, allow_zero=True)
    qg = _pos("mean_sr_var_g", mean_sr_var_g, allow_zero=True)
    t = _pos("temperature", temperature)
    return _out((2.0 * e * t + e**2 * (s**2 + qg) + qp) / (e * (2.0 - e)))


def sgld_lp_l_variance_regime_a(eta: npt.ArrayLike, delta: npt.ArrayLike) -> float | np.ndarray:
    """(P3, regime A: η ≥ Δ²/8) ``Var ≈ (1 + Δ²/(12η))/(1 − η/2)`` (E χ ≈ 2/3, T = 1).

    Accurate to about 1% in its regime (spec §5.8 P3).  Vectorised.
    """
    e = _eta(eta)
    d = _pos("delta", delta)
    return _out((1.0 + d**2 / (12.0 * e)) / (1.0 - e / 2.0))


def sgld_lp_l_variance_regime_b(eta: npt.ArrayLike, delta: npt.ArrayLike) -> float | np.ndarray:
    """(P3, regime B: η ≤ Δ²/16) ``Var ≈ Δ/√(πη)`` (steps stay within one cell, T = 1).

    Accurate to about 1% in its regime (spec §5.8 P3).  Vectorised.
    """
    e = _eta(eta)
    d = _pos("delta", delta)
    return _out(d / np.sqrt(np.pi * e))


def sgld_lp_l_regime(eta: float, delta: float) -> str:
    """Which (P3) regime ``(eta, delta)`` lies in: ``"A"`` (η ≥ Δ²/8), ``"B"`` (η ≤ Δ²/16) or ``"between"``."""
    e = _seta(eta)
    d = _spos("delta", delta)
    if e >= d * d / 8.0:
        return "A"
    if e <= d * d / 16.0:
        return "B"
    return "between"


def sgld_lp_l_variance(eta: float, delta: float, *, boundary_slack: float = 0.0) -> float:
    """(P3) Naive SGLDLP-L variance from the regime approximation that applies.

    Regime A formula for η ≥ Δ²/8, regime B for η ≤ Δ²/16.  Between the two
    (Δ²/16 < η < Δ²/8) the spec prescribes the exact identity with a measured
    E σ²_SR (:func:`sgld_lp_l_variance_exact`); this function raises ``ValueError``
    there rather than guess, unless η ≤ (1 + ``boundary_slack``)·Δ²/16, where
    regime B is used (the spec's Fig. 1 point η = 10⁻³, Δ = 1/8 lies 2.4% above
    Δ²/16 and formula B is still within 0.2% there).  Scalars only.
    """
    boundary_slack = _spos("boundary_slack", boundary_slack, allow_zero=True)
    regime = sgld_lp_l_regime(eta, delta)
    if regime == "between" and float(eta) <= (1.0 + boundary_slack) * float(delta) ** 2 / 16.0:
        regime = "B"
    if regime == "A":
        return sgld_lp_l_variance_regime_a(eta, delta)
    if regime == "B":
        return sgld_lp_l_variance_regime_b(eta, delta)
    raise ValueError(
        f"eta={eta!r} lies between the regimes (delta**2/16 < eta < delta**2/8 for delta={delta!r}); "
        "use sgld_lp_l_variance_exact with a measured mean stochastic-rounding variance"
    )


# --------------------------------------------------------------------------- P5 / P6


def sgd_lp_f_variance(eta: npt.ArrayLike, s: npt.ArrayLike, mean_sr_var_w: npt.ArrayLike = 0.0,
                      mean_sr_var_g: npt.ArrayLike = 0.0) -> float | np.ndarray:
    """(P5) Stationary variance of noise-free SGDLP-F (S2) with gradient noise s > 0.

    ``Var = η(s² + E σ²_W + E σ²_G)/(2 − η)`` → 0 as η → 0.  With s = 0 the
    iterate enters (−ηΔ, ηΔ) and stays, so the floor is ≤ ηΔ.  Source: spec §5.8 P5
    [derived]; cited LP-SGLD paper §2 (Li et al. 2017).  Vectorised.
    """
    e = _eta(eta)
    s = _pos("s", s, allow_zero=True)
    qw = _pos("mean_sr_var_w", mean_sr_var_w, allow_zero=True)
    qg = _pos("mean_sr_var_g", mean_sr_var_g, allow_zero=True)
    return _out(e * (s**2 + qw + qg) / (2.0 - e))


def _h(x, s):
    """h(x) = E[(x + sζ)_+] = xΦ(x/s) + sφ(x/s) (spec §5.8 P6)."""
    if s == 0.0:
        return np.maximum(x, 0.0)
    return x * norm.cdf(x / s) + s * norm.pdf(x / s)


def sgd_lp_l_stationary_law(delta: float, s: float, *, tol: float = 1e-300) -> tuple[np.ndarray, np.ndarray]:
    """(P6) Stationary law of SGDLP-L (S3) on U = θ²/2: a birth–death chain on the grid.

    θ = kΔ moves one cell toward −sign(g) with probability η|g|/Δ (when
    η|g| < Δ always), so ``π_{k+1}/π_k = h(−kΔ)/h((k+1)Δ)`` with
    ``h(x) = xΦ(x/s) + sφ(x/s)``; the law does not depend on η.  Source: spec §5.8
    P6 [derived]; the O(√Δ) SGDLP-L floor cited by the LP-SGLD paper (Li et al. 2017).

    Returns ``(grid, probabilities)`` (float64 arrays), truncated where the mass
    falls below ``tol`` relative to the mode.  For ``s == 0`` the point 0 is
    absorbing and the law is the point mass at 0.  No randomness.
    """
    d = _spos("delta", delta)
    s = _spos("s", s, allow_zero=True)
    if not 0.0 < _spos("tol", tol) < 1.0:
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    if s == 0.0:
        return np.zeros(1), np.ones(1)
    logp = [0.0]
    k = 0
    # upward from 0 (symmetric law, so compute k >= 0 and mirror)
    while True:
        up = _h(-k * d, s)
        down = _h((k + 1) * d, s)
        if up <= 0.0:
            break
        nxt = logp[-1] + math.log(up) - math.log(down)
        if nxt < math.log(tol) or k > 100000:
            break
        logp.append(nxt)
        k += 1
    logp = np.array(logp)
    grid = np.arange(-k, k + 1) * d
    lp = np.concatenate([logp[:0:-1], logp])
    p = np.exp(lp - lp.max())
    return grid, p / p.sum()


def sgd_lp_l_second_moment(delta: npt.ArrayLike, s: npt.ArrayLike) -> float | np.ndarray:
    """(P6) ``E θ²`` of the SGDLP-L (S3) stationary law; independent of η.

    Check value (spec): Δ = 1/8, s = 0.1 gives 0.00637.  Limits: s ≪ Δ gives
    √(2/π)·sΔ, s ≫ Δ gives sΔ/√(2π).  Vectorised over ``delta`` and ``s``.
    """
    dd, ss = np.broadcast_arrays(_pos("delta", delta), _pos("s", s, allow_zero=True))
    out = np.empty(dd.shape)
    for idx in np.ndindex(dd.shape):
        grid, p = sgd_lp_l_stationary_law(dd[idx], ss[idx])
        out[idx] = float(np.sum(p * grid**2))
    return _out(out)


def sgd_lp_l_second_moment_at_step(delta: float, s: float, eta: float, n_steps: int, *,
                                   half_width: int | None = None) -> float:
    """(P6 chain, transient) ``E θ_k²`` of SGDLP-L (S3) started at θ_0 = 0, after k = ``n_steps`` steps.

    Propagates the birth–death chain of P6 exactly: from θ = jΔ one cell up with
    probability η·h(−jΔ)/Δ, one cell down with probability η·h(jΔ)/Δ.  Exact for
    (S3) on U = θ²/2 with stochastic rounding of weights and gradients on the
    same grid while η·|Q_G(g)| < Δ; ``ValueError`` if that fails with more than
    negligible probability on the states used.  Scalars.  [derived from spec §5.8 P6]
    """
    d = _spos("delta", delta)
    s = _spos("s", s, allow_zero=True)
    e = _spos("eta", eta)
    k = count("n_steps", n_steps, 0)
    if half_width is None:
        grid, _ = sgd_lp_l_stationary_law(d, s, tol=1e-30)
        half_width = max(int(round(grid[-1] / d)) + 2, 2)
    j = np.arange(-half_width, half_width + 1)
    if e * (half_width * d + 8 * s + d) >= d:
        raise ValueError(
            f"eta={eta!r} too large for the one-cell birth-death description at delta={delta!r}, s={s!r} "
            "(needs eta*|Q_G(g)| < delta)"
        )
    up = e * _h(-j * d, s) / d
    dn = e * _h(j * d, s) / d
    up[-1] = 0.0
    dn[0] = 0.0
    p = (j == 0).astype(np.float64)
    for _ in range(k):
        q = p * (1.0 - up - dn)
        q[1:] += (p * up)[:-1]
        q[:-1] += (p * dn)[1:]
        p = q
    return float(np.sum(p * (j * d) ** 2))


# --------------------------------------------------------------------------- P7–P9 (SGHMC)


class SGHMCCoefficients(NamedTuple):
    """Per-coordinate coefficients (H0) of the SGHMC exponential integrator (Cheng et al. 2018).

    Noise covariances (``sigma_x``, ``sigma_v``, ``sigma_xv``) are at temperature 1.
    """

    a: float
    c_v: float
    c_xv: float
    c_xg: float
    sigma_v: float
    sigma_x: float
    sigma_xv: float


def sghmc_coefficients(eta: float, u: float, gamma: float) -> SGHMCCoefficients:
    """(H0) Coefficients of the SGHMC step, LP-SGHMC paper eq. (3)/(10) (Wang et al. TMLR 2024).

    ``a = e^{−γη}``, ``c_v = u(1−a)/γ``, ``c_xv = (1−a)/γ``,
    ``c_xg = u(γη + a − 1)/γ²``, ``Σ_v = u(1−a²)``,
    ``Σ_x = u(2γη + 4a − a² − 3)/γ²``, ``Σ_xv = u(1−a)²/γ``.  Scalars; no randomness.
    """
    eta = _spos("eta", eta)
    u = _spos("u", u)
    g = _spos("gamma", gamma)
    a = math.exp(-g * eta)
    return SGHMCCoefficients(
        a=a,
        c_v=u * (1.0 - a) / g,
        c_xv=(1.0 - a) / g,
        c_xg=u * (g * eta + a - 1.0) / g**2,
        sigma_v=u * (1.0 - a * a),
        sigma_x=u * (2.0 * g * eta + 4.0 * a - a * a - 3.0) / g**2,
        sigma_xv=u * (1.0 - a) ** 2 / g,
    )


def _sign(position_sign) -> float:
    if position_sign in ("correct", -1, -1.0):
        return -1.0
    if position_sign in ("paper", 1, 1.0):
        return 1.0
    raise ValueError(f"position_sign must be 'correct' (s_x=-1) or 'paper' (s_x=+1), got {position_sign!r}")


def sghmc_stationary_covariance(eta: float, u: float, gamma: float, *,
                                position_sign: Literal["correct", "paper"] | float = "correct",
                                temperature: float = 1.0, drop_cross_covariance: bool = False,
                                extra_variance: tuple[float, float] = (0.0, 0.0), curvature: float = 1.0,
                                grad_noise_var: float = 0.0, n_steps: int | None = None) -> np.ndarray:
    """(P7–P9) Stationary 2×2 covariance of (x, v) for the SGHMC integrator (H1) on U = c·x²/2.

    Solves the discrete Lyapunov equation ``Σ = AΣAᵀ + Q`` with
    ``A = [[1 + s_x·c_xg·c, c_xv], [−c_v·c, a]]`` (c = ``curvature``, 1 in the spec)
    and ``Q = T·[[Σ_x, Σ_xv], [Σ_xv, Σ_v]] + diag(q_x, q_v)``.

    * ``position_sign``: ``"correct"`` (s_x = −1, exact integration; spec default)
      or ``"paper"`` (s_x = +1 as printed in LP-SGHMC eqs. 3, 5, 6, 8 and the code).
    * ``drop_cross_covariance``: set Σ_xv = 0, as VC SGHMCLP-L (H4) does when both
      Q^vc calls are in branch 1 (P8).
    * ``extra_variance = (q_x, q_v)``: mean stochastic-rounding variances added by
      naive SGHMCLP-L (H3) (P9; ≈ Δ²/6 each when moves span many cells).

    * ``grad_noise_var``: variance v_g of white, state-independent, mean-zero noise
      added to the gradient (gradient noise s², and for SGHMCLP-F (H2) the rounding
      variances of Q_W and Q_G, ≈ Δ²/6 + E σ²_SR(sζ; Δ_G)); it enters as
      ``v_g·b bᵀ`` with ``b = (s_x·c_xg, −c_v)`` (spec §5.8 P7 remark on (H2)).
    * ``n_steps``: if given, return the covariance at step k = n_steps from
      (x_0, v_0) = (0, 0) (iterating Σ_{k+1} = AΣ_kAᵀ + Q) instead of the
      stationary one; no stability requirement then.

    Check values (spec §5.8, (η, u, γ) = (0.09, 2, 3)): P7 Var_x 1.0309 / 1.4400,
    Var_v 2.0614 / 2.2227 (correct / paper).  Uses
    ``scipy.linalg.solve_discrete_lyapunov``; raises ``ValueError`` if A is not
    stable (spectral radius ≥ 1), where no stationary law exists.  Returns a
    (2, 2) float64 array.  No randomness.
    """
    co = sghmc_coefficients(eta, u, gamma)
    sx = _sign(position_sign)
    k = None if n_steps is None else count("n_steps", n_steps, 0)
    t = _spos("temperature", temperature)
    c = _spos("curvature", curvature)
    qx, qv = (float(v) for v in extra_variance)
    if qx < 0 or qv < 0 or not (math.isfinite(qx) and math.isfinite(qv)):
        raise ValueError(f"extra_variance must be two finite non-negative numbers, got {extra_variance!r}")
    A = np.array([[1.0 + sx * co.c_xg * c, co.c_xv], [-co.c_v * c, co.a]])
    vg = _spos("grad_noise_var", grad_noise_var, allow_zero=True)
    sxv = 0.0 if drop_cross_covariance else co.sigma_xv
    b = np.array([sx * co.c_xg, -co.c_v])
    Q = t * np.array([[co.sigma_x, sxv], [sxv, co.sigma_v]]) + np.diag([qx, qv]) + vg * np.outer(b, b)
    if k is not None:
        S = np.zeros((2, 2))
        for _ in range(k):
            S = A @ S @ A.T + Q
        return 0.5 * (S + S.T)
    rho = max(abs(np.linalg.eigvals(A)))
    if rho >= 1.0:
        raise ValueError(
            f"SGHMC iteration is unstable (spectral radius {rho:.4g} >= 1) at eta={eta!r}, u={u!r}, "
            f"gamma={gamma!r}, position_sign={position_sign!r}"
        )
    S = solve_discrete_lyapunov(A, Q)
    return 0.5 * (S + S.T)


def sghmc_spectral_radius(eta: float, u: float, gamma: float, *,
                          position_sign: Literal["correct", "paper"] | float = "correct",
                          curvature: float = 1.0) -> float:
    """Spectral radius ρ of the (H1) iteration matrix A on U = c·x²/2; memory decays like ρ^k."""
    co = sghmc_coefficients(eta, u, gamma)
    sx = _sign(position_sign)
    c = _spos("curvature", curvature)
    A = np.array([[1.0 + sx * co.c_xg * c, co.c_xv], [-co.c_v * c, co.a]])
    return float(max(abs(np.linalg.eigvals(A))))


class SGHMCVariance(NamedTuple):
    """Stationary (or step-k) position and velocity variances of an SGHMC chain."""

    var_x: float
    var_v: float


def sghmc_variance(eta: float, u: float, gamma: float, *,
                   position_sign: Literal["correct", "paper"] | float = "correct",
                   temperature: float = 1.0) -> SGHMCVariance:
    """(P7) Stationary (Var_x, Var_v) of full-precision SGHMC (H1), exact gradient, U = x²/2.

    Check: (0.09, 2, 3) gives (1.0309, 2.0614) correct sign, (1.4400, 2.2227) paper sign.
    Target: Var_x = T, Var_v = uT.
    """
    S = sghmc_stationary_covariance(eta, u, gamma, position_sign=position_sign, temperature=temperature)
    return SGHMCVariance(float(S[0, 0]), float(S[1, 1]))


def sghmc_variance_expansion(eta: float, u: float, gamma: float, *,
                             position_sign: Literal["correct", "paper"] | float = "correct") -> SGHMCVariance:
    """(P7) Leading-order η expansions (T = 1).

    correct sign: Var_x = 1 + uη/(2γ), Var_v = u(1 + uη/(2γ));
    paper sign:   Var_x = 1 + η(γ + 3u/(2γ)), Var_v = u(1 + 3uη/(2γ)).
    """
    e, u, g = _spos("eta", eta), _spos("u", u), _spos("gamma", gamma)
    if _sign(position_sign) < 0:
        return SGHMCVariance(1 + u * e / (2 * g), u * (1 + u * e / (2 * g)))
    return SGHMCVariance(1 + e * (g + 1.5 * u / g), u * (1 + 1.5 * u * e / g))


def sghmc_vc_variance(eta: float, u: float, gamma: float, *,
                      position_sign: Literal["correct", "paper"] | float = "correct",
                      temperature: float = 1.0) -> SGHMCVariance:
    """(P8) VC SGHMCLP-L (H4) with both Q^vc calls in branch 1: (H1) with Σ_xv dropped.

    Valid when Σ_x > Δ²/4 and Σ_v > Δ²/4.  Check: (0.09, 2, 3) gives
    (0.8238, 2.0603) correct sign, (1.1484, 2.1887) paper sign.
    """
    S = sghmc_stationary_covariance(
        eta, u, gamma, position_sign=position_sign, temperature=temperature, drop_cross_covariance=True
    )
    return SGHMCVariance(float(S[0, 0]), float(S[1, 1]))


def sghmc_vc_variance_expansion(eta: float, u: float, gamma: float, *,
                                position_sign: Literal["correct", "paper"] | float = "correct") -> float:
    """(P8) Leading order Var_x: correct 1 + η(u/(2γ) − γ); paper 1 + 3uη/(2γ)."""
    e, u, g = _spos("eta", eta), _spos("u", u), _spos("gamma", gamma)
    if _sign(position_sign) < 0:
        return 1 + e * (u / (2 * g) - g)
    return 1 + 1.5 * u * e / g


def sghmc_lp_l_variance(eta: float, u: float, gamma: float, *, q_x: float | None = None, q_v: float | None = None,
                        delta: float | None = None, position_sign: Literal["correct", "paper"] | float = "correct",
                        temperature: float = 1.0) -> SGHMCVariance:
    """(P9) Naive SGHMCLP-L (H3): Lyapunov solution with Q + diag(q_x, q_v).

    Give the measured mean SR variances ``q_x``, ``q_v`` or ``delta`` to use
    q_x = q_v = Δ²/6 (moves spanning many cells).  Check: (0.09, 2, 3), Δ = 1/16
    gives Var_x 1.0383 (correct) / 1.4500 (paper).
    """
    if delta is not None:
        q = _spos("delta", delta) ** 2 / 6.0
        q_x = q if q_x is None else q_x
        q_v = q if q_v is None else q_v
    if q_x is None or q_v is None:
        raise ValueError("give q_x and q_v, or delta (for q = delta**2/6)")
    S = sghmc_stationary_covariance(
        eta, u, gamma, position_sign=position_sign, temperature=temperature, extra_variance=(q_x, q_v)
    )
    return SGHMCVariance(float(S[0, 0]), float(S[1, 1]))


def sghmc_lp_l_variance_sensitivity(eta: float, u: float, gamma: float) -> tuple[float, float]:
    """(P9) Leading-order sensitivities (∂Var_x/∂q_x, ∂Var_x/∂q_v) = ((γ/(2u) + 1/(2γ))/η, 1/(2γuη))."""
    e, u, g = _spos("eta", eta), _spos("u", u), _spos("gamma", gamma)
    return ((g / (2 * u) + 1 / (2 * g)) / e, 1 / (2 * g * u * e))


# --------------------------------------------------------------------------- utilities


def gaussian_w2_1d(var: npt.ArrayLike, target_var: npt.ArrayLike = 1.0) -> float | np.ndarray:
    """W2 between N(0, var) and N(0, target_var): ``|√var − √target_var|`` (spec §5.7). Vectorised."""
    v = _pos("var", var, allow_zero=True)
    t = _pos("target_var", target_var, allow_zero=True)
    return _out(np.abs(np.sqrt(v) - np.sqrt(t)))


def peak_density(var: npt.ArrayLike) -> float | np.ndarray:
    """Peak density ``1/√(2π·Var)`` of a centred Gaussian approximation (spec §5.8 P3). Vectorised."""
    v = _pos("var", var)
    return _out(1.0 / np.sqrt(2 * np.pi * v))
