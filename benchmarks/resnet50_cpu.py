"""ResNet-50 on MNIST padded to 32×32×3, on the CPU: FP32 SGLD and sgld_vc at 8-bit BFP (issue 11 item 5).

    python benchmarks/resnet50_cpu.py --train 4000 --test 1000 --iters 200 --batch 32 --lr 0.05 \
        --warmup 10 --temperature 1e-3 --samples 4 --thin 10 --seed 0 --threads 2 --json /tmp/r50

(the setting of docs/results/resnet50_cpu.md: about 25–40 minutes per method on a loaded 2-core
machine; the hand-written reading of that page goes below the table this script prints).

The project's own ResNet-50 (``torchport.models.resnet50(use_torchvision=False)``, ImageNet
stem, 23.5 M parameters for 10 classes; 25,557,032 for 1000 classes as torchvision's,
tests/torchport/test_models.py).  A training subset of ``--train`` images and a test subset
of ``--test`` images (both fixed by the seed); minibatches drawn with replacement from the
subset; loss = mean NLL, so ``num_data`` = the subset size (scaling contract (S0)).

Training choices, each an option: ``--zero-init-residual`` (on by default here; γ of each
block's last BatchNorm starts at 0, Goyal et al. 2017 §5.1, ``torchport.models.init_parameters``),
a linear lr warm-up over ``--warmup`` iterations (lr_k = lr·min(1, (k+1)/warmup)), gradient-norm
clipping at ``--clip`` (0: off; the gradient norm is logged either way).

* FP32 SGLD: ``torchport.optim.SGLD`` on its exact path (float64 noise from a torch.Generator;
  foreach; ``exact=True`` where the constructor has that option).
* sgld_vc BFP8: ``torchport.fast.FastLowPrecisionSGLD(accumulator="low", variance_corrected=True,
  weight_format=BlockFloatingPoint(8, dim=0))`` (gradients SR-rounded to the same format),
  compiled with torch.compile (compile time reported separately, not in the step time).

BMA over the last ``--samples`` iterates (thinned by ``--thin``): test error, NLL, ECE
(``torchport.metrics``).  Never run in CI (minutes of CPU).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from refimpl.formats import BlockFloatingPoint
from torchport import data as td
from torchport import fast as F
from torchport import metrics as tmet
from torchport import models as tm
from torchport.optim import SGLD


def _subset(n_total, n, gen):
    return torch.randperm(n_total, generator=gen)[:n]


def _exact_sgld(params, args, n):
    """FP32 SGLD on the exact path, under either constructor (``exact=`` exists once the fast path is the default)."""
    extra = {"exact": True} if "exact" in inspect.signature(SGLD).parameters else {}
    return SGLD(params, lr=args.lr, temperature=args.temperature, num_data=n, seed=args.seed, foreach=True, **extra)


def run(method: str, args, xtr, ytr, xte, yte) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)  # not consumed by the model (init_parameters takes the seed); belt and braces
    model = tm.resnet50(10, use_torchvision=False)
    tm.init_parameters(model, args.seed, zero_init_residual=args.zero_init_residual)
    n = xtr.shape[0]
    if method == "sgld":
        opt = _exact_sgld(model.parameters(), args, n)
        path = f"torchport.optim.SGLD, exact path (exact={getattr(opt, 'exact', True)}, foreach=True)"
    else:
        names = [name for name, _ in model.named_parameters()]
        opt = F.FastLowPrecisionSGLD(list(model.parameters()), lr=args.lr, temperature=args.temperature,
                                     num_data=n, weight_format=BlockFloatingPoint(8, dim=0), accumulator="low",
                                     variance_corrected=True, seed=args.seed, compile=not args.eager,
                                     param_names=names)
        path = f"torchport.fast.FastLowPrecisionSGLD ({'eager' if args.eager else 'torch.compile'})"
    probs_sum = torch.zeros(xte.shape[0], 10, dtype=torch.float64)
    n_samples = 0
    t_step = t_fb = t_eval = 0.0
    compile_s = 0.0
    t_start = time.perf_counter()
    losses, grad_norms, loads = [], [], []
    for it in range(args.iters):
        lr = args.lr * min(1.0, (it + 1) / args.warmup) if args.warmup else args.lr
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        model.train()
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip if args.clip > 0 else math.inf)
        t1 = time.perf_counter()
        opt.step()
        t2 = time.perf_counter()
        t_fb += t1 - t0
        if it == 0 and method != "sgld":
            compile_s = t2 - t1  # first step compiles the fused update
        else:
            t_step += t2 - t1
        losses.append(float(loss.detach()))
        grad_norms.append(float(grad_norm))
        if it >= args.iters - args.samples * args.thin and (args.iters - 1 - it) % args.thin == 0:
            te = time.perf_counter()
            model.eval()
            probs_sum += tmet.predict_probs(model, xte, batch_size=250).to(torch.float64)
            n_samples += 1
            t_eval += time.perf_counter() - te
        if it % 10 == 0 or it == args.iters - 1:
            loads.append(os.getloadavg()[0])
            print(f"{method} it {it} lr {lr:.4g} loss {losses[-1]:.3f} (mean of last 10: "
                  f"{np.mean(losses[-10:]):.3f}) grad norm {grad_norm:.1f} fb {t_fb:.0f}s step {t_step:.0f}s "
                  f"wall {time.perf_counter() - t_start:.0f}s load {loads[-1]:.1f}", flush=True)
    if method != "sgld":
        opt.check_finite()
    probs = (probs_sum / n_samples).numpy()
    y = yte.numpy()
    err = tmet.error_rate(probs, y)  # percent
    windows = np.array_split(np.asarray(losses), min(10, len(losses)))
    return dict(method=method, path=path, iters=args.iters, samples_every=args.thin, error=err, error_se=100 * math.sqrt(err / 100 * (1 - err / 100) / len(y)),
                nll=tmet.nll(probs, y), ece=tmet.expected_calibration_error(probs, y), samples=n_samples,
                loss_windows=[float(w.mean()) for w in windows], window_len=[len(w) for w in windows],
                loss_first10=float(np.mean(losses[:10])), loss_last10=float(np.mean(losses[-10:])),
                grad_norm_first=grad_norms[0], grad_norm_max=max(grad_norms),
                grad_norm_last10=float(np.mean(grad_norms[-10:])),
                fb_s=t_fb, step_s=t_step, compile_s=compile_s, eval_s=t_eval,
                wall_s=time.perf_counter() - t_start, load_mean=float(np.mean(loads)), load_max=max(loads),
                steps_timed=args.iters - (0 if method == "sgld" else 1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=6000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--temperature", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--thin", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="sgld,sgld_vc_bfp8")
    ap.add_argument("--warmup", type=int, default=0, help="linear lr warm-up over this many iterations (0: none)")
    ap.add_argument("--clip", type=float, default=0.0, help="clip the gradient norm at this value (0: off)")
    ap.add_argument("--zero-init-residual", action=argparse.BooleanOptionalAction, default=True,
                    help="γ = 0 in the last BatchNorm of each residual block (Goyal et al. 2017)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--eager", action="store_true", help="do not torch.compile the fast step")
    ap.add_argument("--json", default=None, help="write each method's results to <json>.<method>.json when done")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    arrays = td.load_mnist()
    gen = torch.Generator().manual_seed(args.seed)
    tr = _subset(60000, args.train, gen).numpy()
    te = _subset(10000, args.test, gen).numpy()
    xtr, ytr = td.to_tensors(arrays.x_train[tr], arrays.y_train[tr], layout="padded32x3")
    xte, yte = td.to_tensors(arrays.x_test[te], arrays.y_test[te], layout="padded32x3")
    results = []
    for method in args.methods.split(","):
        results.append(run(method, args, xtr, ytr, xte, yte))
        if args.json:
            Path(f"{args.json}.{method}.json").write_text(json.dumps(results[-1], indent=1))
    print(report(args, argv if argv is not None else sys.argv[1:], results))
    if args.out:
        Path(args.out).write_text(report(args, argv if argv is not None else sys.argv[1:], results))


def report(args, argv, results) -> str:
    """The Markdown table of ``results`` (the hand-written reading goes below it).

    ``argv``: the command's arguments, or a list of whole commands (strings) when the rows come
    from several runs; the iteration count is taken per result when the runs differ in it."""
    iters = sorted({r.get("iters", args.iters) for r in results})
    commands = argv if argv and all(" " in a for a in argv) else ["python benchmarks/resnet50_cpu.py " + " ".join(argv)]
    if len(iters) == 1:
        its = (f"{iters[0]} iterations of batch {args.batch} (minibatches drawn with replacement: "
               f"{iters[0] * args.batch} images seen, {iters[0] * args.batch / args.train:.2f} passes over the subset)")
    else:
        its = ", ".join(f"{r['method']} {r['iters']} iterations" for r in results) + (
            f" of batch {args.batch} (minibatches drawn with replacement)")
    lines = [
        "# ResNet-50 on MNIST (32×32×3), CPU",
        "",
        "A real run, not a unit test (never in CI).  " + ("Command:" if len(commands) == 1 else "Commands:"),
        "",
        "```",
        *commands,
        "```",
        "",
        f"Seed {args.seed}; training subset {args.train} of the 60,000 MNIST training images, test subset "
        f"{args.test} of the 10,000 test images (both drawn by the seed); {its}; lr {args.lr} "
        f"({f'linear warm-up over the first {args.warmup} iterations' if args.warmup else 'no warm-up'}), "
        f"temperature {args.temperature}, num_data {args.train}; gradient-norm clipping "
        f"{f'at {args.clip}' if args.clip > 0 else 'off'}; zero-initialised residual BatchNorm γ "
        f"{'on' if args.zero_init_residual else 'off'}; BMA over the last {args.samples} iterates, every "
        f"{args.thin}th.  Model: the project's own ResNet-50 (ImageNet stem: 7×7 stride-2 convolution and "
        f"3×3 max-pool, bottleneck blocks [3, 4, 6, 3], "
        f"{tm.num_parameters(tm.resnet50(10, use_torchvision=False)):,} parameters for 10 classes).",
        "",
        f"Versions: Python {platform.python_version()}, torch {torch.__version__}, NumPy {np.__version__}; "
        f"{platform.machine()}, {torch.get_num_threads()} torch threads on a shared 2-core machine.",
        "",
        "| method | path | BMA test error (%) ± binomial SE | NLL | ECE (15 bins, %) | mean loss, first 10 it "
        "| mean loss, last 10 it | fwd+bwd s | step s (timed steps) | compile s | eval s | wall s | load avg mean (max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        label = "FP32 SGLD" if r["method"] == "sgld" else "sgld_vc BFP8 dim 0"
        lines.append(f"| {label} | {r['path']} | {r['error']:.2f} ± {r['error_se']:.2f} "
                     f"| {r['nll']:.4f} | {r['ece']:.2f} | {r['loss_first10']:.3f} "
                     f"| {r['loss_last10']:.3f} | {r['fb_s']:.0f} | {r['step_s']:.0f} ({r['steps_timed']}) "
                     f"| {r['compile_s']:.0f} | {r['eval_s']:.0f} | {r['wall_s']:.0f} "
                     f"| {r['load_mean']:.1f} ({r['load_max']:.1f}) |")
    lines += ["", "Mean training loss (minibatch NLL) over consecutive tenths of the run:", "",
              "| method | " + " | ".join(f"w{i + 1}" for i in range(len(results[0]["loss_windows"]))) + " |",
              "|---|" + "---|" * len(results[0]["loss_windows"])]
    for r in results:
        lines.append(f"| {r['method']} | " + " | ".join(f"{v:.3f}" for v in r["loss_windows"]) + " |")
    lines += ["", "Gradient norm (before clipping): "
              + "; ".join(f"{r['method']}: {r['grad_norm_first']:.1f} at the first step, max {r['grad_norm_max']:.1f}, "
                          f"mean of the last 10 {r['grad_norm_last10']:.1f}" for r in results) + ".",
              "", "Chance level is a test error of 90 %."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
