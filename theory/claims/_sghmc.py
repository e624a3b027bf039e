"""The SGHMC Gaussian setting shared by ``sghmc-moments`` and ``sghmc-fig4``: (η, u, γ) = (0.09, 2, 3)."""

from __future__ import annotations

import math

import numpy as np

from theory import predictions as P
from theory.experiments import law_at_step, law_path

_SGHMC_SETTING = dict(eta=0.09, u=2.0, gamma=3.0)


def _sghmc_prediction(method, sign, delta, s, n_steps):
    e, u, g = _SGHMC_SETTING["eta"], _SGHMC_SETTING["u"], _SGHMC_SETTING["gamma"]
    kw = dict(position_sign=sign, n_steps=n_steps)
    if method == "sghmc":
        return P.sghmc_stationary_covariance(e, u, g, grad_noise_var=s**2, **kw)
    if method == "sghmc_lp_f":
        vg = s**2 + delta**2 / 6 + P.mean_sr_variance(delta, s)
        return P.sghmc_stationary_covariance(e, u, g, grad_noise_var=vg, **kw)
    if method == "sghmc_vc":
        return P.sghmc_stationary_covariance(e, u, g, drop_cross_covariance=True, grad_noise_var=s**2 + P.mean_sr_variance(delta, s), **kw)
    if method == "sghmc_lp_l":
        q = delta**2 / 6
        return P.sghmc_stationary_covariance(e, u, g, extra_variance=(q, q), grad_noise_var=s**2 + P.mean_sr_variance(delta, s), **kw)
    raise ValueError(method)


def _sghmc_kwargs(sign, fmt, s=0.0):
    kw = dict(friction=_SGHMC_SETTING["gamma"], inverse_mass=_SGHMC_SETTING["u"], grad_noise=s)
    if sign == "paper":
        kw["position_sign"] = "paper"  # refimpl option name (formerly sghmc_position_sign)
    if fmt is not None:
        kw.update(fmt=fmt, grad_fmt=fmt)
    return kw


def _sghmc_draws(ctx, method, sign, fmt, n_chains, n_steps, seed, s=0.0):
    return law_at_step(ctx.sampler, method, "gaussian", n_chains=n_chains, n_steps=n_steps, step_size=_SGHMC_SETTING["eta"],
                       seed=seed, **_sghmc_kwargs(sign, fmt, s))


def _sghmc_path(ctx, method, sign, fmt, n_chains, steps, seed, s=0.0):
    """Positions at the step counts ``steps`` from the same chains: array (len(steps), n_chains)."""
    return law_path(ctx.sampler, method, "gaussian", steps=steps, n_chains=n_chains, step_size=_SGHMC_SETTING["eta"],
                    seed=seed, **_sghmc_kwargs(sign, fmt, s))[..., 0]


def _sghmc_lag_autocovariance(sign, S, lag):
    """Cov(x_K, x_{K+lag}) = (A^lag Σ_K)_xx for the (H1) linear recursion (every variant's rounding is unbiased,
    so E[z_{k+1} | z_k] = A z_k for all of them); ``S``: the 2×2 covariance of (x, v) at step K."""
    e, u, g = _SGHMC_SETTING["eta"], _SGHMC_SETTING["u"], _SGHMC_SETTING["gamma"]
    co = P.sghmc_coefficients(e, u, g)
    sx = -1.0 if sign == "correct" else 1.0
    A = np.array([[1.0 + sx * co.c_xg, co.c_xv], [-co.c_v, co.a]])
    return float((np.linalg.matrix_power(A, int(lag)) @ S)[0, 0])


def _sghmc_steps():
    rho = max(P.sghmc_spectral_radius(0.09, 2, 3, position_sign=sg) for sg in ("correct", "paper"))
    return int(math.ceil(math.log(1e-5) / math.log(rho)))  # ρ^k ≤ 1e-5: the start is forgotten

