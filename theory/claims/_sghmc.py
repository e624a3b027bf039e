"""The SGHMC Gaussian setting shared by ``sghmc-moments`` and ``sghmc-fig4``: (η, u, γ) = (0.09, 2, 3)."""

from __future__ import annotations

import math

from theory import predictions as P
from theory.experiments import law_at_step

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


def _sghmc_draws(ctx, method, sign, fmt, n_chains, n_steps, seed, s=0.0):
    kw = dict(friction=_SGHMC_SETTING["gamma"], inverse_mass=_SGHMC_SETTING["u"], grad_noise=s)
    if sign == "paper":
        kw["sghmc_position_sign"] = "paper"
    if fmt is not None:
        kw.update(fmt=fmt, grad_fmt=fmt)
    return law_at_step(ctx.sampler, method, "gaussian", n_chains=n_chains, n_steps=n_steps, step_size=_SGHMC_SETTING["eta"], seed=seed, **kw)


def _sghmc_steps():
    rho = max(P.sghmc_spectral_radius(0.09, 2, 3, position_sign=sg) for sg in ("correct", "paper"))
    return int(math.ceil(math.log(1e-5) / math.log(rho)))  # ρ^k ≤ 1e-5: the start is forgotten

