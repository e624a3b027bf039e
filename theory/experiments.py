"""Experiments behind the claims: law at step k from many chains, estimates with errors, sweeps.

An experiment runs ``n_chains`` independent chains for ``n_steps`` steps and keeps
**one draw per chain, at the last step**, so the ``n_chains`` draws are i.i.d. from
the law μ_k of the chain at step k = ``n_steps`` (what the theorems bound).  The
sampler is injectable: any callable with the signature of ``refimpl.sample``
(docs/architecture.md) works, so tests substitute deliberately broken samplers.

Statistical conventions (used by every pass rule):

* a variance estimate carries its standard error from the fourth central moment,
  ``se² = (m4 − s⁴)/n`` (delta method; valid for any law with a finite m4);
* confidence intervals are 95% unless stated; bootstrap intervals are percentile
  intervals over ``n_boot`` resamples drawn from an explicit Generator;
* log–log slopes are least-squares fits of log y on log x; their CI comes from
  refitting on bootstrap replicates of every point.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from refimpl.targets import Target

__all__ = [
    "Sampler",
    "default_sampler",
    "law_at_step",
    "law_path",
    "final_state",
    "Estimate",
    "variance_estimate",
    "mean_estimate",
    "bootstrap",
    "bootstrap_ci",
    "SlopeFit",
    "loglog_slope",
    "Measurement",
    "within_prediction",
    "derive_seed",
    "chain_diagnostics",
    "MIN_DRAWS_FOR_ESS",
    "INDEPENDENT_DRAWS_NOTE",
    "Z_PASS",
    "FAMILY_ALPHA",
    "FAMILY_SIZE",
    "POWER",
    "family_z",
    "family_alpha",
    "mde",
]

#: Legacy flat threshold (5σ).  The claims now judge at :func:`family_z` of their mode
#: (``Context.z``); Z_PASS remains the default of :func:`within_prediction` for callers outside verify.
Z_PASS = 5.0

#: Family-wise false-alarm rate of one ``verify`` run: a correct sampler fails at least
#: one judged check of the run with probability ≤ FAMILY_ALPHA.
FAMILY_ALPHA = 0.01
#: The Šidák family of a claim run on its own (tests calling ``claim.run`` directly), per mode.
#: ``qlangevin verify`` does not use it: theory.tasks counts the run's judged checks before
#: judging and the claims judge over that exact number (``Context.family_size``).
FAMILY_SIZE = {"tiny": 60, "quick": 300, "full": 1000}
#: Power at which the minimum detectable effect (MDE) of a judged statistic is stated.
POWER = 0.9


def family_z(n_checks: int, alpha: float = FAMILY_ALPHA) -> float:
    """Two-sided z threshold giving family-wise false-alarm rate ``alpha`` over ``n_checks`` (Šidák).

    Each check fails a correct sampler with probability p = 1 − (1 − α)^{1/n}, i.e. at
    |z| > Φ⁻¹(1 − p/2).  α = 0.01: n = 60 → 3.76, n = 300 → 4.15, n = 1000 → 4.42.
    """
    from scipy.stats import norm as _norm

    n = int(n_checks)
    if n < 1:
        raise ValueError(f"n_checks must be >= 1, got {n_checks!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    p = -math.expm1(math.log1p(-float(alpha)) / n)
    return float(_norm.isf(p / 2))


def family_alpha(z: float, n_checks: int) -> float:
    """The family-wise false-alarm rate of ``n_checks`` independent two-sided checks at threshold ``z``."""
    from scipy.stats import norm as _norm

    p = 2.0 * float(_norm.sf(float(z)))
    return float(-math.expm1(int(n_checks) * math.log1p(-p)))


def mde(se: float, z: float, model_error: float = 0.0, power: float = POWER) -> float:
    """Minimum detectable effect of a check ``|value − prediction| ≤ z·se + model_error``.

    The smallest true deviation that makes the check fail with probability ≥ ``power``
    (normal approximation, far tail neglected): ``model_error + (z + Φ⁻¹(power))·se``.
    """
    from scipy.stats import norm as _norm

    return float(model_error) + (float(z) + float(_norm.ppf(power))) * float(se)

Sampler = Callable[..., np.ndarray]


def default_sampler() -> Sampler:
    """The reference sampler ``refimpl.sample`` (imported lazily)."""
    from refimpl import sample

    return sample


def derive_seed(base: int, *labels: Any) -> int:
    """A reproducible 63-bit seed from a base seed and labels (order matters).

    Uses ``numpy.random.SeedSequence`` on the base seed and a stable hash of the
    labels, so every experiment in a claim gets its own independent stream and
    the same (seed, labels) always gives the same stream.
    """
    import zlib

    words = [int(base) & 0xFFFFFFFF] + [zlib.crc32(repr(lab).encode()) for lab in labels]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def law_at_step(
    sampler: Sampler,
    method: str,
    target: str | Target,
    *,
    n_chains: int,
    n_steps: int,
    step_size: float,
    seed: int,
    dim: int = 1,
    **kwargs: Any,
) -> np.ndarray:
    """Draws from μ_k, the law of the chain at step k = ``n_steps``: array (n_chains, dim).

    Calls ``sampler(method, target, dim=..., n_chains=..., n_steps=..., step_size=...,
    seed=..., keep="last", **kwargs)`` and returns the last kept draw of every chain.
    """
    if int(n_chains) < 2:
        raise ValueError(f"n_chains must be >= 2, got {n_chains!r}")
    if int(n_steps) < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps!r}")
    if hasattr(sampler, "task_law_at_step"):  # theory.tasks: planned / replayed as a grid-point task
        return sampler.task_law_at_step(method, target, n_chains=int(n_chains), n_steps=int(n_steps), step_size=float(step_size),
                                        seed=int(seed), dim=int(dim), **kwargs)
    out = sampler(
        method,
        target,
        dim=int(dim),
        n_chains=int(n_chains),
        n_steps=int(n_steps),
        step_size=float(step_size),
        seed=int(seed),
        keep="last",
        **kwargs,
    )
    out = np.asarray(out, dtype=np.float64)
    if out.ndim != 3 or out.shape[1:] != (int(n_chains), int(dim)):
        raise ValueError(f"sampler returned shape {out.shape}, expected (n_kept, {n_chains}, {dim})")
    if not np.all(np.isfinite(out[-1])):
        raise FloatingPointError(f"{method} produced non-finite draws at step {n_steps} (step_size={step_size})")
    return out[-1]


def law_path(
    sampler: Sampler,
    method: str,
    target: str | Target,
    *,
    steps: Sequence[int],
    n_chains: int,
    step_size: float,
    seed: int,
    dim: int = 1,
    max_bytes: float = 4e8,
    **kwargs: Any,
) -> np.ndarray:
    """Draws from μ_k for several k in one run: array (len(steps), n_chains, dim).

    ``steps`` are step counts k ≥ 1 (the state after k steps).  One run of
    max(steps) steps with ``keep="all"``, ``burn_in = min(steps) − 1``, ``thin = 1``
    (refimpl.sample stores the state after step index j, j = 0..n_steps−1, i.e.
    after j + 1 steps, for j ≥ burn_in).  Draws at different k come from the same
    chains, so they are dependent across k (but i.i.d. across chains).
    """
    ks = sorted({int(k) for k in steps})
    if not ks or ks[0] < 1:
        raise ValueError(f"steps must be step counts >= 1, got {steps!r}")
    span = ks[-1] - ks[0] + 1
    if span * int(n_chains) * int(dim) * 8 > max_bytes:
        raise ValueError(f"law_path would store {span}×{n_chains}×{dim} float64; reduce steps or n_chains")
    if hasattr(sampler, "task_law_path"):  # theory.tasks: planned / replayed as a grid-point task
        return sampler.task_law_path(method, target, steps=[int(k) for k in steps], n_chains=int(n_chains), step_size=float(step_size),
                                     seed=int(seed), dim=int(dim), max_bytes=max_bytes, **kwargs)
    out = sampler(
        method,
        target,
        dim=int(dim),
        n_chains=int(n_chains),
        n_steps=ks[-1],
        step_size=float(step_size),
        seed=int(seed),
        burn_in=ks[0] - 1,
        thin=1,
        keep="all",
        **kwargs,
    )
    out = np.asarray(out, dtype=np.float64)
    if out.shape != (span, int(n_chains), int(dim)):
        raise ValueError(f"sampler returned shape {out.shape}, expected ({span}, {n_chains}, {dim})")
    idx = {k: k - ks[0] for k in ks}
    res = np.stack([out[idx[int(k)]] for k in steps])
    if not np.all(np.isfinite(res)):
        raise FloatingPointError(f"{method} produced non-finite draws (step_size={step_size})")
    return res


def final_state(
    sampler: Sampler,
    method: str,
    target: str | Target,
    *,
    n_chains: int,
    n_steps: int,
    step_size: float,
    seed: int,
    dim: int = 1,
    state_width: int,
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws at step ``n_steps`` and the packed final sampler state (e.g. CTLD's α and histogram).

    Calls ``sampler(..., keep="last", return_state=True)``; returns ``(draws (n_chains, dim),
    packed (n_chains, state_width))``.  ``state_width`` is the expected width of the packed
    state (checked; also the shape of theory.tasks' planning surrogate).
    """
    if int(n_chains) < 2:
        raise ValueError(f"n_chains must be >= 2, got {n_chains!r}")
    if hasattr(sampler, "task_final_state"):
        return sampler.task_final_state(method, target, n_chains=int(n_chains), n_steps=int(n_steps), step_size=float(step_size),
                                        seed=int(seed), dim=int(dim), state_width=int(state_width), **kwargs)
    out, st = sampler(method, target, dim=int(dim), n_chains=int(n_chains), n_steps=int(n_steps), step_size=float(step_size),
                      seed=int(seed), keep="last", return_state=True, **kwargs)
    draws = np.asarray(out, dtype=np.float64)[-1]
    packed = np.asarray(st.packed, dtype=np.float64)
    if packed.shape != (int(n_chains), int(state_width)):
        raise ValueError(f"sampler returned a packed state of shape {packed.shape}, expected ({n_chains}, {state_width})")
    return draws, packed


