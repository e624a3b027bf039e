"""Stationary moments of the SGHMC family on the 1-D standard Gaussian (ALGORITHMS.md §5.8, P7-P9),
and mode weights on the two-mode mixture (§6.2).

Predictions: theory.predictions.sghmc_stationary_covariance (the 2x2 discrete
Lyapunov equation of §5.8).  Setting: the LP-SGHMC Gaussian (η, u, γ) = (0.09, 2, 3),
Δ = 1/16 (FixedPoint(8, 4)).  Checks use independent-chain standard errors
(sampler_stats.py, |z| < 5); every check is paired with a mutation that it must
reject (|z| > 5): the flipped SGHMC sign (P7), naive rounding substituted for VC
(P8), VC substituted for naive (P9).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

import refimpl
from refimpl.formats import FixedPoint
from refimpl.targets import mixture
from sampler_stats import Z_TOL, seed, chain_second_moments, z_score, use_spec_vc_clip
from theory import predictions as P

ETA, U, GAMMA = 0.09, 2.0, 3.0
F4 = FixedPoint(8, 4)
DELTA = 1.0 / 16


def _pred(sign, **kw):
    return P.sghmc_stationary_covariance(ETA, U, GAMMA, position_sign=sign, **kw)


def _run(method, sign, n_chains, n_steps, s0, **kw):
    return refimpl.sample(method, "gaussian", n_chains=n_chains, n_steps=n_steps, step_size=ETA, seed=seed(s0),
                          friction=GAMMA, inverse_mass=U, burn_in=100, keep="stats", position_sign=sign, **kw)


def _velocity_snapshots(method, sign, n_chains, n_snap, gap, s0, **kw):
    """(n_snap, n_chains) velocities every ``gap`` steps after a 100-step burn-in (resume keeps the bits)."""
    base = dict(n_chains=n_chains, step_size=ETA, friction=GAMMA, inverse_mass=U, keep="last",
                position_sign=sign, return_state=True, **kw)
    _, st = refimpl.sample(method, "gaussian", n_steps=100, seed=seed(s0), **base)
    vs = []
    for _ in range(n_snap):
        _, st = refimpl.sample(method, "gaussian", n_steps=gap, seed=0, resume=st, **base)
        d = (st.packed.shape[1] - 1) // 2
        vs.append(st.packed[:, d] * st.packed[:, 2 * d])
    return np.array(vs)


@pytest.mark.parametrize("sign", ["correct", "paper"])
def test_sghmc_p7_position_variance_both_signs(sign):
    """(H1) exact gradient: Var_x = 1.0309 (s_x = −1) / 1.4400 (s_x = +1); the other sign is rejected."""
    pred = _pred(sign)[0, 0]
    assert pred == pytest.approx({"correct": 1.0309, "paper": 1.4400}[sign], abs=5e-5)
    st = _run("sghmc", sign, 4000, 600, 1)
    z, m, se = z_score(chain_second_moments(st), pred)
    assert abs(z) < Z_TOL, (m, se, pred)
    other = "paper" if sign == "correct" else "correct"
    bad = _run("sghmc", other, 4000, 600, 1)
    zb, mb, _ = z_score(chain_second_moments(bad), pred)
    assert abs(zb) > Z_TOL, mb


def test_sghmc_p7_velocity_and_cross_moments():
    """(H1) Var_v = 2.0614 (correct sign) and Cov(x, v) from the Lyapunov solution; paper sign rejected."""
    cov = _pred("correct")
    assert cov[1, 1] == pytest.approx(2.0614, abs=5e-5)
    v = _velocity_snapshots("sghmc", "correct", 4000, 12, 10, 3)
    z, m, se = z_score((v**2).mean(axis=0), cov[1, 1])
    assert abs(z) < Z_TOL, (m, se)
    vb = _velocity_snapshots("sghmc", "paper", 4000, 12, 10, 3)
    zb, mb, _ = z_score((vb**2).mean(axis=0), cov[1, 1])
    assert abs(zb) > Z_TOL, mb


def test_sghmc_lp_f_p7_with_rounding_noise():
    """(H2): the P7 law with extra white gradient noise of variance E σ²_SR(x; Δ) ≈ Δ²/6 (Q_G(Q_W(x)) = Q_W(x))."""
    pred = _pred("correct", grad_noise_var=DELTA**2 / 6)[0, 0]
    st = _run("sghmc_lp_f", "correct", 4000, 600, 5, fmt=F4)
    z, m, se = z_score(chain_second_moments(st), pred)
    assert abs(z) < Z_TOL, (m, se, pred)
    bad = _run("sghmc_lp_f", "paper", 4000, 600, 5, fmt=F4)
    assert abs(z_score(chain_second_moments(bad), pred)[0]) > Z_TOL


@pytest.mark.parametrize("sign", ["correct", "paper"])
def test_sghmc_vc_underdispersion_p8(sign):
    """(H4) drops Σ_xv: Var_x = 0.8238 (correct) / 1.1484 (paper); naive rounding instead of VC is rejected."""
    pred = _pred(sign, drop_cross_covariance=True)[0, 0]
    assert pred == pytest.approx({"correct": 0.8238, "paper": 1.1484}[sign], abs=5e-5)
    st = _run("sghmc_vc", sign, 4000, 600, 7, fmt=F4)
    z, m, se = z_score(chain_second_moments(st), pred)
    assert abs(z) < Z_TOL, (m, se, pred)
    bad = _run("sghmc_lp_l", sign, 4000, 600, 7, fmt=F4)
    zb, mb, _ = z_score(chain_second_moments(bad), pred)
    assert abs(zb) > Z_TOL, mb


@pytest.mark.parametrize("sign", ["correct", "paper"])
def test_sghmc_lp_l_p9(sign):
    """(H3) naive: Lyapunov law with q_x = q_v = Δ²/6: Var_x = 1.0383 / 1.4500; VC instead of naive is rejected."""
    q = DELTA**2 / 6
    pred = _pred(sign, extra_variance=(q, q))[0, 0]
    assert pred == pytest.approx({"correct": 1.0383, "paper": 1.4500}[sign], abs=5e-5)
    st = _run("sghmc_lp_l", sign, 4000, 600, 9, fmt=F4)
    z, m, se = z_score(chain_second_moments(st), pred)
    assert abs(z) < Z_TOL, (m, se, pred)
    bad = _run("sghmc_vc", sign, 4000, 600, 9, fmt=F4)
    assert abs(z_score(chain_second_moments(bad), pred)[0]) > Z_TOL


@pytest.mark.slow
def test_sghmc_lp_l_p9_resolves_rounding_excess():
    """(P9) the naive excess over FP SGHMC (+0.0074 at the correct sign) is resolved: FP sghmc is rejected."""
    q = DELTA**2 / 6
    pred = _pred("correct", extra_variance=(q, q))[0, 0]
    st = _run("sghmc_lp_l", "correct", 40_000, 2100, 11, fmt=F4)
    z, m, se = z_score(chain_second_moments(st), pred)
    assert abs(z) < Z_TOL, (m, se, pred)
    bad = _run("sghmc", "correct", 40_000, 2100, 11)
    assert abs(z_score(chain_second_moments(bad), pred)[0]) > Z_TOL


# ----------------------------------------------------------------------------------- mixture
@pytest.mark.parametrize("method", ["sgld", "sghmc"])
def test_mixture_mode_weights(method):
    """Mode weights of w₊e^{−2(x−1)²} + w₋e^{−2(x+1)²} with (w₊, w₋) = (2/3, 1/3) (1-D).

    Exact P(x > 0) = w₊Φ(2) + w₋(1 − Φ(2)) (modes N(±1, 1/4)).  Chains start from
    the target; the SGLD/SGHMC discretisation bias at η = 0.01 (SGLD) is far below
    the MC tolerance.  Mutation: the same sampler at temperature 2 (a wrong noise
    scale), whose tempered weights are rejected.
    """
    tgt = mixture(1, weights=(2 / 3, 1 / 3))
    p_pos = (2 / 3) * norm.cdf(2.0) + (1 / 3) * norm.sf(2.0)
    n = 4000
    rng = np.random.default_rng(seed(12))
    x0 = np.where(rng.random(n) < 2 / 3, 1.0, -1.0) + 0.5 * rng.standard_normal(n)
    kw = dict(n_chains=n, n_steps=1500, seed=seed(13), x0=x0[:, None], burn_in=0, thin=5)
    if method == "sgld":
        kw.update(step_size=0.01)
    else:
        kw.update(step_size=0.05, friction=2.0, inverse_mass=1.0)
    frac = (refimpl.sample(method, tgt, **kw)[:, :, 0] > 0).mean(axis=0)
    z, m, se = z_score(frac, p_pos)
    assert abs(z) < Z_TOL, (m, se, p_pos)
    hot = (refimpl.sample(method, tgt, temperature=2.0, **kw)[:, :, 0] > 0).mean(axis=0)
    zb, mb, _ = z_score(hot, p_pos)
    assert abs(zb) > Z_TOL, mb


# ----------------------------------------------------------------------------------- P8 with BFP / float VC
@pytest.mark.parametrize("fmt", [refimpl.BlockFloatingPoint(8), refimpl.FloatingPoint(5, 4)], ids=["bfp8", "e5m4"])
def test_sghmc_vc_relative_grid_p8_and_spec_clip_collapse(fmt, monkeypatch):
    """VC SGHMC (H4) with BFP / qtorch-float storage from x0 = 1: Var_x = the P8 Lyapunov value with
    the measured mean escape excesses (q_x, q_v) as ``extra_variance``.

    Q^vc is unbiased (escape re-rounding is stochastic rounding) and its conditional
    variance is Σ + excess(μ); the excess enters (P8) as extra white noise of mean
    (q_x, q_v) = E[(Q^vc(μ) − μ)²] − Σ, estimated from (x, v) snapshots of the stationary
    chains with R fresh Q^vc draws each (the excess depends on μ only through the grid, so
    averaging over the stationary law is what the Lyapunov equation needs).  Var_x is
    linear in (q_x, q_v): pred = pred0 + A·q, so the estimate's SE propagates exactly; the
    tolerance is Z·(SE of the chains' Var_x + SE of pred).  Mutation: the spec's clip of
    branch-1 results to μ's block (collapse to 0, Var_x ≈ 0.005) is rejected.
    """
    from refimpl.sghmc import coefficients

    c = coefficients(ETA, GAMMA, U)
    kw = dict(fmt=fmt, x0=1.0)
    st = _run("sghmc_vc", "correct", 4000, 600, 41, **kw)
    z0, m, se = z_score(chain_second_moments(st), 0.0)
    # (x, v) snapshots every 10 steps after a 100-step burn-in (resume keeps the bits)
    base = dict(n_chains=2000, step_size=ETA, friction=GAMMA, inverse_mass=U, keep="last",
                position_sign="correct", return_state=True, fmt=fmt)
    _, s1 = refimpl.sample("sghmc_vc", "gaussian", n_steps=100, seed=seed(42), x0=1.0, **base)
    xs, vs = [], []
    for _ in range(6):
        _, s1 = refimpl.sample("sghmc_vc", "gaussian", n_steps=10, seed=0, resume=s1, **base)
        xs.append(s1.packed[:, 0].copy())
        vs.append(s1.packed[:, 1] * s1.packed[:, 2])
    x, v = np.array(xs).reshape(-1), np.array(vs).reshape(-1)
    f = refimpl.BlockFloatingPoint(fmt.wl, dim=0) if isinstance(fmt, refimpl.BlockFloatingPoint) else fmt
    rng = np.random.default_rng(seed(43))
    R = 8
    q, q_se = [], []
    for mu, sig in ((x + c["c_xv"] * v - c["c_xg"] * x, c["sigma_x"]), (c["a"] * v - c["c_v"] * x, c["sigma_v"])):
        mus = np.repeat(mu, R)[:, None]
        w = ((refimpl.vc_quantize(mus, sig, f, rng) - mus) ** 2).reshape(-1, R).mean(axis=1) - sig
        q.append(w.mean())
        q_se.append(w.std() / np.sqrt(w.size))  # per-snapshot averages; snapshots of one chain are
        # correlated, so inflate by the number of snapshots per chain (conservative): x6 samples -> sqrt(6)
    q_se = [s * np.sqrt(6) for s in q_se]
    pred0 = _pred("correct", drop_cross_covariance=True)[0, 0]
    ax = _pred("correct", drop_cross_covariance=True, extra_variance=(1.0, 0.0))[0, 0] - pred0
    av = _pred("correct", drop_cross_covariance=True, extra_variance=(0.0, 1.0))[0, 0] - pred0
    pred = pred0 + ax * q[0] + av * q[1]
    se_pred = np.hypot(ax * q_se[0], av * q_se[1])
    assert abs(m - pred) < Z_TOL * (se + se_pred), (m, se, pred, se_pred, q)
    use_spec_vc_clip(monkeypatch)
    bad = _run("sghmc_vc", "correct", 4000, 600, 41, **kw)
    _, mb, _ = z_score(chain_second_moments(bad), 0.0)
    assert abs(mb - pred) > Z_TOL * (se + se_pred), mb


