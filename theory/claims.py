"""The published convergence claims as declarative records, each with an experiment that can fail.

A :class:`Claim` names its source (paper, theorem or figure), the statement, the
experiment, the measured quantity, the prediction or bound it is compared with,
and the pass rule; ``claim.run(ctx)`` runs the experiment with the sampler in
``ctx`` (injectable, so tests can substitute broken samplers) and returns an
:class:`Outcome`: one :class:`~theory.experiments.Measurement` per judged or
reported quantity, figures, and extra information.  A claim passes when every
judged measurement passes (and at least one is judged).

Sizes come in three modes: ``"tiny"`` (tests, seconds), ``"quick"`` (the README's
``qlangevin verify --quick``) and ``"full"`` (the complete grid).  Everything is
seeded from ``ctx.seed`` through :func:`theory.experiments.derive_seed`, so a run
is reproducible bit for bit.

Predictions cite spec §5.8 (P0–P9) [derived]; bounds cite spec §5.1 (T1–T3)
[paper†].  The W2 figures hold the law at step k = ``n_steps`` (one draw per chain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.stats import norm

from theory import bounds as B
from theory import predictions as P
from theory import wasserstein as W
from theory.experiments import (
    Measurement,
    Sampler,
    bootstrap,
    bootstrap_ci,
    derive_seed,
    law_at_step,
    law_path,
    loglog_slope,
    variance_estimate,
    within_prediction,
    Z_PASS,
)

__all__ = ["Claim", "Context", "Outcome", "CLAIMS", "get_claims", "fixed_point"]

MODES = ("tiny", "quick", "full")


@dataclass
class Context:
    """What a claim's experiment needs: the sampler, the size mode, the seed, where figures go."""

    sampler: Sampler
    mode: str = "quick"
    seed: int = 0
    figures_dir: Path | None = None
    log: Callable[[str], None] = field(default=lambda msg: None)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    def pick(self, **by_mode):
        """The value for the current mode: ``ctx.pick(tiny=..., quick=..., full=...)``."""
        return by_mode[self.mode]


@dataclass
class Outcome:
    """What a claim's experiment returns: measurements (report rows), figure paths relative to the report directory, extras."""

    measurements: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """A declarative claim record (see module docstring)."""

    id: str
    source: str
    statement: str
    experiment: str
    measured: str
    prediction: str
    pass_rule: str
    run: Callable[[Context], Outcome] = field(repr=False, compare=False)
    #: relative cost of the quick run (CPU seconds measured on the 2-core dev machine); the
    #: process pool starts the most expensive claims first
    weight: float = field(default=1.0, compare=False)

    def record(self) -> dict:
        """The declarative part of the claim (everything but ``run``), as written into report.json."""
        return {
            "id": self.id,
            "source": self.source,
            "statement": self.statement,
            "experiment": self.experiment,
            "measured": self.measured,
            "prediction": self.prediction,
            "pass_rule": self.pass_rule,
        }


def fixed_point(fl: int, integer_bits: int = 5):
    """``FixedPoint(fl + integer_bits, fl)``: Δ = 2^−fl, range ±2^(integer_bits − 1) (±16 by default)."""
    from refimpl.formats import FixedPoint

    return FixedPoint(int(fl) + int(integer_bits), int(fl))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, ctx: Context, name: str, out: Outcome):
    from matplotlib.ticker import NullFormatter

    for ax in fig.axes:  # no crowded minor labels on log axes
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_minor_formatter(NullFormatter())
    if ctx.figures_dir is None:
        _plt().close(fig)
        return
    ctx.figures_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.figures_dir / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    out.figures.append(f"figures/{name}")


def _transient(eta: float, n_steps: int) -> float:
    """1 − (1 − η)^{2k}: fraction of the stationary second moment reached at step k from θ_0 = 0 (P0)."""
    return 1.0 - (1.0 - eta) ** (2 * n_steps)


def _var_row(label, params, draws, prediction, model_error=0.0, quantity="E θ² at step k", note="", center=0.0):
    est = variance_estimate(draws, center=center)
    ok, tol = within_prediction(est.value, est.se, prediction, model_error)
    return Measurement(label, params, quantity, est.value, (est.lo, est.hi), est.se, prediction, None, tol, ok, note)


# =========================================================================== C1: Theorems 1–3 bound


_THM = {"sgld_lp_f": ("Thm 1 (T1)", B.lpsgld_thm1), "sgld_lp_l": ("Thm 2 (T2)", B.lpsgld_thm2), "sgld_vc": ("Thm 3 (T3)", B.lpsgld_thm3)}


def _sgld_bound(method, *, d, eta, K, delta, s):
    _, fn = _THM[method]
    kw = dict(m=1.0, M=1.0, Psi=0.0, kappa=s * math.sqrt(d), d=d, eta=eta, K=K, W2_0=math.sqrt(d), Delta_W=delta, Delta_G=delta)
    if method == "sgld_vc":
        kw["G"] = d * math.sqrt(2.0 + s**2 + delta**2 / 4)
    return fn(**kw)


