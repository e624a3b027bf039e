"""Ratio benchmark: QSGLD, CTLD, AskewSGD, BinaryConnect and ProxQuant updates.

Measured side by side in one run (machines are shared: only ratios are meaningful):

* ``qsgld``  -- ``refimpl.sample("qsgld", ...)`` (stochastic rounding, gradient noise,
  Gaussian target) against a vectorised NumPy loop of the same update (QS3): one line,
  chain-steps/s of both and the ratio refimpl / numpy.
* ``ctld``   -- ``refimpl.sample("ctld", ...)`` (ABF bias) against a vectorised NumPy
  loop of (C5)/(C3) over chains.
* ``askewsgd`` -- the Numba direction kernel ``askew_direction`` (A2) against the
  masked NumPy restatement ``askew_direction_numpy`` on 2**20 weights (17 levels).
* ``binaryconnect`` / ``proxquant`` -- one full optimizer ``step`` (NumPy; 2**20
  weights) relative to a plain SGD step ``w - lr*g`` (the overhead of the
  quantization logic; there is no second implementation to compare against).

Each timing is the best of ``--repeat`` runs after one warm-up call (JIT compile).
Usage: ``python benchmarks/bench_methods.py [--repeat 3] [--chains 1000] [--steps 500]``
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from _timing import best_time




def numpy_qsgld(n_chains, n_steps, eta, q, sg, seed):
    """(QS3) with stochastic rounding on U = x^2/2 with gradient noise, vectorised over chains."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n_chains)
    for _ in range(n_steps):
        g = x + sg * rng.standard_normal(n_chains)
        z = x - eta * g
        x = np.floor(q * z + rng.random(n_chains)) / q
    return x


def numpy_ctld(n_chains, n_steps, eta, seed, c_t=0.1, c_a=0.1, eta_a=4e-4, amax=1.0, d1=0.2, d2=0.8, gmin=0.1, nb=50):
    """(C5)/(C3) on U = x^2/2 (ABF running mean, mirror bins, reflecting wall), vectorised over chains."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n_chains)
    v = np.zeros(n_chains)
    a = np.zeros(n_chains)
    va = np.zeros(n_chains)
    cnt = np.zeros((n_chains, nb))
    ub = np.zeros((n_chains, nb))
    rows = np.arange(n_chains)

    def g_and_dg(al):
        s = np.clip((np.abs(al) - d1) / (d2 - d1), 0.0, 1.0)
        g = 1.0 - (1.0 - gmin) * s * s * (3 - 2 * s)
        dg = -(1.0 - gmin) * 6 * s * (1 - s) / (d2 - d1) * np.sign(al)
        return g, dg

    for _ in range(n_steps):
        xi = rng.standard_normal((n_chains, 2))
        U = 0.5 * x * x
        gr = x
        g, dg = g_and_dg(a)
        v = (1 - c_t) * v - eta * g * gr + math.sqrt(2 * c_t * eta) * xi[:, 0]
        x = x + v
        j = np.clip(np.floor((a + amax) / (2 * amax) * nb).astype(np.int64), 0, nb - 1)
        seen = cnt[rows, j] > 0
        force = dg * (U - np.where(seen, ub[rows, j], 0.0))
        va = (1 - c_a) * va - eta_a * force + math.sqrt(2 * c_a * eta_a) * xi[:, 1]
        an = a + va
        hi, lo = an > amax, an < -amax
        an = np.where(hi, 2 * amax - an, np.where(lo, -2 * amax - an, an))
        va = np.where(hi | lo, -va, va)
        for jj in (j, nb - 1 - j):
            cnt[rows, jj] += 1
            ub[rows, jj] += (U - ub[rows, jj]) / cnt[rows, jj]
        a = an
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chains", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--log2n", type=int, default=20)
    args = ap.parse_args(argv)

    import refimpl.driver as drv
    from refimpl.netopt import BinaryConnect, ProxQuant
    from refimpl.netopt.askewsgd import askew_direction, askew_direction_numpy
    from refimpl.netopt.levels import uniform_levels

    nc, ns = args.chains, args.steps
    cs = nc * ns
    print(f"{'method':<14} {'refimpl':>16} {'reference':>16} {'ratio':>8}   reference")

    eta, q, sg = 0.1, 10.0, 0.5
    t_r = best_time(lambda: drv.sample("qsgld", "gaussian", n_chains=nc, n_steps=ns, step_size=eta, seed=0,
                                       grad_noise=sg, rounding="stochastic", resolutions=np.full(ns, q), keep="last"),
                    args.repeat)
    t_n = best_time(lambda: numpy_qsgld(nc, ns, eta, q, sg, 0), args.repeat)
    print(f"{'qsgld':<14} {cs / t_r:>12.3g} c-s/s {cs / t_n:>12.3g} c-s/s {t_n / t_r:>8.2f}   numpy loop over chains")

    t_r = best_time(lambda: drv.sample("ctld", "gaussian", n_chains=nc, n_steps=ns, step_size=0.01, seed=0,
                                       keep="last"), args.repeat)
    t_n = best_time(lambda: numpy_ctld(nc, ns, 0.01, 0), args.repeat)
    print(f"{'ctld':<14} {cs / t_r:>12.3g} c-s/s {cs / t_n:>12.3g} c-s/s {t_n / t_r:>8.2f}   numpy loop over chains")

    n = 2**args.log2n
    rng = np.random.default_rng(0)
    lev = uniform_levels(17)
    w = rng.uniform(-2.2, 2.2, n)
    g = rng.standard_normal(n)
    t_r = best_time(lambda: askew_direction(w, g, lev, 0.003, 1.0, scale=0.25, nu_clamp=1.0), args.repeat)
    t_n = best_time(lambda: askew_direction_numpy(w, g, lev, 0.003, 1.0, scale=0.25, nu_clamp=1.0), args.repeat)
    print(f"{'askewsgd':<14} {n / t_r:>13.3g} w/s {n / t_n:>13.3g} w/s {t_n / t_r:>8.2f}   numpy masked restatement")

    t_sgd = best_time(lambda: w - 0.1 * g, args.repeat)
    for name, opt in (("binaryconnect", BinaryConnect(stochastic=True)), ("proxquant", ProxQuant(lambda_rate=1e-4))):
        st = opt.init([np.clip(w, -1, 1)])

        def one(opt=opt, st=st):
            opt.forward_params(st, rng)
            opt.step(st, [g], 0.1)

        t = best_time(one, args.repeat)
        print(f"{name:<14} {n / t:>13.3g} w/s {n / t_sgd:>13.3g} w/s {t_sgd / t:>8.2f}   plain SGD step w - lr*g")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
