"""refimpl.diagnostics: R-hat, bulk/tail ESS and MCSE (Vehtari et al. 2021) and the ArviZ export.

* Agreement with ArviZ to rounding (arviz-stats, the ArviZ 1.x component, and/or arviz 0.x,
  whichever is installed; skipped when neither is), including odd lengths and ties.
* Statistical behaviour with known answers: the ESS of AR(1) chains against the exact
  n(1 − ρ)/(1 + ρ), with a tolerance from the spread over independent replicates; and
  mutations that the diagnostics must catch (shifted chains, a trend inside a chain
  that plain R-hat misses, chains that differ only in scale, which only the folded
  tail R-hat sees).
* Export and saving: chain-first layout, .npz and .nc round trips, atomic writes that
  replace a planted link instead of following it, path errors before any run.
"""

from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest

from refimpl import diagnostics as D


def _ar1(rng, n_chains, n_draws, rho):
    """Stationary AR(1) chains x_t = ρ x_{t−1} + √(1 − ρ²) ε_t (unit variance)."""
    x = np.empty((n_chains, n_draws))
    x[:, 0] = rng.standard_normal(n_chains)
    eps = rng.standard_normal((n_chains, n_draws)) * np.sqrt(1 - rho * rho)
    for t in range(1, n_draws):
        x[:, t] = rho * x[:, t - 1] + eps[:, t]
    return x


def _cases():
    rng = np.random.default_rng(20240601)
    drift = _ar1(rng, 4, 100, 0.9)
    drift[1] += 0.3
    odd = _ar1(rng, 3, 101, 0.5)
    ties = np.round(_ar1(rng, 4, 200, 0.7) * 4) / 4          # quantized draws: many ties
    many = rng.standard_normal((50, 40))
    tiny = rng.standard_normal((2, 7))
    return {"drift": drift, "odd": odd, "ties": ties, "many": many, "tiny": tiny}


def _arviz_reference():
    """name -> function(x, what) for every installed ArviZ flavour."""
    refs = {}
    try:
        from arviz_stats.base import array_stats
    except ImportError:
        pass
    else:
        def stats(x, what):
            return {
                "rhat": lambda: array_stats.rhat(x, method="rank"),
                "rhat_basic": lambda: array_stats.rhat(x, method="split"),
                "ess_bulk": lambda: array_stats.ess(x, method="bulk"),
                "ess_tail": lambda: array_stats.ess(x, method="tail", prob=(0.05, 0.95)),
                "ess_mean": lambda: array_stats.ess(x, method="mean"),
                "mcse_mean": lambda: array_stats.mcse(x, method="mean"),
            }[what]()
        refs["arviz-stats"] = stats
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import arviz as az
        if not hasattr(az, "rhat"):
            raise ImportError
    except ImportError:
        pass
    else:
        def legacy(x, what):
            return {
                "rhat": lambda: az.rhat(x, method="rank"),
                "rhat_basic": lambda: az.rhat(x, method="split"),
                "ess_bulk": lambda: az.ess(x, method="bulk"),
                "ess_tail": lambda: az.ess(x, method="tail"),
                "ess_mean": lambda: az.ess(x, method="mean"),
                "mcse_mean": lambda: az.mcse(x, method="mean"),
            }[what]()
        refs["arviz"] = legacy
    return refs


REFS = _arviz_reference()
WHATS = ("rhat", "rhat_basic", "ess_bulk", "ess_tail", "ess_mean", "mcse_mean")


@pytest.mark.skipif(not REFS, reason="no ArviZ installed (pip install 'qlangevin[arviz]')")
@pytest.mark.parametrize("what", WHATS)
@pytest.mark.parametrize("case", sorted(_cases()))
def test_agrees_with_arviz(case, what):
    x = _cases()[case]
    mine = getattr(D, what)(x)
    for name, ref in REFS.items():
        theirs = float(np.ravel(ref(x, what))[0])
        assert mine == pytest.approx(theirs, rel=1e-10, abs=1e-12), (name, case, what, mine, theirs)


def test_ess_of_ar1_chains_matches_the_exact_value():
    # AR(1) with ρ = 0.8: the integrated autocorrelation time is (1 + ρ)/(1 − ρ) = 9, so
    # 4 chains x 2000 draws have ESS 8000/9 = 888.9.  Over R = 40 independent replicates
    # the mean estimate must lie within 4 standard errors of the replicate mean
    # (the estimator's own spread), and far from the no-autocorrelation value 8000.
    rng = np.random.default_rng(7)
    rho, m, n, reps = 0.8, 4, 2000, 40
    exact = m * n * (1 - rho) / (1 + rho)
    ess = np.array([D.ess_mean(_ar1(rng, m, n, rho)) for _ in range(reps)])
    bulk = np.array([D.ess_bulk(_ar1(rng, m, n, rho)) for _ in range(reps)])
    for est in (ess, bulk):
        se = est.std(ddof=1) / np.sqrt(reps)
        assert abs(est.mean() - exact) < 4 * se, (est.mean(), exact, se)
    # mutation: ignoring the autocorrelation (ESS = number of draws) is far outside
    assert abs(m * n - exact) > 20 * ess.std(ddof=1)


