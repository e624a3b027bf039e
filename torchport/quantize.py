"""Quantizers on torch tensors: the same formats and functions as :mod:`refimpl.quantize`.

Every function here mirrors the function of the same name in ``refimpl.quantize``
(spec ALGORITHMS.md §2): nearest rounding Q^d (Q1), stochastic rounding Q^s
(Q2'), the categorical offset Cat(μ, V) (Q4) and the variance-corrected
quantizer Q^vc (Q5)/(Q6).  The formats are **the refimpl dataclasses**
(``refimpl.formats.FixedPoint``, ``BlockFloatingPoint``, ``FloatingPoint``,
``IEEEFloat``, ``MXFormat``, ``NVFP4``); nothing is redefined here, and the kernels dispatch on the
same ``fmt.code`` array as the Numba kernels (docs/architecture.md).  The arithmetic
lives in :mod:`torchport.kernels`, one module per format kind named as its Numba
counterpart in :mod:`refimpl.kernels` (``fixed``, ``bfp``, ``float``, ``ieee``, ``mx``);
this module validates, draws noise and dispatches on ``code[KIND]`` (an unknown kind is
a ``ValueError``).

Two paths (docs/torchport.md "Two paths", docs/fast_path.md).  ``quantize``,
``stochastic_round`` and ``vc_quantize`` take ``exact``:

* ``exact=False`` (the **default**): the fast path of :mod:`torchport.fast` -- arithmetic in
  x's own dtype (float32/float64; float16/bfloat16 inputs are computed in float32 and the
  result cast back), every random number from the **counter stream**
  (:mod:`torchport.counter_rng`): a pure function of (seed, step, index, stream, element
  index).  ``seed=`` is an int in [0, 2^64) (the key, with ``step=`` and ``index=``,
  both 0 by default) or a ``torch.Generator`` (``generator=`` or ``seed=``), from which one
  integer in [0, 2^63 - 1) is drawn per call (:func:`torchport.optim._fastpath.counter_seed`),
  so repeated calls with one generator give fresh, reproducible noise, while an int seed
  gives the same noise for the same (seed, step, index).  Nearest rounding on this path
  equals the exact path bit for bit for every format on float64 and float32 inputs (tested).
  ``noise=`` is refused (``ValueError``): pre-drawn noise belongs to the exact path.
* ``exact=True``: the **exact path**, every quantizer in float64 op by op from a
  ``torch.Generator`` (the positional argument where refimpl takes ``rng``) or ``noise=``
  -- pre-drawn uniforms (Q^s, Cat) or the tuple ``(xi, u_round, u_cat)`` (Q^vc), exactly
  the noise-in forms of refimpl: fed identical noise, outputs equal refimpl's bit for bit
  (tests/torchport/test_quantize.py).  ``draw_*_noise(generator, shape)`` return the noise
  the generator forms consume (float64 ``torch.rand``/``randn``; refimpl's Generator forms
  draw theirs differently, e.g. keyed splitmix64 uniforms, so only the noise-in forms are
  comparable).  These are the numbers of every call made before the fast path became the
  default.

``categorical_offset`` (a draw from Cat, not a rounding) and ``vc_gap`` (deterministic)
have the exact path only.  No global-RNG fallback on either path: no seed (and, on the
exact path, no noise) is a ``ValueError``.

Dtypes and devices.  Inputs may be float64, float32, bfloat16 or float16 on any
device.  On the exact path, as in refimpl, all arithmetic is float64 (exact for every
narrower input) and the result is cast to the input dtype; bfloat16/float16 outputs round
to nearest even in that dtype when the format's grid is finer than the dtype
(unavoidable when storing in a coarser dtype).  The code is vectorised torch
elementwise/reduction ops (no Python loop over elements) and runs under
``torch.compile``.

Departure from qtorch: probabilities of rounding up are resolved to the full
uniform (float64/float32), not to 2^{-(23-W)} as qtorch's BFP/float kernels do
(§2.6, §7.1.5); CPU block/float stochastic rounding is seedable here.
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Sequence
from typing import Literal, Optional

import torch

from refimpl.formats import (
    FORMAT_TYPES,
    NVFP4,
    TIES_NAMES,
    BlockFloatingPoint,
    FixedPoint,
    FloatingPoint,
    IEEEFloat,
    MXFormat,
    format_code,
    parse_format,
    with_options,
)
from refimpl.slots import KIND, KIND_MODULES, KIND_NONE
from torchport import counter_rng as _cr
from torchport import fast as _fast
from torchport.kernels.bfp import _bfp_block_exp, _blocks  # noqa: F401  (kept importable)
from torchport.kernels.common import (  # noqa: F401
    _cat,
    _frexp_exp,
    _ldexp,
    _pow2,
    _round_int,
    exact_sqrt,
)
from torchport.kernels.fixed import _fixed_nearest, _fixed_stochastic  # noqa: F401
from torchport.kernels.float import _float_params, _vc_float_se  # noqa: F401
from torchport._seed import generator_from

__all__ = [
    "FixedPoint",
    "BlockFloatingPoint",
    "FloatingPoint",
    "IEEEFloat",
    "MXFormat",
    "NVFP4",
    "format_code",
    "parse_format",
    "quantize",
    "stochastic_round",
    "categorical_probabilities",
    "categorical_offset",
    "vc_quantize",
    "vc_gap",
    "draw_quantize_noise",
    "draw_vc_noise",
    "draw_categorical_noise",
    "ROUNDINGS",
    "exact_sqrt",
]

#: any refimpl.formats format (type hints; ``None``, where accepted, is the identity)
Format = FixedPoint | BlockFloatingPoint | FloatingPoint | IEEEFloat | MXFormat | NVFP4

_FLOAT_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)

#: format kind -> its kernel module torchport.kernels.<refimpl.slots.KIND_MODULES[kind]> (a new
#: format adds its module and its KIND_MODULES entry; nothing to edit here)
_KERNELS = {kind: importlib.import_module(f"torchport.kernels.{name}") for kind, name in KIND_MODULES.items()}


# ----------------------------------------------------------------------------- helpers
def _check_tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float64/float32/bfloat16/float16, got {x.dtype}")
    return x


def _code_tuple(fmt, ties=None, vc_published=False) -> tuple:
    """The format code (refimpl.formats.format_code, with options) as Python floats."""
    code = with_options(format_code(fmt), ties=ties, vc_published=vc_published)
    return tuple(float(c) for c in code)



def _kernels(code):
    """The kernel module of the code's kind; ``ValueError`` naming the kind if there is none."""
    kind = int(code[KIND])
    try:
        return _KERNELS[kind]
    except KeyError:
        raise ValueError(f"unknown format kind {kind} in code {tuple(code)}") from None


