"""``qlangevin quantize``: the number formats and quantizers at work on a default input.

For each format it prints a table of input values, their nearest rounding Q^d (Q1), one
stochastic rounding Q^s (Q2') drawn with ``--seed``, and a Q^vc check ((Q5)/(Q6)): the
mean and variance of ``--n`` draws of Q^vc(μ, V) for one μ and two target variances
(one per branch), beside the values P10 predicts.
"""

from __future__ import annotations

import argparse

DEFAULT_FORMATS = ["fixed:8:6", "fixed:8:3", "bfp:8", "float:4:3", "ieee:bfloat16", "ieee:float8_e4m3fn"]
DEFAULT_VALUES = "-2.3,-0.7,-0.0234375,0.0078125,0.1,0.5,1.37,3.14159,100"


#: most Q^vc draws per check (memory: 8 bytes each, several arrays)
MAX_N = 10**8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qlangevin.cli import int_range

    parser.add_argument(
        "--format", "-f", action="append", dest="formats", metavar="FMT",
        help="format string (repeatable): none, fixed:W:F[:sym], bfp:W[:DIM], float:E:M, ieee:NAME[:sat], "
        "mxfp8_e4m3|mxfp8_e5m2|mxfp6_e3m2|mxfp6_e2m3|mxfp4|mxint8[:AXIS], nvfp4[:AXIS[:TENSOR_SCALE]]; "
        f"default: {' '.join(DEFAULT_FORMATS)}",
    )
    parser.add_argument("--values", default=DEFAULT_VALUES,
                        help="comma-separated finite inputs (default: %(default)s)")
    parser.add_argument("--seed", type=int_range(0), default=0,
                        help="seed of the stochastic draws, >= 0 (default: %(default)s)")
    parser.add_argument("--mu", type=float, default=0.3, help="μ of the Q^vc check (default: %(default)s)")
    parser.add_argument("--n", type=int_range(2, MAX_N), default=100_000,
                        help=f"number of Q^vc draws, 2..{MAX_N:.0e} (default: %(default)s)")


def _parse_values(text: str):
    """The finite numbers of ``--values`` (ValueError naming the option otherwise)."""
    import numpy as np

    try:
        values = np.array([float(v) for v in text.split(",") if v.strip()], dtype=np.float64)
    except ValueError:
        raise ValueError(f"--values must be comma-separated numbers, got {text!r}") from None
    if values.size == 0:
        raise ValueError(f"--values must contain at least one number, got {text!r}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"--values must be finite numbers, got {text!r}")
    return values


def _fmt_num(v: float) -> str:
    return f"{v: .8g}"


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from refimpl.formats import parse_format
    from refimpl.quantize import quantize, vc_gap, vc_quantize

    values = _parse_values(args.values)
    formats = args.formats or DEFAULT_FORMATS
    parsed = []
    for text in formats:  # all formats are checked before any output
        try:
            parsed.append((text, parse_format(text)))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"--format {text!r}: {exc}") from None
    for text, fmt in parsed:
        print(f"== {text}: {fmt!r}")
        rng = np.random.default_rng(args.seed)
        near = quantize(values, fmt)
        sto = quantize(values, fmt, "stochastic", rng)
        print(f"   {'x':>15s} {'nearest Q^d':>15s} {'stochastic Q^s':>15s}")
        for x, a, b in zip(values, near, sto):
            print(f"   {_fmt_num(x):>15s} {_fmt_num(a):>15s} {_fmt_num(b):>15s}")
        if fmt is None:
            print()
            continue
        mu = args.mu
        d = float(vc_gap(np.array([mu]), fmt)[0])
        if d == 0.0:
            print("   Q^vc: zero gap at this mu, skipped\n")
            continue
        if not np.isfinite(3 * d * d):
            print(f"   Q^vc: mu = {mu:g} is far outside the format's range (gap {d:.3g}, gap^2 overflows), skipped\n")
            continue
        p = mu / d - np.floor(mu / d)
        vs = p * (1 - p) * d * d
        print(f"   Q^vc check at mu = {mu} (gap {d:.6g}, V0 = gap^2/4 = {d * d / 4:.4g}, sigma^2_SR(mu) = {vs:.4g}), "
              f"{args.n} draws, seed {args.seed}:")
        for var in (3 * d * d, 0.5 * d * d / 4):
            t = vc_quantize(np.full(args.n, mu), var, fmt, np.random.default_rng(args.seed))
            expect = var if (var > d * d / 4 or var >= vs) else vs
            se_m = np.sqrt(expect / args.n)
            branch = "1 (Q5)" if var > d * d / 4 else "2 (Q6)"
            print(f"     V = {var:.4g} [branch {branch}]: mean {t.mean():.6g} (mu {mu}, +- {se_m:.2g}), "
                  f"var {t.var():.4g} (P10 predicts {expect:.4g})")
        print()
    return 0
