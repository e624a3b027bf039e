"""torchport MX / NVFP4: bit-for-bit parity with refimpl from the same noise, and the gfloat oracle (docs/mx.md)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from gfloat import compute_scale_amax, quantize_block
from gfloat import formats as gf

import torchport.quantize as tq
from refimpl.formats import NVFP4, MXFormat

rq = importlib.import_module("refimpl.quantize")

FORMATS = [MXFormat(n) for n in ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8")] + [
    NVFP4(),
    NVFP4(tensor_scale=float(np.float32(0.0173))),
    MXFormat("mxfp4", axis=0),
    NVFP4(axis=1),
]
IDS = [repr(f) for f in FORMATS]


def _data(seed, shape=(6, 5, 75)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-4, 4, size=shape[:-1] + (1,))
    x[0, 0, 3] = np.nan
    x[1, 1, 40] = np.inf
    x[2, 2] = 0.0
    x[3, 3, :32] = np.round(x[3, 3, :32] * 4) / 4
    return x


def _same(a, b):
    a = np.asarray(a)
    b = b.numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    return bool(np.all((a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))))


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
def test_nearest_and_gap_bitwise(fmt):
    x = _data(0)
    assert _same(rq.quantize(x, fmt), tq.quantize(torch.from_numpy(x), fmt))
    xf = np.nan_to_num(x, nan=1.0)
    assert _same(rq.vc_gap(xf, fmt), tq.vc_gap(torch.from_numpy(xf), fmt))


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
def test_stochastic_bitwise_same_noise(fmt):
    x = _data(1)
    u = rq.draw_quantize_noise(np.random.default_rng(2), x.shape)
    assert _same(rq.quantize(x, fmt, "stochastic", noise=u),
                 tq.quantize(torch.from_numpy(x), fmt, "stochastic", noise=torch.from_numpy(u), exact=True))


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
@pytest.mark.parametrize("var", [0.0, 1e-8, 1e-3, 0.5, 40.0])
def test_vc_bitwise_same_noise(fmt, var):
    x = _data(3)
    noise = rq.draw_vc_noise(np.random.default_rng(4), x.shape)
    got = tq.vc_quantize(torch.from_numpy(x), var, fmt, noise=tuple(torch.from_numpy(a) for a in noise), exact=True)
    assert _same(rq.vc_quantize(x, var, fmt, noise=noise), got)


def test_nearest_gfloat_oracle_and_dtypes():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 32)) * 10.0 ** rng.uniform(-20, 20, size=(40, 1))
    want = np.stack([quantize_block(gf.format_info_mxfp6_e2m3, r, compute_scale_amax) for r in x])
    assert np.array_equal(tq.quantize(torch.from_numpy(x), MXFormat("mxfp6_e2m3")).numpy(), want)
    x32 = torch.linspace(-3, 3, 64, dtype=torch.float32)
    out = tq.quantize(x32, MXFormat("mxfp8_e5m2"))
    assert out.dtype == torch.float32
    assert torch.equal(out, tq.quantize(x32.double(), MXFormat("mxfp8_e5m2")).float())


def test_generators_reproducible():
    x = torch.randn(4, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fmt = MXFormat("mxfp4")
    a = tq.vc_quantize(x, 0.01, fmt, torch.Generator().manual_seed(1))
    b = tq.vc_quantize(x, 0.01, fmt, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.equal(tq.quantize(a, fmt), a)


@pytest.mark.parametrize("base", ["sgld_lp_f[bfp]", "sgld_lp_l[bfp]", "sgld_vc[bfp]", "sghmc_vc[bfp]"])
@pytest.mark.parametrize("fmt", [MXFormat("mxfp4"), NVFP4()], ids=["mxfp4", "nvfp4"])
def test_optimizer_trajectories_bitwise_with_refimpl(base, fmt):
    """The torchport optimizers with an MX weight/gradient format follow refimpl.sample bit for bit
    from the same noise (the crosscheck's trajectory check on a 40-dim Gaussian: two MX blocks
    along the chain vector, a partial NVFP4 block)."""
    import dataclasses

    import torchport.crosscheck as C

    case = dataclasses.replace({c.name: c for c in C.all_cases()}[base], name=base.replace("bfp", "mx"),
                               fmt=fmt, grad_fmt=fmt)
    row = C.run_trajectory(case, n_steps=60, dim=40, target="gaussian")
    assert row["bitwise"] and row["ok"], row