def test_rhat_is_one_for_mixed_chains_and_flags_shifted_ones():
    rng = np.random.default_rng(3)
    good = rng.standard_normal((8, 1000))
    assert D.rhat(good) < 1.01
    shifted = good.copy()
    shifted[0] += 1.0                                   # one chain stuck elsewhere
    assert D.rhat(shifted) > 1.05


def test_split_rhat_sees_a_trend_that_plain_rhat_misses():
    # Every chain drifts the same way: chain means agree (plain, non-split R-hat ~ 1) but the
    # halves do not.  Mutation: R-hat without splitting the chains.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 1000)) + np.linspace(-2, 2, 1000)

    def unsplit(y):
        return D._rhat_core(D._z_scale(y))

    assert unsplit(x) < 1.01
    assert D.rhat(x) > 1.1


def test_tail_rhat_sees_chains_that_differ_only_in_scale():
    # Same mean, different spread: the bulk R-hat is ~1, the folded (tail) R-hat is not.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 2000)) * np.array([[1.0], [1.0], [1.0], [3.0]])
    split = D._split_chains(x)
    assert D._rhat_core(D._z_scale(split)) < 1.01       # mutation: bulk only
    assert D.rhat(x) > 1.05


def test_degenerate_and_bad_input():
    assert np.isnan(D.rhat(np.zeros((4, 10))))
    assert D.ess_bulk(np.zeros((4, 10))) == 40.0
    x = np.ones((4, 10))
    x[0, 0] = np.nan
    assert np.isnan(D.rhat(x)) and np.isnan(D.ess_bulk(x))
    with pytest.raises(ValueError, match="at least 4 draws"):
        D.rhat(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="shape"):
        D.rhat(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="prob"):
        D.ess_tail(np.zeros((2, 10)), prob=1.5)


def test_summary_and_chain_first():
    rng = np.random.default_rng(6)
    draws = rng.standard_normal((500, 4, 3))              # refimpl.sample layout (draw, chain, dim)
    cf = D.chain_first(draws)
    assert cf.shape == (4, 500, 3) and cf[2, 10, 1] == draws[10, 2, 1]
    rows = D.summary(cf, max_coords=2)
    assert len(rows) == 2
    assert rows[1]["mean"] == pytest.approx(draws[:, :, 1].mean())
    assert rows[1]["m2"] == pytest.approx((draws[:, :, 1] ** 2).mean())
    assert rows[1]["rhat"] == pytest.approx(D.rhat(cf[:, :, 1]))


def test_save_npz_chain_first_round_trip(tmp_path):
    draws = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)   # (draw, chain, dim)
    path = D.save_draws(tmp_path / "d.npz", draws, attrs={"method": "sgld", "seed": 3},
                        sample_stats={"alpha": draws[:, :, 0]})
    with np.load(path) as f:
        assert f["posterior"].shape == (3, 2, 2)
        assert np.array_equal(f["posterior"], np.swapaxes(draws, 0, 1))
        assert f["sample_stats_alpha"].shape == (3, 2)
        assert str(f["attr_method"]) == "sgld" and int(f["attr_seed"]) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]     # no temporary file left


def test_save_replaces_a_planted_link_instead_of_following_it(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / "d.npz").symlink_to(outside)
    D.save_draws(run / "d.npz", np.zeros((4, 2, 1)))
    assert outside.read_text() == "keep me"
    assert not os.path.islink(run / "d.npz")


@pytest.mark.parametrize(("name", "match"), [("d.txt", "must end in .npz"), ("no-dir/d.npz", "does not exist"),
                                             ("adir.npz", "is a directory")])
def test_save_path_errors(tmp_path, name, match):
    (tmp_path / "adir.npz").mkdir()
    with pytest.raises(ValueError, match=match):
        D.check_save_path(tmp_path / name)


@pytest.mark.skipif(not D.arviz_available(), reason="ArviZ not installed")
def test_inference_data_and_netcdf_round_trip(tmp_path):
    import xarray as xr

    rng = np.random.default_rng(8)
    draws = rng.standard_normal((50, 4, 2))
    data = D.to_inference_data(draws, attrs={"method": "sgld"})
    post = data["posterior"]["x"] if not hasattr(data, "posterior") else data.posterior["x"]
    assert post.dims[:2] == ("chain", "draw") and post.shape == (4, 50, 2)
    assert np.array_equal(np.asarray(post), np.swapaxes(draws, 0, 1))
    path = D.save_draws(tmp_path / "d.nc", draws, sample_stats={"alpha": draws[:, :, 0]})
    tree = xr.open_datatree(path)
    assert tree["posterior"]["x"].shape == (4, 50, 2)
    assert np.array_equal(tree["posterior"]["x"].values, np.swapaxes(draws, 0, 1))
    assert tree["sample_stats"]["alpha"].shape == (4, 50)


