"""SGLD family: full-precision SGLD and its low-precision variants (ALGORITHMS.md §3.2-§3.6).

Methods (registered in :mod:`refimpl.driver`; one kernel, switched by ``method_id``):

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

Noise per chain per step (``refimpl.noise_spec``): see docs/architecture.md.

Departures from the published code (ruqizhang/low-precision-sgld bnn/optim.py):
float64 instead of float32 accumulators, explicit Generators instead of CUDA
global RNG, and weight decay is part of ∇U (the code adds it unquantized after
Q_G, §7.2 item 4; with a Gaussian prior in U here the prior gradient *is*
quantized by Q_G) -- both for a bit-exact, device-independent reference.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from refimpl import _loop
from refimpl._qkernels import _cat, _fixed_stochastic, _round_int  # scalar kernels of (Q2'), (Q4)
from refimpl.targets import grad1

__all__ = ["SGLDState", "METHODS", "init", "step", "step_all", "run_chunk", "noise_entries"]

METHODS = ("sgld", "sgd_lp_f", "sgd_lp_l", "sgld_lp_f", "sgld_lp_l", "sgld_vc")
SGLD, SGD_LP_F, SGD_LP_L, SGLD_LP_F, SGLD_LP_L, SGLD_VC = range(6)

#: mparams layout: [temperature, grad_noise, batch_size]
P_T, P_S, P_NB = 0, 1, 2


class SGLDState(NamedTuple):
    """State of one or many SGLD-family chains: ``position`` float64 (n_chains, dim)."""

    position: np.ndarray


def noise_entries(method_id: int, dim: int, grad_noise: float, batch_size: int):
    """Ordered noise entries ``(name, kind, shape)`` of one chain-step (docs/architecture.md)."""
    grad_entries = []
    if batch_size > 0:
        grad_entries.append(("batch_u", "uniform", (batch_size,)))
    if grad_noise > 0.0:
        grad_entries.append(("grad_noise", "normal", (dim,)))
    uw = ("u_weight", "uniform", (dim,))
    ug = ("u_grad", "uniform", (dim,))
    xi = ("xi", "normal", (dim,))
    if method_id == SGLD:
        return grad_entries + [xi]
    if method_id == SGD_LP_F:
        return [uw] + grad_entries + [ug]
    if method_id == SGD_LP_L:
        return grad_entries + [ug, uw]
    if method_id == SGLD_LP_F:
        return [uw] + grad_entries + [ug, xi]
    if method_id == SGLD_LP_L:
        return grad_entries + [ug, xi, uw]
    return grad_entries + [ug, ("vc_xi", "normal", (dim,)), ("vc_u_round", "uniform", (dim,)), ("vc_u_cat", "uniform", (dim,))]


@njit(cache=True, error_model="numpy")
def step_all(method, state, noise, eta, tscale, mparams, wcode, gcode, tkind, tparams, tmat, tlabels, scratch):
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
    nc = state.shape[0]
    d = state.shape[1]
    temp = mparams[P_T] * tscale
    s = mparams[P_S]
    nb = int(mparams[P_NB])
    sd = math.sqrt(2.0 * eta * temp)
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
            and int(wcode[0]) == 1 and int(gcode[0]) <= 1:
        return _fixed_scalar_lp(method, state, noise, eta, temp, s, wcode, gcode, tkind, tparams)
    return _general_step(method, state, noise, eta, tscale, mparams, wcode, gcode, tkind, tparams, tmat, tlabels,
                         scratch)


@njit(cache=True, error_model="numpy")
def _general_step(method, state, noise, eta, tscale, mparams, wcode, gcode, tkind, tparams, tmat, tlabels, scratch):
    """The general (any dim, format, target) all-chain path of :func:`step_all`."""
    nc = state.shape[0]
    d = state.shape[1]
    temp = mparams[P_T] * tscale
    s = mparams[P_S]
    nb = int(mparams[P_NB])
    sd = math.sqrt(2.0 * eta * temp)
    G = scratch[0]
    XQ = scratch[1]
    MU = scratch[2]
    U1 = scratch[3]
    U2 = scratch[4]
    U3 = scratch[5]
    off = 0
    if method == SGD_LP_F or method == SGLD_LP_F:
        _loop.gather(noise, off, U1)
        _loop.stochastic_rows(state, U1, XQ, wcode)
        off += d
        bad = _loop.gradients(tkind, tparams, tmat, tlabels, XQ, noise, off, nb, s, G)
    else:
        bad = _loop.gradients(tkind, tparams, tmat, tlabels, state, noise, off, nb, s, G)
    if bad >= 0:
        return bad
    off += nb + (d if s != 0.0 else 0)
    if method == SGLD:
        for c in range(nc):
            for j in range(d):
                state[c, j] = state[c, j] - eta * G[c, j] + sd * noise[c, off + j]
        return -1
    _loop.gather(noise, off, U1)
    _loop.stochastic_rows(G, U1, G, gcode)
    off += d
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


@njit(cache=True, error_model="numpy", inline="always")
def _vc_fixed(mu, var, sq, xi, ur, uc, delta, inv, big, lo, hi, ties):
    """Q^vc (Q5)/(Q6) of one element on the fixed-point grid Δ, clipped to [lo, hi].

    The same arithmetic as ``refimpl._qkernels._vc_elem`` for a fixed-point code
    (scalings by 2^±se written as multiplications by Δ and 1/Δ, which are exact;
    ``sq`` = √(var − Δ²/4) precomputed): bit-identical to ``vc_into`` (tested in
    tests/refimpl/test_sgld.py), about 3x faster.  LP-SGLD ICML 2022 Alg. Q^vc.
    """
    if mu != mu:
        return mu
    if abs(mu) == math.inf:
        return lo if mu < 0.0 else hi
    v0 = 0.25 * delta * delta
    mc = min(max(mu, lo - big), hi + big)
    if var > v0:  # branch 1 (Q5)
        x = mc + sq * xi
        qd = _round_int(x * inv, ties) * delta
        r = x - qd
        c = _cat(abs(r), v0, delta, uc)
        if r > 0.0:
            theta = qd + c
        elif r < 0.0:
            theta = qd - c
        else:
            theta = qd
    else:  # branch 2 (Q6)
        z = mc * inv
        theta = np.floor(z + ur) * delta
        a = abs(z)
        p = a - np.floor(a)
        vs = p * (1.0 - p) * delta * delta
        if var > vs:
            theta += _cat(0.0, var - vs, delta, uc)
    theta += 0.0
    return min(max(theta, lo), hi)


@njit(cache=True, error_model="numpy")
def _fixed_scalar_lp(method, state, noise, eta, temp, s, wcode, gcode, tkind, tparams):
    """Fast path of :func:`step_all` for 1-D chains, fixed-point Q_W (Q_G fixed or none), non-data target.

    Same arithmetic and noise layout as the general path: Q_G and Q_W by the scalar
    fixed-point kernel of (Q2'), Q^vc by the scalar (Q5)/(Q6) kernel of
    :mod:`refimpl._qkernels` -- bit-identical to it (tested), only without the
    per-phase gathers.
    """
    nc = state.shape[0]
    sd = math.sqrt(2.0 * eta * temp)
    delta, lo, hi = wcode[1], wcode[2], wcode[3]
    inv = 1.0 / delta
    ties = int(wcode[5])
    var = 2.0 * eta * temp
    v0 = 0.25 * delta * delta
    sq = math.sqrt(var - v0) if var > v0 else 0.0
    big = delta * 1152921504606846976.0  # Δ·2^60
    gq = int(gcode[0]) == 1
    gd, glo, ghi = gcode[1], gcode[2], gcode[3]
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
            state[c, 0] = _vc_fixed(x - eta * g, var, sq, noise[c, i0 + 1], noise[c, i0 + 2], noise[c, i0 + 3],
                                    delta, inv, big, lo, hi, ties)
        else:
            state[c, 0] = _fixed_stochastic(x - eta * g + sd * noise[c, i0 + 1], noise[c, i0 + 2], delta, inv, lo, hi)
    return -1


@njit(cache=True, error_model="numpy")
def run_chunk(method, state, k0, k1, mparams, wcode, gcode, tkind, tparams, tmat, tlabels, sched,
              rng, kinds, allnormal, noise_in, nbase, rec, out, smean, sm2, hist, hparams):
    """Jitted loop over steps k0..k1−1 (signature and semantics: :mod:`refimpl._loop`)."""
    nc = state.shape[0]
    buf = np.empty((nc, kinds.shape[0]))
    scratch = np.empty((6, nc, state.shape[1]))
    for k in range(k0, k1):
        eta, tscale, sampling = _loop.schedule_at(sched, k)
        if noise_in.shape[0] == 0:
            _loop.fill_noise(rng, kinds, allnormal, buf)
            bad = step_all(method, state, buf, eta, tscale, mparams, wcode, gcode, tkind, tparams, tmat, tlabels, scratch)
        else:
            bad = step_all(method, state, noise_in[k - nbase], eta, tscale, mparams, wcode, gcode, tkind, tparams, tmat, tlabels, scratch)
        if bad >= 0:
            return k, bad
        if sampling:
            _loop.record(k, state, rec, out, smean, sm2, hist, hparams)
    return k1, -1


def init(position) -> SGLDState:
    """SGLD-family state from positions (``(dim,)`` or ``(n_chains, dim)``); float64 copy."""
    x = np.array(position, dtype=np.float64, ndmin=2)
    return SGLDState(np.ascontiguousarray(x))


def step(state: SGLDState, noise, *, method: str, step_size: float, target, fmt=None, grad_fmt=None,
         temperature: float = 1.0, grad_noise: float = 0.0) -> SGLDState:
    """One pure step of ``method`` from pre-drawn ``noise`` (n_chains, Z) -> new state.

    The noise layout is ``refimpl.noise_spec(method, dim, grad_noise=..., target=...)``
    flattened per chain.  Equations: module table.  Raises ``FloatingPointError``
    if a gradient is not finite.  Deterministic given ``noise``.
    """
    from refimpl.driver import _prepare_step

    mid, mparams, wcode, gcode, tgt = _prepare_step(method, "sgld", state.position.shape[1], target, fmt, grad_fmt, temperature, grad_noise, None, None, {})
    new = np.array(state.position, dtype=np.float64, order="C")
    noise = np.ascontiguousarray(np.asarray(noise, dtype=np.float64).reshape(new.shape[0], -1))
    bad = step_all(mid, new, noise, float(step_size), 1.0, mparams, wcode, gcode, tgt.kind, tgt.params, tgt.mat, tgt.labels, np.empty((6, new.shape[0], new.shape[1])))
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient in chain {bad}")
    return SGLDState(new)


# --------------------------------------------------------------------------------------
# registration with the driver
# --------------------------------------------------------------------------------------
def _init_state(x0, ctx):
    state = np.array(x0, dtype=np.float64, order="C")
    if _REG_LP_STORAGE[ctx.method]:
        from refimpl._qkernels import nearest_into

        for c in range(state.shape[0]):
            nearest_into(state[c], state[c], ctx.wcode)
    return state


def _make_params(ctx):
    return np.array([ctx.temperature, ctx.grad_noise, ctx.target.batch_size], dtype=np.float64)


_REG_LP_STORAGE = {"sgld": False, "sgd_lp_f": False, "sgd_lp_l": True, "sgld_lp_f": False, "sgld_lp_l": True, "sgld_vc": True}


def _register():
    from refimpl.driver import MethodSpec, register_method

    for mid, name in enumerate(METHODS):
        register_method(MethodSpec(
            name=name, family="sgld", method_id=mid, width=lambda d: d, init_state=_init_state,
            noise_spec=(lambda m: lambda d, ctx: noise_entries(m, d, ctx.grad_noise, ctx.target.batch_size))(mid),
            make_params=_make_params, run_chunk=run_chunk,
            needs_fmt="none" if name == "sgld" else "required", momentum=False,
            options={} if name == "sgld" else ({"ties": None, "vc_bfp_published": False} if name == "sgld_vc" else {}),
            lp_storage=_REG_LP_STORAGE[name]))


_register()
