"""The quantizers give the same bits with and without Numba (NUMBA_DISABLE_JIT=1).

A subprocess with ``NUMBA_DISABLE_JIT=1`` runs :func:`compute` (pure Python kernels,
pure-Python splitmix64) and saves its outputs; this process runs the same function with
the jitted kernels; every array must agree bit for bit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def compute() -> dict[str, np.ndarray]:
    import refimpl._qkernels as K
    from refimpl import slots as S
    from refimpl import (
        BlockFloatingPoint,
        FixedPoint,
        FloatingPoint,
        IEEEFloat,
        MXFormat,
        NVFP4,
        categorical_offset,
        draw_quantize_noise,
        quantize,
        vc_quantize,
    )

    rng = np.random.default_rng(123)
    x64 = np.concatenate([rng.standard_normal(40) * 3, [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-300, 0.0625, -0.1875, 1.7e308, -1.7e308]])
    with np.errstate(over="ignore"):
        x32 = x64.astype(np.float32)
    fmts = {
        "fixed": FixedPoint(8, 4),
        "fixed_sym": FixedPoint(6, 2, symmetric=True),
        "bfp": BlockFloatingPoint(6),
        "bfp0": BlockFloatingPoint(5, 0),
        "float": FloatingPoint(4, 3),
        "ieee16": IEEEFloat("float16"),
        "e4m3": IEEEFloat("float8_e4m3fn"),
        "bf16sat": IEEEFloat("bfloat16", saturate=True),
        "mxfp4": MXFormat("mxfp4"),
        "mxint8": MXFormat("mxint8"),
        "mxfp8_e5m2": MXFormat("mxfp8_e5m2"),
        "nvfp4": NVFP4(tensor_scale=0.5),
    }
    out = {"keyed": draw_quantize_noise(np.random.default_rng(5), (64,))}
    for name, f in fmts.items():
        for dn, x in (("64", x64), ("32", x32)):
            xx = x.reshape(5, 10) if name == "bfp0" else x
            out[f"{name}_{dn}_nearest"] = quantize(xx, f)
            out[f"{name}_{dn}_even"] = quantize(xx, f, ties="even")
            out[f"{name}_{dn}_sr"] = quantize(xx, f, "stochastic", np.random.default_rng(1))
            mu = np.where(np.isfinite(xx), xx, 0.5)
            for var in (0.0, 0.001, 0.3):
                out[f"{name}_{dn}_vc{var}"] = vc_quantize(mu, var, f, np.random.default_rng(2))
            out[f"{name}_{dn}_vcpub"] = vc_quantize(mu, 0.0001, f, np.random.default_rng(2), vc_bfp_published=True)
        if name == "bfp0":  # Q^vc escape re-rounding and all-zero blocks with V > 0 (docs/quantizers.md)
            mu_e = np.tile([1.9, -0.7, 0.0], (20, 1))
            mu_e[3] = 0.0
            out["bfp_escape_rows"] = vc_quantize(mu_e, 0.01, BlockFloatingPoint(8, 0), np.random.default_rng(3))
            for k in range(8):
                out[f"bfp_escape_block{k}"] = vc_quantize(np.array([1.9, -0.7, np.inf, np.nan]), 0.01,
                                                          BlockFloatingPoint(8), np.random.default_rng(10 + k))
            out["float_escape"] = vc_quantize(np.full(40, -1.95), 0.01, FloatingPoint(5, 4), np.random.default_rng(4))
        if name.startswith("mx") or name == "nvfp4":  # MX Q^vc across a block top (rescale) and zero blocks
            mu_m = np.tile(np.r_[np.full(16, 1.9), np.full(15, -0.7), 0.0], (6, 1))
            mu_m[2] = 0.0
            out[f"{name}_escape"] = vc_quantize(mu_m, 0.05, f, np.random.default_rng(6))
        if name not in ("bfp", "bfp0") and not name.startswith("mx") and name != "nvfp4":  # parallel kernels
            # (element-wise formats), called directly
            r = np.empty_like(x64)
            K.nearest_into_par(x64, r, f.code)
            out[f"{name}_par_nearest"] = r.copy()
            K.stochastic_keyed_into_par(x64, np.uint64(987654321), r, f.code)
            out[f"{name}_par_keyed"] = r.copy()
            K.stochastic_into_par(x64, out["keyed"][: x64.size], r, f.code)
            out[f"{name}_par_sr"] = r.copy()
    r32 = np.empty_like(x32)
    for name in ("fixed", "fixed_sym"):
        c = fmts[name].code
        with np.errstate(over="ignore"):
            K.fixed_nearest_f32_par(x32, r32, c[S.FIXED_DELTA], c[S.FIXED_LO], c[S.FIXED_HI])
        out[f"{name}_f32_par_nearest"] = r32.copy()
    out["cat"] = categorical_offset(np.linspace(0, 0.25, 30), 0.0625, 0.5, np.random.default_rng(3))
    return out


def test_same_bits_without_jit(tmp_path: Path):
    path = tmp_path / "nojit.npz"
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[2]);"
        "import test_nojit_parity_quantize as t;"
        "import numba; assert numba.config.DISABLE_JIT;"
        "np.savez(sys.argv[1], **t.compute())"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(Path(__file__).parent)], check=True, env=env, timeout=300)
    ref = np.load(path)
    ours = compute()
    assert set(ref.files) == set(ours)
    for k in ours:
        a, b = ours[k], ref[k]
        assert a.dtype == b.dtype and a.shape == b.shape, k
        assert a.tobytes() == b.tobytes(), k  # bit for bit, NaN payloads and signed zeros included
