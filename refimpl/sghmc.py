"""SGHMC family: the exponential integrator and its low-precision variants (ALGORITHMS.md §3.8-§3.10).

Dynamics dv = −γv dt − u∇U(x) dt + √(2γuT) dB, dx = v dt (LP-SGHMC TMLR eq. 10),
stationary law ∝ exp(−U(x)/T − ‖v‖²/(2uT)).  Per step, with a = e^{−γη} (H0):

    c_v = u(1 − a)/γ,  c_xv = (1 − a)/γ,  c_xg = u(γη + a − 1)/γ²,
    Σ_v = uT(1 − a²),  Σ_x = uT(2γη + 4a − a² − 3)/γ²,  Σ_xv = uT(1 − a)²/γ.

==========  ==  ==============================================================================
name        id  update (g = gradient, s_x = position sign, (ξ^x, ξ^v) ~ N(0, [[Σ_x,Σ_xv],[Σ_xv,Σ_v]]))
==========  ==  ==============================================================================
sghmc       0   (H1) v' = a v − c_v g + ξ^v;  x' = x + c_xv v + s_x c_xg g + ξ^x,  g = ∇Ũ(x)
sghmc_lp_f  1   (H2) as (H1) with g = Q_G(∇Ũ(Q_W(x))); x, v full precision   [TMLR eq. 5]
sghmc_lp_l  2   (H3) v' = Q_W(a v − c_v g + ξ^v); x' = Q_W(x + c_xv v + s_x c_xg g + ξ^x),
                     g = Q_G(∇Ũ(x)), correlated ξ pair, old v                  [TMLR eq. 6]
sghmc_vc    3   (H4) v' = Q^vc(a v − c_v g, Σ_v); x' = Q^vc(x + c_xv v + s_x c_xg g, Σ_x),
                     two independent Q^vc draws: Σ_xv is dropped as published [TMLR eq. 8]
==========  ==  ==============================================================================

Sign (§3.8, §7.3 item 1): the exact integration of the SDE with the gradient frozen
gives s_x = −1 (Cheng et al. 2018), the default; ``position_sign="paper"``
gives the published s_x = +1 (TMLR eqs. 3, 5, 6, 8, Alg. 1 and the released code).
The correlated noise is drawn as in the code's ``brown``: ξ^v = √Σ_v z₁,
ξ^x = (Σ_xv/Σ_v)ξ^v + √(Σ_x − Σ_xv²/Σ_v) z₂.

Velocity rescaling for LP-L (§3.10, fixed point only): ``velocity_rescaling="paper"``
(H5): S_v = ‖μ_v‖_∞/Ū with μ_v = a v − c_v g and Ū the largest representable
value; the stored velocity is Q_W((μ_v + ξ^v)/S_v) (naive) or Q^vc(μ_v/S_v, Σ_v/S_v²)
(VC) and the next step uses stored·S_v.  ``velocity_rescaling="code"``: the
released code's S_v = min(1, ‖μ_v‖_∞/(c·Ū)), c = ``velocity_rescaling_constant``
(comeusr/Low-precisionSGHMC bnn/optim.py ``update_vel_scaling``, c = 1 by default).
S_v = 0 (μ_v = 0) is replaced by 1.  The position is never rescaled.

Momentum resampling (``resample_momentum_every=K``, all four methods; 0 = never, the default): before
step k, when k ≡ 0 (mod K), the velocity is replaced by a fresh draw v = √(uT) z, z ~ N(0, I) the step's
``v_refresh`` stream -- the velocity marginal N(0, uT·I) of the stationary law, as BlackJAX's ``sghmc``
draws a fresh momentum before each run of ``num_integration_steps`` steps.  The fresh v enters the step's
full-precision arithmetic (as ξ^v does) and is not rounded on its own; the velocity the step stores is
rounded as always.  ``v_refresh`` is drawn at every step when K > 0 (the noise layout does not depend on
k), and not at all when K = 0, so every default run keeps its bits (docs/sghmc.md).

Packed state per chain: ``[x (dim), stored v (dim), S_v]`` and, when K > 0, the index k of the next step
(a float64 counter: resume and replays continue it); the velocity is stored·S_v.

Departures from the published code: the default sign (above); float64 arithmetic
and explicit Generators; the consistent (H0) covariances in VC (the deep-learning
code's η/N-inside-the-exponential quirk, §3.11 / §7.3 item 4, is the flag
``vc_sigma_datasize_quirk=N``); the velocity uses the same
format as the position (the code's VC widens the velocity format by 2 bits).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from refimpl import _loop
from refimpl._checks import check_finite_array, check_real
from refimpl._qkernels import nearest_into, vc_into
from refimpl.formats import Format
from refimpl.formulas import SGHMC_MIN_FRICTION, sghmc_coefficients, sghmc_velocity_sd
from refimpl.methods import methods_of_family, stream_entries
from refimpl.registry import MethodSpec, prepare_step, register_method, step_args
from refimpl.slots import FIXED_HI, KIND, KIND_FIXED
from refimpl.targets import Target

__all__ = ["SGHMCState", "METHODS", "init", "step", "step_all", "run_chunk", "noise_entries", "coefficients"]

METHODS = tuple(m.name for m in methods_of_family("sghmc"))  # the rows of refimpl.methods, in method_id order
SGHMC, SGHMC_LP_F, SGHMC_LP_L, SGHMC_VC = range(4)

#: mparams layout
P_T, P_S, P_NB, P_GAMMA, P_U, P_SIGN, P_RESCALE, P_RESCALE_C, P_UBAR, P_QUIRK_N, P_RESAMPLE = range(11)
RESCALE_NONE, RESCALE_PAPER, RESCALE_CODE = 0, 1, 2


class SGHMCState(NamedTuple):
    """SGHMC chains: ``position``, ``velocity`` (the stored value) float64 (n_chains, dim),
    ``velocity_scale`` S_v float64 (n_chains,); the velocity is velocity·velocity_scale."""

    position: np.ndarray
    velocity: np.ndarray
    velocity_scale: np.ndarray


def coefficients(step_size: float, friction: float, inverse_mass: float, temperature: float = 1.0) -> dict:
    """The (H0) coefficients (covariances multiplied by T) as a dict of floats.

    ``step_size``, ``friction``, ``inverse_mass`` > 0 and ``temperature`` >= 0, finite.
    """
    args = (check_real("step_size", step_size, lo=0.0, lo_open=True),
            check_real("friction", friction, lo=0.0, lo_open=True),
            check_real("inverse_mass", inverse_mass, lo=0.0, lo_open=True),
            check_real("temperature", temperature, lo=0.0))
    return dict(zip(("a", "c_v", "c_xv", "c_xg", "sigma_v", "sigma_x", "sigma_xv"), _coef(*args)))


#: (H0): a, c_v, c_xv, c_xg, TΣ_v, TΣ_x, TΣ_xv -- the one definition in refimpl.formulas, jitted
_coef = njit(cache=True, error_model="numpy")(sghmc_coefficients)
#: √(uT), the velocity's stationary standard deviation (momentum resampling) -- refimpl.formulas, jitted
_velocity_sd = njit(cache=True, error_model="numpy")(sghmc_velocity_sd)


def noise_entries(method_id: int, dim: int, grad_noise: float, batch_size: int,
                  resample_momentum: bool = False) -> list[tuple[str, str, tuple[int, ...]]]:
    """Ordered noise entries ``(name, kind, shape)`` of one chain-step: the method's streams in
    :mod:`refimpl.methods` (docs/architecture.md); ``v_refresh`` only with ``resample_momentum``."""
    if isinstance(method_id, (bool, np.bool_)) or not isinstance(method_id, numbers.Integral) \
            or not 0 <= method_id < len(METHODS):
        raise ValueError(f"method_id must be an integer in [0, {len(METHODS) - 1}] ({METHODS}), got {method_id!r}")
    entries = stream_entries(METHODS[method_id], dim, batch_size=batch_size, grad_noise=grad_noise)
    return entries if resample_momentum else [e for e in entries if e[0] != "v_refresh"]


@njit(cache=True, error_model="numpy")
def step_all(method: int, state: np.ndarray, noise: np.ndarray, eta: float, tscale: float, mparams: np.ndarray,
             wcode: np.ndarray, gcode: np.ndarray, tkind: int, tparams: np.ndarray, tmat: np.ndarray,
             tlabels: np.ndarray, scratch: np.ndarray) -> int:
    """Advance every chain by one step of (H1)-(H4) from the noise block ``noise``.

    ``state`` (n_chains, 2·dim + 1) float64 = [x, stored v, S_v] (+ the step counter k when
    momentum resampling is on: (n_chains, 2·dim + 2)), updated in place; ``noise`` (n_chains, Z)
    in the layout of :func:`noise_entries` (``v_refresh`` last, when resampling is on);
    ``mparams`` = [T, grad_noise, batch_size, γ, u, s_x, rescale mode, c, Ū, quirk N, K];
    before the step, when K > 0 and k ≡ 0 (mod K), the old velocity is replaced by √(uT)·v_refresh.
    ``scratch`` (8, n_chains, dim).  Returns −1, or the first chain with a
    non-finite gradient (then no chain is updated in this step).  No randomness
    is drawn here.
    """
    nc = state.shape[0]
    d = (state.shape[1] - 1) // 2
    temp = mparams[P_T] * tscale
    s = mparams[P_S]
    nb = int(mparams[P_NB])
    sx = mparams[P_SIGN]
    rescale = int(mparams[P_RESCALE])
    a, c_v, c_xv, c_xg, sig_v, sig_x, sig_xv = _coef(eta, mparams[P_GAMMA], mparams[P_U], temp)
    sv_sd = math.sqrt(sig_v)
    corr = sig_xv / sig_v if sig_v > 0.0 else 0.0
    sx_sd = math.sqrt(max(sig_x - sig_xv * corr, 0.0))
    G, X, MUV, MUX = scratch[0], scratch[1], scratch[2], scratch[3]
    U1, U2, U3 = scratch[4], scratch[5], scratch[6]
    every = int(mparams[P_RESAMPLE])
    refresh = False
    if every > 0:
        refresh = int(state[0, 2 * d + 1]) % every == 0
    vsd = _velocity_sd(mparams[P_U], temp)
    zr = noise.shape[1] - d  # the v_refresh columns (the last stream)
    for c in range(nc):
        for j in range(d):
            X[c, j] = state[c, j]
    bad, off = _loop.lp_gradients(method == SGHMC_LP_F, method != SGHMC, X, noise, nb, s, wcode, gcode,
                                  tkind, tparams, tmat, tlabels, MUX, U1, G)
    if bad >= 0:
        return bad
    # deterministic parts (old v = stored·S_v, or the fresh √(uT)·z of momentum resampling)
    for c in range(nc):
        S = state[c, 2 * d]
        vmax = 0.0
        for j in range(d):
            v = vsd * noise[c, zr + j] if refresh else state[c, d + j] * S
            MUV[c, j] = a * v - c_v * G[c, j]
            MUX[c, j] = X[c, j] + c_xv * v + sx * c_xg * G[c, j]
            if abs(MUV[c, j]) > vmax:
                vmax = abs(MUV[c, j])
        U3[c, 0] = _scale(rescale, vmax, mparams)  # S_v of this step (column 0 of U3)
    if method != SGHMC_VC:
        for c in range(nc):
            for j in range(d):
                xiv = sv_sd * noise[c, off + j]
                MUV[c, j] += xiv
                MUX[c, j] += corr * xiv + sx_sd * noise[c, off + d + j]
        off += 2 * d
        if method != SGHMC_LP_L:
            for c in range(nc):
                for j in range(d):
                    state[c, j] = MUX[c, j]
                    state[c, d + j] = MUV[c, j]
            _count_step(state, d, every)
            return -1
        for c in range(nc):
            S = U3[c, 0]
            state[c, 2 * d] = S
            for j in range(d):
                MUV[c, j] /= S
        _loop.gather(noise, off, U1)
        _loop.stochastic_rows(MUV, U1, MUV, wcode)
        _loop.gather(noise, off + d, U1)
        _loop.stochastic_rows(MUX, U1, MUX, wcode)
    else:  # VC (H4): two independent Q^vc calls, Sigma_xv dropped as published
        if mparams[P_QUIRK_N] > 0.0:  # published deep-learning VC: η/N inside the exponentials (§3.11, §7.3 item 4)
            sig_v, sig_x = _vc_quirk_sigmas(eta, mparams[P_GAMMA], mparams[P_U], temp, mparams[P_QUIRK_N])
        for c in range(nc):
            S = U3[c, 0]
            state[c, 2 * d] = S
            for j in range(d):
                MUV[c, j] /= S
        if rescale == RESCALE_NONE:
            _loop.gather(noise, off, X)
            _loop.gather(noise, off + d, U1)
            _loop.gather(noise, off + 2 * d, U2)
            _loop.vc_rows(MUV, sig_v, X, U1, U2, MUV, wcode)
        else:  # per-chain variance Σ_v/S_v²
            for c in range(nc):
                S = state[c, 2 * d]
                vc_into(MUV[c], sig_v / (S * S), noise[c, off:off + d], noise[c, off + d:off + 2 * d],
                        noise[c, off + 2 * d:off + 3 * d], MUV[c], wcode)
        off += 3 * d
        _loop.gather(noise, off, X)
        _loop.gather(noise, off + d, U1)
        _loop.gather(noise, off + 2 * d, U2)
        _loop.vc_rows(MUX, sig_x, X, U1, U2, MUX, wcode)
    for c in range(nc):
        for j in range(d):
            state[c, j] = MUX[c, j]
            state[c, d + j] = MUV[c, j]
    _count_step(state, d, every)
    return -1


@njit(cache=True, error_model="numpy", inline="always")
def _count_step(state, d, every):
    """k ← k + 1 in the step-counter column (present only when momentum resampling is on)."""
    if every > 0:
        for c in range(state.shape[0]):
            state[c, 2 * d + 1] += 1.0


@njit(cache=True, error_model="numpy")
def _vc_quirk_sigmas(eta, gamma, u, temp, n):
    """Σ_v, Σ_x of the released deep-learning VC code (comeusr/Low-precisionSGHMC bnn/optim.py, ``hmc2``):
    u(1 − e^{−2γη/N})T and (u/γ²)(2γη/N + 4e^{−γη/N} − e^{−2γη/N} − 3)T, inconsistent with its ``brown()``."""
    h = gamma * eta / n
    return u * temp * (1.0 - math.exp(-2.0 * h)), (u / (gamma * gamma)) * (2.0 * h + 4.0 * math.exp(-h) - math.exp(-2.0 * h) - 3.0) * temp


@njit(cache=True, error_model="numpy", inline="always")
def _scale(rescale, vmax, mparams):
    """S_v of (H5) ("paper") or of the released code ("code"); 1 when off or when μ_v = 0."""
    if rescale == RESCALE_PAPER:
        sv = vmax / mparams[P_UBAR]
    elif rescale == RESCALE_CODE:
        sv = min(1.0, vmax / (mparams[P_RESCALE_C] * mparams[P_UBAR]))
    else:
        return 1.0
    return sv if sv > 0.0 else 1.0


@njit(cache=True, error_model="numpy")
def new_scratch(state: np.ndarray) -> np.ndarray:
    """Work space of :func:`step_all`: (8, n_chains, dim) float64."""
    return np.empty((8, state.shape[0], (state.shape[1] - 1) // 2))


run_chunk = _loop.make_chunk_loop(__name__, step_all, new_scratch)


def init(position: npt.ArrayLike, velocity: npt.ArrayLike | None = None) -> SGHMCState:
    """SGHMC state from positions (and velocities, default 0), ``(dim,)`` or ``(n_chains, dim)``."""
    x = np.array(check_finite_array("position", position), dtype=np.float64, ndmin=2)
    v = np.zeros_like(x) if velocity is None else np.array(check_finite_array("velocity", velocity), dtype=np.float64,
                                                           ndmin=2)
    if v.shape != x.shape:
        raise ValueError(f"velocity must have the shape of position {x.shape}, got {v.shape}")
    return SGHMCState(np.ascontiguousarray(x), np.ascontiguousarray(v), np.ones(x.shape[0]))


def pack(state: SGHMCState, step_index: int | None = None) -> np.ndarray:
    """Packed driver state (n_chains, 2·dim + 1) from an :class:`SGHMCState`; with ``step_index`` (momentum
    resampling on) the counter column k is appended: (n_chains, 2·dim + 2)."""
    cols = [state.position, state.velocity, state.velocity_scale[:, None]]
    if step_index is not None:
        cols.append(np.full((state.position.shape[0], 1), float(step_index)))
    return np.ascontiguousarray(np.concatenate(cols, axis=1))


def unpack(packed: np.ndarray) -> SGHMCState:
    """:class:`SGHMCState` (copies) from the packed driver state (a step-counter column is dropped)."""
    d = (packed.shape[1] - 1) // 2
    return SGHMCState(packed[:, :d].copy(), packed[:, d:2 * d].copy(), packed[:, 2 * d].copy())


def step(state: SGHMCState, noise: npt.ArrayLike, *, method: str, step_size: float, target: str | Target,
         fmt: Format | str | None = None, grad_fmt: Format | str | None = "same",
         temperature: float = 1.0, grad_noise: float = 0.0, friction: float = 1.0, inverse_mass: float = 1.0,
         step_index: int = 0, **options: Any) -> SGHMCState:
    """One pure step of ``method`` from pre-drawn ``noise`` (n_chains, Z) -> new state.

    Layout of ``noise``: ``refimpl.noise_spec(method, dim, ...)``.  Options as for
    ``refimpl.sample`` (``position_sign``, ``velocity_rescaling``, ``resample_momentum_every``, ...).
    ``step_index``: the index k of this step (with ``resample_momentum_every=K > 0`` the velocity is
    resampled first when k ≡ 0 (mod K)).  Raises ``FloatingPointError`` if a gradient is not finite.
    """
    d = state.position.shape[1]
    mid, mparams, wcode, gcode, tgt = prepare_step(method, "sghmc", d, target, fmt, grad_fmt, temperature, grad_noise, friction, inverse_mass, options)
    step_index = _check_resample_every("step_index", step_index)
    packed = pack(state, step_index if mparams[P_RESAMPLE] > 0 else None)
    step_size, noise = step_args(method, step_size, noise, packed.shape[0], d, tgt, grad_noise, options)
    bad = step_all(mid, packed, noise, step_size, 1.0, mparams, wcode, gcode, tgt.kind, tgt.params, tgt.mat, tgt.labels, new_scratch(packed))
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient in chain {bad}")
    return unpack(packed)


# --------------------------------------------------------------------------------------
# registration (docs/architecture.md, "Registry")
# --------------------------------------------------------------------------------------
_LP_STORAGE = {m.name for m in methods_of_family("sghmc") if m.lp_storage}
_SIGNS = {"correct": -1.0, "paper": 1.0, -1: -1.0, 1: 1.0}
_RESCALE = {None: RESCALE_NONE, "none": RESCALE_NONE, False: RESCALE_NONE, "paper": RESCALE_PAPER, "code": RESCALE_CODE}


def _check_resample_every(name, value):
    """An int >= 0 (bool and non-integral numbers refused): ValueError naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        never = " (0 = never)" if name == "resample_momentum_every" else ""
        raise ValueError(f"{name} must be an integer >= 0{never}, got {value!r}")
    return int(value)


