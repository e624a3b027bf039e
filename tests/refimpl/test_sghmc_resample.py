"""SGHMC momentum resampling (``resample_momentum_every=K``) and the friction range (docs/sghmc.md).

Prediction for the moments: on U(x) = x²/2 (T = 1) one step of (H1) is linear,
s' = M s + ξ with s = (x, v), M = [[1 + s_x c_xg, c_xv], [−c_v, a]] and
Cov ξ = [[Σ_x, Σ_xv], [Σ_xv, Σ_v]] (H0); the refresh before steps k ≡ 0 (mod K)
sets Cov(x, v) = 0 and Var v = uT.  The K-periodic covariance sequence is the
fixed point of K Lyapunov steps started from the refreshed covariance, found
by iteration (a contraction).  The driver records the position after every step,
so the predicted E x² is the average of Var x over the K phases.  Checks:
independent-chain standard errors, |z| < 5 (sampler_stats.py), each with a
mutation -- a refresh scaled by √2 (fed through ``noise=`` with the ``v_refresh``
columns multiplied by √2) -- that must be rejected (|z| > 5).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sampler_stats import Z_TOL, chain_second_moments, seed, z_score

import refimpl
from refimpl import formulas, sghmc
from refimpl.formats import FixedPoint

ETA, U, GAMMA, K = 0.09, 2.0, 3.0, 5
F4 = FixedPoint(8, 4)
DELTA = 1.0 / 16


def _periodic_covariances(k, refresh_var=U, grad_noise_var=0.0):
    """The K-periodic covariances after steps 1..K of a resampling period (module docstring)."""
    a, c_v, c_xv, c_xg, s_v, s_x, s_xv = formulas.sghmc_coefficients(ETA, GAMMA, U, 1.0)
    m = np.array([[1.0 - c_xg, c_xv], [-c_v, a]])                      # s_x = -1, g = x (+ noise)
    b = np.array([-c_xg, -c_v])                                         # how gradient noise enters (x, v)
    q = np.array([[s_x, s_xv], [s_xv, s_v]]) + grad_noise_var * np.outer(b, b)
    cov = np.eye(2)
    for _ in range(2000):
        cov = np.array([[cov[0, 0], 0.0], [0.0, refresh_var]])
        covs = []
        for _ in range(k):
            cov = m @ cov @ m.T + q
            covs.append(cov)
    return covs


def _mutated_noise(method, n_steps, n_chains, s0, factor, **kw):
    """refimpl's own noise of a run with the ``v_refresh`` columns multiplied by ``factor``."""
    opts = dict(resample_momentum_every=K)
    z = refimpl.draw_noise(method, n_steps, n_chains, seed(s0), dim=1, **opts)
    off = 0
    for name, _kind, shape in refimpl.noise_spec(method, 1, **opts):
        n = int(np.prod(shape))
        if name == "v_refresh":
            z[:, :, off:off + n] *= factor
        off += n
    return z


def _run(method, s0, noise=None, n_chains=4000, n_steps=600, **kw):
    return refimpl.sample(method, "gaussian", n_chains=n_chains, n_steps=n_steps, step_size=ETA, seed=seed(s0),
                          friction=GAMMA, inverse_mass=U, burn_in=100, keep="stats", noise=noise,
                          resample_momentum_every=K, **kw)


def test_prediction_reduces_to_the_lyapunov_solution_and_to_t():
    """K → ∞ gives the no-resampling law (P7: 1.0309); K = 1 moves Var x towards T = 1."""
    from theory import predictions as P

    far = _periodic_covariances(400)
    assert np.mean([c[0, 0] for c in far[-50:]]) == pytest.approx(
        P.sghmc_stationary_covariance(ETA, U, GAMMA)[0, 0], abs=1e-6)
    assert abs(np.mean([c[0, 0] for c in _periodic_covariances(1)]) - 1.0) < 0.005


@pytest.mark.parametrize("method, extra, gvar", [("sghmc", {}, 0.0),
                                                 ("sghmc_lp_f", {"fmt": F4}, DELTA**2 / 6)])
