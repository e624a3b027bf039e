"""Bad command-line input: every CLI error is one line on stderr, exit status 2, no traceback.

A table of bad invocations of every subcommand (``quantize | sample | verify |
crosscheck | train | bench``), each with the words its message must contain (the
option or the value it is about).  The test calls :func:`qlangevin.cli.main`
in-process (no interpreter start-up per case).

Run as a script to classify each case in fresh processes (used for the counts in
the issue-13 report: clear / unclear / silent before and after)::

    python tests/test_cli_errors.py            # prints one line per case and the totals
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

# Keeps an accidentally accepted ``train`` case short (and out of the working tree).
_TRAIN = ["train", "--subset", "64", "--epochs", "0.01", "--no-progress", "--batch-size", "32"]
_SAMPLE_SMALL = ["--chains", "4", "--steps", "50"]

#: (argv, words the one-line message must contain (any of them, case-insensitive))
CASES: list[tuple[list[str], tuple[str, ...]]] = [
    # top level
    (["nosuch"], ("nosuch",)),
    (["--bogus"], ("--bogus",)),
    # quantize
    (["quantize", "--format", "fixed:8"], ("fixed:8",)),
    (["quantize", "--format", "bogus"], ("bogus",)),
    (["quantize", "--format", "fixed:a:b"], ("fixed:a:b",)),
    (["quantize", "--format", "bfp:0"], ("bfp:0", "wl")),
    (["quantize", "--format", "float:0:3"], ("float:0:3", "exp")),
    (["quantize", "--format", "ieee:nope"], ("nope",)),
    (["quantize", "--values", "1,x"], ("--values",)),
    (["quantize", "--values", ","], ("--values",)),
    (["quantize", "--values", "1,nan"], ("--values", "nan")),
    (["quantize", "--values", "inf"], ("--values", "inf")),
    (["quantize", "--n", "1"], ("--n",)),
    (["quantize", "--n", "-5"], ("--n",)),
    (["quantize", "--n", "abc"], ("--n",)),
    (["quantize", "--n", "100000000000"], ("--n",)),
    (["quantize", "--mu", "nan"], ("--mu",)),
    (["quantize", "--mu", "inf"], ("--mu",)),
    (["quantize", "--seed", "-1"], ("--seed", "seed")),
    (["quantize", "--seed", "1.5"], ("--seed",)),
    (["quantize", "--format", "fixed:8:3", "--format", "nope"], ("nope",)),
    (["quantize", "--values", "1e309"], ("--values",)),
    # sample
    (["sample"], ("method",)),
    (["sample", "bogus"], ("bogus",)),
    (["sample", "sgld", "--steps", "0"], ("--steps", "n_steps")),
    (["sample", "sgld", "--steps", "-1"], ("--steps", "n_steps")),
    (["sample", "sgld", "--chains", "0"], ("--chains", "n_chains")),
    (["sample", "sgld", "--dim", "0"], ("--dim", "dim")),
    (["sample", "sgld", "--step-size", "nan"], ("--step-size", "step_size")),
    (["sample", "sgld", "--step-size", "inf"], ("--step-size", "step_size")),
    (["sample", "sgld", "--step-size", "-1"], ("--step-size", "step_size")),
    (["sample", "sgld", "--step-size", "0"], ("--step-size", "step_size")),
    (["sample", "sgld", "--temperature", "nan"], ("--temperature", "temperature")),
    (["sample", "sgld", "--temperature", "-1"], ("--temperature", "temperature")),
    (["sample", "sgld", "--grad-noise", "nan"], ("--grad-noise", "grad_noise")),
    (["sample", "sgld", "--grad-noise", "-1"], ("--grad-noise", "grad_noise")),
    (["sample", "sghmc", "--friction", "nan"], ("--friction", "friction")),
    (["sample", "sghmc", "--friction", "0"], ("--friction", "friction")),
    (["sample", "sghmc", "--inverse-mass", "-1"], ("--inverse-mass", "inverse_mass")),
    (["sample", "sgld", "--friction", "1"], ("friction",)),
    (["sample", "sgld_lp_l"], ("fmt",)),
    (["sample", "sgld_lp_l", "--fmt", "bogus"], ("bogus",)),
    (["sample", "sgld", "--fmt", "fixed:8:3"], ("fmt",)),
    (["sample", "sgld_lp_l", "--fmt", "fixed:8:3", "--grad-fmt", "fixed:1"], ("fixed:1",)),
    (["sample", "sgld", "--burn-in", "-1"], ("--burn-in", "burn_in")),
    (["sample", "sgld", *_SAMPLE_SMALL, "--burn-in", "50"], ("--burn-in",)),
    (["sample", "sgld", "--thin", "0"], ("--thin", "thin")),
    (["sample", "sgld", "--steps", "3"], ("--steps",)),
    (["sample", "sgd_lp_l", "--fmt", "fixed:8:3", *_SAMPLE_SMALL], ("noise-free",)),
    (["sample", "sgld", "--seed", "-1"], ("--seed", "seed")),
    (["sample", "sgld", "--target", "bogus"], ("bogus",)),
    (["sample", "sgld", "--steps", "10000000000000"], ("--steps",)),
    (["sample", "sgld", "--chains", "1000000000000"], ("--chains",)),
    (["sample", "sgld", "--dim", "1000000000000"], ("--dim",)),
    (["sample", "sgld", *_SAMPLE_SMALL, "--save", "/nonexistent-dir/x.npz"], ("--save", "nonexistent")),
    (["sample", "sgld", *_SAMPLE_SMALL, "--save", "draws.txt"], ("--save", ".txt")),
    (["sample", "sgld", *_SAMPLE_SMALL, "--option", "nosuch=1"], ("nosuch",)),
    (["sample", "sgld", *_SAMPLE_SMALL, "--option", "novalue"], ("--option", "novalue")),
    (["sample", "qsgld", *_SAMPLE_SMALL], ("qsgld", "rounding")),  # a default run that never moves
    (["sample", "qsgld", *_SAMPLE_SMALL, "--option", "rounding=nearest"], ("qsgld", "rounding")),
    (["sample", "ctld", *_SAMPLE_SMALL, "--band", "nan"], ("--band",)),
    (["sample", "sgld", *_SAMPLE_SMALL, "--band", "all"], ("--band",)),
    (["sample", "sgld", *_SAMPLE_SMALL, "--save", ""], ("--save",)),
    (["sample", "sgld", "--chains", "1.5"], ("--chains",)),
    (["sample", "sghmc", "--position-sign", "bogus"], ("bogus",)),
    (["sample", "sgld", *_SAMPLE_SMALL, "--option", "ties=odd"], ("ties",)),
    (["sample", "sgld_vc", *_SAMPLE_SMALL, "--fmt", "bfp:8:0"], ("bfp", "dim")),
    (["sample", "ctld", *_SAMPLE_SMALL, "--option", "delta1=-1"], ("delta1",)),
    (["sample", "qsgld", *_SAMPLE_SMALL, "--option", "rounding=bogus"], ("rounding",)),
    # verify
    (["verify", "--only", "nosuch"], ("nosuch",)),
    (["verify", "--workers", "0"], ("--workers",)),
    (["verify", "--workers", "-1"], ("--workers",)),
    (["verify", "--seed", "x"], ("--seed",)),
    (["verify", "--quick", "--full"], ("--full", "--quick")),
    (["verify", "--only"], ("--only",)),
    # crosscheck
    (["crosscheck", "--steps", "0"], ("--steps",)),
    (["crosscheck", "--dim", "0"], ("--dim",)),
    (["crosscheck", "--chains", "0"], ("--chains",)),
    (["crosscheck", "--dist-steps", "0"], ("--dist-steps",)),
    (["crosscheck", "--alpha", "nan"], ("--alpha", "alpha")),
    (["crosscheck", "--alpha", "0"], ("--alpha",)),
    (["crosscheck", "--alpha", "2"], ("--alpha",)),
    (["crosscheck", "--device", "tpu"], ("tpu",)),
    (["crosscheck", "--dtype", "float16"], ("float16",)),
    (["crosscheck", "--seed", "-1"], ("--seed", "seed")),
    (["crosscheck", "--only", "nosuch"], ("nosuch",)),
    # train
    ([*_TRAIN, "--method", "nosuch"], ("nosuch",)),
    ([*_TRAIN, "--lr", "nan"], ("--lr", "lr=")),
    ([*_TRAIN, "--lr", "-1"], ("lr",)),
    ([*_TRAIN, "--lr", "0"], ("lr",)),
    ([*_TRAIN, "--epochs", "nan"], ("--epochs", "epochs")),
    ([*_TRAIN, "--epochs", "0"], ("epochs",)),
    ([*_TRAIN, "--batch-size", "0"], ("batch_size", "--batch-size")),
    ([*_TRAIN, "--temperature", "nan"], ("--temperature", "temperature")),
    ([*_TRAIN, "--temperature", "-1"], ("temperature",)),
    ([*_TRAIN, "--friction", "inf"], ("--friction", "friction")),
    ([*_TRAIN, "--weight-decay", "nan"], ("--weight-decay", "weight_decay")),
    ([*_TRAIN, "--burn-in", "2"], ("burn_in", "--burn-in")),
    ([*_TRAIN, "--burn-in", "nan"], ("--burn-in", "burn_in")),
    ([*_TRAIN, "--num-samples", "0"], ("num_samples", "--num-samples")),
    ([*_TRAIN, "--format", "bogus"], ("bogus",)),
    ([*_TRAIN, "--method", "sgld_vc"], ("weight_format", "--format")),
    ([*_TRAIN, "--subset", "0"], ("subset",)),
    ([*_TRAIN, "--dtype", "float16"], ("float16",)),
    ([*_TRAIN, "--model", "nosuch"], ("nosuch",)),
    ([*_TRAIN, "--max-steps", "-1"], ("max_steps", "--max-steps")),
    ([*_TRAIN, "--checkpoint-every", "-1"], ("checkpoint_every", "--checkpoint-every")),
    ([*_TRAIN, "--data-dir", "/nonexistent-dir"], ("nonexistent-dir",)),
    (["train", "--resume", "/nonexistent-run"], ("nonexistent-run",)),
    (["train", "--resume", "/etc/hostname"], ("hostname",)),
    # bench
    (["bench", "nosuch"], ("nosuch",)),
    (["bench", "--bogus"], ("--bogus",)),
]

IDS = [" ".join(argv) for argv, _ in CASES]


def classify(rc: int | None, stderr: str, words) -> str:
    """``clear``: exit 2, one line on stderr, no traceback, naming the option or value;
    ``unclear``: any other failure; ``silent``: exit 0 (the bad input was accepted) or a
    run that did not end within the time limit (``rc`` None)."""
    if rc is None or rc == 0:
        return "silent"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    named = any(w.lower() in stderr.lower() for w in words)
    if rc == 2 and len(lines) == 1 and "Traceback" not in stderr and named:
        return "clear"
    return "unclear"


@pytest.mark.parametrize(("argv", "words"), CASES, ids=IDS)
def test_bad_cli_input_is_one_line_exit_2(argv, words, capsys, tmp_path, monkeypatch):
    from qlangevin.cli import main

    if argv[0] in ("train", "crosscheck") and importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (the torch-missing message is tested in tests/torchport/test_train.py)")
    monkeypatch.chdir(tmp_path)  # any file a case writes stays in tmp_path
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse's own exits go through main() too; none may escape
        pytest.fail(f"SystemExit({exc.code}) escaped main()")
    err = capsys.readouterr().err
    assert classify(rc, err, words) == "clear", (rc, err)


def test_nan_is_rejected_for_every_float_option():
    """Every ``type=float`` option of every subcommand refuses nan and inf (not only the ones in CASES)."""
    import argparse

    from qlangevin.cli import SUBCOMMANDS, build_parser

    checked = 0
    for name in SUBCOMMANDS:
        parser = build_parser(name)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        for action in sub._actions:
            if action.type is None or not action.option_strings:
                continue
            for bad in ("nan", "inf", "-inf"):
                try:
                    value = action.type(bad)
                except (argparse.ArgumentTypeError, ValueError, TypeError):
                    continue
                assert not isinstance(value, float), f"{name} {action.option_strings[0]} accepts {bad}"
            checked += 1
    assert checked > 20


def test_unexpected_exception_is_one_line(monkeypatch, capsys):
    """A bug inside a subcommand still ends in one line and status 2 (QLANGEVIN_TRACEBACK=1 re-raises)."""
    import refimpl.cli_quantize as mod
    from qlangevin.cli import main

    def boom(args):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(mod, "run", boom)
    monkeypatch.delenv("QLANGEVIN_TRACEBACK", raising=False)
    assert main(["quantize"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ZeroDivisionError" in err and "Traceback" not in err, err
    monkeypatch.setenv("QLANGEVIN_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        main(["quantize"])


def test_help_and_version_still_exit_0(capsys):
    from qlangevin.cli import main

    assert main(["--version"]) == 0
    assert main(["sample", "--help"]) == 0
    assert "--save" in capsys.readouterr().out


def _measure(timeout: float = 240.0) -> None:  # pragma: no cover - a measuring script, not a test
    import json

    counts = {"clear": 0, "unclear": 0, "silent": 0}
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for argv, words in CASES:
        try:
            p = subprocess.run([sys.executable, "-m", "qlangevin", *argv], capture_output=True, text=True,
                               timeout=timeout, env=env, cwd=os.environ.get("BATTERY_CWD", "/tmp"), check=False)
            rc, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired:
            rc, err = None, "(timed out)"
        kind = classify(rc, err, words)
        counts[kind] += 1
        last = err.strip().splitlines()[-1] if err.strip() else ""
        print(f"{kind:8s} rc={rc} {' '.join(argv)}  | {last[:150]}", flush=True)
        print("#JSON " + json.dumps({"argv": argv, "rc": rc, "stderr": err[-2000:]}), flush=True)
    print(f"{len(CASES)} cases: {counts}")


if __name__ == "__main__":  # pragma: no cover
    _measure(float(sys.argv[1]) if len(sys.argv) > 1 else 240.0)
