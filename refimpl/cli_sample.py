"""``qlangevin sample``: run a reference sampler and print its moments.

Example: ``qlangevin sample sgld_lp_l --fmt fixed:8:3 --step-size 1e-3 --grad-noise 0.1``
runs the LP-SGLD Gaussian toy (§6.1) in streaming-statistics mode and prints the
pooled mean and E[θ²] per coordinate with independent-chain standard errors.
"""

from __future__ import annotations

import sys

import numpy as np


def add_arguments(parser) -> None:
    from refimpl.targets import TARGET_NAMES

    parser.add_argument("method", help="sgld, sgd_lp_f, sgd_lp_l, sgld_lp_f, sgld_lp_l, sgld_vc, sghmc, "
                                       "sghmc_lp_f, sghmc_lp_l, sghmc_vc (or any registered method)")
    parser.add_argument("--target", default="gaussian", choices=TARGET_NAMES)
    parser.add_argument("--dim", type=int, default=1)
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--step-size", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fmt", default=None, help="weight format, e.g. fixed:8:3, bfp:8, float:4:3, ieee:bfloat16")
    parser.add_argument("--grad-fmt", default=None, help="gradient format (default: --fmt; 'none' = full precision)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--grad-noise", type=float, default=0.0, help="s in ∇Ũ = ∇U + s·ζ")
    parser.add_argument("--friction", type=float, default=None, help="SGHMC γ")
    parser.add_argument("--inverse-mass", type=float, default=None, help="SGHMC u")
    parser.add_argument("--burn-in", type=int, default=None, help="default: steps // 5")
    parser.add_argument("--thin", type=int, default=1)
    parser.add_argument("--sghmc-position-sign", choices=("correct", "paper"), default=None)
    parser.add_argument("--velocity-rescaling", choices=("paper", "code"), default=None)


def run(args) -> int:
    import refimpl

    opts = {}
    if args.sghmc_position_sign is not None:
        opts["sghmc_position_sign"] = args.sghmc_position_sign
    if args.velocity_rescaling is not None:
        opts["velocity_rescaling"] = args.velocity_rescaling
    burn = args.steps // 5 if args.burn_in is None else args.burn_in
    try:
        st = refimpl.sample(args.method, args.target, dim=args.dim, n_chains=args.chains, n_steps=args.steps,
                            step_size=args.step_size, seed=args.seed, fmt=args.fmt, grad_fmt=args.grad_fmt,
                            temperature=args.temperature, grad_noise=args.grad_noise, friction=args.friction,
                            inverse_mass=args.inverse_mass, burn_in=burn, thin=args.thin, keep="stats", **opts)
    except (ValueError, FloatingPointError) as exc:
        print(f"qlangevin sample: {exc}", file=sys.stderr)
        return 2
    c = st.chain_mean.shape[0]
    print(f"{args.method} on {args.target} (dim {st.mean.shape[0]}): {c} chains x {st.n} kept steps "
          f"(burn-in {burn}, thin {args.thin}), step size {args.step_size}")
    print("coord        mean    (se)          E[x^2]    (se)")
    m2c = st.chain_var + st.chain_mean**2
    for j in range(min(st.mean.shape[0], 10)):
        se_m = st.chain_mean[:, j].std(ddof=1) / np.sqrt(c) if c > 1 else float("nan")
        se_2 = m2c[:, j].std(ddof=1) / np.sqrt(c) if c > 1 else float("nan")
        print(f"{j:5d}  {st.mean[j]:+11.5f} ({se_m:.5f})  {m2c[:, j].mean():11.5f} ({se_2:.5f})")
    if st.mean.shape[0] > 10:
        print(f"... ({st.mean.shape[0] - 10} more coordinates)")
    return 0
