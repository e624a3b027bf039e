"""Ratio benchmark: refimpl SGLD / VC SGLD against NumPy and BlackJAX (issue 3).

Workload: the 1-D standard Gaussian, ``--chains`` chains (10^4) x ``--steps``
steps (2000), step size 2e-3 (the LP-SGLD toy's η, §6.1), chain-steps per second.
All implementations run side by side in one process (the machines are shared:
only the ratios are meaningful):

* ``refimpl sgld``     -- ``refimpl.sample("sgld", "gaussian", keep="last")`` (S1);
* ``refimpl sgld_vc``  -- ``refimpl.sample("sgld_vc", ..., fmt=FixedPoint(8, 3))`` (S6);
* ``numpy sgld``       -- a vectorised NumPy loop of (S1) over chains (one
  ``standard_normal(n_chains)`` per step);
* ``blackjax sgld``    -- ``blackjax.sgld`` under ``jax.jit(jax.vmap(...))`` with a
  ``lax.scan`` over steps (only if jax and blackjax are installed: the optional
  ``bench`` extra).

Goals (issue 3): sgld >= 5x BlackJAX and >= 2x NumPy; sgld_vc >= 1x BlackJAX sgld.
Each timing is the best of ``--repeat`` runs after one warm-up call (compilation).
Usage: ``python benchmarks/bench_samplers.py [--chains 10000] [--steps 2000] [--repeat 3]``
"""

from __future__ import annotations

import argparse

import numpy as np

from _timing import best_time




def numpy_sgld(n_chains, n_steps, eta, seed):
    rng = np.random.default_rng(seed)
    x = np.zeros(n_chains)
    sd = np.sqrt(2 * eta)
    for _ in range(n_steps):
        x = x - eta * x + sd * rng.standard_normal(n_chains)
    return x


def blackjax_runner(n_chains, n_steps, eta):
    try:
        import blackjax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    kernel = blackjax.sgld(lambda position, minibatch: -position)  # ∇ log N(0, 1)

    def one_chain(key, x0):
        def body(x, k):
            return kernel.step(k, x, None, eta), None

        x, _ = jax.lax.scan(body, x0, jax.random.split(key, n_steps))
        return x

    run = jax.jit(jax.vmap(one_chain))
    keys = jax.random.split(jax.random.PRNGKey(0), n_chains)
    x0 = jnp.zeros(n_chains)
    return lambda: run(keys, x0).block_until_ready()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import refimpl
    from refimpl.formats import FixedPoint

    n, k, eta = args.chains, args.steps, 2e-3
    work = n * k
    fmt = FixedPoint(8, 3)
    rates = {}
    rates["refimpl sgld"] = work / best_time(
        lambda: refimpl.sample("sgld", "gaussian", n_chains=n, n_steps=k, step_size=eta, seed=1, keep="last"), args.repeat)
    rates["refimpl sgld_vc"] = work / best_time(
        lambda: refimpl.sample("sgld_vc", "gaussian", n_chains=n, n_steps=k, step_size=eta, seed=1, fmt=fmt,
                               keep="last"), args.repeat)
    rates["numpy sgld"] = work / best_time(lambda: numpy_sgld(n, k, eta, 1), args.repeat)
    bj = blackjax_runner(n, k, eta)
    if bj is not None:
        rates["blackjax sgld"] = work / best_time(bj, args.repeat)
    print(f"1-D Gaussian, {n} chains x {k} steps (chain-steps/s, best of {args.repeat})")
    for name, r in rates.items():
        print(f"  {name:18s} {r / 1e6:9.1f} M/s")
    print("ratios:")
    print(f"  refimpl sgld    / numpy sgld    = {rates['refimpl sgld'] / rates['numpy sgld']:6.2f}   (goal >= 2)")
    print(f"  refimpl sgld_vc / numpy sgld    = {rates['refimpl sgld_vc'] / rates['numpy sgld']:6.2f}")
    if bj is None:
        print("  blackjax: not installed (pip install jax blackjax) -- BlackJAX ratios skipped")
    else:
        print(f"  refimpl sgld    / blackjax sgld = {rates['refimpl sgld'] / rates['blackjax sgld']:6.2f}   (goal >= 5)")
        print(f"  refimpl sgld_vc / blackjax sgld = {rates['refimpl sgld_vc'] / rates['blackjax sgld']:6.2f}   (goal >= 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
