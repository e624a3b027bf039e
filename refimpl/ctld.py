"""CTLD: Langevin dynamics with continuous tempering (Ye, Zhu & Mantiuk, NeurIPS 2017; arXiv 1703.04379).

ALGORITHMS §3.13, (C1)-(C6).  **Status.**  Confirmed [abstract; NeurIPS 2017
reviews]: two phases (Bayesian sampling with an extended second-order
stochastic-gradient Langevin dynamics, then a noise-free momentum SGD); a
coupling g(alpha) and a confining potential phi(alpha) of an augmented variable
alpha control the inverse temperature; stochastic approximation flattens
alpha's distribution; "L_s" is very likely the sampling-phase length.  **The
exact g, phi, discretisation and bias estimator are a [reconstruction]** (after
Gobbo & Leimkuhler 2015), every choice is a parameter (``OPTIONS``):

    (C1)  H = g(alpha) U(theta) + phi(alpha) + |r|^2/2 + r_alpha^2/(2 m_alpha),  target ~ exp(-H/T)
    (C3)  ABF histogram on [-alpha_max, alpha_max], n_bins bins:
          c_j += 1,  Ubar_j += omega (U~(theta) - Ubar_j),  omega = 1/c_j  (running mean);
          the mirror bin is updated too when g is even (default)
          (metadynamics option: Gaussians of height h, width sigma_h deposited at alpha
          (and -alpha), bias force = -dV/dalpha)
    (C4)  g = 1 for |alpha| <= d1;  1 - (1-g_min) S((|alpha|-d1)/(d2-d1)), S(x) = x^2(3-2x);  g_min beyond d2
          phi = 0 with a reflecting wall at ±alpha_max (default), or k_c (|alpha|-d2)^2 beyond d2
    (C5)  v       <- (1-c_theta) v - eta g(alpha) grad U~(theta) + sqrt(2 c_theta eta T) xi
          theta   <- theta + v
          v_alpha <- (1-c_alpha) v_alpha - eta_alpha [g'(alpha)(U~(theta) - Ubar_j(alpha)) + phi'(alpha)]
                     + sqrt(2 c_alpha eta_alpha T) xi_alpha
          alpha   <- alpha + v_alpha  (reflect at ±alpha_max for the wall)
          update (c_j, Ubar_j) by (C3)
    (C6)  after L_s steps (optionally waiting until |alpha| <= d1): drop alpha, noise and bias,
          v <- mu_m v - eta_2 grad U~(theta);  theta <- theta + v

All quantities on the right-hand side are evaluated at step t (theta_t,
alpha_t), then both blocks are updated.  The bias b(alpha) = g'(alpha) Ubar(alpha)
makes the alpha-marginal ~ exp(-phi/T): flat on [-alpha_max, alpha_max] with the
wall [derived, §3.13].  Samples of the target are the theta's with g(alpha) = 1
(|alpha| <= d1).

Defaults (no published values exist; the appendix tables E1/E2 are
[unconfirmed]): alpha_max = 1, d1 = 0.2, d2 = 0.8, g_min = 0.1 (T_max = 10 T),
wall, c_theta = 0.1, c_alpha = 0.1, eta_alpha = 4e-4 (thermal alpha speed
sqrt(eta_alpha T) = 0.02 per step, ~100 steps to cross the range), n_bins = 50,
ABF with running mean and mirror update, no phase switch (L_s = None),
mu_m = 0.9, eta_2 = eta, velocity reset at the switch.

Targets: CTLD needs U(theta) itself, so only the analytic targets (kinds 0-3 of
:mod:`refimpl.targets`: gaussian, mixture, double_well) are supported; the
mixture's U is taken up to the additive constant that makes U(mode) ~= 0 for
equal weights (the constant cancels in the ABF force).

Packed state per chain (width 2*dim + 4 + 2*n_bins):
[theta | v | alpha | v_alpha | phase (1 or 2) | steps taken | counts c_j | Ubar_j (or V_j)].
``refimpl.sample("ctld", ...)`` stores theta; the alpha's and the histogram are
in the final state (``return_state=True``), see :func:`unpack`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from . import _loop
from ._checks import check_count, check_finite_array, check_real
from .formulas import ctld_coupling, ctld_coupling_derivative
from .methods import CTLD_CHOICES, CTLD_OPTIONS, stream_entries
from .registry import Context, MethodSpec, prepare_step, register_method, step_args
from .targets import Target, grad1, grad_into

if TYPE_CHECKING:
    from .driver import SamplerState, SampleStats

__all__ = ["ALPHA_PARAM_INDEX", "ALPHA_STREAM", "CTLDState", "OPTIONS", "init", "pack", "step", "coupling",
           "coupling_derivative", "potential", "unpack", "step_all", "run_chunk", "noise_entries", "replay_ctld_step",
           "sample"]

#: options and defaults: the ctld row of refimpl.methods (the same names in torchport.optim.CTLD)
OPTIONS = dict(CTLD_OPTIONS)

_BIAS = CTLD_CHOICES["bias"]  # the choices of the ctld row of refimpl.methods (as torchport)
_PHI = CTLD_CHOICES["phi"]
_OMEGA = CTLD_CHOICES["omega"]


class CTLDState(NamedTuple):
    """Unpacked CTLD state (arrays over chains)."""

    position: np.ndarray   # (n_chains, dim)
    velocity: np.ndarray   # (n_chains, dim)
    alpha: np.ndarray      # (n_chains,)
    alpha_velocity: np.ndarray
    phase: np.ndarray      # (n_chains,) 1 = sampling, 2 = momentum SGD
    step: np.ndarray       # (n_chains,)
    counts: np.ndarray     # (n_chains, n_bins)
    ubar: np.ndarray       # (n_chains, n_bins): ABF means, or the metadynamics bias V


def unpack(packed: np.ndarray, dim: int) -> CTLDState:
    """Split a packed (n_chains, width) state into a :class:`CTLDState` (copies).

    ``width = 2*dim + 4 + 2*n_bins`` (:func:`pack`); ``ValueError`` for any other.
    """
    dim = check_count("dim", dim, 1)
    p = check_finite_array("packed", packed)
    if p.ndim != 2 or p.shape[1] < 2 * dim + 8 or (p.shape[1] - 2 * dim - 4) % 2:
        raise ValueError(f"packed must have shape (n_chains, 2*dim + 4 + 2*n_bins) with n_bins >= 2 for dim={dim}, "
                         f"got shape {p.shape}")
    nb = (p.shape[1] - 2 * dim - 4) // 2
    o = 2 * dim
    return CTLDState(p[:, :dim].copy(), p[:, dim:o].copy(), p[:, o].copy(), p[:, o + 1].copy(),
                     p[:, o + 2].copy(), p[:, o + 3].copy(), p[:, o + 4:o + 4 + nb].copy(),
                     p[:, o + 4 + nb:o + 4 + 2 * nb].copy())


def init(position: npt.ArrayLike, *, n_bins: int = 50, alpha0: float = 0.0) -> CTLDState:
    """Phase-1 state at ``position`` ((dim,) or (n_chains, dim)): v = 0, alpha = alpha0,
    v_alpha = 0, empty histogram of ``n_bins`` bins."""
    x = np.ascontiguousarray(np.array(check_finite_array("position", position), dtype=np.float64, ndmin=2))
    n_bins = check_count("n_bins", n_bins, 2, 2**31 - 1)
    alpha0 = check_real("alpha0", alpha0)
    n = x.shape[0]
    z = np.zeros(n)
    return CTLDState(x, np.zeros_like(x), z + alpha0, z.copy(), z + 1.0, z.copy(), np.zeros((n, n_bins)),
                     np.zeros((n, n_bins)))


def pack(state: CTLDState) -> np.ndarray:
    """Packed form (n_chains, 2*dim + 4 + 2*n_bins) used by the driver and the kernels."""
    return np.ascontiguousarray(np.column_stack([state.position, state.velocity, state.alpha, state.alpha_velocity,
                                                 state.phase, state.step, state.counts, state.ubar]))


def step(state: CTLDState, noise: npt.ArrayLike, *, step_size: float, target: str | Target,
         temperature: float = 1.0, grad_noise: float = 0.0, **options: Any) -> CTLDState:
    """One pure CTLD step ((C5)/(C3), or (C6) in phase 2) from pre-drawn ``noise`` (n_chains, Z).

    Layout: ``refimpl.noise_spec("ctld", dim, grad_noise=...)``.  ``options`` as for
    ``refimpl.sample("ctld", ...)``; ``n_bins`` must match the state's histogram.
    Deterministic given ``noise``; raises FloatingPointError on a non-finite gradient.
    """
    p = pack(state)
    d = state.position.shape[1]
    options = dict(options)
    options.setdefault("n_bins", state.counts.shape[1])
    if options["n_bins"] != state.counts.shape[1]:
        raise ValueError(f"n_bins={options['n_bins']!r} does not match the state's {state.counts.shape[1]} bins")
    mid, mparams, wcode, gcode, tgt = prepare_step("ctld", "ctld", d, target, None, None, temperature, grad_noise,
                                                    None, None, options)
    step_size, nz = step_args("ctld", step_size, noise, p.shape[0], d, tgt, grad_noise, options)
    bad = step_all(mid, p, nz, step_size, 1.0, mparams, wcode, gcode, tgt.kind, tgt.params, tgt.mat,
                   tgt.labels, new_scratch(p))
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient in chain {bad}")
    return unpack(p, d)


# ---------------------------------------------------------------------------
# g, g', phi', U


#: g(α) and g'(α) of (C4): the one definition in refimpl.formulas, jitted
_g = njit(cache=True, error_model="numpy")(ctld_coupling)
_dg = njit(cache=True, error_model="numpy")(ctld_coupling_derivative)


def _coupling_args(alpha, delta1, delta2, g_min):
    """The arguments of (C4) checked as the sampler checks its options (0 <= delta1 < delta2, 0 < g_min <= 1)."""
    a = check_finite_array("alpha", alpha)
    d1 = check_real("delta1", delta1, lo=0.0)
    d2 = check_real("delta2", delta2, lo=0.0, lo_open=True)
    if not d1 < d2:
        raise ValueError(f"need delta1 < delta2, got delta1={delta1!r}, delta2={delta2!r}")
    return a, d1, d2, check_real("g_min", g_min, lo=0.0, lo_open=True, hi=1.0)


def coupling(alpha: npt.ArrayLike, delta1: float = CTLD_OPTIONS["delta1"], delta2: float = CTLD_OPTIONS["delta2"],
             g_min: float = CTLD_OPTIONS["g_min"]) -> np.ndarray:
    """g(alpha) of (C4) (vectorised).  [reconstruction]"""
    a, delta1, delta2, g_min = _coupling_args(alpha, delta1, delta2, g_min)
    return np.vectorize(lambda z: _g(z, delta1, delta2, g_min))(a)


def coupling_derivative(alpha: npt.ArrayLike, delta1: float = CTLD_OPTIONS["delta1"],
                        delta2: float = CTLD_OPTIONS["delta2"], g_min: float = CTLD_OPTIONS["g_min"]) -> np.ndarray:
    """g'(alpha) of (C4) (vectorised)."""
    a, delta1, delta2, g_min = _coupling_args(alpha, delta1, delta2, g_min)
    return np.vectorize(lambda z: _dg(z, delta1, delta2, g_min))(a)


