"""Level sets, per-tensor scales and nearest-level quantization (ALGORITHMS §4.1).

A weight tensor is quantized to ``s * Q`` where ``Q = {q_1 < ... < q_m}`` is a
level set in *scaled units* and ``s > 0`` a per-tensor scale.

* Binary: ``Q = {-1, +1}``, ``s = 1`` (AskewSGD notebooks, BinaryConnect (B1)).
* Uniform: ``Q = {-(m-1)/2, ..., (m-1)/2}``; with ``m = 17`` this is the
  integer grid ``-8..8`` that the AskewSGD ImageNet code calls "4-bit"
  (ALGORITHMS §4.1 and pitfall §7.4.1: 17 levels, not 16).
* Scale: fixed, or SAWB (A3), recomputed every step and frozen at a chosen epoch
  (the ImageNet code freezes it at epoch 100, when annealing starts).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = [
    "Levels",
    "check_levels",
    "check_scale",
    "binary_levels",
    "uniform_levels",
    "kbit_levels",
    "sawb_scale",
    "bracket",
    "quantize_nearest",
    "on_grid",
]


class Levels(NamedTuple):
    """Sorted level set in scaled units (float64, shape (m,), m >= 2, uniform spacing)."""

    values: np.ndarray

    @property
    def lo(self) -> float:
        return float(self.values[0])

    @property
    def hi(self) -> float:
        return float(self.values[-1])

    @property
    def spacing(self) -> float:
        return float(self.values[1] - self.values[0])


def check_levels(levels: object, name: str = "levels") -> Levels:
    """Return ``levels`` if it is a usable level set; TypeError/ValueError naming ``name`` otherwise.

    Usable: a :class:`Levels` whose values are a 1-D float array of m >= 2 finite,
    strictly increasing, uniformly spaced numbers (the kernels use lo, hi and the
    spacing only, so a non-uniform set would be quantized to the wrong grid).
    """
    if not isinstance(levels, Levels):
        raise TypeError(f"{name} must be a refimpl.netopt.levels.Levels, got {type(levels).__name__} {levels!r}")
    v = np.asarray(levels.values)
    if v.ndim != 1 or v.size < 2 or v.dtype.kind not in "fiu":
        raise ValueError(f"{name}.values must be a 1-D array of at least 2 numbers, got {levels.values!r}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name}.values must be finite, got {levels.values!r}")
    d = np.diff(v.astype(np.float64))
    if not np.all(d > 0):
        raise ValueError(f"{name}.values must be strictly increasing, got {levels.values!r}")
    if not np.allclose(d, d[0], rtol=1e-12, atol=0.0):
        raise ValueError(f"{name}.values must have a uniform spacing, got {levels.values!r}")
    return levels


def check_scale(scale: object, name: str = "scale") -> float:
    """``float(scale)`` if it is a positive finite real number; TypeError/ValueError naming ``name`` otherwise."""
    if isinstance(scale, (bool, str, bytes)) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive real number, got {scale!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"{name} must be > 0 and finite, got {scale!r}")
    return float(scale)


def binary_levels() -> Levels:
    """Levels {-1, +1} (AskewSGD notebooks; BinaryConnect (B1))."""
    return Levels(np.array([-1.0, 1.0]))


def uniform_levels(n_levels: int = 17) -> Levels:
    """Symmetric uniform levels ``k - (n_levels-1)/2``, k = 0..n_levels-1, unit spacing.

    ``n_levels = 17`` gives -8..8, the "4-bit" grid of the AskewSGD ImageNet code
    (ALGORITHMS §4.1, §7.4.1).  ``n_levels = 2`` gives {-1/2, +1/2}.
    """
    if isinstance(n_levels, bool) or not isinstance(n_levels, (int, np.integer)) or n_levels < 2:
        raise ValueError(f"n_levels must be an integer >= 2, got {n_levels!r}")
    n = int(n_levels)
    return Levels(np.arange(n, dtype=np.float64) - (n - 1) / 2.0)


def kbit_levels(bits: int = 4) -> Levels:
    """Integer levels -2^(b-1) .. 2^(b-1): 2^b + 1 levels, as the AskewSGD ImageNet code
    builds them (``torch.arange(-2**(wbits-1), 2**(wbits-1)+1)``); b = 4 gives 17 (§7.4.1)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"bits must be an integer >= 1, got {bits!r}")
    return uniform_levels(2**int(bits) + 1)


