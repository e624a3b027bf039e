"""torchport benchmarks (CPU, one run, ratios measured side by side).

1. Optimizer step overhead: time of ``opt.step()`` (gradients fixed, already in ``.grad``)
   divided by the time of ``torch.optim.SGD(foreach=True).step()`` on the same model, for
   the 784-100-10 MLP and the small CNN of torchport.models (float32); and the same ratio
   for a whole training iteration (forward + backward + step, batch 128).
2. Quantizer throughput on 2^20 float32 values: torchport stochastic rounding vs qtorch's
   CPU kernels (fixed point, BFP, float) and vs a plain tensor copy.

The SGLD/SGHMC optimizers run with ``exact=True`` here: this benchmark measures the float64
exact path (the reference).  The default (fast, compiled) path of the same optimizers is
measured side by side with the exact path by ``benchmarks/bench_fast.py`` (``qlangevin bench
fast``; results in docs/fast_path.md).

Usage: ``python benchmarks/bench_torchport.py [--quick]``.  Prints ratios (> 1: slower
than the baseline).  Timings are medians of repeated runs on a shared machine; only the
ratios are meant to be read.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

torch.set_num_threads(1)


def _median_time(fn, repeats, inner):
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t0) / inner)
    return statistics.median(ts)


def _models():
    try:
        from torchport.models import MLP, SmallCNN
        return {"mlp 784-100-10": (MLP(), (128, 784)), "small cnn": (SmallCNN(), (128, 1, 28, 28))}
    except ImportError:  # pragma: no cover - fallback when torchport.models is absent
        mlp = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
        return {"mlp 784-100-10": (mlp, (128, 784))}


def bench_optimizers(repeats, inner):
    from torchport import optim as O

    makers = {
        "SGLD": lambda p: O.SGLD(p, exact=True, lr=0.1, num_data=60000, seed=0),
        "SGLD (foreach=False)": lambda p: O.SGLD(p, exact=True, lr=0.1, num_data=60000, seed=0, foreach=False),
        "SGHMC": lambda p: O.SGHMC(p, exact=True, lr=0.1, num_data=60000, seed=0),
        "LP-SGLD full fixed:8:6": lambda p: O.LowPrecisionSGLD(p, exact=True, lr=0.1, num_data=60000, weight_format="fixed:8:6",
                                                               grad_format="fixed:8:6", seed=0),
        "LP-SGLD low naive fixed:8:6": lambda p: O.LowPrecisionSGLD(p, exact=True, lr=0.1, num_data=60000,
                                                                    weight_format="fixed:8:6",
                                                                    grad_format="fixed:8:6", accumulator="low",
                                                                    seed=0),
        "LP-SGLD VC fixed:8:6": lambda p: O.LowPrecisionSGLD(p, exact=True, lr=0.1, num_data=60000, weight_format="fixed:8:6",
                                                             grad_format="fixed:8:6", accumulator="low",
                                                             variance_corrected=True, seed=0),
        "LP-SGLD VC bfp:8:0": lambda p: O.LowPrecisionSGLD(p, exact=True, lr=0.1, num_data=60000, weight_format="bfp:8:0",
                                                           grad_format="bfp:8:0", accumulator="low",
                                                           variance_corrected=True, seed=0),
        "LP-SGHMC VC fixed:8:6": lambda p: O.LowPrecisionSGHMC(p, exact=True, lr=0.1, num_data=60000, weight_format="fixed:8:6",
                                                               grad_format="fixed:8:6", accumulator="low",
                                                               variance_corrected=True, seed=0),
        "QSGLD stochastic": lambda p: O.QSGLD(p, lr=0.1, rounding="stochastic", seed=0),
        "AskewSGD (momentum)": lambda p: O.AskewSGD(p, lr=0.1, eps=0.01),
    }
    print("optimizer step time / torch.optim.SGD(foreach=True) step time (float32, gradients fixed)")
    for mname, (model, shape) in _models().items():
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        y = torch.randint(0, 10, (shape[0],), generator=torch.Generator().manual_seed(1))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        state0 = {k: v.clone() for k, v in model.state_dict().items()}

        def timed(make):
            model.load_state_dict(state0)
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            opt = make(list(model.parameters()))
            return _median_time(opt.step, repeats, inner)

        def timed_iter(make):
            model.load_state_dict(state0)
            opt = make(list(model.parameters()))

            def it():
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            return _median_time(it, repeats, max(1, inner // 2))

        base = timed(lambda p: torch.optim.SGD(p, lr=0.1, foreach=True))
        base_it = timed_iter(lambda p: torch.optim.SGD(p, lr=0.1, foreach=True))
        print(f"  {mname}: SGD(foreach) step = {base * 1e6:.1f} us, full iteration (batch 128) = "
              f"{base_it * 1e3:.2f} ms;  columns: step ratio, full-iteration ratio")
        for name, make in makers.items():
            print(f"    {name:32s} {timed(make) / base:8.2f}x {timed_iter(make) / base_it:8.2f}x")


def bench_quantizers(repeats, inner):
    import torchport.quantize as tq
    from refimpl.formats import BlockFloatingPoint, FixedPoint, FloatingPoint

    n = 1 << 20
    x = torch.randn(n, generator=torch.Generator().manual_seed(0)) * 2
    x2d = x.reshape(1024, 1024)
    gen = torch.Generator().manual_seed(1)
    try:
        from qtorch.quant import block_quantize, fixed_point_quantize, float_quantize
        have_qtorch = True
    except Exception as exc:  # noqa: BLE001 - qtorch builds a C++ extension on first import
        print(f"(qtorch unavailable: {exc})")
        have_qtorch = False
    copy_t = _median_time(lambda: x.clone(), repeats, inner)
    print(f"quantizer throughput on 2^20 float32 values (copy: {n / copy_t / 1e6:.0f} Melem/s)")
    cases = [
        ("fixed 8:6 stochastic", FixedPoint(8, 6), x,
         (lambda: fixed_point_quantize(x, 8, 6, rounding="stochastic")) if have_qtorch else None),
        ("bfp 8 dim=0 stochastic", BlockFloatingPoint(8, 0), x2d,
         (lambda: block_quantize(x2d, 8, dim=0, rounding="stochastic")) if have_qtorch else None),
        ("float e5m2 stochastic", FloatingPoint(5, 2), x,
         (lambda: float_quantize(x, 5, 2, rounding="stochastic")) if have_qtorch else None),
    ]
    for name, fmt, inp, qt in cases:
        t = _median_time(lambda: tq.stochastic_round(inp, fmt, gen, exact=True), repeats, inner)
        tn = _median_time(lambda: tq.quantize(inp, fmt, "nearest", exact=True), repeats, inner)
        line = (f"  {name:26s} torchport SR {n / t / 1e6:7.1f} Melem/s = {t / copy_t:6.1f}x copy; "
                f"nearest {tn / copy_t:6.1f}x copy")
        if qt is not None:
            tq_t = _median_time(qt, repeats, inner)
            line += f"; qtorch SR {tq_t / copy_t:6.1f}x copy; torchport/qtorch = {t / tq_t:5.2f}x"
        print(line)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args(argv)
    repeats, inner = (3, 3) if args.quick else (7, 10)
    bench_optimizers(repeats, inner)
    bench_quantizers(repeats, max(1, inner // 3))


if __name__ == "__main__":
    main()
