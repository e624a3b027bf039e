"""theory.wasserstein against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from theory import wasserstein as W


def test_1d_to_dist_exact_on_a_single_point():
    # W2²(δ_c, N(0,1)) = c² + 1 exactly
    assert W.w2_1d_to_dist([0.7], norm()) == pytest.approx(np.sqrt(0.49 + 1.0), rel=1e-12)


def test_1d_to_dist_two_points_hand_value():
    # sample {a, b}: cells (0,1/2], (1/2,1]; m(0) = -φ(0) for N(0,1)
    a, b = -0.5, 1.0
    phi0 = norm.pdf(0)
    w2sq = (a**2 + b**2) / 2 - 2 * (a * (-phi0) + b * phi0) + 1
    assert W.w2_1d_to_dist([b, a], norm()) == pytest.approx(np.sqrt(w2sq), rel=1e-12)


def test_1d_to_dist_scaled_gaussian_converges_to_closed_form():
    # sample = exact quantiles of N(0, 4): W2 to N(0,1) → |2 − 1| = 1
    n = 20000
    x = norm(scale=2).ppf((np.arange(n) + 0.5) / n)
    assert W.w2_1d_to_dist(x, norm()) == pytest.approx(1.0, abs=2e-3)
    # and shifted: N(0.3, 1) quantiles → 0.3
    x = norm(loc=0.3).ppf((np.arange(n) + 0.5) / n)
    assert W.w2_1d_to_dist(x, norm()) == pytest.approx(0.3, abs=2e-3)


def test_1d_to_dist_generic_path_matches_norm_path():
    x = np.array([-1.0, 0.2, 0.5, 2.0])
    from scipy.stats import t as student_t

    # Student t with huge df ≈ normal; generic dist.expect path
    assert W.w2_1d_to_dist(x, student_t(df=1e7)) == pytest.approx(W.w2_1d_to_dist(x, norm()), rel=1e-5)


def test_mixture_partial_moments_and_w2():
    mix = W.GaussianMixture1D((-1.0, 1.0), (0.5, 0.5), (0.5, 0.5))
    assert mix.cdf(0.0) == pytest.approx(0.5)
    assert mix.partial_first_moment(np.inf) == pytest.approx(0.0, abs=1e-15)
    assert mix.second_moment() == pytest.approx(1.25)
    assert mix.ppf(mix.cdf(0.37)) == pytest.approx(0.37, abs=1e-10)
    # a one-component "mixture" equals the normal path
    one = W.GaussianMixture1D((0.0,), (1.0,), (1.0,))
    x = np.array([-0.3, 0.1, 1.7])
    assert W.w2_1d_to_dist(x, one) == pytest.approx(W.w2_1d_to_dist(x, norm()), rel=1e-10)
    # exact quantiles of the mixture are at distance ≈ 0
    n = 5000
    q = mix.ppf((np.arange(n) + 0.5) / n)
    assert W.w2_1d_to_dist(q, mix) < 0.01


def test_samples_equal_and_unequal_sizes():
    assert W.w2_1d_samples([0, 1], [1, 2]) == pytest.approx(1.0)
    # {0} vs {0, 2}: quantiles 0|0 on (0,1/2], 0|2 on (1/2,1] → W2² = 2
    assert W.w2_1d_samples([0.0], [0.0, 2.0]) == pytest.approx(np.sqrt(2.0))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(300), rng.standard_normal(300) + 0.5
    assert W.w2_1d_samples(x, y) == pytest.approx(W.w2_emd(x, y), rel=1e-9)


def test_gaussians_closed_form():
    assert W.w2_gaussians(0.0, 4.0, 0.0, 1.0) == pytest.approx(1.0)
    assert W.w2_gaussians([1.0, 0.0], np.eye(2), [0.0, 0.0], np.eye(2)) == pytest.approx(1.0)
    # diagonal: Σ (√a − √b)²
    assert W.w2_gaussians(np.zeros(3), [1.0, 4.0, 9.0], np.zeros(3), np.eye(3)) == pytest.approx(np.sqrt(0 + 1 + 4))
    # commuting rotation-invariance check: same covariance, rotated → W2² = tr(S1 + S2 − 2(...)^½)
    R = np.array([[0.0, -1.0], [1.0, 0.0]])
    S = np.diag([1.0, 4.0])
    val = W.w2_gaussians(np.zeros(2), S, np.zeros(2), R @ S @ R.T)
    assert val == pytest.approx(np.sqrt(2 * (1 + 2 + 1)) * 0 + np.sqrt(2.0), rel=1e-9)


def test_bures_and_product_estimators():
    rng = np.random.default_rng(1)
    n, d = 4000, 3
    x = rng.standard_normal((n, d)) * 2.0
    # true W2 to N(0, I) is √d; sampling error of the Bures estimate ~ O(√(d²/n))
    assert W.w2_bures_to_gaussian(x, np.zeros(d), np.eye(d)) == pytest.approx(np.sqrt(d), abs=0.1)
    assert W.w2_product_to_dist(x, norm()) == pytest.approx(np.sqrt(d), abs=0.1)


def test_emd_with_null_and_sliced():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((400, 2)) + np.array([1.0, 0.0])
    res = W.w2_emd_with_null(x, lambda n, r: r.standard_normal((n, 2)), np.random.default_rng(3))
    assert res.w2 > 3 * res.null
    assert res.w2 == pytest.approx(1.0, abs=0.25)
    # sliced: a shift of 1 along e1 gives SW2² = E[θ1²] = 1/d exactly for point clouds differing by translation
    y = x - np.array([1.0, 0.0])
    sw = W.sliced_w2(x, y, np.random.default_rng(4), n_projections=4000)
    assert sw == pytest.approx(np.sqrt(0.5), abs=0.02)
    # same seed -> same value
    assert W.sliced_w2(x, y, np.random.default_rng(4), 50) == W.sliced_w2(x, y, np.random.default_rng(4), 50)


def test_bad_input():
    with pytest.raises(ValueError, match="x"):
        W.w2_1d_to_dist([], norm())
    with pytest.raises(ValueError, match="non-finite"):
        W.w2_1d_samples([np.nan], [0.0])
    with pytest.raises(TypeError, match="rng"):
        W.sliced_w2([[0.0]], [[1.0]], rng=0)
    with pytest.raises(ValueError, match="dimension"):
        W.w2_emd(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(TypeError, match="dist"):
        W.w2_1d_to_dist([0.0], object())


def test_w2sq_null_mean_matches_monte_carlo():
    """The known null of the exact 1-D estimator (order-statistic means) against a Monte Carlo mean, N(0,1) and the mixture."""
    from scipy.stats import norm as _norm

    from theory.wasserstein import GaussianMixture1D, w2_1d_to_dist, w2sq_1d_null_mean

    rng = np.random.default_rng(11)
    for dist, draw in ((_norm(), lambda n: rng.standard_normal(n)),
                       (GaussianMixture1D((-1.0, 1.0), (0.5, 0.5), (0.5, 0.5)), None)):
        n, reps = 200, 3000
        if draw is None:
            draw = lambda n, d=dist: d.rvs(n, rng)  # noqa: E731
        vals = np.array([w2_1d_to_dist(draw(n), dist) ** 2 for _ in range(reps)])
        expected = w2sq_1d_null_mean(dist, n)
        se = vals.std(ddof=1) / np.sqrt(reps)
        assert abs(vals.mean() - expected) < 5 * se, (vals.mean(), expected, se)
        assert abs(0.9**2 * vals.mean() - expected) > 5 * se  # a W2 biased low by 10% is resolved at this size
