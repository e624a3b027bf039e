"""benchmarks/bench_fast.py: what it times is what its columns say (tiny sizes, eager, no timing asserted)."""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from refimpl.formats import parse_format
from torchport import quantize as tq

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_fast.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_fast_under_test", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("fs,rounding", [("fixed:8:6", "nearest"), ("fixed:8:6", "stochastic"),
                                         ("bfp:8:0", "vc"), ("mxfp8_e4m3", "stochastic")])
def test_exact_column_calls_the_exact_path(bench, monkeypatch, fs, rounding):
    """The quantizer table's "exact × copy" column must time exact=True (the functions' default is the fast
    path); every torchport.quantize entry point it reaches is spied on."""
    calls = []
    for name in ("quantize", "stochastic_round", "vc_quantize"):
        real = getattr(tq, name)

        def spy(*a, _real=real, _name=name, **kw):
            calls.append((_name, kw.get("exact", False)))
            return _real(*a, **kw)
        monkeypatch.setattr(tq, name, spy)
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    fmt = parse_format(fs)
    out = bench._exact_quantizer(fmt, rounding, x, torch.Generator().manual_seed(0))()
    assert calls and all(exact for _, exact in calls), calls
    assert out.shape == x.shape and out.dtype == x.dtype and bool(torch.isfinite(out).all())


def test_every_other_method_steps_on_both_paths(bench):
    """Each row of OTHER_METHODS builds and runs its iteration on the default and the exact path (MLP,
    eager); CTLD gets its potential (a missing one would raise in phase 1)."""
    assert {c for _, c, _, _ in bench.OTHER_METHODS} == {"QSGLD", "CTLD", "AskewSGD", "BinaryConnect", "ProxQuant"}
    for label, cls_name, kw, _ in bench.OTHER_METHODS:
        for path in ("fast", "exact"):
            model, x, y = bench._model("mlp")
            before = [p.detach().clone() for p in model.parameters()]
            opt = bench._other_optimizer(model, cls_name, kw, path, False)
            assert opt.exact == (path == "exact"), (label, path)
            it = bench._other_iteration(model, x, y, opt)
            it()
            it()
            if hasattr(opt, "check_finite") and not opt.exact:
                opt.check_finite()
            after = list(model.parameters())
            assert all(bool(torch.isfinite(p).all()) for p in after), (label, path)
            assert any(not torch.equal(b, p.detach()) for b, p in zip(before, after)), (label, path)


def test_bench_other_prints_sgd_and_adam_ratios(bench, capsys):
    args = argparse.Namespace(model="mlp", quick=False, match="proxquant, Adam", repeat=1, compile=False)
    rows = bench.bench_other(args)
    assert [r[1] for r in rows] == ["proxquant, Adam"]
    res = rows[0][2]
    assert set(res) == {("fast", "sgd"), ("exact", "sgd"), ("fast", "adam"), ("exact", "adam")}
    assert all(math.isfinite(v) and v > 0 for v in res.values())
    assert "proxquant, Adam" in capsys.readouterr().out
