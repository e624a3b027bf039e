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

from torchport import quantize as tq
from torchport.optim._base import as_format

__all__ = ["Quantizer", "QuantizeFunction", "insert_quantizers", "quantizers_of"]


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
    "stochastic" (published) or "nearest"; ``generator`` (shared) or ``seed``.
    Shapes: any; the output has x's shape, dtype and device.  Randomness: one
    float64 uniform per element per stochastic quantization, from ``generator``.
    """

    def __init__(self, forward_format: tq.Format | str | None = None, backward_format: tq.Format | str | None = None,
                 *, forward_rounding: Literal["stochastic", "nearest"] = "stochastic",
                 backward_rounding: Literal["stochastic", "nearest"] = "stochastic",
                 generator: Optional[torch.Generator] = None,
                 seed: Optional[int] = None):
        super().__init__()
        for name, r in (("forward_rounding", forward_rounding), ("backward_rounding", backward_rounding)):
            if r not in ("stochastic", "nearest"):
                raise ValueError(f"{name} must be 'stochastic' or 'nearest', got {r!r}")
        self.forward_format = as_format(forward_format, "forward_format")
        self.backward_format = as_format(backward_format, "backward_format")
        self.forward_rounding, self.backward_rounding = forward_rounding, backward_rounding
        needs = ((self.forward_format is not None and forward_rounding == "stochastic")
                 or (self.backward_format is not None and backward_rounding == "stochastic"))
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        if needs and generator is None:
            raise ValueError("stochastic rounding needs generator= or seed=, got neither")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forward_format is None and self.backward_format is None:
            return x
        return QuantizeFunction.apply(x, self.forward_format, self.backward_format, self.forward_rounding,
                                      self.backward_rounding, self.generator)

    def get_extra_state(self) -> dict:
        return {"generator_state": None if self.generator is None else self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        gs = state.get("generator_state") if isinstance(state, dict) else None
        if gs is not None and self.generator is not None:
            self.generator.set_state(gs)

    def extra_repr(self) -> str:
        return (f"forward_format={self.forward_format}, backward_format={self.backward_format}, "
                f"forward_rounding={self.forward_rounding!r}, backward_rounding={self.backward_rounding!r}")


def insert_quantizers(model: nn.Module, forward_format: tq.Format | str | None = None,
                      backward_format: tq.Format | str | None = None, *,
                      after: Iterable[type] = (nn.Conv2d, nn.Linear, nn.ReLU), exclude: Iterable[str] = ("last",),
                      generator: Optional[torch.Generator] = None, seed: Optional[int] = None,
                      forward_rounding: str = "stochastic", backward_rounding: str = "stochastic") -> nn.Module:
    """Wrap every selected submodule m as ``nn.Sequential(m, Quantizer(...))``, in place; return the model.

    ``after``: module types followed by a quantizer (§2.7 placement: convs, linears,
    ReLUs -- not BN outputs, residual adds, pools or the classifier).  ``exclude``:
    qualified module names to leave alone; the special name ``"last"`` excludes the
    last ``nn.Linear`` (the classifier).  All inserted quantizers share one generator
    (``generator`` or ``torch.Generator().manual_seed(seed)``).  Input images are
    never quantized.  Idempotent: already-wrapped modules are not wrapped again.
    """
    after = tuple(after)
    excl = set(exclude)
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    named = [(n, m) for n, m in model.named_modules() if n]
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
    for parent, child, m in targets:
        wrapped = nn.Sequential(m, Quantizer(forward_format, backward_format, generator=generator,
                                             forward_rounding=forward_rounding, backward_rounding=backward_rounding))
        wrapped._torchport_wrapped = True
        setattr(parent, child, wrapped)
    return model


def quantizers_of(model: nn.Module) -> list:
    """All :class:`Quantizer` modules of ``model`` in registration order."""
    return [m for m in model.modules() if isinstance(m, Quantizer)]
