"""torchport: Q^vc lets a chain leave its block/binade, bit-identical to refimpl.

The scenario and its checks are those of tests/refimpl/test_vc_escape.py
(tests/vc_escape_common.py), run with ``torchport.optim.LowPrecisionSGLD`` on one
parameter of N_CHAINS elements (BFP: dim=0 on an (n, 1) tensor, one block per element).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import refimpl  # noqa: E402
from refimpl import BlockFloatingPoint, FloatingPoint, IEEEFloat, vc_quantize  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vc_escape_common import (  # noqa: E402
    ETA, GRAD_NOISE, N_CHAINS, N_STEPS, X0, Z_TOL, crossing_bracket, scenario_z, with_spec_clip,
)

FORMATS = [pytest.param(BlockFloatingPoint(8, dim=0), 2.0**-6, id="bfp8"),
           pytest.param(FloatingPoint(5, 4), 2.0**-4, id="float5_4")]


def _run_torch(fmt, seed):
    from torchport.optim import LowPrecisionSGLD
    from torchport.quantize import quantize

    p = torch.nn.Parameter(torch.full((N_CHAINS, 1), X0, dtype=torch.float64))
    opt = LowPrecisionSGLD([p], lr=ETA, weight_format=fmt, accumulator="low", variance_corrected=True,
                           quantize_initial=True, seed=seed, exact=True)
    q0 = float(quantize(torch.tensor([[X0]], dtype=torch.float64), fmt)[0, 0])
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(N_STEPS):
        p.grad = p.detach() + GRAD_NOISE * torch.randn(p.shape, generator=g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()[:, 0], q0


def _sgld(q0, seed):
    out = refimpl.sample("sgld", "gaussian", dim=1, n_chains=N_CHAINS, n_steps=N_STEPS, step_size=ETA, seed=seed,
                         grad_noise=GRAD_NOISE, x0=q0, keep="last")
    return np.asarray(out)[-1, :, 0]


def _checks(fmt, gap):
    theta, q0 = _run_torch(fmt, seed=31)
    p_vc = float(np.mean(theta >= 2.0))
    z_mean, z_var = scenario_z(theta, q0)
    below, above = crossing_bracket(p_vc, _sgld(q0, seed=32), gap, theta.size)
    return z_mean, z_var, below, above, p_vc


@pytest.mark.parametrize("fmt, gap", FORMATS)
def test_torch_vc_chains_cross_the_binade_like_sgld(fmt, gap):
    z_mean, z_var, below, above, p_vc = _checks(fmt, gap)
    assert p_vc > 0.15, p_vc
    assert abs(z_mean) < Z_TOL and abs(z_var) < Z_TOL, (z_mean, z_var)
    assert below < Z_TOL and above < Z_TOL, (below, above, p_vc)


@pytest.mark.parametrize("fmt, gap", FORMATS)
def test_torch_restored_spec_clip_fails_the_scenario(fmt, gap):
    _, _, below, _, p_vc = _checks(with_spec_clip(fmt), gap)
    assert p_vc == 0.0 and below > Z_TOL


@pytest.mark.parametrize("fmt, shape", [(FloatingPoint(5, 4), (4000,)), (IEEEFloat("bfloat16"), (4000,)),
                                        (BlockFloatingPoint(8, dim=0), (4000, 1)),
                                        (BlockFloatingPoint(8, dim=0), (1000, 4))],
                         ids=["float5_4", "bfloat16", "bfp8-per-element", "bfp8-blocks-of-4"])
@pytest.mark.parametrize("var", [1e-5, 4e-5, 2e-4, 1e-3, 1e-2])
def test_vc_near_binade_boundary_bit_identical_to_refimpl(fmt, shape, var):
    """Both branches, escapes up and down, the {-Δ, 0, +2Δ} top-up: same noise, same bits."""
    from torchport.quantize import vc_quantize as tvc

    mu = 2.0 - np.random.default_rng(0).random(shape) * 0.2
    mu[::7] *= -1.0
    noise = refimpl.draw_vc_noise(np.random.default_rng(1), mu.shape)
    a = vc_quantize(mu, var, fmt, noise=noise)
    b = tvc(torch.as_tensor(mu), var, fmt, noise=tuple(torch.as_tensor(x) for x in noise), exact=True).numpy()
    assert np.array_equal(a.view(np.int64), b.view(np.int64))
    assert np.any(np.abs(a) >= 2.0)
