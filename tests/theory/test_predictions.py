"""Spec §5.8 predictions (P0–P9): the published check values, to the printed digits."""

from __future__ import annotations

import numpy as np
import pytest

from theory import predictions as P


def test_p0_identity_and_vectorised():
    assert P.stationary_second_moment(0.2, 0.1) == pytest.approx(0.2 / (0.1 * 1.9))
    out = P.stationary_second_moment(np.array([0.2, 0.02]), np.array([0.1, 0.01]))
    assert out.shape == (2,)
    # SGLD: w = 2η + η²s² reproduces P1.
    eta, s = 0.05, 0.3
    assert P.stationary_second_moment(2 * eta + eta**2 * s**2, eta) == pytest.approx(P.sgld_variance(eta, s))


def test_p1_sgld():
    assert P.sgld_variance(0.1) == pytest.approx(2 / 1.9)
    assert round(P.sgld_variance(0.1), 4) == 1.0526
    # expansion agrees to O(η²)
    for eta in (1e-2, 1e-3):
        assert abs(P.sgld_variance(eta, 0.1) - P.sgld_variance_expansion(eta, 0.1)) < 2 * eta**2
    assert P.sgld_variance(0.1, temperature=2.0) == pytest.approx(4 / 1.9)


def test_p2_lp_f_example():
    # spec: s = 0, Δ_G = Δ_W = 1, η = 0.1: Var = 2.01667/1.9 = 1.0614
    assert round(P.sgld_lp_f_variance_approx(0.1, 1.0), 4) == 1.0614
    assert P.sgld_lp_f_variance_approx(1e-6, 1 / 8, s=0.1) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "eta, expected, ndigits, formula",
    [
        (2e-3, 1.65, 2, "A"),
        (1e-3, 2.23, 2, "B"),
        (3e-4, 4.07, 2, "B"),
        (1e-4, 7.05, 2, "B"),
    ],
)
def test_p3_table(eta, expected, ndigits, formula):
    f = P.sgld_lp_l_variance_regime_a if formula == "A" else P.sgld_lp_l_variance_regime_b
    v = f(eta, 1 / 8)
    # regime A "≈ 1.65" is printed to 2 digits; formula A gives 1.6527.
    assert round(v, ndigits) == expected


def test_p3_peaks_and_regimes():
    assert round(P.peak_density(P.sgld_lp_l_variance_regime_b(1e-3, 1 / 8)), 3) == 0.267
    assert round(P.peak_density(P.sgld_lp_l_variance_regime_b(1e-4, 1 / 8)), 3) == 0.150
    assert P.sgld_lp_l_regime(2e-3, 1 / 8) == "A"
    assert P.sgld_lp_l_regime(1e-4, 1 / 8) == "B"
    assert P.sgld_lp_l_regime(1e-3, 1 / 8) == "between"
    with pytest.raises(ValueError, match="between"):
        P.sgld_lp_l_variance(1.2e-3, 1 / 8)
    assert P.sgld_lp_l_variance(1e-3, 1 / 8, boundary_slack=0.05) == pytest.approx(2.2302, abs=1e-4)
    # exact identity with E χ = 2/3 recovers formula A up to O(η) terms
    eta, d = 0.01, 1 / 8
    exact = P.sgld_lp_l_variance_exact(eta, d**2 / 6)
    assert exact == pytest.approx((2 * eta + d**2 / 6) / (eta * (2 - eta)))
    assert exact == pytest.approx(P.sgld_lp_l_variance_regime_a(eta, d), rel=1e-12)


def test_p4_vc():
    # spec: Δ = 1/8, s = 0.1, η = 1e-4: VC gives ≈ 1.0001
    assert round(P.sgld_vc_variance(1e-4, 0.1), 4) == 1.0001
    assert P.sgld_vc_variance(1e-2, 0.1, mean_excess=1e-3) > P.sgld_vc_variance(1e-2, 0.1)


def test_p5_sgd_lp_f():
    assert P.sgd_lp_f_variance(1e-3, 0.1) == pytest.approx(1e-3 * 0.01 / (2 - 1e-3))
    assert P.sgd_lp_f_variance(1e-4, 0.1) < P.sgd_lp_f_variance(1e-3, 0.1)


