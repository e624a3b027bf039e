"""``qlangevin train``: train/sample a network on MNIST with any torchport optimizer.

Examples::

    qlangevin train --model mlp --method sgld_vc --format fixed:8:6 --epochs 5 --seed 1 --out runs/vc1
    qlangevin train --resume runs/vc1                       # continue an interrupted run bit for bit
    qlangevin train --model cnn --method sgld_lp_f --format bfp:8 --act-format bfp:8 --out runs/bfp

Formats are parsed with :func:`refimpl.formats.parse_format` (``fixed:W:F``, ``bfp:W``,
``bfp:W:dim``, ``float:E:M``, ``ieee:bfloat16``, ``none``).  See docs/training.md for the
scaling convention (lr = η·N, noise variance 2·lr·T/N) and the run-directory layout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from torchport.models import MODELS  # noqa: PLC0415
    from torchport.train import METHODS, SCHEDULES  # noqa: PLC0415

    parser.add_argument("--dataset", default="mnist", choices=["mnist"], help="dataset (default: mnist)")
    parser.add_argument("--data-dir", default=None,
                        help="directory with mnist.npz or the four IDX files, or the npz itself "
                             "(default: $QLANGEVIN_DATA or ../shared/data)")
    parser.add_argument("--download", action="store_true",
                        help="download the IDX files into --data-dir first (needs network)")
    parser.add_argument("--model", default="mlp", choices=MODELS)
    parser.add_argument("--method", default="sgld", choices=tuple(METHODS))
    parser.add_argument("--format", dest="weight_format", default=None,
                        help="weight format Q_W, e.g. fixed:8:6 or bfp:8 (required by low-precision methods)")
    parser.add_argument("--grad-format", default=None, help="gradient format Q_G (default: same as --format)")
    parser.add_argument("--act-format", default=None, help="activation format Q_A via torchport.nn (default: none)")
    parser.add_argument("--error-format", default=None, help="error format Q_E (default: same as --act-format)")
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05,
                        help="learning rate in code units: lr = eta*N, loss = mean minibatch NLL (default 0.05)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--weight-decay", type=float, default=1e-4,
                        help="prior N(0, 1/(wd*N)) as weight decay on the mean loss (default 1e-4)")
    parser.add_argument("--friction", type=float, default=2.0, help="SGHMC friction gamma")
    parser.add_argument("--inverse-mass", type=float, default=1.0, help="SGHMC inverse mass u")
    parser.add_argument("--schedule", default="constant", choices=SCHEDULES)
    parser.add_argument("--cycles", type=int, default=1, help="cycles of the cyclical schedule")
    parser.add_argument("--burn-in", type=float, default=0.5, help="fraction of steps before collecting")
    parser.add_argument("--num-samples", type=int, default=20, help="samples collected for the BMA")
    parser.add_argument("--init-rounding", default="optimizer", choices=["optimizer", "stochastic"],
                        help="LP-L methods: 'stochastic' puts the initial weights on the grid by stochastic "
                             "rounding (default: the optimizer's nearest rounding)")
    parser.add_argument("--subset", type=int, default=None, help="use this many training examples (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (resumable)")
    parser.add_argument("--checkpoint-every", type=int, default=0, help="checkpoint every K steps (0: at the end)")
    parser.add_argument("--out", default=None, help="run directory (default: runs/<model>-<method>-<time>)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config_from_args(args):
    from torchport.train import TrainConfig  # noqa: PLC0415

    return TrainConfig(
        dataset=args.dataset, data_dir=args.data_dir, model=args.model, method=args.method,
        weight_format=args.weight_format, grad_format=args.grad_format, act_format=args.act_format,
        error_format=args.error_format, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        temperature=args.temperature, weight_decay=args.weight_decay, friction=args.friction,
        inverse_mass=args.inverse_mass, schedule=args.schedule, cycles=args.cycles, burn_in=args.burn_in,
        num_samples=args.num_samples, subset=args.subset, init_rounding=args.init_rounding, seed=args.seed, device=args.device, dtype=args.dtype,
        max_steps=args.max_steps, checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
    )


def run(args) -> int:
    import dataclasses  # noqa: PLC0415

    import torch  # noqa: PLC0415

    from torchport import train as ttrain  # noqa: PLC0415

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        if args.resume:
            run_dir = Path(args.resume)
            config = ttrain.load_config(run_dir)
            overrides = {"progress": not args.no_progress, "max_steps": args.max_steps}
            if args.data_dir is not None:
                overrides["data_dir"] = args.data_dir
            if args.checkpoint_every:
                overrides["checkpoint_every"] = args.checkpoint_every
            config = dataclasses.replace(config, **overrides)
            resume = True
        else:
            config = _config_from_args(args).validate()
            run_dir = Path(args.out) if args.out else Path("runs") / (
                f"{config.model}-{config.method}-{time.strftime('%Y%m%d-%H%M%S')}")
            resume = False
            if args.download:
                from torchport.data import download_mnist  # noqa: PLC0415

                if not args.data_dir:
                    raise ValueError("--download needs --data-dir")
                download_mnist(args.data_dir)
        result = ttrain.train(config, run_dir, resume=resume)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, NotImplementedError) as exc:
        print(f"qlangevin train: error: {exc}", file=sys.stderr)
        return 2
    summary = {k: result[k] for k in ("step", "total_steps", "num_samples") if k in result}
    summary["bma"] = result.get("bma")
    summary["last"] = result.get("last")
    print(json.dumps(summary, indent=2))
    print(f"run directory: {run_dir}")
    return 0
