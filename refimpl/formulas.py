"""Scalar formulas shared by refimpl (jitted) and torchport (plain Python): defined once, imported.

Each function is plain Python on floats with Numba-compatible code.  refimpl
compiles it with ``numba.njit`` where a jitted kernel calls it; torchport calls
the same function object.  Both therefore evaluate the same operations in the
same order, which is what float64 bit parity between the packages needs.

* :func:`sghmc_coefficients` -- (H0), LP-SGHMC (Wang et al., TMLR 2024) eq. 3 / Cheng et al. 2018;
  :data:`SGHMC_MIN_FRICTION`, the smallest friction for which they are finite.
* :func:`sghmc_velocity_sd` -- √(uT), the velocity's stationary standard deviation (momentum resampling).
* :func:`decay_factor` -- the decay schedule (S7), ruqizhang/low-precision-sgld bnn/train.py.
* :func:`ctld_coupling`, :func:`ctld_coupling_derivative` -- g(α), g'(α) of (C4) [reconstruction].
* :func:`qsgld_resolution` -- Q_p(t_k) of (QS2) [reconstruction].

No randomness; no imports beyond :mod:`math`.
"""

from __future__ import annotations

import math

__all__ = ["SGHMC_MIN_FRICTION", "qsgld_resolution", "ctld_coupling", "ctld_coupling_derivative", "decay_factor",
           "sghmc_coefficients", "sghmc_velocity_sd"]

#: Smallest friction γ accepted by the SGHMC family: 2^−511 ≈ 1.49e−154, where γ² is the smallest normal
#: float64.  c_xg and Σ_x of (H0) divide by γ²: below this γ² is subnormal (fewer significant bits) and
#: below ≈ 1.2e−162 it is 0, and 0/0 = NaN (``--friction 1e-300`` ended in "non-finite gradient").
#: Accuracy depends on γη, not on γ alone (docs/sghmc.md, "Friction range").
SGHMC_MIN_FRICTION = 2.0 ** -511


def sghmc_coefficients(step_size: float, friction: float, inverse_mass: float,
                       temperature: float) -> tuple[float, float, float, float, float, float, float]:
    """(H0) per-step coefficients: ``(a, c_v, c_xv, c_xg, TΣ_v, TΣ_x, TΣ_xv)``.

    With h = γη and a = e^{−h}:  c_v = u(1 − a)/γ,  c_xv = (1 − a)/γ,
    c_xg = u(h + a − 1)/γ²,  Σ_v = u(1 − a²),  Σ_x = u(2h + 4a − a² − 3)/γ²,
    Σ_xv = u(1 − a)²/γ, the covariances multiplied by the temperature T.
    Evaluated with expm1 (accurate at small γη): 2h + 4a − a² − 3 = 2(h + (a−1)) − (a−1)².
    """
    gamma, eta, u, temp = friction, step_size, inverse_mass, temperature
    h = gamma * eta
    em1 = math.expm1(-h)  # a − 1
    a = 1.0 + em1
    c_v = -u * em1 / gamma
    c_xv = -em1 / gamma
    c_xg = u * (h + em1) / (gamma * gamma)
    sig_v = -u * temp * math.expm1(-2.0 * h)
    sig_x = u * temp * (2.0 * (h + em1) - em1 * em1) / (gamma * gamma)
    sig_xv = u * temp * em1 * em1 / gamma
    return a, c_v, c_xv, c_xg, sig_v, sig_x, sig_xv


def sghmc_velocity_sd(inverse_mass: float, temperature: float) -> float:
    """√(u·T): the standard deviation of each velocity coordinate under the stationary law
    ∝ exp(−U(x)/T − ‖v‖²/(2uT)) of the SGHMC dynamics (H0)/(H1); the fresh velocity of momentum
    resampling is √(uT)·z, z ~ N(0, 1) (docs/sghmc.md, "Momentum resampling")."""
    return math.sqrt(inverse_mass * temperature)


def cyclical_step_size(k: int, period: int, eta0: float) -> float:
    """η_k of the cyclical schedule (S8): (η₀/2)(cos(π·r) + 1), r = (k mod P)/P, P steps per cycle.

    Zhang et al., "Cyclical stochastic gradient MCMC for Bayesian deep learning", ICLR 2020,
    eq. (1); the one definition refimpl's schedules and loop and torchport's CyclicalSchedule use."""
    r = (k % period) / period
    return 0.5 * eta0 * (math.cos(math.pi * r) + 1.0)


def decay_factor(t: float) -> float:
    """f(t) of (S7) at t = epoch/epochs: 1 (t ≤ 0.5), 1 − 0.99(t − 0.5)/0.4 (t ≤ 0.9), 0.01 after."""
    if t <= 0.5:
        return 1.0
    if t <= 0.9:
        return 1.0 - 0.99 * (t - 0.5) / 0.4
    return 0.01


def ctld_coupling(a: float, d1: float, d2: float, gmin: float) -> float:
    """g(α) of (C4): 1 on |α| ≤ δ₁, g_min beyond δ₂, 1 − (1 − g_min)·S(s) between, S(s) = s²(3 − 2s)."""
    x = abs(a)
    if x <= d1:
        return 1.0
    if x >= d2:
        return gmin
    s = (x - d1) / (d2 - d1)
    return 1.0 - (1.0 - gmin) * s * s * (3.0 - 2.0 * s)


def ctld_coupling_derivative(a: float, d1: float, d2: float, gmin: float) -> float:
    """g'(α) of (C4): −(1 − g_min)·6s(1 − s)/(δ₂ − δ₁)·sign(α) between δ₁ and δ₂, 0 elsewhere."""
    x = abs(a)
    if x <= d1 or x >= d2:
        return 0.0
    s = (x - d1) / (d2 - d1)
    d = -(1.0 - gmin) * 6.0 * s * (1.0 - s) / (d2 - d1)
    return d if a > 0 else -d


def qsgld_resolution(step: int, eta: float, temperature: float, rounding_id: int, q0: float, base: float,
                     schedule_id: int, rate: float, steps_per_epoch: int, printed: bool, c_q: float) -> float:
    """Q_p(t_k) = q0·base^{h(t)} of (QS2) for the 0-based step k [reconstruction, ALGORITHMS §3.12].

    ``q0 <= 0`` picks T_eff(Q_p(0)) = T: 1/√(24ηT) (nearest, uniform: ``rounding_id`` 0, 2),
    1/√(12ηT) (stochastic, 1), c_q/(2T) (surrogate, 3).  Epoch t_e = k // B, minibatch
    τ = k mod B (B = ``steps_per_epoch``); t = t_e + τ/B, or t_e + τ when ``printed``;
    h = 0 (``schedule_id`` 0, constant), rate·t (1, linear) or rate·log(1 + t) (2, log).
    """
    if q0 <= 0.0:
        if rounding_id == 1:
            q0 = 1.0 / math.sqrt(12.0 * eta * temperature)
        elif rounding_id == 3:
            q0 = c_q / (2.0 * temperature)
        else:
            q0 = 1.0 / math.sqrt(24.0 * eta * temperature)
    if schedule_id == 0:
        return q0
    te = step // steps_per_epoch
    tau = step - te * steps_per_epoch
    t = float(te + tau) if printed else te + tau / steps_per_epoch
    h = rate * t if schedule_id == 1 else rate * math.log1p(t)
    return q0 * base ** h
