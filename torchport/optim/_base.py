"""Shared machinery of the torchport optimizers: generator, noise layout, noise-in, checks.

Every optimizer in :mod:`torchport.optim` is a ``torch.optim.Optimizer`` whose
``step`` computes one update of a spec equation.  This base class owns what is
common to all of them (the STYLE.md "driver" role, on the torch side):

* **Two paths.**  Every optimizer of :mod:`torchport.optim` (``fast_path_available``) runs
  by default (``exact=False``) a fused counter-stream update computed in the parameter's
  dtype (:meth:`NoisyOptimizer._fast_step`, which calls the class's ``_fast_update_group``
  -- one compiled call for all parameters, SGLD/SGHMC -- or ``_fast_update`` per parameter;
  seed and step count in :class:`torchport.optim._fastpath.CounterStream`, lazy finite
  flags read by :meth:`NoisyOptimizer.check_finite`).  ``exact=True`` is everything
  described below.  docs/torchport.md, "Two paths".
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
  Per-group values are checked against the class's ``group_rules`` table
  (``{key: rule}``, :func:`check_value`) wherever a group can come from: the
  constructor, :meth:`~NoisyOptimizer.add_param_group`,
  :meth:`~NoisyOptimizer.load_state_dict` and, because ``param_groups`` is
  mutable (LR schedulers write to it), at the start of every ``step``.  An
  optimizer-wide option (a constructor argument that is not a group key, e.g.
  ``weight_format``) given in a group is rejected by name.  A call that raises
  changes nothing: ``step`` validates and prepares everything before it draws
  noise or writes a parameter, and ``load_state_dict`` checks the whole
  state dict before loading any of it.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Mapping, Optional

import torch
from torch.optim import Optimizer

from refimpl.formats import parse_format
from torchport import quantize as tq

__all__ = ["NoisyOptimizer", "as_format", "check_value"]


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


def _real(name, value, where=""):
    """float(value) for a real number (bool and str refused, a one-element tensor accepted); TypeError otherwise."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise TypeError(f"{where}{name} must be a real number, got {value!r}")
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise TypeError(f"{where}{name} must be a real number, got a tensor of shape {tuple(value.shape)}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}{name} must be a real number, got {value!r}") from None


def _positive(name, value, *, allow_zero=False, where=""):
    v = _real(name, value, where)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{where}{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return v


def _integer(name, value, minimum, where=""):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}{name} must be an int >= {minimum}, got {value!r}")
    return value


#: Rules of :func:`check_value`: name -> (check(name, value, where) -> coerced value).
RULES = {
    "positive": lambda n, v, w: _positive(n, v, where=w),
    "nonnegative": lambda n, v, w: _positive(n, v, allow_zero=True, where=w),
    "finite": lambda n, v, w: _finite(n, v, w),
    "open_unit": lambda n, v, w: _interval(n, v, w, 0.0, 1.0, closed_lo=False),
    "unit": lambda n, v, w: _interval(n, v, w, 0.0, 1.0, closed_lo=True),
    "greater_than_one": lambda n, v, w: _greater_than_one(n, v, w),
    "int>=0": lambda n, v, w: _integer(n, v, 0, w),
    "int>=1": lambda n, v, w: _integer(n, v, 1, w),
    "int>=2": lambda n, v, w: _integer(n, v, 2, w),
    "bool_or_none": lambda n, v, w: _bool_or_none(n, v, w),
}


def _finite(name, value, where):
    v = _real(name, value, where)
    if not math.isfinite(v):
        raise ValueError(f"{where}{name} must be finite, got {value!r}")
    return v


def _interval(name, value, where, lo, hi, closed_lo):
    v = _real(name, value, where)
    if not ((lo <= v if closed_lo else lo < v) and v < hi):
        raise ValueError(f"{where}{name} must lie in {'[' if closed_lo else '('}{lo:g}, {hi:g}), got {value!r}")
    return v


def _greater_than_one(name, value, where):
    v = _real(name, value, where)
    if not (1.0 < v < math.inf):
        raise ValueError(f"{where}{name} must be > 1 and finite, got {value!r}")
    return v


def _bool_or_none(name, value, where):
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{where}{name} must be a bool or None, got {value!r}")
    return value


