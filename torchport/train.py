"""Training/sampling driver for the MNIST validation (``qlangevin train``).

This is the "driver" of STYLE.md on the torch side: it owns data, model, optimizer
construction, the step loop, sample collection, evaluation, checkpoints and resume.  The
optimizers (:mod:`torchport.optim`) compute one update each and know nothing of this.

Loss and scaling (ALGORITHMS §3.1 (S0), §3.11).  The loss put in ``.grad`` is the mean
minibatch cross-entropy; the Gaussian prior enters as ``weight_decay`` wd in the optimizer
(added to the gradient *after* Q_G, unquantized, as the published code does).  Hence

    L(θ) = (1/n) Σ_{i∈batch} −log p(y_i | x_i, θ) + (wd/2)‖θ‖²  ≈  U(θ)/N,

a prior N(0, 1/(wd·N)) per weight, and each optimizer is built with ``num_data = N`` (the
number of training examples used), so that an SGLD step is (S1) with step η = lr/N and
injected noise variance V = 2·lr·T/N = 2ηT per coordinate.

Sample collection and prediction (§3.7).  After a burn-in of ``burn_in`` (fraction of all
steps) ``num_samples`` samples are collected at evenly spaced steps ending at the last step
(noise-free methods keep only the final model, as the published SGD baselines do).  Each
collected sample is the parameter vector the network uses (for LP-F: the quantized weights
Q_W(acc)); it is saved under ``samples/`` and its test-set softmax is added to a running
Bayesian model average (:class:`torchport.metrics.BMA`).

Determinism and resume.  All randomness comes from explicit generators derived from
``seed``: model initialisation, the optimizer's generator, the activation/error
quantizers' generator, and the minibatch order (:func:`torchport.data.epoch_permutation`,
a pure function of (seed, epoch)).  A checkpoint stores the step, model, optimizer state
(including its generator), the quantizers' generator state, the BMA and the history, so
that N steps straight and N/2 + resume N/2 give identical bits.

Multi-process (DDP; see :mod:`torchport.distributed`).  With ``world_size`` W > 1 each
rank takes a contiguous 1/W shard of every global minibatch, DDP averages the gradients,
and every rank's optimizer is seeded identically, so all ranks draw identical noise and the
replicas stay identical.  ``grad_shards`` = W in a single process reproduces the same
arithmetic (shard-wise backward, gradient summed then divided by W) bit for bit.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.nn import functional as F

from torchport import data as tdata
from torchport import metrics as tmetrics
from torchport import models as tmodels

#: method -> (optimizer class name in torchport.optim, keyword arguments).
METHODS: dict[str, tuple[str, dict]] = {
    "sgd": ("SGLD", {"add_noise": False}),
    "sgld": ("SGLD", {}),
    "sgd_lp_f": ("LowPrecisionSGLD", {"accumulator": "full", "add_noise": False}),
    "sgd_lp_l": ("LowPrecisionSGLD", {"accumulator": "low", "add_noise": False}),
    "sgld_lp_f": ("LowPrecisionSGLD", {"accumulator": "full"}),
    "sgld_lp_l": ("LowPrecisionSGLD", {"accumulator": "low", "variance_corrected": False}),
    "sgld_vc": ("LowPrecisionSGLD", {"accumulator": "low", "variance_corrected": True}),
    "sghmc": ("SGHMC", {}),
    "sghmc_lp_f": ("LowPrecisionSGHMC", {"accumulator": "full"}),
    "sghmc_lp_l": ("LowPrecisionSGHMC", {"accumulator": "low", "variance_corrected": False}),
    "sghmc_vc": ("LowPrecisionSGHMC", {"accumulator": "low", "variance_corrected": True}),
    # plain torch.optim.SGD (no torchport code involved); used to test the loop itself
    "torch_sgd": ("torch.optim.SGD", {}),
}
LOW_PRECISION = {m for m in METHODS if "_lp_" in m or m.endswith("_vc")}
NOISE_FREE = {"sgd", "sgd_lp_f", "sgd_lp_l", "torch_sgd"}
#: Methods that store the weights in low precision (no full-precision accumulator).
LOW_ACCUMULATOR = {"sgd_lp_l", "sgld_lp_l", "sgld_vc", "sghmc_lp_l", "sghmc_vc"}
INIT_ROUNDINGS = ("optimizer", "stochastic")
SCHEDULES = ("constant", "decay", "cyclical")
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: Fields that may differ between a run and its resumption.
RESUMABLE_OVERRIDES = ("max_steps", "progress", "checkpoint_every", "device", "data_dir")


def default_data_dir() -> str:
    """``$QLANGEVIN_DATA`` if set, else ``../shared/data`` beside the repository (CI layout)."""
    env = os.environ.get("QLANGEVIN_DATA")
    if env:
        return env
    return str(Path(__file__).resolve().parents[2] / "shared" / "data")


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
    max_steps: Optional[int] = None
    checkpoint_every: int = 0  # steps; 0: only at the end (and at max_steps)
    progress: bool = True

    def validate(self) -> "TrainConfig":
        """Raise ``ValueError`` naming the first bad field and its value."""
        def bad(name, why):
            raise ValueError(f"{name}={getattr(self, name)!r}: {why}")

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
                    bad(name, f"method {self.method!r} is full precision; use a low-precision method "
                              "(sgld_lp_f, sgld_lp_l, sgld_vc, ...) or drop the format")
        for name in ("weight_format", "grad_format", "act_format", "error_format"):
            value = getattr(self, name)
            if value not in (None, "none"):
                from refimpl.formats import parse_format  # noqa: PLC0415

                try:
                    parse_format(value)
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{name}={value!r}: not a valid format ({exc})") from None
        if not (self.epochs > 0 and math.isfinite(self.epochs)):
            bad("epochs", "must be > 0")
        for name in ("batch_size", "num_samples", "cycles", "grad_shards"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                bad(name, "must be a positive integer")
        for name in ("lr", "friction", "inverse_mass"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                bad(name, "must be a finite number > 0")
        for name in ("temperature", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                bad(name, "must be a finite number >= 0")
        if not 0 <= self.burn_in < 1:
            bad("burn_in", "must be a fraction in [0, 1)")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"expected one of {SCHEDULES}")
        if self.subset is not None and not 1 <= self.subset <= 60000:
            bad("subset", "must be between 1 and 60000")
        if self.init_rounding not in INIT_ROUNDINGS:
            bad("init_rounding", f"expected one of {INIT_ROUNDINGS}")
        if self.dtype not in DTYPES:
            bad("dtype", f"expected one of {tuple(DTYPES)}")
        if self.batch_size % self.grad_shards:
            bad("batch_size", f"must be divisible by grad_shards={self.grad_shards}")
        if self.max_steps is not None and self.max_steps < 0:
            bad("max_steps", "must be >= 0")
        if self.checkpoint_every < 0:
            bad("checkpoint_every", "must be >= 0")
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"config has unknown fields {sorted(unknown)}")
        return cls(**d)


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


# ---------------------------------------------------------------------------- builders


def _optim_class(name: str):
    import importlib  # noqa: PLC0415

    for module in ("torchport.optim", "torchport.optim.sgld", "torchport.optim.sghmc"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if cls is not None:
            return cls
    return None


def build_optimizer(config: TrainConfig, params, num_data: int):
    """The optimizer of ``config.method`` (see :data:`METHODS`) under the scaling contract (S0).

    Built with ``lr = config.lr``, ``temperature = T``, ``num_data = N`` (training examples
    used) and ``weight_decay = wd``, so that with the mean minibatch loss an SGLD step is
    (S1) with η = lr/N and noise variance 2·lr·T/N (ALGORITHMS §3.1, §3.11; LP-SGLD code
    bnn/optim.py).  Low-precision methods get ``weight_format`` and ``grad_format`` (the
    weight format unless ``config.grad_format`` says otherwise; ``"none"``: full-precision
    gradients); SGHMC methods get ``friction`` and ``inverse_mass``.  The optimizer's
    generator is seeded with ``derived_seed(config.seed, STREAM_OPTIM)`` — the same on every
    DDP rank.  Randomness: none here (the low-precision optimizers quantize the initial
    weights from their own generator when constructed).
    """
    cls_name, extra = METHODS[config.method]
    seed = derived_seed(config.seed, STREAM_OPTIM)
    if cls_name == "torch.optim.SGD":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay, foreach=False)
    cls = _optim_class(cls_name)
    if cls is None:
        raise NotImplementedError(f"method={config.method!r} needs torchport.optim.{cls_name}, not available")
    kwargs = dict(lr=config.lr, temperature=config.temperature, num_data=num_data,
                  weight_decay=config.weight_decay, seed=seed, **extra)
    if config.method in LOW_PRECISION or cls_name.startswith("LowPrecision"):
        wf = None if config.weight_format in (None, "none") else config.weight_format
        gf = config.grad_format if config.grad_format is not None else wf
        kwargs.update(weight_format=wf, grad_format=None if gf == "none" else gf)
    if "SGHMC" in cls_name:
        kwargs.update(friction=config.friction, inverse_mass=config.inverse_mass)
    accepted = inspect.signature(cls.__init__).parameters
    missing = [k for k in kwargs if k not in accepted]
    if missing:
        raise TypeError(f"torchport.optim.{cls_name} does not accept {missing}")
    return cls(params, **kwargs)


def wrap_activation_quantizers(model, config: TrainConfig, generator: torch.Generator):
    """Quantize activations (forward, Q_A) and errors (backward, Q_E) with torchport.nn, if asked.

    Uses :func:`torchport.nn.insert_quantizers`: a quantizer after every Conv2d, Linear and
    ReLU module except the classifier (§2.7; for logreg, whose only layer is the classifier,
    nothing is inserted).  Stochastic rounding draws from ``generator`` (its state is part of
    the model's state dict and of the checkpoint).  Returns the model.
    """
    if config.act_format in (None, "none") and config.error_format in (None, "none"):
        return model
    from torchport import nn as tnn  # noqa: PLC0415

    act = None if config.act_format in (None, "none") else config.act_format
    err = config.error_format if config.error_format is not None else act
    err = None if err == "none" else err
    return tnn.insert_quantizers(model, act, err, generator=generator)


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
        None if config.subset is None else torch.Generator().manual_seed(derived_seed(config.seed, STREAM_SUBSET)),
    ).numpy()
    xtr, ytr = tdata.to_tensors(arrays.x_train[idx], arrays.y_train[idx], layout=layout, dtype=dtype)
    xte, yte = tdata.to_tensors(arrays.x_test, arrays.y_test, layout=layout, dtype=dtype)
    ds = Dataset(xtr.to(device), ytr.to(device), xte.to(device), yte.to(device))
    if len(_DATA_CACHE) > 4:
        _DATA_CACHE.clear()
    _DATA_CACHE[key] = ds
    return ds


# ---------------------------------------------------------------------------- checkpoints


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_json(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir/config.json``."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"run_dir={str(run_dir)!r}: no config.json (not a qlangevin train run)")
    return TrainConfig.from_json(json.loads(path.read_text())["config"])


# ---------------------------------------------------------------------------- the loop


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
    be initialised by the caller; see :mod:`torchport.distributed`).  Only rank 0 writes.

    Returns ``{"step", "total_steps", "num_samples", "bma": {...}, "last": {...}, "history"}``
    with the test metrics of the BMA and of the last sample (error %, NLL, ECE % 15 bins,
    published 9-bin ECE %); ``bma`` is None before the first sample is collected.
    """
    config.validate()
    if world_size > 1 and config.grad_shards != 1:
        raise ValueError(f"grad_shards={config.grad_shards}: must be 1 under DDP (world_size={world_size})")
    shards = world_size if world_size > 1 else config.grad_shards
    if config.batch_size % shards:
        raise ValueError(f"batch_size={config.batch_size}: must be divisible by world_size={shards}")
    device = torch.device(config.device)
    run_dir = Path(run_dir) if run_dir is not None else None
    writer = rank == 0 and run_dir is not None

    ds = load_dataset(config, device)
    n_train = ds.x_train.shape[0]
    if config.batch_size > n_train:
        raise ValueError(f"batch_size={config.batch_size}: larger than the training set ({n_train})")
    steps_per_epoch = n_train // config.batch_size  # drop_last
    total_steps = max(int(round(config.epochs * steps_per_epoch)), 1)
    stop_step = total_steps if config.max_steps is None else min(config.max_steps, total_steps)
    collect_at = set(collection_steps(config, total_steps, steps_per_epoch))

    model = tmodels.build_model(
        config.model, generator=torch.Generator().manual_seed(derived_seed(config.seed, STREAM_INIT)),
        device=device, dtype=DTYPES[config.dtype],
    )
    act_gen = torch.Generator(device=device).manual_seed(derived_seed(config.seed, STREAM_ACT))
    model = wrap_activation_quantizers(model, config, act_gen)
    params = list(model.parameters())
    if config.init_rounding == "stochastic" and config.method in LOW_ACCUMULATOR:
        # θ_0 ← Q^s(θ_0): the optimizer's own initial Q^d (refimpl's LP-L start) then leaves it
        # unchanged.  With a coarse grid, Q^d maps every small initial weight to 0, which for a
        # ReLU network is an absorbing dead state when no noise is injected (docs/results/mnist.md).
        from torchport import quantize as tq  # noqa: PLC0415
        from refimpl.formats import parse_format  # noqa: PLC0415

        fmt = parse_format(config.weight_format)
        g_init = torch.Generator().manual_seed(derived_seed(config.seed, STREAM_INIT_ROUND))
        with torch.no_grad():
            for p in params:
                p.copy_(tq.stochastic_round(p.detach().cpu(), fmt, g_init).to(p.device))
    optimizer = build_optimizer(config, params, num_data=n_train)
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    step = 0
    bma = tmetrics.BMA()
    history: list[dict] = []
    epoch_acc = {"loss_sum": 0.0, "count": 0}
    if resume:
        if run_dir is None:
            raise ValueError("resume=True needs run_dir")
        saved = load_config(run_dir)
        diffs = {
            k: (getattr(saved, k), getattr(config, k))
            for k in saved.to_json()
            if k not in RESUMABLE_OVERRIDES and getattr(saved, k) != getattr(config, k)
        }
        if diffs:
            raise ValueError(f"resume: config differs from the saved run in {diffs}")
        ck = torch.load(run_dir / "checkpoint.pt", map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        act_gen.set_state(ck["act_generator"])
        bma.load_state_dict(ck["bma"])
        step, history, epoch_acc = int(ck["step"]), list(ck["history"]), dict(ck["epoch_acc"])
    elif writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / "checkpoint.pt").exists():
            raise FileExistsError(f"run_dir={str(run_dir)!r} already holds a run; use resume or a new directory")
        _write_json({"config": config.to_json(), "num_data": n_train, "steps_per_epoch": steps_per_epoch,
                     "total_steps": total_steps, "torch": torch.__version__}, run_dir / "config.json")

    ddp_model = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415

        from torchport.distributed import broadcast_generator_state  # noqa: PLC0415

        ddp_model = DDP(model)
        if hasattr(optimizer, "generator"):
            if sync_noise:
                broadcast_generator_state(optimizer.generator)  # same noise on every rank
            else:  # the broken scheme (each rank its own noise), kept to test the replica check
                optimizer.generator.manual_seed(derived_seed(config.seed, STREAM_OPTIM) + rank)
    if writer:
        (run_dir / "samples").mkdir(exist_ok=True)

    def checkpoint():
        if not writer:
            return
        _atomic_save({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "act_generator": act_gen.get_state(), "bma": bma.state_dict(), "history": history,
                      "epoch_acc": epoch_acc, "config": config.to_json()}, run_dir / "checkpoint.pt")

    last_probs = None
    try:
        from tqdm.auto import tqdm  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = None
    if config.progress and rank == 0 and tqdm is not None:
        bar = tqdm(total=total_steps, initial=step, desc=f"{config.model}/{config.method}", unit="step",
                   dynamic_ncols=True)
    t0 = time.perf_counter()
    model.train()
    perm, perm_epoch = None, -1
    shard = config.batch_size // shards
    while step < stop_step:
        epoch, b = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm = tdata.epoch_permutation(n_train, derived_seed(config.seed, STREAM_DATA), epoch).to(device)
            perm_epoch = epoch
        factor = lr_factor(config, step, steps_per_epoch, total_steps)
        for g, lr0 in zip(optimizer.param_groups, base_lrs):
            g["lr"] = lr0 * factor
        batch = perm[b * config.batch_size : (b + 1) * config.batch_size]
        optimizer.zero_grad(set_to_none=True)
        if world_size > 1:
            idx = batch[rank * shard : (rank + 1) * shard]
            loss = F.cross_entropy(ddp_model(ds.x_train[idx]), ds.y_train[idx])
            loss.backward()
            loss_val = loss.detach().double()
            import torch.distributed as dist  # noqa: PLC0415

            dist.all_reduce(loss_val)  # for the log only
            loss_val = float(loss_val) / world_size
        else:
            loss_val = 0.0
            for s in range(shards):
                idx = batch[s * shard : (s + 1) * shard]
                loss = F.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx])
                loss.backward()
                loss_val += float(loss.detach())
            if shards > 1:
                with torch.no_grad():
                    for p in params:
                        if p.grad is not None:
                            p.grad.div_(shards)
            loss_val /= shards
        if not math.isfinite(loss_val):
            raise FloatingPointError(f"non-finite training loss {loss_val} at step {step + 1}")
        optimizer.step()
        step += 1
        epoch_acc["loss_sum"] += loss_val
        epoch_acc["count"] += 1
        if step % steps_per_epoch == 0 or step == total_steps:
            entry = {"epoch": step / steps_per_epoch, "step": step,
                     "train_loss": epoch_acc["loss_sum"] / max(epoch_acc["count"], 1), "lr": optimizer.param_groups[0]["lr"]}
            if rank == 0:
                probs = tmetrics.predict_probs(model, ds.x_test)
                entry["test_error"] = tmetrics.error_rate(probs, ds.y_test)
                entry["test_nll"] = tmetrics.nll(probs, ds.y_test)
            history.append(entry)
            epoch_acc = {"loss_sum": 0.0, "count": 0}
        if step in collect_at and rank == 0:
            last_probs = tmetrics.predict_probs(model, ds.x_test)
            bma.add(last_probs)
            if writer:
                _atomic_save({"step": step, "model": model.state_dict()},
                             run_dir / "samples" / f"sample_{bma.count - 1:04d}.pt")
        if bar is not None:
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss_val:.4f}")
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < stop_step:
            checkpoint()
    if bar is not None:
        bar.close()
    checkpoint()

    result: dict = {"step": step, "total_steps": total_steps, "num_samples": bma.count,
                    "seconds": time.perf_counter() - t0, "history": history}
    if rank == 0:
        if not (step in collect_at and last_probs is not None):
            last_probs = tmetrics.predict_probs(model, ds.x_test)
        result["last"] = tmetrics.evaluate_probs(last_probs, ds.y_test)
        result["bma"] = tmetrics.evaluate_probs(bma.mean(), ds.y_test) if bma.count else None
    if writer:
        _write_json(result, run_dir / "metrics.json")
    if _model_out is not None:
        _model_out["model"] = model
        _model_out["optimizer"] = optimizer
    return result


def parameters_vector(model_or_state) -> torch.Tensor:
    """All parameters (or state-dict tensors) concatenated in order, for comparisons in tests."""
    if isinstance(model_or_state, dict):
        tensors = [v for v in model_or_state.values() if torch.is_floating_point(v)]
    else:
        tensors = [p.detach() for p in model_or_state.parameters()]
    return torch.cat([t.reshape(-1).cpu() for t in tensors])
