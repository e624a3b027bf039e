"""Public quantizers of the reference implementation (ALGORITHMS.md §2).

Functions
---------
quantize(x, fmt, rounding, rng, *, ties, noise)
    Q^d (Q1) or Q^s (Q2') onto any format of :mod:`refimpl.formats`.
stochastic_round(x, fmt, rng, *, noise)
    Q^s (Q2'); same as ``quantize(x, fmt, "stochastic", ...)``.
categorical_probabilities / categorical_offset
    Cat(μ, V) on {+Δ, -Δ, 0} (Q4).
vc_quantize(mu, var, fmt, rng, *, noise, ties, vc_bfp_published)
    the variance-corrected quantizer Q^vc ((Q5)/(Q6)).
vc_gap(mu, fmt)
    the gap Δ that ``vc_quantize`` uses for each element.
draw_quantize_noise / draw_vc_noise / draw_categorical_noise
    the exact noise the Generator forms consume, for the noise-in forms.

Randomness
----------
Every random function takes either ``rng`` (a ``numpy.random.Generator``) or
``noise`` (pre-drawn arrays), never global state.  The Generator form is, by
definition and by test, the noise-in form fed with ``draw_*_noise(rng, shape)``:

* Q^s: one ``rng.integers(0, 2**64, dtype=uint64)`` draw, the *key*; the uniform
  of the element with C-order flat index i is ``keyed_uniform(key, i)``
  (splitmix64 counter hash, 53-bit, see :mod:`refimpl._qkernels`).  This lets the
  parallel kernel generate its noise on the fly, reproducibly.
* Q^vc: ``xi = rng.standard_normal(shape)``, ``u_round = rng.random(shape)``,
  ``u_cat = rng.random(shape)``, in this order, one of each per element whichever
  branch the element takes.
* Cat: ``u = rng.random(shape)``.

Special values: NaN passes through every quantizer; ±inf saturates to the range
end (fixed point, qtorch float, saturating IEEE, BFP: the block's largest
magnitude), or stays ±inf (IEEE float16/bfloat16/float8_e5m2) / becomes NaN
(IEEE float8_e4m3fn), as ml_dtypes does.  Microscaling formats (``MXFormat``, ``NVFP4``;
docs/mx.md) act per block of 32 (16) elements along ``fmt.axis``: a NaN makes its whole
block NaN, ±inf saturates the block's scale.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from refimpl import _qkernels as K
from refimpl._checks import check_shape
from refimpl.formats import (
    TIES_NAMES,
    BlockFloatingPoint,
    Format,
    format_code,
    with_options,
)
from refimpl.slots import BLOCK_KINDS, FIXED_DELTA, FIXED_HI, FIXED_LO, KIND, KIND_NONE

__all__ = [
    "quantize",
    "stochastic_round",
    "categorical_probabilities",
    "categorical_offset",
    "vc_quantize",
    "vc_gap",
    "draw_quantize_noise",
    "draw_vc_noise",
    "draw_categorical_noise",
    "keyed_uniforms",
    "ROUNDINGS",
]

ROUNDINGS = ("nearest", "stochastic")


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _as_float_array(x, name: str) -> np.ndarray:
    """x as an ndarray of float32/float64 (other real dtypes become float64)."""
    arr = np.asarray(x)
    if arr.dtype in (np.float32, np.float64):
        return arr
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    raise ValueError(f"{name} must be a real float array, got dtype {arr.dtype!r}")


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {rng!r}")
    return rng


def _check_noise(noise, shape, name: str) -> np.ndarray:
    arr = np.asarray(noise)
    if arr.dtype.kind not in "f":
        raise ValueError(f"{name} must be a float array, got dtype {arr.dtype!r}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _check_uniform(noise, shape, name: str) -> np.ndarray:
    arr = _check_noise(noise, shape, name)
    if arr.size and not (arr.min() >= 0.0 and arr.max() < 1.0):
        raise ValueError(f"{name} must hold uniforms in [0, 1), got values in [{arr.min()}, {arr.max()}]")
    return arr


def _resolve_code(fmt, ties, vc_published=False):
    code = format_code(fmt)
    if ties is not None and ties not in TIES_NAMES:
        raise ValueError(f"ties must be one of {sorted(TIES_NAMES)} or None, got {ties!r}")
    return with_options(code, ties=ties, vc_published=vc_published)


def _bfp_rows(arr: np.ndarray, fmt: BlockFloatingPoint):
    """C-contiguous 2-D view/copy whose rows are the BFP blocks, plus the inverse map."""
    if fmt.dim is None:
        rows = np.ascontiguousarray(arr).reshape(1, -1)
        return rows, lambda r: r.reshape(arr.shape)
    if fmt.dim >= max(arr.ndim, 0) or arr.ndim == 0:
        raise ValueError(
            f"fmt.dim={fmt.dim} is out of range for an array of shape {arr.shape} "
            "(use dim=None for one block)"
        )
    moved = np.moveaxis(arr, fmt.dim, 0)
    mshape = moved.shape
    rows = np.ascontiguousarray(moved).reshape(mshape[0], -1)
    return rows, lambda r: np.moveaxis(r.reshape(mshape), 0, fmt.dim)


def _mx_rows(arr: np.ndarray, fmt):
    """C-contiguous 2-D copy whose rows run along ``fmt.axis`` (MX: each row a sequence of
    blocks of ``fmt.block_size``), plus the inverse map."""
    if arr.ndim == 0:
        return np.ascontiguousarray(arr).reshape(1, 1), lambda r: r.reshape(arr.shape)
    if not -arr.ndim <= fmt.axis < arr.ndim:
        raise ValueError(f"fmt.axis={fmt.axis} is out of range for an array of shape {arr.shape}")
    moved = np.moveaxis(arr, fmt.axis, -1)
    mshape = moved.shape
    rows = np.ascontiguousarray(moved).reshape(-1, mshape[-1])
    return rows, lambda r: np.moveaxis(r.reshape(mshape), -1, fmt.axis)


def _block_rows(arr: np.ndarray, fmt):
    """Rows for the block formats (BFP: one block per row; MX: one line of blocks per row)."""
    if isinstance(fmt, BlockFloatingPoint):
        return _bfp_rows(arr, fmt)
    return _mx_rows(arr, fmt)


def _finish(result: np.ndarray, shape, dtype) -> np.ndarray:
    return np.ascontiguousarray(result, dtype=dtype).reshape(shape)


# --------------------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------------------
def _norm_shape(shape) -> tuple:
    return check_shape("shape", shape)


def _draw_key(rng) -> np.uint64:
    return np.uint64(_check_rng(rng).integers(0, 2**64, dtype=np.uint64))


def keyed_uniforms(key: int | np.uint64, shape: int | Sequence[int]) -> np.ndarray:
    """The uniforms ``keyed_uniform(key, i)``, i = 0..size-1 in C order, as a float64 array."""
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, numbers.Integral) or not 0 <= key < 2**64:
        raise ValueError(f"key must be an integer in [0, 2**64), got {key!r}")
    shape = _norm_shape(shape)
    out = np.empty(int(np.prod(shape, dtype=np.int64)), dtype=np.float64)
    K.keyed_uniforms_into(np.uint64(key), 0, out)
    return out.reshape(shape)


def draw_quantize_noise(rng: np.random.Generator, shape: int | Sequence[int]) -> np.ndarray:
    """The uniforms ``quantize(..., "stochastic", rng=rng)`` consumes for an input of ``shape``.

    Draws one uint64 key with ``rng.integers(0, 2**64, dtype=np.uint64)`` and
    returns ``keyed_uniforms(key, shape)`` (float64, multiples of 2^-53 in [0, 1)).
    ``quantize(x, fmt, "stochastic", rng=np.random.default_rng(s))`` equals
    ``quantize(x, fmt, "stochastic", noise=draw_quantize_noise(np.random.default_rng(s), x.shape))``
    bit for bit.
    """
    shape = _norm_shape(shape)  # before the key is drawn: a bad shape leaves rng untouched
    return keyed_uniforms(_draw_key(rng), shape)


def draw_vc_noise(rng: np.random.Generator,
                  shape: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xi, u_round, u_cat) consumed by ``vc_quantize(..., rng=rng)``: N(0,1), U[0,1), U[0,1)."""
    rng = _check_rng(rng)
    shape = _norm_shape(shape)
    xi = rng.standard_normal(shape)
    u_round = rng.random(shape)
    u_cat = rng.random(shape)
    return xi, u_round, u_cat