def _round(x: torch.Tensor, fmt, code: tuple, u: Optional[torch.Tensor]) -> torch.Tensor:
    """Dispatch on the format kind; ``u`` None means nearest rounding (float64 in and out)."""
    if int(code[KIND]) == KIND_NONE:
        return x.clone()
    k = _kernels(code)
    return k.nearest(x, code, fmt) if u is None else k.stochastic(x, u, code, fmt)


def _prepare(name, x):
    """Validate and upcast to float64 (refimpl computes in float64 for every input dtype)."""
    x = _check_tensor(name, x)
    return x.to(torch.float64), x.dtype


def _noise(name, given, like, generator, kind="uniform"):
    """Return pre-drawn noise (validated, as float64) or draw it from ``generator``; never global state."""
    if given is not None:
        if not isinstance(given, torch.Tensor):
            try:
                given = torch.as_tensor(given, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"{name} must be a tensor of shape {tuple(like.shape)}, got "
                                f"{type(given).__name__}") from None
        if given.is_complex() or given.dtype == torch.bool:
            raise TypeError(f"{name} must be a real tensor, got dtype {given.dtype}")
        if given.shape != like.shape:
            raise ValueError(f"{name} must have shape {tuple(like.shape)}, got {tuple(given.shape)}")
        return given.to(device=like.device, dtype=torch.float64)
    if generator is None:
        raise ValueError(f"pass either generator= (a torch.Generator) or pre-drawn {name}=; got neither")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    draw = torch.rand if kind == "uniform" else torch.randn
    return draw(like.shape, generator=generator, dtype=torch.float64, device=generator.device).to(like.device)



def _vc(mu, var, code, fmt, xi, ur, uc):
    """Q^vc elementwise (refimpl ``vc_into``), float64 in and out; the kind's ``vc`` kernel.

    BFP/floats: both branches use the escape re-rounding of refimpl ``vc_into`` (results
    leaving μ's block/binade are stochastically rounded onto the grid of their own
    exponent e' -- with ``u_round`` in branch 1, with the fair coin from the sign of ξ in
    branch 2 -- then saturated); an all-zero BFP block with V > 0 takes its Δ_B -> 0
    limit.  MX/NVFP4: docs/mx.md.  Same floating-point operations as refimpl, so
    bit-identical.
    """
    if int(code[KIND]) == KIND_NONE:
        raise ValueError(f"vc_quantize needs a low-precision format, got code {code}")
    return _kernels(code).vc(mu, var, code, fmt, xi, ur, uc)


# ------------------------------------------------------------------------ public API
ROUNDINGS = ("nearest", "stochastic")


def _check_generator(generator):
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {generator!r}")
    return generator


def _check_shape(shape) -> tuple[int, ...]:
    """``shape`` as a tuple of ints >= 0 (an int is a 1-d shape); ``TypeError``/``ValueError`` naming it."""
    dims = (shape,) if isinstance(shape, numbers.Integral) and not isinstance(shape, bool) else shape
    if not isinstance(dims, (tuple, list, torch.Size)) or any(
            isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in dims):
        raise TypeError(f"shape={shape!r}: must be an int >= 0 or a sequence of ints >= 0")
    if any(d < 0 for d in dims):
        raise ValueError(f"shape={shape!r}: sizes must be >= 0")
    return tuple(int(d) for d in dims)


