"""Ratio benchmark: fixed-point nearest and stochastic rounding of 2**24 float32 values.

Measures, side by side in one run (machines are shared: only ratios are meaningful):

* ``copy``        -- ``np.copyto(out, x)``: the memory bound (read n + write n float32);
* ``numpy``       -- a vectorised NumPy implementation of (Q1) / (Q2');
* ``qtorch``      -- ``qtorch.quant.fixed_point_quantize`` on the CPU (if installed);
* ``refimpl``     -- ``refimpl.quantize(..., out=out)`` (parallel Numba kernels; stochastic
  uses the counter-based keyed uniforms, see refimpl/_qkernels.py); writing into a
  preallocated ``out`` as the copy does.  The allocating forms are timed as well.

Goals (issue 2): nearest >= 0.5 x copy, stochastic >= 0.25 x copy, both >= 10 x qtorch.
Each timing is the best of ``--repeat`` interleaved rounds after one warm-up call.

Usage: ``python benchmarks/bench_quantize.py [--log2n 24] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def numpy_nearest(x, delta, lo, hi, out):
    # (Q1): sign(x) Δ floor(|x|/Δ + 1/2), then clip
    np.multiply(np.sign(x), np.floor(np.abs(x) / delta + 0.5) * delta, out=out)
    np.clip(out, lo, hi, out=out)


def numpy_stochastic(x, delta, lo, hi, rng, out):
    # (Q2'): Δ floor(x/Δ + u), then clip
    u = rng.random(x.shape, dtype=np.float32)
    np.multiply(np.floor(x / delta + u), delta, out=out)
    np.clip(out, lo, hi, out=out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log2n", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--wl", type=int, default=8)
    ap.add_argument("--fl", type=int, default=4)
    args = ap.parse_args(argv)

    import numba

    from refimpl import FixedPoint, MXFormat, quantize

    n = 1 << args.log2n
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    out = np.empty_like(x)
    fmt = FixedPoint(args.wl, args.fl)
    delta, lo, hi = fmt.delta, fmt.lo, fmt.hi

    fns = {
        "copy": lambda: np.copyto(out, x),
        "numpy nearest": lambda: numpy_nearest(x, delta, lo, hi, out),
        "numpy stochastic": lambda: numpy_stochastic(x, delta, lo, hi, rng, out),
        "refimpl nearest": lambda: quantize(x, fmt, out=out),
        "refimpl stochastic": lambda: quantize(x, fmt, "stochastic", gen, out=out),
        # the allocating forms (a fresh 64 MiB result per call) against an allocating copy
        "copy (allocating)": lambda: x.copy(),
        "refimpl nearest (allocating)": lambda: quantize(x, fmt),
        # OCP MX (blocks of 32 along the last axis, one row of blocks per 4096 elements)
        "refimpl mxfp8 nearest": lambda: quantize(xm, mxfp8),
        "refimpl mxfp4 stochastic": lambda: quantize(xm, mxfp4, "stochastic", gen),
    }
    xm = x.reshape(-1, 4096)
    mxfp8, mxfp4 = MXFormat("mxfp8_e4m3"), MXFormat("mxfp4")
    gen = np.random.default_rng(1)
    try:
        import torch
        from qtorch.quant import fixed_point_quantize

        xt = torch.from_numpy(x)
        fns["qtorch nearest"] = lambda: fixed_point_quantize(xt, args.wl, args.fl, rounding="nearest")
        fns["qtorch stochastic"] = lambda: fixed_point_quantize(xt, args.wl, args.fl, rounding="stochastic")
    except Exception as exc:  # qtorch missing or failed to build
        print(f"qtorch unavailable: {exc}")
    # interleaved: every implementation is timed once per round, so all see the same
    # (shared, noisy) machine; the best round of each is kept
    for fn in fns.values():
        fn()  # warm-up: JIT compile, page faults
    t = {k: np.inf for k in fns}
    for _ in range(args.repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            t[k] = min(t[k], time.perf_counter() - t0)

    print(f"fixed point FixedPoint({args.wl}, {args.fl}), n = 2**{args.log2n} float32, "
          f"numba threads = {numba.get_num_threads()}, best of {args.repeat}")
    print(f"{'implementation':30s} {'G elem/s':>9s}")
    for k, v in t.items():
        print(f"{k:30s} {n / v / 1e9:9.3f}")
    print()
    print(f"{'ratio':34s} {'value':>7s}  goal")
    for mode, goal in (("nearest", 0.5), ("stochastic", 0.25)):
        r = t[f"refimpl {mode}"]
        print(f"refimpl {mode:10s} / copy            {t['copy'] / r:7.2f}  >= {goal}")
        print(f"refimpl {mode:10s} / numpy           {t[f'numpy {mode}'] / r:7.2f}")
        if f"qtorch {mode}" in t:
            print(f"refimpl {mode:10s} / qtorch          {t[f'qtorch {mode}'] / r:7.2f}  >= 10")
    print(f"refimpl nearest (allocating) / copy (allocating)  "
          f"{t['copy (allocating)'] / t['refimpl nearest (allocating)']:7.2f}")
    print(f"refimpl mxfp8 nearest / fixed nearest (allocating) "
          f"{t['refimpl nearest (allocating)'] / t['refimpl mxfp8 nearest']:7.2f}")
    print(f"refimpl mxfp4 stochastic / fixed stochastic        "
          f"{t['refimpl stochastic'] / t['refimpl mxfp4 stochastic']:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