def _width(d, ctx):
    every = _check_resample_every("resample_momentum_every", ctx.options.get("resample_momentum_every", 0))
    return 2 * d + 1 + (1 if every > 0 else 0)


def _init_state(x0, ctx):
    n, d = x0.shape
    packed = np.zeros((n, _width(d, ctx)))  # the counter column (resampling on) starts at k = 0
    packed[:, :d] = x0
    packed[:, 2 * d] = 1.0
    if ctx.method in _LP_STORAGE:
        for c in range(n):
            row = np.ascontiguousarray(packed[c, :d])
            nearest_into(row, row, ctx.wcode)
            packed[c, :d] = row
    return packed


def _make_params(ctx):
    opts = ctx.options
    if not ctx.friction >= SGHMC_MIN_FRICTION:
        raise ValueError(f"friction must be >= {SGHMC_MIN_FRICTION:.3g} (2**-511: below it friction**2 is not a "
                         "normal float64 and the (H0) coefficients c_xg, Sigma_x, which divide by it, are NaN or "
                         f"lose all precision), got friction={ctx.friction!r}")
    every = _check_resample_every("resample_momentum_every", opts.get("resample_momentum_every", 0))
    sign = opts["position_sign"]
    if sign not in _SIGNS or isinstance(sign, bool):
        raise ValueError(f"position_sign must be 'correct' (s_x = -1) or 'paper' (s_x = +1), got {sign!r}")
    resc = opts.get("velocity_rescaling", None)
    if resc not in _RESCALE or resc is True:
        raise ValueError(f"velocity_rescaling must be None, 'paper' or 'code', got {resc!r}")
    mode = _RESCALE[resc]
    ubar = 1.0
    if mode != RESCALE_NONE:
        kind = int(ctx.wcode[KIND])
        if kind != KIND_FIXED:
            raise ValueError(f"velocity_rescaling needs a FixedPoint fmt (Ū = largest representable value), got {ctx.fmt!r}")
        ubar = float(ctx.wcode[FIXED_HI])
    c = opts.get("velocity_rescaling_constant", 1.0)
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
        raise ValueError(f"velocity_rescaling_constant must be a finite number > 0, got {c!r}")
    quirk = opts.get("vc_sigma_datasize_quirk", None)
    if quirk is not None and (isinstance(quirk, bool) or not isinstance(quirk, (int, float)) or not quirk > 0):
        raise ValueError(f"vc_sigma_datasize_quirk must be None or a dataset size N > 0, got {quirk!r}")
    return np.array([ctx.temperature, ctx.grad_noise, ctx.target.batch_size, ctx.friction, ctx.inverse_mass,
                     _SIGNS[sign], mode, float(c), ubar, 0.0 if quirk is None else float(quirk), float(every)],
                    dtype=np.float64)


def _noise_spec(dim, ctx):
    entries = stream_entries(ctx.method, dim, batch_size=ctx.target.batch_size, grad_noise=ctx.grad_noise)
    every = _check_resample_every("resample_momentum_every", ctx.options.get("resample_momentum_every", 0))
    return entries if every > 0 else [e for e in entries if e[0] != "v_refresh"]


for _name in METHODS:
    register_method(MethodSpec(name=_name, width=_width, init_state=_init_state,
                               noise_spec=_noise_spec, make_params=_make_params, run_chunk=run_chunk))
