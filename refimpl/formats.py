"""Number formats of the reference implementation (ALGORITHMS.md §2.1-§2.3).

Every format is a frozen, validated dataclass.  Each exposes ``fmt.code``: a
read-only ``float64`` array of length :data:`CODE_LEN` that the jitted kernels of
:mod:`refimpl._qkernels` dispatch on, so kernels never see Python objects
(docs/architecture.md, "Number formats and their kernel code").

The entries of ``code`` are named in :mod:`refimpl.slots` (the one module that knows
their positions; docs/quantizers.md): the kind, then the kind's parameters, the tie
rule, the overflow rule, the Q^vc flags and, for microscaling formats, the block size,
scale type, element emax and per-tensor scale.

Two float families are kept apart on purpose (§2.3, §7.1 item 2):

* :class:`FloatingPoint` (alias :func:`qtorch_float`) -- qtorch >= 0.3 semantics:
  e_min = 2 - 2^(E-1), e_max = 2^(E-1) (no exponent code is reserved for inf/NaN),
  subnormals, saturation at the largest finite value, ties away from zero.
* :class:`IEEEFloat` -- float16, bfloat16, float8_e4m3fn, float8_e5m2 with IEEE
  round-to-nearest-even; bit-for-bit equal to ``ml_dtypes`` / ``numpy.float16``.

Microscaling (docs/mx.md): :class:`MXFormat` (OCP MX v1.0: MXFP8 E4M3/E5M2, MXFP6
E3M2/E2M3, MXFP4, MXINT8; blocks of 32 with an E8M0 scale) and :class:`NVFP4` (E2M1
elements, blocks of 16 with an E4M3 scale, optional per-tensor FP32 scale).

Sections below: one per format kind (fixed, bfp, float, ieee, mx), then dispatch helpers.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from refimpl import slots as S
from refimpl.slots import (
    CODE_LEN,
    KIND_BFP,
    KIND_FIXED,
    KIND_FLOAT,
    KIND_IEEE,
    KIND_MX,
    KIND_NONE,
    TIES_AWAY,
    TIES_EVEN,
    TIES_UP,
)

__all__ = [
    "CODE_LEN",
    "KIND_NONE",
    "KIND_FIXED",
    "KIND_BFP",
    "KIND_FLOAT",
    "KIND_IEEE",
    "KIND_MX",
    "TIES_AWAY",
    "TIES_EVEN",
    "TIES_UP",
    "TIES_NAMES",
    "FixedPoint",
    "BlockFloatingPoint",
    "FloatingPoint",
    "IEEEFloat",
    "IEEE_FORMATS",
    "MXFormat",
    "NVFP4",
    "MX_FORMATS",
    "MX_ELEMENTS",
    "FORMAT_TYPES",
    "qtorch_float",
    "format_code",
    "parse_format",
    "with_options",
]

#: accepted names of the ``ties=`` option -> code value
TIES_NAMES = {"away": TIES_AWAY, "even": TIES_EVEN, "up": TIES_UP}


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value!r}")
    return value


def _readonly_slots(entries: dict) -> np.ndarray:
    """A read-only code with the given {slot: value} entries (refimpl.slots), zeros elsewhere."""
    code = np.zeros(CODE_LEN, dtype=np.float64)
    for slot, value in entries.items():
        code[slot] = value
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
            self,
            "code",
            _readonly_slots(
                {S.KIND: KIND_FIXED, S.FIXED_DELTA: self.delta, S.FIXED_LO: self.lo, S.FIXED_HI: self.hi,
                 S.FIXED_WL: wl, S.TIES: TIES_AWAY}
            ),
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
        object.__setattr__(self, "code", _readonly_slots({S.KIND: KIND_BFP, S.BFP_WL: wl, S.TIES: TIES_UP}))


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
            self,
            "code",
            _readonly_slots(
                {S.KIND: KIND_FLOAT, S.FLOAT_EXP: exp, S.FLOAT_MAN: man, S.FLOAT_MAX: self.max,
                 S.TIES: TIES_AWAY, S.SATURATE: 1}
            ),
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
        if not isinstance(self.name, str) or self.name not in IEEE_FORMATS:
            raise ValueError(f"name must be one of {sorted(IEEE_FORMATS)}, got {self.name!r}")
        if not isinstance(self.saturate, (bool, np.bool_)):
            raise ValueError(f"saturate must be a bool, got {self.saturate!r}")
        object.__setattr__(self, "saturate", bool(self.saturate))
        exp, man, mx, has_inf = IEEE_FORMATS[self.name]
        object.__setattr__(
            self,
            "code",
            _readonly_slots(
                {S.KIND: KIND_IEEE, S.FLOAT_EXP: exp, S.FLOAT_MAN: man, S.FLOAT_MAX: mx, S.FLOAT_HAS_INF: has_inf,
                 S.TIES: TIES_EVEN, S.SATURATE: 1 if self.saturate else 0}
            ),
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


# --------------------------------------------------------------------------------------
# microscaling: OCP MX v1.0 and NVFP4 (kind 5)
# --------------------------------------------------------------------------------------
#: element type -> (exp, man, largest value, emax, integer elements, smallest value)
MX_ELEMENTS = {
    "e4m3": (4, 3, 448.0, 8, 0, -448.0),
    "e5m2": (5, 2, 57344.0, 15, 0, -57344.0),
    "e3m2": (3, 2, 28.0, 4, 0, -28.0),
    "e2m3": (2, 3, 7.5, 2, 0, -7.5),
    "e2m1": (2, 1, 6.0, 2, 0, -6.0),
    "int8": (0, 6, 127.0 / 64.0, 0, 1, -2.0),
}
#: MX format name -> element type (OCP MX v1.0 Table 1)
MX_FORMATS = {
    "mxfp8_e4m3": "e4m3",
    "mxfp8_e5m2": "e5m2",
    "mxfp6_e3m2": "e3m2",
    "mxfp6_e2m3": "e2m3",
    "mxfp4": "e2m1",
    "mxint8": "int8",
}
MX_BLOCK_SIZE = 32
NVFP4_BLOCK_SIZE = 16


def _check_axis(axis) -> int:
    return _check_int("axis", axis, -64, 63)


@dataclass(frozen=True)
class MXFormat:
    """OCP Microscaling format ``MXFormat(name, axis=-1)`` (OCP MX v1.0, §5; docs/mx.md).

    ``name`` is one of ``mxfp8_e4m3``, ``mxfp8_e5m2``, ``mxfp6_e3m2``, ``mxfp6_e2m3``,
    ``mxfp4`` (E2M1 elements) or ``mxint8``.  Blocks of k = 32 consecutive elements along
    ``axis`` (NumPy convention, negative counts from the end; a last, shorter block holds
    the remainder) share one E8M0 scale 2^X with the spec's choice (§6.3)::

        X = clip(floor(log2 max_i |V_i|) - emax_elem, -127, 127),   P_i = Q(V_i / 2^X)

    and each element P_i is rounded onto the element grid (FP8/FP6/FP4: sign, exponent
    and mantissa with subnormals; INT8: k·2^-6, k in [-128, 127]) with saturation at the
    element's largest magnitude.  The value is P_i·2^X.  Special values: a NaN anywhere
    in a block makes the whole block NaN (the E8M0 NaN scale); ±inf makes max|V| = inf,
    so X = 127 and the ±inf element saturates to ±max_elem·2^127 (as gfloat's
    ``quantize_block``); an all-zero block stays zero.  That is Q^d; Q^s and Q^vc use the
    smallest scale that holds the block (the spec's, or 2^(X+1) when the spec's choice
    would saturate the block maximum), so that they are unbiased (docs/mx.md).
    """

    name: str
    axis: int = -1
    code: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or self.name not in MX_FORMATS:
            raise ValueError(f"name must be one of {sorted(MX_FORMATS)}, got {self.name!r}")
        object.__setattr__(self, "axis", _check_axis(self.axis))
        exp, man, mx, emax, is_int, lo = MX_ELEMENTS[MX_FORMATS[self.name]]
        object.__setattr__(
            self,
            "code",
            _readonly_slots(
                {
                    S.KIND: KIND_MX, S.FLOAT_EXP: exp, S.FLOAT_MAN: man, S.FLOAT_MAX: mx,
                    S.TIES: TIES_EVEN, S.SATURATE: 1, S.MX_BLOCK: MX_BLOCK_SIZE,
                    S.MX_SCALE: S.SCALE_E8M0, S.MX_EMAX: emax, S.MX_TENSOR_SCALE: 1.0,
                    S.MX_INT: is_int, S.MX_LO: lo,
                }
            ),
        )

    @property
    def element(self) -> str:
        """Element type: e4m3, e5m2, e3m2, e2m3, e2m1 or int8."""
        return MX_FORMATS[self.name]

    @property
    def block_size(self) -> int:
        return MX_BLOCK_SIZE

    @property
    def max(self) -> float:
        """Largest element magnitude (the block's range is ±max·2^X)."""
        return MX_ELEMENTS[self.element][2]

    @property
    def emax(self) -> int:
        """emax of the element type: floor(log2 max) (the scale rule subtracts it)."""
        return MX_ELEMENTS[self.element][3]


@dataclass(frozen=True)
class NVFP4:
    """NVIDIA NVFP4 ``NVFP4(axis=-1, tensor_scale=1.0)`` (docs/mx.md).

    E2M1 elements (as MXFP4) in blocks of 16 consecutive elements along ``axis``, each
    block with an FP8 E4M3 scale s_B, and an optional per-tensor FP32 scale s_T
    (``tensor_scale``, a positive finite float32 value; 1.0 means none)::

        s_B = E4M3((max_i |V_i| / 6) / s_T)   (round to nearest even, saturating at 448)
        P_i = Q(V_i / (s_B·s_T)),  value = P_i·s_B·s_T

    The usual per-tensor scale is s_T = amax(tensor)/(6·448) (:meth:`tensor_scale_for`);
    it is a fixed format parameter here, so the format does not depend on the data of
    other blocks (samplers quantize chains independently).  A block whose s_B rounds to
    0 becomes zero; NaN and ±inf behave as in :class:`MXFormat` (±inf: s_B saturates).
    """

    axis: int = -1
    tensor_scale: float = 1.0
    code: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "axis", _check_axis(self.axis))
        t = self.tensor_scale
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not (
            math.isfinite(float(t)) and float(t) > 0 and float(np.float32(t)) == float(t)
        ):
            raise ValueError(f"tensor_scale must be a positive finite float32 value, got {t!r}")
        object.__setattr__(self, "tensor_scale", float(t))
        exp, man, mx, emax, _, _ = MX_ELEMENTS["e2m1"]
        object.__setattr__(
            self,
            "code",
            _readonly_slots(
                {
                    S.KIND: KIND_MX, S.FLOAT_EXP: exp, S.FLOAT_MAN: man, S.FLOAT_MAX: mx,
                    S.TIES: TIES_EVEN, S.SATURATE: 1, S.MX_BLOCK: NVFP4_BLOCK_SIZE,
                    S.MX_SCALE: S.SCALE_E4M3, S.MX_EMAX: emax, S.MX_TENSOR_SCALE: float(t),
                    S.MX_INT: 0, S.MX_LO: -mx,
                }
            ),
        )

    @property
    def name(self) -> str:
        return "nvfp4"

    @property
    def block_size(self) -> int:
        return NVFP4_BLOCK_SIZE

    @property
    def max(self) -> float:
        return 6.0

    @staticmethod
    def tensor_scale_for(amax: float) -> float:
        """The customary per-tensor scale amax/(6·448), rounded to float32 (1.0 for amax = 0)."""
        a = float(amax)
        if not (math.isfinite(a) and a >= 0):
            raise ValueError(f"amax must be finite and >= 0, got {amax!r}")
        t = float(np.float32(a / (6.0 * 448.0)))
        return t if t > 0 else 1.0


