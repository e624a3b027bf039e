"""``qlangevin sample``: run a reference sampler; print moments and convergence diagnostics.

Example: ``qlangevin sample sgld_lp_l --fmt fixed:8:3 --step-size 1e-3 --grad-noise 0.1``
runs the LP-SGLD Gaussian toy (§6.1) and prints, per coordinate, the pooled mean and
E[θ²] with their Monte Carlo standard errors (MCSE = sd/√ESS), the rank-normalised
split R-hat and the bulk and tail effective sample sizes (Vehtari et al. 2021; see
:mod:`refimpl.diagnostics`).  ``--save draws.npz`` (NumPy) or ``--save draws.nc``
(netCDF via ArviZ) writes the kept draws chain-first, (chain, draw, dim).

CTLD (ALGORITHMS §3.13) samples the target only while its tempering variable is in
the band |α| <= delta1 where g(α) = 1; by default (``--band g1``) the statistics are
taken over the draws in that band (``--band all``: over every temperature).  The run
is then taken in pieces of ``--thin`` steps so that α is recorded with each draw.

A run in which no chain moves (every kept draw equal to its chain's first, e.g.
QSGLD with nearest rounding and exact gradients: a step η|∇U| < 1/(2Q_p) rounds back
onto the same grid point) is refused with a message naming the cause.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

#: most kept values (draws × chains × dim) the command stores: 8 bytes each
MAX_KEPT_VALUES = 10**8
#: most chain-steps × dim one invocation runs
MAX_WORK = 10**11
#: coordinates printed (and diagnosed)
PRINT_COORDS = 10
#: fewest kept draws per chain (split R-hat needs two halves of two draws)
MIN_KEPT = 4
#: bulk ESS below which the MCSEs are flagged (Vehtari et al. 2021 recommend > 100 per chain for 4 chains)
MIN_ESS = 400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qlangevin.cli import int_range
    from refimpl.targets import TARGET_NAMES

    from refimpl.methods import METHODS

    parser.add_argument("method", choices=tuple(METHODS), metavar="method",
                        help="one of the method table (refimpl.methods): " + ", ".join(METHODS))
    parser.add_argument("--target", default="gaussian", choices=TARGET_NAMES)
    parser.add_argument("--dim", type=int_range(1), default=1)
    parser.add_argument("--chains", type=int_range(1), default=100, help="independent chains (default: %(default)s)")
    parser.add_argument("--steps", type=int_range(1), default=10_000, help="steps per chain (default: %(default)s)")
    parser.add_argument("--step-size", type=float, default=1e-2, help="η (default: %(default)s)")
    parser.add_argument("--seed", type=int_range(0), default=0)
    parser.add_argument("--fmt", default=None, help="weight format, e.g. fixed:8:3, bfp:8, float:4:3, ieee:bfloat16")
    parser.add_argument("--grad-fmt", default="same",
                        help="gradient format ('same' (default): --fmt, as torchport; 'none' = full precision)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--grad-noise", type=float, default=0.0, help="s in ∇Ũ = ∇U + s·ζ")
    parser.add_argument("--friction", type=float, default=None, help="SGHMC γ")
    parser.add_argument("--inverse-mass", type=float, default=None, help="SGHMC u")
    parser.add_argument("--burn-in", type=int_range(0), default=None, help="default: steps // 5")
    parser.add_argument("--thin", type=int_range(1), default=None,
                        help="keep every THIN-th step after the burn-in (default: 1; ctld: 10)")
    parser.add_argument("--position-sign", "--sghmc-position-sign", dest="position_sign", choices=("correct", "paper"),
                        default=None, help="SGHMC s_x: correct (-1, default) or paper (+1)")
    parser.add_argument("--velocity-rescaling", choices=("paper", "code"), default=None)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a method option (repeatable), e.g. --option rounding=uniform for qsgld or "
                             "--option delta1=0.3 for ctld; values are numbers, true/false, none or text")
    parser.add_argument("--band", choices=("g1", "all"), default="g1",
                        help="ctld only: statistics over the g(α) = 1 band |α| <= delta1 (default) or all draws")
    parser.add_argument("--save", default=None, metavar="PATH",
                        help="write the kept draws chain-first: PATH.npz (NumPy) or PATH.nc (netCDF via ArviZ)")


def _parse_option(text: str):
    """``KEY=VALUE`` -> (key, value): int, finite float, bool, None or str."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ValueError(f"--option must be KEY=VALUE, got {text!r}")
    low = raw.strip().lower()
    if low in ("true", "false"):
        return key, low == "true"
    if low in ("none", "null"):
        return key, None
    for conv in (int, float):
        try:
            value = conv(raw)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--option {text!r}: the value must be finite")
        return key, value
    return key, raw.strip()


