"""Training/sampling driver for the MNIST validation (``qlangevin train``).

This is the "driver" of STYLE.md on the torch side: it owns data, model, optimizer
construction, the step loop, sample collection, evaluation, checkpoints and resume.  The
optimizers (:mod:`torchport.optim`) compute one update each and know nothing of this.
:func:`train` is split accordingly: :func:`build_run` (loading: data, model, optimizer),
:func:`restore_checkpoint` / :func:`checkpoint_state`, :func:`train_step` (one step),
:func:`run_steps` (the step loop), :func:`collect_sample` (sample collection) and
:func:`end_of_epoch` / :func:`evaluate` (evaluation).

Loss and scaling (ALGORITHMS §3.1 (S0), §3.11).  The loss put in ``.grad`` is the mean
minibatch cross-entropy; the Gaussian prior enters as ``weight_decay`` wd in the optimizer
(added to the gradient *after* Q_G, unquantized, as the published code does).  Hence

    L(θ) = (1/n) Σ_{i∈batch} −log p(y_i | x_i, θ) + (wd/2)‖θ‖²  ≈  U(θ)/N,

a prior N(0, 1/(wd·N)) per weight, and each optimizer is built with ``num_data = N`` (the
number of training examples used), so that an SGLD step is (S1) with step η = lr/N and
injected noise variance V = 2·lr·T/N = 2ηT per coordinate.  The optimizers without
``num_data`` get the same contract another way (:func:`build_optimizer`): QSGLD runs at
temperature T/N on L (its resolution q₀ = 1/√(12·lr·T/N) then gives rounding noise of
variance ≈ 2·lr·T/N, (QS2)); CTLD runs in U units (lr/N, gradient N·∇L, potential N·L, the
prior added by the driver).  AskewSGD, BinaryConnect and ProxQuant are optimisers, not
samplers: SGD base step with weight decay wd, binary levels ±``level_scale``.

Sample collection and prediction (§3.7).  After a burn-in of ``burn_in`` (fraction of all
steps) ``num_samples`` samples are collected at evenly spaced steps ending at the last step
(noise-free methods keep only the final model, as the published SGD baselines do; CTLD
keeps a sample only when its tempering variable is in the target band g(α) = 1).  Each
collected sample is the parameter vector the network uses (for LP-F: the quantized weights
Q_W(acc)); it is saved under ``samples/`` and its test-set softmax is added to a running
Bayesian model average (:class:`torchport.metrics.BMA`).

Optimizer path (docs/training.md).  The SGLD/SGHMC samplers run their default (fast) path:
the fused counter-stream update of :mod:`torchport.fast`, in the model's dtype, whose
random numbers are a pure function of (seed, step, parameter, stream, element).
``TrainConfig.exact = True`` (``qlangevin train --exact``) selects the float64 exact path
with a ``torch.Generator`` (bit-identical to refimpl; the numbers of runs made before the
fast path became the default).  A ``config.json`` written before the field existed reads
as ``exact = True``, so old runs resume on the path they were started with; on resume the
checkpoint's optimizer state decides the path (:func:`checkpoint_path_exact`: runs of
optimizers that had only the exact path saved ``exact = False`` but ran the exact path;
their config.json is corrected).  On the fast
path the driver checks the optimizer's lazy finite-gradient flags after every step (it reads
the loss every step anyway), so a NaN/inf gradient stops the run with an error naming the
parameter, as on the exact path (where the step itself raises).

Determinism and resume.  All randomness comes from explicit generators derived from
``seed``: model initialisation, the optimizer's generator (exact path) or counter-stream
seed (fast path), the activation/error quantizers' generator, and the minibatch order
(:func:`torchport.data.epoch_permutation`, a pure function of (seed, epoch)).  A checkpoint
stores the step, model, optimizer state (including its generator state or counter seed and
step count), the quantizers' generator state, the BMA and the history, so that N steps
straight and N/2 + resume N/2 give identical bits on either path.

Files and interrupts.  Checkpoints and samples are checksummed frames loaded with
``weights_only=True`` (:mod:`torchport.checkpoint`), written atomically without following
links; one process writes a run directory at a time (``RUN_DIR/.lock``,
:class:`torchport._io.RunLock`).  By default a checkpoint is written at the end of every
epoch; on SIGINT or SIGTERM the current step finishes, a checkpoint is written and
:class:`TrainInterrupted` is raised (``qlangevin train`` prints how to resume).

Multi-process (DDP; see :mod:`torchport.distributed` and :mod:`torchport.ddp`).  With
``world_size`` W > 1 each rank takes a contiguous 1/W shard of every global minibatch, DDP
averages the gradients, and every rank's optimizer is seeded identically, so all ranks
draw identical noise and the replicas stay identical (fast path: every rank computes the
same counter keys, no broadcast needed).  ``grad_shards`` = W in a single
process reproduces the same arithmetic (shard-wise backward, gradient summed then divided
by W) bit for bit.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import numbers
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.nn import functional as F

from refimpl import methods as _methods
from torchport import data as tdata
from torchport import distributed as tdist
from torchport import metrics as tmetrics
from torchport import models as tmodels
from torchport._io import (
    RunLock,
    atomic_write_bytes,
    check_run_dir,
    read_bytes_nofollow,
)
from torchport.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

#: method -> (optimizer class name in torchport.optim, keyword arguments).
METHODS: dict[str, tuple[str, dict]] = {
    "sgd": ("SGLD", {"add_noise": False}),
    # every sampler: optimizer class and arguments from the method table (refimpl.methods), shared with refimpl
    **{name: _methods.torch_optimizer(name) for name in _methods.METHODS},
    # QSGLD with stochastic rounding (QS1): the rounding is the noise (nearest rounding freezes)
    "qsgld": ("QSGLD", {"rounding": "stochastic"}),
    "ctld": ("CTLD", {}),
    # optimisers for quantized networks (not samplers): binary levels ±level_scale, SGD base step
    "askewsgd": ("AskewSGD", {}),
    "binaryconnect": ("BinaryConnect", {}),
    "proxquant": ("ProxQuant", {}),
    # plain torch.optim.SGD (no torchport code involved); used to test the loop itself
    "torch_sgd": ("torch.optim.SGD", {}),
}
LOW_PRECISION = {m for m in METHODS if "_lp_" in m or m.endswith("_vc")}
#: Optimizers for quantized networks (refimpl.netopt): lr, SGD base with weight decay, levels ±level_scale.
NET_OPTIMIZERS = {"AskewSGD", "BinaryConnect", "ProxQuant"}
NOISE_FREE = {"sgd", "sgd_lp_f", "sgd_lp_l", "torch_sgd"} | {m for m, (c, _) in METHODS.items() if c in NET_OPTIMIZERS}
#: Methods that store the weights in low precision (no full-precision accumulator).
LOW_ACCUMULATOR = {"sgd_lp_l", "sgld_lp_l", "sgld_vc", "sghmc_lp_l", "sghmc_vc"}
INIT_ROUNDINGS = ("optimizer", "stochastic")
SCHEDULES = ("constant", "decay", "cyclical")
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: Optimizer arguments the driver sets itself, and the config field that controls each.
DRIVER_SET_OPTIONS = {
    "lr": "lr", "temperature": "temperature", "num_data": "subset", "weight_decay": "weight_decay",
    "seed": "seed", "generator": "seed", "weight_format": "weight_format", "grad_format": "grad_format",
    "friction": "friction", "inverse_mass": "inverse_mass", "base": "weight_decay", "scale": "level_scale",
    "fixed_scale": "level_scale", "params": "model", "exact": "exact",
}

#: Fields that may differ between a run and its resumption.
RESUMABLE_OVERRIDES = ("max_steps", "progress", "checkpoint_every", "device", "data_dir")

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 2
_CHECKPOINT_KEYS = ("version", "step", "model", "optimizer", "act_generator", "bma", "history", "epoch_acc", "config")


def default_data_dir() -> str:
    """Where MNIST is read from by default: :func:`refimpl.data.default_mnist_path`
    (``$QLANGEVIN_MNIST``; the deprecated ``$QLANGEVIN_DATA`` still works, with a warning)."""
    from refimpl.data import default_mnist_path  # noqa: PLC0415

    return str(default_mnist_path())


@dataclass
class TrainConfig:
    """Everything that determines a run (saved as ``config.json``)."""

    dataset: str = "mnist"
    data_dir: Optional[str] = None
    model: str = "mlp"
    method: str = "sgld"
    weight_format: Optional[str] = None  # e.g. "fixed:8:6", "bfp:8"
    grad_format: Optional[str] = None  # None: same as weight_format for low-precision methods
    act_format: Optional[str] = None  # activation quantizer Q_A (torchport.nn); None: full precision
    error_format: Optional[str] = None  # error quantizer Q_E; None: same as act_format
    epochs: float = 5.0
    batch_size: int = 64
    lr: float = 0.05
    temperature: float = 1.0
    weight_decay: float = 1e-4
    friction: float = 2.0
    inverse_mass: float = 1.0
    level_scale: float = 1.0  # askewsgd/binaryconnect/proxquant: the levels are ±level_scale
    schedule: str = "constant"
    cycles: int = 1
    burn_in: float = 0.5
    num_samples: int = 20
    subset: Optional[int] = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    grad_shards: int = 1
    init_rounding: str = "optimizer"  # LP-L only: "stochastic" puts θ_0 on the grid by Q^s first
    #: SGLD/SGHMC samplers: False (default) runs the fast counter-stream path, True the float64 exact path
    exact: bool = False
    max_steps: Optional[int] = None
    checkpoint_every: Optional[int] = None  # steps; None: every epoch; 0: only at the end (and on a signal)
    progress: bool = True
    #: further constructor options of the optimizer, e.g. {"eta_alpha": 1e-5} (CTLD) or
    #: {"lambda_rate": 1e-6} (ProxQuant); JSON scalars only; not the ones set from fields above
    optimizer_options: dict = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        """Raise ``ValueError`` naming the first bad field and its value."""
        def bad(name, why):
            raise ValueError(f"{name}={getattr(self, name)!r}: {why}")

        def is_int(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        def is_real(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool)

        for name in ("dataset", "model", "method", "schedule", "init_rounding", "dtype", "device"):
            if not isinstance(getattr(self, name), str):
                bad(name, "must be a string")
        for name in ("data_dir", "weight_format", "grad_format", "act_format", "error_format"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                bad(name, "must be a string or None")
        if not isinstance(self.progress, bool):
            bad("progress", "must be True or False")
        if not isinstance(self.exact, bool):
            bad("exact", "must be True or False")
        if self.dataset != "mnist":
            bad("dataset", "only 'mnist' is available")
        if self.model not in tmodels.MODELS:
            bad("model", f"expected one of {tmodels.MODELS}")
        if self.method not in METHODS:
            bad("method", f"expected one of {tuple(METHODS)}")
        if self.method in LOW_PRECISION and self.weight_format in (None, "none"):
            bad("weight_format", f"method {self.method!r} needs a weight format such as 'fixed:8:6'")
        if self.method not in LOW_PRECISION:
            for name in ("weight_format", "grad_format"):
                if getattr(self, name) not in (None, "none"):
                    bad(name, f"method {self.method!r} does not take a weight/gradient format (it is full "
                              "precision, or quantizes to its own grid); use a low-precision method "
                              "(sgld_lp_f, sgld_lp_l, sgld_vc, ...) or drop the format")
        for name in ("weight_format", "grad_format", "act_format", "error_format"):
            value = getattr(self, name)
            if value not in (None, "none"):
                from refimpl.formats import parse_format  # noqa: PLC0415

                try:
                    parse_format(value)
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{name}={value!r}: not a valid format ({exc})") from None
        if not (is_real(self.epochs) and math.isfinite(self.epochs) and self.epochs > 0):
            bad("epochs", "must be a finite number > 0")
        for name in ("batch_size", "num_samples", "cycles", "grad_shards"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                bad(name, "must be a positive integer")
        for name in ("lr", "friction", "inverse_mass", "level_scale"):
            value = getattr(self, name)
            if not (is_real(value) and math.isfinite(value) and value > 0):
                bad(name, "must be a finite number > 0")
        for name in ("temperature", "weight_decay"):
            value = getattr(self, name)
            if not (is_real(value) and math.isfinite(value) and value >= 0):
                bad(name, "must be a finite number >= 0")
        if self.method in ("qsgld",) and self.temperature == 0:
            bad("temperature", f"method {self.method!r} sets its grid from the temperature; it must be > 0")
        if not (is_real(self.burn_in) and 0 <= self.burn_in < 1):
            bad("burn_in", "must be a fraction in [0, 1)")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"expected one of {SCHEDULES}")
        if self.subset is not None and not (is_int(self.subset) and 1 <= self.subset <= 60000):
            bad("subset", "must be an integer between 1 and 60000")
        if not is_int(self.seed) or self.seed < 0:
            bad("seed", "must be an int >= 0 (a run's seed is saved in config.json and every random stream "
                        "is derived from it; a torch.Generator cannot be)")
        if self.init_rounding not in INIT_ROUNDINGS:
            bad("init_rounding", f"expected one of {INIT_ROUNDINGS}")
        if self.dtype not in DTYPES:
            bad("dtype", f"expected one of {tuple(DTYPES)}")
        try:
            dev = torch.device(self.device)
        except (RuntimeError, ValueError):
            bad("device", "not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')")
        if dev.type == "cuda" and not torch.cuda.is_available():
            bad("device", "CUDA is not available here")
        if self.batch_size % self.grad_shards:
            bad("batch_size", f"must be divisible by grad_shards={self.grad_shards}")
        if self.max_steps is not None and not (is_int(self.max_steps) and self.max_steps >= 0):
            bad("max_steps", "must be an integer >= 0")
        if self.checkpoint_every is not None and not (is_int(self.checkpoint_every) and self.checkpoint_every >= 0):
            bad("checkpoint_every", "must be an integer >= 0 (0: only at the end) or None (every epoch)")
        self._validate_optimizer_options(bad)
        return self

    def _validate_optimizer_options(self, bad) -> None:
        opts = self.optimizer_options
        if not isinstance(opts, dict):
            bad("optimizer_options", "must be a dict of option name -> number, string, bool or None")
        for key, value in opts.items():
            if not isinstance(key, str) or not key.isidentifier():
                bad("optimizer_options", f"option name {key!r} is not an identifier")
            if key in DRIVER_SET_OPTIONS:
                bad("optimizer_options", f"{key!r} is set by the driver; use the config field "
                                         f"{DRIVER_SET_OPTIONS[key]!r}")
            if value is not None and not isinstance(value, (bool, int, float, str)):
                bad("optimizer_options", f"value of {key!r} must be a number, string, bool or None, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                bad("optimizer_options", f"value of {key!r} must be finite, got {value!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"config has unknown fields {sorted(unknown)}")
        return cls(**_with_path_default(d))


def _with_path_default(config_json: dict) -> dict:
    """A saved config without ``exact`` was written before the fast path existed: its run used the exact path."""
    return config_json if "exact" in config_json else dict(config_json, exact=True)


def checkpoint_path_exact(ck: object) -> Optional[bool]:
    """The optimizer path a checkpoint was written by, from its optimizer state: True (``generator_state``:
    the exact path), False (``counter_seed``: the default fast path), None (neither, e.g. torch.optim.SGD,
    or not a train checkpoint).

    This, not config.json's ``exact``, decides the path of a resumed run: runs of QSGLD, CTLD, AskewSGD,
    BinaryConnect and ProxQuant started before those optimizers had a fast path saved ``"exact": false``
    (the default) but ran the exact path, since the optimizer had no other.
    """
    opt = ck.get("optimizer") if isinstance(ck, dict) else None
    if not isinstance(opt, dict):
        return None
    if "generator_state" in opt:
        return True
    if "counter_seed" in opt:
        return False
    return None


def checkpoint_quantizers_exact(ck: object) -> Optional[bool]:
    """The path a checkpoint's activation/error quantizers were saved by, from the model state: True
    (a ``Quantizer`` extra state with ``generator_state``), False (``counter_seed``), None (no quantizers).

    Runs with ``act_format``/``error_format`` started before ``torchport.nn.Quantizer`` had a default
    path ran exact quantizers whatever ``exact`` said; they resume with exact quantizers.
    """
    model = ck.get("model") if isinstance(ck, dict) else None
    if not isinstance(model, dict):
        return None
    for key, value in model.items():
        if isinstance(key, str) and key.endswith("_extra_state") and isinstance(value, dict):
            if "generator_state" in value:
                return True
            if "counter_seed" in value:
                return False
    return None


def _follow_checkpoint(config_json: dict, exact: Optional[bool]) -> dict:
    """``config_json`` (a saved config, :func:`_with_path_default` applied) with the checkpoint's path."""
    return config_json if exact is None else dict(config_json, exact=exact)


