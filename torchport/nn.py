"""Activation/error quantizers for networks (spec §2.7): Q_A in forward, Q_E in backward.

:class:`Quantizer` is the torch module of QPyTorch's ``Quantizer`` /
``quantizer(forward_number, backward_number, ...)`` (qtorch quant_function.py,
quant_module.py) and of the published BFP experiments (ruqizhang/low-precision-sgld
models/resnet_low.py): in forward it returns Q_A(x), in backward it returns
Q_E(∂L/∂y) as ∂L/∂x -- the gradient is otherwise passed straight through
(the rounding itself has derivative 1).  Q_W and Q_G act outside autograd (in
the optimizers), by design (QPyTorch issue #19).

:func:`insert_quantizers` wraps a model's layers with quantizers: after every
selected module (by default ``nn.Conv2d``, ``nn.Linear`` and ``nn.ReLU``, except
the final classifier ``Linear``), reproducing the §2.7 placement for models
built from modules (stem: after conv1 and after ReLU(BN1); blocks: after conv1,
after ReLU(bn1) and after conv2).  Activations computed functionally inside a
``forward`` (e.g. ``F.relu``) cannot be wrapped from outside -- put a
``Quantizer`` module in the model there (torchport.models does).

Randomness, two paths (docs/torchport.md "Two paths"):

* ``exact=False`` (the default): the counter stream of :mod:`torchport.counter_rng`, computed
  in x's dtype (float16/bfloat16 in float32) by the fast path of
  :func:`torchport.quantize.quantize`.  Each quantizer has an integer counter seed, an
  ``index`` (``insert_quantizers`` numbers its quantizers 0, 1, ... in module order) and a
  call counter ``calls`` (an int64 buffer: saved in the ``state_dict``, so a resumed run
  continues the stream bit for bit).  The c-th forward call (c = 0, 1, ...) rounds x with
  the uniforms of key(seed, step=c, index, ``u_weight``) -- the same bits as
  ``quantize(x, fmt, "stochastic", seed=seed, step=c, index=index)`` -- and its backward
  rounds the incoming gradient with stream ``u_grad`` of the same (seed, c, index): forward
  and backward draw distinct streams, reproducible whatever the execution order, and the
  keys are computed on the device (no host synchronisation).
* ``exact=True``: a ``torch.Generator`` shared by all quantizers of a model (one stream; draw
  order = execution order: forward quantizers in forward order, then backward quantizers in
  backward order), float64 arithmetic, saved with the module's state (``get_extra_state``)
  so that a resumed run continues bit for bit.  These are the numbers of every run made
  before the default path existed.

Departure from qtorch: stochastic rounding is seedable on every device and
exact (qtorch's CPU block/float rounding is not seedable, §7.1.4).
"""

from __future__ import annotations

from typing import Iterable, Literal, Optional

import torch
from torch import nn
from torch.autograd.function import FunctionCtx

from refimpl.formats import FORMAT_TYPES
from torchport import counter_rng as cr
from torchport import quantize as tq
from torchport._seed import generator_from
from torchport.optim._base import as_format

__all__ = ["Quantizer", "QuantizeFunction", "insert_quantizers", "quantizers_of"]

ROUNDINGS = ("stochastic", "nearest")


def _check_rounding(name: str, value) -> None:
    if not isinstance(value, str) or value not in ROUNDINGS:
        raise ValueError(f"{name} must be 'stochastic' or 'nearest', got {value!r}")


