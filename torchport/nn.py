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

Randomness: a ``torch.Generator`` shared by all quantizers of a model (one
stream; draw order = execution order: forward quantizers in forward order, then
backward quantizers in backward order), saved with the module's state
(``get_extra_state``) so that a resumed run continues bit for bit.
Departure from qtorch: stochastic rounding is seedable on every device and
exact (qtorch's CPU block/float rounding is not seedable, §7.1.4).
"""

from __future__ import annotations

from typing import Iterable, Literal, Optional

import torch
from torch import nn
from torch.autograd.function import FunctionCtx

from refimpl.formats import FORMAT_TYPES
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
    """y = Q_A(x) in forward; ∂L/∂x = Q_E(∂L/∂y) in backward (spec §2.7; qtorch quant_function.quantizer)."""

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


class Quantizer(nn.Module):
    """Activation (forward) and error (backward) quantizer module -- spec §2.7 (Q_A, Q_E).

    Parameters: ``forward_format`` (Q_A) and ``backward_format`` (Q_E): refimpl
    formats, format strings (``"bfp:8:0"`` = one block per sample, the published
    BFP runs) or None (identity); ``forward_rounding``/``backward_rounding``:
    "stochastic" (published) or "nearest"; ``seed``: an int (a fresh CPU generator) or a
    ``torch.Generator`` (shared); ``generator=`` is the same thing as ``seed=<Generator>``.
    Shapes: any; the output has x's shape, dtype and device.  Randomness: one
    float64 uniform per element per stochastic quantization, from ``generator``.
    """

    def __init__(self, forward_format: tq.Format | str | None = None, backward_format: tq.Format | str | None = None,
                 *, forward_rounding: Literal["stochastic", "nearest"] = "stochastic",
                 backward_rounding: Literal["stochastic", "nearest"] = "stochastic",
                 generator: Optional[torch.Generator] = None,
                 seed: int | torch.Generator | None = None):
        super().__init__()
        fwd, bwd, generator = _quantizer_args(forward_format, backward_format, forward_rounding,
                                              backward_rounding, seed, generator, "Quantizer")
        self.forward_format, self.backward_format = fwd, bwd
        self.forward_rounding, self.backward_rounding = forward_rounding, backward_rounding
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x)
        if self.forward_format is None and self.backward_format is None:
            return x
        return QuantizeFunction.apply(x, self.forward_format, self.backward_format, self.forward_rounding,
                                      self.backward_rounding, self.generator)

    def get_extra_state(self) -> dict:
        return {"generator_state": None if self.generator is None else self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        """Restore ``{"generator_state": uint8 tensor or None}`` (from :meth:`get_extra_state`); ValueError or
        TypeError, the generator unchanged, if it is not one."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict with key 'generator_state', got {state!r:.80}")
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

    def extra_repr(self) -> str:
        return (f"forward_format={self.forward_format}, backward_format={self.backward_format}, "
                f"forward_rounding={self.forward_rounding!r}, backward_rounding={self.backward_rounding!r}")


def insert_quantizers(model: nn.Module, forward_format: tq.Format | str | None = None,
                      backward_format: tq.Format | str | None = None, *,
                      after: Iterable[type] = (nn.Conv2d, nn.Linear, nn.ReLU), exclude: Iterable[str] = ("last",),
                      generator: Optional[torch.Generator] = None, seed: Optional[int] | torch.Generator = None,
                      forward_rounding: str = "stochastic", backward_rounding: str = "stochastic") -> nn.Module:
    """Wrap every selected submodule m as ``nn.Sequential(m, Quantizer(...))``, in place; return the model.

    ``after``: module types followed by a quantizer (§2.7 placement: convs, linears,
    ReLUs -- not BN outputs, residual adds, pools or the classifier).  ``exclude``:
    qualified module names to leave alone (a collection of names, each a module of
    ``model``); the special name ``"last"`` excludes the last ``nn.Linear`` (the
    classifier).  All inserted quantizers share one generator: ``seed`` (an int: a fresh
    CPU generator, or a ``torch.Generator``) or ``generator=`` (the same thing).  Input
    images are never quantized.  Idempotent: already-wrapped modules are not wrapped
    again.  Every argument is checked before the model is touched: a raising call
    leaves it unchanged.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} {model!r:.60}")
    after = _check_after(after)
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Iterable) or not all(
            isinstance(n, str) for n in exclude):
        raise TypeError(f"exclude={exclude!r}: must be a collection of module names such as ('last',)")
    excl = set(exclude)
    forward_format, backward_format, generator = _quantizer_args(
        forward_format, backward_format, forward_rounding, backward_rounding, seed, generator, "insert_quantizers")
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
    wrapped = []
    for parent, child, m in targets:  # build every wrapper first, then swap them in
        w = nn.Sequential(m, Quantizer(forward_format, backward_format, generator=generator,
                                       forward_rounding=forward_rounding, backward_rounding=backward_rounding))
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
