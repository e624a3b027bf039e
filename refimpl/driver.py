"""The sampler driver: ``refimpl.sample`` and the method registry.

The driver owns everything that is not one update: input validation, the chains,
burn-in, thinning, storage or streaming statistics, the progress bar, error
reporting and save/resume (NumPyro/BlackJAX style: kernels are pure steps; see
STYLE.md and docs/architecture.md "Sampler registry and step kernels").

All chains run in one jitted loop, independent of each other, from one
``numpy.random.Generator`` (PCG64 from ``seed``).  Each step draws the noise
block of :func:`noise_spec` chain by chain and hands it to the family's noise-in
step kernel, so a run from pre-drawn noise (``noise=``, see :func:`draw_noise`)
is bit-identical to the Generator run.
"""

from __future__ import annotations

import importlib
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np
from numba import njit

from refimpl import _loop
from refimpl.formats import KIND_BFP, format_code, parse_format, with_options
from refimpl.schedules import as_schedule
from refimpl.targets import Target, resolve_target

__all__ = [
    "sample",
    "noise_spec",
    "draw_noise",
    "register_method",
    "registered_methods",
    "MethodSpec",
    "Context",
    "SampleStats",
    "SamplerState",
    "NonFiniteGradientError",
]

#: family modules imported (if present) before a method is looked up
FAMILY_MODULES = ("refimpl.sgld", "refimpl.sghmc", "refimpl.qsgld", "refimpl.ctld")

KEEP_MODES = ("all", "last", "stats")


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """Everything a family needs to build a method's state, noise layout and parameters."""

    method: str
    dim: int
    n_chains: int
    temperature: float
    grad_noise: float
    friction: float | None
    inverse_mass: float | None
    fmt: Any
    grad_fmt: Any
    wcode: np.ndarray
    gcode: np.ndarray
    target: Target
    options: dict


@dataclass(frozen=True)
class MethodSpec:
    """Registry entry of one method (docs/architecture.md, "Registry").

    ``needs_fmt``: ``"none"`` (full precision: fmt and grad_fmt must be None) or
    ``"required"`` (fmt must be a format; grad_fmt defaults to fmt, ``"none"``
    gives full-precision gradients).  ``momentum``: friction/inverse_mass accepted.
    ``options``: {name: default} of the method-specific keyword options;
    ``check_options(ctx)`` may raise ValueError for combinations that do not fit.
    ``lp_storage``: x0 is rounded onto the weight grid (Q^d) at init.
    """

    name: str
    family: str
    method_id: int
    width: Callable[[int], int]
    init_state: Callable[[np.ndarray, Context], np.ndarray]
    noise_spec: Callable[[int, Context], list]
    make_params: Callable[[Context], np.ndarray]
    run_chunk: Callable
    needs_fmt: str = "none"
    momentum: bool = False
    options: dict = field(default_factory=dict)
    lp_storage: bool = False


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> None:
    """Add (or replace) a method in the registry; families call this at import."""
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"spec must be a MethodSpec, got {spec!r}")
    _REGISTRY[spec.name] = spec


def _load_families() -> None:
    for mod in FAMILY_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def registered_methods() -> tuple:
    """Names of all registered methods."""
    _load_families()
    return tuple(sorted(_REGISTRY))


def _spec(method) -> MethodSpec:
    _load_families()
    if not isinstance(method, str) or method not in _REGISTRY:
        raise ValueError(f"method must be one of {sorted(_REGISTRY)}, got {method!r}")
    return _REGISTRY[method]


# --------------------------------------------------------------------------------------
# results and errors
# --------------------------------------------------------------------------------------
class SampleStats(NamedTuple):
    """Streaming statistics of ``keep="stats"`` (per coordinate; positions only).

    ``n``: samples per chain; ``mean``/``var`` (dim,): pooled over chains and kept
    steps (var with denominator n·n_chains); ``chain_mean``/``chain_var``
    (n_chains, dim): per-chain Welford moments (var with denominator n), so that
    independent-chain standard errors can be formed; ``hist_edges`` (n_bins + 1,);
    ``hist_counts`` (dim, n_bins) pooled counts; ``underflow``/``overflow`` (dim,);
    ``last`` (n_chains, dim) the final positions.
    """

    n: int
    mean: np.ndarray
    var: np.ndarray
    chain_mean: np.ndarray
    chain_var: np.ndarray
    hist_edges: np.ndarray
    hist_counts: np.ndarray
    underflow: np.ndarray
    overflow: np.ndarray
    last: np.ndarray


