"""CTLD (C1)-(C6), ALGORITHMS §3.13 [reconstruction]."""

import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov
from scipy.stats import chi2

import refimpl.driver as drv
from refimpl import ctld
from refimpl.targets import double_well, gaussian, mixture

ETA, C_THETA = 0.01, 0.1
CHI2_5SIGMA_4DOF = chi2.isf(5.7e-7, 4)   # two-sided 5-sigma tail probability, 4 degrees of freedom


@pytest.mark.parametrize("bias", ["abf", "none"])
def test_alpha_histogram_flattens_with_bias(bias):
    # Final alpha of 1000 independent chains after 5000 steps, in 5 blocks of |alpha| over
    # the tempering range [0, alpha_max]; with the ABF bias the alpha marginal is
    # exp(-phi/T) = uniform (wall), so the block counts are multinomial(1000, 1/5 each).
    # Pearson chi^2 (4 dof) must stay below the 5-sigma quantile.  Mutation: bias off ->
    # rho(alpha) ~ Z(alpha) ~ g^{-1/2} favours the hot end (chi^2 in the hundreds).
    _, st = ctld.sample("gaussian", n_chains=1000, n_steps=5000, step_size=ETA, seed=2, keep="last",
                        return_state=True, bias=bias)
    a = ctld.unpack(st.packed, 1).alpha
    counts = np.histogram(np.abs(a), bins=np.linspace(0.0, 1.0, 6))[0]
    stat = np.sum((counts - 200.0) ** 2 / 200.0)
    assert (stat < CHI2_5SIGMA_4DOF) == (bias == "abf"), (counts, stat)


def _snapshots(seed, n_chains=1000, burn=3000, chunks=8, every=400):
    _, st = ctld.sample("gaussian", n_chains=n_chains, n_steps=burn, step_size=ETA, seed=seed, keep="last",
                        return_state=True)
    th, al = [], []
    for _ in range(chunks):
        _, st = ctld.sample("gaussian", n_chains=n_chains, n_steps=every, step_size=ETA, seed=None, resume=st,
                            keep="last", return_state=True)
        s = ctld.unpack(st.packed, 1)
        th.append(s.position[:, 0])
        al.append(s.alpha)
    return np.concatenate(th), np.concatenate(al)


@pytest.mark.parametrize("band", [0.2, 0.6])
def test_samples_in_g_equal_one_band_follow_target(band):
    # Target N(0,1).  Conditionally on alpha, theta ~ exp(-g(alpha) U); in |alpha| <= delta1 = 0.2
    # g = 1.  The discrete (C5) chain at g = 1 has the stationary variance of the 2x2 linear
    # recursion (solve_discrete_lyapunov; 1.0026 here).  Snapshots 400 steps apart (>> the
    # theta relaxation time 1/c_theta = 10 steps) are treated as independent: SE(var) =
    # var*sqrt(2/n), |z| < 5.  Mutation: selecting |alpha| <= 0.6 includes hot states (g < 1).
    A = np.array([[1 - ETA, 1 - C_THETA], [-ETA, 1 - C_THETA]])
    B = np.sqrt(2 * C_THETA * ETA) * np.ones((2, 1))
    pred = solve_discrete_lyapunov(A, B @ B.T)[0, 0]
    th, al = _snapshots(seed=1)
    sel = th[np.abs(al) <= band]
    z = (sel.var() - pred) / (pred * np.sqrt(2.0 / sel.size))
    assert (abs(z) < 5) == (band == 0.2), (sel.size, sel.var(), pred, z)
    assert abs(sel.mean()) < 5 * np.sqrt(pred / sel.size) or band != 0.2


def _hops(x):
    """Mode switches per chain with hysteresis: a hop is a move from theta < -1 to theta > 1 or back."""
    state = np.zeros(x.shape[1])
    n = np.zeros(x.shape[1])
    for k in range(x.shape[0]):
        new = np.where(x[k] > 1.0, 1.0, np.where(x[k] < -1.0, -1.0, state))
        n += (new != state) & (state != 0)
        state = new
    return n


