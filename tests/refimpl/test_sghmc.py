"""Deterministic properties of the SGHMC family kernels (ALGORITHMS.md §3.8-§3.10)."""

from __future__ import annotations

import numpy as np
import pytest

import refimpl
from refimpl import sghmc
from refimpl._qkernels import vc_into
from refimpl.formats import FixedPoint
from refimpl.quantize import quantize
from theory import predictions as P

F4 = FixedPoint(8, 4)


def _noise(method, n, dim, seed, **kw):
    spec = refimpl.noise_spec(method, dim, **kw)
    rng = np.random.default_rng(seed)
    cols = [rng.standard_normal((n, int(np.prod(s)))) if k == "normal" else rng.random((n, int(np.prod(s))))
            for _, k, s in spec]
    z = np.concatenate(cols, axis=1)
    named, off = {}, 0
    for (name, _k, shape) in spec:
        m = int(np.prod(shape))
        named[name] = z[:, off:off + m]
        off += m
    return z, named


def test_coefficients_match_h0_and_theory():
    c = sghmc.coefficients(0.09, 3.0, 2.0)
    t = P.sghmc_coefficients(0.09, 2.0, 3.0)
    a = np.exp(-0.27)
    assert c["a"] == pytest.approx(a, rel=1e-15)
    assert c["c_v"] == pytest.approx(2 * (1 - a) / 3, rel=1e-14)
    assert c["c_xg"] == pytest.approx(2 * (0.27 + a - 1) / 9, rel=1e-13)
    assert c["sigma_x"] == pytest.approx(2 * (0.54 + 4 * a - a * a - 3) / 9, rel=1e-11)
    for k in ("a", "c_v", "c_xv", "c_xg", "sigma_v", "sigma_x", "sigma_xv"):
        assert c[k] == pytest.approx(getattr(t, k), rel=1e-12), k


@pytest.mark.parametrize("sign, sx", [("correct", -1.0), ("paper", 1.0)])
def test_sghmc_and_lp_steps_follow_h1_h3(sign, sx):
    n, d, eta, gam, u, s = 6, 2, 0.1, 2.0, 1.5, 0.4
    rng = np.random.default_rng(0)
    x = quantize(rng.normal(size=(n, d)), F4, "nearest")
    v = quantize(rng.normal(size=(n, d)), F4, "nearest")
    c = sghmc.coefficients(eta, gam, u)
    corr = c["sigma_xv"] / c["sigma_v"]
    sdx = np.sqrt(c["sigma_x"] - c["sigma_xv"] * corr)
    for method in ("sghmc", "sghmc_lp_f", "sghmc_lp_l"):
        z, nm = _noise(method, n, d, 1, grad_noise=s)
        kw = dict(method=method, step_size=eta, target="gaussian", grad_noise=s, friction=gam, inverse_mass=u,
                  position_sign=sign)
        if method != "sghmc":
            kw["fmt"] = F4
        new = sghmc.step(sghmc.init(x, v), z, **kw)
        Qs = lambda a, b: quantize(a, F4, "stochastic", noise=b)  # noqa: E731
        if method == "sghmc":
            g = x + s * nm["grad_noise"]
        elif method == "sghmc_lp_f":
            g = Qs(Qs(x, nm["u_weight"]) + s * nm["grad_noise"], nm["u_grad"])
        else:
            g = Qs(x + s * nm["grad_noise"], nm["u_grad"])
        xiv = np.sqrt(c["sigma_v"]) * nm["z1"]
        xix = corr * xiv + sdx * nm["z2"]
        v1 = c["a"] * v - c["c_v"] * g + xiv
        x1 = x + c["c_xv"] * v + sx * c["c_xg"] * g + xix
        if method == "sghmc_lp_l":
            v1, x1 = Qs(v1, nm["u_velocity"]), Qs(x1, nm["u_weight"])
        np.testing.assert_allclose(new.velocity, v1, rtol=0, atol=1e-15, err_msg=method)
        np.testing.assert_allclose(new.position, x1, rtol=0, atol=1e-15, err_msg=method)
        if method == "sghmc_lp_l":
            np.testing.assert_array_equal(new.position, x1)
            np.testing.assert_array_equal(new.velocity, v1)


def test_sghmc_vc_step_is_two_independent_vc_calls_h4():
    n, d, eta, gam, u = 5, 3, 0.2, 3.0, 2.0
    rng = np.random.default_rng(3)
    x = quantize(rng.normal(size=(n, d)), F4, "nearest")
    v = quantize(rng.normal(size=(n, d)), F4, "nearest")
    z, nm = _noise("sghmc_vc", n, d, 2)
    new = sghmc.step(sghmc.init(x, v), z, method="sghmc_vc", step_size=eta, target="gaussian", fmt=F4,
                     friction=gam, inverse_mass=u)
    c = sghmc.coefficients(eta, gam, u)
    g = quantize(x, F4, "stochastic", noise=nm["u_grad"])
    muv = c["a"] * v - c["c_v"] * g
    mux = x + c["c_xv"] * v - c["c_xg"] * g
    for mu, var, who, got in ((muv, c["sigma_v"], "v", new.velocity), (mux, c["sigma_x"], "x", new.position)):
        want = np.empty(mu.size)
        vc_into(mu.ravel().copy(), var, nm[f"xi_{who}"].ravel().copy(), nm[f"u_round_{who}"].ravel().copy(),
                nm[f"u_cat_{who}"].ravel().copy(), want, F4.code)
        np.testing.assert_array_equal(got.ravel(), want)


