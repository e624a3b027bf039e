"""Stationary moments of the SGLD family on the 1-D standard Gaussian (ALGORITHMS.md §5.8, P0-P6).

Setting of §5.8: U = θ²/2, T = 1, ∇Ũ = θ + sζ, fixed-point stochastic rounding.
Each check runs many independent chains started from (an approximation of) the
predicted stationary law, discards a burn-in, and compares the chains'
time-averaged θ² with the prediction using the independent-chain standard error
(sampler_stats.py; |z| < 5).  Every check is paired with a mutation run (a
deliberately wrong variant, the mutation targets of §5.8) that the same check
must reject (|z| > 5).
"""

from __future__ import annotations

import numpy as np
import pytest

import refimpl
from refimpl.formats import FixedPoint
from sampler_stats import Z_TOL, seed, chain_second_moments, sr_var, sr_var_gaussian, z_score, use_spec_vc_clip
from theory import predictions as P

F3 = FixedPoint(8, 3)  # Δ = 1/8, the LP-SGLD toy format (§6.1)


def _x0(n, var, s0):
    return np.random.default_rng(s0).normal(0.0, np.sqrt(var), size=(n, 1))


def _stats(method, eta, n_chains, n_steps, burn_in, x0, s0, **kw):
    return refimpl.sample(method, "gaussian", n_chains=n_chains, n_steps=n_steps, step_size=eta, seed=seed(s0),
                          x0=x0, burn_in=burn_in, keep="stats", **kw)


# ----------------------------------------------------------------------------------- P1
@pytest.mark.parametrize("s", [0.0, 1.0])
def test_sgld_stationary_variance_p1(s):
    """(S1) on N(0,1): Var = (2 + ηs²)/(2 − η); s = 0 gives exactly 1/(1 − η/2)."""
    eta = 0.2
    pred = P.sgld_variance(eta, s)
    if s == 0.0:
        assert pred == pytest.approx(1.0 / (1.0 - eta / 2), rel=1e-15)
    n = 10_000
    st = _stats("sgld", eta, n, 300, 0, _x0(n, pred, seed(11)), 1, grad_noise=s)
    z, m, se = z_score(chain_second_moments(st), pred)
    assert abs(z) < Z_TOL, (m, se, pred)
    # the check resolves the O(η) discretisation term: the continuous-time answer is rejected
    assert abs((m - 1.0) / se) > Z_TOL


def test_sgld_p1_rejects_miscaled_noise():
    """Mutation: injected variance 3% too large (as a wrong √(2η) factor would give) is rejected."""
    eta = 0.2
    pred = P.sgld_variance(eta, 0.0)
    n = 10_000
    st = _stats("sgld", eta, n, 300, 0, _x0(n, pred, seed(11)), 1, temperature=1.03)
    z, m, se = z_score(chain_second_moments(st), pred)
    assert abs(z) > Z_TOL, (m, se, pred)


# ----------------------------------------------------------------------------------- P2
def test_sgld_lp_f_p2_and_rejects_unquantized_evaluation():
    """(S4) Var = (2 + η(s² + E σ²_SR(θ; Δ_W)))/(2 − η) (Q_G = identity); mutation: ∇ at θ (FP SGLD).

    Δ_W = 1 (FixedPoint(8, 0)), η = 0.5, s = 0: the exact P0 value uses the
    measured E σ²_SR(θ; Δ_W) = E p(1−p) (θ continuous), ≈ 1/6.
    """
    eta, fmt = 0.5, FixedPoint(8, 0)
    n = 10_000
    x0 = _x0(n, 1.39, seed(3))
    out = refimpl.sample("sgld_lp_f", "gaussian", n_chains=n, n_steps=600, step_size=eta, seed=seed(2), x0=x0,
                         fmt=fmt, grad_fmt="none", burn_in=100, thin=5)
    th = out[:, :, 0]
    # per chain: θ² and the exact conditional variance w = 2η + η²σ²_SR(θ; 1); (P0): E θ² = E w/(η(2−η))
    stat = (th**2 - (2 * eta + eta**2 * sr_var(th, 1.0)) / (eta * (2 - eta))).mean(axis=0)
    z, m, se = z_score(stat, 0.0)
    assert abs(z) < Z_TOL, (m, se)
    pred = P.sgld_lp_f_variance(eta, 0.0, float(sr_var(th, 1.0).mean()))
    assert pred > P.sgld_variance(eta) + 0.05  # the LP-F bias is resolved at this η
    # mutation: evaluating the gradient at θ instead of Q_W(θ) is plain SGLD
    fp = refimpl.sample("sgld", "gaussian", n_chains=n, n_steps=600, step_size=eta, seed=seed(2), x0=x0, burn_in=100, thin=5)
    z_bad, _, _ = z_score((fp[:, :, 0] ** 2).mean(axis=0), pred)
    assert abs(z_bad) > Z_TOL