def draw_categorical_noise(rng: np.random.Generator, shape: int | Sequence[int]) -> np.ndarray:
    """The uniforms ``categorical_offset(..., rng=rng)`` consumes: ``rng.random(shape)``."""
    shape = _norm_shape(shape)
    return _check_rng(rng).random(shape)


# --------------------------------------------------------------------------------------
# Q^d and Q^s
# --------------------------------------------------------------------------------------
def quantize(x: npt.ArrayLike, fmt: Format | None, rounding: Literal["nearest", "stochastic"] = "nearest",
             rng: np.random.Generator | None = None, *, ties: str | None = None,
             noise: npt.ArrayLike | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Quantize ``x`` onto the grid of ``fmt`` by nearest (Q1) or stochastic (Q2') rounding.

    Nearest, (Q1) = the paper's Q^d (LP-SGLD, Zhang et al. 2022, §3 "deterministic
    rounding"; ALGORITHMS.md §2.1)::

        Q^d(x) = clip(sign(x) Δ floor(|x|/Δ + 1/2), L, U)        (round, then clip)

    with ties away from zero for fixed point and qtorch float, toward +inf for BFP
    (as qtorch, §2.2) and to even for IEEE formats; ``ties="away"|"even"|"up"``
    overrides (``ties="even"`` emulates qtorch's CPU fixed point).  For BFP, Δ is
    Δ_B = 2^(e_B+2-W) of each block (Q3), saturating at ±(2^(e_B+1) - Δ_B); for
    floats, Δ is the ULP of x's binade (subnormal spacing below e_min).

    Stochastic, (Q2') (LP-SGLD eq. for Q^s; LP-SGHMC eq. (2); ALGORITHMS.md §2.1)::

        Q^s(x) = clip(Δ floor(x/Δ + u), L, U),   u ~ U[0, 1)

    evaluated in float64 (x/Δ is exact; the sum x/Δ + u is rounded to float64, so
    P(up) is resolved to about 2^-53).

    Parameters
    ----------
    x : array_like, float32 or float64 (other real dtypes are converted to float64), any shape/strides.
    fmt : FixedPoint | BlockFloatingPoint | FloatingPoint | IEEEFloat | MXFormat | NVFP4 | None (identity).
        MX/NVFP4: Q^d uses the OCP scale rule, Q^s the smallest scale holding the block (docs/mx.md).
    rounding : "nearest" or "stochastic".
    rng : numpy.random.Generator, for stochastic rounding (one uint64 key draw, see
        :func:`draw_quantize_noise`).  Ignored by nearest rounding.
    ties : None (format default) or "away", "even", "up"; nearest rounding only.
    noise : float array of ``x.shape`` with uniforms in [0, 1), instead of ``rng``
        (noise-in form; element ``x[idx]`` uses ``noise[idx]``).
    out : optional C-contiguous ndarray of x's shape and dtype to write the result to
        (may be ``x`` itself); returned.

    Returns
    -------
    ndarray of x's shape and dtype (float32 stays float32), C-contiguous; 0-d for 0-d input.
    NaN passes through; ±inf saturates (IEEE formats: see module docstring).  The value is
    computed in float64 and stored in x's dtype; for float32 that store is exact whenever
    the grid point is a float32 (fixed point / BFP with wl <= 24, floats with man <= 23
    inside float32's range), and rounds to nearest float32 otherwise.

    Departure from the published code: qtorch's CPU fixed point rounds ties to even
    and its block/float paths double-round near ties in float32; this function
    rounds exactly (docs/quantizers.md).
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    arr = _as_float_array(x, "x")
    code = _resolve_code(fmt, ties)
    if out is not None:
        if not (
            isinstance(out, np.ndarray)
            and out.shape == arr.shape
            and out.dtype == arr.dtype
            and out.flags.c_contiguous
            and out.flags.writeable
        ):
            raise ValueError(
                f"out must be a writeable C-contiguous ndarray of shape {arr.shape} and dtype {arr.dtype}, "
                f"got {type(out).__name__} {getattr(out, 'shape', '')} {getattr(out, 'dtype', '')}"
            )
    if rounding == "nearest":
        if noise is not None:
            raise ValueError("noise is only used by rounding='stochastic', got noise for 'nearest'")
        return _nearest(arr, fmt, code, out)
    if ties is not None:
        raise ValueError(f"ties applies to nearest rounding only, got ties={ties!r} with 'stochastic'")
    if (rng is None) == (noise is None):
        raise ValueError("stochastic rounding needs exactly one of rng= or noise=")
    if noise is not None:
        return _stochastic(arr, fmt, code, _check_uniform(noise, arr.shape, "noise"), None, out)
    return _stochastic(arr, fmt, code, None, _draw_key(rng), out)


def stochastic_round(x: npt.ArrayLike, fmt: Format | None, rng: np.random.Generator | None = None, *,
                     noise: npt.ArrayLike | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Q^s (Q2'): ``quantize(x, fmt, "stochastic", rng, noise=noise, out=out)``; see :func:`quantize`."""
    return quantize(x, fmt, "stochastic", rng, noise=noise, out=out)


def _deliver(result, shape, dtype, out):
    result = _finish(result, shape, dtype)
    if out is None:
        return result
    out[...] = result
    return out


def _nearest(arr, fmt, code, out):
    shape, dtype = arr.shape, arr.dtype
    if arr.size == 0 or code[KIND] == KIND_NONE:
        return _deliver(np.array(arr, dtype=dtype, order="C", copy=True), shape, dtype, out)
    if code[KIND] in BLOCK_KINDS:
        rows, back = _block_rows(arr, fmt)
        res = np.empty_like(rows)
        if rows.shape[0] == 1:
            K.nearest_into(rows[0], res[0], code)
        else:
            K.nearest_rows(rows, res, code)
        return _deliver(back(res), shape, dtype, out)
    flat = np.ascontiguousarray(arr).reshape(-1)
    res = np.empty_like(flat) if out is None else out.reshape(-1)
    if flat.size >= K.PAR_MIN:
        if dtype == np.float32 and K.f32_fast_path_ok(code):
            K.fixed_nearest_f32_par(flat, res, code[FIXED_DELTA], code[FIXED_LO], code[FIXED_HI])
        else:
            K.nearest_into_par(flat, res, code)
    else:
        K.nearest_into(flat, res, code)
    return res.reshape(shape) if out is None else out


def _stochastic(arr, fmt, code, u, key, out):
    shape, dtype = arr.shape, arr.dtype
    if arr.size == 0 or code[KIND] == KIND_NONE:
        return _deliver(np.array(arr, dtype=dtype, order="C", copy=True), shape, dtype, out)
    if code[KIND] in BLOCK_KINDS:
        if u is None:
            u = keyed_uniforms(key, shape)
        rows, back = _block_rows(arr, fmt)
        urows, _ = _block_rows(u, fmt)
        res = np.empty_like(rows)
        if rows.shape[0] == 1:
            K.stochastic_into(rows[0], urows[0], res[0], code)
        else:
            K.stochastic_rows(rows, urows, res, code)
        return _deliver(back(res), shape, dtype, out)
    flat = np.ascontiguousarray(arr).reshape(-1)
    res = np.empty_like(flat) if out is None else out.reshape(-1)
    if u is None:
        if flat.size >= K.PAR_MIN:
            K.stochastic_keyed_into_par(flat, key, res, code)
            return res.reshape(shape) if out is None else out
        u = keyed_uniforms(key, shape)
    uf = u.reshape(-1)
    if flat.size >= K.PAR_MIN:
        K.stochastic_into_par(flat, uf, res, code)
    else:
        K.stochastic_into(flat, uf, res, code)
    return res.reshape(shape) if out is None else out


# --------------------------------------------------------------------------------------
# Cat(mu, V)
# --------------------------------------------------------------------------------------
def _real_values(name, value) -> np.ndarray:
    """``value`` as float64 for the Cat(μ, V) arguments: real numbers or arrays of them, all finite."""
    if value is None or isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {value!r}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {value!r}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def _check_delta(delta):
    d = _real_values("delta", delta)
    if d.size and not (np.all(np.isfinite(d)) and np.all(d > 0)):
        raise ValueError(f"delta must be finite and > 0, got {delta!r}")
    return d


def categorical_probabilities(mu: npt.ArrayLike, var: npt.ArrayLike,
                              delta: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(+Δ), P(-Δ), P(0)) of Cat(μ, V) (Q4) (LP-SGHMC eq. (20); LP-SGLD Alg. "Q^vc")::

        P(+Δ) = (V + μ² + μΔ)/(2Δ²),  P(-Δ) = (V + μ² - μΔ)/(2Δ²),  P(0) = 1 - P(+Δ) - P(-Δ)

    Mean μ, variance V.  All three lie in [0, 1] on the admissible set
    0 <= μ <= Δ/2, μ(Δ - μ) <= V <= Δ²/4, which contains both uses in Q^vc
    (μ = |r| <= Δ/2 with V = Δ²/4, and μ = 0 with V <= Δ²/4).  Evaluated as
    P(±Δ) = ((V/Δ² - 1/4) + (1/2 ± μ/Δ)²)/2 (the same formula as the sampling kernel),
    which is exactly in [0, 1] at both Q^vc uses and within a few ulps of it elsewhere
    on the admissible set.  Arrays broadcast; float64 results; no admissibility
    validation here (see :func:`categorical_offset`).
    """
    mu = _real_values("mu", mu)
    var = _real_values("var", var)
    delta = _check_delta(delta)
    m = mu / delta  # in units of Δ, exactly as the sampling kernel (refimpl._qkernels._cat)
    w = (var / delta) / delta - 0.25
    p_plus = (w + (0.5 + m) * (0.5 + m)) * 0.5
    p_minus = (w + (0.5 - m) * (0.5 - m)) * 0.5
    return p_plus, p_minus, 1.0 - p_plus - p_minus


def categorical_offset(mu: npt.ArrayLike, var: npt.ArrayLike, delta: npt.ArrayLike,
                       rng: np.random.Generator | None = None, *, noise: npt.ArrayLike | None = None) -> np.ndarray:
    """Draw c ~ Cat(μ, V) on {+Δ, -Δ, 0} (Q4), element-wise; mean μ, variance V.

    Sampling as in the official code (ruqizhang/low-precision-sgld bnn/optim.py):
    with u ~ U[0, 1): +Δ if u < P(+Δ), -Δ if u < P(+Δ) + P(-Δ), else 0.

    Parameters: ``mu``, ``var``, ``delta`` broadcast to a common shape; (μ, V) must
    be admissible for Δ (0 <= μ <= Δ/2, μ(Δ-μ) <= V <= Δ²/4, up to 1e-12 relative),
    else ValueError.  ``rng`` (draws ``rng.random(shape)``) or ``noise`` (uniforms
    of the broadcast shape).  Returns float64 of the broadcast shape.
    """
    mu_a = _real_values("mu", mu)
    var_a = _real_values("var", var)
    d = _check_delta(delta)
    mu_b, var_b, d_b = np.broadcast_arrays(mu_a, var_a, d)
    tol = 1e-12 * d_b * d_b
    bad = ~((mu_b >= 0) & (mu_b <= 0.5 * d_b) & (var_b <= 0.25 * d_b * d_b + tol) & (var_b >= mu_b * (d_b - mu_b) - tol))
    if np.any(bad):
        i = np.flatnonzero(bad)[0]
        raise ValueError(
            f"(mu, var) = ({mu_b.flat[i]!r}, {var_b.flat[i]!r}) is not admissible for delta={d_b.flat[i]!r}: "
            "need 0 <= mu <= delta/2 and mu*(delta-mu) <= var <= delta**2/4"
        )
    shape = mu_b.shape
    if (rng is None) == (noise is None):
        raise ValueError("categorical_offset needs exactly one of rng= or noise=")
    u = draw_categorical_noise(rng, shape) if noise is None else _check_uniform(noise, shape, "noise")
    out = np.empty(shape, dtype=np.float64)
    K.categorical_into(
        np.ascontiguousarray(mu_b).reshape(-1),
        np.ascontiguousarray(var_b).reshape(-1),
        np.ascontiguousarray(d_b).reshape(-1),
        np.ascontiguousarray(u).reshape(-1),
        out.reshape(-1),
    )
    return out


# --------------------------------------------------------------------------------------
# Q^vc
# --------------------------------------------------------------------------------------
def _check_var(var) -> float:
    if isinstance(var, bool) or not isinstance(var, (numbers.Real, np.ndarray, np.generic)):
        raise ValueError(f"var must be a real scalar >= 0, got {var!r}")
    v = np.asarray(var, dtype=np.float64)
    if v.ndim != 0 or not np.isfinite(v) or v < 0:
        raise ValueError(f"var must be a finite real scalar >= 0, got {var!r}")
    return float(v)


def vc_gap(mu: npt.ArrayLike, fmt: Format | None) -> np.ndarray:
    """Per-element gap Δ that :func:`vc_quantize` uses for ``mu`` (float64, mu's shape).

    Fixed point: the format's Δ.  BFP: Δ_B of mu's block (0 for an all-zero block).
    qtorch/IEEE float: the ULP of mu_i's binade, 2^(e - M) with
    e = max(floor(log2 min(|mu_i|, max)), e_min).
    """
    arr = _as_float_array(mu, "mu")
    code = format_code(fmt)
    out = np.zeros(arr.shape, dtype=np.float64)
    if arr.size == 0:
        return out
    if code[KIND] in BLOCK_KINDS:
        rows, back = _block_rows(arr, fmt)
        orows = np.empty(rows.shape, dtype=np.float64)
        for r in range(rows.shape[0]):
            K.vc_gap_into(rows[r], orows[r], code)
        return np.ascontiguousarray(back(orows))
    flat = np.ascontiguousarray(arr).reshape(-1)
    res = np.empty(flat.shape, dtype=np.float64)
    K.vc_gap_into(flat, res, code)
    return res.reshape(arr.shape)


def vc_quantize(mu: npt.ArrayLike, var: float, fmt: Format | None, rng: np.random.Generator | None = None, *,
                noise: tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike] | None = None, ties: str | None = None,
                vc_bfp_published: bool = False) -> np.ndarray:
    """Variance-corrected quantizer Q^vc(μ, V, Δ) ((Q5)/(Q6); LP-SGLD Alg. "Q^vc", LP-SGHMC Alg. 2).

    Element-wise with V₀ = Δ²/4, the branch chosen per element by its own Δ
    (:func:`vc_gap`; per block for BFP):

    * (Q5) V > V₀: x = μ + sqrt(V - V₀) ξ; r = x - Q^d(x); θ = Q^d(x) + sign(r)·Cat(|r|, V₀).
      Mean μ and variance V exactly (P10), also for μ on grid or half-grid points.
    * (Q6) V <= V₀: q = Q^s(μ); V_s = p(1-p)Δ² with p = frac(μ/Δ); θ = q + Cat(0, V - V_s)
      if V > V_s, else θ = q.  Mean μ; variance V if V >= V_s.  **Where the variance
      cannot be matched** (V < V_s, only for small V) the variance is V_s > V, the
      least any unbiased rounding of μ onto the grid can have.
    * Range.  Fixed point: θ clipped to [L, U] (both branches).  BFP/floats, branch 2:
      clipped to μ's block range ±(2^(e_B+1) - Δ_B) (BFP) / binade range
      ±min(2^(e+1) - ULP, max) (floats); Q^s(μ) and the top-up move at most ±Δ beyond, a
      bounded end-of-range bias as fixed point's clip (§2.5 "Final step").
    * BFP/floats, branch 1, **escape re-rounding** (derived design choice, departing from
      the spec's clip to μ's block range, which truncates the noise so that a sampler can
      never grow past its binade and collapses to 0; docs/quantizers.md): θ is computed
      on μ's grid *unclipped*; if m = max|θ| over the block (the element, for floats)
      exceeds μ's range, θ is stochastically rounded onto the grid Δ' of the exponent
      e' = floor(log2 m) with the element's ``u_round`` (which branch 1 does not use
      otherwise): θ <- Δ'·floor(θ/Δ' + u_round), Δ' = 2^(e'+2-W) (BFP) or the ULP of
      binade e' (floats); then BFP saturates at ±(2^(e'+1) - Δ') (a value that rounds up
      to 2^(e'+1) saturates) and floats at ±max (never ±inf).  The mean stays μ exactly
      (unless saturated); the variance is V + E[p(1-p)Δ'²; escape], between V and
      V + P(escape)Δ'²/4.  Values below μ's block are on a finer grid: representable.
      Q^d inside (Q5) is unclipped, so |r| <= Δ/2 always and Cat is always admissible:
      there is no NaN path (§7.2 item 1).
    * An all-zero BFP block (Δ_B = 0) with V > 0 takes the Δ_B -> 0 limit of the same
      rule: θ = sqrt(V)·ξ rounded stochastically onto the grid of its own block exponent
      (mean 0, variance V + E p(1-p)Δ'²).  V = 0 returns zeros.  (The spec's choice, zeros
      for any V, is an absorbing state of BFP samplers.)

    Parameters
    ----------
    mu : array_like float32/float64, any shape; output has its dtype and shape.
    var : float scalar >= 0 (per-coordinate target variance V).
    fmt : a format or None (identity: returns mu).
    rng : numpy.random.Generator; consumes ``draw_vc_noise(rng, mu.shape)``.
    noise : (xi, u_round, u_cat) float arrays of mu's shape, instead of rng.
    ties : tie rule of Q^d inside (Q5) (format default if None).
    vc_bfp_published : reproduce the published ``fp_Q_vc`` (ruqizhang/low-precision-sgld
        bnn/optim.py) for BFP and float formats, whose NaN path makes branch 2 plain
        Q^s(μ) without the Cat(0, V - V_s) top-up (§7.2 item 1).  No effect on fixed point.

    Notes
    -----
    Departures from the published code: the branch is chosen per element (BFP: per
    block with μ's Δ_B kept for the whole (Q5) step, not recomputed from x), so there is
    no NaN path and P(-Δ) >= 0 always (§2.5 "Project choice"); departure from that
    project choice: branch-1 results leaving μ's block are re-rounded onto their own
    block's grid instead of clipped (see above), so BFP/float samplers do not collapse.
    Randomness: ``xi``, ``u_round``, ``u_cat`` per element whichever branch is taken
    (branch 1 uses ``u_round`` only for the escape re-rounding).
    """
    arr = _as_float_array(mu, "mu")
    v = _check_var(var)
    code = _resolve_code(fmt, ties, vc_published=bool(vc_bfp_published))
    if (rng is None) == (noise is None):
        raise ValueError("vc_quantize needs exactly one of rng= or noise=")
    shape, dtype = arr.shape, arr.dtype
    if noise is None:
        xi, ur, uc = draw_vc_noise(rng, shape)
    else:
        if not (isinstance(noise, (tuple, list)) and len(noise) == 3):
            raise ValueError(f"noise must be a tuple (xi, u_round, u_cat), got {type(noise).__name__}")
        xi = _check_noise(noise[0], shape, "noise[0] (xi)")
        ur = _check_uniform(noise[1], shape, "noise[1] (u_round)")
        uc = _check_uniform(noise[2], shape, "noise[2] (u_cat)")
    if arr.size == 0 or code[KIND] == KIND_NONE:
        return np.array(arr, dtype=dtype, order="C", copy=True)
    if code[KIND] in BLOCK_KINDS:
        rows, back = _block_rows(arr, fmt)
        xr, _ = _block_rows(np.asarray(xi, dtype=np.float64), fmt)
        urr, _ = _block_rows(np.asarray(ur, dtype=np.float64), fmt)
        ucr, _ = _block_rows(np.asarray(uc, dtype=np.float64), fmt)
        out = np.empty_like(rows)
        if rows.shape[0] == 1:
            K.vc_into(rows[0], v, xr[0], urr[0], ucr[0], out[0], code)
        else:
            K.vc_rows(rows, v, xr, urr, ucr, out, code)
        return _finish(back(out), shape, dtype)
    flat = np.ascontiguousarray(arr).reshape(-1)
    out = np.empty_like(flat)
    K.vc_into(
        flat,
        v,
        np.ascontiguousarray(xi, dtype=np.float64).reshape(-1),
        np.ascontiguousarray(ur, dtype=np.float64).reshape(-1),
        np.ascontiguousarray(uc, dtype=np.float64).reshape(-1),
        out,
        code,
    )
    return out.reshape(shape)
