"""The sampler registry: families register their methods here; the driver looks them up here.

The registry knows the method table (:mod:`refimpl.methods`), which names the
module implementing each family.  Looking up a method imports that module on
first use; the module registers its methods (a :class:`MethodSpec` per table
row) at import.  Neither the driver nor this module holds a list of family
modules, and the families import only this module (never the driver), so a new
family is: a row per method in the table, and its module.

This module also builds the validated :class:`Context` a family needs (formats,
friction, options checked against the method's row), for the driver's
``sample`` and for the families' pure ``step`` functions alike.
"""

from __future__ import annotations

import importlib
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from refimpl import methods as _methods
from refimpl.formats import KIND_BFP, Format, format_code, parse_format, with_options
from refimpl.slots import KIND
from refimpl.targets import Target, resolve_target

__all__ = [
    "GRAD_SAME",
    "Context",
    "MethodSpec",
    "build_context",
    "lookup",
    "prepare_step",
    "step_args",
    "register_method",
    "registered_methods",
]

#: the default of ``grad_fmt``: Q_G rounds onto the weight format (both packages; docs/crosswalk-names.md)
GRAD_SAME = "same"

#: renamed options still accepted (with a DeprecationWarning): old name -> new name
_RENAMED_OPTIONS = {"sghmc_position_sign": "position_sign"}


@dataclass(frozen=True)
class Context:
    """Everything a family needs to build a method's state, noise layout and parameters."""

    method: str
    dim: int
    n_chains: int
    temperature: float
    grad_noise: float
    friction: float | None
    inverse_mass: float | None
    fmt: Any
    grad_fmt: Any
    wcode: np.ndarray
    gcode: np.ndarray
    target: Target
    options: dict


@dataclass(frozen=True)
class MethodSpec:
    """What a family registers for one method (docs/architecture.md, "Registry").

    ``width(dim, ctx)``: packed state width; ``init_state(x0, ctx)``: packed state
    from positions (n_chains, dim); ``noise_spec(dim, ctx)``: the noise entries of
    one chain-step; ``make_params(ctx)``: the float64 parameter vector of the
    kernel; ``run_chunk``: the family's jitted loop (:func:`refimpl._loop.make_chunk_loop`).
    Everything else (family, method id, precision, momentum, options, LP-L
    storage) is the method's row of :mod:`refimpl.methods`, :attr:`row`.
    """

    name: str
    width: Callable
    init_state: Callable
    noise_spec: Callable
    make_params: Callable
    run_chunk: Callable

    @property
    def row(self) -> _methods.Method:
        return _methods.METHODS[self.name]

    @property
    def family(self) -> str:
        return self.row.family

    @property
    def method_id(self) -> int:
        return self.row.method_id

    @property
    def options(self) -> dict:
        return dict(self.row.options)

    @property
    def momentum(self) -> bool:
        return self.row.momentum

    @property
    def lp_storage(self) -> bool:
        return self.row.lp_storage

    @property
    def needs_fmt(self) -> str:
        return "required" if self.row.low_precision else "none"


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> None:
    """Add (or replace) a method; families call this at import for each of their table rows."""
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"spec must be a MethodSpec, got {spec!r}")
    if spec.name not in _methods.METHODS:
        raise ValueError(f"method {spec.name!r} has no row in refimpl.methods.METHODS; add one first")
    _REGISTRY[spec.name] = spec


def _load(name: str) -> None:
    if name not in _REGISTRY:
        importlib.import_module(_methods.method(name).module)
        if name not in _REGISTRY:  # pragma: no cover - a family module that forgot to register
            raise RuntimeError(f"{_methods.METHODS[name].module} did not register method {name!r}")


def registered_methods() -> tuple:
    """Names of all methods (every family of the table is imported)."""
    for name in _methods.METHODS:
        _load(name)
    return tuple(sorted(_REGISTRY))


def lookup(method: str) -> MethodSpec:
    """The registered spec of ``method`` (importing its family on first use)."""
    _load(_methods.method(method).name)
    return _REGISTRY[method]