def _plan(args):
    """Burn-in, thin and the number of kept draws, checked before any work."""
    burn = args.steps // 5 if args.burn_in is None else args.burn_in
    thin = args.thin if args.thin is not None else (10 if args.method == "ctld" else 1)
    if burn >= args.steps:
        raise ValueError(f"--burn-in {burn} leaves no step to keep out of --steps {args.steps}")
    n_kept = (args.steps - burn - 1) // thin + 1
    if n_kept < MIN_KEPT:
        raise ValueError(f"--steps {args.steps}, --burn-in {burn} and --thin {thin} keep {n_kept} draws per chain; "
                         f"the diagnostics need at least {MIN_KEPT}")
    work = args.steps * args.chains * args.dim
    if work > MAX_WORK:
        raise ValueError(f"--steps x --chains x --dim = {work:.3g} exceeds {MAX_WORK:.0e} per invocation; "
                         "use refimpl.sample(..., keep='stats') for runs this long")
    kept = n_kept * args.chains * args.dim
    if kept > MAX_KEPT_VALUES:
        raise ValueError(f"the kept draws ({n_kept} x --chains {args.chains} x --dim {args.dim} = {kept:.3g} values, "
                         f"{kept * 8 / 2**30:.1f} GiB) exceed {MAX_KEPT_VALUES:.0e}; raise --thin or lower "
                         "--chains/--steps/--dim")
    return burn, thin, n_kept


def _kwargs(args, burn, thin, options):
    return dict(dim=args.dim, n_chains=args.chains, step_size=args.step_size, seed=args.seed, fmt=args.fmt,
                grad_fmt=args.grad_fmt, temperature=args.temperature, grad_noise=args.grad_noise,
                friction=args.friction, inverse_mass=args.inverse_mass, **options)


def _run_ctld(args, burn, thin, n_kept, options):
    """CTLD in pieces of ``thin`` steps after the burn-in: θ draws and α (n_kept, n_chains[, dim])."""
    import refimpl
    from refimpl import ctld

    kw = _kwargs(args, burn, thin, options)
    first = burn + 1  # the state after step `burn` is the first kept draw
    _, state = refimpl.sample("ctld", args.target, n_steps=first, keep="last", return_state=True, **kw)
    kw["seed"] = None
    thetas, alphas = [], []
    for k in range(n_kept):
        if k:
            _, state = refimpl.sample("ctld", args.target, n_steps=thin, keep="last", return_state=True,
                                      resume=state, **kw)
        st = ctld.unpack(state.packed, args.dim)
        thetas.append(np.array(st.position))
        alphas.append(np.array(st.alpha))
    return np.stack(thetas), np.stack(alphas)


def _band_stats(theta, in_band):
    """Mean and E[θ²] over the draws with ``in_band``, per coordinate, with chain-cluster standard errors.

    Chains are independent, so the ratio estimator Σ_c s_c / Σ_c n_c (s_c: the chain's sum
    over its in-band draws, n_c their number) has the standard error
    sqrt(Σ_c (s_c − m n_c)² / (C (C − 1))) / n̄ (the delta method over C independent chains).
    """
    w = in_band.astype(float)[:, :, None]                    # (draws, chains, 1)
    n_c = w.sum(0)[:, 0]                                     # (chains,)
    c = theta.shape[1]
    out = []
    for moment in (theta, theta * theta):
        s_c = (w * moment).sum(0)                            # (chains, dim)
        m = s_c.sum(0) / max(n_c.sum(), 1)
        resid = s_c - m[None, :] * n_c[:, None]
        se = np.sqrt((resid**2).sum(0) / (c * (c - 1))) / n_c.mean() if c > 1 and n_c.sum() else np.full_like(m, np.nan)
        out.append((m, se))
    return out


def _print_table(draws_cf, moments=None):
    """One row per coordinate; ``moments`` ((mean, se), (E[x²], se)) arrays replace the pooled moments."""
    from refimpl.diagnostics import summary

    rows = summary(draws_cf, max_coords=PRINT_COORDS)
    print("coord        mean    (mcse)        E[x^2]    (mcse)      r_hat  ess_bulk  ess_tail")
    for j, r in enumerate(rows):
        m, sm, m2, sm2 = r["mean"], r["mcse_mean"], r["m2"], r["mcse_m2"]
        if moments is not None:
            (m, sm), (m2, sm2) = (moments[0][0][j], moments[0][1][j]), (moments[1][0][j], moments[1][1][j])
        print(f"{j:5d}  {m:+11.5f} ({sm:.5f})  {m2:11.5f} ({sm2:.5f})  {r['rhat']:8.4f}  {r['ess_bulk']:8.0f}  "
              f"{r['ess_tail']:8.0f}")
    dim = draws_cf.shape[2]
    if dim > PRINT_COORDS:
        print(f"... ({dim - PRINT_COORDS} more coordinates; --save writes them all)")
    bad = [j for j, r in enumerate(rows) if not r["rhat"] <= 1.01]
    if bad:
        print(f"warning: R-hat > 1.01 (or undefined) for coordinate(s) {bad}: the chains are too short, or have "
              "not mixed, to be judged converged (Vehtari et al. 2021 ask R-hat <= 1.01); run longer")
    low = [j for j, r in enumerate(rows) if not r["ess_bulk"] >= MIN_ESS]
    if low:
        print(f"warning: bulk ESS < {MIN_ESS} for coordinate(s) {low}: the MCSEs are unreliable; run longer")