@pytest.mark.parametrize("g_min", [0.1, 1.0])
def test_hops_between_modes_more_often_than_sghmc(g_min):
    # Mixture with modes +-2 (sd 0.5, barrier U(0) = 8 T); with center 1 the barrier is only
    # 2 T and SGHMC itself hops every ~100 steps.  Equal budget: 5000 steps, 200 chains; the
    # two integrators use the same physical step h = 0.1 and friction 1 (CTLD: eta = h^2,
    # c_theta = gamma*h).  Check: mean hops(CTLD) - mean hops(SGHMC) > 5 SE (SE from the
    # across-chain spread).  Mutation: g_min = 1 (no tempering) must not pass.
    tg = mixture(1, center=2.0)
    xs = drv.sample("sghmc", tg, n_chains=200, n_steps=5000, step_size=0.1, friction=1.0, seed=1, x0=-2.0)
    xc = ctld.sample(tg, n_chains=200, n_steps=5000, step_size=ETA, seed=2, x0=-2.0, g_min=g_min)
    hs, hc = _hops(xs[:, :, 0]), _hops(xc[:, :, 0])
    se = np.sqrt(hs.var() / hs.size + hc.var() / hc.size + 1.0 / hs.size)
    assert (hc.mean() - hs.mean() > 5 * se) == (g_min < 1), (hc.mean(), hs.mean(), se)


def test_phase_two_is_noise_free_momentum_sgd_to_a_mode():
    tg = mixture(1, center=2.0)
    x, st = ctld.sample(tg, n_chains=50, n_steps=4000, step_size=ETA, seed=3, x0=-2.0, switch_after=2000,
                        switch_wait_band=True, return_state=True, keep="all")
    s = ctld.unpack(st.packed, 1)
    assert np.all(s.phase == 2.0)
    assert np.all(np.abs(s.alpha) <= 0.2)             # waited for the g = 1 band, alpha frozen since
    mode = 2.0 * np.tanh(16.0)                          # U' = 4x - 8 tanh(8x) = 0 near |x| = 2
    np.testing.assert_allclose(np.abs(s.position[:, 0]), mode, atol=1e-6)
    # noise-free phase: the last stored steps no longer move
    np.testing.assert_allclose(x[-1], x[-2], atol=1e-9)


def test_coupling_and_potential():
    a = np.linspace(-1, 1, 2001)
    g = ctld.coupling(a)
    assert np.all(g[np.abs(a) <= 0.2] == 1.0) and np.all(g[np.abs(a) >= 0.8] == 0.1)
    assert np.all(np.diff(g[a >= 0]) <= 0)
    dg = ctld.coupling_derivative(a[1:-1])
    fd = (g[2:] - g[:-2]) / (a[2] - a[0])
    away = np.min(np.abs(np.abs(a[1:-1])[:, None] - np.array([0.2, 0.8])), axis=1) > 2e-3  # g'' jumps there
    np.testing.assert_allclose(dg[away], fd[away], atol=2e-5)
    assert np.max(np.abs(dg - fd)) < 5e-3   # C^1 everywhere: S'(0) = S'(1) = 0
    rng = np.random.default_rng(0)
    for tg in (gaussian(2), gaussian(2, mean=[0.3, -1], cov=[[2, 0.5], [0.5, 1]]), mixture(2, weights=(0.3, 0.7)),
               double_well(2, barrier=2.0)):
        for _ in range(3):
            x = rng.standard_normal(2)
            h = 1e-6
            fd = [(ctld.potential(tg, x + h * e) - ctld.potential(tg, x - h * e)) / (2 * h) for e in np.eye(2)]
            np.testing.assert_allclose(fd, tg.grad(x), rtol=1e-6, atol=1e-6)
    # equal-weight mixture: U(mode) ~= 0
    assert abs(ctld.potential(mixture(1, center=2.0), np.array([2.0]))) < 1e-10