def _check_input(x) -> None:
    """The tensor a quantizer is applied to: a real floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got dtype {x.dtype}")


def _check_quantizer_args(forward_format, backward_format, forward_rounding, backward_rounding, generator) -> None:
    """Formats (refimpl formats or None), roundings, and a generator wherever stochastic rounding happens."""
    for name, fmt in (("forward_format", forward_format), ("backward_format", backward_format)):
        if fmt is not None and not isinstance(fmt, FORMAT_TYPES):
            raise TypeError(f"{name} must be a refimpl format or None, got {fmt!r}")
    _check_rounding("forward_rounding", forward_rounding)
    _check_rounding("backward_rounding", backward_rounding)
    needs = ((forward_format is not None and forward_rounding == "stochastic")
             or (backward_format is not None and backward_rounding == "stochastic"))
    if needs and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator for stochastic rounding, got {generator!r}")


def _apply(x, fmt, rounding, generator):
    if fmt is None:
        return x
    if rounding == "nearest":
        return tq.quantize(x, fmt, "nearest")
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=generator.device).to(x.device)
    return tq._sr_fast(x, fmt, u)


class QuantizeFunction(torch.autograd.Function):
    """y = Q_A(x) in forward; ∂L/∂x = Q_E(∂L/∂y) in backward (spec §2.7; qtorch quant_function.quantizer).

    The exact path (float64 arithmetic, uniforms drawn from ``generator``); the default path of
    :class:`Quantizer` uses the counter stream instead (module docstring).
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, forward_format: tq.Format | None, backward_format: tq.Format | None,
                forward_rounding: Literal["stochastic", "nearest"], backward_rounding: Literal["stochastic", "nearest"],
                generator: torch.Generator | None) -> torch.Tensor:
        _check_input(x)
        _check_quantizer_args(forward_format, backward_format, forward_rounding, backward_rounding, generator)
        ctx.backward_format = backward_format
        ctx.backward_rounding = backward_rounding
        ctx.generator = generator
        return _apply(x, forward_format, forward_rounding, generator)

    @staticmethod
    def backward(ctx: FunctionCtx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None, None]:
        g = _apply(grad_out, ctx.backward_format, ctx.backward_rounding, ctx.generator)
        return g, None, None, None, None, None


_FORWARD_STREAM = torch.tensor(cr.STREAMS[tq.SR_STREAM], dtype=torch.int64)  # u_weight: Q_A
_BACKWARD_STREAM = torch.tensor(cr.STREAMS["u_grad"], dtype=torch.int64)    # u_grad: Q_E


def _apply_counter(x, fmt, rounding, key):
    """Q_A / Q_E on the default path: nearest, or the k-bit Q^s with the uniforms of stream ``key``."""
    if fmt is None:
        return x
    if rounding == "nearest":
        return tq._nearest_fast(x, fmt, None)
    return tq._sr_keyed(x, fmt, key)


class _CounterQuantizeFunction(torch.autograd.Function):
    """:class:`QuantizeFunction` on the default path: ``keys`` = (forward, backward) stream keys (0-d int64)."""

    @staticmethod
    def forward(ctx, x, forward_format, backward_format, forward_rounding, backward_rounding, keys):
        ctx.backward_format = backward_format
        ctx.backward_rounding = backward_rounding
        ctx.backward_key = keys[1]
        return _apply_counter(x, forward_format, forward_rounding, keys[0])

    @staticmethod
    def backward(ctx, grad_out):
        g = _apply_counter(grad_out, ctx.backward_format, ctx.backward_rounding, ctx.backward_key)
        return g, None, None, None, None, None


