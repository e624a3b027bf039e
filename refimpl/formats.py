"""Number formats of the reference implementation (ALGORITHMS.md §2.1-§2.3).

Every format is a frozen, validated dataclass.  Each exposes ``fmt.code``: a
read-only ``float64`` array of length :data:`CODE_LEN` that the jitted kernels of
:mod:`refimpl._qkernels` dispatch on, so kernels never see Python objects
(docs/architecture.md, "Number formats and their kernel code").

Layout of ``code`` (entries 0-4 are the contract of docs/architecture.md; the
trailing entries are an extension, backwards compatible with it):

=====  =====================  ==========================================================
index  meaning                values
=====  =====================  ==========================================================
0      kind                   0 none, 1 fixed, 2 block float, 3 qtorch float, 4 IEEE float
1-4    format parameters      fixed: delta, lo, hi, wl; bfp: wl; float/IEEE: exp, man,
                              largest finite value, has-inf (0/1)
5      tie rule of Q^d        1 away from zero, 2 to even, 3 toward +inf
6      IEEE overflow          0 IEEE (inf, or NaN for float8_e4m3fn), 1 saturate
7      VC flags (bit field)   bit 1 (value 1): reproduce the published BFP/float
                              ``fp_Q_vc`` fallback; bit 2 (value 2): test hook only,
                              restores the spec's clip to mu's block range (the
                              collapsing rule, see docs/quantizers.md) for mutation tests
=====  =====================  ==========================================================

Two float families are kept apart on purpose (§2.3, §7.1 item 2):

* :class:`FloatingPoint` (alias :func:`qtorch_float`) -- qtorch >= 0.3 semantics:
  e_min = 2 - 2^(E-1), e_max = 2^(E-1) (no exponent code is reserved for inf/NaN),
  subnormals, saturation at the largest finite value, ties away from zero.
* :class:`IEEEFloat` -- float16, bfloat16, float8_e4m3fn, float8_e5m2 with IEEE
  round-to-nearest-even; bit-for-bit equal to ``ml_dtypes`` / ``numpy.float16``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "CODE_LEN",
    "KIND_NONE",
    "KIND_FIXED",
    "KIND_BFP",
    "KIND_FLOAT",
    "KIND_IEEE",
    "TIES_AWAY",
    "TIES_EVEN",
    "TIES_UP",
    "TIES_NAMES",
    "FixedPoint",
    "BlockFloatingPoint",
    "FloatingPoint",
    "IEEEFloat",
    "IEEE_FORMATS",
    "qtorch_float",
    "format_code",
    "parse_format",
    "with_options",
]

CODE_LEN = 8
KIND_NONE, KIND_FIXED, KIND_BFP, KIND_FLOAT, KIND_IEEE = 0, 1, 2, 3, 4
TIES_AWAY, TIES_EVEN, TIES_UP = 1, 2, 3
#: accepted names of the ``ties=`` option -> code value
TIES_NAMES = {"away": TIES_AWAY, "even": TIES_EVEN, "up": TIES_UP}


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value!r}")
    return value


def _readonly(values) -> np.ndarray:
    code = np.zeros(CODE_LEN, dtype=np.float64)
    code[: len(values)] = values
    code.setflags(write=False)
    return code


@dataclass(frozen=True)
class FixedPoint:
    """Fixed point ``FixedPoint(wl, fl)`` (§2.1, [paper†, paper]).

    Grid Δ = 2^-fl; range L = -2^(wl-fl-1), U = 2^(wl-fl-1) - Δ.  With
    ``symmetric=True`` the range is [-U, U] (qtorch ``symmetric=True``).

    ``wl`` in [1, 53] (so that every grid point is exact in float64); ``fl`` any
    integer with Δ and L normal float64 numbers.  Unlike qtorch, ``fl <= 0`` is
    allowed (qtorch asserts fl > 0, §7.1 item 6).
    """

    wl: int
    fl: int
    symmetric: bool = False
    code: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        wl = _check_int("wl", self.wl, 1, 53)
        fl = _check_int("fl", self.fl, wl - 1022, 1022)
        if not isinstance(self.symmetric, (bool, np.bool_)):
            raise ValueError(f"symmetric must be a bool, got {self.symmetric!r}")
        object.__setattr__(self, "wl", wl)
        object.__setattr__(self, "fl", fl)
        object.__setattr__(self, "symmetric", bool(self.symmetric))
        object.__setattr__(
            self, "code", _readonly([KIND_FIXED, self.delta, self.lo, self.hi, wl, TIES_AWAY, 0, 0])
        )

    @property
    def delta(self) -> float:
        """Grid spacing Δ = 2^-fl."""
        return float(np.ldexp(1.0, -self.fl))

    @property
    def hi(self) -> float:
        """Largest representable value U = 2^(wl-fl-1) - Δ."""
        return float(np.ldexp(1.0, self.wl - self.fl - 1)) - self.delta

    @property
    def lo(self) -> float:
        """Smallest representable value L = -2^(wl-fl-1) (or -U if symmetric)."""
        return -self.hi if self.symmetric else -float(np.ldexp(1.0, self.wl - self.fl - 1))


@dataclass(frozen=True)
class BlockFloatingPoint:
    """Block floating point ``BlockFloatingPoint(wl, dim)`` (§2.2, (Q3); qtorch semantics).

    One shared exponent per block: m_B = max|x_j| over the block's finite entries,
    e_B = floor(log2 m_B), Δ_B = 2^(e_B+2-wl).  Representable values are k·Δ_B with
    |k| <= 2^(wl-1) - 1 (symmetric saturation).  A block of zeros stays zero.

    ``dim=None``: the whole array is one block (qtorch ``dim=-1``).  ``dim=k``
    (k >= 0): one block per index along axis k, i.e. each slice ``x[..., i, ...]``
    with i on axis k (qtorch ``dim=k``).  Negative ``dim`` is rejected because
    qtorch's -1 means "whole tensor" while NumPy's -1 means "last axis".
    """

    wl: int
    dim: int | None = None
    code: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        wl = _check_int("wl", self.wl, 2, 53)
        dim = self.dim
        if dim is not None:
            dim = _check_int("dim", dim, 0, 63)
        object.__setattr__(self, "wl", wl)
        object.__setattr__(self, "dim", dim)
        object.__setattr__(self, "code", _readonly([KIND_BFP, wl, 0, 0, 0, TIES_UP, 0, 0]))


def _float_params(exp: int, man: int, emax: int) -> float:
    """Largest finite value 2^emax (2 - 2^-man)."""
    return float(np.ldexp(2.0 - np.ldexp(1.0, -man), emax))


@dataclass(frozen=True)
class FloatingPoint:
    """qtorch >= 0.3 low-precision float ``FloatingPoint(exp, man)`` (§2.3). **Not IEEE.**

    Normal exponents e in [e_min, e_max], e_min = 2 - 2^(exp-1), e_max = 2^(exp-1)
    (no inf/NaN codes); normal values ±2^e (1 + k 2^-man); subnormals
    ±2^e_min k 2^-man; largest finite value 2^e_max (2 - 2^-man), to which every
    larger magnitude (and ±inf) saturates.  E4M3 max = 480, E5M2 max = 114688.

    ``exp`` in [2, 10], ``man`` in [0, 52].
    """

    exp: int
    man: int
    code: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        exp = _check_int("exp", self.exp, 2, 10)
        man = _check_int("man", self.man, 0, 52)
        object.__setattr__(self, "exp", exp)
        object.__setattr__(self, "man", man)
        object.__setattr__(
            self, "code", _readonly([KIND_FLOAT, exp, man, self.max, 0, TIES_AWAY, 1, 0])
        )

    @property
    def emin(self) -> int:
        return 2 - 2 ** (self.exp - 1)

    @property
    def emax(self) -> int:
        return 2 ** (self.exp - 1)

    @property
    def max(self) -> float:
        return _float_params(self.exp, self.man, self.emax)

    @property
    def min_positive(self) -> float:
        return float(np.ldexp(1.0, self.emin - self.man))


def qtorch_float(exp: int, man: int) -> FloatingPoint:
    """qtorch-semantics float (non-IEEE, §7.1 item 2); same as ``FloatingPoint(exp, man)``."""
    return FloatingPoint(exp, man)


#: name -> (exp, man, largest finite value, has_inf)
IEEE_FORMATS = {
    "float16": (5, 10, 65504.0, 1),
    "bfloat16": (8, 7, float(np.ldexp(2.0 - 2.0**-7, 127)), 1),
    "float8_e4m3fn": (4, 3, 448.0, 0),
    "float8_e5m2": (5, 2, 57344.0, 1),
}


@dataclass(frozen=True)
class IEEEFloat:
    """IEEE-style float ``IEEEFloat(name)``: float16, bfloat16, float8_e4m3fn, float8_e5m2 (§2.3).

    Round to nearest, ties to even, subnormals, e_min = 2 - 2^(exp-1); agrees bit
    for bit with ``ml_dtypes`` / ``numpy.float16`` casts.  Overflow is IEEE by
    default: a result whose magnitude exceeds the largest finite value becomes ±inf
    (float16, bfloat16, float8_e5m2) or NaN (float8_e4m3fn, which has no inf), as
    ml_dtypes does.  ``saturate=True`` clamps to ±max instead.
    """

    name: str
    saturate: bool = False
    code: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.name not in IEEE_FORMATS:
            raise ValueError(f"name must be one of {sorted(IEEE_FORMATS)}, got {self.name!r}")
        if not isinstance(self.saturate, (bool, np.bool_)):
            raise ValueError(f"saturate must be a bool, got {self.saturate!r}")
        object.__setattr__(self, "saturate", bool(self.saturate))
        exp, man, mx, has_inf = IEEE_FORMATS[self.name]
        object.__setattr__(
            self,
            "code",
            _readonly([KIND_IEEE, exp, man, mx, has_inf, TIES_EVEN, 1 if self.saturate else 0, 0]),
        )

    @property
    def exp(self) -> int:
        return IEEE_FORMATS[self.name][0]

    @property
    def man(self) -> int:
        return IEEE_FORMATS[self.name][1]

    @property
    def max(self) -> float:
        return IEEE_FORMATS[self.name][2]

    @property
    def emin(self) -> int:
        return 2 - 2 ** (self.exp - 1)


_FORMAT_TYPES = (FixedPoint, BlockFloatingPoint, FloatingPoint, IEEEFloat)
_IDENTITY_CODE = _readonly([KIND_NONE, 0, 0, 0, 0, TIES_AWAY, 0, 0])


def format_code(fmt) -> np.ndarray:
    """Kernel code of ``fmt`` (read-only float64 array); ``None`` gives the identity (kind 0)."""
    if fmt is None:
        return _IDENTITY_CODE
    if isinstance(fmt, _FORMAT_TYPES):
        return fmt.code
    raise ValueError(f"fmt must be None or a refimpl.formats format, got {fmt!r}")


def with_options(code: np.ndarray, *, ties: str | None = None, vc_published: bool = False) -> np.ndarray:
    """Copy of a kernel code with the tie rule and/or the VC published flag changed."""
    if ties is None and not vc_published:
        return code
    out = np.array(code, dtype=np.float64)
    if ties is not None:
        if ties not in TIES_NAMES:
            raise ValueError(f"ties must be one of {sorted(TIES_NAMES)} or None, got {ties!r}")
        out[5] = TIES_NAMES[ties]
    if vc_published:
        out[7] = 1.0
    out.setflags(write=False)
    return out


def parse_format(text: str):
    """Build a format from a string (command line).

    ``"none"`` -> None; ``"fixed:W:F"`` or ``"fixed:W:F:sym"`` -> FixedPoint;
    ``"bfp:W"`` (one block) or ``"bfp:W:DIM"`` -> BlockFloatingPoint;
    ``"float:E:M"`` or ``"qtorch_float:E:M"`` -> FloatingPoint (qtorch semantics);
    ``"ieee:NAME"`` (float16, bfloat16, float8_e4m3fn, float8_e5m2) -> IEEEFloat;
    ``"ieee:NAME:sat"`` -> saturating IEEEFloat.
    """
    if not isinstance(text, str):
        raise ValueError(f"format string must be a str, got {text!r}")
    parts = text.strip().lower().split(":")
    kind, args = parts[0], parts[1:]

    def ints(n_min, n_max):
        if not n_min <= len(args) <= n_max:
            raise ValueError(f"format string {text!r}: expected {n_min}-{n_max} fields after '{kind}:'")
        try:
            return [int(a) for a in args]
        except ValueError:
            raise ValueError(f"format string {text!r}: fields must be integers") from None

    if kind == "none" and not args:
        return None
    if kind == "fixed":
        sym = False
        if len(args) == 3 and args[2] in ("sym", "symmetric"):
            sym, args = True, args[:2]
        wl, fl = ints(2, 2)
        return FixedPoint(wl, fl, symmetric=sym)
    if kind == "bfp":
        vals = ints(1, 2)
        return BlockFloatingPoint(vals[0], vals[1] if len(vals) == 2 else None)
    if kind in ("float", "qtorch_float"):
        exp, man = ints(2, 2)
        return FloatingPoint(exp, man)
    if kind == "ieee" and len(args) in (1, 2):
        sat = len(args) == 2 and args[1] in ("sat", "saturate")
        if len(args) == 2 and not sat:
            raise ValueError(f"format string {text!r}: the optional field must be 'sat'")
        return IEEEFloat(args[0], saturate=sat)
    raise ValueError(
        f"format string {text!r} not understood; use none, fixed:W:F[:sym], bfp:W[:DIM], "
        "float:E:M, ieee:NAME[:sat]"
    )