@njit(cache=True, error_model="numpy", inline="always")
def _potential(kind, params, mat, x):
    d = x.shape[0]
    if kind == 0:
        s = 0.0
        for j in range(d):
            s += x[j] * x[j]
        return 0.5 * s
    if kind == 1:
        s = 0.0
        for i in range(d):
            acc = 0.0
            for j in range(d):
                acc += mat[i, j] * (x[j] - params[j])
            s += (x[i] - params[i]) * acc
        return 0.5 * s
    if kind == 2:
        c = params[0]
        s2 = 0.0
        s1 = 0.0
        for j in range(d):
            s2 += x[j] * x[j]
            s1 += x[j]
        z = abs(4.0 * c * s1 + params[1])
        return 2.0 * s2 + 2.0 * d * c * c - (z + math.log1p(math.exp(-2.0 * z)))
    h = params[0]
    s = 0.0
    for j in range(d):
        w = x[j] * x[j] - 1.0
        s += w * w
    return h * s


def potential(target: Target, x: npt.ArrayLike) -> float:
    """U(theta) for an analytic target (kinds 0-3), x of shape (dim,) -> float."""
    if not isinstance(target, Target):
        raise TypeError(f"target must be a refimpl.targets.Target (see resolve_target), got {target!r}")
    x = check_finite_array("x", x)
    if x.shape != (target.dim,):
        raise ValueError(f"x must have shape ({target.dim},), got shape {x.shape}")
    if target.kind > 3:
        raise ValueError(f"target must be an analytic target (gaussian, mixture, double_well), got {target.name!r}")
    return float(_potential(target.kind, target.params, target.mat, np.ascontiguousarray(x, dtype=np.float64)))


