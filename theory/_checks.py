"""Argument checks shared by the :mod:`theory` functions (issue 13: every bad input a clear error).

Each check raises ``TypeError`` (not a number / not an integer) or ``ValueError``
(a number outside its domain) whose message names the argument and repeats the
value it got; none of them changes its input.  For valid input they return the
value unchanged as float64 (arrays) or ``int`` (counts), so results do not move.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["real_array", "real_scalar", "count"]


def _is_flag_or_text(value: object) -> bool:
    return value is None or isinstance(value, (bool, np.bool_, str, bytes))


def real_array(name: str, value: object) -> np.ndarray:
    """``value`` as a non-empty float64 array of real numbers (bools, strings, None, complex refused).

    Python ints too large for int64 (``2**80``) are real numbers too (converted with ``float``).
    """
    if _is_flag_or_text(value):
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {value!r}")
    if isinstance(value, numbers.Real) and not isinstance(value, np.generic):
        return np.asarray(float(value))
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {value!r}") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {value!r} "
                        f"(dtype {arr.dtype})")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got {value!r}")
    return arr.astype(np.float64, copy=False)


def real_scalar(name: str, value: object) -> float:
    """``float(value)`` for one real number (a 0-d array counts; ``[1.0]`` does not)."""
    arr = real_array(name, value)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a single number, got {value!r}")
    return float(arr)


def count(name: str, value: object, lo: int = 0, hi: int | None = None) -> int:
    """``int(value)`` for an integer ``>= lo`` (and ``<= hi`` if given); bools, floats, strings refused."""
    where = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer {where}, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be an integer {where}, got {value!r}")
    return int(value)
