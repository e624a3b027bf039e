"""Claims ``lpsgld-bounds-d1`` and ``lpsgld-bounds-d10``: LP-SGLD Theorems 1–3 (spec (T0)–(T3)) hold on N(0, I_d)."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from theory import bounds as B
from theory import wasserstein as W
from theory.claims._common import (
    SRC_LPSGLD,
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
    within_prediction,
)

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
    n_boot = ctx.pick(tiny=40, quick=100 if d == 1 else 60, full=200)  # d = 10 quick: 60 (CPU budget of --quick)
    rng = np.random.default_rng(derive_seed(ctx.seed, claim_id, "bootstrap"))
    curves = {}
    gauss_w2 = {}
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
                            est.value, (est.lo, est.hi), est.se, None, total, ctx.z * est.se,
                            bool(est.value - ctx.z * est.se <= total), note,
                        )
                    )
                    curves.setdefault((method, fl), []).append((eta, K, est, total))
                    vhat = float(np.mean(draws**2))
                    gauss_w2[(method, fl, eta, K)] = math.sqrt(d) * abs(math.sqrt(vhat) - 1.0 + 1.0 / (4.0 * d * n_chains))
            ctx.log(f"{claim_id}: {method} Δ=2^-{fl} done")
    null = W.w2_product_to_dist(np.random.default_rng(derive_seed(ctx.seed, claim_id, "null")).standard_normal((n_chains, d)), norm())
    out.info["null W2 (exact N(0, I) sample, same n and estimator)"] = null
    # the estimator against its known null at this size (two-sided): a W2 biased low is caught here
    e1 = W.w2sq_1d_null_mean(norm(), n_chains)
    out.measurements.append(_w2_null_row(
        ctx, f"W2 estimator null check (product of exact 1-D, d={d}, n={n_chains})", lambda a: W.w2_product_to_dist(a, norm()),
        lambda n, r: r.standard_normal((n, d)), d * e1, n=n_chains, n_rep=ctx.pick(tiny=400, quick=400 if d == 1 else 200, full=400),
        seed=derive_seed(ctx.seed, claim_id, "null-check")))
    if d > 1:
        # closed-form Gaussian W2 of the isotropic fit N(0, v̂ I) (the law is Gaussian up to rounding): √d·|√v̂ − 1|,
        # bias-corrected by its null offset (E√v̂ = 1 − Var(v̂)/8 + …, Var(v̂) = 2/(n d) at v = 1)
        out.info["Gaussian closed-form W2 (isotropic fit, bias-corrected) at the largest K"] = {
            f"{m_} Δ=2^-{fl_} η={e:g}": g for (m_, fl_), pts in curves.items() for (e, K, est, tot, g) in
            [(p[0], p[1], p[2], p[3], gauss_w2[(m_, fl_, p[0], p[1])]) for p in pts] if K == int(math.ceil(max(kmults) / e))}
        corr = 1.0 / (4.0 * math.sqrt(d) * n_chains)  # √d·Var(v̂)/8 with Var(v̂) = 2/(n d)
        rngg = np.random.default_rng(derive_seed(ctx.seed, claim_id, "gauss-null"))
        reps = np.array([math.sqrt(d) * (math.sqrt(float(np.mean(rngg.standard_normal((n_chains, d)) ** 2))) - 1.0) + corr
                         for _ in range(ctx.pick(tiny=40, quick=200, full=400))])
        gm, gse = float(reps.mean()), float(reps.std(ddof=1) / math.sqrt(reps.size))
        ok, tol = within_prediction(gm, gse, 0.0, 0.0, z=ctx.z)
        out.measurements.append(Measurement(
            f"Gaussian closed-form W2 null check (d={d}, n={n_chains})", {"n": n_chains, "d": d, "n_rep": reps.size},
            "mean of the signed, bias-corrected √d·(√v̂ − 1) over exact N(0, I) samples", gm, (gm - 1.96 * gse, gm + 1.96 * gse), gse,
            0.0, None, tol, ok, "two-sided; null mean 0 after the −√d·Var(v̂)/8 correction"))
    ratios = [(tot / est.hi, m, fl, e, K) for (m, fl), pts in curves.items() for (e, K, est, tot) in pts]
    worst = min(ratios)
    out.info["smallest bound / upper-95% ratio"] = {"ratio": worst[0], "method": worst[1], "delta": 2.0 ** -worst[2], "eta": worst[3], "K": worst[4]}
    out.info["grid points with upper 95% limit above the bound"] = sum(r[0] < 1 for r in ratios)
    bound_rows = [m for m in out.measurements if m.bound is not None]
    violated = [m.label for m in bound_rows if not m.passed]
    if violated:
        out.publication = ("no", f"measured W2 significantly above the bound at {len(violated)} grid point(s): {violated[:3]}")
    else:
        out.publication = ("yes", f"every measured W2 is below its Theorem 1–3 bound ({len(bound_rows)} grid points; the bounds are loose: "
                                  f"smallest bound / upper-95% ratio {worst[0]:.3g} at {worst[1]}, η = {worst[3]:g})")
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


CLAIMS: list[Claim] = []
for _d in (1, 10):
    CLAIMS.append(Claim(
        id=f"lpsgld-bounds-d{_d}",
        source=f"{SRC_LPSGLD}, Theorems 1–3 (spec (T0)–(T3))",
        statement=f"On an m-strongly log-concave target (here N(0, I_{_d}), m = M = 1, Ψ = 0, κ = s√d), W2(μ_K, π) of SGLDLP-F, "
                  "naive SGLDLP-L and VC SGLDLP-L is below the explicit bounds of Theorems 1, 2 and 3.",
        experiment=f"d = {_d}; FixedPoint(fl+5, fl) for weights and gradients, gradient noise s = 0.1, θ_0 = 0 (W2_0 = √d); "
                   "grid over η, Δ and K = c/η; many chains, one draw each at step K.",
        measured="W2(μ_K, N(0, I)) by the exact 1-D quantile formula summed over the independent coordinates (biased upward); "
                 "bootstrap SE and 95% normal interval.",
        prediction="theory.bounds.lpsgld_thm1/2/3 total (G = d·√(2 + s² + Δ²/4) for Thm 3, checked against the draws).",
        pass_rule="no significant violation at any grid point: measured W2 − z bootstrap SE ≤ bound, z the family-wise threshold "
                  "of the run (3.93 in --quick; the estimator is biased upward, so a violation is never hidden by its bias); and the "
                  "estimator's mean W2² over exact N(0, I) samples of the same size agrees with the independently computed null "
                  "expectation within z SE (two-sided)" + (", as does the bias-corrected closed-form Gaussian W2 of the isotropic fit"
                  if _d > 1 else "") + ". The bound check is one-sided with ≥ 2× slack, so it cannot detect small errors: the MDE "
                  "column says how large an excess over the bound would be caught.",
        published="Theorems 1–3 (upper bounds on W2(μ_K, π)); reproduced ('yes') when no grid point violates its bound.",
        run=(lambda ctx, _d=_d: _run_bounds(ctx, _d, f"lpsgld-bounds-d{_d}")),
        weight=5.0 if _d == 1 else 14.0,
    ))
