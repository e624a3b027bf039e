"""Claim ``sghmc-fig4``: TMLR Figure 4, the W2 ratio of VC to naive SGHMCLP-L against Σ_x/(Δ²/4) (spec P8, P9)."""

from __future__ import annotations

import math

import numpy as np

from theory import predictions as P
from theory.claims._common import (
    SRC_LPSGHMC,
    Claim,
    Context,
    Outcome,
    _plt,
    _save,
    _var_row,
    fixed_point,
)
from theory.claims._sghmc import (
    _SGHMC_SETTING,
    _sghmc_draws,
    _sghmc_prediction,
    _sghmc_steps,
)
from theory.experiments import (
    Measurement,
    bootstrap,
    derive_seed,
)


def _run_sghmc_fig4(ctx: Context) -> Outcome:
    out = Outcome()
    cid = "sghmc-fig4"
    fls = ctx.pick(tiny=[4, 6], quick=[3, 4, 5, 6, 7], full=[3, 4, 5, 6, 7, 8])
    n_chains = ctx.pick(tiny=3000, quick=20000, full=100000)
    n_boot = ctx.pick(tiny=60, quick=200, full=400)
    K = _sghmc_steps()
    co = P.sghmc_coefficients(**_SGHMC_SETTING)
    rng = np.random.default_rng(derive_seed(ctx.seed, cid, "bootstrap"))
    def w2g(a: np.ndarray) -> float:
        return abs(math.sqrt(float(np.mean(a**2))) - 1.0)

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
                out.measurements.append(_var_row(ctx, f"sghmc_vc {sign} Δ=2^-{fl}: Var_x", params, d_vc, float(pv), 0.0,
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
    if repro.get("correct"):
        out.publication = ("yes", "with the correct position sign the measured ratio is below 1 wherever 1 ≤ Σ_x/(Δ²/4) ≤ 40")
    elif repro.get("paper"):
        out.publication = ("no", "with the correct position sign (s_x = −1) the measured ratio W2(VC)/W2(naive) is above 1 "
                                 "(VC is worse: it drops Σ_xv, P8); the published curve (ratio < 1, VC helping most near Σ_x/(Δ²/4) ≈ 1) "
                                 "appears only with the paper's printed sign s_x = +1")
    else:
        out.publication = ("no", "the measured ratio is not below 1 with either position sign")
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
    # the published Fig. 4 (qualitative, TMLR): ratio below 1, lowest near Σ_x/(Δ²/4) ≈ 1, back to ≈ 1 around 100×
    ax.axvspan(1.0, 40.0, color="0.92", zorder=0, label="published: ratio < 1 here (VC helps)")
    ax.plot([100.0], [1.0], "k*", ms=9, label="published: ratio ≈ 1 near 100×")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Σ_x / (Δ²/4)")
    ax.set_ylabel("W2(VC SGHMCLP-L) / W2(SGHMCLP-L)")
    ax.set_title("TMLR Fig. 4 reproduction, Gaussian (η,u,γ)=(0.09,2,3)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    _save(fig, ctx, "sghmc_fig4_ratio.png", out)
    return out


CLAIM = Claim(
    id="sghmc-fig4",
    source=f"{SRC_LPSGHMC}, Figure 4; spec §5.7 (v), §5.8 P8",
    statement="W2(VC SGHMCLP-L)/W2(SGHMCLP-L) against Σ_x/(Δ²/4): VC helps most near 1 and little around 100×. "
              "Which position sign reproduces the published curve?",
    experiment="Gaussian setting (0.09, 2, 3); vary Δ = 2^-fl to sweep Σ_x/(Δ²/4); both signs; many chains at step K.",
    measured="x-marginal W2 ratio (Gaussian approximation |√Var_x − 1|, bootstrap CI); VC Var_x.",
    prediction="P8/P9 Lyapunov values where both Q^vc calls are in branch 1.",
    pass_rule="implementation: VC Var_x within z SE of P8 wherever branch 1 holds (z: the run's family-wise threshold, 3.93 in "
              "--quick). This judges the derived variance only; the W2 ratio (the figure's quantity) is reported, and whether it "
              "reproduces the published curve is the publication verdict.",
    published="TMLR Fig. 4: ratio < 1, lowest near Σ_x/(Δ²/4) ≈ 1, → 1 around 100×. 'yes' iff the correct-sign ratio's upper 95% "
              "limit is < 1 at every point with 1 ≤ Σ_x/(Δ²/4) ≤ 40; 'no' when only the printed (paper) sign reproduces it.",
    run=_run_sghmc_fig4,
    weight=7.0,
)
