"""Argument checks shared by the public ``refimpl`` wrappers (issue 13: every bad input a clear error).

Each check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (out of its
domain) whose message names the argument and repeats the value; none changes its
input or draws random numbers, so a wrapper calls them first.  For valid input they
return the value as ``float``/``int``/``tuple`` unchanged, so no result moves.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["INT64_MAX", "check_count", "check_finite_array", "check_real", "check_shape"]

#: Counts end up in int64 code arrays and Numba loops: larger ones are refused by name.
INT64_MAX = 2**63 - 1


def check_real(name: str, value: object, *, lo: float = -math.inf, lo_open: bool = False,
               hi: float = math.inf, hi_open: bool = False) -> float:
    """``float(value)`` for a finite real number in the interval (bools, strings, None, arrays refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
        if hi == math.inf:
            where = f"{'>' if lo_open else '>='} {lo:g}" if lo > -math.inf else "a number"
        else:
            where = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be finite and {where}, got {value!r}")
    return v


def check_count(name: str, value: object, lo: int = 0, hi: int = INT64_MAX) -> int:
    """``int(value)`` for an integer in ``[lo, hi]`` (bools, floats, strings refused)."""
    where = f">= {lo}" if hi == INT64_MAX else f"in [{lo}, {hi}]"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer {where}, got {value!r}")
    if not lo <= value <= hi:
        if value > hi == INT64_MAX:
            where += " and at most 2**63 - 1"
        raise ValueError(f"{name} must be an integer {where}, got {value!r}")
    return int(value)


def check_finite_array(name: str, value: object) -> np.ndarray:
    """``value`` as a float64 array of finite real numbers (text, None, objects, complex, NaN, inf refused)."""
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array of real numbers, got {value!r}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        got = repr(value) if arr.ndim == 0 else f"dtype {arr.dtype}"
        raise TypeError(f"{name} must be an array of real numbers, got {got}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if np.any(bad):
        raise ValueError(f"{name} must be finite, got {int(bad.sum())} non-finite entries (e.g. {float(arr[bad][0])!r})")
    return arr


def check_shape(name: str, value: object) -> tuple[int, ...]:
    """An int or a tuple/list of ints >= 0 as a shape tuple (bools, floats, strings refused)."""
    items = (value,) if isinstance(value, numbers.Integral) else value
    if isinstance(value, (str, bytes)) or not isinstance(items, (tuple, list)):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}")
    out = []
    for s in items:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}")
        if not 0 <= s <= INT64_MAX:
            raise ValueError(f"{name} must hold integers in [0, 2**63 - 1], got {value!r}")
        out.append(int(s))
    return tuple(out)