def _keep_interrupted(args, exc: KeyboardInterrupt, attrs: dict):
    """Ctrl-C during the run: with ``--save``, write the draws kept so far (refimpl.sample's
    ``SamplingInterrupted.samples``), then end as an interrupt with a one-line message."""
    from refimpl.diagnostics import save_draws

    done = getattr(exc, "step", None)
    partial = getattr(exc, "samples", None)
    where = f"after {done} of {args.steps} steps" if done is not None else "before sampling began"
    if args.save is not None and isinstance(partial, np.ndarray) and partial.ndim == 3 and partial.shape[0] > 0:
        path = save_draws(args.save, partial, attrs={**attrs, "interrupted_after_step": int(done)})
        raise KeyboardInterrupt(f"{where}; the {partial.shape[0]} draws kept so far are saved to {path}") from None
    if args.save is not None:
        raise KeyboardInterrupt(f"{where}: no draw kept yet (burn-in {attrs['burn_in']}), nothing saved") from None
    raise KeyboardInterrupt(f"{where}, nothing saved; --save PATH keeps the draws of an interrupted run") from None


def run(args: argparse.Namespace) -> int:
    import refimpl
    from refimpl.diagnostics import chain_first, check_save_path, save_draws

    options = dict(_parse_option(t) for t in args.option)
    if args.position_sign is not None:
        options["position_sign"] = args.position_sign
    if args.velocity_rescaling is not None:
        options["velocity_rescaling"] = args.velocity_rescaling
    burn, thin, n_kept = _plan(args)
    if args.save is not None:
        check_save_path(args.save)
    if args.band != "g1" and args.method != "ctld":
        raise ValueError(f"--band applies to ctld only, got --band {args.band} for {args.method!r}")

    attrs = {"method": args.method, "target": args.target, "step_size": args.step_size, "seed": args.seed,
             "burn_in": burn, "thin": thin, "n_steps": args.steps, "fmt": str(args.fmt),
             "temperature": args.temperature, "grad_noise": args.grad_noise}
    print(f"{args.method} on {args.target} (dim {args.dim}): {args.chains} chains x {args.steps} steps, "
          f"keeping {n_kept} draws per chain (burn-in {burn}, thin {thin}), step size {args.step_size}", flush=True)
    alpha = None
    if args.method == "ctld":
        draws, alpha = _run_ctld(args, burn, thin, n_kept, options)
    else:
        try:
            draws = refimpl.sample(args.method, args.target, n_steps=args.steps, burn_in=burn, thin=thin,
                                   keep="all", **_kwargs(args, burn, thin, options))
        except KeyboardInterrupt as exc:
            _keep_interrupted(args, exc, attrs)
    if np.all(np.ptp(draws, axis=0) == 0) and draws.shape[0] > 1:
        hint = ""
        if args.method.startswith("sgd"):
            hint = (f" {args.method} is a noise-free optimizer (S2)/(S3): from x0 = 0 on a target whose "
                    "gradient vanishes there it stays put; use a sampler (sgld, sgld_lp_f, sgld_vc, ...)")
        elif args.method == "qsgld" and args.grad_noise == 0:
            hint = (" QSGLD with exact gradients (--grad-noise 0) and rounding 'nearest' or 'stochastic' stays on "
                    "its grid point: η|∇U| < 1/(2Q_p) rounds back (QS1). Use --option rounding=uniform or "
                    "--option rounding=surrogate (QS5), or --grad-noise S")
        raise ValueError(f"no chain moved: every kept draw of {args.method} equals its chain's first draw "
                         f"({draws[0, 0, 0]:g}).{hint}")

    c, n_kept = draws.shape[1], draws.shape[0]
    draws_cf = chain_first(draws)
    if alpha is not None:
        delta1 = float(options.get("delta1", refimpl.ctld.OPTIONS["delta1"]))
        in_band = np.abs(alpha) <= delta1
        frac = in_band.mean()
        if args.band == "g1":
            if not in_band.any():
                raise ValueError(f"ctld: no kept draw has |alpha| <= delta1 = {delta1}; run longer or use --band all")
            print(f"ctld: statistics over the g(alpha) = 1 band |alpha| <= {delta1} ({frac:.1%} of the draws; "
                  "--band all for every temperature); r_hat and ess are of all draws")
            _print_table(draws_cf, _band_stats(draws, in_band))
        else:
            print(f"ctld: statistics over every temperature ({frac:.1%} of the draws are in the g = 1 band)")
            _print_table(draws_cf)
    else:
        _print_table(draws_cf)

    if args.save is not None:
        stats = {"alpha": alpha} if alpha is not None else None
        path = save_draws(args.save, draws, attrs=attrs, sample_stats=stats)
        print(f"saved {c} chains x {n_kept} draws x {draws.shape[2]} (chain, draw, dim) to {path}")
    return 0