#: what the report says for rows built from one draw per independent chain (R-hat does not apply)
INDEPENDENT_DRAWS_NOTE = ("one draw per chain from independent chains: the draws are independent, ESS = number of chains "
                          "(n_chains of each row); R-hat, which compares draws within and between chains, does not apply")


#: fewest draws per chain for which the ESS (Geyer's sequence on split chains of half that length) is reported;
#: with fewer the autocorrelation cannot be estimated (at 9 draws the split chains have 4 and the estimator
#: returns its cap N·log10(N), far above the N draws), so ESS and its MCSE are left out (null)
MIN_DRAWS_FOR_ESS = 20


def chain_diagnostics(label: str, draws: npt.ArrayLike, quantity: str = "x") -> dict[str, Any]:
    """Convergence diagnostics of one series kept with several draws per chain (for the verify report).

    ``draws``: chain-first ``(n_chains, n_draws)`` (one scalar quantity) from independent chains.
    Returns a dict with ``label``, ``quantity``, ``n_chains``, ``n_draws``, ``mean`` and, from
    :mod:`refimpl.diagnostics` (Vehtari et al., Bayesian Analysis 16(2), 2021): ``rhat``
    (rank-normalised split R-hat, §4.1-4.2; needs ≥ 4 draws per chain), ``ess_bulk`` and
    ``ess_tail`` (§4.3) and ``mcse_mean`` (sd/√ESS_mean, §4.4), these three only with at least
    :data:`MIN_DRAWS_FOR_ESS` draws per chain.  ``mcse_chain_means``: sd of the chain means /
    √n_chains, valid for independent chains however the draws within a chain are correlated.
    NaN where undefined or not reported (the report writes null).  Diagnostic only: nothing is judged.
    """
    from refimpl import diagnostics as D

    x = np.asarray(draws, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"draws must have shape (n_chains >= 2, n_draws >= 1), got shape {x.shape}")
    n_chains, n_draws = x.shape
    nan = float("nan")
    means = x.mean(axis=1)
    out: dict[str, Any] = {"label": str(label), "quantity": str(quantity), "n_chains": int(n_chains), "n_draws": int(n_draws),
                           "rhat": nan, "ess_bulk": nan, "ess_tail": nan, "mean": float(x.mean()), "mcse_mean": nan,
                           "mcse_chain_means": float(means.std(ddof=1) / math.sqrt(n_chains))}
    if n_draws >= 4:
        out["rhat"] = D.rhat(x)
    if n_draws >= MIN_DRAWS_FOR_ESS:
        out.update(ess_bulk=D.ess_bulk(x), ess_tail=D.ess_tail(x), mcse_mean=D.mcse_mean(x))
    return out


