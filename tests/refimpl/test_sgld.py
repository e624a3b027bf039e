"""Deterministic properties of the SGLD family kernels (ALGORITHMS.md §3.2-§3.6)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refimpl
from refimpl import sgld
from refimpl.formats import BlockFloatingPoint, FixedPoint, FloatingPoint, IEEEFloat
from refimpl.quantize import quantize

FORMATS = [FixedPoint(8, 4), BlockFloatingPoint(6), FloatingPoint(4, 3), IEEEFloat("bfloat16")]


def _noise(method, n, dim, seed, **kw):
    spec = refimpl.noise_spec(method, dim, **kw)
    rng = np.random.default_rng(seed)
    cols = []
    for _name, kind, shape in spec:
        size = (n, int(np.prod(shape)))
        cols.append(rng.standard_normal(size) if kind == "normal" else rng.random(size))
    return spec, np.concatenate(cols, axis=1)


def _cols(spec, noise, name):
    off = 0
    for nm, _k, shape in spec:
        m = int(np.prod(shape))
        if nm == name:
            return noise[:, off:off + m]
        off += m
    raise KeyError(name)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: type(f).__name__)
def test_sgld_step_equations_from_noise(fmt):
    """Each method's one step equals its equation (S1)-(S6) evaluated with the same noise."""
    dim, n, eta, s = 3, 5, 0.07, 0.3
    x = np.random.default_rng(0).normal(size=(n, dim))
    xq = quantize(x, fmt, "nearest") if not isinstance(fmt, BlockFloatingPoint) else np.array([quantize(r, fmt, "nearest") for r in x])
    Q = (lambda v, u: quantize(v, fmt, "stochastic", noise=u)) if not isinstance(fmt, BlockFloatingPoint) else \
        (lambda v, u: np.array([quantize(a, fmt, "stochastic", noise=b) for a, b in zip(v, u)]))
    for method in ["sgld", "sgd_lp_f", "sgd_lp_l", "sgld_lp_f", "sgld_lp_l"]:
        spec, z = _noise(method, n, dim, 1, grad_noise=s)
        kw = dict(method=method, step_size=eta, target="gaussian", grad_noise=s)
        if method != "sgld":
            kw["fmt"] = fmt
        start = x if method in ("sgld", "sgd_lp_f", "sgld_lp_f") else xq
        got = sgld.step(sgld.init(start), z, **kw).position
        c = lambda name, spec=spec, z=z: _cols(spec, z, name)  # noqa: E731
        if method in ("sgd_lp_f", "sgld_lp_f"):
            g = Q(Q(start, c("u_weight")) + s * c("grad_noise"), c("u_grad"))
        elif method == "sgld":
            g = start + s * c("grad_noise")
        else:
            g = Q(start + s * c("grad_noise"), c("u_grad"))
        if method == "sgld":
            want = start - eta * g + np.sqrt(2 * eta) * c("xi")
        elif method == "sgd_lp_f":
            want = start - eta * g
        elif method == "sgld_lp_f":
            want = start - eta * g + np.sqrt(2 * eta) * c("xi")
        elif method == "sgd_lp_l":
            want = Q(start - eta * g, c("u_weight"))
        else:
            want = Q(start - eta * g + np.sqrt(2 * eta) * c("xi"), c("u_weight"))
        np.testing.assert_array_equal(got, want, err_msg=method)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: type(f).__name__)
def test_zero_temperature_gives_the_sgd_lp_update(fmt):
    """T = 0: SGLDLP-L = SGDLP-L, SGLDLP-F = SGDLP-F and VC (V = 0: Q^s(μ)) = SGDLP-L, from matching uniforms."""
    dim, n, eta = 2, 6, 0.1
    x0 = np.random.default_rng(2).normal(size=(n, dim))
    x = np.array([quantize(r, fmt, "nearest") for r in x0])
    pairs = [("sgld_lp_l", "sgd_lp_l", {"u_grad": "u_grad", "u_weight": "u_weight"}),
             ("sgld_lp_f", "sgd_lp_f", {"u_grad": "u_grad", "u_weight": "u_weight"}),
             ("sgld_vc", "sgd_lp_l", {"u_grad": "u_grad", "u_round": "u_weight"})]
    for noisy, plain, mapping in pairs:
        spec_n, zn = _noise(noisy, n, dim, 3)
        spec_p = refimpl.noise_spec(plain, dim)
        zp = np.zeros((n, sum(int(np.prod(s)) for _, _, s in spec_p)))
        for src, dst in mapping.items():
            _cols(spec_p, zp, dst)[:] = _cols(spec_n, zn, src)
        a = sgld.step(sgld.init(x), zn, method=noisy, step_size=eta, target="gaussian", fmt=fmt, temperature=0.0)
        b = sgld.step(sgld.init(x), zp, method=plain, step_size=eta, target="gaussian", fmt=fmt)
        np.testing.assert_array_equal(a.position, b.position, err_msg=noisy)


