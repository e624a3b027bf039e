"""One-command GPU validation (issue 11 item 6): crosscheck, throughput, step cost, MNIST CNN and ResNet-50 runs.

    python benchmarks/gpu_validate.py                       # on a CUDA machine: writes docs/results/gpu.md
    python benchmarks/gpu_validate.py --device cpu --tiny --out /tmp/gpu.md   # the CI dry run (< 60 s)

Sections (each timed, each failure recorded in the report rather than aborting the rest):

1. ``qlangevin crosscheck --device DEV`` in float32 and float64 for every method (``--tiny``:
   one method, 3 steps, no distributional run).
2. Quantizer throughput against a device copy on 2^28 float32 values (``--tiny``: 2^12):
   the fast path's nearest, k-bit SR and Q^vc for fixed:8:6 and BFP8 (compiled on CUDA).
3. The LP-SGLD / LP-SGHMC step (fast path; VC at BFP8, LP-F at fixed:8:6) against
   ``SGD(fused=True)`` on ResNet-50 parameters at batch 128 (``--tiny``: SmallCNN, batch 8).
4. SmallCNN on MNIST for one epoch: FP32 SGLD, sgld_lp_f, sgld_lp_l and sgld_vc at
   fixed:8:6 and at BFP8 (fast path), test error / NLL / ECE of the last iterate
   (``--tiny``: 256 training and 256 test images, or synthetic data without MNIST).
5. ResNet-50 (MNIST padded to 32×32×3) for one epoch: FP32 SGLD and sgld_vc BFP8
   (``--tiny``: the same code on a 2-block SmallCNN-size budget: SmallCNN, 2 iterations).

No network access is needed (MNIST from ``$QLANGEVIN_MNIST`` or ``../shared/data/mnist.npz``).
Exit status 0 when every section ran (their numbers are in the report), 1 otherwise.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


REPEAT = {"n": 5}  # --tiny: 1


def _time(fn, device, repeat=None):
    repeat = REPEAT["n"] if repeat is None else min(repeat, REPEAT["n"])
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


# ----------------------------------------------------------------------------- sections
def crosscheck(args, device, out):
    only = ["sgld"] if args.tiny else None  # --tiny: the lightest method (Numba compile time dominates)
    for dtype in ("float32", "float64"):
        cmd = [sys.executable, "-m", "qlangevin", "crosscheck", "--device", device.type, "--dtype", dtype]
        if args.tiny:
            cmd += ["--steps", "3", "--no-distribution", "--only", *only]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.section_timeout)
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-6:])
        out.append(f"* crosscheck {dtype}: exit {res.returncode} in {time.perf_counter() - t0:.1f} s")
        out.append("```\n" + tail + "\n```")
        if res.returncode != 0:
            raise RuntimeError(f"crosscheck --dtype {dtype} exited {res.returncode}")


def throughput(args, device, out):
    from refimpl.formats import parse_format
    from torchport import counter_rng as cr
    from torchport import fast as F

    n = 1 << (12 if args.tiny else 28)
    x = torch.randn(n, device=device) * 0.5
    compile_ = device.type == "cuda" and not args.eager
    t_copy = _time(lambda: x.clone(), device)
    key = cr.key_tensor(7, device)
    out.append(f"{n:,} float32 values; device copy {t_copy * 1e3:.3f} ms; compiled: {compile_}")
    out.append("")
    out.append("| quantizer | × copy (bigger is better) |")
    out.append("|---|---|")
    for fs in ("fixed:8:6", "bfp:8:0"):
        fmt = parse_format(fs)
        code = F._code(fmt)
        xin = x.reshape(1024, -1) if fs.startswith("bfp") else x
        fns = {
            "nearest": F.maybe_compile(lambda t, k, fmt=fmt, code=code: F._round_tensor(t, fmt, code, None), compile_),
            "stochastic": F.maybe_compile(lambda t, k, fmt=fmt, code=code: F._round_tensor(
                t, fmt, code, cr.uniforms(k, t.numel(), dtype=t.dtype).reshape(t.shape)), compile_),
            "vc": F.maybe_compile(lambda t, k, fmt=fmt, code=code: F._vc_tensor(
                t, 1e-6, fmt, code, F._noise_like(k, t, "normal"), F._noise_like(k + 1, t, "uniform"),
                F._noise_like(k + 2, t, "uniform")), compile_),
        }
        for name, fn in fns.items():
            t = _time(lambda fn=fn, xin=xin: fn(xin, key), device)
            out.append(f"| {fs} {name} | {t_copy / t:.3f} |")


def _resnet_or_small(args, device):
    from torchport import models as tm

    torch.manual_seed(0)
    if args.tiny:
        return tm.SmallCNN().to(device), (1, 28, 28), 8
    return tm.resnet50(10, use_torchvision=False).to(device), (3, 32, 32), 128


def step_cost(args, device, out):
    from refimpl.formats import parse_format
    from torchport import fast as F

    model, shape, batch = _resnet_or_small(args, device)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    params = list(model.parameters())
    fused = device.type == "cuda"
    sgd = torch.optim.SGD(params, lr=0.01, fused=fused) if fused else torch.optim.SGD(params, lr=0.01, foreach=True)
    t_sgd = _time(sgd.step, device)
    out.append(f"model {type(model).__name__}, {sum(p.numel() for p in params):,} parameters, batch {batch}; "
               f"SGD({'fused' if fused else 'foreach'}=True) step {t_sgd * 1e3:.2f} ms")
    out.append("")
    out.append("| step | × slower than SGD |")
    out.append("|---|---|")
    compile_ = not args.eager and device.type == "cuda"
    cases = [("sgld_vc BFP8", F.FastLowPrecisionSGLD, dict(weight_format=parse_format("bfp:8:0"), accumulator="low",
                                                           variance_corrected=True)),
             ("sgld_lp_f fixed:8:6", F.FastLowPrecisionSGLD, dict(weight_format=parse_format("fixed:8:6"))),
             ("sghmc_vc BFP8", F.FastLowPrecisionSGHMC, dict(weight_format=parse_format("bfp:8:0"),
                                                             accumulator="low", variance_corrected=True))]
    for label, cls, kw in cases:
        opt = cls(params, lr=1e-3, num_data=60000, seed=0, compile=compile_, **kw)
        t = _time(opt.step, device, repeat=3)
        out.append(f"| {label} | {t / t_sgd:.2f} |")


def _mnist(args, layout, device):
    from torchport import data as td

    n_train, n_test = (256, 256) if args.tiny else (60000, 10000)
    try:
        arrays = td.load_mnist(args.mnist)
        xtr, ytr = td.to_tensors(arrays.x_train[:n_train], arrays.y_train[:n_train], layout=layout)
        xte, yte = td.to_tensors(arrays.x_test[:n_test], arrays.y_test[:n_test], layout=layout)
        source = "MNIST"
    except (FileNotFoundError, ValueError):
        if not args.tiny:
            raise
        g = torch.Generator().manual_seed(0)
        shape = (1, 28, 28) if layout == "image" else (3, 32, 32)
        xtr, xte = torch.randn(n_train, *shape, generator=g), torch.randn(n_test, *shape, generator=g)
        ytr, yte = torch.randint(0, 10, (n_train,), generator=g), torch.randint(0, 10, (n_test,), generator=g)
        source = "synthetic (no MNIST file found)"
    return xtr.to(device), ytr.to(device), xte.to(device), yte.to(device), source


def _train_one_epoch(model, opt, xtr, ytr, batch, max_iters, device, seed):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(xtr.shape[0], generator=g).to(device)
    iters = min(max_iters, xtr.shape[0] // batch)
    model.train()
    t0 = time.perf_counter()
    for i in range(iters):
        idx = perm[i * batch:(i + 1) * batch]
        opt.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
        opt.step()
    _sync(device)
    return iters, time.perf_counter() - t0


def _evaluate(model, xte, yte):
    from torchport import metrics as tmet

    probs = tmet.predict_probs(model, xte, batch_size=500).numpy()
    y = yte.cpu().numpy()
    return tmet.error_rate(probs, y), tmet.nll(probs, y), tmet.expected_calibration_error(probs, y)


def _methods(with_lp):
    from refimpl.formats import parse_format

    out = [("FP32 SGLD", None)]
    if with_lp:
        for fs in ("fixed:8:6", "bfp:8:0"):
            f = parse_format(fs)
            out += [(f"sgld_lp_f {fs}", dict(weight_format=f, accumulator="full")),
                    (f"sgld_lp_l {fs}", dict(weight_format=f, accumulator="low")),
                    (f"sgld_vc {fs}", dict(weight_format=f, accumulator="low", variance_corrected=True))]
    else:
        out.append(("sgld_vc bfp:8:0", dict(weight_format=parse_format("bfp:8:0"), accumulator="low",
                                            variance_corrected=True)))
    return out


def _runs(args, device, out, resnet):
    from torchport import fast as F
    from torchport import models as tm
    from torchport.optim import SGLD

    layout = "padded32x3" if resnet and not args.tiny else "image"
    xtr, ytr, xte, yte, source = _mnist(args, layout, device)
    batch = 8 if args.tiny else 128
    max_iters = 2 if args.tiny else 10 ** 9
    out.append(f"data: {source}, {xtr.shape[0]} train / {xte.shape[0]} test, batch {batch}, one epoch, seed 0")
    out.append("")
    out.append("| method | iterations | train s | test error (%) | NLL | ECE (%) |")
    out.append("|---|---|---|---|---|---|")
    compile_ = not args.eager and device.type == "cuda"
    for label, kw in _methods(with_lp=not resnet):
        torch.manual_seed(0)
        if resnet and not args.tiny:
            model = tm.resnet50(10, use_torchvision=False)
        else:
            model = tm.SmallCNN()
        tm.init_parameters(model, 0)
        model = model.to(device)
        n = xtr.shape[0]
        lr = 0.05 if resnet else 0.1
        if kw is None:
            opt = SGLD(model.parameters(), lr=lr, temperature=1e-3, num_data=n, seed=0, foreach=True, exact=True)
        else:
            opt = F.FastLowPrecisionSGLD(list(model.parameters()), lr=lr, temperature=1e-3, num_data=n, seed=0,
                                         compile=compile_, **kw)
        iters, secs = _train_one_epoch(model, opt, xtr, ytr, batch, max_iters, device, 0)
        if kw is not None:
            opt.check_finite()
        err, nll, ece = _evaluate(model, xte, yte)
        out.append(f"| {label} | {iters} | {secs:.1f} | {err:.2f} | {nll:.4f} | {ece:.2f} |")


def cnn_runs(args, device, out):
    _runs(args, device, out, resnet=False)


def resnet_runs(args, device, out):
    _runs(args, device, out, resnet=True)


SECTIONS = [("crosscheck (float32, float64)", crosscheck), ("quantizer throughput", throughput),
            ("LP step vs fused SGD", step_cost), ("SmallCNN on MNIST, one epoch", cnn_runs),
            ("ResNet-50 on MNIST 32×32×3, one epoch", resnet_runs)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="a CPU dry run of every section (< 60 s)")
    ap.add_argument("--eager", action="store_true", help="never torch.compile the fast path")
    ap.add_argument("--out", default=str(REPO / "docs" / "results" / "gpu.md"))
    ap.add_argument("--mnist", default=None, help="MNIST file or directory (default: $QLANGEVIN_MNIST or shared)")
    ap.add_argument("--skip", nargs="*", default=[], choices=[f.__name__ for _, f in SECTIONS])
    ap.add_argument("--section-timeout", type=float, default=240.0)
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_validate: --device cuda requested but CUDA is not available (use --device cpu --tiny "
              "for a dry run)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    REPEAT["n"] = 1 if args.tiny else 5
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    report = ["# GPU validation" + (" (dry run: --tiny)" if args.tiny else ""), "",
              f"Command: `python benchmarks/gpu_validate.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
              "", f"Device: {device.type} ({name}); torch {torch.__version__}; Python {platform.python_version()}",
              ""]
    ok = True
    t_all = time.perf_counter()
    for title, fn in SECTIONS:
        report += [f"## {title}", ""]
        if fn.__name__ in args.skip:
            report += ["skipped (--skip)", ""]
            continue
        t0 = time.perf_counter()
        body: list[str] = []
        try:
            fn(args, device, body)
            status = "ok"
        except Exception as exc:  # a failed section is reported, the others still run
            ok = False
            status = f"FAILED: {type(exc).__name__}: {exc}"
            body.append("```\n" + traceback.format_exc()[-2000:] + "\n```")
        report += body + ["", f"{status} ({time.perf_counter() - t0:.1f} s)", ""]
        print(f"{title}: {status} ({time.perf_counter() - t0:.1f} s)", flush=True)
    report.append(f"Total wall time: {time.perf_counter() - t_all:.1f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(report) + "\n")
    print(f"report written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
