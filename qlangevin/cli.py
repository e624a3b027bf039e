"""The ``qlangevin`` command line.

Each subcommand lives in the package that owns it and is imported lazily, so
that ``qlangevin quantize`` does not import torch and ``qlangevin train`` does not
import the theory code.  A subcommand module exposes ``add_arguments(parser)`` and
``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from qlangevin import __version__

#: name -> (module, one-line help).  Each module defines ``add_arguments`` and ``run``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "quantize": ("refimpl.cli_quantize", "show the number formats and quantizers at work on a default input"),
    "sample": ("refimpl.cli_sample", "run a reference sampler and print its moments"),
    "verify": ("theory.cli_verify", "check each published convergence claim; writes a report with plots"),
    "crosscheck": ("torchport.cli_crosscheck", "run torchport against refimpl from identical noise"),
    "train": ("torchport.cli_train", "train/sample a network on MNIST with any optimizer"),
    "bench": ("qlangevin.bench", "run the benchmarks and print ratios"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (for its arguments)."""
    parser = argparse.ArgumentParser(prog="qlangevin", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"qlangevin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module_name)
        if name != command:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # subcommand not available (e.g. torch missing)
            sp.set_defaults(_unavailable=str(exc))
            continue
        module.add_arguments(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if getattr(args, "_unavailable", None):
        print(f"qlangevin {args.command}: unavailable here ({args._unavailable})", file=sys.stderr)
        return 2
    module = importlib.import_module(args._module)
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