def sawb_scale(w: np.ndarray, bits: int = 4) -> float:
    """SAWB per-tensor scale (A3), ALGORITHMS §4.1 (LUQ code, used by aistats2023/537).

        clip_val = 12.1 * sqrt(mean(w^2)) - 12.2 * mean(|w|)
        s        = 2 * clip_val / (2^(b-1) + 2^(b-1))  =  clip_val / 2^(b-1)

    For b = 4, s = clip_val / 8, the bin width of the 17-level grid -8..8.
    Input: any float array; output: python float.  No randomness.
    Raises ValueError if clip_val <= 0, which happens for weights that are
    already (nearly) two-valued (then rms ~= mean|w|); the published code would
    divide by a non-positive scale there -- the reason it freezes the scale
    before annealing.  Freeze the scale (``scale_freeze_epoch``) to avoid it.
    """
    w = np.asarray(w, dtype=np.float64)
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 2:
        raise ValueError(f"bits must be an integer >= 2, got {bits!r}")
    clip_val = 12.1 * np.sqrt(np.mean(w * w)) - 12.2 * np.mean(np.abs(w))
    if not np.isfinite(clip_val) or clip_val <= 0:
        raise ValueError(f"SAWB clip value must be positive and finite, got {clip_val!r} (w has rms/mean|w| close to 1)")
    return float(2.0 * clip_val / (2 ** (bits - 1) + 2 ** (bits - 1)))


@njit(cache=True)
def _bracket_kernel(w, lo, spacing, n_levels, a_out, b_out):
    for i in range(w.size):
        z = (w[i] - lo) / spacing
        if z <= 0.0:
            k = 0
        elif z >= n_levels - 1:
            k = n_levels - 2
        else:
            k = int(np.floor(z))
            if k > n_levels - 2:
                k = n_levels - 2
        lower = lo + k * spacing
        upper = lower + spacing
        if w[i] - lower <= upper - w[i]:
            a_out[i] = lower
            b_out[i] = upper
        else:
            a_out[i] = upper
            b_out[i] = lower


def bracket(w: np.ndarray, levels: Levels) -> tuple[np.ndarray, np.ndarray]:
    """Nearest level a(w) and the other bracketing level b(w) (ALGORITHMS §4.1).

    For w in the hull [q_1, q_m]; w outside is bracketed by the end cell.  Ties
    (w exactly at a bracket midpoint) take a = the lower level.  Shapes: a and b
    have w's shape, float64.  No randomness.
    """
    check_levels(levels)
    w = np.asarray(w, dtype=np.float64)
    flat = np.ascontiguousarray(w).ravel()
    a = np.empty_like(flat)
    b = np.empty_like(flat)
    _bracket_kernel(flat, levels.lo, levels.spacing, levels.values.size, a, b)
    return a.reshape(w.shape), b.reshape(w.shape)


def quantize_nearest(w: np.ndarray, levels: Levels, scale: float = 1.0) -> np.ndarray:
    """Hard quantization ``s * argmin_{q in Q} |w/s - q|`` (evaluation / final weights).

    Ties go to the upper level (for binary levels this is sign(w) with
    sign(0) := +1, so that the result is always on the grid; torch's sign(0) = 0
    would leave an off-grid zero).  No randomness.
    """
    check_levels(levels)
    scale = check_scale(scale)
    return _quantize_nearest(w, levels, scale)


def _quantize_nearest(w, levels, scale):
    """quantize_nearest without the argument checks (for callers that checked them once)."""
    z = np.clip(np.asarray(w, dtype=np.float64) / scale, levels.lo, levels.hi)
    k = np.floor((z - levels.lo) / levels.spacing + 0.5)
    k = np.clip(k, 0, levels.values.size - 1)
    return scale * (levels.lo + k * levels.spacing)


def on_grid(w: np.ndarray, levels: Levels, scale: float = 1.0) -> bool:
    """True iff every entry of w equals ``scale * q`` for some level q, exactly."""
    check_levels(levels)
    grid = check_scale(scale) * levels.values
    return bool(np.all(np.isin(np.asarray(w), grid)))