def test_resampled_position_variance_and_wrong_scale_rejected(method, extra, gvar):
    """E x² = mean over the period of the periodic Lyapunov Var x (1.0167 at K = 5; LP-F: plus the
    rounding noise Δ²/6 of Q_G(Q_W(x)) as in P7/(H2)); a refresh of variance 2uT is rejected."""
    pred = np.mean([c[0, 0] for c in _periodic_covariances(K, grad_noise_var=gvar)])
    st = _run(method, 11, **extra)
    z, m, se = z_score(chain_second_moments(st), pred)
    assert abs(z) < Z_TOL, (m, se, pred)
    bad = _run(method, 11, noise=_mutated_noise(method, 600, 4000, 11, math.sqrt(2.0)), **extra)
    zb, mb, _ = z_score(chain_second_moments(bad), pred)
    assert abs(zb) > Z_TOL, (mb, pred)


def _velocities(method, s0, factor, n_chains=4000, n_snap=12, gap=2 * K):
    """(n_snap, n_chains) stored velocities after whole periods (phase K), via resume (bit for bit)."""
    n_total = 100 + n_snap * gap
    noise = _mutated_noise(method, n_total, n_chains, s0, factor)
    base = dict(n_chains=n_chains, step_size=ETA, friction=GAMMA, inverse_mass=U, keep="last", return_state=True,
                resample_momentum_every=K)
    _, st = refimpl.sample(method, "gaussian", n_steps=100, seed=0, noise=noise[:100], **base)
    vs = []
    for i in range(n_snap):
        lo = 100 + i * gap
        _, st = refimpl.sample(method, "gaussian", n_steps=gap, seed=0, resume=st, noise=noise[lo:lo + gap], **base)
        vs.append(sghmc.unpack(st.packed).velocity[:, 0])
    return np.array(vs)


def test_resampled_velocity_variance_and_wrong_scale_rejected():
    """Var v at the end of a period (phase K) = the periodic Lyapunov prediction (2.0563 at K = 5, between
    uT = 2 just after the refresh and 2.0614 without resampling); the √2-scaled refresh is rejected."""
    pred = _periodic_covariances(K)[-1][1, 1]
    z, m, se = z_score((_velocities("sghmc", 13, 1.0) ** 2).mean(axis=0), pred)
    assert abs(z) < Z_TOL, (m, se, pred)
    zb, mb, _ = z_score((_velocities("sghmc", 13, math.sqrt(2.0)) ** 2).mean(axis=0), pred)
    assert abs(zb) > Z_TOL, (mb, pred)


# ------------------------------------------------------------------ layout, replay, resume, no-op default
@pytest.mark.parametrize("method", sghmc.METHODS)
def test_layout_replay_and_resume_with_resampling(method):
    """v_refresh (normal, (dim,)) is the last stream only when K > 0; noise= replays the Generator run bit
    for bit; a run split at a step that is not a multiple of K and resumed equals the one long run."""
    fmt = None if method == "sghmc" else F4
    off = [n for n, _, _ in refimpl.noise_spec(method, 2)]
    on = refimpl.noise_spec(method, 2, resample_momentum_every=3)
    assert "v_refresh" not in off and [n for n, _, _ in on] == off + ["v_refresh"]
    assert on[-1] == ("v_refresh", "normal", (2,))
    kw = dict(dim=2, n_chains=3, step_size=0.05, friction=2.0, inverse_mass=1.5, fmt=fmt, grad_noise=0.3,
              resample_momentum_every=3)
    whole = refimpl.sample(method, "mixture", n_steps=23, seed=4, **kw)
    noise = refimpl.draw_noise(method, 23, 3, 4, dim=2, grad_noise=0.3, target="mixture", resample_momentum_every=3)
    assert np.array_equal(refimpl.sample(method, "mixture", n_steps=23, seed=4, noise=noise, **kw), whole)
    first, st = refimpl.sample(method, "mixture", n_steps=10, seed=4, return_state=True, **kw)
    assert st.packed.shape == (3, 2 * 2 + 2) and np.all(st.packed[:, -1] == 10.0)  # the counter column k
    rest = refimpl.sample(method, "mixture", n_steps=13, seed=4, resume=st, **kw)
    assert np.array_equal(np.concatenate([first, rest]), whole)
    plain = refimpl.sample(method, "mixture", n_steps=23, seed=4, **{**kw, "resample_momentum_every": 0})
    assert not np.array_equal(plain, whole)


