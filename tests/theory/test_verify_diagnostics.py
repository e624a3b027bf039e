"""Convergence diagnostics in the ``qlangevin verify`` report (R-hat, bulk/tail ESS, MCSE).

Claims that keep several draws per chain (the mixture claim's stationary window, CTLD's
hop paths) report them per series; claims with one draw per independent chain say so.
The claim runs in ``tiny`` mode on the NumPy test double (tests/theory/theory_toy_sampler.py).
Mutations: chains started far apart and run too few steps, and chains that never mix
(a constant offset per chain), must show R-hat > 1.01; the diagnostics judge nothing,
so the verdict and every measured number stay what they were.
"""

from __future__ import annotations

import json
import math

import numpy as np
from theory_toy_sampler import make_toy_sampler  # tests/theory is on sys.path (pytest rootdir import mode)

from theory.claims import CLAIMS, Context
from theory.experiments import INDEPENDENT_DRAWS_NOTE, chain_diagnostics
from theory.report import render_markdown, run_claim, write_report

_KEYS = ("rhat", "ess_bulk", "ess_tail", "mean", "mcse_mean")


def _run(cid, sampler, seed=1):
    return run_claim(CLAIMS[cid], Context(sampler=sampler, mode="tiny", seed=seed))


def _offset_sampler(offset=2.0):
    """The toy sampler with a constant offset per chain (+offset / −offset alternating) on keep="all" runs:
    chains that never mix."""
    toy = make_toy_sampler()

    def sampler(method, target, **kw):
        out = toy(method, target, **kw)
        if kw.get("keep") == "all":
            n = out.shape[1]
            out = out + offset * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)[None, :, None]
        return out

    return sampler


def test_mixture_claim_reports_finite_diagnostics(tmp_path):
    entry = _run("mixture-sghmc-faster", make_toy_sampler())
    assert entry["verdict"] == "pass", entry.get("error")
    diag = entry["diagnostics"]
    assert diag["draws"] == "chains"
    assert [s["label"].split(",")[0] for s in diag["series"]] == ["sghmc_lp_f", "sgld_lp_f"]
    for s in diag["series"]:
        # 17 draws per chain: R-hat and the chain-means MCSE; too few draws for the ESS (null, not a capped number)
        assert s["n_chains"] == 3000 and s["n_draws"] == 17
        for k in ("rhat", "mean", "mcse_chain_means"):
            assert s[k] is not None and math.isfinite(s[k]), (s["label"], k, s[k])
        assert s["ess_bulk"] is None and s["ess_tail"] is None and s["mcse_mean"] is None
        assert s["rhat"] >= 0.99 and s["mcse_chain_means"] > 0
        # |mean| of a symmetric target is within a few MCSE of 0 (4.5 MCSE: two series, Φ tail ~1e-5)
        assert abs(s["mean"]) < 4.5 * s["mcse_chain_means"], s
    assert diag["max_rhat"] == max(s["rhat"] for s in diag["series"])
    assert diag["min_ess_bulk"] is None
    # report.json (strict JSON) and report.md carry them
    report = {"mode": "tiny", "seed": 1, "workers": 1, "started_utc": "-", "duration_s": 0.0, "verdict": entry["verdict"],
              "claims": [entry]}
    jp, mp = write_report(report, tmp_path)
    back = json.loads(jp.read_text())["claims"][0]["diagnostics"]
    assert back["series"][0]["rhat"] == diag["series"][0]["rhat"]
    md = mp.read_text()
    assert "*Convergence diagnostics*" in md and "| series | quantity | chains × draws | R-hat |" in md
    assert "3000 × 17" in md


def test_one_draw_per_chain_claim_says_independent():
    entry = _run("lpsgld-bounds-d1", make_toy_sampler())
    diag = entry["diagnostics"]
    assert diag == {"draws": "independent", "note": INDEPENDENT_DRAWS_NOTE, "max_rhat": None, "min_ess_bulk": None,
                    "min_ess_tail": None, "series": []}
    assert "ESS = number of chains" in render_markdown({"mode": "tiny", "seed": 1, "workers": 1, "started_utc": "-",
                                                        "duration_s": 0.0, "verdict": "pass", "claims": [entry]})


def test_unmixed_chains_in_the_claim_give_rhat_above_1_01():
    good = _run("mixture-sghmc-faster", make_toy_sampler())
    bad = _run("mixture-sghmc-faster", _offset_sampler())
    assert all(s["rhat"] > 1.01 for s in bad["diagnostics"]["series"]), bad["diagnostics"]
    # the offset makes the between-chain spread dominate: far above the correct run's R-hat
    assert bad["diagnostics"]["max_rhat"] > good["diagnostics"]["max_rhat"] + 0.5


def test_far_apart_starts_with_too_few_steps_give_rhat_above_1_01():
    toy = make_toy_sampler()
    n = 50
    x0 = np.where(np.arange(n) % 2 == 0, 10.0, -10.0)[:, None]
    # 40 SGLD steps of η = 0.01 on N(0, 1): the starts ±10 have shrunk only to ±6.7
    short = toy("sgld", "gaussian", dim=1, n_chains=n, n_steps=40, step_size=0.01, seed=3, keep="all", x0=x0)[..., 0].T
    d = chain_diagnostics("far apart", short)
    assert d["rhat"] > 1.01 and d["n_chains"] == n and d["n_draws"] == 40
    # the same starts run long enough have mixed: 2000 steps of η = 0.5 (lag-1 autocorrelation 0.5, τ = 3), the first
    # 200 dropped; E[R-hat] − 1 ≈ τ/(2·900 draws per split chain) ≈ 0.002, its spread over 100 split chains smaller
    long = toy("sgld", "gaussian", dim=1, n_chains=n, n_steps=2000, step_size=0.5, seed=4, keep="all", x0=x0)[200:, :, 0].T
    d = chain_diagnostics("mixed", long)
    assert d["rhat"] < 1.01, d
    for k in _KEYS + ("mcse_chain_means",):
        assert math.isfinite(d[k]), (k, d)
    # 50 × 1800 draws with τ ≈ 3: ESS ≈ 30000, and both MCSEs estimate the same sd/√ESS
    assert 15000 < d["ess_bulk"] < 50 * 1800 and d["ess_tail"] > 1000
    assert 0.7 < d["mcse_mean"] / d["mcse_chain_means"] < 1.4, d


def test_fewer_than_four_draws_per_chain_give_nan_not_an_error():
    d = chain_diagnostics("two draws", np.arange(20.0).reshape(10, 2))
    assert math.isnan(d["rhat"]) and math.isnan(d["mcse_mean"]) and d["n_draws"] == 2 and d["mcse_chain_means"] > 0
