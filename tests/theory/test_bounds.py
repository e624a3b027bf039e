"""theory.bounds against hand-computed values, monotonicity and vectorisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from theory import bounds as B

# A 1-D standard Gaussian target: m = M = 1, Ψ = 0, gradient noise s = 0.1 (κ = 0.1).
G1 = dict(m=1.0, M=1.0, Psi=0.0, kappa=0.1, d=1)


def test_thm1_hand_value():
    # η = 0.01, K = 100, W2_0 = 2, Δ_W = Δ_G = 1/8
    b = B.lpsgld_thm1(eta=0.01, K=100, W2_0=2.0, Delta_W=0.125, Delta_G=0.125, **G1)
    assert b.contraction == pytest.approx(0.99**100 * 2.0)
    assert b.discretization == pytest.approx(1.65 * 0.1)
    assert b.quantization_bias == 0.0  # Ψ = 0: min(0, ·) = 0
    assert b.variance == pytest.approx(math.sqrt(((0.125**2 + 0.125**2) * 0.01 + 4 * 0.01 * 0.01) / 4))
    assert b.low_precision == 0.0
    assert b.total == pytest.approx(0.99**100 * 2 + 0.165 + math.sqrt((2 * 0.015625 * 0.01 + 0.0004) / 4))


def test_thm1_bias_floor_min():
    # Ψ large: the M·Δ√d/(2m) branch wins; d = 4, m = 0.5, M = 2, Δ_W = 0.1
    b = B.lpsgld_thm1(m=0.5, M=2.0, Psi=100.0, kappa=0.0, d=4, eta=0.1, K=0, W2_0=0.0, Delta_W=0.1, Delta_G=0.0)
    assert b.quantization_bias == pytest.approx(min(100 * 0.01 * 4 / 2, 2 * 0.1 * 2 / 1))
    assert b.contraction == 0.0


def test_thm2_hand_value():
    b = B.lpsgld_thm2(eta=1e-3, K=10, W2_0=0.0, Delta_W=0.125, Delta_G=0.125, **G1)
    assert b.variance == pytest.approx(math.sqrt(((1e-3 * 0.015625 + 0.015625 / 1e-3) + 4e-3 * 0.01) / 4))
    assert b.low_precision == pytest.approx((0.999**10 + 1) * 0.125 / 2)


def test_thm3_hand_value_both_branches():
    # branch 1: 2η = 0.004 > V0 = Δ²/4 = 0.00390625 → A = 5 V0 d
    A1 = B.lpsgld_thm3_A(d=1, eta=2e-3, Delta_W=0.125, G=1.0)
    assert A1 == pytest.approx(5 * 0.125**2 / 4)
    # branch 2: η = 1e-4 → A = max(2 Δ η G, 4 η d) = max(2.5e-5·G, 4e-4)
    assert B.lpsgld_thm3_A(d=1, eta=1e-4, Delta_W=0.125, G=1.0) == pytest.approx(4e-4)
    assert B.lpsgld_thm3_A(d=1, eta=1e-4, Delta_W=0.125, G=100.0) == pytest.approx(2 * 0.125 * 1e-4 * 100)
    b = B.lpsgld_thm3(G=1.0, eta=1e-4, K=0, W2_0=1.0, Delta_W=0.125, Delta_G=0.125, **G1)
    A = 4e-4
    assert b.quantization_bias == 0.0
    assert b.variance == pytest.approx(math.sqrt((1e-4 * 0.015625 + 4e-4 * 0.01) / 4 + A / 1e-4))
    assert b.low_precision == pytest.approx(2 * math.sqrt(A))
    assert b.contraction == pytest.approx(1.0)


def test_monotone_in_delta_and_eta():
    deltas = np.array([1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4])
    for thm in (B.lpsgld_thm1, B.lpsgld_thm2):
        tot = thm(eta=0.01, K=1000, W2_0=1.0, Delta_W=deltas, Delta_G=deltas, **G1).total
        assert tot.shape == (5,) and np.all(np.diff(tot) > 0)
    tot3 = B.lpsgld_thm3(G=1.0, eta=0.01, K=1000, W2_0=1.0, Delta_W=deltas, Delta_G=deltas, **G1).total
    assert np.all(np.diff(tot3) >= 0)
    etas = np.array([1e-4, 1e-3, 1e-2, 1e-1])
    # Thm 1 at K → ∞ increases with η; Thm 2's η⁻¹Δ² term makes it blow up as η → 0
    t1 = B.lpsgld_thm1(eta=etas, K=1e9, W2_0=1.0, Delta_W=1 / 8, Delta_G=1 / 8, **G1)
    assert np.all(np.diff(t1.total) > 0)
    t2 = B.lpsgld_thm2(eta=etas, K=1e9, W2_0=1.0, Delta_W=1 / 8, Delta_G=1 / 8, **G1)
    assert np.all(np.diff(t2.variance) < 0)
    # Thm 3 stays bounded as η → 0 (A/η bounded)
    t3 = B.lpsgld_thm3(G=1.0, eta=np.array([1e-8, 1e-6, 1e-4]), K=1e12, W2_0=1.0, Delta_W=1 / 8, Delta_G=1 / 8, **G1)
    assert np.all(t3.total < 2.1)
    # contraction decreases in K
    tk = B.lpsgld_thm1(eta=0.01, K=np.array([0, 10, 100, 1000]), W2_0=1.0, Delta_W=1 / 8, Delta_G=1 / 8, **G1)
    assert np.all(np.diff(tk.contraction) < 0)


def test_broadcast_grid():
    eta = np.array([1e-3, 1e-2])[:, None]
    delta = np.array([1 / 16, 1 / 8, 1 / 4])[None, :]
    b = B.lpsgld_thm2(eta=eta, K=100, W2_0=1.0, Delta_W=delta, Delta_G=delta, **G1)
    assert np.shape(b.total) == (2, 3)
    assert np.shape(b.contraction) == (2, 3)


def test_bad_input():
    with pytest.raises(ValueError, match="eta"):
        B.lpsgld_thm1(eta=1.5, K=1, W2_0=0, Delta_W=0.1, Delta_G=0.1, **G1)  # 2/(m+M) = 1
    with pytest.raises(ValueError, match="Delta_W"):
        B.lpsgld_thm1(eta=0.1, K=1, W2_0=0, Delta_W=-0.1, Delta_G=0.1, **G1)
    with pytest.raises(ValueError, match="M must be >= m"):
        B.lpsgld_thm1(m=2.0, M=1.0, Psi=0, kappa=0, d=1, eta=0.1, K=1, W2_0=0, Delta_W=0.1, Delta_G=0.1)
    with pytest.raises(ValueError, match="gamma"):
        B.sghmc_step_size_condition(M=1, u=1, gamma=3, b=1, m2=1, d=1)


def test_sghmc_strongly_log_concave_hand_values():
    kw = dict(eps=0.1, m1=1.0, M=1.0, u=1.0, d=1, D=0.0, Delta=1 / 16, sigma=0.1)
    r4 = B.lpsghmc_thm4(**kw)
    e4 = min(0.1 / math.sqrt(479232 / 5), 0.01 / (1440 * (2 * (1 / 256) / 4 + 0.01)))
    assert r4.eta == pytest.approx(e4)
    assert r4.K == pytest.approx(1 / e4 * math.log(360))
    r5 = B.lpsghmc_thm5(**kw)
    assert r5.eta == pytest.approx(min(0.1 / math.sqrt(663552 / 5), 0.01 / (2880 * ((1 / 256) / 4 + 0.01))))
    r6 = B.lpsghmc_thm6(**kw)
    assert r6.eta == pytest.approx(min(0.1 / (479232 / 5), 0.01 / (90 / 256 + 3.6)))
    assert math.isnan(r6.K)
    # Thm 4's K does not vanish as Δ → 0 (spec [derived])
    ks = B.lpsghmc_thm4(eps=1e-3, m1=1, M=1, u=1, d=1, D=0, Delta=np.array([1e-1, 1e-3, 0.0]), sigma=0.1).K
    assert np.all(np.isfinite(ks)) and ks[-1] > 0


def test_nonlogconcave_exponents_reproduce_table():
    e = math.e
    table = {
        "lpsghmc_thm1": (e / (1 + 2 * e), 0.5, 0),
        "lpsghmc_thm2": (e / (3 + 6 * e), 1.5, 2),
        "lpsghmc_thm3": (e / (2 + 4 * e), 1, 1),
        "lpsgld_thm7": (e / (2 + 2 * e), 1, 0),
        "lpsgld_thm8": (e / (10 * (1 + e)), 5, 4),
        "lpsgld_thm9": (e / (6 * (1 + e)), 3, 2),
    }
    for key, (p, a, b) in table.items():
        assert getattr(B, key)().delta_exponent == pytest.approx(p)
        assert B.tuned_delta_exponent(a, b) == pytest.approx(p)
    # headline: SGHMC needs ε^-2 iterations, SGLD ε^-4
    assert B.lpsghmc_thm1().iterations_eps_exponent == 2 and B.lpsgld_thm7().iterations_eps_exponent == 4


def test_step_size_condition_hand_value():
    # M = u = 1, γ = 2 (γ² = 4 ≤ 4Mu), b = m2 = d = 1
    terms = [2 / (4 * (8 + 2 + 88)), math.sqrt(4 / 16), 12 / 16, 1 / 16, 2 / (12 * 23), 8 * 6 / (22 * 2)]
    assert B.sghmc_step_size_condition(1, 1, 2, 1, 1, 1) == pytest.approx(min(terms))


def test_spec_named_aliases():
    from theory import lpsghmc, lpsgld

    kw = dict(m=1.0, M=1.0, Psi=0.0, kappa=0.1, d=1, eta=0.01, K=100, W2_0=1.0, Delta_W=1 / 8, Delta_G=1 / 8)
    assert lpsgld.thm1(**kw).total == B.lpsgld_thm1(**kw).total
    assert lpsgld.thm3(G=1.0, **kw).total == B.lpsgld_thm3(G=1.0, **kw).total
    assert lpsghmc.thm2().delta_exponent == B.lpsghmc_thm2().delta_exponent
