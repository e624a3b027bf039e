"""Claim ``lpf-bias-vanishes``: the SGLDLP-F bias vanishes with η; the SGDLP-L floor does not (spec P2, P6)."""

from __future__ import annotations

import math

import numpy as np

from theory import predictions as P
from theory.claims._common import (
    SRC_LPSGLD,
    Claim,
    Context,
    Outcome,
    _plt,
    _save,
    _transient,
    _var_row,
    fixed_point,
)
from theory.experiments import (
    Measurement,
    bootstrap,
    derive_seed,
    law_at_step,
    loglog_slope,
    within_prediction,
)


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
        out.measurements.append(_var_row(ctx, f"sgld_lp_f η={eta:g}", {"method": "sgld_lp_f", "delta": fmt.delta, "eta": eta, "K": K, "n_chains": n_chains, "grad_noise": s},
                                         draws, pred, note="P2 (SR variances computed) × transient"))
        excess.append(float(np.mean(draws**2)) - 1.0)
        reps.append(bootstrap(lambda a: float(np.mean(a**2)) - 1.0, draws, rng, n_boot))
        preds.append(pred - 1.0)
    ctx.log(f"{cid}: sgld_lp_f done")
    reps = np.array(reps).T
    # the slope row is judged whatever the draws (the Šidák family is counted before judging): a non-positive
    # excess variance has no logarithm and contradicts P2 (excess > 0 at every η), so it fails the row
    pfit = loglog_slope(etas, preds)
    slope_label = "sgld_lp_f: slope of log(Var − 1) vs log η"
    slope_note = "prediction: slope of the P2 values over the same η grid (→ 1 as η → 0: the bias vanishes); judged at z bootstrap SE"
    if min(excess) > 0:
        fit = loglog_slope(etas, excess, reps)
        out.measurements.append(Measurement(
            slope_label, {"etas": etas}, "log-log slope (bootstrap 95% CI)",
            fit.slope, (fit.lo, fit.hi), fit.se, pfit.slope, None, ctx.z * fit.se, bool(abs(fit.slope - pfit.slope) <= ctx.z * fit.se),
            slope_note))
        out.info["lpf_slope"] = [fit.slope, fit.lo, fit.hi, pfit.slope]
    else:
        nan = float("nan")
        out.measurements.append(Measurement(
            slope_label, {"etas": etas}, "log-log slope (bootstrap 95% CI)", nan, (nan, nan), None, pfit.slope, None, None, False,
            slope_note + f"; FAIL: a measured excess Var − 1 ≤ 0 (min {min(excess):.3g}; P2 predicts > 0 at every η), slope undefined"))
    # (a') the LP-F mechanism where it is resolvable: Δ = 1, η = 0.5, s = 0, Q_G = identity (as tests/refimpl use).  P2 exact form:
    # V = (2 + η·E σ²_SR(θ; Δ))/(2 − η), with E σ²_SR taken over the draws themselves; evaluating the gradient at θ
    # instead of Q_W(θ) drops the η·σ²_SR term (−4% in Var), visible at this size.
    fmt1 = fixed_point(0)
    eta1, n1, k1 = 0.5, ctx.pick(tiny=100000, quick=200000, full=400000), 40
    th = law_at_step(ctx.sampler, "sgld_lp_f", "gaussian", n_chains=n1, n_steps=k1, step_size=eta1,
                     seed=derive_seed(ctx.seed, cid, "lpf-resolvable"), fmt=fmt1, grad_fmt=None, grad_noise=0.0)[:, 0]
    frac = th / fmt1.delta - np.floor(th / fmt1.delta)
    srv = fmt1.delta**2 * frac * (1.0 - frac)
    dev = th**2 - (2.0 + eta1 * srv) / (2.0 - eta1)  # per-draw: mean 0 under P2 (transient (1 − η)^{2K} ≈ 1e-24 neglected)
    pred1 = float(np.mean((2.0 + eta1 * srv) / (2.0 - eta1)))
    se1 = float(dev.std(ddof=1) / math.sqrt(n1))
    v1 = float(np.mean(th**2))
    ok1, tol1 = within_prediction(v1, se1, pred1, 0.0, z=ctx.z)
    out.measurements.append(Measurement(
        "sgld_lp_f Δ=1 η=0.5 s=0 Q_G=id: E θ² (gradient at Q_W(θ) resolvable)", {"method": "sgld_lp_f", "delta": 1.0, "eta": eta1, "K": k1, "n_chains": n1, "grad_fmt": "none"},
        "E θ² at step K", v1, (v1 - 1.96 * se1, v1 + 1.96 * se1), se1, pred1, None, tol1, ok1,
        f"P2 exact: (2 + η·E σ²_SR(θ))/(2 − η) over the draws; SE of the per-draw difference. Gradient at θ instead of Q_W(θ) "
        f"would give {2 / (2 - eta1):.4g} ({100 * (2 / (2 - eta1) / pred1 - 1):+.1f}%)"))
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
            row = _var_row(ctx, f"sgd_lp_l η={eta:g} Δ=2^-{fl}", {"method": "sgd_lp_l", "delta": f2.delta, "eta": eta, "K": K, "n_chains": n_sgd, "grad_noise": s},
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
            fit.slope, (fit.lo, fit.hi), fit.se, pfit.slope, None, ctx.z * fit.se, bool(abs(fit.slope - pfit.slope) <= ctx.z * fit.se),
            "prediction: slope of √(P6) over the same Δ grid (≈ 1/2: the O(√Δ) floor); judged at z bootstrap SE"))
        judged = [m.passed for m in out.measurements if m.passed is not None]
        if all(judged):
            out.publication = ("yes", "SGLDLP-F's excess variance falls with η at the predicted slope (→ 1: the bias vanishes); "
                                      "the SGDLP-L floor is the same at both η and scales as √Δ")
        else:
            out.publication = ("partly", "some judged rows disagree with the derived predictions; see the table")
        plt = _plt()
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        a1.errorbar(etas, excess, yerr=1.96 * reps.std(axis=0, ddof=1), fmt="o", label="measured sgld_lp_f Var − 1 (95%)")
        g = np.geomspace(min(etas) / 3, max(etas), 50)
        a1.plot(g, [P.sgld_lp_f_variance_selfconsistent(e, 0.25, 0.25, s) - 1 for e in g], "-", label="P2 (slope → 1)")
        a1.set_title("SGLDLP-F bias vanishes as η → 0 (Δ = 1/4)")
        a1.set_xlabel("step size η")
        a1.set_ylabel("E θ² − 1 at step K (excess variance)")
        a2.plot(xs, ys, "o", label=f"measured sgd_lp_l RMS (η={eta0:g})")
        gd = np.geomspace(min(xs) / 2, max(xs) * 2, 50)
        a2.plot(gd, np.sqrt(P.sgd_lp_l_second_moment(gd, s)), "-", label="√P6 (slope ≈ 1/2)")
        for e in etas_sgd[1:]:
            if (e, 3) in floor:
                a2.plot([0.125], [math.sqrt(float(np.mean(floor[(e, 3)][0] ** 2)))], "s", label=f"measured η={e:g}")
        a2.set_title("SGDLP-L floor does not vanish with η, ∝ √Δ")
        a2.set_xlabel("grid spacing Δ")
        a2.set_ylabel("RMS of θ at step K (the floor)")
        for ax in (a1, a2):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        _save(fig, ctx, "lpf_bias_and_sgd_floor.png", out)
    return out