class Estimate(NamedTuple):
    """A point estimate, its standard error and a 95% interval."""

    value: float
    se: float
    lo: float
    hi: float


def variance_estimate(x: npt.ArrayLike, center: float | None = 0.0) -> Estimate:
    """Second central moment about ``center`` (None: about the sample mean), pooled over columns.

    ``x``: (n,) or (n, d) i.i.d. rows; with d > 1 the d coordinates are pooled
    (they are i.i.d. for the product targets used here).  Standard error from the
    fourth moment (delta method): se² = (m4 − m2²)/N with N the number of pooled
    values.  Centering at the known mean 0 avoids the 1/n bias of the sample mean.
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    c = a.mean() if center is None else float(center)
    dev2 = (a - c) ** 2
    m2 = float(dev2.mean())
    se = float(np.sqrt(max(np.mean(dev2**2) - m2**2, 0.0) / a.size))
    return Estimate(m2, se, m2 - 1.96 * se, m2 + 1.96 * se)


def mean_estimate(x: npt.ArrayLike) -> Estimate:
    """Sample mean with SE = s/√n and a normal 95% interval (rows i.i.d.)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    m = float(a.mean())
    se = float(a.std(ddof=1) / math.sqrt(a.size))
    return Estimate(m, se, m - 1.96 * se, m + 1.96 * se)