# ---------------------------------------------------------------------------
# Step kernel
#
# mparams: [0 T, 1 grad_noise, 2 c_theta, 3 c_alpha, 4 eta_alpha, 5 alpha_max, 6 d1, 7 d2, 8 g_min,
#           9 phi (0 wall, 1 quadratic), 10 k_c, 11 n_bins, 12 bias (0 none, 1 abf, 2 metad),
#           13 mirror, 14 meta_height, 15 meta_width, 16 omega (0 mean, 1 const), 17 omega_const,
#           18 switch_after (-1 never), 19 wait_band, 20 momentum, 21 eta2 (0: eta), 22 reset_v]


@njit(cache=True, error_model="numpy")
def _bin(a, amax, nb):
    j = int(math.floor((a + amax) / (2.0 * amax) * nb))
    if j < 0:
        return 0
    if j >= nb:
        return nb - 1
    return j


@njit(cache=True, error_model="numpy")
def step_all(method: int, state: np.ndarray, noise: np.ndarray, eta: float, tscale: float, mp: np.ndarray,
             wcode: np.ndarray, gcode: np.ndarray, tkind: int, tparams: np.ndarray, tmat: np.ndarray,
             tlabels: np.ndarray, scratch: np.ndarray) -> int:
    """Advance all chains one CTLD step (C5)/(C3), or one (C6) step in phase 2.

    noise (n_chains, Z): [grad_noise (dim) if grad_noise > 0] + xi (dim) + xi_alpha (1),
    drawn in both phases.  Returns -1 or the first chain with a non-finite gradient.
    """
    nc = state.shape[0]
    nb = int(mp[11])
    d = (state.shape[1] - 4 - 2 * nb) // 2
    T = mp[0] * tscale
    gn = mp[1]
    ct, ca, ea = mp[2], mp[3], mp[4]
    amax, d1, d2, gmin = mp[5], mp[6], mp[7], mp[8]
    o = 2 * d
    cb = o + 4
    ub = o + 4 + nb
    g = scratch[0, :d]
    bu = np.empty(0)
    fast = d == 1 and tkind != 1  # inlined scalar gradient (call overhead)
    for c in range(nc):
        x = state[c, :d]
        if fast:
            g[0] = grad1(tkind, tparams, state[c, 0])
        else:
            grad_into(tkind, tparams, tmat, tlabels, x, bu, g)
        col = 0
        if gn > 0.0:
            for j in range(d):
                g[j] += gn * noise[c, j]
            col = d
        for j in range(d):
            if not np.isfinite(g[j]):
                return c
        phase = state[c, o + 2]
        step = state[c, o + 3]
        if phase == 2.0:
            mu = mp[20]
            e2 = mp[21] if mp[21] > 0.0 else eta
            for j in range(d):
                v = mu * state[c, d + j] - e2 * g[j]
                state[c, d + j] = v
                state[c, j] += v
            state[c, o + 3] = step + 1.0
            continue
        a = state[c, o]
        va = state[c, o + 1]
        U = _potential(tkind, tparams, tmat, x)
        ga = _g(a, d1, d2, gmin)
        dga = _dg(a, d1, d2, gmin)
        # theta block (C5)
        sd = math.sqrt(2.0 * ct * eta * T)
        for j in range(d):
            v = (1.0 - ct) * state[c, d + j] - eta * ga * g[j] + sd * noise[c, col + j]
            state[c, d + j] = v
            state[c, j] += v
        col += d
        # alpha block (C5) with the bias
        jb = _bin(a, amax, nb)
        bias_kind = int(mp[12])
        if bias_kind == 1:
            ref = state[c, ub + jb] if state[c, cb + jb] > 0.0 else 0.0
            force = dga * (U - ref) if state[c, cb + jb] > 0.0 else dga * U
        elif bias_kind == 2:
            # -dV/dalpha by central differences on the bin grid
            w = 2.0 * amax / nb
            jl = jb - 1 if jb > 0 else jb
            jr = jb + 1 if jb < nb - 1 else jb
            dV = (state[c, ub + jr] - state[c, ub + jl]) / ((jr - jl) * w) if jr > jl else 0.0
            force = dga * U + dV
        else:
            force = dga * U
        if int(mp[9]) == 1:
            ex = abs(a) - d2
            if ex > 0.0:
                force += 2.0 * mp[10] * ex * (1.0 if a > 0 else -1.0)
        va = (1.0 - ca) * va - ea * force + math.sqrt(2.0 * ca * ea * T) * noise[c, col]
        a_new = a + va
        if int(mp[9]) == 0:
            for _ in range(4):
                if a_new > amax:
                    a_new = 2.0 * amax - a_new
                    va = -va
                elif a_new < -amax:
                    a_new = -2.0 * amax - a_new
                    va = -va
                else:
                    break
        # histogram / bias update at alpha_t (C3)
        jm = nb - 1 - jb
        if bias_kind == 2:
            hgt = mp[14]
            sw = mp[15]
            w = 2.0 * amax / nb
            for i in range(nb):
                ai = -amax + (i + 0.5) * w
                add = hgt * math.exp(-0.5 * ((ai - a) / sw) ** 2)
                if mp[13] != 0.0:
                    add += hgt * math.exp(-0.5 * ((ai + a) / sw) ** 2)
                state[c, ub + i] += add
            state[c, cb + jb] += 1.0
            if mp[13] != 0.0 and jm != jb:
                state[c, cb + jm] += 1.0
        else:
            for jj in (jb, jm):
                if jj == jm and (mp[13] == 0.0 or jm == jb):
                    continue
                cnt = state[c, cb + jj] + 1.0
                state[c, cb + jj] = cnt
                om = 1.0 / cnt if mp[16] == 0.0 else (1.0 if cnt == 1.0 else mp[17])
                state[c, ub + jj] += om * (U - state[c, ub + jj])
        state[c, o] = a_new
        state[c, o + 1] = va
        step += 1.0
        state[c, o + 3] = step
        # phase switch (C6)
        L = mp[18]
        if L >= 0.0 and step >= L and (mp[19] == 0.0 or abs(a_new) <= d1):
            state[c, o + 2] = 2.0
            if mp[22] != 0.0:
                for j in range(d):
                    state[c, d + j] = 0.0
    return -1


