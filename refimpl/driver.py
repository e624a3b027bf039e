"""The sampler driver: ``refimpl.sample``, ``noise_spec`` and ``draw_noise``.

The driver owns everything that is not one update: input validation, the chains,
burn-in, thinning, storage or streaming statistics, the progress bar, error and
interrupt handling and save/resume (NumPyro/BlackJAX style: kernels are pure
steps; see STYLE.md and docs/architecture.md "Sampler registry and step kernels").
It finds a method through :mod:`refimpl.registry` (re-exported here:
``register_method``, ``registered_methods``, ``MethodSpec``, ``Context``) and
imports no family itself.

All chains run in one jitted loop, independent of each other, from one
``numpy.random.Generator`` (PCG64 from ``seed``).  Each step draws the noise
block of :func:`noise_spec` chain by chain and hands it to the family's noise-in
step kernel, so a run from pre-drawn noise (``noise=``, see :func:`draw_noise`)
is bit-identical to the Generator run.
"""

from __future__ import annotations

import math
import numbers
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from refimpl import _loop
from refimpl.formats import Format
from refimpl.registry import (
    GRAD_SAME,
    Context,
    MethodSpec,
    build_context,
    check_int,
    lookup,
    register_method,
    registered_methods,
)
from refimpl.schedules import Schedule, as_schedule
from refimpl.targets import Target

__all__ = [
    "MAX_ELEMENT_STEPS",
    "Context",
    "MethodSpec",
    "NonFiniteGradientError",
    "SampleStats",
    "SamplerState",
    "SamplingInterrupted",
    "draw_noise",
    "noise_spec",
    "register_method",
    "registered_methods",
    "sample",
]

KEEP_MODES = ("all", "last", "stats")

#: largest n_steps·n_chains·dim one call accepts (about a day of compute at 10^10 element-steps/s);
#: longer runs are split into calls continued with ``resume=``
MAX_ELEMENT_STEPS = 10**15

#: wall time one jitted chunk aims at: the bound on how long an interrupt waits for the loop
CHUNK_SECONDS = 0.25
#: size of the first chunk (chain-steps × max(dim, noise entries)); later chunks adapt to CHUNK_SECONDS
FIRST_CHUNK_WORK = 100_000

_spec = lookup


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


class SamplingInterrupted(KeyboardInterrupt):
    """``sample`` was interrupted (SIGINT / Ctrl-C, or a KeyboardInterrupt): nothing is lost.

    ``samples``: the output collected up to the interrupt (the type of a normal
    return, truncated to the completed steps); ``state``: a :class:`SamplerState`
    after the last completed step -- ``sample(..., resume=err.state, n_steps=the
    rest)`` continues the run bit for bit; ``step``: the number of steps completed
    in this call.  A subclass of KeyboardInterrupt, so an uncaught interrupt still
    ends the program as Ctrl-C does.
    """

    def __init__(self, message: str, *, step: int, samples: np.ndarray | SampleStats | None,
                 state: SamplerState | None) -> None:
        super().__init__(message)
        self.step = step
        self.samples = samples
        self.state = state


class NonFiniteGradientError(FloatingPointError):
    """A gradient became NaN or ±inf.  ``step``, ``chain``: where; ``samples``: the
    output collected so far (same type as a normal return, truncated to the completed
    steps); ``state``: a :class:`SamplerState` at the failing step (chains before
    ``chain`` already advanced)."""

    def __init__(self, message: str, *, step: int, chain: int, samples: np.ndarray | SampleStats | None,
                 state: SamplerState | None) -> None:
        super().__init__(message)
        self.step = step
        self.chain = chain
        self.samples = samples
        self.state = state


_int = check_int


