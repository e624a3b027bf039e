"""Claim ``sgld-overdispersion``: naive SGLDLP-L over-disperses as η → 0; VC SGLDLP-L does not (spec P3, P4)."""

from __future__ import annotations

import math

import numpy as np

from theory import bounds as B
from theory import predictions as P
from theory.claims._common import (
    SRC_LPSGLD,
    Claim,
    Context,
    Outcome,
    _naive_prediction,
    _plt,
    _save,
    _transient,
    _var_row,
    fixed_point,
)
from theory.experiments import (
    Measurement,
    derive_seed,
    law_at_step,
    variance_estimate,
)


def _run_overdispersion(ctx: Context) -> Outcome:
    out = Outcome()
    cid = "sgld-overdispersion"
    s, fl = 0.1, 3
    fmt = fixed_point(fl, 5)  # FixedPoint(8, 3), the LP-SGLD toy format
    delta = fmt.delta
    etas = ctx.pick(tiny=[4e-3], quick=[8e-3, 2e-3, 3e-4], full=[1.6e-2, 8e-3, 4e-3, 2e-3, 1e-3, 5e-4, 3e-4, 1e-4])
    n_chains = ctx.pick(tiny=1500, quick=25000, full=40000)  # quick: MDE ≤ 5% of Var for VC (power 0.9)
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
                row = _var_row(ctx, f"{method} η={eta:g}", params, draws, pred, 0.0, note="P4 × transient 1−(1−η)^{2K}")
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
                    row = _var_row(ctx, f"{method} η={eta:g}", params, draws, v_inf * f, 0.01 * v_inf * f,
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
    vc_ok = all(rows[("sgld_vc", e)].passed for e in etas)
    over = all(rows[("sgld_lp_l", e)].ci[0] > rows[("sgld_vc", e)].ci[1] for e in etas)
    trend_ok = len(nv) < 2 or bool(out.measurements[-1].passed)
    if vc_ok and over and trend_ok:
        out.publication = ("yes", "naive E θ² above VC's at every η and growing as η decreases "
                                  f"({nv[0].value:.3g} → {nv[-1].value:.3g}); VC within its P4 prediction (≈ 1) at every η")
    elif over or trend_ok:
        out.publication = ("partly", f"over-dispersion of naive at every η: {over}; growth as η → 0: {trend_ok}; VC matches P4: {vc_ok}")
    else:
        out.publication = ("no", "naive SGLDLP-L is not measurably over-dispersed relative to VC")
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


CLAIM = Claim(
    id="sgld-overdispersion",
    source=f"{SRC_LPSGLD}, §4 and Theorems 2–3; spec §5.8 P3, P4",
    statement="Naive SGLDLP-L is over-dispersed, increasingly so as η → 0 at fixed Δ; VC SGLDLP-L removes the "
              "over-dispersion (for all η when |g|Δ ≤ 2, in particular wherever 2η ≥ Δ²/4).",
    experiment="1-D N(0,1), ∇Ũ = θ + 0.1ζ, FixedPoint(8,3) (Δ = 1/8), θ_0 = 0, K = c/η steps; sweep η across regimes A and B.",
    measured="E θ² at step K (SE from the fourth moment).",
    prediction="P3 regime formulas (±1% model error) for naive, P4 for VC (exact), both × (1 − (1 − η)^{2K}) (P0 transient).",
    pass_rule="|measured − predicted| ≤ z SE + model error at every η (z: the run's family-wise threshold, 3.93 in --quick; "
              "model error 1% for the P3 formulas, 0 for P4); naive E θ² strictly increasing as η decreases (disjoint 95% CIs).",
    published="LP-SGLD §4 / Theorems 2–3: naive over-dispersed, increasingly as η → 0; VC removes it. 'yes' when naive sits above "
              "VC at every η with the growth, and VC agrees with P4 (≈ the target variance).",
    run=_run_overdispersion,
    weight=2.5,
)