@njit(cache=True, error_model="numpy")
def new_scratch(state: np.ndarray) -> np.ndarray:
    """Work space of :func:`step_all`: (1, width) float64."""
    return np.empty((1, state.shape[1]))


run_chunk = _loop.make_chunk_loop(__name__, step_all, new_scratch)


# ---------------------------------------------------------------------------
# Registration


def _posnum(name, v, *, open01=False, nonneg=False):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if open01 and not (0 < v < 1):
        raise ValueError(f"{name} must lie in (0, 1), got {v!r}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    if not open01 and not nonneg and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    return float(v)


def _validated(ctx):
    o = ctx.options
    if ctx.target.kind > 3:
        raise ValueError(f"target must be an analytic target for CTLD (U is needed), got {ctx.target.name!r}")
    _posnum("c_theta", o["c_theta"], open01=True)
    _posnum("c_alpha", o["c_alpha"], open01=True)
    _posnum("eta_alpha", o["eta_alpha"])
    amax = _posnum("alpha_max", o["alpha_max"])
    d1 = _posnum("delta1", o["delta1"], nonneg=True)
    d2 = _posnum("delta2", o["delta2"])
    if not (d1 < d2 <= amax or (o["phi"] == "quadratic" and d1 < d2)):
        raise ValueError(f"need delta1 < delta2 <= alpha_max, got delta1={d1!r}, delta2={d2!r}, alpha_max={amax!r}")
    _posnum("g_min", o["g_min"])
    if o["g_min"] > 1:
        raise ValueError(f"g_min must lie in (0, 1], got {o['g_min']!r}")
    if o["phi"] not in _PHI:
        raise ValueError(f"phi must be one of {_PHI}, got {o['phi']!r}")
    _posnum("k_c", o["k_c"])
    if isinstance(o["n_bins"], bool) or not isinstance(o["n_bins"], numbers.Integral) or o["n_bins"] < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {o['n_bins']!r}")
    if o["bias"] not in _BIAS:
        raise ValueError(f"bias must be one of {_BIAS}, got {o['bias']!r}")
    if o["omega"] not in _OMEGA:
        raise ValueError(f"omega must be one of {_OMEGA}, got {o['omega']!r}")
    _posnum("omega_const", o["omega_const"], open01=True)
    _posnum("meta_height", o["meta_height"])
    if o["meta_width"] is not None:
        _posnum("meta_width", o["meta_width"])
    if o["switch_after"] is not None and (isinstance(o["switch_after"], bool) or not isinstance(o["switch_after"], numbers.Integral) or o["switch_after"] < 0):
        raise ValueError(f"switch_after must be None or an integer >= 0, got {o['switch_after']!r}")
    if not (0 <= o["momentum"] < 1):
        raise ValueError(f"momentum must lie in [0, 1), got {o['momentum']!r}")
    if o["eta2"] is not None:
        _posnum("eta2", o["eta2"])
    a0 = o["alpha0"]
    if not (isinstance(a0, numbers.Real) and abs(a0) <= amax):
        raise ValueError(f"alpha0 must lie in [-alpha_max, alpha_max], got {a0!r}")
    return o


def noise_entries(dim: int, ctx: Context) -> list[tuple[str, str, tuple[int, ...]]]:
    """Per chain per step: grad_noise (dim, if > 0), xi (dim), xi_alpha (1); both phases."""
    _validated(ctx)
    return stream_entries("ctld", dim, batch_size=ctx.target.batch_size, grad_noise=ctx.grad_noise)


def _make_params(ctx):
    o = _validated(ctx)
    nb = int(o["n_bins"])
    width = o["meta_width"] if o["meta_width"] is not None else 2.0 * o["alpha_max"] / nb
    return np.array([ctx.temperature, ctx.grad_noise, o["c_theta"], o["c_alpha"], o["eta_alpha"], o["alpha_max"],
                     o["delta1"], o["delta2"], o["g_min"], _PHI.index(o["phi"]), o["k_c"], nb,
                     _BIAS.index(o["bias"]), float(bool(o["mirror"])), o["meta_height"], width,
                     _OMEGA.index(o["omega"]), o["omega_const"],
                     -1.0 if o["switch_after"] is None else float(o["switch_after"]),
                     float(bool(o["switch_wait_band"])), o["momentum"], 0.0 if o["eta2"] is None else o["eta2"],
                     float(bool(o["reset_velocity"]))], dtype=np.float64)


def _init_state(x0, ctx):
    o = _validated(ctx)
    n, d = x0.shape
    nb = int(o["n_bins"])
    s = np.zeros((n, 2 * d + 4 + 2 * nb))
    s[:, :d] = x0
    s[:, 2 * d] = o["alpha0"]
    s[:, 2 * d + 2] = 1.0
    if o["switch_after"] == 0 and not o["switch_wait_band"]:
        s[:, 2 * d + 2] = 2.0
    return s


register_method(MethodSpec(name="ctld", width=lambda d, ctx: 2 * d + 4 + 2 * int(ctx.options["n_bins"]),
                           init_state=_init_state, noise_spec=noise_entries, make_params=_make_params,
                           run_chunk=run_chunk))


def sample(target: str | Target,
           **kw: Any) -> np.ndarray | SampleStats | tuple[np.ndarray | SampleStats, SamplerState]:
    """``refimpl.sample("ctld", target, **kw)`` -- (C1)-(C6) [reconstruction].

    Keywords: those of :func:`refimpl.driver.sample` (n_chains, n_steps,
    step_size = eta, seed, temperature, grad_noise, x0, burn_in, thin, keep,
    return_state, ...) and the options in ``OPTIONS`` (see the module docstring).
    Returns the stored theta's (n_kept, n_chains, dim); with ``return_state=True``
    also the SamplerState whose ``packed`` array :func:`unpack` splits (alpha,
    histogram).  Randomness per step and chain: grad_noise normals (dim, if
    grad_noise > 0), xi (dim normals), xi_alpha (one normal), in both phases.
    A non-finite gradient raises refimpl.driver.NonFiniteGradientError.
    """
    from .driver import sample as _sample

    return _sample("ctld", target, **kw)


# ---------------------------------------------------------------------------
# Replay of the torch default (fast) path from the counter stream

#: The α normal ξ_α of torchport's default path: element 0 of the counter stream at parameter index
#: 2^63 - 1 (no parameter has it: indices count the parameters from 0) and stream "xi", i.e.
#: ``normals(stream_key(seed, step, ALPHA_PARAM_INDEX, ALPHA_STREAM), 1)[0]`` (53-bit uniforms, float64).
ALPHA_PARAM_INDEX = (1 << 63) - 1
ALPHA_STREAM = "xi"

_STATE_KEYS = ("alpha", "alpha_velocity", "phase", "steps", "counts", "ubar")


def _alpha_update(a, va, counts, ubar, U, xa, T, o):
    """The α block of (C5) and the histogram update (C3) at α_t, in Python floats; returns (α_{t+1}, v_α).

    ``counts``/``ubar`` are lists, updated in place; ``o`` the CTLD options.  One implementation for
    ``torchport.optim.CTLD``'s exact path (which calls it) and :func:`replay_ctld_step`."""
    d1, d2, gmin, amax, nb = o["delta1"], o["delta2"], o["g_min"], o["alpha_max"], o["n_bins"]
    dga = ctld_coupling_derivative(a, d1, d2, gmin)
    ca, ea = o["c_alpha"], o["eta_alpha"]
    jb = int(math.floor((a + amax) / (2.0 * amax) * nb))
    jb = 0 if jb < 0 else (nb - 1 if jb >= nb else jb)
    if o["bias"] == "abf":
        force = dga * (U - ubar[jb]) if counts[jb] > 0.0 else dga * U
    elif o["bias"] == "metadynamics":
        w = 2.0 * amax / nb
        jl = jb - 1 if jb > 0 else jb
        jr = jb + 1 if jb < nb - 1 else jb
        dV = (ubar[jr] - ubar[jl]) / ((jr - jl) * w) if jr > jl else 0.0
        force = dga * U + dV
    else:
        force = dga * U
    if o["phi"] == "quadratic":
        ex = abs(a) - d2
        if ex > 0.0:
            force += 2.0 * o["k_c"] * ex * (1.0 if a > 0 else -1.0)
    va = (1.0 - ca) * va - ea * force + math.sqrt(2.0 * ca * ea * T) * xa
    a_new = a + va
    if o["phi"] == "wall":
        for _ in range(4):
            if a_new > amax:
                a_new, va = 2.0 * amax - a_new, -va
            elif a_new < -amax:
                a_new, va = -2.0 * amax - a_new, -va
            else:
                break
    jm = nb - 1 - jb
    if o["bias"] == "metadynamics":
        hgt = o["meta_height"]
        sw = o["meta_width"] if o["meta_width"] is not None else 2.0 * amax / nb
        w = 2.0 * amax / nb
        for i in range(nb):
            ai = -amax + (i + 0.5) * w
            add = hgt * math.exp(-0.5 * ((ai - a) / sw) ** 2)
            if o["mirror"]:
                add += hgt * math.exp(-0.5 * ((ai + a) / sw) ** 2)
            ubar[i] += add
        counts[jb] += 1.0
        if o["mirror"] and jm != jb:
            counts[jm] += 1.0
    else:
        for jj in (jb, jm):
            if jj == jm and (not o["mirror"] or jm == jb):
                continue
            cnt = counts[jj] + 1.0
            counts[jj] = cnt
            om = 1.0 / cnt if o["omega"] == "mean" else (1.0 if cnt == 1.0 else o["omega_const"])
            ubar[jj] += om * (U - ubar[jj])
    return a_new, va


def replay_ctld_step(thetas: Sequence[npt.ArrayLike], velocities: Sequence[npt.ArrayLike | None],
                     grads: Sequence[npt.ArrayLike], potential: float | None, state: Mapping[str, Any], *,
                     seed: int, step: int, lr: float | Sequence[float], temperature: float = 1.0,
                     param_indices: Sequence[int] | None = None, dtype: Literal["float64", "float32"] = "float64",
                     bits: int | None = None, normal_source: Callable[[int, int, type], np.ndarray] | None = None,
                     **options: Any) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """One step of ``torchport.optim.CTLD``'s default (fast) path in NumPy, from the counter stream.

    (C5)/(C3) in phase 1, (C6) in phase 2, the operations of the exact path in the same order
    (:func:`step_all`), with the noise of the fast path (docs/ctld.md, "Two paths"):

    * parameter j: v ← (1−c_θ)v − (η_j g(α))∇Ũ + √(2c_θη_jT)·ξ;  θ ← θ + v, with ξ =
      ``normals(stream_key(seed, step, param_indices[j], "xi"), θ.size)`` (53-bit uniforms for a
      float64 θ, 24-bit for float32, as the torch step draws them in the parameter's dtype);
    * α: v_α ← (1−c_α)v_α − η_α[g'(α)(Ũ − Ū_j(α)) + φ'(α)] + √(2c_αη_αT)·ξ_α; α ← α + v_α (wall),
      with ξ_α = ``normals(stream_key(seed, step, ALPHA_PARAM_INDEX, ALPHA_STREAM), 1)[0]``;
      then the ABF / metadynamics update at α_t (mirror bin as configured);
    * phase 2: v ← μ_m v − η₂∇Ũ; θ ← θ + v (no noise drawn, α and the histogram kept).

    Arguments: ``thetas``, ``velocities`` (None: zeros, as before a parameter's first step) and
    ``grads`` -- one array per parameter that takes the step; ``param_indices`` their indices in
    the optimizer (position over all groups; default 0, 1, ...); ``potential`` Ũ(θ_t) (as the
    optimizer received it, averaged over ranks; may be None in phase 2); ``state`` the CTLD state
    before the step, as ``CTLD.state_dict()["extra_state"]`` (keys alpha, alpha_velocity, phase,
    steps, counts, ubar); ``seed`` the counter seed (``CTLD.seed``) and ``step`` the stream's step
    (``CTLD.num_steps`` before the step); ``lr`` η (one float, or one per parameter: its group's);
    ``temperature`` T; ``options`` the CTLD options (defaults :data:`OPTIONS`).

    ``dtype`` -- the arithmetic of the θ block: ``"float64"`` (default: the float64 step; a float32
    θ's normals from 24-bit uniforms, as the torch step draws them), ``"float32"`` (the float32 fast
    path's :func:`torchport.optim.ctld.ctld_theta_step`: v·f32(1 − c_θ) − g·f32(η·g(α)) +
    z·f32(√(2c_θηT)), θ + v, each operation rounded to float32, z the float32 Box–Muller normals of
    ``refimpl.counter_rng`` from 24-bit uniforms with log/sqrt/cos correctly rounded; phase 2
    v·f32(μ_m) − g·f32(η₂); float32 arrays returned).  The α block and the histogram are float64 in
    both (as the fast path's ``ctld_alpha_step``; docs/ctld.md, "Replay and parity").  ``bits``
    overrides the θ normals' uniform width (a test mutation); ``normal_source(key, n, np_dtype)``, if
    given, supplies the n normals of a stream key in that NumPy dtype instead of the replay's own
    Box–Muller -- θ's in θ's dtype, ξ_α's in float64 (the crosscheck passes torch's own: then the
    replay must equal torch bit for bit, in both dtypes).

    Returns (θ', v', state') as float64 arrays (float32 for ``dtype="float32"``) and a new state
    dict.  Drive a trajectory by feeding each call the previous call's outputs with ``step`` + 1
    (tests/torchport/test_fast_ctld.py).  Parity: bit for bit wherever no normal or exponential
    enters; torch's Box–Muller (log, cos; float32 also sqrt) and metadynamics exp may differ from
    libm / the correctly rounded value by a few ulp (docs/ctld.md gives the bound).
    """
    from .counter_rng import _normals_f32, normals, stream_key

    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown CTLD options {sorted(unknown)}; known: {sorted(OPTIONS)}")
    o = dict(OPTIONS, **options)
    if not isinstance(state, Mapping) or set(state) != set(_STATE_KEYS):
        got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"state must be a dict with keys {sorted(_STATE_KEYS)} (CTLD.state_dict()['extra_state']), "
                         f"got {got}")
    n = len(thetas)
    if len(velocities) != n or len(grads) != n:
        raise ValueError(f"thetas, velocities and grads must have one entry per parameter, got lengths {n}, "
                         f"{len(velocities)}, {len(grads)}")
    indices = list(range(n)) if param_indices is None else [int(i) for i in param_indices]
    if len(indices) != n:
        raise ValueError(f"param_indices must have {n} entries, got {len(indices)}")
    lrs = [float(lr)] * n if isinstance(lr, numbers.Real) else [float(x) for x in lr]
    if len(lrs) != n:
        raise ValueError(f"lr must be a float or one per parameter ({n}), got {len(lrs)} values")
    T = float(temperature)
    st = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in state.items()}
    phase = int(st["phase"])
    if phase == 1 and potential is None:
        raise ValueError("potential is needed in phase 1, got None")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    if bits not in (None, 24, 53):
        raise ValueError(f"bits must be 24, 53 or None, got {bits!r}")
    th2, v2 = [], []
    for th, v, g, i, eta in zip(thetas, velocities, grads, indices, lrs):
        th_in = np.asarray(th)
        f32 = dtype == "float32"
        b = bits if bits is not None else (24 if f32 or th_in.dtype == np.float32 else 53)
        ft = np.float32 if f32 else np.float64
        x = np.asarray(th_in, dtype=ft)
        gg = np.asarray(g, dtype=ft)
        vv = np.zeros_like(x) if v is None else np.asarray(v, dtype=ft)
        if phase == 2:
            e2 = o["eta2"] if o["eta2"] else eta
            vn = vv * ft(o["momentum"]) - gg * ft(e2)
        else:
            ga = ctld_coupling(st["alpha"], o["delta1"], o["delta2"], o["g_min"])
            sd = math.sqrt(2.0 * o["c_theta"] * eta * T)
            key = stream_key(seed, step, i, "xi")
            if normal_source is not None:
                z = np.asarray(normal_source(key, x.size, ft), dtype=ft)
            else:
                z = _normals_f32(key, x.size, bits=b) if f32 else normals(key, x.size, bits=b)
            # ctld_theta_step's order: (v·decay − g·(η·g(α))) + z·sd, the Python floats rounded to the dtype
            vn = vv * ft(1.0 - o["c_theta"]) - gg * ft(eta * ga) + z.reshape(x.shape) * ft(sd)
        th2.append(x + vn)
        v2.append(vn)
    st["steps"] = int(st["steps"]) + 1
    if phase == 2:
        return th2, v2, st
    akey = stream_key(seed, step, ALPHA_PARAM_INDEX, ALPHA_STREAM)
    xa = float((normals(akey, 1) if normal_source is None else normal_source(akey, 1, np.float64))[0])
    counts = [float(c) for c in st["counts"]]
    ubar = [float(u) for u in st["ubar"]]
    a_new, va = _alpha_update(float(st["alpha"]), float(st["alpha_velocity"]), counts, ubar, float(potential), xa,
                              T, o)
    st.update(alpha=a_new, alpha_velocity=va, counts=counts, ubar=ubar)
    L = o["switch_after"]
    if L is not None and st["steps"] >= L and (not o["switch_wait_band"] or abs(a_new) <= o["delta1"]):
        st["phase"] = 2
        if o["reset_velocity"]:
            v2 = [np.zeros_like(v) for v in v2]
    return th2, v2, st
