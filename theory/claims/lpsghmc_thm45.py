"""Claim ``lpsghmc-thm4-5``: LP-SGHMC Theorems 4–5 measured at their own prescribed (η, K).

Theorem 4 (SGHMCLP-F) and Theorem 5 (naive SGHMCLP-L) prescribe, for accuracy ε, a step
size η and an iteration count K (``theory.bounds.lpsghmc_thm4/5``) and state
W2(μ_K, π) = Õ(ε + Δ) and Õ(ε + Δ/ε).  In d = 1 with m1 = M = u = 1 these are cheap
(ε = 0.1: η ≈ 3·10⁻⁴, K ≈ 2·10⁴), so the experiment runs exactly there.  The Õ hides
constants and logarithms; the judged form reads it with constant 1 (a stated
interpretation, not the paper's).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from theory import bounds as B
from theory import wasserstein as W
from theory.claims._common import (
    SRC_LPSGHMC,
    Claim,
    Context,
    Outcome,
    _plt,
    _save,
    _w2_null_row,
    fixed_point,
)
from theory.experiments import (
    Measurement,
    bootstrap_ci,
    derive_seed,
    law_at_step,
    variance_estimate,
)

_GAMMA, _U = 2.0, 1.0  # friction and inverse mass of the theorems' setting (u = 1/M)
_THMS = {"sghmc_lp_f": ("Thm 4", B.lpsghmc_thm4, lambda e, d: e + d), "sghmc_lp_l": ("Thm 5", B.lpsghmc_thm5, lambda e, d: e + d / e)}


def _run(ctx: Context) -> Outcome:
    out = Outcome()
    cid = "lpsghmc-thm4-5"
    epss = ctx.pick(tiny=[0.2, 0.1], quick=[0.2, 0.1, 0.05], full=[0.2, 0.1, 0.05])
    fls = ctx.pick(tiny=[4], quick=[4], full=[4, 6, 8])
    n_chains = ctx.pick(tiny=3000, quick=800, full=4000)
    n_boot = ctx.pick(tiny=40, quick=100, full=200)
    rng = np.random.default_rng(derive_seed(ctx.seed, cid, "bootstrap"))
    w2 = lambda a: W.w2_1d_to_dist(np.ravel(a), norm())  # noqa: E731
    pts, var = {}, {}
    for method, (thm, fn, form) in _THMS.items():
        for fl in fls:
            fmt = fixed_point(fl)
            for eps in epss:
                pres = fn(eps, 1.0, 1.0, _U, 1.0, 0.0, fmt.delta, 0.0)
                eta, K = float(pres.eta), int(math.ceil(float(pres.K)))
                draws = law_at_step(ctx.sampler, method, "gaussian", n_chains=n_chains, n_steps=K, step_size=eta,
                                    seed=derive_seed(ctx.seed, cid, method, fl, eps), fmt=fmt, grad_fmt=fmt,
                                    friction=_GAMMA, inverse_mass=_U)
                est = bootstrap_ci(w2, draws, rng, n_boot, kind="normal")
                bound = form(eps, fmt.delta)
                pts[(method, fl, eps)] = est
                var[(method, fl, eps)] = variance_estimate(draws)
                out.measurements.append(Measurement(
                    f"{method} ({thm}) Δ=2^-{fl} ε={eps:g}", {"method": method, "delta": fmt.delta, "eps": eps, "eta": eta, "K": K,
                                                               "n_chains": n_chains, "friction": _GAMMA, "inverse_mass": _U},
                    "W2(μ_K, N(0, 1)) (exact 1-D estimator, biased upward)", est.value, (est.lo, est.hi), est.se, None, bound,
                    ctx.z * est.se, bool(est.value - ctx.z * est.se <= bound),
                    f"η, K prescribed by {thm} for ε (B.lpsghmc_{'thm4' if thm == 'Thm 4' else 'thm5'}); bound: "
                    + ("ε + Δ" if thm == "Thm 4" else "ε + Δ/ε") + " (Õ read with constant 1)"))
        ctx.log(f"{cid}: {method} done")
    out.measurements.append(_w2_null_row(
        ctx, f"W2 estimator null check (exact 1-D, n={n_chains})", w2, lambda n, r: r.standard_normal(n),
        W.w2sq_1d_null_mean(norm(), n_chains), n=n_chains, n_rep=ctx.pick(tiny=200, quick=400, full=400),
        seed=derive_seed(ctx.seed, cid, "null-check")))
    null_w2 = math.sqrt(W.w2sq_1d_null_mean(norm(), n_chains))
    # Theorem 5's Δ/ε growth: at the coarsest Δ, naive LP-L's over-dispersion grows as ε decreases.  Judged on E θ²
    # (far more precise than W2 at this n): larger at the smallest ε than at the largest (disjoint 95% CIs); the value is the
    # log-log slope of the Gaussian W2 |√E θ² − 1| against 1/ε (Thm 5's exponent of Δ/ε is 1).
    fl0 = fls[0]
    es = sorted(epss, reverse=True)
    seq = [var[("sghmc_lp_l", fl0, e)] for e in es]
    grows = seq[-1].lo > seq[0].hi  # smallest ε against largest ε
    gw = [abs(math.sqrt(s.value) - 1.0) for s in seq]
    slope = float(np.polyfit(np.log(1 / np.array(es)), np.log(gw), 1)[0]) if len(seq) > 1 else float("nan")
    out.measurements.append(Measurement(
        f"sghmc_lp_l Δ=2^-{fl0}: over-dispersion grows as ε → 0 (Thm 5's Δ/ε)", {"delta": 2.0**-fl0, "eps": es,
                                                                                "E_theta2": [s.value for s in seq]},
        "log-log slope of |√E θ² − 1| against 1/ε (value); judged: E θ² at the smallest ε above that at the largest (disjoint 95% CIs)",
        slope, (float("nan"), float("nan")), None, 1.0, None, None, bool(grows) if len(seq) > 1 else None,
        "prediction 1 = the exponent of Δ/ε in Theorem 5 (an upper-bound rate; the measured exponent may be smaller)"))
    lpf = [pts[("sghmc_lp_f", fl, e)] for fl in fls for e in epss]
    resolved = any(p.lo > 1.5 * null_w2 for p in lpf)
    bounds_ok = all(m.passed for m in out.measurements if m.bound is not None)
    if bounds_ok and grows:
        out.publication = ("partly" if not resolved else "yes",
                           f"every W2 below ε + Δ (Thm 4) / ε + Δ/ε (Thm 5) at the prescribed (η, K); naive LP-L's W2 grows as ε "
                           f"falls at Δ = 2^-{fl0} (slope {slope:.2f} in 1/ε, Thm 5's Δ/ε)" + (
                               "" if resolved else f"; Theorem 4's ε-scaling is not resolvable here: SGHMCLP-F's W2 is at the "
                               f"estimator's null level ({null_w2:.3f} at n = {n_chains})"))
    elif bounds_ok:
        out.publication = ("partly", "the bounds hold but naive LP-L's growth as ε → 0 is not seen at this size")
    else:
        out.publication = ("no", "a measured W2 exceeds ε + Δ or ε + Δ/ε significantly")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (method, (thm, _, form)) in zip(axes, _THMS.items()):
        for j, fl in enumerate(fls):
            e = np.array(epss)
            y = np.array([pts[(method, fl, x)].value for x in epss])
            err = np.array([[pts[(method, fl, x)].value - pts[(method, fl, x)].lo for x in epss],
                            [pts[(method, fl, x)].hi - pts[(method, fl, x)].value for x in epss]])
            ax.errorbar(e, y, yerr=np.maximum(err, 0), fmt="o", color=f"C{j}", label=f"measured Δ=2^-{fl}")
            g = np.geomspace(min(epss) / 1.5, max(epss) * 1.5, 40)
            ax.plot(g, [form(x, 2.0**-fl) for x in g], "-", color=f"C{j}", label=f"{thm}: " + ("ε + Δ" if thm == "Thm 4" else "ε + Δ/ε") + f", Δ=2^-{fl}")
        ax.axhline(null_w2, color="k", ls=":", lw=0.8, label=f"null W2 (exact sample, n={n_chains})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("accuracy ε (η, K prescribed by the theorem)")
        ax.set_title(f"{method} ({thm}), γ=2, u=1, d=1")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("W2(μ_K, N(0, 1))")
    _save(fig, ctx, "lpsghmc_thm4_5.png", out)
    return out


CLAIM = Claim(
    id="lpsghmc-thm4-5",
    source=f"{SRC_LPSGHMC}, Theorems 4 and 5 (strongly log-concave; spec §5.5)",
    statement="At the step size and iteration count each theorem prescribes for accuracy ε, SGHMCLP-F reaches W2 = Õ(ε + Δ) "
              "(Theorem 4) and naive SGHMCLP-L W2 = Õ(ε + Δ/ε) (Theorem 5), whose Δ/ε term grows as ε → 0.",
    experiment="d = 1, N(0, 1) (m1 = M = 1, D = 0), γ = 2, u = 1, x_0 = v_0 = 0, exact gradients; FixedPoint(fl+5, fl) weights and "
               "gradients; ε ∈ {0.2, 0.1, 0.05}; η and K from theory.bounds.lpsghmc_thm4/5 (ε = 0.1: η ≈ 3e-4, K ≈ 2e4).",
    measured="W2(μ_K, N(0, 1)) by the exact 1-D estimator (bootstrap SE); E θ² of naive LP-L; the estimator's null at the same n.",
    prediction="Õ(ε + Δ) and Õ(ε + Δ/ε) with the Õ read as constant 1 (the theorems hide constants and logs).",
    pass_rule="implementation: W2 − z bootstrap SE ≤ ε + Δ (Thm 4) or ε + Δ/ε (Thm 5) at every point (z the run's family-wise "
              "threshold, 3.93 in --quick); naive LP-L's E θ² at the smallest ε above that at the largest, at the coarsest Δ (disjoint 95% CIs); "
              "the estimator's null check (two-sided).",
    published="TMLR Theorems 4–5 (rates). 'yes' if the bounds hold, the Δ/ε growth is seen and the LP-F scaling is resolved; "
              "'partly' if SGHMCLP-F's W2 sits at the estimator's null level (its ε-scaling then cannot be seen at this n).",
    run=_run,
    weight=4.0,
)
