"""Target gradients (refimpl.targets): finite differences, minibatch estimates, errors."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.targets import (Target, double_well, gaussian, grad, logistic_mnist, logistic_regression, mixture,
                             resolve_target)


def _U(t: Target, x):
    x = np.asarray(x, dtype=np.float64)
    if t.kind == 0:
        return 0.5 * x @ x
    if t.kind == 1:
        r = x - t.params
        return 0.5 * r @ t.mat @ r
    if t.kind == 2:
        c = t.params[0] * np.ones_like(x)
        lw = t.params[1]  # ½ log(w+/w-)
        return -np.logaddexp(lw - 2 * np.sum((x - c) ** 2), -lw - 2 * np.sum((x + c) ** 2))
    if t.kind == 3:
        return t.params[0] * np.sum((x**2 - 1) ** 2)
    X, y = t.mat, t.labels
    K, p = int(t.params[3]), X.shape[1]
    W = x.reshape(K, p)
    logits = X @ W.T
    lse = np.logaddexp.reduce(logits, axis=1)
    return -(logits[np.arange(len(y)), y] - lse).sum() + 0.5 * x @ x / t.params[0]


def _fd(t, x, h=1e-6):
    g = np.empty_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        g[j] = (_U(t, x + e) - _U(t, x - e)) / (2 * h)
    return g


rng = np.random.default_rng(0)
TARGETS = [
    gaussian(1), gaussian(3), gaussian(2, mean=[1.0, -2.0], cov=[[2.0, 0.5], [0.5, 1.0]]), gaussian(3, cov=[1, 2, 3]),
    mixture(1), mixture(3), mixture(2, weights=(0.2, 0.8), center=0.7), double_well(1), double_well(4, barrier=2.5),
    logistic_regression(rng.normal(size=(12, 3)), np.arange(12) % 3, batch_size=4, prior_var=2.0),
]


@pytest.mark.parametrize("t", TARGETS, ids=lambda t: f"{t.name}{t.dim}")
def test_gradient_matches_finite_differences(t):
    for x in np.random.default_rng(1).normal(size=(4, t.dim)):
        np.testing.assert_allclose(grad(t, x), _fd(t, x), rtol=1e-6, atol=1e-6)


def test_minibatch_gradient_with_every_index_once_is_the_full_gradient():
    X = np.random.default_rng(2).normal(size=(10, 4))
    t = logistic_regression(X, np.arange(10) % 2, batch_size=10)
    x = np.random.default_rng(3).normal(size=t.dim)
    u = (np.arange(10) + 0.5) / 10  # index floor(u·N) = 0..9
    np.testing.assert_allclose(grad(t, x, u), grad(t, x), rtol=1e-13, atol=1e-13)
    # a batch of one repeated example is N times that example's gradient (plus the prior term)
    g1 = grad(t, x, np.full(10, 0.05)) - x / t.params[0]
    t1 = logistic_regression(X[:1], np.array([0]), n_classes=2, batch_size=1)
    np.testing.assert_allclose(g1, 10 * (grad(t1, x) - x / t1.params[0]), rtol=1e-12)


def test_mixture_density_is_the_published_one():
    """Default mixture: e^{−U} = e^{−2(x−1)²} + e^{−2(x+1)²} (LP-SGHMC §4.1 with the minus signs)."""
    t = mixture(1)
    for x in (-1.3, 0.0, 0.4, 2.0):
        assert np.exp(-_U(t, np.array([x]))) == pytest.approx(np.exp(-2 * (x - 1) ** 2) + np.exp(-2 * (x + 1) ** 2))


def test_resolve_target_names_and_errors():
    assert resolve_target("gaussian", 4).dim == 4
    assert resolve_target("double_well", 2).kind == 3
    with pytest.raises(ValueError, match="target"):
        resolve_target("rosenbrock", 1)
    with pytest.raises(ValueError, match="dim"):
        resolve_target(gaussian(2), 3)
    with pytest.raises(ValueError, match="cov"):
        gaussian(2, cov=[[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="weights"):
        mixture(1, weights=(1.0, -1.0))
    with pytest.raises(ValueError, match="batch_size"):
        logistic_regression(np.zeros((3, 2)), np.array([0, 1, 0]), batch_size=0)


def test_logistic_mnist_subset(mnist_path):
    t = logistic_mnist(mnist_path, n_train=200, classes=(3, 5), batch_size=20)
    assert t.dim == 2 * 785 and t.mat.shape == (200, 785) and set(np.unique(t.labels)) == {0, 1}
    assert t.mat[:, :784].max() <= 1.0 and np.all(t.mat[:, 784] == 1.0)
    x = np.random.default_rng(0).normal(scale=0.01, size=t.dim)
    np.testing.assert_allclose(grad(t, x), _fd(t, x, 1e-5), rtol=1e-5, atol=1e-4)


def test_sgld_on_logistic_mnist_subset_learns(mnist_path):
    """Minibatch SGLD on softmax regression (0 vs 1, 500 images): the samples classify the training set."""
    import refimpl

    t = logistic_mnist(mnist_path, n_train=500, classes=(0, 1), batch_size=50, prior_var=1.0)
    out = refimpl.sample("sgld", t, n_chains=3, n_steps=300, step_size=1e-4, seed=0, keep="last")[0]
    W = out.reshape(3, 2, 785)
    acc = [(np.argmax(t.mat @ w.T, axis=1) == t.labels).mean() for w in W]
    assert min(acc) > 0.95, acc
    lp = refimpl.sample("sgld_lp_l", t, n_chains=2, n_steps=100, step_size=1e-4, seed=0, keep="last",
                        fmt="fixed:8:6")
    assert np.all(np.isfinite(lp))
