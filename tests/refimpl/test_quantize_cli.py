"""``qlangevin quantize`` (refimpl/cli_quantize.py) runs and prints its table."""

from __future__ import annotations

import argparse

import pytest

from refimpl import cli_quantize


def _run(argv, capsys):
    parser = argparse.ArgumentParser()
    cli_quantize.add_arguments(parser)
    rc = cli_quantize.run(parser.parse_args(argv))
    return rc, capsys.readouterr().out


def test_cli_default_formats(capsys):
    rc, out = _run(["--n", "2000"], capsys)
    assert rc == 0
    for text in cli_quantize.DEFAULT_FORMATS:
        assert f"== {text}" in out
    assert "branch 1 (Q5)" in out and "branch 2 (Q6)" in out
    assert "FloatingPoint(exp=4, man=3)" in out and "IEEEFloat(name='bfloat16'" in out


def test_cli_custom_format_and_values(capsys):
    rc, out = _run(["-f", "fixed:8:3", "-f", "none", "--values", "0.0625,-0.0625,100", "--n", "100"], capsys)
    assert rc == 0
    lines = [ln.split() for ln in out.splitlines()]
    assert ["0.0625", "0.125"] == lines[2][:2]  # tie away from zero
    assert ["-0.0625", "-0.125"] == lines[3][:2]
    assert ["100", "15.875"] == lines[4][:2]  # saturation at U
    assert "== none: None" in out


def test_cli_bad_input(capsys):
    with pytest.raises(ValueError, match="values"):
        _run(["--values", "1,a"], capsys)
    with pytest.raises(ValueError):
        _run(["-f", "fixed:0:3"], capsys)