@dataclass
class SamplerState:
    """Everything needed to continue a run bit for bit: ``sample(..., resume=state)``.

    ``packed`` (n_chains, width) is the method's packed state (position first),
    ``step`` the index of the next step, ``rng_state`` the Generator's
    ``bit_generator.state`` dict.
    """

    method: str
    step: int
    packed: np.ndarray
    rng_state: dict

    @property
    def position(self) -> np.ndarray:
        """Positions (n_chains, dim) -- a copy."""
        return self.packed[:, : self._dim].copy()

    _dim: int = 0


class NonFiniteGradientError(FloatingPointError):
    """A gradient became NaN or ±inf.  ``step``, ``chain``: where; ``samples``: the
    output collected so far (same type as a normal return, truncated to the completed
    steps); ``state``: a :class:`SamplerState` at the failing step (chains before
    ``chain`` already advanced)."""

    def __init__(self, message, *, step, chain, samples, state):
        super().__init__(message)
        self.step = step
        self.chain = chain
        self.samples = samples
        self.state = state


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _int(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _real(name, value, *, positive=False, nonneg=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def _as_format(name, fmt):
    if isinstance(fmt, str):
        fmt = parse_format(fmt)
    try:
        code = format_code(fmt)
    except ValueError:
        raise ValueError(f"{name} must be None, a format string or a refimpl.formats format, got {fmt!r}") from None
    if int(code[0]) == KIND_BFP and getattr(fmt, "dim", None) is not None:
        raise ValueError(f"{name}: BlockFloatingPoint for a sampler uses one block per chain vector; give dim=None, got {fmt!r}")
    return fmt, code


def _build_context(spec, dim, n_chains, target, fmt, grad_fmt, temperature, grad_noise, friction, inverse_mass, options):
    dim = _int("dim", dim, 1)
    n_chains = _int("n_chains", n_chains, 1)
    temperature = _real("temperature", temperature, nonneg=True)
    grad_noise = _real("grad_noise", grad_noise, nonneg=True)
    tgt = resolve_target(target, dim)
    dim = tgt.dim
    if spec.needs_fmt == "none":
        if fmt is not None and not (isinstance(fmt, str) and fmt.strip().lower() == "none"):
            raise ValueError(f"fmt must be None for the full-precision method {spec.name!r}, got {fmt!r}")
        if grad_fmt is not None and not (isinstance(grad_fmt, str) and grad_fmt.strip().lower() == "none"):
            raise ValueError(f"grad_fmt must be None for the full-precision method {spec.name!r}, got {grad_fmt!r}")
        wf, wcode = _as_format("fmt", None)
        gf, gcode = wf, wcode
    else:
        wf, wcode = _as_format("fmt", fmt)
        if wf is None:
            raise ValueError(f"fmt must be a number format for the low-precision method {spec.name!r}, got {fmt!r}")
        if grad_fmt is None:
            gf, gcode = wf, wcode
        else:
            gf, gcode = _as_format("grad_fmt", grad_fmt)
    if spec.momentum:
        friction = 1.0 if friction is None else _real("friction", friction, positive=True)
        inverse_mass = 1.0 if inverse_mass is None else _real("inverse_mass", inverse_mass, positive=True)
    else:
        if friction is not None:
            raise ValueError(f"friction is only accepted by SGHMC-type methods, got friction={friction!r} for {spec.name!r}")
        if inverse_mass is not None:
            raise ValueError(f"inverse_mass is only accepted by SGHMC-type methods, got inverse_mass={inverse_mass!r} for {spec.name!r}")
    opts = dict(spec.options)
    for key, val in options.items():
        if key not in spec.options:
            raise ValueError(f"unknown option {key!r} for method {spec.name!r} (accepted: {sorted(spec.options)})")
        opts[key] = val
    if opts.get("ties") is not None:
        wcode = with_options(wcode, ties=opts["ties"])
    if opts.get("vc_bfp_published"):
        wcode = with_options(wcode, vc_published=True)
    return Context(spec.name, dim, n_chains, temperature, grad_noise, friction, inverse_mass, wf, gf,
                   np.ascontiguousarray(wcode), np.ascontiguousarray(gcode), tgt, opts)


def _noise_kinds(entries):
    kinds = []
    for _name, kind, shape in entries:
        kinds += [0 if kind == "normal" else 1] * int(np.prod(shape, dtype=np.int64))
    kinds = np.array(kinds, dtype=np.int64)
    return kinds, bool(np.all(kinds == 0))


def _prepare_step(method, family, dim, target, fmt, grad_fmt, temperature, grad_noise, friction, inverse_mass, options):
    """(method_id, mparams, wcode, gcode, target) for the families' public ``step``."""
    spec = _spec(method)
    if spec.family != family:
        raise ValueError(f"method {method!r} belongs to the {spec.family!r} family, not {family!r}")
    if not spec.momentum:
        friction = inverse_mass = None
    ctx = _build_context(spec, dim, 1, target, fmt, grad_fmt, temperature, grad_noise, friction, inverse_mass, options)
    return spec.method_id, spec.make_params(ctx), ctx.wcode, ctx.gcode, ctx.target


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def noise_spec(method, dim=1, *, grad_noise=0.0, target=None, **options):
    """Ordered noise ``[(name, "normal"|"uniform", shape), ...]`` consumed per chain per step.

    ``target`` (a name or Target; default ``"gaussian"``) matters only for data
    targets (minibatch uniforms ``batch_u``); ``grad_noise > 0`` adds the
    ``grad_noise`` normals of ∇Ũ = ∇U + s·ζ.  The layout never depends on the
    formats.  See docs/architecture.md for the table of all methods.
    """
    spec = _spec(method)
    fmt = None if spec.needs_fmt == "none" else "fixed:8:4"
    ctx = _build_context(spec, dim, 1, "gaussian" if target is None else target, fmt, None, 1.0, grad_noise,
                         None, None, options)
    return list(spec.noise_spec(ctx.dim, ctx))


def _generator(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or a numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


@njit(cache=True)
def _draw_noise_into(rng, kinds, allnormal, out):
    for k in range(out.shape[0]):
        _loop.fill_noise(rng, kinds, allnormal, out[k])


def draw_noise(method, n_steps, n_chains, seed, *, dim=1, grad_noise=0.0, target=None, **options):
    """The exact noise a ``sample`` run with this ``seed`` consumes: float64 (n_steps, n_chains, Z).

    Column layout per chain: :func:`noise_spec` entries flattened in order.
    ``sample(..., noise=draw_noise(...))`` reproduces the Generator run bit for bit.
    """
    n_steps = _int("n_steps", n_steps, 1)
    n_chains = _int("n_chains", n_chains, 1)
    kinds, allnormal = _noise_kinds(noise_spec(method, dim, grad_noise=grad_noise, target=target, **options))
    out = np.empty((n_steps, n_chains, kinds.shape[0]))
    _draw_noise_into(_generator(seed), kinds, allnormal, out)
    return out


@njit(cache=True)
def _count_kept(sched, k0, k1, first, thin):
    n = 0
    for k in range(max(k0, first), k1):
        if (k - first) % thin == 0 and _loop.schedule_at(sched, k)[2]:
            n += 1
    return n


def _initial_positions(x0, n_chains, dim):
    if x0 is None:
        return np.zeros((n_chains, dim))
    try:
        x = np.asarray(x0, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"x0 must be numeric, got {x0!r}") from None
    if x.ndim == 0:
        x = np.full((n_chains, dim), float(x))
    elif x.shape == (dim,):
        x = np.broadcast_to(x, (n_chains, dim)).copy()
    elif x.shape != (n_chains, dim):
        raise ValueError(f"x0 must be a scalar, shape ({dim},) or ({n_chains}, {dim}), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x0 must be finite")
    return np.array(x, dtype=np.float64, order="C")


def sample(method, target, *, dim=1, n_chains, n_steps, step_size, seed, fmt=None, grad_fmt=None,
           temperature=1.0, grad_noise=0.0, friction=None, inverse_mass=None, x0=None, burn_in=0, thin=1,
           keep="all", noise=None, progress=None, hist_range=(-5.0, 5.0), hist_bins=100, resume=None,
           return_state=False, **options):
    """Run ``n_chains`` independent chains of ``method`` on ``target``.

    Parameters
    ----------
    method : str
        ``sgld``, ``sgd_lp_f``, ``sgd_lp_l``, ``sgld_lp_f``, ``sgld_lp_l``, ``sgld_vc``
        ((S1)-(S6), :mod:`refimpl.sgld`), ``sghmc``, ``sghmc_lp_f``, ``sghmc_lp_l``,
        ``sghmc_vc`` ((H1)-(H4), :mod:`refimpl.sghmc`), or any registered method.
    target : str or refimpl.targets.Target
        ``"gaussian"`` (standard normal in ``dim``), ``"mixture"``, ``"double_well"``,
        ``"logistic_mnist"`` or a Target object.
    dim, n_chains, n_steps : int
    step_size : float > 0 or a :mod:`refimpl.schedules` schedule (η, the LP-SGLD α).
    seed : int or numpy.random.Generator (PCG64 ``default_rng(seed)`` for an int).
    fmt, grad_fmt : weight/accumulator format Q_W and gradient format Q_G (format
        objects or strings such as ``"fixed:8:3"``); grad_fmt defaults to fmt.
        Low-precision methods need fmt; full-precision ones refuse it.
    temperature : T >= 0 (noise variance 2ηT; SGHMC covariances ×T).
    grad_noise : s >= 0, ∇Ũ = ∇U + s·ζ, ζ ~ N(0, I) fresh per step (§5.8 setting).
    friction, inverse_mass : γ > 0 and u > 0 (SGHMC only; default 1).
    x0 : initial positions (scalar, (dim,) or (n_chains, dim); default 0).  LP-L
        methods round x0 to the nearest grid point.  SGHMC starts at v = 0.
    burn_in, thin : store the state after step k (k = 0..n_steps−1) when
        k >= burn_in and (k − burn_in) % thin == 0 (and k is in a schedule's
        sampling phase), i.e. ``all_states[burn_in::thin]``.
    keep : ``"all"`` -> float64 (n_kept, n_chains, dim); ``"last"`` -> (1, n_chains, dim);
        ``"stats"`` -> :class:`SampleStats` (streaming moments and a histogram on
        ``hist_range`` with ``hist_bins`` bins; no storage, for 10^7+ steps).
    noise : optional pre-drawn noise (n_steps, n_chains, Z) (:func:`draw_noise`);
        replaces the Generator draws (the seed is then unused).
    progress : tqdm bar on/off; ``None``: on for runs of more than 2·10^8 chain-steps.
    resume : a :class:`SamplerState` from ``return_state=True``: continue that run
        bit for bit (x0 must then be None; the schedule continues at its step).
    return_state : also return the final :class:`SamplerState` (``(result, state)``).
    **options : method options, e.g. ``sghmc_position_sign="paper"``,
        ``velocity_rescaling="paper"|"code"``, ``vc_bfp_published=True``, ``ties="even"``.

    Randomness: one Generator; per step, per chain, the entries of
    :func:`noise_spec` in order.  Same seed -> bit-identical output.

    Raises
    ------
    ValueError naming the argument for bad input; :class:`NonFiniteGradientError`
    (a FloatingPointError) naming step and chain when a gradient is NaN/inf, with
    ``err.samples`` holding the output collected so far.
    """
    spec = _spec(method)
    ctx = _build_context(spec, dim, n_chains, target, fmt, grad_fmt, temperature, grad_noise, friction, inverse_mass, options)
    dim, n_chains = ctx.dim, ctx.n_chains
    n_steps = _int("n_steps", n_steps, 1)
    sched = as_schedule(step_size)
    burn_in = _int("burn_in", burn_in, 0)
    thin = _int("thin", thin, 1)
    if keep not in KEEP_MODES:
        raise ValueError(f"keep must be one of {KEEP_MODES}, got {keep!r}")
    entries = spec.noise_spec(dim, ctx)
    kinds, allnormal = _noise_kinds(entries)
    nz = kinds.shape[0]

    # state
    if resume is not None:
        if not isinstance(resume, SamplerState) or resume.method != method:
            raise ValueError(f"resume must be a SamplerState of method {method!r}, got {resume!r}")
        if x0 is not None:
            raise ValueError("x0 must be None when resume is given")
        if resume.packed.shape != (n_chains, spec.width(dim)):
            raise ValueError(f"resume state has shape {resume.packed.shape}, expected {(n_chains, spec.width(dim))}")
        state = np.array(resume.packed, dtype=np.float64, order="C")
        k_start = int(resume.step)
        rng = np.random.Generator(getattr(np.random, resume.rng_state["bit_generator"])())
        rng.bit_generator.state = resume.rng_state
    else:
        state = np.ascontiguousarray(spec.init_state(_initial_positions(x0, n_chains, dim), ctx))
        k_start = 0
        rng = _generator(seed)
    k_end = k_start + n_steps

    if noise is not None:
        noise_in = np.ascontiguousarray(np.asarray(noise, dtype=np.float64))
        if noise_in.shape != (n_steps, n_chains, nz):
            raise ValueError(f"noise must have shape {(n_steps, n_chains, nz)}, got {noise_in.shape}")
    else:
        noise_in = np.zeros((0, n_chains, nz))

    first = k_start + burn_in
    mode = {"all": _loop.MODE_ALL, "last": _loop.MODE_LAST, "stats": _loop.MODE_STATS}[keep]
    rec = np.array([mode, first, thin, 0, dim], dtype=np.int64)
    n_kept = _count_kept(sched.code, k_start, k_end, first, thin) if keep == "all" else 0
    out = np.empty((n_kept, n_chains, dim)) if keep == "all" else np.empty((0, n_chains, dim))
    if keep == "stats":
        lo, hi = (float(v) for v in hist_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"hist_range must be two finite numbers lo < hi, got {hist_range!r}")
        nbins = _int("hist_bins", hist_bins, 1)
        smean = np.zeros((n_chains, dim))
        sm2 = np.zeros((n_chains, dim))
        hist = np.zeros((dim, nbins + 2), dtype=np.int64)
        hparams = np.array([lo, hi, nbins], dtype=np.float64)
    else:
        smean = sm2 = np.zeros((0, 0))
        hist = np.zeros((0, 0), dtype=np.int64)
        hparams = np.array([0.0, 1.0, 1.0])

    mparams = np.ascontiguousarray(spec.make_params(ctx), dtype=np.float64)
    tgt = ctx.target
    args = (mparams, ctx.wcode, ctx.gcode, tgt.kind, tgt.params, tgt.mat, tgt.labels, sched.code,
            rng, kinds, allnormal, noise_in, k_start, rec, out, smean, sm2, hist, hparams)

    total = n_steps * n_chains * max(dim, 1)
    show = (total > 2e8) if progress is None else bool(progress)
    chunk = n_steps
    bar = None
    if show:
        from tqdm.auto import tqdm

        chunk = max(1, min(n_steps, int(2e7 // max(1, n_chains * max(dim, nz)))))
        bar = tqdm(total=n_steps, desc=f"{method}", unit="step", leave=False, disable=None)
    k = k_start
    bad = -1
    try:
        while k < k_end:
            k1 = min(k + chunk, k_end)
            k_stop, bad = spec.run_chunk(spec.method_id, state, k, k1, *args)
            if bar is not None:
                bar.update(k_stop - k)
            k = k_stop
            if bad >= 0:
                break
    finally:
        if bar is not None:
            bar.close()

    final = SamplerState(method, k, state.copy(), rng.bit_generator.state, dim)

    def result():
        if keep == "all":
            return out[: rec[3]]
        if keep == "last":
            return state[:, :dim].copy()[None]
        return _stats(rec[3], smean, sm2, hist, hparams, state[:, :dim].copy())

    if bad >= 0:
        raise NonFiniteGradientError(
            f"non-finite gradient at step {k} in chain {bad} (method {method!r}); "
            f"err.samples holds the {rec[3] if keep != 'last' else 0} stored steps before it",
            step=k, chain=bad, samples=result(), state=final)
    res = result()
    return (res, final) if return_state else res


def _stats(n, smean, sm2, hist, hparams, last):
    lo, hi, nb = hparams[0], hparams[1], int(hparams[2])
    nc = smean.shape[0]
    n = int(n)
    mean = smean.mean(axis=0)
    if n > 0:
        chain_var = sm2 / n
        var = (sm2.sum(axis=0) + n * ((smean - mean) ** 2).sum(axis=0)) / (n * nc)
    else:
        chain_var = np.full_like(sm2, np.nan)
        var = np.full(smean.shape[1], np.nan)
    return SampleStats(n, mean, var, smean.copy(), chain_var, np.linspace(lo, hi, nb + 1),
                       hist[:, 1:-1].copy(), hist[:, 0].copy(), hist[:, -1].copy(), last)