def derived_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for random stream ``stream`` of run ``seed`` (numpy SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


# Random streams of a run.
STREAM_INIT, STREAM_OPTIM, STREAM_ACT, STREAM_DATA, STREAM_SUBSET, STREAM_INIT_ROUND = range(6)


# ---------------------------------------------------------------------------- schedules


def _cyclical(total_steps: int, steps_per_epoch: int, config: "TrainConfig"):
    from torchport.optim.schedules import CyclicalSchedule  # noqa: PLC0415

    return CyclicalSchedule(1.0, total_steps, config.cycles, steps_per_epoch=steps_per_epoch,
                            samples_per_cycle=max(config.num_samples // config.cycles, 1))


def lr_factor(config: "TrainConfig", step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Learning-rate multiplier f at iteration ``step`` (0-based), from torchport.optim.schedules.

    * ``"constant"``: 1.
    * ``"decay"`` (S7), per epoch: ``decay_schedule_factor(epoch, epochs)`` (1 up to half the
      epochs, linear to 0.01 at 90 %, then 0.01; ruqizhang/low-precision-sgld bnn/train.py).
    * ``"cyclical"`` (S8), per iteration: ``CyclicalSchedule(1, K, M).lr(step)`` =
      (cos(π·(k mod ⌊K/M⌋)/⌊K/M⌋) + 1)/2 with K the total steps and M = ``cycles``.
    """
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "decay":
        from torchport.optim.schedules import decay_schedule_factor  # noqa: PLC0415

        return decay_schedule_factor(step // steps_per_epoch, total_steps / steps_per_epoch)
    if config.schedule == "cyclical":
        return _cyclical(total_steps, steps_per_epoch, config).lr(step)
    raise ValueError(f"schedule={config.schedule!r}: expected one of {SCHEDULES}")


def collection_steps(config: TrainConfig, total_steps: int, steps_per_epoch: int) -> list[int]:
    """1-based step counts after which a sample is collected.

    * Noise-free methods: the final step only (the published SGD baselines keep the final model).
    * ``"cyclical"``: ``CyclicalSchedule.should_collect`` — the ends of the last
      ``num_samples // cycles`` epochs of each cycle (published: 5 per cycle).
    * Otherwise ``num_samples`` evenly spaced steps in (burn-in, total], the last one being
      ``total`` (for short runs; the published CIFAR runs save at the end of each of the
      last 50 epochs, which is this rule with one sample per epoch).
    """
    if config.method in NOISE_FREE:
        return [total_steps]
    if config.schedule == "cyclical":
        sched = _cyclical(total_steps, steps_per_epoch, config)
        return [k + 1 for k in range(total_steps) if sched.should_collect(k)]
    start = int(config.burn_in * total_steps)
    span = total_steps - start
    n = min(config.num_samples, span)
    return sorted({start + round(span * (j + 1) / n) for j in range(n)})


# ---------------------------------------------------------------------------- loading: optimizer, model, data


def _optim_class(name: str):
    import importlib  # noqa: PLC0415

    for module in ("torchport.optim", "torchport.optim.sgld", "torchport.optim.sghmc", "torchport.optim.qsgld",
                   "torchport.optim.ctld", "torchport.optim.netopt"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if cls is not None:
            return cls
    return None


def build_optimizer(config: TrainConfig, params: Iterable[torch.nn.Parameter] | Iterable[dict],
                    num_data: int) -> torch.optim.Optimizer:
    """The optimizer of ``config.method`` (see :data:`METHODS`) under the scaling contract (S0).

    SGLD/SGHMC families: built with ``lr = config.lr``, ``temperature = T``, ``num_data = N``
    (training examples used) and ``weight_decay = wd``, so that with the mean minibatch loss
    an SGLD step is (S1) with η = lr/N and noise variance 2·lr·T/N (ALGORITHMS §3.1, §3.11;
    LP-SGLD code bnn/optim.py).  Low-precision methods get ``weight_format`` and
    ``grad_format`` (the weight format unless ``config.grad_format`` says otherwise;
    ``"none"``: full-precision gradients); SGHMC methods get ``friction`` and ``inverse_mass``.

    * QSGLD: ``lr``, temperature T/N (the driver adds the prior wd·θ to the gradient): its
      step on L with temperature T/N is the step on U = N·L with η = lr/N and temperature T.
    * CTLD: ``lr/N`` and T in U units (:func:`train_step` passes N·∇L and the potential N·L).
    * AskewSGD, BinaryConnect, ProxQuant: ``lr``, an SGD base step with weight decay wd,
      binary levels scaled by ``level_scale``.

    The optimizer's generator (exact path) or counter stream (fast path, the default of the
    SGLD/SGHMC samplers; ``config.exact`` selects the exact path) is seeded with
    ``derived_seed(config.seed, STREAM_OPTIM)`` -- the same on every DDP rank.  Randomness:
    none here (the low-precision optimizers quantize the initial weights from their own
    stream when constructed).
    """
    cls_name, extra = METHODS[config.method]
    seed = derived_seed(config.seed, STREAM_OPTIM)
    if cls_name == "torch.optim.SGD":
        try:
            return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay, foreach=False,
                                   **config.optimizer_options)
        except TypeError as exc:
            raise ValueError(f"optimizer_options: torch.optim.SGD: {exc}") from None
    cls = _optim_class(cls_name)
    if cls is None:
        raise NotImplementedError(f"method={config.method!r} needs torchport.optim.{cls_name}, not available")
    if cls_name == "QSGLD":
        kwargs = dict(lr=config.lr, temperature=config.temperature / num_data, seed=seed, **extra)
    elif cls_name == "CTLD":
        kwargs = dict(lr=config.lr / num_data, temperature=config.temperature, seed=seed, **extra)
    elif cls_name in NET_OPTIMIZERS:
        from refimpl.netopt.base import BaseOptimizer  # noqa: PLC0415

        kwargs = dict(lr=config.lr, base=BaseOptimizer(kind="sgd", weight_decay=float(config.weight_decay)),
                      seed=seed, **extra)
        kwargs["fixed_scale" if cls_name == "AskewSGD" else "scale"] = config.level_scale
    else:
        kwargs = dict(lr=config.lr, temperature=config.temperature, num_data=num_data,
                      weight_decay=config.weight_decay, seed=seed, **extra)
        if config.method in LOW_PRECISION or cls_name.startswith("LowPrecision"):
            wf = None if config.weight_format in (None, "none") else config.weight_format
            gf = config.grad_format if config.grad_format is not None else wf
            kwargs.update(weight_format=wf, grad_format=None if gf == "none" else gf)
        if "SGHMC" in cls_name:
            kwargs.update(friction=config.friction, inverse_mass=config.inverse_mass)
    driver_set = (set(kwargs) - set(extra)) & set(config.optimizer_options)
    if driver_set:
        raise ValueError(f"optimizer_options={config.optimizer_options!r}: {sorted(driver_set)} are set by the "
                         "driver from the config")
    accepted = inspect.signature(cls.__init__).parameters
    if "exact" in accepted:
        kwargs["exact"] = config.exact
    kwargs.update(config.optimizer_options)  # after the method's own arguments: may override those
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    missing = [k for k in kwargs if k not in accepted]
    if missing and not takes_any:
        raise ValueError(f"optimizer_options: torchport.optim.{cls_name} (method {config.method!r}) does not "
                         f"accept {missing}")
    return cls(params, **kwargs)


def wrap_activation_quantizers(model: torch.nn.Module, config: TrainConfig, generator: torch.Generator,
                               exact: Optional[bool] = None) -> torch.nn.Module:
    """Quantize activations (forward, Q_A) and errors (backward, Q_E) with torchport.nn, if asked.

    Uses :func:`torchport.nn.insert_quantizers`: a quantizer after every Conv2d, Linear and
    ReLU module except the classifier (§2.7; for logreg, whose only layer is the classifier,
    nothing is inserted).  ``exact`` (None: ``config.exact``) picks the quantizers' path, as
    the optimizer's: the default path draws one counter seed from ``generator`` and keys each
    call by (seed, call count, quantizer index); the exact path draws from ``generator``
    itself.  Either way the state is part of the model's state dict and of the checkpoint.
    Returns the model.
    """
    if config.act_format in (None, "none") and config.error_format in (None, "none"):
        return model
    from torchport import nn as tnn  # noqa: PLC0415

    act = None if config.act_format in (None, "none") else config.act_format
    err = config.error_format if config.error_format is not None else act
    err = None if err == "none" else err
    return tnn.insert_quantizers(model, act, err, generator=generator,
                                 exact=config.exact if exact is None else bool(exact))


@dataclass
class Dataset:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


_DATA_CACHE: dict = {}


def load_dataset(config: TrainConfig, device: torch.device) -> Dataset:
    """Training (optionally a subset) and test tensors in the model's input layout."""
    path = config.data_dir or default_data_dir()
    layout = tmodels.input_layout(config.model)
    key = (str(path), layout, config.subset, config.seed if config.subset else None, config.dtype, str(device))
    if key in _DATA_CACHE:
        return _DATA_CACHE[key]
    arrays = tdata.load_mnist(path)
    dtype = DTYPES[config.dtype]
    idx = tdata.subset_indices(
        arrays.x_train.shape[0], config.subset,
        None if config.subset is None else derived_seed(config.seed, STREAM_SUBSET),
    ).numpy()
    xtr, ytr = tdata.to_tensors(arrays.x_train[idx], arrays.y_train[idx], layout=layout, dtype=dtype)
    xte, yte = tdata.to_tensors(arrays.x_test, arrays.y_test, layout=layout, dtype=dtype)
    ds = Dataset(xtr.to(device), ytr.to(device), xte.to(device), yte.to(device))
    if len(_DATA_CACHE) > 4:
        _DATA_CACHE.clear()
    _DATA_CACHE[key] = ds
    return ds


@dataclass
class Run:
    """Everything :func:`build_run` constructs from a config (fixed for the whole run)."""

    config: TrainConfig
    device: torch.device
    data: Dataset
    model: torch.nn.Module
    forward: torch.nn.Module  # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    act_generator: torch.Generator
    params: list
    base_lrs: list
    steps_per_epoch: int
    total_steps: int
    stop_step: int
    collect_at: frozenset
    shards: int
    rank: int = 0
    world_size: int = 1

    @property
    def num_data(self) -> int:
        return int(self.data.x_train.shape[0])


@dataclass
class Progress:
    """The state a checkpoint saves besides the model and the optimizer."""

    step: int = 0
    bma: tmetrics.BMA = field(default_factory=tmetrics.BMA)
    history: list = field(default_factory=list)
    epoch_acc: dict = field(default_factory=lambda: {"loss_sum": 0.0, "count": 0})
    last_probs: Optional[torch.Tensor] = None
    skipped_samples: int = 0  # CTLD: collection steps with the tempering variable outside g = 1


def _stochastic_initial_rounding(config: TrainConfig, params) -> None:
    # θ_0 ← Q^s(θ_0): the optimizer's own initial Q^d (refimpl's LP-L start) then leaves it
    # unchanged.  With a coarse grid, Q^d maps every small initial weight to 0, which for a
    # ReLU network is an absorbing dead state when no noise is injected (docs/results/mnist.md).
    from refimpl.formats import parse_format  # noqa: PLC0415
    from torchport import quantize as tq  # noqa: PLC0415

    # Exact path: one CPU generator drawn parameter after parameter (the numbers of runs made before
    # the fast path); default path: the counter stream keyed (seed, step 0, parameter index).
    fmt = parse_format(config.weight_format)
    seed = derived_seed(config.seed, STREAM_INIT_ROUND)
    with torch.no_grad():
        if config.exact:
            g_init = torch.Generator().manual_seed(seed)
            for p in params:
                p.copy_(tq.stochastic_round(p.detach().cpu(), fmt, g_init, exact=True).to(p.device))
            return
        for i, p in enumerate(params):
            p.copy_(tq.stochastic_round(p.detach(), fmt, seed=seed, index=i))


def build_run(config: TrainConfig, *, rank: int = 0, world_size: int = 1, sync_noise: bool = True,
              quantizers_exact: Optional[bool] = None) -> Run:
    """Loading: validate, read the data, build and initialise the model and the optimizer.

    Randomness: the model's initial weights (stream ``STREAM_INIT``), the optional stochastic
    initial rounding (``STREAM_INIT_ROUND``) and the subset (``STREAM_SUBSET``); the optimizer
    and activation-quantizer generators are seeded here, not drawn from.  ``quantizers_exact``
    (None: ``config.exact``): the activation/error quantizers' path; a resumed run passes the
    path its checkpoint's quantizer states were saved by (:func:`checkpoint_quantizers_exact`).
    """
    config.validate()
    for name, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (name == "world_size" and value < 1):
            raise ValueError(f"{name}={value!r}: must be a non-negative integer (world_size >= 1)")
    if rank >= world_size:
        raise ValueError(f"rank={rank}: must be < world_size={world_size}")
    if world_size > 1 and config.grad_shards != 1:
        raise ValueError(f"grad_shards={config.grad_shards}: must be 1 under DDP (world_size={world_size})")
    shards = world_size if world_size > 1 else config.grad_shards
    if config.batch_size % shards:
        raise ValueError(f"batch_size={config.batch_size}: must be divisible by world_size={shards}")
    device = torch.device(config.device)
    ds = load_dataset(config, device)
    n_train = ds.x_train.shape[0]
    if config.batch_size > n_train:
        raise ValueError(f"batch_size={config.batch_size}: larger than the training set ({n_train})")
    steps_per_epoch = n_train // config.batch_size  # drop_last
    total_steps = max(int(round(config.epochs * steps_per_epoch)), 1)
    stop_step = total_steps if config.max_steps is None else min(config.max_steps, total_steps)
    collect_at = frozenset(collection_steps(config, total_steps, steps_per_epoch))

    model = tmodels.build_model(config.model, seed=derived_seed(config.seed, STREAM_INIT), device=device,
                                dtype=DTYPES[config.dtype])
    act_gen = torch.Generator(device=device).manual_seed(derived_seed(config.seed, STREAM_ACT))
    model = wrap_activation_quantizers(model, config, act_gen, quantizers_exact)
    params = list(model.parameters())
    if config.init_rounding == "stochastic" and config.method in LOW_ACCUMULATOR:
        _stochastic_initial_rounding(config, params)
    optimizer = build_optimizer(config, params, num_data=n_train)
    forward = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415

        forward = DDP(model)
        if getattr(optimizer, "generator", None) is not None:
            if sync_noise:
                tdist.broadcast_generator_state(optimizer.generator)  # same noise on every rank
            else:  # the broken scheme (each rank its own noise), kept to test the replica check
                optimizer.generator.manual_seed(derived_seed(config.seed, STREAM_OPTIM) + rank)
        elif not sync_noise and getattr(optimizer, "counter", None) is not None:
            # fast path: every rank computes the same keys from the same seed; the broken scheme reseeds per rank
            optimizer.reseed(derived_seed(config.seed, STREAM_OPTIM) + rank)
    return Run(config=config, device=device, data=ds, model=model, forward=forward, optimizer=optimizer,
               act_generator=act_gen, params=params, base_lrs=[g["lr"] for g in optimizer.param_groups],
               steps_per_epoch=steps_per_epoch, total_steps=total_steps, stop_step=stop_step,
               collect_at=collect_at, shards=shards, rank=rank, world_size=world_size)


# ---------------------------------------------------------------------------- checkpoints and run files


def _write_json(obj, path: Path) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def load_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir/config.json`` (``ValueError`` if malformed)."""
    run_dir = check_run_dir(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"run_dir={str(run_dir)!r}: no config.json (not a qlangevin train run)")
    try:
        saved = json.loads(read_bytes_nofollow(path).decode("utf-8"))
        return TrainConfig.from_json(saved["config"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{str(path)!r}: not a valid run configuration ({type(exc).__name__}: {exc})") from None


def checkpoint_state(run: Run, progress: Progress) -> dict:
    """What a checkpoint holds: tensors and plain data only (loadable with ``weights_only=True``)."""
    return {"version": CHECKPOINT_VERSION, "step": progress.step, "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(), "act_generator": run.act_generator.get_state(),
            "bma": progress.bma.state_dict(), "history": progress.history, "epoch_acc": progress.epoch_acc,
            "skipped_samples": progress.skipped_samples, "config": run.config.to_json()}


def _load_train_checkpoint(run_dir: Path) -> dict:
    """``run_dir/checkpoint.pt``, loaded on the CPU and checked to be a train checkpoint (CheckpointError)."""
    path = run_dir / CHECKPOINT_NAME
    # Loaded on the CPU: generator states must be CPU uint8 tensors, and load_state_dict copies
    # model and optimizer tensors to the parameters' device.
    ck = load_checkpoint(path, map_location="cpu")
    if not isinstance(ck, dict) or any(k not in ck for k in _CHECKPOINT_KEYS):
        missing = [k for k in _CHECKPOINT_KEYS if not isinstance(ck, dict) or k not in ck]
        raise CheckpointError(f"{str(path)!r}: not a train checkpoint (missing {missing})")
    return ck


def restore_checkpoint(run: Run, run_dir: Path, ck: Optional[dict] = None) -> Progress:
    """Load ``run_dir/checkpoint.pt`` (or the already loaded ``ck``) into ``run``; return the saved :class:`Progress`.

    Refuses (``CheckpointError``, a ValueError) a file that is not a checksummed qlangevin
    checkpoint, fails its checksum, holds anything but tensors and plain data, or belongs to
    another configuration (the saved config's ``exact`` read as the optimizer state says:
    :func:`checkpoint_path_exact`).
    """
    path = run_dir / CHECKPOINT_NAME
    if ck is None:
        ck = _load_train_checkpoint(run_dir)
    saved = (_follow_checkpoint(_with_path_default(ck["config"]), checkpoint_path_exact(ck))
             if isinstance(ck["config"], dict) else ck["config"])
    mine = run.config.to_json()
    diffs = {k: (saved.get(k), mine[k]) for k in mine if k not in RESUMABLE_OVERRIDES and saved.get(k) != mine[k]}
    if diffs:
        raise CheckpointError(f"{str(path)!r}: written by a run with another configuration ({diffs})")
    try:
        run.model.load_state_dict(ck["model"])
        run.optimizer.load_state_dict(ck["optimizer"])
        run.act_generator.set_state(ck["act_generator"])
        progress = Progress(step=int(ck["step"]), history=list(ck["history"]), epoch_acc=dict(ck["epoch_acc"]),
                            skipped_samples=int(ck.get("skipped_samples", 0)))
        progress.bma.load_state_dict(ck["bma"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r}: does not fit this run ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not 0 <= progress.step <= run.total_steps:
        raise CheckpointError(f"{str(path)!r}: step {progress.step} outside 0..{run.total_steps}")
    return progress


# ---------------------------------------------------------------------------- the step loop


def _add_prior_to_gradients(run: Run) -> None:
    """grad ← grad + wd·θ, for the optimizers that take no ``weight_decay`` (QSGLD, CTLD)."""
    wd = run.config.weight_decay
    if wd:
        for p in run.params:
            if p.grad is not None:
                p.grad.add_(p.detach(), alpha=wd)


def _optimizer_step(run: Run, loss_val: float) -> None:
    """``optimizer.step()``, with the per-family adaptation of the scaling contract (see build_optimizer)."""
    opt = run.optimizer
    name = type(opt).__name__
    if name == "QSGLD":
        _add_prior_to_gradients(run)
    elif name == "CTLD":
        _add_prior_to_gradients(run)
        n = run.num_data
        wd = run.config.weight_decay
        prior = 0.5 * wd * sum(float(p.detach().double().pow(2).sum()) for p in run.params) if wd else 0.0
        for p in run.params:
            if p.grad is not None:
                p.grad.mul_(n)
        opt.step(potential=n * (loss_val + prior))
        return
    opt.step()
    if getattr(opt, "counter", None) is not None:  # fast path: read its lazy finite flags (loss is read anyway)
        opt.check_finite()


def train_step(run: Run, progress: Progress, perm: torch.Tensor) -> float:
    """One step at ``progress.step``: learning rate, minibatch, forward/backward, optimizer step.

    Returns the training loss (mean over the global minibatch).  Raises
    ``FloatingPointError`` on a non-finite loss (nothing has been changed then).
    """
    config, opt = run.config, run.optimizer
    b = progress.step % run.steps_per_epoch
    factor = lr_factor(config, progress.step, run.steps_per_epoch, run.total_steps)
    for g, lr0 in zip(opt.param_groups, run.base_lrs):
        g["lr"] = lr0 * factor
    batch = perm[b * config.batch_size : (b + 1) * config.batch_size]
    shard = config.batch_size // run.shards
    x, y = run.data.x_train, run.data.y_train
    opt.zero_grad(set_to_none=True)
    if run.world_size > 1:
        idx = batch[run.rank * shard : (run.rank + 1) * shard]
        loss = F.cross_entropy(run.forward(x[idx]), y[idx])
        loss.backward()
        loss_val = loss.detach().double()
        import torch.distributed as dist  # noqa: PLC0415

        dist.all_reduce(loss_val)  # for the log (and CTLD's potential): the same on every rank
        loss_val = float(loss_val) / run.world_size
    else:
        loss_val = 0.0
        for s in range(run.shards):
            idx = batch[s * shard : (s + 1) * shard]
            loss = F.cross_entropy(run.model(x[idx]), y[idx])
            loss.backward()
            loss_val += float(loss.detach())
        if run.shards > 1:
            with torch.no_grad():
                for p in run.params:
                    if p.grad is not None:
                        p.grad.div_(run.shards)
        loss_val /= run.shards
    if not math.isfinite(loss_val):
        raise FloatingPointError(f"non-finite training loss {loss_val} at step {progress.step + 1} "
                                 f"(lr={config.lr} too large?)")
    _optimizer_step(run, loss_val)
    progress.step += 1
    progress.epoch_acc["loss_sum"] += loss_val
    progress.epoch_acc["count"] += 1
    return loss_val


def end_of_epoch(run: Run, progress: Progress) -> None:
    """Evaluation at the end of an epoch (and of the run): append a history entry (test
    error and NLL of the current model, on rank 0) and reset the epoch's loss accumulator."""
    step = progress.step
    if not (step % run.steps_per_epoch == 0 or step == run.total_steps):
        return
    acc = progress.epoch_acc
    entry = {"epoch": step / run.steps_per_epoch, "step": step,
             "train_loss": acc["loss_sum"] / max(acc["count"], 1), "lr": run.optimizer.param_groups[0]["lr"]}
    if run.rank == 0:
        probs = tmetrics.predict_probs(run.model, run.data.x_test)
        entry["test_error"] = tmetrics.error_rate(probs, run.data.y_test)
        entry["test_nll"] = tmetrics.nll(probs, run.data.y_test)
    progress.history.append(entry)
    progress.epoch_acc = {"loss_sum": 0.0, "count": 0}


def collect_sample(run: Run, progress: Progress, run_dir: Optional[Path]) -> None:
    """Sample collection at the planned steps (rank 0): test softmax into the BMA, the sample to
    ``samples/sample_XXXX.pt`` (checksummed).  CTLD: only inside the target band g(α) = 1."""
    if progress.step not in run.collect_at or run.rank != 0:
        return
    if getattr(run.optimizer, "in_target_band", True) is False:
        progress.skipped_samples += 1
        return
    progress.last_probs = tmetrics.predict_probs(run.model, run.data.x_test)
    progress.bma.add(progress.last_probs)
    if run_dir is not None:
        save_checkpoint({"step": progress.step, "model": run.model.state_dict()},
                        run_dir / "samples" / f"sample_{progress.bma.count - 1:04d}.pt")


class _Signals:
    """SIGINT/SIGTERM during the step loop: finish the step, checkpoint, stop (main thread only).

    A second signal while stopping raises ``KeyboardInterrupt`` at once (the last complete
    checkpoint stays intact: writes are atomic)."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s)

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: Optional[int] = None
        self._old: dict = {}

    def _handler(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping at once")
        self.received = signum

    def __enter__(self):
        if self.enabled:
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()


class TrainInterrupted(KeyboardInterrupt):
    """Raised by :func:`train` after SIGINT/SIGTERM, once the checkpoint of ``step`` is written."""

    def __init__(self, signum: int, step: int, total_steps: int, run_dir: Path):
        self.signum, self.step, self.total_steps, self.run_dir = signum, step, total_steps, run_dir
        name = signal.Signals(signum).name
        super().__init__(f"{name} at step {step}/{total_steps}: checkpoint written to "
                         f"{run_dir / CHECKPOINT_NAME}; resume with: qlangevin train --resume {run_dir}")


def _checkpoint_interval(run: Run) -> int:
    every = run.config.checkpoint_every
    return run.steps_per_epoch if every is None else int(every)


def run_steps(run: Run, progress: Progress, *, run_dir: Optional[Path] = None, signals: Optional[_Signals] = None,
              on_step: Callable[[int, float], object] | None = None) -> None:
    """The step loop from ``progress.step`` to ``run.stop_step``: step, epoch evaluation, sample
    collection, periodic checkpoints; stops after the step during which a signal arrived."""
    every = _checkpoint_interval(run)
    perm, perm_epoch = None, -1
    run.model.train()
    while progress.step < run.stop_step:
        epoch = progress.step // run.steps_per_epoch
        if epoch != perm_epoch:
            perm = tdata.epoch_permutation(run.num_data, derived_seed(run.config.seed, STREAM_DATA), epoch)
            perm = perm.to(run.device)
            perm_epoch = epoch
        loss_val = train_step(run, progress, perm)
        end_of_epoch(run, progress)
        collect_sample(run, progress, run_dir)
        if on_step is not None:
            on_step(progress.step, loss_val)
        if signals is not None and signals.received is not None:
            return
        if run_dir is not None and every and progress.step % every == 0 and progress.step < run.stop_step:
            save_checkpoint(checkpoint_state(run, progress), run_dir / CHECKPOINT_NAME)


def evaluate(run: Run, progress: Progress) -> dict:
    """Final evaluation (rank 0): metrics of the last sample (or the current model) and of the BMA.

    ``last``/``bma``: error %, NLL, ECE % (15 bins), published 9-bin ECE %; ``bma`` is None
    before the first sample.  Optimizers with hard-quantized weights (AskewSGD, ProxQuant,
    BinaryConnect) also report ``last_quantized``: the model evaluated at ``optimizer.quantized()``.
    """
    out: dict = {}
    if run.rank != 0:
        return out
    probs = progress.last_probs
    if not (progress.step in run.collect_at and probs is not None):
        probs = tmetrics.predict_probs(run.model, run.data.x_test)
    out["last"] = tmetrics.evaluate_probs(probs, run.data.y_test)
    out["bma"] = tmetrics.evaluate_probs(progress.bma.mean(), run.data.y_test) if progress.bma.count else None
    quantized = getattr(run.optimizer, "quantized", None)
    if callable(quantized):
        saved = [p.detach().clone() for p in run.params]
        try:
            with torch.no_grad():
                for p, q in zip(run.params, quantized()):
                    p.copy_(q)
            out["last_quantized"] = tmetrics.evaluate_probs(tmetrics.predict_probs(run.model, run.data.x_test),
                                                            run.data.y_test)
        finally:
            with torch.no_grad():
                for p, s in zip(run.params, saved):
                    p.copy_(s)
    return out


# ---------------------------------------------------------------------------- train


def _prepare_run_dir(run: Run, run_dir: Path, resume: bool, ck: Optional[dict] = None) -> Progress:
    """New run: create the directory and write config.json; resume: check it and load the checkpoint ``ck``.

    On resume, config.json's ``exact`` is read as the checkpoint's optimizer state says
    (:func:`checkpoint_path_exact`) and, where it said otherwise, corrected on disk."""
    config = run.config
    samples = check_run_dir(run_dir / "samples")  # refuse a planted link before writing anything
    if resume:
        saved = load_config(run_dir)
        written_exact = saved.exact
        ck_exact = checkpoint_path_exact(ck)
        if ck_exact is not None:
            saved = dataclasses.replace(saved, exact=ck_exact)
        diffs = {
            k: (getattr(saved, k), getattr(config, k))
            for k in saved.to_json()
            if k not in RESUMABLE_OVERRIDES and getattr(saved, k) != getattr(config, k)
        }
        if diffs:
            raise ValueError(f"resume: config differs from the saved run in {diffs}")
        progress = restore_checkpoint(run, run_dir, ck)
        if saved.exact != written_exact:  # an old run: record the path it really ran
            path = run_dir / "config.json"
            saved_json = json.loads(read_bytes_nofollow(path).decode("utf-8"))
            saved_json["config"]["exact"] = saved.exact
            _write_json(saved_json, path)
    else:
        if (run_dir / CHECKPOINT_NAME).exists() or (run_dir / "config.json").exists():
            raise FileExistsError(f"run_dir={str(run_dir)!r} already holds a run; use resume or a new directory")
        _write_json({"config": config.to_json(), "num_data": run.num_data, "steps_per_epoch": run.steps_per_epoch,
                     "total_steps": run.total_steps, "torch": torch.__version__}, run_dir / "config.json")
        progress = Progress()
        # a step-0 checkpoint: a run directory with a config can always be resumed
        save_checkpoint(checkpoint_state(run, progress), run_dir / CHECKPOINT_NAME)
    samples.mkdir(exist_ok=True)
    return progress


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    rank: int = 0,
    world_size: int = 1,
    sync_noise: bool = True,
    _model_out: dict | None = None,
) -> dict:
    """Run (or resume) one training/sampling run; returns the metrics dict (also metrics.json).

    ``run_dir``: where config.json, metrics.json, checkpoint.pt and samples/ go (None: nothing
    is written and resume is impossible).  ``resume=True`` continues from
    ``run_dir/checkpoint.pt``; the saved config must equal ``config`` except for the fields in
    :data:`RESUMABLE_OVERRIDES`.  ``rank``/``world_size``: DDP (the default process group must
    be initialised by the caller; see :mod:`torchport.ddp`).  Only rank 0 writes, holding the
    run directory's lock (a second writer gets :class:`torchport._io.RunLockedError`).

    Checkpoints: every ``config.checkpoint_every`` steps (None: every epoch; 0: only at the
    end).  On SIGINT/SIGTERM (main thread, a writing rank) the current step completes, a
    checkpoint is written and :class:`TrainInterrupted` is raised.

    Returns ``{"step", "total_steps", "num_samples", "bma": {...}, "last": {...}, "history"}``
    with the test metrics of the BMA and of the last sample (error %, NLL, ECE % 15 bins,
    published 9-bin ECE %); ``bma`` is None before the first sample is collected.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    if resume and run_dir is None:
        raise ValueError("resume=True needs run_dir")
    writer = rank == 0 and run_dir is not None
    run_dir = check_run_dir(run_dir) if run_dir is not None else None
    lock = None
    created = False
    if writer:
        if resume and not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"run_dir={str(run_dir)!r}: no config.json (not a qlangevin train run)")
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock = RunLock(run_dir).acquire()
        except BaseException:
            _remove_if_empty(run_dir, created)
            raise
    try:
        ck = None
        if resume:
            ck = _load_train_checkpoint(run_dir)
            config = _resume_path(config, run_dir, ck)
        run = build_run(config, rank=rank, world_size=world_size, sync_noise=sync_noise,
                        quantizers_exact=None if ck is None else checkpoint_quantizers_exact(ck))
        if writer:
            progress = _prepare_run_dir(run, run_dir, resume, ck)
        elif resume:
            progress = restore_checkpoint(run, run_dir, ck)
        else:
            progress = Progress()
        result = _train_loop(run, progress, run_dir if writer else None)
        if writer:
            _write_json(result, run_dir / "metrics.json")
    except BaseException:
        if lock is not None:
            lock.release()
            lock = None
            _remove_if_empty(run_dir, created)  # a new run that failed before writing anything
        raise
    finally:
        if lock is not None:
            lock.release()
    if _model_out is not None:
        _model_out["model"] = run.model
        _model_out["optimizer"] = run.optimizer
    return result


def _resume_path(config: TrainConfig, run_dir: Path, ck: dict) -> TrainConfig:
    """``config`` on the path the checkpoint was written by, where config.json says the other one.

    A run whose config.json says ``exact`` = e while its checkpoint's optimizer state was saved by
    the other path (QSGLD, CTLD, AskewSGD, BinaryConnect and ProxQuant runs started before those
    optimizers had a fast path: ``"exact": false``, exact path) resumes on the checkpoint's path,
    when ``config`` says e too (as ``qlangevin train --resume`` reads it from config.json).  Any
    other disagreement is left to the config comparison, which names it.
    """
    ck_exact = checkpoint_path_exact(ck)
    if ck_exact is None or ck_exact == config.exact:
        return config
    if load_config(run_dir).exact == config.exact:
        return dataclasses.replace(config, exact=ck_exact)
    return config


def _remove_if_empty(run_dir: Path, created: bool) -> None:
    if created:
        try:
            run_dir.rmdir()
        except OSError:  # not empty: keep what was written
            pass


def _train_loop(run: Run, progress: Progress, run_dir: Optional[Path]) -> dict:
    """The step loop with a progress bar, signal handling and the final checkpoint; the result dict."""
    config = run.config
    bar = None
    if config.progress and run.rank == 0:
        try:
            from tqdm.auto import tqdm  # noqa: PLC0415
        except ImportError:  # pragma: no cover
            tqdm = None
        if tqdm is not None:
            bar = tqdm(total=run.total_steps, initial=progress.step, desc=f"{config.model}/{config.method}",
                       unit="step", dynamic_ncols=True)

    def on_step(step, loss_val):
        if bar is not None:
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss_val:.4f}")

    t0 = time.perf_counter()
    try:
        with _Signals(enabled=run_dir is not None and run.world_size == 1) as signals:
            run_steps(run, progress, run_dir=run_dir, signals=signals, on_step=on_step)
            if run_dir is not None:
                save_checkpoint(checkpoint_state(run, progress), run_dir / CHECKPOINT_NAME)
            if signals.received is not None:
                raise TrainInterrupted(signals.received, progress.step, run.total_steps, run_dir)
    finally:
        if bar is not None:
            bar.close()
    result: dict = {"step": progress.step, "total_steps": run.total_steps, "num_samples": progress.bma.count,
                    "seconds": time.perf_counter() - t0, "history": progress.history}
    if progress.skipped_samples:
        result["skipped_samples"] = progress.skipped_samples
    result.update(evaluate(run, progress))
    return result


def parameters_vector(model_or_state: torch.nn.Module | dict[str, torch.Tensor]) -> torch.Tensor:
    """All parameters (or state-dict tensors) concatenated in order, for comparisons in tests."""
    if isinstance(model_or_state, dict):
        tensors = [v for v in model_or_state.values() if torch.is_floating_point(v)]
    else:
        tensors = [p.detach() for p in model_or_state.parameters()]
    return torch.cat([t.reshape(-1).cpu() for t in tensors])
