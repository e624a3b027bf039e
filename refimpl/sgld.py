"""SGLD family: full-precision SGLD and its low-precision variants (ALGORITHMS.md §3.2-§3.6).

Methods (rows of :mod:`refimpl.methods`, registered in :mod:`refimpl.registry`; one kernel, switched by
``method_id``):

==========  ==  =================================================================================
name        id  update (η step size, T temperature, ξ ~ N(0, I), g = stochastic gradient)
==========  ==  =================================================================================
sgld        0   (S1)  θ' = θ − η∇Ũ(θ) + √(2ηT)·ξ              [LP-SGLD ICML 2022, SGLD]
sgd_lp_f    1   (S2)  θ' = θ − η·Q_G(∇Ũ(Q_W(θ)))               [ibid., SGDLP-F baseline]
sgd_lp_l    2   (S3)  θ' = Q_W(θ − η·Q_G(∇Ũ(θ)))               [ibid., SGDLP-L baseline]
sgld_lp_f   3   (S4)  θ' = θ − η·Q_G(∇Ũ(Q_W(θ))) + √(2ηT)·ξ    [ibid. eq. 14, SGLDLP-F]
sgld_lp_l   4   (S5)  θ' = Q_W(θ − η·Q_G(∇Ũ(θ)) + √(2ηT)·ξ)    [ibid. eq. 1, naive SGLDLP-L]
sgld_vc     5   (S6)  θ' = Q^vc(θ − η·Q_G(∇Ũ(θ)), 2ηT, Δ_W)    [ibid. eq. 17, VC SGLDLP-L]
==========  ==  =================================================================================

Q_W and Q_G are stochastic rounding (Q2') onto the weight and gradient formats
(both papers use stochastic rounding for both, §2.1 "Usage in the papers"); Q^vc
is (Q5)/(Q6) of :func:`refimpl._qkernels.vc_into`.  In LP-F θ is a float64
accumulator and the gradient is evaluated at a fresh stochastic rounding Q_W(θ)
each step (§3.4).  In LP-L the stored θ is always on the weight grid.  The
temperature scales the injected variance only (§3.1).  For block floating point
the whole chain vector is one block.

Noise per chain per step (``refimpl.noise_spec``): the method's streams in :mod:`refimpl.methods`
(docs/architecture.md).

Departures from the published code (ruqizhang/low-precision-sgld bnn/optim.py):
float64 instead of float32 accumulators, explicit Generators instead of CUDA
global RNG, and weight decay is part of ∇U (the code adds it unquantized after
Q_G, §7.2 item 4; with a Gaussian prior in U here the prior gradient *is*
quantized by Q_G) -- both for a bit-exact, device-independent reference.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from refimpl import _loop
from refimpl._checks import check_finite_array
from refimpl._qkernels import _fixed_stochastic, _vc_elem, nearest_into  # scalar kernels of (Q2'), (Q5)/(Q6)
from refimpl.methods import methods_of_family, stream_entries
from refimpl.registry import MethodSpec, prepare_step, register_method, step_args
from refimpl.slots import FIXED_DELTA, FIXED_HI, FIXED_LO, KIND, KIND_FIXED, TIES
from refimpl.formats import Format
from refimpl.targets import Target, grad1

__all__ = ["SGLDState", "METHODS", "init", "step", "step_all", "run_chunk", "noise_entries"]

METHODS = tuple(m.name for m in methods_of_family("sgld"))  # the rows of refimpl.methods, in method_id order
SGLD, SGD_LP_F, SGD_LP_L, SGLD_LP_F, SGLD_LP_L, SGLD_VC = range(6)

#: mparams layout: [temperature, grad_noise, batch_size]
P_T, P_S, P_NB = 0, 1, 2


class SGLDState(NamedTuple):
    """State of one or many SGLD-family chains: ``position`` float64 (n_chains, dim)."""

    position: np.ndarray


def noise_entries(method_id: int, dim: int, grad_noise: float,
                  batch_size: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """Ordered noise entries ``(name, kind, shape)`` of one chain-step: the method's streams in
    :mod:`refimpl.methods` (docs/architecture.md)."""
    if isinstance(method_id, (bool, np.bool_)) or not isinstance(method_id, numbers.Integral) \
            or not 0 <= method_id < len(METHODS):
        raise ValueError(f"method_id must be an integer in [0, {len(METHODS) - 1}] ({METHODS}), got {method_id!r}")
    return stream_entries(METHODS[method_id], dim, batch_size=batch_size, grad_noise=grad_noise)


@njit(cache=True, error_model="numpy", inline="always")
def _step_params(mparams, eta, tscale):
    """(T·tscale, grad_noise s, batch size, √(2ηT·tscale)) from the mparams layout."""
    temp = mparams[P_T] * tscale
    return temp, mparams[P_S], int(mparams[P_NB]), math.sqrt(2.0 * eta * temp)


@njit(cache=True, error_model="numpy")
def step_all(method: int, state: np.ndarray, noise: np.ndarray, eta: float, tscale: float, mparams: np.ndarray,
             wcode: np.ndarray, gcode: np.ndarray, tkind: int, tparams: np.ndarray, tmat: np.ndarray,
             tlabels: np.ndarray, scratch: np.ndarray) -> int:
    """Advance every chain by one step of method ``method`` from the noise block ``noise``.

    Equations (S1)-(S6) (module table).  ``state`` (n_chains, dim) float64 is
    updated in place; ``noise`` (n_chains, Z) holds the step's pre-drawn noise in
    the layout of :func:`noise_entries`; ``eta`` the step size; ``tscale`` a
    multiplier of the temperature (0 in a noise-free exploration stage);
    ``mparams`` = [T, grad_noise s, batch_size]; ``wcode``/``gcode`` format codes
    of Q_W/Q_G; the target code; ``scratch`` (6, n_chains, dim) float64 work space.
    Returns −1, or the first chain whose gradient is not finite; then **no**
    chain has been updated in this step.  No randomness is drawn here.
    """
    nc, d = state.shape
    temp, s, nb, sd = _step_params(mparams, eta, tscale)
    if method == SGLD and d == 1 and tkind != 1 and nb == 0:  # fast scalar path
        old = scratch[0]
        i = 1 if s != 0.0 else 0
        for c in range(nc):
            x = state[c, 0]
            g = grad1(tkind, tparams, x)
            if s != 0.0:
                g += s * noise[c, 0]
            if g - g != 0.0:
                for b in range(c):  # undo: no chain is updated at a failing step
                    state[b, 0] = old[b, 0]
                return c
            old[c, 0] = x
            state[c, 0] = x - eta * g + sd * noise[c, i]
        return -1
    if (method == SGLD_VC or method == SGLD_LP_L) and d == 1 and tkind != 1 and nb == 0 \
            and int(wcode[KIND]) == KIND_FIXED and int(gcode[KIND]) <= KIND_FIXED:
        return _fixed_scalar_lp(method, state, noise, eta, temp, s, wcode, gcode, tkind, tparams)
    return _general_step(method, state, noise, eta, tscale, mparams, wcode, gcode, tkind, tparams, tmat, tlabels,
                         scratch)


@njit(cache=True, error_model="numpy")
def _general_step(method, state, noise, eta, tscale, mparams, wcode, gcode, tkind, tparams, tmat, tlabels, scratch):
    """The general (any dim, format, target) all-chain path of :func:`step_all`."""
    nc, d = state.shape
    temp, s, nb, sd = _step_params(mparams, eta, tscale)
    G, XQ, MU = scratch[0], scratch[1], scratch[2]
    U1, U2, U3 = scratch[3], scratch[4], scratch[5]
    bad, off = _loop.lp_gradients(method == SGD_LP_F or method == SGLD_LP_F, method != SGLD, state, noise, nb, s,
                                  wcode, gcode, tkind, tparams, tmat, tlabels, XQ, U1, G)
    if bad >= 0:
        return bad
    if method == SGLD:
        for c in range(nc):
            for j in range(d):
                state[c, j] = state[c, j] - eta * G[c, j] + sd * noise[c, off + j]
        return -1
    if method == SGD_LP_F:
        for c in range(nc):
            for j in range(d):
                state[c, j] = state[c, j] - eta * G[c, j]
    elif method == SGLD_LP_F:
        for c in range(nc):
            for j in range(d):
                state[c, j] = state[c, j] - eta * G[c, j] + sd * noise[c, off + j]
    elif method == SGD_LP_L:
        for c in range(nc):
            for j in range(d):
                MU[c, j] = state[c, j] - eta * G[c, j]
        _loop.gather(noise, off, U1)
        _loop.stochastic_rows(MU, U1, state, wcode)
    elif method == SGLD_LP_L:
        for c in range(nc):
            for j in range(d):
                MU[c, j] = state[c, j] - eta * G[c, j] + sd * noise[c, off + j]
        _loop.gather(noise, off + d, U1)
        _loop.stochastic_rows(MU, U1, state, wcode)
    else:  # SGLD_VC
        for c in range(nc):
            for j in range(d):
                MU[c, j] = state[c, j] - eta * G[c, j]
        _loop.gather(noise, off, XQ)
        _loop.gather(noise, off + d, U2)
        _loop.gather(noise, off + 2 * d, U3)
        _loop.vc_rows(MU, 2.0 * eta * temp, XQ, U2, U3, state, wcode)
    return -1


@njit(cache=True, error_model="numpy")
def _fixed_scalar_lp(method, state, noise, eta, temp, s, wcode, gcode, tkind, tparams):
    """Fast path of :func:`step_all` for 1-D chains, fixed-point Q_W (Q_G fixed or none), non-data target.

    Same arithmetic and noise layout as the general path: Q_G and Q_W by the scalar
    fixed-point kernel of (Q2'), Q^vc by the scalar (Q5)/(Q6) kernel that ``vc_into``
    applies to a fixed-point code (both from :mod:`refimpl._qkernels`) -- bit-identical
    to the general path (tested), only without the per-phase gathers.
    """
    nc = state.shape[0]
    sd = math.sqrt(2.0 * eta * temp)
    delta, lo, hi = wcode[FIXED_DELTA], wcode[FIXED_LO], wcode[FIXED_HI]
    inv = 1.0 / delta
    se = math.frexp(delta)[1] - 1  # Δ = 2^se
    ties = int(wcode[TIES])
    var = 2.0 * eta * temp
    gq = int(gcode[KIND]) == KIND_FIXED
    gd, glo, ghi = gcode[FIXED_DELTA], gcode[FIXED_LO], gcode[FIXED_HI]
    ginv = 1.0 / gd if gq else 1.0
    i0 = 1 if s != 0.0 else 0
    for c in range(nc):
        g = grad1(tkind, tparams, state[c, 0])
        if s != 0.0:
            g += s * noise[c, 0]
        if g - g != 0.0:
            return c
    for c in range(nc):
        x = state[c, 0]
        g = grad1(tkind, tparams, x)
        if s != 0.0:
            g += s * noise[c, 0]
        if gq:
            g = _fixed_stochastic(g, noise[c, i0], gd, ginv, glo, ghi)
        if method == SGLD_VC:
            state[c, 0] = _vc_elem(x - eta * g, var, noise[c, i0 + 1], noise[c, i0 + 2], noise[c, i0 + 3],
                                   se, lo, hi, ties, False)
        else:
            state[c, 0] = _fixed_stochastic(x - eta * g + sd * noise[c, i0 + 1], noise[c, i0 + 2], delta, inv, lo, hi)
    return -1


@njit(cache=True, error_model="numpy")
def new_scratch(state: np.ndarray) -> np.ndarray:
    """Work space of :func:`step_all`: (6, n_chains, dim) float64."""
    return np.empty((6, state.shape[0], state.shape[1]))


run_chunk = _loop.make_chunk_loop(__name__, step_all, new_scratch)


def init(position: npt.ArrayLike) -> SGLDState:
    """SGLD-family state from positions (``(dim,)`` or ``(n_chains, dim)``); float64 copy."""
    x = np.array(check_finite_array("position", position), dtype=np.float64, ndmin=2)
    return SGLDState(np.ascontiguousarray(x))


def step(state: SGLDState, noise: npt.ArrayLike, *, method: str, step_size: float, target: str | Target,
         fmt: Format | str | None = None, grad_fmt: Format | str | None = "same",
         temperature: float = 1.0, grad_noise: float = 0.0) -> SGLDState:
    """One pure step of ``method`` from pre-drawn ``noise`` (n_chains, Z) -> new state.

    The noise layout is ``refimpl.noise_spec(method, dim, grad_noise=..., target=...)``
    flattened per chain.  Equations: module table.  Raises ``FloatingPointError``
    if a gradient is not finite.  Deterministic given ``noise``.
    """
    mid, mparams, wcode, gcode, tgt = prepare_step(method, "sgld", state.position.shape[1], target, fmt, grad_fmt, temperature, grad_noise, None, None, {})
    new = np.array(state.position, dtype=np.float64, order="C")
    step_size, noise = step_args(method, step_size, noise, new.shape[0], new.shape[1], tgt, grad_noise, {})
    bad = step_all(mid, new, noise, step_size, 1.0, mparams, wcode, gcode, tgt.kind, tgt.params, tgt.mat, tgt.labels, new_scratch(new))
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient in chain {bad}")
    return SGLDState(new)


# --------------------------------------------------------------------------------------
# registration (docs/architecture.md, "Registry")
# --------------------------------------------------------------------------------------
def _init_state(x0, ctx):
    state = np.array(x0, dtype=np.float64, order="C")
    if ctx.method in _LP_STORAGE:
        for c in range(state.shape[0]):
            nearest_into(state[c], state[c], ctx.wcode)
    return state


def _make_params(ctx):
    return np.array([ctx.temperature, ctx.grad_noise, ctx.target.batch_size], dtype=np.float64)


def _noise_spec(dim, ctx):
    return stream_entries(ctx.method, dim, batch_size=ctx.target.batch_size, grad_noise=ctx.grad_noise)


_LP_STORAGE = {m.name for m in methods_of_family("sgld") if m.lp_storage}

for _name in METHODS:
    register_method(MethodSpec(name=_name, width=lambda d, ctx: d, init_state=_init_state, noise_spec=_noise_spec,
                               make_params=_make_params, run_chunk=run_chunk))
