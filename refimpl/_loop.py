"""Shared jitted pieces of the sampler loops (docs/architecture.md, "Sampler registry").

Every family's jitted ``run_chunk`` loop is built by :func:`make_chunk_loop` from
the one template below (so there is one loop, not a copy per family), around
these helpers:

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

``rec`` (int64): [mode, burn_in, thin, n_recorded, n_dim, next_step]; mode 0 = store into
``out`` (n_kept, n_chains, dim), 1 = keep nothing (final state only), 2 =
streaming statistics: per-chain Welford mean/M2 ``smean``/``sm2`` (n_chains, dim)
and a pooled histogram ``hist`` (dim, n_bins + 2) (first/last columns count values
below/above the range ``hparams = [lo, hi, n_bins]``; NaN is counted in neither).
``next_step`` is written after every completed step, so ``state`` and ``rec`` always
agree on how far the run got (the driver reads it after an interrupt).
"""

from __future__ import annotations

import hashlib
import types
from pathlib import Path

import numpy as np
from numba import njit

from refimpl import formulas
from refimpl._qkernels import is_blockwise, stochastic_into, vc_into
from refimpl.targets import grad1, grad_into

__all__ = [
    "SCHED_CONSTANT",
    "SCHED_CYCLICAL",
    "SCHED_DECAY",
    "fill_noise",
    "make_chunk_loop",
    "record",
    "schedule_at",
]

SCHED_CONSTANT, SCHED_CYCLICAL, SCHED_DECAY = 0, 1, 2
MODE_ALL, MODE_LAST, MODE_STATS = 0, 1, 2

_JIT = dict(cache=True, error_model="numpy")
#: rec slots (see the module docstring)
REC_MODE, REC_FIRST, REC_THIN, REC_N, REC_DIM, REC_NEXT = range(6)

_decay_factor = njit(**_JIT)(formulas.decay_factor)
_cyclical_step_size = njit(**_JIT)(formulas.cyclical_step_size)


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
        eta = _cyclical_step_size(k, period, sched[1])
        sampling = r >= sched[3]
        scale = 1.0 if (sampling or sched[4] != 0.0) else 0.0
        return eta, scale, sampling
    # decay (S7), per epoch
    epochs = sched[2]
    epoch = k // int(sched[3])
    return sched[1] * _decay_factor(epoch / epochs), 1.0, epoch >= sched[4]


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
    """Q^s (Q2') of every row of x (n_chains, dim) with uniforms u; BFP: one block per row (MX: a row of blocks)."""
    if is_blockwise(code):
        for c in range(x.shape[0]):
            stochastic_into(x[c], u[c], out[c], code)
    else:
        stochastic_into(x.reshape(x.size), u.reshape(u.size), out.reshape(out.size), code)


@njit(**_JIT)
def vc_rows(mu, var, xi, ur, uc, out, code):
    """Q^vc ((Q5)/(Q6)) of every row of mu (n_chains, dim), scalar var; BFP: one block per row (MX: a row of blocks)."""
    if is_blockwise(code):
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


@njit(**_JIT)
def lp_gradients(round_weights, round_grad, x, noise, nb, s, wcode, gcode, tkind, tparams, tmat, tlabels, XQ, U, G):
    """The gradient phase of the SGLD and SGHMC step kernels, on all chains.

    G = Q_G(∇Ũ(Q_W(x))) (``round_weights``: LP-F, (S2)/(S4)/(H2); Q_W(x) goes to ``XQ``)
    or Q_G(∇Ũ(x)), Q_G applied only when ``round_grad``; Q_W and Q_G are stochastic
    rounding (Q2') with the step's ``u_weight`` / ``u_grad`` columns, the gradient reads
    ``batch_u`` / ``grad_noise`` (:func:`gradients`).  ``U`` (n_chains, dim) is work
    space.  Returns ``(bad, off)``: −1 or the first chain whose gradient is not finite,
    and the noise column after the consumed entries (the stream order of refimpl.methods).
    """
    d = G.shape[1]
    off = 0
    if round_weights:
        gather(noise, off, U)
        stochastic_rows(x, U, XQ, wcode)
        off += d
        bad = gradients(tkind, tparams, tmat, tlabels, XQ, noise, off, nb, s, G)
    else:
        bad = gradients(tkind, tparams, tmat, tlabels, x, noise, off, nb, s, G)
    if bad >= 0:
        return bad, off
    off += nb + (d if s != 0.0 else 0)
    if round_grad:
        gather(noise, off, U)
        stochastic_rows(G, U, G, gcode)
        off += d
    return -1, off


