"""ResNet-50 on MNIST padded to 32×32×3, on the CPU: FP32 SGLD and sgld_vc at 8-bit BFP (issue 11 item 5).

    python benchmarks/resnet50_cpu.py --out docs/results/resnet50_cpu.md

The project's own ResNet-50 (``torchport.models.resnet50(use_torchvision=False)``, ImageNet
stem, 23.5 M parameters for 10 classes; 25,557,032 for 1000 classes as torchvision's,
tests/torchport/test_models.py).  A training subset of ``--train`` images and a test subset
of ``--test`` images (both fixed by the seed); minibatches drawn with replacement from the
subset; loss = mean NLL, so ``num_data`` = the subset size (scaling contract (S0)).

* FP32 SGLD: ``torchport.optim.SGLD`` (the exact path; foreach).
* sgld_vc BFP8: ``torchport.fast.FastLowPrecisionSGLD(accumulator="low", variance_corrected=True,
  weight_format=BlockFloatingPoint(8, dim=0))`` (gradients SR-rounded to the same format),
  compiled with torch.compile (compile time reported separately, not in the step time).

BMA over the last ``--samples`` iterates (thinned by ``--thin``): test error, NLL, ECE
(``torchport.metrics``).  Never run in CI (minutes of CPU).
"""

from __future__ import annotations

import argparse
import platform
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


def run(method: str, args, xtr, ytr, xte, yte) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)  # BatchNorm/initialisation use the global generator inside nn.Module init
    model = tm.resnet50(10, use_torchvision=False)
    tm.init_parameters(model, args.seed)
    n = xtr.shape[0]
    if method == "sgld":
        opt = SGLD(model.parameters(), lr=args.lr, temperature=args.temperature, num_data=n, seed=args.seed,
                   foreach=True)
    else:
        names = [name for name, _ in model.named_parameters()]
        opt = F.FastLowPrecisionSGLD(list(model.parameters()), lr=args.lr, temperature=args.temperature,
                                     num_data=n, weight_format=BlockFloatingPoint(8, dim=0), accumulator="low",
                                     variance_corrected=True, seed=args.seed, compile=not args.eager,
                                     param_names=names)
    probs_sum = torch.zeros(xte.shape[0], 10, dtype=torch.float64)
    n_samples = 0
    t_step = t_fb = t_eval = 0.0
    compile_s = 0.0
    t_start = time.perf_counter()
    losses = []
    for it in range(args.iters):
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        model.train()
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
        loss.backward()
        t1 = time.perf_counter()
        opt.step()
        t2 = time.perf_counter()
        t_fb += t1 - t0
        if it == 0 and method != "sgld":
            compile_s = t2 - t1  # first step compiles the fused update
        else:
            t_step += t2 - t1
        losses.append(float(loss))
        if it >= args.iters - args.samples * args.thin and (args.iters - 1 - it) % args.thin == 0:
            te = time.perf_counter()
            model.eval()
            probs_sum += tmet.predict_probs(model, xte, batch_size=250).to(torch.float64)
            n_samples += 1
            t_eval += time.perf_counter() - te
        if it % 10 == 0:
            print(f"{method} it {it} loss {losses[-1]:.3f} fb {t_fb:.0f}s step {t_step:.0f}s", flush=True)
    if method != "sgld":
        opt.check_finite()
    probs = (probs_sum / n_samples).numpy()
    y = yte.numpy()
    return dict(method=method, error=tmet.error_rate(probs, y), nll=tmet.nll(probs, y),
                ece=tmet.expected_calibration_error(probs, y), samples=n_samples,
                loss_first10=float(np.mean(losses[:10])), loss_last10=float(np.mean(losses[-10:])),
                fb_s=t_fb, step_s=t_step, compile_s=compile_s, eval_s=t_eval,
                wall_s=time.perf_counter() - t_start,
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
    ap.add_argument("--eager", action="store_true", help="do not torch.compile the fast step")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    arrays = td.load_mnist()
    gen = torch.Generator().manual_seed(args.seed)
    tr = _subset(60000, args.train, gen).numpy()
    te = _subset(10000, args.test, gen).numpy()
    xtr, ytr = td.to_tensors(arrays.x_train[tr], arrays.y_train[tr], layout="padded32x3")
    xte, yte = td.to_tensors(arrays.x_test[te], arrays.y_test[te], layout="padded32x3")
    results = [run(m, args, xtr, ytr, xte, yte) for m in args.methods.split(",")]
    lines = [
        "# ResNet-50 on MNIST (32×32×3), CPU",
        "",
        "A real run, not a unit test (never in CI).  Command:",
        "",
        "```",
        "python benchmarks/resnet50_cpu.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "```",
        "",
        f"Seed {args.seed}; training subset {args.train} of the 60,000 MNIST training images, test subset "
        f"{args.test} of the 10,000 test images (both drawn by the seed); {args.iters} iterations of batch "
        f"{args.batch} (minibatches drawn with replacement: {args.iters * args.batch} images seen, "
        f"{args.iters * args.batch / args.train:.2f} passes over the subset); lr {args.lr}, temperature "
        f"{args.temperature}, num_data {args.train}; BMA over the last {args.samples} iterates, every "
        f"{args.thin}th.  Model: the project's own ResNet-50 (ImageNet stem, "
        f"{tm.num_parameters(tm.resnet50(10, use_torchvision=False)):,} parameters for 10 classes).",
        "",
        f"Versions: Python {platform.python_version()}, torch {torch.__version__}, NumPy {np.__version__}; "
        f"{platform.machine()}, {torch.get_num_threads()} torch threads on a shared 2-core machine.",
        "",
        "| method | BMA test error (%) | NLL | ECE (15 bins, %) | mean loss, first 10 it | mean loss, last 10 it "
        "| fwd+bwd s | step s (timed steps) | compile s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        label = "FP32 SGLD (exact path)" if r["method"] == "sgld" else "sgld_vc BFP8 dim 0 (fast path, compiled)"
        lines.append(f"| {label} | {r['error']:.2f} | {r['nll']:.4f} | {r['ece']:.2f} | {r['loss_first10']:.3f} "
                     f"| {r['loss_last10']:.3f} | {r['fb_s']:.0f} | {r['step_s']:.1f} ({r['steps_timed']}) "
                     f"| {r['compile_s']:.0f} | {r['wall_s']:.0f} |")
    lines += ["", "Chance level is a test error of 90 %."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
