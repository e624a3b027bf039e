"""Running claims and writing the ``qlangevin verify`` report.

``DIR/report.json`` schema (``"schema": "qlangevin.verify/1"``)::

    {
      "schema": "qlangevin.verify/1",
      "qlangevin_version": str,
      "mode": "tiny" | "quick" | "full",
      "seed": int,
      "started_utc": str, "duration_s": float, "workers": int,
      "verdict": "pass" | "fail",            # fail if any claim is not "pass"
      "claims": [
        {
          "id": str, "source": str, "statement": str, "experiment": str,
          "measured": str, "prediction": str, "pass_rule": str,   # the declarative record
          "verdict": "pass" | "fail" | "error",
          "duration_s": float,
          "error": str | null,                # traceback summary when verdict == "error"
          "figures": [str, ...],              # paths relative to DIR
          "info": {...},                      # claim-specific extras (e.g. which SGHMC sign reproduces Fig. 4)
          "measurements": [
            {
              "label": str,
              "parameters": {name: value},    # method, eta, delta, K, n_chains, ...
              "quantity": str,                # what was measured
              "value": float,                 # the measured value
              "ci": [lo, hi],                 # 95% interval (NaN-strings when not applicable)
              "se": float | null,             # standard error
              "prediction": float | null,     # spec §5.8 prediction, if any
              "bound": float | null,          # theorem bound, if any
              "tolerance": float | null,      # allowed |value − prediction|, if judged that way
              "passed": bool | null,          # null: reported, not judged
              "note": str
            }, ...
          ]
        }, ...
      ]
    }

Non-finite floats are written as the strings "nan", "inf", "-inf" (strict JSON).
"""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path

from theory.claims import Claim, Context

__all__ = ["SCHEMA", "run_claim", "write_report", "render_markdown", "overall_verdict"]

SCHEMA = "qlangevin.verify/1"


def run_claim(claim: Claim, ctx: Context) -> dict:
    """Run one claim; return its report entry (never raises for a failing experiment: verdict "error")."""
    t0 = time.perf_counter()
    entry = claim.record()
    try:
        outcome = claim.run(ctx)
        rows = [m.to_json() for m in outcome.measurements]
        judged = [r["passed"] for r in rows if r["passed"] is not None]
        verdict = "pass" if judged and all(judged) else "fail"
        entry.update(verdict=verdict, error=None, figures=list(outcome.figures), info=_jsonable(outcome.info), measurements=rows)
    except Exception as exc:  # reported as a claim error, so one broken claim does not hide the others
        tb = traceback.format_exc(limit=6)
        entry.update(verdict="error", error=f"{type(exc).__name__}: {exc}\n{tb}", figures=[], info={}, measurements=[])
    entry["duration_s"] = round(time.perf_counter() - t0, 3)
    return entry


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
    return v if math.isfinite(v) else str(v)


def overall_verdict(entries) -> str:
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


def render_markdown(report: dict) -> str:
    """The readable table: one section per claim, one row per measurement."""
    lines = [
        "# qlangevin verify report",
        "",
        f"mode **{report['mode']}**, seed {report['seed']}, {report['workers']} worker(s), "
        f"started {report['started_utc']}, took {report['duration_s']:.1f} s -- overall verdict: **{report['verdict'].upper()}**",
        "",
        "| claim | verdict | judged rows passed | time (s) |",
        "|---|---|---|---|",
    ]
    for c in report["claims"]:
        judged = [m["passed"] for m in c["measurements"] if m["passed"] is not None]
        lines.append(f"| [{c['id']}](#{c['id']}) | **{c['verdict']}** | {sum(judged)}/{len(judged)} | {c['duration_s']:.1f} |")
    for c in report["claims"]:
        lines += [
            "",
            f"## {c['id']}",
            "",
            f"*Source:* {c['source']}  ",
            f"*Statement:* {c['statement']}  ",
            f"*Experiment:* {c['experiment']}  ",
            f"*Measured:* {c['measured']}  ",
            f"*Prediction / bound:* {c['prediction']}  ",
            f"*Pass rule:* {c['pass_rule']}  ",
            f"*Verdict:* **{c['verdict']}**",
            "",
        ]
        if c.get("error"):
            lines += ["```", c["error"].strip(), "```", ""]
        if c["measurements"]:
            lines += [
                "| measurement | value | 95% CI | prediction | bound | tolerance | result | note |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for m in c["measurements"]:
                res = {True: "pass", False: "**FAIL**", None: "reported"}[m["passed"]]
                ci = f"[{_fmt(m['ci'][0])}, {_fmt(m['ci'][1])}]"
                lines.append(
                    f"| {m['label']} | {_fmt(m['value'])} | {ci} | {_fmt(m['prediction'])} | {_fmt(m['bound'])} | "
                    f"{_fmt(m['tolerance'], 3)} | {res} | {m['note']} |"
                )
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