def check_value(name: str, value, rule, where: str = ""):
    """Check ``value`` of argument ``name`` against ``rule`` and return it coerced (float / int).

    ``rule`` is a key of :data:`RULES` ("positive", "nonnegative", "finite",
    "open_unit" (0, 1), "unit" [0, 1), "greater_than_one", "int>=0", "int>=1",
    "int>=2", "bool_or_none") or a callable ``(name, value, where) -> value``.
    Raises ``TypeError`` (not a number of the right kind) or ``ValueError``
    (out of range, NaN, inf) with a message naming ``where + name`` and the value.
    """
    check = RULES[rule] if isinstance(rule, str) else rule
    return check(name, value, where)


class NoisyOptimizer(Optimizer):
    """Base class: generator ownership, noise layout and noise-in, finite-gradient check.

    Subclasses define ``noise_layout`` (property) and ``_update_group(group,
    params, grads, noise)``, where ``noise`` maps each stream name to a list of
    tensors shaped like ``params``; they declare the checks of their per-group
    values in ``group_rules`` (``{key: rule}``, see :func:`check_value`; keys a
    group does not have are skipped), may refine them in :meth:`_validate_group`,
    and initialise the per-parameter state of a group added after construction
    in :meth:`_init_group`.
    """

    #: Per-group values and their rules (check_value).  The common table; a subclass extends or replaces it.
    group_rules = {"lr": "positive", "temperature": "nonnegative", "num_data": "positive",
                   "weight_decay": "nonnegative", "friction": "positive", "inverse_mass": "positive",
                   "foreach": "bool_or_none"}
    #: Constructor arguments that are not optimizer-wide options (never rejected in a group).
    _not_options = frozenset({"self", "params", "seed", "generator"})

    #: whether the class has the default (fast) counter-stream path (``exact=False``); subclasses that do
    #: implement :meth:`_fast_group_args` and :meth:`_fast_update`
    fast_path_available = False

    def __init__(self, params, defaults: dict, *, seed: Optional[int] | torch.Generator = None,
                 generator: Optional[torch.Generator] = None, foreach: Optional[bool] = None,
                 exact: bool = True, compile: Optional[bool] = None, check_every: int = 0):
        if not isinstance(exact, bool):
            raise TypeError(f"exact must be True or False, got {exact!r}")
        if not exact and not self.fast_path_available:
            raise ValueError(f"exact=False: {type(self).__name__} has no fast path; use exact=True")
        if compile is not None and not isinstance(compile, bool):
            raise TypeError(f"compile must be True, False or None (the default), got {compile!r}")
        _integer("check_every", check_every, 0)
        if exact and (compile or check_every):
            bad = "compile" if compile else "check_every"
            raise ValueError(f"{bad}={compile if compile else check_every!r} applies to the default (fast) path "
                             "only; exact=True runs the float64 path op by op")
        if foreach is not None and not isinstance(foreach, bool):
            raise TypeError(f"foreach must be a bool or None, got {foreach!r}")
        if not exact and foreach:
            raise ValueError("foreach=True selects the exact path's multi-tensor kernels; the default (fast) path "
                             "runs one fused update per parameter: pass exact=True, or drop foreach")
        if seed is not None and generator is not None:  # the project's seed rule (torchport._seed.generator_from)
            raise ValueError(f"pass seed= or generator= (the same thing), not both; got seed={seed!r} and "
                             f"generator={generator!r}")
        self.exact = exact
        self.counter = None  # the fast path's CounterStream
        if exact:
            if generator is None and isinstance(seed, torch.Generator):
                generator = seed
            elif generator is None:
                if seed is None:
                    raise ValueError("pass seed= (an int or a torch.Generator) or generator= (a torch.Generator); "
                                     "got neither (torchport never uses the global RNG)")
                if isinstance(seed, bool) or not isinstance(seed, int):
                    raise TypeError(f"seed must be an int or a torch.Generator, got {seed!r}")
                generator = torch.Generator(device="cpu")
                generator.manual_seed(seed)
            elif not isinstance(generator, torch.Generator):
                raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
            self.seed = None
        else:
            from torchport.optim._fastpath import counter_seed

            self.seed = counter_seed(seed, generator)
            generator = None
        if compile is None:  # the default: compiled on the fast path unless $QLANGEVIN_COMPILE=0
            from torchport.optim._fastpath import default_compile

            compile = (not exact) and default_compile()
        self.compile = compile
        self.check_every = check_every
        defaults = dict(defaults, foreach=foreach)
        super().__init__(params, defaults)
        self.generator = generator
        self.num_steps = 0
        if not exact:
            from torchport.optim._fastpath import CounterStream

            params_ = self._all_params()
            self.counter = CounterStream(self.seed, params_[0].device if params_ else torch.device("cpu"))
        self._constructor_groups_added = True  # later add_param_group calls initialise their group's state

    # -------------------------------------------------------------- validation
    def _options(self) -> set:
        """Optimizer-wide options: constructor arguments (and ``extra_options``) that are not group keys."""
        names = {name for name, par in inspect.signature(type(self).__init__).parameters.items()
                 if par.kind not in (par.VAR_KEYWORD, par.VAR_POSITIONAL)}
        names |= set(getattr(self, "extra_options", ()))
        return names - set(self.defaults) - self._not_options

    def _validate_group(self, group: Mapping, where: str) -> dict:
        """Check one group's values against ``group_rules``; return the coerced values.

        Raises ValueError/TypeError naming ``where`` (e.g. ``"param group 1: "``), the key and the value.
        Subclasses with rules that depend on their options extend this.
        """
        out = {}
        for key, rule in self.group_rules.items():
            if key in group:
                out[key] = check_value(key, group[key], rule, where)
        return out

    def _check_groups(self):
        """Validate every group as it is now (``param_groups`` is mutable: schedulers write lr into it)."""
        for i, group in enumerate(self.param_groups):
            self._validate_group(group, f"param group {i}: ")

    def add_param_group(self, param_group: dict) -> None:
        """``torch.optim.Optimizer.add_param_group`` with the group's values checked first.

        A group added after construction gets the per-parameter state the
        constructor gives its groups (accumulator, velocity, latent weights and
        the initial quantization, see :meth:`_init_group`).  Nothing is added
        when a check fails.
        """
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param_group must be a dict with a 'params' entry, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"param_group must have a 'params' entry, got keys {sorted(param_group)}")
        where = f"param group {len(self.param_groups)}: "
        options = sorted(set(param_group) & self._options())
        if options:
            key = options[0]
            raise ValueError(f"{where}{key} is an optimizer-wide option of {type(self).__name__} and cannot be set "
                             f"per group, got {key}={param_group[key]!r}; create a second optimizer for "
                             "parameters that need another value")
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        seen = {id(p): i for i, g in enumerate(self.param_groups) for p in g["params"]}
        for p in params:
            if isinstance(p, tuple):  # named parameters: (name, tensor)
                p = p[1]
            if id(p) in seen:
                raise ValueError(f"{where}params: a parameter of shape {tuple(p.shape)} is already in param group "
                                 f"{seen[id(p)]}")
            if not self.exact and isinstance(p, torch.Tensor) and p.dtype not in (torch.float32, torch.float64):
                raise TypeError(f"{where}params: a parameter of shape {tuple(p.shape)} has dtype {p.dtype}; the "
                                "default (fast) path computes in float32 or float64 (exact=True runs other "
                                "floating dtypes)")
        if not self.exact:
            self._fast_check_params([p[1] if isinstance(p, tuple) else p for p in params], where)
        merged = dict(self.defaults, **{k: v for k, v in param_group.items() if k != "params"})
        coerced = self._validate_group(merged, where)
        super().add_param_group(dict(param_group, **{k: v for k, v in coerced.items() if k in param_group}))
        if getattr(self, "_constructor_groups_added", False):
            self._init_group(self.param_groups[-1])

    def _init_group(self, group: dict) -> None:
        """Per-parameter state of a group added after construction; default: none needed."""

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
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None, *,
             noise: Optional[Mapping] = None) -> Optional[torch.Tensor]:
        """One update.  ``closure`` re-evaluates the loss (returned); ``noise`` feeds pre-drawn noise (exact path)."""
        if not self.exact:
            if noise is not None:
                raise ValueError("noise= feeds the exact path's streams; the default (fast) path draws every number "
                                 "from the counter stream: construct the optimizer with exact=True to pass noise")
            return self._fast_step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._check_groups()
        active = self._active()
        if not active:
            self.num_steps += 1
            return loss
        all_params = [p for _, ps, _, _ in active for p in ps]
        for _, _, gs, ns in active:
            self._check_finite(gs, ns)
        self._prepare_step(active, loss)
        flat = self._step_noise(noise, all_params)  # given noise is checked before anything is written
        self._before_step(active, loss)
        off = 0
        for group, ps, gs, _ in active:
            n = sum(p.numel() for p in ps)
            part = {name: t[off:off + n] for name, t in flat.items()}
            off += n
            self._update_group(group, ps, gs, self._split(part, ps))
        self.num_steps += 1
        return loss

    # ------------------------------------------------------- the fast path
    def _all_params(self) -> list:
        """Every parameter, over the groups in order: position i is the counter stream's parameter index."""
        return [p for g in self.param_groups for p in g["params"]]

    def _all_names(self) -> list:
        """The name of every parameter (as the exact path's error messages name them)."""
        out = []
        for gi, group in enumerate(self.param_groups):
            names = group.get("param_names")
            for pi, p in enumerate(group["params"]):
                out.append(names[pi] if names is not None else
                           f"param_groups[{gi}]['params'][{pi}] (shape {tuple(p.shape)})")
        return out

    def _fast_step(self, closure):
        """One step of the default path: validation first (nothing is written if it raises), then one fused
        update per parameter with a gradient (keys on the device), then the device flags and step counter."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._check_groups()
        todo = []
        index = 0
        for group in self.param_groups:
            members = []
            for p in group["params"]:
                if p.grad is not None and p.requires_grad:
                    if p.grad.is_sparse:
                        raise TypeError("torchport optimizers do not support sparse gradients")
                    members.append((index, p))
                index += 1
            if members:
                todo.append((self._fast_group_args(group), members))
        n = index
        keys = self.counter.keys(n)
        grouped = getattr(self, "_fast_update_group", None)  # optional: one call for all parameters
        flags = grouped(todo, keys) if grouped is not None and todo else None
        if flags is not None:
            indices = [i for _, members in todo for i, _ in members]
        else:
            flags, indices = [], []
            for args, members in todo:
                for i, p in members:
                    key = keys[i] if keys.device == p.device else keys[i].to(p.device)
                    flags.append(self._fast_update(p, key, args))
                    indices.append(i)
        self.counter.advance(flags, indices, n)
        self.num_steps += 1
        if self.check_every and self.num_steps % self.check_every == 0:
            self.check_finite()
        return loss

    def _fast_check_params(self, params, where: str) -> None:
        """Default path: ValueError when an MX format's block axis does not fit a new parameter (torchport.fast)."""
        from torchport import fast as F

        formats = [(name, getattr(self, name, None)) for name in ("weight_format", "grad_format", "velocity_format")]
        check_axes = getattr(F, "_check_axes", None)
        if check_axes is not None:
            try:
                check_axes(params, [(n, f) for n, f in formats if f is not None])
            except ValueError as exc:
                raise ValueError(f"{where}{exc}") from None

    def _fast_group_args(self, group) -> dict:  # pragma: no cover - abstract
        """Per-group values of the fused update (Python floats), computed once per step."""
        raise NotImplementedError

    def _fast_update(self, p, key, args) -> torch.Tensor:  # pragma: no cover - abstract
        """Update parameter ``p`` (and its state) in place from its key; return its finite-gradient flag."""
        raise NotImplementedError

    # Optional hook ``_fast_update_group(todo, keys)``: update every parameter of ``todo`` (the list of
    # (``_fast_group_args(group)``, [(index, p), ...]) of this step) in one call, with ``keys`` the keys of
    # all parameter indices; return their finite flags in ``todo``'s order, or None to have ``_fast_step``
    # call ``_fast_update`` per parameter instead.  The result must equal the per-parameter updates bit
    # for bit (SGLD/SGHMC: torchport.fast.sgld_step_group / sghmc_step_group).

    def check_finite(self) -> None:
        """Default path: raise ``NonFiniteGradientError`` (a FloatingPointError) naming the first parameter
        that had a NaN/inf gradient since the last check.

        The one host synchronisation of the default path: ``step()`` only ORs a device flag per
        parameter.  Called every ``check_every`` steps (0: only when you call it).  On the exact path
        ``step()`` itself raises before writing anything, and this is a no-op.
        """
        if self.exact:
            return
        self.counter.check(self._all_names(), self.num_steps)

    def reseed(self, seed: int) -> None:
        """Default path: continue with the counter stream of another int ``seed`` (the step count is kept)."""
        if self.exact:
            raise ValueError("reseed() is for the default (fast) path; on the exact path seed the generator "
                             "(optimizer.generator.manual_seed)")
        from torchport.optim._fastpath import counter_seed

        self.seed = counter_seed(seed)
        self.counter.reset(self.seed, self.num_steps)

    def _prepare_step(self, active, loss):
        """Hook: checks and computations that may raise; it must not change anything (default no-op)."""

    def _before_step(self, active, loss):
        """Hook for optimizers that need the loss or global state, run once the step cannot fail; default no-op."""

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
        """``torch.optim`` state plus the generator state (exact path) or the counter stream's seed
        (``counter_seed``, default path) and the step counter (bit-for-bit resume)."""
        sd = super().state_dict()
        if self.exact:
            sd["generator_state"] = self.generator.get_state().clone()
        else:
            sd["counter_seed"] = self.seed
        sd["num_steps"] = self.num_steps
        extra = self._extra_state()
        if extra is not None:
            sd["extra_state"] = extra
        return sd

    def load_state_dict(self, state_dict):
        """Load a :meth:`state_dict`, after checking all of it: on a bad entry nothing is loaded.

        Checked: the generator state (a valid state of this optimizer's
        generator), ``num_steps`` (int >= 0), the groups (count, sizes and
        values, as :meth:`add_param_group`), the per-parameter state (tensors of
        the parameter's shape, finite) and the optimizer's extra state.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict returned by state_dict(), got {type(state_dict).__name__}")
        sd = dict(state_dict)
        rng_key = "generator_state" if self.exact else "counter_seed"
        other = "counter_seed" if self.exact else "generator_state"
        if rng_key not in sd and other in sd:
            raise ValueError(f"state_dict was saved by the {'default (fast)' if self.exact else 'exact'} path "
                             f"(it has {other!r}); this optimizer runs the {'exact' if self.exact else 'default'} "
                             f"path: construct it with exact={not self.exact}")
        for key in (rng_key, "state", "param_groups"):
            if key not in sd:
                raise ValueError(f"state_dict has no {key!r}; it was not saved by a torchport optimizer "
                                 f"(keys: {sorted(sd)})")
        gen = sd.pop(rng_key)
        steps = sd.pop("num_steps", 0)
        extra = sd.pop("extra_state", None)
        if self.exact:
            self._check_generator_state(gen)
        else:
            from torchport.optim._fastpath import counter_seed

            try:
                gen = counter_seed(gen)
            except (TypeError, ValueError):
                raise ValueError(f"state_dict['counter_seed'] must be an int in [0, 2**64), got {gen!r}") from None
        _integer("num_steps", steps, 0, "state_dict: ")
        self._check_saved_groups(sd["param_groups"])
        self._check_saved_state(sd["state"])
        if self._extra_state() is not None:
            if extra is None:
                raise ValueError(f"state_dict has no 'extra_state'; {type(self).__name__} saves one")
            self._check_extra_state(extra)
        super().load_state_dict(sd)
        if self.exact:
            self.generator.set_state(gen.clone())
        else:
            self.seed = gen
            self.counter.reset(gen, steps)
        self.num_steps = steps
        if extra is not None:
            self._load_extra_state(extra)

    def _check_generator_state(self, gen):
        if not isinstance(gen, torch.Tensor) or gen.dtype != torch.uint8:
            got = f"tensor of dtype {gen.dtype}" if isinstance(gen, torch.Tensor) else repr(gen)
            raise TypeError(f"state_dict['generator_state'] must be a torch.uint8 tensor (Generator.get_state()), "
                            f"got {got}")
        probe = torch.Generator(device=self.generator.device)
        try:
            probe.set_state(gen.clone())
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"state_dict['generator_state'] (shape {tuple(gen.shape)}) is not a state of a "
                             f"{self.generator.device} generator: {exc}") from None

    def _check_saved_groups(self, groups):
        if not isinstance(groups, (list, tuple)):
            raise TypeError(f"state_dict['param_groups'] must be a list, got {type(groups).__name__}")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"state_dict['param_groups'] has {len(groups)} groups, this optimizer has "
                             f"{len(self.param_groups)}")
        for i, (saved, mine) in enumerate(zip(groups, self.param_groups)):
            where = f"state_dict['param_groups'][{i}]: "
            if not isinstance(saved, Mapping) or "params" not in saved:
                raise ValueError(f"{where}must be a dict with 'params', got {saved!r}")
            if len(saved["params"]) != len(mine["params"]):
                raise ValueError(f"{where}has {len(saved['params'])} parameters, this optimizer's group has "
                                 f"{len(mine['params'])}")
            self._validate_group(saved, where)

    def _check_saved_state(self, state):
        if not isinstance(state, Mapping):
            raise TypeError(f"state_dict['state'] must be a dict, got {type(state).__name__}")
        params = [p for g in self.param_groups for p in g["params"]]
        for key, entry in state.items():
            where = f"state_dict['state'][{key!r}]"
            if not isinstance(key, int):  # optimizer-level entries (e.g. a velocity scale): finite numbers
                if isinstance(entry, float) and not math.isfinite(entry):
                    raise ValueError(f"{where} must be finite, got {entry!r}")
                continue
            if not 0 <= key < len(params):
                raise ValueError(f"{where}: no parameter with index {key} (this optimizer has {len(params)})")
            if not isinstance(entry, Mapping):
                raise TypeError(f"{where} must be a dict, got {type(entry).__name__}")
            p = params[key]
            for name, v in entry.items():
                if isinstance(v, torch.Tensor):
                    if v.dim() > 0 and v.shape != p.shape:
                        raise ValueError(f"{where}[{name!r}] has shape {tuple(v.shape)}, the parameter has shape "
                                         f"{tuple(p.shape)}")
                    if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                        raise ValueError(f"{where}[{name!r}] has non-finite entries")
                elif isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"{where}[{name!r}] must be finite, got {v!r}")

    def _extra_state(self):
        return None

    def _check_extra_state(self, extra):
        """Hook: raise ValueError/TypeError naming the entry if ``extra`` cannot be loaded (default: no check)."""

    def _load_extra_state(self, extra):  # pragma: no cover - overridden where used
        pass


class LowPrecisionWeightsMixin:
    """Weight quantization shared by :class:`LowPrecisionSGLD` and :class:`LowPrecisionSGHMC`.

    Needs the attributes ``weight_format`` and ``accumulator`` and the
    :class:`NoisyOptimizer` noise helpers.
    """

    def _init_group(self, group):
        """State of a group added after construction, as the constructor gives its groups.

        The accumulator ("full"), a zero velocity (SGHMC) and, unless the
        optimizer was built with ``quantize_initial=False``, the initial weight
        quantization of the new group's parameters only (stream ``"u_weight"``
        drawn for them alone).
        """
        params = list(group["params"])
        for p in params:
            if hasattr(self, "velocity_format"):
                self.state[p]["velocity"] = torch.zeros_like(p)
            if self.accumulator == "full":
                self.state[p]["accumulator"] = p.detach().clone()
        if getattr(self, "quantize_initial", True):
            self.quantize_weights_(params=params)

    @torch.no_grad()
    def quantize_weights_(self, noise=None, params=None):
        """θ ← Q_W(acc) (stochastic, stream ``"u_weight"``) for "full"; θ ← Q^d(θ) (nearest) for "low".

        "low" stores Q^d(θ_0) as refimpl's LP-L init does (no noise consumed); the
        published code's first step uses the unquantized weights (§7.2.5), which
        ``quantize_initial=False`` reproduces.  ``params``: a subset (default:
        every parameter, in group order).
        """
        if self.weight_format is None:
            return
        if params is None:
            params = [p for g in self.param_groups for p in g["params"]]
        if not self.exact:
            self._fast_quantize_weights(noise, params)
            return
        if self.accumulator == "low":
            for p in params:
                p.copy_(tq.quantize(p.detach(), self.weight_format, "nearest"))
            return
        flat = self._step_noise(noise, params, layout=(("u_weight", "uniform"),))
        for p, u in zip(params, self._split(flat, params)["u_weight"]):
            src = self.state[p]["accumulator"] if self.accumulator == "full" else p
            p.copy_(tq._sr_fast(src, self.weight_format, u))

    def _fast_quantize_weights(self, noise, params):
        """Default path: θ ← SR(acc) from the counter stream u_weight at step ``torchport.fast.INIT_STEP``
        ("full"), θ ← Q^d(θ) ("low"), each parameter with its own index (as FastLowPrecisionSGLD does)."""
        if noise is not None:
            raise ValueError("noise= feeds the exact path's streams; on the default (fast) path the initial "
                             "rounding uses the counter stream (construct with exact=True to pass noise)")
        from torchport import fast as F

        index = {id(p): i for i, p in enumerate(self._all_params())}
        for p in params:
            if self.accumulator == "full":
                p.copy_(F.stochastic_round_fast(self.state[p]["accumulator"], self.weight_format, seed=self.seed,
                                                step=F.INIT_STEP, param_index=index[id(p)], stream="u_weight"))
            else:
                p.copy_(F.quantize_fast(p.detach(), self.weight_format, ties=self.vc_options["ties"]))