# --------------------------------------------------------------------------------------
# validation helpers (ValueError naming the argument and the value)
# --------------------------------------------------------------------------------------
def check_int(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    if value > 2**63 - 1:  # counts go into int64 arrays and Numba loops
        raise ValueError(f"{name} must be an integer >= {lo} and at most 2**63 - 1, got {value!r}")
    return int(value)


def check_real(name: str, value: object, *, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def _as_format(name, fmt):
    if isinstance(fmt, str):
        try:
            fmt = parse_format(fmt)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    try:
        code = format_code(fmt)
    except ValueError:
        raise ValueError(f"{name} must be None, a format string or a refimpl.formats format, got {fmt!r}") from None
    if int(code[KIND]) == KIND_BFP and getattr(fmt, "dim", None) is not None:
        raise ValueError(f"{name}: BlockFloatingPoint for a sampler uses one block per chain vector; give dim=None, got {fmt!r}")
    return fmt, code


def _is_none(fmt) -> bool:
    return fmt is None or (isinstance(fmt, str) and fmt.strip().lower() == "none")


def _is_same(fmt) -> bool:
    return isinstance(fmt, str) and fmt.strip().lower() == GRAD_SAME


def _renamed(options: dict) -> dict:
    out = dict(options)
    for old, new in _RENAMED_OPTIONS.items():
        if old in out:
            warnings.warn(f"option {old!r} is renamed {new!r} (the same name as in torchport)", DeprecationWarning,
                          stacklevel=4)
            if new in out:
                raise ValueError(f"give {new!r} only, got both {old!r} and {new!r}")
            out[new] = out.pop(old)
    return out


def build_context(spec: MethodSpec, dim: int, n_chains: int, target: str | Target, fmt: Format | str | None,
                  grad_fmt: Format | str | None, temperature: float, grad_noise: float, friction: float | None,
                  inverse_mass: float | None, options: dict[str, Any]) -> Context:
    """Validate the arguments of a run of ``spec`` and return its :class:`Context`.

    ``fmt``: the weight format Q_W (required by low-precision methods, refused by
    full-precision ones).  ``grad_fmt``: ``"same"`` (default: Q_W's format),
    ``None``/``"none"`` (full-precision gradients) or a format.
    """
    dim = check_int("dim", dim, 1)
    n_chains = check_int("n_chains", n_chains, 1)
    temperature = check_real("temperature", temperature, nonneg=True)
    grad_noise = check_real("grad_noise", grad_noise, nonneg=True)
    tgt = resolve_target(target, dim)
    dim = tgt.dim
    if spec.needs_fmt == "none":
        if not _is_none(fmt):
            raise ValueError(f"fmt must be None for the full-precision method {spec.name!r}, got {fmt!r}")
        if not (_is_none(grad_fmt) or _is_same(grad_fmt)):
            raise ValueError(f"grad_fmt must be None for the full-precision method {spec.name!r}, got {grad_fmt!r}")
        wf, wcode = _as_format("fmt", None)
        gf, gcode = wf, wcode
    else:
        wf, wcode = _as_format("fmt", fmt)
        if wf is None:
            raise ValueError(f"fmt must be a number format for the low-precision method {spec.name!r}, got {fmt!r}")
        if _is_same(grad_fmt):
            gf, gcode = wf, wcode
        else:
            gf, gcode = _as_format("grad_fmt", None if _is_none(grad_fmt) else grad_fmt)
    if spec.momentum:
        friction = 1.0 if friction is None else check_real("friction", friction, positive=True)
        inverse_mass = 1.0 if inverse_mass is None else check_real("inverse_mass", inverse_mass, positive=True)
    else:
        if friction is not None:
            raise ValueError(f"friction is only accepted by SGHMC-type methods, got friction={friction!r} for {spec.name!r}")
        if inverse_mass is not None:
            raise ValueError(f"inverse_mass is only accepted by SGHMC-type methods, got inverse_mass={inverse_mass!r} for {spec.name!r}")
    opts = spec.options
    for key, val in _renamed(options).items():
        if key not in opts:
            raise ValueError(f"unknown option {key!r} for method {spec.name!r} (accepted: {sorted(opts)})")
        opts[key] = val
    if opts.get("ties") is not None:
        wcode = with_options(wcode, ties=opts["ties"])
    if opts.get("vc_bfp_published"):
        wcode = with_options(wcode, vc_published=True)
    return Context(spec.name, dim, n_chains, temperature, grad_noise, friction, inverse_mass, wf, gf,
                   np.ascontiguousarray(wcode), np.ascontiguousarray(gcode), tgt, opts)


def step_args(method: str, step_size: float, noise: Any, n_chains: int, dim: int, target: str | Target,
              grad_noise: float, options: dict[str, Any]) -> tuple[float, np.ndarray]:
    """``(step_size, noise)`` of a public one-step function, checked before its kernel runs.

    ``step_size`` a finite number > 0; ``noise`` finite, ``n_chains * Z`` values with Z
    the width of ``refimpl.noise_spec(method, dim, ...)`` (the kernels index it without
    bounds checks), returned as a C-contiguous float64 (n_chains, Z) array.
    """
    from refimpl.driver import noise_spec  # the driver imports the method modules that call this

    step_size = check_real("step_size", step_size, positive=True)
    opts = {k: v for k, v in options.items() if k not in ("friction", "inverse_mass")}
    width = sum(int(np.prod(shape, dtype=np.int64)) for _, _, shape in
                noise_spec(method, dim, grad_noise=grad_noise, target=target, **opts))
    arr = np.asarray(noise)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"noise must be a float array, got dtype {arr.dtype}")
    if arr.size != n_chains * width:
        raise ValueError(f"noise must have shape ({n_chains}, {width}) (n_chains, the width of noise_spec), "
                         f"got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64).reshape(n_chains, width)
    if not np.all(np.isfinite(arr)):
        raise ValueError("noise must be finite, got a non-finite value")
    return step_size, arr


def prepare_step(method: str, family: str, dim: int, target: str | Target, fmt: Format | str | None,
                 grad_fmt: Format | str | None, temperature: float, grad_noise: float, friction: float | None,
                 inverse_mass: float | None,
                 options: dict[str, Any]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, Target]:
    """(method_id, mparams, wcode, gcode, target) for the families' public pure ``step``."""
    spec = lookup(method)
    if spec.family != family:
        raise ValueError(f"method {method!r} belongs to the {spec.family!r} family, not {family!r}")
    if not spec.momentum:
        friction = inverse_mass = None
    ctx = build_context(spec, dim, 1, target, fmt, grad_fmt, temperature, grad_noise, friction, inverse_mass,
                        options)
    return spec.method_id, spec.make_params(ctx), ctx.wcode, ctx.gcode, ctx.target