class Quantizer(nn.Module):
    """Activation (forward) and error (backward) quantizer module -- spec §2.7 (Q_A, Q_E).

    Parameters: ``forward_format`` (Q_A) and ``backward_format`` (Q_E): refimpl
    formats, format strings (``"bfp:8:0"`` = one block per sample, the published
    BFP runs) or None (identity); ``forward_rounding``/``backward_rounding``:
    "stochastic" (published) or "nearest"; ``exact``: False (default, the counter stream)
    or True (the float64 path with a ``torch.Generator``); ``seed`` / ``generator=``:

    * default path: ``seed`` an int in [0, 2^64) (the counter seed) or a ``torch.Generator``
      (``generator=`` or ``seed=``), from which one integer is drawn at construction;
      ``index`` (an int >= 0, default 0) is the quantizer's index in the key (seed, call
      count, index): give quantizers that share a seed distinct indices
      (``insert_quantizers`` does);
    * ``exact=True``: ``seed`` an int (a fresh CPU generator) or a ``torch.Generator``
      (shared); ``generator=`` is the same thing as ``seed=<Generator>``; ``index`` stays 0.

    A seed is required when either direction rounds stochastically.  Shapes: any; the
    output has x's shape, dtype and device.  Randomness: one uniform per element per
    stochastic quantization (module docstring: streams, call counter, resume).  Formats
    the default path lacks are a ValueError naming the argument and exact=True.
    """

    def __init__(self, forward_format: tq.Format | str | None = None, backward_format: tq.Format | str | None = None,
                 *, forward_rounding: Literal["stochastic", "nearest"] = "stochastic",
                 backward_rounding: Literal["stochastic", "nearest"] = "stochastic",
                 generator: Optional[torch.Generator] = None,
                 seed: int | torch.Generator | None = None, exact: bool = False, index: int = 0):
        super().__init__()
        tq._check_exact(exact)
        if exact:
            tq._counter_position(0, index, True, "Quantizer: ")
            fwd, bwd, generator = _quantizer_args(forward_format, backward_format, forward_rounding,
                                                  backward_rounding, seed, generator, "Quantizer")
            counter_seed = None
        else:
            _, index = tq._counter_position(0, index, False, "Quantizer: ")
            fwd, bwd, source = _counter_args(forward_format, backward_format, forward_rounding, backward_rounding,
                                             seed, generator, "Quantizer")
            counter_seed = None if source is None else tq._draw_counter_seed(source)
            generator = None
        self.forward_format, self.backward_format = fwd, bwd
        self.forward_rounding, self.backward_rounding = forward_rounding, backward_rounding
        self.exact = exact
        self.generator = generator
        self.seed = counter_seed
        self.index = index
        if not exact:
            self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x)
        if self.forward_format is None and self.backward_format is None:
            return x
        if self.exact:
            return QuantizeFunction.apply(x, self.forward_format, self.backward_format, self.forward_rounding,
                                          self.backward_rounding, self.generator)
        keys = self._keys(x.device)
        y = _CounterQuantizeFunction.apply(x, self.forward_format, self.backward_format, self.forward_rounding,
                                           self.backward_rounding, keys)
        with torch.no_grad():
            self.calls += 1
        return y

    def _keys(self, device) -> tuple:
        """(forward, backward) stream keys of this call: bits(key(seed, calls, index), stream), on the device."""
        if self.seed is None:  # nearest rounding only: no randomness
            return None, None
        calls = self.calls.to(device)
        pkey = cr.counter_bits(cr.counter_bits(cr.key_tensor(self.seed, device), calls),
                               torch.tensor(self.index, dtype=torch.int64, device=device))
        return (cr.counter_bits(pkey, _FORWARD_STREAM.to(device)), cr.counter_bits(pkey, _BACKWARD_STREAM.to(device)))

    def get_extra_state(self) -> dict:
        if self.exact:
            return {"generator_state": None if self.generator is None else self.generator.get_state()}
        return {"counter_seed": self.seed, "index": self.index}

    def set_extra_state(self, state: dict) -> None:
        """Restore :meth:`get_extra_state`'s dict: ``{"generator_state": uint8 tensor or None}`` (exact path) or
        ``{"counter_seed": int or None, "index": int}`` (default path; the call counter is the ``calls``
        buffer).  ValueError or TypeError, nothing changed, if it is not one (a state of the other path
        names ``exact=``)."""
        if not isinstance(state, dict):
            key = "generator_state" if self.exact else "counter_seed"
            raise TypeError(f"state must be a dict with key {key!r}, got {state!r:.80}")
        if not self.exact:
            self._set_counter_state(state)
            return
        if "counter_seed" in state and "generator_state" not in state:
            raise ValueError("state was saved by a Quantizer on the default path (it has 'counter_seed'); this "
                             "one runs exact=True: construct it with exact=False")
        gs = state.get("generator_state")
        if gs is None or self.generator is None:
            return
        if not isinstance(gs, torch.Tensor) or gs.dtype != torch.uint8:
            raise TypeError(f"generator_state must be a uint8 tensor (torch.Generator.get_state()), got {gs!r:.80}")
        before = self.generator.get_state()
        try:
            self.generator.set_state(gs)
        except RuntimeError as exc:
            self.generator.set_state(before)
            raise ValueError(f"generator_state of shape {tuple(gs.shape)} is not a state of this module's "
                             f"generator: {str(exc).splitlines()[0]}") from None

    def _set_counter_state(self, state: dict) -> None:
        if "generator_state" in state and "counter_seed" not in state:
            raise ValueError("state was saved by a Quantizer with exact=True (it has 'generator_state'); this one "
                             "runs the default path: construct it with exact=True")
        if "counter_seed" not in state or "index" not in state:
            raise ValueError(f"state must have keys 'counter_seed' and 'index', got keys {sorted(state)!r}")
        seed, index = state["counter_seed"], state["index"]
        if seed is not None:
            tq._counter_source(seed, None, "state['counter_seed']: ")
            if isinstance(seed, torch.Generator):
                raise TypeError(f"state['counter_seed'] must be an int in [0, 2**64) or None, got {seed!r:.80}")
        tq._counter_position(0, index, False, "state: ")
        self.seed = None if seed is None else int(seed)
        self.index = int(index)

    def extra_repr(self) -> str:
        text = (f"forward_format={self.forward_format}, backward_format={self.backward_format}, "
                f"forward_rounding={self.forward_rounding!r}, backward_rounding={self.backward_rounding!r}")
        return text + (", exact=True" if self.exact else f", index={self.index}")