# --------------------------------------------------------------------------------------
# qlangevin sample: diagnostics printed, --save, CTLD's g = 1 band, QSGLD that moves
# --------------------------------------------------------------------------------------
_ROW = re.compile(r"^\s+(\d+)\s+([+-][\d.]+) \(([\d.]+)\)\s+([\d.]+) \(([\d.]+)\)\s+([\d.]+|nan)\s+(\d+)\s+(\d+)", re.MULTILINE)


def _sample(capsys, *argv):
    from qlangevin.cli import main

    rc = main(["sample", *argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out, [tuple(float(v) for v in m.groups()[1:]) for m in _ROW.finditer(out)]


def test_sample_prints_diagnostics_and_saves_chain_first(capsys, tmp_path):
    out, rows = _sample(capsys, "sgld", "--dim", "2", "--chains", "8", "--steps", "2000",
                        "--save", str(tmp_path / "d.npz"))
    assert "r_hat  ess_bulk  ess_tail" in out and len(rows) == 2
    with np.load(tmp_path / "d.npz") as f:
        post = f["posterior"]
        assert post.shape == (8, 1600, 2) and str(f["attr_method"]) == "sgld"
    mean, _, _, _, rhat, ess_b, _ = rows[0]
    assert mean == pytest.approx(post[:, :, 0].mean(), abs=1e-5)
    assert rhat == pytest.approx(D.rhat(post[:, :, 0]), abs=1e-4)
    assert ess_b == pytest.approx(D.ess_bulk(post[:, :, 0]), abs=0.5)


@pytest.mark.skipif(not D.arviz_available(), reason="ArviZ not installed")
def test_sample_saves_netcdf(capsys, tmp_path):
    import xarray as xr

    _sample(capsys, "sghmc", "--chains", "4", "--steps", "500", "--save", str(tmp_path / "d.nc"))
    tree = xr.open_datatree(tmp_path / "d.nc")
    assert tree["posterior"]["x"].dims[:2] == ("chain", "draw") and tree["posterior"]["x"].shape == (4, 400, 1)


def test_ctld_statistics_are_taken_over_the_g_equal_one_band(capsys):
    # N(0, 1) target.  In the band |alpha| <= delta1 = 0.2, g = 1 and theta follows the (C5)
    # chain at T = 1, whose stationary variance is that of the 2x2 linear recursion
    # (1.0026 at eta = 0.01, c_theta = 0.1).  The band estimate must be within 5 of its
    # chain-cluster standard errors; over all temperatures ("--band all", the mutation:
    # what the command printed before) E[x^2] is far above it.
    from scipy.linalg import solve_discrete_lyapunov

    eta, c = 1e-2, 0.1
    A = np.array([[1 - eta, 1 - c], [-eta, 1 - c]])
    B = np.sqrt(2 * c * eta) * np.ones((2, 1))
    pred = solve_discrete_lyapunov(A, B @ B.T)[0, 0]
    common = ("ctld", "--chains", "200", "--steps", "3000", "--thin", "10", "--seed", "1")
    out, rows = _sample(capsys, *common)
    assert "g(alpha) = 1 band" in out
    m, se_m, m2, se_m2 = rows[0][:4]
    assert abs(m2 - pred) < 5 * se_m2, (m2, se_m2, pred)
    assert abs(m) < 5 * se_m
    _, rows_all = _sample(capsys, *common, "--band", "all")
    m2_all, se_all = rows_all[0][2:4]
    assert m2_all - pred > 5 * max(se_all, se_m2), (m2_all, se_all)


def test_qsgld_with_uniform_rounding_moves(capsys):
    _, rows = _sample(capsys, "qsgld", "--chains", "20", "--steps", "3000", "--option", "rounding=uniform")
    assert rows[0][2] > 0.3                              # E[x^2] well away from the frozen 0


def test_ctrl_c_during_sample_saves_the_draws_kept_so_far(tmp_path, capsys):
    # A real SIGINT to a 'qlangevin sample --save' subprocess: exit 130, one line on stderr
    # saying where it stopped, and the .npz holds exactly the draws kept before the
    # interrupt (burn-in 0, thin T: ceil(done/T) per chain).
    import signal
    import subprocess
    import sys

    from qlangevin.cli import main

    assert main(["sample", "sgld", "--chains", "2", "--steps", "20", "--burn-in", "0"]) == 0  # warm the jit cache
    capsys.readouterr()
    thin = 1000
    p = subprocess.Popen([sys.executable, "-m", "qlangevin", "sample", "sgld", "--steps", "1000000000",
                          "--chains", "10", "--thin", str(thin), "--burn-in", "0", "--save", str(tmp_path / "d.npz")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("sgld on gaussian")   # the run has started
        time.sleep(2.0)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert err.count("\n") == 1 and "interrupted after" in err and "saved to" in err, err
    with np.load(tmp_path / "d.npz") as f:
        done = int(f["attr_interrupted_after_step"])
        assert 0 < done < 10**9
        assert f["posterior"].shape == (10, -(-done // thin), 1)
