"""``qlangevin crosscheck``: run every algorithm in refimpl and torchport from identical noise.

Prints one table row per check (the default fast path against refimpl's counter replay,
then the exact path's trajectory parity and the distributional comparison) and exits 1 if
any check fails (see :mod:`torchport.crosscheck`).  ``--path exact|fast|both`` (default
both) selects the optimizer path checked.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qlangevin.cli import float_range, int_range

    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="torch device (default cpu)")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="float64: exact rows bit for bit; float32: exact rows per step within an ulp "
                             "tolerance, fast rows against the float32 replay (default float64)")
    parser.add_argument("--steps", type=int, default=200, help="trajectory length per algorithm (default 200)")
    parser.add_argument("--dim", type=int, default=3, help="dimension of the trajectory target (default 3)")
    parser.add_argument("--chains", type=int, default=4000,
                        help="independent chains per package in the distributional check (default 4000)")
    parser.add_argument("--dist-steps", type=int, default=300, help="steps of the distributional run (default 300)")
    parser.add_argument("--alpha", type=float_range(0.0, 1.0, lo_open=True, hi_open=True), default=1e-3,
                        help="family-wise level of the two-sample tests, Bonferroni-split (default 1e-3)")
    parser.add_argument("--no-distribution", action="store_true", help="skip the distributional comparison")
    parser.add_argument("--seed", type=int_range(0), default=0)
    parser.add_argument("--only", nargs="*", default=None, metavar="NAME", help="run only these algorithms")
    parser.add_argument("--path", default="both", choices=["exact", "fast", "both"],
                        help="exact: float64 exact path vs refimpl (bit for bit); fast: the default optimizers "
                             "vs refimpl's counter replay; both (default)")


def _progress(row) -> None:
    print(f"  {row['name']} ({row['check']}): {'ok' if row['ok'] else 'FAIL'}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import torch

    from torchport.crosscheck import format_table, run_crosscheck

    if args.device == "cuda" and not torch.cuda.is_available():
        print("qlangevin crosscheck: --device cuda requested but CUDA is not available", file=sys.stderr)
        return 2
    for name in ("steps", "dim", "chains", "dist_steps"):
        if getattr(args, name) < 1:
            print(f"qlangevin crosscheck: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    print(f"crosscheck: path={args.path} device={args.device} dtype={args.dtype} steps={args.steps} dim={args.dim} "
          f"chains={args.chains}x{args.dist_steps} seed={args.seed}", flush=True)
    rows = run_crosscheck(device=args.device, dtype=dtype, n_steps=args.steps, dim=args.dim,
                          n_chains=args.chains, dist_steps=args.dist_steps, alpha=args.alpha, seed=args.seed,
                          distribution=not args.no_distribution, names=args.only, progress=_progress,
                          path=args.path)
    if not rows:
        print(f"qlangevin crosscheck: no algorithm matches --only {args.only}", file=sys.stderr)
        return 2
    print(format_table(rows))
    return 0 if all(r["ok"] for r in rows) else 1