def insert_quantizers(model: nn.Module, forward_format: tq.Format | str | None = None,
                      backward_format: tq.Format | str | None = None, *,
                      after: Iterable[type] = (nn.Conv2d, nn.Linear, nn.ReLU), exclude: Iterable[str] = ("last",),
                      generator: Optional[torch.Generator] = None, seed: Optional[int] | torch.Generator = None,
                      forward_rounding: str = "stochastic", backward_rounding: str = "stochastic",
                      exact: bool = False) -> nn.Module:
    """Wrap every selected submodule m as ``nn.Sequential(m, Quantizer(...))``, in place; return the model.

    ``after``: module types followed by a quantizer (§2.7 placement: convs, linears,
    ReLUs -- not BN outputs, residual adds, pools or the classifier).  ``exclude``:
    qualified module names to leave alone (a collection of names, each a module of
    ``model``); the special name ``"last"`` excludes the last ``nn.Linear`` (the
    classifier).  ``seed`` (an int or a ``torch.Generator``) or ``generator=`` (the same thing):

    * default path (``exact=False``): one counter seed for all inserted quantizers (the int,
      or one integer drawn from the generator), and indices 0, 1, ... in module order
      (continuing after the quantizers the model already has), so each quantizer draws its
      own streams (module docstring);
    * ``exact=True``: all inserted quantizers share one generator (an int: a fresh CPU
      generator).

    Input images are never quantized.  Idempotent: already-wrapped modules are not wrapped
    again.  Every argument is checked before the model is touched or a generator drawn
    from: a raising call leaves both unchanged.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} {model!r:.60}")
    tq._check_exact(exact)
    after = _check_after(after)
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Iterable) or not all(
            isinstance(n, str) for n in exclude):
        raise TypeError(f"exclude={exclude!r}: must be a collection of module names such as ('last',)")
    excl = set(exclude)
    if exact:
        forward_format, backward_format, generator = _quantizer_args(
            forward_format, backward_format, forward_rounding, backward_rounding, seed, generator,
            "insert_quantizers")
    else:
        forward_format, backward_format, source = _counter_args(
            forward_format, backward_format, forward_rounding, backward_rounding, seed, generator,
            "insert_quantizers")
    named = [(n, m) for n, m in model.named_modules() if n]
    unknown = sorted(excl - {"last"} - {n for n, _ in named})
    if unknown:
        raise ValueError(f"exclude={tuple(exclude)!r}: {unknown} are not module names of the model")
    if "last" in excl:
        linears = [n for n, m in named if isinstance(m, nn.Linear)]
        if linears:
            excl.add(linears[-1])
        excl.discard("last")
    targets = []
    for name, m in named:
        if name in excl or not isinstance(m, after):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(parent, nn.Sequential) and getattr(parent, "_torchport_wrapped", False):
            continue
        targets.append((parent, child, m))
    if exact:
        def make(_):
            return Quantizer(forward_format, backward_format, generator=generator, forward_rounding=forward_rounding,
                             backward_rounding=backward_rounding, exact=True)
    else:
        key = None if source is None else tq._draw_counter_seed(source)  # every check done: now draw
        first = len(quantizers_of(model))

        def make(j):
            return Quantizer(forward_format, backward_format, seed=key, index=first + j,
                             forward_rounding=forward_rounding, backward_rounding=backward_rounding)
    wrapped = []
    for j, (parent, child, m) in enumerate(targets):  # build every wrapper first, then swap them in
        w = nn.Sequential(m, make(j))
        w._torchport_wrapped = True
        wrapped.append((parent, child, w))
    for parent, child, w in wrapped:
        setattr(parent, child, w)
    return model


def quantizers_of(model: nn.Module) -> list:
    """All :class:`Quantizer` modules of ``model`` in registration order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} {model!r:.60}")
    return [m for m in model.modules() if isinstance(m, Quantizer)]