# --------------------------------------------------------------------------------------
# the chunk loop: one template, one compiled copy per family
# --------------------------------------------------------------------------------------
def _chunk_loop_template(source_stamp):
    # ``step_all`` and ``new_scratch`` are globals of the function that make_chunk_loop builds
    # from this code: they resolve to the family's kernels.  ``source_stamp`` is a closure cell,
    # which Numba's cache key hashes (see make_chunk_loop).
    def run_chunk(method: int, state: np.ndarray, k0: int, k1: int, mparams: np.ndarray, wcode: np.ndarray,
                  gcode: np.ndarray, tkind: int, tparams: np.ndarray, tmat: np.ndarray, tlabels: np.ndarray,
                  sched: np.ndarray, rng: np.random.Generator, kinds: np.ndarray, allnormal: bool,
                  noise_in: np.ndarray, nbase: int, rec: np.ndarray, out: np.ndarray, smean: np.ndarray,
                  sm2: np.ndarray, hist: np.ndarray, hparams: np.ndarray) -> tuple[int, int]:
        stamp = source_stamp  # noqa: F841  (part of the cache key only)
        buf = np.empty((state.shape[0], kinds.shape[0]))
        scratch = new_scratch(state)  # noqa: F821
        for k in range(k0, k1):
            eta, tscale, sampling = schedule_at(sched, k)
            if noise_in.shape[0] == 0:
                fill_noise(rng, kinds, allnormal, buf)
                bad = step_all(method, state, buf, eta, tscale, mparams, wcode, gcode,  # noqa: F821
                               tkind, tparams, tmat, tlabels, scratch)
            else:
                bad = step_all(method, state, noise_in[k - nbase], eta, tscale, mparams, wcode, gcode,  # noqa: F821
                               tkind, tparams, tmat, tlabels, scratch)
            if bad >= 0:
                return k, bad
            if sampling:
                record(k, state, rec, out, smean, sm2, hist, hparams)
            rec[5] = k + 1
        return k1, -1

    return run_chunk


_SOURCE_STAMP: list = []


def _source_stamp() -> int:
    """A 60-bit hash of every refimpl source file (the kernels a loop inlines live in several)."""
    if not _SOURCE_STAMP:
        root = Path(__file__).resolve().parent
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        _SOURCE_STAMP.append(int(digest.hexdigest()[:15], 16))
    return _SOURCE_STAMP[0]


def make_chunk_loop(family_module: str, step_all, new_scratch):
    """The family's jitted ``run_chunk`` (signature in the module docstring), from the one template.

    ``step_all(method, state, noise, eta, tscale, mparams, wcode, gcode, tkind, tparams,
    tmat, tlabels, scratch) -> bad_chain`` is the family's noise-in step kernel and
    ``new_scratch(state)`` (jitted) allocates its work space.  The loop is the template's
    code with the family's kernels bound as its globals, so the four families run the same
    loop line for line, and Numba can still cache it: a loop taking the kernel as an
    argument (a dispatcher) is not cacheable.  The cache key includes a hash of every
    refimpl source file (Numba keys a cached function on its own file only, so without it
    an edited kernel would keep its stale cached loop).
    """
    template = _chunk_loop_template(_source_stamp())
    family = family_module.rsplit(".", 1)[-1]
    env = {"__name__": family_module, "np": np, "schedule_at": schedule_at, "fill_noise": fill_noise,
           "record": record, "step_all": step_all, "new_scratch": new_scratch}
    fn = types.FunctionType(template.__code__, env, "run_chunk", None, template.__closure__)
    fn.__qualname__ = f"run_chunk_{family}"  # one cache file per family
    fn.__annotations__ = dict(template.__annotations__)  # FunctionType does not carry them over
    fn.__doc__ = (f"Jitted loop over steps k0..k1−1 of the {family} family (signature and semantics: "
                  ":mod:`refimpl._loop`; built by :func:`refimpl._loop.make_chunk_loop`).")
    return njit(**_JIT)(fn)
