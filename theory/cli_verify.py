"""``qlangevin verify``: check each published convergence claim; write a report with plots.

    qlangevin verify [--quick | --full] [--out DIR] [--only ID ...] [--seed N] [--workers N] [--list]

Writes ``DIR/report.json`` (schema in :mod:`theory.report`), ``DIR/report.md`` and
``DIR/figures/*.png``; exits 0 if every claim passes, 1 if any fails or errors,
2 on bad arguments.  ``--workers N`` runs claims in N processes (a machine with
more cores finishes sooner); ``--only`` selects claims (ids, or prefixes ending
in ``*``), so ``--full`` can be spread over several machines or processes, each
with its own ``--only`` shard and ``--out`` directory.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

__all__ = ["add_arguments", "run", "verify"]


def add_arguments(parser) -> None:
    """Add the ``verify`` options to an argparse (sub)parser (contract of qlangevin/cli.py)."""
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="mode", action="store_const", const="quick", help="reduced grid, a few minutes on 2 cores (default)")
    size.add_argument("--full", dest="mode", action="store_const", const="full", help="the complete grid")
    size.add_argument("--tiny", dest="mode", action="store_const", const="tiny", help=argparse_suppress())
    parser.set_defaults(mode="quick")
    parser.add_argument("--out", default="verify-report", help="output directory (default: ./verify-report)")
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these claims (ids, or prefixes ending in '*')")
    parser.add_argument("--seed", type=int, default=20240601, help="base seed of every experiment (default 20240601)")
    parser.add_argument("--workers", type=int, default=None, help="processes running claims in parallel (default: min(#claims, CPUs))")
    parser.add_argument("--list", action="store_true", help="list the claims and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def argparse_suppress():
    """``argparse.SUPPRESS`` (hides the tests' ``--tiny`` size from ``--help``)."""
    import argparse

    return argparse.SUPPRESS


def _worker(claim_id: str, mode: str, seed: int, figures_dir: str) -> dict:
    """Run one claim in a worker process with the reference sampler."""
    from theory.claims import CLAIMS, Context
    from theory.experiments import default_sampler
    from theory.report import run_claim

    ctx = Context(sampler=default_sampler(), mode=mode, seed=seed, figures_dir=Path(figures_dir))
    return run_claim(CLAIMS[claim_id], ctx)


def verify(claims, *, mode="quick", seed=20240601, out_dir="verify-report", workers=1, sampler=None, progress=True) -> dict:
    """Run ``claims`` and write the report; returns the report dict.

    With ``sampler`` given (tests inject broken samplers) the claims run in this
    process with that sampler; otherwise with ``refimpl.sample``, in ``workers``
    processes when ``workers > 1``.
    """
    from theory.claims import Context
    from theory.report import SCHEMA, overall_verdict, run_claim, write_report

    import qlangevin

    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.perf_counter()
    entries: dict[str, dict] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(claims), desc="verify", unit="claim", file=sys.stderr)

    def done(entry):
        entries[entry["id"]] = entry
        if bar is not None:
            bar.set_postfix_str(f"{entry['id']}: {entry['verdict']} ({entry['duration_s']:.0f}s)")
            bar.update(1)

    if sampler is not None or workers <= 1:
        if sampler is None:
            from theory.experiments import default_sampler

            sampler = default_sampler()
        for c in claims:
            log = (lambda msg: bar.set_description_str(msg[:60])) if bar is not None else (lambda msg: None)
            done(run_claim(c, Context(sampler=sampler, mode=mode, seed=seed, figures_dir=fig_dir, log=log)))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            by_cost = sorted(claims, key=lambda c: -c.weight)  # longest first: better packing on few cores
            futs = [pool.submit(_worker, c.id, mode, seed, str(fig_dir)) for c in by_cost]
            for f in as_completed(futs):
                done(f.result())
    if bar is not None:
        bar.close()
    ordered = [entries[c.id] for c in claims]
    report = {
        "schema": SCHEMA,
        "qlangevin_version": getattr(qlangevin, "__version__", "unknown"),
        "mode": mode,
        "seed": int(seed),
        "started_utc": started,
        "duration_s": round(time.perf_counter() - t0, 2),
        "workers": int(workers),
        "verdict": overall_verdict(ordered),
        "claims": ordered,
    }
    write_report(report, out_dir)
    return report


def run(args) -> int:
    """Entry point of ``qlangevin verify``: 0 if every claim passes, 1 if any fails or errors, 2 on bad arguments."""
    from theory.claims import CLAIMS, get_claims

    if args.list:
        for c in CLAIMS.values():
            print(f"{c.id:24s} {c.source}")
        return 0
    try:
        claims = get_claims(args.only)
    except ValueError as exc:
        print(f"qlangevin verify: {exc}", file=sys.stderr)
        return 2
    workers = args.workers
    if workers is None:
        workers = max(1, min(len(claims), os.cpu_count() or 1))
    if workers < 1:
        print(f"qlangevin verify: --workers must be >= 1, got {workers}", file=sys.stderr)
        return 2
    report = verify(claims, mode=args.mode, seed=args.seed, out_dir=args.out, workers=workers, progress=not args.no_progress)
    width = max(len(c["id"]) for c in report["claims"])
    for c in report["claims"]:
        judged = [m["passed"] for m in c["measurements"] if m["passed"] is not None]
        print(f"{c['id']:{width}s}  {c['verdict'].upper():5s}  {sum(judged)}/{len(judged)} checks  {c['duration_s']:.1f}s")
        if c["verdict"] == "error":
            print("    " + c["error"].splitlines()[0])
    print(f"verdict: {report['verdict'].upper()}  ({report['duration_s']:.1f}s, {args.mode}, seed {args.seed}); report: {Path(args.out) / 'report.md'}")
    return 0 if report["verdict"] == "pass" else 1