def test_p6_sgd_lp_l():
    assert round(P.sgd_lp_l_second_moment(1 / 8, 0.1), 5) == 0.00637
    # limits: s ≪ Δ → √(2/π) sΔ ; s ≫ Δ → sΔ/√(2π)
    assert P.sgd_lp_l_second_moment(1.0, 0.001) == pytest.approx(np.sqrt(2 / np.pi) * 0.001, rel=0.01)
    assert P.sgd_lp_l_second_moment(0.001, 1.0) == pytest.approx(0.001 / np.sqrt(2 * np.pi), rel=0.01)
    grid, p = P.sgd_lp_l_stationary_law(1 / 8, 0.0)
    assert grid.tolist() == [0.0] and p.tolist() == [1.0]
    grid, p = P.sgd_lp_l_stationary_law(1 / 8, 0.1)
    assert p.sum() == pytest.approx(1.0) and np.allclose(p, p[::-1])
    v = P.sgd_lp_l_second_moment(np.array([1 / 8, 1 / 16]), 0.1)
    assert v.shape == (2,) and v[1] < v[0]


def test_p7_sghmc_sign():
    c = P.sghmc_variance(0.09, 2, 3, position_sign="correct")
    p = P.sghmc_variance(0.09, 2, 3, position_sign="paper")
    assert round(c.var_x, 4) == 1.0309 and round(p.var_x, 4) == 1.4400
    assert round(c.var_v, 4) == 2.0614 and round(p.var_v, 4) == 2.2227
    # temperature scales the whole covariance
    c2 = P.sghmc_variance(0.09, 2, 3, temperature=0.5)
    assert c2.var_x == pytest.approx(0.5 * c.var_x)


@pytest.mark.parametrize("sign", ["correct", "paper"])
def test_p7_p8_expansions(sign):
    eta = 1e-3
    ex = P.sghmc_variance(eta, 2, 3, position_sign=sign)
    ap = P.sghmc_variance_expansion(eta, 2, 3, position_sign=sign)
    assert abs(ex.var_x - ap.var_x) < 50 * eta**2
    assert abs(ex.var_v - ap.var_v) < 50 * eta**2
    vc = P.sghmc_vc_variance(eta, 2, 3, position_sign=sign).var_x
    assert abs(vc - P.sghmc_vc_variance_expansion(eta, 2, 3, position_sign=sign)) < 50 * eta**2


def test_p8_vc_dropped_covariance():
    c = P.sghmc_vc_variance(0.09, 2, 3, position_sign="correct")
    p = P.sghmc_vc_variance(0.09, 2, 3, position_sign="paper")
    assert round(c.var_x, 4) == 0.8238 and round(p.var_x, 4) == 1.1484
    assert round(c.var_v, 4) == 2.0603 and round(p.var_v, 4) == 2.1887
    co = P.sghmc_coefficients(0.09, 2, 3)
    assert round(co.sigma_x, 5) == 0.00239 and round(co.sigma_v, 3) == 0.835


def test_p9_naive_sghmc_and_w2_ratio():
    c = P.sghmc_lp_l_variance(0.09, 2, 3, delta=1 / 16, position_sign="correct")
    p = P.sghmc_lp_l_variance(0.09, 2, 3, delta=1 / 16, position_sign="paper")
    assert round(c.var_x, 4) == 1.0383 and round(p.var_x, 4) == 1.4500
    # Fig. 4 consequence: paper ≈ 0.0716/0.2042 ≈ 0.35, correct ≈ 0.0924/0.0190 ≈ 4.9
    w = P.gaussian_w2_1d
    rp = w(P.sghmc_vc_variance(0.09, 2, 3, position_sign="paper").var_x) / w(p.var_x)
    rc = w(P.sghmc_vc_variance(0.09, 2, 3, position_sign="correct").var_x) / w(c.var_x)
    assert round(rp, 2) == 0.35 and round(rc, 1) == 4.9
    # sensitivities agree with a finite difference to leading order in η
    eta, q = 1e-3, 1e-7
    base = P.sghmc_variance(eta, 2, 3).var_x
    dx = (P.sghmc_lp_l_variance(eta, 2, 3, q_x=q, q_v=0).var_x - base) / q
    dv = (P.sghmc_lp_l_variance(eta, 2, 3, q_x=0, q_v=q).var_x - base) / q
    sx, sv = P.sghmc_lp_l_variance_sensitivity(eta, 2, 3)
    assert dx == pytest.approx(sx, rel=0.02) and dv == pytest.approx(sv, rel=0.02)


