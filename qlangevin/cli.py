"""The ``qlangevin`` command line.

Each subcommand lives in the package that owns it and is imported lazily, so
that ``qlangevin quantize`` does not import torch and ``qlangevin train`` does not
import the theory code.  A subcommand module exposes ``add_arguments(parser)`` and
``run(args) -> int``.

Errors.  Every error ends in **one line on stderr and exit status 2**, never a
traceback: argparse's own errors (the usage is not repeated; ``--help`` shows it),
every ``type=float`` option refusing nan and ±inf (:func:`finite_float` is put in
place of ``float`` for every subcommand), and any exception a subcommand raises
(``ValueError``/``TypeError``/``OSError`` are bad input and print their message;
anything else is labelled an internal error).  ``QLANGEVIN_TRACEBACK=1`` re-raises
instead, for debugging.  Ctrl-C ends with one line and status 130.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable

from qlangevin import __version__

#: name -> (module, one-line help).  Each module defines ``add_arguments`` and ``run``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "quantize": ("refimpl.cli_quantize", "show the number formats and quantizers at work on a default input"),
    "sample": ("refimpl.cli_sample", "run a reference sampler; print moments and convergence diagnostics"),
    "verify": ("theory.cli_verify", "run 12 claims on 5 methods against their derivations; two verdicts each (implementation, publication); report with plots"),
    "crosscheck": ("torchport.cli_crosscheck", "run torchport against refimpl from identical noise"),
    "train": ("torchport.cli_train", "train/sample a network on MNIST with any optimizer"),
    "bench": ("qlangevin.bench", "run the benchmarks and print ratios"),
}

#: exit status of every command-line error
EXIT_USAGE = 2
#: exit status after Ctrl-C (128 + SIGINT)
EXIT_INTERRUPTED = 130
#: exit status when stdout is closed early (128 + SIGPIPE), without a message
EXIT_BROKEN_PIPE = 141

#: exceptions that mean "bad input": their message is printed as it is
_INPUT_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, OverflowError)


class CLIError(Exception):
    """A bad command-line argument found by a subcommand: printed as one line, exit status 2."""


class _ArgumentError(Exception):
    """argparse found a bad argument (raised by :meth:`_Parser.error` instead of exiting)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are exceptions (one line, printed by :func:`main`)."""

    def error(self, message):
        raise _ArgumentError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------------------
# argument types (subcommand modules use these in add_arguments)
# --------------------------------------------------------------------------------------
def finite_float(text: str) -> float:
    """argparse type: a finite float (nan and ±inf are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def float_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False) -> Callable[[str], float]:
    """argparse type factory: a finite float in [lo, hi] (``lo_open``/``hi_open``: exclusive)."""

    def parse(text: str) -> float:
        value = finite_float(text)
        if lo is not None and (value < lo or (lo_open and value == lo)):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}, got {text!r}")
        if hi is not None and (value > hi or (hi_open and value == hi)):
            raise argparse.ArgumentTypeError(f"must be {'<' if hi_open else '<='} {hi:g}, got {text!r}")
        return value

    parse.__name__ = "float"
    return parse


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """argparse type factory: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if lo is not None and value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {text!r}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {text!r}")
        return value

    parse.__name__ = "int"
    return parse


def _refuse_non_finite_floats(parser: argparse.ArgumentParser) -> None:
    """Give every ``type=float`` option of ``parser`` the :func:`finite_float` type."""
    for action in parser._actions:
        if action.type is float:
            action.type = finite_float


# --------------------------------------------------------------------------------------
# parser and entry point
# --------------------------------------------------------------------------------------
def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (for its arguments)."""
    parser = _Parser(prog="qlangevin", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"qlangevin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
        _refuse_non_finite_floats(sp)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, (CLIError, _ArgumentError)):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "torch":
        return 'needs PyTorch, which is not installed here: pip install "qlangevin[torch]"'
    if isinstance(exc, MemoryError):
        return f"out of memory ({exc or 'MemoryError'}); reduce the sizes (chains, steps, dim, --n)"
    if isinstance(exc, _INPUT_ERRORS):
        return str(exc) or type(exc).__name__
    return (f"internal error {type(exc).__name__}: {exc} (please report it; "
            "QLANGEVIN_TRACEBACK=1 shows the traceback)")


def main(argv: list[str] | None = None) -> int:
    """Run ``qlangevin ARGV``; returns the exit status (errors: one line on stderr, status 2)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    prog = "qlangevin" if command not in SUBCOMMANDS else f"qlangevin {command}"
    try:
        parser = build_parser(command if command in SUBCOMMANDS else None)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version
            return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
        if args.command is None:
            parser.print_help()
            return 0
        if getattr(args, "_unavailable", None):
            raise CLIError(f"unavailable here ({args._unavailable})")
        args._argv = argv
        module = importlib.import_module(args._module)
        return int(module.run(args) or 0)
    except KeyboardInterrupt as exc:
        detail = _one_line(str(exc))
        print(f"{prog}: interrupted{' ' + detail if detail else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`qlangevin ... | head`): not an error, stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if os.environ.get("QLANGEVIN_TRACEBACK"):
            raise
        print(f"{prog}: error: {_one_line(_error_message(exc))}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