def _check_device(device):
    """``device`` (None, a str, an int or a ``torch.device``) as a ``torch.device``; errors name it."""
    if device is None or isinstance(device, torch.device):
        return device
    if isinstance(device, bool) or not isinstance(device, (str, int)):
        raise TypeError(f"device={device!r}: must be a torch.device, a device string or None")
    try:
        return torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device={device!r}: not a torch device ({exc})") from None


def _noise_generator(generator, seed, where):
    """The generator of a random call: ``generator`` or ``seed`` (int or Generator), or None (noise-in form)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"{where}generator must be a torch.Generator, got {generator!r} (an int goes to seed=)")
    return generator_from(seed, generator, required=False, where=where)


def _check_uniform(noise, like, name):
    u = _noise(name, noise, like, None)
    if u.numel() and not bool(((u >= 0.0) & (u < 1.0)).all()):
        raise ValueError(f"{name} must hold uniforms in [0, 1), got values in [{float(u.min())}, {float(u.max())}]")
    return u


def _resolve(fmt, ties, vc_published=False):
    if ties is not None and ties not in TIES_NAMES:
        raise ValueError(f"ties must be one of {sorted(TIES_NAMES)} or None, got {ties!r}")
    if fmt is not None and not isinstance(fmt, FORMAT_TYPES):
        raise ValueError(f"fmt must be None or a refimpl.formats format, got {fmt!r}")
    return _code_tuple(fmt, ties, vc_published)


def _check_bfp_dim(x, fmt):
    """The block axis of a block format must exist in x (BFP ``dim``, MX ``axis``)."""
    if isinstance(fmt, BlockFloatingPoint) and fmt.dim is not None and (x.dim() == 0 or fmt.dim >= x.dim()):
        raise ValueError(f"fmt.dim={fmt.dim} is out of range for a tensor of shape {tuple(x.shape)} "
                         "(use dim=None for one block)")
    if isinstance(fmt, (MXFormat, NVFP4)) and x.dim() > 0 and not -x.dim() <= fmt.axis < x.dim():
        raise ValueError(f"fmt.axis={fmt.axis} is out of range for a tensor of shape {tuple(x.shape)}")



# ------------------------------------------------------------------ the default (fast) path
#: the counter stream of the public stochastic rounding (the default of
#: torchport.fast.stochastic_round_fast, so quantize(..., seed=s, step=t, index=i) equals
#: stochastic_round_fast(x, fmt, seed=s, step=t, param_index=i) on float32/float64)
SR_STREAM = "u_weight"
_SEED_LIMIT = 1 << 64


def _check_exact(exact) -> bool:
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be True or False, got {exact!r}")
    return exact


def _counter_position(step, index, exact: bool, where: str) -> tuple[int, int]:
    """``step`` and ``index`` of the counter key: ints in [0, 2^64); on the exact path only 0 (the default)."""
    for name, v in (("step", step), ("index", index)):
        is_int = isinstance(v, numbers.Integral) and not isinstance(v, bool)
        if exact:
            if not (is_int and v == 0):
                raise ValueError(f"{where}{name}={v!r} is a key of the default path's counter stream; exact=True "
                                 f"draws from generator= or noise= (leave {name} at 0, or pass exact=False)")
            continue
        if not is_int:
            raise TypeError(f"{where}{name}={v!r}: must be an int in [0, 2**64) (the counter stream's {name})")
        if not 0 <= v < _SEED_LIMIT:
            raise ValueError(f"{where}{name}={v!r}: must be an int in [0, 2**64) (the counter stream's {name})")
    return (0, 0) if exact else (int(step), int(index))


def _counter_source(seed, generator, where: str):
    """The checked source of the default path's counter seed: an int in [0, 2^64), a
    ``torch.Generator`` (nothing drawn yet) or None.  ``seed`` and ``generator`` both given: ValueError."""
    if seed is not None and generator is not None:
        raise ValueError(f"{where}pass seed= or generator= (the same thing), not both; got seed={seed!r} and "
                         f"generator={generator!r}")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"{where}generator must be a torch.Generator, got {generator!r} (an int goes to seed=)")
        return generator
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{where}seed={seed!r}: must be an int in [0, 2**64) or a torch.Generator")
    if not 0 <= seed < _SEED_LIMIT:
        raise ValueError(f"{where}seed={seed!r}: must be an int in [0, 2**64) or a torch.Generator")
    return int(seed)


def _draw_counter_seed(source) -> int:
    """The integer key: ``source`` itself, or one ``torch.randint(0, 2**63 - 1)`` drawn from a generator
    (the optimizers' rule, :func:`torchport.optim._fastpath.counter_seed`).  Call after every check."""
    from torchport.optim._fastpath import counter_seed  # noqa: PLC0415  (torchport.optim imports this module)

    return counter_seed(source)


def _check_fast(fmt, name: str = "fmt"):
    """``fmt`` if the default path supports it (asked of torchport.fast), else ValueError naming ``name`` and
    pointing to exact=True (torchport.optim._fastpath.check_fast_format)."""
    from torchport.optim._fastpath import check_fast_format  # noqa: PLC0415

    return check_fast_format(fmt, name)


def _fast_work(x: torch.Tensor) -> torch.Tensor:
    """x in the dtype the default path computes in: float64/float32 as they are, float16/bfloat16 as
    float32 (every format, qtorch ``FloatingPoint(8, M)`` included: torchport.fast saturates its
    float32 results beyond float32's range to ±inf, refimpl's float64 value cast)."""
    return x if x.dtype in (torch.float64, torch.float32) else x.to(torch.float32)


def _sr_keyed(x: torch.Tensor, fmt, key: torch.Tensor) -> torch.Tensor:
    """Q^s of x with the fast path's k-bit rule and the uniforms u_k(i) of the 0-d int64 stream ``key``
    (element i = C-order index; k = 53 in float64, 24 otherwise); x's dtype out.  Unvalidated
    (the callers check); ``torchport.nn`` passes keys computed on the device."""
    if fmt is None or x.numel() == 0:
        return x.clone()
    w = _fast_work(x)
    u = _cr.uniforms(key.to(w.device), w.numel(), dtype=w.dtype, device=w.device).reshape(w.shape)
    return _fast._round_tensor(w, fmt, _fast._code(fmt), u).to(x.dtype)


def _nearest_fast(x: torch.Tensor, fmt, ties) -> torch.Tensor:
    """Q^d of x on the default path (:func:`torchport.fast.quantize_fast` in :func:`_fast_work`'s dtype)."""
    if fmt is None or x.numel() == 0:
        return x.clone()
    return _fast.quantize_fast(_fast_work(x), fmt, ties=ties).to(x.dtype)


def _sr_stream_key(seed: int, step: int, index: int, device) -> torch.Tensor:
    return _cr.key_tensor(_cr.stream_key(seed, step, index, SR_STREAM), device)


def _draw_args(generator, shape, device, seed, where):
    """Validated (generator, shape, device) of a ``draw_*_noise`` call; nothing drawn yet."""
    shape = _check_shape(shape)
    device = _check_device(device)
    if seed is None:
        return _check_generator(generator), shape, device
    return generator_from(seed, generator, where=where), shape, device


def draw_quantize_noise(generator: Optional[torch.Generator] = None, shape: Sequence[int] | int | None = None, *,
                        device: torch.device | str | None = None,
                        seed: int | torch.Generator | None = None) -> torch.Tensor:
    """The uniforms ``quantize(..., "stochastic", generator, exact=True)`` consumes: ``torch.rand(shape, float64)``.

    ``generator`` or ``seed`` (an int or a ``torch.Generator``; ``generator=`` is the same
    as ``seed=<Generator>``); ``shape`` an int or a sequence of ints >= 0.
    Differs from refimpl's keyed (splitmix64) uniforms in *how* they are drawn,
    not in what they mean: fed the same array via ``noise=``, both packages agree
    bit for bit.
    """
    g, shape, device = _draw_args(generator, shape, device, seed, "draw_quantize_noise: ")
    out = torch.rand(shape, generator=g, dtype=torch.float64, device=g.device)
    return out if device is None else out.to(device)


def draw_vc_noise(generator: Optional[torch.Generator] = None, shape: Sequence[int] | int | None = None, *,
                  device: torch.device | str | None = None, seed: int | torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(xi, u_round, u_cat) consumed by ``vc_quantize(..., generator, exact=True)``: N(0,1), U[0,1), U[0,1), in
    this order (the exact path's noise; the default path draws from the counter stream).

    ``generator``/``seed``/``shape``/``device`` as :func:`draw_quantize_noise`.
    """
    g, shape, device = _draw_args(generator, shape, device, seed, "draw_vc_noise: ")
    xi = torch.randn(shape, generator=g, dtype=torch.float64, device=g.device)
    ur = torch.rand(shape, generator=g, dtype=torch.float64, device=g.device)
    uc = torch.rand(shape, generator=g, dtype=torch.float64, device=g.device)
    if device is not None:
        xi, ur, uc = xi.to(device), ur.to(device), uc.to(device)
    return xi, ur, uc


def draw_categorical_noise(generator: Optional[torch.Generator] = None, shape: Sequence[int] | int | None = None, *,
                           device: torch.device | str | None = None,
                           seed: int | torch.Generator | None = None) -> torch.Tensor:
    """The uniforms ``categorical_offset(..., generator)`` consumes: ``torch.rand(shape, float64)``.

    ``generator``/``seed``/``shape``/``device`` as :func:`draw_quantize_noise`.
    """
    g, shape, device = _draw_args(generator, shape, device, seed, "draw_categorical_noise: ")
    return draw_quantize_noise(g, shape, device=device)


def quantize(x: torch.Tensor, fmt: Format | None, rounding: Literal["nearest", "stochastic"] = "nearest",
             generator: Optional[torch.Generator] = None, *, ties: Literal["away", "even", "up"] | None = None,
             noise: torch.Tensor | None = None, seed: int | torch.Generator | None = None, exact: bool = False,
             step: int = 0, index: int = 0) -> torch.Tensor:
    """Quantize ``x`` onto ``fmt``'s grid by nearest (Q1) or stochastic (Q2') rounding (refimpl.quantize.quantize).

    Nearest, (Q1) = the paper's Q^d (LP-SGLD, Zhang et al. 2022, §3)::

        Q^d(x) = clip(sign(x) Δ floor(|x|/Δ + 1/2), L, U)        (round, then clip)

    ties away from zero for fixed point and qtorch float, toward +inf for BFP (as
    qtorch), to even for IEEE formats; ``ties="away"|"even"|"up"`` overrides.
    BFP: Δ_B = 2^(e_B+2−W) per block (Q3), saturating at ±(2^(e_B+1) − Δ_B);
    floats: Δ is the ULP of x's binade.

    Stochastic, (Q2') (LP-SGLD Q^s; LP-SGHMC eq. (2))::

        exact path:    Q^s(x) = clip(Δ floor(x/Δ + u), L, U),          u ~ U[0, 1) float64
        default path:  Q^s(x) = clip(Δ (floor(z) + [u_k < z − floor(z)]), L, U),   z = x/Δ,
                       u_k = the k-bit counter uniform (k = 53 float64, 24 float32)

    (docs/fast_path.md "Stochastic rounding's resolution": bias in [0, 2^-k Δ)).

    Two paths (module docstring):

    * ``exact=False`` (default): computed in x's dtype (float32/float64; float16/bfloat16 in
      float32, cast back) by :mod:`torchport.fast`.  Stochastic rounding needs ``seed``: an
      int in [0, 2^64) -- the counter key with ``step`` and ``index`` (ints in [0, 2^64),
      default 0): element i (C order) uses u_k(i) of stream key(seed, step, index,
      ``u_weight``), the same bits as ``torchport.fast.stochastic_round_fast(x, fmt,
      seed=seed, step=step, param_index=index)`` -- or a ``torch.Generator`` (``generator=``
      or ``seed=``), from which one integer in [0, 2^63 − 1) is drawn per call and used as
      the key.  Nearest rounding equals the exact path bit for bit for every format on
      float64 and float32 inputs, ties, subnormals, ±inf, NaN and saturation included
      (tests/torchport/test_fast_quantize_api.py).  ``noise=`` is refused (it feeds the exact
      path); a format the fast path lacks is a ValueError naming ``fmt`` and exact=True.
    * ``exact=True``: float64 for every input dtype (as refimpl), with ``generator`` (one
      float64 uniform per element, C order, :func:`draw_quantize_noise`), ``seed`` (an int: a
      fresh CPU generator; or a ``torch.Generator``, the same as ``generator=``) or ``noise``
      (pre-drawn uniforms of x's shape, refimpl's noise-in form): fed the same noise the
      result equals refimpl's bit for bit; bfloat16/float16 outputs are the float64 result
      cast.  ``step``/``index`` must stay 0.

    Parameters: ``x`` a tensor (float64/float32/bfloat16/float16, any device and shape);
    ``fmt`` a refimpl format or None (identity).  Returns a tensor of x's shape, dtype and
    device.  Every argument is checked before a generator is drawn from: a raising call
    changes nothing.  Departure from qtorch: exact rounding (qtorch CPU fixed point ties to
    even and its block/float paths resolve P(up) to 2^-(23-W)); seedable on every device.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    if _check_exact(exact):
        _counter_position(step, index, True, "")
        return _quantize_exact(x, fmt, rounding, generator, ties, noise, seed)
    if noise is not None:
        raise ValueError("noise= (pre-drawn uniforms) feeds the exact path: pass exact=True to use it; the default "
                         "path draws from the counter stream (seed=, step=, index=)")
    step, index = _counter_position(step, index, False, "")
    x = _check_tensor("x", x)
    _resolve(fmt, ties)
    _check_bfp_dim(x, fmt)
    _check_fast(fmt)
    if rounding == "nearest":
        return _nearest_fast(x, fmt, ties)
    if ties is not None:
        raise ValueError(f"ties applies to nearest rounding only, got ties={ties!r} with 'stochastic'")
    source = _counter_source(seed, generator, "")
    if source is None:
        raise ValueError("stochastic rounding needs seed= (an int or a torch.Generator) or generator=; got neither "
                         "(torchport never uses the global RNG; pre-drawn noise= needs exact=True)")
    key = _sr_stream_key(_draw_counter_seed(source), step, index, x.device)
    return _sr_keyed(x, fmt, key)


def _quantize_exact(x, fmt, rounding, generator, ties, noise, seed) -> torch.Tensor:
    """The exact path of :func:`quantize` (float64, generator or noise-in)."""
    xw, dt = _prepare("x", x)
    code = _resolve(fmt, ties)
    _check_bfp_dim(xw, fmt)
    if rounding == "nearest":
        if noise is not None:
            raise ValueError("noise is only used by rounding='stochastic', got noise for 'nearest'")
        return _round(xw, fmt, code, None).to(dt)
    if ties is not None:
        raise ValueError(f"ties applies to nearest rounding only, got ties={ties!r} with 'stochastic'")
    g = _noise_generator(generator, seed, "")
    if (g is None) == (noise is None):
        raise ValueError("stochastic rounding needs exactly one of generator= (or seed=) and noise=, got "
                         + ("both" if noise is not None else "neither"))
    u = _check_uniform(noise, xw, "noise") if noise is not None else \
        draw_quantize_noise(g, xw.shape, device=xw.device)
    return _round(xw, fmt, code, u).to(dt)


def stochastic_round(x: torch.Tensor, fmt: Format | None, generator: Optional[torch.Generator] = None, *,
                     noise: torch.Tensor | None = None, seed: int | torch.Generator | None = None,
                     exact: bool = False, step: int = 0, index: int = 0) -> torch.Tensor:
    """Q^s (Q2'): ``quantize(x, fmt, "stochastic", generator, noise=, seed=, exact=, step=, index=)``.

    See :func:`quantize` for both paths: by default the k-bit rule with counter uniforms keyed by
    (seed, step, index) in x's dtype; ``exact=True`` the float64 rule with a generator or noise.
    """
    return quantize(x, fmt, "stochastic", generator, noise=noise, seed=seed, exact=exact, step=step, index=index)


def _sr_fast(x: torch.Tensor, fmt, u: torch.Tensor) -> torch.Tensor:
    """Unvalidated Q^s with given uniforms (optimizer hot path); same arithmetic as :func:`quantize`."""
    if fmt is None:
        return x.clone()
    return _round(x.to(torch.float64), fmt, _code_tuple(fmt), u.to(torch.float64)).to(x.dtype)


def _real_tensor(name: str, value, device=None) -> torch.Tensor:
    """A real scalar or tensor as float64 (bool, str, None, complex refused with ``TypeError`` naming ``name``)."""
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be real, got a tensor of dtype {value.dtype}")
        return value.to(dtype=torch.float64, device=device if device is not None else value.device)
    if isinstance(value, (bool, str, bytes, complex)) or value is None:
        raise TypeError(f"{name} must be a real number or a real tensor, got {value!r}")
    try:
        return torch.as_tensor(value, dtype=torch.float64, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a real number or a real tensor, got {value!r:.80}") from None


def _cat_args(mu, var, delta) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(μ, V, Δ) of Cat (Q4) as broadcast float64 tensors, checked: Δ finite > 0 and (μ, V) admissible."""
    mu_t = _real_tensor("mu", mu)
    dev = mu_t.device
    var_t = _real_tensor("var", var, dev)
    d_t = _real_tensor("delta", delta, dev)
    if d_t.numel() and not bool((torch.isfinite(d_t) & (d_t > 0)).all()):
        raise ValueError(f"delta must be finite and > 0, got {delta!r}")
    try:
        mu_b, var_b, d_b = torch.broadcast_tensors(mu_t, var_t, d_t)
    except RuntimeError:
        raise ValueError(f"mu, var and delta must broadcast, got shapes mu {tuple(mu_t.shape)}, var "
                         f"{tuple(var_t.shape)}, delta {tuple(d_t.shape)}") from None
    tol = 1e-12 * d_b * d_b
    bad = ~((mu_b >= 0) & (mu_b <= 0.5 * d_b) & (var_b <= 0.25 * d_b * d_b + tol)
            & (var_b >= mu_b * (d_b - mu_b) - tol))
    if bool(bad.any()):
        i = int(bad.reshape(-1).nonzero()[0, 0])
        raise ValueError(f"(mu, var) = ({float(mu_b.reshape(-1)[i])!r}, {float(var_b.reshape(-1)[i])!r}) is not "
                         f"admissible for delta={float(d_b.reshape(-1)[i])!r}: need 0 <= mu <= delta/2 and "
                         "mu*(delta-mu) <= var <= delta**2/4")
    return mu_b, var_b, d_b


def categorical_probabilities(mu: torch.Tensor | float, var: torch.Tensor | float, delta: torch.Tensor | float
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P(+Δ), P(−Δ), P(0)) of Cat(μ, V) (Q4) (LP-SGHMC eq. (20)); tensors broadcast; float64.

    (μ, V, Δ) are checked as in :func:`categorical_offset` (Δ finite > 0, (μ, V) admissible),
    so the three numbers are probabilities; ValueError/TypeError naming the argument otherwise.
    """
    mu, var, delta = _cat_args(mu, var, delta)
    h = 0.5 * delta
    d2 = 2.0 * delta * delta
    w = var - h * h
    p_plus = (w + (h + mu) * (h + mu)) / d2
    p_minus = (w + (h - mu) * (h - mu)) / d2
    return p_plus, p_minus, 1.0 - p_plus - p_minus


def categorical_offset(mu: torch.Tensor | float, var: torch.Tensor | float, delta: torch.Tensor | float,
                       generator: Optional[torch.Generator] = None, *,
                       noise: torch.Tensor | None = None, seed: int | torch.Generator | None = None) -> torch.Tensor:
    """Draw c ~ Cat(μ, V) on {+Δ, −Δ, 0} (Q4), elementwise; mean μ, variance V (refimpl.quantize.categorical_offset).

    Sampling as the official code (ruqizhang/low-precision-sgld bnn/optim.py): +Δ
    if u < P(+Δ), −Δ if u < P(+Δ) + P(−Δ), else 0.  ``mu``, ``var``, ``delta``
    broadcast; (μ, V) must be admissible (0 ≤ μ ≤ Δ/2, μ(Δ−μ) ≤ V ≤ Δ²/4, up to
    1e-12 relative), else ValueError.  Randomness: one float64 uniform per element
    of the broadcast shape (``generator``, or ``seed``: an int or a ``torch.Generator``, the
    same thing) or ``noise``.  Returns float64.
    """
    mu_b, var_b, d_b = _cat_args(mu, var, delta)
    g = _noise_generator(generator, seed, "categorical_offset: ")
    if (g is None) == (noise is None):
        raise ValueError("categorical_offset needs exactly one of generator= (or seed=) and noise=, got "
                         + ("both" if noise is not None else "neither"))
    u = _check_uniform(noise, mu_b, "noise") if noise is not None else \
        draw_categorical_noise(g, mu_b.shape, device=mu_b.device)
    return _cat(mu_b, var_b, d_b, u)


def vc_gap(mu: torch.Tensor, fmt: Format | None) -> torch.Tensor:
    """Per-element gap Δ that :func:`vc_quantize` uses (float64, mu's shape; refimpl.quantize.vc_gap).

    Fixed point: Δ.  BFP: Δ_B of mu's block (0 for an all-zero block).  Float:
    2^(max(⌊log2|μ_i|⌋, e_min) − M).  MX/NVFP4: the element ULP times the block scale.
    """
    mw, _ = _prepare("mu", mu)
    code = _resolve(fmt, None)
    if int(code[KIND]) == KIND_NONE or mw.numel() == 0:
        return torch.zeros_like(mw)
    _check_bfp_dim(mw, fmt)
    return _kernels(code).gap(mw, code, fmt)


def vc_quantize(mu: torch.Tensor, var: float | torch.Tensor, fmt: Format | None,
                generator: Optional[torch.Generator] = None, *,
                noise: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                ties: Literal["away", "even", "up"] | None = None, vc_bfp_published: bool = False,
                seed: int | torch.Generator | None = None, exact: bool = False, step: int = 0,
                index: int = 0) -> torch.Tensor:
    """Variance-corrected quantizer Q^vc(μ, V, Δ) ((Q5)/(Q6); LP-SGLD Alg. "Q^vc", LP-SGHMC Alg. 2).

    Elementwise with V₀ = Δ²/4 and the branch chosen per element by its own Δ
    (:func:`vc_gap`; per block for BFP), exactly as refimpl.quantize.vc_quantize:

    * (Q5) V > V₀: x = μ + √(V − V₀)·ξ; r = x − Q^d(x); θ = Q^d(x) + sign(r)·Cat(|r|, V₀).
    * (Q6) V ≤ V₀: q = Q^s(μ); V_s = p(1−p)Δ², p = frac(|μ|/Δ); θ = q + Cat(0, V − V_s) if V > V_s, else q.
    * Range: fixed point clipped to [L, U]; BFP/float branch 2 clipped to μ's block
      (binade) range; BFP/float branch 1 results leaving μ's block (binade) are
      re-rounded stochastically with ``u_round`` onto the grid of their own exponent and
      saturated (the escape rule of refimpl.quantize.vc_quantize, a departure from the
      spec's clip, which made samplers collapse); an all-zero BFP block with V > 0 gives
      √V·ξ rounded onto its own block grid.

    Parameters: ``mu`` a tensor (any float dtype/device/shape; output has its
    dtype); ``var`` a float scalar ≥ 0; ``fmt`` a format or None (identity);
    ``ties`` of Q^d inside (Q5); ``vc_bfp_published`` reproduces the published
    BFP/float ``fp_Q_vc`` fallback to plain Q^s (§7.2.1).  Noise: ξ, u_round, u_cat,
    one of each per element whichever branch is taken, from

    * ``exact=False`` (default): the counter streams ``xi``, ``u_round``, ``u_cat`` of
      key(seed, step, index) (Box–Muller normals; k-bit uniforms), computed in mu's dtype
      (float16/bfloat16 in float32) by :func:`torchport.fast.vc_quantize_fast` -- the same
      bits as ``vc_quantize_fast(mu, var, fmt, seed=seed, step=step, param_index=index)``;
      ``seed`` an int in [0, 2^64) or a ``torch.Generator`` (``generator=`` or ``seed=``:
      one integer drawn per call), as :func:`quantize`; ``noise=`` is refused;
    * ``exact=True``: float64, ``generator`` (draws :func:`draw_vc_noise`; or ``seed``: an
      int or a ``torch.Generator``, the same thing) or ``noise=(xi, u_round, u_cat)`` (ξ
      finite, the uniforms in [0, 1)), bit for bit refimpl's noise-in form.
    Departure from the published code: per-element branch with μ's Δ kept for the
    call, so there is no NaN path (§2.5 "Project choice").
    """
    if _check_exact(exact):
        _counter_position(step, index, True, "vc_quantize: ")
        return _vc_quantize_exact(mu, var, fmt, generator, noise, ties, vc_bfp_published, seed)
    if noise is not None:
        raise ValueError("vc_quantize: noise= (pre-drawn xi, u_round, u_cat) feeds the exact path: pass exact=True "
                         "to use it; the default path draws from the counter stream (seed=, step=, index=)")
    step, index = _counter_position(step, index, False, "vc_quantize: ")
    mu = _check_tensor("mu", mu)
    v = _check_var(var)
    if not isinstance(vc_bfp_published, bool):
        raise TypeError(f"vc_bfp_published must be a bool, got {vc_bfp_published!r}")
    _resolve(fmt, ties, vc_published=vc_bfp_published)
    _check_bfp_dim(mu, fmt)
    _check_fast(fmt)
    source = _counter_source(seed, generator, "vc_quantize: ")
    if source is None:
        raise ValueError("vc_quantize needs seed= (an int or a torch.Generator) or generator=; got neither "
                         "(torchport never uses the global RNG; pre-drawn noise= needs exact=True)")
    key = _draw_counter_seed(source)
    if fmt is None or mu.numel() == 0:
        return mu.clone()
    w = _fast_work(mu)
    return _fast.vc_quantize_fast(w, v, fmt, seed=key, step=step, param_index=index, ties=ties,
                                  vc_published=vc_bfp_published).to(mu.dtype)


def _check_var(var) -> float:
    """``var`` of Q^vc as a finite float >= 0 (a real scalar or 0-d tensor); ValueError naming it."""
    if isinstance(var, torch.Tensor) and var.dim() != 0:
        raise ValueError(f"var must be a real scalar >= 0, got a tensor of shape {tuple(var.shape)}")
    if isinstance(var, bool) or not isinstance(var, (int, float)) and not (
            isinstance(var, torch.Tensor) and not var.is_complex()):
        raise ValueError(f"var must be a real scalar >= 0, got {var!r}")
    v = float(var)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"var must be a finite real scalar >= 0, got {var!r}")
    return v


def _vc_quantize_exact(mu, var, fmt, generator, noise, ties, vc_bfp_published, seed) -> torch.Tensor:
    """The exact path of :func:`vc_quantize` (float64, generator or noise-in)."""
    mw, dt = _prepare("mu", mu)
    v = _check_var(var)
    if not isinstance(vc_bfp_published, bool):
        raise TypeError(f"vc_bfp_published must be a bool, got {vc_bfp_published!r}")
    code = _resolve(fmt, ties, vc_published=vc_bfp_published)
    _check_bfp_dim(mw, fmt)
    g = _noise_generator(generator, seed, "vc_quantize: ")
    if (g is None) == (noise is None):
        raise ValueError("vc_quantize needs exactly one of generator= (or seed=) and noise=, got "
                         + ("both" if noise is not None else "neither"))
    if noise is None:
        xi, ur, uc = draw_vc_noise(g, mw.shape, device=mw.device)
    else:
        if not (isinstance(noise, (tuple, list)) and len(noise) == 3):
            raise ValueError(f"noise must be a tuple (xi, u_round, u_cat), got {type(noise).__name__}")
        xi = _noise("noise[0] (xi)", noise[0], mw, None)
        if xi.numel() and not bool(torch.isfinite(xi).all()):
            first = float(xi.reshape(-1)[~torch.isfinite(xi.reshape(-1))][0])
            raise ValueError(f"noise[0] (xi) must hold finite normals, got {first!r}")
        ur = _check_uniform(noise[1], mw, "noise[1] (u_round)")
        uc = _check_uniform(noise[2], mw, "noise[2] (u_cat)")
    if mw.numel() == 0 or int(code[KIND]) == KIND_NONE:
        return mw.clone().to(dt)
    return _vc(mw, v, code, fmt, xi, ur, uc).to(dt)


def _vc_fast(mu: torch.Tensor, var: float, fmt, xi, ur, uc, *, ties=None, vc_published=False) -> torch.Tensor:
    """Unvalidated Q^vc with given noise (optimizer hot path); same arithmetic as :func:`vc_quantize`."""
    f64 = torch.float64
    code = _code_tuple(fmt, ties, vc_published)
    return _vc(mu.to(f64), float(var), code, fmt, xi.to(f64), ur.to(f64), uc.to(f64)).to(mu.dtype)
