"""Shared jitted pieces of the sampler loops (docs/architecture.md, "Sampler registry").

Every family writes its own small jitted ``run_chunk`` loop (so that it can be
cached by Numba and needs no function-typed arguments) from these helpers:

``fill_noise(rng, kinds, allnormal, buf)``
    draw one step's noise block ``buf`` (n_chains, Z) chain by chain, entry by
    entry: ``rng.standard_normal()`` where ``kinds[j] == 0``, ``rng.random()`` where
    ``kinds[j] == 1``.  This *is* the noise layout of ``refimpl.noise_spec``.
``schedule_at(sched, k) -> (eta, noise_scale, sampling)``
    step size of step k, the temperature multiplier (0 in a noise-free
    exploration stage) and whether step k lies in a sampling phase.
``record(k, state, rec, out, smean, sm2, hist, hparams)``
    burn-in / thinning / storage or streaming statistics after step k.

The family loop has the signature::

    run_chunk(method, state, k0, k1, mparams, wcode, gcode,
              tkind, tparams, tmat, tlabels, sched,
              rng, kinds, allnormal, noise_in, nbase,
              rec, out, smean, sm2, hist, hparams) -> (k_stop, bad_chain)

and runs steps ``k0 .. k1-1``; with ``noise_in.shape[0] > 0`` the step's noise
is ``noise_in[k - nbase]`` instead of a Generator draw.  It returns ``(k1, -1)``,
or ``(k, c)`` when chain ``c``'s gradient at step ``k`` is not finite.

``rec`` (int64): [mode, burn_in, thin, n_recorded, n_dim]; mode 0 = store into
``out`` (n_kept, n_chains, dim), 1 = keep nothing (final state only), 2 =
streaming statistics: per-chain Welford mean/M2 ``smean``/``sm2`` (n_chains, dim)
and a pooled histogram ``hist`` (dim, n_bins + 2) (first/last columns count values
below/above the range ``hparams = [lo, hi, n_bins]``; NaN is counted in neither).
"""

from __future__ import annotations

import math

from numba import njit

from refimpl._qkernels import stochastic_into, vc_into
from refimpl.targets import grad1, grad_into

__all__ = ["fill_noise", "schedule_at", "record", "SCHED_CONSTANT", "SCHED_CYCLICAL", "SCHED_DECAY"]

SCHED_CONSTANT, SCHED_CYCLICAL, SCHED_DECAY = 0, 1, 2
MODE_ALL, MODE_LAST, MODE_STATS = 0, 1, 2

_JIT = dict(cache=True, error_model="numpy")


@njit(**_JIT)
def fill_noise(rng, kinds, allnormal, buf):
    """Fill ``buf`` (n_chains, Z) with one step's noise in the layout of ``kinds``."""
    nc, nz = buf.shape
    if allnormal:
        for c in range(nc):
            for j in range(nz):
                buf[c, j] = rng.standard_normal()
    else:
        for c in range(nc):
            for j in range(nz):
                if kinds[j] == 0:
                    buf[c, j] = rng.standard_normal()
                else:
                    buf[c, j] = rng.random()


@njit(**_JIT)
def schedule_at(sched, k):
    """(eta_k, noise_scale_k, in_sampling_phase_k) for the schedule code ``sched``.

    Codes (built by :mod:`refimpl.schedules`): constant ``[0, eta]``; cyclical (S8)
    ``[1, eta0, period, explore_fraction, noise_in_exploration]``; decay (S7)
    ``[2, eta0, n_epochs, steps_per_epoch, sample_from_epoch]``.
    """
    kind = int(sched[0])
    if kind == SCHED_CONSTANT:
        return sched[1], 1.0, True
    if kind == SCHED_CYCLICAL:
        period = int(sched[2])
        r = (k % period) / period
        eta = 0.5 * sched[1] * (math.cos(math.pi * r) + 1.0)
        sampling = r >= sched[3]
        scale = 1.0 if (sampling or sched[4] != 0.0) else 0.0
        return eta, scale, sampling
    # decay (S7), per epoch
    epochs = sched[2]
    epoch = k // int(sched[3])
    t = epoch / epochs
    if t <= 0.5:
        f = 1.0
    elif t <= 0.9:
        f = 1.0 - 0.99 * (t - 0.5) / 0.4
    else:
        f = 0.01
    return sched[1] * f, 1.0, epoch >= sched[4]


