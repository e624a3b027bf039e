"""Running claims and writing the ``qlangevin verify`` report.

``DIR/report.json`` schema (``"schema": "qlangevin.verify/3"``)::

    {
      "schema": "qlangevin.verify/3",
      "qlangevin_version": str,
      "provenance": {                          # what produced the report (theory.report.provenance)
        "qlangevin_version": str, "git_commit": str | null, "git_dirty": bool | null,
        "kernel_source_hash": str,             # names Numba's cache directory (refimpl/_cache.py)
        "numba_cache_dir": str | null, "python": str,
        "versions": {"numpy": str | null, "numba": ..., "scipy": ..., "POT": ..., "torch": ..., ...}
      },
      "mode": "tiny" | "quick" | "full",
      "seed": int,
      "started_utc": str, "duration_s": float, "workers": int, "scheduler": str,
      "verdict": "pass" | "fail",            # implementation verdict of the run: fail if any claim is not "pass"
      "publication": {"yes": int, "partly": int, "no": int, "not checkable here": int},
      "statistics": {                          # multiple-testing bookkeeping (theory.report.statistics_summary)
        "family_alpha_target": float,          # family-wise false-alarm rate aimed at (0.01)
        "family_size": int,                    # judged checks counted before judging (theory.tasks' planning pass)
        "z_threshold": float,                  # two-sided Šidák threshold for family_alpha_target over family_size
        "judged_checks": int,                  # all judged checks, counted after judging
        "family_checks": int,                  # those with Monte Carlo error (= family_size unless a claim errored)
        "deterministic_checks": int,           # judged without Monte Carlo error (Claim.monte_carlo False): no false alarm
        "family_alpha_actual": float,          # the family-wise α of family_checks checks at z_threshold
        "count_mismatch": {claim id: [planned, judged]},   # claims whose judged count differs from the plan ({} normally)
        "power_for_mde": float, "note": str
      },
      "claims": [
        {
          "id": str, "source": str, "statement": str, "experiment": str,
          "measured": str, "prediction": str, "pass_rule": str,
          "published": str,                   # the declarative record
          "verdict": "pass" | "fail" | "error",   # the implementation verdict (same as "implementation")
          "implementation": "pass" | "fail" | "error",
          "publication": {"verdict": "yes" | "partly" | "no" | "not checkable here", "reason": str},
          "duration_s": float,
          "error": str | null,                # traceback summary when verdict == "error"
          "figures": [str, ...],              # paths relative to DIR
          "info": {...},                      # claim-specific extras (e.g. which SGHMC sign reproduces Fig. 4)
          "diagnostics": {                    # convergence diagnostics (theory.report.diagnostics_entry); nothing judged
            "draws": "independent" | "chains" | null,   # one draw per independent chain, or series with several per chain
            "note": str,                      # how the rows' draws relate to the chains
            "max_rhat": float | null, "min_ess_bulk": float | null, "min_ess_tail": float | null,
            "series": [{"label": str, "quantity": str, "n_chains": int, "n_draws": int, "rhat": float | null,
                        "ess_bulk": float | null, "ess_tail": float | null, "mean": float | null,
                        "mcse_mean": float | null,       # sd/sqrt(ESS); ESS and this need >= 20 draws per chain
                        "mcse_chain_means": float | null # sd of the chain means / sqrt(n_chains)
                       }, ...]
          },
          "measurements": [
            {
              "label": str,
              "parameters": {name: value},    # method, eta, delta, K, n_chains, ...
              "quantity": str,                # what was measured
              "value": float | null,          # the measured value
              "ci": [lo, hi],                 # 95% interval (null when not applicable)
              "se": float | null,             # standard error
              "prediction": float | null,     # spec §5.8 prediction, if any
              "bound": float | null,          # theorem bound, if any
              "tolerance": float | null,      # allowed |value − prediction|, if judged that way
              "passed": bool | null,          # null: reported, not judged
              "mde": float | null,            # minimum detectable effect at power 0.9 (units of value)
              "mde_relative": float | null,   # mde / |prediction|
              "note": str
            }, ...
          ]
        }, ...
      ]
    }

Non-finite floats are written as null (strict JSON; never the string "nan").
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from theory.claims import Claim, Context
from theory.claims._common import PUBLICATION_VERDICTS, verdict_line
from theory.experiments import FAMILY_ALPHA, POWER, family_alpha, family_z

__all__ = ["SCHEMA", "diagnostics_entry", "overall_verdict", "provenance", "render_markdown", "run_claim", "statistics_summary", "write_report"]

SCHEMA = "qlangevin.verify/3"


def diagnostics_entry(outcome: Any) -> dict:
    """The ``diagnostics`` entry of a claim from its :class:`~theory.claims.Outcome` (JSON-ready; non-finite -> null).

    Claims that keep several draws per chain list one series each (R-hat, bulk/tail ESS and
    MCSE of the mean, :func:`theory.experiments.chain_diagnostics`); claims whose rows use one
    draw per independent chain say so (ESS = number of chains) instead of printing an R-hat.
    """
    from theory.experiments import INDEPENDENT_DRAWS_NOTE

    series = list(getattr(outcome, "diagnostics", None) or [])
    note = getattr(outcome, "draws_note", None)
    if not series:
        return {"draws": "independent", "note": note or INDEPENDENT_DRAWS_NOTE, "max_rhat": None, "min_ess_bulk": None,
                "min_ess_tail": None, "series": []}

    def extreme(key, fn):
        vals = [float(d[key]) for d in series if d.get(key) is not None and math.isfinite(float(d[key]))]
        return fn(vals) if vals else None

    return _jsonable({
        "draws": "chains",
        "note": note or ("the series below keep several draws per chain (diagnostics only, nothing judged); "
                         "every other row uses one draw per independent chain (ESS = number of chains)"),
        "max_rhat": extreme("rhat", max), "min_ess_bulk": extreme("ess_bulk", min), "min_ess_tail": extreme("ess_tail", min),
        "series": series,
    })


def run_claim(claim: Claim, ctx: Context) -> dict:
    """Run one claim; return its report entry (never raises for a failing experiment: verdict "error")."""
    t0 = time.perf_counter()
    entry = claim.record()
    try:
        outcome = claim.run(ctx)
        rows = [m.to_json() for m in outcome.measurements]
        verdict = outcome.implementation_verdict()
        if outcome.publication is None:
            pub = {"verdict": "not checkable here", "reason": "the experiment did not decide a publication verdict"}
        else:
            pv, reason = outcome.publication
            if pv not in PUBLICATION_VERDICTS:
                raise ValueError(f"{claim.id}: publication verdict must be one of {PUBLICATION_VERDICTS}, got {pv!r}")
            pub = {"verdict": pv, "reason": reason}
        entry.update(verdict=verdict, implementation=verdict, publication=pub, error=None, figures=list(outcome.figures),
                     info=_jsonable(outcome.info), diagnostics=diagnostics_entry(outcome), measurements=rows)
    except Exception as exc:  # reported as a claim error, so one broken claim does not hide the others
        tb = traceback.format_exc(limit=6)
        entry.update(verdict="error", implementation="error", publication={"verdict": "not checkable here", "reason": "the experiment raised"},
                     error=f"{type(exc).__name__}: {exc}\n{tb}", figures=[], info={},
                     diagnostics={"draws": None, "note": "the experiment raised", "max_rhat": None, "min_ess_bulk": None,
                                  "min_ess_tail": None, "series": []},
                     measurements=[])
    entry["duration_s"] = round(time.perf_counter() - t0, 3)
    return entry


def statistics_summary(entries: Sequence[dict[str, Any]], family_size: int,
                       planned_checks: dict[str, int] | None = None) -> dict:
    """The run's multiple-testing bookkeeping: the Šidák family, its threshold, the judged count, the realised α.

    ``family_size``: the number of judged checks with Monte Carlo error, counted before
    judging (theory.tasks' planning pass), over which the claims were judged at
    z = family_z(family_size).  ``planned_checks``: that count per claim of the family (None:
    every entry is in it); claims not in it judge deterministically.  The counts after
    judging are compared with the plan (a claim that errored judges nothing: then fewer
    checks ran and the realised α is lower).
    """
    z = family_z(family_size)
    judged = {e["id"]: sum(1 for m in e["measurements"] if m["passed"] is not None) for e in entries}
    planned = planned_checks if planned_checks is not None else dict(judged)
    in_family = sum(n for cid, n in judged.items() if cid in planned)
    mismatch = {cid: [int(planned[cid]), judged[cid]] for cid in judged if cid in planned and planned[cid] != judged[cid]}
    return {
        "family_alpha_target": FAMILY_ALPHA,
        "family_size": int(family_size),
        "z_threshold": z,
        "judged_checks": sum(judged.values()),
        "family_checks": in_family,
        "deterministic_checks": sum(judged.values()) - in_family,
        "family_alpha_actual": family_alpha(z, in_family) if in_family else 0.0,
        "count_mismatch": mismatch,
        "power_for_mde": POWER,
        "note": "each judged check allows |measured − predicted| ≤ z·SE + stated model error (one-sided checks: z·SE); "
                "z is the two-sided Šidák threshold for family-wise α over the run's judged checks with Monte Carlo error, "
                "counted before judging (family_size; deterministic checks cannot raise a false alarm and are not in it); "
                "mde: the smallest true deviation detected with probability ≥ power",
    }


def provenance() -> dict:
    """What produced a report: package version, git commit, kernel-source hash, library versions.

    ``git_commit`` is None outside a git checkout; ``git_dirty`` says whether tracked
    files differ from that commit.  ``kernel_source_hash`` is the hash that names
    Numba's cache directory (refimpl/_cache.py), so two reports with the same hash ran
    the same kernel sources.  Versions are None for libraries that are not installed.
    """
    import platform
    import subprocess
    from importlib import metadata

    import qlangevin
    from refimpl import _cache

    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    root = Path(qlangevin.__file__).resolve().parents[1]
    commit = dirty = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip() or None
        if commit:
            st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
            dirty = bool(st.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "qlangevin_version": getattr(qlangevin, "__version__", None),
        "git_commit": commit,
        "git_dirty": dirty,
        "kernel_source_hash": _cache.kernel_source_hash(),
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "python": platform.python_version(),
        "versions": {name: version(dist) for name, dist in
                     (("numpy", "numpy"), ("numba", "numba"), ("scipy", "scipy"), ("POT", "POT"), ("torch", "torch"),
                      ("matplotlib", "matplotlib"), ("dask", "dask"), ("distributed", "distributed"))},
    }


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    try:
        v = float(obj)
    except (TypeError, ValueError):
        return str(obj)
    if isinstance(obj, int):
        return obj
    return v if math.isfinite(v) else None


def overall_verdict(entries: Sequence[dict[str, Any]]) -> str:
    """"pass" iff there is at least one claim and every claim passed."""
    return "pass" if entries and all(e["verdict"] == "pass" for e in entries) else "fail"


def _fmt(v, digits=4):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.{digits}g}"
    return str(v)


def _mde_text(m) -> str:
    if m.get("mde") is None:
        return "–"
    rel = m.get("mde_relative")
    return _fmt(m["mde"], 3) + (f" ({100 * rel:.1f}%)" if rel is not None else "")


def _fmt_ess(v) -> str:
    return "–" if v is None else (f"{v:.0f}" if isinstance(v, float) and math.isfinite(v) else _fmt(v))


def _diagnostics_lines(diag: dict | None) -> list[str]:
    """report.md lines for a claim's ``diagnostics`` entry: one line, or a table of the series."""
    if not diag or diag.get("draws") is None:
        return []
    if diag["draws"] == "independent":
        return ["", f"*Convergence diagnostics:* {diag['note']}."]
    lines = ["", f"*Convergence diagnostics* (max R-hat {_fmt(diag.get('max_rhat'))}, min bulk ESS {_fmt_ess(diag.get('min_ess_bulk'))}, "
                 f"min tail ESS {_fmt_ess(diag.get('min_ess_tail'))}; R-hat > 1.01: the chains have not mixed): {diag['note']}.", "",
             "| series | quantity | chains × draws | R-hat | bulk ESS | tail ESS | mean | MCSE (ESS) | MCSE (chain means) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d in diag["series"]:
        lines.append(f"| {d['label']} | {d['quantity']} | {d['n_chains']} × {d['n_draws']} | {_fmt(d['rhat'])} | "
                     f"{_fmt_ess(d['ess_bulk'])} | {_fmt_ess(d['ess_tail'])} | {_fmt(d['mean'])} | {_fmt(d['mcse_mean'], 2)} | "
                     f"{_fmt(d.get('mcse_chain_means'), 2)} |")
    if any(d["ess_bulk"] is None for d in diag["series"]):
        lines += ["", "ESS and MCSE (ESS): – where a chain keeps fewer than 20 draws (too few to estimate the autocorrelation); "
                      "MCSE (chain means) holds for independent chains however the draws within a chain are correlated."]
    return lines


def render_markdown(report: dict) -> str:
    """The readable table: both verdicts per claim, then one section per claim, one row per measurement."""
    st = report.get("statistics", {})
    prov = report.get("provenance", {})
    lines = [
        "# qlangevin verify report",
        "",
        f"mode **{report['mode']}**, seed {report['seed']}, {report['workers']} worker(s), "
        f"started {report['started_utc']}, took {report['duration_s']:.1f} s -- implementation verdict: **{report['verdict'].upper()}**",
        "",
        "Two verdicts per claim: *implementation* -- the code agrees with the derived prediction or bound (PASS/FAIL); "
        "*publication* -- the published figure, table or sentence is reproduced (yes / partly / no / not checkable here).",
        "",
    ]
    if st:
        lines += [f"Judging: {st['judged_checks']} judged checks, {st['family_checks']} of them with Monte Carlo error at |z| ≤ "
                  f"{st['z_threshold']:.2f} (Šidák: family-wise α = {st['family_alpha_target']:g} over the {st['family_size']} "
                  f"such checks counted before judging; realised {st['family_alpha_actual']:.4f}; "
                  f"{st['deterministic_checks']} deterministic); MDE = smallest true deviation caught with probability ≥ "
                  f"{st['power_for_mde']:g}.", ""]
        if st.get("count_mismatch"):
            lines += ["Judged counts that differ from the plan (claim: planned, judged): "
                      + ", ".join(f"{k}: {v[0]}, {v[1]}" for k, v in st["count_mismatch"].items()), ""]
    if prov:
        v = prov.get("versions", {})
        lines += [f"Provenance: qlangevin {prov.get('qlangevin_version')}, commit {prov.get('git_commit') or 'none'}"
                  f"{' (modified)' if prov.get('git_dirty') else ''}, kernel sources {prov.get('kernel_source_hash')}; "
                  + ", ".join(f"{k} {val}" for k, val in v.items() if val), ""]
    lines += [
        "| claim | implementation | publication | judged rows passed | time (s) |",
        "|---|---|---|---|---|",
    ]
    for c in report["claims"]:
        judged = [m["passed"] for m in c["measurements"] if m["passed"] is not None]
        pub = c.get("publication", {}).get("verdict", "–")
        lines.append(f"| [{c['id']}](#{c['id']}) | **{c['verdict'].upper()}** | {pub} | {sum(judged)}/{len(judged)} | {c['duration_s']:.1f} |")
    for c in report["claims"]:
        pub = c.get("publication", {})
        lines += [
            "",
            f"## {c['id']}",
            "",
            f"**{verdict_line(c['verdict'], pub.get('verdict'))}**  ",
            f"*Publication verdict, reason:* {pub.get('reason', '–')}  ",
            f"*Source:* {c['source']}  ",
            f"*Statement:* {c['statement']}  ",
            f"*Published (compared for the publication verdict):* {c.get('published') or '–'}  ",
            f"*Experiment:* {c['experiment']}  ",
            f"*Measured:* {c['measured']}  ",
            f"*Prediction / bound:* {c['prediction']}  ",
            f"*Pass rule (implementation):* {c['pass_rule']}",
            "",
        ]
        if c.get("error"):
            lines += ["```", c["error"].strip(), "```", ""]
        if c["measurements"]:
            lines += [
                "| measurement | value | 95% CI | prediction | bound | tolerance | MDE (power 0.9) | result | note |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for m in c["measurements"]:
                res = {True: "pass", False: "**FAIL**", None: "reported"}[m["passed"]]
                ci = f"[{_fmt(m['ci'][0])}, {_fmt(m['ci'][1])}]"
                lines.append(
                    f"| {m['label']} | {_fmt(m['value'])} | {ci} | {_fmt(m['prediction'])} | {_fmt(m['bound'])} | "
                    f"{_fmt(m['tolerance'], 3)} | {_mde_text(m)} | {res} | {m['note']} |"
                )
        lines += _diagnostics_lines(c.get("diagnostics"))
        if c.get("info"):
            lines += ["", "Info: " + json.dumps(c["info"], ensure_ascii=False)]
        for fig in c.get("figures", []):
            lines += ["", f"![{fig}]({fig})"]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jp = out_dir / "report.json"
    mp = out_dir / "report.md"
    jp.write_text(json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False))
    mp.write_text(render_markdown(report))
    return jp, mp