def _run_bounds(ctx: Context, d: int, claim_id: str) -> Outcome:
    out = Outcome()
    s = 0.1
    etas = ctx.pick(tiny=[0.05], quick=[0.05, 0.005], full=[0.1, 0.05, 0.02, 0.01, 0.005])
    fls = ctx.pick(tiny=[2], quick=[2, 4], full=[2, 3, 4, 6])
    kmults = ctx.pick(tiny=[2.0], quick=[1.0, 4.0], full=[0.5, 1.0, 2.0, 4.0, 8.0])
    n_chains = ctx.pick(tiny=400, quick=2000 if d == 1 else 1000, full=10000 if d == 1 else 4000)
    n_boot = ctx.pick(tiny=40, quick=100, full=200)
    rng = np.random.default_rng(derive_seed(ctx.seed, claim_id, "bootstrap"))
    curves = {}
    for method in _THM:
        for fl in fls:
            fmt = fixed_point(fl)
            delta = fmt.delta
            for eta in etas:
                for km in kmults:
                    K = int(math.ceil(km / eta))
                    draws = law_at_step(
                        ctx.sampler, method, "gaussian", dim=d, n_chains=n_chains, n_steps=K, step_size=eta,
                        seed=derive_seed(ctx.seed, claim_id, method, fl, eta, K), fmt=fmt, grad_fmt=fmt, grad_noise=s,
                    )
                    est = bootstrap_ci(lambda a: W.w2_product_to_dist(a, norm()), draws, rng, n_boot, kind="normal")
                    bound = _sgld_bound(method, d=d, eta=eta, K=K, delta=delta, s=s)
                    total = float(bound.total)
                    note = ""
                    if method == "sgld_vc":
                        m2 = float(np.mean(draws**2))
                        note = f"G assumes E θ_i² ≤ 2 (measured {m2:.3f})"
                        if m2 > 2.0:
                            note += "; ASSUMPTION VIOLATED"
                    out.measurements.append(
                        Measurement(
                            f"{method} d={d} Δ=2^-{fl} η={eta:g} K={K}",
                            {"method": method, "d": d, "delta": delta, "eta": eta, "K": K, "n_chains": n_chains, "grad_noise": s},
                            "W2(μ_K, N(0, I)) (exact product-of-1-D estimator)",
                            est.value, (est.lo, est.hi), est.se, None, total, Z_PASS * est.se,
                            bool(est.value - Z_PASS * est.se <= total), note,
                        )
                    )
                    curves.setdefault((method, fl), []).append((eta, K, est, total))
            ctx.log(f"{claim_id}: {method} Δ=2^-{fl} done")
    null = W.w2_product_to_dist(np.random.default_rng(derive_seed(ctx.seed, claim_id, "null")).standard_normal((n_chains, d)), norm())
    out.info["null W2 (exact N(0, I) sample, same n and estimator)"] = null
    ratios = [(tot / est.hi, m, fl, e, K) for (m, fl), pts in curves.items() for (e, K, est, tot) in pts]
    worst = min(ratios)
    out.info["smallest bound / upper-95% ratio"] = {"ratio": worst[0], "method": worst[1], "delta": 2.0 ** -worst[2], "eta": worst[3], "K": worst[4]}
    out.info["grid points with upper 95% limit above the bound"] = sum(r[0] < 1 for r in ratios)
    # figure: measured W2 and the bound against η (largest K), one panel per method
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    kmax = max(kmults)
    for ax, method in zip(axes, _THM):
        for j, fl in enumerate(fls):
            pts = [(e, est) for (e, K, est, _) in curves[(method, fl)] if K == int(math.ceil(kmax / e))]
            xs = np.array([p[0] for p in pts])
            ys = np.array([p[1].value for p in pts])
            yerr = np.array([[p[1].value - p[1].lo for p in pts], [p[1].hi - p[1].value for p in pts]])
            col = f"C{j}"
            ax.errorbar(xs, ys, yerr=yerr, fmt="o", color=col, label=f"measured Δ=2^-{fl}")
            grid = np.geomspace(min(etas) / 2, min(max(etas) * 2, 0.99), 60)
            bt = [float(_sgld_bound(method, d=d, eta=e, K=int(math.ceil(kmax / e)), delta=2.0**-fl, s=s).total) for e in grid]
            ax.plot(grid, bt, "-", color=col, label=f"{_THM[method][0]} bound")
        ax.axhline(null, color="k", ls=":", lw=0.8, label="null: exact sample, same n")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("η (the LP-SGLD paper's α)")
        ax.set_title(f"{method}, d={d}, K={kmax:g}/η")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("W2(μ_K, π)")
    _save(fig, ctx, f"bounds_d{d}_vs_eta.png", out)
    return out


# =========================================================================== C2: naive over-dispersion vs VC


def _naive_prediction(eta, delta):
    """P3 regime formula (spec: accurate to about 1%); 2.4% slack at the Fig. 1 point η = 10⁻³, Δ = 1/8."""
    return P.sgld_lp_l_variance(eta, delta, boundary_slack=0.05)