def test_bad_input():
    with pytest.raises(ValueError, match="eta"):
        P.sgld_variance(-0.1)
    with pytest.raises(ValueError, match="eta"):
        P.sgld_variance(2.5)
    with pytest.raises(ValueError, match="position_sign"):
        P.sghmc_variance(0.09, 2, 3, position_sign="+")
    with pytest.raises(ValueError, match="unstable"):
        P.sghmc_variance(5.0, 50, 0.1, position_sign="paper")


def test_mean_sr_variance_against_quadrature():
    from scipy.integrate import quad

    def direct(delta, s, c):
        def f(z):
            p = np.mod((c + s * z) / delta, 1.0)
            return p * (1 - p) * delta**2 * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)

        pts = np.arange(-8 * s + c, 8 * s + c, delta / 4) if s > 0 else None
        return quad(f, -8, 8, limit=2000, points=None if pts is None else ((pts - c) / s)[:200])[0]

    for delta, s, c in [(1 / 8, 0.1, 0.0), (1 / 4, 0.1, 0.05), (1.0, 0.3, 0.2), (1 / 8, 1.0, 0.0)]:
        assert P.mean_sr_variance(delta, s, c) == pytest.approx(direct(delta, s, c), rel=1e-5, abs=1e-12)
    assert P.mean_sr_variance(1.0, 0.0, 0.25) == pytest.approx(0.25 * 0.75, abs=2e-3)
    assert P.mean_sr_variance(1 / 8, 1.0) == pytest.approx((1 / 8) ** 2 / 6, rel=1e-12)


def test_lp_f_selfconsistent():
    v = P.sgld_lp_f_variance_selfconsistent(0.1, 1 / 4, 1 / 4, s=0.1)
    assert v == pytest.approx(P.sgld_lp_f_variance(0.1, 0.1, (1 / 4) ** 2 / 6, P.mean_sr_variance(1 / 4, 0.1)), rel=1e-6)
    with pytest.raises(ValueError, match="multiple"):
        P.sgld_lp_f_variance_selfconsistent(0.1, 0.3, 0.2)


def test_sghmc_transient_and_gradient_noise():
    S_inf = P.sghmc_stationary_covariance(0.09, 2, 3)
    S_k = P.sghmc_stationary_covariance(0.09, 2, 3, n_steps=2000)
    assert np.allclose(S_k, S_inf, rtol=1e-10)
    assert np.all(P.sghmc_stationary_covariance(0.09, 2, 3, n_steps=0) == 0)
    assert P.sghmc_spectral_radius(0.09, 2, 3) < 1
    # gradient noise v_g enters like c_v²·v_g in the velocity noise for one step from 0
    co = P.sghmc_coefficients(0.09, 2, 3)
    S1 = P.sghmc_stationary_covariance(0.09, 2, 3, n_steps=1, grad_noise_var=0.5)
    assert S1[1, 1] == pytest.approx(co.sigma_v + 0.5 * co.c_v**2)
    assert S1[0, 0] == pytest.approx(co.sigma_x + 0.5 * co.c_xg**2)
    # LP-F at Δ = 1/16 changes Var_x by < 1e-3 (spec P7 remark)
    vf = P.sghmc_stationary_covariance(0.09, 2, 3, grad_noise_var=(1 / 16) ** 2 / 6)[0, 0]
    assert 0 < vf - P.sghmc_variance(0.09, 2, 3).var_x < 1e-3


def test_sgd_lp_l_transient_converges_to_p6():
    m_inf = P.sgd_lp_l_second_moment(1 / 8, 0.1)
    assert P.sgd_lp_l_second_moment_at_step(1 / 8, 0.1, 1e-2, 0) == 0.0
    assert P.sgd_lp_l_second_moment_at_step(1 / 8, 0.1, 1e-2, 40000) == pytest.approx(m_inf, rel=1e-6)
    # η-independence of the law in "time" η·k
    a = P.sgd_lp_l_second_moment_at_step(1 / 8, 0.1, 1e-2, 500)
    b = P.sgd_lp_l_second_moment_at_step(1 / 8, 0.1, 1e-3, 5000)
    assert a == pytest.approx(b, rel=0.02) and a < m_inf
    with pytest.raises(ValueError, match="too large"):
        P.sgd_lp_l_second_moment_at_step(1 / 8, 0.1, 0.5, 10)