def bootstrap(stat: Callable[[np.ndarray], float], x: npt.ArrayLike, rng: np.random.Generator,
              n_boot: int = 200) -> np.ndarray:
    """``n_boot`` bootstrap replicates of ``stat`` over the rows of ``x`` (rows resampled with replacement)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    a = np.asarray(x)
    n = a.shape[0]
    return np.array([stat(a[rng.integers(0, n, n)]) for _ in range(int(n_boot))])


def bootstrap_ci(stat: Callable[[np.ndarray], float], x: npt.ArrayLike, rng: np.random.Generator, n_boot: int = 200,
                 level: float = 0.95, kind: Literal["percentile", "normal"] = "percentile") -> Estimate:
    """Point estimate ``stat(x)`` with a percentile bootstrap interval and bootstrap SE.

    The interval is widened to contain the point estimate if needed: for W2
    estimators the resamples (which contain ties) are biased upward, so the
    percentile interval can sit above the estimate.  Its upper end is then
    conservative, which is the side the bound checks use.

    With ``kind="normal"`` the interval is ``value ± z·se_boot`` instead (the
    bootstrap spread without its upward shift), used where two estimates are
    compared with each other rather than with an upper bound.
    """
    if kind not in ("percentile", "normal"):
        raise ValueError(f"kind must be 'percentile' or 'normal', got {kind!r}")
    reps = bootstrap(stat, x, rng, n_boot)
    a = (1 - level) / 2
    v = float(stat(np.asarray(x)))
    se = float(reps.std(ddof=1))
    if kind == "normal":
        from scipy.stats import norm as _norm

        z = float(_norm.ppf(1 - a))
        return Estimate(v, se, v - z * se, v + z * se)
    lo, hi = float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))
    return Estimate(v, se, min(lo, v), max(hi, v))


class SlopeFit(NamedTuple):
    """Fitted slope, its 95% bootstrap percentile interval, intercept and bootstrap SE."""

    slope: float
    lo: float
    hi: float
    intercept: float
    se: float = float("nan")


def loglog_slope(xs: npt.ArrayLike, ys: npt.ArrayLike, replicates: npt.ArrayLike | None = None,
                 level: float = 0.95) -> SlopeFit:
    """Least-squares slope of log y on log x, with a CI from per-point bootstrap replicates.

    ``replicates``: array (n_boot, len(xs)) of bootstrap replicates of each y
    (independent across points, since each point is its own experiment).  Without
    replicates the interval is the point value.
    """
    lx = np.log(np.asarray(xs, float))
    ly = np.log(np.asarray(ys, float))
    slope, icpt = np.polyfit(lx, ly, 1)
    if replicates is None:
        return SlopeFit(float(slope), float(slope), float(slope), float(icpt))
    reps = np.asarray(replicates, float)
    ok = np.all(reps > 0, axis=1)
    sl = np.array([np.polyfit(lx, np.log(r), 1)[0] for r in reps[ok]])
    a = (1 - level) / 2
    return SlopeFit(float(slope), float(np.quantile(sl, a)), float(np.quantile(sl, 1 - a)), float(icpt), float(sl.std(ddof=1)))


@dataclass
class Measurement:
    """One measured quantity of a claim (one row of the report).

    ``passed`` is None for rows that are reported but not judged.
    """

    label: str
    parameters: dict
    quantity: str
    value: float
    ci: tuple[float, float]
    se: float | None = None
    prediction: float | None = None
    bound: float | None = None
    tolerance: float | None = None
    passed: bool | None = None
    note: str = ""
    #: minimum detectable effect at power :data:`POWER` (same units as ``value``); filled in
    #: from ``tolerance`` and ``se`` for judged rows (``tolerance + Φ⁻¹(POWER)·se``) when not given
    mde: float | None = None

    def __post_init__(self):
        if self.mde is None and self.passed is not None and self.tolerance is not None and self.se is not None:
            from scipy.stats import norm as _norm

            t, s = float(self.tolerance), float(self.se)
            if math.isfinite(t) and math.isfinite(s):
                self.mde = t + float(_norm.ppf(POWER)) * s

    def to_json(self) -> dict:
        """JSON-ready dict (numpy scalars converted; non-finite floats as None, i.e. null)."""
        def f(v):
            if v is None:
                return None
            if isinstance(v, (bool, np.bool_)):
                return bool(v)
            if isinstance(v, (int, np.integer)):
                return int(v)
            if isinstance(v, (float, np.floating)):
                v = float(v)
                return v if math.isfinite(v) else None
            return v

        return {
            "label": self.label,
            "parameters": {k: f(v) if not isinstance(v, (list, tuple)) else [f(t) for t in v] for k, v in self.parameters.items()},
            "quantity": self.quantity,
            "value": f(self.value),
            "ci": [f(self.ci[0]), f(self.ci[1])],
            "se": f(self.se),
            "prediction": f(self.prediction),
            "bound": f(self.bound),
            "tolerance": f(self.tolerance),
            "passed": self.passed,
            "mde": f(self.mde),
            "mde_relative": f(self.mde / abs(self.prediction)) if (self.mde is not None and self.prediction) else None,
            "note": self.note,
        }


def within_prediction(value: float, se: float, prediction: float, model_error: float = 0.0,
                      z: float = Z_PASS) -> tuple[bool, float]:
    """Pass rule "agrees with the prediction": ``|value − prediction| ≤ z·se + model_error``.

    Returns ``(passed, tolerance)``.  ``model_error`` is the stated accuracy of an
    approximate prediction (e.g. 1% of the value for the P3 regime formulas).
    """
    tol = z * float(se) + float(model_error)
    return bool(abs(float(value) - float(prediction)) <= tol), tol
