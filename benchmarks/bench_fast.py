"""Fast path vs exact path vs SGD and qtorch, as ratios measured side by side in one run (issue 11 item 4).

    python benchmarks/bench_fast.py [--compile] [--quick] [--only training|other|quantizers] [--model cnn|mlp]
    (or: qlangevin bench fast -- --compile)

1. Full training iteration (forward, backward, optimizer step) on the project's SmallCNN
   (batch 64, 1×28×28) and MLP (784-100-10, batch 128) for each LP method, fast path
   (``torchport.fast.FastLowPrecisionSGLD/SGHMC``, i.e. ``LowPrecisionSGLD/SGHMC(exact=False)``, float32;
   compiled with ``--compile``: one graph per step for all parameters) and exact path
   (``torchport.optim``, float64 quantizers), against ``torch.optim.SGD(foreach=True)``:
   "× slower" = t(method iteration) / t(SGD iteration); goals ≤ 1.5 (CNN) and ≤ 2 (MLP).
   The other methods (``--only other``): QSGLD (stochastic rounding; SGD and Adam directions), CTLD
   (the potential N·L passed as the loss tensor, as torchport/train.py passes it), AskewSGD,
   BinaryConnect (stochastic) and ProxQuant (SGD and Adam bases), default path (compiled with
   ``--compile``) and exact path (``exact=True``), against SGD(foreach=True) and, for the rows whose
   direction or base is Adam, also against ``torch.optim.Adam(foreach=True)``.
2. Quantizers on 2^22 float32 values: throughput relative to a tensor copy
   ("× copy" = t(copy)/t(quantizer), bigger is better, goal ≥ 0.3) and to qtorch
   ("× qtorch" = t(qtorch)/t(fast), bigger is better, goal > 1; qtorch has no MX).  Also
   the counter RNG alone (uniforms, normals) relative to a copy and in ns per element,
   the bound of every stochastic quantizer.  The "exact × copy" column times
   ``torchport.quantize``'s exact path (``exact=True``: float64, generator noise); the functions'
   default is the fast path.

Compilation happens in the untimed warm-up call.  Random inputs only (no data files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import best_time

from refimpl.formats import parse_format
from torchport import counter_rng as cr
from torchport import fast as F
from torchport import models as tm
from torchport import quantize as tq
from torchport import optim as topt
from torchport.optim import LowPrecisionSGHMC, LowPrecisionSGLD

METHODS = [  # (label, family, kwargs)
    ("sgld_lp_f fixed:8:6", "sgld", dict(weight_format="fixed:8:6", accumulator="full")),
    ("sgld_lp_l fixed:8:6", "sgld", dict(weight_format="fixed:8:6", accumulator="low")),
    ("sgld_vc fixed:8:6", "sgld", dict(weight_format="fixed:8:6", accumulator="low", variance_corrected=True)),
    ("sgld_vc bfp:8:0", "sgld", dict(weight_format="bfp:8:0", accumulator="low", variance_corrected=True)),
    ("sgld_lp_f bfp:8:0", "sgld", dict(weight_format="bfp:8:0", accumulator="full")),
    ("sghmc_lp_f fixed:8:6", "sghmc", dict(weight_format="fixed:8:6", accumulator="full")),
    ("sghmc_lp_l fixed:8:6", "sghmc", dict(weight_format="fixed:8:6", accumulator="low")),
    ("sghmc_vc fixed:8:6", "sghmc", dict(weight_format="fixed:8:6", accumulator="low", variance_corrected=True)),
    ("sghmc_vc bfp:8:0", "sghmc", dict(weight_format="bfp:8:0", accumulator="low", variance_corrected=True)),
    ("sgld_lp_f mxfp8_e4m3", "sgld", dict(weight_format="mxfp8_e4m3", accumulator="full")),
    ("sgld_vc mxfp8_e4m3", "sgld", dict(weight_format="mxfp8_e4m3", accumulator="low", variance_corrected=True)),
]

NUM_DATA = 60000  # the N of the scaling contract (torchport/train.py build_optimizer), MNIST-sized

OTHER_METHODS = [  # (label, torchport.optim class, kwargs, baseline: "sgd" or "adam"), as train.py builds them
    ("qsgld SR, SGD", "QSGLD", dict(lr=0.01, temperature=1.0 / NUM_DATA, rounding="stochastic"), "sgd"),
    ("qsgld SR, Adam", "QSGLD", dict(lr=0.01, temperature=1.0 / NUM_DATA, rounding="stochastic",
                                     optimizer="adam"), "adam"),
    ("ctld", "CTLD", dict(lr=0.01 / NUM_DATA, temperature=1.0), "sgd"),
    ("askewsgd, SGD", "AskewSGD", dict(lr=0.01), "sgd"),
    ("askewsgd, Adam", "AskewSGD", dict(lr=0.01, base="adam"), "adam"),
    ("binaryconnect SR, SGD", "BinaryConnect", dict(lr=0.01, stochastic=True), "sgd"),
    ("binaryconnect SR, Adam", "BinaryConnect", dict(lr=0.01, stochastic=True, base="adam"), "adam"),
    ("proxquant, SGD", "ProxQuant", dict(lr=0.01), "sgd"),
    ("proxquant, Adam", "ProxQuant", dict(lr=0.01, base="adam"), "adam"),
]


def _model(name):
    torch.manual_seed(0)
    if name == "cnn":
        return tm.SmallCNN(), torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    return tm.MLP(), torch.randn(128, 784), torch.randint(0, 10, (128,))


def _optimizer(model, family, kwargs, path, compile_):
    kw = dict(kwargs)
    kw["weight_format"] = parse_format(kw["weight_format"])
    params = list(model.parameters())
    if path == "fast":
        cls = F.FastLowPrecisionSGLD if family == "sgld" else F.FastLowPrecisionSGHMC
        return cls(params, lr=0.01, num_data=60000, seed=0, compile=compile_, **kw)
    cls = LowPrecisionSGLD if family == "sgld" else LowPrecisionSGHMC
    import inspect

    if "exact" in inspect.signature(cls).parameters:  # the optimizers' default became the fast path
        kw["exact"] = True
    return cls(params, lr=0.01, num_data=60000, seed=0, **kw)


def _iteration(model, x, y, opt):
    def it():
        opt.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return it


def _other_optimizer(model, cls_name, kwargs, path, compile_):
    """One of OTHER_METHODS on ``path`` ("fast": the default path, compiled if ``compile_``; "exact")."""
    kw = dict(kwargs, seed=0, exact=path == "exact")
    if path == "fast":
        kw["compile"] = compile_
    return getattr(topt, cls_name)(model.parameters(), **kw)


def _other_iteration(model, x, y, opt):
    """Forward, backward, step.  CTLD runs in U units (torchport/train.py): gradient N·∇L and the potential
    N·L, passed as the loss tensor (no host read on the default path)."""
    if isinstance(opt, topt.CTLD):
        def it():
            opt.zero_grad(set_to_none=False)
            u = NUM_DATA * torch.nn.functional.cross_entropy(model(x), y)
            u.backward()
            opt.step(potential=u.detach())
        return it
    return _iteration(model, x, y, opt)


def _paired_ratio(fn, base, repeat, warmup=1):
    """min t(fn) / min t(base), the two timed alternately (A B A B ...) so that load changes hit both.

    ``warmup`` untimed calls of each first (compilation; a second call catches a recompile)."""
    import time

    for _ in range(warmup):
        fn()
        base()
    t_fn, t_base = [], []
    for _ in range(repeat):
        for f, acc in ((base, t_base), (fn, t_fn)):
            t0 = time.perf_counter()
            f()
            acc.append(time.perf_counter() - t0)
    return min(t_fn) / min(t_base), min(t_base)


def bench_training(args):
    print("\n== full training iteration (forward + backward + step), float32 parameters ==")
    print(f"{'model':5s} {'method':24s} {'fast × slower':>14s} {'exact × slower':>15s}   "
          "(vs SGD(foreach=True), timed alternately)")
    rows = []
    for name in _models(args):
        for label, family, kw in METHODS[: 4 if args.quick else None]:
            if args.match and args.match not in label:
                continue
            res = {}
            for path in ("fast", "exact"):
                model, x, y = _model(name)
                sgd_model, _, _ = _model(name)
                sgd = torch.optim.SGD(sgd_model.parameters(), lr=0.01, foreach=True)
                opt = _optimizer(model, family, kw, path, args.compile)
                res[path], t_sgd = _paired_ratio(_iteration(model, x, y, opt), _iteration(sgd_model, x, y, sgd),
                                                 args.repeat)
            rows.append((name, label, res["fast"], res["exact"]))
            print(f"{name:5s} {label:24s} {res['fast']:14.2f} {res['exact']:15.2f}   (SGD {t_sgd * 1e3:.2f} ms)",
                  flush=True)
    return rows


def _models(args):
    return ("cnn", "mlp") if args.model is None else (args.model,)


def bench_other(args):
    """QSGLD, CTLD, AskewSGD, BinaryConnect, ProxQuant: default and exact path vs SGD (and Adam) iterations."""
    print("\n== full training iteration, other methods, float32 parameters ==")
    print(f"{'model':5s} {'method':24s} {'fast × SGD':>10s} {'exact × SGD':>12s} {'fast × Adam':>12s} "
          f"{'exact × Adam':>13s}   (× slower, timed alternately)")
    rows = []
    methods = OTHER_METHODS[::3] if args.quick else OTHER_METHODS
    for name in _models(args):
        for label, cls_name, kw, baseline in methods:
            if args.match and args.match not in label:
                continue
            res = {}
            for path in ("fast", "exact"):
                model, x, y = _model(name)
                opt = _other_optimizer(model, cls_name, kw, path, args.compile)
                it = _other_iteration(model, x, y, opt)
                sgd_model, _, _ = _model(name)
                sgd = torch.optim.SGD(sgd_model.parameters(), lr=0.01, foreach=True)
                res[path, "sgd"], t_sgd = _paired_ratio(it, _iteration(sgd_model, x, y, sgd), args.repeat, warmup=2)
                if baseline == "adam":
                    adam_model, _, _ = _model(name)
                    adam = torch.optim.Adam(adam_model.parameters(), lr=0.01, foreach=True)
                    res[path, "adam"], _ = _paired_ratio(it, _iteration(adam_model, x, y, adam), args.repeat,
                                                         warmup=2)
            rows.append((name, label, res))
            cols = [f"{res[k]:.2f}" if k in res else "-" for k in
                    (("fast", "sgd"), ("exact", "sgd"), ("fast", "adam"), ("exact", "adam"))]
            print(f"{name:5s} {label:24s} {cols[0]:>10s} {cols[1]:>12s} {cols[2]:>12s} {cols[3]:>13s}   "
                  f"(SGD {t_sgd * 1e3:.2f} ms)", flush=True)
    return rows


def _exact_quantizer(fmt, rounding, xin, gen):
    """The exact path of torchport.quantize (exact=True: float64, noise from ``gen``) as a call for the timer."""
    if rounding == "vc":
        return lambda: tq.vc_quantize(xin, 1e-6, fmt, gen, exact=True)
    if rounding == "nearest":
        return lambda: tq.quantize(xin, fmt, exact=True)
    return lambda: tq.stochastic_round(xin, fmt, gen, exact=True)


def _qtorch():
    try:
        from qtorch.quant import block_quantize, fixed_point_quantize, float_quantize
    except ImportError:
        return None
    return fixed_point_quantize, block_quantize, float_quantize


def bench_quantizers(args):
    n = 1 << (18 if args.quick else 22)
    x = torch.randn(n) * 0.5
    x2 = x.reshape(1024, -1)
    print(f"\n== quantizers on 2^{n.bit_length() - 1} float32 values (bigger is better) ==")
    t_copy = best_time(lambda: x.clone(), args.repeat)
    key = cr.key_tensor(12345)
    rng_u = F.maybe_compile(lambda k, t: cr.uniforms(k, t.numel(), dtype=t.dtype), args.compile)
    rng_z = F.maybe_compile(lambda k, t: cr.normals(k, t.numel(), dtype=t.dtype), args.compile)
    print(f"{'quantizer':34s} {'× copy':>8s} {'× qtorch':>9s} {'exact × copy':>13s}")
    for label, rng in (("counter uniforms (RNG alone)", rng_u), ("counter normals (RNG alone)", rng_z)):
        t_rng = best_time(lambda rng=rng: rng(key, x), args.repeat)
        print(f"{label:34s} {t_copy / t_rng:8.3f}   ({t_rng / n * 1e9:.2f} ns per element)")
    q = _qtorch()
    gen = torch.Generator().manual_seed(0)
    cases = [("fixed:8:6", "nearest"), ("fixed:8:6", "stochastic"), ("fixed:8:6", "vc"),
             ("bfp:8:0", "nearest"), ("bfp:8:0", "stochastic"), ("bfp:8:0", "vc"),
             ("float:5:2", "nearest"), ("float:5:2", "stochastic"),
             ("mxfp8_e4m3", "nearest"), ("mxfp8_e4m3", "stochastic"), ("mxfp8_e4m3", "vc"),
             ("mxfp4", "stochastic")]
    if args.quick:
        cases = [c for c in cases if c[1] != "nearest" and not c[0].startswith("float")]
    if args.match:
        cases = [c for c in cases if args.match in f"{c[0]} {c[1]}"]
    rows = []
    for fs, rounding in cases:
        fmt = parse_format(fs)
        code = F._code(fmt)
        xin = x if fmt.__class__.__name__ in ("FixedPoint", "FloatingPoint") else x2

        if rounding == "nearest":
            fn = F.maybe_compile(lambda t, fmt=fmt, code=code: F._round_tensor(t, fmt, code, None), args.compile)
            call = (lambda fn=fn, xin=xin: fn(xin))
        elif rounding == "stochastic":
            fn = F.maybe_compile(lambda t, k, fmt=fmt, code=code: F._round_tensor(
                t, fmt, code, cr.uniforms(k, t.numel(), dtype=t.dtype).reshape(t.shape)), args.compile)
            call = (lambda fn=fn, xin=xin: fn(xin, key))
        else:
            def vc(t, k, fmt=fmt, code=code):
                ks = [cr.counter_bits(k, torch.tensor(s)) for s in (1, 3, 4)]
                return F._vc_tensor(t, 1e-6, fmt, code, F._noise_like(ks[0], t, "normal"),
                                    F._noise_like(ks[1], t, "uniform"), F._noise_like(ks[2], t, "uniform"))
            fn = F.maybe_compile(vc, args.compile)
            call = (lambda fn=fn, xin=xin: fn(xin, key))
        ratio_copy, _ = _paired_ratio(call, lambda: x.clone(), args.repeat)
        # qtorch's CPU kernels, timed alternately with the fast quantizer (VC has no qtorch counterpart)
        q_ratio = None
        if q is not None and rounding != "vc" and not fs.startswith("mx"):
            mode = "nearest" if rounding == "nearest" else "stochastic"
            if fs.startswith("fixed"):
                qfn = (lambda mode=mode: q[0](x, 8, 6, rounding=mode))
            elif fs.startswith("bfp"):
                qfn = (lambda mode=mode: q[1](x2, 8, dim=0, rounding=mode))
            else:
                qfn = (lambda mode=mode: q[2](x, 5, 2, rounding=mode))
            q_ratio, _ = _paired_ratio(qfn, call, args.repeat)  # t(qtorch)/t(fast)
        # exact path (float64 internally, generator noise), timed alternately with a copy
        exfn = _exact_quantizer(fmt, rounding, xin, gen)
        ex_ratio, _ = _paired_ratio(exfn, lambda: x.clone(), max(1, args.repeat // 2))
        qcol = f"{q_ratio:9.3f}" if q_ratio is not None else f"{'-':>9s}"
        rows.append((fs, rounding, 1 / ratio_copy, q_ratio, 1 / ex_ratio))
        print(f"{fs + ' ' + rounding:34s} {1 / ratio_copy:8.3f} {qcol} {1 / ex_ratio:13.4f}", flush=True)
    print(f"(copy of 2^{n.bit_length() - 1} float32: {t_copy * 1e3:.2f} ms)")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compile", action="store_true", help="torch.compile the fast path (compile time untimed)")
    ap.add_argument("--quick", action="store_true", help="fewer methods, 2^18 values (a smoke run)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", choices=("training", "other", "quantizers"), default=None,
                    help="training: the LP-SGLD/SGHMC rows; other: QSGLD, CTLD and the netopt methods")
    ap.add_argument("--model", choices=("cnn", "mlp"), default=None, help="only this model (default: both)")
    ap.add_argument("--match", default=None, help="only methods / quantizers whose label contains this text")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import os

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, compile={args.compile}")
    if args.only in (None, "training"):
        bench_training(args)
    if args.only in (None, "other"):
        bench_other(args)
    if args.only in (None, "quantizers"):
        bench_quantizers(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