def _quantizer_args(forward_format, backward_format, forward_rounding, backward_rounding, seed, generator,
                    where: str):
    """The checked (forward format, backward format, generator) of a quantizer's arguments; a generator
    (from ``seed`` or ``generator``) is required when either direction rounds stochastically."""
    _check_rounding("forward_rounding", forward_rounding)
    _check_rounding("backward_rounding", backward_rounding)
    fwd = _as_format(forward_format, "forward_format")
    bwd = _as_format(backward_format, "backward_format")
    needs = ((fwd is not None and forward_rounding == "stochastic")
             or (bwd is not None and backward_rounding == "stochastic"))
    return fwd, bwd, generator_from(seed, generator, required=needs, where=f"{where}: stochastic rounding ")


def _counter_args(forward_format, backward_format, forward_rounding, backward_rounding, seed, generator,
                  where: str):
    """The default path's checked (forward format, backward format, counter-seed source): formats the fast
    path supports (else ValueError naming the argument and exact=True), and an int seed or a generator
    (not drawn from yet) when either direction rounds stochastically."""
    _check_rounding("forward_rounding", forward_rounding)
    _check_rounding("backward_rounding", backward_rounding)
    fwd = _as_format(forward_format, "forward_format")
    bwd = _as_format(backward_format, "backward_format")
    tq._check_fast(fwd, "forward_format")
    tq._check_fast(bwd, "backward_format")
    source = tq._counter_source(seed, generator, f"{where}: ")
    needs = ((fwd is not None and forward_rounding == "stochastic")
             or (bwd is not None and backward_rounding == "stochastic"))
    if needs and source is None:
        raise ValueError(f"{where}: stochastic rounding needs seed= (an int or a torch.Generator) or generator=; got "
                         "neither (seed=None, generator=None; torchport never uses the global RNG)")
    return fwd, bwd, source


def _as_format(value, name: str):
    """:func:`torchport.optim._base.as_format`, with a NaN or other non-format value named in a TypeError."""
    fmt = as_format(value, name)
    if fmt is not None and not isinstance(fmt, FORMAT_TYPES):
        raise TypeError(f"{name} must be a refimpl format, a format string or None, got {value!r}")
    return fmt


def _check_after(after) -> tuple:
    """``after`` as a tuple of module classes (one class is accepted as itself)."""
    if isinstance(after, type):
        after = (after,)
    if isinstance(after, (str, bytes)) or not isinstance(after, Iterable):
        raise TypeError(f"after={after!r}: must be a module class or a collection of them, e.g. (nn.Conv2d, nn.ReLU)")
    after = tuple(after)
    if not all(isinstance(a, type) and issubclass(a, nn.Module) for a in after):
        raise TypeError(f"after={after!r}: must hold torch.nn.Module classes")
    return after
