"""The convergence theorems as code: one function per theorem (spec §5.1–§5.5).

* LP-SGLD, strongly log-concave (Zhang, Wilson & De Sa, ICML 2022, Theorems 1–3;
  spec (T0)–(T3), tagged [paper†]): explicit constants, so the functions return the
  numeric W2 bound, term by term (:class:`SGLDBound`).
* LP-SGHMC, strongly log-concave (Wang, Chen, Song & Zhang, TMLR 2024, Theorems 4–6,
  App. A; spec §5.5): the explicit step size and iteration count that the theorem
  prescribes for accuracy ε (:class:`StepAndIterations`); the W2 statement itself is
  Õ(·) and has no numeric form.
* LP-SGHMC / LP-SGLD, non-log-concave (TMLR Theorems 1–3 and 7–9, Table 1, App. B;
  spec §5.4): only rates with hidden constants (which contain 1/λ* or 1/μ*, themselves
  exp(O(d))), so the functions return the rate's exponents (:class:`Rate`).  The
  step-size condition of spec §5.3, which is explicit, is :func:`sghmc_step_size_condition`.

No bound is implemented for QSGLD, CTLD or AskewSGD (spec §5.6).

Every numeric function is vectorised over its parameters with NumPy broadcasting and
returns float64 scalars or arrays.  No randomness anywhere in this module.  The
paper's α (LP-SGLD step size) is ``eta`` here; the paper's P (dimension) is ``d``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from theory._checks import real_array, real_scalar

__all__ = [
    "SGLDBound",
    "lpsgld_base",
    "lpsgld_thm1",
    "lpsgld_thm2",
    "lpsgld_thm3",
    "lpsgld_thm3_A",
    "StepAndIterations",
    "lpsghmc_thm4",
    "lpsghmc_thm5",
    "lpsghmc_thm6",
    "Rate",
    "lpsghmc_thm1",
    "lpsghmc_thm2",
    "lpsghmc_thm3",
    "lpsgld_thm7",
    "lpsgld_thm8",
    "lpsgld_thm9",
    "NONLOGCONCAVE_RATES",
    "sghmc_step_size_condition",
    "tuned_delta_exponent",
]


def _arr(name, value, *, allow_zero=True):
    a = real_array(name, value)
    bad = ~np.isfinite(a) | ((a < 0) if allow_zero else (a <= 0))
    if np.any(bad):
        raise ValueError(f"{name} must be finite and {'non-negative' if allow_zero else 'positive'}, got {value!r}")
    return a


def _out(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


# =========================================================================== LP-SGLD


class SGLDBound(NamedTuple):
    """Terms of an LP-SGLD W2 bound (spec (T0)–(T3)); ``total`` is their sum.

    * ``contraction``: (1 − ηm)^K·W2(μ_0, π), the forgotten initial error;
    * ``discretization``: 1.65·(M/m)·(ηd)^{1/2} (Dalalyan & Karagulyan 2019);
    * ``quantization_bias``: the min(Ψ·…, M·…) floor from evaluating ∇U at Q_W(θ);
    * ``variance``: the square-root term (gradient noise, quantization variance);
    * ``low_precision``: the extra ((1 − ηm)^K + 1)·… term of LP-L (0 for LP-F).
    """

    contraction: np.ndarray | float
    discretization: np.ndarray | float
    quantization_bias: np.ndarray | float
    variance: np.ndarray | float
    low_precision: np.ndarray | float

    @property
    def total(self) -> float | np.ndarray:
        """Sum of the five terms (the theorem's bound)."""
        return _out(
            np.asarray(self.contraction)
            + np.asarray(self.discretization)
            + np.asarray(self.quantization_bias)
            + np.asarray(self.variance)
            + np.asarray(self.low_precision)
        )


def _sgld_common(m, M, eta, K, d, W2_0):
    m = _arr("m", m, allow_zero=False)
    M = _arr("M", M, allow_zero=False)
    eta = _arr("eta", eta, allow_zero=False)
    K = _arr("K", K)
    d = _arr("d", d, allow_zero=False)
    W2_0 = _arr("W2_0", W2_0)
    if np.any(M < m):
        raise ValueError(f"M must be >= m (M is the Lipschitz constant of grad U), got M={M!r}, m={m!r}")
    limit = 2.0 / (m + M)
    if np.any(eta > limit * (1 + 1e-12)):
        raise ValueError(f"eta must satisfy eta <= 2/(m+M) (LP-SGLD assumption), got eta={eta!r}, 2/(m+M)={limit!r}")
    return m, M, eta, K, d, W2_0


def lpsgld_base(m: npt.ArrayLike, M: npt.ArrayLike, eta: npt.ArrayLike, K: npt.ArrayLike, d: npt.ArrayLike,
                W2_0: npt.ArrayLike) -> float | np.ndarray:
    """(T0) ``B(η, K) = (1 − ηm)^K·W2(μ_0, π) + 1.65·(M/m)·(ηd)^{1/2}``.

    Source: Zhang, Wilson & De Sa (ICML 2022), shared term of Theorems 1–3
    [paper†; spec §5.1 (T0)], from Dalalyan & Karagulyan (2019, Thm 4).
    Assumptions: U m-strongly convex, ∇U M-Lipschitz, η ≤ 2/(m + M), T = 1.
    Returns ``(contraction, discretization)``.  Vectorised.
    """
    m, M, eta, K, d, W2_0 = _sgld_common(m, M, eta, K, d, W2_0)
    contraction = np.abs(1.0 - eta * m) ** K * W2_0
    disc = 1.65 * (M / m) * np.sqrt(eta * d)
    return _out(contraction), _out(disc)


def lpsgld_thm1(m: npt.ArrayLike, M: npt.ArrayLike, Psi: npt.ArrayLike, kappa: npt.ArrayLike, d: npt.ArrayLike,
                eta: npt.ArrayLike, K: npt.ArrayLike, W2_0: npt.ArrayLike, Delta_W: npt.ArrayLike,
                Delta_G: npt.ArrayLike) -> SGLDBound:
    """Theorem 1 (SGLDLP-F, (S4)): W2 bound of spec (T1).

    ``W2(μ_K, π) ≤ B + min(ΨΔ_W²d/(4m), MΔ_W√d/(2m)) + √(((Δ_G² + M²Δ_W²)ηd + 4ηκ²)/(4m))``

    Source: Zhang, Wilson & De Sa, "Low-precision stochastic gradient Langevin
    dynamics", ICML 2022, Theorem 1 [paper†; spec §5.1 (T1)].
    Assumptions: U m-strongly convex; ∇U M-Lipschitz; Hessian Ψ-Lipschitz
    (spectral norm); E‖∇Ũ − ∇U‖² ≤ κ²; η ≤ 2/(m+M); T = 1; fixed point without
    clipping; Q_W, Q_G stochastic rounding with gaps Δ_W, Δ_G.
    Constants: 1.65 (from (T0)), 1/4, 1/2 as printed.  For quadratic U (Ψ = 0)
    the floor (η → 0, K → ∞) is 0.  Vectorised; returns :class:`SGLDBound`.
    """
    m, M, eta, K, d, W2_0 = _sgld_common(m, M, eta, K, d, W2_0)
    Psi, kappa = _arr("Psi", Psi), _arr("kappa", kappa)
    Dw, Dg = _arr("Delta_W", Delta_W), _arr("Delta_G", Delta_G)
    c, disc = lpsgld_base(m, M, eta, K, d, W2_0)
    bias = np.minimum(Psi * Dw**2 * d / (4 * m), M * Dw * np.sqrt(d) / (2 * m))
    var = np.sqrt(((Dg**2 + M**2 * Dw**2) * eta * d + 4 * eta * kappa**2) / (4 * m))
    zero = np.zeros(np.broadcast(c, disc, bias, var).shape)
    return SGLDBound(_out(c + zero), _out(disc + zero), _out(bias + zero), _out(var + zero), _out(zero))


def lpsgld_thm2(m: npt.ArrayLike, M: npt.ArrayLike, Psi: npt.ArrayLike, kappa: npt.ArrayLike, d: npt.ArrayLike,
                eta: npt.ArrayLike, K: npt.ArrayLike, W2_0: npt.ArrayLike, Delta_W: npt.ArrayLike,
                Delta_G: npt.ArrayLike) -> SGLDBound:
    """Theorem 2 (naive SGLDLP-L, (S5)): W2 bound of spec (T2).

    ``W2 ≤ B + min(ΨΔ_W²d/(4m), MΔ_W√d/(2m)) + √(((ηΔ_G² + η⁻¹Δ_W²)d + 4ηκ²)/(4m))
    + ((1 − ηm)^K + 1)·Δ_W√d/2``

    Source: Zhang, Wilson & De Sa (ICML 2022), Theorem 2 [paper†; spec §5.1 (T2)].
    Assumptions as :func:`lpsgld_thm1`.  The η⁻¹Δ_W² term grows like
    Δ_W√(d/(mη)) as η → 0 (the over-dispersion of naive LP-L).  Vectorised.
    """
    m, M, eta, K, d, W2_0 = _sgld_common(m, M, eta, K, d, W2_0)
    Psi, kappa = _arr("Psi", Psi), _arr("kappa", kappa)
    Dw, Dg = _arr("Delta_W", Delta_W), _arr("Delta_G", Delta_G)
    c, disc = lpsgld_base(m, M, eta, K, d, W2_0)
    bias = np.minimum(Psi * Dw**2 * d / (4 * m), M * Dw * np.sqrt(d) / (2 * m))
    var = np.sqrt(((eta * Dg**2 + Dw**2 / eta) * d + 4 * eta * kappa**2) / (4 * m))
    lp = (np.abs(1 - eta * m) ** K + 1) * Dw * np.sqrt(d) / 2
    z = np.zeros(np.broadcast(c, disc, bias, var, lp).shape)
    return SGLDBound(_out(c + z), _out(disc + z), _out(bias + z), _out(var + z), _out(lp + z))


def lpsgld_thm3_A(d: npt.ArrayLike, eta: npt.ArrayLike, Delta_W: npt.ArrayLike, G: npt.ArrayLike) -> float | np.ndarray:
    """The quantity A of Theorem 3 (spec (T3)); V_0 = Δ_W²/4.

    ``A = 5·V_0·d`` if 2η > V_0 (Q^vc branch 1), else ``max(2Δ_W·η·G, 4ηd)``.
    Vectorised.
    """
    d = _arr("d", d, allow_zero=False)
    eta = _arr("eta", eta, allow_zero=False)
    Dw = _arr("Delta_W", Delta_W)
    G = _arr("G", G)
    V0 = Dw**2 / 4
    return _out(np.where(2 * eta > V0, 5 * V0 * d, np.maximum(2 * Dw * eta * G, 4 * eta * d)))


def lpsgld_thm3(m: npt.ArrayLike, M: npt.ArrayLike, Psi: npt.ArrayLike, kappa: npt.ArrayLike, G: npt.ArrayLike,
                d: npt.ArrayLike, eta: npt.ArrayLike, K: npt.ArrayLike, W2_0: npt.ArrayLike, Delta_W: npt.ArrayLike,
                Delta_G: npt.ArrayLike) -> SGLDBound:
    """Theorem 3 (VC SGLDLP-L, (S6)): W2 bound of spec (T3).

    ``W2 ≤ B + min(Ψ·A/m, M·√A/m) + √((ηΔ_G²d + 4ηκ²)/(4m) + A/(ηm)) + ((1 − ηm)^K + 1)·√A``
    with A from :func:`lpsgld_thm3_A`.

    Source: Zhang, Wilson & De Sa (ICML 2022), Theorem 3 [paper†; spec §5.1 (T3)].
    Assumptions: those of :func:`lpsgld_thm1` plus E‖Q_G(∇Ũ(θ_k))‖_1 ≤ G (an L1
    norm, unlike LP-SGHMC's A5).  The bound stays bounded as η → 0 since A/η does.
    Vectorised.
    """
    m, M, eta, K, d, W2_0 = _sgld_common(m, M, eta, K, d, W2_0)
    Psi, kappa = _arr("Psi", Psi), _arr("kappa", kappa)
    Dw, Dg = _arr("Delta_W", Delta_W), _arr("Delta_G", Delta_G)
    A = np.asarray(lpsgld_thm3_A(d, eta, Dw, G))
    c, disc = lpsgld_base(m, M, eta, K, d, W2_0)
    bias = np.minimum(Psi * A / m, M * np.sqrt(A) / m)
    var = np.sqrt((eta * Dg**2 * d + 4 * eta * kappa**2) / (4 * m) + A / (eta * m))
    lp = (np.abs(1 - eta * m) ** K + 1) * np.sqrt(A)
    z = np.zeros(np.broadcast(c, disc, bias, var, lp).shape)
    return SGLDBound(_out(c + z), _out(disc + z), _out(bias + z), _out(var + z), _out(lp + z))


# =========================================================================== LP-SGHMC, strongly log-concave


class StepAndIterations(NamedTuple):
    """Explicit step size η and iteration count K a theorem prescribes for accuracy ε.

    ``w2_order`` is the theorem's (Õ) W2 statement as text; its constants are hidden.
    """

    eta: np.ndarray | float
    K: np.ndarray | float
    w2_order: str


def _slc(eps, m1, M, u, d, D, Delta, sigma):
    return (
        _arr("eps", eps, allow_zero=False),
        _arr("m1", m1, allow_zero=False),
        _arr("M", M, allow_zero=False),
        _arr("u", u, allow_zero=False),
        _arr("d", d, allow_zero=False),
        _arr("D", D),
        _arr("Delta", Delta),
        _arr("sigma", sigma),
    )


def _k_thm4(eps, kappa1, eta, m1, d, D):
    return kappa1 / eta * np.log(36 * (d / m1 + D**2) / eps)


def lpsghmc_thm4(eps: npt.ArrayLike, m1: npt.ArrayLike, M: npt.ArrayLike, u: npt.ArrayLike, d: npt.ArrayLike,
                 D: npt.ArrayLike, Delta: npt.ArrayLike, sigma: npt.ArrayLike) -> StepAndIterations:
    """Theorem 4 (SGHMCLP-F, (H2)), strongly log-concave: step size and iterations.

    ``η = min{ εκ1⁻¹/√((479232/5)(d/m1 + D²)), ε²/(1440κ1u²[(M² + 1)Δ²d/4 + σ²]) }``,
    ``K ≤ (κ1/η)·log(36(d/m1 + D²)/ε)``; then W2 ≤ Õ(ε + Δ).

    Source: Wang, Chen, Song & Zhang, "Enhancing low-precision sampling via
    stochastic gradient Hamiltonian Monte Carlo", TMLR 2024, Theorem 4 (App. A)
    [paper; spec §5.5].  Assumptions A1, A3, A4 (κ1 = M/m1), ‖x*‖² < D², x_0 = v_0 = 0.
    K does not vanish as Δ → 0 (Õ(ε⁻² log(1/ε)(Δ² + const)), spec [derived]).
    Vectorised.
    """
    eps, m1, M, u, d, D, Delta, sigma = _slc(eps, m1, M, u, d, D, Delta, sigma)
    k1 = M / m1
    eta = np.minimum(
        eps / k1 / np.sqrt(479232 / 5 * (d / m1 + D**2)),
        eps**2 / (1440 * k1 * u**2 * ((M**2 + 1) * Delta**2 * d / 4 + sigma**2)),
    )
    return StepAndIterations(_out(eta), _out(_k_thm4(eps, k1, eta, m1, d, D)), "O~(eps + Delta)")


def lpsghmc_thm5(eps: npt.ArrayLike, m1: npt.ArrayLike, M: npt.ArrayLike, u: npt.ArrayLike, d: npt.ArrayLike,
                 D: npt.ArrayLike, Delta: npt.ArrayLike, sigma: npt.ArrayLike) -> StepAndIterations:
    """Theorem 5 (naive SGHMCLP-L, (H3)), strongly log-concave.

    ``η = min{ εκ1⁻¹/√((663552/5)(d/m1 + D²)), ε²/(2880κ1u(Δ²d/4 + σ²)) }``, K as in
    Theorem 4; W2 = Õ(ε + Δ/ε) (over-dispersion).  Source: TMLR 2024 Theorem 5
    [paper; spec §5.5].  Assumptions as :func:`lpsghmc_thm4`.  Vectorised.
    """
    eps, m1, M, u, d, D, Delta, sigma = _slc(eps, m1, M, u, d, D, Delta, sigma)
    k1 = M / m1
    eta = np.minimum(
        eps / k1 / np.sqrt(663552 / 5 * (d / m1 + D**2)),
        eps**2 / (2880 * k1 * u * (Delta**2 * d / 4 + sigma**2)),
    )
    return StepAndIterations(_out(eta), _out(_k_thm4(eps, k1, eta, m1, d, D)), "O~(eps + Delta/eps)")


def lpsghmc_thm6(eps: npt.ArrayLike, m1: npt.ArrayLike, M: npt.ArrayLike, u: npt.ArrayLike, d: npt.ArrayLike,
                 D: npt.ArrayLike, Delta: npt.ArrayLike, sigma: npt.ArrayLike) -> StepAndIterations:
    """Theorem 6 (VC SGHMCLP-L, (H4)), strongly log-concave.

    ``η = min{ ε/((479232/5)(d/m1 + D²)κ1), ε²/(90u²Δ²dκ1 + 360u²σ²κ1) }`` (note: no
    square root in the first term, as printed); W2 = Õ(ε + √Δ).  Source: TMLR 2024
    Theorem 6 [paper; spec §5.5].  The spec records no iteration count for this
    theorem, so ``K`` is NaN rather than a guess.  Vectorised.
    """
    eps, m1, M, u, d, D, Delta, sigma = _slc(eps, m1, M, u, d, D, Delta, sigma)
    k1 = M / m1
    eta = np.minimum(
        eps / (479232 / 5 * (d / m1 + D**2) * k1),
        eps**2 / (90 * u**2 * Delta**2 * d * k1 + 360 * u**2 * sigma**2 * k1),
    )
    return StepAndIterations(_out(eta), _out(np.full(np.shape(eta), np.nan)), "O~(eps + sqrt(Delta))")


# =========================================================================== non-log-concave rates


class Rate(NamedTuple):
    """Rate of a non-log-concave theorem (constants hidden; spec §5.4).

    * ``delta_exponent``: p in the tuned W2 rate Õ(Δ^p) (e = Euler's number,
      from log x ≤ x^{1/e});
    * ``iterations_eps_exponent``: K = Õ(ε^{−q}) (log factors dropped), q given;
    * ``step_eps_exponent``: η = Õ(ε^{r}), r given;
    * ``w2_order``: the theorem's W2 statement;
    * ``source``: paper and theorem.
    """

    delta_exponent: float
    iterations_eps_exponent: float
    step_eps_exponent: float
    w2_order: str
    source: str


_E = math.e

#: All non-log-concave rates of the TMLR paper (Table 1, §3, App. B), keyed by theorem.
NONLOGCONCAVE_RATES: dict[str, Rate] = {
    "lpsghmc_thm1": Rate(_E / (1 + 2 * _E), 2.0, 2.0, "O~(eps + A~ sqrt(log 1/eps))", "TMLR 2024 Thm 1, SGHMCLP-F (H2)"),
    "lpsghmc_thm2": Rate(
        _E / (3 + 6 * _E),
        2.0,
        2.0,
        "O~(eps + sqrt(max(s^2,s) log 1/eps) + log^{3/2}(1/eps) sqrt(Delta)/eps^2)",
        "TMLR 2024 Thm 2, SGHMCLP-L (H3)",
    ),
    "lpsghmc_thm3": Rate(
        _E / (2 + 4 * _E),
        2.0,
        2.0,
        "O~(eps + sqrt(max(s^2,s) log 1/eps) + log(1/eps) sqrt(Delta)/eps)  [x-marginal]",
        "TMLR 2024 Thm 3, VC SGHMCLP-L (H4), needs A5",
    ),
    "lpsgld_thm7": Rate(_E / (2 + 2 * _E), 4.0, 4.0, "O~(eps + A~ log 1/eps)", "TMLR 2024 Thm 7 (App. B), SGLDLP-F (S4)"),
    "lpsgld_thm8": Rate(
        _E / (10 * (1 + _E)),
        4.0,
        4.0,
        "O~(eps + sqrt(max(s^2,s) log 1/eps) + log^5(1/eps) sqrt(Delta)/eps^4)",
        "TMLR 2024 Thm 8 (App. B), SGLDLP-L (S5)",
    ),
    "lpsgld_thm9": Rate(
        _E / (6 * (1 + _E)),
        4.0,
        4.0,
        "O~(eps + sqrt(max(s^2,s) log 1/eps) + log^3(1/eps) sqrt(Delta)/eps^2)",
        "TMLR 2024 Thm 9 (App. B), VC SGLDLP-L (S6)",
    ),
}


def _rate_fn(key):
    r = NONLOGCONCAVE_RATES[key]

    def fn() -> Rate:
        return r

    fn.__name__ = key
    fn.__doc__ = (
        f"{r.source}, non-log-concave (assumptions A1–A3, x_0 = v_0 = 0; spec §5.4).\n\n"
        f"W2 statement: {r.w2_order}.  Tuned rate Õ(Δ^{r.delta_exponent:.4f}); "
        f"K = Õ(ε^-{r.iterations_eps_exponent:g}), η = Õ(ε^{r.step_eps_exponent:g}).\n"
        "The hidden constants contain 1/μ* (SGHMC) or 1/λ* (SGLD), which are exp(O(d)),\n"
        "so only the exponents are returned (spec §5.7).  Returns :class:`Rate`."
    )
    return fn


lpsghmc_thm1 = _rate_fn("lpsghmc_thm1")
lpsghmc_thm2 = _rate_fn("lpsghmc_thm2")
lpsghmc_thm3 = _rate_fn("lpsghmc_thm3")
lpsgld_thm7 = _rate_fn("lpsgld_thm7")
lpsgld_thm8 = _rate_fn("lpsgld_thm8")
lpsgld_thm9 = _rate_fn("lpsgld_thm9")


def tuned_delta_exponent(power_of_log: float, eps_power: float, k: float = 0.5) -> float:
    """Exponent p of the tuned rate Õ(Δ^p) for a bound ε + log^a(1/ε)·Δ^k/ε^b.

    Using log x ≤ x^{1/e}, the term is ≤ Δ^k·ε^{−(b + a/e)}; balancing against ε
    gives ε = Δ^{k/(1 + b + a/e)}, i.e. p = k·e/(e(1 + b) + a).  With k = 1/2
    (Ã → (Δ²d)^{1/4} as Δ, σ → 0) it reproduces every exponent of spec §5.4:
    Thm 1 (a, b) = (1/2, 0), Thm 2 (3/2, 2), Thm 3 (1, 1), Thm 7 (1, 0),
    Thm 8 (5, 4), Thm 9 (3, 2).  Scalars: a = ``power_of_log`` >= 0, b = ``eps_power`` >= 0, k > 0.
    """
    a = real_scalar("power_of_log", power_of_log)
    b = real_scalar("eps_power", eps_power)
    k_ = real_scalar("k", k)
    for name, value, ok in (("power_of_log", a, a >= 0), ("eps_power", b, b >= 0), ("k", k_, k_ > 0)):
        if not (math.isfinite(value) and ok):
            raise ValueError(f"{name} must be finite and {'> 0' if name == 'k' else '>= 0'}, got {value!r}")
    return k_ * _E / (_E * (1 + b) + a)


def sghmc_step_size_condition(M: npt.ArrayLike, u: npt.ArrayLike, gamma: npt.ArrayLike, b: npt.ArrayLike,
                              m2: npt.ArrayLike, d: npt.ArrayLike) -> float | np.ndarray:
    """Largest η allowed by the non-log-concave step-size condition (spec §5.3).

    ``η ≤ min{ γ/(4(8Mu + uγ + 22γ²)), √(4u²/(4Mu + 3γ²)), 6γbu/((4Mu + 3γ²)d),
    1/(8γ), γm2/(12(21u + γ)M²), 8(γ² + 2u)/((20u + γ)γ) }``, together with
    γ² ≤ 4Mu (``ValueError`` if violated).  Source: TMLR 2024, condition of
    Theorems 1–3 and Lemma 10 [paper; spec §5.3].  Assumption constants: M (A1),
    m2 and b (A2, dissipativity).  Vectorised.
    """
    M = _arr("M", M, allow_zero=False)
    u = _arr("u", u, allow_zero=False)
    g = _arr("gamma", gamma, allow_zero=False)
    b = _arr("b", b, allow_zero=False)
    m2 = _arr("m2", m2, allow_zero=False)
    d = _arr("d", d, allow_zero=False)
    if np.any(g**2 > 4 * M * u):
        raise ValueError(f"gamma must satisfy gamma**2 <= 4*M*u, got gamma={gamma!r}, M={M!r}, u={u!r}")
    terms = [
        g / (4 * (8 * M * u + u * g + 22 * g**2)),
        np.sqrt(4 * u**2 / (4 * M * u + 3 * g**2)),
        6 * g * b * u / ((4 * M * u + 3 * g**2) * d),
        1 / (8 * g),
        g * m2 / (12 * (21 * u + g) * M**2),
        8 * (g**2 + 2 * u) / ((20 * u + g) * g),
    ]
    return _out(np.minimum.reduce(np.broadcast_arrays(*terms)))
