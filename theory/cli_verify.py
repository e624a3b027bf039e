"""``qlangevin verify``: run the claims of theory.claims (12 claims, all five methods; the slow MNIST claim with ``--mnist``) and give each an implementation and a publication verdict; write a report with plots.

    qlangevin verify [--quick | --full] [--out DIR] [--only ID ...] [--mnist] [--seed N] [--workers N]
                     [--scheduler ADDRESS] [--mutate NAME] [--family-size N] [--list]

Writes ``DIR/report.json`` (schema in :mod:`theory.report`), ``DIR/report.md`` and
``DIR/figures/*.png`` (figures of an earlier run in ``DIR/figures`` are removed
first); exits 0 if every claim's implementation verdict is PASS, 1 if any fails or
errors, 2 on bad arguments.  Each claim also gets a publication verdict (the
published figure, table or sentence reproduced: yes / partly / no / not checkable
here), which does not change the exit status.

The sampler work is split into grid-point tasks (:mod:`theory.tasks`) that run on
``--workers N`` local processes (default: one per CPU) or on a Dask cluster
(``--scheduler ADDRESS``, ``dask.distributed``); the numbers are identical for the
same seed whatever the worker count.  ``--mutate NAME`` runs with a named bug
(:mod:`theory.mutations`) to see which claims catch it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from distributed import Client

    from theory.claims import Claim

__all__ = ["add_arguments", "run", "verify"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``verify`` options to an argparse (sub)parser (contract of qlangevin/cli.py)."""
    from theory.mutations import MUTATIONS

    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="mode", action="store_const", const="quick", help="reduced grid, a few minutes on 2 cores (default)")
    size.add_argument("--full", dest="mode", action="store_const", const="full", help="the complete grid")
    size.add_argument("--tiny", dest="mode", action="store_const", const="tiny", help=argparse_suppress())
    parser.set_defaults(mode="quick")
    parser.add_argument("--out", default="verify-report", help="output directory (default: ./verify-report)")
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these claims (ids, or prefixes ending in '*')")
    parser.add_argument("--seed", type=int, default=20240601, help="base seed of every experiment (default 20240601)")
    parser.add_argument("--workers", type=int, default=None, help="local processes running grid-point tasks (default: CPUs)")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="run the grid-point tasks on this Dask scheduler (e.g. tcp://host:8786) instead of local processes")
    parser.add_argument("--mutate", metavar="NAME", choices=sorted(MUTATIONS), default=None,
                        help="mutation testing: run with a named bug (" + ", ".join(sorted(MUTATIONS)) + ")")
    parser.add_argument("--mnist", action="store_true",
                        help="also run the slow MNIST claim (mnist-lp: torchport training, a few CPU minutes; needs torch "
                             "and the MNIST data, $QLANGEVIN_MNIST)")
    parser.add_argument("--family-size", type=int, default=None, metavar="N",
                        help="judge over a Šidák family of N checks instead of this run's count (for a run split into "
                             "--only shards: the whole run's count, e.g. 696 for --full)")
    parser.add_argument("--list", action="store_true", help="list the claims and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def argparse_suppress() -> str:
    """``argparse.SUPPRESS`` (hides the tests' ``--tiny`` size from ``--help``)."""
    import argparse

    return argparse.SUPPRESS


def verify(claims: Sequence[Claim], *, mode: Literal["tiny", "quick", "full"] = "quick", seed: int = 20240601,
           out_dir: str | os.PathLike[str] = "verify-report", workers: int = 1,
           sampler: Callable[..., Any] | None = None, progress: bool = True, scheduler: str | Client | None = None,
           mutation: str | None = None, family_size: int | None = None) -> dict:
    """Run ``claims`` and write the report; returns the report dict.

    With ``sampler`` given (tests inject broken samplers) the tasks run in this
    process with that sampler (or on ``scheduler``); otherwise with ``refimpl.sample``
    on ``workers`` local processes or on the Dask ``scheduler`` (an address or a
    ``distributed.Client``).  ``mutation``: a name from :data:`theory.mutations.MUTATIONS`.
    ``family_size``: the Šidák family (default: the judged checks of this run, counted before
    judging); a shard of a split run passes the whole run's count.
    """
    import contextlib

    import qlangevin
    from theory.mutations import mutate_sampler, mutation_context
    from theory.report import (
        SCHEMA,
        overall_verdict,
        provenance,
        statistics_summary,
        write_report,
    )
    from theory.tasks import run_claims

    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for stale in fig_dir.glob("*.png"):  # no figure from an earlier run survives beside this run's
        stale.unlink()
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    if mutation is not None:
        sampler = mutate_sampler(sampler, mutation)
    with mutation_context(mutation) if mutation is not None else contextlib.nullcontext():
        ordered, task_stats = run_claims(claims, mode=mode, seed=seed, figures_dir=fig_dir, sampler=sampler, workers=workers,
                                         scheduler=scheduler, progress=progress, family_size=family_size)
    pubs = [e.get("publication", {}).get("verdict") for e in ordered]
    report = {
        "schema": SCHEMA,
        "qlangevin_version": getattr(qlangevin, "__version__", "unknown"),
        "provenance": provenance(),
        "mode": mode,
        "seed": int(seed),
        "started_utc": started,
        "duration_s": round(time.perf_counter() - t0, 2),
        "main_process_cpu_s": round(time.process_time() - cpu0, 2),
        "workers": int(workers),
        "scheduler": task_stats["scheduler"],
        "tasks": task_stats,
        "mutation": mutation,
        "verdict": overall_verdict(ordered),
        "publication": {v: pubs.count(v) for v in ("yes", "partly", "no", "not checkable here")},
        "statistics": statistics_summary(ordered, task_stats["family_size"], task_stats["planned_checks"]),
        "claims": ordered,
    }
    write_report(report, out_dir)
    return report


def run(args: argparse.Namespace) -> int:
    """Entry point of ``qlangevin verify``: 0 if every claim passes, 1 if any fails or errors, 2 on bad arguments."""
    from theory.claims import CLAIMS, get_claims

    if args.list:
        for c in CLAIMS.values():
            print(f"{c.id:24s} {c.source}" + ("  [slow: --mnist]" if c.slow else ""))
        return 0
    try:
        claims = get_claims(args.only, include_slow=getattr(args, "mnist", False))
    except ValueError as exc:
        print(f"qlangevin verify: {exc}", file=sys.stderr)
        return 2
    if any(c.id == "mnist-lp" for c in claims):
        from theory.claims.mnist_lp import availability

        why = availability()
        if why is not None:
            print(f"qlangevin verify: mnist-lp is not checkable here: {why}", file=sys.stderr)
            return 2
    workers = args.workers
    if workers is None:
        workers = max(1, os.cpu_count() or 1)
    if workers < 1:
        print(f"qlangevin verify: --workers must be >= 1, got {workers}", file=sys.stderr)
        return 2
    if args.scheduler is not None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            print("qlangevin verify: --scheduler needs dask.distributed (pip install 'qlangevin[dask]')", file=sys.stderr)
            return 2
    from theory.tasks import FamilySizeError

    try:
        report = verify(claims, mode=args.mode, seed=args.seed, out_dir=args.out, workers=workers, progress=not args.no_progress,
                        scheduler=args.scheduler, mutation=args.mutate, family_size=getattr(args, "family_size", None))
    except (OSError, FamilySizeError) as exc:  # an unreachable --scheduler, a --family-size below the run's count
        print(f"qlangevin verify: {exc}", file=sys.stderr)
        return 2
    width = max(len(c["id"]) for c in report["claims"])
    print(f"{'claim':{width}s}  implementation  publication         checks    time")
    for c in report["claims"]:
        judged = [m["passed"] for m in c["measurements"] if m["passed"] is not None]
        pub = c["publication"]["verdict"]
        print(f"{c['id']:{width}s}  {c['verdict'].upper():14s}  {pub:18s}  {sum(judged):3d}/{len(judged):<3d}  {c['duration_s']:6.1f}s")
        if c["verdict"] == "error":
            print("    " + c["error"].splitlines()[0])
        elif pub != "yes":
            print(f"    publication {pub}: {c['publication']['reason']}")
        diag = c.get("diagnostics") or {}
        if diag.get("draws") == "chains":
            ess = diag.get("min_ess_bulk")
            print(f"    diagnostics (not judged): max R-hat {diag['max_rhat']:.3f} over {len(diag['series'])} series with several "
                  f"draws per chain" + (f", min bulk ESS {ess:.0f}" if ess is not None else "") + " (report.md)"
                  if diag.get("max_rhat") is not None else "    diagnostics: R-hat undefined (report.md)")
    st = report["statistics"]
    pc = report["publication"]
    print(f"judged {st['judged_checks']} checks; the {st['family_size']} with Monte Carlo error (counted before judging) at "
          f"|z| <= {st['z_threshold']:.2f} (Sidak, family-wise alpha {st['family_alpha_actual']:.3g}); "
          f"publication: {pc['yes']} yes, {pc['partly']} partly, {pc['no']} no, {pc['not checkable here']} not checkable here")
    print(f"implementation verdict: {report['verdict'].upper()}  ({report['duration_s']:.1f}s, {args.mode}, seed {args.seed}); "
          f"report: {Path(args.out) / 'report.md'}")
    return 0 if report["verdict"] == "pass" else 1