def _noise_kinds(entries):
    kinds = []
    for _name, kind, shape in entries:
        kinds += [0 if kind == "normal" else 1] * int(np.prod(shape, dtype=np.int64))
    kinds = np.array(kinds, dtype=np.int64)
    return kinds, bool(np.all(kinds == 0))


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def noise_spec(method: str, dim: int = 1, *, grad_noise: float = 0.0, target: str | Target | None = None,
               **options: Any) -> list[tuple[str, str, tuple[int, ...]]]:
    """Ordered noise ``[(name, "normal"|"uniform", shape), ...]`` consumed per chain per step.

    ``target`` (a name or Target; default ``"gaussian"``) matters only for data
    targets (minibatch uniforms ``batch_u``); ``grad_noise > 0`` adds the
    ``grad_noise`` normals of ∇Ũ = ∇U + s·ζ.  The layout never depends on the
    formats.  See docs/architecture.md for the table of all methods.
    """
    spec = _spec(method)
    fmt = None if spec.needs_fmt == "none" else "fixed:8:4"
    ctx = build_context(spec, dim, 1, "gaussian" if target is None else target, fmt, GRAD_SAME, 1.0, grad_noise,
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


def draw_noise(method: str, n_steps: int, n_chains: int, seed: int | np.random.Generator, *, dim: int = 1,
               grad_noise: float = 0.0, target: str | Target | None = None, **options: Any) -> np.ndarray:
    """The exact noise a ``sample`` run with this ``seed`` consumes: float64 (n_steps, n_chains, Z).

    Column layout per chain: :func:`noise_spec` entries flattened in order.
    ``sample(..., noise=draw_noise(...))`` reproduces the Generator run bit for bit.
    """
    n_steps = _int("n_steps", n_steps, 1)
    n_chains = _int("n_chains", n_chains, 1)
    kinds, allnormal = _noise_kinds(noise_spec(method, dim, grad_noise=grad_noise, target=target, **options))
    need, mem = 8 * n_steps * n_chains * kinds.shape[0], _physical_memory()
    if mem is not None and need > mem:
        raise ValueError(f"n_steps={n_steps} x n_chains={n_chains} x {kinds.shape[0]} noise entries need "
                         f"{need / 2**30:.3g} GiB, more than this machine's {mem / 2**30:.3g} GiB of memory; "
                         "draw the noise in pieces")
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
        raise ValueError(f"x0 must be finite, got {float(x[~np.isfinite(x)][0])!r} among its values")
    return np.array(x, dtype=np.float64, order="C")


def sample(method: str, target: str | Target, *, dim: int = 1, n_chains: int, n_steps: int,
           step_size: float | Schedule, seed: int | np.random.Generator, fmt: Format | str | None = None,
           grad_fmt: Format | str | None = GRAD_SAME, temperature: float = 1.0, grad_noise: float = 0.0,
           friction: float | None = None, inverse_mass: float | None = None, x0: npt.ArrayLike | None = None,
           burn_in: int = 0, thin: int = 1, keep: Literal["all", "last", "stats"] = "all",
           noise: np.ndarray | None = None, progress: bool | None = None,
           hist_range: tuple[float, float] = (-5.0, 5.0), hist_bins: int = 100, resume: SamplerState | None = None,
           return_state: bool = False,
           **options: Any) -> np.ndarray | SampleStats | tuple[np.ndarray | SampleStats, SamplerState]:
    """Run ``n_chains`` independent chains of ``method`` on ``target``.

    Parameters
    ----------
    method : str
        ``sgld``, ``sgd_lp_f``, ``sgd_lp_l``, ``sgld_lp_f``, ``sgld_lp_l``, ``sgld_vc``
        ((S1)-(S6), :mod:`refimpl.sgld`), ``sghmc``, ``sghmc_lp_f``, ``sghmc_lp_l``,
        ``sghmc_vc`` ((H1)-(H4), :mod:`refimpl.sghmc`), ``qsgld`` ((QS1)-(QS5)),
        ``ctld`` ((C1)-(C6)): the rows of :mod:`refimpl.methods`.
    target : str or refimpl.targets.Target
        ``"gaussian"`` (standard normal in ``dim``), ``"mixture"``, ``"double_well"``,
        ``"logistic_mnist"`` or a Target object.
    dim, n_chains, n_steps : int
    step_size : float > 0 or a :mod:`refimpl.schedules` schedule (η, the LP-SGLD α).
    seed : int or numpy.random.Generator (PCG64 ``default_rng(seed)`` for an int).
    fmt, grad_fmt : weight/accumulator format Q_W and gradient format Q_G (format
        objects or strings such as ``"fixed:8:3"``).  ``grad_fmt="same"`` (the
        default, also torchport's) quantizes gradients onto fmt, as both papers do;
        ``grad_fmt=None`` (or ``"none"``) keeps full-precision gradients.
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
        The loop runs in jitted chunks of about ``CHUNK_SECONDS`` each (chunking never
        changes the bits).
    resume : a :class:`SamplerState` from ``return_state=True``: continue that run
        bit for bit (x0 must then be None; the schedule continues at its step).
    return_state : also return the final :class:`SamplerState` (``(result, state)``).
    **options : method options (names and defaults: the method's row of
        :mod:`refimpl.methods`), e.g. ``position_sign="paper"``,
        ``velocity_rescaling="paper"|"code"``, ``vc_bfp_published=True``, ``ties="even"``.

    Notes
    -----
    Randomness: one Generator; per step, per chain, the entries of
    :func:`noise_spec` in order.  Same seed -> bit-identical output.

    Sizes are checked before anything runs: ``n_steps·n_chains·dim`` at most
    :data:`MAX_ELEMENT_STEPS` (split longer runs with ``resume=``), and the memory the
    run allocates (the stored samples for ``keep="all"``, the chain state and noise
    buffers) at most this machine's physical memory.

    Nothing is lost on an interrupt or a failure.  Ctrl-C (SIGINT) during the run
    stops it after the current chunk and raises :class:`SamplingInterrupted` (a
    KeyboardInterrupt) whose ``samples`` and ``state`` hold everything up to the
    last completed step (``resume=err.state`` continues bit for bit); any other
    exception escaping the loop carries the same ``samples`` and ``state``
    attributes.

    Raises
    ------
    ValueError naming the argument for bad input; :class:`NonFiniteGradientError`
    (a FloatingPointError) naming step and chain when a gradient is NaN/inf, with
    ``err.samples`` holding the output collected so far; :class:`SamplingInterrupted`.
    """
    spec = _spec(method)
    ctx = build_context(spec, dim, n_chains, target, fmt, grad_fmt, temperature, grad_noise, friction, inverse_mass,
                        options)
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
    width = spec.width(dim, ctx)
    if keep == "stats":
        lo, hi = (float(v) for v in hist_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"hist_range must be two finite numbers lo < hi, got {hist_range!r}")
        nbins = _int("hist_bins", hist_bins, 1)
    _check_sizes(n_steps, n_chains, dim, nz, width, keep, burn_in, thin, hist_bins if keep == "stats" else 0)

    # state
    if resume is not None:
        if not isinstance(resume, SamplerState) or resume.method != method:
            raise ValueError(f"resume must be a SamplerState of method {method!r}, got {resume!r}")
        if x0 is not None:
            raise ValueError("x0 must be None when resume is given")
        if resume.packed.shape != (n_chains, width):
            raise ValueError(f"resume state has shape {resume.packed.shape}, expected {(n_chains, width)}")
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
    rec = np.array([mode, first, thin, 0, dim, k_start], dtype=np.int64)
    n_kept = _n_kept(sched, k_start, k_end, first, thin) if keep == "all" else 0
    out = np.empty((n_kept, n_chains, dim)) if keep == "all" else np.empty((0, n_chains, dim))
    if keep == "stats":
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

    def result():
        if keep == "all":
            return out[: rec[_loop.REC_N]]
        if keep == "last":
            return state[:, :dim].copy()[None]
        return _stats(rec[_loop.REC_N], smean, sm2, hist, hparams, state[:, :dim].copy())

    def final_state():
        return SamplerState(method, int(rec[_loop.REC_NEXT]), state.copy(), rng.bit_generator.state, dim)

    show = (n_steps * n_chains * max(dim, 1) > 2e8) if progress is None else bool(progress)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, desc=f"{method}", unit="step", leave=False, disable=None)
    bad = -1
    try:
        with _SigintFlag() as interrupted:
            k = k_start
            chunk = max(1, min(n_steps, FIRST_CHUNK_WORK // max(1, n_chains * max(dim, nz))))
            while k < k_end and not interrupted:
                k1 = min(k + chunk, k_end)
                t0 = time.perf_counter()
                k_stop, bad = spec.run_chunk(spec.method_id, state, k, k1, *args)
                dt = time.perf_counter() - t0
                if bar is not None:
                    bar.update(k_stop - k)
                k = k_stop
                if bad >= 0:
                    break
                # next chunk: about CHUNK_SECONDS of work (grows at most 4x: the first includes compilation)
                chunk = 4 * chunk if dt <= 0 else max(1, min(4 * chunk, int(chunk / dt * CHUNK_SECONDS)))
        if interrupted:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        done = int(rec[_loop.REC_NEXT]) - k_start
        raise SamplingInterrupted(
            f"sampling {method!r} interrupted after {done} of {n_steps} steps; err.samples holds what was "
            f"collected and err.state continues the run (sample(..., resume=err.state, n_steps={n_steps - done}))",
            step=done, samples=result(), state=final_state()) from None
    except BaseException as exc:
        try:
            exc.samples, exc.state = result(), final_state()
        except AttributeError:  # pragma: no cover - exceptions without a __dict__
            pass
        raise
    finally:
        if bar is not None:
            bar.close()

    if bad >= 0:
        k = int(rec[_loop.REC_NEXT])
        raise NonFiniteGradientError(
            f"non-finite gradient at step {k} in chain {bad} (method {method!r}); "
            f"err.samples holds the {rec[_loop.REC_N] if keep != 'last' else 0} stored steps before it",
            step=k, chain=bad, samples=result(), state=final_state())
    res = result()
    return (res, final_state()) if return_state else res


class _SigintFlag:
    """Inside the ``with``: SIGINT sets a flag (the value, a list, becomes truthy) instead of raising.

    Installed only in the main thread and only over Python's default handler (a program's
    own SIGINT handler is left alone); the previous handler is restored on exit.
    """

    def __enter__(self):
        self.flag = []
        self.previous = None
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, lambda signum, frame: self.flag.append(signum))
        return self.flag

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def _check_sizes(n_steps, n_chains, dim, nz, width, keep, burn_in, thin, hist_bins):
    """ValueError naming the argument when a run is too long or does not fit in memory."""
    work = n_steps * n_chains * dim
    if work > MAX_ELEMENT_STEPS:
        raise ValueError(f"n_steps={n_steps} with n_chains={n_chains} and dim={dim} is {work:.3g} element-steps, "
                         f"more than MAX_ELEMENT_STEPS={MAX_ELEMENT_STEPS:.0e} per call; run fewer steps per call "
                         "and continue with resume= (return_state=True)")
    per_chain = 8 * (2 * width + nz + 8 * dim + (2 * dim if keep == "stats" else 0))
    need = n_chains * per_chain + (8 * dim * (hist_bins + 2) if keep == "stats" else 0)
    what = "n_chains"
    if keep == "all":
        stored = -(-max(n_steps - burn_in, 0) // thin)
        need += 8 * stored * n_chains * dim
        what = "n_steps/thin x n_chains x dim (keep='all' stores every kept step)"
    mem = _physical_memory()
    if mem is not None and need > mem:
        raise ValueError(f"n_chains={n_chains}, n_steps={n_steps}, dim={dim}, keep={keep!r} need {need / 2**30:.3g} GiB "
                         f"({what}), more than this machine's {mem / 2**30:.3g} GiB of memory; use keep='stats' or "
                         "'last', a larger thin, or fewer chains")


def _n_kept(sched, k0, k1, first, thin) -> int:
    """Steps stored by keep="all" (closed form for a constant schedule)."""
    if int(sched.code[0]) == _loop.SCHED_CONSTANT:
        return -(-max(k1 - max(k0, first), 0) // thin)
    return int(_count_kept(sched.code, k0, k1, first, thin))


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
