"""``qlangevin train``: train/sample a network on MNIST with any torchport optimizer.

Examples::

    qlangevin train --model mlp --method sgld_vc --format fixed:8:6 --epochs 5 --seed 1 --out runs/vc1
    qlangevin train --resume runs/vc1                       # continue an interrupted run bit for bit
    qlangevin train --model cnn --method sgld_lp_f --format bfp:8 --act-format bfp:8 --out runs/bfp

Formats are parsed with :func:`refimpl.formats.parse_format` (``fixed:W:F``, ``bfp:W``,
``bfp:W:dim``, ``float:E:M``, ``ieee:bfloat16``, ``none``).  See docs/training.md for the
scaling convention (lr = η·N, noise variance 2·lr·T/N) and the run-directory layout.

The SGLD/SGHMC samplers run the default (fast) counter-stream path; ``--exact`` selects the
float64 exact path (bit-identical to refimpl, and the numbers of runs made before the fast
path became the default).  ``--resume`` keeps the path the run was started with: the one its
checkpoint's optimizer state was saved by (docs/training.md, "Resume follows the checkpoint's path").

A checkpoint is written at the end of every epoch by default (``--checkpoint-every K``:
every K steps; 0: only at the end).  Ctrl-C (SIGINT) or SIGTERM finishes the current step,
writes a checkpoint and prints the command that resumes the run; the exit status is then
128 + the signal number.  Every error is one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: Options that ``--resume`` may change; any other option given with ``--resume`` is refused.
_RESUME_OPTIONS = {"resume", "max_steps", "no_progress", "checkpoint_every", "data_dir", "device", "threads"}
_TORCH_MISSING = 'needs PyTorch, which is not installed here: pip install "qlangevin[torch]"'


def _choices():
    """(models, methods, schedules), or Nones when torch is missing (then ``run`` says so)."""
    try:
        from torchport.models import MODELS  # noqa: PLC0415
        from torchport.train import METHODS, SCHEDULES  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "torch":
            raise
        return None, None, None
    return MODELS, tuple(METHODS), SCHEDULES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    models, methods, schedules = _choices()
    parser.add_argument("--dataset", default="mnist", choices=["mnist"], help="dataset (default: mnist)")
    parser.add_argument("--data-dir", default=None,
                        help="directory with mnist.npz or the four IDX files, or the npz itself "
                             "(default: $QLANGEVIN_MNIST or ../shared/data/mnist.npz)")
    parser.add_argument("--download", action="store_true",
                        help="download the IDX files into --data-dir first (needs network)")
    parser.add_argument("--model", default="mlp", choices=models)
    parser.add_argument("--method", default="sgld", choices=methods)
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
    parser.add_argument("--level-scale", type=float, default=1.0,
                        help="askewsgd/binaryconnect/proxquant: the weight levels are +-level_scale (default 1)")
    parser.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                        help="a further optimizer option, e.g. --opt eta_alpha=1e-5 (ctld) or "
                             "--opt lambda_rate=1e-6 (proxquant); VALUE is read as JSON (number, true, "
                             "null, \"text\") or else as text; repeatable")
    parser.add_argument("--schedule", default="constant", choices=schedules)
    parser.add_argument("--cycles", type=int, default=1, help="cycles of the cyclical schedule")
    parser.add_argument("--burn-in", type=float, default=0.5, help="fraction of steps before collecting")
    parser.add_argument("--num-samples", type=int, default=20, help="samples collected for the BMA")
    parser.add_argument("--init-rounding", default="optimizer", choices=["optimizer", "stochastic"],
                        help="LP-L methods: 'stochastic' puts the initial weights on the grid by stochastic "
                             "rounding (default: the optimizer's nearest rounding)")
    parser.add_argument("--subset", type=int, default=None, help="use this many training examples (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="torch device (default: cpu; on --resume: the run's)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--exact", action="store_true",
                        help="run the float64 exact path (torch.Generator noise, bit-identical to refimpl) instead "
                             "of the default fast counter-stream path (optimizers that have both paths)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (resumable)")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="checkpoint every K steps (default: every epoch; 0: only at the end)")
    parser.add_argument("--out", default=None, help="run directory (default: runs/<model>-<method>-<time>)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _optimizer_options(items) -> dict:
    """``["k=v", ...]`` -> ``{k: v}`` with v read as JSON when it parses, else as a float, else as text."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--opt {item!r}: expected KEY=VALUE")
        if key in out:
            raise ValueError(f"--opt {item!r}: option {key!r} given twice")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            try:
                value = float(text)  # nan, inf: refused by TrainConfig.validate
            except ValueError:
                value = text
        out[key] = value
    return out


def _config_from_args(args):
    from torchport.train import TrainConfig  # noqa: PLC0415

    return TrainConfig(
        dataset=args.dataset, data_dir=args.data_dir, model=args.model, method=args.method,
        weight_format=args.weight_format, grad_format=args.grad_format, act_format=args.act_format,
        error_format=args.error_format, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        temperature=args.temperature, weight_decay=args.weight_decay, friction=args.friction,
        inverse_mass=args.inverse_mass, level_scale=args.level_scale, schedule=args.schedule, cycles=args.cycles,
        burn_in=args.burn_in, num_samples=args.num_samples, subset=args.subset, init_rounding=args.init_rounding,
        seed=args.seed, device=args.device or "cpu", dtype=args.dtype, max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every, progress=not args.no_progress, exact=args.exact,
        optimizer_options=_optimizer_options(args.opt),
    )


def _refuse_resume_changes(args) -> None:
    """``--resume`` continues the saved configuration: refuse options that would silently be ignored."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    defaults = vars(parser.parse_args([]))
    changed = sorted(k for k, v in defaults.items() if k not in _RESUME_OPTIONS and getattr(args, k, v) != v)
    if changed:
        flags = ", ".join("--" + ("format" if k == "weight_format" else k.replace("_", "-")) for k in changed)
        raise ValueError(f"{flags}: cannot be changed when resuming (the run's config.json fixes them); "
                         "--resume accepts --max-steps, --checkpoint-every, --data-dir, --device, --threads, "
                         "--no-progress")


def _error(message: str) -> int:
    print(f"qlangevin train: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    import dataclasses  # noqa: PLC0415

    try:
        import torch  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "torch":
            raise
        return _error(_TORCH_MISSING)

    from torchport import train as ttrain  # noqa: PLC0415

    try:
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads={args.threads}: must be >= 1")
            torch.set_num_threads(args.threads)
        if args.resume:
            _refuse_resume_changes(args)
            run_dir = Path(args.resume)
            config = ttrain.load_config(run_dir)
            overrides = {"progress": not args.no_progress, "max_steps": args.max_steps}
            if args.data_dir is not None:
                overrides["data_dir"] = args.data_dir
            if args.checkpoint_every is not None:
                overrides["checkpoint_every"] = args.checkpoint_every
            if args.device is not None:
                overrides["device"] = args.device
            config = dataclasses.replace(config, **overrides).validate()
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
    except ttrain.TrainInterrupted as exc:
        print(f"qlangevin train: {exc}", file=sys.stderr)
        return 128 + int(exc.signum)
    except (ValueError, TypeError, OSError, NotImplementedError, FloatingPointError) as exc:
        return _error(exc)
    summary = {k: result[k] for k in ("step", "total_steps", "num_samples") if k in result}
    for key in ("bma", "last", "last_quantized", "skipped_samples"):
        if key in result:
            summary[key] = result[key]
    print(json.dumps(summary, indent=2))
    print(f"run directory: {run_dir}")
    return 0