# ----------------------------------------------------------------------------------- P3
@pytest.mark.parametrize("eta, regime", [(0.01, "A"), (3e-4, "B")])
def test_sgld_lp_l_overdispersion_p3(eta, regime):
    """(S5) naive SGLDLP-L is over-dispersed as (P3) predicts, in both regimes (Δ = 1/8, s = 0.1).

    Exact check: the one-step identity behind (P0), E[θ'² | θ] = (1−η)²θ² + w(θ),
    w = 2η + η²s² + E σ²_SR(pre | θ) (closed form for pre ~ N((1−η)θ, 2η + η²s²)),
    summed over consecutive steps (a martingale: exact for any initial law).
    Stationary check: the time average of θ² against the regime formula, whose
    own accuracy the spec states as about 1%: tolerance 5σ_MC + 1.5%·prediction.
    Mutation: the same checks reject VC SGLDLP-L (VC substituted for naive).
    """
    s, delta = 0.1, 0.125
    assert P.sgld_lp_l_regime(eta, delta) == regime
    pred = float(P.sgld_lp_l_variance(eta, delta))
    n = 4000
    steps = 1500 if regime == "A" else 3000
    x0 = _x0(n, pred, seed(5))
    kw = dict(n_chains=n, n_steps=steps, step_size=eta, seed=seed(4), x0=x0, fmt=F3, grad_fmt="none", grad_noise=s)
    sd = np.sqrt(2 * eta + eta**2 * s**2)

    def exact_stat(th):
        tot = np.zeros(th.shape[1])
        for k in range(th.shape[0] - 1):  # row by row: bounded memory
            w = 2 * eta + eta**2 * s**2 + sr_var_gaussian((1 - eta) * th[k], sd, delta)
            tot += th[k + 1] ** 2 - (1 - eta) ** 2 * th[k] ** 2 - w
        return tot / (th.shape[0] - 1) / (eta * (2 - eta))

    for method, ok in (("sgld_lp_l", True), ("sgld_vc", False)):
        out = refimpl.sample(method, "gaussian", burn_in=steps - 300, **kw)[:, :, 0]
        z, m, se = z_score(exact_stat(out), 0.0)
        assert (abs(z) < Z_TOL) == ok, (method, m, se)
        z2, m2, se2 = z_score((out**2).mean(axis=0), pred)
        if ok:
            assert abs(m2 - pred) < Z_TOL * se2 + 0.015 * pred, (m2, se2, pred)
        else:
            assert abs(m2 - pred) > Z_TOL * se2 + 0.015 * pred, (m2, se2, pred)