def test_friction_shrinks_momentum():
    """T = 0 at the mode (∇U = 0): v' = e^{−γη}v, strictly smaller, and more so for larger γ."""
    v = np.array([[1.0], [-2.0], [0.5]])
    x = np.zeros_like(v)
    z, _ = _noise("sghmc", 3, 1, 0)
    prev = np.abs(v)
    for gam in (0.5, 1.0, 4.0):
        new = sghmc.step(sghmc.init(x, v), z, method="sghmc", step_size=0.1, target="gaussian", friction=gam,
                         temperature=0.0)
        np.testing.assert_allclose(new.velocity, np.exp(-gam * 0.1) * v, rtol=1e-15)
        assert np.all(np.abs(new.velocity) < prev)
        prev = np.abs(new.velocity)


def test_sign_convention_moves_toward_the_mode():
    """v = 0, T = 0, x > 0 on N(0,1): s_x = −1 gives x' = x − c_xg·x (toward 0); "paper" moves away."""
    x = np.array([[1.0]])
    z, _ = _noise("sghmc", 1, 1, 0)
    kw = dict(method="sghmc", step_size=0.5, target="gaussian", temperature=0.0, friction=1.0)
    c = sghmc.coefficients(0.5, 1.0, 1.0)
    a = sghmc.step(sghmc.init(x), z, **kw).position[0, 0]
    b = sghmc.step(sghmc.init(x), z, position_sign="paper", **kw).position[0, 0]
    assert a == pytest.approx(1 - c["c_xg"]) and b == pytest.approx(1 + c["c_xg"])


@pytest.mark.parametrize("method", ["sghmc_lp_l", "sghmc_vc"])
@pytest.mark.parametrize("rescaling", [None, "paper", "code"])
def test_lp_storage_on_grid_and_velocity_rescaling(method, rescaling):
    """Stored x and v stay on the grid whatever the rescaling; S_v is 1 without rescaling, <= 1 in the code form."""
    fmt = FixedPoint(8, 6)  # range [-2, 2): velocities with u = 4 overflow it without rescaling
    out, st = refimpl.sample(method, "gaussian", dim=3, n_chains=20, n_steps=40, step_size=0.1, seed=1, fmt=fmt,
                             friction=1.0, inverse_mass=4.0, x0=0.3, velocity_rescaling=rescaling, return_state=True)
    s = sghmc.unpack(st.packed)
    for arr in (out, s.position, s.velocity):
        assert np.array_equal(quantize(arr, fmt, "nearest"), arr)
    if rescaling is None:
        assert np.all(s.velocity_scale == 1.0)
    elif rescaling == "paper":
        assert np.all(s.velocity_scale > 0) and not np.all(s.velocity_scale == 1.0)
    else:
        assert np.all(s.velocity_scale <= 1.0)


def test_rescaling_paper_vs_code_scale_values():
    """One step from v = 0, T = 0: S_v = |μ_v|/Ū (paper) vs min(1, |μ_v|/(c·Ū)) (code)."""
    x = np.array([[1.0]])
    z, _ = _noise("sghmc_lp_l", 1, 1, 0)
    kw = dict(method="sghmc_lp_l", step_size=0.1, target="gaussian", temperature=0.0, fmt=F4)
    c = sghmc.coefficients(0.1, 1.0, 1.0)
    muv = -c["c_v"] * 1.0
    p = sghmc.step(sghmc.init(x), z, velocity_rescaling="paper", **kw)
    assert p.velocity_scale[0] == pytest.approx(abs(muv) / F4.hi)
    k = sghmc.step(sghmc.init(x), z, velocity_rescaling="code", velocity_rescaling_constant=0.01, **kw)
    assert k.velocity_scale[0] == pytest.approx(min(1.0, abs(muv) / (0.01 * F4.hi)))


def test_vc_sigma_datasize_quirk_flag():
    """vc_sigma_datasize_quirk=N reproduces the released deep-learning VC variances (§3.11, §7.3 item 4)."""
    n, d, eta, gam, u, N = 4, 2, 0.5, 2.0, 2.0, 100.0
    rng = np.random.default_rng(5)
    x = quantize(rng.normal(size=(n, d)), F4, "nearest")
    v = quantize(rng.normal(size=(n, d)), F4, "nearest")
    z, nm = _noise("sghmc_vc", n, d, 6)
    new = sghmc.step(sghmc.init(x, v), z, method="sghmc_vc", step_size=eta, target="gaussian", fmt=F4,
                     friction=gam, inverse_mass=u, vc_sigma_datasize_quirk=N)
    c = sghmc.coefficients(eta, gam, u)
    g = quantize(x, F4, "stochastic", noise=nm["u_grad"])
    h = gam * eta / N
    sig = {"v": u * (1 - np.exp(-2 * h)), "x": u / gam**2 * (2 * h + 4 * np.exp(-h) - np.exp(-2 * h) - 3)}
    mu = {"v": c["a"] * v - c["c_v"] * g, "x": x + c["c_xv"] * v - c["c_xg"] * g}
    for who, got in (("v", new.velocity), ("x", new.position)):
        want = np.empty(n * d)
        vc_into(mu[who].ravel().copy(), sig[who], nm[f"xi_{who}"].ravel().copy(),
                nm[f"u_round_{who}"].ravel().copy(), nm[f"u_cat_{who}"].ravel().copy(), want, F4.code)
        np.testing.assert_array_equal(got.ravel(), want)
    default = sghmc.step(sghmc.init(x, v), z, method="sghmc_vc", step_size=eta, target="gaussian", fmt=F4,
                         friction=gam, inverse_mass=u)
    assert not np.array_equal(default.position, new.position)
    with pytest.raises(ValueError, match="vc_sigma_datasize_quirk"):
        sghmc.step(sghmc.init(x, v), z, method="sghmc_vc", step_size=eta, target="gaussian", fmt=F4,
                   vc_sigma_datasize_quirk=-1)