def test_metadynamics_deposits_symmetric_bias():
    _, st = ctld.sample("gaussian", n_chains=4, n_steps=300, step_size=ETA, seed=0, keep="last",
                        return_state=True, bias="metadynamics", meta_height=0.01)
    s = ctld.unpack(st.packed, 1)
    assert np.all(s.ubar > 0)
    np.testing.assert_allclose(s.ubar, s.ubar[:, ::-1], rtol=1e-12)   # mirror deposits
    # total deposit: 300 steps x 2 Gaussians x sum over bin centres (~ sqrt(2 pi) sigma / w each)
    assert np.all(s.ubar.sum(1) < 300 * 2 * 0.01 * 3.0)
    assert np.all(s.counts.sum(1) <= 600) and np.all(s.counts.sum(1) >= 300)


def test_noise_layout_replay_and_same_bits():
    kw = dict(n_chains=3, n_steps=60, step_size=ETA, grad_noise=0.5)
    spec = drv.noise_spec("ctld", 2, grad_noise=0.5)
    assert [e[0] for e in spec] == ["grad_noise", "xi", "xi_alpha"]
    a = ctld.sample("mixture", dim=2, seed=7, **kw)
    nz = drv.draw_noise("ctld", 60, 3, 7, dim=2, grad_noise=0.5)
    b = ctld.sample("mixture", dim=2, seed=0, noise=nz, **kw)
    assert np.array_equal(a, b)


def test_nan_gradient_reports_step_and_keeps_samples():
    with pytest.raises(drv.NonFiniteGradientError) as ei:
        ctld.sample(double_well(1), n_chains=2, n_steps=200, step_size=1.0, seed=0, x0=3.0)
    err = ei.value
    assert err.step > 0 and err.samples.shape == (err.step, 2, 1)


@pytest.mark.parametrize("kw,name", [
    (dict(c_theta=1.5), "c_theta"), (dict(delta1=0.9), "delta1"), (dict(g_min=0.0), "g_min"),
    (dict(bias="x"), "bias"), (dict(n_bins=1), "n_bins"), (dict(phi="x"), "phi"), (dict(switch_after=-1), "switch_after"),
    (dict(alpha0=3.0), "alpha0"), (dict(eta_alpha=-1.0), "eta_alpha")])
def test_bad_input_names_argument(kw, name):
    with pytest.raises(ValueError, match=name):
        ctld.sample("gaussian", n_chains=2, n_steps=5, step_size=ETA, seed=0, **kw)


def test_data_target_rejected(mnist_path):
    from refimpl.targets import logistic_mnist
    tg = logistic_mnist(mnist_path, n_train=50)
    with pytest.raises(ValueError, match="target"):
        ctld.sample(tg, n_chains=1, n_steps=2, step_size=ETA, seed=0)


def test_pure_step_matches_driver_run():
    nz = drv.draw_noise("ctld", 9, 2, 5, dim=2, grad_noise=0.3)
    ref = ctld.sample("mixture", dim=2, n_chains=2, n_steps=9, step_size=ETA, seed=5, x0=0.1, grad_noise=0.3,
                      n_bins=10, alpha0=0.5, bias="abf")
    st = ctld.init(np.full((2, 2), 0.1), n_bins=10, alpha0=0.5)
    for k in range(9):
        st = ctld.step(st, nz[k], step_size=ETA, target="mixture", grad_noise=0.3, alpha0=0.5)
        assert np.array_equal(st.position, ref[k])
    assert np.all(st.counts.sum(1) == 18)   # 9 visits + 9 mirror updates (alpha never in the middle bin pair)


def test_resume_with_a_non_default_histogram_size():
    """The packed width follows the n_bins option (MethodSpec.width sees the context): resume works for any n_bins."""
    import refimpl

    kw = dict(n_chains=4, step_size=0.02, seed=5, grad_noise=0.3, n_bins=20)
    full = refimpl.sample("ctld", "mixture", n_steps=60, **kw)
    a, st = refimpl.sample("ctld", "mixture", n_steps=25, return_state=True, **kw)
    assert st.packed.shape == (4, 2 * 1 + 4 + 2 * 20)
    b = refimpl.sample("ctld", "mixture", n_steps=35, resume=st, **kw)
    assert np.concatenate([a, b]).tobytes() == full.tobytes()
