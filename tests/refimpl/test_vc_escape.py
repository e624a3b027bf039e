"""Q^vc lets a chain leave its block/binade (ALGORITHMS.md §2.5 "Requirement instead").

See tests/vc_escape_common.py for the scenario, the exact moments and the detectable effects.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import refimpl
from refimpl import BlockFloatingPoint, FloatingPoint, IEEEFloat, quantize, vc_quantize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vc_escape_common import (  # noqa: E402
    ETA, GRAD_NOISE, N_CHAINS, N_STEPS, X0, Z_TOL, crossing_bracket, scenario_z, with_spec_clip,
)

#: format, grid gap just below 2 (BFP(8): 2^-6; FloatingPoint(5, 4): 2^-4)
FORMATS = [pytest.param(BlockFloatingPoint(8), 2.0**-6, id="bfp8"),
           pytest.param(FloatingPoint(5, 4), 2.0**-4, id="float5_4")]


def _run(method, fmt, x0, seed):
    kw = {} if fmt is None else {"fmt": fmt, "grad_fmt": "none"}
    out = refimpl.sample(method, "gaussian", dim=1, n_chains=N_CHAINS, n_steps=N_STEPS, step_size=ETA,
                         seed=seed, grad_noise=GRAD_NOISE, x0=x0, keep="last", **kw)
    return np.asarray(out)[-1, :, 0]


def _scenario_checks(fmt, gap):
    """(z_mean, z_var, z_below_bracket, z_above_bracket, P_vc) of VC SGLDLP-L on the scenario."""
    q0 = float(quantize(np.array([X0]), fmt)[0])  # LP-L rounds x0 to the nearest grid point
    theta = _run("sgld_vc", fmt, X0, seed=11)
    sgld = _run("sgld", None, q0, seed=12)
    p_vc = float(np.mean(theta >= 2.0))
    z_mean, z_var = scenario_z(theta, q0)
    below, above = crossing_bracket(p_vc, sgld, gap, theta.size)
    return z_mean, z_var, below, above, p_vc


@pytest.mark.parametrize("fmt, gap", FORMATS)
def test_vc_chains_cross_the_binade_like_sgld(fmt, gap):
    z_mean, z_var, below, above, p_vc = _scenario_checks(fmt, gap)
    assert p_vc > 0.15, p_vc  # the spec's clip gave exactly 0
    assert abs(z_mean) < Z_TOL, z_mean
    assert abs(z_var) < Z_TOL, z_var
    assert below < Z_TOL and above < Z_TOL, (below, above, p_vc)


@pytest.mark.parametrize("fmt, gap", FORMATS)
def test_restored_spec_clip_fails_the_scenario(fmt, gap):
    z_mean, z_var, below, above, p_vc = _scenario_checks(with_spec_clip(fmt), gap)
    assert p_vc == 0.0
    assert below > Z_TOL  # the check above rejects it


# ---------------------------------------------------------------------- one-call moments
N_DRAWS = 1_000_000


def _moments_z(q, mu, v):
    n = q.size
    c = q - q.mean()
    var = float(np.mean(c**2))
    z_mean = (float(q.mean()) - mu) / math.sqrt(var / n)
    z_var = (var - v) / math.sqrt(float(np.mean(c**4)) - var * var) * math.sqrt(n)
    return z_mean, z_var


#: BFP with dim=0 on an (n, 1) array: one block per element, as in the samplers
ONE_CALL = [pytest.param(FloatingPoint(5, 4), 2.0**-4, 2.0**-3, id="float5_4"),
            pytest.param(IEEEFloat("bfloat16"), 2.0**-7, 2.0**-6, id="bfloat16"),
            pytest.param(BlockFloatingPoint(8, dim=0), 2.0**-6, 2.0**-5, id="bfp8")]


def _draw(mu, v, fmt, seed):
    x = np.full((N_DRAWS, 1), mu)
    return vc_quantize(x, v, fmt, rng=np.random.default_rng(seed))[:, 0]


@pytest.mark.parametrize("fmt, delta, delta_up", ONE_CALL)
@pytest.mark.parametrize("spec_clip", [False, True], ids=["rule", "mutant-clip"])
def test_branch2_just_below_boundary_has_mean_mu_and_variance_v(fmt, delta, delta_up, spec_clip):
    """μ = 2 - Δ/8, V = 0.2Δ² (V_s = 7Δ²/64 < V <= Δ²/4: branch 2 with a top-up).
    Q^s(μ) = 2 with probability 7/8; the top-up from there is drawn on {-Δ, 0, +2Δ}."""
    mu, v = 2.0 - delta / 8, 0.2 * delta * delta
    f = with_spec_clip(fmt) if spec_clip else fmt
    q = _draw(mu, v, f, 21)
    assert np.all(quantize(q[:, None], fmt)[:, 0] == q)  # representable
    z_mean, z_var = _moments_z(q, mu, v)
    if spec_clip:
        assert abs(z_mean) > 100  # the clip moves every 2 down to 2 - Δ: rejected
    else:
        assert abs(z_mean) < Z_TOL and abs(z_var) < Z_TOL, (z_mean, z_var)
        assert np.any(q == 2.0 + delta_up)  # the coarser grid's neighbour is reached


def _theta1_distribution(mu, v, delta):
    """Exact law of the unclipped branch-1 result θ₁ = Q^d(x) + sign(r)·Cat(|r|, Δ²/4) on μ's
    grid, x ~ N(μ, V - Δ²/4): P(θ₁ = jΔ) by Gauss-Legendre quadrature over each cell of x.
    An independent restatement of (Q5) in NumPy/SciPy (no refimpl code)."""
    sd = math.sqrt(v - delta * delta / 4) / delta  # in units of Δ
    zm = mu / delta
    nodes, weights = np.polynomial.legendre.leggauss(64)
    probs: dict[int, float] = {}
    for k in range(int(math.floor(zm - 12 * sd)) - 1, int(math.ceil(zm + 12 * sd)) + 2):
        for lo, hi in ((k - 0.5, k), (k, k + 0.5)):
            z = (hi - lo) / 2 * nodes + (hi + lo) / 2
            w = (hi - lo) / 2 * weights * np.exp(-0.5 * ((z - zm) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
            m = np.abs(z - k)
            s = 1 if lo >= k else -1
            up = (0.5 + m) ** 2 / 2
            down = (0.5 - m) ** 2 / 2
            probs[k + s] = probs.get(k + s, 0.0) + float(np.sum(w * up))
            probs[k - s] = probs.get(k - s, 0.0) + float(np.sum(w * down))
            probs[k] = probs.get(k, 0.0) + float(np.sum(w * (1 - up - down)))
    return probs


@pytest.mark.parametrize("fmt, delta, delta_up", ONE_CALL)
def test_branch1_just_below_boundary_mean_mu_and_derived_variance_excess(fmt, delta, delta_up):
    """μ = 2 - Δ/2, V = 2Δ² (branch 1).  Escaped results (|θ₁| >= 2, on μ's grid Δ) are
    rounded stochastically onto the coarser grid: mean stays μ and the variance is

        V + Σ_j P(θ₁ = jΔ) p_j (1 - p_j) Δ_j'²,   p_j = frac(jΔ/Δ_j'),

    the residual excess of a crossing (docs/quantizers.md), computed from the exact law of θ₁."""
    mu, v = 2.0 - delta / 2, 2.0 * delta * delta
    excess = 0.0
    for j, p in _theta1_distribution(mu, v, delta).items():
        t = abs(j * delta)
        if t >= 2.0:
            dprime = delta * 2.0 ** (math.frexp(t)[1] - 1)  # gap of t's binade e' (μ is in binade 0)
            frac = (t / dprime) % 1.0
            excess += p * frac * (1 - frac) * dprime * dprime
    assert excess > 0.02 * v  # a visible effect: the test can tell the rule from "variance V"
    q = _draw(mu, v, fmt, 22)
    assert np.all(quantize(q[:, None], fmt)[:, 0] == q)
    z_mean, z_var = _moments_z(q, mu, v + excess)
    assert abs(z_mean) < Z_TOL and abs(z_var) < Z_TOL, (z_mean, z_var, excess / v)
    _, z_var_plain = _moments_z(q, mu, v)
    assert abs(z_var_plain) > Z_TOL  # the excess is real and resolved at this size


def test_branch2_escape_in_a_multi_element_block_is_unbiased():
    """BFP block of 4 (dim=0 rows): when one element steps up out of the block, every odd
    multiple of Δ in the block is rounded onto Δ' = 2Δ with a fair coin (sign of ξ): the
    mean stays μ per element; the variance excess is Δ² per such event (derived)."""
    delta = 2.0**-6
    mu = np.array([2.0 - delta / 8, 1.0 + 3 * delta + delta / 3, -0.5 - delta / 5, 1.5 + delta / 2])
    v = 0.2 * delta * delta
    x = np.tile(mu, (N_DRAWS // 4, 1))
    q = vc_quantize(x, v, BlockFloatingPoint(8, dim=0), rng=np.random.default_rng(23))
    for i in range(4):
        z = (q[:, i].mean() - mu[i]) / math.sqrt(q[:, i].var() / q.shape[0])
        assert abs(z) < Z_TOL, (i, z)
    assert np.any(q[:, 0] > 2.0)  # the block does leave its range