def test_pure_step_refreshes_only_at_multiples_of_k():
    """refimpl.sghmc.step: at k ≡ 0 (mod K) the old velocity is ignored (replaced by √(uT)·v_refresh);
    otherwise the step equals the step without resampling on the same other noise."""
    rng = np.random.default_rng(3)
    x, v = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    spec = refimpl.noise_spec("sghmc", 2, resample_momentum_every=4)
    z = rng.standard_normal((4, sum(int(np.prod(s)) for _, _, s in spec)))
    kw = dict(method="sghmc", step_size=0.1, target="gaussian", friction=2.0, inverse_mass=1.5, temperature=0.7)
    on = dict(kw, resample_momentum_every=4)
    plain = sghmc.step(sghmc.init(x, v), z[:, :4], **kw)
    assert np.array_equal(sghmc.step(sghmc.init(x, v), z, step_index=5, **on).position, plain.position)
    fresh_v = math.sqrt(1.5 * 0.7) * z[:, 4:]
    want = sghmc.step(sghmc.init(x, fresh_v), z[:, :4], **kw)
    got = sghmc.step(sghmc.init(x, v + 7.0), z, step_index=8, **on)
    assert np.array_equal(got.position, want.position) and np.array_equal(got.velocity, want.velocity)


def test_default_is_off_and_keeps_the_layout():
    """resample_momentum_every defaults to 0 in the table: no v_refresh stream, packed width 2·dim + 1."""
    from refimpl.methods import METHODS

    for name in sghmc.METHODS:
        assert METHODS[name].options["resample_momentum_every"] == 0
    _, st = refimpl.sample("sghmc", "gaussian", dim=2, n_chains=2, n_steps=3, step_size=0.1, seed=0,
                           return_state=True)
    assert st.packed.shape == (2, 5)


@pytest.mark.parametrize("bad", [-1, 1.5, 2.0, True, "3", None])
def test_resample_every_validated(bad):
    with pytest.raises(ValueError, match=r"resample_momentum_every .*got " + repr(bad).replace(".", r"\.")):
        refimpl.sample("sghmc_vc", "gaussian", n_chains=1, n_steps=2, step_size=0.1, seed=0, fmt=F4,
                       resample_momentum_every=bad)
    with pytest.raises(ValueError, match="resample_momentum_every"):
        refimpl.noise_spec("sghmc", 1, resample_momentum_every=bad)


@pytest.mark.parametrize("argv, word", [(["--option", "resample_momentum_every=-1"], "resample_momentum_every"),
                                        (["--option", "resample_momentum_every=1.5"], "resample_momentum_every"),
                                        (["--friction", "1e-300"], "friction")])
def test_cli_refuses_bad_resampling_and_friction(capsys, argv, word):
    from qlangevin.cli import main

    assert main(["sample", "sghmc", "--steps", "20", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0] and "Traceback" not in err[0], err


def test_cli_runs_with_resampling(capsys):
    from qlangevin.cli import main

    assert main(["sample", "sghmc", "--steps", "50", "--chains", "4", "--option", "resample_momentum_every=5"]) == 0


# ------------------------------------------------------------------------------------------ friction range
def test_friction_bound_is_where_the_coefficients_break():
    """(H0) divides by γ²: at γ = 2^-511 (γ² the smallest normal float64) every coefficient is finite for
    step sizes 1e-8..10; at γ = 1e-300 (γ² = 0) the jitted coefficients are NaN.  refimpl refuses γ below
    the bound (ValueError naming friction and the value) before any step."""
    g = formulas.SGHMC_MIN_FRICTION
    assert g * g == np.finfo(np.float64).tiny
    for eta in (1e-8, 1e-3, 0.1, 10.0):
        assert all(np.isfinite(sghmc._coef(eta, g, 1.0, 1.0)))
    assert not all(np.isfinite(sghmc._coef(0.1, 1e-300, 1.0, 1.0)))
    for bad in (1e-300, g / 2):
        with pytest.raises(ValueError, match=r"friction must be >= .*got friction=" + repr(bad)):
            refimpl.sample("sghmc", "gaussian", n_chains=1, n_steps=1, step_size=0.1, seed=0, friction=bad)
    x = refimpl.sample("sghmc", "gaussian", n_chains=2, n_steps=5, step_size=0.1, seed=0, friction=g)
    assert np.isfinite(x).all()


def test_pure_step_index_validated():
    st = sghmc.init(np.zeros((1, 1)))
    with pytest.raises(ValueError, match=r"step_index must be an integer >= 0, got -2"):
        sghmc.step(st, np.zeros((1, 3)), method="sghmc", step_size=0.1, target="gaussian", step_index=-2,
                   resample_momentum_every=2)
