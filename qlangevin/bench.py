"""``qlangevin bench``: run the ratio benchmarks in ``benchmarks/``.

Benchmarks are scripts (``benchmarks/bench_<name>.py``), not tests: each one
measures several implementations side by side in one run and prints ratios,
because the machines are shared and absolute timings are noise.  This command
finds the scripts next to the installed source tree (an editable install, as the
README's commands make) and runs the selected ones in turn, passing on any extra
arguments after ``--`` (for example ``-- --device cuda``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def available() -> dict[str, Path]:
    """Map benchmark name -> script path for every ``benchmarks/bench_<name>.py``."""
    if not BENCH_DIR.is_dir():
        return {}
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="benchmarks to run (default: all); e.g. quantize samplers methods torchport")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.epilog = "arguments after '--' are passed to every benchmark script (e.g. -- --device cuda)"


def run(args: argparse.Namespace) -> int:
    scripts = available()
    if not scripts:
        print(f"no benchmarks found under {BENCH_DIR} (install the checkout editable: pip install -e .)",
              file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(scripts))
        return 0
    command_line = getattr(args, "_argv", sys.argv[1:])  # set by qlangevin.cli.main
    extra: list[str] = []
    if "--" in command_line:
        extra = command_line[command_line.index("--") + 1:]
    names = list(args.names)[: len(args.names) - len(extra)] if extra else list(args.names)
    names = names or list(scripts)
    unknown = [n for n in names if n not in scripts]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; available: {sorted(scripts)}")
    status = 0
    for name in names:
        print(f"== benchmark {name} ==", flush=True)
        status |= subprocess.call([sys.executable, str(scripts[name]), *extra])
    return status