def _on_grid(values, fmt):
    if isinstance(fmt, BlockFloatingPoint):  # one block per chain vector
        return all(np.array_equal(quantize(r, fmt, "nearest"), r) for r in values.reshape(-1, values.shape[-1]))
    return np.array_equal(quantize(values, fmt, "nearest"), values)


@settings(max_examples=25, deadline=None)
@given(method=st.sampled_from(["sgd_lp_l", "sgld_lp_l", "sgld_vc"]), fmt=st.sampled_from(FORMATS),
       eta=st.sampled_from([1e-4, 1e-2, 0.3]), seed=st.integers(0, 2**31), x0=st.floats(-3, 3))
def test_lp_l_storage_stays_on_the_weight_grid(method, fmt, eta, seed, x0):
    """Every stored θ of an LP-L method lies on the weight grid (any format), from any x0."""
    out = refimpl.sample(method, "mixture", dim=3, n_chains=4, n_steps=15, step_size=eta, seed=seed, fmt=fmt,
                         grad_fmt="fixed:8:3", x0=x0, grad_noise=0.5)
    assert np.all(np.isfinite(out))
    assert _on_grid(out, fmt)


def test_vc_variance_target_uses_temperature():
    """(S6) with T: V = 2ηT; at T = 0.25 and η large (branch 1) the one-step variance is 2ηT exactly (P10)."""
    n, eta, T = 200_000, 0.05, 0.25
    fmt = FixedPoint(8, 4)
    x = np.zeros((n, 1))
    spec, z = _noise("sgld_vc", n, 1, 4)
    out = sgld.step(sgld.init(x), z, method="sgld_vc", step_size=eta, target="gaussian", fmt=fmt, temperature=T).position
    # from θ = 0 the gradient is 0 on grid; E = 0, Var = 2ηT; SE of the variance: Var·sqrt(κ−1)/sqrt(n), κ ≤ 3.2
    tol = 5 * 2 * eta * T * np.sqrt(2.2 / n)
    assert abs(out.var() - 2 * eta * T) < tol
    # mutation: a VC that ignores the temperature (V = 2η) is rejected
    bad = sgld.step(sgld.init(x), z, method="sgld_vc", step_size=eta, target="gaussian", fmt=fmt).position
    assert abs(bad.var() - 2 * eta * T) > tol


@pytest.mark.parametrize("ties", [None, "even"])
def test_fast_scalar_path_is_bit_identical_to_the_general_path(ties):
    """The 1-D fixed-point fast path of sgld_vc / sgld_lp_l (scalar _qkernels calls, no gathers) equals the
    general all-chain path (vc_into / stochastic_into) bit for bit: both Q^vc branches (V below and above
    Δ²/4), on grid points, half-grid points, near and beyond the range ends."""
    from refimpl.formats import with_options
    from refimpl.sgld import SGLD_LP_L, SGLD_VC, _general_step
    from refimpl.targets import gaussian as _g

    fmt = FixedPoint(8, 3)
    code = np.ascontiguousarray(with_options(fmt.code, ties=ties))
    d = fmt.delta
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 3, 400), np.arange(-130, 130) * d / 2, [15.875, -16.0, 15.0, -15.5, 0.0]])
    x = quantize(x, fmt, "nearest").reshape(-1, 1)
    n = x.shape[0]
    t = _g(1)
    for eta in (1e-6, 2e-3, d * d / 8, 0.05, 0.3):  # V = 2η: both branches of (Q5)/(Q6)
        for mid, method in ((SGLD_VC, "sgld_vc"), (SGLD_LP_L, "sgld_lp_l")):
            spec, z1 = _noise(method, n, 1, 2, grad_noise=0.2)
            fast = x.copy()
            gen = x.copy()
            mp = np.array([1.0, 0.2, 0.0])
            args = (z1, eta, 1.0, mp, code, fmt.code, t.kind, t.params, t.mat, t.labels, np.empty((6, n, 1)))
            assert sgld.step_all(mid, fast, *args) == -1
            assert _general_step(mid, gen, *args) == -1
            assert fast.tobytes() == gen.tobytes(), (method, eta)