@njit(**_JIT)
def record(k, state, rec, out, smean, sm2, hist, hparams):
    """Store or accumulate the positions ``state[:, :dim]`` after step ``k`` (see module doc)."""
    mode = rec[0]
    if mode == MODE_LAST:
        return
    if k < rec[1] or (k - rec[1]) % rec[2] != 0:
        return
    nc = state.shape[0]
    d = rec[4]
    n = rec[3]
    if mode == MODE_ALL:
        for c in range(nc):
            for j in range(d):
                out[n, c, j] = state[c, j]
    else:
        inv = 1.0 / (n + 1)
        lo = hparams[0]
        nb = int(hparams[2])
        scale = nb / (hparams[1] - lo)
        for c in range(nc):
            for j in range(d):
                x = state[c, j]
                delta = x - smean[c, j]
                smean[c, j] += delta * inv
                sm2[c, j] += delta * (x - smean[c, j])
                z = (x - lo) * scale
                if z < 0.0:
                    hist[j, 0] += 1
                elif z >= nb:
                    hist[j, nb + 1] += 1
                elif z == z:
                    hist[j, int(z) + 1] += 1
    rec[3] = n + 1


# --------------------------------------------------------------------------------------
# all-chain phases (no per-chain array views in the hot loop: a view costs a
# reference-count round trip, ~100x the work of rounding one scalar)
# --------------------------------------------------------------------------------------
@njit(**_JIT)
def gather(noise, off, out):
    """out[c, j] = noise[c, off + j] for out of shape (n_chains, m)."""
    nc, m = out.shape
    for c in range(nc):
        for j in range(m):
            out[c, j] = noise[c, off + j]


@njit(**_JIT)
def stochastic_rows(x, u, out, code):
    """Q^s (Q2') of every row of x (n_chains, dim) with uniforms u; BFP: one block per row."""
    if int(code[0]) == 2:
        for c in range(x.shape[0]):
            stochastic_into(x[c], u[c], out[c], code)
    else:
        stochastic_into(x.reshape(x.size), u.reshape(u.size), out.reshape(out.size), code)


@njit(**_JIT)
def vc_rows(mu, var, xi, ur, uc, out, code):
    """Q^vc ((Q5)/(Q6)) of every row of mu (n_chains, dim), scalar var; BFP: one block per row."""
    if int(code[0]) == 2:
        for c in range(mu.shape[0]):
            vc_into(mu[c], var, xi[c], ur[c], uc[c], out[c], code)
    else:
        vc_into(mu.reshape(mu.size), var, xi.reshape(xi.size), ur.reshape(ur.size), uc.reshape(uc.size), out.reshape(out.size), code)


@njit(**_JIT)
def gradients(tkind, tparams, tmat, tlabels, points, noise, off, nb, s, G):
    """G[c] = ∇U(points[c]) (minibatch from noise[c, off:off+nb]) + s·noise[c, off+nb : off+nb+dim].

    Returns the first chain whose gradient is not finite, or −1.
    """
    nc, d = G.shape
    if d == 1 and tkind != 1 and nb == 0:
        for c in range(nc):
            G[c, 0] = grad1(tkind, tparams, points[c, 0])
    else:
        for c in range(nc):
            grad_into(tkind, tparams, tmat, tlabels, points[c], noise[c, off:off + nb], G[c])
    if s != 0.0:
        o = off + nb
        for c in range(nc):
            for j in range(d):
                G[c, j] += s * noise[c, o + j]
    for c in range(nc):
        bad = 0.0
        for j in range(d):
            bad += G[c, j] - G[c, j]
        if bad != 0.0:
            return c
    return -1