# ----------------------------------------------------------------------------------- P4
@pytest.mark.parametrize("eta", [0.01, 3e-4])
def test_sgld_vc_matches_variance_p4(eta):
    """(S6) VC SGLDLP-L has Var = (2 + ηs²)/(2 − η) for every η (Q_G = identity; |g|Δ ≤ 2 holds).

    Mutations (§5.8 list): naive rounding substituted for VC (sgld_lp_l), and a VC
    that silently falls back to Q^s(μ) in branch 2 (the published BFP/float NaN
    path, §7.2 item 1), which is exactly SGDLP-L; at η = 0.01 (branch 1, where
    that fallback is not taken) only the naive mutation applies.
    """
    s = 0.1
    pred = P.sgld_vc_variance(eta, s)
    n = 4000 if eta > 1e-3 else 6000
    steps = 800 if eta > 1e-3 else 2500
    x0 = _x0(n, pred, seed(6))
    kw = dict(n_chains=n, n_steps=steps, step_size=eta, seed=seed(7), x0=x0, fmt=F3, grad_fmt="none", grad_noise=s,
              burn_in=steps // 4)
    st = refimpl.sample("sgld_vc", "gaussian", keep="stats", **kw)
    z, m, se = z_score(chain_second_moments(st), pred)
    assert abs(z) < Z_TOL, (m, se, pred)
    mutants = ["sgld_lp_l"] + (["sgd_lp_l"] if 2 * eta <= 0.125**2 / 4 else [])
    for mutant in mutants:
        bad = refimpl.sample(mutant, "gaussian", keep="stats", **kw)
        zb, mb, seb = z_score(chain_second_moments(bad), pred)
        assert abs(zb) > Z_TOL, (mutant, mb, seb, pred)


# ----------------------------------------------------------------------------------- P5 / P6
def test_sgd_lp_f_floor_p5():
    """(S2) with s > 0: E θ² = η(s² + E σ²_SR(θ; Δ_W))/(2 − η) -> 0 with η (Q_G = identity).

    Exact P0 form with the measured E σ²_SR(θ; Δ_W); mutation: SGDLP-L (whose floor
    does not shrink) is rejected.
    """
    eta, s = 0.05, 0.5
    fmt = FixedPoint(8, 3)
    n = 4000
    kw = dict(n_chains=n, n_steps=800, step_size=eta, seed=seed(8), fmt=fmt, grad_fmt="none", grad_noise=s,
              burn_in=400, thin=4, x0=_x0(n, 0.01, seed(9)))
    th = refimpl.sample("sgd_lp_f", "gaussian", **kw)[:, :, 0]
    w = eta**2 * (s**2 + sr_var(th, 0.125))
    z, m, se = z_score((th**2 - w / (eta * (2 - eta))).mean(axis=0), 0.0)
    assert abs(z) < Z_TOL, (m, se)
    bad = refimpl.sample("sgd_lp_l", "gaussian", **kw)[:, :, 0]
    wb = eta**2 * (s**2 + sr_var(bad, 0.125))
    zb, _, _ = z_score((bad**2 - wb / (eta * (2 - eta))).mean(axis=0), 0.0)
    assert abs(zb) > Z_TOL


def test_sgd_lp_f_exact_gradient_enters_eta_delta_band():
    """(P5), s = 0: the iterate enters (−ηΔ, ηΔ) and never leaves (deterministic claim, every chain)."""
    eta, delta = 0.1, 0.125
    out = refimpl.sample("sgd_lp_f", "gaussian", n_chains=500, n_steps=400, step_size=eta, seed=seed(1),
                         fmt=F3, x0=np.linspace(-3, 3, 500)[:, None])
    assert np.all(np.abs(out[200:]) < eta * delta)


@pytest.mark.parametrize("eta", [1e-2, 2e-3])
def test_sgd_lp_l_floor_p6(eta):
    """(S3): E θ² is the η-independent birth-death value (P6) (Δ = 1/8, s = 0.1: 0.00637).

    Chains start from the exact stationary law (theory.predictions.sgd_lp_l_stationary_law);
    mutation: SGDLP-F, whose floor shrinks with η, is rejected.
    """
    delta, s = 0.125, 0.1
    pred = P.sgd_lp_l_second_moment(delta, s)
    assert pred == pytest.approx(0.00637, abs=5e-5)
    grid, probs = P.sgd_lp_l_stationary_law(delta, s)
    n = 4000
    rng = np.random.default_rng(seed(10))
    x0 = rng.choice(grid, size=(n, 1), p=probs / probs.sum())
    kw = dict(n_chains=n, n_steps=int(20 / eta) // 2, step_size=eta, seed=seed(11), fmt=F3, grad_noise=s, x0=x0,
              burn_in=int(2 / eta))
    st = refimpl.sample("sgd_lp_l", "gaussian", keep="stats", **kw)
    z, m, se = z_score(chain_second_moments(st), pred)
    assert abs(z) < Z_TOL, (m, se, pred)
    bad = refimpl.sample("sgd_lp_f", "gaussian", keep="stats", **kw)
    zb, mb, _ = z_score(chain_second_moments(bad), pred)
    assert abs(zb) > Z_TOL, mb


@pytest.mark.slow
@pytest.mark.parametrize("eta, table", [(1e-3, 2.23), (1e-4, 7.05)])
def test_lp_sgld_toy_table_p3_long(eta, table):
    """The §5.8 P3 table at the LP-SGLD toy settings (Δ = 1/8, s = 0.1, Q_G = Q_W): naive Var ≈ 2.23 / 7.05,
    VC ≈ 1.0 (P4), long runs in streaming-statistics mode.  Tolerance: 5σ_MC + 1.5 % (formula accuracy ~1 %)."""
    s = 0.1
    pred = float(P.sgld_lp_l_variance(eta, 0.125, boundary_slack=0.03))
    assert pred == pytest.approx(table, rel=0.01)
    n = 4000
    steps = int(6 / eta)
    kw = dict(n_chains=n, n_steps=steps, step_size=eta, seed=seed(21), fmt=F3, grad_noise=s, burn_in=steps // 3,
              keep="stats")
    st = refimpl.sample("sgld_lp_l", "gaussian", x0=_x0(n, pred, seed(22)), **kw)
    z, m, se = z_score(chain_second_moments(st), pred)
    assert abs(m - pred) < Z_TOL * se + 0.015 * pred, (m, se, pred)
    vc = refimpl.sample("sgld_vc", "gaussian", x0=_x0(n, 1.0, seed(23)), **kw)
    pred_vc = P.sgld_vc_variance(eta, s)  # Q_G error: θ on grid and s·ζ rounding adds ≈ E σ²_SR(sζ) ≤ Δ²/4
    z, m, se = z_score(chain_second_moments(vc), pred_vc)
    assert abs(m - pred_vc) < Z_TOL * se + eta * 0.125**2 / 4, (m, se, pred_vc)


# ----------------------------------------------------------------------------------- P0 with BFP / float VC
def _vc_p0_statistic(th, eta, fmt, rng):
    """Per-chain P0 statistic for VC SGLD on U = θ²/2 with a relative (BFP/float) grid.

    Given θ (on the grid: Q_G(θ) = θ exactly), μ = (1 − η)θ and θ' = Q^vc(μ, 2η) with
    E[θ' | θ] = μ exactly (escape re-rounding is unbiased; no saturation or branch 2 is
    reachable here: V = 0.1 > Δ²/4 needs |θ| < 64), so in stationarity
    E θ² = E w(μ)/(η(2 − η)), w(μ) = E[(Q^vc(μ) − μ)² | μ] = V + E[p(1 − p)Δ'²; escape].
    w is estimated without bias by one fresh Q^vc draw per kept sample; the statistic
    θ_t² − (Q^vc(μ_t) − μ_t)²/(η(2 − η)) averaged over a chain's kept samples has mean 0,
    and chains are independent (fresh draws independent too), so the independent-chain
    SE of sampler_stats is exact.  BFP: every kept sample is its own block (dim=0 on a
    column), as each 1-D chain is one block in the sampler.
    """
    mu = (1.0 - eta) * th
    f = refimpl.BlockFloatingPoint(fmt.wl, dim=0) if isinstance(fmt, refimpl.BlockFloatingPoint) else fmt
    q = refimpl.vc_quantize(mu.reshape(-1, 1), 2 * eta, f, rng).reshape(th.shape)
    w = (q - mu) ** 2
    return (th**2 - w / (eta * (2 - eta))).mean(axis=0), w.mean() - 2 * eta


@pytest.mark.parametrize("fmt", [refimpl.BlockFloatingPoint(8), refimpl.FloatingPoint(5, 4)], ids=["bfp8", "e5m4"])
def test_sgld_vc_relative_grid_p0_and_spec_clip_collapse(fmt, monkeypatch):
    """VC SGLD with BFP / qtorch-float weights from x0 = 1 (the reported collapse setting, η = 0.05):
    E θ² = E w/(η(2 − η)) with the measured escape excess (|z| < 5); E θ² ≈ 1.03.
    Mutation: the spec's clip of branch-1 results to μ's block (chains can only shrink
    their exponent and collapse to 0, E θ² ≈ 1e-5) is rejected by the same check."""
    eta, n = 0.05, 4000
    kw = dict(n_chains=n, n_steps=400, step_size=eta, seed=seed(31), fmt=fmt, x0=1.0, burn_in=100, thin=4)
    th = refimpl.sample("sgld_vc", "gaussian", **kw)[:, :, 0]
    stat, excess = _vc_p0_statistic(th, eta, fmt, np.random.default_rng(seed(32)))
    z, m, se = z_score(stat, 0.0)
    assert abs(z) < Z_TOL, (m, se, excess)
    assert abs((th**2).mean() - P.sgld_vc_variance(eta)) < 0.05  # sanity: ≈ 2/(2 − η) = 1.026 (+ small excess)
    use_spec_vc_clip(monkeypatch)
    bad = refimpl.sample("sgld_vc", "gaussian", **kw)[:, :, 0]
    assert (bad**2).mean() < 0.1  # the reported collapse
    zb, mb, _ = z_score(_vc_p0_statistic(bad, eta, fmt, np.random.default_rng(seed(32)))[0], 0.0)
    assert abs(zb) > Z_TOL, mb