# --------------------------------------------------------------------------------------
# dispatch helpers
# --------------------------------------------------------------------------------------
#: every format class; each has a kernel module in refimpl.kernels and torchport.kernels
#: named by refimpl.slots.KIND_MODULES[kind] (tests/refimpl/test_formats.py checks both)
FORMAT_TYPES = (FixedPoint, BlockFloatingPoint, FloatingPoint, IEEEFloat, MXFormat, NVFP4)
#: any format object (the type of the ``fmt`` arguments; ``None`` means full precision)
Format = FixedPoint | BlockFloatingPoint | FloatingPoint | IEEEFloat | MXFormat | NVFP4
_FORMAT_TYPES = FORMAT_TYPES
_IDENTITY_CODE = _readonly_slots({S.KIND: KIND_NONE, S.TIES: TIES_AWAY})


def format_code(fmt: Format | None) -> np.ndarray:
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
        out[S.TIES] = TIES_NAMES[ties]
    if vc_published:
        out[S.VC_FLAGS] = float(S.VC_PUBLISHED_BIT)
    out.setflags(write=False)
    return out


def parse_format(text: str) -> Format | None:
    """Build a format from a string (command line).

    ``"none"`` -> None; ``"fixed:W:F"`` or ``"fixed:W:F:sym"`` -> FixedPoint;
    ``"bfp:W"`` (one block) or ``"bfp:W:DIM"`` -> BlockFloatingPoint;
    ``"float:E:M"`` or ``"qtorch_float:E:M"`` -> FloatingPoint (qtorch semantics);
    ``"ieee:NAME"`` (float16, bfloat16, float8_e4m3fn, float8_e5m2) -> IEEEFloat;
    ``"ieee:NAME:sat"`` -> saturating IEEEFloat;
    ``"mxfp8_e4m3"``, ``"mxfp8_e5m2"``, ``"mxfp6_e3m2"``, ``"mxfp6_e2m3"``, ``"mxfp4"``,
    ``"mxint8"`` (optionally ``":AXIS"``) -> MXFormat; ``"nvfp4"``, ``"nvfp4:AXIS"`` or
    ``"nvfp4:AXIS:TENSOR_SCALE"`` -> NVFP4.

    ``ValueError`` for any other text, naming the argument and the value: its message starts
    ``text='<text>' is not a format string:`` and says why (also when the fields parse but
    the format refuses them, e.g. ``float:0:3``); for a non-str ``text`` it starts
    ``text must be a format string (str)``.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a format string (str), got {text!r} ({type(text).__name__})")
    try:
        return _parse_format(text)
    except ValueError as exc:
        raise ValueError(f"text={text!r} is not a format string: {exc}") from None


def _parse_format(text: str) -> Format | None:
    parts = text.strip().lower().split(":")
    kind, args = parts[0], parts[1:]

    def ints(n_min, n_max):
        if not n_min <= len(args) <= n_max:
            raise ValueError(f"expected {n_min}-{n_max} fields after '{kind}:'")
        try:
            return [int(a) for a in args]
        except ValueError:
            raise ValueError("fields must be integers") from None

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
            raise ValueError("the optional field must be 'sat'")
        return IEEEFloat(args[0], saturate=sat)
    if kind in MX_FORMATS:
        (axis,) = ints(0, 1) or [-1]
        return MXFormat(kind, axis=axis)
    if kind == "nvfp4" and len(args) <= 2:
        axis = _parse_int(text, args[0]) if args else -1
        if len(args) < 2:
            return NVFP4(axis=axis)
        try:
            scale = float(args[1])
        except ValueError:
            raise ValueError("the tensor scale must be a number") from None
        return NVFP4(axis=axis, tensor_scale=scale)
    raise ValueError(
        "expected one of none, fixed:W:F[:sym], bfp:W[:DIM], "
        "float:E:M, ieee:NAME[:sat], mxfp8_e4m3|mxfp8_e5m2|mxfp6_e3m2|mxfp6_e2m3|mxfp4|mxint8[:AXIS], "
        "nvfp4[:AXIS[:TENSOR_SCALE]]"
    )


def _parse_int(text: str, field_text: str) -> int:
    try:
        return int(field_text)
    except ValueError:
        raise ValueError("fields must be integers") from None