CLAIM = Claim(
    id="lpf-bias-vanishes",
    source=f"{SRC_LPSGLD}, Theorem 1 (floor 0 for quadratic U) and §2 (SGD-LP baselines); spec §5.8 P2, P6",
    statement="SGLDLP-F's bias on a quadratic target vanishes as η → 0, while the noise-free SGDLP-L floor does not shrink with η (it is O(√Δ)).",
    experiment="SGLDLP-F on N(0,1) with Δ = 1/4, s = 0.1, sweep η; SGLDLP-F at Δ = 1, η = 0.5, s = 0 (the LP-F mechanism "
               "resolvable, full-precision gradient format); SGDLP-L with s = 0.1 at two η (Δ = 1/8) and a Δ sweep.",
    measured="E θ² at step K; log–log slopes of (Var − 1) vs η and of the RMS floor vs Δ with bootstrap CIs.",
    prediction="P2 (with the rounding variances computed exactly) and P6 (birth–death law, independent of η).",
    pass_rule="every E θ² within z SE of its prediction (z: the run's family-wise threshold, 3.93 in --quick); each measured "
              "log–log slope within z bootstrap SE of the slope of the predictions over the same grid (not a 95% CI rule); "
              "at Δ = 1, η = 0.5, s = 0 the SGLDLP-F E θ² within z SE of the exact P2 value (gradient at Q_W(θ)).",
    published="LP-SGLD Theorem 1 (SGLDLP-F: no floor for quadratic U) and §2 (SGD-LP keeps an O(√Δ) floor); 'yes' when "
              "every judged row agrees.",
    run=_run_lpf_bias,
    weight=1.5,
)
