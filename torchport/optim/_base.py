"""Shared machinery of the torchport optimizers: generator, noise layout, noise-in, checks.

Every optimizer in :mod:`torchport.optim` is a ``torch.optim.Optimizer`` whose
``step`` computes one update of a spec equation.  This base class owns what is
common to all of them (the STYLE.md "driver" role, on the torch side):

* **Explicit randomness.**  One ``torch.Generator`` per optimizer (``seed=`` or
  ``generator=``; never the global RNG).  Its state is part of
  ``state_dict()``, so save + resume continues bit for bit.
* **Noise layout.**  Each optimizer declares the per-element noise streams a
  step consumes (``noise_layout``: ordered ``(name, "normal"|"uniform")``
  pairs).  Per step, for each stream in order, one flat vector is drawn whose
  length is the total number of elements of the parameters that take a step
  (parameter-group order, parameters without ``.grad`` skipped); parameter i
  uses the slice at its offset, viewed to its shape.  Every DDP rank seeded
  alike therefore draws identical noise.
* **Noise-in.**  ``step(noise={name: tensor})`` uses the given tensors instead
  of the generator (flat, of that total length, or of the parameter's shape when
  there is one parameter), and the generator is not advanced.  This is how the
  crosscheck feeds refimpl's pre-drawn noise (docs/torchport.md).
* **Checks.**  A non-finite gradient raises ``FloatingPointError`` naming the
  parameter (its name when the optimizer was given ``named_parameters()``).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

import torch
from torch.optim import Optimizer

from refimpl.formats import parse_format
from torchport import quantize as tq

__all__ = ["NoisyOptimizer", "as_format"]


def as_format(value, name: str):
    """Accept a refimpl format, ``None`` or a format string such as ``"fixed:8:6"``."""
    if value is None or value == "none":
        return None
    if isinstance(value, str):
        try:
            return parse_format(value)
        except ValueError as exc:
            raise ValueError(f"{name}={value!r} is not a valid format: {exc}") from exc
    if not hasattr(value, "code"):
        raise TypeError(f"{name} must be a refimpl format, a format string or None, got {value!r}")
    return value


def _positive(name, value, *, allow_zero=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not (v == v) or v in (float("inf"), float("-inf")) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return v


class NoisyOptimizer(Optimizer):
    """Base class: generator ownership, noise layout and noise-in, finite-gradient check.

    Subclasses define ``noise_layout`` (property) and ``_update_group(group,
    params, grads, noise)``, where ``noise`` maps each stream name to a list of
    tensors shaped like ``params``.
    """

    def __init__(self, params, defaults: dict, *, seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, foreach: Optional[bool] = None):
        if generator is None:
            if seed is None:
                raise ValueError("pass seed= (an int) or generator= (a torch.Generator); got neither "
                                 "(torchport never uses the global RNG)")
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise TypeError(f"seed must be an int, got {seed!r}")
            generator = torch.Generator(device="cpu")
            generator.manual_seed(seed)
        elif not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if foreach is not None and not isinstance(foreach, bool):
            raise TypeError(f"foreach must be a bool or None, got {foreach!r}")
        defaults = dict(defaults, foreach=foreach)
        super().__init__(params, defaults)
        self.generator = generator
        self.num_steps = 0

    # ------------------------------------------------------------ noise layout
    @property
    def noise_layout(self) -> tuple:
        """Ordered ``(name, "normal" | "uniform")`` streams consumed per element per step."""
        raise NotImplementedError

    def _active(self):
        """[(group, params, grads, names)] for parameters that take a step."""
        out = []
        for gi, group in enumerate(self.param_groups):
            names = group.get("param_names")
            ps, gs, ns = [], [], []
            for pi, p in enumerate(group["params"]):
                if p.grad is None or not p.requires_grad:
                    continue
                if p.grad.is_sparse:
                    raise TypeError("torchport optimizers do not support sparse gradients")
                ps.append(p)
                gs.append(p.grad)
                ns.append(names[pi] if names is not None else
                          f"param_groups[{gi}]['params'][{pi}] (shape {tuple(p.shape)})")
            if ps:
                out.append((group, ps, gs, ns))
        return out

    @staticmethod
    def _check_finite(grads, names):
        # A non-finite entry makes the tensor's sum non-finite (inf + finite = inf, inf − inf = NaN), so one
        # cheap reduction per tensor and one sync suffice; an overflowing sum of finite values is re-checked
        # elementwise and not reported.
        sums = torch.stack([g.sum(dtype=torch.float64) if g.dtype != torch.float64 else g.sum() for g in grads])
        if bool(torch.isfinite(sums).all()):
            return
        for g, name in zip(grads, names):
            if not bool(torch.isfinite(g).all()):
                raise FloatingPointError(f"non-finite gradient in parameter {name}")

    def _noise_dtype(self, params):
        return torch.float64 if all(p.dtype == torch.float64 for p in params) else torch.float32

    def _draw(self, kind, n, dtype):
        g = self.generator
        if kind == "normal":
            return torch.randn(n, generator=g, dtype=dtype, device=g.device)
        return torch.rand(n, generator=g, dtype=dtype, device=g.device)

    def _step_noise(self, noise: Optional[Mapping], params, layout=None) -> dict:
        """One flat tensor per stream, either drawn (in layout order) or taken from ``noise``."""
        layout = self.noise_layout if layout is None else layout
        total = sum(p.numel() for p in params)
        dtype = self._noise_dtype(params)
        device = params[0].device
        out = {}
        if noise is None:
            for name, kind in layout:
                out[name] = self._draw(kind, total, dtype).to(device)
            return out
        if not isinstance(noise, Mapping):
            raise TypeError(f"noise must be a mapping name -> tensor, got {type(noise).__name__}")
        names = [n for n, _ in layout]
        extra = set(noise) - set(names)
        if extra:
            raise ValueError(f"noise has unknown streams {sorted(extra)}; this optimizer uses {names}")
        for name in names:
            if name not in noise:
                raise ValueError(f"noise is missing stream {name!r}; this optimizer uses {names}")
            t = torch.as_tensor(noise[name])
            if t.numel() != total:
                raise ValueError(f"noise[{name!r}] must have {total} elements, got shape {tuple(t.shape)}")
            out[name] = t.reshape(-1).to(device=device, dtype=dtype)
        return out

    @staticmethod
    def _split(flat: dict, params) -> dict:
        res = {name: [] for name in flat}
        off = 0
        for p in params:
            n = p.numel()
            for name, t in flat.items():
                res[name].append(t[off:off + n].view(p.shape))
            off += n
        return res

    # -------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure=None, *, noise: Optional[Mapping] = None):
        """One update.  ``closure`` re-evaluates the loss (returned); ``noise`` feeds pre-drawn noise."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        active = self._active()
        if not active:
            self.num_steps += 1
            return loss
        all_params = [p for _, ps, _, _ in active for p in ps]
        for _, _, gs, ns in active:
            self._check_finite(gs, ns)
        self._before_step(active, loss)
        flat = self._step_noise(noise, all_params)
        off = 0
        for group, ps, gs, _ in active:
            n = sum(p.numel() for p in ps)
            part = {name: t[off:off + n] for name, t in flat.items()}
            off += n
            self._update_group(group, ps, gs, self._split(part, ps))
        self.num_steps += 1
        return loss

    def _before_step(self, active, loss):
        """Hook for optimizers that need the loss (CTLD) or global state; default no-op."""

    def _update_group(self, group, params, grads, noise):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _use_foreach(group, params) -> bool:
        fe = group.get("foreach")
        if fe is None:
            return len(params) > 1 and all(p.device.type in ("cpu", "cuda") for p in params)
        return bool(fe)

    # ------------------------------------------------------------- checkpoints
    def state_dict(self):
        """``torch.optim`` state plus the generator state and the step counter (bit-for-bit resume)."""
        sd = super().state_dict()
        sd["generator_state"] = self.generator.get_state().clone()
        sd["num_steps"] = self.num_steps
        extra = self._extra_state()
        if extra is not None:
            sd["extra_state"] = extra
        return sd

    def load_state_dict(self, state_dict):
        sd = dict(state_dict)
        gen = sd.pop("generator_state", None)
        steps = sd.pop("num_steps", None)
        extra = sd.pop("extra_state", None)
        if gen is None:
            raise ValueError("state_dict has no 'generator_state'; it was not saved by a torchport optimizer")
        super().load_state_dict(sd)
        self.generator.set_state(gen.clone() if isinstance(gen, torch.Tensor) else torch.as_tensor(gen))
        self.num_steps = int(steps or 0)
        if extra is not None:
            self._load_extra_state(extra)

    def _extra_state(self):
        return None

    def _load_extra_state(self, extra):  # pragma: no cover - overridden where used
        pass


class LowPrecisionWeightsMixin:
    """Weight quantization shared by :class:`LowPrecisionSGLD` and :class:`LowPrecisionSGHMC`.

    Needs the attributes ``weight_format`` and ``accumulator`` and the
    :class:`NoisyOptimizer` noise helpers.
    """

    @torch.no_grad()
    def quantize_weights_(self, noise=None):
        """θ ← Q_W(acc) (stochastic, stream ``"u_weight"``) for "full"; θ ← Q^d(θ) (nearest) for "low".

        "low" stores Q^d(θ_0) as refimpl's LP-L init does (no noise consumed); the
        published code's first step uses the unquantized weights (§7.2.5), which
        ``quantize_initial=False`` reproduces.
        """
        if self.weight_format is None:
            return
        params = [p for g in self.param_groups for p in g["params"]]
        if self.accumulator == "low":
            for p in params:
                p.copy_(tq.quantize(p.detach(), self.weight_format, "nearest"))
            return
        flat = self._step_noise(noise, params, layout=(("u_weight", "uniform"),))
        for p, u in zip(params, self._split(flat, params)["u_weight"]):
            src = self.state[p]["accumulator"] if self.accumulator == "full" else p
            p.copy_(tq._sr_fast(src, self.weight_format, u))
