"""Claim ``sghmc-moments``: SGHMC stationary position variances for both signs and all low-precision variants (spec P7–P9)."""

from __future__ import annotations

import math

from theory.claims._common import (
    SRC_LPSGHMC,
    Claim,
    Context,
    Outcome,
    _var_row,
    fixed_point,
)
from theory.claims._sghmc import (
    _SGHMC_SETTING,
    _sghmc_lag_autocovariance,
    _sghmc_path,
    _sghmc_prediction,
    _sghmc_steps,
)
from theory.experiments import (
    Measurement,
    derive_seed,
    within_prediction,
)

#: lag of the dynamics check: Cov(x_K, x_{K+LAG}) is most sensitive to the friction there (γ ±10% moves it by ~0.044)
LAG = 25


def _run_sghmc_moments(ctx: Context) -> Outcome:
    out = Outcome()
    cid = "sghmc-moments"
    fmt = fixed_point(4, 4)  # FixedPoint(8, 4): Δ = 1/16, the TMLR synthetic format
    n_chains = ctx.pick(tiny=3000, quick=40000, full=100000)
    K = _sghmc_steps()
    methods = ctx.pick(tiny=["sghmc", "sghmc_vc"], quick=["sghmc", "sghmc_lp_f", "sghmc_lp_l", "sghmc_vc"], full=["sghmc", "sghmc_lp_f", "sghmc_lp_l", "sghmc_vc"])
    vc_var = {}
    for sign in ("correct", "paper"):
        for method in methods:
            f = None if method == "sghmc" else fmt
            path = _sghmc_path(ctx, method, sign, f, n_chains, [K, K + LAG], derive_seed(ctx.seed, cid, method, sign))
            draws = path[0]
            S = _sghmc_prediction(method, sign, fmt.delta, 0.0, K)
            # naive LP-L: q = Δ²/6 is the spec's "moves span many cells" approximation; allow 30% of the excess
            model = 0.3 * abs(S[0, 0] - _sghmc_prediction("sghmc", sign, fmt.delta, 0.0, K)[0, 0]) if method == "sghmc_lp_l" else 0.0
            src = {"sghmc": "P7", "sghmc_lp_f": "P7 + LP-F gradient noise", "sghmc_vc": "P8 (Σ_xv dropped)", "sghmc_lp_l": "P9 (q = Δ²/6)"}[method]
            params = {"method": method, "position_sign": sign, "delta": fmt.delta, "K": K, "n_chains": n_chains, **_SGHMC_SETTING}
            row = _var_row(ctx, f"{method} {sign} sign: Var_x", params, draws, float(S[0, 0]), model, quantity="Var_x at step k", note=src)
            out.measurements.append(row)
            if method == "sghmc_vc":
                vc_var[sign] = row
            # dynamics: the lag-LAG autocovariance against the exact linear recursion (friction / step-order errors)
            prod = path[0] * path[1]
            c = float(prod.mean())
            se = float(prod.std(ddof=1) / math.sqrt(prod.size))
            pred = _sghmc_lag_autocovariance(sign, S, LAG)
            judged = method != "sghmc_lp_l"  # naive: Σ_K itself is the approximate P9
            ok, tol = within_prediction(c, se, pred, 0.0, z=ctx.z)
            out.measurements.append(Measurement(
                f"{method} {sign} sign: Cov(x_K, x_K+{LAG})", {**params, "lag": LAG}, f"lag-{LAG} autocovariance of x at step K",
                c, (c - 1.96 * se, c + 1.96 * se), se, pred, None, tol if judged else None, ok if judged else None,
                f"(A^{LAG} Σ_K)_xx with Σ_K from {src}: the dynamics, which the stationary variance barely sees (γ ±10% moves "
                "Var_x by 0.3% but this by ~15%)" + ("" if judged else "; reported: Σ_K for naive LP-L is approximate")))
        ctx.log(f"{cid}: {sign} sign done")
    out.draws_note = (f"one value per independent chain in every row: x_K, or the product x_K·x_(K+{LAG}) of the same chain "
                      "(the pair is one observation); ESS = number of chains; R-hat (needs several draws per chain) does not apply")
    out.info["P7 Var_x correct/paper"] = [1.0309, 1.4400]
    if "correct" in vc_var:
        v = vc_var["correct"]
        out.publication = ("partly", f"the integrator's Var_x (P7) and naive LP-L's excess (P9) are reproduced, but the published "
                                     f"'VC SGHMCLP-L matches the target' is not: Var_x = {v.value:.3f} ± {v.se:.3f} against 1 "
                                     "(VC drops Σ_xv, P8); the implementation verdict judges agreement with P8, not with the target")
    else:
        out.publication = ("not checkable here", "VC SGHMCLP-L not run at this size")
    return out


CLAIM = Claim(
    id="sghmc-moments",
    source=f"{SRC_LPSGHMC}, eqs. (3), (5), (6), (8); spec §5.8 P7, P8, P9",
    statement="The SGHMC integrator's stationary position variance is given by the discrete Lyapunov solution, for both position "
              "signs; VC SGHMCLP-L drops the x–v covariance (under-dispersed with the correct sign); naive SGHMCLP-L adds ≈ Δ²/6 per rounding.",
    experiment="1-D N(0,1), exact gradient, (η, u, γ) = (0.09, 2, 3), FixedPoint(8,4); both signs; K with ρ^K ≤ 1e-5.",
    measured=f"Var_x at step K; Cov(x_K, x_(K+{LAG})) (the dynamics).",
    prediction="Lyapunov covariance at step K (P7; P7 + rounding noise for LP-F; P8 with Σ_xv = 0 for VC; P9 with q = Δ²/6 for naive, ±30% of its excess).",
    pass_rule="|measured − predicted| ≤ z SE + model error for every method and sign (z: the run's family-wise threshold, 3.93 "
              f"in --quick), for Var_x and for the lag-{LAG} autocovariance (exact linear recursion; not judged for naive LP-L). "
              "The VC row is judged against P8 (Var_x ≈ 0.82 with the correct sign), not against the target variance 1.",
    published="LP-SGHMC: SGHMC samples the target; VC SGHMCLP-L 'matches the target' (Fig. 2/§4.1). Publication verdict: "
              "'partly' — the integrator is reproduced, VC's match with the target is not (P8 under-dispersion).",
    run=_run_sghmc_moments,
    weight=2.0,
)