def _run_overdispersion(ctx: Context) -> Outcome:
    out = Outcome()
    cid = "sgld-overdispersion"
    s, fl = 0.1, 3
    fmt = fixed_point(fl, 5)  # FixedPoint(8, 3), the LP-SGLD toy format
    delta = fmt.delta
    etas = ctx.pick(tiny=[4e-3], quick=[8e-3, 2e-3, 3e-4], full=[1.6e-2, 8e-3, 4e-3, 2e-3, 1e-3, 5e-4, 3e-4, 1e-4])
    n_chains = ctx.pick(tiny=1500, quick=3000, full=20000)
    mult = ctx.pick(tiny=2.5, quick=2.0, full=4.0)
    qg = P.mean_sr_variance(delta, s)
    rows = {}
    for eta in etas:
        K = int(math.ceil(mult / eta))
        f = _transient(eta, K)
        for method in ("sgld_lp_l", "sgld_vc"):
            draws = law_at_step(
                ctx.sampler, method, "gaussian", n_chains=n_chains, n_steps=K, step_size=eta,
                seed=derive_seed(ctx.seed, cid, method, eta), fmt=fmt, grad_fmt=fmt, grad_noise=s,
            )
            params = {"method": method, "delta": delta, "eta": eta, "K": K, "n_chains": n_chains, "grad_noise": s}
            if method == "sgld_vc":
                pred = P.sgld_vc_variance(eta, s, qg) * f
                row = _var_row(f"{method} η={eta:g}", params, draws, pred, 0.0, note="P4 × transient 1−(1−η)^{2K}")
            else:
                regime = P.sgld_lp_l_regime(eta, delta)
                try:
                    v_inf = _naive_prediction(eta, delta)
                except ValueError:
                    v_inf = None
                if v_inf is None:
                    est = variance_estimate(draws)
                    row = Measurement(f"{method} η={eta:g}", params, "E θ² at step k", est.value, (est.lo, est.hi), est.se,
                                      None, None, None, None, "between the P3 regimes: reported, not judged")
                else:
                    row = _var_row(f"{method} η={eta:g}", params, draws, v_inf * f, 0.01 * v_inf * f,
                                   note=f"P3 regime {regime} (model error 1%) × transient")
            out.measurements.append(row)
            rows[(method, eta)] = row
        ctx.log(f"{cid}: η={eta:g} done")
    # the trend: naive variance increases as η decreases (judged on the measured values)
    nv = [rows[("sgld_lp_l", e)] for e in sorted(etas, reverse=True)]
    if len(nv) >= 2:
        inc = all(b.ci[0] > a.ci[1] for a, b in zip(nv, nv[1:]))
        out.measurements.append(Measurement(
            "sgld_lp_l: over-dispersion grows as η → 0", {"etas": sorted(etas, reverse=True)},
            "E θ² ordered along decreasing η (95% CIs disjoint)", float(nv[-1].value / nv[0].value),
            (float("nan"), float("nan")), None, None, None, None, bool(inc),
            "value: ratio of E θ² at the smallest to the largest η"))
    # figure: variance and W2 (Gaussian approx) vs η, log-log, predictions and T2/T3 slopes
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    grid = np.geomspace(min(etas) / 2, max(etas) * 2, 200)
    va = np.array([P.sgld_lp_l_variance_regime_a(e, delta) for e in grid])
    vb = np.array([P.sgld_lp_l_variance_regime_b(e, delta) for e in grid])
    ina = grid >= delta**2 / 8
    inb = grid <= delta**2 / 16
    a1.plot(grid[ina], va[ina], "C0-", label="P3 regime A (slope −1 in Var−1)")
    a1.plot(grid[inb], vb[inb], "C0--", label="P3 regime B (slope −1/2)")
    a1.plot(grid, [P.sgld_vc_variance(e, s, qg) for e in grid], "C1-", label="P4 (VC)")
    for j, method in enumerate(("sgld_lp_l", "sgld_vc")):
        e = np.array(etas)
        r = [rows[(method, x)] for x in etas]
        fac = np.array([_transient(x, int(math.ceil(mult / x))) for x in etas])
        y = np.array([m.value for m in r]) / fac
        a1.errorbar(e, y, yerr=1.96 * np.array([m.se for m in r]) / fac, fmt="o", color=f"C{j}", label=f"measured {method}")
        a2.plot(e, np.abs(np.sqrt(y) - 1), "o", color=f"C{j}", label=f"measured {method} (|√Var − 1|)")
    a2.plot(grid, [float(B.lpsgld_thm2(m=1, M=1, Psi=0, kappa=s, d=1, eta=e, K=1e12, W2_0=1, Delta_W=delta, Delta_G=delta).total) for e in grid],
            "C0:", label="Thm 2 bound (K→∞), slope −1/2")
    a2.plot(grid, [float(B.lpsgld_thm3(m=1, M=1, Psi=0, kappa=s, G=math.sqrt(2.01), d=1, eta=e, K=1e12, W2_0=1, Delta_W=delta, Delta_G=delta).total) for e in grid],
            "C1:", label="Thm 3 bound (K→∞)")
    for ax in (a1, a2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("η")
        ax.grid(True, which="both", alpha=0.3)
        ax.axvline(delta**2 / 8, color="k", lw=0.5)
        ax.legend(fontsize=7)
    a1.set_ylabel("stationary Var (transient removed)")
    a2.set_ylabel("W2 (Gaussian approximation)")
    a1.set_title(f"naive vs VC SGLDLP-L, FixedPoint(8,3), s={s}")
    _save(fig, ctx, "sgld_overdispersion_vs_eta.png", out)
    return out


# =========================================================================== C3: LP-F bias vanishes, SGD-LP-L floor does not


def _run_lpf_bias(ctx: Context) -> Outcome:
    out = Outcome()
    cid = "lpf-bias-vanishes"
    s = 0.1
    rng = np.random.default_rng(derive_seed(ctx.seed, cid, "bootstrap"))
    n_boot = ctx.pick(tiny=60, quick=200, full=400)
    # (a) SGLDLP-F: Var − 1 → 0 with slope ≈ 1 in η (P2)
    fmt = fixed_point(2)  # Δ = 1/4, coarse so that the quantization terms are visible
    etas = ctx.pick(tiny=[0.8, 0.2], quick=[0.8, 0.4, 0.2, 0.1], full=[0.8, 0.4, 0.2, 0.1, 0.05])
    n_chains = ctx.pick(tiny=4000, quick=40000, full=200000)
    excess, reps, preds = [], [], []
    for eta in etas:
        K = int(math.ceil(5.0 / eta))
        draws = law_at_step(ctx.sampler, "sgld_lp_f", "gaussian", n_chains=n_chains, n_steps=K, step_size=eta,
                            seed=derive_seed(ctx.seed, cid, "lpf", eta), fmt=fmt, grad_fmt=fmt, grad_noise=s)
        v_inf = P.sgld_lp_f_variance_selfconsistent(eta, fmt.delta, fmt.delta, s)
        pred = v_inf * _transient(eta, K)
        out.measurements.append(_var_row(f"sgld_lp_f η={eta:g}", {"method": "sgld_lp_f", "delta": fmt.delta, "eta": eta, "K": K, "n_chains": n_chains, "grad_noise": s},
                                         draws, pred, note="P2 (SR variances computed) × transient"))
        excess.append(float(np.mean(draws**2)) - 1.0)
        reps.append(bootstrap(lambda a: float(np.mean(a**2)) - 1.0, draws, rng, n_boot))
        preds.append(pred - 1.0)
    ctx.log(f"{cid}: sgld_lp_f done")
    reps = np.array(reps).T
    if len(etas) >= 2 and min(excess) > 0:
        fit = loglog_slope(etas, excess, reps)
        pfit = loglog_slope(etas, preds)
        out.measurements.append(Measurement(
            "sgld_lp_f: slope of log(Var − 1) vs log η", {"etas": etas}, "log-log slope (bootstrap 95% CI)",
            fit.slope, (fit.lo, fit.hi), fit.se, pfit.slope, None, Z_PASS * fit.se, bool(abs(fit.slope - pfit.slope) <= Z_PASS * fit.se),
            "prediction: slope of the P2 values over the same η grid (→ 1 as η → 0: the bias vanishes); judged at 5 bootstrap SE"))
        out.info["lpf_slope"] = [fit.slope, fit.lo, fit.hi, pfit.slope]
    # (b) SGDLP-L: E θ² floor independent of η (P6), RMS ∝ √Δ
    etas_sgd = ctx.pick(tiny=[1e-2], quick=[1e-2, 2e-3], full=[1e-2, 3e-3, 1e-3])
    fls = ctx.pick(tiny=[3], quick=[2, 3, 4, 5], full=[2, 3, 4, 5, 6])
    n_sgd = ctx.pick(tiny=2000, quick=4000, full=20000)
    floor = {}
    for eta in etas_sgd:
        for fl in fls:
            if eta != etas_sgd[0] and fl != 3:
                continue  # the η-independence is checked at Δ = 1/8; the Δ sweep at the largest η
            f2 = fixed_point(fl)
            K = int(math.ceil(5.0 / eta))
            m2 = P.sgd_lp_l_second_moment_at_step(f2.delta, s, eta, K)  # exact law at step K (P6 chain)
            draws = law_at_step(ctx.sampler, "sgd_lp_l", "gaussian", n_chains=n_sgd, n_steps=K, step_size=eta,
                                seed=derive_seed(ctx.seed, cid, "sgd", eta, fl), fmt=f2, grad_fmt=f2, grad_noise=s)
            row = _var_row(f"sgd_lp_l η={eta:g} Δ=2^-{fl}", {"method": "sgd_lp_l", "delta": f2.delta, "eta": eta, "K": K, "n_chains": n_sgd, "grad_noise": s},
                           draws, m2, note=f"P6 birth–death chain at step K (stationary {P.sgd_lp_l_second_moment(f2.delta, s):.5f}, independent of η)")
            out.measurements.append(row)
            floor[(eta, fl)] = (draws, m2)
    ctx.log(f"{cid}: sgd_lp_l done")
    if len(fls) >= 2:
        eta0 = etas_sgd[0]
        xs = [2.0**-fl for fl in fls]
        ys = [math.sqrt(float(np.mean(floor[(eta0, fl)][0] ** 2))) for fl in fls]
        rr = np.array([bootstrap(lambda a: math.sqrt(float(np.mean(a**2))), floor[(eta0, fl)][0], rng, n_boot) for fl in fls]).T
        fit = loglog_slope(xs, ys, rr)
        pfit = loglog_slope(xs, [math.sqrt(floor[(eta0, fl)][1]) for fl in fls])
        out.measurements.append(Measurement(
            "sgd_lp_l: slope of log RMS floor vs log Δ", {"deltas": xs, "eta": eta0}, "log-log slope (bootstrap 95% CI)",
            fit.slope, (fit.lo, fit.hi), fit.se, pfit.slope, None, Z_PASS * fit.se, bool(abs(fit.slope - pfit.slope) <= Z_PASS * fit.se),
            "prediction: slope of √(P6) over the same Δ grid (≈ 1/2: the O(√Δ) floor); judged at 5 bootstrap SE"))
        plt = _plt()
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        a1.errorbar(etas, excess, yerr=1.96 * reps.std(axis=0, ddof=1), fmt="o", label="measured sgld_lp_f Var − 1 (95%)")
        g = np.geomspace(min(etas) / 3, max(etas), 50)
        a1.plot(g, [P.sgld_lp_f_variance_selfconsistent(e, 0.25, 0.25, s) - 1 for e in g], "-", label="P2 (slope → 1)")
        a1.set_title("SGLDLP-F bias vanishes as η → 0 (Δ = 1/4)")
        a1.set_xlabel("η")
        a2.plot(xs, ys, "o", label=f"measured sgd_lp_l RMS (η={eta0:g})")
        gd = np.geomspace(min(xs) / 2, max(xs) * 2, 50)
        a2.plot(gd, np.sqrt(P.sgd_lp_l_second_moment(gd, s)), "-", label="√P6 (slope ≈ 1/2)")
        for e in etas_sgd[1:]:
            if (e, 3) in floor:
                a2.plot([0.125], [math.sqrt(float(np.mean(floor[(e, 3)][0] ** 2)))], "s", label=f"measured η={e:g}")
        a2.set_title("SGDLP-L floor does not vanish with η, ∝ √Δ")
        a2.set_xlabel("Δ")
        for ax in (a1, a2):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        _save(fig, ctx, "lpf_bias_and_sgd_floor.png", out)
    return out


# =========================================================================== C4: SGHMC effects


_SGHMC_SETTING = dict(eta=0.09, u=2.0, gamma=3.0)


def _sghmc_prediction(method, sign, delta, s, n_steps):
    e, u, g = _SGHMC_SETTING["eta"], _SGHMC_SETTING["u"], _SGHMC_SETTING["gamma"]
    kw = dict(position_sign=sign, n_steps=n_steps)
    if method == "sghmc":
        return P.sghmc_stationary_covariance(e, u, g, grad_noise_var=s**2, **kw)
    if method == "sghmc_lp_f":
        vg = s**2 + delta**2 / 6 + P.mean_sr_variance(delta, s)
        return P.sghmc_stationary_covariance(e, u, g, grad_noise_var=vg, **kw)
    if method == "sghmc_vc":
        return P.sghmc_stationary_covariance(e, u, g, drop_cross_covariance=True, grad_noise_var=s**2 + P.mean_sr_variance(delta, s), **kw)
    if method == "sghmc_lp_l":
        q = delta**2 / 6
        return P.sghmc_stationary_covariance(e, u, g, extra_variance=(q, q), grad_noise_var=s**2 + P.mean_sr_variance(delta, s), **kw)
    raise ValueError(method)


def _sghmc_draws(ctx, method, sign, fmt, n_chains, n_steps, seed, s=0.0):
    kw = dict(friction=_SGHMC_SETTING["gamma"], inverse_mass=_SGHMC_SETTING["u"], grad_noise=s)
    if sign == "paper":
        kw["sghmc_position_sign"] = "paper"
    if fmt is not None:
        kw.update(fmt=fmt, grad_fmt=fmt)
    return law_at_step(ctx.sampler, method, "gaussian", n_chains=n_chains, n_steps=n_steps, step_size=_SGHMC_SETTING["eta"], seed=seed, **kw)


def _sghmc_steps():
    rho = max(P.sghmc_spectral_radius(0.09, 2, 3, position_sign=sg) for sg in ("correct", "paper"))
    return int(math.ceil(math.log(1e-5) / math.log(rho)))  # ρ^k ≤ 1e-5: the start is forgotten


def _run_sghmc_moments(ctx: Context) -> Outcome:
    out = Outcome()
    cid = "sghmc-moments"
    fmt = fixed_point(4, 4)  # FixedPoint(8, 4): Δ = 1/16, the TMLR synthetic format
    n_chains = ctx.pick(tiny=3000, quick=20000, full=100000)
    K = _sghmc_steps()
    methods = ctx.pick(tiny=["sghmc", "sghmc_vc"], quick=["sghmc", "sghmc_lp_f", "sghmc_lp_l", "sghmc_vc"], full=["sghmc", "sghmc_lp_f", "sghmc_lp_l", "sghmc_vc"])
    for sign in ("correct", "paper"):
        for method in methods:
            f = None if method == "sghmc" else fmt
            draws = _sghmc_draws(ctx, method, sign, f, n_chains, K, derive_seed(ctx.seed, cid, method, sign))
            S = _sghmc_prediction(method, sign, fmt.delta, 0.0, K)
            # naive LP-L: q = Δ²/6 is the spec's "moves span many cells" approximation; allow 30% of the excess
            model = 0.3 * abs(S[0, 0] - _sghmc_prediction("sghmc", sign, fmt.delta, 0.0, K)[0, 0]) if method == "sghmc_lp_l" else 0.0
            src = {"sghmc": "P7", "sghmc_lp_f": "P7 + LP-F gradient noise", "sghmc_vc": "P8 (Σ_xv dropped)", "sghmc_lp_l": "P9 (q = Δ²/6)"}[method]
            params = {"method": method, "position_sign": sign, "delta": fmt.delta, "K": K, "n_chains": n_chains, **_SGHMC_SETTING}
            out.measurements.append(_var_row(f"{method} {sign} sign: Var_x", params, draws[:, 0], float(S[0, 0]), model,
                                             quantity="Var_x at step k", note=src))
        ctx.log(f"{cid}: {sign} sign done")
    out.info["P7 Var_x correct/paper"] = [1.0309, 1.4400]
    return out


def _run_sghmc_fig4(ctx: Context) -> Outcome:
    out = Outcome()
    cid = "sghmc-fig4"
    fls = ctx.pick(tiny=[4, 6], quick=[3, 4, 5, 6, 7], full=[3, 4, 5, 6, 7, 8])
    n_chains = ctx.pick(tiny=3000, quick=20000, full=100000)
    n_boot = ctx.pick(tiny=60, quick=200, full=400)
    K = _sghmc_steps()
    co = P.sghmc_coefficients(**_SGHMC_SETTING)
    rng = np.random.default_rng(derive_seed(ctx.seed, cid, "bootstrap"))
    w2g = lambda a: abs(math.sqrt(float(np.mean(a**2))) - 1.0)  # noqa: E731  (Gaussian-approximation x-marginal W2, spec P8)
    curves = {}
    for sign in ("correct", "paper"):
        for fl in fls:
            fmt = fixed_point(fl, 4)
            delta = fmt.delta
            ratio_x = co.sigma_x / (delta**2 / 4)
            d_vc = _sghmc_draws(ctx, "sghmc_vc", sign, fmt, n_chains, K, derive_seed(ctx.seed, cid, "vc", sign, fl))[:, 0]
            d_nv = _sghmc_draws(ctx, "sghmc_lp_l", sign, fmt, n_chains, K, derive_seed(ctx.seed, cid, "naive", sign, fl))[:, 0]
            r_vc = bootstrap(w2g, d_vc, rng, n_boot)
            r_nv = bootstrap(w2g, d_nv, rng, n_boot)
            rr = r_vc / np.maximum(r_nv, 1e-12)
            value = w2g(d_vc) / max(w2g(d_nv), 1e-12)
            params = {"position_sign": sign, "delta": delta, "Sigma_x_over_V0": ratio_x, "K": K, "n_chains": n_chains, **_SGHMC_SETTING}
            branch1 = co.sigma_x > delta**2 / 4 and co.sigma_v > delta**2 / 4
            pred = None
            if branch1:
                pv = _sghmc_prediction("sghmc_vc", sign, delta, 0.0, K)[0, 0]
                pn = _sghmc_prediction("sghmc_lp_l", sign, delta, 0.0, K)[0, 0]
                pred = abs(math.sqrt(pv) - 1) / abs(math.sqrt(pn) - 1)
                # judged: VC's Var_x (P8, exact in branch 1)
                out.measurements.append(_var_row(f"sghmc_vc {sign} Δ=2^-{fl}: Var_x", params, d_vc, float(pv), 0.0,
                                                 quantity="Var_x at step k", note="P8 (branch 1)"))
            out.measurements.append(Measurement(
                f"W2 ratio VC/naive, {sign} sign, Σ_x/(Δ²/4)={ratio_x:.3g}", params,
                "W2(VC)/W2(naive), x-marginal, Gaussian approximation |√Var_x − 1|",
                value, (float(np.quantile(rr, 0.025)), float(np.quantile(rr, 0.975))), float(rr.std(ddof=1)),
                pred, None, None, None,
                "reported (published Fig. 4 is qualitative); prediction from P8/P9 where branch 1 holds"))
            curves.setdefault(sign, []).append((ratio_x, value, np.quantile(rr, 0.025), np.quantile(rr, 0.975), pred))
        ctx.log(f"{cid}: {sign} sign done")
    # which sign reproduces the published curve: VC helps (ratio < 1, upper CI) wherever 1 ≤ Σ_x/(Δ²/4) ≤ 40
    repro = {}
    for sign, pts in curves.items():
        inside = [p for p in pts if 1.0 <= p[0] <= 40.0]
        repro[sign] = bool(inside) and all(p[3] < 1.0 for p in inside)
    out.info["reproduces_published_fig4"] = repro
    out.info["note"] = ("Published Fig. 4 (TMLR): VC helps most (ratio well below 1) near Σ_x/(Δ²/4) ≈ 1 and tends to 1 "
                        "around 100×. 'reproduces' = measured ratio's upper 95% CI < 1 at every point with 1 ≤ Σ_x/(Δ²/4) ≤ 40.")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for j, (sign, pts) in enumerate(sorted(curves.items())):
        pts = sorted(pts)
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        lo = np.array([p[2] for p in pts])
        hi = np.array([p[3] for p in pts])
        ax.plot(x, y, "o-", color=f"C{j}", label=f"measured, {sign} sign (s_x={'−1' if sign == 'correct' else '+1'})")
        ax.fill_between(x, lo, hi, color=f"C{j}", alpha=0.2)
        pp = [(p[0], p[4]) for p in pts if p[4] is not None]
        if pp:
            ax.plot([p[0] for p in pp], [p[1] for p in pp], "x--", color=f"C{j}", label=f"P8/P9 prediction, {sign}")
    ax.axhline(1.0, color="k", lw=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Σ_x / (Δ²/4)")
    ax.set_ylabel("W2(VC SGHMCLP-L) / W2(SGHMCLP-L)")
    ax.set_title("TMLR Fig. 4 reproduction, Gaussian (η,u,γ)=(0.09,2,3)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    _save(fig, ctx, "sghmc_fig4_ratio.png", out)
    return out


# =========================================================================== C5: SGHMC faster than SGLD on the mixture


#: pairs whose stationary-W2 comparison is judged (full precision and LP-F, where SGHMC's integrator is unmodified)
_MIX_JUDGED = ("sghmc", "sghmc_lp_f")
#: one-sided superiority test at 3 SE (false "superior" verdict probability 0.13% when there is no gap)
_Z_SUPERIOR = 3.0


def _run_mixture(ctx: Context) -> Outcome:
    out = Outcome()
    cid = "mixture-sghmc-faster"
    mix = W.GaussianMixture1D((-1.0, 1.0), (0.5, 0.5), (0.5, 0.5))
    fmt = fixed_point(4, 4)
    eta, u, gamma = 0.1, 1.0, 3.0  # TMLR §4.1 / App. D mixture setting, same η for SGHMC and SGLD
    x0 = 0.0  # the theorems' x_0 = v_0 = 0
    n_chains = ctx.pick(tiny=3000, quick=6000, full=20000)
    ks = ctx.pick(tiny=[20, 80, 480], quick=[5, 10, 20, 40, 80, 160, 320, 640], full=[5, 10, 20, 40, 80, 160, 320, 640, 1280])
    # stationary window: draws at k_max/2, ..., k_max pooled (chains resampled whole in the bootstrap)
    window = list(np.linspace(ks[-1] // 2, ks[-1], ctx.pick(tiny=17, quick=9, full=17)).astype(int))
    levels = [0.3, 0.2, 0.1, 0.05]
    pairs = ctx.pick(tiny=[("sghmc_lp_f", "sgld_lp_f")], quick=[("sghmc_lp_f", "sgld_lp_f"), ("sghmc_vc", "sgld_vc")],
                     full=[("sghmc", "sgld"), ("sghmc_lp_f", "sgld_lp_f"), ("sghmc_vc", "sgld_vc"), ("sghmc_lp_l", "sgld_lp_l")])
    n_boot = ctx.pick(tiny=40, quick=100, full=200)
    rng = np.random.default_rng(derive_seed(ctx.seed, cid, "bootstrap"))
    paths, pooled = {}, {}
    w2mix = lambda a: W.w2_1d_to_dist(np.ravel(a), mix)  # noqa: E731
    for pair in pairs:
        for method in pair:
            kw = dict(x0=x0)
            if method not in ("sghmc", "sgld"):
                kw.update(fmt=fmt, grad_fmt=fmt)
            if method.startswith("sghmc"):
                kw.update(friction=gamma, inverse_mass=u)
            path = law_path(ctx.sampler, method, "mixture", steps=list(ks) + window, n_chains=n_chains, step_size=eta,
                            seed=derive_seed(ctx.seed, cid, method), **kw)[..., 0]
            paths[method] = [bootstrap_ci(w2mix, path[i], rng, n_boot, kind="normal") for i in range(len(ks))]
            win = path[len(ks):].T  # (n_chains, len(window))
            pooled[method] = bootstrap_ci(lambda a: w2mix(a) ** 2, win, rng, n_boot, kind="normal")
        ctx.log(f"{cid}: {pair} done")
    null = W.w2_1d_to_dist(mix.rvs(n_chains, np.random.default_rng(derive_seed(ctx.seed, cid, "null"))), mix)  # one-k sample size
    out.info["null_w2_exact_target_sample"] = null

    def first_hit(vals, level):
        for k, v in zip(ks, vals):
            if v.value <= level:
                return k
        return None

    for hmc, ld in pairs:
        vh, vl = pooled[hmc], pooled[ld]
        diff = vl.value - vh.value
        se = math.hypot(vh.se, vl.se)
        judged = hmc in _MIX_JUDGED
        out.measurements.append(Measurement(
            f"{hmc} vs {ld}: stationary W2² gap (k = {window[0]}..{window[-1]})",
            {"eta": eta, "u": u, "gamma": gamma, "x0": x0, "delta": fmt.delta, "n_chains": n_chains, "window": window},
            f"W2²({ld}) − W2²({hmc}), each from the draws pooled over the window (chain-bootstrap SE)",
            diff, (diff - 1.96 * se, diff + 1.96 * se), se, None, None, _Z_SUPERIOR * se, bool(diff > _Z_SUPERIOR * se) if judged else None,
            f"W2: {hmc} {math.sqrt(max(vh.value, 0)):.4g}, {ld} {math.sqrt(max(vl.value, 0)):.4g}; pass iff the gap > 3 SE "
            "(one-sided: SGHMC reaches W2 levels the SGLD chain never reaches at this η)"
            + ("" if judged else "; reported, not judged: VC SGHMCLP-L drops Σ_xv (P8) and naive LP-L is over-dispersed, "
               "so their stationary W2 is not predicted to beat SGLD's")))
        hits = {lev: (first_hit(paths[hmc], lev), first_hit(paths[ld], lev)) for lev in levels}
        out.info[f"steps_to_level {hmc} / {ld}"] = {str(lev): list(h) for lev, h in hits.items()}
    out.info["note"] = ("steps_to_level: first k on the grid with W2 ≤ level (None: not reached). With the same η, SGHMC at "
                        "(u, γ) = (1, 3) moves the position more slowly at first (its overdamped diffusion is u/γ = 1/3 of SGLD's) "
                        "but has a much smaller discretization bias, so it wins for small levels only.")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for j, (method, vals) in enumerate(paths.items()):
        ax.errorbar(ks, [v.value for v in vals], yerr=[[v.value - v.lo for v in vals], [v.hi - v.value for v in vals]],
                    fmt="o-" if method.startswith("sghmc") else "s--", color=f"C{j // 2}", alpha=1.0 if method.startswith("sghmc") else 0.6, label=method)
    ax.axhline(null, color="k", lw=0.7, ls=":", label="null (exact target sample)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("gradient steps k")
    ax.set_ylabel("W2(μ_k, mixture)")
    ax.set_title(f"mixture e^-2(x-1)² + e^-2(x+1)², x0={x0}, η={eta}")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    _save(fig, ctx, "mixture_w2_vs_steps.png", out)
    return out


# =========================================================================== C6: Fig. 1 densities


def _run_densities(ctx: Context) -> Outcome:
    out = Outcome()
    cid = "gaussian-densities"
    s = 0.1
    fmt = fixed_point(3, 5)  # FixedPoint(8, 3)
    delta = fmt.delta
    etas = ctx.pick(tiny=[1e-3], quick=[1e-3, 1e-4], full=[1e-3, 1e-4])
    mult = ctx.pick(tiny=2.5, quick=2.0, full=4.0)
    qg = P.mean_sr_variance(delta, s)
    hists = {}
    for eta in etas:
        K = int(math.ceil(mult / eta))
        # chains × steps kept ~constant across η in quick mode (the η = 1e-4 point is 10× longer)
        n_chains = ctx.pick(tiny=1500, quick=3000 if eta >= 1e-3 else 1000, full=20000)
        f = _transient(eta, K)
        for method in ("sgld_lp_l", "sgld_vc", "sgld_lp_f"):
            draws = law_at_step(ctx.sampler, method, "gaussian", n_chains=n_chains, n_steps=K, step_size=eta,
                                seed=derive_seed(ctx.seed, cid, method, eta), fmt=fmt, grad_fmt=fmt, grad_noise=s)[:, 0]
            params = {"method": method, "delta": delta, "eta": eta, "K": K, "n_chains": n_chains, "grad_noise": s}
            if method == "sgld_lp_l":
                v = _naive_prediction(eta, delta)
                row = _var_row(f"{method} η={eta:g}", params, draws, v * f, 0.01 * v * f, note="P3 regime B (1% model error) × transient")
            elif method == "sgld_vc":
                v = P.sgld_vc_variance(eta, s, qg)
                row = _var_row(f"{method} η={eta:g}", params, draws, v * f, note="P4 × transient")
            else:
                v = P.sgld_lp_f_variance_selfconsistent(eta, delta, delta, s)
                row = _var_row(f"{method} η={eta:g}", params, draws, v * f, note="P2 × transient")
            out.measurements.append(row)
            # peak density: mass of the bin of width Δ centred at 0, divided by Δ (reported beside the published ≈0.26/0.15)
            p0 = float(np.mean(np.abs(draws) < delta / 2))
            se0 = math.sqrt(p0 * (1 - p0) / draws.size) / delta
            out.measurements.append(Measurement(
                f"{method} η={eta:g}: peak density", params, "histogram density at 0 (bin width Δ)",
                p0 / delta, (p0 / delta - 1.96 * se0, p0 / delta + 1.96 * se0), se0, float(P.peak_density(v * f)), None, None, None,
                "reported; prediction 1/√(2π·Var) (near-Gaussian law); published figure reads ≈0.26 (η=1e-3), ≈0.15 (η=1e-4) for naive"))
            hists[(method, eta)] = draws
        ctx.log(f"{cid}: η={eta:g} done")
    plt = _plt()
    fig, axes = plt.subplots(1, len(etas), figsize=(5.5 * len(etas), 4), squeeze=False)
    edges = np.arange(-5 - delta / 2, 5 + delta, delta)
    xs = np.linspace(-5, 5, 400)
    for ax, eta in zip(axes[0], etas):
        for j, method in enumerate(("sgld_lp_l", "sgld_vc", "sgld_lp_f")):
            label = {"sgld_lp_l": "naive SGLDLP-L", "sgld_vc": "VC SGLDLP-L", "sgld_lp_f": "SGLDLP-F"}[method]
            ax.hist(hists[(method, eta)], bins=edges, density=True, histtype="step", color=f"C{j}", label=label)
        ax.plot(xs, norm.pdf(xs), "k-", lw=1.5, label="N(0, 1)")
        vb = _naive_prediction(eta, delta)
        ax.plot(xs, norm.pdf(xs, scale=math.sqrt(vb)), "C0:", label=f"N(0, P3 = {vb:.2f})")
        ax.set_title(f"FixedPoint(8,3), η = {eta:g}")
        ax.set_xlim(-5, 5)
        ax.legend(fontsize=7)
    _save(fig, ctx, "gaussian_densities_fig1.png", out)
    return out


# =========================================================================== registry


_SRC_LPSGLD = "Zhang, Wilson & De Sa, Low-precision SGLD, ICML 2022"
_SRC_LPSGHMC = "Wang, Chen, Song & Zhang, Low-precision SGHMC, TMLR 2024"

CLAIMS: dict[str, Claim] = {}


def _register(claim: Claim):
    CLAIMS[claim.id] = claim


for _d in (1, 10):
    _register(Claim(
        id=f"lpsgld-bounds-d{_d}",
        source=f"{_SRC_LPSGLD}, Theorems 1–3 (spec (T0)–(T3))",
        statement=f"On an m-strongly log-concave target (here N(0, I_{_d}), m = M = 1, Ψ = 0, κ = s√d), W2(μ_K, π) of SGLDLP-F, "
                  "naive SGLDLP-L and VC SGLDLP-L is below the explicit bounds of Theorems 1, 2 and 3.",
        experiment=f"d = {_d}; FixedPoint(fl+5, fl) for weights and gradients, gradient noise s = 0.1, θ_0 = 0 (W2_0 = √d); "
                   "grid over η, Δ and K = c/η; many chains, one draw each at step K.",
        measured="W2(μ_K, N(0, I)) by the exact 1-D quantile formula summed over the independent coordinates (biased upward); "
                 "bootstrap SE and 95% normal interval.",
        prediction="theory.bounds.lpsgld_thm1/2/3 total (G = d·√(2 + s² + Δ²/4) for Thm 3, checked against the draws).",
        pass_rule="no significant violation at any grid point: measured W2 − 5 bootstrap SE ≤ bound (the estimator is biased "
                  "upward, so a violation is never hidden by its bias); the report also gives the upper 95% limit beside the bound.",
        run=(lambda ctx, _d=_d: _run_bounds(ctx, _d, f"lpsgld-bounds-d{_d}")),
        weight=5.0 if _d == 1 else 14.0,
    ))

_register(Claim(
    id="sgld-overdispersion",
    source=f"{_SRC_LPSGLD}, §4 and Theorems 2–3; spec §5.8 P3, P4",
    statement="Naive SGLDLP-L is over-dispersed, increasingly so as η → 0 at fixed Δ; VC SGLDLP-L removes the "
              "over-dispersion (for all η when |g|Δ ≤ 2, in particular wherever 2η ≥ Δ²/4).",
    experiment="1-D N(0,1), ∇Ũ = θ + 0.1ζ, FixedPoint(8,3) (Δ = 1/8), θ_0 = 0, K = c/η steps; sweep η across regimes A and B.",
    measured="E θ² at step K (SE from the fourth moment).",
    prediction="P3 regime formulas (±1% model error) for naive, P4 for VC (exact), both × (1 − (1 − η)^{2K}) (P0 transient).",
    pass_rule="|measured − predicted| ≤ 5 SE + model error at every η; naive E θ² strictly increasing as η decreases (disjoint CIs).",
    run=_run_overdispersion,
    weight=2.5,
))

_register(Claim(
    id="lpf-bias-vanishes",
    source=f"{_SRC_LPSGLD}, Theorem 1 (floor 0 for quadratic U) and §2 (SGD-LP baselines); spec §5.8 P2, P6",
    statement="SGLDLP-F's bias on a quadratic target vanishes as η → 0, while the noise-free SGDLP-L floor does not shrink with η (it is O(√Δ)).",
    experiment="SGLDLP-F on N(0,1) with Δ = 1/4, s = 0.1, sweep η; SGDLP-L with s = 0.1 at two η (Δ = 1/8) and a Δ sweep.",
    measured="E θ² at step K; log–log slopes of (Var − 1) vs η and of the RMS floor vs Δ with bootstrap CIs.",
    prediction="P2 (with the rounding variances computed exactly) and P6 (birth–death law, independent of η).",
    pass_rule="every E θ² within 5 SE of its prediction; each predicted slope inside the measured slope's 95% bootstrap CI.",
    run=_run_lpf_bias,
    weight=1.5,
))

_register(Claim(
    id="sghmc-moments",
    source=f"{_SRC_LPSGHMC}, eqs. (3), (5), (6), (8); spec §5.8 P7, P8, P9",
    statement="The SGHMC integrator's stationary position variance is given by the discrete Lyapunov solution, for both position "
              "signs; VC SGHMCLP-L drops the x–v covariance (under-dispersed with the correct sign); naive SGHMCLP-L adds ≈ Δ²/6 per rounding.",
    experiment="1-D N(0,1), exact gradient, (η, u, γ) = (0.09, 2, 3), FixedPoint(8,4); both signs; K with ρ^K ≤ 1e-5.",
    measured="Var_x at step K.",
    prediction="Lyapunov covariance at step K (P7; P7 + rounding noise for LP-F; P8 with Σ_xv = 0 for VC; P9 with q = Δ²/6 for naive, ±30% of its excess).",
    pass_rule="|measured − predicted| ≤ 5 SE + model error for every method and sign.",
    run=_run_sghmc_moments,
    weight=2.0,
))

_register(Claim(
    id="sghmc-fig4",
    source=f"{_SRC_LPSGHMC}, Figure 4; spec §5.7 (v), §5.8 P8",
    statement="W2(VC SGHMCLP-L)/W2(SGHMCLP-L) against Σ_x/(Δ²/4): VC helps most near 1 and little around 100×. "
              "Which position sign reproduces the published curve?",
    experiment="Gaussian setting (0.09, 2, 3); vary Δ = 2^-fl to sweep Σ_x/(Δ²/4); both signs; many chains at step K.",
    measured="x-marginal W2 ratio (Gaussian approximation |√Var_x − 1|, bootstrap CI); VC Var_x.",
    prediction="P8/P9 Lyapunov values where both Q^vc calls are in branch 1.",
    pass_rule="VC Var_x within 5 SE of P8 wherever branch 1 holds (the ratio itself is reported, and which sign reproduces the figure is stated).",
    run=_run_sghmc_fig4,
    weight=7.0,
))

_register(Claim(
    id="mixture-sghmc-faster",
    source=f"{_SRC_LPSGHMC}, Figure 3 and Table 1 (SGHMC Õ(ε^-2) vs SGLD Õ(ε^-4) iterations, i.e. a claim about small ε)",
    statement="On the two-mode mixture, at the same η, the SGHMC variants reach small W2 levels in fewer gradient steps than "
              "the matching SGLD variants (which never reach them: their discretization bias is larger).",
    experiment="1-D mixture e^{-2(x-1)²} + e^{-2(x+1)²}, η = 0.1, u = 1, γ = 3 (same η for both, as published), FixedPoint(8,4), "
               "x_0 = v_0 = 0; law at steps k on a grid.",
    measured="W2(μ_k, π) by the exact 1-D quantile formula against the mixture (bootstrap CI); steps to reach levels 0.3, 0.2, 0.1, 0.05 (reported).",
    prediction="qualitative (the theorems' constants are exp(O(d)) and hidden): SGHMC's W2 at the last k below SGLD's.",
    pass_rule="W2²(SGLD) − W2²(SGHMC) over the stationary window > 3 bootstrap SE (one-sided), for the FP and LP-F pairs "
              "(VC and naive LP-L pairs are reported: P8/P3 predict extra bias for them).",
    run=_run_mixture,
    weight=6.5,
))

_register(Claim(
    id="gaussian-densities",
    source=f"{_SRC_LPSGLD}, Figure 1; spec §6.1, §5.8 P2–P4",
    statement="At FixedPoint(8,3) with η ∈ {1e-3, 1e-4}, naive SGLDLP-L is over-dispersed (more at the smaller η) while VC SGLDLP-L and SGLDLP-F match N(0, 1).",
    experiment="1-D N(0,1), ∇Ũ = θ + 0.1ζ, θ_0 = 0; histograms with bins of width Δ on [−5, 5] against the N(0,1) density.",
    measured="E θ² at step K for each method; peak density (reported).",
    prediction="P3 regime B for naive (2.23, 7.05; peaks 0.267, 0.150), P4 for VC, P2 for LP-F; × transient factor.",
    pass_rule="|measured − predicted| ≤ 5 SE + model error for every method and η.",
    run=_run_densities,
    weight=3.0,
))


def get_claims(only=None) -> list[Claim]:
    """Claims in registry order; ``only``: ids (exact) or prefixes ending in ``*``.  Unknown ids raise ``ValueError``."""
    if not only:
        return list(CLAIMS.values())
    chosen = []
    for key in only:
        if key.endswith("*"):
            hits = [c for c in CLAIMS.values() if c.id.startswith(key[:-1])]
        else:
            hits = [CLAIMS[key]] if key in CLAIMS else []
        if not hits:
            raise ValueError(f"unknown claim id {key!r}; known: {', '.join(CLAIMS)}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen
